//! The webhook's self-managed serving certificate: a private CA and a leaf for the
//! webhook's host names, kept in one Secret of the operator's namespace so that every
//! replica and every restart serves the same certificate and the CA bundle in the
//! webhook configuration stays valid.
//!
//! The CA (10 years) signs a leaf (1 year). The leaf is re-issued from the stored CA
//! when it has less than [`RENEW_BEFORE_DAYS`] left or lacks a host name, so the CA
//! bundle does not change on renewal.

use std::collections::BTreeMap;
use std::net::IpAddr;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, ObjectMeta, PostParams};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use time::{Duration, OffsetDateTime};

pub const CA_CERT_KEY: &str = "ca.crt";
pub const CA_KEY_KEY: &str = "ca.key";
pub const TLS_CERT_KEY: &str = "tls.crt";
pub const TLS_KEY_KEY: &str = "tls.key";
/// Marks a Secret the operator created, so it only ever rewrites its own.
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
pub const MANAGED_BY_VALUE: &str = "connectors-operator";
const CA_DAYS: i64 = 3650;
const LEAF_DAYS: i64 = 365;
pub const RENEW_BEFORE_DAYS: i64 = 30;

#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("generating the webhook certificate: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("Secret {0}: {1}")]
    Secret(String, String),
    #[error("Secret {name}: {source}")]
    Kube {
        name: String,
        #[source]
        source: kube::Error,
    },
}

/// PEM texts of the CA and the serving leaf.
#[derive(Clone, PartialEq, Eq)]
pub struct ServingCert {
    pub ca_cert: String,
    pub ca_key: String,
    pub cert: String,
    pub key: String,
}

impl std::fmt::Debug for ServingCert {
    // Private keys never reach a log line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServingCert").finish_non_exhaustive()
    }
}

/// A new CA and a leaf for `hosts` (DNS names or IP addresses).
pub fn issue(hosts: &[String], now: OffsetDateTime) -> Result<ServingCert, CertError> {
    let ca_key = KeyPair::generate()?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.distinguished_name = name("connectors-operator webhook CA");
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.not_before = now - Duration::hours(1);
    params.not_after = now + Duration::days(CA_DAYS);
    let ca = params.self_signed(&ca_key)?;
    let (cert, key) = leaf(hosts, &ca, &ca_key, now)?;
    Ok(ServingCert {
        ca_cert: ca.pem(),
        ca_key: ca_key.serialize_pem(),
        cert,
        key,
    })
}

/// A new leaf for `hosts` from the CA in `current`.
pub fn reissue_leaf(
    current: &ServingCert,
    hosts: &[String],
    now: OffsetDateTime,
) -> Result<ServingCert, CertError> {
    let ca_key = KeyPair::from_pem(&current.ca_key)?;
    // Same subject and key as the stored CA, so leaves it signs chain to the stored CA.
    let ca = CertificateParams::from_ca_cert_pem(&current.ca_cert)?.self_signed(&ca_key)?;
    let (cert, key) = leaf(hosts, &ca, &ca_key, now)?;
    Ok(ServingCert {
        cert,
        key,
        ..current.clone()
    })
}

fn leaf(
    hosts: &[String],
    ca: &rcgen::Certificate,
    ca_key: &KeyPair,
    now: OffsetDateTime,
) -> Result<(String, String), CertError> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(hosts.to_vec())?;
    params.distinguished_name = name(hosts.first().map_or("connectors-operator", |h| h));
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.not_before = now - Duration::hours(1);
    params.not_after = now + Duration::days(LEAF_DAYS);
    let cert = params.signed_by(&key, ca, ca_key)?;
    Ok((cert.pem(), key.serialize_pem()))
}

fn name(common_name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    dn
}

