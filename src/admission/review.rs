//! What the webhook decides, with no I/O: given the object (and the old one on UPDATE)
//! and, for a Connector, its class as read at admission time and whether the user may
//! read the Secrets it references (SubjectAccessReview answers), the errors that reject
//! it and the warnings that do not. Every rule comes from [`crate::validation`].

use std::collections::BTreeSet;

use k8s_openapi::api::authorization::v1::SubjectAccessReviewStatus;

use crate::api::{Connector, ConnectorClass, DexConnector};
use crate::types::FieldError;
use crate::validation::identity::validate_dex;
use crate::validation::{
    CA_SECRET_NAME_FIELD, SECRET_NAME_FIELD, validate_against_class, validate_class,
    validate_connector,
};

/// The webhook's judgement of one object.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Verdict {
    /// Each one rejects the request; joined into the denial message.
    pub errors: Vec<FieldError>,
    /// Legal but suspicious; returned as admission warnings (kubectl prints them).
    pub warnings: Vec<String>,
}

impl Verdict {
    pub fn allowed(&self) -> bool {
        self.errors.is_empty()
    }
}

/// Judges a Dex Connector (`dex.coreos.com/v1`, SPEC-identity sections 1, 2): field
/// errors refuse it (on UPDATE only new ones, as for Connectors); inline secrets and
/// `insecureSkipVerify` are warnings. Rules: `validation::identity`.
pub fn review_dex_connector(new: &DexConnector, old: Option<&DexConnector>) -> Verdict {
    let judged = validate_dex(new);
    let errors = match old {
        Some(old) => only_new(judged.errors, &validate_dex(old).errors),
        None => judged.errors,
    };
    Verdict {
        errors,
        warnings: judged.warnings.iter().map(ToString::to_string).collect(),
    }
}

/// The class a Connector names, as the webhook found it.
pub enum ClassLookup<'a> {
    Found(&'a ConnectorClass),
    NotFound,
    /// Reading it failed (API error or timeout): the Connector's own rules still
    /// apply; the contract is left to the controller, as if the webhook were down.
    Unreadable(String),
}

/// Judges a Connector on CREATE (`old` is `None`) or UPDATE.
///
/// On UPDATE only errors the old object did not have reject it ("ratcheting"), so a
/// Connector that became invalid because its class changed can still get label,
/// finalizer or other unrelated edits; the controller reports the old problem in status.
pub fn review_connector(new: &Connector, old: Option<&Connector>, class: ClassLookup) -> Verdict {
    let errors = connector_errors(new, &class);
    let errors = match old {
        Some(old) if old.spec == new.spec => Vec::new(),
        Some(old) => only_new(errors, &connector_errors(old, &class)),
        None => errors,
    };
    Verdict {
        errors,
        warnings: connector_warnings(new, &class),
    }
}

/// Judges a ConnectorClass on CREATE or UPDATE (same ratcheting as Connectors).
pub fn review_class(new: &ConnectorClass, old: Option<&ConnectorClass>) -> Verdict {
    let errors = class_errors(new);
    let errors = match old {
        Some(old) if old.spec == new.spec => Vec::new(),
        Some(old) => only_new(errors, &class_errors(old)),
        None => errors,
    };
    Verdict {
        errors,
        warnings: class_warnings(new),
    }
}

/// A Secret a Connector references, whose `get` by the requesting user is checked
/// (SPEC section 6: creating a Connector must not let a user send a Secret they cannot
/// read to an address they choose).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SecretUse {
    /// The referencing field, e.g. `spec.auth.secretRef.name`.
    pub field: &'static str,
    pub namespace: String,
    pub name: String,
}

/// The answer of the SubjectAccessReview for one [`SecretUse`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SecretAccess {
    Allowed,
    /// The authorizer said no; its reason, possibly empty.
    Denied(String),
    /// The review could not be made (API error, timeout): the request is refused,
    /// since the webhook cannot tell that it is safe.
    Unchecked(String),
}

