//! One reconcile of a Dex Connector: observe -> decide -> act.

use std::sync::Arc;

use kube::Resource;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType};

use crate::api::{DexConnector, DexConnectorStatus};
use crate::decide::conditions::ready_transition;
use crate::decide::identity::{IdpFacts, decide_idp_status};
use crate::observe::identity::{IdpCheckSettings, observe_idp};
use crate::runtime::now;
use crate::types::conditions::{READY, TRUE};
use crate::validation::identity::validate_dex;

use super::objects::ClusterSecrets;
use super::{API_REQUEST_DEADLINE, Context, Error, MANAGER};

/// `namespace/name`: the key of backoff state.
pub fn key_of(connector: &DexConnector) -> String {
    format!(
        "{}/{}",
        connector.metadata.namespace.as_deref().unwrap_or_default(),
        connector.metadata.name.as_deref().unwrap_or_default()
    )
}

pub(super) async fn reconcile(
    connector: Arc<DexConnector>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    let validation = validate_dex(&connector);
    let namespace = connector.metadata.namespace.clone().unwrap_or_default();
    let settings = IdpCheckSettings {
        timeout: ctx.settings.timeout,
        destinations: ctx.settings.destinations,
    };
    let objects = ClusterSecrets {
        client: &ctx.client,
    };
    let (secret, live) = observe_idp(
        &objects,
        &namespace,
        &validation,
        &ctx.global_trust(),
        &settings,
    )
    .await?;
    let checked = live.is_some();
    let facts = IdpFacts {
        generation: connector.metadata.generation,
        validation: &validation,
        secret,
        live,
    };
    let status = decide_idp_status(connector.conditions(), &facts, &now());
    let ready = status
        .conditions
        .iter()
        .any(|c| c.type_ == READY && c.status == TRUE);
    match act(&ctx, &connector, status).await {
        Err(Error::Kube(kube::Error::Api(e))) if e.code == 409 => {
            // Written meanwhile (e.g. by the directory sync): judge again from the new one.
            return Ok(Action::requeue(std::time::Duration::from_secs(1)));
        }
        other => other?,
    }
    if !checked {
        // Invalid config or a type left alone: nothing changes until the object does.
        return Ok(Action::await_change());
    }
    Ok(Action::requeue(ctx.next_check(&key_of(&connector), ready)))
}

/// Writes the status only if it differs from the stored one, and records an event on
/// a Ready transition.
async fn act(
    ctx: &Arc<Context>,
    connector: &DexConnector,
    status: DexConnectorStatus,
) -> Result<(), Error> {
    let mut stored = connector.status.clone().unwrap_or_default();
    // `lastSync` is the directory sync's (its own field manager): never sent here.
    stored.last_sync = None;
    if stored == status {
        return Ok(());
    }
    let namespace = connector.metadata.namespace.as_deref().unwrap_or_default();
    let name = connector.metadata.name.as_deref().unwrap_or_default();
    let api = Api::<DexConnector>::namespaced(ctx.client.clone(), namespace);
    // The stored resourceVersion: the conditions list is atomic and shared with the
    // directory sync (SyncReady), so a write from a stale read must fail, not revert it.
    let patch = serde_json::json!({
        "apiVersion": DexConnector::api_version(&()),
        "kind": DexConnector::kind(&()),
        "metadata": {"resourceVersion": connector.metadata.resource_version},
        "status": status,
    });
    let params = PatchParams::apply(MANAGER).force();
    tokio::time::timeout(
        API_REQUEST_DEADLINE,
        api.patch_status(name, &params, &Patch::Apply(&patch)),
    )
    .await
    .map_err(|_| Error::Deadline("writing a status"))??;
    tracing::info!(namespace, name, "identity connector status written");
    if let Some(event) = ready_transition(&stored.conditions, &status.conditions) {
        publish(ctx, connector, event.warning, &event.reason, &event.message);
    }
    Ok(())
}

/// Records an event off the worker (best effort).
fn publish(ctx: &Arc<Context>, connector: &DexConnector, warning: bool, reason: &str, note: &str) {
    let event = Event {
        type_: if warning {
            EventType::Warning
        } else {
            EventType::Normal
        },
        reason: reason.to_string(),
        note: Some(note.to_string()),
        action: "Check".to_string(),
        secondary: None,
    };
    let reference = connector.object_ref(&());
    let ctx = ctx.clone();
    tokio::spawn(async move {
        if let Err(e) = ctx.recorder.publish(&event, &reference).await {
            tracing::warn!(error = %e, "could not record event");
        }
    });
}
