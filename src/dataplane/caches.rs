//! What the proxy knows without asking per request (SPEC-proxy section 1): Connectors
//! (with the Service-name index), classes (compiled once per generation), the flags
//! ConfigMap and the labelled global CA Secrets, all from watches.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::runtime::reflector::{self, ObjectRef, Store, reflector};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};

use crate::api::{Connector, ConnectorClass};
use crate::observe::{GLOBAL_CA_LABEL, ca_bundle_from_secret};
use crate::probe::{CompiledClass, TrustBundle};
use crate::route::{ConnectorIndex, Flags, parse_flags};
use crate::runtime::{CachesReady, InitialLists, Shutdown, WatchBackoff};

/// The ConfigMap of feature flags in the operator namespace.
pub const FLAGS_CONFIGMAP: &str = "connectors-config";

/// A class compiled for live requests, with the generation it was compiled from.
type Compiled = (Option<i64>, Result<CompiledClass, String>);

pub struct Caches {
    connectors: Store<Connector>,
    classes: Store<ConnectorClass>,
    ca_secrets: Store<Secret>,
    flags_map: Store<ConfigMap>,
    index: RwLock<ConnectorIndex>,
    compiled: Mutex<HashMap<String, Compiled>>,
    pub ready: CachesReady,
}

impl Caches {
    /// Starts the watches; `ready` opens once every store has listed once.
    pub fn start(
        client: &Client,
        namespace: &str,
        shutdown: &Shutdown,
        lists: InitialLists,
    ) -> Arc<Caches> {
        let (connectors, connector_writer) = reflector::store::<Connector>();
        let (classes, class_writer) = reflector::store::<ConnectorClass>();
        let (ca_secrets, ca_writer) = reflector::store::<Secret>();
        let (flags_map, flags_writer) = reflector::store::<ConfigMap>();
        let stores = (
            connectors.clone(),
            classes.clone(),
            ca_secrets.clone(),
            flags_map.clone(),
        );
        let ready = CachesReady::spawn(async move {
            let (a, b, c, d) = stores;
            let (a, b, c, d) = futures::join!(
                a.wait_until_ready(),
                b.wait_until_ready(),
                c.wait_until_ready(),
                d.wait_until_ready()
            );
            a.is_ok() && b.is_ok() && c.is_ok() && d.is_ok()
        });
        let caches = Arc::new(Caches {
            connectors,
            classes,
            ca_secrets,
            flags_map,
            index: RwLock::new(ConnectorIndex::default()),
            compiled: Mutex::new(HashMap::new()),
            ready,
        });
        let connector_api = Api::<Connector>::all(client.clone());
        let index_feed = caches.clone();
        let connector_events = watcher(connector_api, lists.config())
            .backoff(WatchBackoff::default())
            .reflect(connector_writer)
            .for_each(move |event| {
                index_feed.on_connector_event(event);
                futures::future::ready(())
            });
        spawn_until(shutdown, connector_events);
        let class_api = Api::<ConnectorClass>::all(client.clone());
        spawn_until(
            shutdown,
            drain(reflector(class_writer, watcher(class_api, lists.config()))),
        );
        let secret_api = Api::<Secret>::namespaced(client.clone(), namespace);
        let secrets = watcher(secret_api, lists.config().labels(GLOBAL_CA_LABEL));
        spawn_until(shutdown, drain(reflector(ca_writer, secrets)));
        let map_api = Api::<ConfigMap>::namespaced(client.clone(), namespace);
        let by_name = lists
            .config()
            .fields(&format!("metadata.name={FLAGS_CONFIGMAP}"));
        let flags = watcher(map_api, by_name)
            .backoff(WatchBackoff::default())
            .reflect(flags_writer)
            .for_each(|event| {
                if let Ok(watcher::Event::Apply(map) | watcher::Event::InitApply(map)) = &event {
                    warn_ignored_flags(map);
                }
                futures::future::ready(())
            });
        spawn_until(shutdown, flags);
        caches
    }

