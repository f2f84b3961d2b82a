//! The proxy's own CA (SPEC-proxy section 5): Secret `connectors-proxy-ca` in the
//! operator namespace (created by the first replica, read by the others: creation
//! races end in AlreadyExists and a re-read), its certificate published in ConfigMap
//! `connectors-proxy-ca` key `ca.crt` for workloads to trust. Leaves for CONNECT
//! authorities are minted from it (the authority as the only SAN, DNS or IP; 24 h;
//! cached per host). The key never leaves the process.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration as StdDuration, Instant};

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{Api, ObjectMeta, PostParams};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use rustls::ServerConfig;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use time::{Duration, OffsetDateTime};

pub const CA_NAME: &str = "connectors-proxy-ca";
pub const CA_CERT_KEY: &str = "ca.crt";
const CA_KEY_KEY: &str = "ca.key";
const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "connectors-operator");
const CA_DAYS: i64 = 3650;
/// Validity of a minted leaf; re-minted when less than a quarter is left.
pub const LEAF_HOURS: i64 = 24;
const LEAF_CACHE: usize = 10_000;

pub struct ProxyCa {
    ca: rcgen::Certificate,
    ca_key: KeyPair,
    ca_der: CertificateDer<'static>,
    leaves: Mutex<HashMap<String, (Instant, Arc<ServerConfig>)>>,
}

impl std::fmt::Debug for ProxyCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProxyCa").finish_non_exhaustive()
    }
}

fn name(common_name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    dn
}

/// A new CA: (certificate PEM, key PEM).
fn new_ca() -> Result<(String, String), rcgen::Error> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.distinguished_name = name("connectors-proxy CA");
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let now = OffsetDateTime::now_utc();
    params.not_before = now - Duration::hours(1);
    params.not_after = now + Duration::days(CA_DAYS);
    Ok((params.self_signed(&key)?.pem(), key.serialize_pem()))
}

impl ProxyCa {
    fn from_pems(cert: &str, key: &str) -> Result<ProxyCa, String> {
        let ca_key = KeyPair::from_pem(key).map_err(|e| format!("the CA key: {e}"))?;
        let ca = CertificateParams::from_ca_cert_pem(cert)
            .and_then(|p| p.self_signed(&ca_key))
            .map_err(|e| format!("the CA certificate: {e}"))?;
        let ca_der = crate::probe::parse_pem_certs(cert.as_bytes())
            .map_err(|e| e.0)?
            .into_iter()
            .next()
            .ok_or("the CA certificate is empty")?;
        Ok(ProxyCa {
            ca,
            ca_key,
            ca_der,
            leaves: Mutex::new(HashMap::new()),
        })
    }

    /// A TLS server configuration presenting a leaf for `host` (cached; HTTP/1.1), and
    /// whether it came from the cache.
    pub fn server_config(&self, host: &str) -> Result<(Arc<ServerConfig>, bool), String> {
        let now = Instant::now();
        if let Ok(leaves) = self.leaves.lock()
            && let Some((renew_at, config)) = leaves.get(host)
            && now < *renew_at
        {
            return Ok((config.clone(), true));
        }
        let config = Arc::new(self.mint(host)?);
        if let Ok(mut leaves) = self.leaves.lock() {
            if leaves.len() >= LEAF_CACHE {
                leaves.retain(|_, (renew_at, _)| *renew_at > now);
            }
            let renew_after = StdDuration::from_secs(LEAF_HOURS as u64 * 3600 * 3 / 4);
            leaves.insert(host.to_string(), (now + renew_after, config.clone()));
        }
        Ok((config, false))
    }

    fn mint(&self, host: &str) -> Result<ServerConfig, String> {
        let (chain, key) = self.leaf(host)?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .map_err(|e| e.to_string())?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(config)
    }

    /// A leaf for `host` and its key: the chain (leaf, CA) and the key.
    fn leaf(
        &self,
        host: &str,
    ) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), String> {
        let key = KeyPair::generate().map_err(|e| e.to_string())?;
        let mut params =
            CertificateParams::new(vec![host.to_string()]).map_err(|e| e.to_string())?;
        params.distinguished_name = name(host);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let now = OffsetDateTime::now_utc();
        params.not_before = now - Duration::minutes(5);
        params.not_after = now + Duration::hours(LEAF_HOURS);
        let leaf = params
            .signed_by(&key, &self.ca, &self.ca_key)
            .map_err(|e| e.to_string())?;
        let chain = vec![leaf.der().clone(), self.ca_der.clone()];
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        Ok((chain, key))
    }
}

fn text(data: Option<&BTreeMap<String, ByteString>>, key: &str) -> Option<String> {
    data?
        .get(key)
        .and_then(|v| String::from_utf8(v.0.clone()).ok())
}

