//! Request building: URL rules, method, headers, credential marking, Rego
//! injection, API probes, dedup keys.

use super::{build, build_err, compiled, connector, header_values, secret};
use crate::probe::{FailureReason, ProbeKind, ProbeTarget};

fn liveness_url(http_yaml: &str, address: &str) -> String {
    let class = compiled(&format!("livenessProbe:\n  http:\n{}", indent4(http_yaml)));
    let c = connector(&format!("connectorClassName: test\naddress: {address}"));
    build(&class, ProbeKind::Liveness, &c, None)
        .url()
        .to_string()
}

fn indent4(s: &str) -> String {
    super::unindent(s)
        .lines()
        .map(|l| format!("    {l}\n"))
        .collect()
}

#[test]
fn url_rules() {
    // Host and scheme of the address; its path prefix is dropped.
    assert_eq!(
        liveness_url("path: /api/v4/version", "https://git.example.com/base/x"),
        "https://git.example.com/api/v4/version"
    );
    // The address's explicit port is kept.
    assert_eq!(
        liveness_url("path: /health", "http://10.0.0.1:8080/sub"),
        "http://10.0.0.1:8080/health"
    );
    // A query string in the path is kept.
    assert_eq!(
        liveness_url("path: /info/refs?service=git-upload-pack", "https://g.io"),
        "https://g.io/info/refs?service=git-upload-pack"
    );
    // A relative path gets its leading slash.
    assert_eq!(
        liveness_url("path: health", "https://g.io"),
        "https://g.io/health"
    );
    // Another host: scheme defaults to http.
    assert_eq!(
        liveness_url("path: /ping\nhost: other.io:9000", "https://g.io"),
        "http://other.io:9000/ping"
    );
    // The same host as the address: the address's scheme.
    assert_eq!(
        liveness_url("path: /ping\nhost: g.io", "https://g.io"),
        "https://g.io/ping"
    );
    // An explicit scheme wins.
    assert_eq!(
        liveness_url("path: /ping\nhost: other.io\nscheme: https", "http://g.io"),
        "https://other.io/ping"
    );
    assert_eq!(
        liveness_url("path: /ping\nscheme: http", "https://g.io"),
        "http://g.io/ping"
    );
    // A host written as a URL.
    assert_eq!(
        liveness_url("path: /ping\nhost: https://other.io:8443", "http://g.io"),
        "https://other.io:8443/ping"
    );
}

#[test]
fn no_address_is_a_probe_error() {
    let class = compiled("livenessProbe:\n  http:\n    path: /x");
    let c = connector("connectorClassName: test");
    let o = build_err(&class, ProbeKind::Liveness, &c, None);
    assert_eq!(o.reason(), Some(FailureReason::ProbeError));
    assert!(o.message().contains("spec.address"), "{o:?}");
}

#[test]
fn method_and_repeated_headers() {
    let class = compiled(
        r#"
        livenessProbe:
          http:
            path: /x
            method: POST
            httpHeaders:
            - {name: X-Multi, value: one}
            - {name: x-multi, value: two}
            - {name: Accept, value: application/json}
        "#,
    );
    let c = connector("connectorClassName: test\naddress: https://g.io");
    let r = build(&class, ProbeKind::Liveness, &c, None);
    assert_eq!(r.method(), &http::Method::POST);
    assert_eq!(header_values(&r, "X-MULTI"), vec!["one", "two"]);
    assert!(r.body().is_none());
    assert!(r.headers().iter().all(|h| !h.credential));
    assert!(r.follow_redirects());
}

#[test]
fn credential_headers_are_marked() {
    let class = compiled(
        r#"
        auth:
          types:
          - name: basicAuth
            secretType: kubernetes.io/basic-auth
        authProbes:
        - authName: basicAuth
          probe:
            http:
              path: /user
              disableRedirect: true
              httpHeaders:
              - name: Authorization
                value: '{{- if .Secret }}Basic {{ printf "%s:%s" .Secret.StringData.username .Secret.StringData.password | b64enc }} {{- end }}'
              - {name: Private-Token, value: '{{ .Secret.StringData.password }}'}
              - {name: X-Plain, value: plain}
        "#,
    );
    let c = connector(
        "connectorClassName: test\naddress: https://g.io\nauth: {name: basicAuth, secretRef: {name: creds}}",
    );
    let s = secret(&[("username", "user"), ("password", "pass-word")]);
    let r = build(&class, ProbeKind::Auth, &c, Some(&s));
    assert!(!r.follow_redirects());
    let cred: Vec<(String, bool)> = r
        .headers()
        .iter()
        .map(|h| (h.name.to_string(), h.credential))
        .collect();
    assert_eq!(
        cred,
        vec![
            ("authorization".into(), true),
            ("private-token".into(), true),
            ("x-plain".into(), false)
        ]
    );
    assert_eq!(
        header_values(&r, "authorization"),
        vec!["Basic dXNlcjpwYXNzLXdvcmQ="]
    );
    // Without a Secret, `.Secret.StringData.password` cannot be evaluated.
    let o = build_err(&class, ProbeKind::Auth, &c, None);
    assert_eq!(o.reason(), Some(FailureReason::ProbeError));
    assert!(
        o.message()
            .starts_with("spec.authProbes[0].probe.http.httpHeaders[1].value: "),
        "{o:?}"
    );
}

