//! The webhook's HTTPS endpoint with a certificate from a directory (the cert-manager
//! mode, `--webhook-cert-dir`): a client that trusts only that CA gets an
//! AdmissionReview answer with the class's compile error. No cluster is involved: a
//! ConnectorClass review needs no API call.

mod webhook_support;

use serde_json::Value;

#[tokio::test]
async fn serves_reviews_over_tls_with_the_certificate_from_a_directory() {
    let webhook = webhook_support::start("tls").await;
    // The support's client trusts only the CA of the directory's certificate.
    let (status, body) =
        webhook_support::review(&webhook, webhook_support::class_review("review-1", 0))
            .await
            .expect("the webhook answered over TLS");
    assert_eq!(status, 200);
    let answer: Value = serde_json::from_slice(&body).expect("an AdmissionReview");
    let response = &answer["response"];
    assert_eq!(response["uid"], "review-1");
    assert_eq!(response["allowed"], false);
    assert_eq!(response["status"]["code"], 422);
    let message = response["status"]["message"].as_str().unwrap_or_default();
    assert!(
        message.starts_with("spec.livenessProbe.http.response.cel: "),
        "{message}"
    );
}
