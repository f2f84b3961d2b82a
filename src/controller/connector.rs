//! Connector reconciler: observe (class, Secrets, proxy Service, probes) -> decide
//! (`crate::status::connector`) -> act (Service, status, events; only what changed).

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Secret, Service, ServiceSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{Api, ListParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::{Resource, ResourceExt};

use crate::api::{Connector, ConnectorClass, find_condition};
use crate::observe::{
    GLOBAL_CA_LABEL, SecretLookup, ca_bundle_from_secret, run_connector_probes, secret_facts,
    secret_lookup, secret_material,
};
use crate::probe::TrustBundle;
use crate::status::address::proxy_service_name;
use crate::status::conditions::ready_transition;
use crate::status::connector::{
    CaFacts, ClassFacts, ConnectorFacts, ProxyServiceFacts, decide_connector_status,
};
use crate::validation::{validate_against_class, validate_connector};

use super::class::{MANAGER, apply_status};
use super::{Context, Error};

/// Label on proxy Services naming their Connector's Service (a valid label value).
pub const CONNECTOR_LABEL: &str = "connectors.alauda.io/connector";

pub async fn reconcile(connector: Arc<Connector>, ctx: Arc<Context>) -> Result<Action, Error> {
    let name = connector
        .metadata
        .name
        .clone()
        .ok_or(Error::MissingField("metadata.name"))?;
    let namespace = connector
        .metadata
        .namespace
        .clone()
        .ok_or(Error::MissingField("metadata.namespace"))?;
    let client = ctx.client.clone();
    let secrets = Api::<Secret>::namespaced(client.clone(), &namespace);

    // Observe: the Secret (only in the Connector's own namespace).
    let lookup = secret_lookup(&connector);
    let material = match &lookup {
        SecretLookup::InOwnNamespace(secret_name) => secrets
            .get_opt(secret_name)
            .await?
            .as_ref()
            .map(secret_material),
        _ => None,
    };
    let secret = secret_facts(&lookup, material.as_ref());

    // Observe: trust (global labelled CA Secrets + caCertSecretRef).
    let mut trust = global_trust(&ctx).await?;
    let ca = match &connector.spec.ca_cert_secret_ref {
        None => CaFacts::NoRef,
        Some(r) => match secrets.get_opt(&r.name).await? {
            None => CaFacts::NotFound {
                name: r.name.clone(),
            },
            Some(s) => match ca_bundle_from_secret(&s) {
                Ok(bundle) => {
                    trust = trust.merged(&bundle);
                    CaFacts::Valid {
                        name: r.name.clone(),
                    }
                }
                Err(_) => CaFacts::Invalid {
                    name: r.name.clone(),
                },
            },
        },
    };

    // Observe: the class, its compiled form and the contract.
    let class_name = connector.spec.connector_class_name.clone();
    let class = Api::<ConnectorClass>::all(client.clone())
        .get_opt(&class_name)
        .await?;
    let mut liveness = None;
    let mut auth = None;
    let mut proxy_service = ProxyServiceFacts::Pending;
    let class_facts = match &class {
        None => ClassFacts::NotFound { name: class_name },
        Some(class) => match ctx.compiled(class).as_ref() {
            Err(errors) => ClassFacts::Invalid {
                message: format!(
                    "ConnectorClass {class_name:?} is invalid: {}",
                    crate::validation::join_errors(errors)
                ),
            },
            Ok(compiled) => {
                let mut errors = validate_connector(&connector);
                errors.extend(validate_against_class(&connector, class));
                if errors.is_empty() {
                    if class.spec.proxy.is_some() {
                        proxy_service = ensure_proxy_service(&ctx, &connector, class).await?;
                    }
                    let api_url = class_api_url(class);
                    (liveness, auth) = run_connector_probes(
                        compiled,
                        class,
                        &connector,
                        material.as_ref(),
                        &secret,
                        api_url.as_deref(),
                        &ctx.prober,
                        &trust,
                    )
                    .await;
                    ClassFacts::Usable { class }
                } else {
                    ClassFacts::Mismatch { errors }
                }
            }
        },
    };

    // Decide.
    let facts = ConnectorFacts {
        connector: &connector,
        class: class_facts,
        secret,
        liveness,
        auth,
        proxy_service,
        ca: ca.clone(),
        cluster_domain: &ctx.settings.cluster_domain,
    };
    let status = decide_connector_status(&facts, &super::now());
    let healthy = find_condition(&status.conditions, "Ready").is_some_and(|c| c.status == "True");

    // Act: write only what changed; events on transitions only.
    let stored = connector.status.clone().unwrap_or_default();
    if connector.status.as_ref() != Some(&status) {
        apply_status(
            &Api::<Connector>::namespaced(client.clone(), &namespace),
            &name,
            &status,
        )
        .await?;
        let recorder = Recorder::new(
            client.clone(),
            Reporter {
                controller: MANAGER.into(),
                instance: None,
            },
        );
        let reference = connector.object_ref(&());
        if let Some(event) = ready_transition(&stored.conditions, &status.conditions) {
            publish(
                &recorder,
                &reference,
                if event.warning {
                    EventType::Warning
                } else {
                    EventType::Normal
                },
                &event.reason,
                &event.message,
            )
            .await;
        }
        if stored_ca_changed(&stored, &status) {
            match &ca {
                CaFacts::NotFound { name } => {
                    publish(
                        &recorder,
                        &reference,
                        EventType::Warning,
                        "CACertSecretNotFound",
                        &format!("secrets {name:?} not found"),
                    )
                    .await
                }
                CaFacts::Invalid { name } => {
                    publish(
                        &recorder,
                        &reference,
                        EventType::Warning,
                        "InvalidCACert",
                        &format!("Secret {name:?} contains invalid PEM data"),
                    )
                    .await
                }
                _ => {}
            }
        }
    }
    Ok(Action::requeue(ctx.next_check(
        &format!("connector/{namespace}/{name}"),
        healthy,
    )))
}

fn stored_ca_changed(
    stored: &crate::api::ConnectorStatus,
    new: &crate::api::ConnectorStatus,
) -> bool {
    let get = |s: &crate::api::ConnectorStatus| {
        find_condition(&s.conditions, "CACertReady").map(|c| (c.status.clone(), c.reason.clone()))
    };
    get(stored) != get(new)
}

async fn publish(
    recorder: &Recorder,
    reference: &k8s_openapi::api::core::v1::ObjectReference,
    type_: EventType,
    reason: &str,
    note: &str,
) {
    let event = Event {
        type_,
        reason: reason.to_string(),
        note: Some(note.to_string()),
        action: "Reconcile".to_string(),
        secondary: None,
    };
    if let Err(e) = recorder.publish(&event, reference).await {
        tracing::warn!(error = %e, reason, "could not record event");
    }
}

/// The class's resolved API URL from its status.
fn class_api_url(class: &ConnectorClass) -> Option<String> {
    class
        .status
        .as_ref()?
        .api
        .as_ref()?
        .address
        .as_ref()?
        .url
        .clone()
}

/// Global CA bundles: Secrets in the operator's namespace labelled as CA certs.
async fn global_trust(ctx: &Context) -> Result<TrustBundle, Error> {
    let api = Api::<Secret>::namespaced(ctx.client.clone(), &ctx.settings.namespace);
    let list = api
        .list(&ListParams::default().labels(&format!("{GLOBAL_CA_LABEL}=true")))
        .await?;
    Ok(list
        .items
        .iter()
        .filter_map(|s| ca_bundle_from_secret(s).ok())
        .fold(TrustBundle::empty(), |acc, b| acc.merged(&b)))
}

/// Creates or updates the per-Connector ExternalName Service; never takes over a
/// Service it does not own.
async fn ensure_proxy_service(
    ctx: &Context,
    connector: &Connector,
    class: &ConnectorClass,
) -> Result<ProxyServiceFacts, Error> {
    let proxy_url = class
        .status
        .as_ref()
        .and_then(|s| s.proxy.as_ref())
        .and_then(|p| p.http_address.as_ref())
        .and_then(|a| a.url.clone());
    let Some(host) = proxy_url
        .as_deref()
        .and_then(|u| url::Url::parse(u).ok())
        .and_then(|u| u.host_str().map(str::to_string))
    else {
        let conditions = class
            .status
            .as_ref()
            .map(|s| s.conditions.as_slice())
            .unwrap_or_default();
        let message = find_condition(conditions, "ProxyReady")
            .and_then(|c| c.message.clone())
            .unwrap_or_else(|| {
                format!(
                    "the proxy address of ConnectorClass {:?} is not resolved",
                    class.name_any()
                )
            });
        return Ok(ProxyServiceFacts::ClassProxyUnresolved { message });
    };
    let namespace = connector.namespace().unwrap_or_default();
    let service_name = proxy_service_name(&connector.name_any());
    let api = Api::<Service>::namespaced(ctx.client.clone(), &namespace);
    let owner = connector
        .controller_owner_ref(&())
        .ok_or(Error::MissingField("metadata.uid"))?;
    let existing = api.get_opt(&service_name).await?;
    if let Some(existing) = &existing {
        if !owned_by(existing, &owner) {
            return Ok(ProxyServiceFacts::Conflict { name: service_name });
        }
        let spec = existing.spec.as_ref();
        let current = (
            spec.and_then(|s| s.type_.as_deref()),
            spec.and_then(|s| s.external_name.as_deref()),
        );
        if current == (Some("ExternalName"), Some(host.as_str())) {
            return Ok(ProxyServiceFacts::Ready { name: service_name });
        }
    }
    let desired = Service {
        metadata: ObjectMeta {
            name: Some(service_name.clone()),
            namespace: Some(namespace),
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
    };
    if existing.is_some() {
        api.patch(
            &service_name,
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(&desired),
        )
        .await?;
    } else {
        match api.create(&PostParams::default(), &desired).await {
            Ok(_) => {}
            // Created concurrently by someone else: look again on the next round.
            Err(kube::Error::Api(e)) if e.code == 409 => return Ok(ProxyServiceFacts::Pending),
            Err(e) => return Err(e.into()),
        }
    }
    Ok(ProxyServiceFacts::Ready { name: service_name })
}

fn owned_by(service: &Service, owner: &OwnerReference) -> bool {
    service
        .metadata
        .owner_references
        .iter()
        .flatten()
        .any(|r| r.uid == owner.uid)
}