    fn on_connector_event(&self, event: Result<watcher::Event<Connector>, watcher::Error>) {
        let Ok(event) = event else { return };
        let Ok(mut index) = self.index.write() else {
            return;
        };
        match event {
            watcher::Event::Apply(c) => {
                index.insert(&c.namespace().unwrap_or_default(), &c.name_any())
            }
            watcher::Event::Delete(c) => {
                index.remove(&c.namespace().unwrap_or_default(), &c.name_any())
            }
            // A re-list: rebuild from the store once it is complete.
            watcher::Event::InitDone => {
                let mut fresh = ConnectorIndex::default();
                for c in self.connectors.state() {
                    fresh.insert(&c.namespace().unwrap_or_default(), &c.name_any());
                }
                *index = fresh;
            }
            watcher::Event::Init | watcher::Event::InitApply(_) => {}
        }
    }

    pub fn index(&self) -> std::sync::RwLockReadGuard<'_, ConnectorIndex> {
        match self.index.read() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    pub fn connector(&self, namespace: &str, name: &str) -> Option<Arc<Connector>> {
        self.connectors.get(&ObjectRef::new(name).within(namespace))
    }

    pub fn class(&self, name: &str) -> Option<Arc<ConnectorClass>> {
        self.classes.get(&ObjectRef::new(name))
    }

    pub fn connector_count(&self) -> usize {
        self.connectors.state().len()
    }

    /// The flags as the ConfigMap says now (defaults when it is absent).
    pub fn flags(&self) -> Flags {
        parse_flags(&self.flags_data()).0
    }

    /// The data of ConfigMap `connectors-config` (the watch selects it by name).
    pub fn flags_data(&self) -> std::collections::BTreeMap<String, String> {
        self.flags_map
            .state()
            .into_iter()
            .next()
            .and_then(|map| map.data.clone())
            .unwrap_or_default()
    }

    /// The labelled global CA Secrets as one bundle (invalid ones are skipped; the
    /// controller reports them).
    pub fn global_trust(&self) -> TrustBundle {
        let mut bundle = TrustBundle::empty();
        let mut secrets = self.ca_secrets.state();
        secrets.sort_by_key(|s| s.name_any());
        for secret in secrets {
            if let Ok(extra) = ca_bundle_from_secret(&secret) {
                bundle = bundle.merged(&extra);
            }
        }
        bundle
    }

    /// The class compiled for live requests, compiled once per generation (off the
    /// async workers). Errors are the class's compile errors, joined.
    pub async fn compiled(&self, class: &Arc<ConnectorClass>) -> Result<CompiledClass, String> {
        let name = class.name_any();
        let generation = class.metadata.generation;
        if let Ok(cache) = self.compiled.lock()
            && let Some((cached_generation, compiled)) = cache.get(&name)
            && *cached_generation == generation
        {
            return compiled.clone();
        }
        let to_compile = class.clone();
        let compiled = tokio::task::spawn_blocking(move || {
            CompiledClass::compile(&to_compile).map_err(|errors| crate::types::join_errors(&errors))
        })
        .await
        .unwrap_or_else(|e| Err(format!("compiling the class failed: {e}")));
        if let Ok(mut cache) = self.compiled.lock() {
            cache.insert(name, (generation, compiled.clone()));
        }
        compiled
    }
}

/// SPEC-proxy section 1: unknown keys (and values other than "true"/"false") are
/// ignored with a warning.
fn warn_ignored_flags(map: &ConfigMap) {
    let data = map.data.clone().unwrap_or_default();
    let (_, ignored) = parse_flags(&data);
    if !ignored.is_empty() {
        tracing::warn!(
            configmap = FLAGS_CONFIGMAP,
            keys = ?ignored,
            "ignored: not a known flag, or a value other than \"true\"/\"false\""
        );
    }
}

async fn drain<S, K>(stream: S)
where
    S: futures::Stream<Item = Result<watcher::Event<K>, watcher::Error>>,
{
    stream
        .backoff(WatchBackoff::default())
        .for_each(|_| futures::future::ready(()))
        .await;
}

fn spawn_until(shutdown: &Shutdown, work: impl std::future::Future<Output = ()> + Send + 'static) {
    let stop = shutdown.clone();
    tokio::spawn(async move {
        tokio::select! {
            () = work => {},
            () = stop.wait() => {},
        }
    });
}
