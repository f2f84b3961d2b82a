//! The act step: status writes, proxy Service writes and events. Writes only what
//! the decide step says differs.

use std::sync::Arc;

use k8s_openapi::api::core::v1::{ObjectReference, Service};
use kube::Resource;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::events::{Event, EventType};
use serde::Serialize;

use crate::decide::proxy_service::{ObservedService, ServiceAction, service_action};

use super::{API_REQUEST_DEADLINE, Context, Error, api_call};

/// The field manager of every write the operator makes.
pub const MANAGER: &str = "connectors-operator";

/// Writes `.status` with server-side apply, so fields the operator no longer sets are
/// removed and nothing else is touched. The answer (the whole object, with its
/// managedFields) is not parsed: nothing reads it, and the watch brings the same object.
pub async fn apply_status<K, S>(api: &Api<K>, name: &str, status: &S) -> Result<(), Error>
where
    K: Resource<DynamicType = ()> + Clone,
    S: Serialize,
{
    let patch = serde_json::json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "status": status,
    });
    let params = PatchParams::apply(MANAGER).force();
    let mut request = kube::core::Request::new(api.resource_url())
        .patch_subresource("status", name, &params, &Patch::Apply(&patch))
        .map_err(kube::Error::BuildRequest)?;
    request.extensions_mut().insert("patch_status");
    let client = api.clone().into_client();
    api_call("writing a status", client.request_text(request)).await?;
    Ok(())
}

/// Carries out a proxy Service action. A create that finds a Service of that name
/// reads it and decides again (someone else's is left alone). Returns the action
/// finally taken; `None` when the Service vanished meanwhile (the next round sees).
pub async fn ensure_service(
    ctx: &Context,
    desired: &Service,
    action: ServiceAction,
    owner_uid: &str,
) -> Result<Option<ServiceAction>, Error> {
    let namespace = desired.metadata.namespace.as_deref().unwrap_or_default();
    let name = desired.metadata.name.as_deref().unwrap_or_default();
    let api = Api::<Service>::namespaced(ctx.client.clone(), namespace);
    let action = match action {
        ServiceAction::Create => {
            let in_flight = ctx.own_service_writes.begin(namespace, name);
            match tokio::time::timeout(
                API_REQUEST_DEADLINE,
                api.create(&PostParams::default(), desired),
            )
            .await
            .map_err(|_| Error::Deadline("creating a Service"))?
            {
                Ok(written) => {
                    in_flight.written(&written, owner_uid);
                    ctx.metrics.service_writes.inc();
                    return Ok(Some(ServiceAction::Create));
                }
                Err(kube::Error::Api(e)) if e.code == 409 => {
                    // Not this operator's write: the read below is newer than any
                    // event taken for its echo.
                    drop(in_flight);
                    let existing = api_call("reading a Service", api.get_opt(name)).await?;
                    match service_action(
                        desired,
                        &ObservedService::of(existing.as_ref(), owner_uid),
                    ) {
                        // Deleted between the create and the read: the next round creates it.
                        ServiceAction::Create => return Ok(None),
                        other => other,
                    }
                }
                Err(e) => return Err(e.into()),
            }
        }
        other => other,
    };
    if action == ServiceAction::Apply {
        let in_flight = ctx.own_service_writes.begin(namespace, name);
        let written = api
            .patch(
                name,
                &PatchParams::apply(MANAGER).force(),
                &Patch::Apply(desired),
            )
            .await?;
        in_flight.written(&written, owner_uid);
        ctx.metrics.service_writes.inc();
    }
    Ok(Some(action))
}

/// Records an event without holding the reconcile worker: events are best effort, and
/// at scale their POSTs cost as much as the status writes (docs/benchmarks.md).
pub fn publish(
    ctx: &Arc<Context>,
    reference: &ObjectReference,
    warning: bool,
    reason: &str,
    note: &str,
) {
    let event = Event {
        type_: if warning {
            EventType::Warning
        } else {
            EventType::Normal
        },
        reason: reason.to_string(),
        note: Some(note.to_string()),
        action: "Reconcile".to_string(),
        secondary: None,
    };
    let (ctx, reference, reason) = (ctx.clone(), reference.clone(), reason.to_string());
    tokio::spawn(async move {
        match ctx.recorder.publish(&event, &reference).await {
            Ok(()) => {
                ctx.metrics.events.inc();
            }
            Err(e) => tracing::warn!(error = %e, reason, "could not record event"),
        }
    });
}
