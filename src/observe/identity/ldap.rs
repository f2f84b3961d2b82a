//! The live LDAP check of an `ldap` Connector (SPEC-identity section 2): TCP connect,
//! TLS or StartTLS handshake, simple bind, one bounded user search and group search.
//!
//! ldap3 on rustls with the process's `ring` provider; every operation has a time
//! bound; referrals are returned by the server and never followed; search filters are
//! built from presence tests of validated attribute names only (no value is placed in
//! a filter, and any value that is must go through `ldap3::ldap_escape`).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use ldap3::{LdapConnAsync, LdapConnSettings, LdapError, Scope, SearchOptions, StdStream};
use tokio::net::TcpStream;

use crate::api::dex::{GroupSearch, LdapConfig, UserSearch};
use crate::decide::identity::Check;
use crate::decide::identity::reasons::*;
use crate::probe::{DestinationPolicy, TrustBundle};
use crate::validation::identity::split_host_port;

/// A secret value (bind password, client secret): `Debug` never shows it.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Password(pub String);

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(<redacted>)")
    }
}

/// How the connection is secured (Dex's rules).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Transport {
    Ldaps,
    StartTls,
    Plain,
}

/// Everything one LDAP check needs.
#[derive(Clone, Debug)]
pub struct LdapTarget {
    pub config: LdapConfig,
    /// The bind password; `None` binds anonymously (no `bindDN`).
    pub password: Option<Password>,
    /// `None` when the Secret is not usable: liveness is checked, bind and search not.
    pub secret_usable: bool,
    pub trust: TrustBundle,
    pub timeout: Duration,
    pub destinations: DestinationPolicy,
}

/// The three checks of one round.
pub struct LdapChecks {
    pub liveness: Check,
    pub auth: Check,
    pub search: Check,
}

/// Runs the checks in order; a failed step leaves the later ones not run.
pub async fn check_ldap(target: &LdapTarget) -> LdapChecks {
    let not_run = |why: &str| Check::NotRun(why.to_string());
    let (mut ldap, liveness) = match connect(target).await {
        Ok(pair) => pair,
        Err(failed) => {
            return LdapChecks {
                liveness: failed,
                auth: not_run("the server is not reachable"),
                search: not_run("the server is not reachable"),
            };
        }
    };
    let late = |what: &str| {
        Check::failed(
            CONNECTION_FAILED,
            format!("the {what} took longer than {:?}", target.timeout),
        )
    };
    let auth = if target.secret_usable {
        tokio::time::timeout(target.timeout, bind(&mut ldap, target))
            .await
            .unwrap_or_else(|_| late("bind"))
    } else {
        not_run("the bind password is not available")
    };
    let search = if auth.passed() {
        tokio::time::timeout(target.timeout * 2, search(&mut ldap, target))
            .await
            .unwrap_or_else(|_| late("search"))
    } else {
        not_run("the bind did not succeed")
    };
    let _ = tokio::time::timeout(target.timeout, ldap.unbind()).await;
    LdapChecks {
        liveness,
        auth,
        search,
    }
}

fn transport(config: &LdapConfig) -> Transport {
    if config.insecure_no_ssl {
        Transport::Plain
    } else if config.start_tls {
        Transport::StartTls
    } else {
        Transport::Ldaps
    }
}

/// TCP connect (ConnectionFailed), then TLS or StartTLS (TLSFailed).
pub(crate) async fn connect(target: &LdapTarget) -> Result<(ldap3::Ldap, Check), Check> {
    let config = &target.config;
    let host_port = config.host.as_deref().unwrap_or_default();
    let (host, port) = split_host_port(host_port, config.default_port())
        .map_err(|e| Check::failed(CONNECTION_FAILED, e))?;
    let stream = tcp_connect(&host, port, target).await?;
    let transport = transport(config);
    let url_host = if host.contains(':') {
        format!("[{host}]")
    } else {
        host.clone()
    };
    let scheme = if transport == Transport::Ldaps {
        "ldaps"
    } else {
        "ldap"
    };
    let url = format!("{scheme}://{url_host}:{port}");
    let std_stream = stream
        .into_std()
        .map_err(|e| Check::failed(CONNECTION_FAILED, format!("{host}:{port}: {e}")))?;
    let mut settings = LdapConnSettings::new()
        .set_conn_timeout(target.timeout)
        .set_starttls(transport == Transport::StartTls)
        .set_std_stream(StdStream::Tcp(std_stream));
    if config.insecure_skip_verify {
        settings = settings.set_no_tls_verify(true);
    } else if transport != Transport::Plain {
        settings = settings.set_config(
            tls_config(&target.trust)
                .map_err(|e| Check::failed(TLS_FAILED, format!("cannot set up TLS: {e}")))?,
        );
    }
    let connected =
        tokio::time::timeout(target.timeout, LdapConnAsync::with_settings(settings, &url)).await;
    let (conn, ldap) = match connected {
        Ok(Ok(pair)) => pair,
        Ok(Err(e)) => {
            let reason = if transport == Transport::Plain {
                CONNECTION_FAILED
            } else {
                TLS_FAILED
            };
            let what = match transport {
                Transport::Ldaps => "TLS handshake",
                Transport::StartTls => "StartTLS",
                Transport::Plain => "LDAP connection",
            };
            return Err(Check::failed(
                reason,
                format!("{what} with {host}:{port} failed: {}", ldap_error(&e)),
            ));
        }
        Err(_) => {
            return Err(Check::failed(
                CONNECTION_FAILED,
                format!("{host}:{port} did not answer within {:?}", target.timeout),
            ));
        }
    };
    ldap3::drive!(conn);
    let how = match transport {
        Transport::Ldaps => "LDAPS",
        Transport::StartTls => "LDAP with StartTLS",
        Transport::Plain => "plain LDAP",
    };
    Ok((
        ldap,
        Check::Passed(format!("connected to {host}:{port} ({how})")),
    ))
}

