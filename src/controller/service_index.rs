//! What the Connector reconcile reads of each labelled proxy Service, fed by the watch
//! and read without an apiserver call: owner uids, type and externalName, by
//! namespace/name. Nothing else of the Service is kept.
//!
//! Why not kube's reflector `Store<Service>`: at 10,000 Connectors it held ~16 MiB (a
//! whole `Service` and an `ObjectRef` per entry, ~840 bytes even trimmed). This index
//! keeps ~200 bytes per entry, and one copy of each externalName (all the Services of a
//! class share one host). Same replace-on-relist semantics as the reflector.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock};

use k8s_openapi::api::core::v1::Service;
use kube::runtime::watcher;

use crate::decide::proxy_service::ObservedService;

#[derive(Debug, PartialEq, Eq)]
struct Entry {
    owner_uids: Box<[Box<str>]>,
    type_: Option<Arc<str>>,
    external_name: Option<Arc<str>>,
}

#[derive(Default)]
struct State {
    live: HashMap<Box<str>, Entry>,
    /// The relist in progress: replaces `live` at its end.
    relist: Option<HashMap<Box<str>, Entry>>,
    /// One copy of each type and externalName string.
    strings: HashSet<Arc<str>>,
}

/// The index; [`ProxyServiceIndex::apply`] takes every watch event.
pub struct ProxyServiceIndex {
    state: RwLock<State>,
    listed: tokio::sync::watch::Sender<bool>,
}

impl Default for ProxyServiceIndex {
    fn default() -> Self {
        ProxyServiceIndex {
            state: RwLock::default(),
            listed: tokio::sync::watch::Sender::new(false),
        }
    }
}

fn key(namespace: &str, name: &str) -> Box<str> {
    format!("{namespace}/{name}").into_boxed_str()
}

fn key_of(service: &Service) -> Box<str> {
    key(
        service.metadata.namespace.as_deref().unwrap_or_default(),
        service.metadata.name.as_deref().unwrap_or_default(),
    )
}

impl State {
    fn shared(&mut self, value: Option<&str>) -> Option<Arc<str>> {
        let value = value?;
        if let Some(known) = self.strings.get(value) {
            return Some(known.clone());
        }
        let new: Arc<str> = Arc::from(value);
        self.strings.insert(new.clone());
        Some(new)
    }

    fn entry(&mut self, service: &Service) -> Entry {
        let spec = service.spec.as_ref();
        Entry {
            owner_uids: service
                .metadata
                .owner_references
                .iter()
                .flatten()
                .map(|owner| owner.uid.as_str().into())
                .collect(),
            type_: self.shared(spec.and_then(|s| s.type_.as_deref())),
            external_name: self.shared(spec.and_then(|s| s.external_name.as_deref())),
        }
    }

    /// Drops interned strings no entry uses any more (a class's old proxy host).
    fn forget_unused_strings(&mut self) {
        self.strings.retain(|s| Arc::strong_count(s) > 1);
    }
}

impl ProxyServiceIndex {
    /// Takes one watch event, as kube's reflector would.
    pub fn apply(&self, event: &watcher::Event<Service>) {
        let mut state = self.state.write().unwrap_or_else(|e| e.into_inner());
        match event {
            watcher::Event::Apply(service) => {
                let entry = state.entry(service);
                state.live.insert(key_of(service), entry);
            }
            watcher::Event::Delete(service) => {
                state.live.remove(&key_of(service));
            }
            watcher::Event::Init => state.relist = Some(HashMap::new()),
            watcher::Event::InitApply(service) => {
                let entry = state.entry(service);
                state
                    .relist
                    .get_or_insert_with(HashMap::new)
                    .insert(key_of(service), entry);
            }
            watcher::Event::InitDone => {
                let listed = state.relist.take().unwrap_or_default();
                state.live = listed;
                state.forget_unused_strings();
                drop(state);
                self.listed.send_replace(true);
            }
        }
    }

    /// The Service at `namespace/name` as its owner `owner_uid` sees it; `None` when the
    /// watch has not shown one.
    pub fn get(&self, namespace: &str, name: &str, owner_uid: &str) -> Option<ObservedService> {
        let state = self.state.read().unwrap_or_else(|e| e.into_inner());
        let entry = state.live.get(&key(namespace, name))?;
        Some(ObservedService::present(
            entry.owner_uids.iter().map(|uid| &**uid),
            entry.type_.as_deref(),
            entry.external_name.as_deref(),
            owner_uid,
        ))
    }