/// Why `cert` must be replaced, or `None` when it serves `hosts` for long enough.
pub fn renewal_reason(cert: &ServingCert, hosts: &[String], now: OffsetDateTime) -> Option<String> {
    let leaf = match parse(&cert.cert) {
        Ok(leaf) => leaf,
        Err(why) => return Some(why),
    };
    let ca = match parse(&cert.ca_cert) {
        Ok(ca) => ca,
        Err(why) => return Some(format!("CA: {why}")),
    };
    let renew_at = renew_at(now);
    if ca.not_after < renew_at {
        return Some("the CA expires soon".into());
    }
    if leaf.not_after < renew_at {
        return Some("the certificate expires soon".into());
    }
    let missing: Vec<&str> = hosts
        .iter()
        .filter(|h| !leaf.names.iter().any(|n| n.eq_ignore_ascii_case(h)))
        .map(String::as_str)
        .collect();
    if !missing.is_empty() {
        return Some(format!("the certificate lacks {}", missing.join(", ")));
    }
    None
}

struct ParsedCert {
    not_after: i64,
    names: Vec<String>,
}

fn parse(pem: &str) -> Result<ParsedCert, String> {
    use x509_parser::extensions::GeneralName;
    let (_, pem) = x509_parser::pem::parse_x509_pem(pem.as_bytes())
        .map_err(|e| format!("not a PEM certificate: {e}"))?;
    let cert = pem
        .parse_x509()
        .map_err(|e| format!("not an X.509 certificate: {e}"))?;
    let mut names = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for general in &san.value.general_names {
            match general {
                GeneralName::DNSName(dns) => names.push(dns.to_string()),
                GeneralName::IPAddress(bytes) => {
                    let ip = match bytes.len() {
                        4 => <[u8; 4]>::try_from(*bytes).ok().map(IpAddr::from),
                        16 => <[u8; 16]>::try_from(*bytes).ok().map(IpAddr::from),
                        _ => None,
                    };
                    names.extend(ip.map(|ip| ip.to_string()));
                }
                _ => {}
            }
        }
    }
    Ok(ParsedCert {
        not_after: cert.validity().not_after.timestamp(),
        names,
    })
}

/// The certificate stored in `secret`, if it has every key.
pub fn from_secret(secret: &Secret) -> Option<ServingCert> {
    let data = secret.data.as_ref()?;
    let text = |key: &str| {
        data.get(key)
            .and_then(|v| String::from_utf8(v.0.clone()).ok())
    };
    Some(ServingCert {
        ca_cert: text(CA_CERT_KEY)?,
        ca_key: text(CA_KEY_KEY)?,
        cert: text(TLS_CERT_KEY)?,
        key: text(TLS_KEY_KEY)?,
    })
}

fn secret_data(cert: &ServingCert) -> BTreeMap<String, ByteString> {
    [
        (CA_CERT_KEY, &cert.ca_cert),
        (CA_KEY_KEY, &cert.ca_key),
        (TLS_CERT_KEY, &cert.cert),
        (TLS_KEY_KEY, &cert.key),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), ByteString(v.clone().into_bytes())))
    .collect()
}

fn is_managed(secret: &Secret) -> bool {
    secret
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(MANAGED_BY_LABEL))
        .is_some_and(|v| v == MANAGED_BY_VALUE)
}

/// Reads the certificate Secret, creating or renewing it when needed, and returns the
/// certificate to serve. Safe with several replicas: creation races end in
/// AlreadyExists and renewal races in a Conflict, after which the winner's Secret is
/// read again.
pub async fn ensure_secret(
    api: &Api<Secret>,
    name: &str,
    hosts: &[String],
) -> Result<ServingCert, CertError> {
    let kube_err = |source| CertError::Kube {
        name: name.to_string(),
        source,
    };
    for _ in 0..3 {
        let now = OffsetDateTime::now_utc();
        let Some(secret) = api.get_opt(name).await.map_err(kube_err)? else {
            let cert = issue(hosts, now)?;
            let secret = Secret {
                metadata: ObjectMeta {
                    name: Some(name.to_string()),
                    labels: Some(
                        [(MANAGED_BY_LABEL.to_string(), MANAGED_BY_VALUE.to_string())].into(),
                    ),
                    ..Default::default()
                },
                type_: Some("kubernetes.io/tls".into()),
                data: Some(secret_data(&cert)),
                ..Default::default()
            };
            match api.create(&PostParams::default(), &secret).await {
                Ok(_) => {
                    tracing::info!(secret = name, "created the webhook serving certificate");
                    return Ok(cert);
                }
                Err(kube::Error::Api(e)) if e.code == 409 => continue,
                Err(e) => return Err(kube_err(e)),
            }
        };
        let stored = from_secret(&secret);
        let reason = match &stored {
            Some(cert) => renewal_reason(cert, hosts, now),
            None => Some("keys are missing".into()),
        };
        let (Some(reason), true) = (reason, is_managed(&secret)) else {
            return stored.ok_or_else(|| {
                CertError::Secret(
                    name.into(),
                    "not created by the operator and lacks ca.crt, ca.key, tls.crt or tls.key"
                        .into(),
                )
            });
        };
        let renewed = match &stored {
            Some(cert) if ca_reusable(cert, now) => reissue_leaf(cert, hosts, now)?,
            _ => issue(hosts, now)?,
        };
        let mut updated = secret.clone();
        updated.data = Some(secret_data(&renewed));
        match api.replace(name, &PostParams::default(), &updated).await {
            Ok(_) => {
                tracing::info!(secret = name, %reason, "renewed the webhook serving certificate");
                return Ok(renewed);
            }
            Err(kube::Error::Api(e)) if e.code == 409 => continue,
            Err(e) => return Err(kube_err(e)),
        }
    }
    Err(CertError::Secret(
        name.into(),
        "kept changing while being read (another replica renewing it?)".into(),
    ))
}

