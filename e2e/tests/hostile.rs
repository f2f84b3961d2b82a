//! One namespace full of hostile Connectors must not starve the others (SPEC section
//! 4, "fair share"): a few hundred Connectors whose tool never answers hold at most
//! their namespace's share of the workers and probe permits, and a Connector in
//! another namespace still becomes Ready within 10 s.

use std::time::{Duration, Instant};

use connectors_e2e::fixtures::{ClassGuard, basic_secret, connector, git_class};
use connectors_e2e::process::{DemoTool, Operator, OperatorOptions};
use connectors_e2e::{TestNamespace, apply_yaml, condition, eventually, get_json, kubectl_ok};

/// Hostile Connectors in one namespace.
const HOSTILE: usize = 300;
/// Reconcile workers of the operator under test: a namespace's share is a quarter.
const WORKERS: &str = "16";

/// A class whose liveness probe hangs, with a distinct URL per Connector so that no
/// two share a request (identical liveness requests are shared).
fn hanging_class(name: &str) -> String {
    format!(
        r#"
apiVersion: connectors.alauda.io/v1alpha1
kind: ConnectorClass
metadata:
  name: {name}
spec:
  address:
    type: string
  livenessProbe:
    http:
      path: /misbehave/hang?c={{{{ .Connector.Name }}}}
"#
    )
}

fn hostile_connectors(class: &str, url: &str) -> String {
    (0..HOSTILE)
        .map(|i| {
            format!(
                "apiVersion: connectors.alauda.io/v1alpha1\nkind: Connector\nmetadata:\n  name: hang-{i}\nspec:\n  connectorClassName: {class}\n  address: {url}\n"
            )
        })
        .collect::<Vec<_>>()
        .join("---\n")
}

fn with_status(ns: &str) -> usize {
    let out = kubectl_ok([
        "get",
        "connectors",
        "-n",
        ns,
        "-o",
        "jsonpath={range .items[*]}{.status.conditions[0].type}{\"\\n\"}{end}",
    ]);
    out.lines().filter(|l| !l.trim().is_empty()).count()
}

#[test]
fn a_namespace_of_hanging_connectors_does_not_starve_another() {
    let tool = DemoTool::start();
    let hang_class = format!("hang-{}", std::process::id());
    let git = format!("git-fair-{}", std::process::id());
    let _hang = ClassGuard::apply(&hang_class, &hanging_class(&hang_class));
    let _git = ClassGuard::apply(&git, &git_class(&git));
    let hostile = TestNamespace::new("hostile");
    let other = TestNamespace::new("fair");
    let operator = Operator::start(OperatorOptions {
        identity: "e2e-fair-share".into(),
        probe_timeout_seconds: 15,
        probe_interval_seconds: 60,
        extra_args: ["--leader-elect", "false", "--workers", WORKERS]
            .map(String::from)
            .to_vec(),
        ..OperatorOptions::default()
    });
    apply_yaml(&hostile, &hostile_connectors(&hang_class, &tool.url()));
    // The hostile namespace is being worked on: some of its Connectors have a status.
    eventually(Duration::from_secs(60), || {
        let n = with_status(&hostile);
        (n >= 4)
            .then_some(())
            .ok_or(format!("{n} hostile Connectors with a status"))
    });

    apply_yaml(&other, &basic_secret("creds", "demo-password"));
    let created = Instant::now();
    apply_yaml(&other, &connector("good", &git, &tool.url(), "creds"));
    let ready = eventually(Duration::from_secs(60), || {
        let c = get_json(&other, "connector", "good");
        match condition(&c, "Ready") {
            Some((status, _, _)) if status == "True" => Ok(created.elapsed()),
            other => Err(format!("Ready is {other:?}")),
        }
    });
    let pending = HOSTILE - with_status(&hostile);
    println!(
        "good Connector Ready after {:.1}s; {pending} of {HOSTILE} hostile Connectors still without a status",
        ready.as_secs_f64()
    );
    assert!(
        ready <= Duration::from_secs(10),
        "Ready after {ready:?} while {pending} hostile Connectors waited"
    );
    assert!(
        pending > 0,
        "the hostile namespace was not still busy: the test proves nothing"
    );
    operator.assert_alive_without_panic();
}
