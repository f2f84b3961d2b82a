//! Fault tests on the local control plane (`e2e/cluster.sh`): the apiserver and etcd
//! restarted mid-run, the operator killed with SIGKILL during a burst, watches that
//! must relist after 410 Gone, a second writer on the operator's objects, and a tool
//! that flaps, a tool that never answers many Connectors at once. Each proves that nothing is lost: the inputs are changed while the
//! operator cannot see them, and the final conditions must match the final inputs.
//! Each test starts its own operator and runs alone (they restart the apiserver).

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use connectors_e2e::fixtures::{ClassGuard, PROXY_CLASS_EXTRA, basic_secret, connector, git_class};
use connectors_e2e::process::{DemoTool, Operator, OperatorOptions};
use connectors_e2e::{
    TestNamespace, apply_yaml, condition, eventually, get_json, kubectl, kubectl_ok,
    restart_control_plane, transition_times, try_apply_yaml,
};
use serde_json::Value;

/// Generous: a loaded 2-core machine, an apiserver that just restarted.
const CONVERGE: Duration = Duration::from_secs(120);

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}

const GOOD: &str = "demo-password";
const BAD: &str = "not-the-password";

/// An operator without leader election (nothing to wait for after a kill; the
/// controllers never restart on their own, so any relist comes from the watches).
fn operator(identity: &str, probe_interval_seconds: u64) -> Operator {
    operator_with(OperatorOptions {
        identity: identity.into(),
        probe_interval_seconds,
        ..OperatorOptions::default()
    })
}

fn operator_with(options: OperatorOptions) -> Operator {
    let mut options = options;
    options
        .extra_args
        .extend(["--leader-elect".into(), "false".into()]);
    Operator::start(options)
}

/// Connector `name` uses its own Secret `s-{name}`; `true` = the right password.
type Wanted = BTreeMap<String, bool>;

fn apply_connectors(ns: &str, class: &str, url: &str, wanted: &Wanted) {
    let docs: Vec<String> = wanted
        .iter()
        .flat_map(|(name, good)| {
            let secret = format!("s-{name}");
            [
                basic_secret(&secret, if *good { GOOD } else { BAD }),
                connector(name, class, url, &secret),
            ]
        })
        .collect();
    apply_yaml(ns, &docs.join("\n---\n"));
}

fn set_password(ns: &str, name: &str, good: bool) {
    apply_yaml(
        ns,
        &basic_secret(&format!("s-{name}"), if good { GOOD } else { BAD }),
    );
}

fn connectors(ns: &str) -> BTreeMap<String, Value> {
    let text = kubectl_ok(["get", "connectors", "-n", ns, "-o", "json"]);
    let list: Value = serde_json::from_str(&text).unwrap_or_default();
    list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| {
            (
                c["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                c.clone(),
            )
        })
        .collect()
}

/// Every wanted Connector exists (and no other), is judged for its current
/// generation and shows the verdict its Secret calls for.
fn check_settled(ns: &str, wanted: &Wanted) -> Result<(), String> {
    let found = connectors(ns);
    let extra: Vec<&String> = found.keys().filter(|n| !wanted.contains_key(*n)).collect();
    if !extra.is_empty() {
        return Err(format!("unexpected Connectors {extra:?}"));
    }
    let mut wrong = Vec::new();
    for (name, good) in wanted {
        let Some(c) = found.get(name) else {
            wrong.push(format!("{name}: missing"));
            continue;
        };
        let ready = condition(c, "Ready").unwrap_or_default();
        let auth = condition(c, "AuthReady").unwrap_or_default();
        let current = c["status"]["observedGeneration"] == c["metadata"]["generation"];
        let ok = current
            && if *good {
                ready.0 == "True"
            } else {
                auth.0 == "False" && auth.1 == "AuthenticationFailed"
            };
        if !ok {
            wrong.push(format!(
                "{name}: want {}, Ready {}/{} AuthReady {}/{}",
                if *good {
                    "Ready"
                } else {
                    "AuthenticationFailed"
                },
                ready.0,
                ready.1,
                auth.0,
                auth.1
            ));
        }
    }
    if wrong.is_empty() {
        Ok(())
    } else {
        Err(wrong.join("; "))
    }
}

