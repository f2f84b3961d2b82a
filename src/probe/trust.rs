//! Extra CA certificates trusted when probing, on top of the system roots.

use std::fmt;
use std::sync::{Arc, OnceLock};

use rustls::RootCertStore;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use sha2::{Digest, Sha256};

/// A set of extra CA certificates (from the operator's `ca-cert` Secrets and the
/// Connector's `caCertSecretRef`). Cheap to clone; [`TrustBundle::id`] identifies the
/// set (order and duplicates do not matter), so equal bundles share one HTTP client.
#[derive(Clone, Default)]
pub struct TrustBundle {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    certs: Vec<CertificateDer<'static>>,
    id: u64,
}

/// A PEM input that holds no usable certificate.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct TrustError(pub String);

impl fmt::Debug for TrustBundle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "TrustBundle({} certs, id {:016x})",
            self.inner.certs.len(),
            self.inner.id
        )
    }
}

impl TrustBundle {
    /// No extra certificate: system roots only.
    pub fn empty() -> Self {
        Self::default()
    }

    /// A bundle of every certificate in the PEM inputs. Each input must hold at least
    /// one valid certificate.
    pub fn from_pems<I, P>(pems: I) -> Result<Self, TrustError>
    where
        I: IntoIterator<Item = P>,
        P: AsRef<[u8]>,
    {
        Self::empty().with_pems(pems)
    }

    /// This bundle plus the certificates of more PEM inputs.
    pub fn with_pems<I, P>(&self, pems: I) -> Result<Self, TrustError>
    where
        I: IntoIterator<Item = P>,
        P: AsRef<[u8]>,
    {
        let mut certs = self.inner.certs.clone();
        for (i, pem) in pems.into_iter().enumerate() {
            certs.extend(
                parse_pem_certs(pem.as_ref())
                    .map_err(|e| TrustError(format!("PEM input {i}: {e}")))?,
            );
        }
        Ok(Self::from_certs(certs))
    }

    /// This bundle plus the certificates of another one.
    pub fn merged(&self, other: &TrustBundle) -> Self {
        if other.is_empty() {
            return self.clone();
        }
        if self.is_empty() {
            return other.clone();
        }
        let mut certs = self.inner.certs.clone();
        certs.extend(other.inner.certs.iter().cloned());
        Self::from_certs(certs)
    }

    fn from_certs(mut certs: Vec<CertificateDer<'static>>) -> Self {
        certs.sort_by(|a, b| a.as_ref().cmp(b.as_ref()));
        certs.dedup_by(|a, b| a.as_ref() == b.as_ref());
        let id = if certs.is_empty() {
            0
        } else {
            let mut h = Sha256::new();
            for c in &certs {
                h.update((c.len() as u64).to_be_bytes());
                h.update(c.as_ref());
            }
            let d = h.finalize();
            let mut b = [0u8; 8];
            b.copy_from_slice(&d[..8]);
            u64::from_be_bytes(b)
        };
        TrustBundle {
            inner: Arc::new(Inner { certs, id }),
        }
    }

    /// Identifies the set of certificates; 0 for the empty bundle.
    pub fn id(&self) -> u64 {
        self.inner.id
    }

    pub fn len(&self) -> usize {
        self.inner.certs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.inner.certs.is_empty()
    }

    /// A TLS client configuration trusting the system roots plus this bundle, on the
    /// process's one crypto provider (`ring`); no ALPN set.
    pub fn client_config(&self) -> Result<rustls::ClientConfig, String> {
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        Ok(rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(self.root_store())
            .with_no_client_auth())
    }

    /// System roots plus this bundle's certificates.
    pub(crate) fn root_store(&self) -> RootCertStore {
        let mut roots = system_roots().clone();
        // Certificates were checked when the bundle was built.
        let (_added, _ignored) = roots.add_parsable_certificates(self.inner.certs.iter().cloned());
        roots
    }
}

/// The certificates of one PEM input. An error when it holds none, when a block
/// cannot be decoded, or when a certificate cannot be parsed.
pub fn parse_pem_certs(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, TrustError> {
    let mut certs = Vec::new();
    for item in CertificateDer::pem_slice_iter(pem) {
        let cert = item.map_err(|e| TrustError(format!("invalid PEM data: {e}")))?;
        let mut probe = RootCertStore::empty();
        probe
            .add(cert.clone())
            .map_err(|e| TrustError(format!("invalid certificate: {e}")))?;
        certs.push(cert);
    }
    if certs.is_empty() {
        return Err(TrustError("no PEM certificate found".to_string()));
    }
    Ok(certs)
}

/// The system's root certificates, loaded once per process.
fn system_roots() -> &'static RootCertStore {
    static ROOTS: OnceLock<RootCertStore> = OnceLock::new();
    ROOTS.get_or_init(|| {
        let loaded = rustls_native_certs::load_native_certs();
        for e in &loaded.errors {
            tracing::warn!(error = %e, "could not load some system root certificates");
        }
        let mut roots = RootCertStore::empty();
        let (added, ignored) = roots.add_parsable_certificates(loaded.certs);
        tracing::debug!(added, ignored, "loaded system root certificates");
        roots
    })
}
