//! `connectors-operator run`: the ConnectorClass and Connector controllers.
//!
//! Each reconcile is observe (fetch what is referenced, run probes) -> decide (pure,
//! `crate::status`) -> act (write only what differs).

pub mod class;
pub mod connector;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Secret, Service};
use kube::Client;
use kube::api::Api;
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::Store;
use rand::Rng;

use crate::api::{Connector, ConnectorClass};
use crate::probe::{CompiledClass, HttpProber, ProbeRunner, ProbeSettings, RunnerSettings};
use crate::telemetry::Metrics;
use crate::validation::FieldError;

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

/// Leader election with a coordination.k8s.io Lease in the operator's namespace.
#[derive(Clone, Debug)]
pub struct LeaseSettings {
    pub name: String,
    pub identity: String,
    /// How long a lease lasts without renewal: the longest hand-over after a crash.
    pub duration: Duration,
    /// Renewed this long before it expires.
    pub grace: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("object has no {0}")]
    MissingField(&'static str),
    #[error("the {0} cache stopped")]
    CacheStopped(&'static str),
}

impl Error {
    /// Label for the errors metric.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Kube(_) => "kube",
            Error::MissingField(_) => "missing_field",
            Error::CacheStopped(_) => "cache_stopped",
        }
    }
}

type CompiledEntry = Arc<Result<Arc<CompiledClass>, Vec<FieldError>>>;

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
    /// Open once both caches above hold their first full list.
    pub caches_ready: CachesReady,
    /// Compiled classes keyed by (uid, generation): compile once per generation.
    compiled: Mutex<HashMap<(String, i64), CompiledEntry>>,
    /// Consecutive failures per object key, for exponential backoff.
    failures: Mutex<HashMap<String, u32>>,
    /// Last probe results per Connector, reused while the inputs are unchanged.
    pub probe_memo: connector::ProbeMemo,
    /// Proxy Service writes whose watch events must not trigger another reconcile.
    pub own_service_writes: connector::OwnServiceWrites,
}

impl Context {
    pub fn new(
        client: Client,
        settings: Settings,
        metrics: Arc<Metrics>,
        classes: Store<ConnectorClass>,
        global_cas: Store<Secret>,
    ) -> Self {
        let runner = ProbeRunner::new(
            HttpProber::new(settings.probe.clone()),
            RunnerSettings {
                share_for: settings.probe_interval,
                share_failure_for: settings.min_backoff.min(settings.probe_interval),
                ..settings.runner.clone()
            },
        );
        let recorder = Recorder::new(
            client.clone(),
            Reporter {
                controller: class::MANAGER.into(),
                instance: settings
                    .leader_election
                    .as_ref()
                    .map(|l| l.identity.clone()),
            },
        );
        let caches_ready = CachesReady::spawn(classes.clone(), global_cas.clone());
        Context {
            client,
            settings,
            runner,
            metrics,
            recorder,
            classes,
            global_cas,
            caches_ready,
            compiled: Mutex::default(),
            failures: Mutex::default(),
            probe_memo: connector::ProbeMemo::default(),
            own_service_writes: connector::OwnServiceWrites::default(),
        }
    }

    /// The compiled class for its current generation, compiling it once.
    pub fn compiled(&self, class: &ConnectorClass) -> CompiledEntry {
        let key = (
            class.metadata.uid.clone().unwrap_or_default(),
            class.metadata.generation.unwrap_or_default(),
        );
        if let Ok(cache) = self.compiled.lock()
            && let Some(entry) = cache.get(&key)
        {
            return entry.clone();
        }
        let entry: CompiledEntry = Arc::new(crate::validation::validate_class(class).map(Arc::new));
        if let Ok(mut cache) = self.compiled.lock() {
            // Older generations of the same class are dropped.
            cache.retain(|(uid, _), _| uid != &key.0);
            cache.insert(key, entry.clone());
        }
        entry
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
    }
}

