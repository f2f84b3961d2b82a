//! Helpers for the end-to-end tests.
//!
//! Everything goes through `kubectl` (the one first on `PATH`, or `$E2E_KUBECTL`)
//! against whatever `KUBECONFIG` points to. Locally that is the control plane
//! started by `e2e/cluster.sh with -- cargo test -p connectors-e2e`, which also
//! puts its own pinned kubectl first on `PATH`; in CI with Docker it is a kind
//! cluster (`e2e/kind/run.sh`).
//!
//! There is deliberately no "skip when no cluster": the first helper call checks
//! that a cluster answers and panics with instructions otherwise, so a missing
//! cluster fails the tests instead of hiding them.

use std::ffi::OsStr;
use std::fmt;
use std::io::Write;
use std::ops::Deref;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub mod apiserver;
pub mod corpus;
pub mod fixtures;
pub mod git;
pub mod ldap;
pub mod oidc;
pub mod pki;
pub mod process;
pub mod proxy;
pub mod webhook;

use rand::Rng;
use serde_json::Value;

/// The kubectl binary to run: `$E2E_KUBECTL`, else `kubectl` from `PATH`.
pub fn kubectl_bin() -> String {
    std::env::var("E2E_KUBECTL").unwrap_or_else(|_| "kubectl".to_string())
}

/// Checks once per test binary that a cluster is configured and answers.
/// Panics with a clear message otherwise: tests must fail, never skip.
pub fn ensure_cluster() {
    static CHECKED: OnceLock<()> = OnceLock::new();
    CHECKED.get_or_init(|| {
        const HOWTO: &str = "run the e2e tests through `e2e/cluster.sh with -- cargo test -p connectors-e2e` \
             (local control plane) or `e2e/kind/run.sh` (kind)";
        let kubeconfig = std::env::var("KUBECONFIG").unwrap_or_default();
        if kubeconfig.is_empty() {
            panic!("e2e: KUBECONFIG is not set, so there is no cluster to test against; {HOWTO}");
        }
        let out = raw_kubectl(["get", "--raw", "/readyz", "--request-timeout=20s"], None);
        let stdout = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() || stdout.trim() != "ok" {
            panic!(
                "e2e: the apiserver from KUBECONFIG={kubeconfig} is not ready (kubectl = {}): {}{}\n{HOWTO}",
                kubectl_bin(),
                stdout.trim(),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
    });
}

fn raw_kubectl<I, S>(args: I, stdin: Option<&str>) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut cmd = Command::new(kubectl_bin());
    cmd.args(args);
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    });
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("e2e: cannot run {:?}: {e}", kubectl_bin()));
    if let Some(input) = stdin {
        // Drop the handle after writing so kubectl sees EOF.
        let mut pipe = child.stdin.take().expect("stdin is piped");
        pipe.write_all(input.as_bytes())
            .expect("write kubectl stdin");
    }
    child.wait_with_output().expect("wait for kubectl")
}

/// Runs kubectl with `args` and returns its raw output, whatever the outcome.
pub fn kubectl<I, S>(args: I) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    ensure_cluster();
    raw_kubectl(args, None)
}

/// Like [`kubectl`], feeding `stdin` to the process.
pub fn kubectl_stdin<I, S>(args: I, stdin: &str) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    ensure_cluster();
    raw_kubectl(args, Some(stdin))
}

fn show(args: &[String]) -> String {
    format!("kubectl {}", args.join(" "))
}

fn collect<I, S>(args: I) -> Vec<String>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    args.into_iter()
        .map(|a| a.as_ref().to_string_lossy().into_owned())
        .collect()
}

fn expect_ok(args: &[String], out: Output) -> String {
    if !out.status.success() {
        panic!(
            "`{}` failed ({}):\nstderr: {}\nstdout: {}",
            show(args),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim(),
            String::from_utf8_lossy(&out.stdout).trim()
        );
    }
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs kubectl, panics (showing stderr) unless it succeeds; returns stdout.
pub fn kubectl_ok<I, S>(args: I) -> String
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let args = collect(args);
    let out = kubectl(&args);
    expect_ok(&args, out)
}

