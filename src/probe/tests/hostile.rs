//! Hostile input against the probe engine (issue 20, items 4, 5 and 7): Secret values
//! in the forms they are actually sent, messages bounded and free of response content,
//! destinations that resolve to loopback, link-local or metadata addresses.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use super::server::{Reply, serve};
use super::{compiled, connector, secret};
use crate::probe::{
    DestinationPolicy, FailureReason, HttpProber, ProbeKind, ProbeOutcome, ProbeSettings,
    ProbeTarget, SecretMaterial, TrustBundle, run_probe,
};

fn prober(policy: DestinationPolicy) -> HttpProber {
    HttpProber::new(ProbeSettings {
        timeout: Duration::from_millis(1500),
        destinations: policy,
        ..ProbeSettings::default()
    })
}

fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

fn auth_class(path: &str) -> String {
    format!(
        r#"
auth:
  types: [{{name: tokenAuth}}]
authProbes:
- authName: tokenAuth
  probe:
    http:
      path: {path:?}
"#
    )
}

/// The auth probe of `class_yaml` for a Connector at `address` with Secret `s`.
async fn auth_outcome(
    class_yaml: &str,
    address: &str,
    s: &SecretMaterial,
    p: &HttpProber,
) -> ProbeOutcome {
    let (class, c) = auth_target(class_yaml, address);
    let target = ProbeTarget {
        connector: &c,
        secret: Some(s),
        class_api_url: None,
    };
    run_probe(&class, ProbeKind::Auth, &target, p, &TrustBundle::empty())
        .await
        .expect("the class has this probe")
}

fn auth_target(
    class_yaml: &str,
    address: &str,
) -> (crate::probe::CompiledClass, crate::api::Connector) {
    let c = connector(&format!(
        "connectorClassName: test\naddress: {address}\nauth: {{name: tokenAuth, secretRef: {{name: creds}}}}"
    ));
    (compiled(class_yaml), c)
}

/// The auth probe's outcome and the URL its request was sent to.
async fn auth_probe(
    class_yaml: &str,
    address: &str,
    s: &SecretMaterial,
    p: &HttpProber,
) -> (ProbeOutcome, String) {
    let (class, c) = auth_target(class_yaml, address);
    let target = ProbeTarget {
        connector: &c,
        secret: Some(s),
        class_api_url: None,
    };
    let sent = match class.request(ProbeKind::Auth, &target) {
        Some(Ok(r)) => r.url().as_str().to_string(),
        other => panic!("request not built: {other:?}"),
    };
    (auth_outcome(class_yaml, address, s, p).await, sent)
}

/// No window of `len` bytes of `secret_form` appears in `message`.
fn assert_no_window(what: &str, message: &str, secret_form: &str, len: usize) {
    let bytes = secret_form.as_bytes();
    for w in bytes.windows(len.min(bytes.len())) {
        let w = String::from_utf8_lossy(w);
        assert!(
            !message.contains(w.as_ref()),
            "{what}: {w:?} (part of {secret_form:?}) shows in {message:?}"
        );
    }
}

