//! Which probes a Connector gets, decided before any request is sent (SPEC section 4):
//! observe executes the plan, the conditions read it. Pure.

use crate::api::{AuthType, Connector, ConnectorClass};
use crate::types::conditions::TRUE;
use crate::types::{ProbeKind, ProbeOutcome};

use super::connector::{SecretFacts, secret_condition};

/// The probes of one Connector and the auth type they use.
#[derive(Clone, Debug, PartialEq)]
pub struct ProbePlan<'a> {
    /// The class has a liveness probe.
    pub liveness: bool,
    /// The chosen auth type: `spec.auth.name`, else the class's first auth type.
    pub auth_type: Option<&'a AuthType>,
    /// The class has an auth probe for the chosen auth type.
    pub auth: bool,
    /// The Secret is ready, so credentials may be checked.
    pub secret_ready: bool,
}

/// The probe plan of a Connector whose class is usable.
pub fn probe_plan<'a>(
    connector: &Connector,
    class: &'a ConnectorClass,
    secret: &SecretFacts,
) -> ProbePlan<'a> {
    let auth_type = class.chosen_auth_type(connector);
    let auth = auth_type
        .and_then(|t| class.auth_probe(&t.name))
        .and_then(|p| p.probe.as_ref())
        .is_some_and(|p| p.http.is_some() || p.api.is_some());
    let liveness = class
        .spec
        .liveness_probe
        .as_ref()
        .is_some_and(|p| p.http.is_some() || p.api.is_some());
    ProbePlan {
        liveness,
        auth_type,
        auth,
        secret_ready: secret_condition(connector, class, secret).status == TRUE,
    }
}

impl ProbePlan<'_> {
    /// Whether the probe of `kind` runs, given the liveness outcome so far: the auth
    /// probe runs only when the tool is live and the Secret is ready (no credentials
    /// are sent to a tool that is down).
    pub fn runs(&self, kind: ProbeKind, liveness: Option<&ProbeOutcome>) -> bool {
        match kind {
            ProbeKind::Liveness => self.liveness,
            ProbeKind::Auth => {
                self.auth && self.secret_ready && liveness.is_none_or(ProbeOutcome::is_passed)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{class, connector};
    use crate::types::FailureReason;

    const CLASS: &str = r#"
auth:
  types:
  - {name: basicAuth, secretType: kubernetes.io/basic-auth}
  - {name: tokenAuth}
livenessProbe: {http: {path: /}}
authProbes:
- authName: basicAuth
  probe: {http: {path: /user}}
"#;

    fn found() -> SecretFacts {
        SecretFacts::Found {
            name: "creds".into(),
            type_: "kubernetes.io/basic-auth".into(),
            keys: ["username", "password"].map(String::from).into(),
        }
    }

    #[test]
    fn unnamed_auth_chooses_the_first_auth_type() {
        let class = class(CLASS);
        let plan = probe_plan(
            &connector(
                "connectorClassName: test\naddress: https://g.io\nauth: {secretRef: {name: creds}}",
            ),
            &class,
            &found(),
        );
        assert_eq!(plan.auth_type.map(|t| t.name.as_str()), Some("basicAuth"));
        assert!(plan.auth && plan.secret_ready && plan.liveness);
        assert!(plan.runs(ProbeKind::Auth, Some(&ProbeOutcome::Passed)));
    }

    #[test]
    fn named_auth_without_a_probe_runs_none() {
        let class = class(CLASS);
        let plan = probe_plan(
            &connector(
                "connectorClassName: test\naddress: https://g.io\nauth: {name: tokenAuth, secretRef: {name: creds}}",
            ),
            &class,
            &found(),
        );
        assert_eq!(plan.auth_type.map(|t| t.name.as_str()), Some("tokenAuth"));
        assert!(!plan.auth);
        assert!(!plan.runs(ProbeKind::Auth, None));
    }

    #[test]
    fn auth_waits_for_liveness_and_the_secret() {
        let class = class(CLASS);
        let c = connector(
            "connectorClassName: test\naddress: https://g.io\nauth: {name: basicAuth, secretRef: {name: creds}}",
        );
        let plan = probe_plan(&c, &class, &found());
        let down = ProbeOutcome::failed(FailureReason::ConnectionFailed, "refused");
        assert!(!plan.runs(ProbeKind::Auth, Some(&down)));
        let missing = probe_plan(
            &c,
            &class,
            &SecretFacts::NotFound {
                name: "creds".into(),
            },
        );
        assert!(!missing.runs(ProbeKind::Auth, Some(&ProbeOutcome::Passed)));
    }
}
