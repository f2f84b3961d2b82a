//! Reading the directory for the sync (SPEC-identity sections 3 and 4): the
//! connection and bind of the health check ([`super::ldap`]), then paged searches
//! (Simple Paged Results control, so a server size limit below the directory's size
//! does not cut the result), each bounded in time. Referrals are dropped, not
//! followed. A search that fails or is cut is an error: the sync then changes nothing.

use std::time::Duration;

use ldap3::adapters::{Adapter, EntriesOnly, PagedResults};
use ldap3::{Scope, SearchEntry};

use crate::decide::directory::Entry;

use super::ldap::{LdapTarget, bind, connect, cut, ldap_error};

/// Entries asked per page.
pub const PAGE_SIZE: i32 = 200;

/// A connected and bound LDAP session.
pub struct Session {
    ldap: ldap3::Ldap,
    timeout: Duration,
}

/// One search: base, scope (`sub`/`one`/`base`), filter, attributes.
#[derive(Clone, Debug)]
pub struct Query {
    pub base: String,
    pub scope: Scope,
    pub filter: String,
    pub attributes: Vec<String>,
}

/// `sub` (default), `one`, `base`.
pub fn scope_of(name: Option<&str>) -> Scope {
    match name {
        Some("one") => Scope::OneLevel,
        Some("base") => Scope::Base,
        _ => Scope::Subtree,
    }
}

impl Session {
    /// Connects (TCP, TLS or StartTLS) and binds as the target says; the message of a
    /// failure names no secret.
    pub async fn open(target: &LdapTarget) -> Result<Session, String> {
        let (mut ldap, _) = connect(target).await.map_err(check_message)?;
        let bound = tokio::time::timeout(target.timeout, bind(&mut ldap, target))
            .await
            .map_err(|_| format!("the bind took longer than {:?}", target.timeout))?;
        if !bound.passed() {
            return Err(check_message(bound));
        }
        Ok(Session {
            ldap,
            timeout: target.timeout,
        })
    }

    /// Every entry of `query`, page by page; the whole search within `deadline`.
    pub async fn search(
        &mut self,
        query: &Query,
        deadline: Duration,
    ) -> Result<Vec<Entry>, String> {
        let what = format!("search under {:?}", query.base);
        tokio::time::timeout(deadline, self.search_paged(query))
            .await
            .map_err(|_| format!("{what} took longer than {deadline:?}"))?
            .map_err(|e| format!("{what} failed: {e}"))
    }

    async fn search_paged(&mut self, query: &Query) -> Result<Vec<Entry>, String> {
        let adapters: Vec<Box<dyn Adapter<'_, String, Vec<String>>>> = vec![
            Box::new(EntriesOnly::new()),
            Box::new(PagedResults::new(PAGE_SIZE)),
        ];
        let mut attributes = query.attributes.clone();
        attributes.sort();
        attributes.dedup();
        if attributes.is_empty() {
            attributes.push("1.1".into());
        }
        let mut stream = self
            .ldap
            .with_timeout(self.timeout)
            .streaming_search_with(
                adapters,
                &query.base,
                query.scope,
                &query.filter,
                attributes,
            )
            .await
            .map_err(|e| ldap_error(&e))?;
        let mut entries = Vec::new();
        loop {
            match stream.next().await {
                Ok(Some(raw)) => {
                    let e = SearchEntry::construct(raw);
                    entries.push(Entry::new(e.dn, e.attrs));
                }
                Ok(None) => break,
                Err(e) => {
                    let _ = stream.finish().await;
                    return Err(ldap_error(&e));
                }
            }
        }
        let result = stream.finish().await;
        match result.rc {
            0 => Ok(entries),
            // noSuchObject: the base DN is gone; an empty result, judged by the planner.
            32 => Ok(Vec::new()),
            rc => Err(format!("LDAP result {rc} {}", cut(&result.text))),
        }
    }

    /// Unbinds (best effort, bounded).
    pub async fn close(mut self) {
        let _ = tokio::time::timeout(self.timeout, self.ldap.unbind()).await;
    }
}

fn check_message(check: crate::decide::identity::Check) -> String {
    match check {
        crate::decide::identity::Check::Failed { message, .. } => message,
        crate::decide::identity::Check::NotRun(m) | crate::decide::identity::Check::Passed(m) => m,
    }
}
