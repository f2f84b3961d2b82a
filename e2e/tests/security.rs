//! Secrets stay secret (SPEC section 7) and the operator needs no more than its RBAC.
//!
//! One operator runs as the ServiceAccount of `config/rbac` (a bound token, not admin)
//! with every log target at `trace`. A sentinel Secret value is used by Connectors
//! that pass and that fail in different ways (wrong password, refused connection with
//! the value in the URL, a header that cannot be built). The sentinel, in plain,
//! base64 and Basic-credential forms, must appear nowhere: not in the log, events,
//! any status, `/metrics` or `kubectl describe`.

use std::path::PathBuf;
use std::time::Duration;

use base64::Engine;
use connectors_e2e::fixtures::{ClassGuard, PROXY_CLASS_EXTRA, git_class};
use connectors_e2e::process::{
    DemoTool, OPERATOR_NAMESPACE, Operator, OperatorOptions, ensure_operator_namespace,
};
use connectors_e2e::{
    TestNamespace, apply_yaml, describe, eventually, get_json, kubectl_ok, sa_kubeconfig, wait,
};
use rand::Rng;

const TIMEOUT: Duration = Duration::from_secs(60);

/// The forms a leaked value could take: plain, base64 (as in a Secret's data) and
/// the Basic credentials of the wrong-password Connector.
fn leak_forms(sentinel: &str) -> Vec<(&'static str, String)> {
    let b64 = |text: &str| base64::engine::general_purpose::STANDARD.encode(text);
    vec![
        ("plain", sentinel.to_string()),
        ("base64", b64(sentinel)),
        ("Basic credentials", b64(&format!("demo:{sentinel}"))),
    ]
}

fn rbac_dir() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../config/rbac"))
}

/// A class whose auth probe sends Basic `username:password` from an Opaque Secret and
/// the `token` key both in a header and in the query; `probe_host` overrides the
/// host of the auth probe.
fn token_class(name: &str, probe_host: Option<&str>) -> String {
    let host = probe_host
        .map(|h| format!("        host: {h}\n"))
        .unwrap_or_default();
    format!(
        r#"apiVersion: connectors.alauda.io/v1alpha1
kind: ConnectorClass
metadata:
  name: {name}
spec:
  address:
    type: string
  auth:
    types:
    - name: token
      secretType: Opaque
      params:
      - {{name: username, type: string}}
      - {{name: password, type: string}}
      - {{name: token, type: string}}
  livenessProbe:
    http:
      path: /
  authProbes:
  - authName: token
    probe:
      http:
{host}        path: '/org/repo/info/refs?token={{{{ .Secret.StringData.token | urlquery }}}}'
        httpHeaders:
        - name: Authorization
          value: 'Basic {{{{ printf "%s:%s" .Secret.StringData.username .Secret.StringData.password | b64enc }}}}'
        - name: X-Token
          value: '{{{{ .Secret.StringData.token }}}}'
"#
    )
}

fn token_secret(name: &str, token: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: {name}\ntype: Opaque\nstringData:\n  username: demo\n  password: demo-password\n  token: {token:?}\n"
    )
}

fn token_connector(name: &str, class: &str, url: &str, secret: &str) -> String {
    format!(
        "apiVersion: connectors.alauda.io/v1alpha1\nkind: Connector\nmetadata:\n  name: {name}\nspec:\n  connectorClassName: {class}\n  address: {url}\n  auth:\n    name: token\n    secretRef: {{name: {secret}}}\n"
    )
}

fn wait_condition(ns: &str, name: &str, kind: &str, status: &str, reason: &str) {
    connectors_e2e::wait_condition(ns, "connector", name, kind, status, reason, TIMEOUT);
}

