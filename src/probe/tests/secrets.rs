//! A planted Secret value never shows in an outcome message or a Debug output.

use std::time::Duration;

use super::server::{Reply, serve};
use super::{compiled, connector, secret};
use crate::probe::{
    HttpProber, ProbeKind, ProbeOutcome, ProbeSettings, ProbeTarget, TrustBundle, run_probe,
};

const SENTINEL: &str = "S3NT1NEL-do-not-leak";

fn class_yaml(extra_header: &str, cel: &str, rego: &str) -> String {
    format!(
        r#"
auth:
  types:
  - name: tokenAuth
    generator:
      rego: |
        package proxy
        {rego}
authProbes:
- authName: tokenAuth
  probe:
    http:
      path: /user
      httpHeaders:
      - {{name: Authorization, value: 'Bearer {{{{ .Secret.StringData.token }}}}'}}
      - {{name: Private-Token, value: '{{{{ .Secret.StringData.token }}}}'}}
      {extra_header}
      response:
        cel: {cel:?}
"#
    )
}

fn assert_clean(what: &str, text: &str) {
    assert!(!text.contains(SENTINEL), "{what} leaks the secret: {text}");
    assert!(
        !text.contains("S3NT1NEL"),
        "{what} leaks part of the secret: {text}"
    );
}

#[tokio::test]
async fn sentinel_never_leaks() {
    let s = secret(&[("token", SENTINEL), ("username", "user")]);
    assert_clean("SecretMaterial Debug", &format!("{s:?}"));
    let p = HttpProber::new(ProbeSettings {
        timeout: Duration::from_millis(1000),
        ..ProbeSettings::default()
    });
    let trust = TrustBundle::empty();

    // The server echoes the token back; a CEL error on the body names the problem, not the value.
    let echo = serve(|r| {
        let token = r
            .header("private-token")
            .first()
            .cloned()
            .unwrap_or_default();
        Reply::body(
            200,
            "application/json",
            &format!("{{\"token\":\"{token}\"}}"),
        )
    })
    .await;
    let query_rego =
        r#"auth := {"position": "query", "auth": {"private_token": input.data.token}}"#;
    let yaml = class_yaml("", "response.body.token + 1 == 2", query_rego);
    let class = compiled(&yaml);
    let c = connector(&format!(
        "connectorClassName: test\naddress: {}\nauth: {{name: tokenAuth, secretRef: {{name: creds}}}}",
        echo.url("")
    ));
    let target = ProbeTarget {
        connector: &c,
        secret: Some(&s),
        class_api_url: None,
    };
    let req = match class.request(ProbeKind::Auth, &target) {
        Some(Ok(r)) => r,
        other => panic!("{other:?}"),
    };
    assert!(
        req.url().as_str().contains(SENTINEL),
        "the query carries the token"
    );
    assert_clean("ProbeRequest Debug", &format!("{req:?}"));
    assert_clean("ProbeRequest display_url", &req.display_url());
    for h in req.headers() {
        assert_clean("RequestHeader Debug", &format!("{h:?}"));
    }
    let resp = p.send(&req, &trust).await.unwrap();
    assert!(
        String::from_utf8_lossy(&resp.body).contains(SENTINEL),
        "the server echoed it"
    );
    assert_clean("HttpResponse Debug", &format!("{resp:?}"));
    let o = class.judge(ProbeKind::Auth, &req, &resp).await;
    assert!(matches!(o, ProbeOutcome::Failed { .. }), "{o:?}");
    assert!(o.message().contains("unsupported binary operator"), "{o:?}");
    assert_clean("CEL error", o.message());

    // A template that fails after reading the secret.
    let yaml = class_yaml(
        "- {name: X-Fail, value: '{{ fail .Secret.StringData.token }}'}",
        "true",
        query_rego,
    );
    let o = run_probe(&compiled(&yaml), ProbeKind::Auth, &target, &p, &trust).await;
    let o = o.unwrap_or(ProbeOutcome::Passed);
    assert!(matches!(o, ProbeOutcome::Failed { .. }), "{o:?}");
    assert_clean("template error", o.message());

    // A generator whose output is rejected while quoting the secret.
    let yaml = class_yaml(
        "",
        "true",
        r#"auth := {"position": input.data.token, "auth": {}}"#,
    );
    let o = run_probe(&compiled(&yaml), ProbeKind::Auth, &target, &p, &trust)
        .await
        .unwrap_or(ProbeOutcome::Passed);
    assert!(matches!(o, ProbeOutcome::Failed { .. }), "{o:?}");
    assert_clean("generator error", o.message());

    // A transport error about a URL whose query carries the secret.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let down = connector(&format!(
        "connectorClassName: test\naddress: http://127.0.0.1:{port}\nauth: {{name: tokenAuth, secretRef: {{name: creds}}}}"
    ));
    let target = ProbeTarget {
        connector: &down,
        secret: Some(&s),
        class_api_url: None,
    };
    let yaml = class_yaml("", "true", query_rego);
    let o = run_probe(&compiled(&yaml), ProbeKind::Auth, &target, &p, &trust)
        .await
        .unwrap_or(ProbeOutcome::Passed);
    assert!(o.message().contains("private_token=[redacted]"), "{o:?}");
    assert_clean("transport error", o.message());
}
