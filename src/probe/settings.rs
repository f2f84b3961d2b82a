//! Operator settings that bound one probe.

use std::time::Duration;

use super::DestinationPolicy;

/// Limits of one probe (SPEC section 4, "Limits").
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeSettings {
    /// Total deadline of one probe: connect, TLS, every redirect hop and reading the
    /// body. Default 10 s.
    pub timeout: Duration,
    /// Response bodies are read up to this many bytes; the rest is dropped and the
    /// body is judged as the truncated text. Default 1 MiB.
    pub body_cap: usize,
    /// Redirects followed at most (unless the probe sets `disableRedirect`). Default 10.
    pub max_redirects: usize,
    /// Wall-clock bound of rendering one Go template and of evaluating one Rego
    /// generator. Default 500 ms (real templates and policies take microseconds).
    pub eval_timeout: Duration,
    /// Largest output of one rendered template. Default 64 KiB.
    pub template_output_cap: usize,
    /// Which destination addresses probes may connect to. Default `Any` (the `check`
    /// CLI and tests); the running operator sets `Public` (refuses loopback,
    /// link-local and cloud-metadata addresses), or `AllowLoopback` for local demos.
    pub destinations: DestinationPolicy,
}

impl Default for ProbeSettings {
    fn default() -> Self {
        ProbeSettings {
            timeout: Duration::from_secs(10),
            body_cap: 1024 * 1024,
            max_redirects: 10,
            eval_timeout: Duration::from_millis(500),
            template_output_cap: 64 * 1024,
            destinations: DestinationPolicy::Any,
        }
    }
}
