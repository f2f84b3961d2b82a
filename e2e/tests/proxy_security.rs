//! One test per security property of the proxy (SPEC-proxy sections 3, 4, 6, 7),
//! against the real apiserver, the proxy as a process, curl and the demo tool's
//! `/echo` (which answers with exactly what it received).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use connectors_e2e::fixtures::{BASIC_AUTH_TYPE, ClassGuard, basic_secret, class_head};
use connectors_e2e::process::DemoTool;
use connectors_e2e::proxy::{
    CurlResponse, JSON_POST, ProxyOptions, ProxyProcess, service_account_with_access,
};
use connectors_e2e::{TestNamespace, apply_yaml, eventually};
use serde_json::Value;

const SENTINEL: &str = "tool-secret-7c1f9e2a";

thread_local! {
    static TOOL_PORT: std::cell::Cell<u16> = const { std::cell::Cell::new(0) };
}

/// A class whose auth types cover every injection: Basic (no generator), and Rego
/// generators into a header, the query, a JSON body, and one that fails; its
/// extractor reads `Private-Token` (Bearer/Basic otherwise).
fn class_yaml(name: &str) -> String {
    let generator = |name: &str, rego: &str| {
        let rego: String = rego.lines().map(|l| format!("          {l}\n")).collect();
        format!(
            "    - name: {name}\n      secretType: Opaque\n      generator:\n        rego: |\n{rego}"
        )
    };
    format!(
        r#"{}{BASIC_AUTH_TYPE}{}{}{}{}    - name: opaque
      secretType: Opaque
  proxy:
    uri: http://connectors-proxy-service.connectors-system.svc
    authExtractor:
      rego: |
        package proxy
        auth := {{"token": input.headers["Private-Token"][0]}} if input.headers["Private-Token"]
"#,
        class_head(name),
        generator(
            "header",
            "package proxy\nauth := {\"position\": \"header\", \"auth\": {\"X-Tool-Token\": input.data.token}}"
        ),
        generator(
            "query",
            "package proxy\nauth := {\"position\": \"query\", \"auth\": {\"private_token\": input.data.token}}"
        ),
        generator(
            "body",
            "package proxy\nauth := {\"position\": \"body\", \"contentType\": \"application/json\", \"auth\": {\"token\": input.data.token}}"
        ),
        generator(
            "broken",
            "package proxy\nauth := {\"position\": \"sideways\", \"auth\": {}}"
        ),
    )
}

fn connector_yaml(name: &str, class: &str, address: &str, auth: &str, secret: &str) -> String {
    format!(
        "apiVersion: connectors.alauda.io/v1alpha1\nkind: Connector\nmetadata:\n  name: {name}\nspec:\n  connectorClassName: {class}\n  address: {address}\n  auth:\n    name: {auth}\n    secretRef: {{name: {secret}}}\n"
    )
}

struct Env {
    ns: TestNamespace,
    _class: ClassGuard,
    class: String,
    tool: DemoTool,
    proxy: ProxyProcess,
    token: String,
}

/// The class, Secrets (`basic`: demo/demo-password, `opaque`: token SENTINEL), one
/// Connector per auth type at `{tool}/echo`, a ServiceAccount allowed to get them.
fn env(prefix: &str, options: ProxyOptions) -> Env {
    let class = format!("{prefix}-{}", std::process::id());
    let guard = ClassGuard::apply(&class, &class_yaml(&class));
    let ns = TestNamespace::new(prefix);
    let tool = DemoTool::start();
    TOOL_PORT.with(|p| p.set(tool.port));
    apply_yaml(&ns, &basic_secret("basic", "demo-password"));
    apply_yaml(
        &ns,
        &format!(
            "apiVersion: v1\nkind: Secret\nmetadata: {{name: opaque}}\ntype: Opaque\nstringData: {{token: {SENTINEL}}}\n"
        ),
    );
    let echo = format!("{}/echo", tool.url());
    for (name, auth, secret) in [
        ("basic", "basicAuth", "basic"),
        ("header", "header", "opaque"),
        ("query", "query", "opaque"),
        ("body", "body", "opaque"),
        ("broken", "broken", "opaque"),
        ("opaque", "opaque", "opaque"),
    ] {
        apply_yaml(&ns, &connector_yaml(name, &class, &echo, auth, secret));
    }
    let token = service_account_with_access(&ns, "builder");
    let proxy = ProxyProcess::start(options);
    let e = Env {
        ns,
        _class: guard,
        class,
        tool,
        proxy,
        token,
    };
    // Every Connector has reached the proxy's cache (applied last, it answers).
    eventually(Duration::from_secs(20), || {
        let r = e.get("opaque", "/", &[]);
        if r.status != 404 {
            Ok(())
        } else {
            Err(format!("{} {}", r.status, r.body))
        }
    });
    e
}

