//! I/O against in-process servers: timeouts, slow bodies, the body cap, redirects,
//! TLS trust, connection errors, what is actually sent.

use std::time::Duration;

use super::server::{Reply, pki, serve, serve_tls};
use super::{build, compiled, connector, secret};
use crate::probe::{
    FailureReason, HttpProber, ProbeKind, ProbeOutcome, ProbeSettings, ProbeTarget, TrustBundle,
    run_probe,
};

fn prober(timeout_ms: u64, body_cap: usize) -> HttpProber {
    HttpProber::new(ProbeSettings {
        timeout: Duration::from_millis(timeout_ms),
        body_cap,
        ..ProbeSettings::default()
    })
}

const LIVENESS: &str = "livenessProbe:\n  http:\n    path: /health\n";

async fn liveness(
    class_yaml: &str,
    address: &str,
    p: &HttpProber,
    trust: &TrustBundle,
) -> ProbeOutcome {
    let class = compiled(class_yaml);
    let c = connector(&format!("connectorClassName: test\naddress: {address}"));
    let target = ProbeTarget::new(&c);
    run_probe(&class, ProbeKind::Liveness, &target, p, trust)
        .await
        .unwrap_or_else(|| panic!("no liveness probe"))
}

#[tokio::test]
async fn slow_server_times_out() {
    let s = serve(|_| Reply::After(Duration::from_secs(3), Box::new(Reply::status(200)))).await;
    let started = std::time::Instant::now();
    let o = liveness(
        LIVENESS,
        &s.url(""),
        &prober(300, 1024),
        &TrustBundle::empty(),
    )
    .await;
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(
        o,
        ProbeOutcome::failed(
            FailureReason::ConnectionFailed,
            format!(
                "Get \"{}\": context deadline exceeded (Client.Timeout exceeded while awaiting headers)",
                s.url("/health")
            )
        )
    );
}

#[tokio::test]
async fn slow_drip_body_times_out() {
    let s = serve(|_| Reply::Drip {
        interval: Duration::from_millis(50),
        body: vec![b'x'; 100],
    })
    .await;
    let started = std::time::Instant::now();
    let o = liveness(
        LIVENESS,
        &s.url(""),
        &prober(300, 1024),
        &TrustBundle::empty(),
    )
    .await;
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(o.reason(), Some(FailureReason::ConnectionFailed), "{o:?}");
    assert!(o.message().ends_with("while reading body)"), "{o:?}");
}

#[tokio::test]
async fn body_over_the_cap_is_truncated() {
    let s = serve(|_| {
        Reply::body(
            200,
            "application/json",
            &format!("{{\"pad\":\"{}\"}}", "x".repeat(500)),
        )
    })
    .await;
    let class = compiled(LIVENESS);
    let c = connector(&format!("connectorClassName: test\naddress: {}", s.url("")));
    let r = build(&class, ProbeKind::Liveness, &c, None);
    let resp = prober(2000, 16)
        .send(&r, &TrustBundle::empty())
        .await
        .unwrap();
    assert!(resp.truncated);
    assert_eq!(resp.body.len(), 16);
    let cel = "livenessProbe:\n  http:\n    path: /health\n    response:\n      cel: \"response.bodyString.size() == 16 && response.body == response.bodyString\"\n";
    let o = liveness(cel, &s.url(""), &prober(2000, 16), &TrustBundle::empty()).await;
    assert_eq!(o, ProbeOutcome::Passed);
}

#[tokio::test]
async fn redirect_loop_stops_after_ten() {
    let s = serve(|_| Reply::redirect(302, "/health")).await;
    let o = liveness(
        LIVENESS,
        &s.url(""),
        &prober(3000, 1024),
        &TrustBundle::empty(),
    )
    .await;
    assert_eq!(
        o,
        ProbeOutcome::failed(
            FailureReason::ConnectionFailed,
            format!(
                "Get \"{}\": stopped after 10 redirects (the last to host 127.0.0.1:{})",
                s.url("/health"),
                s.addr.port()
            )
        )
    );
    assert_eq!(s.recorded().len(), 11);
    // With disableRedirect the 302 itself is judged.
    let no_follow = "livenessProbe:\n  http:\n    path: /health\n    disableRedirect: true\n";
    let o = liveness(
        no_follow,
        &s.url(""),
        &prober(3000, 1024),
        &TrustBundle::empty(),
    )
    .await;
    assert_eq!(
        o,
        ProbeOutcome::failed(FailureReason::ProbeFailed, "status code 302")
    );
}

