//! The webhook's Secret access check fails closed (SPEC section 6): when the
//! SubjectAccessReview cannot be made (the API server hangs or is unreachable), a
//! Connector that references a Secret is refused with a message naming the field, the
//! Secret and the user, and the answer comes before the API server's 5 s webhook
//! timeout. That the check allows and denies as RBAC says is shown against a real
//! API server in e2e/tests/admission.rs.

mod webhook_support;

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use webhook_support::{review_at, start_with_api};

fn connector_review(uid: &str) -> Vec<u8> {
    json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {
            "uid": uid, "operation": "CREATE",
            "userInfo": {"username": "alice", "groups": ["dev"], "uid": "1"},
            "kind": {"group": "connectors.alauda.io", "version": "v1alpha1", "kind": "Connector"},
            "resource": {"group": "connectors.alauda.io", "version": "v1alpha1", "resource": "connectors"},
            "namespace": "ns", "name": "c",
            "object": {
                "apiVersion": "connectors.alauda.io/v1alpha1", "kind": "Connector",
                "metadata": {"name": "c", "namespace": "ns"},
                "spec": {"connectorClassName": "git", "address": "https://git.example.com",
                         "auth": {"name": "basicAuth", "secretRef": {"name": "admin-token"}}}
            }
        }
    })
    .to_string()
    .into_bytes()
}

async fn judged(api: &str, name: &str) -> (Value, Duration) {
    let webhook = start_with_api(name, api).await;
    let start = Instant::now();
    let (status, body) = review_at(&webhook, "connectors", connector_review(name))
        .await
        .unwrap();
    let took = start.elapsed();
    assert_eq!(status, 200);
    (serde_json::from_slice(&body).unwrap(), took)
}

fn assert_refused(answer: &Value) {
    let response = &answer["response"];
    assert_eq!(response["allowed"], false, "{answer}");
    let message = response["status"]["message"].as_str().unwrap();
    assert!(
        message.contains(r#"spec.auth.secretRef.name: could not check whether user "alice" may get Secret "admin-token" in namespace "ns""#),
        "{message}"
    );
}

#[tokio::test]
async fn unreachable_api_server_refuses_the_secret_reference() {
    let (answer, _) = judged("http://127.0.0.1:1", "unreachable").await;
    assert_refused(&answer);
}

#[tokio::test]
async fn hanging_api_server_refuses_in_time() {
    // Accepts connections and never answers.
    let hang = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let api = format!("http://{}", hang.local_addr().unwrap());
    let _held = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((conn, _)) = hang.accept().await {
            open.push(conn);
        }
    });
    let (answer, took) = judged(&api, "hanging").await;
    assert_refused(&answer);
    assert!(took < Duration::from_secs(5), "answered after {took:?}");
}
