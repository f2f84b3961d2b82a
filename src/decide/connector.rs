//! Connector status (SPEC section 3), computed from observed facts. Pure: the
//! controller and the `check` CLI observe, then call [`decide_connector_status`].

use crate::types::conditions::{
    API_READY, AUTH_READY, CA_CERT_READY, CONNECTOR_CLASS_READY, LIVENESS_READY,
    PROXY_SERVICE_READY, SECRET_READY,
};
use std::collections::BTreeSet;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::api::{
    Connector, ConnectorApiStatus, ConnectorClass, ConnectorStatus, ProxyStatus, find_condition,
};
use crate::types::ProbeOutcome;
use crate::types::{FieldError, join_errors};
use crate::validation::{CA_SECRET_NAME_FIELD, SECRET_NAME_FIELD, object_name_error};

use super::address::{connector_api_path, connector_proxy_url, proxy_service_name};
use super::conditions::{Desired, FALSE, TRUE, aggregate_ready, merge};
use super::plan::probe_plan;

/// Class annotation choosing how proxy URLs are formed.
pub const PROXY_RESOLVER_ANNOTATION: &str = "connectors.cpaas.io/proxy-resolver";

/// The class as the Connector sees it.
pub enum ClassFacts<'a> {
    NotFound {
        name: String,
    },
    /// The class's own spec is invalid (its SpecValid is False).
    Invalid {
        message: String,
    },
    /// The Connector does not satisfy the class contract.
    Mismatch {
        errors: Vec<FieldError>,
    },
    Usable {
        class: &'a ConnectorClass,
    },
}

/// The referenced Secret, as far as the operator may look at it (keys only, no values).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SecretFacts {
    NotReferenced,
    /// secretRef.namespace names another namespace: never read.
    CrossNamespace {
        namespace: String,
    },
    /// `secretRef.name` is not a valid object name: never read.
    InvalidName {
        name: String,
    },
    NotFound {
        name: String,
    },
    Found {
        name: String,
        type_: String,
        keys: BTreeSet<String>,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CaFacts {
    NoRef,
    /// `caCertSecretRef.name` is not a valid object name: never read.
    InvalidName {
        name: String,
    },
    NotFound {
        name: String,
    },
    Invalid {
        name: String,
    },
    Valid {
        name: String,
    },
}

/// The per-Connector proxy Service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProxyServiceFacts {
    /// The class has a proxy but its address is not resolved (message from the class).
    ClassProxyUnresolved {
        message: String,
    },
    /// A Service of that name exists and is not owned by this Connector.
    Conflict {
        name: String,
    },
    Ready {
        name: String,
    },
    /// Not yet created or not yet checked.
    Pending,
    /// Without a cluster (the `check` CLI) the Service is not created.
    NotChecked,
}

pub struct ConnectorFacts<'a> {
    pub connector: &'a Connector,
    pub class: ClassFacts<'a>,
    pub secret: SecretFacts,
    /// Probe results; None when the probe was not run.
    pub liveness: Option<ProbeOutcome>,
    pub auth: Option<ProbeOutcome>,
    pub proxy_service: ProxyServiceFacts,
    pub ca: CaFacts,
    pub cluster_domain: &'a str,
}

/// Conventional keys of standard Secret types, used when the auth type declares none.
fn conventional_keys(secret_type: &str) -> &'static [&'static str] {
    match secret_type {
        "kubernetes.io/basic-auth" => &["username", "password"],
        "kubernetes.io/ssh-auth" => &["ssh-privatekey"],
        "connectors.cpaas.io/bearer-token" => &["token"],
        _ => &[],
    }
}

fn same_secret_type(a: &str, b: &str) -> bool {
    let normalize = |t: &str| {
        if t.eq_ignore_ascii_case("kubernetes.io/opaque") {
            "Opaque".to_string()
        } else {
            t.to_string()
        }
    };
    normalize(a) == normalize(b)
}

