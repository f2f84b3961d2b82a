//! The proxy as its own ServiceAccount (`config/proxy` RBAC, least privilege) at
//! `RUST_LOG=trace`: a Secret-value sentinel and the client's token appear in no log
//! line, response, metric or event, through successes, tool errors and every proxy
//! error path.

use std::path::PathBuf;
use std::time::Duration;

use base64::Engine as _;
use connectors_e2e::fixtures::{ClassGuard, PROXY_CLASS_EXTRA, class_head, git_class};
use connectors_e2e::process::{DemoTool, OPERATOR_NAMESPACE, ensure_operator_namespace, free_port};
use connectors_e2e::proxy::{ProxyOptions, ProxyProcess, service_account_with_access};
use connectors_e2e::{TestNamespace, apply_yaml, eventually, kubectl_ok, sa_kubeconfig};
use rand::Rng;

fn proxy_config(file: &str) -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../config/proxy")).join(file)
}

fn opaque_class(name: &str) -> String {
    format!(
        r#"{}    - name: header
      secretType: Opaque
      generator:
        rego: |
          package proxy
          auth := {{"position": "header", "auth": {{"X-Token": input.data.token}}}}
    - name: broken
      secretType: Opaque
      generator:
        rego: |
          package proxy
          auth := {{"position": "header", "auth": {{"X-Token": upper(input.data.token), "bad name": input.data.token}}}}
{PROXY_CLASS_EXTRA}"#,
        class_head(name)
    )
}

#[test]
fn no_token_or_secret_value_leaks_and_the_proxy_runs_with_its_own_rbac() {
    ensure_operator_namespace();
    for file in ["service_account.yaml", "rbac.yaml"] {
        kubectl_ok([
            "apply",
            "--server-side",
            "--force-conflicts",
            "-f",
            proxy_config(file).to_str().unwrap(),
        ]);
    }
    let kubeconfig = sa_kubeconfig(OPERATOR_NAMESPACE, "connectors-proxy");
    let sentinel: String = format!(
        "Sentinel{}",
        rand::rng()
            .sample_iter(rand::distr::Alphanumeric)
            .take(24)
            .map(char::from)
            .collect::<String>()
    );
    let git = format!("proxy-leak-git-{}", std::process::id());
    let opaque = format!("proxy-leak-opaque-{}", std::process::id());
    let _classes = [
        ClassGuard::apply(&git, &format!("{}{PROXY_CLASS_EXTRA}", git_class(&git))),
        ClassGuard::apply(&opaque, &opaque_class(&opaque)),
    ];
    let ns = TestNamespace::new("proxy-leak");
    let tool = DemoTool::start();
    let closed = format!("http://127.0.0.1:{}", free_port());
    apply_yaml(
        &ns,
        &format!(
            "apiVersion: v1\nkind: Secret\nmetadata: {{name: wrong}}\ntype: kubernetes.io/basic-auth\nstringData: {{username: demo, password: {sentinel}}}\n---\napiVersion: v1\nkind: Secret\nmetadata: {{name: token}}\ntype: Opaque\nstringData: {{token: {sentinel}}}\n"
        ),
    );
    let connector = |name: &str, class: &str, auth: &str, address: &str, secret: &str| {
        format!(
            "apiVersion: connectors.alauda.io/v1alpha1\nkind: Connector\nmetadata: {{name: {name}}}\nspec:\n  connectorClassName: {class}\n  address: {address}\n  auth: {{name: {auth}, secretRef: {{name: {secret}}}}}\n"
        )
    };
    apply_yaml(
        &ns,
        &connector("wrong", &git, "basicAuth", &tool.url(), "wrong"),
    );
    apply_yaml(
        &ns,
        &connector("header", &opaque, "header", &tool.url(), "token"),
    );
    apply_yaml(
        &ns,
        &connector("broken", &opaque, "broken", &tool.url(), "token"),
    );
    apply_yaml(
        &ns,
        &connector("closed", &git, "basicAuth", &closed, "wrong"),
    );
    let token = service_account_with_access(&ns, "builder");
    let proxy = ProxyProcess::start(ProxyOptions {
        kubeconfig: Some(kubeconfig),
        rust_log: "trace".into(),
        ..Default::default()
    });
    let bearer = format!("Authorization: Bearer {token}");
    let url =
        |name: &str, path: &str| format!("{}{path}", proxy.host_url(&ns, &format!("c-{name}")));
    let mut answers = Vec::new();
    // The tool refuses the wrong password (its own 401), the generator injects, the
    // broken generator and the closed port are proxy errors, and tokens are refused.
    let wrong = eventually(Duration::from_secs(20), || {
        let r = proxy.curl(
            &url("wrong", "/demo/repo.git/info/refs?service=git-upload-pack"),
            &["-H", &bearer],
        );
        if r.status == 401
            && r.header("www-authenticate")
                .is_some_and(|h| h.contains("demo-tool"))
        {
            Ok(r)
        } else {
            Err(format!("{} {}", r.status, r.body))
        }
    });
    answers.push(wrong);
    for (name, path, code) in [
        ("header", "/", 200),
        ("broken", "/", 502),
        ("closed", "/", 502),
    ] {
        let r = eventually(Duration::from_secs(20), || {
            let r = proxy.curl(&url(name, path), &["-H", &bearer]);
            if r.status == code {
                Ok(r)
            } else {
                Err(format!("{name}: {} {}", r.status, r.body))
            }
        });
        answers.push(r);
    }
    answers.push(proxy.curl(
        &url("header", "/"),
        &["-H", &format!("Authorization: Bearer {sentinel}")],
    ));
    answers.push(proxy.curl(
        &url("header", "/"),
        &["-u", &format!("{sentinel}:{sentinel}")],
    ));

    let logs = proxy.logs();
    assert!(
        logs.lines().count() > 50 && logs.contains("TRACE"),
        "the log is not at trace level"
    );
    assert!(
        !logs.to_ascii_lowercase().contains("forbidden"),
        "an RBAC denial in the proxy log:\n{logs}"
    );
    let b64 = |text: &str| base64::engine::general_purpose::STANDARD.encode(text);
    let forms = [
        ("sentinel", sentinel.clone()),
        ("sentinel base64", b64(&sentinel)),
        ("sentinel Basic", b64(&format!("demo:{sentinel}"))),
        ("token", token.clone()),
    ];
    let events = kubectl_ok(["get", "events", "-A", "-o", "json"]);
    let mut places = vec![
        ("proxy log (trace)".to_string(), logs),
        ("metrics".to_string(), proxy.metrics()),
        ("events".to_string(), events),
    ];
    for (i, answer) in answers.iter().enumerate() {
        places.push((
            format!("answer {i} ({})", answer.status),
            format!("{}\n{}", answer.head, answer.body),
        ));
    }
    let mut leaks = Vec::new();
    for (place, text) in &places {
        for (form, value) in &forms {
            if text.contains(value.as_str()) {
                leaks.push(format!("{form} in {place}"));
            }
        }
    }
    eprintln!(
        "checked {} places for {} forms: {} leak(s)",
        places.len(),
        forms.len(),
        leaks.len()
    );
    assert!(leaks.is_empty(), "leaks: {leaks:?}");
    // The search would find it: the Secret holds it.
    let secret = kubectl_ok(["get", "secret", "token", "-n", ns.name(), "-o", "json"]);
    assert!(secret.contains(&b64(&sentinel)));
}