impl Env {
    fn url(&self, connector: &str, path: &str) -> String {
        format!(
            "{}{path}",
            self.proxy.host_url(&self.ns, &format!("c-{connector}"))
        )
    }

    fn get(&self, connector: &str, path: &str, extra: &[&str]) -> CurlResponse {
        let auth = format!("Authorization: Bearer {}", self.token);
        let mut args = vec!["-H", auth.as_str()];
        args.extend_from_slice(extra);
        self.proxy.curl(&self.url(connector, path), &args)
    }
}

fn echoed(r: &CurlResponse) -> Value {
    assert_eq!(
        r.status,
        200,
        "{r:?}; the tool saw {:?}",
        TOOL_PORT.with(|p| connectors_e2e::process::http_get(p.get(), "/_requests"))
    );
    serde_json::from_str(&r.body).unwrap_or_else(|e| panic!("echo JSON: {e}: {}", r.body))
}

fn header_values(echo: &Value, name: &str) -> Vec<String> {
    echo["headers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p[0].as_str().unwrap().eq_ignore_ascii_case(name))
        .map(|p| p[1].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn the_token_never_reaches_the_tool_and_injected_headers_cannot_be_stripped_or_doubled() {
    let e = env("proxy-strip", ProxyOptions::default());
    let basic = "Basic ZGVtbzpkZW1vLXBhc3N3b3Jk"; // demo:demo-password
    // Connection: Authorization would make a naive proxy drop the injected header.
    let r = e.get(
        "basic",
        "/x?page=2",
        &["-H", "Connection: Authorization, X-Hop", "-H", "X-Hop: 1"],
    );
    let echo = echoed(&r);
    assert_eq!(
        header_values(&echo, "authorization"),
        vec![basic.to_string()]
    );
    assert!(header_values(&echo, "x-hop").is_empty());
    assert_eq!(echo["path"], "/echo/x");
    assert_eq!(echo["query"], "page=2");
    assert!(
        !r.body.contains(&e.token),
        "the client's token reached the tool"
    );

    // A client-sent copy of an injected header is dropped: exactly one value arrives.
    let r = e.get("header", "/h", &["-H", "X-Tool-Token: forged"]);
    let echo = echoed(&r);
    assert_eq!(
        header_values(&echo, "x-tool-token"),
        vec![SENTINEL.to_string()]
    );
    assert!(header_values(&echo, "authorization").is_empty());

    // Extractor carrier: Private-Token is found, used and stripped; Basic fallback too.
    let private = format!("Private-Token: {}", e.token);
    let r = e.proxy.curl(&e.url("header", "/h"), &["-H", &private]);
    let echo = echoed(&r);
    assert!(header_values(&echo, "private-token").is_empty());
    assert!(!r.body.contains(&e.token));
    let r = e
        .proxy
        .curl(&e.url("header", "/h"), &["-u", &format!("x:{}", e.token)]);
    assert!(!echoed(&r).to_string().contains(&e.token));

    // Query carrier: the client's token in the query is replaced by the tool's.
    let r = e.get(
        "query",
        &format!("/q?private_token={}&page=3", e.token),
        &[],
    );
    let echo = echoed(&r);
    assert_eq!(echo["query"], format!("page=3&private_token={SENTINEL}"));
    assert!(!r.body.contains(&e.token));
}

#[test]
fn generators_inject_into_header_query_and_json_body_and_errors_name_the_connector() {
    let e = env("proxy-rego", ProxyOptions::default());
    let r = e.get("body", "/post", &JSON_POST);
    let echo = echoed(&r);
    let body: Value = serde_json::from_str(echo["body"].as_str().unwrap()).unwrap();
    assert_eq!(body, serde_json::json!({"a": 1, "token": SENTINEL}));
    assert_eq!(
        header_values(&echo, "content-length"),
        vec![body.to_string().len().to_string()]
    );

    let broken = e.get("broken", "/", &[]);
    assert_eq!(broken.status, 502, "{broken:?}");
    assert!(
        broken
            .body
            .contains(&format!("connector {}/broken", e.ns.name())),
        "{}",
        broken.body
    );
    assert!(broken.body.contains("generator"), "{}", broken.body);
    // An Opaque Secret without a generator cannot be injected: 502, nothing sent.
    let opaque = e.get("opaque", "/", &[]);
    assert_eq!(opaque.status, 502, "{opaque:?}");
    assert!(
        opaque.body.contains("no default injection"),
        "{}",
        opaque.body
    );
    let _ = &e.class;
}

#[test]
fn credentials_go_only_within_the_address_and_redirects_are_not_followed() {
    let e = env("proxy-target", ProxyOptions::default());
    // `..` out of the address's path prefix: refused, not sent without the prefix.
    let r = e.get("basic", "/../echo-evil/x", &["--path-as-is"]);
    assert_eq!(r.status, 400, "{r:?}");
    // A redirect elsewhere is returned, not followed; one into the address is
    // rewritten to the proxy.
    let other = format!("http://localhost:{}/echo/stolen", e.tool.port);
    let r = e.get(
        "basic",
        &format!("/../redirect?to={other}"),
        &["--path-as-is"],
    );
    assert_eq!(r.status, 400, "{r:?}");
    apply_yaml(
        &e.ns,
        &connector_yaml("root", &e.class, &e.tool.url(), "basicAuth", "basic"),
    );
    let r = eventually(Duration::from_secs(20), || {
        let r = e.get("root", &format!("/redirect?to={other}"), &[]);
        if r.status == 302 {
            Ok(r)
        } else {
            Err(format!("{} {}", r.status, r.body))
        }
    });
    assert_eq!(r.header("location").as_deref(), Some(other.as_str()));
    let inside = format!("{}/echo/here?x=1", e.tool.url());
    let r = e.get("root", &format!("/redirect?to={inside}"), &[]);
    assert_eq!(r.status, 302);
    assert_eq!(
        r.header("location"),
        Some(format!(
            "{}/echo/here?x=1",
            e.proxy.host_url(&e.ns, "c-root")
        ))
    );
}

#[test]
fn hosts_that_name_no_connector_get_404() {
    let e = env("proxy-host", ProxyOptions::default());
    let r = e.proxy.curl(
        &format!("http://127.0.0.1:{}/", e.proxy.port),
        &[
            "-H",
            "Host: evil.example",
            "-H",
            &format!("Authorization: Bearer {}", e.token),
        ],
    );
    assert_eq!(r.status, 404, "{r:?}");
    let r = e.proxy.curl(
        &e.url("nope", "/"),
        &["-H", &format!("Authorization: Bearer {}", e.token)],
    );
    assert_eq!(r.status, 404, "{r:?}");
}

#[test]
fn loopback_and_metadata_targets_are_refused() {
    let e = env(
        "proxy-dest",
        ProxyOptions {
            allow_loopback_destinations: false,
            ..Default::default()
        },
    );
    let r = e.get("basic", "/", &[]);
    assert_eq!(r.status, 403, "{r:?}");
    assert!(r.body.contains("destination refused"), "{}", r.body);
    // By name too: localhost resolves to loopback at connect time.
    apply_yaml(
        &e.ns,
        &connector_yaml(
            "byname",
            &e.class,
            &format!("http://localhost:{}/echo", e.tool.port),
            "basicAuth",
            "basic",
        ),
    );
    apply_yaml(
        &e.ns,
        &connector_yaml(
            "metadata",
            &e.class,
            "http://169.254.169.254/latest",
            "basicAuth",
            "basic",
        ),
    );
    for name in ["byname", "metadata"] {
        let r = eventually(Duration::from_secs(20), || {
            let r = e.get(name, "/", &[]);
            if r.status == 404 {
                Err("not cached yet".to_string())
            } else {
                Ok(r)
            }
        });
        assert_eq!(r.status, 403, "{name}: {r:?}");
        assert!(r.body.contains("destination refused"), "{}", r.body);
    }
}

#[test]
fn an_untrusted_tool_certificate_gives_502() {
    let e = env("proxy-tls", ProxyOptions::default());
    let dir = std::env::temp_dir().join(format!("proxy-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (cert, key) = connectors_e2e::pki::self_signed(
        &dir,
        "cert",
        "127.0.0.1",
        &["-addext", "subjectAltName=IP:127.0.0.1"],
    );
    let port = connectors_e2e::process::free_port();
    let mut server = std::process::Command::new("openssl")
        .args(["s_server", "-www", "-quiet", "-accept", &port.to_string()])
        .arg("-cert")
        .arg(&cert)
        .arg("-key")
        .arg(&key)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    apply_yaml(
        &e.ns,
        &connector_yaml(
            "tls",
            &e.class,
            &format!("https://127.0.0.1:{port}"),
            "basicAuth",
            "basic",
        ),
    );
    let r = eventually(Duration::from_secs(20), || {
        let r = e.get("tls", "/", &[]);
        if r.status == 404 {
            Err("not cached yet".to_string())
        } else {
            Ok(r)
        }
    });
    let _ = server.kill();
    let _ = server.wait();
    assert_eq!(r.status, 502, "{r:?}");
    assert!(r.body.contains("TLS"), "{}", r.body);
}

#[test]
fn a_large_unauthenticated_upload_is_answered_401_without_reading_it() {
    let e = env("proxy-upload", ProxyOptions::default());
    let before = e.proxy.rss_kib();
    let mut stream = TcpStream::connect(("127.0.0.1", e.proxy.port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let host = format!("c-basic.{}.svc", e.ns.name());
    write!(
        stream,
        "PUT /upload HTTP/1.1\r\nHost: {host}\r\nContent-Length: 2147483648\r\n\r\n"
    )
    .unwrap();
    let mut writer = stream.try_clone().unwrap();
    let start = Instant::now();
    let sender = std::thread::spawn(move || {
        let chunk = vec![0u8; 1 << 20];
        let mut sent = 0u64;
        while sent < (2u64 << 30) {
            if writer.write_all(&chunk).is_err() {
                break;
            }
            sent += chunk.len() as u64;
        }
        sent
    });
    let mut head = [0u8; 512];
    let n = stream.read(&mut head).unwrap();
    let answer = String::from_utf8_lossy(&head[..n]).to_string();
    let answered_in = start.elapsed();
    assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
    assert!(
        answer
            .to_ascii_lowercase()
            .contains("www-authenticate: basic"),
        "{answer}"
    );
    drop(stream);
    let sent = sender.join().unwrap();
    let after = e.proxy.rss_kib();
    eprintln!(
        "401 after {answered_in:?}; client managed to send {} MiB; proxy RSS {before} -> {after} KiB",
        sent >> 20
    );
    assert!(answered_in < Duration::from_secs(5));
    assert!(sent < (2u64 << 30), "the proxy read the whole 2 GiB body");
    assert!(
        after < before + 16 * 1024,
        "RSS grew from {before} to {after} KiB"
    );
}
