//! Which events a status change is worth (SPEC section 5). Pure.

use crate::api::{Condition, find_condition};
use crate::types::conditions::CA_CERT_READY;

use super::conditions::ready_transition;
use super::connector::CaFacts;

/// One event to record on the Connector.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventPlan {
    pub warning: bool,
    pub reason: String,
    pub note: String,
}

/// Events for a Connector whose conditions go from `stored` to `new`: the Ready
/// transition, and a Warning when its CA Secret becomes missing or invalid.
pub fn connector_events(stored: &[Condition], new: &[Condition], ca: &CaFacts) -> Vec<EventPlan> {
    let mut events = Vec::new();
    if let Some(event) = ready_transition(stored, new) {
        events.push(EventPlan {
            warning: event.warning,
            reason: event.reason,
            note: event.message,
        });
    }
    let ca_state = |c: &[Condition]| {
        find_condition(c, CA_CERT_READY).map(|c| (c.status.clone(), c.reason.clone()))
    };
    if ca_state(stored) != ca_state(new) {
        let warning = |reason: &str, note: String| EventPlan {
            warning: true,
            reason: reason.to_string(),
            note,
        };
        match ca {
            CaFacts::NotFound { name } => events.push(warning(
                "CACertSecretNotFound",
                format!("secrets {name:?} not found"),
            )),
            CaFacts::Invalid { name } => events.push(warning(
                "InvalidCACert",
                format!("Secret {name:?} contains invalid PEM data"),
            )),
            CaFacts::InvalidName { name } => events.push(warning(
                "InvalidCACert",
                format!("{name:?} is not a valid Secret name"),
            )),
            CaFacts::NoRef | CaFacts::Valid { .. } => {}
        }
    }
    events
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decide::conditions::{Desired, merge};

    #[test]
    fn ca_events_only_when_the_ca_condition_changes() {
        let now = crate::testing::now();
        let valid = merge(&[], &[Desired::ok(CA_CERT_READY, "Valid", "")], &now);
        let missing = merge(
            &valid,
            &[Desired::failed(CA_CERT_READY, "SecretNotFound", "")],
            &now,
        );
        let facts = CaFacts::NotFound { name: "ca".into() };
        let events = connector_events(&valid, &missing, &facts);
        assert_eq!(
            events,
            vec![EventPlan {
                warning: true,
                reason: "CACertSecretNotFound".into(),
                note: r#"secrets "ca" not found"#.into()
            }]
        );
        assert!(connector_events(&missing, &missing, &facts).is_empty());
    }
}