/// Open once the class and global CA caches hold their first full list.
///
/// `Store::wait_until_ready` wakes only its most recent waiter (kube-runtime keeps one
/// oneshot receiver), so concurrent reconciles waiting on it directly could hang
/// forever. Exactly one task waits on each store here and publishes the result on a
/// watch channel, which wakes every waiter.
#[derive(Clone)]
pub struct CachesReady(tokio::sync::watch::Receiver<bool>);

impl CachesReady {
    pub fn spawn(classes: Store<ConnectorClass>, global_cas: Store<Secret>) -> Self {
        let (ready, rx) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            if classes.wait_until_ready().await.is_ok()
                && global_cas.wait_until_ready().await.is_ok()
            {
                let _ = ready.send(true);
            }
            // Otherwise `ready` is dropped and waiters get an error.
        });
        CachesReady(rx)
    }

    pub async fn wait(&self) -> Result<(), Error> {
        self.0
            .clone()
            .wait_for(|ready| *ready)
            .await
            .map(|_| ())
            .map_err(|_| Error::CacheStopped("ConnectorClass or global CA Secret"))
    }
}

/// Now, to the second: stored times have second precision, so comparing a fresh
/// status with the stored one stays exact.
pub fn now() -> k8s_openapi::apimachinery::pkg::apis::meta::v1::Time {
    use k8s_openapi::jiff::{Timestamp, Unit};
    let now = Timestamp::now();
    k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(now.round(Unit::Second).unwrap_or(now))
}

/// A shutdown flag that many futures can wait on.
#[derive(Clone)]
pub struct Shutdown(tokio::sync::watch::Receiver<bool>);

impl Shutdown {
    /// Set on SIGTERM or Ctrl-C.
    pub fn on_signal() -> Self {
        let (tx, rx) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            wait_for_signal().await;
            tracing::info!("shutting down");
            let _ = tx.send(true);
        });
        Shutdown(rx)
    }

    /// Set when the returned sender sends `true` or is dropped (tests, embedding).
    pub fn manual() -> (tokio::sync::watch::Sender<bool>, Self) {
        let (tx, rx) = tokio::sync::watch::channel(false);
        (tx, Shutdown(rx))
    }

    pub async fn wait(mut self) {
        let _ = self.0.wait_for(|down| *down).await;
    }
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Runs the controllers until `shutdown`: right away without leader election, or
/// while this process holds the Lease. Losing the Lease stops the controllers (no
/// write after that) and goes back to waiting for it.
pub async fn run(client: Client, settings: Settings, metrics: Arc<Metrics>, shutdown: Shutdown) {
    let Some(lease) = settings.leader_election.clone() else {
        metrics.leader.set(1);
        run_controllers(client, settings, metrics, shutdown).await;
        return;
    };
    let manager = match kube_lease_manager::LeaseManagerBuilder::new(client.clone(), &lease.name)
        .with_namespace(&settings.namespace)
        .with_identity(&lease.identity)
        .with_duration(lease.duration.as_secs().max(1))
        .with_grace(lease.grace.as_secs().max(1))
        .build()
        .await
    {
        Ok(m) => m,
        Err(e) => {
            tracing::error!(error = %e, "cannot set up leader election");
            return;
        }
    };
    let (mut leading, task) = manager.watch().await;
    loop {
        tracing::info!(identity = %lease.identity, lease = %lease.name, "waiting for the leader Lease");
        tokio::select! {
            _ = leading.wait_for(|l| *l) => {}
            _ = shutdown.clone().wait() => break,
        }
        tracing::info!(identity = %lease.identity, "became the leader");
        metrics.leader.set(1);
        let lost = async {
            let _ = leading.wait_for(|l| !*l).await;
        };
        let stop = tokio::select! {
            _ = run_controllers(client.clone(), settings.clone(), metrics.clone(), shutdown.clone()) => true,
            _ = lost => false,
        };
        metrics.leader.set(0);
        if stop {
            break;
        }
        tracing::warn!(identity = %lease.identity, "lost the leader Lease; controllers stopped");
    }
    // Closing the channel releases the Lease, so a standby takes over at once.
    drop(leading);
    if let Ok(Err(e)) = task.await {
        tracing::warn!(error = %e, "could not release the Lease");
    }
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
        _ = controllers(client, settings, metrics, shutdown) => {}
        _ = deadline => {}
    }
}

