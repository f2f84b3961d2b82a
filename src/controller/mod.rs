//! `connectors-operator run`: the ConnectorClass and Connector controllers.
//!
//! Each reconcile is observe (fetch what is referenced, run probes) -> decide (pure,
//! `crate::status`) -> act (write only what differs).

pub mod class;
pub mod connector;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kube::Client;
use rand::Rng;

use crate::probe::{CompiledClass, HttpProber, ProbeSettings};
use crate::validation::FieldError;

/// Operator settings (flags and environment variables of `run`).
#[derive(Clone, Debug)]
pub struct Settings {
    pub probe: ProbeSettings,
    /// Periodic re-probe interval (±10% jitter).
    pub probe_interval: Duration,
    /// First retry delay after a failure; doubles up to `probe_interval`.
    pub min_backoff: Duration,
    pub cluster_domain: String,
    /// Namespace of the operator: global CA Secrets and the Lease live here.
    pub namespace: String,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("object has no {0}")]
    MissingField(&'static str),
}

impl Error {
    /// Label for the errors metric.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Kube(_) => "kube",
            Error::MissingField(_) => "missing_field",
        }
    }
}

type CompiledEntry = Arc<Result<Arc<CompiledClass>, Vec<FieldError>>>;

/// Shared state of both controllers.
pub struct Context {
    pub client: Client,
    pub settings: Settings,
    pub prober: HttpProber,
    /// Compiled classes keyed by (uid, generation): compile once per generation.
    compiled: Mutex<HashMap<(String, i64), CompiledEntry>>,
    /// Consecutive failures per object key, for exponential backoff.
    failures: Mutex<HashMap<String, u32>>,
}

impl Context {
    pub fn new(client: Client, settings: Settings) -> Self {
        let prober = HttpProber::new(settings.probe.clone());
        Context {
            client,
            settings,
            prober,
            compiled: Mutex::default(),
            failures: Mutex::default(),
        }
    }

    /// The compiled class for its current generation, compiling it once.
    pub fn compiled(&self, class: &crate::api::ConnectorClass) -> CompiledEntry {
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
}

/// Now, to the second: stored times have second precision, so comparing a fresh
/// status with the stored one stays exact.
pub fn now() -> k8s_openapi::apimachinery::pkg::apis::meta::v1::Time {
    use k8s_openapi::jiff::{Timestamp, Unit};
    let now = Timestamp::now();
    k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(now.round(Unit::Second).unwrap_or(now))
}

/// Runs both controllers until a shutdown signal.
pub async fn run(client: Client, settings: Settings) {
    use futures::StreamExt;
    use k8s_openapi::api::core::v1::{Secret, Service};
    use kube::api::Api;
    use kube::core::PartialObjectMeta;
    use kube::runtime::reflector::ObjectRef;
    use kube::runtime::{Controller, WatchStreamExt, watcher};

    use crate::api::{Connector, ConnectorClass};

    let ctx = Arc::new(Context::new(client.clone(), settings.clone()));
    let classes = Controller::new(
        Api::<ConnectorClass>::all(client.clone()),
        watcher::Config::default(),
    )
    .shutdown_on_signal()
    .run(class::reconcile, error_policy_class, ctx.clone())
    .for_each(|_| futures::future::ready(()));

    let connectors = Controller::new(
        Api::<Connector>::all(client.clone()),
        watcher::Config::default(),
    );
    let store = connectors.store();
    let by_class = store.clone();
    let by_secret = store;
    let operator_namespace = settings.namespace.clone();
    let secret_events = watcher(
        Api::<PartialObjectMeta<Secret>>::all(client.clone()),
        watcher::Config::default(),
    )
    .touched_objects();
    let connectors = connectors
        .owns(
            Api::<Service>::all(client.clone()),
            watcher::Config::default().labels(connector::CONNECTOR_LABEL),
        )
        .watches(
            Api::<ConnectorClass>::all(client.clone()),
            watcher::Config::default(),
            move |class| {
                let name = class.metadata.name.clone().unwrap_or_default();
                by_class
                    .state()
                    .into_iter()
                    .filter(|c| c.spec.connector_class_name == name)
                    .map(|c| ObjectRef::from_obj(&*c))
                    .collect::<Vec<_>>()
            },
        )
        .watches_stream(secret_events, move |secret| {
            let name = secret.metadata.name.clone().unwrap_or_default();
            let namespace = secret.metadata.namespace.clone().unwrap_or_default();
            let global = namespace == operator_namespace
                && secret
                    .metadata
                    .labels
                    .as_ref()
                    .and_then(|l| l.get(crate::observe::GLOBAL_CA_LABEL))
                    .is_some();
            by_secret
                .state()
                .into_iter()
                .filter(|c| {
                    global
                        || (c.metadata.namespace.as_deref() == Some(namespace.as_str())
                            && (c.secret_ref().and_then(|r| r.name.as_deref())
                                == Some(name.as_str())
                                || c.spec.ca_cert_secret_ref.as_ref().map(|r| r.name.as_str())
                                    == Some(name.as_str())))
                })
                .map(|c| ObjectRef::from_obj(&*c))
                .collect::<Vec<_>>()
        })
        .shutdown_on_signal()
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
    kube::runtime::controller::Action::requeue(
        ctx.next_check(&format!("connector/{namespace}/{name}"), false),
    )
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
