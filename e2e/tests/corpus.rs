//! The bad-input corpus (`e2e/corpus/*.yaml`, format in `connectors_e2e::corpus`):
//! malformed classes, Connectors, Secrets and misbehaving tool responses. Every case is
//! applied with kubectl into its own namespace, then each must reach the outcome it
//! states: a rejection message at admission, or conditions on the stored objects. One
//! operator serves all cases; at the end it must still be the same process and its
//! debug log must hold no panic.
//!
//! Run one case while writing it: `CORPUS_ONLY=name-substring cargo test --test corpus`.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use connectors_e2e::corpus::{self, Case, Check, Expect, Placeholders, Target};
use connectors_e2e::fixtures::{ClassGuard, basic_secret, git_class};
use connectors_e2e::process::{DemoTool, Operator, OperatorOptions};
use connectors_e2e::webhook::{Scope, register_for_process, wait_ca_bundles};
use connectors_e2e::{TestNamespace, apply_yaml, kubectl_ok, try_apply_yaml};
use serde_json::Value;

/// All cases must settle within this (slow-drip and hang cases need the probe timeout).
const DEADLINE: Duration = Duration::from_secs(180);
const MIN_CASES: usize = 40;

fn corpus_dir() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/corpus"))
}

/// A case after its objects were applied.
struct Running {
    case: Case,
    /// Kept so the namespace lives until the end.
    _namespace: TestNamespace,
    _classes: Vec<ClassGuard>,
    namespace: String,
    /// Checks still to verify, or the verdict.
    state: State,
}

enum State {
    Pending(Vec<Check>),
    Passed(String),
    Failed(String),
}

fn apply_one(ns: &str, doc: &str) -> Result<(), String> {
    try_apply_yaml(ns, doc).map(drop)
}

/// Namespaces and classes with this label are judged by the corpus run's webhook.
const WEBHOOK_LABEL: (&str, &str) = ("e2e-corpus-webhook", "true");
const WEBHOOK_CONFIG: &str = "connectors-e2e-corpus";

/// A ConnectorClass document with [`WEBHOOK_LABEL`] added; other documents unchanged.
fn label_classes(doc: &str) -> String {
    let Ok(mut value) = serde_yaml::from_str::<serde_yaml::Value>(doc) else {
        return doc.to_string();
    };
    if value["kind"] != "ConnectorClass" {
        return doc.to_string();
    }
    let Some(metadata) = value.get_mut("metadata").and_then(|m| m.as_mapping_mut()) else {
        return doc.to_string();
    };
    let labels = metadata
        .entry("labels".into())
        .or_insert_with(|| serde_yaml::Value::Mapping(Default::default()));
    if let Some(labels) = labels.as_mapping_mut() {
        labels.insert(WEBHOOK_LABEL.0.into(), WEBHOOK_LABEL.1.into());
    }
    serde_yaml::to_string(&value).unwrap_or_else(|_| doc.to_string())
}

/// Cluster-scoped classes among the documents (deleted at the end).
fn class_names(docs: &[String]) -> Vec<String> {
    docs.iter()
        .filter_map(|d| serde_yaml::from_str::<serde_yaml::Value>(d).ok())
        .filter(|v| v["kind"] == "ConnectorClass")
        .filter_map(|v| v["metadata"]["name"].as_str().map(str::to_string))
        .collect()
}

