//! The Connectors proxy as a process against the real apiserver (SPEC-proxy sections
//! 2-4, 6, 7): real tokens from `kubectl create token`, real RBAC, curl as the client,
//! the demo tool as the tool.

use std::time::Duration;

use connectors_e2e::fixtures::{ClassGuard, PROXY_CLASS_EXTRA, basic_secret, connector, git_class};
use connectors_e2e::process::DemoTool;
use connectors_e2e::proxy::{ProxyOptions, ProxyProcess, service_account_with_access, token};
use connectors_e2e::{TestNamespace, apply_yaml, eventually};

/// A class with a proxy, a Connector `git` on the demo tool with the right Secret, a
/// ServiceAccount allowed to get it, and a proxy.
struct Setup {
    ns: TestNamespace,
    _class: ClassGuard,
    tool: DemoTool,
    proxy: ProxyProcess,
    token: String,
    url: String,
}

fn setup(prefix: &str, class_extra: &str) -> Setup {
    setup_with(prefix, class_extra, ProxyOptions::default())
}

fn setup_with(prefix: &str, class_extra: &str, options: ProxyOptions) -> Setup {
    let class_name = format!("{prefix}-{}", std::process::id());
    let class = ClassGuard::apply(
        &class_name,
        &format!("{}{PROXY_CLASS_EXTRA}{class_extra}", git_class(&class_name)),
    );
    let ns = TestNamespace::new(prefix);
    let tool = DemoTool::start();
    apply_yaml(&ns, &basic_secret("git-auth", "demo-password"));
    apply_yaml(&ns, &connector("git", &class_name, &tool.url(), "git-auth"));
    let token = service_account_with_access(&ns, "builder");
    let proxy = ProxyProcess::start(options);
    let url = proxy.host_url(&ns, "c-git");
    Setup {
        ns,
        _class: class,
        tool,
        proxy,
        token,
        url,
    }
}

fn bearer(token: &str) -> String {
    format!("Authorization: Bearer {token}")
}

#[test]
fn a_token_is_swapped_for_the_tool_credentials() {
    let s = setup("proxy-basic", "");
    let url = format!("{}/org/repo/info/refs", s.url);
    // The Connector reaches the proxy's cache through its watch.
    let ok = eventually(Duration::from_secs(20), || {
        let r = s.proxy.curl(&url, &["-H", &bearer(&s.token)]);
        if r.status == 200 {
            Ok(r)
        } else {
            Err(format!("{} {}", r.status, r.body))
        }
    });
    assert!(ok.body.contains("service=git-upload-pack"), "{}", ok.body);

    let none = s.proxy.curl(&url, &[]);
    assert_eq!(none.status, 401, "{none:?}");
    assert_eq!(
        none.header("www-authenticate").as_deref(),
        Some(r#"Basic realm="connectors-proxy""#)
    );

    let basic = s.proxy.curl(&url, &["-u", &format!("anyone:{}", s.token)]);
    assert_eq!(basic.status, 200, "{basic:?}");

    let wrong = s.proxy.curl(&url, &["-H", &bearer("not-a-token")]);
    assert_eq!(wrong.status, 401, "{wrong:?}");

    // No RBAC: 403, byte-identical to the answer for a Connector that does not exist.
    let stranger = token(&s.ns, "stranger");
    let denied = s.proxy.curl(&url, &["-H", &bearer(&stranger)]);
    assert_eq!(denied.status, 403, "{denied:?}");
    let own = format!(
        "http://connectors-proxy-service.connectors-system.svc:{}",
        s.proxy.port
    );
    let missing = s.proxy.curl(
        &format!(
            "{own}/namespaces/{}/connectors/nope/org/repo/info/refs",
            s.ns.name()
        ),
        &["-H", &bearer(&s.token)],
    );
    assert_eq!(missing.status, 403, "{missing:?}");
    assert_eq!(missing.body, denied.body);
    assert_eq!(
        missing.header("content-type"),
        denied.header("content-type")
    );
    // The path form reaches the existing one.
    let path_form = s.proxy.curl(
        &format!(
            "{own}/namespaces/{}/connectors/git/org/repo/info/refs",
            s.ns.name()
        ),
        &["-H", &bearer(&s.token)],
    );
    assert_eq!(path_form.status, 200, "{path_form:?}");
    let _ = &s.tool;
}

/// Reads an HTTP/1.1 head from a raw stream.
fn read_head(stream: &mut std::net::TcpStream) -> String {
    use std::io::Read;
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&head).into_owned()
}

