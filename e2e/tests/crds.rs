//! The CRDs against a real apiserver: they install (structural schemas), store
//! every field unchanged, document every field for `kubectl explain`, print the
//! right columns, accept published YAML, and reject invalid objects by their
//! own validation rules (no webhook needed). Also checks that `config/default`
//! is accepted by the apiserver.
//!
//! Run: `e2e/cluster.sh with -- cargo test -p connectors-e2e --test crds`
//!
//! The CRDs are applied once per test binary and never deleted (other test
//! files use them concurrently). Every test uses its own namespace and
//! uniquely named cluster-scoped objects, deleted at the end.

use std::path::{Path, PathBuf};
use std::time::Duration;

use connectors_e2e::{
    TestNamespace, eventually, get_json, kubectl, kubectl_ok, kubectl_stdin, try_get_json,
};
use rand::Rng;
use serde_json::{Value, json};

const TIMEOUT: Duration = Duration::from_secs(60);
const API_VERSION: &str = "connectors.alauda.io/v1alpha1";
const CRD_NAMES: [&str; 2] = [
    "connectorclasses.connectors.alauda.io",
    "connectors.connectors.alauda.io",
];

/// The two published templates (SPEC section 4), byte for byte.
const PUBLISHED_GIT_PATH: &str = r#"/{{- range .Connector.Spec.Auth.Params }}{{- if eq .Name "repository" }}{{ .Value.StringVal }}{{ end }}{{- end }}/info/refs?service=git-upload-pack"#;
const PUBLISHED_BASIC_AUTH_HEADER: &str = r#"{{- if .Secret }}Basic {{ printf "%s:%s" .Secret.StringData.username .Secret.StringData.password | b64enc }} {{- end }}"#;

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("e2e/ has a parent")
        .to_path_buf()
}

fn setup() {
    connectors_e2e::install_crds();
}

/// A name unique across tests and runs, for cluster-scoped objects.
fn unique(prefix: &str) -> String {
    let suffix: String = rand::rng()
        .sample_iter(rand::distr::Alphanumeric)
        .take(8)
        .map(|b| (b as char).to_ascii_lowercase())
        .collect();
    format!("{prefix}-{suffix}")
}

fn yaml_to_json(yaml: &str, what: &str) -> Value {
    let value: serde_yaml::Value =
        serde_yaml::from_str(yaml).unwrap_or_else(|e| panic!("{what}: invalid YAML: {e}"));
    serde_json::to_value(value).unwrap_or_else(|e| panic!("{what}: not JSON-compatible: {e}"))
}

fn read_json(path: &Path) -> Value {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    yaml_to_json(&text, &path.display().to_string())
}

/// Splits a multi-document YAML stream (as `kubectl kustomize` prints it).
fn yaml_documents(stream: &str) -> Vec<Value> {
    let mut docs = Vec::new();
    let mut current = String::new();
    for line in stream.lines().chain(std::iter::once("---")) {
        if line.trim_end() == "---" {
            if !current.trim().is_empty() {
                docs.push(yaml_to_json(&current, "YAML document"));
            }
            current.clear();
        } else {
            current.push_str(line);
            current.push('\n');
        }
    }
    docs
}

fn fixture(name: &str) -> Value {
    read_json(&repo_root().join("e2e/fixtures").join(name))
}

fn sample(name: &str) -> Value {
    read_json(&repo_root().join("config/samples").join(name))
}