/// SecretReady for a usable class.
pub fn secret_condition(
    connector: &Connector,
    class: &ConnectorClass,
    secret: &SecretFacts,
) -> Desired {
    const T: &str = SECRET_READY;
    let auth_type = class.chosen_auth_type(connector);
    match secret {
        SecretFacts::CrossNamespace { namespace } => Desired::failed(
            T,
            "CrossNamespaceSecret",
            format!(
                "spec.auth.secretRef.namespace {namespace:?} differs from the Connector's namespace {:?}; the Secret is not read",
                connector.metadata.namespace.as_deref().unwrap_or_default()
            ),
        ),
        SecretFacts::InvalidName { name } => Desired::failed(
            T,
            "InvalidSecretName",
            format!("{SECRET_NAME_FIELD}: {}", object_name_error(name)),
        ),
        SecretFacts::NotReferenced => match auth_type {
            Some(t) if !t.optional.unwrap_or(false) => Desired::failed(
                T,
                "SecretRequired",
                format!(
                    "auth type {:?} requires a Secret: set spec.auth.secretRef",
                    t.name
                ),
            ),
            _ => Desired::ok(
                T,
                "SecretOptional",
                "no Secret is referenced and none is required",
            ),
        },
        SecretFacts::NotFound { name } => {
            Desired::failed(T, "SecretNotFound", format!("secrets {name:?} not found"))
        }
        SecretFacts::Found { name, type_, keys } => {
            let Some(auth_type) = auth_type else {
                return Desired::ok(T, "", "");
            };
            if let Some(want) = auth_type.secret_type.as_deref().filter(|w| !w.is_empty())
                && !same_secret_type(want, type_)
            {
                {
                    return Desired::failed(
                        T,
                        "SecretTypeMismatch",
                        format!(
                            "Secret {name:?} has type {type_:?}; auth type {:?} requires {want:?}",
                            auth_type.name
                        ),
                    );
                }
            }
            let declared: Vec<&str> = match auth_type.params.as_deref() {
                Some(params) if !params.is_empty() => {
                    params.iter().map(|p| p.name.as_str()).collect()
                }
                _ => conventional_keys(auth_type.secret_type.as_deref().unwrap_or(type_)).to_vec(),
            };
            let missing: Vec<&str> = declared
                .into_iter()
                .filter(|k| !keys.contains(*k))
                .collect();
            if missing.is_empty() {
                Desired::ok(T, "", "")
            } else {
                Desired::failed(
                    T,
                    "SecretMissingKeys",
                    format!("Secret {name:?} is missing keys: {}", missing.join(", ")),
                )
            }
        }
    }
}

fn probe_condition(
    type_: &'static str,
    none_reason: &str,
    configured: bool,
    outcome: &Option<ProbeOutcome>,
) -> Desired {
    if !configured {
        return Desired::ok(type_, none_reason, "");
    }
    match outcome {
        None => Desired::unknown(type_, "Checking", "probe has not completed yet"),
        Some(ProbeOutcome::Passed) => Desired::ok(type_, "", ""),
        Some(ProbeOutcome::Failed { reason, message }) => {
            Desired::failed(type_, reason.as_str(), message.clone())
        }
    }
}

pub fn decide_connector_status(facts: &ConnectorFacts, now: &Time) -> ConnectorStatus {
    let connector = facts.connector;
    let stored = connector
        .status
        .as_ref()
        .map(|s| s.conditions.as_slice())
        .unwrap_or_default();
    let ca = ca_condition(&facts.ca);
    let mut desired = match &facts.class {
        ClassFacts::Usable { class } => usable_class_conditions(facts, class),
        ClassFacts::NotFound { name } => blocked_conditions(
            "ConnectorClassNotFound",
            format!("connectorclass.connectors.alauda.io {name:?} not found"),
        ),
        ClassFacts::Invalid { message } => {
            blocked_conditions("ConnectorClassInvalid", message.clone())
        }
        ClassFacts::Mismatch { errors } => blocked_conditions("SpecMismatch", join_errors(errors)),
    };
    let ready = aggregate_ready(&desired);
    desired.push(ca);
    desired.push(ready);

    let (api, proxy) = match &facts.class {
        ClassFacts::Usable { class } => addresses(facts, class),
        _ => (None, None),
    };
    ConnectorStatus {
        observed_generation: connector.metadata.generation,
        conditions: merge(stored, &desired, now),
        annotations: connector
            .status
            .as_ref()
            .and_then(|s| s.annotations.clone()),
        api,
        proxy,
    }
}