#[test]
fn upgrades_are_spliced_only_after_a_101() {
    use std::io::{Read, Write};
    let s = setup("proxy-upgrade", "");
    eventually(Duration::from_secs(20), || {
        let r = s
            .proxy
            .curl(&format!("{}/", s.url), &["-H", &bearer(&s.token)]);
        if r.status == 200 {
            Ok(())
        } else {
            Err(format!("{} {}", r.status, r.body))
        }
    });
    let host = format!("c-git.{}.svc", s.ns.name());
    let request = |path: &str| {
        format!(
            "GET {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {}\r\nConnection: Upgrade\r\nUpgrade: echo-test\r\n\r\n",
            s.token
        )
    };
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", s.proxy.port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream.write_all(request("/upgrade").as_bytes()).unwrap();
    let head = read_head(&mut stream);
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(
        head.to_ascii_lowercase().contains("upgrade: echo-test"),
        "{head}"
    );
    stream.write_all(b"ping through the proxy").unwrap();
    let mut echoed = [0u8; 22];
    stream.read_exact(&mut echoed).unwrap();
    assert_eq!(&echoed, b"ping through the proxy");

    // A tool that answers an upgrade request with 200: relayed, then the connection
    // ends (nothing is spliced).
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", s.proxy.port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream
        .write_all(request("/upgrade-refused").as_bytes())
        .unwrap();
    let head = read_head(&mut stream);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        head.to_ascii_lowercase().contains("connection: close"),
        "{head}"
    );
    let mut rest = Vec::new();
    stream.read_to_end(&mut rest).unwrap();
    assert_eq!(rest, b"ok", "the connection closes after the answer");

    // A tool that refuses an upgrade with 403, and a second request sent right behind
    // the first (as if the tunnel were open): never relayed, with credentials or not.
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", s.proxy.port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let smuggled = format!("GET /echo/smuggled HTTP/1.1\r\nHost: {host}\r\n\r\n");
    stream
        .write_all(format!("{}{smuggled}", request("/misbehave/status/403")).as_bytes())
        .unwrap();
    let head = read_head(&mut stream);
    assert!(head.starts_with("HTTP/1.1 403"), "{head}");
    let mut rest = Vec::new();
    let _ = stream.read_to_end(&mut rest);
    assert!(
        !String::from_utf8_lossy(&rest).contains("HTTP/1.1"),
        "a second answer came"
    );
    let (_, log) = connectors_e2e::process::http_get(s.tool.port, "/_requests").unwrap();
    assert!(
        !log.contains("/echo/smuggled"),
        "the smuggled request reached the tool: {log}"
    );
}

#[test]
fn tokens_for_another_audience_or_a_deleted_account_get_401_and_revoking_rbac_takes_effect() {
    let s = setup("proxy-revoke", "");
    let url = format!("{}/org/repo/info/refs", s.url);
    eventually(Duration::from_secs(20), || {
        let r = s.proxy.curl(&url, &["-H", &bearer(&s.token)]);
        if r.status == 200 {
            Ok(())
        } else {
            Err(format!("{} {}", r.status, r.body))
        }
    });
    let other_audience = connectors_e2e::kubectl_ok([
        "create",
        "token",
        "builder",
        "-n",
        s.ns.name(),
        "--audience",
        "https://other.example",
    ]);
    let r = s.proxy.curl(&url, &["-H", &bearer(other_audience.trim())]);
    assert_eq!(r.status, 401, "{r:?}");

    // Revoking the RoleBinding: denied within the allowed-cache TTL (10 s).
    connectors_e2e::kubectl_ok([
        "delete",
        "rolebinding",
        "builder-connectors",
        "-n",
        s.ns.name(),
    ]);
    let start = std::time::Instant::now();
    eventually(Duration::from_secs(30), || {
        let r = s.proxy.curl(&url, &["-H", &bearer(&s.token)]);
        if r.status == 403 {
            Ok(())
        } else {
            Err(format!("{}", r.status))
        }
    });
    let revoked_in = start.elapsed();
    eprintln!("revocation took effect after {revoked_in:?}");
    assert!(revoked_in < Duration::from_secs(13), "{revoked_in:?}");

    // A deleted ServiceAccount's token: 401 within the token-cache TTL (30 s).
    let doomed = token(&s.ns, "doomed");
    let r = s.proxy.curl(&url, &["-H", &bearer(&doomed)]);
    assert_eq!(r.status, 403, "authenticated but not allowed: {r:?}");
    connectors_e2e::kubectl_ok(["delete", "serviceaccount", "doomed", "-n", s.ns.name()]);
    eventually(Duration::from_secs(40), || {
        let r = s.proxy.curl(&url, &["-H", &bearer(&doomed)]);
        if r.status == 401 {
            Ok(())
        } else {
            Err(format!("{}", r.status))
        }
    });
}