#[test]
fn empty_rendered_header_is_left_out() {
    let class = compiled(
        r#"
        livenessProbe:
          http:
            path: /x
            httpHeaders:
            - name: Authorization
              value: '{{- if .Secret }}Basic x{{- end }}'
        "#,
    );
    let c = connector("connectorClassName: test\naddress: https://g.io");
    assert!(
        build(&class, ProbeKind::Liveness, &c, None)
            .headers()
            .is_empty()
    );
}

#[test]
fn no_probe_gives_none() {
    let class = compiled(
        r#"
        auth:
          types:
          - {name: basicAuth}
          - {name: tokenAuth}
        authProbes:
        - authName: basicAuth
          probe: {http: {path: /user}}
        "#,
    );
    let c = connector("connectorClassName: test\naddress: https://g.io\nauth: {name: tokenAuth}");
    let target = ProbeTarget::new(&c);
    assert!(class.request(ProbeKind::Liveness, &target).is_none());
    assert!(class.request(ProbeKind::Auth, &target).is_none());
    // Unnamed: the class's first auth type is chosen (SPEC section 4); this test
    // asserted `None` here before that rule was applied to the engine.
    let c = connector("connectorClassName: test\naddress: https://g.io");
    let first = build(&class, ProbeKind::Auth, &c, None);
    assert_eq!(first.url().path(), "/user");
}

fn rego_class(rego: &str) -> crate::probe::CompiledClass {
    let rego: String = super::unindent(rego)
        .lines()
        .map(|l| format!("          {l}\n"))
        .collect();
    compiled(&format!(
        r#"
auth:
  types:
  - name: tokenAuth
    generator:
      rego: |
{rego}
authProbes:
- authName: tokenAuth
  probe:
    http:
      path: /api/user?page=1
      httpHeaders:
      - {{name: X-Plain, value: plain}}
"#
    ))
}

fn token_connector() -> crate::api::Connector {
    connector(
        "connectorClassName: test\naddress: https://g.io\nauth: {name: tokenAuth, secretRef: {name: creds}}",
    )
}

#[test]
fn rego_injects_a_header() {
    let class = rego_class(
        r#"
        package proxy
        auth := {"position": "header", "auth": {"Authorization": concat(" ", ["Bearer", input.data.token]), "X-Seen": input.request.headers["X-Plain"][0]}} if {
            input.request.method == "GET"
            input.request.path == "/api/user"
            input.request.host == "g.io"
            input.request.query.page[0] == "1"
        }
        "#,
    );
    let s = secret(&[("token", "tok-123")]);
    let r = build(&class, ProbeKind::Auth, &token_connector(), Some(&s));
    assert_eq!(header_values(&r, "authorization"), vec!["Bearer tok-123"]);
    assert_eq!(header_values(&r, "x-seen"), vec!["plain"]);
    assert!(
        r.headers()
            .iter()
            .filter(|h| h.name != "x-plain")
            .all(|h| h.credential)
    );
    // Not for liveness: the class has none anyway, and generators only serve auth.
}

#[test]
fn rego_injects_into_the_query() {
    let class = rego_class(
        r#"
        package proxy
        auth := {"position": "query", "auth": {"private_token": input.data.token}}
        "#,
    );
    let s = secret(&[("token", "tok &123")]);
    let r = build(&class, ProbeKind::Auth, &token_connector(), Some(&s));
    assert_eq!(
        r.url().as_str(),
        "https://g.io/api/user?page=1&private_token=tok+%26123"
    );
    assert_eq!(
        r.display_url(),
        "https://g.io/api/user?page=1&private_token=[redacted]"
    );
}

