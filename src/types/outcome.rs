//! What a probe is and what it found: shared by the probe engine, the decide step
//! and metrics.

use std::fmt;

/// Which probe: the class's `livenessProbe`, or the `authProbes[]` entry of the
/// Connector's `spec.auth.name`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ProbeKind {
    Liveness,
    Auth,
}

impl ProbeKind {
    /// Metric label value.
    pub fn as_str(self) -> &'static str {
        match self {
            ProbeKind::Liveness => "liveness",
            ProbeKind::Auth => "auth",
        }
    }
}

/// Why a probe failed; the condition reason.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FailureReason {
    /// Transport, DNS, TLS or timeout error.
    ConnectionFailed,
    /// The response was rejected (liveness, and API probes of either kind).
    ProbeFailed,
    /// The tool refused the credentials (auth probes).
    AuthenticationFailed,
    /// A template, the Rego generator or the CEL expression could not be evaluated.
    ProbeError,
    /// The destination resolves only to addresses probes may not reach (loopback,
    /// link-local, cloud metadata; see `probe::DestinationPolicy`).
    DestinationRefused,
}

impl FailureReason {
    pub fn as_str(self) -> &'static str {
        match self {
            FailureReason::ConnectionFailed => "ConnectionFailed",
            FailureReason::ProbeFailed => "ProbeFailed",
            FailureReason::AuthenticationFailed => "AuthenticationFailed",
            FailureReason::ProbeError => "ProbeError",
            FailureReason::DestinationRefused => "DestinationRefused",
        }
    }
}

impl fmt::Display for FailureReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The result of one probe. A message never holds a Secret value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProbeOutcome {
    Passed,
    Failed {
        reason: FailureReason,
        message: String,
    },
}

impl ProbeOutcome {
    pub fn failed(reason: FailureReason, message: impl Into<String>) -> Self {
        ProbeOutcome::Failed {
            reason,
            message: message.into(),
        }
    }

    pub fn is_passed(&self) -> bool {
        matches!(self, ProbeOutcome::Passed)
    }

    pub fn reason(&self) -> Option<FailureReason> {
        match self {
            ProbeOutcome::Passed => None,
            ProbeOutcome::Failed { reason, .. } => Some(*reason),
        }
    }

    /// The failure message; empty when passed.
    pub fn message(&self) -> &str {
        match self {
            ProbeOutcome::Passed => "",
            ProbeOutcome::Failed { message, .. } => message,
        }
    }
}
