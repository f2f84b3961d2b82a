//! `connectors-operator run`: the ConnectorClass and Connector controllers.
//!
//! Each reconcile is observe (`crate::observe`, through [`objects::ClusterObjects`])
//! -> decide (pure, `crate::decide`) -> act ([`act`]: write only what differs).

pub mod act;
pub mod class;
pub mod connector;
mod memo;
mod objects;
pub mod secret_cache;
mod service_index;
mod stored_apart;
mod watches;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::Client;
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::{ObjectRef, Store};
use rand::Rng;

use crate::api::{Connector, ConnectorClass};
use crate::observe::ca_bundle_from_secret;
use crate::probe::{
    CompiledClass, HttpProber, ProbeRunner, ProbeSettings, RunnerSettings, TrustBundle,
};
use crate::runtime::{
    CachesReady, CachesStopped, FairShare, KeyLocks, LeaseSettings, Shutdown, backoff_delay,
    run_while_leader,
};
use crate::telemetry::Metrics;
use crate::types::FieldError;

pub use act::MANAGER;
pub use memo::{OwnServiceWrites, PendingStatusWrites, ProbeMemo};
use secret_cache::{SecretCache, SecretKey};
pub use service_index::ProxyServiceIndex;
pub use stored_apart::StoredApart;

/// Operator settings (flags and environment variables of `run`).
#[derive(Clone, Debug)]
pub struct Settings {
    pub probe: ProbeSettings,
    /// Concurrency limits of probes; the sharing windows are derived from the
    /// interval and `min_backoff`.
    pub runner: RunnerSettings,
    /// Periodic re-probe interval (±10% jitter).
    pub probe_interval: Duration,
    /// First retry delay after a failure; doubles up to `probe_interval`.
    pub min_backoff: Duration,
    /// Reconciles run at once per controller.
    pub workers: u16,
    pub cluster_domain: String,
    /// Namespace of the operator: global CA Secrets and the Lease live here.
    pub namespace: String,
    /// `None` runs without leader election (a single replica).
    pub leader_election: Option<LeaseSettings>,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("object has no {0}")]
    MissingField(&'static str),
    #[error("{0}")]
    CacheStopped(#[from] CachesStopped),
    #[error("compiling the class stopped unexpectedly")]
    CompileAborted,
    #[error("{0} took longer than its deadline")]
    Deadline(&'static str),
}

impl Error {
    /// Label for the errors metric.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Kube(_) => "kube",
            Error::MissingField(_) => "missing_field",
            Error::CacheStopped(_) => "cache_stopped",
            Error::CompileAborted => "compile_aborted",
            Error::Deadline(_) => "deadline",
        }
    }
}

/// A class compiled once per generation: the compiled form, or its field errors.
pub type CompiledEntry = Arc<Result<Arc<CompiledClass>, Vec<FieldError>>>;

/// Shared state of both controllers.
pub struct Context {
    pub client: Client,
    pub settings: Settings,
    pub runner: ProbeRunner,
    pub metrics: Arc<Metrics>,
    pub recorder: Recorder,
    /// Every ConnectorClass (few, small): read by each Connector reconcile.
    pub classes: Store<ConnectorClass>,
    /// The labelled global CA Secrets of the operator's namespace (and nothing else).
    pub global_cas: Store<Secret>,
    /// The proxy Services the operator created (labelled), as far as it compares them.
    pub services: Arc<ProxyServiceIndex>,
    /// Open once the caches above hold their first full list.
    pub caches_ready: CachesReady,
    /// Compiled classes keyed by (uid, generation): compile once per generation.
    compiled: Mutex<HashMap<(String, i64), CompiledEntry>>,
    /// Consecutive failures per object key, for exponential backoff.
    failures: Mutex<HashMap<String, u32>>,
    /// Last probe results per Connector, reused while the inputs are unchanged.
    pub probe_memo: ProbeMemo,
    /// Proxy Service writes whose watch events must not trigger another reconcile.
    pub own_service_writes: OwnServiceWrites,
    /// Status writes the Connector cache does not show yet.
    pub pending_status: PendingStatusWrites,
    /// Conditions, labels and annotations of the cached Connectors, kept apart from
    /// kube's store.
    pub stored_apart: StoredApart,
    /// Reconciles one namespace may run at once (and so probes it may hold).
    pub namespace_share: FairShare,
    /// Referenced Secrets, kept while the metadata watch shows them unchanged.
    pub secrets: SecretCache,
    /// One apiserver read per Secret at a time.
    pub secret_reads: KeyLocks<SecretKey>,
    /// Connectors to reconcile now: their deferred liveness answer is in.
    pub answered: AnsweredConnectors,
}

