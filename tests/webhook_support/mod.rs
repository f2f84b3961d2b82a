//! A webhook in cert-directory mode on loopback and raw TLS clients for it, shared by
//! the webhook limit tests.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use connectors_operator::admission::{self, CertSource, WebhookSettings, certs};
use connectors_operator::runtime::Shutdown;
use connectors_operator::telemetry::Metrics;
use serde_json::json;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

/// A webhook serving in cert-directory mode on an ephemeral loopback port.
pub struct Webhook {
    pub addr: SocketAddr,
    pub ca: String,
    dir: std::path::PathBuf,
    server: tokio::task::JoinHandle<Result<(), admission::WebhookError>>,
    _stop: Box<dyn std::any::Any + Send>,
}

impl Drop for Webhook {
    fn drop(&mut self) {
        self.server.abort();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub async fn start(name: &str) -> Webhook {
    start_with_api(name, "http://127.0.0.1:1").await
}

/// A webhook whose API server is `api` (e.g. one that never answers).
pub async fn start_with_api(name: &str, api: &str) -> Webhook {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cert = certs::issue(&["127.0.0.1".to_string()], time::OffsetDateTime::now_utc()).unwrap();
    let dir = std::env::temp_dir().join(format!("webhook-limits-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("tls.crt"), &cert.cert).unwrap();
    std::fs::write(dir.join("tls.key"), &cert.key).unwrap();
    // By default an API server that is never contacted by a class review.
    let config = kube::Config::new(api.parse().unwrap());
    let client = kube::Client::try_from(config).unwrap();
    let listener = admission::bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let settings = WebhookSettings {
        addr,
        namespace: "unused".into(),
        certs: CertSource::Directory(dir.clone()),
    };
    let (stop, shutdown) = Shutdown::manual();
    let server = tokio::spawn(admission::run(
        client,
        listener,
        settings,
        Arc::new(Metrics::default()),
        shutdown,
    ));
    let webhook = Webhook {
        addr,
        ca: cert.ca_cert,
        dir,
        server,
        _stop: Box::new(stop),
    };
    // Serving once a review is answered.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if review(&webhook, class_review("ready", 0)).await.is_ok() {
            return webhook;
        }
        assert!(Instant::now() < deadline, "the webhook never answered");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A ConnectorClass review (needs no API call) whose object carries `padding` bytes in
/// an annotation; its compile error makes the answer a denial.
pub fn class_review(uid: &str, padding: usize) -> Vec<u8> {
    json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {
            "uid": uid, "operation": "CREATE", "userInfo": {},
            "kind": {"group": "connectors.alauda.io", "version": "v1alpha1", "kind": "ConnectorClass"},
            "resource": {"group": "connectors.alauda.io", "version": "v1alpha1", "resource": "connectorclasses"},
            "name": "bad",
            "object": {
                "apiVersion": "connectors.alauda.io/v1alpha1", "kind": "ConnectorClass",
                "metadata": {"name": "bad", "annotations": {"pad": "p".repeat(padding)}},
                "spec": {"livenessProbe": {"http": {"path": "/", "response": {"cel": "response.statusCode =="}}}}
            }
        }
    })
    .to_string()
    .into_bytes()
}

pub fn https(webhook: &Webhook) -> reqwest::Client {
    let mut roots = rustls::RootCertStore::empty();
    for der in rustls_pemfile::certs(&mut webhook.ca.as_bytes()) {
        roots.add(der.unwrap()).unwrap();
    }
    let tls = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// POSTs `body` as a class review with a fresh client; (status, body).
pub async fn review(webhook: &Webhook, body: Vec<u8>) -> Result<(u16, Vec<u8>), reqwest::Error> {
    review_at(webhook, "connectorclasses", body).await
}

/// POSTs `body` to `/validate/{kind}` with a fresh client; (status, body).
pub async fn review_at(
    webhook: &Webhook,
    kind: &str,
    body: Vec<u8>,
) -> Result<(u16, Vec<u8>), reqwest::Error> {
    let url = format!("https://127.0.0.1:{}/validate/{kind}", webhook.addr.port());
    let response = https(webhook)
        .post(&url)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await?;
    let status = response.status().as_u16();
    Ok((status, response.bytes().await?.to_vec()))
}

/// A raw TLS connection speaking `alpn`, as a hand-written client would.
pub async fn tls_connect(webhook: &Webhook, alpn: &[u8]) -> TlsStream<TcpStream> {
    let mut roots = rustls::RootCertStore::empty();
    for der in rustls_pemfile::certs(&mut webhook.ca.as_bytes()) {
        roots.add(der.unwrap()).unwrap();
    }
    let mut config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![alpn.to_vec()];
    let tcp = TcpStream::connect(webhook.addr).await.unwrap();
    TlsConnector::from(Arc::new(config))
        .connect("127.0.0.1".try_into().unwrap(), tcp)
        .await
        .unwrap()
}

/// Reads until the server closes the connection; what it sent, and when it closed
/// (`None`: still open after `limit`).
pub async fn read_until_closed<S: tokio::io::AsyncRead + Unpin>(
    stream: &mut S,
    limit: Duration,
) -> (Vec<u8>, Option<Duration>) {
    let start = Instant::now();
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let left = limit.saturating_sub(start.elapsed());
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return (received, Some(start.elapsed())),
            Ok(Ok(n)) => received.extend_from_slice(&buf[..n]),
            Err(_) => return (received, None),
        }
    }
}