#[test]
fn a_sentinel_secret_never_leaks_and_the_operator_runs_with_its_own_rbac() {
    ensure_operator_namespace();
    let rbac = rbac_dir();
    kubectl_ok([
        "apply",
        "--server-side",
        "--force-conflicts",
        "-k",
        rbac.to_str().expect("utf-8 path"),
    ]);
    let tool = DemoTool::start();
    let ns = TestNamespace::new("secrets");
    let sentinel: String = format!(
        "Sentinel{}",
        rand::rng()
            .sample_iter(rand::distr::Alphanumeric)
            .take(24)
            .map(char::from)
            .collect::<String>()
    );
    let git = format!("{ns}-git");
    let tok = format!("{ns}-token");
    let refused = format!("{ns}-refused");
    let _classes = [
        ClassGuard::apply(&git, &format!("{}{PROXY_CLASS_EXTRA}", git_class(&git))),
        ClassGuard::apply(
            &tok,
            &format!("{}{PROXY_CLASS_EXTRA}", token_class(&tok, None)),
        ),
        ClassGuard::apply(&refused, &token_class(&refused, Some("127.0.0.1:1"))),
    ];
    let url = tool.url();
    apply_yaml(
        &ns,
        &[
            connectors_e2e::fixtures::basic_secret("wrong", &sentinel),
            connectors_e2e::fixtures::connector("wrong-password", &git, &url, "wrong"),
            token_secret("token", &sentinel),
            token_connector("passes", &tok, &url, "token"),
            token_connector("refused", &refused, &url, "token"),
            token_secret("broken", &format!("{sentinel}\n{sentinel}")),
            token_connector("broken-header", &tok, &url, "broken"),
        ]
        .join("\n---\n"),
    );

    let op = Operator::start(OperatorOptions {
        identity: "e2e-security".into(),
        kubeconfig: Some(sa_kubeconfig(OPERATOR_NAMESPACE, "connectors-operator")),
        rust_log: Some("trace".into()),
        extra_args: vec!["--lease-name".into(), format!("lease-{ns}")],
        ..OperatorOptions::default()
    });
    wait(&ns, "connector", "passes", "Ready", TIMEOUT);
    wait_condition(
        &ns,
        "wrong-password",
        "AuthReady",
        "False",
        "AuthenticationFailed",
    );
    wait_condition(&ns, "refused", "AuthReady", "False", "ConnectionFailed");
    wait_condition(&ns, "broken-header", "AuthReady", "False", "ProbeError");

    // The ServiceAccount could do all of it: status, the proxy Service, events.
    let service = get_json(&ns, "service", "c-passes");
    assert_eq!(
        service["spec"]["externalName"],
        "connectors-proxy.connectors-system.svc"
    );
    eventually(TIMEOUT, || {
        let events = kubectl_ok(["get", "events", "-n", &ns, "-o", "json"]);
        // A first Ready records no event (SPEC section 5); the Warnings show the
        // ServiceAccount may create events.
        if events.contains("AuthenticationFailed") && events.contains("ConnectionFailed") {
            Ok(())
        } else {
            Err(events)
        }
    });
    // Let periodic re-probes (2 s interval) run a few rounds into the log too.
    std::thread::sleep(Duration::from_secs(5));

    let logs = op.logs();
    assert!(
        logs.contains("\"level\":\"TRACE\"") && logs.contains("sending probe request"),
        "the log is not at trace level or saw no probe: {}",
        op.log.display()
    );
    let denied: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("forbidden") && l.contains("cannot"))
        .collect();
    assert!(
        denied.is_empty(),
        "RBAC denied the operator {} time(s), first: {}",
        denied.len(),
        denied[0]
    );

    let mut places = vec![
        ("operator log (trace)".to_string(), logs),
        ("/metrics".to_string(), op.metrics()),
        (
            "events".to_string(),
            kubectl_ok(["get", "events", "-n", &ns, "-o", "json"]),
        ),
        (
            "Connector statuses".to_string(),
            kubectl_ok(["get", "connectors", "-n", &ns, "-o", "json"]),
        ),
        (
            "ConnectorClass statuses".to_string(),
            kubectl_ok([
                "get",
                "connectorclasses",
                &git,
                &tok,
                &refused,
                "-o",
                "json",
            ]),
        ),
        (
            "Services".to_string(),
            kubectl_ok(["get", "services", "-n", &ns, "-o", "json"]),
        ),
    ];
    for name in ["wrong-password", "passes", "refused", "broken-header"] {
        places.push((
            format!("kubectl describe connector {name}"),
            describe(&ns, "connector", name),
        ));
    }
    for class in [&git, &tok, &refused] {
        places.push((
            format!("kubectl describe connectorclass {class}"),
            describe("", "connectorclass", class),
        ));
    }
    let mut leaks = Vec::new();
    for (place, text) in &places {
        assert!(
            !text.trim().is_empty(),
            "{place} is empty: nothing was checked"
        );
        for (form, needle) in leak_forms(&sentinel) {
            if text.contains(&needle) {
                leaks.push(format!("{form} form in {place}"));
            }
        }
    }
    eprintln!(
        "checked {} places ({} bytes of log at trace) for 3 forms of the sentinel: {} leak(s)",
        places.len(),
        places[0].1.len(),
        leaks.len()
    );
    assert!(leaks.is_empty(), "the sentinel leaked: {leaks:?}");
    // The check can fail: the sentinel is in the stored Secret, read as admin.
    let secret = kubectl_ok(["get", "secret", "wrong", "-n", &ns, "-o", "json"]);
    assert!(
        leak_forms(&sentinel)
            .iter()
            .any(|(_, n)| secret.contains(n))
    );
    op.assert_alive_without_panic();
}
