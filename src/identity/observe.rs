//! Observing a Dex Connector's inputs: the Secret behind `bindPWRef` /
//! `clientSecretRef` (the value stays in a [`Password`]) and the CA trust.

use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;
use serde_json::Value;

use crate::api::dex::{ConfigSource, DexConnector, SecretKeyRef};
use crate::decide::identity::IdpSecretFacts;
use crate::probe::TrustBundle;
use crate::validation::identity::decode_root_ca_data;

use super::ldap::Password;
use super::{API_REQUEST_DEADLINE, Context, Error};

/// The Secret name a Connector's config references (for the Secret watch), read from
/// the raw config so that an invalid config still maps.
pub fn referenced_secret(connector: &DexConnector) -> Option<String> {
    let config = match connector.config_source() {
        ConfigSource::Spec(map) | ConfigSource::Legacy(map) => map,
        _ => return None,
    };
    ["bindPWRef", "clientSecretRef"]
        .iter()
        .find_map(|k| config.get(*k)?.get("name").and_then(Value::as_str))
        .map(str::to_string)
}

/// What the secret fields of a config say and hold: facts, and the value if usable.
pub async fn resolve_secret(
    ctx: &Context,
    namespace: &str,
    inline: Option<&str>,
    reference: Option<&SecretKeyRef>,
    anonymous: bool,
) -> Result<(IdpSecretFacts, Option<Password>), Error> {
    if anonymous {
        return Ok((IdpSecretFacts::Anonymous, None));
    }
    if let Some(value) = inline.filter(|v| !v.is_empty()) {
        return Ok((IdpSecretFacts::Inline, Some(Password(value.to_string()))));
    }
    let Some(reference) = reference else {
        // Validation refuses this; treated as a missing Secret.
        return Ok((
            IdpSecretFacts::SecretNotFound {
                name: String::new(),
            },
            None,
        ));
    };
    let api = Api::<Secret>::namespaced(ctx.client.clone(), namespace);
    let secret = tokio::time::timeout(API_REQUEST_DEADLINE, api.get_opt(&reference.name))
        .await
        .map_err(|_| Error::Deadline("reading a Secret"))??;
    let (name, key) = (reference.name.clone(), reference.key.clone());
    let Some(secret) = secret else {
        return Ok((IdpSecretFacts::SecretNotFound { name }, None));
    };
    Ok(match secret_value(&secret, &key) {
        Some(value) => (IdpSecretFacts::Found { name, key }, Some(Password(value))),
        None => (IdpSecretFacts::KeyNotFound { name, key }, None),
    })
}

/// The value of `key` in `data` or `stringData`, trailing newline removed (as
/// `kubectl create secret --from-file` leaves one).
pub fn secret_value(secret: &Secret, key: &str) -> Option<String> {
    let from_data = secret
        .data
        .as_ref()
        .and_then(|d| d.get(key))
        .map(|v| String::from_utf8_lossy(&v.0).into_owned());
    let value = from_data.or_else(|| secret.string_data.as_ref()?.get(key).cloned())?;
    Some(value.trim_end_matches(['\n', '\r']).to_string())
}

/// Global CAs plus the Connector's own: `rootCAData` (base64 PEM), and `rootCA` /
/// `rootCAs` entries that are PEM text, or file paths readable by the operator (they
/// name files in Dex's pod; one the operator cannot read is skipped).
pub fn connector_trust(
    global: &TrustBundle,
    root_ca_data: Option<&str>,
    paths_or_pems: &[String],
) -> TrustBundle {
    let mut pems: Vec<Vec<u8>> = Vec::new();
    if let Some(pem) = root_ca_data.and_then(decode_root_ca_data) {
        pems.push(pem);
    }
    for entry in paths_or_pems.iter().filter(|e| !e.is_empty()) {
        if entry.contains("-----BEGIN ") {
            pems.push(entry.as_bytes().to_vec());
        } else if let Ok(bytes) = std::fs::read(entry) {
            pems.push(bytes);
        }
    }
    pems.iter()
        .filter_map(|p| TrustBundle::from_pems([p]).ok())
        .fold(global.clone(), |acc, b| acc.merged(&b))
}
