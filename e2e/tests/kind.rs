//! In-cluster tests that only a real cluster with nodes can give: the operator
//! installed by `config/default` from the image of the `Dockerfile`, run by
//! `e2e/kind/run.sh` (which sets `E2E_KIND=1` and `E2E_KIND_TOOLS_IMAGE`).
//!
//! Every test is `#[ignore]`d: a plain `cargo test` (the local control plane has
//! no kubelet) lists them as ignored, never as passed; the kind harness runs them
//! with `--ignored`, and each one fails at once without `E2E_KIND=1`.
//!
//! - the operator, proxy and API pods are Ready through their kubelet `/readyz` probes;
//! - the webhook answers through its Service with the CA the operator injected;
//! - a pod with a projected ServiceAccount token clones through its Connector's
//!   proxy address and through `http_proxy`/`https_proxy` with the proxy CA of
//!   ConfigMap `connectors-proxy-ca`, from a git server (the demo tool) in the cluster;
//! - leader election with two replicas: the leader pod deleted, the other takes over.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use connectors_e2e::fixtures::{ClassGuard, basic_secret, git_class};
use connectors_e2e::proxy::service_account_with_access;
use connectors_e2e::{
    TestNamespace, apply_yaml, eventually, get_json, kubectl, kubectl_ok, try_apply_yaml, wait,
};
use serde_json::Value;

const NS: &str = "connectors-system";
const TIMEOUT: Duration = Duration::from_secs(180);

/// The harness's environment; panics (the test fails) outside it.
fn kind_env() -> String {
    assert_eq!(
        std::env::var("E2E_KIND").as_deref(),
        Ok("1"),
        "the kind tests run only through e2e/kind/run.sh (E2E_KIND=1)"
    );
    connectors_e2e::ensure_cluster();
    std::env::var("E2E_KIND_TOOLS_IMAGE").expect("E2E_KIND_TOOLS_IMAGE (set by e2e/kind/run.sh)")
}

fn pods(selector: &str) -> Vec<Value> {
    let list: Value = serde_json::from_str(&kubectl_ok([
        "get", "pods", "-n", NS, "-l", selector, "-o", "json",
    ]))
    .expect("pod list");
    list["items"].as_array().cloned().unwrap_or_default()
}