#[test]
fn rego_injects_a_json_or_form_body() {
    let class = rego_class(
        r#"
        package proxy
        auth := {"position": "body", "contentType": "application/json", "auth": {"token": input.data.token}}
        "#,
    );
    let s = secret(&[("token", "tok-123")]);
    let r = build(&class, ProbeKind::Auth, &token_connector(), Some(&s));
    assert_eq!(
        r.body().map(|b| b.to_vec()),
        Some(br#"{"token":"tok-123"}"#.to_vec())
    );
    assert_eq!(header_values(&r, "content-type"), vec!["application/json"]);

    let class = rego_class(
        r#"
        package proxy
        auth := {"position": "body", "auth": {"user": input.data.username, "pass": input.data.password}}
        "#,
    );
    let s = secret(&[("username", "u"), ("password", "p w")]);
    let r = build(&class, ProbeKind::Auth, &token_connector(), Some(&s));
    assert_eq!(
        r.body().map(|b| b.to_vec()),
        Some(b"pass=p+w&user=u".to_vec())
    );
    assert_eq!(
        header_values(&r, "content-type"),
        vec!["application/x-www-form-urlencoded"]
    );
}

#[test]
fn rego_v0_policy_without_if() {
    let class = rego_class(
        r#"
        package proxy
        default token = ""
        token = t { t := input.data.token }
        auth = {"position": "header", "auth": {"Private-Token": token}} {
            token != ""
        }
        "#,
    );
    let s = secret(&[("token", "tok-123")]);
    let r = build(&class, ProbeKind::Auth, &token_connector(), Some(&s));
    assert_eq!(header_values(&r, "private-token"), vec!["tok-123"]);
    // Undefined `auth` (no token): nothing injected.
    let r = build(&class, ProbeKind::Auth, &token_connector(), None);
    assert!(header_values(&r, "private-token").is_empty());
}

#[test]
fn rego_bad_shape_is_a_probe_error() {
    let class = rego_class(
        r#"
        package proxy
        auth := {"position": "cookie", "auth": {"a": "b"}}
        "#,
    );
    let o = build_err(&class, ProbeKind::Auth, &token_connector(), None);
    assert_eq!(o.reason(), Some(FailureReason::ProbeError));
    assert!(
        o.message()
            .starts_with("spec.auth.types[0].generator.rego: "),
        "{o:?}"
    );
    assert!(o.message().contains("cookie"), "{o:?}");
}

#[test]
fn rego_runaway_is_stopped() {
    // 60^4 (13 million) iterations: far past the 500 ms evaluation bound.
    let xs: Vec<String> = (0..60).map(|i| i.to_string()).collect();
    let class = rego_class(&format!(
        r#"
        package proxy
        xs := [{}]
        auth := {{"position": "header", "auth": {{"X": sprintf("%d", [count([1 | some a in xs; some b in xs; some c in xs; some d in xs])])}}}}
        "#,
        xs.join(", ")
    ));
    let started = std::time::Instant::now();
    let o = build_err(&class, ProbeKind::Auth, &token_connector(), None);
    assert_eq!(o.reason(), Some(FailureReason::ProbeError), "{o:?}");
    assert!(o.message().contains("time limit"), "{o:?}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn api_probe_urls() {
    let class = compiled(
        r#"
        api: {uri: "http://api.svc/base"}
        auth:
          types: [{name: basicAuth}]
        livenessProbe:
          api: {path: "/namespaces/{{ .Connector.Namespace }}/check"}
        authProbes:
        - authName: basicAuth
          probe: {api: {}}
        "#,
    );
    let c = connector("connectorClassName: test\naddress: https://g.io\nauth: {name: basicAuth}");
    let url = |base: &str, kind| {
        let t = ProbeTarget {
            connector: &c,
            secret: None,
            class_api_url: Some(base),
        };
        class
            .request(kind, &t)
            .map(|r| r.map(|r| r.url().to_string()))
    };
    assert_eq!(
        url("http://api.svc/base", ProbeKind::Liveness),
        Some(Ok("http://api.svc/base/namespaces/team-a/check".into()))
    );
    assert_eq!(
        url("http://api.svc/base/", ProbeKind::Liveness),
        Some(Ok("http://api.svc/base/namespaces/team-a/check".into()))
    );
    assert_eq!(
        url("https://api.svc", ProbeKind::Liveness),
        Some(Ok("https://api.svc/namespaces/team-a/check".into()))
    );
    assert_eq!(
        url("http://api.svc/base", ProbeKind::Auth),
        Some(Ok("http://api.svc/base".into()))
    );
    // Unknown class API URL.
    let o = class
        .request(ProbeKind::Liveness, &ProbeTarget::new(&c))
        .and_then(Result::err);
    let o = o.unwrap_or_else(|| panic!("expected an error"));
    assert_eq!(o.reason(), Some(FailureReason::ProbeError));
    assert!(
        o.message().contains("class API address is not resolved"),
        "{o:?}"
    );
}

#[test]
fn dedup_keys() {
    let class = compiled(
        "livenessProbe:\n  http:\n    path: /health\n    httpHeaders: [{name: Accept, value: text/plain}]",
    );
    let a = connector("connectorClassName: test\naddress: https://g.io/a");
    let mut b = connector("connectorClassName: test\naddress: https://g.io/b");
    b.metadata.name = Some("other".into());
    let c = connector("connectorClassName: test\naddress: https://h.io/a");
    let ka = build(&class, ProbeKind::Liveness, &a, None).dedup_key();
    let kb = build(&class, ProbeKind::Liveness, &b, None).dedup_key();
    let kc = build(&class, ProbeKind::Liveness, &c, None).dedup_key();
    assert_eq!(ka, kb);
    assert_ne!(ka, kc);
    assert_eq!(ka.len(), 64);
}

#[test]
fn liveness_templates_see_no_secret() {
    let class = compiled(
        r#"
        livenessProbe:
          http:
            path: /x
            httpHeaders:
            - name: Authorization
              value: '{{- if .Secret }}Basic x{{- end }}'
            - name: X-Has-Secret
              value: '{{ if .Secret }}yes{{ else }}no{{ end }}'
        "#,
    );
    let c = connector(
        "connectorClassName: test\naddress: https://g.io\nauth: {name: basicAuth, secretRef: {name: creds}}",
    );
    let s = secret(&[("username", "user")]);
    let r = build(&class, ProbeKind::Liveness, &c, Some(&s));
    assert!(header_values(&r, "authorization").is_empty());
    assert_eq!(header_values(&r, "x-has-secret"), vec!["no"]);
}

/// Issue 13 item 4: a class API gets what the gateway would send it, so it can check
/// the tool credentials; the Secret's forms are credentials (redacted, dropped on a
/// redirect to another host) and liveness carries none.
#[test]
fn api_probes_carry_the_plugin_headers() {
    use base64::Engine as _;
    let decode = |v: &str| {
        String::from_utf8(
            base64::engine::general_purpose::STANDARD
                .decode(v)
                .unwrap_or_default(),
        )
        .unwrap_or_default()
    };
    let class = compiled(
        r#"
        api: {uri: "http://api.svc"}
        auth:
          types: [{name: basicAuth}]
        livenessProbe: {api: {path: /live}}
        authProbes:
        - authName: basicAuth
          probe: {api: {path: /auth}}
        "#,
    );
    let c = connector(
        "connectorClassName: test\naddress: https://g.io\nauth: {name: basicAuth, secretRef: {name: creds}}",
    );
    let s = secret(&[("username", "demo"), ("password", "pw-Secret-1")]);
    let target = ProbeTarget {
        connector: &c,
        secret: Some(&s),
        class_api_url: Some("http://api.svc"),
    };
    let auth = match class.request(ProbeKind::Auth, &target) {
        Some(Ok(r)) => r,
        other => panic!("{other:?}"),
    };
    let meta = header_values(&auth, "x-plugin-meta");
    assert_eq!(decode(&meta[0]), r#"{"baseURL":"https://g.io"}"#);
    let kind = header_values(&auth, "x-plugin-auth");
    assert_eq!(decode(&kind[0]), "kubernetes.io/basic-auth");
    let data: serde_json::Value =
        serde_json::from_str(&decode(&header_values(&auth, "x-plugin-secret")[0])).unwrap();
    assert_eq!(data["password"], "cHctU2VjcmV0LTE=", "values stay base64");
    let credentials: Vec<&str> = auth
        .headers()
        .iter()
        .filter(|h| h.credential)
        .map(|h| h.name.as_str())
        .collect();
    assert_eq!(credentials, ["x-plugin-auth", "x-plugin-secret"]);
    let shown = format!("{auth:?}");
    assert!(!shown.contains("cHctU2VjcmV0LTE"), "{shown}");

    let live = match class.request(ProbeKind::Liveness, &target) {
        Some(Ok(r)) => r,
        other => panic!("{other:?}"),
    };
    assert_eq!(header_values(&live, "x-plugin-meta").len(), 1);
    assert!(header_values(&live, "x-plugin-secret").is_empty());
}

/// A generator's evaluation error must not quote the value it failed on: at
/// evaluation that value can be a transformed Secret no redactor knows.
#[test]
fn rego_evaluation_errors_do_not_quote_secret_values() {
    let class = rego_class(
        r#"
        package proxy
        auth := {"position": "header", "auth": {"X": max(upper(input.data.token))}}
        "#,
    );
    let s = secret(&[("token", "tok-abc123")]);
    let o = build_err(&class, ProbeKind::Auth, &token_connector(), Some(&s));
    assert_eq!(o.reason(), Some(FailureReason::ProbeError), "{o:?}");
    assert!(
        o.message()
            .contains("spec.auth.types[0].generator.rego: evaluation failed"),
        "{o:?}"
    );
    assert!(
        !o.message().to_ascii_lowercase().contains("abc123"),
        "the transformed token leaked: {o:?}"
    );
}