#[track_caller]
fn wait_settled(ns: &str, wanted: &Wanted) -> Duration {
    let start = Instant::now();
    eventually(CONVERGE, || check_settled(ns, wanted));
    start.elapsed()
}

/// A running scenario: tool, namespace, git class, operator (300 s probe interval, so
/// only watches can explain a prompt reaction) and `count` Connectors named
/// `{prefix}00`.., every other one with a wrong password, all settled.
struct Scenario {
    tool: DemoTool,
    ns: TestNamespace,
    class: String,
    _class: ClassGuard,
    op: Operator,
    wanted: Wanted,
}

fn settled_scenario(name: &str, prefix: &str, count: usize) -> Scenario {
    let tool = DemoTool::start();
    let ns = TestNamespace::new(&format!("fault-{name}"));
    let class = format!("{ns}-git");
    let class_guard = ClassGuard::apply(&class, &git_class(&class));
    let op = operator(&format!("fault-{name}"), 300);
    let wanted: Wanted = names(prefix, 0..count)
        .into_iter()
        .enumerate()
        .map(|(i, n)| (n, i % 2 == 0))
        .collect();
    apply_connectors(&ns, &class, &tool.url(), &wanted);
    wait_settled(&ns, &wanted);
    Scenario {
        tool,
        ns,
        class,
        _class: class_guard,
        op,
        wanted,
    }
}

fn names(prefix: &str, range: std::ops::Range<usize>) -> Vec<String> {
    range.map(|i| format!("{prefix}{i:02}")).collect()
}

/// Applies until the apiserver takes it (it may be restarting).
fn apply_retrying(ns: &str, yaml: &str) {
    eventually(CONVERGE, || try_apply_yaml(ns, yaml).map(drop));
}

/// The apiserver and etcd restart while Connectors are being edited: the operator
/// reconnects, and every edit made around the restart is reflected. With a 300 s probe
/// interval, a Ready Connector whose Secret turns bad and a new Connector can only be
/// noticed through the watches.
#[test]
fn apiserver_and_etcd_restart_loses_no_update() {
    let _serial = serial();
    let Scenario {
        tool,
        ns,
        class,
        op,
        mut wanted,
        // Bound, not `..`: an unbound field is dropped at once (the class deleted).
        _class: _class_guard,
    } = settled_scenario("apiserver", "c", 8);

    // Edits race with the restart: each is retried until the apiserver takes it.
    let restarted = Instant::now();
    std::thread::scope(|scope| {
        scope.spawn(|| restart_control_plane("all"));
        std::thread::sleep(Duration::from_millis(300));
        for (name, good) in wanted.iter_mut() {
            *good = !*good;
            apply_retrying(
                &ns,
                &basic_secret(&format!("s-{name}"), if *good { GOOD } else { BAD }),
            );
        }
    });
    let restart_took = restarted.elapsed();
    let mut added: Wanted = Wanted::new();
    added.insert("new00".into(), true);
    apply_connectors(&ns, &class, &tool.url(), &added);
    wanted.extend(added);
    kubectl_ok(["delete", "connector", "c07", "-n", &ns]);
    wanted.remove("c07");

    let took = wait_settled(&ns, &wanted);
    eprintln!(
        "restart of etcd+apiserver+controller-manager and edits: {:.1}s; all {} Connectors matched their inputs {:.1}s later",
        restart_took.as_secs_f64(),
        wanted.len(),
        took.as_secs_f64()
    );
    op.assert_alive_without_panic();
}