/// Without a usable class nothing is probed: every other condition waits for it.
fn blocked_conditions(reason: &str, message: String) -> Vec<Desired> {
    let waiting = |t| {
        Desired::unknown(
            t,
            "ConnectorClassNotReady",
            "the ConnectorClass is not ready",
        )
    };
    vec![
        Desired::failed(CONNECTOR_CLASS_READY, reason, message),
        waiting(SECRET_READY),
        waiting(LIVENESS_READY),
        waiting(AUTH_READY),
        waiting(PROXY_SERVICE_READY),
        waiting(API_READY),
    ]
}

fn usable_class_conditions(facts: &ConnectorFacts, class: &ConnectorClass) -> Vec<Desired> {
    let connector = facts.connector;
    let class_ready = Desired::ok(CONNECTOR_CLASS_READY, "", "");
    let secret = secret_condition(connector, class, &facts.secret);
    let plan = probe_plan(connector, class, &facts.secret);
    let liveness = probe_condition(
        LIVENESS_READY,
        "NonLivenessProbe",
        plan.liveness,
        &facts.liveness,
    );
    let auth = if !plan.auth {
        Desired::ok(AUTH_READY, "NonAuthProbe", "")
    } else if liveness.status == FALSE {
        Desired::unknown(
            AUTH_READY,
            "LivenessNotReady",
            "the tool is not live; credentials are not checked",
        )
    } else if secret.status != TRUE {
        Desired::unknown(
            AUTH_READY,
            "SecretNotReady",
            "the Secret is not ready; credentials are not checked",
        )
    } else {
        probe_condition(AUTH_READY, "NonAuthProbe", true, &facts.auth)
    };
    let proxy = if class.spec.proxy.is_none() {
        Desired::ok(PROXY_SERVICE_READY, "NonProxy", "")
    } else {
        match &facts.proxy_service {
            ProxyServiceFacts::ClassProxyUnresolved { message } => {
                Desired::failed(PROXY_SERVICE_READY, "ProxyServiceNotFound", message.clone())
            }
            ProxyServiceFacts::Conflict { name } => Desired::failed(
                PROXY_SERVICE_READY,
                "ProxyServiceConflict",
                format!(
                    "Service {name:?} exists and is not owned by this Connector; it is left untouched"
                ),
            ),
            ProxyServiceFacts::Ready { .. } => Desired::ok(PROXY_SERVICE_READY, "", ""),
            ProxyServiceFacts::Pending => Desired::unknown(
                PROXY_SERVICE_READY,
                "Checking",
                "proxy Service is being created",
            ),
            ProxyServiceFacts::NotChecked => Desired::ok(
                PROXY_SERVICE_READY,
                "NotChecked",
                "the proxy Service is created in a cluster, not by check",
            ),
        }
    };
    let api = if class.spec.api.is_none() {
        Desired::ok(API_READY, "NonAPI", "")
    } else {
        let class_conditions = class
            .status
            .as_ref()
            .map(|s| s.conditions.as_slice())
            .unwrap_or_default();
        match find_condition(class_conditions, API_READY) {
            Some(c) if c.status == TRUE => Desired::ok(API_READY, "", ""),
            Some(c) if c.status == FALSE => Desired::failed(
                API_READY,
                "APINotReady",
                c.message.clone().unwrap_or_default(),
            ),
            _ => Desired::unknown(
                API_READY,
                "Checking",
                "the ConnectorClass API is being checked",
            ),
        }
    };
    vec![class_ready, secret, liveness, auth, proxy, api]
}