async fn controllers(
    client: Client,
    settings: Settings,
    metrics: Arc<Metrics>,
    shutdown: Shutdown,
) {
    use futures::{StreamExt, TryStreamExt};
    use kube::core::PartialObjectMeta;
    use kube::runtime::reflector::ObjectRef;
    use kube::runtime::{Controller, WatchStreamExt, predicates, reflector, watcher};

    let config = kube::runtime::controller::Config::default().concurrency(settings.workers);
    let (class_store, class_writer) = reflector::store::<ConnectorClass>();
    let class_events = reflector(
        class_writer,
        watcher(
            Api::<ConnectorClass>::all(client.clone()),
            watcher::Config::default(),
        ),
    )
    .backoff(WatchBackoff::default())
    .touched_objects();
    let (ca_store, ca_writer) = reflector::store::<Secret>();
    let ca_events = reflector(
        ca_writer,
        watcher(
            Api::<Secret>::namespaced(client.clone(), &settings.namespace),
            watcher::Config::default().labels(crate::observe::GLOBAL_CA_LABEL),
        ),
    )
    .backoff(WatchBackoff::default())
    .touched_objects();
    let ctx = Arc::new(Context::new(
        client.clone(),
        settings.clone(),
        metrics,
        class_store,
        ca_store,
    ));

    let classes = Controller::new(
        Api::<ConnectorClass>::all(client.clone()),
        watcher::Config::default(),
    )
    .with_config(config.clone())
    .trigger_backoff(WatchBackoff::default())
    .graceful_shutdown_on(shutdown.clone().wait())
    .run(class::reconcile, error_policy_class, ctx.clone())
    .for_each(|_| futures::future::ready(()));

    // Status writes do not change the generation: filtering on it keeps a status
    // write from triggering another reconcile (and another round of probes).
    let (connector_store, connector_writer) = reflector::store::<Connector>();
    let connector_events = reflector(
        connector_writer,
        watcher(
            Api::<Connector>::all(client.clone()),
            watcher::Config::default(),
        )
        .modify(trim_cached_connector),
    )
    .backoff(WatchBackoff::default())
    .inspect({
        let ctx = ctx.clone();
        move |event| {
            if let Ok(watcher::Event::Delete(c)) = event {
                ctx.forget(&connector::key_of(c));
            }
        }
    })
    .touched_objects()
    .predicate_filter(predicates::generation, Default::default());
    let by_class = connector_store.clone();
    let by_secret = connector_store.clone();
    let all = connector_store.clone();
    // Metadata only: which Secret changed, never its data.
    let secret_events = watcher(
        Api::<PartialObjectMeta<Secret>>::all(client.clone()),
        watcher::Config::default(),
    )
    .backoff(WatchBackoff::default())
    .touched_objects();
    // Owned proxy Services (metadata only, as `owns` watches them), minus the echo of
    // the operator's own writes.
    let service_events = watcher(
        Api::<PartialObjectMeta<Service>>::all(client.clone()),
        watcher::Config::default().labels(connector::CONNECTOR_LABEL),
    )
    .backoff(WatchBackoff::default())
    .touched_objects()
    .try_filter({
        let ctx = ctx.clone();
        move |service| futures::future::ready(!ctx.own_service_writes.is_echo(&service.metadata))
    });
    let connectors = Controller::for_stream(connector_events, connector_store)
        .with_config(config)
        .trigger_backoff(WatchBackoff::default())
        .owns_stream(service_events)
        .watches_stream(class_events, move |class| {
            let name = class.metadata.name.clone().unwrap_or_default();
            by_class
                .state()
                .into_iter()
                .filter(|c| c.spec.connector_class_name == name)
                .map(|c| ObjectRef::from_obj(&*c))
                .collect::<Vec<_>>()
        })
        .watches_stream(ca_events, move |_| {
            all.state()
                .into_iter()
                .map(|c| ObjectRef::from_obj(&*c))
                .collect::<Vec<_>>()
        })
        .watches_stream(secret_events, move |secret| {
            let name = secret.metadata.name.clone().unwrap_or_default();
            let namespace = secret.metadata.namespace.clone().unwrap_or_default();
            by_secret
                .state()
                .into_iter()
                .filter(|c| {
                    c.metadata.namespace.as_deref() == Some(namespace.as_str())
                        && connector::references_secret(c, &name)
                })
                .map(|c| ObjectRef::from_obj(&*c))
                .collect::<Vec<_>>()
        })
        .graceful_shutdown_on(shutdown.wait())
        .run(connector::reconcile, error_policy_connector, ctx)
        .for_each(|_| futures::future::ready(()));
    futures::join!(classes, connectors);
}