/// Secret values with characters the URL encoder keeps, encodes differently from a
/// plain percent-encoder, or rewrites, rendered into a path or query as they are and
/// through `urlquery`, `b64enc`, `upper`: the transport error quotes the URL, and no
/// form of the value shows in it.
#[tokio::test]
async fn secret_in_path_or_query_is_redacted_in_every_sent_form() {
    let address = format!("http://127.0.0.1:{}", closed_port());
    let p = prober(DestinationPolicy::Any);
    let cases: &[(&str, &str)] = &[
        (
            "/repos/{{ .Secret.StringData.token }}/info/refs",
            "Qv7Rw3 [a]|b\\c^{d}'e`\"<>f",
        ),
        (
            "/api?token={{ .Secret.StringData.token }}&x=1",
            "Qv7Rw3 it's [x]|^{y}\\z",
        ),
        (
            "/api?token={{ .Secret.StringData.token | urlquery }}",
            "Qv7Rw3~*!(x) y/+=",
        ),
        ("/u/{{ .Secret.StringData.token }}/x", "Qv7Rw3-ünï-😀-ok"),
        (
            "/u/{{ .Secret.StringData.token | upper }}/x",
            "qv7rw3-lower-case",
        ),
        ("/p/{{ .Secret.StringData.token }}#frag", "Qv7Rw3 a#b?c=d"),
    ];
    for (path, value) in cases {
        let s = secret(&[("token", value), ("user", "alice")]);
        let (o, sent) = auth_probe(&auth_class(path), &address, &s, &p).await;
        assert_eq!(o.reason(), Some(FailureReason::ConnectionFailed), "{o:?}");
        assert!(o.message().contains("connection refused"), "{o:?}");
        assert!(
            !o.message().to_ascii_lowercase().contains("qv7rw3"),
            "{path}: the value shows in {:?} (sent {sent:?})",
            o.message()
        );
    }

    // Transformed into base64 (alone and with the user), in a path and a query.
    let value = "Qv7Rw3-s3cr3t+/=?&[]";
    let s = secret(&[("token", value), ("user", "alice")]);
    let joined = STANDARD.encode(format!("alice:{value}"));
    let alone = STANDARD.encode(value);
    for path in [
        r#"/u/{{ printf "%s:%s" .Secret.StringData.user .Secret.StringData.token | b64enc }}"#,
        "/q?t={{ .Secret.StringData.token | b64enc | urlquery }}",
        "/q?t={{ .Secret.StringData.token | b64enc }}",
    ] {
        let (o, sent) = auth_probe(&auth_class(path), &address, &s, &p).await;
        assert_eq!(o.reason(), Some(FailureReason::ConnectionFailed), "{o:?}");
        assert!(!o.message().contains("Qv7Rw3"), "{o:?}");
        for form in [&joined, &alone] {
            assert_no_window(path, o.message(), form, 8);
            let escaped: String = url::form_urlencoded::byte_serialize(form.as_bytes()).collect();
            assert_no_window(path, o.message(), &escaped, 8);
        }
        assert!(!o.message().contains(&sent[address.len()..]), "{o:?}");
    }
}

/// A redirect is reported by host: the Location's path and query (an internal
/// service's answer, a token) never reach the message.
#[tokio::test]
async fn redirects_are_reported_by_host_only() {
    let down = closed_port();
    let to = format!("http://127.0.0.1:{down}/internal/answer?data=REFLECTED-Kx81");
    let s = serve(move |r| {
        if r.target.starts_with("/health") {
            Reply::redirect(302, &to)
        } else {
            Reply::status(200)
        }
    })
    .await;
    let class = compiled("livenessProbe:\n  http:\n    path: /health\n");
    let c = connector(&format!("connectorClassName: test\naddress: {}", s.url("")));
    let p = prober(DestinationPolicy::Any);
    let o = run_probe(
        &class,
        ProbeKind::Liveness,
        &ProbeTarget::new(&c),
        &p,
        &TrustBundle::empty(),
    )
    .await
    .expect("the class has this probe");
    assert_eq!(o.reason(), Some(FailureReason::ConnectionFailed), "{o:?}");
    assert!(!o.message().contains("REFLECTED"), "{o:?}");
    assert!(!o.message().contains("/internal"), "{o:?}");
    assert!(o.message().contains(&format!("127.0.0.1:{down}")), "{o:?}");
    assert!(o.message().contains("connection refused"), "{o:?}");

    // A loop whose Locations carry content.
    let looping = serve(|r| {
        let n = r.target.len();
        Reply::redirect(302, &format!("/loop/{n}?secret-answer=LOOPED-Zr42"))
    })
    .await;
    let c = connector(&format!(
        "connectorClassName: test\naddress: {}",
        looping.url("")
    ));
    let o = run_probe(
        &class,
        ProbeKind::Liveness,
        &ProbeTarget::new(&c),
        &p,
        &TrustBundle::empty(),
    )
    .await
    .expect("the class has this probe");
    assert!(o.message().contains("stopped after 10 redirects"), "{o:?}");
    assert!(!o.message().contains("LOOPED"), "{o:?}");
    assert!(!o.message().contains("/loop"), "{o:?}");
}