fn ca_condition(ca: &CaFacts) -> Desired {
    const T: &str = CA_CERT_READY;
    let d = match ca {
        CaFacts::NoRef => Desired::ok(T, "NoCACert", "no caCertSecretRef is set"),
        CaFacts::Valid { name } => Desired::ok(
            T,
            "Valid",
            format!("CA certificate loaded from secret {name:?}"),
        ),
        CaFacts::NotFound { name } => {
            Desired::failed(T, "SecretNotFound", format!("secrets {name:?} not found"))
        }
        CaFacts::InvalidName { name } => Desired::failed(
            T,
            "InvalidSecretName",
            format!("{CA_SECRET_NAME_FIELD}: {}", object_name_error(name)),
        ),
        CaFacts::Invalid { name } => Desired::failed(
            T,
            "InvalidPEM",
            format!("Secret {name:?} contains invalid PEM data"),
        ),
    };
    d.with_severity("Info")
}

fn addresses(
    facts: &ConnectorFacts,
    class: &ConnectorClass,
) -> (Option<ConnectorApiStatus>, Option<ProxyStatus>) {
    let connector = facts.connector;
    let name = connector.metadata.name.as_deref().unwrap_or_default();
    let namespace = connector.metadata.namespace.as_deref().unwrap_or_default();
    let api =
        (class.spec.api.is_some() || class.spec.proxy.is_some()).then(|| ConnectorApiStatus {
            path: Some(connector_api_path(namespace, name)),
        });
    let proxy = class.spec.proxy.as_ref().map(|proxy_spec| {
        let absolute = proxy_spec
            .endpoint
            .uri
            .as_deref()
            .filter(|u| url::Url::parse(u).is_ok_and(|p| p.has_host()));
        let path_resolver = class
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(PROXY_RESOLVER_ANNOTATION))
            .is_some_and(|v| v == "path");
        let service_name = proxy_service_name(name);
        let url = connector_proxy_url(
            absolute,
            path_resolver,
            &service_name,
            namespace,
            name,
            facts.cluster_domain,
        );
        ProxyStatus {
            http_address: Some(crate::api::Addressable {
                url: Some(url),
                ..Default::default()
            }),
        }
    });
    (api, proxy)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::FailureReason;

    const CLASS: &str = r#"
apiVersion: connectors.alauda.io/v1alpha1
kind: ConnectorClass
metadata: {name: git}
spec:
  auth:
    types:
    - {name: basicAuth, secretType: kubernetes.io/basic-auth}
    - {name: anon, optional: true}
  livenessProbe: {http: {path: /}}
  authProbes:
  - authName: basicAuth
    probe: {http: {path: /user}}
  proxy: {ref: {kind: Service, name: proxy, namespace: sys}}
status:
  conditions: []
