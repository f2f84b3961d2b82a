//! The per-Connector proxy Service (SPEC section 3): what it should be, and what to
//! do given what exists. Pure.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Service, ServiceSpec};
use kube::api::ObjectMeta;
use kube::{Resource, ResourceExt};

use crate::api::{Connector, ConnectorClass, find_condition};
use crate::types::conditions::PROXY_READY;

use super::address::proxy_service_name;
use super::connector::ProxyServiceFacts;

/// Label on proxy Services naming their Connector's Service (a valid label value).
pub const CONNECTOR_LABEL: &str = "connectors.alauda.io/connector";

/// The Connector has no uid yet (it was not read from an apiserver).
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("the Connector has no metadata.uid")]
pub struct MissingUid;

/// The Service a Connector should have.
pub enum ServicePlan {
    /// The class has no proxy: no Service.
    NoProxy,
    /// The class proxy address is not resolved (message from the class).
    ClassUnresolved(String),
    Desired(Box<Service>),
}

/// An existing proxy Service, as far as the decision needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ObservedService {
    /// Not in the cache of labelled Services: absent, or someone else's (which a
    /// create finds out through its conflict).
    NotRead,
    Absent,
    Present {
        owned: bool,
        type_: Option<String>,
        external_name: Option<String>,
    },
}

impl ObservedService {
    pub fn of(service: Option<&Service>, owner_uid: &str) -> Self {
        let Some(service) = service else {
            return ObservedService::Absent;
        };
        let spec = service.spec.as_ref();
        let owners = service.metadata.owner_references.iter().flatten();
        ObservedService::present(
            owners.map(|r| r.uid.as_str()),
            spec.and_then(|s| s.type_.as_deref()),
            spec.and_then(|s| s.external_name.as_deref()),
            owner_uid,
        )
    }

    /// A Service known by its owners' uids, type and externalName (all a cache needs to
    /// keep), as the Connector `owner_uid` sees it.
    pub fn present<'a>(
        owner_uids: impl IntoIterator<Item = &'a str>,
        type_: Option<&str>,
        external_name: Option<&str>,
        owner_uid: &str,
    ) -> Self {
        ObservedService::Present {
            owned: owner_uids.into_iter().any(|uid| uid == owner_uid),
            type_: type_.map(str::to_owned),
            external_name: external_name.map(str::to_owned),
        }
    }
}

/// What to write.
#[derive(Clone, Debug, PartialEq)]
pub enum ServiceAction {
    /// It is as desired.
    Keep,
    Create,
    /// Server-side apply over an owned Service that drifted.
    Apply,
    /// It exists and is not ours: never touched.
    LeaveForeign,
}

/// The Service plan of a Connector whose class is usable.
pub fn service_plan(
    connector: &Connector,
    class: &ConnectorClass,
) -> Result<ServicePlan, MissingUid> {
    if class.spec.proxy.is_none() {
        return Ok(ServicePlan::NoProxy);
    }
    let Some(host) = class_proxy_host(class) else {
        let conditions = class
            .status
            .as_ref()
            .map(|s| s.conditions.as_slice())
            .unwrap_or_default();
        let message = find_condition(conditions, PROXY_READY)
            .and_then(|c| c.message.clone())
            .unwrap_or_else(|| {
                format!(
                    "the proxy address of ConnectorClass {:?} is not resolved",
                    class.name_any()
                )
            });
        return Ok(ServicePlan::ClassUnresolved(message));
    };
    Ok(ServicePlan::Desired(Box::new(desired_proxy_service(
        connector, host,
    )?)))
}

/// What to do given what exists.
pub fn service_action(desired: &Service, observed: &ObservedService) -> ServiceAction {
    match observed {
        ObservedService::NotRead | ObservedService::Absent => ServiceAction::Create,
        ObservedService::Present { owned: false, .. } => ServiceAction::LeaveForeign,
        ObservedService::Present {
            type_,
            external_name,
            ..
        } => {
            let spec = desired.spec.as_ref();
            let want = (
                spec.and_then(|s| s.type_.as_deref()),
                spec.and_then(|s| s.external_name.as_deref()),
            );
            if (type_.as_deref(), external_name.as_deref()) == want {
                ServiceAction::Keep
            } else {
                ServiceAction::Apply
            }
        }
    }
}

