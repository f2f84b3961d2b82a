//! The webhook's HTTPS endpoint with a certificate from a directory (the cert-manager
//! mode, `--webhook-cert-dir`): a client that trusts only that CA gets an
//! AdmissionReview answer with the class's compile error. No cluster is involved: a
//! ConnectorClass review needs no API call.

use std::sync::Arc;
use std::time::Duration;

use connectors_operator::admission::{self, CertSource, WebhookSettings, certs};
use connectors_operator::runtime::Shutdown;
use connectors_operator::telemetry::Metrics;
use serde_json::{Value, json};

fn class_review() -> Value {
    json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {
            "uid": "review-1", "operation": "CREATE", "userInfo": {},
            "kind": {"group": "connectors.alauda.io", "version": "v1alpha1", "kind": "ConnectorClass"},
            "resource": {"group": "connectors.alauda.io", "version": "v1alpha1", "resource": "connectorclasses"},
            "name": "bad",
            "object": {
                "apiVersion": "connectors.alauda.io/v1alpha1", "kind": "ConnectorClass",
                "metadata": {"name": "bad"},
                "spec": {"livenessProbe": {"http": {"path": "/", "response": {"cel": "response.statusCode =="}}}}
            }
        }
    })
}

#[tokio::test]
async fn serves_reviews_over_tls_with_the_certificate_from_a_directory() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cert = certs::issue(&["127.0.0.1".to_string()], time::OffsetDateTime::now_utc()).unwrap();
    let dir = std::env::temp_dir().join(format!("webhook-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("tls.crt"), &cert.cert).unwrap();
    std::fs::write(dir.join("tls.key"), &cert.key).unwrap();

    // A client for an API server that is never contacted by a class review.
    let config = kube::Config::new("http://127.0.0.1:1".parse().unwrap());
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
    let (_stop, shutdown) = Shutdown::manual();
    let server = tokio::spawn(admission::run(
        client,
        listener,
        settings,
        Arc::new(Metrics::default()),
        shutdown,
    ));

    let mut roots = rustls::RootCertStore::empty();
    for der in rustls_pemfile::certs(&mut cert.ca_cert.as_bytes()) {
        roots.add(der.unwrap()).unwrap();
    }
    let tls = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let https = reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let url = format!(
        "https://127.0.0.1:{}/validate/connectorclasses",
        addr.port()
    );
    let mut answer = None;
    for _ in 0..50 {
        let request = https
            .post(&url)
            .header("content-type", "application/json")
            .body(class_review().to_string());
        match request.send().await {
            Ok(response) => {
                let body = response.bytes().await.unwrap();
                answer = Some(serde_json::from_slice::<Value>(&body).unwrap());
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    let answer = answer.expect("the webhook answered over TLS");
    let response = &answer["response"];
    assert_eq!(response["uid"], "review-1");
    assert_eq!(response["allowed"], false);
    assert_eq!(response["status"]["code"], 422);
    let message = response["status"]["message"].as_str().unwrap();
    assert!(
        message.starts_with("spec.livenessProbe.http.response.cel: "),
        "{message}"
    );
    server.abort();
    let _ = std::fs::remove_dir_all(&dir);
}