/// Where a Connector whose probe was [`crate::probe::Deferred`] is sent back to the
/// controller once the answer it waits for is in (`Controller::reconcile_on`).
#[derive(Clone)]
pub struct AnsweredConnectors(futures::channel::mpsc::UnboundedSender<ObjectRef<Connector>>);

impl AnsweredConnectors {
    pub fn channel() -> (
        Self,
        futures::channel::mpsc::UnboundedReceiver<ObjectRef<Connector>>,
    ) {
        let (sender, receiver) = futures::channel::mpsc::unbounded();
        (AnsweredConnectors(sender), receiver)
    }

    /// Reconciles `connector` again once `deferred`'s answer is in.
    pub fn on_answer(&self, deferred: &crate::probe::Deferred, connector: ObjectRef<Connector>) {
        let sender = self.0.clone();
        // A closed channel means the controller is shutting down: nothing to wake.
        deferred.when_answered(move || drop(sender.unbounded_send(connector)));
    }
}

/// The caches fed by watches that every Connector reconcile reads.
pub struct Caches {
    pub classes: Store<ConnectorClass>,
    pub global_cas: Store<Secret>,
    pub services: Arc<ProxyServiceIndex>,
}

impl Context {
    pub fn new(
        client: Client,
        settings: Settings,
        metrics: Arc<Metrics>,
        caches: Caches,
        answered: AnsweredConnectors,
    ) -> Self {
        let Caches {
            classes,
            global_cas,
            services,
        } = caches;
        let runner = ProbeRunner::new(
            HttpProber::new(settings.probe.clone()),
            RunnerSettings {
                share_for: settings.probe_interval,
                share_failure_for: settings.min_backoff.min(settings.probe_interval),
                defer_shared_after: Some(DEFER_SHARED_AFTER),
                ..settings.runner.clone()
            },
        );
        let recorder = Recorder::new(
            client.clone(),
            Reporter {
                controller: MANAGER.into(),
                instance: settings
                    .leader_election
                    .as_ref()
                    .map(|l| l.identity.clone()),
            },
        );
        let caches_ready = {
            let (classes, global_cas, services) =
                (classes.clone(), global_cas.clone(), services.clone());
            CachesReady::spawn(async move {
                classes.wait_until_ready().await.is_ok()
                    && global_cas.wait_until_ready().await.is_ok()
                    && {
                        services.wait_until_listed().await;
                        true
                    }
            })
        };
        let namespace_share = FairShare::new(namespace_share(&settings));
        Context {
            client,
            settings,
            runner,
            metrics,
            recorder,
            classes,
            global_cas,
            services,
            caches_ready,
            compiled: Mutex::default(),
            failures: Mutex::default(),
            probe_memo: ProbeMemo::default(),
            own_service_writes: OwnServiceWrites::default(),
            pending_status: PendingStatusWrites::default(),
            stored_apart: StoredApart::default(),
            namespace_share,
            secrets: SecretCache::default(),
            secret_reads: KeyLocks::default(),
            answered,
        }
    }

    /// The longest a Connector reconcile may run: two probes (each waiting for a
    /// permit at most as long as it may run) and a handful of API requests.
    pub fn reconcile_deadline(&self) -> Duration {
        self.settings.probe.timeout * 4 + API_REQUEST_DEADLINE * 4
    }

    /// The compiled class for its current generation, compiling it once, off the
    /// async workers (hostile classes are bounded by the engine, not by this thread).
    pub async fn compiled(&self, class: &Arc<ConnectorClass>) -> Result<CompiledEntry, Error> {
        let key = (
            class.metadata.uid.clone().unwrap_or_default(),
            class.metadata.generation.unwrap_or_default(),
        );
        if let Ok(cache) = self.compiled.lock()
            && let Some(entry) = cache.get(&key)
        {
            return Ok(entry.clone());
        }
        let owned = class.clone();
        let compiled = tokio::task::spawn_blocking(move || {
            crate::validation::validate_class(&owned).map(Arc::new)
        })
        .await
        .map_err(|_| Error::CompileAborted)?;
        let entry: CompiledEntry = Arc::new(compiled);
        if let Ok(mut cache) = self.compiled.lock() {
            // Older generations of the same class are dropped.
            cache.retain(|(uid, _), _| uid != &key.0);
            cache.insert(key, entry.clone());
        }
        Ok(entry)
    }

