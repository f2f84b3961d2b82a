//! Knative-style conditions: building, aggregating, and merging with what is stored so
//! that `lastTransitionTime` only moves when a condition's status changes.

use crate::types::conditions::READY;
pub use crate::types::conditions::{FALSE, TRUE, UNKNOWN};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::api::Condition;

/// A desired condition before it is merged with the stored one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Desired {
    pub type_: &'static str,
    pub status: &'static str,
    pub reason: String,
    pub message: String,
    pub severity: Option<&'static str>,
}

impl Desired {
    pub fn ok(type_: &'static str, reason: &str, message: impl Into<String>) -> Self {
        Self::new(type_, TRUE, reason, message)
    }

    pub fn failed(type_: &'static str, reason: &str, message: impl Into<String>) -> Self {
        Self::new(type_, FALSE, reason, message)
    }

    pub fn unknown(type_: &'static str, reason: &str, message: impl Into<String>) -> Self {
        Self::new(type_, UNKNOWN, reason, message)
    }

    fn new(
        type_: &'static str,
        status: &'static str,
        reason: &str,
        message: impl Into<String>,
    ) -> Self {
        Desired {
            type_,
            status,
            reason: reason.to_string(),
            message: message.into(),
            severity: None,
        }
    }

    pub fn with_severity(mut self, severity: &'static str) -> Self {
        self.severity = Some(severity);
        self
    }
}

/// The `Ready` aggregate: first False dependent (its reason and message), else first
/// Unknown dependent, else True.
pub fn aggregate_ready(dependents: &[Desired]) -> Desired {
    let first = |status: &str| dependents.iter().find(|c| c.status == status);
    if let Some(c) = first(FALSE) {
        Desired::failed(READY, &c.reason, c.message.clone())
    } else if let Some(c) = first(UNKNOWN) {
        Desired::unknown(READY, &c.reason, c.message.clone())
    } else {
        Desired::ok(READY, "", "")
    }
}

/// Merges desired conditions with stored ones: keeps the stored `lastTransitionTime`
/// when the status did not change (across restarts too, since it comes from the
/// object), stamps `now` otherwise. Order follows `desired`.
pub fn merge(stored: &[Condition], desired: &[Desired], now: &Time) -> Vec<Condition> {
    desired
        .iter()
        .map(|d| {
            let previous = stored.iter().find(|c| c.type_ == d.type_);
            let last_transition_time = match previous {
                Some(p) if p.status == d.status && p.last_transition_time.is_some() => {
                    p.last_transition_time.clone()
                }
                _ => Some(now.clone()),
            };
            Condition {
                type_: d.type_.to_string(),
                status: d.status.to_string(),
                severity: d.severity.map(str::to_string),
                last_transition_time,
                reason: non_empty(&d.reason),
                message: non_empty(&d.message),
            }
        })
        .collect()
}

fn non_empty(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_string())
}

/// The Event to record when the Ready condition changes: Normal `Ready` on coming
/// back from False (not on a first Ready), Warning with the condition's reason on becoming False (from True, Unknown or
/// nothing). None otherwise.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReadyEvent {
    pub warning: bool,
    pub reason: String,
    pub message: String,
}

pub fn ready_transition(stored: &[Condition], merged: &[Condition]) -> Option<ReadyEvent> {
    let was = stored
        .iter()
        .find(|c| c.type_ == READY)
        .map(|c| c.status.as_str());
    let now = merged.iter().find(|c| c.type_ == READY)?;
    match (was, now.status.as_str()) {
        // Coming back is worth a Normal event; a first Ready is not (SPEC section 5:
        // at scale that event would cost as much as the status write).
        (Some(FALSE), TRUE) => Some(ReadyEvent {
            warning: false,
            reason: "Ready".into(),
            message: "Connector is ready".into(),
        }),
        (_, TRUE) => None,
        // Becoming not ready (also on first sight) is worth a Warning; staying so is not.
        (was, FALSE) if was != Some(FALSE) => Some(ReadyEvent {
            warning: true,
            reason: now.reason.clone().unwrap_or_else(|| "NotReady".into()),
            message: now.message.clone().unwrap_or_default(),
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(secs: i64) -> Time {
        Time(k8s_openapi::jiff::Timestamp::from_second(secs).unwrap())
    }

    #[test]
    fn last_transition_time_moves_only_on_status_change() {
        let first = merge(&[], &[Desired::unknown("A", "Checking", "")], &t(1));
        let same = merge(
            &first,
            &[Desired::unknown("A", "Other", "new message")],
            &t(2),
        );
        assert_eq!(same[0].last_transition_time, Some(t(1)));
        assert_eq!(same[0].reason.as_deref(), Some("Other"));
        let changed = merge(&same, &[Desired::ok("A", "", "")], &t(3));
        assert_eq!(changed[0].last_transition_time, Some(t(3)));
        assert_eq!(changed[0].reason, None);
    }

    #[test]
    fn ready_takes_first_false_then_first_unknown() {
        let deps = [
            Desired::ok("A", "", ""),
            Desired::unknown("B", "Checking", "wait"),
            Desired::failed("C", "Broken", "because"),
        ];
        assert_eq!(
            aggregate_ready(&deps),
            Desired::failed("Ready", "Broken", "because")
        );
        assert_eq!(
            aggregate_ready(&deps[..2]),
            Desired::unknown("Ready", "Checking", "wait")
        );
        assert_eq!(aggregate_ready(&deps[..1]).status, TRUE);
    }

    #[test]
    fn events_only_on_ready_transitions() {
        let ready = merge(&[], &[Desired::ok("Ready", "", "")], &t(1));
        let broken = merge(
            &ready,
            &[Desired::failed("Ready", "ConnectionFailed", "down")],
            &t(2),
        );
        assert_eq!(ready_transition(&[], &ready), None, "first Ready: no event");
        assert_eq!(ready_transition(&ready, &ready), None);
        let e = ready_transition(&ready, &broken).unwrap();
        assert!(e.warning);
        assert_eq!(e.reason, "ConnectionFailed");
        assert_eq!(ready_transition(&broken, &broken), None);
        let first = ready_transition(&[], &broken).unwrap();
        assert!(first.warning);
        assert_eq!(first.reason, "ConnectionFailed");
        let back = ready_transition(&broken, &ready).unwrap();
        assert_eq!((back.warning, back.reason.as_str()), (false, "Ready"));
        let unknown = merge(&[], &[Desired::unknown("Ready", "Checking", "")], &t(1));
        assert_eq!(
            ready_transition(&unknown, &ready),
            None,
            "Unknown is no Ready loss"
        );
    }
}