fn managed() -> Option<BTreeMap<String, String>> {
    Some([(MANAGED_BY.0.to_string(), MANAGED_BY.1.to_string())].into())
}

/// Reads the CA Secret, creating it when absent, and publishes its certificate.
pub async fn ensure(client: &kube::Client, namespace: &str) -> Result<ProxyCa, String> {
    let secrets = Api::<Secret>::namespaced(client.clone(), namespace);
    let failed = |e: kube::Error| format!("Secret {namespace}/{CA_NAME}: {e}");
    let mut pems = None;
    for _ in 0..3 {
        if let Some(secret) = secrets.get_opt(CA_NAME).await.map_err(failed)? {
            let data = secret.data.as_ref();
            pems = text(data, CA_CERT_KEY).zip(text(data, CA_KEY_KEY));
            break;
        }
        let (cert, key) = new_ca().map_err(|e| e.to_string())?;
        let secret = Secret {
            metadata: ObjectMeta {
                name: Some(CA_NAME.into()),
                labels: managed(),
                ..Default::default()
            },
            data: Some(
                [(CA_CERT_KEY, &cert), (CA_KEY_KEY, &key)]
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), ByteString(v.clone().into_bytes())))
                    .collect(),
            ),
            ..Default::default()
        };
        match secrets.create(&PostParams::default(), &secret).await {
            Ok(_) => {
                tracing::info!(secret = CA_NAME, "created the proxy CA");
                pems = Some((cert, key));
                break;
            }
            Err(kube::Error::Api(e)) if e.code == 409 => continue,
            Err(e) => return Err(failed(e)),
        }
    }
    let (cert, key) = pems.ok_or_else(|| {
        format!("Secret {namespace}/{CA_NAME} lacks {CA_CERT_KEY} or {CA_KEY_KEY}")
    })?;
    publish(client, namespace, &cert).await?;
    ProxyCa::from_pems(&cert, &key)
}

/// ConfigMap `connectors-proxy-ca` holds the CA certificate (created, or corrected
/// when it is ours and differs).
async fn publish(client: &kube::Client, namespace: &str, cert: &str) -> Result<(), String> {
    let maps = Api::<ConfigMap>::namespaced(client.clone(), namespace);
    let failed = |e: kube::Error| format!("ConfigMap {namespace}/{CA_NAME}: {e}");
    let data = Some(BTreeMap::from([(
        CA_CERT_KEY.to_string(),
        cert.to_string(),
    )]));
    let existing = maps.get_opt(CA_NAME).await.map_err(failed)?;
    let result = match existing {
        Some(map) if map.data == data => return Ok(()),
        Some(mut map) => {
            map.data = data;
            maps.replace(CA_NAME, &PostParams::default(), &map).await
        }
        None => {
            let map = ConfigMap {
                metadata: ObjectMeta {
                    name: Some(CA_NAME.into()),
                    labels: managed(),
                    ..Default::default()
                },
                data,
                ..Default::default()
            };
            maps.create(&PostParams::default(), &map).await
        }
    };
    match result {
        Ok(_) => Ok(()),
        // Another replica published at the same time: the same CA.
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(()),
        Err(e) => Err(failed(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sans(der: &[u8]) -> Vec<String> {
        let (_, parsed) = x509_parser::parse_x509_certificate(der).unwrap();
        let names = parsed.subject_alternative_name().unwrap().unwrap();
        names
            .value
            .general_names
            .iter()
            .map(|n| format!("{n:?}"))
            .collect()
    }

    #[test]
    fn leaves_carry_exactly_the_authority_and_a_short_validity() {
        let (cert, key) = new_ca().unwrap();
        let ca = ProxyCa::from_pems(&cert, &key).unwrap();
        for host in ["git.example", "10.1.2.3"] {
            let leaf = ca.mint(host).unwrap();
            assert_eq!(leaf.alpn_protocols, vec![b"http/1.1".to_vec()]);
            // The cached config is reused for the same host.
            let (a, first_hit) = ca.server_config(host).unwrap();
            let (b, second_hit) = ca.server_config(host).unwrap();
            assert!(Arc::ptr_eq(&a, &b) && !first_hit && second_hit);
        }
        let (chain, _) = ca.leaf("10.1.2.3").unwrap();
        let der = chain[0].clone();
        assert_eq!(sans(&der), vec!["IPAddress([10, 1, 2, 3])".to_string()]);
        let (_, parsed) = x509_parser::parse_x509_certificate(&der).unwrap();
        let validity = parsed.validity();
        let hours = (validity.not_after.timestamp() - validity.not_before.timestamp()) / 3600;
        assert!(hours <= LEAF_HOURS + 1, "{hours} h");
        let (chain, _) = ca.leaf("git.example").unwrap();
        assert_eq!(
            sans(&chain[0]),
            vec![r#"DNSName("git.example")"#.to_string()]
        );
    }
}