/// Every outcome message is at most 1 KiB, cut on a character boundary: a long
/// multi-byte URL in a transport error, and a CEL error over a 1 MiB body.
#[tokio::test]
async fn messages_are_at_most_one_kib() {
    let address = format!("http://127.0.0.1:{}", closed_port());
    let long_path = format!("/{}", "é😀x".repeat(3000));
    let class = compiled(&format!(
        "livenessProbe:\n  http:\n    path: {long_path:?}\n"
    ));
    let c = connector(&format!("connectorClassName: test\naddress: {address}"));
    let p = prober(DestinationPolicy::Any);
    let o = run_probe(
        &class,
        ProbeKind::Liveness,
        &ProbeTarget::new(&c),
        &p,
        &TrustBundle::empty(),
    )
    .await
    .expect("the class has this probe");
    assert_eq!(o.reason(), Some(FailureReason::ConnectionFailed), "{o:?}");
    assert!(o.message().len() <= 1024, "{} bytes", o.message().len());
    assert!(o.message().starts_with("Get \"http://127.0.0.1:"), "{o:?}");

    let big = format!("{{\"a\":\"{}\"}}", "BODYCONTENT-".repeat(90_000));
    let s = serve(move |_| Reply::body(200, "application/json", &big)).await;
    let class = compiled(
        "livenessProbe:\n  http:\n    path: /health\n    response:\n      cel: \"response.body.a + 1 == 2\"\n",
    );
    let c = connector(&format!("connectorClassName: test\naddress: {}", s.url("")));
    let o = run_probe(
        &class,
        ProbeKind::Liveness,
        &ProbeTarget::new(&c),
        &p,
        &TrustBundle::empty(),
    )
    .await
    .expect("the class has this probe");
    assert_eq!(o.reason(), Some(FailureReason::ProbeError), "{o:?}");
    assert!(o.message().len() <= 1024, "{} bytes", o.message().len());
}

async fn liveness_to(address: &str, policy: DestinationPolicy) -> ProbeOutcome {
    let class = compiled("livenessProbe:\n  http:\n    path: /health\n");
    let c = connector(&format!("connectorClassName: test\naddress: {address}"));
    run_probe(
        &class,
        ProbeKind::Liveness,
        &ProbeTarget::new(&c),
        &prober(policy),
        &TrustBundle::empty(),
    )
    .await
    .expect("the class has this probe")
}

/// The running operator's policy refuses loopback (IP literals in any spelling, and a
/// name that resolves to it), link-local and metadata addresses, before connecting.
#[tokio::test]
async fn public_policy_refuses_internal_destinations() {
    let s = serve(|_| Reply::status(200)).await;
    let port = s.addr.port();
    for address in [
        s.url(""),
        format!("http://localhost:{port}"),
        format!("http://2130706433:{port}"),
        format!("http://0x7f.1:{port}"),
        format!("http://[::1]:{port}"),
        format!("http://[::ffff:127.0.0.1]:{port}"),
        format!("http://0.0.0.0:{port}"),
        "http://169.254.169.254".to_string(),
        "http://[fe80::1]".to_string(),
        "http://[fd00:ec2::254]".to_string(),
        "http://100.100.100.200".to_string(),
        "http://metadata.google.internal".to_string(),
        "http://METADATA.google.internal.".to_string(),
    ] {
        let o = liveness_to(&address, DestinationPolicy::Public).await;
        assert_eq!(
            o.reason(),
            Some(FailureReason::DestinationRefused),
            "{address}: {o:?}"
        );
        assert!(o.message().contains(": destination refused: "), "{o:?}");
        assert!(!o.message().contains("dns error"), "{o:?}");
    }
    assert!(s.recorded().is_empty(), "{:?}", s.recorded());
    // Allowed for local demos and tests; `Any` (the `check` CLI) too.
    for policy in [DestinationPolicy::AllowLoopback, DestinationPolicy::Any] {
        assert_eq!(liveness_to(&s.url(""), policy).await, ProbeOutcome::Passed);
        let o = liveness_to(&format!("http://localhost:{port}"), policy).await;
        assert_eq!(o, ProbeOutcome::Passed, "{policy:?}");
    }
    // Link-local and metadata stay refused with the loopback allowance.
    for address in [
        "http://169.254.169.254",
        "http://169.254.10.1",
        "http://[fe80::1]",
        "http://[::ffff:169.254.169.254]",
        "http://100.100.100.200",
        "http://metadata.google.internal",
    ] {
        let o = liveness_to(address, DestinationPolicy::AllowLoopback).await;
        assert_eq!(
            o.reason(),
            Some(FailureReason::DestinationRefused),
            "{address}: {o:?}"
        );
    }
}