fn start_case(case: Case, base: &Placeholders) -> Running {
    let short: String = case.name.chars().take(40).collect();
    let namespace = TestNamespace::new(&format!("corpus-{short}"));
    let values = Placeholders {
        namespace: namespace.name().to_string(),
        class: namespace.name().to_string(),
        ..base.clone()
    };
    let mut docs = case.documents(&values);
    if case.webhook {
        kubectl_ok([
            "label",
            "namespace",
            namespace.name(),
            &format!("{}={}", WEBHOOK_LABEL.0, WEBHOOK_LABEL.1),
        ]);
        docs = docs.iter().map(|d| label_classes(d)).collect();
    }
    let classes = class_names(&docs)
        .into_iter()
        .map(|name| ClassGuard::adopt(&name))
        .collect();
    let state = match case.expect(&values) {
        Expect::Admission(message) => {
            let (last, earlier) = docs.split_last().expect("a case has documents");
            match earlier.iter().try_for_each(|d| apply_one(&namespace, d)) {
                Err(e) => State::Failed(format!("a setup document was rejected: {e}")),
                Ok(()) => match apply_one(&namespace, last) {
                    Ok(()) => {
                        State::Failed(format!("accepted, want a rejection containing {message:?}"))
                    }
                    // A webhook case must be refused by the webhook itself.
                    Err(stderr)
                        if stderr.contains(&message)
                            && (!case.webhook || stderr.contains("denied the request: ")) =>
                    {
                        State::Passed(format!("rejected: {}", one_line(&stderr)))
                    }
                    Err(stderr) => State::Failed(format!(
                        "rejected with {stderr:?}, want a message containing {message:?}"
                    )),
                },
            }
        }
        Expect::Checks(checks) => match docs.iter().try_for_each(|d| apply_one(&namespace, d)) {
            Err(e) => State::Failed(format!("rejected at admission: {e}")),
            Ok(()) => State::Pending(checks),
        },
    };
    Running {
        case,
        namespace: namespace.name().to_string(),
        _namespace: namespace,
        _classes: classes,
        state,
    }
}

fn one_line(text: &str) -> String {
    let line = text.lines().next().unwrap_or_default();
    line.chars().take(160).collect()
}

/// Stored Connectors (by namespace/name) and classes (by name).
fn snapshot() -> HashMap<(String, String, String), Value> {
    let mut objects = HashMap::new();
    for (resource, kind) in [
        ("connectors", "Connector"),
        ("connectorclasses", "ConnectorClass"),
    ] {
        let text = kubectl_ok(["get", resource, "--all-namespaces", "-o", "json"]);
        let list: Value = serde_json::from_str(&text).unwrap_or_default();
        for item in list["items"].as_array().into_iter().flatten() {
            let ns = item["metadata"]["namespace"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            let name = item["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            objects.insert((kind.to_string(), ns, name), item.clone());
        }
    }
    objects
}

fn lookup<'a>(
    objects: &'a HashMap<(String, String, String), Value>,
    namespace: &str,
    target: &Target,
) -> Option<&'a Value> {
    let ns = if target.kind == "Connector" {
        namespace
    } else {
        ""
    };
    objects.get(&(target.kind.clone(), ns.to_string(), target.name.clone()))
}

fn evaluate(
    checks: &[Check],
    namespace: &str,
    objects: &HashMap<(String, String, String), Value>,
) -> Result<String, String> {
    let mut seen = Vec::new();
    for c in checks {
        let (Check::Condition { target, .. } | Check::Field { target, .. }) = c;
        corpus::check(c, lookup(objects, namespace, target))
            .map_err(|e| format!("{} {}: {e}", target.kind, target.name))?;
        if let Check::Condition {
            target,
            type_,
            status,
            reason,
            ..
        } = c
        {
            seen.push(format!("{}: {type_} {status} {reason}", target.name));
        }
    }
    Ok(seen.join("; "))
}