impl SecretAccess {
    /// The verdict of a SubjectAccessReview's status: allowed only when the
    /// authorizer allowed and did not also deny; no status means unchecked.
    pub fn from_status(status: Option<&SubjectAccessReviewStatus>) -> Self {
        match status {
            Some(s) if s.allowed && s.denied != Some(true) => SecretAccess::Allowed,
            Some(s) => SecretAccess::Denied(s.reason.clone().unwrap_or_default()),
            None => SecretAccess::Unchecked("the SubjectAccessReview has no status".into()),
        }
    }
}

/// The Secrets whose `get` must be checked: `spec.auth.secretRef` and
/// `spec.caCertSecretRef` (the operator reads both and uses them toward the
/// Connector's address). On UPDATE nothing is checked only when the spec is unchanged
/// (users who may edit a Connector but not read its Secret can still relabel it); any
/// spec change checks every reference, since a new address, class or auth type sends
/// the same Secret somewhere else.
pub fn secrets_to_check(new: &Connector, old: Option<&Connector>) -> Vec<SecretUse> {
    if old.is_some_and(|old| old.spec == new.spec) {
        return Vec::new();
    }
    let namespace = new.metadata.namespace.clone().unwrap_or_default();
    let auth = new.secret_ref().and_then(|r| {
        let name = r.name.clone().filter(|n| !n.is_empty())?;
        let ns = r.namespace.clone().filter(|n| !n.is_empty());
        Some(SecretUse {
            field: SECRET_NAME_FIELD,
            namespace: ns.unwrap_or_else(|| namespace.clone()),
            name,
        })
    });
    let ca = new
        .spec
        .ca_cert_secret_ref
        .as_ref()
        .filter(|r| !r.name.is_empty())
        .map(|r| SecretUse {
            field: CA_SECRET_NAME_FIELD,
            namespace: namespace.clone(),
            name: r.name.clone(),
        });
    auth.into_iter().chain(ca).collect()
}

/// The errors for the Secrets `user` may not `get`, or whose access could not be
/// checked. Names the field, the Secret and the user; never a Secret value.
pub fn secret_access_errors(user: &str, checks: &[(SecretUse, SecretAccess)]) -> Vec<FieldError> {
    let user = if user.is_empty() {
        "(unknown user)".to_string()
    } else {
        format!("{user:?}")
    };
    checks
        .iter()
        .filter_map(|(secret, access)| {
            let what = format!(
                "Secret {:?} in namespace {:?}",
                secret.name, secret.namespace
            );
            let message = match access {
                SecretAccess::Allowed => return None,
                SecretAccess::Denied(reason) => {
                    let reason = if reason.is_empty() {
                        String::new()
                    } else {
                        format!(" ({reason})")
                    };
                    format!(
                        "user {user} may not get {what}{reason}: a Connector may only reference Secrets its author can read"
                    )
                }
                SecretAccess::Unchecked(why) => format!(
                    "could not check whether user {user} may get {what} ({why}); refused until it can be checked, retry later"
                ),
            };
            Some(FieldError::new(secret.field, message))
        })
        .collect()
}

fn connector_errors(connector: &Connector, class: &ClassLookup) -> Vec<FieldError> {
    let mut errors = validate_connector(connector);
    match class {
        ClassLookup::Found(class) => errors.extend(validate_against_class(connector, class)),
        ClassLookup::NotFound if !connector.spec.connector_class_name.is_empty() => {
            errors.push(FieldError::new(
                "spec.connectorClassName",
                format!(
                    "ConnectorClass {:?} not found: create the class first",
                    connector.spec.connector_class_name
                ),
            ))
        }
        ClassLookup::NotFound | ClassLookup::Unreadable(_) => {}
    }
    errors
}

fn class_errors(class: &ConnectorClass) -> Vec<FieldError> {
    validate_class(class).err().unwrap_or_default()
}

fn only_new(errors: Vec<FieldError>, before: &[FieldError]) -> Vec<FieldError> {
    let before: BTreeSet<String> = before.iter().map(ToString::to_string).collect();
    errors
        .into_iter()
        .filter(|e| !before.contains(&e.to_string()))
        .collect()
}