fn is_ready(pod: &Value) -> bool {
    pod["metadata"]["deletionTimestamp"].is_null()
        && pod["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| c["type"] == "Ready" && c["status"] == "True")
}

fn ready_pod_names(selector: &str) -> Vec<String> {
    pods(selector)
        .iter()
        .filter(|p| is_ready(p))
        .map(|p| p["metadata"]["name"].as_str().unwrap().to_string())
        .collect()
}

/// `wait` for the Connector's Ready; on a timeout the operator's recent log is
/// printed too (the leader election test may delete that pod before the harness's
/// own diagnostics run).
fn wait_ready_showing_operator_log(ns: &TestNamespace, name: &str) {
    let waited = std::panic::catch_unwind(|| wait(ns, "connector", name, "Ready", TIMEOUT));
    if let Err(panic) = waited {
        let log = kubectl([
            "logs",
            "-n",
            NS,
            "-l",
            "app.kubernetes.io/component=operator",
            "--tail=200",
            "--prefix",
        ]);
        eprintln!(
            "--- operator log ---\n{}{}",
            String::from_utf8_lossy(&log.stdout),
            String::from_utf8_lossy(&log.stderr)
        );
        std::panic::resume_unwind(panic);
    }
}

/// A class like the published sample: git probes, the proxy by Service reference.
fn proxied_git_class(name: &str) -> String {
    format!(
        "{}  proxy:\n    ref:\n      kind: Service\n      name: connectors-proxy-service\n      namespace: {NS}\n",
        git_class(name)
    )
}

fn connector(name: &str, class: &str, address: &str, ca: Option<&str>) -> String {
    let ca = ca
        .map(|c| format!("  caCertSecretRef: {{name: {c}}}\n"))
        .unwrap_or_default();
    format!(
        "apiVersion: connectors.alauda.io/v1alpha1\nkind: Connector\nmetadata: {{name: {name}}}\nspec:\n  connectorClassName: {class}\n  address: {address}\n  auth:\n    name: basicAuth\n    secretRef: {{name: git-auth}}\n    params:\n    - {{name: repository, value: demo/repo}}\n{ca}"
    )
}

#[test]
#[ignore = "kind only: run by e2e/kind/run.sh"]
fn deployed_pods_are_ready_through_their_kubelet_probes() {
    kind_env();
    for (component, port) in [("operator", 8080), ("proxy", 8443), ("api", 8444)] {
        let selector = format!("app.kubernetes.io/component={component}");
        let found = pods(&selector);
        assert!(!found.is_empty(), "no {component} pod");
        for pod in &found {
            let name = pod["metadata"]["name"].as_str().unwrap();
            assert!(
                is_ready(pod),
                "{component} pod {name} is not Ready: {}",
                pod["status"]
            );
            let container = &pod["spec"]["containers"][0];
            // Ready comes from the kubelet's HTTP probe of /readyz in the pod.
            let probe = &container["readinessProbe"]["httpGet"];
            assert_eq!(probe["path"], "/readyz", "{name}: {probe}");
            let declared = container["ports"]
                .as_array()
                .unwrap()
                .iter()
                .find(|p| p["name"] == probe["port"])
                .map(|p| p["containerPort"].clone());
            assert_eq!(declared, Some(Value::from(port)), "{name}: probe port");
            let status = &pod["status"]["containerStatuses"][0];
            assert_eq!(status["ready"], true, "{name}: {status}");
            assert_eq!(status["restartCount"], 0, "{name} restarted: {status}");
            assert!(
                status["image"]
                    .as_str()
                    .unwrap_or_default()
                    .contains("connectors-operator"),
                "{name}: {status}"
            );
        }
    }
    // The same /readyz the kubelet asks, from inside the cluster (apiserver proxy).
    let pod = ready_pod_names("app.kubernetes.io/component=operator").remove(0);
    let body = kubectl_ok([
        "get",
        "--raw",
        &format!("/api/v1/namespaces/{NS}/pods/{pod}:8080/proxy/readyz"),
    ]);
    assert!(body.to_lowercase().contains("ok"), "/readyz: {body}");
}

#[test]
#[ignore = "kind only: run by e2e/kind/run.sh"]
fn the_webhook_rejects_a_bad_connector_through_its_service_and_the_injected_ca() {
    kind_env();
    // The CA bundle the operator injected is the CA of its certificate Secret.
    let vwc = get_json("", "validatingwebhookconfiguration", "connectors-operator");
    let secret = get_json(NS, "secret", "connectors-operator-webhook-cert");
    let webhooks = vwc["webhooks"].as_array().expect("webhooks");
    assert_eq!(webhooks.len(), 3, "{vwc}");
    let ca = secret["data"]["ca.crt"]
        .as_str()
        .expect("ca.crt in the webhook Secret");
    for hook in webhooks {
        assert_eq!(
            hook["clientConfig"]["caBundle"].as_str(),
            Some(ca),
            "{hook}"
        );
        assert_eq!(
            hook["clientConfig"]["service"]["name"],
            "connectors-operator-webhook"
        );
        // config/default's policy is Ignore: only a denial proves the webhook answered.
        assert_eq!(hook["failurePolicy"], "Ignore");
    }
    let class = format!("kind-webhook-{}", std::process::id());
    let _class = ClassGuard::apply(&class, &proxied_git_class(&class));
    let ns = TestNamespace::new("kind-webhook");
    apply_yaml(&ns, &basic_secret("git-auth", "demo-password"));
    // A class-contract rule: no CRD validation can know it, only the webhook.
    let bad = connector("bad", &class, "http://git.example.com", None)
        .replace("name: basicAuth", "name: oauth2");
    let err = eventually(Duration::from_secs(60), || {
        match try_apply_yaml(&ns, &bad) {
            Ok(out) => {
                kubectl([
                    "delete",
                    "connector",
                    "bad",
                    "-n",
                    ns.name(),
                    "--ignore-not-found",
                ]);
                Err(format!("accepted: {out}"))
            }
            Err(e) => Ok(e),
        }
    });
    assert!(
        err.contains(r#"admission webhook "vconnector.connectors.alauda.io" denied the request"#)
            && err.contains(r#"spec.auth.name: "oauth2" is not an auth type"#),
        "{err}"
    );
    // And a good one passes.
    apply_yaml(
        &ns,
        &connector("good", &class, "http://git.example.com", None),
    );
}

/// A test CA and a leaf for `dns` (openssl, in `dir`): (ca.pem, tls.pem, tls.key).
fn ca_and_leaf(dir: &Path, dns: &str) -> (String, String, String) {
    let run = |args: &[&str]| {
        let out = Command::new("openssl")
            .current_dir(dir)
            .args(args)
            .output()
            .expect("openssl");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "1",
        "-subj",
        "/CN=kind e2e CA",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
    ]);
    std::fs::write(dir.join("ext.cnf"), format!("subjectAltName=DNS:{dns}\n")).unwrap();
    run(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        &format!("/CN={dns}"),
        "-keyout",
        "tls.key",
        "-out",
        "tls.csr",
    ]);
    run(&[
        "x509",
        "-req",
        "-in",
        "tls.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "1",
        "-extfile",
        "ext.cnf",
        "-out",
        "tls.pem",
    ]);
    let read = |f: &str| std::fs::read_to_string(dir.join(f)).unwrap();
    (read("ca.pem"), read("tls.pem"), read("tls.key"))
}

fn indent(pem: &str, n: usize) -> String {
    pem.lines()
        .map(|l| format!("{}{l}\n", " ".repeat(n)))
        .collect()
}

#[test]
#[ignore = "kind only: run by e2e/kind/run.sh"]
fn a_pod_clones_through_its_connector_and_through_http_proxy_with_the_proxy_ca() {
    let image = kind_env();
    let class = format!("kind-git-{}", std::process::id());
    let _class = ClassGuard::apply(&class, &proxied_git_class(&class));
    let ns = TestNamespace::new("kind-git");
    let tool_host = format!("git-tool.{ns}.svc");
    let dir = std::env::temp_dir().join(format!("connectors-e2e-kind-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (ca, cert, key) = ca_and_leaf(&dir, &tool_host);

    // The git server: the demo tool (git http-backend), plain http and https.
    apply_yaml(
        &ns,
        &format!(
            r#"apiVersion: v1
kind: Secret
metadata: {{name: tool-tls}}
type: kubernetes.io/tls
stringData:
  tls.crt: |
{cert}  tls.key: |
{key}---
apiVersion: v1
kind: Secret
metadata: {{name: tool-ca}}
stringData:
  ca.crt: |
{ca}---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: git-tool}}
spec:
  selector: {{matchLabels: {{app: git-tool}}}}
  template:
    metadata: {{labels: {{app: git-tool}}}}
    spec:
      containers:
      - name: http
        image: {image}
        imagePullPolicy: Never
        command: [demo-tool, "0.0.0.0:8080"]
        ports: [{{containerPort: 8080}}]
        readinessProbe: {{httpGet: {{path: /, port: 8080}}, periodSeconds: 2}}
      - name: https
        image: {image}
        imagePullPolicy: Never
        command: [demo-tool, --tls-cert, /tls/tls.crt, --tls-key, /tls/tls.key, "0.0.0.0:8443"]
        ports: [{{containerPort: 8443}}]
        volumeMounts: [{{name: tls, mountPath: /tls}}]
      volumes: [{{name: tls, secret: {{secretName: tool-tls}}}}]
---
apiVersion: v1
kind: Service
metadata: {{name: git-tool}}
spec:
  selector: {{app: git-tool}}
  ports:
  - {{name: http, port: 80, targetPort: 8080}}
  - {{name: https, port: 443, targetPort: 8443}}
"#,
            cert = indent(&cert, 4),
            key = indent(&key, 4),
            ca = indent(&ca, 4),
        ),
    );
    kubectl_ok([
        "rollout",
        "status",
        "deployment/git-tool",
        "-n",
        ns.name(),
        "--timeout=180s",
    ]);
    apply_yaml(&ns, &basic_secret("git-auth", "demo-password"));
    apply_yaml(
        &ns,
        &connector("git", &class, &format!("http://{tool_host}"), None),
    );
    apply_yaml(
        &ns,
        &connector(
            "secure",
            &class,
            &format!("https://{tool_host}"),
            Some("tool-ca"),
        ),
    );
    for name in ["git", "secure"] {
        wait_ready_showing_operator_log(&ns, name);
    }
    let connector_url = get_json(&ns, "connector", "git")["status"]["proxy"]["httpAddress"]["url"]
        .as_str()
        .expect("status.proxy.httpAddress.url")
        .to_string();
    assert!(
        connector_url.starts_with(&format!("http://c-git.{ns}.svc")),
        "{connector_url}"
    );

    // The workload side: get on its Connectors, the proxy CA as a workload gets it
    // (ConfigMap connectors-proxy-ca, copied into its namespace), a projected token.
    service_account_with_access(&ns, "builder");
    let proxy_ca = kubectl_ok([
        "get",
        "configmap",
        "connectors-proxy-ca",
        "-n",
        NS,
        "-o",
        "jsonpath={.data.ca\\.crt}",
    ]);
    assert!(proxy_ca.contains("BEGIN CERTIFICATE"), "{proxy_ca}");
    apply_yaml(
        &ns,
        &format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: connectors-proxy-ca}}\ndata:\n  ca.crt: |\n{}",
            indent(&proxy_ca, 4)
        ),
    );
    let proxy = format!("connectors-proxy-service.{NS}.svc:80");
    let script = format!(
        r#"set -eu
T=$(cat /var/run/secrets/tokens/token)
export GIT_TERMINAL_PROMPT=0
echo "== clone through the Connector's proxy address"
git clone -q "http://x:$T@c-git.{ns}.svc/demo/repo.git" /tmp/host-form
git -C /tmp/host-form log --oneline -1
echo "== clone over https through https_proxy (CONNECT, the proxy CA)"
https_proxy="http://{ns}%2Fsecure:$T@{proxy}" GIT_SSL_CAINFO=/proxy-ca/ca.crt \
  git clone -q "https://{tool_host}/demo/repo.git" /tmp/connect
git -C /tmp/connect log --oneline -1
echo "== clone over http through http_proxy"
http_proxy="http://{ns}%2Fgit:$T@{proxy}" git clone -q "http://{tool_host}/demo/repo.git" /tmp/forward
echo "== without a token: the proxy's challenge"
code=$(curl -s -o /dev/null -w '%{{http_code}}' "http://c-git.{ns}.svc/demo/repo.git/info/refs?service=git-upload-pack")
[ "$code" = 401 ] || {{ echo "anonymous: $code"; exit 1; }}
echo ALL-CLONES-OK
"#
    );
    apply_yaml(
        &ns,
        &format!(
            r#"apiVersion: v1
kind: Pod
metadata: {{name: builder}}
spec:
  serviceAccountName: builder
  automountServiceAccountToken: false
  restartPolicy: Never
  containers:
  - name: git
    image: {image}
    imagePullPolicy: Never
    command: [bash, -c, {script}]
    volumeMounts:
    - {{name: token, mountPath: /var/run/secrets/tokens, readOnly: true}}
    - {{name: proxy-ca, mountPath: /proxy-ca, readOnly: true}}
  volumes:
  - name: token
    projected:
      sources:
      - serviceAccountToken: {{path: token, expirationSeconds: 3600}}
  - name: proxy-ca
    configMap: {{name: connectors-proxy-ca}}
"#,
            script = serde_json::to_string(&script).unwrap()
        ),
    );
    let phase = eventually(TIMEOUT, || {
        let pod = get_json(&ns, "pod", "builder");
        match pod["status"]["phase"].as_str() {
            Some(p @ ("Succeeded" | "Failed")) => Ok(p.to_string()),
            other => Err(format!("phase {other:?}")),
        }
    });
    let logs = kubectl_ok(["logs", "builder", "-n", ns.name()]);
    eprintln!("--- builder pod ---\n{logs}");
    assert_eq!(phase, "Succeeded", "{logs}");
    assert!(logs.contains("ALL-CLONES-OK"), "{logs}");
    let _ = std::fs::remove_dir_all(&dir);
}

