//! The data plane's metrics (SPEC-proxy section 9), prefixed `connectors_proxy_` or
//! `connectors_api_` by process. No label names a Connector (there may be 10,000);
//! classes, modes, codes and kinds only.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub mode: &'static str,
    pub code: u16,
    /// The ConnectorClass, or empty when the request named no known Connector.
    pub class: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ModeLabels {
    pub mode: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DirectionLabels {
    /// `upstream` (client to tool) or `downstream` (tool to client).
    pub direction: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    pub kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CacheLabels {
    pub cache: &'static str,
    /// `hit` or `miss`.
    pub result: &'static str,
}

fn latency_histogram() -> Histogram {
    // 0.1 ms .. ~100 s
    Histogram::new(exponential_buckets(0.0001, 2.0, 21))
}

pub struct DataPlaneMetrics {
    registry: Registry,
    pub requests: Family<RequestLabels, Counter>,
    pub first_byte: Family<ModeLabels, Histogram, fn() -> Histogram>,
    pub bytes: Family<DirectionLabels, Counter>,
    pub auth: Family<ResultLabels, Counter>,
    pub upstream_errors: Family<KindLabels, Counter>,
    pub open_connections: Gauge,
    pub cache: Family<CacheLabels, Counter>,
    pub apiserver_requests: Family<KindLabels, Counter>,
}

impl DataPlaneMetrics {
    /// Metrics named `{prefix}_...`.
    pub fn new(prefix: &str) -> Self {
        let m = DataPlaneMetrics {
            registry: Registry::default(),
            requests: Family::default(),
            first_byte: Family::new_with_constructor(latency_histogram),
            bytes: Family::default(),
            auth: Family::default(),
            upstream_errors: Family::default(),
            open_connections: Gauge::default(),
            cache: Family::default(),
            apiserver_requests: Family::default(),
        };
        let mut registry = Registry::with_prefix(prefix);
        let r = &mut registry;
        r.register(
            "requests",
            "Requests answered, by mode, status code and class",
            m.requests.clone(),
        );
        r.register(
            "first_byte_seconds",
            "Time to the response head, by mode",
            m.first_byte.clone(),
        );
        r.register(
            "body_bytes",
            "Body bytes relayed, by direction",
            m.bytes.clone(),
        );
        r.register(
            "auth_results",
            "Authentication and authorisation results",
            m.auth.clone(),
        );
        r.register(
            "upstream_errors",
            "Upstream failures by kind (connect, tls, timeout, refused)",
            m.upstream_errors.clone(),
        );
        r.register(
            "open_connections",
            "Client connections open",
            m.open_connections.clone(),
        );
        r.register(
            "cache_lookups",
            "Cache lookups by cache and result",
            m.cache.clone(),
        );
        r.register(
            "apiserver_requests",
            "Requests made to the apiserver on the request path, by kind",
            m.apiserver_requests.clone(),
        );
        DataPlaneMetrics { registry, ..m }
    }

    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }

    /// One answered request: its count by mode, code and class, and its time to the
    /// response head.
    pub fn record(&self, mode: &'static str, code: u16, class: String, start: std::time::Instant) {
        self.requests
            .get_or_create(&RequestLabels { mode, code, class })
            .inc();
        self.first_byte
            .get_or_create(&ModeLabels { mode })
            .observe(start.elapsed().as_secs_f64());
    }

    /// A request made to the apiserver on a request's path (a cache miss).
    pub fn apiserver_request(&self, kind: &'static str) {
        self.apiserver_requests
            .get_or_create(&KindLabels { kind })
            .inc();
    }

    pub fn cache_lookup(&self, cache: &'static str, hit: bool) {
        let result = if hit { "hit" } else { "miss" };
        self.cache
            .get_or_create(&CacheLabels { cache, result })
            .inc();
    }

    pub fn auth_result(&self, result: &'static str) {
        self.auth.get_or_create(&ResultLabels { result }).inc();
    }
}
