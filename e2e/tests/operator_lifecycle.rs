//! Operator restarts and leader election, with real operator processes. Tests here
//! run one at a time (each starts and kills its own operators).

use std::sync::Mutex;
use std::time::{Duration, Instant};

use connectors_e2e::process::{DemoTool, OPERATOR_NAMESPACE, Operator, OperatorOptions};
use connectors_e2e::{TestNamespace, apply_yaml, get_json, kubectl, try_get_json, wait};
use serde_json::Value;

const TIMEOUT: Duration = Duration::from_secs(30);

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn class_yaml(name: &str) -> String {
    format!(
        r#"
apiVersion: connectors.alauda.io/v1alpha1
kind: ConnectorClass
metadata:
  name: {name}
spec:
  address: {{type: string}}
  auth:
    types:
    - name: basicAuth
      secretType: kubernetes.io/basic-auth
  livenessProbe:
    http:
      path: /
  authProbes:
  - authName: basicAuth
    probe:
      http:
        path: /org/repo/info/refs
        httpHeaders:
        - name: Authorization
          value: 'Basic {{{{ printf "%s:%s" .Secret.StringData.username .Secret.StringData.password | b64enc }}}}'
  proxy:
    uri: http://connectors-proxy.connectors-system.svc:8080
"#
    )
}

fn connector_yaml(name: &str, class: &str, address: &str, secret: &str) -> String {
    format!(
        "apiVersion: connectors.alauda.io/v1alpha1\nkind: Connector\nmetadata:\n  name: {name}\nspec:\n  connectorClassName: {class}\n  address: {address}\n  auth:\n    name: basicAuth\n    secretRef: {{name: {secret}}}\n"
    )
}

fn secrets_yaml() -> &'static str {
    "apiVersion: v1\nkind: Secret\nmetadata:\n  name: good\ntype: kubernetes.io/basic-auth\nstringData: {username: demo, password: demo-password}\n---\napiVersion: v1\nkind: Secret\nmetadata:\n  name: bad\ntype: kubernetes.io/basic-auth\nstringData: {username: demo, password: wrong}\n"
}

fn transition_times(object: &Value) -> Vec<(String, String)> {
    object["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| {
            (
                c["type"].as_str().unwrap_or_default().to_string(),
                c["lastTransitionTime"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            )
        })
        .collect()
}

struct ClassGuard(String);
impl Drop for ClassGuard {
    fn drop(&mut self) {
        kubectl(["delete", "connectorclass", &self.0, "--ignore-not-found"]);
    }
}

fn lease_holder(name: &str) -> String {
    try_get_json(OPERATOR_NAMESPACE, "lease", name)
        .ok()
        .flatten()
        .and_then(|l| l["spec"]["holderIdentity"].as_str().map(str::to_string))
        .unwrap_or_default()
}