/// SIGKILL in the middle of a burst of creations; more edits while no operator
/// runs. The next operator converges every Connector with exactly one proxy Service
/// each, and a further restart writes nothing and moves no lastTransitionTime.
#[test]
fn sigkill_during_burst_then_restarts_converge_without_duplicates_or_churn() {
    let _serial = serial();
    let tool = DemoTool::start();
    let ns = TestNamespace::new("fault-sigkill");
    let class = format!("{ns}-git");
    // A tool that answers liveness after 3 s: the kill comes while probes are in
    // flight, after some proxy Services were created and before most statuses.
    let slow = git_class(&class).replace("      path: /\n", "      path: /misbehave/delay/3000\n");
    let _class = ClassGuard::apply(&class, &format!("{slow}{PROXY_CLASS_EXTRA}"));
    let slow_operator = |identity: &str| {
        operator_with(OperatorOptions {
            identity: identity.into(),
            probe_interval_seconds: 300,
            probe_timeout_seconds: 10,
            ..OperatorOptions::default()
        })
    };
    let mut first = slow_operator("fault-sigkill-1");
    let mut wanted: Wanted = names("b", 0..50)
        .into_iter()
        .enumerate()
        .map(|(i, n)| (n, i % 5 != 0))
        .collect();
    apply_connectors(&ns, &class, &tool.url(), &wanted);
    eventually(CONVERGE, || {
        let written = first.metric("connectors_operator_service_writes_total");
        if written >= 5.0 {
            Ok(())
        } else {
            Err(format!("{written} Services written"))
        }
    });
    first.kill();
    let with_status = connectors(&ns)
        .values()
        .filter(|c| !c["status"]["conditions"].is_null())
        .count();
    let services_then = services(&ns).len();
    eprintln!(
        "SIGKILL with {with_status} of 50 Connectors judged and {services_then} Services created"
    );

    // While no operator runs: 10 Secrets flip, 10 Connectors are added.
    for name in names("b", 0..10) {
        let good = !wanted[&name];
        wanted.insert(name.clone(), good);
        set_password(&ns, &name, good);
    }
    let added: Wanted = names("late", 0..10)
        .into_iter()
        .map(|n| (n, true))
        .collect();
    apply_connectors(&ns, &class, &tool.url(), &added);
    wanted.extend(added);

    let mut second = slow_operator("fault-sigkill-2");
    let took = wait_settled(&ns, &wanted);
    eprintln!(
        "restarted operator: all {} Connectors matched their inputs in {:.1}s",
        wanted.len(),
        took.as_secs_f64()
    );
    let uids: BTreeMap<String, String> = connectors(&ns)
        .into_iter()
        .map(|(n, c)| (n, c["metadata"]["uid"].as_str().unwrap_or_default().into()))
        .collect();
    eventually(CONVERGE, || {
        let services = services(&ns);
        let owners: Vec<(String, Vec<String>)> = services
            .iter()
            .map(|s| {
                let owners = s["metadata"]["ownerReferences"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|o| o["uid"].as_str().unwrap_or_default().to_string())
                    .collect();
                (
                    s["metadata"]["name"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                    owners,
                )
            })
            .collect();
        for (name, uid) in &uids {
            let matching: Vec<_> = owners.iter().filter(|(_, o)| o.contains(uid)).collect();
            if matching.len() != 1
                || matching[0].0 != format!("c-{name}")
                || matching[0].1.len() != 1
            {
                return Err(format!("{name}: Services owned: {matching:?}"));
            }
        }
        if services.len() != uids.len() {
            return Err(format!(
                "{} Services for {} Connectors",
                services.len(),
                uids.len()
            ));
        }
        Ok(())
    });
    second.assert_alive_without_panic();

    // Stored times have second precision: let one pass so a rewrite would show.
    std::thread::sleep(Duration::from_secs(2));
    let before = connectors(&ns);
    let services_before = resource_versions(&services(&ns));
    second.terminate();
    let third = slow_operator("fault-sigkill-3");
    eventually(CONVERGE, || {
        let reconciled = third.metric("connectors_operator_reconciles_total{kind=\"Connector\"}");
        if reconciled >= wanted.len() as f64 {
            Ok(())
        } else {
            Err(format!("{reconciled} reconciles"))
        }
    });
    std::thread::sleep(Duration::from_secs(5));
    let after = connectors(&ns);
    for (name, old) in &before {
        let new = &after[name];
        assert_eq!(
            transition_times(old),
            transition_times(new),
            "{name}: lastTransitionTime moved"
        );
        assert_eq!(
            old["metadata"]["resourceVersion"], new["metadata"]["resourceVersion"],
            "{name} was rewritten by an operator that found nothing new"
        );
    }
    assert_eq!(
        resource_versions(&services(&ns)),
        services_before,
        "a Service was rewritten"
    );
    assert_eq!(
        third.metric("connectors_operator_status_writes_total{kind=\"Connector\"}"),
        0.0
    );
    third.assert_alive_without_panic();
}

fn services(ns: &str) -> Vec<Value> {
    let text = kubectl_ok([
        "get",
        "services",
        "-n",
        ns,
        "-l",
        "connectors.alauda.io/connector",
        "-o",
        "json",
    ]);
    let list: Value = serde_json::from_str(&text).unwrap_or_default();
    list["items"].as_array().cloned().unwrap_or_default()
}

fn resource_versions(objects: &[Value]) -> BTreeMap<String, String> {
    objects
        .iter()
        .map(|o| {
            (
                o["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                o["metadata"]["resourceVersion"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            )
        })
        .collect()
}

/// The operator is frozen (SIGSTOP) while inputs change and the apiserver restarts
/// with an empty watch cache, so its watches resume from a resourceVersion the new
/// apiserver no longer serves: 410 Gone, and kube-runtime relists. The log shows the
/// 410; every change made during the freeze is reflected afterwards.
#[test]
fn watch_expiry_410_forces_a_relist_that_misses_nothing() {
    let _serial = serial();
    let Scenario {
        tool,
        ns,
        class,
        op,
        mut wanted,
        // Bound, not `..`: an unbound field is dropped at once (the class deleted).
        _class: _class_guard,
    } = settled_scenario("410", "w", 6);
    let gone_before = count_410(&op);

    op.pause();
    for name in ["w00", "w01"] {
        let good = !wanted[name];
        wanted.insert(name.into(), good);
        set_password(&ns, name, good);
    }
    kubectl_ok(["delete", "connector", "w05", "-n", &ns]);
    wanted.remove("w05");
    restart_control_plane("apiserver");
    // More history after the restart: the new watch cache starts past the frozen
    // watches' resourceVersions.
    for name in ["w02", "w03"] {
        let good = !wanted[name];
        wanted.insert(name.into(), good);
        set_password(&ns, name, good);
    }
    let added: Wanted = [("w06".to_string(), true)].into();
    apply_connectors(&ns, &class, &tool.url(), &added);
    wanted.extend(added);
    op.resume();

    let took = wait_settled(&ns, &wanted);
    let gone = count_410(&op) - gone_before;
    eprintln!(
        "after SIGCONT: {gone} watch responses with 410 Gone in the log; all {} Connectors matched their inputs in {:.1}s",
        wanted.len(),
        took.as_secs_f64()
    );
    assert!(
        gone >= 1,
        "no 410 in the operator log ({}): the relist was not forced",
        op.log.display()
    );
    op.assert_alive_without_panic();
}

/// kube-runtime's watcher logs each watch answered with 410 Gone at debug level.
fn count_410(op: &Operator) -> usize {
    op.count_log_lines(&["code: 410", "too old resource version"])
}

/// A second writer changes what the operator owns. "Handled" means: the operator never
/// fails on it (server-side apply with force, no resourceVersion precondition, so no
/// 409 conflicts), the proxy Service is restored at once through its watch, and a
/// status overwritten by someone else is restored by the next probe round (status-only
/// edits are not watched, so that costs nothing at rest).
#[test]
fn a_second_writer_is_overruled_and_no_status_is_lost() {
    let _serial = serial();
    let tool = DemoTool::start();
    let ns = TestNamespace::new("fault-writer");
    let class = format!("{ns}-git");
    let _class = ClassGuard::apply(&class, &format!("{}{PROXY_CLASS_EXTRA}", git_class(&class)));
    let interval = 6;
    let op = operator("fault-writer", interval);
    let mut wanted: Wanted = [("c".to_string(), true)].into();
    apply_connectors(&ns, &class, &tool.url(), &wanted);
    wait_settled(&ns, &wanted);
    let external_name = || {
        get_json(&ns, "service", "c-c")["spec"]["externalName"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    let original = external_name();

    let start = Instant::now();
    kubectl_ok([
        "patch",
        "service",
        "c-c",
        "-n",
        &ns,
        "--type=merge",
        "-p",
        r#"{"spec":{"externalName":"hijacked.example.com"}}"#,
    ]);
    eventually(CONVERGE, || {
        let now = external_name();
        if now == original { Ok(()) } else { Err(now) }
    });
    eprintln!(
        "Service edited by another writer: restored in {:.1}s",
        start.elapsed().as_secs_f64()
    );

    let start = Instant::now();
    let old_uid = get_json(&ns, "service", "c-c")["metadata"]["uid"].clone();
    kubectl_ok(["delete", "service", "c-c", "-n", &ns]);
    eventually(CONVERGE, || {
        match connectors_e2e::try_get_json(&ns, "service", "c-c")? {
            Some(s) if s["metadata"]["uid"] != old_uid => Ok(()),
            _ => Err("not recreated yet".to_string()),
        }
    });
    eprintln!(
        "Service deleted by another writer: recreated in {:.1}s",
        start.elapsed().as_secs_f64()
    );

    // Another writer hammers the status while the real input (the Secret) changes.
    let hijack = r#"{"status":{"conditions":[{"type":"Ready","status":"True","reason":"Hijacked","message":"written by someone else"}]}}"#;
    let start = Instant::now();
    std::thread::scope(|scope| {
        scope.spawn(|| {
            while start.elapsed() < Duration::from_secs(8) {
                kubectl([
                    "patch",
                    "connector",
                    "c",
                    "-n",
                    &ns,
                    "--subresource=status",
                    "--type=merge",
                    "-p",
                    hijack,
                ]);
                std::thread::sleep(Duration::from_millis(200));
            }
        });
        std::thread::sleep(Duration::from_secs(2));
        wanted.insert("c".into(), false);
        set_password(&ns, "c", false);
    });
    let stopped = Instant::now();
    wait_settled(&ns, &wanted);
    eprintln!(
        "status overwritten for 8 s while the Secret changed: correct status {:.1}s after the other writer stopped (probe interval {interval}s)",
        stopped.elapsed().as_secs_f64()
    );
    let c = get_json(&ns, "connector", "c");
    assert!(
        !c.to_string().contains("Hijacked"),
        "another writer's condition survived: {c}"
    );
    let failed = op.count_log_lines(&["reconcile failed", ns.name()]);
    assert_eq!(
        failed,
        0,
        "reconciles failed in {ns}; see {}",
        op.log.display()
    );
    op.assert_alive_without_panic();
}

/// A tool that is up for 5 s and down for 5 s, probed every 3 s: the status follows
/// (both states are seen), while reconciles, status writes and events stay within
/// bounds derived from the probe interval and the flap period, i.e. no hot loop.
#[test]
fn a_flapping_tool_is_followed_with_bounded_work() {
    let _serial = serial();
    let tool = DemoTool::start();
    let ns = TestNamespace::new("fault-flap");
    let class = format!("{ns}-flap");
    let interval = 3.0;
    let period = 5.0;
    let _class = ClassGuard::apply(
        &class,
        &git_class(&class).replace("      path: /\n", "      path: /misbehave/flap/5\n"),
    );
    let op = operator("fault-flap", interval as u64);
    let created = Instant::now();
    let wanted: Wanted = names("f", 0..3).into_iter().map(|n| (n, true)).collect();
    apply_connectors(&ns, &class, &tool.url(), &wanted);
    let mut seen: BTreeMap<String, std::collections::BTreeSet<String>> = BTreeMap::new();
    while created.elapsed() < Duration::from_secs(40) {
        for (name, c) in connectors(&ns) {
            if let Some((status, _, _)) = condition(&c, "Ready") {
                seen.entry(name).or_default().insert(status);
            }
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let window = created.elapsed().as_secs_f64();

    let n = wanted.len() as f64;
    // Each reconcile of these Connectors GETs its Secret exactly once.
    let reconciles = op.count_log_lines(&[
        "requesting",
        "\"GET\"",
        &format!("/namespaces/{ns}/secrets/s-"),
    ]) as f64;
    let writes = op.count_log_lines(&[
        "requesting",
        "\"PATCH\"",
        &format!("/namespaces/{ns}/connectors/"),
        "/status",
    ]) as f64;
    let events = op.count_log_lines(&["requesting", &format!("/namespaces/{ns}/events")]) as f64;
    // Periodic rounds (interval -10% jitter) plus a few start-up triggers (creation,
    // its Secret, the class). Writes and events: one per state change of the tool
    // (window / period, +1 for a partial period), the first status, and slack of two
    // for a round that straddles a change. A hot loop would be hundreds.
    let reconcile_bound = n * (window / (interval * 0.9) + 4.0);
    let state_changes = window / period + 1.0;
    let write_bound = n * (state_changes + 3.0);
    eprintln!(
        "flapping tool ({period}s up/down, probe interval {interval}s, {window:.0}s, {n} Connectors): \
         {reconciles} reconciles (bound {reconcile_bound:.0}), {writes} status writes (bound {write_bound:.0}), \
         {events} events (bound {write_bound:.0}); Ready states seen: {seen:?}"
    );
    for name in wanted.keys() {
        let states = seen.get(name).cloned().unwrap_or_default();
        assert!(
            states.contains("True") && states.contains("False"),
            "{name}: the status did not follow the tool (seen {states:?})"
        );
    }
    assert!(reconciles >= n, "reconciles not counted from the log");
    assert!(
        reconciles <= reconcile_bound,
        "{reconciles} reconciles > {reconcile_bound:.0}"
    );
    assert!(
        writes <= write_bound,
        "{writes} status writes > {write_bound:.0}"
    );
    assert!(events <= write_bound, "{events} events > {write_bound:.0}");
    op.assert_alive_without_panic();
}

/// Twelve Connectors share one liveness request to a tool that never answers. Those
/// that arrive while it is out are deferred (their workers freed) and judged as soon
/// as it times out, not a retry period later: all show LivenessReady False within
/// the probe timeout plus a small margin of their creation, each deferred at most once.
#[test]
fn connectors_sharing_a_hanging_tool_are_judged_when_its_request_times_out() {
    let _serial = serial();
    let tool = DemoTool::start();
    let ns = TestNamespace::new("fault-hang");
    let class = format!("{ns}-hang");
    let _class = ClassGuard::apply(
        &class,
        &git_class(&class).replace("      path: /\n", "      path: /misbehave/hang\n"),
    );
    let timeout = Duration::from_secs(5);
    let op = operator_with(OperatorOptions {
        identity: "fault-hang".into(),
        probe_interval_seconds: 300,
        probe_timeout_seconds: timeout.as_secs(),
        ..OperatorOptions::default()
    });
    // Judge something first, so the caches are warm and the timing below is the probe's.
    let warm: Wanted = names("warm", 0..1).into_iter().map(|n| (n, true)).collect();
    let warm_class = format!("{ns}-warm");
    let _warm_class = ClassGuard::apply(&warm_class, &git_class(&warm_class));
    apply_connectors(&ns, &warm_class, &tool.url(), &warm);
    wait_settled(&ns, &warm);
    let deferred_before = op.metric("connectors_operator_probes_deferred_total");

    let hung: Wanted = names("h", 0..12).into_iter().map(|n| (n, true)).collect();
    apply_connectors(&ns, &class, &tool.url(), &hung);
    let created = Instant::now();
    let judged = |c: &Value| {
        condition(c, "LivenessReady").is_some_and(|(status, reason, message)| {
            status == "False"
                && reason == "ConnectionFailed"
                && message.contains("awaiting headers")
        })
    };
    eventually(CONVERGE, || {
        let found = connectors(&ns);
        let waiting: Vec<&String> = hung
            .keys()
            .filter(|n| !found.get(*n).is_some_and(judged))
            .collect();
        if waiting.is_empty() {
            Ok(())
        } else {
            Err(format!("not judged yet: {waiting:?}"))
        }
    });
    let took = created.elapsed();
    let deferred = op.metric("connectors_operator_probes_deferred_total") - deferred_before;
    eprintln!(
        "{} Connectors on a hanging tool (probe timeout {timeout:?}): all judged {took:.2?} after creation, {deferred} deferrals",
        hung.len()
    );
    // Woken by the answer: the timeout and the status writes. A retry timer instead
    // would come back after twice the timeout.
    assert!(
        took < timeout + Duration::from_secs(3),
        "judged {took:?} after creation (probe timeout {timeout:?})"
    );
    assert!(
        deferred >= 1.0,
        "no Connector was deferred: the request was not shared"
    );
    assert!(
        deferred <= hung.len() as f64,
        "{deferred} deferrals for {} Connectors: some came back before the answer",
        hung.len()
    );
    op.assert_alive_without_panic();
}
