//! Observing a Dex Connector (SPEC-identity section 2), shared by the identity
//! controller and `check`: the Secret behind `bindPWRef` / `clientSecretRef` (read
//! through [`Objects`]; the value stays in a [`Password`]), the CA trust, and the live
//! LDAP ([`ldap`]) or OIDC ([`oidc`]) checks.

pub mod directory;
pub mod ldap;
pub mod oidc;

use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use serde_json::Value;

use crate::api::dex::{ConfigSource, DexConnector, SecretKeyRef};
use crate::decide::identity::{IdpSecretFacts, LiveChecks};
use crate::probe::{DestinationPolicy, TrustBundle};
use crate::validation::identity::{IdpKind, IdpValidation, decode_root_ca_data};

use super::Objects;
use ldap::{LdapTarget, Password, check_ldap};
use oidc::{OidcTarget, check_oidc};

/// How the live checks run.
#[derive(Clone, Debug)]
pub struct IdpCheckSettings {
    /// Bound of each network step.
    pub timeout: Duration,
    pub destinations: DestinationPolicy,
}

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

/// Secret facts and live checks of a validated Connector; `(None, None)` when nothing
/// is checked (invalid config, or a type left alone).
pub async fn observe_idp<O: Objects>(
    objects: &O,
    namespace: &str,
    validation: &IdpValidation,
    global_trust: &TrustBundle,
    settings: &IdpCheckSettings,
) -> Result<(Option<IdpSecretFacts>, Option<LiveChecks>), O::Error> {
    if !validation.errors.is_empty() {
        return Ok((None, None));
    }
    match &validation.kind {
        Some(IdpKind::Ldap(config)) => {
            let anonymous = config.bind_dn.as_deref().is_none_or(str::is_empty);
            let (facts, password) = resolve_secret(
                objects,
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
                trust: connector_trust(global_trust, config.root_ca_data.as_deref(), &root_ca),
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
                objects,
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
                trust: connector_trust(global_trust, None, &config.root_cas),
                timeout: settings.timeout,
                destinations: settings.destinations,
            };
            Ok((Some(facts), Some(check_oidc(&target).await)))
        }
        Some(IdpKind::Unsupported(_)) | None => Ok((None, None)),
    }
}

/// What the secret fields of a config say and hold: facts, and the value if usable.
pub async fn resolve_secret<O: Objects>(
    objects: &O,
    namespace: &str,
    inline: Option<&str>,
    reference: Option<&SecretKeyRef>,
    anonymous: bool,
) -> Result<(IdpSecretFacts, Option<Password>), O::Error> {
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
    let (name, key) = (reference.name.clone(), reference.key.clone());
    let Some(secret) = objects.secret(namespace, &name).await? else {
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

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::ByteString;

    #[test]
    fn secret_values_come_from_data_then_string_data_without_a_trailing_newline() {
        let secret = Secret {
            data: Some([("a".to_string(), ByteString(b"from-data\n".to_vec()))].into()),
            string_data: Some([("b".to_string(), "from-string-data".to_string())].into()),
            ..Secret::default()
        };
        assert_eq!(secret_value(&secret, "a").as_deref(), Some("from-data"));
        assert_eq!(
            secret_value(&secret, "b").as_deref(),
            Some("from-string-data")
        );
        assert_eq!(secret_value(&secret, "c"), None);
    }

    #[test]
    fn the_referenced_secret_is_read_from_the_raw_config() {
        let c: DexConnector = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "x"}, "type": "oidc",
            "spec": {"config": {"clientSecretRef": {"name": "sso", "key": "k"}, "issuer": 1}},
        }))
        .unwrap();
        assert_eq!(referenced_secret(&c).as_deref(), Some("sso"));
    }

    #[test]
    fn trust_adds_root_ca_data_and_pem_entries_and_skips_unreadable_paths() {
        use base64::Engine as _;
        let pem =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/e2e/fixtures/ca.pem"))
                .unwrap();
        let data = base64::engine::general_purpose::STANDARD.encode(&pem);
        let trust = connector_trust(&TrustBundle::empty(), Some(&data), &[]);
        assert_eq!(trust.len(), 1);
        let trust = connector_trust(
            &TrustBundle::empty(),
            None,
            &[pem.clone(), "/no/such/file.pem".to_string()],
        );
        assert_eq!(trust.len(), 1);
        assert!(connector_trust(&TrustBundle::empty(), Some("not base64"), &[]).is_empty());
    }
}
