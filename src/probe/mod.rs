//! Probe engine: turns a Connector, its ConnectorClass and its Secret into probe
//! requests, sends them, and judges the responses (SPEC section 4).
//!
//! Pure part (no I/O, unit-tested): [`CompiledClass`] compiles a class once per
//! generation; it builds [`ProbeRequest`]s and judges [`HttpResponse`]s.
//! I/O part: [`HttpProber`] sends one request (redirects, TLS trust, timeout, body cap).
//!
//! INTERFACE CONTRACT (used by the controllers and the `check` CLI; keep these names):
//! - `ProbeSettings` (+ Default: timeout 10s, body cap 1 MiB, 10 redirects)
//! - `SecretMaterial { name, type_, data: BTreeMap<String, String> }` (decoded; Debug redacts)
//! - `TrustBundle` (extra CA PEMs; cheap to clone; `id()` for caching clients)
//! - `CompiledClass::compile(&ConnectorClass) -> Result<CompiledClass, Vec<FieldError>>`
//! - `ProbeTarget { connector, secret, class_api_url }`
//! - `CompiledClass::request(kind, &ProbeTarget) -> Option<Result<ProbeRequest, ProbeOutcome>>`
//!   (`None`: the class has no probe of that kind / no auth probe for the chosen auth)
//! - `CompiledClass::judge(kind, &ProbeRequest, &HttpResponse).await -> ProbeOutcome`
//! - `HttpProber::new(settings)`, `HttpProber::send(&ProbeRequest, &TrustBundle) -> Result<HttpResponse, ProbeOutcome>`
//! - `run_probe(&CompiledClass, kind, &ProbeTarget, &HttpProber, &TrustBundle) -> Option<ProbeOutcome>`
//! - `ProbeOutcome::{Passed, Failed { reason: FailureReason, message }}`
//! - `FailureReason::{ConnectionFailed, ProbeFailed, AuthenticationFailed, ProbeError,
//!   DestinationRefused}` with `as_str()`
//! - `ProbeRequest::dedup_key()`: equal for identical liveness requests (method, URL,
//!   headers, body, redirect flag), so Connectors can share one liveness request.
//!
//! Also offered: `CompiledClass::compile_with(&class, &ProbeSettings)` (evaluation
//! bounds), `HttpProber::reach(url, &TrustBundle) -> Result<u16, String>` (reachability
//! of the class API/proxy: any status counts), `TrustBundle::{from_pems, with_pems,
//! merged, empty}`, `parse_pem_certs`, `ProbeRequest::{display_url, scrub}`.
//!
//! Decisions: liveness templates see no `.Secret` (liveness carries no credentials);
//! a header whose template renders empty is not sent; when a probe sets both `http`
//! and `api`, `http` is used. Secret values (4 bytes or longer) are scrubbed from every
//! outcome message, in every form they are sent in (see `secret::Redactor`); messages
//! are at most 1 KiB. `ProbeSettings::destinations` decides which addresses probes
//! may reach (`DestinationRefused` otherwise).

mod bounds;
mod build;
mod cel_check;
mod cel_names;
mod compile;
mod destination;
mod engine_pool;
mod http;
mod judge;
mod live;
mod rego_auth;
mod request;
mod runner;
mod secret;
mod settings;
mod template;
mod trust;

#[cfg(test)]
pub(crate) mod tests;

use crate::api::Connector;

pub use crate::types::{FailureReason, ProbeKind, ProbeOutcome};
pub use compile::CompiledClass;
pub use destination::{DestinationPolicy, Refused, check_url, find_refusal};
pub use http::{HttpProber, HttpResponse, probe_client};
pub use request::{ProbeRequest, RequestHeader};
pub use runner::{Deferred, ProbeReport, ProbeRunner, RunnerSettings};
pub use secret::SecretMaterial;
pub use settings::ProbeSettings;
pub use trust::{TrustBundle, TrustError, parse_pem_certs};

/// What a probe is about: the Connector, its Secret (already read, same namespace,
/// decoded) and the class's resolved API URL (`status.api.address.url`).
#[derive(Clone, Copy, Debug)]
pub struct ProbeTarget<'a> {
    pub connector: &'a Connector,
    pub secret: Option<&'a SecretMaterial>,
    pub class_api_url: Option<&'a str>,
}

impl<'a> ProbeTarget<'a> {
    pub fn new(connector: &'a Connector) -> Self {
        ProbeTarget {
            connector,
            secret: None,
            class_api_url: None,
        }
    }
}

/// Builds, sends and judges one probe on its own (a fresh [`ProbeRunner`]: nothing
/// shared with other calls). `None` when the class has no probe of that kind for the
/// Connector.
pub async fn run_probe(
    class: &CompiledClass,
    kind: ProbeKind,
    target: &ProbeTarget<'_>,
    prober: &HttpProber,
    trust: &TrustBundle,
) -> Option<ProbeOutcome> {
    // A fresh runner shares nothing, so it never defers.
    ProbeRunner::new(prober.clone(), RunnerSettings::default())
        .run(class, kind, target, trust)
        .await
        .ok()
        .flatten()
        .map(|report| report.outcome)
}

#[cfg(test)]
mod static_checks {
    use super::*;

    fn send_sync<T: Send + Sync>() {}

    #[test]
    fn shared_types_are_send_and_sync() {
        send_sync::<CompiledClass>();
        send_sync::<ProbeRequest>();
        send_sync::<HttpProber>();
        send_sync::<TrustBundle>();
        send_sync::<HttpResponse>();
    }
}