"#;

    fn connector(auth: &str) -> Connector {
        serde_yaml::from_str(&format!(
            "metadata: {{name: my.git, namespace: dev, generation: 2}}\nspec: {{connectorClassName: git, address: 'https://git.example.com', auth: {auth}}}"
        ))
        .unwrap()
    }

    fn class() -> ConnectorClass {
        serde_yaml::from_str(CLASS).unwrap()
    }

    fn basic_secret(keys: &[&str]) -> SecretFacts {
        SecretFacts::Found {
            name: "creds".into(),
            type_: "kubernetes.io/basic-auth".into(),
            keys: keys.iter().map(|k| k.to_string()).collect(),
        }
    }

    fn decide(
        c: &Connector,
        class: ClassFacts,
        secret: SecretFacts,
        l: Option<ProbeOutcome>,
        a: Option<ProbeOutcome>,
    ) -> ConnectorStatus {
        let facts = ConnectorFacts {
            connector: c,
            class,
            secret,
            liveness: l,
            auth: a,
            proxy_service: ProxyServiceFacts::Ready {
                name: "c-my-git".into(),
            },
            ca: CaFacts::NoRef,
            cluster_domain: "cluster.local",
        };
        decide_connector_status(&facts, &crate::testing::now())
    }

    fn get<'a>(s: &'a ConnectorStatus, t: &str) -> (&'a str, &'a str, &'a str) {
        let c = find_condition(&s.conditions, t).unwrap();
        (
            c.status.as_str(),
            c.reason.as_deref().unwrap_or(""),
            c.message.as_deref().unwrap_or(""),
        )
    }

    #[test]
    fn ready_connector_has_every_condition_in_order_and_addresses() {
        let class = class();
        let c = connector("{name: basicAuth, secretRef: {name: creds}}");
        let s = decide(
            &c,
            ClassFacts::Usable { class: &class },
            basic_secret(&["username", "password"]),
            Some(ProbeOutcome::Passed),
            Some(ProbeOutcome::Passed),
        );
        let types: Vec<&str> = s.conditions.iter().map(|c| c.type_.as_str()).collect();
        assert_eq!(
            types,
            [
                "ConnectorClassReady",
                "SecretReady",
                "LivenessReady",
                "AuthReady",
                "ProxyServiceReady",
                "APIReady",
                "CACertReady",
                "Ready"
            ]
        );
        assert_eq!(get(&s, "Ready"), ("True", "", ""));
        assert_eq!(get(&s, "APIReady"), ("True", "NonAPI", ""));
        assert_eq!(
            s.proxy.unwrap().http_address.unwrap().url.unwrap(),
            "http://c-my-git.dev.svc.cluster.local"
        );
        assert_eq!(
            s.api.unwrap().path.unwrap(),
            "/connectors/v1alpha1/dev/my.git/path"
        );
        assert_eq!(s.observed_generation, Some(2));
        assert_eq!(
            find_condition(&s.conditions, "CACertReady")
                .unwrap()
                .severity
                .as_deref(),
            Some("Info")
        );
    }

    #[test]
    fn missing_class_blocks_everything() {
        let c = connector("{name: basicAuth}");
        let s = decide(
            &c,
            ClassFacts::NotFound { name: "git".into() },
            SecretFacts::NotReferenced,
            None,
            None,
        );
        assert_eq!(
            get(&s, "ConnectorClassReady"),
            (
                "False",
                "ConnectorClassNotFound",
                r#"connectorclass.connectors.alauda.io "git" not found"#
            )
        );
        assert_eq!(get(&s, "LivenessReady").1, "ConnectorClassNotReady");
        assert_eq!(get(&s, "Ready").1, "ConnectorClassNotFound");
        assert!(s.proxy.is_none());
    }

    #[test]
    fn invalid_secret_names_are_reported_not_read() {
        let class = class();
        let c = connector("{name: basicAuth, secretRef: {name: '?watch=true'}}");
        let s = decide(
            &c,
            ClassFacts::Usable { class: &class },
            SecretFacts::InvalidName {
                name: "?watch=true".into(),
            },
            Some(ProbeOutcome::Passed),
            None,
        );
        let (status, reason, message) = get(&s, "SecretReady");
        assert_eq!((status, reason), ("False", "InvalidSecretName"));
        assert!(
            message.starts_with(
                r#"spec.auth.secretRef.name: "?watch=true" is not a valid Secret name"#
            ),
            "{message}"
        );
        assert_eq!(get(&s, "AuthReady").1, "SecretNotReady");
        assert_eq!(get(&s, "Ready").1, "InvalidSecretName");
    }

    #[test]
    fn secret_rules() {
        let class = class();
        let c = connector("{name: basicAuth, secretRef: {name: creds}}");
        let usable = || ClassFacts::Usable { class: &class };
        let s = decide(&c, usable(), basic_secret(&["username"]), None, None);
        assert_eq!(
            get(&s, "SecretReady"),
            (
                "False",
                "SecretMissingKeys",
                r#"Secret "creds" is missing keys: password"#
            )
        );
        assert_eq!(get(&s, "AuthReady").1, "SecretNotReady");
        let wrong_type = SecretFacts::Found {
            name: "creds".into(),
            type_: "Opaque".into(),
            keys: BTreeSet::new(),
        };
        assert_eq!(
            get(&decide(&c, usable(), wrong_type, None, None), "SecretReady").1,
            "SecretTypeMismatch"
        );
        let s = decide(
            &c,
            usable(),
            SecretFacts::NotFound {
                name: "creds".into(),
            },
            None,
            None,
        );
        assert_eq!(
            get(&s, "SecretReady"),
            ("False", "SecretNotFound", r#"secrets "creds" not found"#)
        );
        let s = decide(
            &c,
            usable(),
            SecretFacts::CrossNamespace {
                namespace: "other".into(),
            },
            None,
            None,
        );
        assert_eq!(get(&s, "SecretReady").1, "CrossNamespaceSecret");
        let s = decide(
            &connector("{name: basicAuth}"),
            usable(),
            SecretFacts::NotReferenced,
            None,
            None,
        );
        assert_eq!(get(&s, "SecretReady").1, "SecretRequired");
        let s = decide(
            &connector("{name: anon}"),
            usable(),
            SecretFacts::NotReferenced,
            Some(ProbeOutcome::Passed),
            None,
        );
        assert_eq!(
            get(&s, "SecretReady"),
            (
                "True",
                "SecretOptional",
                "no Secret is referenced and none is required"
            )
        );
        assert_eq!(get(&s, "AuthReady"), ("True", "NonAuthProbe", ""));
    }

    #[test]
    fn probe_failures_and_liveness_gate() {
        let class = class();
        let c = connector("{name: basicAuth, secretRef: {name: creds}}");
        let secret = || basic_secret(&["username", "password"]);
        let down = ProbeOutcome::Failed {
            reason: FailureReason::ConnectionFailed,
            message: "Get \"https://git.example.com/\": connection refused".into(),
        };
        let s = decide(
            &c,
            ClassFacts::Usable { class: &class },
            secret(),
            Some(down),
            None,
        );
        assert_eq!(get(&s, "LivenessReady").1, "ConnectionFailed");
        assert_eq!(
            get(&s, "AuthReady"),
            (
                "Unknown",
                "LivenessNotReady",
                "the tool is not live; credentials are not checked"
            )
        );
        assert_eq!(get(&s, "Ready").1, "ConnectionFailed");
        let denied = ProbeOutcome::Failed {
            reason: FailureReason::AuthenticationFailed,
            message: "Authentication failed: status code 401".into(),
        };
        let s = decide(
            &c,
            ClassFacts::Usable { class: &class },
            secret(),
            Some(ProbeOutcome::Passed),
            Some(denied),
        );
        assert_eq!(
            get(&s, "AuthReady"),
            (
                "False",
                "AuthenticationFailed",
                "Authentication failed: status code 401"
            )
        );
        assert_eq!(get(&s, "Ready").1, "AuthenticationFailed");
        let s = decide(
            &c,
            ClassFacts::Usable { class: &class },
            secret(),
            None,
            None,
        );
        assert_eq!(
            get(&s, "Ready"),
            ("Unknown", "Checking", "probe has not completed yet")
        );
    }

    #[test]
    fn proxy_service_conflict_and_path_resolver() {
        let mut class = class();
        class.metadata.annotations =
            Some([(PROXY_RESOLVER_ANNOTATION.to_string(), "path".to_string())].into());
        let c = connector("{name: anon}");
        let facts = ConnectorFacts {
            connector: &c,
            class: ClassFacts::Usable { class: &class },
            secret: SecretFacts::NotReferenced,
            liveness: Some(ProbeOutcome::Passed),
            auth: None,
            proxy_service: ProxyServiceFacts::Conflict {
                name: "c-my-git".into(),
            },
            ca: CaFacts::Invalid { name: "ca".into() },
            cluster_domain: "cluster.local",
        };
        let s = decide_connector_status(&facts, &crate::testing::now());
        assert_eq!(get(&s, "ProxyServiceReady").1, "ProxyServiceConflict");
        assert_eq!(
            get(&s, "CACertReady"),
            (
                "False",
                "InvalidPEM",
                r#"Secret "ca" contains invalid PEM data"#
            )
        );
        assert_eq!(
            get(&s, "Ready").1,
            "ProxyServiceConflict",
            "CACertReady is not part of Ready"
        );
        assert_eq!(
            s.proxy.unwrap().http_address.unwrap().url.unwrap(),
            "http://c-my-git.dev.svc.cluster.local/namespaces/dev/connectors/my.git"
        );
    }
}