#[test]
fn the_proxy_permissions_flag_applies_live_pod_bound_tokens_included() {
    // The flags live in this proxy's own operator namespace.
    let operator_ns = TestNamespace::new("proxy-flags-operator");
    let options = ProxyOptions {
        namespace: operator_ns.name().to_string(),
        ..Default::default()
    };
    let s = setup_with("proxy-flags", "", options);
    let url = format!("{}/org/repo/info/refs", s.url);
    let flags = |value: &str| {
        apply_yaml(
            &operator_ns,
            &format!(
                "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: connectors-config}}\ndata:\n  enable-connector-proxy-permissions: \"{value}\"\n"
            ),
        );
    };
    let status_becomes = |token: &str, code: u16| {
        eventually(Duration::from_secs(20), || {
            let r = s.proxy.curl(&url, &["-H", &bearer(token)]);
            if r.status == code {
                Ok(())
            } else {
                Err(format!("{} {}", r.status, r.body))
            }
        });
    };
    flags("false");
    status_becomes(&s.token, 200);
    flags("true");
    // `get connectors` alone no longer suffices: `connectors/proxy` is needed.
    status_becomes(&s.token, 403);
    apply_yaml(
        &s.ns,
        &format!(
            r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {{name: proxy-use}}
rules:
- apiGroups: [connectors.alauda.io]
  resources: [connectors/proxy]
  resourceNames: [git]
  verbs: [get]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {{name: proxy-use}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: Role, name: proxy-use}}
subjects:
- {{kind: ServiceAccount, name: builder, namespace: {}}}
"#,
            s.ns.name()
        ),
    );
    status_becomes(&s.token, 200);
    // A token bound to a Pod: a grant on `connectors/proxy/v1/pod/{ns}/{pod}` alone
    // admits it; the same account's unbound token is refused.
    connectors_e2e::kubectl_ok(["delete", "rolebinding", "proxy-use", "-n", s.ns.name()]);
    status_becomes(&s.token, 403);
    apply_yaml(
        &s.ns,
        "apiVersion: v1\nkind: Pod\nmetadata: {name: builder-pod}\nspec:\n  serviceAccountName: builder\n  containers: [{name: c, image: none}]\n",
    );
    let uid = connectors_e2e::kubectl_ok([
        "get",
        "pod",
        "builder-pod",
        "-n",
        s.ns.name(),
        "-o",
        "jsonpath={.metadata.uid}",
    ]);
    let pod_token = connectors_e2e::kubectl_ok([
        "create",
        "token",
        "builder",
        "-n",
        s.ns.name(),
        "--bound-object-kind",
        "Pod",
        "--bound-object-name",
        "builder-pod",
        "--bound-object-uid",
        uid.trim(),
    ]);
    apply_yaml(
        &s.ns,
        &format!(
            r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {{name: pod-proxy-use}}
rules:
- apiGroups: [connectors.alauda.io]
  resources: [connectors/proxy/v1/pod/{ns}/builder-pod]
  resourceNames: [git]
  verbs: [get]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {{name: pod-proxy-use}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: Role, name: pod-proxy-use}}
subjects:
- {{kind: ServiceAccount, name: builder, namespace: {ns}}}
"#,
            ns = s.ns.name()
        ),
    );
    status_becomes(pod_token.trim(), 200);
    status_becomes(&s.token, 403);
    flags("false");
    status_becomes(&s.token, 200);
}