#[test]
fn restart_changes_no_transition_time_and_writes_nothing() {
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let tool = DemoTool::start();
    let ns = TestNamespace::new("restart");
    let class = format!("{ns}-git");
    let _class = ClassGuard(class.clone());
    let mut op = Operator::start(OperatorOptions {
        identity: "restart-1".into(),
        lease_duration_seconds: 4,
        ..OperatorOptions::default()
    });
    apply_yaml("", &class_yaml(&class));
    apply_yaml(&ns, secrets_yaml());
    apply_yaml(&ns, &connector_yaml("ok", &class, &tool.url(), "good"));
    apply_yaml(&ns, &connector_yaml("bad-auth", &class, &tool.url(), "bad"));
    apply_yaml(
        &ns,
        &connector_yaml("down", &class, "http://127.0.0.1:1", "good"),
    );
    wait(&ns, "connector", "ok", "Ready", TIMEOUT);
    wait(
        &ns,
        "connector",
        "bad-auth",
        "condition=AuthReady=false",
        TIMEOUT,
    );
    wait(
        &ns,
        "connector",
        "down",
        "condition=LivenessReady=false",
        TIMEOUT,
    );
    // Conditions are stored with second precision; let a second pass so that a
    // rewritten time would differ.
    std::thread::sleep(Duration::from_secs(2));
    let names = ["ok", "bad-auth", "down"];
    let before: Vec<Value> = names
        .iter()
        .map(|n| get_json(&ns, "connector", n))
        .collect();
    // Graceful stop releases the Lease, so the next start leads at once.
    op.terminate();
    let mut op = Operator::start(OperatorOptions {
        identity: "restart-2".into(),
        lease_duration_seconds: 4,
        ..OperatorOptions::default()
    });
    let started = Instant::now();
    while op.metric("connectors_operator_reconciles_total{kind=\"Connector\"}") < 3.0 {
        assert!(
            started.elapsed() < TIMEOUT,
            "restarted operator did not reconcile"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_secs(6));
    for (name, old) in names.iter().zip(&before) {
        let new = get_json(&ns, "connector", name);
        assert_eq!(transition_times(old), transition_times(&new), "{name}");
        assert_eq!(
            old["metadata"]["resourceVersion"], new["metadata"]["resourceVersion"],
            "{name} was written after the restart"
        );
    }
    assert_eq!(
        op.metric("connectors_operator_status_writes_total{kind=\"Connector\"}"),
        0.0
    );
    op.terminate();
}

#[test]
fn only_the_leader_writes_and_a_killed_leader_is_replaced() {
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let tool = DemoTool::start();
    let ns = TestNamespace::new("leader");
    let class = format!("{ns}-git");
    let _class = ClassGuard(class.clone());
    let lease = format!("lease-{ns}");
    let options = |identity: &str| OperatorOptions {
        identity: identity.into(),
        lease_duration_seconds: 6,
        extra_args: vec!["--lease-name".into(), lease.clone()],
        ..OperatorOptions::default()
    };
    let mut first = Operator::start(options("first"));
    let started = Instant::now();
    while lease_holder(&lease) != "first" {
        assert!(started.elapsed() < TIMEOUT, "first never took the Lease");
        std::thread::sleep(Duration::from_millis(200));
    }
    let second = Operator::start(options("second"));
    apply_yaml("", &class_yaml(&class));
    apply_yaml(&ns, secrets_yaml());
    apply_yaml(&ns, &connector_yaml("c1", &class, &tool.url(), "good"));
    wait(&ns, "connector", "c1", "Ready", TIMEOUT);
    assert_eq!(lease_holder(&lease), "first");
    let writes = "connectors_operator_status_writes_total";
    assert!(first.metric(writes) >= 1.0, "the leader wrote nothing");
    assert_eq!(second.metric(writes), 0.0, "the standby wrote");
    assert_eq!(second.metric("connectors_operator_reconciles_total"), 0.0);
    assert_eq!(first.metric("connectors_operator_leader "), 1.0);
    assert_eq!(second.metric("connectors_operator_leader "), 0.0);

    // SIGKILL: no release; the standby takes over once the Lease expires.
    first.kill();
    let killed = Instant::now();
    apply_yaml(&ns, &connector_yaml("c2", &class, &tool.url(), "good"));
    while lease_holder(&lease) != "second" {
        assert!(
            killed.elapsed() < Duration::from_secs(6 + 10),
            "no hand-over within the lease duration (+ renew slack)"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let handover = killed.elapsed();
    wait(&ns, "connector", "c2", "Ready", TIMEOUT);
    eprintln!(
        "hand-over after SIGKILL: {:.1}s (lease 6s); c2 Ready {:.1}s after the kill",
        handover.as_secs_f64(),
        killed.elapsed().as_secs_f64()
    );
    assert!(
        handover <= Duration::from_secs(6 + 3),
        "hand-over took {handover:?}"
    );
    assert!(second.metric(writes) >= 1.0);
    assert_eq!(second.metric("connectors_operator_leader "), 1.0);
}