/// Collapses all whitespace, so phrases survive kubectl's line wrapping.
fn squash(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn ns_args(ns: &str) -> Vec<String> {
    if ns.is_empty() {
        vec![]
    } else {
        vec!["-n".into(), ns.into()]
    }
}

/// `kubectl create` of one object (JSON on stdin) in `ns` ("" for
/// cluster-scoped). Returns the stored object from the create response.
fn create(ns: &str, obj: &Value) -> Value {
    let mut args = ns_args(ns);
    args.extend(["create", "--validate=strict", "-o", "json", "-f", "-"].map(String::from));
    let out = kubectl_stdin(&args, &obj.to_string());
    if !out.status.success() {
        panic!(
            "creating {} {} failed:\n{}\nobject: {obj:#}",
            obj["kind"],
            obj["metadata"]["name"],
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    serde_json::from_slice(&out.stdout).expect("kubectl create -o json prints JSON")
}

/// Server-side dry-run create: Ok if the object would be accepted.
fn check_accepted(ns: &str, obj: &Value) -> Result<(), String> {
    let mut args = ns_args(ns);
    args.extend(
        [
            "create",
            "--dry-run=server",
            "--validate=strict",
            "-o",
            "name",
            "-f",
            "-",
        ]
        .map(String::from),
    );
    let out = kubectl_stdin(&args, &obj.to_string());
    if out.status.success() {
        return Ok(());
    }
    Err(format!(
        "expected {} {} to be accepted, got:\n{}\nobject: {obj:#}",
        obj["kind"],
        obj["metadata"]["name"],
        String::from_utf8_lossy(&out.stderr).trim()
    ))
}

/// Creates `obj` expecting the apiserver to refuse it; the error must contain
/// every `expected` phrase and none of the `unexpected` ones. Should the object
/// be accepted after all, it is deleted again before the error is returned.
fn check_rejected(
    ns: &str,
    obj: &Value,
    expected: &[&str],
    unexpected: &[&str],
) -> Result<(), String> {
    let mut args = ns_args(ns);
    args.extend(["create", "--validate=strict", "-o", "name", "-f", "-"].map(String::from));
    let out = kubectl_stdin(&args, &obj.to_string());
    if out.status.success() {
        let mut del = ns_args(ns);
        del.extend(["delete", "--ignore-not-found", "--wait=false", "-f", "-"].map(String::from));
        let _ = kubectl_stdin(&del, &obj.to_string());
        return Err(format!(
            "expected the apiserver to reject this {}, but it was created:\n{obj:#}",
            obj["kind"]
        ));
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    let mut problems = Vec::new();
    for phrase in expected {
        if !stderr.contains(phrase) {
            problems.push(format!("does not mention {phrase:?}"));
        }
    }
    for phrase in unexpected {
        if stderr.contains(phrase) {
            problems.push(format!("mentions {phrase:?}"));
        }
    }
    if problems.is_empty() {
        return Ok(());
    }
    Err(format!(
        "the rejection of this {} {}:\n{}\nobject: {obj:#}",
        obj["kind"],
        problems.join(", "),
        stderr.trim()
    ))
}

/// A cluster-scoped object deleted on drop (also when the test panics).
struct ClusterObject {
    resource: &'static str,
    name: String,
}

impl ClusterObject {
    fn new(resource: &'static str, name: &str) -> Self {
        ClusterObject {
            resource,
            name: name.to_string(),
        }
    }
}

impl Drop for ClusterObject {
    fn drop(&mut self) {
        let out = kubectl([
            "delete",
            self.resource,
            &self.name,
            "--ignore-not-found",
            "--wait=false",
        ]);
        if !out.status.success() {
            eprintln!(
                "deleting {} {}: {}",
                self.resource,
                self.name,
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}

fn class_obj(name: &str, spec: Value) -> Value {
    json!({"apiVersion": API_VERSION, "kind": "ConnectorClass", "metadata": {"name": name}, "spec": spec})
}

fn connector_obj(name: &str, spec: Value) -> Value {
    json!({"apiVersion": API_VERSION, "kind": "Connector", "metadata": {"name": name}, "spec": spec})
}

/// Creates a class that the given Connector specs satisfy (params `a`, `b`,
/// address extensions `a`, `b`, auth type `basic`; all optional), so that the
/// positive controls of the Connector rules pass even when the operator's
/// admission webhook is deployed (it checks Connectors against their class).
fn permissive_class(ns: &str) -> (String, ClusterObject) {
    let name = format!("permissive-{ns}");
    let guard = ClusterObject::new("connectorclasses", &name);
    create(
        "",
        &class_obj(
            &name,
            json!({
                "address": {"type": "string"},
                "params": [
                    {"name": "a", "type": "string", "default": "x"},
                    {"name": "b", "type": "string", "default": "x"}
                ],
                "addressExtensions": [
                    {"name": "a", "type": "string", "default": "https://a.example.com"},
                    {"name": "b", "type": "string", "default": "https://b.example.com"}
                ],
                "auth": {"types": [{"name": "basic", "secretType": "kubernetes.io/basic-auth", "optional": true}]}
            }),
        ),
    );
    (name, guard)
}

// ---------------------------------------------------------------------------
// Installation and storage
// ---------------------------------------------------------------------------

#[test]
fn crds_apply_cleanly_with_structural_schemas() {
    setup();
    for crd in CRD_NAMES {
        let obj = get_json("", "crd", crd);
        let conditions = obj["status"]["conditions"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let status = |t: &str| {
            conditions
                .iter()
                .find(|c| c["type"] == t)
                .map(|c| c["status"].as_str().unwrap_or_default().to_string())
        };
        assert_eq!(
            status("Established").as_deref(),
            Some("True"),
            "{crd}: {conditions:#?}"
        );
        assert_eq!(
            status("NamesAccepted").as_deref(),
            Some("True"),
            "{crd}: {conditions:#?}"
        );
        assert_ne!(
            status("NonStructuralSchema").as_deref(),
            Some("True"),
            "{crd}: {conditions:#?}"
        );
        let versions = obj["spec"]["versions"].as_array().expect("versions");
        assert_eq!(versions.len(), 1, "{crd}");
        assert_eq!(versions[0]["name"], "v1alpha1");
        assert_eq!(
            versions[0]["subresources"]["status"],
            json!({}),
            "{crd}: status subresource"
        );
        assert!(
            obj["spec"]["names"]["categories"]
                .as_array()
                .unwrap()
                .contains(&json!("alauda")),
            "{crd}"
        );
    }
    assert_eq!(
        get_json("", "crd", CRD_NAMES[0])["spec"]["scope"],
        "Cluster"
    );
    assert_eq!(
        get_json("", "crd", CRD_NAMES[1])["spec"]["scope"],
        "Namespaced"
    );

    // Re-applying (dry run) prints no warning: nothing deprecated, no rule
    // over its cost budget, no unknown schema keyword.
    let dir = repo_root().join("crds");
    let out = kubectl([
        "apply",
        "--server-side",
        "--force-conflicts",
        "--field-manager=e2e-crds",
        "--dry-run=server",
        "-f",
        dir.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "dry-run re-apply of crds/ failed: {stderr}"
    );
    assert!(
        !stderr.to_ascii_lowercase().contains("warning"),
        "apply of crds/ warns: {stderr}"
    );

    // The category lists both kinds.
    let ns = TestNamespace::new("crds-category");
    kubectl_ok(["get", "alauda", "-n", &ns]);
}

#[test]
fn every_field_round_trips_unchanged() {
    setup();
    let ns = TestNamespace::new("crds-roundtrip");
    let class_name = format!("full-{ns}");

    // ConnectorClass: spec as written, status dropped on create.
    let mut class = fixture("connectorclass-full.yaml");
    class["metadata"]["name"] = json!(class_name);
    let class_status = class
        .as_object_mut()
        .unwrap()
        .remove("status")
        .expect("fixture has a status");
    let mut with_status = class.clone();
    with_status["status"] = class_status.clone();
    let _class_guard = ClusterObject::new("connectorclasses", &class_name);
    let created = create("", &with_status);
    assert_eq!(
        created["spec"], class["spec"],
        "ConnectorClass spec changed on create"
    );
    assert!(
        created.get("status").is_none(),
        "status must be ignored on create (subresource): {:#}",
        created["status"]
    );

    // Status through the status subresource: every field kept.
    let patched = patch_status("", "connectorclass", &class_name, &class_status);
    assert_eq!(
        patched["status"], class_status,
        "ConnectorClass status changed"
    );
    assert_eq!(patched["spec"], class["spec"]);
    let stored = get_json("", "connectorclass", &class_name);
    assert_eq!(
        stored["spec"], class["spec"],
        "ConnectorClass spec changed in storage"
    );
    assert!(
        stored["spec"]["api"]["openapi"]["paths"]["/projects"]["get"]["responses"]["200"]
            .is_object()
    );

    // Connector, against that class.
    let mut conn = fixture("connector-full.yaml");
    conn["spec"]["connectorClassName"] = json!(class_name);
    conn["spec"]["auth"]["secretRef"]["namespace"] = json!(ns.name());
    let conn_status = conn
        .as_object_mut()
        .unwrap()
        .remove("status")
        .expect("fixture has a status");
    let mut with_status = conn.clone();
    with_status["status"] = conn_status.clone();
    let created = create(&ns, &with_status);
    assert_eq!(
        created["spec"], conn["spec"],
        "Connector spec changed on create"
    );
    assert!(
        created.get("status").is_none(),
        "status must be ignored on create (subresource): {:#}",
        created["status"]
    );
    let name = conn["metadata"]["name"].as_str().unwrap();
    let patched = patch_status(&ns, "connector", name, &conn_status);
    assert_eq!(patched["status"], conn_status, "Connector status changed");
    assert_eq!(patched["spec"], conn["spec"]);
    let stored = get_json(&ns, "connector", name);
    assert_eq!(
        stored["spec"], conn["spec"],
        "Connector spec changed in storage"
    );

    // Param values of every shape survived.
    let params = stored["spec"]["params"].as_array().unwrap();
    assert!(params.iter().any(|p| p["value"].is_string()));
    assert!(params.iter().any(|p| p["value"].is_array()));
    assert!(params.iter().any(|p| p["value"].is_object()));
}

/// Merge-patches the status subresource; returns the object as stored by
/// that write (read from the response, so a running operator cannot race it).
fn patch_status(ns: &str, resource: &str, name: &str, status: &Value) -> Value {
    let mut args = ns_args(ns);
    let patch = json!({ "status": status }).to_string();
    args.extend(
        [
            "patch",
            resource,
            name,
            "--subresource=status",
            "--type=merge",
            "-o",
            "json",
            "-p",
            &patch,
        ]
        .map(String::from),
    );
    serde_json::from_str(&kubectl_ok(&args)).expect("kubectl patch -o json prints JSON")
}

// ---------------------------------------------------------------------------
// kubectl UX
// ---------------------------------------------------------------------------

#[test]
fn kubectl_explain_shows_descriptions() {
    setup();
    // The OpenAPI document is published shortly after the CRD is established.
    let secret_ref = eventually(TIMEOUT, || {
        let out = kubectl(["explain", "connector.spec.auth.secretRef"]);
        let text = squash(&String::from_utf8_lossy(&out.stdout));
        if out.status.success()
            && text.contains("SecretRef secret reference when doing authentication")
        {
            Ok(text)
        } else {
            Err(format!("{text}{}", String::from_utf8_lossy(&out.stderr)))
        }
    });
    assert!(
        secret_ref.contains("a different namespace is refused"),
        "{secret_ref}"
    );
    // Fields of the ObjectReference are documented too.
    assert!(secret_ref.contains("namespace"), "{secret_ref}");

    let response = eventually(TIMEOUT, || {
        let out = kubectl([
            "explain",
            "connectorclass.spec.authProbes.probe.http.response",
        ]);
        let text = squash(&String::from_utf8_lossy(&out.stdout));
        if out.status.success()
            && text.contains("Response defines the expected response validation rules")
        {
            Ok(text)
        } else {
            Err(format!("{text}{}", String::from_utf8_lossy(&out.stderr)))
        }
    });
    assert!(response.contains("cel"), "{response}");
    assert!(response.contains("2xx"), "{response}");

    // Recursive explain: every field has a description (none is empty).
    for (crd, kind) in CRD_NAMES.into_iter().zip(["ConnectorClass", "Connector"]) {
        let crd = get_json("", "crd", crd);
        let schema = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"];
        let mut missing = Vec::new();
        undocumented(schema, kind, &mut missing);
        assert!(
            missing.is_empty(),
            "fields without a description: {missing:#?}"
        );
    }
}

/// Collects the paths of schema nodes below `node` that have no description.
fn undocumented(node: &Value, path: &str, missing: &mut Vec<String>) {
    if let Some(props) = node["properties"].as_object() {
        for (name, child) in props {
            let child_path = format!("{path}.{name}");
            // apiVersion/kind/metadata are documented by the apiserver itself.
            let builtin = path.chars().all(|c| c != '.')
                && matches!(name.as_str(), "apiVersion" | "kind" | "metadata");
            if !builtin
                && child["description"]
                    .as_str()
                    .unwrap_or_default()
                    .trim()
                    .is_empty()
            {
                missing.push(child_path.clone());
            }
            undocumented(child, &child_path, missing);
        }
    }
    if node["items"].is_object() {
        undocumented(&node["items"], &format!("{path}[]"), missing);
    }
    if node["additionalProperties"].is_object() {
        undocumented(
            &node["additionalProperties"],
            &format!("{path}{{}}"),
            missing,
        );
    }
}

#[test]
fn kubectl_get_prints_the_columns() {
    setup();
    let ns = TestNamespace::new("crds-columns");
    let class_name = format!("columns-{ns}");
    let _guard = ClusterObject::new("connectorclasses", &class_name);
    create(
        "",
        &class_obj(&class_name, json!({"address": {"type": "string"}})),
    );
    create(
        &ns,
        &connector_obj(
            "tool",
            json!({"connectorClassName": class_name, "address": "https://tool.example.com"}),
        ),
    );

    let out = kubectl_ok(["get", "connectors", "-n", &ns]);
    let mut lines = out.lines();
    let header: Vec<&str> = lines
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(
        header,
        ["NAME", "CLASS", "ADDRESS", "READY", "REASON", "AGE"],
        "kubectl get connectors:\n{out}"
    );
    let row: Vec<&str> = lines
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(
        &row[..3],
        ["tool", class_name.as_str(), "https://tool.example.com"],
        "kubectl get connectors:\n{out}"
    );

    let out = kubectl_ok(["get", "connectorclass", &class_name]);
    let header: Vec<&str> = out
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(
        header,
        ["NAME", "READY", "REASON", "AGE"],
        "kubectl get connectorclasses:\n{out}"
    );

    // Short names.
    kubectl_ok(["get", "conn", "tool", "-n", &ns]);
    kubectl_ok(["get", "ccls", &class_name]);
}

// ---------------------------------------------------------------------------
// Published YAML
// ---------------------------------------------------------------------------

#[test]
fn published_samples_are_accepted_unchanged() {
    setup();
    let ns = TestNamespace::new("crds-samples");
    let samples = repo_root().join("config/samples");

    // The kustomization renders the three samples; the class and Secret pass a
    // server-side dry run as they are. (The Connector is checked for real
    // below: with the operator's webhook deployed, a dry-run class does not
    // exist for it to be checked against.)
    let rendered = kubectl_ok(["kustomize", samples.to_str().unwrap()]);
    let docs = yaml_documents(&rendered);
    let kinds: Vec<&str> = docs
        .iter()
        .map(|d| d["kind"].as_str().unwrap_or_default())
        .collect();
    for kind in ["ConnectorClass", "Secret", "Connector"] {
        assert!(
            kinds.contains(&kind),
            "config/samples renders no {kind}: {kinds:?}"
        );
    }
    let without_connector: Vec<&Value> = docs.iter().filter(|d| d["kind"] != "Connector").collect();
    let list = json!({"apiVersion": "v1", "kind": "List", "items": without_connector});
    let out = kubectl_stdin(
        [
            "apply",
            "-n",
            &ns,
            "--server-side",
            "--field-manager=e2e",
            "--dry-run=server",
            "-f",
            "-",
        ],
        &list.to_string(),
    );
    assert!(
        out.status.success(),
        "apply config/samples (dry run): {}",
        String::from_utf8_lossy(&out.stderr)
    );

    // For real, under a unique class name (the class is cluster-scoped).
    let class_name = format!("git-{ns}");
    let mut class = sample("connectorclass-git.yaml");
    class["metadata"]["name"] = json!(class_name);
    let _guard = ClusterObject::new("connectorclasses", &class_name);
    let created = create("", &class);
    assert_eq!(
        created["spec"], class["spec"],
        "git ConnectorClass changed on create"
    );

    let stored = get_json("", "connectorclass", &class_name);
    assert_eq!(
        stored["spec"], class["spec"],
        "git ConnectorClass changed in storage"
    );
    // Published style: the address spec has no name.
    assert!(stored["spec"]["address"].is_object());
    assert!(
        stored["spec"]["address"].get("name").is_none(),
        "{:#}",
        stored["spec"]["address"]
    );
    // The published templates, byte for byte.
    let http = &stored["spec"]["authProbes"][0]["probe"]["http"];
    assert_eq!(http["path"], PUBLISHED_GIT_PATH);
    assert_eq!(http["httpHeaders"][0]["name"], "Authorization");
    assert_eq!(http["httpHeaders"][0]["value"], PUBLISHED_BASIC_AUTH_HEADER);

    let secret = sample("secret-git-basic-auth.yaml");
    create(&ns, &secret);
    let mut conn = sample("connector-git.yaml");
    conn["spec"]["connectorClassName"] = json!(class_name);
    let created = create(&ns, &conn);
    assert_eq!(
        created["spec"], conn["spec"],
        "git Connector changed on create"
    );
}

// ---------------------------------------------------------------------------
// config/default
// ---------------------------------------------------------------------------

#[test]
fn config_default_is_accepted_by_the_apiserver() {
    setup();
    let default = repo_root().join("config/default");
    let default = default.to_str().unwrap();
    // A dry run cannot create the namespace its namespaced objects go to, so
    // the namespace is created for real first (harmless; left in place).
    let out = kubectl(["create", "namespace", "connectors-system"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() || stderr.contains("AlreadyExists"),
        "create namespace: {stderr}"
    );

    // Client-side apply, as `kubectl apply -k config/default` does.
    let out = kubectl(["apply", "-k", default, "--dry-run=server"]);
    assert!(
        out.status.success(),
        "kubectl apply -k config/default --dry-run=server:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    for object in [
        "namespace/connectors-system",
        "customresourcedefinition.apiextensions.k8s.io/connectorclasses.connectors.alauda.io",
        "customresourcedefinition.apiextensions.k8s.io/connectors.connectors.alauda.io",
        "serviceaccount/connectors-operator",
        "role.rbac.authorization.k8s.io/connectors-operator",
        "clusterrole.rbac.authorization.k8s.io/connectors-operator",
        "rolebinding.rbac.authorization.k8s.io/connectors-operator",
        "clusterrolebinding.rbac.authorization.k8s.io/connectors-operator",
        "service/connectors-operator-webhook",
        "service/connectors-operator-metrics",
        "deployment.apps/connectors-operator",
        "validatingwebhookconfiguration.admissionregistration.k8s.io/connectors-operator",
        "serviceaccount/connectors-proxy",
        "clusterrole.rbac.authorization.k8s.io/connectors-proxy",
        "role.rbac.authorization.k8s.io/connectors-proxy",
        "service/connectors-proxy-service",
        "deployment.apps/connectors-proxy",
        "serviceaccount/connectors-api",
        "clusterrole.rbac.authorization.k8s.io/connectors-api",
        "service/connectors-api",
        "deployment.apps/connectors-api",
    ] {
        assert!(
            stdout.contains(object),
            "{object} missing from the apply output:\n{stdout}"
        );
    }

    // Server-side apply, as e2e/kind/run.sh does (forcing conflicts: on kind
    // the deployed image was changed by `kubectl set image`).
    let out = kubectl([
        "apply",
        "--server-side",
        "--force-conflicts",
        "-k",
        default,
        "--dry-run=server",
    ]);
    assert!(
        out.status.success(),
        "kubectl apply --server-side -k config/default --dry-run=server:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The rendered webhook configuration is what the operator expects.
    let rendered = kubectl_ok(["kustomize", default]);
    let docs = yaml_documents(&rendered);
    let vwc = docs
        .iter()
        .find(|d| d["kind"] == "ValidatingWebhookConfiguration")
        .expect("webhook configuration");
    let hooks = vwc["webhooks"].as_array().unwrap();
    let by_name = |n: &str| {
        hooks
            .iter()
            .find(|h| h["name"] == n)
            .unwrap_or_else(|| panic!("webhook {n}"))
    };
    for (hook, path, resource) in [
        (
            "vconnector.connectors.alauda.io",
            "/validate/connectors",
            "connectors",
        ),
        (
            "vconnectorclass.connectors.alauda.io",
            "/validate/connectorclasses",
            "connectorclasses",
        ),
    ] {
        let h = by_name(hook);
        assert_eq!(h["failurePolicy"], "Ignore", "{hook}");
        assert_eq!(h["sideEffects"], "None", "{hook}");
        assert_eq!(h["timeoutSeconds"], 5, "{hook}");
        assert_eq!(
            h["clientConfig"]["service"]["name"], "connectors-operator-webhook",
            "{hook}"
        );
        assert_eq!(
            h["clientConfig"]["service"]["namespace"], "connectors-system",
            "{hook}"
        );
        assert_eq!(h["clientConfig"]["service"]["path"], path, "{hook}");
        assert!(
            h["clientConfig"].get("caBundle").is_none(),
            "{hook}: the operator injects the CA"
        );
        assert_eq!(h["rules"][0]["resources"], json!([resource]), "{hook}");
        assert_eq!(
            h["rules"][0]["operations"],
            json!(["CREATE", "UPDATE"]),
            "{hook}"
        );
    }
    // Each Deployment runs its command, non-root on a read-only root file system; the
    // data plane runs two replicas.
    for (name, args, replicas) in [
        ("connectors-operator", "run", 1),
        ("connectors-proxy", "proxy", 2),
        ("connectors-api", "api", 2),
    ] {
        let deploy = docs
            .iter()
            .find(|d| d["kind"] == "Deployment" && d["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("deployment {name}"));
        assert_eq!(deploy["spec"]["replicas"], replicas, "{name}");
        let container = &deploy["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(container["args"], json!([args]), "{name}");
        assert_eq!(
            container["securityContext"]["readOnlyRootFilesystem"], true,
            "{name}"
        );
        assert_eq!(container["securityContext"]["runAsNonRoot"], true, "{name}");
        assert_eq!(
            container["securityContext"]["allowPrivilegeEscalation"], false,
            "{name}"
        );
        assert!(
            container["readinessProbe"]["httpGet"]["path"] == "/readyz",
            "{name}"
        );
        assert!(
            container["resources"]["limits"]["memory"].is_string(),
            "{name}"
        );
    }
}

// ---------------------------------------------------------------------------
// Validation rules of the CRDs, one table row per object
// ---------------------------------------------------------------------------

/// What the apiserver must do with a row's object.
enum Expect {
    /// Refuse it, with an error that mentions every phrase.
    Rejected(&'static [&'static str]),
    /// Refuse it, with an error that mentions every phrase of the first list
    /// and none of the second.
    RejectedNotMentioning(&'static [&'static str], &'static [&'static str]),
    /// Accept it (server-side dry run): the corrected object, which shows the
    /// rule is no stricter than meant.
    Accepted,
}

/// One row of a validation table: an object and the apiserver's verdict on it.
struct Case {
    /// Names the row in failure reports: the rule and the variant.
    rule: String,
    object: Value,
    expect: Expect,
}

fn rejected(rule: impl Into<String>, object: Value, with: &'static [&'static str]) -> Case {
    Case {
        rule: rule.into(),
        object,
        expect: Expect::Rejected(with),
    }
}

fn accepted(rule: impl Into<String>, object: Value) -> Case {
    Case {
        rule: rule.into(),
        object,
        expect: Expect::Accepted,
    }
}

impl Case {
    fn check(&self, ns: &str) -> Result<(), String> {
        match self.expect {
            Expect::Rejected(with) => check_rejected(ns, &self.object, with, &[]),
            Expect::RejectedNotMentioning(with, without) => {
                check_rejected(ns, &self.object, with, without)
            }
            Expect::Accepted => check_accepted(ns, &self.object),
        }
    }
}

/// Runs every row (Connectors in `ns`, classes with `ns` = "") and then fails
/// once, naming every row that failed.
fn run_table(ns: &str, rows: &[Case]) {
    let mut names = std::collections::HashSet::new();
    for row in rows {
        assert!(names.insert(&row.rule), "two rows named {:?}", row.rule);
    }
    let failures: Vec<String> = rows
        .iter()
        .filter_map(|row| {
            let result = row.check(ns);
            result.err().map(|e| format!("row {:?}: {e}", row.rule))
        })
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} rows failed:\n\n{}",
        failures.len(),
        rows.len(),
        failures.join("\n\n")
    );
}

const ADDRESS_RULE: &str = "spec.address must be an absolute http or https URL";
const UNDECLARED_RULE: &str =
    "spec.authProbes[].authName must name an auth type declared in spec.auth.types[].name";
const UNSUPPORTED_TYPE: &str = r#"Unsupported value: "number""#;

/// The Connector rows; `class` is a class that every accepted row satisfies.
fn connector_cases(class: &str) -> Vec<Case> {
    let mut rows = Vec::new();

    // Connector.spec.address: x-kubernetes-validations (absolute http/https URL).
    rows.extend(
        [
            "github.com",
            "ftp://example.com/repo",
            "/relative/path",
            "https://",
            "mailto:someone@example.com",
        ]
        .map(|bad| {
            rejected(
                format!("spec.address is not an http URL: {bad}"),
                connector_obj("bad", json!({"connectorClassName": class, "address": bad})),
                &["spec.address", ADDRESS_RULE],
            )
        }),
    );
    rows.extend(
        [
            "https://github.com",
            "http://gitlab.local:8080/group",
            "https://10.0.0.1",
        ]
        .map(|good| {
            accepted(
                format!("spec.address is an http URL: {good}"),
                connector_obj(
                    "good",
                    json!({"connectorClassName": class, "address": good}),
                ),
            )
        }),
    );

    // Connector.spec.connectorClassName: required.
    rows.push(rejected(
        "spec.connectorClassName missing",
        connector_obj("bad", json!({"address": "https://github.com"})),
        &["spec.connectorClassName: Required value"],
    ));

    // Connector.spec.connectorClassName: minLength 1.
    rows.push(rejected(
        "spec.connectorClassName empty",
        connector_obj(
            "bad",
            json!({"connectorClassName": "", "address": "https://github.com"}),
        ),
        &["spec.connectorClassName", "at least 1 chars long"],
    ));

    // Connector without spec (issue 13): judged as an empty spec, which lacks
    // connectorClassName, so refused with the same message as `spec: {}`.
    rows.push(rejected(
        "Connector without spec is judged as an empty spec",
        json!({"apiVersion": API_VERSION, "kind": "Connector", "metadata": {"name": "bad"}}),
        &["spec.connectorClassName: Required value"],
    ));

    // Connector.spec.params: list-type map keyed by name.
    let spec = |second: &str| {
        json!({"connectorClassName": class, "address": "https://github.com",
               "params": [{"name": "a", "value": "1"}, {"name": second, "value": "2"}]})
    };
    rows.extend([
        rejected(
            "spec.params duplicate name",
            connector_obj("bad", spec("a")),
            &["spec.params[1]", "Duplicate value", r#""name":"a""#],
        ),
        accepted(
            "spec.params distinct names",
            connector_obj("good", spec("b")),
        ),
    ]);

    // Connector.spec.auth.params: list-type map keyed by name.
    let spec = |second: &str| {
        json!({"connectorClassName": class, "address": "https://github.com",
               "auth": {"name": "basic", "params": [{"name": "a", "value": "1"}, {"name": second, "value": "2"}]}})
    };
    rows.extend([
        rejected(
            "spec.auth.params duplicate name",
            connector_obj("bad", spec("a")),
            &["spec.auth.params[1]", "Duplicate value"],
        ),
        accepted(
            "spec.auth.params distinct names",
            connector_obj("good", spec("b")),
        ),
    ]);

    // Connector.spec.addressExtensions: list-type map keyed by name.
    let spec = |second: &str| {
        json!({"connectorClassName": class, "address": "https://github.com",
               "addressExtensions": [{"name": "a", "value": "https://a.example.com"},
                                     {"name": second, "value": "https://b.example.com"}]})
    };
    rows.extend([
        rejected(
            "spec.addressExtensions duplicate name",
            connector_obj("bad", spec("a")),
            &["spec.addressExtensions[1]", "Duplicate value"],
        ),
        accepted(
            "spec.addressExtensions distinct names",
            connector_obj("good", spec("b")),
        ),
    ]);

    // Param: name and value required.
    let spec = |param: Value| json!({"connectorClassName": class, "address": "https://github.com", "params": [param]});
    rows.extend([
        rejected(
            "spec.params[] without value",
            connector_obj("bad", spec(json!({"name": "a"}))),
            &["spec.params[0].value: Required value"],
        ),
        rejected(
            "spec.params[] without name",
            connector_obj("bad", spec(json!({"value": "1"}))),
            &["spec.params[0].name: Required value"],
        ),
        accepted(
            "spec.params[] with name and value",
            connector_obj("good", spec(json!({"name": "a", "value": "1"}))),
        ),
    ]);

    // Connector.spec.caCertSecretRef.name: required, minLength 1.
    let spec = |r: Value| json!({"connectorClassName": class, "address": "https://github.com", "caCertSecretRef": r});
    rows.extend([
        rejected(
            "spec.caCertSecretRef without name",
            connector_obj("bad", spec(json!({}))),
            &["spec.caCertSecretRef.name: Required value"],
        ),
        rejected(
            "spec.caCertSecretRef with empty name",
            connector_obj("bad", spec(json!({"name": ""}))),
            &["spec.caCertSecretRef.name", "at least 1 chars long"],
        ),
        accepted(
            "spec.caCertSecretRef with name",
            connector_obj("good", spec(json!({"name": "ca"}))),
        ),
    ]);

    rows
}

/// The ConnectorClass rows; each rule's objects share one unique name.
fn class_cases() -> Vec<Case> {
    let mut rows = Vec::new();

    // ConnectorClass without spec (issue 13): accepted, spec defaulted to {}
    // (`class_without_spec_is_stored_with_an_empty_spec` reads it back).
    let name = unique("crds-nospec");
    rows.push(accepted(
        "ConnectorClass without spec",
        json!({"apiVersion": API_VERSION, "kind": "ConnectorClass", "metadata": {"name": name}}),
    ));

    // ConnectorClass.spec.params: list-type map keyed by name.
    let name = unique("crds-params");
    let spec =
        |second: &str| json!({"params": [{"name": "branch"}, {"name": second, "type": "string"}]});
    rows.extend([
        rejected(
            "spec.params duplicate name",
            class_obj(&name, spec("branch")),
            &["spec.params[1]", "Duplicate value", r#""name":"branch""#],
        ),
        accepted("spec.params distinct names", class_obj(&name, spec("tag"))),
    ]);

    // ConnectorClass.spec.addressExtensions: list-type map keyed by name.
    let name = unique("crds-ext");
    let spec = |second: &str| json!({"addressExtensions": [{"name": "web"}, {"name": second}]});
    rows.extend([
        rejected(
            "spec.addressExtensions duplicate name",
            class_obj(&name, spec("web")),
            &["spec.addressExtensions[1]", "Duplicate value"],
        ),
        accepted(
            "spec.addressExtensions distinct names",
            class_obj(&name, spec("docs")),
        ),
    ]);

    // ConnectorClass.spec.auth.types: list-type map keyed by name.
    let name = unique("crds-authtypes");
    let spec = |second: &str| {
        json!({"auth": {"types": [
            {"name": "basicAuth", "secretType": "kubernetes.io/basic-auth"},
            {"name": second, "secretType": "Opaque"}
        ]}})
    };
    rows.extend([
        rejected(
            "spec.auth.types duplicate name",
            class_obj(&name, spec("basicAuth")),
            &[
                "spec.auth.types[1]",
                "Duplicate value",
                r#""name":"basicAuth""#,
            ],
        ),
        accepted(
            "spec.auth.types distinct names",
            class_obj(&name, spec("token")),
        ),
    ]);

    // ConnectorClass.spec.auth.types[].name: required (the list-map key).
    let name = unique("crds-authtype-name");
    rows.push(rejected(
        "spec.auth.types[] without name",
        class_obj(
            &name,
            json!({"auth": {"types": [{"secretType": "Opaque"}]}}),
        ),
        &["spec.auth.types[0].name: Required value"],
    ));

    // ConnectorClass.spec.auth.types: maxItems 32.
    let name = unique("crds-authtypes-max");
    let types = |n: usize| {
        (0..n)
            .map(|i| json!({"name": format!("t{i}")}))
            .collect::<Vec<_>>()
    };
    rows.extend([
        rejected(
            "spec.auth.types with 33 items",
            class_obj(&name, json!({"auth": {"types": types(33)}})),
            &["spec.auth.types", "must have at most 32 items"],
        ),
        accepted(
            "spec.auth.types with 32 items",
            class_obj(&name, json!({"auth": {"types": types(32)}})),
        ),
    ]);

    // ConnectorClass.spec.auth.types[].params: list-type map keyed by name.
    let name = unique("crds-authtype-params");
    let spec = |second: &str| json!({"auth": {"types": [{"name": "t", "params": [{"name": "username"}, {"name": second}]}]}});
    rows.extend([
        rejected(
            "spec.auth.types[].params duplicate name",
            class_obj(&name, spec("username")),
            &["spec.auth.types[0].params[1]", "Duplicate value"],
        ),
        accepted(
            "spec.auth.types[].params distinct names",
            class_obj(&name, spec("password")),
        ),
    ]);

    // ConnectorClass.spec.authProbes: list-type map keyed by authName.
    let name = unique("crds-probes");
    let spec = |second: &str| {
        json!({
            "auth": {"types": [{"name": "basicAuth"}, {"name": "token"}]},
            "authProbes": [
                {"authName": "basicAuth", "probe": {"http": {"path": "/user"}}},
                {"authName": second, "probe": {"http": {"path": "/api/user"}}}
            ]
        })
    };
    rows.extend([
        rejected(
            "spec.authProbes duplicate authName",
            class_obj(&name, spec("basicAuth")),
            &[
                "spec.authProbes[1]",
                "Duplicate value",
                r#""authName":"basicAuth""#,
            ],
        ),
        accepted(
            "spec.authProbes distinct authNames",
            class_obj(&name, spec("token")),
        ),
    ]);

    // ConnectorClass.spec.authProbes[].authName: required (the list-map key).
    let name = unique("crds-probe-name");
    rows.push(rejected(
        "spec.authProbes[] without authName",
        class_obj(
            &name,
            json!({"auth": {"types": [{"name": "t"}]}, "authProbes": [{"probe": {"http": {"path": "/"}}}]}),
        ),
        &["spec.authProbes[0].authName: Required value"],
    ));

    // ConnectorClass.spec.authProbes[].params: list-type map keyed by name.
    let name = unique("crds-probe-params");
    let spec = |second: &str| {
        json!({
            "auth": {"types": [{"name": "t"}]},
            "authProbes": [{"authName": "t", "params": [{"name": "repository"}, {"name": second}]}]
        })
    };
    rows.extend([
        rejected(
            "spec.authProbes[].params duplicate name",
            class_obj(&name, spec("repository")),
            &["spec.authProbes[0].params[1]", "Duplicate value"],
        ),
        accepted(
            "spec.authProbes[].params distinct names",
            class_obj(&name, spec("project")),
        ),
    ]);

    // ConnectorClass.spec: x-kubernetes-validations (authProbes[].authName declared).
    let name = unique("crds-probe-undeclared");
    rows.extend([
        // Declared types, but not this one.
        Case {
            rule: "spec.authProbes[].authName not among declared types".into(),
            object: class_obj(
                &name,
                json!({
                    "auth": {"types": [{"name": "basicAuth"}]},
                    "authProbes": [
                        {"authName": "basicAuth", "probe": {"http": {"path": "/"}}},
                        {"authName": "oauth2", "probe": {"http": {"path": "/"}}}
                    ]
                }),
            ),
            expect: Expect::RejectedNotMentioning(
                &["spec.authProbes", UNDECLARED_RULE, "not declared: oauth2"],
                &["not declared: basicAuth"],
            ),
        },
        // No auth types at all.
        rejected(
            "spec.authProbes[].authName without auth types",
            class_obj(
                &name,
                json!({"authProbes": [{"authName": "basicAuth", "probe": {"http": {"path": "/"}}}]}),
            ),
            &["spec.authProbes", UNDECLARED_RULE, "not declared: basicAuth"],
        ),
        accepted(
            "spec.authProbes[].authName declared",
            class_obj(
                &name,
                json!({"auth": {"types": [{"name": "basicAuth"}]},
                       "authProbes": [{"authName": "basicAuth", "probe": {"http": {"path": "/"}}}]}),
            ),
        ),
    ]);

    // Probe.http.method: x-kubernetes-validations (GET or POST), in livenessProbe and authProbes.
    let name = unique("crds-method");
    let liveness =
        |method: &str| json!({"livenessProbe": {"http": {"path": "/", "method": method}}});
    rows.extend([
        rejected(
            "livenessProbe.http.method PUT",
            class_obj(&name, liveness("PUT")),
            &[
                "spec.livenessProbe.http.method",
                r#"method must be GET or POST, not "PUT""#,
            ],
        ),
        rejected(
            "authProbes[].probe.http.method DELETE",
            class_obj(
                &name,
                json!({"auth": {"types": [{"name": "t"}]},
                       "authProbes": [{"authName": "t", "probe": {"http": {"path": "/", "method": "DELETE"}}}]}),
            ),
            &[
                "spec.authProbes[0].probe.http.method",
                r#"method must be GET or POST, not "DELETE""#,
            ],
        ),
        accepted(
            "livenessProbe.http.method GET",
            class_obj(&name, liveness("GET")),
        ),
        accepted(
            "livenessProbe.http.method POST",
            class_obj(&name, liveness("POST")),
        ),
    ]);

    // Probe.http.scheme: x-kubernetes-validations (http or https), in livenessProbe and authProbes.
    let name = unique("crds-scheme");
    let liveness =
        |scheme: &str| json!({"livenessProbe": {"http": {"path": "/", "scheme": scheme}}});
    rows.extend([
        rejected(
            "livenessProbe.http.scheme ftp",
            class_obj(&name, liveness("ftp")),
            &[
                "spec.livenessProbe.http.scheme",
                r#"scheme must be http or https, not "ftp""#,
            ],
        ),
        rejected(
            "authProbes[].probe.http.scheme ws",
            class_obj(
                &name,
                json!({"auth": {"types": [{"name": "t"}]},
                       "authProbes": [{"authName": "t", "probe": {"http": {"path": "/", "scheme": "ws"}}}]}),
            ),
            &[
                "spec.authProbes[0].probe.http.scheme",
                r#"scheme must be http or https, not "ws""#,
            ],
        ),
        accepted(
            "livenessProbe.http.scheme https",
            class_obj(&name, liveness("https")),
        ),
        accepted(
            "livenessProbe.http.scheme http",
            class_obj(&name, liveness("http")),
        ),
    ]);

    // Probe.http.path: required.
    let name = unique("crds-path");
    rows.push(rejected(
        "livenessProbe.http without path",
        class_obj(&name, json!({"livenessProbe": {"http": {"method": "GET"}}})),
        &["spec.livenessProbe.http.path: Required value"],
    ));

    // Probe.http.httpHeaders[]: name and value required.
    let name = unique("crds-headers");
    let liveness =
        |header: Value| json!({"livenessProbe": {"http": {"path": "/", "httpHeaders": [header]}}});
    rows.extend([
        rejected(
            "livenessProbe.http.httpHeaders[] without value",
            class_obj(&name, liveness(json!({"name": "Accept"}))),
            &["spec.livenessProbe.http.httpHeaders[0].value: Required value"],
        ),
        rejected(
            "livenessProbe.http.httpHeaders[] without name",
            class_obj(&name, liveness(json!({"value": "text/plain"}))),
            &["spec.livenessProbe.http.httpHeaders[0].name: Required value"],
        ),
        accepted(
            "livenessProbe.http.httpHeaders[] with name and value",
            class_obj(
                &name,
                liveness(json!({"name": "Accept", "value": "text/plain"})),
            ),
        ),
    ]);

    // ParamSpec.type: enum string/array/object (params, address, addressExtensions, auth and probe params).
    let name = unique("crds-paramtype");
    rows.extend([
        rejected(
            "spec.params[].type number",
            class_obj(&name, json!({"params": [{"name": "p", "type": "number"}]})),
            &[
                "spec.params[0].type",
                UNSUPPORTED_TYPE,
                r#""string", "array", "object""#,
            ],
        ),
        rejected(
            "spec.address.type number",
            class_obj(&name, json!({"address": {"type": "number"}})),
            &["spec.address.type", UNSUPPORTED_TYPE],
        ),
        rejected(
            "spec.addressExtensions[].type number",
            class_obj(
                &name,
                json!({"addressExtensions": [{"name": "e", "type": "number"}]}),
            ),
            &["spec.addressExtensions[0].type", UNSUPPORTED_TYPE],
        ),
        rejected(
            "spec.auth.types[].params[].type number",
            class_obj(
                &name,
                json!({"auth": {"types": [{"name": "t", "params": [{"name": "p", "type": "number"}]}]}}),
            ),
            &["spec.auth.types[0].params[0].type", UNSUPPORTED_TYPE],
        ),
    ]);
    rows.extend(["string", "array", "object"].map(|ty| {
        accepted(
            format!("spec.params[].type {ty}"),
            class_obj(&name, json!({"params": [{"name": "p", "type": ty}]})),
        )
    }));

    // KReference (api.ref, proxy.ref): kind and name required.
    let name = unique("crds-ref");
    rows.extend([
        rejected(
            "spec.proxy.ref without kind",
            class_obj(
                &name,
                json!({"proxy": {"ref": {"name": "svc", "namespace": "ns"}}}),
            ),
            &["spec.proxy.ref.kind: Required value"],
        ),
        rejected(
            "spec.api.ref without name",
            class_obj(
                &name,
                json!({"api": {"ref": {"kind": "Service", "namespace": "ns"}}}),
            ),
            &["spec.api.ref.name: Required value"],
        ),
        accepted(
            "spec.proxy.ref with kind and name",
            class_obj(
                &name,
                json!({"proxy": {"ref": {"kind": "Service", "name": "svc", "namespace": "ns"}}}),
            ),
        ),
    ]);

    rows
}

/// Every Connector row, in one namespace, against a class they satisfy.
#[test]
fn connector_validation_rules() {
    setup();
    let ns = TestNamespace::new("crds-conn-rules");
    let (class, _guard) = permissive_class(&ns);
    run_table(&ns, &connector_cases(&class));
}

/// Every ConnectorClass row (cluster-scoped).
#[test]
fn connector_class_validation_rules() {
    setup();
    run_table("", &class_cases());
}

/// Issue 13: a ConnectorClass created without `spec` is stored with `spec: {}` (the
/// CRD's default), so the controller's typed list/watch deserializes it: read back
/// through kube's typed `Api` as the watcher does, it has an empty spec.
#[test]
fn class_without_spec_is_stored_with_an_empty_spec() {
    setup();
    let name = unique("crds-nospec-read");
    let _guard = ClusterObject::new("connectorclasses", &name);
    let stored = create(
        "",
        &json!({"apiVersion": API_VERSION, "kind": "ConnectorClass",
                "metadata": {"name": name,
                             "annotations": {"connectors.cpaas.io/proxy-resolver": "path"}}}),
    );
    assert_eq!(stored["spec"], json!({}), "{stored:#}");
    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime");
    let class = runtime.block_on(async {
        use connectors_operator::api::ConnectorClass;
        use kube::api::{Api, ListParams};
        let client = kube::Client::try_default().await.expect("a kube client");
        let classes: Api<ConnectorClass> = Api::all(client);
        let list = classes
            .list(&ListParams::default())
            .await
            .expect("the typed list deserializes every class");
        list.items
            .into_iter()
            .find(|c| c.metadata.name.as_deref() == Some(name.as_str()))
    });
    let class = class.expect("the class is listed");
    assert_eq!(
        class.spec,
        connectors_operator::api::ConnectorClassSpec::default()
    );
}

// Status conditions: type and status required (status subresource). Not a
// row: it creates a class, patches its status subresource and checks the
// class survives, which no create-time row can express.
#[test]
fn rejects_status_condition_without_type_or_status() {
    setup();
    let name = unique("crds-condition");
    let _guard = ClusterObject::new("connectorclasses", &name);
    create("", &class_obj(&name, json!({})));
    let patch = json!({"status": {"conditions": [{"type": "Ready"}]}}).to_string();
    let out = kubectl([
        "patch",
        "connectorclass",
        &name,
        "--subresource=status",
        "--type=merge",
        "-p",
        &patch,
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "a condition without status was stored"
    );
    assert!(
        stderr.contains("status.conditions[0].status: Required value"),
        "{stderr}"
    );
    assert!(try_get_json("", "connectorclass", &name).unwrap().is_some());
}
