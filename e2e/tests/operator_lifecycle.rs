//! Operator restarts and leader election, with real operator processes. Tests here
//! run one at a time (each starts and kills its own operators).

use std::sync::Mutex;
use std::time::{Duration, Instant};

use connectors_e2e::apiserver::ExtraApiserver;
use connectors_e2e::fixtures::{
    ClassGuard, PROXY_CLASS_EXTRA, basic_secret, ca_secret, connector, git_class,
};
use connectors_e2e::process::{DemoTool, OPERATOR_NAMESPACE, Operator, OperatorOptions};
use connectors_e2e::{TestNamespace, apply_yaml, get_json, transition_times, try_get_json, wait};
use serde_json::Value;

const TIMEOUT: Duration = Duration::from_secs(30);

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// The git class with a proxy, so restarts also cover the proxy Services.
fn class_yaml(name: &str) -> String {
    format!("{}{PROXY_CLASS_EXTRA}", git_class(name))
}

fn secrets_yaml() -> String {
    format!(
        "{}---\n{}",
        basic_secret("good", "demo-password"),
        basic_secret("bad", "wrong")
    )
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
    let _class = ClassGuard::apply(&class, &class_yaml(&class));
    let mut op = Operator::start(OperatorOptions {
        identity: "restart-1".into(),
        lease_duration_seconds: 4,
        ..OperatorOptions::default()
    });
    apply_yaml(&ns, &secrets_yaml());
    apply_yaml(&ns, &connector("ok", &class, &tool.url(), "good"));
    apply_yaml(&ns, &connector("bad-auth", &class, &tool.url(), "bad"));
    apply_yaml(
        &ns,
        &connector("down", &class, "http://127.0.0.1:1", "good"),
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
    let _class = ClassGuard::apply(&class, &class_yaml(&class));
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
    apply_yaml(&ns, &secrets_yaml());
    apply_yaml(&ns, &connector("c1", &class, &tool.url(), "good"));
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
    apply_yaml(&ns, &connector("c2", &class, &tool.url(), "good"));
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

/// With a 300 s probe interval nothing is re-probed by the clock during this test, so
/// every reaction below comes from a watch: a class edit, a Secret edit and a new
/// global CA Secret each reach the Connector within seconds.
#[test]
fn edits_reach_connectors_through_watches_not_polling() {
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let tool = DemoTool::start();
    let ns = TestNamespace::new("watch");
    let class = format!("{ns}-git");
    let op = Operator::start(OperatorOptions {
        identity: "watch".into(),
        probe_interval_seconds: 300,
        ..OperatorOptions::default()
    });
    let _class = ClassGuard::apply(&class, &git_class(&class));
    apply_yaml(&ns, &secrets_yaml());
    apply_yaml(&ns, &connector("c", &class, &tool.url(), "bad"));
    wait(&ns, "connector", "c", "condition=AuthReady=false", TIMEOUT);
    // The failure retry is 10 s away: a Ready within 5 s comes from the Secret watch.
    let edited = Instant::now();
    apply_yaml(&ns, &basic_secret("bad", "demo-password"));
    wait(&ns, "connector", "c", "Ready", Duration::from_secs(5));
    eprintln!(
        "Secret edit -> Ready in {:.1}s",
        edited.elapsed().as_secs_f64()
    );

    // Ready: the next periodic probe is 300 s away.
    let probes = || {
        op.metric(&format!(
            "connectors_operator_probes_total{{class=\"{class}\""
        ))
    };
    let before = probes();
    let ca_secret_name = format!("e2e-global-ca-{ns}");
    apply_yaml(OPERATOR_NAMESPACE, &ca_secret(&ca_secret_name, true));
    let started = Instant::now();
    while probes() <= before {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "a new global CA Secret did not re-probe the Connector"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    connectors_e2e::kubectl_ok([
        "delete",
        "secret",
        &ca_secret_name,
        "-n",
        OPERATOR_NAMESPACE,
    ]);

    let edited = Instant::now();
    apply_yaml(
        "",
        &git_class(&class).replace("== 'healthy'", "== 'sleeping'"),
    );
    wait(
        &ns,
        "connector",
        "c",
        "condition=LivenessReady=false",
        Duration::from_secs(5),
    );
    eprintln!(
        "class edit -> LivenessReady False in {:.1}s",
        edited.elapsed().as_secs_f64()
    );
}

#[test]
fn restarted_operator_keeps_admission_working_with_the_same_certificate() {
    use connectors_e2e::webhook::{Registration, Scope, wait_ca_bundles};
    use connectors_e2e::{kubectl_ok, kubectl_stdin};

    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let ns = TestNamespace::new("webhook-restart");
    kubectl_ok(["label", "namespace", ns.name(), "e2e-webhook-restart=true"]);
    const CONFIG: &str = "connectors-e2e-webhook-restart";
    let options = OperatorOptions {
        identity: "e2e-webhook-restart".into(),
        extra_args: vec!["--webhook-config".into(), CONFIG.into()],
        ..OperatorOptions::default()
    };
    let mut first = Operator::start(options.clone());
    // Connectors of this namespace only, so the other tests never meet this webhook.
    let _registration = Registration::new(
        CONFIG,
        first.webhook_port,
        &Scope {
            connector_namespace_label: Some(("e2e-webhook-restart".into(), "true".into())),
            classes: false,
            class_label: None,
        },
    );
    let bundles = wait_ca_bundles(CONFIG, TIMEOUT);
    let secret_before = get_json(
        OPERATOR_NAMESPACE,
        "secret",
        "connectors-operator-webhook-cert",
    );
    let config_before = get_json("", "validatingwebhookconfiguration", CONFIG);
    let unknown_class = connector(
        "c",
        "webhook-restart-no-such-class",
        "https://example.com",
        "s",
    );
    let refused = |when: &str| {
        let out = kubectl_stdin(["apply", "-n", ns.name(), "-f", "-"], &unknown_class);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success()
                && stderr.contains(r#"admission webhook "vconnector.connectors.alauda.io" denied the request: spec.connectorClassName: ConnectorClass "webhook-restart-no-such-class" not found"#),
            "{when}: expected the webhook's rejection, got:\n{stderr}"
        );
    };
    refused("before the restart");

    first.terminate();
    let second = Operator::start(OperatorOptions {
        webhook_port: Some(first.webhook_port),
        ..options
    });
    refused("after the restart");
    // Same certificate (the Secret was not rewritten) and the same CA bundle (the
    // webhook configuration was not rewritten either).
    let secret_after = get_json(
        OPERATOR_NAMESPACE,
        "secret",
        "connectors-operator-webhook-cert",
    );
    assert_eq!(
        secret_before["metadata"]["resourceVersion"],
        secret_after["metadata"]["resourceVersion"]
    );
    assert_eq!(wait_ca_bundles(CONFIG, TIMEOUT), bundles);
    let config_after = get_json("", "validatingwebhookconfiguration", CONFIG);
    assert_eq!(
        config_before["metadata"]["resourceVersion"],
        config_after["metadata"]["resourceVersion"]
    );
    assert!(
        !second
            .logs()
            .contains("created the webhook serving certificate"),
        "the restarted operator made a new certificate"
    );
    assert!(second.alive());
}

/// Watchers take their first list as one stream from an apiserver that serves
/// streaming lists (the e2e one, 1.37), and in pages from one that refuses them (a
/// second apiserver on the same etcd with the `WatchList` gate off). Either way a
/// Connector that was there first (the list) and one created later (the watch) are
/// judged.
#[test]
fn watchers_stream_their_first_list_where_served_and_page_it_where_refused() {
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let tool = DemoTool::start();
    let ns = TestNamespace::new("lists");
    let class = format!("{ns}-git");
    let _class = ClassGuard::apply(&class, &class_yaml(&class));
    apply_yaml(&ns, &secrets_yaml());
    let refusing = ExtraApiserver::start(&["--feature-gates=WatchList=false"]);
    const STREAMING: &str = "watchers use streaming lists";
    const PAGED: &str = "streaming lists refused: watchers list in pages";
    // Each component that watches asks once (the identity controller too, where the
    // Dex CRD is installed), so a process may log its answer more than once.
    let runs = [
        ("streamed", None, STREAMING, PAGED),
        (
            "paged",
            Some(refusing.kubeconfig().to_path_buf()),
            PAGED,
            STREAMING,
        ),
    ];
    for (name, kubeconfig, said, not_said) in runs {
        apply_yaml(
            &ns,
            &connector(&format!("{name}-first"), &class, &tool.url(), "good"),
        );
        let mut op = Operator::start(OperatorOptions {
            identity: format!("lists-{name}"),
            lease_duration_seconds: 4,
            kubeconfig,
            ..OperatorOptions::default()
        });
        wait(&ns, "connector", &format!("{name}-first"), "Ready", TIMEOUT);
        apply_yaml(
            &ns,
            &connector(&format!("{name}-later"), &class, &tool.url(), "good"),
        );
        wait(&ns, "connector", &format!("{name}-later"), "Ready", TIMEOUT);
        let logs = op.logs();
        assert!(op.count_log_lines(&[said]) >= 1, "{name}: {logs}");
        assert_eq!(op.count_log_lines(&[not_said]), 0, "{name}: {logs}");
        if name == "paged" {
            assert_eq!(
                op.count_log_lines(&[PAGED, "WatchList"]),
                op.count_log_lines(&[PAGED]),
                "each refusal names the feature gate: {logs}"
            );
        }
        op.terminate();
    }
}