/// A redirect to a refused destination is refused too, and reported by host.
#[tokio::test]
async fn redirect_to_a_refused_destination_is_refused() {
    for (to, host) in [
        (
            "http://169.254.169.254/latest/meta-data/iam/security-credentials/",
            "169.254.169.254",
        ),
        (
            "http://metadata.google.internal/computeMetadata/v1/?recursive=true",
            "metadata.google.internal",
        ),
    ] {
        let s = serve(move |_| Reply::redirect(302, to)).await;
        let o = liveness_to(&s.url(""), DestinationPolicy::AllowLoopback).await;
        assert_eq!(o.reason(), Some(FailureReason::DestinationRefused), "{o:?}");
        assert!(o.message().contains(host), "{o:?}");
        assert!(!o.message().contains("meta-data"), "{o:?}");
        assert!(!o.message().contains("computeMetadata"), "{o:?}");
        assert_eq!(s.recorded().len(), 1);
    }
    // Reachability checks (class API/proxy) follow the same policy.
    let s = serve(|_| Reply::status(200)).await;
    let refused = prober(DestinationPolicy::Public)
        .reach(&s.url("/"), &TrustBundle::empty())
        .await;
    assert!(
        refused
            .as_ref()
            .is_err_and(|e| e.contains("destination refused")),
        "{refused:?}"
    );
    let allowed = prober(DestinationPolicy::AllowLoopback)
        .reach(&s.url("/"), &TrustBundle::empty())
        .await;
    assert_eq!(allowed, Ok(200));
}

/// A template that fails on a transformed Secret value (which no redactor knows)
/// does not quote it; a limit error still says which limit.
#[tokio::test]
async fn template_errors_on_transformed_secrets_are_withheld() {
    let address = format!("http://127.0.0.1:{}", closed_port());
    let p = prober(DestinationPolicy::Any);
    let s = secret(&[("token", "lower-Ab7qZ-token")]);
    for path in [
        "/x/{{ fail (upper .Secret.StringData.token) }}",
        "/x/{{ fail (printf \"%s!\" (.Secret.StringData.token | replace \"-\" \"_\")) }}",
        "/x/{{ range (upper .Secret.StringData.token) }}{{ end }}",
        // Dressed up as the render limits' own errors, which are the ones reported.
        "/x/{{ fail (printf \"%s bytes allowed\" (upper .Secret.StringData.token)) }}",
        "/x/{{ fail (printf \"did not finish within %s\" (upper .Secret.StringData.token)) }}",
    ] {
        let o = auth_outcome(&auth_class(path), &address, &s, &p).await;
        assert_eq!(o.reason(), Some(FailureReason::ProbeError), "{path}: {o:?}");
        assert!(
            !o.message().to_ascii_lowercase().contains("ab7qz"),
            "{path}: {o:?}"
        );
        assert!(
            o.message().contains("spec.authProbes[0].probe.http.path"),
            "{o:?}"
        );
    }
    let endless = "/x/{{ range until 10000 }}{{ $.Secret.StringData.token }}{{ end }}";
    let o = auth_outcome(&auth_class(endless), &address, &s, &p).await;
    assert_eq!(o.reason(), Some(FailureReason::ProbeError), "{o:?}");
    assert!(o.message().contains("65536 bytes allowed"), "{o:?}");
}
