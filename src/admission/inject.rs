//! Keeps the CA bundle of the operator's ValidatingWebhookConfiguration equal to the
//! CA that signs the serving certificate. Event-driven: a watch of that one object (by
//! name, which the RBAC's resourceNames allows) re-injects the bundle when the object is
//! created or re-applied without it, and a CA change patches it at once. Writes only
//! when a webhook's bundle differs.

use std::future::Future;

use futures::StreamExt;
use k8s_openapi::ByteString;
use k8s_openapi::api::admissionregistration::v1::ValidatingWebhookConfiguration;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::json;
use tokio::sync::watch;

use crate::runtime::WatchBackoff;

/// The patch that sets `ca_pem` on every webhook of `config`, or `None` when all of
/// them already carry it.
pub fn ca_bundle_patch(
    config: &ValidatingWebhookConfiguration,
    ca_pem: &str,
) -> Option<serde_json::Value> {
    let stale: Vec<serde_json::Value> = config
        .webhooks
        .iter()
        .flatten()
        .filter(|w| {
            w.client_config.ca_bundle.as_ref().map(|b| b.0.as_slice()) != Some(ca_pem.as_bytes())
        })
        .map(|w| {
            json!({
                "name": w.name,
                "clientConfig": {"caBundle": ByteString(ca_pem.as_bytes().to_vec())},
            })
        })
        .collect();
    // Strategic merge: `webhooks` merges by `name`, so other fields stay as applied.
    (!stale.is_empty()).then(|| json!({ "webhooks": stale }))
}

/// Runs until `shutdown`; `ca` holds the current CA PEM.
pub async fn keep_ca_bundle(
    client: kube::Client,
    config_name: String,
    mut ca: watch::Receiver<String>,
    shutdown: impl Future<Output = ()>,
) {
    let api: Api<ValidatingWebhookConfiguration> = Api::all(client);
    let selector = format!("metadata.name={config_name}");
    let configs = watcher(api.clone(), watcher::Config::default().fields(&selector))
        .backoff(WatchBackoff::default())
        .applied_objects();
    tokio::pin!(configs);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => return,
            next = configs.next() => match next {
                Some(Ok(config)) => {
                    let pem = ca.borrow().clone();
                    ensure(&api, &config, &pem).await;
                }
                Some(Err(e)) => tracing::warn!(config = %config_name, error = %e, "watching the webhook configuration"),
                None => return,
            },
            changed = ca.changed() => {
                if changed.is_err() {
                    return;
                }
                let pem = ca.borrow_and_update().clone();
                match api.get_opt(&config_name).await {
                    Ok(Some(config)) => ensure(&api, &config, &pem).await,
                    Ok(None) => {}
                    Err(e) => tracing::warn!(config = %config_name, error = %e, "reading the webhook configuration"),
                }
            }
        }
    }
}

async fn ensure(
    api: &Api<ValidatingWebhookConfiguration>,
    config: &ValidatingWebhookConfiguration,
    ca_pem: &str,
) {
    let Some(patch) = ca_bundle_patch(config, ca_pem) else {
        return;
    };
    let name = config.metadata.name.as_deref().unwrap_or_default();
    match api
        .patch(name, &PatchParams::default(), &Patch::Strategic(patch))
        .await
    {
        Ok(_) => tracing::info!(config = name, "injected the webhook CA bundle"),
        // The watch delivers the object again if it changes; a failed patch is retried
        // on the next event or CA change.
        Err(e) => tracing::warn!(config = name, error = %e, "injecting the webhook CA bundle"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(bundles: &[Option<&str>]) -> ValidatingWebhookConfiguration {
        let webhooks: Vec<serde_json::Value> = bundles
            .iter()
            .enumerate()
            .map(|(i, b)| {
                let mut client_config = json!({"url": "https://127.0.0.1:1/x"});
                if let Some(b) = b {
                    client_config["caBundle"] = json!(ByteString(b.as_bytes().to_vec()));
                }
                json!({"name": format!("w{i}.example.com"), "clientConfig": client_config,
                       "admissionReviewVersions": ["v1"], "sideEffects": "None"})
            })
            .collect();
        serde_json::from_value(json!({"metadata": {"name": "c"}, "webhooks": webhooks})).unwrap()
    }

    #[test]
    fn patches_only_stale_webhooks_and_nothing_when_current() {
        assert_eq!(
            ca_bundle_patch(&config(&[Some("CA"), Some("CA")]), "CA"),
            None
        );
        let patch = ca_bundle_patch(&config(&[Some("CA"), None, Some("OLD")]), "CA").unwrap();
        let names: Vec<&str> = patch["webhooks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|w| w["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, vec!["w1.example.com", "w2.example.com"]);
        // caBundle is []byte in the API: base64 in JSON.
        assert_eq!(
            patch["webhooks"][0]["clientConfig"]["caBundle"],
            json!("Q0E=")
        );
    }
}