#[tokio::test]
async fn redirects_drop_credentials_across_hosts() {
    let landing = serve(|_| Reply::status(200)).await;
    let to = format!("http://localhost:{}/landing", landing.addr.port());
    let origin = serve(move |r| {
        if r.target == "/start" {
            Reply::redirect(302, "/same")
        } else {
            Reply::redirect(307, &to)
        }
    })
    .await;
    let class = compiled(
        r#"
        auth:
          types: [{name: basicAuth}]
        authProbes:
        - authName: basicAuth
          probe:
            http:
              path: /start
              method: POST
              httpHeaders:
              - {name: Authorization, value: 'Basic {{ .Secret.StringData.password | b64enc }}'}
              - {name: X-Token, value: '{{ .Secret.StringData.password }}'}
              - {name: X-Trace, value: trace-1}
        "#,
    );
    let c = connector(&format!(
        "connectorClassName: test\naddress: {}\nauth: {{name: basicAuth, secretRef: {{name: creds}}}}",
        origin.url("")
    ));
    let s = secret(&[("password", "pw-secret")]);
    let target = ProbeTarget {
        connector: &c,
        secret: Some(&s),
        class_api_url: None,
    };
    let o = run_probe(
        &class,
        ProbeKind::Auth,
        &target,
        &prober(3000, 1024),
        &TrustBundle::empty(),
    )
    .await;
    assert_eq!(o, Some(ProbeOutcome::Passed));
    let first = origin.recorded();
    assert_eq!(first.len(), 2);
    assert_eq!(first[0].method, "POST");
    // 302 turns POST into GET; same host keeps the credentials.
    assert_eq!(first[1].method, "GET");
    assert_eq!(first[1].header("authorization"), vec!["Basic cHctc2VjcmV0"]);
    assert_eq!(first[1].header("x-token"), vec!["pw-secret"]);
    let last = landing.recorded();
    assert_eq!(last.len(), 1);
    assert_eq!(last[0].target, "/landing");
    assert!(last[0].header("authorization").is_empty(), "{:?}", last[0]);
    assert!(last[0].header("x-token").is_empty(), "{:?}", last[0]);
    assert_eq!(last[0].header("x-trace"), vec!["trace-1"]);
}

#[tokio::test]
async fn tls_trust_follows_the_bundle() {
    let pki = pki();
    let s = serve_tls(|_| Reply::status(200), pki.acceptor.clone()).await;
    let address = format!("https://localhost:{}", s.addr.port());
    let p = prober(3000, 1024);
    let trusted = TrustBundle::from_pems([pki.ca_pem.as_bytes()]).unwrap();
    assert_eq!(
        liveness(LIVENESS, &address, &p, &trusted).await,
        ProbeOutcome::Passed
    );
    let o = liveness(LIVENESS, &address, &p, &TrustBundle::empty()).await;
    assert_eq!(o.reason(), Some(FailureReason::ConnectionFailed), "{o:?}");
    assert!(
        o.message().starts_with(&format!(
            "Get \"{address}/health\": tls: failed to verify certificate"
        )),
        "{o:?}"
    );
    // The IP address is in the certificate too.
    let by_ip = format!("https://127.0.0.1:{}", s.addr.port());
    assert_eq!(
        liveness(LIVENESS, &by_ip, &p, &trusted).await,
        ProbeOutcome::Passed
    );
}

#[tokio::test]
async fn connection_refused() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let address = format!("http://127.0.0.1:{port}");
    let o = liveness(
        LIVENESS,
        &address,
        &prober(1000, 1024),
        &TrustBundle::empty(),
    )
    .await;
    assert_eq!(
        o,
        ProbeOutcome::failed(
            FailureReason::ConnectionFailed,
            format!("Get \"{address}/health\": connect: connection refused")
        )
    );
}