fn error_policy_class(
    class: Arc<crate::api::ConnectorClass>,
    error: &Error,
    ctx: Arc<Context>,
) -> kube::runtime::controller::Action {
    tracing::warn!(class = class.metadata.name.as_deref().unwrap_or_default(), error = %error, kind = error.metric_label(), "reconcile failed");
    ctx.metrics
        .reconcile_errors
        .get_or_create(&crate::telemetry::ErrorLabels {
            kind: "ConnectorClass",
            error: error.metric_label(),
        })
        .inc();
    let key = format!(
        "class/{}",
        class.metadata.name.as_deref().unwrap_or_default()
    );
    kube::runtime::controller::Action::requeue(ctx.next_check(&key, false))
}

fn error_policy_connector(
    connector: Arc<crate::api::Connector>,
    error: &Error,
    ctx: Arc<Context>,
) -> kube::runtime::controller::Action {
    let namespace = connector.metadata.namespace.as_deref().unwrap_or_default();
    let name = connector.metadata.name.as_deref().unwrap_or_default();
    tracing::warn!(namespace, name, error = %error, kind = error.metric_label(), "reconcile failed");
    ctx.metrics
        .reconcile_errors
        .get_or_create(&crate::telemetry::ErrorLabels {
            kind: "Connector",
            error: error.metric_label(),
        })
        .inc();
    kube::runtime::controller::Action::requeue(
        ctx.next_check(&connector::key_of(&connector), false),
    )
}

/// Backoff of every watch stream and of each controller's merged trigger stream:
/// 250 ms doubling up to 5 s (±10% jitter), back to 250 ms after any event.
///
/// kube-runtime's default (0.8 s doubling to 30 s, jittered up to about twice that,
/// reset only after 120 s without error) stalled the Connector controller for up to
/// two minutes after an apiserver restart: its five watches fail together, their
/// errors pile onto the one shared trigger backoff, and while that sleeps no watch is
/// polled, so nothing is relisted (e2e `faults.rs`, apiserver restart test).
#[derive(Clone, Debug)]
pub struct WatchBackoff {
    next: Duration,
}

impl WatchBackoff {
    pub const MIN: Duration = Duration::from_millis(250);
    pub const MAX: Duration = Duration::from_secs(5);
}

impl Default for WatchBackoff {
    fn default() -> Self {
        WatchBackoff { next: Self::MIN }
    }
}

impl Iterator for WatchBackoff {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        let delay = self.next;
        self.next = (self.next * 2).min(Self::MAX);
        Some(delay.mul_f64(1.0 + rand::rng().random_range(-0.1..=0.1)))
    }
}

impl kube::runtime::utils::Backoff for WatchBackoff {
    fn reset(&mut self) {
        self.next = Self::MIN;
    }
}

/// Drops what the operator never reads from a cached Connector: managedFields and
/// kubectl's last-applied copy of the object. With 10,000 Connectors this is a large
/// part of the store's memory.
fn trim_cached_connector(connector: &mut Connector) {
    use kube::ResourceExt;
    connector.managed_fields_mut().clear();
    connector
        .annotations_mut()
        .remove("kubectl.kubernetes.io/last-applied-configuration");
}