/// The first allowed address of `host` that accepts a TCP connection, in time.
async fn tcp_connect(host: &str, port: u16, target: &LdapTarget) -> Result<TcpStream, Check> {
    let failed = |m: String| Check::failed(CONNECTION_FAILED, m);
    let resolved = tokio::time::timeout(target.timeout, tokio::net::lookup_host((host, port)))
        .await
        .map_err(|_| {
            failed(format!(
                "resolving {host} took longer than {:?}",
                target.timeout
            ))
        })?
        .map_err(|e| failed(format!("cannot resolve {host}: {e}")))?;
    let mut last = format!("{host} resolves to no address");
    for addr in resolved {
        if let Some(refused) = target.destinations.refusal(host, addr.ip()) {
            last = refused;
            continue;
        }
        match tokio::time::timeout(target.timeout, TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => return Ok(stream),
            Ok(Err(e)) => last = format!("cannot connect to {host}:{port}: {}", io_kind(&e)),
            Err(_) => {
                last = format!(
                    "connecting to {host}:{port} took longer than {:?}",
                    target.timeout
                )
            }
        }
    }
    Err(failed(last))
}

fn io_kind(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::ConnectionRefused => "connection refused".into(),
        std::io::ErrorKind::TimedOut => "timed out".into(),
        _ => e.to_string(),
    }
}

/// rustls on the `ring` provider, system roots plus the Connector's trust.
fn tls_config(trust: &TrustBundle) -> Result<Arc<rustls::ClientConfig>, rustls::Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(trust.root_store())
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// An ldap3 error as a message (no request data is in ldap3's errors).
pub(crate) fn ldap_error(e: &LdapError) -> String {
    let text = match e {
        LdapError::Io { source } => source
            .get_ref()
            .map(ToString::to_string)
            .unwrap_or_else(|| io_kind(source)),
        other => other.to_string(),
    };
    cut(&text)
}

pub(crate) fn cut(text: &str) -> String {
    const MAX: usize = 300;
    if text.chars().count() <= MAX {
        text.to_string()
    } else {
        format!("{}...", text.chars().take(MAX).collect::<String>())
    }
}

/// The simple bind as `bindDN` (anonymous without one). Result 49 is a wrong DN or
/// password; the server's diagnostic text never holds the password.
pub(crate) async fn bind(ldap: &mut ldap3::Ldap, target: &LdapTarget) -> Check {
    let dn = target.config.bind_dn.clone().unwrap_or_default();
    let Some(password) = target.password.as_ref().filter(|_| !dn.is_empty()) else {
        return Check::Passed("anonymous: no bindDN".into());
    };
    match ldap.simple_bind(&dn, &password.0).await {
        Ok(res) if res.rc == 0 => Check::Passed(format!("bound as {dn:?}")),
        Ok(res) if res.rc == 49 => Check::failed(
            INVALID_CREDENTIALS,
            format!("the server refused the bind as {dn:?}: invalid credentials (LDAP result 49)"),
        ),
        Ok(res) => Check::failed(
            BIND_FAILED,
            format!(
                "the bind as {dn:?} failed: LDAP result {} {}",
                res.rc,
                cut(&res.text)
            ),
        ),
        Err(e) => Check::failed(
            BIND_FAILED,
            format!("the bind as {dn:?} failed: {}", ldap_error(&e)),
        ),
    }
}

