//! Judging a response (SPEC section 4, "Success").

use super::cel_check::CelVerdict;
use super::{FailureReason, HttpResponse, ProbeKind, ProbeOutcome, ProbeRequest};

/// API probe: 200 passes; 401/403 are `AuthenticationFailed` for auth probes; any
/// other status fails. HTTP probe: `response.cel` must give `true`; without it, any
/// 2xx passes. Messages are scrubbed of the request's secret values and bounded.
pub(crate) async fn judge(
    kind: ProbeKind,
    request: &ProbeRequest,
    response: &HttpResponse,
) -> ProbeOutcome {
    let check = &request.check;
    let status = response.status;
    let auth = kind == ProbeKind::Auth;
    let outcome = if check.api {
        match status {
            200 => ProbeOutcome::Passed,
            401 | 403 if auth => auth_failed(format!("status code {status}")),
            _ => ProbeOutcome::failed(FailureReason::ProbeFailed, format!("status code {status}")),
        }
    } else if let Some(cel) = &check.cel {
        match cel.evaluate(response).await {
            CelVerdict::True => ProbeOutcome::Passed,
            CelVerdict::False if auth => auth_failed("response check returned false".to_string()),
            CelVerdict::False => {
                ProbeOutcome::failed(FailureReason::ProbeFailed, "response check returned false")
            }
            CelVerdict::NotBool(t) => ProbeOutcome::failed(
                FailureReason::ProbeError,
                format!(
                    "{}.response.cel: the expression returned {t}, not a bool",
                    check.field
                ),
            ),
            CelVerdict::Error(e) => ProbeOutcome::failed(
                FailureReason::ProbeError,
                format!("{}.response.cel: evaluation failed: {e}", check.field),
            ),
        }
    } else if (200..300).contains(&status) {
        ProbeOutcome::Passed
    } else if auth {
        auth_failed(format!("status code {status}"))
    } else {
        ProbeOutcome::failed(FailureReason::ProbeFailed, format!("status code {status}"))
    };
    match outcome {
        ProbeOutcome::Failed { reason, message } => ProbeOutcome::Failed {
            reason,
            message: request.bounded(&message),
        },
        passed => passed,
    }
}

fn auth_failed(what: String) -> ProbeOutcome {
    ProbeOutcome::failed(
        FailureReason::AuthenticationFailed,
        format!("Authentication failed: {what}"),
    )
}