    /// Global CA bundles: Secrets in the operator's namespace labelled as CA certs
    /// (from the cache, in name order so the bundle and its id are stable).
    pub fn global_trust(&self) -> TrustBundle {
        let mut secrets = self.global_cas.state();
        secrets.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
        secrets
            .iter()
            .filter_map(|s| ca_bundle_from_secret(s).ok())
            .fold(TrustBundle::empty(), |acc, b| acc.merged(&b))
    }

    /// When to look again: the probe interval with ±10% jitter after success, and
    /// exponential backoff from `min_backoff` up to the interval after a failure.
    pub fn next_check(&self, key: &str, healthy: bool) -> Duration {
        let failures = match self.failures.lock() {
            Ok(mut map) if healthy => {
                map.remove(key);
                0
            }
            Ok(mut map) => {
                let n = map.entry(key.to_string()).or_insert(0);
                *n = n.saturating_add(1);
                *n
            }
            Err(_) => 0,
        };
        backoff_delay(
            failures,
            self.settings.min_backoff,
            self.settings.probe_interval,
            rand::rng().random_range(-0.1..=0.1),
        )
    }

    /// Forgets an object that no longer exists.
    pub fn forget(&self, key: &str) {
        if let Ok(mut map) = self.failures.lock() {
            map.remove(key);
        }
        self.probe_memo.forget(key);
        self.secrets.forget(key);
        self.pending_status.forget(key);
    }
}

/// How long a reconcile waits for another Connector's identical liveness request
/// before it frees its worker: a healthy tool answers well within it, a hanging one
/// would hold the worker for the whole probe timeout (docs/benchmarks.md).
const DEFER_SHARED_AFTER: Duration = Duration::from_secs(1);

/// The longest one apiserver request of a reconcile may take.
pub const API_REQUEST_DEADLINE: Duration = Duration::from_secs(15);

/// One apiserver request, bounded by [`API_REQUEST_DEADLINE`].
pub async fn api_call<T>(
    what: &'static str,
    request: impl std::future::Future<Output = Result<T, kube::Error>>,
) -> Result<T, Error> {
    match tokio::time::timeout(API_REQUEST_DEADLINE, request).await {
        Ok(result) => Ok(result?),
        Err(_) => Err(Error::Deadline(what)),
    }
}

/// A namespace's share of the workers: a quarter of the workers or of the probe
/// permits, whichever is smaller, so a namespace full of hanging Connectors leaves
/// three quarters to the others.
fn namespace_share(settings: &Settings) -> usize {
    let workers = usize::from(settings.workers);
    (workers.min(settings.runner.max_concurrent) / 4).max(1)
}

/// Runs the controllers until `shutdown`: right away without leader election, or
/// while this process holds the Lease. Losing the Lease stops the controllers (no
/// write after that) and goes back to waiting for it.
pub async fn run(client: Client, settings: Settings, metrics: Arc<Metrics>, shutdown: Shutdown) {
    let leader = metrics.leader.clone();
    run_while_leader(
        client.clone(),
        &settings.namespace.clone(),
        settings.leader_election.clone(),
        shutdown.clone(),
        move |leading| {
            leader.set(i64::from(leading));
        },
        || {
            run_controllers(
                client.clone(),
                settings.clone(),
                metrics.clone(),
                shutdown.clone(),
            )
        },
    )
    .await;
}

/// In-flight reconciles get this long to finish after a shutdown signal.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Both controllers, until `shutdown`: in-flight reconciles get [`SHUTDOWN_GRACE`] to
/// finish; whatever is still running then is dropped (a status write is atomic, so a
/// dropped reconcile loses nothing: the next leader redoes it).
async fn run_controllers(
    client: Client,
    settings: Settings,
    metrics: Arc<Metrics>,
    shutdown: Shutdown,
) {
    let deadline = {
        let shutdown = shutdown.clone();
        async move {
            shutdown.wait().await;
            tokio::time::sleep(SHUTDOWN_GRACE).await;
            tracing::warn!(
                "reconciles still running after the shutdown grace period; dropping them"
            );
        }
    };
    tokio::select! {
        _ = watches::controllers(client, settings, metrics, shutdown) => {}
        _ = deadline => {}
    }
}