/// The `ProxyServiceReady` facts after the action was carried out.
pub fn service_facts(name: String, action: &ServiceAction) -> ProxyServiceFacts {
    match action {
        ServiceAction::LeaveForeign => ProxyServiceFacts::Conflict { name },
        _ => ProxyServiceFacts::Ready { name },
    }
}

/// The host of the class's resolved proxy address (from its status): the
/// ExternalName of every proxy Service of the class.
pub fn class_proxy_host(class: &ConnectorClass) -> Option<String> {
    let url = class
        .status
        .as_ref()?
        .proxy
        .as_ref()?
        .http_address
        .as_ref()?
        .url
        .as_deref()?;
    url::Url::parse(url).ok()?.host_str().map(str::to_string)
}

/// The proxy Service of a Connector: ExternalName `host`, labelled with the Service
/// name and owned (controller) by the Connector. Public so the scale benchmark's
/// apiserver floor writes exactly the Service the operator writes.
pub fn desired_proxy_service(connector: &Connector, host: String) -> Result<Service, MissingUid> {
    let service_name = proxy_service_name(&connector.name_any());
    let owner = connector.controller_owner_ref(&()).ok_or(MissingUid)?;
    Ok(Service {
        metadata: ObjectMeta {
            name: Some(service_name.clone()),
            namespace: connector.namespace(),
            labels: Some(BTreeMap::from([(
                CONNECTOR_LABEL.to_string(),
                service_name.trim_start_matches("c-").to_string(),
            )])),
            owner_references: Some(vec![owner]),
            ..Default::default()
        },
        spec: Some(ServiceSpec {
            type_: Some("ExternalName".into()),
            external_name: Some(host),
            ..Default::default()
        }),
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn connector() -> Connector {
        let mut connector = Connector::new(
            "my.git.tool",
            serde_json::from_value(serde_json::json!({
                "connectorClassName": "git",
                "address": "https://github.com",
            }))
            .expect("spec"),
        );
        connector.metadata.namespace = Some("dev".into());
        connector
    }

    #[test]
    fn proxy_service_is_an_owned_labelled_external_name() {
        let mut connector = connector();
        assert!(
            desired_proxy_service(&connector, "proxy.example".into()).is_err(),
            "no uid, no owner reference"
        );
        connector.metadata.uid = Some("uid-1".into());
        let service = desired_proxy_service(&connector, "proxy.example".into()).expect("service");
        assert_eq!(service.metadata.name.as_deref(), Some("c-my-git-tool"));
        assert_eq!(service.metadata.namespace.as_deref(), Some("dev"));
        assert_eq!(
            service
                .metadata
                .labels
                .unwrap_or_default()
                .get(CONNECTOR_LABEL),
            Some(&"my-git-tool".to_string())
        );
        let owner = &service.metadata.owner_references.unwrap_or_default()[0];
        assert_eq!(
            (owner.uid.as_str(), owner.controller),
            ("uid-1", Some(true))
        );
        let spec = service.spec.unwrap_or_default();
        assert_eq!(spec.type_.as_deref(), Some("ExternalName"));
        assert_eq!(spec.external_name.as_deref(), Some("proxy.example"));
    }

    #[test]
    fn actions_for_what_exists() {
        let mut connector = connector();
        connector.metadata.uid = Some("uid-1".into());
        let desired = desired_proxy_service(&connector, "proxy.example".into()).expect("service");
        let present = |owned, host: &str| ObservedService::Present {
            owned,
            type_: Some("ExternalName".into()),
            external_name: Some(host.into()),
        };
        assert_eq!(
            service_action(&desired, &ObservedService::NotRead),
            ServiceAction::Create
        );
        assert_eq!(
            service_action(&desired, &ObservedService::Absent),
            ServiceAction::Create
        );
        assert_eq!(
            service_action(&desired, &present(true, "proxy.example")),
            ServiceAction::Keep
        );
        assert_eq!(
            service_action(&desired, &present(true, "old.example")),
            ServiceAction::Apply
        );
        assert_eq!(
            service_action(&desired, &present(false, "proxy.example")),
            ServiceAction::LeaveForeign
        );
        let mut foreign = desired.clone();
        foreign.metadata.owner_references = None;
        assert_eq!(
            ObservedService::of(Some(&foreign), "uid-1"),
            present(false, "proxy.example")
        );
    }
}