/// Runs kubectl, panics (showing stdout) unless it fails; returns stderr.
pub fn kubectl_fail<I, S>(args: I) -> String
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let args = collect(args);
    let out = kubectl(&args);
    if out.status.success() {
        panic!(
            "`{}` unexpectedly succeeded:\nstdout: {}\nstderr: {}",
            show(&args),
            String::from_utf8_lossy(&out.stdout).trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `-n NS` arguments; an empty namespace means cluster-scoped / none.
fn ns_args(ns: &str) -> Vec<String> {
    if ns.is_empty() {
        vec![]
    } else {
        vec!["-n".into(), ns.into()]
    }
}

/// Server-side applies one or more YAML documents in namespace `ns` (empty for
/// cluster-scoped objects or namespaces given in the YAML). Returns stdout.
pub fn apply_yaml(ns: &str, yaml: &str) -> String {
    try_apply_yaml(ns, yaml).unwrap_or_else(|e| panic!("{e}\nyaml:\n{yaml}"))
}

/// [`apply_yaml`] that returns kubectl's stderr (e.g. an admission rejection) as
/// the error instead of panicking.
pub fn try_apply_yaml(ns: &str, yaml: &str) -> Result<String, String> {
    let mut args = ns_args(ns);
    args.extend(
        [
            "apply",
            "--server-side",
            "--force-conflicts",
            "--field-manager=e2e",
            "-f",
            "-",
        ]
        .map(String::from),
    );
    let out = kubectl_stdin(&args, yaml);
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "`{}` failed ({}):\nstderr: {}",
            show(&args),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Gets an object as JSON; panics if it cannot be read.
pub fn get_json(ns: &str, resource: &str, name: &str) -> Value {
    let mut args = ns_args(ns);
    args.extend(["get", resource, name, "-o", "json"].map(String::from));
    let out = kubectl_ok(&args);
    serde_json::from_str(&out)
        .unwrap_or_else(|e| panic!("`{}` printed invalid JSON ({e}): {out}", show(&args)))
}

/// Gets an object as JSON, `Ok(None)` if it does not exist, `Err(stderr)` on
/// other failures. Handy inside [`eventually`].
pub fn try_get_json(ns: &str, resource: &str, name: &str) -> Result<Option<Value>, String> {
    let mut args = ns_args(ns);
    args.extend(["get", resource, name, "-o", "json", "--ignore-not-found"].map(String::from));
    let out = kubectl(&args);
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return Err(format!(
            "`{}`: {}",
            show(&args),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    if stdout.trim().is_empty() {
        return Ok(None);
    }
    serde_json::from_str(&stdout)
        .map(Some)
        .map_err(|e| format!("invalid JSON ({e}): {stdout}"))
}

/// `kubectl describe` output (or the error), for failure messages.
pub fn describe(ns: &str, resource: &str, name: &str) -> String {
    let mut args = ns_args(ns);
    args.extend(["describe", resource, name].map(String::from));
    let out = kubectl(&args);
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `kubectl wait --for=...`; `condition` is a condition type (`Ready`,
/// `Established`) or a full `--for` value (`delete`, `jsonpath=...`,
/// `condition=Ready=false`). Panics with `describe` output on timeout.
pub fn wait(ns: &str, resource: &str, name: &str, condition: &str, timeout: Duration) {
    let for_value = if condition == "delete" || condition == "create" || condition.contains('=') {
        condition.to_string()
    } else {
        format!("condition={condition}")
    };
    let mut args = ns_args(ns);
    args.extend([
        "wait".to_string(),
        format!("{resource}/{name}"),
        format!("--for={for_value}"),
        format!("--timeout={}s", timeout.as_secs().max(1)),
    ]);
    let out = kubectl(&args);
    if !out.status.success() {
        panic!(
            "`{}` failed: {}\n--- describe ---\n{}",
            show(&args),
            String::from_utf8_lossy(&out.stderr).trim(),
            describe(ns, resource, name)
        );
    }
}

/// Calls `f` until it returns `Ok`, every 250ms up to `timeout`; panics with
/// the last error afterwards.
#[track_caller]
pub fn eventually<T>(timeout: Duration, mut f: impl FnMut() -> Result<T, String>) -> T {
    let start = Instant::now();
    loop {
        match f() {
            Ok(v) => return v,
            Err(e) if start.elapsed() >= timeout => {
                panic!("eventually: still failing after {timeout:?}: {e}")
            }
            Err(_) => std::thread::sleep(Duration::from_millis(250)),
        }
    }
}

/// A uniquely named namespace, labelled `e2e=connectors`, deleted on drop
/// (also when the test panics; then its events are printed first). Set
/// `E2E_KEEP_NAMESPACES=1` to keep namespaces for debugging.
pub struct TestNamespace {
    name: String,
}

impl TestNamespace {
    pub fn new(prefix: &str) -> Self {
        let suffix: String = rand::rng()
            .sample_iter(rand::distr::Alphanumeric)
            .take(6)
            .map(|b| (b as char).to_ascii_lowercase())
            .collect();
        let prefix: String = prefix
            .to_ascii_lowercase()
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .take(50)
            .collect();
        let name = format!("{}-{suffix}", prefix.trim_matches('-'));
        kubectl_ok(["create", "namespace", &name]);
        let ns = TestNamespace { name };
        kubectl_ok(["label", "namespace", &ns.name, "e2e=connectors"]);
        ns
    }

    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Deref for TestNamespace {
    type Target = str;
    fn deref(&self) -> &str {
        &self.name
    }
}

impl fmt::Display for TestNamespace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}

impl Drop for TestNamespace {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let ev = raw_kubectl(
                [
                    "get",
                    "events",
                    "-n",
                    &self.name,
                    "--sort-by=.lastTimestamp",
                ],
                None,
            );
            eprintln!(
                "--- events in {} ---\n{}",
                self.name,
                String::from_utf8_lossy(&ev.stdout)
            );
        }
        if std::env::var_os("E2E_KEEP_NAMESPACES").is_some() {
            eprintln!("e2e: keeping namespace {}", self.name);
            return;
        }
        // No panic in drop: a failed delete only leaks a namespace.
        let out = raw_kubectl(
            [
                "delete",
                "namespace",
                &self.name,
                "--wait=false",
                "--ignore-not-found",
            ],
            None,
        );
        if !out.status.success() {
            eprintln!(
                "e2e: deleting namespace {}: {}",
                self.name,
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}

/// Writes a kubeconfig that authenticates as ServiceAccount `ns/sa` (a bound
/// token from `kubectl create token`, same server and CA as the current
/// context) and returns its path. Run a process with it to get exactly that
/// account's RBAC. Works against any cluster, local or kind.
pub fn sa_kubeconfig(ns: &str, sa: &str) -> PathBuf {
    let token = kubectl_ok(["create", "token", sa, "-n", ns, "--duration=24h"]);
    let cfg: Value =
        // --flatten inlines CA files, so the result is self-contained.
        serde_json::from_str(&kubectl_ok(["config", "view", "--raw", "--minify", "--flatten", "-o", "json"]))
            .expect("kubeconfig JSON");
    let cluster = &cfg["clusters"][0]["cluster"];
    let kc = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "e2e", "cluster": cluster}],
        "users": [{"name": format!("system:serviceaccount:{ns}:{sa}"), "user": {"token": token.trim()}}],
        "contexts": [{"name": "e2e", "context": {"cluster": "e2e", "user": format!("system:serviceaccount:{ns}:{sa}")}}],
        "current-context": "e2e",
    });
    let dir = std::env::temp_dir().join("connectors-e2e");
    std::fs::create_dir_all(&dir).expect("create temp dir");
    let path = dir.join(format!("{ns}-{sa}.kubeconfig"));
    std::fs::write(&path, serde_json::to_vec_pretty(&kc).unwrap()).expect("write kubeconfig");
    path
}

/// The project's CRDs, applied from `crds/` once per test binary; waits until both
/// are Established and served. Never deletes them (test binaries share them).
pub fn install_crds() {
    static SETUP: OnceLock<()> = OnceLock::new();
    SETUP.get_or_init(|| {
        ensure_cluster();
        let dir = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../crds"));
        let dir = dir.to_str().expect("utf-8 path");
        // Server-side: no last-applied annotation, and concurrent appliers of the
        // same content do not conflict.
        kubectl_ok([
            "apply",
            "--server-side",
            "--force-conflicts",
            "--field-manager=e2e-crds",
            "-f",
            dir,
        ]);
        for crd in [
            "connectorclasses.connectors.alauda.io",
            "connectors.connectors.alauda.io",
        ] {
            wait("", "crd", crd, "Established", Duration::from_secs(60));
        }
        // kubectl's discovery cache may lag right after the CRDs appear.
        eventually(Duration::from_secs(60), || {
            for resource in ["connectorclasses", "connectors"] {
                let out = kubectl(["get", resource, "--all-namespaces", "-o", "name"]);
                if !out.status.success() {
                    return Err(String::from_utf8_lossy(&out.stderr).into_owned());
                }
            }
            Ok(())
        });
    });
}

/// (status, reason, message) of condition `type_` of a stored object.
pub fn condition(object: &Value, type_: &str) -> Option<(String, String, String)> {
    let found = object["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)?;
    let text = |key: &str| found[key].as_str().unwrap_or_default().to_string();
    Some((text("status"), text("reason"), text("message")))
}

/// Waits (reading with `kubectl get -o json`) until condition `type_` of `resource`
/// `ns/name` ("" for cluster-scoped) has `status` and `reason`; returns the object.
/// On timeout the panic shows the last state and `kubectl describe`.
#[track_caller]
pub fn wait_condition(
    ns: &str,
    resource: &str,
    name: &str,
    type_: &str,
    status: &str,
    reason: &str,
    timeout: Duration,
) -> Value {
    let found = std::panic::catch_unwind(|| {
        eventually(timeout, || {
            let object = try_get_json(ns, resource, name)?.ok_or("not found")?;
            let (s, r, m) = condition(&object, type_).unwrap_or_default();
            if s == status && r == reason {
                Ok(object)
            } else {
                Err(format!("{type_} is {s}/{r} ({m}), want {status}/{reason}"))
            }
        })
    });
    match found {
        Ok(object) => object,
        Err(e) => panic!(
            "{resource} {ns}/{name}: {}\n--- describe ---\n{}",
            e.downcast_ref::<String>().cloned().unwrap_or_default(),
            describe(ns, resource, name)
        ),
    }
}

/// (type, lastTransitionTime) of every condition of a stored object.
pub fn transition_times(object: &Value) -> Vec<(String, String)> {
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

/// Restarts a component of the local control plane (`apiserver`, `etcd`,
/// `controller-manager` or `all`) with the same flags and data, waiting until
/// it is ready. Only for the local cluster of `e2e/cluster.sh`; panics on kind.
pub fn restart_control_plane(component: &str) {
    let dir = std::env::var("E2E_DIR").unwrap_or_else(|_| {
        panic!("restart_control_plane needs the local cluster of e2e/cluster.sh (E2E_DIR unset)")
    });
    let out = Command::new("localcluster")
        .args(["restart", "--dir", &dir, component])
        .output()
        .unwrap_or_else(|e| {
            panic!("run localcluster (from e2e/cluster.sh's bin dir on PATH): {e}")
        });
    if !out.status.success() {
        panic!(
            "localcluster restart {component} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