fn connector_warnings(connector: &Connector, class: &ClassLookup) -> Vec<String> {
    let mut warnings = Vec::new();
    if let ClassLookup::Unreadable(why) = class {
        warnings.push(format!(
            "spec.connectorClassName: ConnectorClass {:?} could not be read ({why}); its contract was not checked",
            connector.spec.connector_class_name
        ));
    }
    let address = connector.spec.address.as_deref().unwrap_or_default();
    if let Some(secret) = connector.secret_ref().and_then(|r| r.name.as_deref())
        && address.starts_with("http://")
    {
        warnings.push(format!(
            "spec.address: {address:?} is plain http: credentials from Secret {secret:?} will cross the network unencrypted; prefer https"
        ));
    }
    if let ClassLookup::Found(class) = class
        && connector.secret_ref().is_none()
        && let Some(auth_name) = connector.auth_name()
        && let Some(auth_type) = class
            .spec
            .auth
            .iter()
            .flat_map(|a| a.types.iter().flatten())
            .find(|t| t.name == auth_name)
        && !auth_type.optional.unwrap_or(false)
    {
        warnings.push(format!(
            "spec.auth.secretRef: auth type {auth_name:?} of ConnectorClass {:?} needs a Secret; the Connector will not be Ready (SecretRequired) until one is set",
            class.metadata.name.as_deref().unwrap_or_default()
        ));
    }
    warnings
}

