//! ConnectorClass reconciler: resolve and check the API and proxy addresses, compile
//! the class, write status when it changed.

use std::sync::Arc;

use k8s_openapi::api::core::v1::Service;
use kube::Resource;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use serde::Serialize;

use crate::api::{ConnectorClass, KReference, find_condition};
use crate::observe::reachability;
use crate::probe::TrustBundle;
use crate::status::address::{Resolution, ServicePort, resolve, service_key};
use crate::status::class::{AddressFacts, ClassFacts, decide_class_status};

use super::{Context, Error};
use crate::telemetry::{KindLabels, ReconcileTimer};

/// The field manager of every write the operator makes.
pub const MANAGER: &str = "connectors-operator";

pub async fn reconcile(class: Arc<ConnectorClass>, ctx: Arc<Context>) -> Result<Action, Error> {
    let _timer = ReconcileTimer::start(&ctx.metrics, "ConnectorClass");
    let name = class
        .metadata
        .name
        .clone()
        .ok_or(Error::MissingField("metadata.name"))?;
    let compiled = ctx.compiled(&class);
    let spec_errors = compiled
        .as_ref()
        .as_ref()
        .err()
        .cloned()
        .unwrap_or_default();
    let api = match &class.spec.api {
        None => AddressFacts::Absent,
        Some(api) => address_facts(&ctx, "spec.api", api.ref_.as_ref(), api.uri.as_deref()).await?,
    };
    let proxy = match &class.spec.proxy {
        None => AddressFacts::Absent,
        Some(p) => address_facts(&ctx, "spec.proxy", p.ref_.as_ref(), p.uri.as_deref()).await?,
    };
    let status = decide_class_status(
        &ClassFacts {
            class: &class,
            api,
            proxy,
            spec_errors: &spec_errors,
        },
        &super::now(),
    );
    let healthy = find_condition(&status.conditions, "Ready").is_some_and(|c| c.status == "True");
    if class.status.as_ref() != Some(&status) {
        apply_status(
            &Api::<ConnectorClass>::all(ctx.client.clone()),
            &name,
            &status,
        )
        .await?;
        ctx.metrics
            .status_writes
            .get_or_create(&KindLabels {
                kind: "ConnectorClass",
            })
            .inc();
    }
    Ok(Action::requeue(
        ctx.next_check(&format!("class/{name}"), healthy),
    ))
}

/// Resolves an address (looking the Service up) and checks that it answers.
async fn address_facts(
    ctx: &Context,
    field: &str,
    reference: Option<&KReference>,
    uri: Option<&str>,
) -> Result<AddressFacts, Error> {
    let service = match reference.and_then(|r| service_key(r).ok()) {
        Some((namespace, name)) => {
            let found = Api::<Service>::namespaced(ctx.client.clone(), &namespace)
                .get_opt(&name)
                .await?;
            Some(found.map(|svc| first_port(&svc)))
        }
        None => None,
    };
    Ok(
        match resolve(
            field,
            reference,
            uri,
            service.as_ref().map(Option::as_ref),
            &ctx.settings.cluster_domain,
        ) {
            Resolution::Resolved(url) => {
                let reachable =
                    Some(reachability(ctx.runner.prober(), &url, &TrustBundle::empty()).await);
                AddressFacts::Resolved { url, reachable }
            }
            Resolution::Unresolved(why) => AddressFacts::Unresolved(why),
        },
    )
}

fn first_port(service: &Service) -> ServicePort {
    let port = service
        .spec
        .as_ref()
        .and_then(|s| s.ports.as_ref())
        .and_then(|p| p.first());
    ServicePort {
        port: port.map(|p| p.port),
        name: port.and_then(|p| p.name.clone()),
    }
}

/// Writes `.status` with server-side apply, so fields the operator no longer sets are
/// removed and nothing else is touched.
pub async fn apply_status<K, S>(api: &Api<K>, name: &str, status: &S) -> Result<(), Error>
where
    K: Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
    S: Serialize,
{
    let patch = serde_json::json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "status": status,
    });
    api.patch_status(
        name,
        &PatchParams::apply(MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await?;
    Ok(())
}