#[tokio::test]
async fn dns_failure() {
    let o = liveness(
        LIVENESS,
        "http://does-not-exist.invalid",
        &prober(2000, 1024),
        &TrustBundle::empty(),
    )
    .await;
    assert_eq!(o.reason(), Some(FailureReason::ConnectionFailed), "{o:?}");
    assert!(
        o.message()
            .starts_with("Get \"http://does-not-exist.invalid/health\": "),
        "{o:?}"
    );
}

#[tokio::test]
async fn what_is_sent() {
    let s = serve(|_| Reply::status(200)).await;
    let class = compiled(
        r#"
        auth:
          types:
          - name: tokenAuth
            generator:
              rego: |
                package proxy
                auth := {"position": "body", "contentType": "application/json", "auth": {"token": input.data.token}}
        authProbes:
        - authName: tokenAuth
          probe:
            http:
              path: /login?x=1
              method: POST
              httpHeaders:
              - {name: X-Multi, value: a}
              - {name: X-Multi, value: b}
        "#,
    );
    let c = connector(&format!(
        "connectorClassName: test\naddress: {}\nauth: {{name: tokenAuth, secretRef: {{name: creds}}}}",
        s.url("")
    ));
    let sec = secret(&[("token", "tok-1")]);
    let target = ProbeTarget {
        connector: &c,
        secret: Some(&sec),
        class_api_url: None,
    };
    let o = run_probe(
        &class,
        ProbeKind::Auth,
        &target,
        &prober(3000, 1024),
        &TrustBundle::empty(),
    )
    .await;
    assert_eq!(o, Some(ProbeOutcome::Passed));
    let got = s.recorded();
    assert_eq!(got[0].method, "POST");
    assert_eq!(got[0].target, "/login?x=1");
    assert_eq!(got[0].header("x-multi"), vec!["a", "b"]);
    assert_eq!(got[0].header("content-type"), vec!["application/json"]);
    assert_eq!(got[0].body, br#"{"token":"tok-1"}"#.to_vec());
}

#[tokio::test]
async fn api_probe_against_a_server() {
    let s = serve(|r| match r.target.as_str() {
        "/api/v1/live" => Reply::status(200),
        "/api/v1/auth/my-git" => Reply::status(403),
        _ => Reply::status(404),
    })
    .await;
    let class = compiled(
        "api: {uri: http://unused}\nauth:\n  types: [{name: basicAuth}]\nlivenessProbe:\n  api: {path: /live}\nauthProbes:\n- authName: basicAuth\n  probe: {api: {path: '/auth/{{ .Connector.Name }}'}}\n",
    );
    let c = connector("connectorClassName: test\naddress: https://g.io\nauth: {name: basicAuth}");
    let base = s.url("/api/v1");
    let target = ProbeTarget {
        connector: &c,
        secret: None,
        class_api_url: Some(&base),
    };
    let p = prober(3000, 1024);
    let t = TrustBundle::empty();
    assert_eq!(
        run_probe(&class, ProbeKind::Liveness, &target, &p, &t).await,
        Some(ProbeOutcome::Passed)
    );
    assert_eq!(
        run_probe(&class, ProbeKind::Auth, &target, &p, &t).await,
        Some(ProbeOutcome::failed(
            FailureReason::AuthenticationFailed,
            "Authentication failed: status code 403"
        ))
    );
}

#[tokio::test]
async fn reachability() {
    let s = serve(|_| Reply::status(503)).await;
    let p = prober(1000, 1024);
    assert_eq!(
        p.reach(&s.url("/api"), &TrustBundle::empty()).await,
        Ok(503)
    );
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let url = format!("http://127.0.0.1:{port}/api");
    assert_eq!(
        p.reach(&url, &TrustBundle::empty()).await,
        Err(format!("Get \"{url}\": connect: connection refused"))
    );
}
