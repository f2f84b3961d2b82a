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
//! - `CompiledClass::judge(kind, &ProbeRequest, &HttpResponse) -> ProbeOutcome`
//! - `HttpProber::new(settings)`, `HttpProber::send(&ProbeRequest, &TrustBundle) -> Result<HttpResponse, ProbeOutcome>`
//! - `run_probe(&CompiledClass, kind, &ProbeTarget, &HttpProber, &TrustBundle) -> Option<ProbeOutcome>`
//! - `ProbeOutcome::{Passed, Failed { reason: FailureReason, message }}`
//! - `FailureReason::{ConnectionFailed, ProbeFailed, AuthenticationFailed, ProbeError}` with `as_str()`
//! - `ProbeRequest::dedup_key()`: equal for identical liveness requests (method, URL,
//!   headers, body, redirect flag), so Connectors can share one liveness request.
