//! Smoke tests proving the test cluster is a real control plane: apiserver with
//! RBAC, CRDs, and a working kube-controller-manager (garbage collector,
//! namespace and serviceaccount controllers).
//!
//! Run: `e2e/cluster.sh with -- cargo test -p connectors-e2e --test smoke`

use std::time::Duration;

use connectors_e2e::{
    TestNamespace, apply_yaml, eventually, get_json, kubectl, kubectl_fail, kubectl_ok,
    sa_kubeconfig, try_get_json, wait,
};

const TIMEOUT: Duration = Duration::from_secs(60);

#[test]
fn server_version_is_pinned_release() {
    let v: serde_json::Value =
        serde_json::from_str(&kubectl_ok(["version", "-o", "json"])).unwrap();
    let server = v["serverVersion"]["gitVersion"]
        .as_str()
        .unwrap_or_default();
    assert!(
        server.starts_with("v1.37"),
        "server version {server:?}, full output: {v}"
    );
}

#[test]
fn configmap_roundtrip() {
    let ns = TestNamespace::new("smoke-cm");
    apply_yaml(
        &ns,
        r#"
apiVersion: v1
kind: ConfigMap
metadata:
  name: hello
data:
  greeting: hi there
"#,
    );
    let cm = get_json(&ns, "configmap", "hello");
    assert_eq!(cm["data"]["greeting"], "hi there");
    assert_eq!(cm["metadata"]["namespace"], ns.name());
}

#[test]
fn cluster_scoped_crd_lifecycle() {
    const CRD: &str = "widgets.smoke.e2e.example.com";
    apply_yaml(
        "",
        r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.smoke.e2e.example.com
spec:
  group: smoke.e2e.example.com
  scope: Cluster
  names: {plural: widgets, singular: widget, kind: Widget, listKind: WidgetList}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            required: [size]
            properties:
              size: {type: integer, minimum: 1}
              color: {type: string}
"#,
    );
    wait("", "crd", CRD, "Established", TIMEOUT);

    let widget = r#"
apiVersion: smoke.e2e.example.com/v1
kind: Widget
metadata:
  name: smoke-widget
spec:
  size: 3
  color: blue
"#;
    // kubectl's discovery cache may lag right after the CRD appears.
    eventually(TIMEOUT, || {
        let out = connectors_e2e::kubectl_stdin(["apply", "--server-side", "-f", "-"], widget);
        out.status
            .success()
            .then_some(())
            .ok_or_else(|| String::from_utf8_lossy(&out.stderr).into_owned())
    });
    let w = get_json("", "widget", "smoke-widget");
    assert_eq!(w["spec"]["size"], 3);
    assert_eq!(w["spec"]["color"], "blue");
    assert!(
        w["metadata"].get("namespace").is_none(),
        "Widget must be cluster-scoped: {w}"
    );

    // The structural schema is enforced.
    let err = kubectl_fail([
        "patch",
        "widget",
        "smoke-widget",
        "--type=merge",
        "-p",
        r#"{"spec":{"size":0}}"#,
    ]);
    assert!(err.contains("spec.size"), "unexpected error: {err}");

    kubectl_ok(["delete", "widget", "smoke-widget", "--wait=true"]);
    assert!(
        try_get_json("", "widget", "smoke-widget")
            .unwrap()
            .is_none()
    );
    kubectl_ok(["delete", "crd", CRD, "--wait=true", "--timeout=60s"]);
    assert!(try_get_json("", "crd", CRD).unwrap().is_none());
}

#[test]
fn garbage_collector_deletes_dependents() {
    let ns = TestNamespace::new("smoke-gc");
    apply_yaml(
        &ns,
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: owner}\n",
    );
    let uid = get_json(&ns, "configmap", "owner")["metadata"]["uid"]
        .as_str()
        .unwrap()
        .to_string();
    apply_yaml(
        &ns,
        &format!(
            r#"
apiVersion: v1
kind: ConfigMap
metadata:
  name: dependent
  ownerReferences:
  - {{apiVersion: v1, kind: ConfigMap, name: owner, uid: "{uid}"}}
"#
        ),
    );
    assert!(
        try_get_json(&ns, "configmap", "dependent")
            .unwrap()
            .is_some()
    );
    kubectl_ok(["delete", "configmap", "owner", "-n", &ns]);
    eventually(TIMEOUT, || {
        match try_get_json(&ns, "configmap", "dependent")? {
            None => Ok(()),
            Some(_) => {
                Err("dependent ConfigMap still exists: garbage collector not running?".into())
            }
        }
    });
}