pub(crate) fn scope(s: Option<&str>) -> Scope {
    match s {
        Some("one") => Scope::OneLevel,
        _ => Scope::Subtree,
    }
}

/// `(&<filter>(a=*)(b=*)...)`: the configured filter, and presence of each attribute.
pub fn presence_filter(filter: Option<&str>, attributes: &[&str]) -> String {
    let mut out = String::from("(&");
    out.push_str(
        filter
            .filter(|f| !f.is_empty())
            .unwrap_or("(objectClass=*)"),
    );
    for a in attributes.iter().filter(|a| !a.is_empty()) {
        out.push_str(&format!("({a}=*)"));
    }
    out.push(')');
    out
}

async fn search(ldap: &mut ldap3::Ldap, target: &LdapTarget) -> Check {
    let Some(users) = &target.config.user_search else {
        return Check::failed(SEARCH_FAILED, "no userSearch");
    };
    let user_check = search_users(ldap, users).await;
    if !user_check.passed() {
        return user_check;
    }
    match &target.config.group_search {
        Some(groups) => match search_groups(ldap, groups).await {
            Check::Passed(m) => match user_check {
                Check::Passed(u) => Check::Passed(format!("{u}; {m}")),
                other => other,
            },
            failed => failed,
        },
        None => user_check,
    }
}

/// One entry is enough: size limit 1, attributes only (no values read).
async fn search_one(
    ldap: &mut ldap3::Ldap,
    base: &str,
    scope_name: Option<&str>,
    filter: &str,
) -> Result<(u32, usize, String), LdapError> {
    let result = ldap
        .with_search_options(SearchOptions::new().sizelimit(1).timelimit(10))
        .search(base, scope(scope_name), filter, vec!["1.1"])
        .await?;
    let entries = result.0.len();
    Ok((result.1.rc, entries, result.1.text))
}

async fn search_users(ldap: &mut ldap3::Ldap, users: &UserSearch) -> Check {
    let base = users.base_dn.clone().unwrap_or_default();
    let attributes = [
        users.id_attr.as_deref().unwrap_or_default(),
        users.username.as_deref().unwrap_or_default(),
        users.email_attr.as_deref().unwrap_or_default(),
    ];
    let filter = presence_filter(users.filter.as_deref(), &attributes);
    match search_one(ldap, &base, users.scope.as_deref(), &filter).await {
        Ok((0 | 4, n, _)) if n > 0 => {
            Check::Passed(format!("userSearch under {base:?} finds users"))
        }
        Ok((0 | 4 | 32, _, _)) => Check::failed(
            NO_USERS_FOUND,
            format!(
                "userSearch under {base:?} with {filter:?} returns no entry (base DN, filter or attributes wrong?)"
            ),
        ),
        Ok((rc, _, text)) => Check::failed(
            SEARCH_FAILED,
            format!(
                "userSearch under {base:?} failed: LDAP result {rc} {}",
                cut(&text)
            ),
        ),
        Err(e) => Check::failed(
            SEARCH_FAILED,
            format!("userSearch under {base:?} failed: {}", ldap_error(&e)),
        ),
    }
}

async fn search_groups(ldap: &mut ldap3::Ldap, groups: &GroupSearch) -> Check {
    let base = groups.base_dn.clone().unwrap_or_default();
    let name = groups.name_attr.as_deref().unwrap_or_default();
    let filter = presence_filter(groups.filter.as_deref(), &[name]);
    match search_one(ldap, &base, groups.scope.as_deref(), &filter).await {
        Ok((0 | 4, n, _)) => Check::Passed(format!("groupSearch runs ({n} sampled)")),
        Ok((rc, _, text)) => Check::failed(
            SEARCH_FAILED,
            format!(
                "groupSearch under {base:?} failed: LDAP result {rc} {}",
                cut(&text)
            ),
        ),
        Err(e) => Check::failed(
            SEARCH_FAILED,
            format!("groupSearch under {base:?} failed: {}", ldap_error(&e)),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presence_filters_wrap_the_configured_one() {
        assert_eq!(
            presence_filter(Some("(objectClass=person)"), &["uid", "mail"]),
            "(&(objectClass=person)(uid=*)(mail=*))"
        );
        assert_eq!(presence_filter(None, &["cn"]), "(&(objectClass=*)(cn=*))");
        assert!(ldap3::parse_filter(presence_filter(Some("(|(a=b)(c=d))"), &["x"])).is_ok());
    }

    #[test]
    fn password_debug_is_redacted() {
        assert_eq!(
            format!("{:?}", Password("S3ntinel".into())),
            "Password(<redacted>)"
        );
    }
}