fn lease_holder() -> String {
    get_json(NS, "lease", "connectors-operator")["spec"]["holderIdentity"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[test]
#[ignore = "kind only: run by e2e/kind/run.sh"]
fn leader_election_with_two_replicas_survives_the_leader_pod() {
    let _image = kind_env();
    const OPERATOR: &str = "app.kubernetes.io/component=operator";
    struct ScaleBack;
    impl Drop for ScaleBack {
        fn drop(&mut self) {
            kubectl([
                "scale",
                "deployment/connectors-operator",
                "-n",
                NS,
                "--replicas=1",
            ]);
        }
    }
    let _scale_back = ScaleBack;
    kubectl_ok([
        "scale",
        "deployment/connectors-operator",
        "-n",
        NS,
        "--replicas=2",
    ]);
    kubectl_ok([
        "rollout",
        "status",
        "deployment/connectors-operator",
        "-n",
        NS,
        "--timeout=180s",
    ]);
    let both = eventually(TIMEOUT, || {
        let names = ready_pod_names(OPERATOR);
        if names.len() == 2 {
            Ok(names)
        } else {
            Err(format!("ready: {names:?}"))
        }
    });
    let leader = eventually(TIMEOUT, || {
        let holder = lease_holder();
        if both.contains(&holder) {
            Ok(holder)
        } else {
            Err(format!("holder {holder:?}, pods {both:?}"))
        }
    });
    let follower = both.iter().find(|p| **p != leader).unwrap().clone();
    eprintln!("leader {leader}, follower {follower}");

    kubectl_ok(["delete", "pod", &leader, "-n", NS, "--wait=false"]);
    let new_leader = eventually(TIMEOUT, || {
        let holder = lease_holder();
        if !holder.is_empty() && holder != leader {
            Ok(holder)
        } else {
            Err(format!("holder {holder:?}"))
        }
    });
    eprintln!("new leader {new_leader}");
    assert_ne!(new_leader, leader);

    // The new leader reconciles: a Connector created now becomes Ready.
    let class = format!("kind-leader-{}", std::process::id());
    let _class = ClassGuard::apply(&class, &proxied_git_class(&class));
    let ns = TestNamespace::new("kind-leader");
    apply_yaml(&ns, &basic_secret("git-auth", "demo-password"));
    // A tool that does not exist: reconciled means conditions written, whatever they say.
    apply_yaml(
        &ns,
        &connector(
            "after-failover",
            &class,
            &format!("http://nowhere.{ns}.svc"),
            None,
        ),
    );
    let status = eventually(TIMEOUT, || {
        let c = get_json(&ns, "connector", "after-failover");
        let conditions = c["status"]["conditions"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if conditions.iter().any(|c| c["type"] == "Ready") {
            Ok(c["status"].clone())
        } else {
            Err(format!("status {}", c["status"]))
        }
    });
    eprintln!("reconciled after failover: {status}");
}
