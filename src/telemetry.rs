//! Metrics (Prometheus text format), `/healthz` and `/readyz`, and logging set-up.
//!
//! Label values are object kinds, class names, probe kinds and failure reasons: never
//! a message, URL or anything that could carry a secret.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::probe::{ProbeOutcome, ProbeReport};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    pub kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    pub kind: &'static str,
    pub error: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProbeLabels {
    pub class: String,
    pub probe: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProbeResultLabels {
    pub class: String,
    pub probe: &'static str,
    /// `passed` or a failure reason (`ConnectionFailed`, ...).
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AdmissionLabels {
    pub kind: &'static str,
    /// `allowed`, `denied` or `error` (the request could not be read).
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SyncResultLabels {
    /// `synced` or a failure reason (`EmptyResult`, `SearchFailed`, ...).
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SyncObjectLabels {
    /// `user` or `group`.
    pub kind: &'static str,
    /// `created`, `updated`, `invalidated`, `pruned`, `unchanged`, `skipped`, `conflict`.
    pub action: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TriggerLabels {
    /// `timer` (the next expiry came) or `change` (a User changed).
    pub trigger: &'static str,
}

fn long_seconds_histogram() -> Histogram {
    // 10 ms .. ~20 min
    Histogram::new(exponential_buckets(0.01, 2.0, 18))
}

/// One request the operator's client sent to the apiserver.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ApiRequestLabels {
    /// `get`, `list`, `watch`, `create`, `update`, `patch`, `apply`, `delete`, `other`.
    pub verb: &'static str,
    /// `secrets`, `connectors/status`, `leases`...: the path's resource, never a name.
    pub resource: String,
}

impl ApiRequestLabels {
    /// Classifies a request by its method, path, query and content type (as the
    /// apiserver's own `apiserver_request_total` does).
    pub fn of(method: &http::Method, uri: &http::Uri, content_type: Option<&str>) -> Self {
        let segments: Vec<&str> = uri.path().split('/').filter(|s| !s.is_empty()).collect();
        let rest = match segments.as_slice() {
            ["api", _version, rest @ ..] | ["apis", _, _version, rest @ ..] => rest,
            _ => &[][..],
        };
        // `namespaces/{ns}/{resource}...`, unless the namespace itself is the object.
        let rest = match rest {
            ["namespaces", _, resource, more @ ..] => {
                let mut r = vec![*resource];
                r.extend_from_slice(more);
                r
            }
            other => other.to_vec(),
        };
        let (resource, named) = match rest.as_slice() {
            [] => ("".to_string(), false),
            [resource] => (resource.to_string(), false),
            [resource, _name] => (resource.to_string(), true),
            [resource, _name, sub, ..] => (format!("{resource}/{sub}"), true),
        };
        let watch = uri
            .query()
            .is_some_and(|q| q.split('&').any(|p| p == "watch=true" || p == "watch=1"));
        let verb = match *method {
            http::Method::GET if watch => "watch",
            http::Method::GET if named => "get",
            http::Method::GET => "list",
            http::Method::POST => "create",
            http::Method::PUT => "update",
            http::Method::PATCH if content_type == Some("application/apply-patch+yaml") => "apply",
            http::Method::PATCH => "patch",
            http::Method::DELETE => "delete",
            _ => "other",
        };
        ApiRequestLabels { verb, resource }
    }
}

/// Counts every request a client sends, by verb and resource.
pub fn count_api_requests<B>(
    metrics: Arc<Metrics>,
) -> tower::util::MapRequestLayer<impl Fn(http::Request<B>) -> http::Request<B> + Clone> {
    tower::util::MapRequestLayer::new(move |request: http::Request<B>| {
        let content_type = request
            .headers()
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok());
        let labels = ApiRequestLabels::of(request.method(), request.uri(), content_type);
        metrics.api_requests.get_or_create(&labels).inc();
        request
    })
}

fn seconds_histogram() -> Histogram {
    // 1 ms .. ~16 s
    Histogram::new(exponential_buckets(0.001, 2.0, 15))
}

/// Every metric the operator exports, prefixed `connectors_operator_`.
pub struct Metrics {
    registry: Registry,
    pub reconciles: Family<KindLabels, Counter>,
    pub reconcile_errors: Family<ErrorLabels, Counter>,
    pub reconcile_duration: Family<KindLabels, Histogram, fn() -> Histogram>,
    pub reconciles_in_flight: Family<KindLabels, Gauge>,
    pub status_writes: Family<KindLabels, Counter>,
    pub service_writes: Counter,
    pub events: Counter,
    pub probes: Family<ProbeResultLabels, Counter>,
    pub probe_duration: Family<ProbeLabels, Histogram, fn() -> Histogram>,
    pub probes_shared: Counter,
    pub probes_deferred: Counter,
    pub probes_waiting: Gauge,
    pub leader: Gauge,
    pub admission_reviews: Family<AdmissionLabels, Counter>,
    pub directory_syncs: Family<SyncResultLabels, Counter>,
    pub directory_sync_duration: Histogram,
    pub directory_sync_objects: Family<SyncObjectLabels, Counter>,
    pub user_validity_checks: Family<TriggerLabels, Counter>,
    pub user_disables: Counter,
    pub api_requests: Family<ApiRequestLabels, Counter>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("connectors_operator");
        let m = Metrics {
            reconciles: Family::default(),
            reconcile_errors: Family::default(),
            reconcile_duration: Family::new_with_constructor(seconds_histogram),
            reconciles_in_flight: Family::default(),
            status_writes: Family::default(),
            service_writes: Counter::default(),
            events: Counter::default(),
            probes: Family::default(),
            probe_duration: Family::new_with_constructor(seconds_histogram),
            probes_shared: Counter::default(),
            probes_deferred: Counter::default(),
            probes_waiting: Gauge::default(),
            leader: Gauge::default(),
            admission_reviews: Family::default(),
            directory_syncs: Family::default(),
            directory_sync_duration: long_seconds_histogram(),
            directory_sync_objects: Family::default(),
            user_validity_checks: Family::default(),
            user_disables: Counter::default(),
            api_requests: Family::default(),
            registry: Registry::default(),
        };
        register(&mut registry, &m);
        Metrics { registry, ..m }
    }
}

/// Registers every metric of `m` under its name and help text.
fn register(registry: &mut Registry, m: &Metrics) {
    registry.register(
        "reconciles",
        "Reconciles run, by kind",
        m.reconciles.clone(),
    );
    registry.register(
        "reconcile_errors",
        "Reconciles that failed, by kind and error",
        m.reconcile_errors.clone(),
    );
    registry.register(
        "reconcile_duration_seconds",
        "Reconcile duration, probes included",
        m.reconcile_duration.clone(),
    );
    registry.register(
        "reconciles_in_flight",
        "Reconciles running now (the work queue's active part)",
        m.reconciles_in_flight.clone(),
    );
    registry.register(
        "status_writes",
        "Status writes sent to the API server",
        m.status_writes.clone(),
    );
    registry.register(
        "service_writes",
        "Proxy Service creates and updates",
        m.service_writes.clone(),
    );
    registry.register("events", "Events recorded", m.events.clone());
    registry.register(
        "apiserver_requests",
        "Requests sent to the apiserver, by verb and resource (watches included)",
        m.api_requests.clone(),
    );
    registry.register(
        "probes",
        "Probes run, by class, probe and result",
        m.probes.clone(),
    );
    registry.register(
        "probe_duration_seconds",
        "Probe duration including the wait for a concurrency permit",
        m.probe_duration.clone(),
    );
    registry.register(
        "probes_shared",
        "Liveness probes answered by another Connector's identical request",
        m.probes_shared.clone(),
    );
    registry.register(
        "probes_deferred",
        "Reconciles put back because the liveness request they share was still pending",
        m.probes_deferred.clone(),
    );
    registry.register(
        "probes_waiting",
        "Probes waiting for a concurrency permit (the probe queue depth)",
        m.probes_waiting.clone(),
    );
    registry.register(
        "leader",
        "1 while this process holds the leader Lease",
        m.leader.clone(),
    );
    registry.register(
        "admission_reviews",
        "Admission reviews answered by the webhook, by kind and result",
        m.admission_reviews.clone(),
    );
    register_identity(registry, m);
}

/// The identity controller's metrics (directory sync, User validity).
fn register_identity(registry: &mut Registry, m: &Metrics) {
    registry.register(
        "directory_syncs",
        "LDAP directory syncs run, by result",
        m.directory_syncs.clone(),
    );
    registry.register(
        "directory_sync_duration_seconds",
        "LDAP directory sync duration (searches and writes)",
        m.directory_sync_duration.clone(),
    );
    registry.register(
        "directory_sync_objects",
        "Users and Groups handled by directory syncs, by kind and action",
        m.directory_sync_objects.clone(),
    );
    registry.register(
        "user_validity_checks",
        "User validity evaluations, by trigger (timer: the next expiry came; change: a User changed)",
        m.user_validity_checks.clone(),
    );
    registry.register(
        "user_disables",
        "Users disabled because expired.end passed",
        m.user_disables.clone(),
    );
}

impl Metrics {
    pub fn record_probe(&self, class: &str, report: &ProbeReport) {
        let probe = report.kind.as_str();
        let result = match &report.outcome {
            ProbeOutcome::Passed => "passed",
            ProbeOutcome::Failed { reason, .. } => reason.as_str(),
        };
        self.probes
            .get_or_create(&ProbeResultLabels {
                class: class.to_string(),
                probe,
                result,
            })
            .inc();
        self.probe_duration
            .get_or_create(&ProbeLabels {
                class: class.to_string(),
                probe,
            })
            .observe(report.elapsed.as_secs_f64());
        if report.shared {
            self.probes_shared.inc();
        }
    }

    /// Prometheus text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

async fn metrics(State(metrics): State<Arc<Metrics>>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        metrics.encode(),
    )
}

/// Serves `/metrics`, `/healthz` and `/readyz` until `shutdown` completes. Started
/// once the API client exists, so both probes answer `ok` while the process runs: a
/// standby replica is ready too (it only waits for the Lease).
pub async fn serve(
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = Router::new()
        .route("/metrics", get(self::metrics))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(|| async { "ok" }))
        .with_state(metrics);
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(%addr, "serving /metrics, /healthz and /readyz");
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

/// Log output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// The log target that prints response bodies: kube-client logs the whole body of a
/// response it cannot decode at WARN (and a body can hold Secret data). Only its
/// errors are kept, whatever `RUST_LOG` says; its submodules (request traces, which
/// carry paths only) are not affected.
const BODY_LOGGING_TARGET: &str = "kube_client::client";

/// Whether an event may be logged: not a body-logging one.
fn not_a_body_log(meta: &tracing::Metadata<'_>) -> bool {
    meta.target() != BODY_LOGGING_TARGET || *meta.level() == tracing::Level::ERROR
}

/// The log filter: `RUST_LOG` (default `info`).
pub fn log_filter(rust_log: Option<&str>) -> tracing_subscriber::EnvFilter {
    rust_log
        .and_then(|directives| tracing_subscriber::EnvFilter::try_new(directives).ok())
        .unwrap_or_else(|| tracing_subscriber::EnvFilter::new("info"))
}

/// Installs the global subscriber: level from `RUST_LOG` (default `info`), minus the
/// body logs of [`BODY_LOGGING_TARGET`].
pub fn init_logging(format: LogFormat) {
    use tracing_subscriber::prelude::*;
    let registry = tracing_subscriber::registry()
        .with(log_filter(std::env::var("RUST_LOG").ok().as_deref()))
        .with(tracing_subscriber::filter::filter_fn(not_a_body_log));
    let layer = tracing_subscriber::fmt::layer();
    match format {
        LogFormat::Text => registry.with(layer).init(),
        LogFormat::Json => registry.with(layer.json().flatten_event(true)).init(),
    }
}

/// A timer for one reconcile: counts it, tracks it as in flight, and records its
/// duration when dropped.
pub struct ReconcileTimer<'a> {
    metrics: &'a Metrics,
    kind: &'static str,
    started: std::time::Instant,
}

impl<'a> ReconcileTimer<'a> {
    pub fn start(metrics: &'a Metrics, kind: &'static str) -> Self {
        metrics.reconciles.get_or_create(&KindLabels { kind }).inc();
        metrics
            .reconciles_in_flight
            .get_or_create(&KindLabels { kind })
            .inc();
        ReconcileTimer {
            metrics,
            kind,
            started: std::time::Instant::now(),
        }
    }
}

impl Drop for ReconcileTimer<'_> {
    fn drop(&mut self) {
        let labels = KindLabels { kind: self.kind };
        self.metrics
            .reconciles_in_flight
            .get_or_create(&labels)
            .dec();
        self.metrics
            .reconcile_duration
            .get_or_create(&labels)
            .observe(Duration::as_secs_f64(&self.started.elapsed()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_requests_are_classified_like_the_apiserver_does() {
        let of = |method: &str, uri: &str, content_type: Option<&str>| {
            let labels = ApiRequestLabels::of(
                &method.parse().unwrap(),
                &uri.parse().unwrap(),
                content_type,
            );
            format!("{} {}", labels.verb, labels.resource)
        };
        let apply = Some("application/apply-patch+yaml");
        assert_eq!(
            of("GET", "/api/v1/namespaces/a/secrets/creds", None),
            "get secrets"
        );
        assert_eq!(
            of("GET", "/api/v1/secrets?watch=true&rv=1", None),
            "watch secrets"
        );
        assert_eq!(
            of("GET", "/api/v1/namespaces/a/services?limit=500", None),
            "list services"
        );
        assert_eq!(
            of("POST", "/api/v1/namespaces/a/services", None),
            "create services"
        );
        assert_eq!(
            of(
                "PATCH",
                "/apis/connectors.alauda.io/v1alpha1/namespaces/a/connectors/c/status?fieldManager=x",
                apply
            ),
            "apply connectors/status"
        );
        assert_eq!(
            of(
                "PUT",
                "/apis/coordination.k8s.io/v1/namespaces/a/leases/l",
                None
            ),
            "update leases"
        );
        assert_eq!(of("GET", "/api/v1/namespaces/a", None), "get namespaces");
        assert_eq!(
            of(
                "PATCH",
                "/apis/events.k8s.io/v1/namespaces/a/events/e",
                None
            ),
            "patch events"
        );
        assert_eq!(of("GET", "/version", None), "list ");
    }

    /// A subscriber with the operator's filter, writing into a buffer.
    fn logged(rust_log: &str, emit: impl FnOnce()) -> String {
        #[derive(Clone, Default)]
        struct Buffer(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);
        impl std::io::Write for Buffer {
            fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(bytes);
                Ok(bytes.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        use tracing_subscriber::prelude::*;
        let buffer = Buffer::default();
        let writer = buffer.clone();
        let subscriber = tracing_subscriber::registry()
            .with(log_filter(Some(rust_log)))
            .with(tracing_subscriber::filter::filter_fn(not_a_body_log))
            .with(tracing_subscriber::fmt::layer().with_writer(move || writer.clone()));
        tracing::subscriber::with_default(subscriber, emit);
        String::from_utf8_lossy(&buffer.0.lock().unwrap()).into_owned()
    }

    #[test]
    fn response_bodies_are_not_logged_even_at_trace() {
        let out = logged("trace", || {
            tracing::warn!(target: "kube_client::client", "{{\"data\":{{\"token\":\"c2VjcmV0\"}}}}, error");
            tracing::warn!(target: "connectors_operator", "still logged");
            tracing::debug!(target: "kube_client::client::builder", "GET /api/v1/namespaces/a/secrets/creds");
        });
        assert!(!out.contains("c2VjcmV0"), "{out}");
        assert!(out.contains("still logged"), "{out}");
        assert!(out.contains("/secrets/creds"), "request traces stay: {out}");
    }
    use crate::probe::{FailureReason, ProbeKind};

    #[test]
    fn exposition_names_results_by_reason_and_never_the_message() {
        let m = Metrics::default();
        m.record_probe(
            "git",
            &ProbeReport {
                kind: ProbeKind::Auth,
                outcome: ProbeOutcome::failed(
                    FailureReason::AuthenticationFailed,
                    "401 for https://user:s3cr3t@example.com",
                ),
                elapsed: Duration::from_millis(3),
                shared: false,
                judged: true,
            },
        );
        {
            let _t = ReconcileTimer::start(&m, "Connector");
        }
        let text = m.encode();
        assert!(
            text.contains(
                r#"connectors_operator_probes_total{class="git",probe="auth",result="AuthenticationFailed"} 1"#
            ),
            "{text}"
        );
        assert!(text.contains(r#"connectors_operator_reconciles_total{kind="Connector"} 1"#));
        assert!(text.contains(r#"connectors_operator_reconciles_in_flight{kind="Connector"} 0"#));
        assert!(!text.contains("s3cr3t"));
    }
}
