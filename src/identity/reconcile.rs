//! One reconcile of a Dex Connector: observe -> decide -> act.

use std::sync::Arc;

use kube::Resource;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType};

use crate::api::{DexConnector, DexConnectorStatus};
use crate::decide::conditions::ready_transition;
use crate::decide::identity::{IdpFacts, IdpSecretFacts, LiveChecks, decide_idp_status};
use crate::runtime::now;
use crate::types::conditions::{READY, TRUE};
use crate::validation::identity::{IdpKind, IdpValidation, validate_dex};

use super::ldap::{LdapTarget, check_ldap};
use super::observe::{connector_trust, resolve_secret};
use super::oidc::{OidcTarget, check_oidc};
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
    let (secret, live) = observe(&ctx, &namespace, &validation).await?;
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
    act(&ctx, &connector, status).await?;
    if !checked {
        // Invalid config or a type left alone: nothing changes until the object does.
        return Ok(Action::await_change());
    }
    Ok(Action::requeue(ctx.next_check(&key_of(&connector), ready)))
}

/// The Secret facts and the live checks (`None`, `None` when nothing is checked).
async fn observe(
    ctx: &Context,
    namespace: &str,
    validation: &IdpValidation,
) -> Result<(Option<IdpSecretFacts>, Option<LiveChecks>), Error> {
    if !validation.errors.is_empty() {
        return Ok((None, None));
    }
    let settings = &ctx.settings;
    match &validation.kind {
        Some(IdpKind::Ldap(config)) => {
            let anonymous = config.bind_dn.as_deref().is_none_or(str::is_empty);
            let (facts, password) = resolve_secret(
                ctx,
                namespace,
                config.bind_pw.as_deref(),
                config.bind_pw_ref.as_ref(),
                anonymous,
            )
            .await?;
            let root_ca: Vec<String> = config.root_ca.iter().cloned().collect();
            let target = LdapTarget {
                config: (**config).clone(),
                password,
                secret_usable: facts.usable(),
                trust: connector_trust(
                    &ctx.global_trust(),
                    config.root_ca_data.as_deref(),
                    &root_ca,
                ),
                timeout: settings.timeout,
                destinations: settings.destinations,
            };
            let checks = check_ldap(&target).await;
            let live = LiveChecks {
                liveness: checks.liveness,
                auth: checks.auth,
                search: checks.search,
            };
            Ok((Some(facts), Some(live)))
        }
        Some(IdpKind::Oidc(config)) => {
            let (facts, secret) = resolve_secret(
                ctx,
                namespace,
                config.client_secret.as_deref(),
                config.client_secret_ref.as_ref(),
                false,
            )
            .await?;
            let target = OidcTarget {
                config: (**config).clone(),
                secret_usable: facts.usable(),
                secret,
                trust: connector_trust(&ctx.global_trust(), None, &config.root_cas),
                timeout: settings.timeout,
                destinations: settings.destinations,
            };
            Ok((Some(facts), Some(check_oidc(&target).await)))
        }
        Some(IdpKind::Unsupported(_)) | None => Ok((None, None)),
    }
}

/// Writes the status only if it differs from the stored one, and records an event on
/// a Ready transition.
async fn act(
    ctx: &Arc<Context>,
    connector: &DexConnector,
    status: DexConnectorStatus,
) -> Result<(), Error> {
    let stored = connector.status.clone().unwrap_or_default();
    if stored == status {
        return Ok(());
    }
    let namespace = connector.metadata.namespace.as_deref().unwrap_or_default();
    let name = connector.metadata.name.as_deref().unwrap_or_default();
    let api = Api::<DexConnector>::namespaced(ctx.client.clone(), namespace);
    let patch = serde_json::json!({
        "apiVersion": DexConnector::api_version(&()),
        "kind": DexConnector::kind(&()),
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