    /// Resolves once the first full list is in.
    pub async fn wait_until_listed(&self) {
        let mut listed = self.listed.subscribe();
        // The sender lives in `self`, so this cannot fail while we wait.
        let _ = listed.wait_for(|listed| *listed).await;
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        let state = self.state.read().unwrap_or_else(|e| e.into_inner());
        state.live.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ServiceSpec;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

    fn service(namespace: &str, name: &str, owner: &str, host: &str) -> Service {
        Service {
            metadata: ObjectMeta {
                namespace: Some(namespace.into()),
                name: Some(name.into()),
                owner_references: Some(vec![OwnerReference {
                    uid: owner.into(),
                    ..Default::default()
                }]),
                ..Default::default()
            },
            spec: Some(ServiceSpec {
                type_: Some("ExternalName".into()),
                external_name: Some(host.into()),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn present(owned: bool, host: &str) -> Option<ObservedService> {
        Some(ObservedService::Present {
            owned,
            type_: Some("ExternalName".into()),
            external_name: Some(host.into()),
        })
    }

    #[test]
    fn answers_as_the_reflector_store_would_for_the_reconcile() {
        let index = ProxyServiceIndex::default();
        let a = service("dev", "a-proxy", "uid-a", "proxy.example");
        index.apply(&watcher::Event::Apply(a.clone()));
        assert_eq!(
            index.get("dev", "a-proxy", "uid-a"),
            present(true, "proxy.example")
        );
        assert_eq!(
            index.get("dev", "a-proxy", "uid-other"),
            present(false, "proxy.example"),
            "another owner's Service is seen as not owned"
        );
        assert_eq!(index.get("prod", "a-proxy", "uid-a"), None);
        let moved = service("dev", "a-proxy", "uid-a", "proxy2.example");
        index.apply(&watcher::Event::Apply(moved.clone()));
        assert_eq!(
            index.get("dev", "a-proxy", "uid-a"),
            present(true, "proxy2.example")
        );
        index.apply(&watcher::Event::Delete(moved));
        assert_eq!(index.get("dev", "a-proxy", "uid-a"), None);
    }

    #[test]
    fn reads_the_same_as_the_rule_over_the_whole_service() {
        let index = ProxyServiceIndex::default();
        let mut two_owners = service("dev", "b-proxy", "uid-a", "proxy.example");
        if let Some(owners) = two_owners.metadata.owner_references.as_mut() {
            owners.push(OwnerReference {
                uid: "uid-b".into(),
                ..Default::default()
            });
        }
        let mut bare = service("dev", "c-proxy", "uid-a", "x");
        bare.spec = None;
        for s in [two_owners, bare] {
            index.apply(&watcher::Event::Apply(s.clone()));
            let name = s.metadata.name.as_deref().unwrap_or_default();
            for uid in ["uid-a", "uid-b", "uid-c"] {
                assert_eq!(
                    index.get("dev", name, uid),
                    Some(ObservedService::of(Some(&s), uid)),
                    "{name} as seen by {uid}"
                );
            }
        }
    }

    #[test]
    fn a_relist_replaces_everything_at_its_end_and_opens_the_gate_once_listed() {
        let index = ProxyServiceIndex::default();
        assert!(!*index.listed.borrow());
        index.apply(&watcher::Event::Apply(service("dev", "gone", "u1", "h")));
        index.apply(&watcher::Event::Init);
        index.apply(&watcher::Event::InitApply(service(
            "dev", "kept", "u2", "h",
        )));
        assert_eq!(
            index.get("dev", "gone", "u1"),
            present(true, "h"),
            "the old state serves reads until the relist is complete"
        );
        assert_eq!(index.get("dev", "kept", "u2"), None);
        index.apply(&watcher::Event::InitDone);
        assert_eq!(
            index.get("dev", "gone", "u1"),
            None,
            "deleted while unwatched"
        );
        assert_eq!(index.get("dev", "kept", "u2"), present(true, "h"));
        assert_eq!(index.len(), 1);
        assert!(*index.listed.borrow());
    }

    #[test]
    fn services_of_one_class_share_one_copy_of_its_host_and_old_hosts_are_dropped() {
        let index = ProxyServiceIndex::default();
        index.apply(&watcher::Event::Init);
        for i in 0..3 {
            let s = service("dev", &format!("s{i}"), "u", "proxy.example");
            index.apply(&watcher::Event::InitApply(s));
        }
        index.apply(&watcher::Event::InitDone);
        {
            let state = index.state.read().expect("lock");
            assert_eq!(state.strings.len(), 2, "one type and one host");
            let hosts: HashSet<*const u8> = state
                .live
                .values()
                .filter_map(|e| e.external_name.as_ref().map(|h| h.as_ptr()))
                .collect();
            assert_eq!(hosts.len(), 1);
        }
        index.apply(&watcher::Event::Init);
        let s = service("dev", "s0", "u", "new.example");
        index.apply(&watcher::Event::InitApply(s));
        index.apply(&watcher::Event::InitDone);
        let state = index.state.read().expect("lock");
        let strings: HashSet<&str> = state.strings.iter().map(|s| &**s).collect();
        assert_eq!(strings, HashSet::from(["ExternalName", "new.example"]));
    }
}
