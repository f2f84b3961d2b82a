//! A Connector's Secrets as facts: the auth Secret (keys only, values kept in
//! [`SecretMaterial`]) and CA bundles (global and `caCertSecretRef`).

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::Secret;

use crate::api::Connector;
use crate::decide::connector::{CaFacts, SecretFacts};
use crate::probe::{SecretMaterial, TrustBundle};
use crate::validation::is_object_name;

/// Label that marks a Secret in the operator's namespace as a global CA bundle.
pub const GLOBAL_CA_LABEL: &str = "connectors.cpaas.io/ca-cert";

/// Where a Secret a Connector references is, or why it is not looked at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SecretLookup {
    None,
    CrossNamespace(String),
    /// Not a valid object name: never put into a request.
    InvalidName(String),
    InOwnNamespace(String),
}

/// The Secret a name of the Connector's own namespace points at: only a valid object
/// name is ever looked up.
fn own_namespace(name: Option<&str>) -> SecretLookup {
    match name.filter(|n| !n.is_empty()) {
        Some(name) if !is_object_name(name) => SecretLookup::InvalidName(name.to_string()),
        Some(name) => SecretLookup::InOwnNamespace(name.to_string()),
        None => SecretLookup::None,
    }
}

/// The auth Secret (`spec.auth.secretRef`).
pub fn secret_lookup(connector: &Connector) -> SecretLookup {
    let Some(reference) = connector.secret_ref() else {
        return SecretLookup::None;
    };
    let own = connector.metadata.namespace.as_deref().unwrap_or_default();
    match reference.namespace.as_deref().filter(|ns| !ns.is_empty()) {
        Some(ns) if ns != own => SecretLookup::CrossNamespace(ns.to_string()),
        _ => own_namespace(reference.name.as_deref()),
    }
}

/// The CA Secret (`spec.caCertSecretRef`, always in the Connector's namespace).
pub fn ca_lookup(connector: &Connector) -> SecretLookup {
    own_namespace(
        connector
            .spec
            .ca_cert_secret_ref
            .as_ref()
            .map(|r| r.name.as_str()),
    )
}

/// `(namespace, name)` of every Secret a Connector reads (auth and CA); invalid and
/// cross-namespace references are never read, so they are not listed.
pub fn referenced_secrets(connector: &Connector) -> Vec<(String, String)> {
    let namespace = connector.metadata.namespace.clone().unwrap_or_default();
    [secret_lookup(connector), ca_lookup(connector)]
        .into_iter()
        .filter_map(|lookup| match lookup {
            SecretLookup::InOwnNamespace(name) => Some((namespace.clone(), name)),
            _ => None,
        })
        .collect()
}

/// Decoded `data` and `stringData` of a Secret (values stay inside SecretMaterial, whose
/// Debug redacts them).
pub fn secret_material(secret: &Secret) -> SecretMaterial {
    let mut data: std::collections::BTreeMap<String, String> = secret
        .data
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), String::from_utf8_lossy(&v.0).into_owned()))
        .collect();
    for (k, v) in secret.string_data.iter().flatten() {
        data.insert(k.clone(), v.clone());
    }
    SecretMaterial {
        name: secret.metadata.name.clone().unwrap_or_default(),
        type_: secret.type_.clone().unwrap_or_else(|| "Opaque".to_string()),
        data,
    }
}

/// Facts about the auth Secret: the lookup and what was found (keys only).
pub fn secret_facts(lookup: &SecretLookup, found: Option<&SecretMaterial>) -> SecretFacts {
    match (lookup, found) {
        (SecretLookup::None, _) => SecretFacts::NotReferenced,
        (SecretLookup::CrossNamespace(ns), _) => SecretFacts::CrossNamespace {
            namespace: ns.clone(),
        },
        (SecretLookup::InvalidName(name), _) => SecretFacts::InvalidName { name: name.clone() },
        (SecretLookup::InOwnNamespace(name), None) => SecretFacts::NotFound { name: name.clone() },
        (SecretLookup::InOwnNamespace(name), Some(m)) => SecretFacts::Found {
            name: name.clone(),
            type_: m.type_.clone(),
            keys: m.data.keys().cloned().collect::<BTreeSet<_>>(),
        },
    }
}

/// PEM CA certificates in a Secret: values of keys ending `.crt`/`.pem`, or any value
/// with a PEM header. Err when there are none or they do not parse.
/// The CA Secret holds no PEM certificate that parses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvalidPem;

pub fn ca_bundle_from_secret(secret: &Secret) -> Result<TrustBundle, InvalidPem> {
    let pems: Vec<Vec<u8>> = secret
        .data
        .iter()
        .flatten()
        .filter(|(k, v)| {
            k.ends_with(".crt")
                || k.ends_with(".pem")
                || v.0.windows(11).any(|w| w == b"-----BEGIN ")
        })
        .map(|(_, v)| v.0.clone())
        .collect();
    if pems.is_empty() {
        return Err(InvalidPem);
    }
    let bundle = TrustBundle::from_pems(pems.iter()).map_err(|_| InvalidPem)?;
    if bundle.is_empty() {
        Err(InvalidPem)
    } else {
        Ok(bundle)
    }
}

/// The `CACertReady` facts of a Connector's `caCertSecretRef` given its lookup and the
/// Secret found, and the CA bundle it adds (empty unless valid).
pub fn ca_facts(lookup: &SecretLookup, found: Option<&Secret>) -> (CaFacts, TrustBundle) {
    let name = match lookup {
        SecretLookup::None | SecretLookup::CrossNamespace(_) => {
            return (CaFacts::NoRef, TrustBundle::empty());
        }
        SecretLookup::InvalidName(name) => {
            return (
                CaFacts::InvalidName { name: name.clone() },
                TrustBundle::empty(),
            );
        }
        SecretLookup::InOwnNamespace(name) => name.clone(),
    };
    match found.map(ca_bundle_from_secret) {
        None => (CaFacts::NotFound { name }, TrustBundle::empty()),
        Some(Ok(bundle)) => (CaFacts::Valid { name }, bundle),
        Some(Err(InvalidPem)) => (CaFacts::Invalid { name }, TrustBundle::empty()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::ByteString;

    fn secret(key: &str, value: &[u8]) -> Secret {
        Secret {
            data: Some([(key.to_string(), ByteString(value.to_vec()))].into()),
            ..Default::default()
        }
    }

    fn own(name: &str) -> SecretLookup {
        SecretLookup::InOwnNamespace(name.into())
    }

    #[test]
    fn ca_facts_for_each_case() {
        let pem = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/e2e/fixtures/ca.pem"))
            .expect("fixture");
        assert_eq!(ca_facts(&SecretLookup::None, None).0, CaFacts::NoRef);
        assert_eq!(
            ca_facts(&own("ca"), None).0,
            CaFacts::NotFound { name: "ca".into() }
        );
        let (facts, bundle) = ca_facts(&own("ca"), Some(&secret("ca.crt", b"not a cert")));
        assert_eq!(facts, CaFacts::Invalid { name: "ca".into() });
        assert!(bundle.is_empty());
        let (facts, bundle) = ca_facts(&own("ca"), Some(&secret("ca.crt", &pem)));
        assert_eq!(facts, CaFacts::Valid { name: "ca".into() });
        assert_eq!(bundle.len(), 1);
    }
}
