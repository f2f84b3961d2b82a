//! ConnectorClass status (SPEC section 2), computed from observed facts. Pure.

use crate::types::conditions::{API_READY, PROXY_READY, SPEC_VALID};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::api::{Addressable, ClassApiStatus, ConnectorClass, ConnectorClassStatus, ProxyStatus};
use crate::types::{FieldError, join_errors};

use super::conditions::{Desired, aggregate_ready, merge};

/// What was observed about one of the class's addresses (`spec.api` or `spec.proxy`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AddressFacts {
    /// The field is absent from the spec.
    Absent,
    Unresolved(String),
    /// Resolved; `reachable` is None until a request has completed or failed.
    Resolved {
        url: String,
        reachable: Option<Result<(), String>>,
    },
    /// A Service ref that cannot be looked up (the `check` CLI has no cluster).
    NotChecked(String),
    /// `spec.api` with neither `ref` nor `uri`: its operations go through the proxy.
    ViaProxy,
}

impl AddressFacts {
    pub fn url(&self) -> Option<&str> {
        match self {
            AddressFacts::Resolved { url, .. } => Some(url),
            _ => None,
        }
    }
}

pub struct ClassFacts<'a> {
    pub class: &'a ConnectorClass,
    pub api: AddressFacts,
    pub proxy: AddressFacts,
    pub spec_errors: &'a [FieldError],
}

pub fn decide_class_status(facts: &ClassFacts, now: &Time) -> ConnectorClassStatus {
    let api = address_condition(
        API_READY,
        "NonAPI",
        "APIUnresolved",
        "APIUnreachable",
        &facts.api,
    );
    let proxy = address_condition(
        PROXY_READY,
        "NonProxy",
        "ProxyUnresolved",
        "ProxyUnreachable",
        &facts.proxy,
    );
    let spec_valid = if facts.spec_errors.is_empty() {
        Desired::ok(SPEC_VALID, "", "")
    } else {
        Desired::failed(SPEC_VALID, "InvalidSpec", join_errors(facts.spec_errors))
    };
    let mut desired = vec![api, proxy, spec_valid];
    desired.push(aggregate_ready(&desired));
    let stored = facts
        .class
        .status
        .as_ref()
        .map(|s| s.conditions.as_slice())
        .unwrap_or_default();
    ConnectorClassStatus {
        observed_generation: facts.class.metadata.generation,
        conditions: merge(stored, &desired, now),
        annotations: facts
            .class
            .status
            .as_ref()
            .and_then(|s| s.annotations.clone()),
        api: facts.api.url().map(|url| ClassApiStatus {
            address: Some(addressable(url)),
        }),
        proxy: facts.proxy.url().map(|url| ProxyStatus {
            http_address: Some(addressable(url)),
        }),
    }
}

fn addressable(url: &str) -> Addressable {
    Addressable {
        url: Some(url.to_string()),
        ..Default::default()
    }
}

fn address_condition(
    type_: &'static str,
    absent: &str,
    unresolved: &str,
    unreachable: &str,
    facts: &AddressFacts,
) -> Desired {
    match facts {
        AddressFacts::Absent => Desired::ok(type_, absent, ""),
        AddressFacts::NotChecked(why) => Desired::ok(type_, "NotChecked", why.clone()),
        AddressFacts::ViaProxy => Desired::ok(
            type_,
            "ViaProxy",
            "spec.api sets neither ref nor uri: its operations are served through the proxy",
        ),
        AddressFacts::Unresolved(why) => Desired::failed(type_, unresolved, why.clone()),
        AddressFacts::Resolved {
            reachable: None,
            url,
        } => Desired::unknown(type_, "Checking", format!("checking {url}")),
        AddressFacts::Resolved {
            reachable: Some(Ok(())),
            ..
        } => Desired::ok(type_, "", ""),
        AddressFacts::Resolved {
            reachable: Some(Err(why)),
            ..
        } => Desired::failed(type_, unreachable, why.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn class() -> ConnectorClass {
        serde_yaml::from_str("metadata: {name: git, generation: 3}\nspec: {}").unwrap()
    }

    fn conditions(status: &ConnectorClassStatus) -> Vec<(String, String, String)> {
        status
            .conditions
            .iter()
            .map(|c| {
                (
                    c.type_.clone(),
                    c.status.clone(),
                    c.reason.clone().unwrap_or_default(),
                )
            })
            .collect()
    }

    fn row(t: &str, s: &str, r: &str) -> (String, String, String) {
        (t.into(), s.into(), r.into())
    }

    #[test]
    fn class_without_api_or_proxy_is_ready() {
        let c = class();
        let facts = ClassFacts {
            class: &c,
            api: AddressFacts::Absent,
            proxy: AddressFacts::Absent,
            spec_errors: &[],
        };
        let status = decide_class_status(&facts, &crate::testing::now());
        assert_eq!(
            conditions(&status),
            vec![
                row("APIReady", "True", "NonAPI"),
                row("ProxyReady", "True", "NonProxy"),
                row("SpecValid", "True", ""),
                row("Ready", "True", "")
            ]
        );
        assert_eq!(status.observed_generation, Some(3));
        assert!(status.api.is_none());
    }

    #[test]
    fn api_without_address_is_served_through_the_proxy() {
        let c = class();
        let facts = ClassFacts {
            class: &c,
            api: AddressFacts::ViaProxy,
            proxy: AddressFacts::Absent,
            spec_errors: &[],
        };
        let status = decide_class_status(&facts, &crate::testing::now());
        assert_eq!(conditions(&status)[0], row("APIReady", "True", "ViaProxy"));
        assert_eq!(conditions(&status)[3], row("Ready", "True", ""));
        assert!(status.api.is_none(), "no address is set");
    }

    #[test]
    fn unreachable_api_and_invalid_spec() {
        let c = class();
        let errors = [FieldError::new(
            "spec.livenessProbe.http.response.cel",
            "syntax error",
        )];
        let facts = ClassFacts {
            class: &c,
            api: AddressFacts::Resolved {
                url: "http://api.sys.svc.cluster.local".into(),
                reachable: Some(Err("connection refused".into())),
            },
            proxy: AddressFacts::Unresolved("Service p not found in namespace sys".into()),
            spec_errors: &errors,
        };
        let status = decide_class_status(&facts, &crate::testing::now());
        assert_eq!(
            conditions(&status),
            vec![
                row("APIReady", "False", "APIUnreachable"),
                row("ProxyReady", "False", "ProxyUnresolved"),
                row("SpecValid", "False", "InvalidSpec"),
                row("Ready", "False", "APIUnreachable"),
            ]
        );
        assert_eq!(
            status.conditions[2].message.as_deref(),
            Some("spec.livenessProbe.http.response.cel: syntax error")
        );
        assert_eq!(
            status.api.unwrap().address.unwrap().url.as_deref(),
            Some("http://api.sys.svc.cluster.local")
        );
        assert!(status.proxy.is_none());
    }
}