/// A certificate expiring before this Unix time is renewed now.
fn renew_at(now: OffsetDateTime) -> i64 {
    now.unix_timestamp() + RENEW_BEFORE_DAYS * 86_400
}

/// The stored CA is sound and can sign a new leaf (so the CA bundle stays).
fn ca_reusable(cert: &ServingCert, now: OffsetDateTime) -> bool {
    parse(&cert.ca_cert).is_ok_and(|ca| ca.not_after >= renew_at(now))
        && KeyPair::from_pem(&cert.ca_key).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosts() -> Vec<String> {
        vec!["webhook.ns.svc".into(), "127.0.0.1".into()]
    }

    #[test]
    fn issued_certificate_covers_its_hosts_and_is_not_due() {
        let now = OffsetDateTime::now_utc();
        let cert = issue(&hosts(), now).unwrap();
        assert_eq!(renewal_reason(&cert, &hosts(), now), None);
        assert!(cert.ca_cert.contains("BEGIN CERTIFICATE"));
    }

    #[test]
    fn renewal_reasons() {
        let now = OffsetDateTime::now_utc();
        let cert = issue(&hosts(), now).unwrap();
        let mut more = hosts();
        more.push("other.example".into());
        assert_eq!(
            renewal_reason(&cert, &more, now).as_deref(),
            Some("the certificate lacks other.example")
        );
        let later = now + Duration::days(LEAF_DAYS - RENEW_BEFORE_DAYS + 1);
        assert_eq!(
            renewal_reason(&cert, &hosts(), later).as_deref(),
            Some("the certificate expires soon")
        );
        let garbage = ServingCert {
            cert: "nope".into(),
            ..cert
        };
        assert!(renewal_reason(&garbage, &hosts(), now).is_some());
    }

    #[test]
    fn reissued_leaf_keeps_the_ca_and_chains_to_it() {
        let now = OffsetDateTime::now_utc();
        let cert = issue(&hosts(), now).unwrap();
        let renewed = reissue_leaf(&cert, &hosts(), now).unwrap();
        assert_eq!(renewed.ca_cert, cert.ca_cert);
        assert_ne!(renewed.cert, cert.cert);

        // A TLS client trusting only the stored CA accepts the new leaf.
        let ca_der = rustls_pemfile::certs(&mut renewed.ca_cert.as_bytes())
            .next()
            .unwrap()
            .unwrap();
        let leaf_der = rustls_pemfile::certs(&mut renewed.cert.as_bytes())
            .next()
            .unwrap()
            .unwrap();
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca_der).unwrap();
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let verifier =
            rustls::client::WebPkiServerVerifier::builder_with_provider(roots.into(), provider)
                .build()
                .unwrap();
        use rustls::client::danger::ServerCertVerifier;
        verifier
            .verify_server_cert(
                &leaf_der,
                &[],
                &rustls::pki_types::ServerName::try_from("webhook.ns.svc").unwrap(),
                &[],
                rustls::pki_types::UnixTime::now(),
            )
            .unwrap();
    }
}