#[test]
fn namespace_and_serviceaccount_controllers_run() {
    let ns = TestNamespace::new("smoke-ns");
    // serviceaccount controller creates `default`; root-ca publisher the CA.
    eventually(TIMEOUT, || {
        try_get_json(&ns, "serviceaccount", "default")?.ok_or("no default SA".to_string())
    });
    eventually(TIMEOUT, || {
        try_get_json(&ns, "configmap", "kube-root-ca.crt")?.ok_or("no kube-root-ca.crt".to_string())
    });
    apply_yaml(
        &ns,
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: content}\n",
    );
    // The namespace controller must empty and finalize a deleted namespace.
    kubectl_ok(["delete", "namespace", &ns, "--wait=false"]);
    eventually(TIMEOUT, || match try_get_json("", "namespace", &ns)? {
        None => Ok(()),
        Some(n) => Err(format!("namespace still {}", n["status"]["phase"])),
    });
}

#[test]
fn rbac_is_enforced_for_service_accounts() {
    let ns = TestNamespace::new("smoke-rbac");
    kubectl_ok(["create", "serviceaccount", "nobody", "-n", &ns]);
    let user = format!("system:serviceaccount:{ns}:nobody");
    let kubeconfig = sa_kubeconfig(&ns, "nobody");
    let kc = kubeconfig.to_str().unwrap();

    // Authenticated as the ServiceAccount...
    let who = kubectl_ok([
        "--kubeconfig",
        kc,
        "auth",
        "whoami",
        "-o",
        "jsonpath={.status.userInfo.username}",
    ]);
    assert_eq!(who, user);
    // ...but with no bindings it may not list secrets.
    let err = kubectl_fail(["--kubeconfig", kc, "get", "secrets", "-n", &ns]);
    assert!(err.contains("forbidden"), "expected forbidden, got: {err}");
    let out = kubectl(["auth", "can-i", "list", "secrets", "-n", &ns, "--as", &user]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "no");

    // Granting a Role makes the same call succeed: authorization said no.
    kubectl_ok([
        "create",
        "role",
        "read-secrets",
        "-n",
        &ns,
        "--verb=list",
        "--resource=secrets",
    ]);
    let subject = format!("--serviceaccount={ns}:nobody");
    kubectl_ok([
        "create",
        "rolebinding",
        "read-secrets",
        "-n",
        &ns,
        "--role=read-secrets",
        &subject,
    ]);
    eventually(TIMEOUT, || {
        let out = kubectl(["--kubeconfig", kc, "get", "secrets", "-n", &ns]);
        out.status
            .success()
            .then_some(())
            .ok_or_else(|| String::from_utf8_lossy(&out.stderr).into_owned())
    });

    // The launcher's own sa-kubeconfig (local cluster only) yields the same identity.
    if let Ok(dir) = std::env::var("E2E_DIR") {
        let path = std::env::temp_dir().join(format!("{ns}-launcher.kubeconfig"));
        let out = std::process::Command::new("localcluster")
            .args([
                "sa-kubeconfig",
                "--dir",
                &dir,
                "--namespace",
                &ns,
                "--name",
                "nobody",
                "--out",
            ])
            .arg(&path)
            .output()
            .expect("run localcluster");
        assert!(
            out.status.success(),
            "localcluster sa-kubeconfig: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let kc = path.to_str().unwrap();
        let who = kubectl_ok([
            "--kubeconfig",
            kc,
            "auth",
            "whoami",
            "-o",
            "jsonpath={.status.userInfo.username}",
        ]);
        assert_eq!(who, user);
        kubectl_ok(["--kubeconfig", kc, "get", "secrets", "-n", &ns]);
        kubectl_fail(["--kubeconfig", kc, "get", "secrets", "-n", "default"]);
    }
}
