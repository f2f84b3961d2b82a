//! The webhook's HTTPS endpoint with a certificate from a directory (the cert-manager
//! mode, `--webhook-cert-dir`): a client that trusts only that CA gets an
//! AdmissionReview answer with the class's compile error. No cluster is involved: a
//! ConnectorClass review needs no API call.

mod webhook_support;

use std::time::Duration;

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
    let webhook = webhook_support::start("tls").await;
    // Trusts only the CA of the directory's certificate.
    let https = webhook_support::https(&webhook);
    let url = format!(
        "https://127.0.0.1:{}/validate/connectorclasses",
        webhook.addr.port()
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
}
