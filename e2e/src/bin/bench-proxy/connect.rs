//! The CONNECT path (issue 15): HTTPS GETs through CONNECT with the proxy's TLS
//! termination (MITM with a minted leaf) versus direct HTTPS to the same tool, with
//! reqwest's keep-alive pool (one CONNECT per pooled connection).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

use crate::load::Latencies;

/// An HTTP/1.1 client trusting only `ca_pem`; through `proxy` (URL, user, password)
/// when given.
pub fn client(
    ca_pem: &[u8],
    proxy: Option<(&str, &str, &str)>,
    pool: usize,
) -> Result<reqwest::Client, String> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem) {
        roots
            .add(cert.map_err(|e| e.to_string())?)
            .map_err(|e| e.to_string())?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let mut builder = reqwest::Client::builder()
        .tls_backend_preconfigured(config)
        .http1_only()
        .pool_max_idle_per_host(pool);
    builder = match proxy {
        Some((url, user, password)) => builder.proxy(
            reqwest::Proxy::https(url)
                .map_err(|e| e.to_string())?
                .basic_auth(user, password),
        ),
        None => builder.no_proxy(),
    };
    builder.build().map_err(|e| e.to_string())
}

/// `requests` GETs of `url` by `clients` concurrent callers sharing `client`.
pub async fn latency(
    client: &reqwest::Client,
    url: &str,
    clients: usize,
    requests: usize,
) -> Latencies {
    let left = Arc::new(AtomicUsize::new(requests));
    let started = Instant::now();
    let tasks: Vec<_> = (0..clients.max(1))
        .map(|_| {
            let (client, url, left) = (client.clone(), url.to_string(), left.clone());
            tokio::spawn(async move {
                let (mut micros, mut errors, mut first_error) = (Vec::new(), 0u64, None);
                while left
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                    .is_ok()
                {
                    let start = Instant::now();
                    let answer = async {
                        let response = client.get(&url).send().await?.error_for_status()?;
                        response.bytes().await
                    }
                    .await;
                    match answer {
                        Ok(_) => micros.push(start.elapsed().as_micros() as u64),
                        Err(e) => {
                            errors += 1;
                            first_error.get_or_insert(e.to_string());
                        }
                    }
                }
                (micros, errors, first_error)
            })
        })
        .collect();
    let mut all = Latencies::default();
    for task in tasks {
        if let Ok((micros, errors, first_error)) = task.await {
            all.micros.extend(micros);
            all.errors += errors;
            if all.first_error.is_none() {
                all.first_error = first_error;
            }
        }
    }
    all.micros.sort_unstable();
    all.seconds = started.elapsed().as_secs_f64();
    all
}