#[test]
fn every_corpus_case_reaches_its_stated_outcome() {
    let mut cases = corpus::load_dir(&corpus_dir()).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        cases.len() >= MIN_CASES,
        "the corpus holds {} cases, want at least {MIN_CASES}",
        cases.len()
    );
    if let Ok(only) = std::env::var("CORPUS_ONLY") {
        cases.retain(|c| c.name.contains(&only));
    }
    let tool = DemoTool::start_dual_stack();
    let operator = Operator::start(OperatorOptions {
        identity: "e2e-corpus".into(),
        extra_args: vec!["--webhook-config".into(), WEBHOOK_CONFIG.into()],
        // Periodic re-probes are not what this test is about; failures retry at 10 s.
        probe_interval_seconds: 120,
        probe_timeout_seconds: 3,
        ..OperatorOptions::default()
    });
    register_for_process(
        WEBHOOK_CONFIG,
        operator.webhook_port,
        &Scope {
            connector_namespace_label: Some((WEBHOOK_LABEL.0.into(), WEBHOOK_LABEL.1.into())),
            classes: true,
            class_label: Some((WEBHOOK_LABEL.0.into(), WEBHOOK_LABEL.1.into())),
        },
    );
    wait_ca_bundles(WEBHOOK_CONFIG, Duration::from_secs(30));
    let shared = TestNamespace::new("corpus-shared");
    apply_yaml(&shared, &basic_secret("other-creds", "demo-password"));
    let git = format!("{shared}-git");
    let _git = ClassGuard::apply(&git, &git_class(&git));
    let base = Placeholders {
        namespace: String::new(),
        class: String::new(),
        other_namespace: shared.name().to_string(),
        git_class: git,
        tool_port: tool.port,
        tool_ipv6_url: tool.ipv6_url(),
    };

    // Apply every case (a few kubectl at a time: each call costs ~0.1 s of CPU).
    let started = Instant::now();
    let queue = Mutex::new(cases.into_iter());
    let running = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..4 {
            scope.spawn(|| {
                loop {
                    let next = queue.lock().unwrap_or_else(|e| e.into_inner()).next();
                    let Some(case) = next else { break };
                    let case = start_case(case, &base);
                    running.lock().unwrap_or_else(|e| e.into_inner()).push(case);
                }
            });
        }
    });
    let mut running = running.into_inner().unwrap_or_else(|e| e.into_inner());
    running.sort_by(|a, b| a.case.name.cmp(&b.case.name));
    eprintln!(
        "corpus: {} cases applied in {:.1}s",
        running.len(),
        started.elapsed().as_secs_f64()
    );

    // Wait until every pending case holds (or the deadline passes).
    let mut last_error: HashMap<String, String> = HashMap::new();
    loop {
        let objects = snapshot();
        for r in running.iter_mut() {
            if let State::Pending(checks) = &r.state {
                match evaluate(checks, &r.namespace, &objects) {
                    Ok(seen) => r.state = State::Passed(seen),
                    Err(e) => {
                        last_error.insert(r.case.name.clone(), e);
                    }
                }
            }
        }
        let pending = running
            .iter()
            .filter(|r| matches!(r.state, State::Pending(_)))
            .count();
        if pending == 0 || started.elapsed() > DEADLINE {
            break;
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    let settled = started.elapsed();

    // Outcomes must stay put: look once more after a few seconds.
    std::thread::sleep(Duration::from_secs(5));
    let objects = snapshot();
    for r in running.iter_mut() {
        let case = &r.case;
        let values = Placeholders {
            namespace: r.namespace.clone(),
            class: r.namespace.clone(),
            ..base.clone()
        };
        r.state = match std::mem::replace(&mut r.state, State::Passed(String::new())) {
            State::Pending(_) => State::Failed(format!(
                "not reached within {DEADLINE:?}: {}",
                last_error.get(&case.name).cloned().unwrap_or_default()
            )),
            State::Passed(seen) => match case.expect(&values) {
                Expect::Checks(checks) => match evaluate(&checks, &r.namespace, &objects) {
                    Ok(_) => State::Passed(seen),
                    Err(e) => State::Failed(format!("reached, then changed: {e}")),
                },
                Expect::Admission(_) => State::Passed(seen),
            },
            failed => failed,
        };
    }

    let mut failures = Vec::new();
    eprintln!("\ncorpus results ({} cases):", running.len());
    for r in &running {
        match &r.state {
            State::Passed(seen) => eprintln!("  ok    {:<44} {seen}", r.case.name),
            State::Failed(why) => {
                eprintln!("  FAIL  {:<44} {why}", r.case.name);
                failures.push(format!(
                    "{} ({}): {why}\n    {}",
                    r.case.name,
                    r.case.path.display(),
                    r.case.description.trim()
                ));
            }
            State::Pending(_) => unreachable!("pending cases were turned into failures above"),
        }
    }
    eprintln!(
        "corpus: settled in {:.1}s; {} passed, {} failed",
        settled.as_secs_f64(),
        running.len() - failures.len(),
        failures.len()
    );

    // The same process served every case: it never exited, restarted or panicked.
    operator.assert_alive_without_panic();
    assert!(
        failures.is_empty(),
        "{} corpus case(s) failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