fn class_warnings(class: &ConnectorClass) -> Vec<String> {
    let mut warnings = Vec::new();
    for (i, probe) in class.spec.auth_probes.iter().flatten().enumerate() {
        let scheme = probe
            .probe
            .as_ref()
            .and_then(|p| p.http.as_ref())
            .and_then(|http| http.scheme.as_deref());
        if scheme.is_some_and(|s| s.eq_ignore_ascii_case("http")) {
            warnings.push(format!(
                "spec.authProbes[{i}].probe.http.scheme: \"http\" sends credentials unencrypted, whatever the Connector's address says; prefer leaving it unset"
            ));
        }
    }
    if class.spec.liveness_probe.is_none() {
        warnings.push(
            "spec.livenessProbe: not set: Connectors of this class report LivenessReady True without probing (NonLivenessProbe)".to_string(),
        );
    }
    warnings
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{class_doc as class, connector_doc as connector};

    const GIT_CLASS: &str = r#"
metadata: {name: git}
spec:
  params:
  - {name: sslVerify, type: string, default: "true"}
  auth:
    types:
    - {name: basicAuth, secretType: kubernetes.io/basic-auth}
  livenessProbe:
    http: {path: /}
  authProbes:
  - authName: basicAuth
    probe:
      http: {path: /x}
"#;

    const GOOD: &str = r#"
metadata: {name: c, namespace: ns}
spec:
  connectorClassName: git
  address: https://github.com
  auth: {name: basicAuth, secretRef: {name: s}}
"#;

    fn messages(verdict: &Verdict) -> Vec<String> {
        verdict.errors.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn valid_connector_is_allowed_without_warnings() {
        let class = class(GIT_CLASS);
        let verdict = review_connector(&connector(GOOD), None, ClassLookup::Found(&class));
        assert_eq!(verdict, Verdict::default());
    }

    #[test]
    fn unknown_class_names_the_field() {
        let verdict = review_connector(&connector(GOOD), None, ClassLookup::NotFound);
        assert_eq!(
            messages(&verdict),
            vec![
                r#"spec.connectorClassName: ConnectorClass "git" not found: create the class first"#
            ]
        );
    }

    #[test]
    fn cross_namespace_secret_is_rejected_at_admission() {
        let class = class(GIT_CLASS);
        let bad = connector(&GOOD.replace("{name: s}", "{name: s, namespace: other}"));
        let verdict = review_connector(&bad, None, ClassLookup::Found(&class));
        assert_eq!(verdict.errors.len(), 1);
        assert_eq!(verdict.errors[0].path, "spec.auth.secretRef.namespace");
    }

    #[test]
    fn update_rejects_only_new_errors() {
        let class = class(GIT_CLASS);
        // Already broken (undeclared param, e.g. after a class edit) before the update.
        let old = connector(&format!("{GOOD}  params: [{{name: gone, value: x}}]\n"));
        let mut relabelled = old.clone();
        relabelled.metadata.labels = Some([("team".to_string(), "a".to_string())].into());
        let verdict = review_connector(&relabelled, Some(&old), ClassLookup::Found(&class));
        assert!(verdict.allowed(), "{verdict:?}");

        let worse = connector(&format!(
            "{GOOD}  params: [{{name: gone, value: x}}, {{name: typo, value: y}}]\n"
        ));
        let verdict = review_connector(&worse, Some(&old), ClassLookup::Found(&class));
        assert_eq!(
            messages(&verdict),
            vec![
                r#"spec.params[1].name: "typo" is not declared by ConnectorClass "git" (declared: sslVerify)"#
            ]
        );
    }

    #[test]
    fn unreadable_class_keeps_own_rules_and_warns() {
        let cross_ns = connector(&GOOD.replace("{name: s}", "{name: s, namespace: other}"));
        let verdict =
            review_connector(&cross_ns, None, ClassLookup::Unreadable("timed out".into()));
        assert_eq!(verdict.errors.len(), 1);
        assert_eq!(verdict.errors[0].path, "spec.auth.secretRef.namespace");
        assert_eq!(
            verdict.warnings,
            vec![
                r#"spec.connectorClassName: ConnectorClass "git" could not be read (timed out); its contract was not checked"#
            ]
        );
    }

    #[test]
    fn credentials_over_plain_http_warn() {
        let class = class(GIT_CLASS);
        let plain = connector(&GOOD.replace("https://github.com", "http://git.local"));
        let verdict = review_connector(&plain, None, ClassLookup::Found(&class));
        assert!(verdict.allowed());
        assert_eq!(verdict.warnings.len(), 1);
        assert!(
            verdict.warnings[0].starts_with("spec.address: \"http://git.local\" is plain http")
        );
    }

    #[test]
    fn required_secret_missing_warns() {
        let class = class(GIT_CLASS);
        let no_secret = connector(&GOOD.replace(", secretRef: {name: s}", ""));
        let verdict = review_connector(&no_secret, None, ClassLookup::Found(&class));
        assert!(verdict.allowed());
        assert!(
            verdict.warnings[0].contains("SecretRequired"),
            "{verdict:?}"
        );
    }

    #[test]
    fn class_compile_error_is_rejected_with_its_path() {
        let bad = class(&GIT_CLASS.replace(
            "http: {path: /x}",
            "http: {path: /x, response: {cel: 'response.statusCode =='}}",
        ));
        let verdict = review_class(&bad, None);
        assert_eq!(verdict.errors.len(), 1, "{verdict:?}");
        assert_eq!(
            verdict.errors[0].path,
            "spec.authProbes[0].probe.http.response.cel"
        );
    }

    #[test]
    fn class_update_of_metadata_only_is_allowed_even_when_invalid() {
        let bad = class(&GIT_CLASS.replace("authName: basicAuth", "authName: nope"));
        assert!(!review_class(&bad, None).allowed());
        let mut relabelled = bad.clone();
        relabelled.metadata.labels = Some([("a".to_string(), "b".to_string())].into());
        assert!(review_class(&relabelled, Some(&bad)).allowed());
    }

    #[test]
    fn class_warnings_for_plain_http_auth_probe_and_no_liveness() {
        let risky = class(
            &GIT_CLASS
                .replace("http: {path: /x}", "http: {path: /x, scheme: http}")
                .replace("  livenessProbe:\n    http: {path: /}\n", ""),
        );
        let verdict = review_class(&risky, None);
        assert!(verdict.allowed(), "{verdict:?}");
        assert_eq!(verdict.warnings.len(), 2, "{verdict:?}");
        assert!(verdict.warnings[0].starts_with("spec.authProbes[0].probe.http.scheme"));
        assert!(verdict.warnings[1].starts_with("spec.livenessProbe"));
    }

    #[test]
    fn secrets_checked_on_create_and_on_every_spec_change() {
        let with_ca = connector(&format!("{GOOD}  caCertSecretRef: {{name: ca}}\n"));
        let all = secrets_to_check(&with_ca, None);
        assert_eq!(
            all,
            vec![
                SecretUse {
                    field: SECRET_NAME_FIELD,
                    namespace: "ns".into(),
                    name: "s".into()
                },
                SecretUse {
                    field: CA_SECRET_NAME_FIELD,
                    namespace: "ns".into(),
                    name: "ca".into()
                },
            ]
        );
        let mut relabelled = with_ca.clone();
        relabelled.metadata.labels = Some([("a".to_string(), "b".to_string())].into());
        assert!(secrets_to_check(&relabelled, Some(&with_ca)).is_empty());
        let switched = connector(
            &format!("{GOOD}  caCertSecretRef: {{name: ca}}\n")
                .replace("{name: s}", "{name: other}"),
        );
        let changed = secrets_to_check(&switched, Some(&with_ca));
        let names: Vec<&str> = changed.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(
            names,
            ["other", "ca"],
            "a spec change checks every reference"
        );
        // The same Secret toward a new address is a new use of it: checked again.
        let moved = connector(
            &format!("{GOOD}  caCertSecretRef: {{name: ca}}\n")
                .replace("https://github.com", "https://attacker.example"),
        );
        assert_ne!(moved.spec.address, with_ca.spec.address, "fixture changed");
        let checked = secrets_to_check(&moved, Some(&with_ca));
        let names: Vec<&str> = checked.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["s", "ca"]);
        // No reference, nothing to check.
        assert!(
            secrets_to_check(
                &connector(&GOOD.replace(", secretRef: {name: s}", "")),
                None
            )
            .is_empty()
        );
    }

    #[test]
    fn access_review_answers() {
        let status = |allowed, denied| SubjectAccessReviewStatus {
            allowed,
            denied,
            reason: Some("no RBAC rule".into()),
            ..Default::default()
        };
        assert_eq!(
            SecretAccess::from_status(Some(&status(true, None))),
            SecretAccess::Allowed
        );
        assert_eq!(
            SecretAccess::from_status(Some(&status(true, Some(true)))),
            SecretAccess::Denied("no RBAC rule".into()),
            "a denial wins over an allow"
        );
        assert_eq!(
            SecretAccess::from_status(Some(&status(false, None))),
            SecretAccess::Denied("no RBAC rule".into())
        );
        assert!(matches!(
            SecretAccess::from_status(None),
            SecretAccess::Unchecked(_)
        ));
    }

    #[test]
    fn secret_access_denials_name_field_secret_and_user() {
        let secret = |field, name: &str| SecretUse {
            field,
            namespace: "ns".into(),
            name: name.into(),
        };
        let errors = secret_access_errors(
            "system:serviceaccount:ns:creator",
            &[
                (
                    secret(SECRET_NAME_FIELD, "s"),
                    SecretAccess::Denied(String::new()),
                ),
                (secret(CA_SECRET_NAME_FIELD, "ca"), SecretAccess::Allowed),
                (
                    secret(CA_SECRET_NAME_FIELD, "ca2"),
                    SecretAccess::Unchecked("timed out after 3 s".into()),
                ),
            ],
        );
        let messages: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(
            messages,
            vec![
                r#"spec.auth.secretRef.name: user "system:serviceaccount:ns:creator" may not get Secret "s" in namespace "ns": a Connector may only reference Secrets its author can read"#,
                r#"spec.caCertSecretRef.name: could not check whether user "system:serviceaccount:ns:creator" may get Secret "ca2" in namespace "ns" (timed out after 3 s); refused until it can be checked, retry later"#,
            ]
        );
    }
}