/// Pure schedule: `failures == 0` gives the interval; otherwise min * 2^(n-1) capped at
/// the interval; `jitter` in [-0.1, 0.1] spreads the load.
pub fn backoff_delay(failures: u32, min: Duration, interval: Duration, jitter: f64) -> Duration {
    let base = if failures == 0 {
        interval
    } else {
        let factor = 2u32.saturating_pow(failures.saturating_sub(1).min(20));
        min.saturating_mul(factor).min(interval)
    };
    base.mul_f64(1.0 + jitter)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Many reconciles wait at once before the caches are filled; all must go on.
    #[tokio::test]
    async fn every_waiter_sees_the_caches_become_ready() {
        use kube::runtime::{reflector, watcher};
        let (classes, mut class_writer) = reflector::store::<ConnectorClass>();
        let (cas, mut ca_writer) = reflector::store::<Secret>();
        let gate = CachesReady::spawn(classes, cas);
        let waiters: Vec<_> = (0..8)
            .map(|_| {
                let gate = gate.clone();
                tokio::spawn(async move { gate.wait().await.is_ok() })
            })
            .collect();
        tokio::task::yield_now().await;
        for event in [watcher::Event::Init, watcher::Event::InitDone] {
            class_writer.apply_watcher_event(&event);
        }
        for event in [watcher::Event::Init, watcher::Event::InitDone] {
            ca_writer.apply_watcher_event(&event);
        }
        for waiter in waiters {
            let done = tokio::time::timeout(Duration::from_secs(5), waiter).await;
            assert!(matches!(done, Ok(Ok(true))), "a waiter was never woken");
        }
    }

    #[test]
    fn watch_backoff_is_capped_and_resets() {
        use kube::runtime::utils::Backoff;
        let mut backoff = WatchBackoff::default();
        let delays: Vec<Duration> = backoff.by_ref().take(10).collect();
        assert!(delays[0] <= WatchBackoff::MIN.mul_f64(1.1));
        assert!(delays.iter().all(|d| *d <= WatchBackoff::MAX.mul_f64(1.1)));
        assert!(delays[9] >= WatchBackoff::MAX.mul_f64(0.9), "{delays:?}");
        backoff.reset();
        assert!(
            backoff
                .next()
                .is_some_and(|d| d <= WatchBackoff::MIN.mul_f64(1.1))
        );
    }

    #[test]
    fn cached_connectors_keep_everything_the_operator_reads() {
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::ManagedFieldsEntry;
        let mut connector = Connector::new(
            "git",
            serde_json::from_value(serde_json::json!({
                "connectorClassName": "git",
                "address": "https://github.com",
            }))
            .expect("spec"),
        );
        connector.metadata.managed_fields = Some(vec![ManagedFieldsEntry::default()]);
        connector.metadata.annotations = Some(
            [
                ("kubectl.kubernetes.io/last-applied-configuration", "{}"),
                ("team", "a"),
            ]
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .into(),
        );
        let before = connector.clone();
        trim_cached_connector(&mut connector);
        assert_eq!(connector.metadata.managed_fields, Some(vec![]));
        assert_eq!(
            connector.metadata.annotations,
            Some([("team".to_string(), "a".to_string())].into())
        );
        assert_eq!(
            (connector.spec, connector.status),
            (before.spec, before.status)
        );
    }

    #[test]
    fn backoff_doubles_up_to_the_interval() {
        let min = Duration::from_secs(10);
        let interval = Duration::from_secs(300);
        let delays: Vec<u64> = (0..8)
            .map(|n| backoff_delay(n, min, interval, 0.0).as_secs())
            .collect();
        assert_eq!(delays, [300, 10, 20, 40, 80, 160, 300, 300]);
        assert_eq!(backoff_delay(0, min, interval, 0.1).as_secs(), 330);
    }
}
