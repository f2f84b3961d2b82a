//! The operator (`connectors-operator run`, a real process) against the real apiserver:
//! every ConnectorClass and Connector condition row of SPEC sections 2 and 3, the proxy
//! Service, reactions to edits, and quiet at rest. One operator (probe interval 2 s)
//! and one demo tool serve every test of this binary; each test has its own namespace
//! and its own uniquely named classes.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use connectors_e2e::fixtures::{
    ClassGuard, PROXY_CLASS_EXTRA, basic_secret, ca_secret, connector, delete_class, git_class,
};
use connectors_e2e::process::{DemoTool, Operator, OperatorOptions};
use connectors_e2e::{
    TestNamespace, apply_yaml, describe, eventually, get_json, kubectl_ok, try_get_json, wait,
};
use serde_json::Value;

const TIMEOUT: Duration = Duration::from_secs(30);

fn operator() -> &'static Operator {
    static OPERATOR: OnceLock<Operator> = OnceLock::new();
    OPERATOR.get_or_init(|| {
        Operator::start(OperatorOptions {
            identity: "e2e-controllers".into(),
            ..OperatorOptions::default()
        })
    })
}

fn tool() -> &'static DemoTool {
    static TOOL: OnceLock<DemoTool> = OnceLock::new();
    TOOL.get_or_init(DemoTool::start)
}

/// Operator and tool running; returns the tool's URL.
fn setup() -> String {
    operator();
    tool().url()
}

/// (status, reason, message) of condition `kind`, empty strings when absent.
fn condition(object: &Value, kind: &str) -> (String, String, String) {
    connectors_e2e::condition(object, kind).unwrap_or_default()
}

#[track_caller]
fn wait_condition(
    ns: &str,
    resource: &str,
    name: &str,
    kind: &str,
    status: &str,
    reason: &str,
) -> Value {
    connectors_e2e::wait_condition(ns, resource, name, kind, status, reason, TIMEOUT)
}

fn wait_connector(ns: &str, name: &str, kind: &str, status: &str, reason: &str) -> Value {
    wait_condition(ns, "connector", name, kind, status, reason)
}

fn wait_class(name: &str, kind: &str, status: &str, reason: &str) -> Value {
    wait_condition("", "connectorclass", name, kind, status, reason)
}

fn class_name(ns: &TestNamespace, suffix: &str) -> String {
    format!("{}-{suffix}", ns.name())
}

/// The common start: the demo tool's URL, a namespace, the git class (deleted at the
/// end) and a Secret `creds` with the right password.
fn git_scenario(prefix: &str) -> (String, TestNamespace, String, ClassGuard) {
    let url = setup();
    let ns = TestNamespace::new(prefix);
    let name = class_name(&ns, "git");
    let class = ClassGuard::apply(&name, &git_class(&name));
    apply_yaml(&ns, &basic_secret("creds", "demo-password"));
    (url, ns, name, class)
}

/// Waits until `kubectl describe` lists an event of `type_` with `reason`.
fn wait_event(ns: &str, connector: &str, type_: &str, reason: &str) {
    eventually(TIMEOUT, || {
        let text = describe(ns, "connector", connector);
        let events = text.split("Events:").nth(1).unwrap_or_default();
        if events.contains(type_) && events.contains(reason) {
            Ok(())
        } else {
            Err(text)
        }
    });
}

// ---------------------------------------------------------------- ConnectorClass

#[test]
fn class_without_api_or_proxy_is_ready() {
    setup();
    let ns = TestNamespace::new("class-plain");
    let name = class_name(&ns, "git");
    let _class = ClassGuard::apply(&name, &git_class(&name));
    wait("", "connectorclass", &name, "Ready", TIMEOUT);
    let class = get_json("", "connectorclass", &name);
    assert_eq!(condition(&class, "APIReady").1, "NonAPI");
    assert_eq!(condition(&class, "ProxyReady").1, "NonProxy");
    assert_eq!(condition(&class, "SpecValid").0, "True");
    assert_eq!(
        class["status"]["observedGeneration"],
        class["metadata"]["generation"]
    );
}

#[test]
fn class_api_and_proxy_resolution() {
    let url = setup();
    let ns = TestNamespace::new("class-addr");
    apply_yaml(
        &ns,
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: tool-api\nspec:\n  ports:\n  - {name: https, port: 443}\n",
    );
    // Service ref with a relative uri (https by port 443); absolute uri answered by
    // the demo tool.
    let name = class_name(&ns, "addr");
    let yaml = format!(
        "{}  api:\n    ref: {{kind: Service, name: tool-api, namespace: {ns}}}\n    uri: /api/v4\n  proxy:\n    uri: {url}/proxy\n",
        git_class(&name)
    );
    let _class = ClassGuard::apply(&name, &yaml);
    let class = wait_class(&name, "APIReady", "False", "APIUnreachable");
    assert_eq!(
        class["status"]["api"]["address"]["url"],
        format!("https://tool-api.{ns}.svc.cluster.local/api/v4")
    );
    assert!(
        condition(&class, "APIReady")
            .2
            .contains(&format!("tool-api.{ns}.svc.cluster.local")),
        "{:?}",
        condition(&class, "APIReady")
    );
    let class = wait_class(&name, "ProxyReady", "True", "");
    assert_eq!(
        class["status"]["proxy"]["httpAddress"]["url"],
        format!("{url}/proxy")
    );
    assert_eq!(condition(&class, "Ready").1, "APIUnreachable");
}

#[test]
fn class_address_unresolved_reasons() {
    setup();
    let ns = TestNamespace::new("class-unres");
    let missing = class_name(&ns, "missing");
    let _a = ClassGuard::apply(
        &missing,
        &format!(
            "{}  api:\n    ref: {{kind: Service, name: nowhere, namespace: {ns}}}\n",
            git_class(&missing)
        ),
    );
    let no_ns = class_name(&ns, "nons");
    let _b = ClassGuard::apply(
        &no_ns,
        &format!(
            "{}  proxy:\n    ref: {{kind: Service, name: proxy}}\n",
            git_class(&no_ns)
        ),
    );
    let class = wait_class(&missing, "APIReady", "False", "APIUnresolved");
    assert!(class["status"]["api"]["address"]["url"].is_null());
    let class = wait_class(&no_ns, "ProxyReady", "False", "ProxyUnresolved");
    assert!(
        condition(&class, "ProxyReady").2.contains("namespace"),
        "{:?}",
        condition(&class, "ProxyReady")
    );
}

#[test]
fn class_with_bad_cel_is_spec_invalid_and_its_connectors_say_so() {
    let url = setup();
    let ns = TestNamespace::new("class-bad");
    let name = class_name(&ns, "bad");
    let yaml = git_class(&name).replace(
        "response.statusCode == 200 && response.body.status == 'healthy'",
        "response.statusCode ==",
    );
    let _class = ClassGuard::apply(&name, &yaml);
    let class = wait_class(&name, "SpecValid", "False", "InvalidSpec");
    assert!(
        condition(&class, "SpecValid")
            .2
            .contains("spec.livenessProbe.http.response.cel"),
        "{:?}",
        condition(&class, "SpecValid")
    );
    apply_yaml(&ns, &basic_secret("creds", "demo-password"));
    apply_yaml(&ns, &connector("c", &name, &url, "creds"));
    let c = wait_connector(
        &ns,
        "c",
        "ConnectorClassReady",
        "False",
        "ConnectorClassInvalid",
    );
    assert!(
        condition(&c, "ConnectorClassReady")
            .2
            .contains("spec.livenessProbe.http.response.cel")
    );
    assert_eq!(condition(&c, "LivenessReady").1, "ConnectorClassNotReady");
}

// ---------------------------------------------------------------- Connector

#[test]
fn ready_connector_shows_conditions_and_event_in_describe() {
    let (url, ns, name, _class) = git_scenario("conn-ready");
    apply_yaml(&ns, &connector("my-git", &name, &url, "creds"));
    wait(&ns, "connector", "my-git", "Ready", TIMEOUT);
    let c = get_json(&ns, "connector", "my-git");
    for kind in [
        "ConnectorClassReady",
        "SecretReady",
        "LivenessReady",
        "AuthReady",
        "Ready",
    ] {
        assert_eq!(condition(&c, kind).0, "True", "{kind}");
    }
    assert_eq!(condition(&c, "ProxyServiceReady").1, "NonProxy");
    assert_eq!(condition(&c, "APIReady").1, "NonAPI");
    assert_eq!(condition(&c, "CACertReady").1, "NoCACert");
    assert_eq!(
        c["status"]["observedGeneration"],
        c["metadata"]["generation"]
    );
    let text = describe(&ns, "connector", "my-git");
    assert!(text.contains("LivenessReady"), "{text}");
    assert!(text.contains("AuthReady"), "{text}");
    let columns = kubectl_ok(["get", "connectors", "-n", &ns]);
    assert!(
        columns.contains("my-git") && columns.contains("True"),
        "{columns}"
    );
    // SPEC section 5: no event on the first Ready; a Warning when it is lost, a Normal
    // `Ready` when it comes back.
    kubectl_ok(["delete", "secret", "creds", "-n", &ns]);
    wait_connector(&ns, "my-git", "Ready", "False", "SecretNotFound");
    wait_event(&ns, "my-git", "Warning", "SecretNotFound");
    let events = describe(&ns, "connector", "my-git");
    let events = events.split("Events:").nth(1).unwrap_or_default();
    assert!(
        !events.contains("Normal"),
        "event on the first Ready: {events}"
    );
    apply_yaml(&ns, &basic_secret("creds", "demo-password"));
    wait(&ns, "connector", "my-git", "Ready", TIMEOUT);
    wait_event(&ns, "my-git", "Normal", "Ready");
    // Lost again within six minutes: the same Warning Event, its series at 2 (as
    // client-go and kube-runtime count repeats), not a second Event.
    kubectl_ok(["delete", "secret", "creds", "-n", &ns]);
    wait_connector(&ns, "my-git", "Ready", "False", "SecretNotFound");
    let series = eventually(TIMEOUT, || {
        let list: Value = serde_json::from_str(&kubectl_ok([
            "get",
            "events.events.k8s.io",
            "-n",
            &ns,
            "-o",
            "json",
        ]))
        .map_err(|e| e.to_string())?;
        let lost: Vec<&Value> = list["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|e| e["reason"] == "SecretNotFound" && e["regarding"]["name"] == "my-git")
            .collect();
        match lost.as_slice() {
            [one] if one["series"]["count"] == 2 => Ok((*one).clone()),
            _ => Err(format!("SecretNotFound events: {lost:?}")),
        }
    });
    assert_eq!(series["type"], "Warning", "{series}");
    assert_eq!(
        series["reportingController"], "connectors-operator",
        "{series}"
    );
    assert!(series["series"]["lastObservedTime"].is_string(), "{series}");
}

#[test]
fn wrong_password_and_tool_down() {
    let (url, ns, name, _class) = git_scenario("conn-fail");
    apply_yaml(&ns, &basic_secret("wrong", "not-the-password"));
    apply_yaml(&ns, &connector("wrong-password", &name, &url, "wrong"));
    apply_yaml(
        &ns,
        &connector("tool-down", &name, "http://127.0.0.1:1", "wrong"),
    );
    let c = wait_connector(
        &ns,
        "wrong-password",
        "AuthReady",
        "False",
        "AuthenticationFailed",
    );
    assert!(
        condition(&c, "AuthReady").2.contains("401"),
        "{:?}",
        condition(&c, "AuthReady")
    );
    assert_eq!(condition(&c, "Ready").1, "AuthenticationFailed");
    // Becoming not ready records one Warning event, shown by describe.
    wait_event(&ns, "wrong-password", "Warning", "AuthenticationFailed");
    let c = wait_connector(
        &ns,
        "tool-down",
        "LivenessReady",
        "False",
        "ConnectionFailed",
    );
    let message = condition(&c, "LivenessReady").2;
    assert!(
        message.starts_with("Get \"http://127.0.0.1:1/\""),
        "{message}"
    );
    assert!(message.contains("connection refused"), "{message}");
    assert_eq!(
        condition(&c, "AuthReady"),
        (
            "Unknown".into(),
            "LivenessNotReady".into(),
            condition(&c, "AuthReady").2
        )
    );
    let text = describe(&ns, "connector", "tool-down");
    assert!(text.contains("ConnectionFailed"), "{text}");
    assert!(!text.contains("not-the-password"));
    assert!(
        !operator().logs().contains("not-the-password"),
        "secret in operator log"
    );
}

#[test]
fn probe_failed_probe_error_and_no_probes() {
    let url = setup();
    let ns = TestNamespace::new("conn-probe");
    let unhealthy = class_name(&ns, "unhealthy");
    let _a = ClassGuard::apply(
        &unhealthy,
        &git_class(&unhealthy).replace("== 'healthy'", "== 'down'"),
    );
    let broken = class_name(&ns, "tmpl");
    let _b = ClassGuard::apply(
        &broken,
        &git_class(&broken).replace(
            ".Secret.StringData.password",
            ".Secret.StringData.password.nope",
        ),
    );
    let bare = class_name(&ns, "bare");
    let _c = ClassGuard::apply(
        &bare,
        &format!(
            "apiVersion: connectors.alauda.io/v1alpha1\nkind: ConnectorClass\nmetadata:\n  name: {bare}\nspec:\n  address: {{type: string}}\n  auth:\n    types:\n    - name: basicAuth\n      secretType: kubernetes.io/basic-auth\n"
        ),
    );
    apply_yaml(&ns, &basic_secret("creds", "demo-password"));
    apply_yaml(&ns, &connector("unhealthy", &unhealthy, &url, "creds"));
    apply_yaml(&ns, &connector("broken", &broken, &url, "creds"));
    apply_yaml(
        &ns,
        &connector("bare", &bare, &url, "creds").replace(
            "    params:\n    - {name: repository, value: org/repo}\n",
            "",
        ),
    );
    let c = wait_connector(&ns, "unhealthy", "LivenessReady", "False", "ProbeFailed");
    assert!(
        condition(&c, "LivenessReady")
            .2
            .contains("response check returned false")
    );
    let c = wait_connector(&ns, "broken", "AuthReady", "False", "ProbeError");
    assert!(!condition(&c, "AuthReady").2.contains("demo-password"));
    let c = wait_connector(&ns, "bare", "Ready", "True", "");
    assert_eq!(condition(&c, "LivenessReady").1, "NonLivenessProbe");
    assert_eq!(condition(&c, "AuthReady").1, "NonAuthProbe");
}

#[test]
fn class_lifecycle_drives_connector_status() {
    let url = setup();
    let ns = TestNamespace::new("conn-class");
    let name = class_name(&ns, "late");
    apply_yaml(&ns, &basic_secret("creds", "demo-password"));
    apply_yaml(&ns, &connector("c", &name, &url, "creds"));
    let c = wait_connector(
        &ns,
        "c",
        "ConnectorClassReady",
        "False",
        "ConnectorClassNotFound",
    );
    assert_eq!(
        condition(&c, "ConnectorClassReady").2,
        format!("connectorclass.connectors.alauda.io \"{name}\" not found")
    );
    for kind in ["LivenessReady", "AuthReady"] {
        assert_eq!(condition(&c, kind).1, "ConnectorClassNotReady", "{kind}");
    }
    // Creating the class recovers within seconds.
    let started = Instant::now();
    let _class = ClassGuard::apply(&name, &git_class(&name));
    wait(&ns, "connector", "c", "Ready", TIMEOUT);
    eprintln!("class created -> Ready in {:?}", started.elapsed());
    // Editing the class (liveness now demands a different body) changes the status.
    apply_yaml(
        "",
        &git_class(&name).replace("== 'healthy'", "== 'sleeping'"),
    );
    wait_connector(&ns, "c", "LivenessReady", "False", "ProbeFailed");
    // Deleting it gives ConnectorClassNotFound; recreating it recovers.
    delete_class(&name);
    wait_connector(
        &ns,
        "c",
        "ConnectorClassReady",
        "False",
        "ConnectorClassNotFound",
    );
    apply_yaml("", &git_class(&name));
    wait(&ns, "connector", "c", "Ready", TIMEOUT);
}

#[test]
fn spec_mismatch_names_the_field() {
    let (url, ns, name, _class) = git_scenario("conn-mismatch");
    apply_yaml(
        &ns,
        &connector("c", &name, &url, "creds").replace("name: repository", "name: repositry"),
    );
    let c = wait_connector(&ns, "c", "ConnectorClassReady", "False", "SpecMismatch");
    let message = condition(&c, "ConnectorClassReady").2;
    assert!(
        message.contains("spec.auth.params[0].name") && message.contains("repositry"),
        "{message}"
    );
}

#[test]
fn secret_conditions_and_secret_edits() {
    let url = setup();
    let ns = TestNamespace::new("conn-secret");
    let name = class_name(&ns, "git");
    let optional = class_name(&ns, "opt");
    let _class = ClassGuard::apply(&name, &git_class(&name));
    let _opt = ClassGuard::apply(
        &optional,
        &git_class(&optional).replace(
            "      secretType: kubernetes.io/basic-auth\n",
            "      secretType: kubernetes.io/basic-auth\n      optional: true\n",
        ),
    );
    // Not found, then created: Ready within seconds.
    apply_yaml(&ns, &connector("late-secret", &name, &url, "creds"));
    let c = wait_connector(&ns, "late-secret", "SecretReady", "False", "SecretNotFound");
    assert_eq!(
        condition(&c, "SecretReady").2,
        "secrets \"creds\" not found"
    );
    apply_yaml(&ns, &basic_secret("creds", "not-the-password"));
    wait_connector(
        &ns,
        "late-secret",
        "AuthReady",
        "False",
        "AuthenticationFailed",
    );
    // Editing the Secret's password fixes authentication.
    apply_yaml(&ns, &basic_secret("creds", "demo-password"));
    wait(&ns, "connector", "late-secret", "Ready", TIMEOUT);

    apply_yaml(
        &ns,
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: opaque\ntype: Opaque\nstringData:\n  username: demo\n  password: demo-password\n",
    );
    apply_yaml(
        &ns,
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: nopass\ntype: kubernetes.io/basic-auth\nstringData:\n  username: demo\n",
    );
    apply_yaml(&ns, &connector("wrong-type", &name, &url, "opaque"));
    apply_yaml(&ns, &connector("missing-key", &name, &url, "nopass"));
    apply_yaml(
        &ns,
        &connector("cross-ns", &name, &url, "creds").replace(
            "secretRef: {name: creds}",
            "secretRef: {name: creds, namespace: kube-system}",
        ),
    );
    let no_ref = |class: &str| {
        connector("x", class, &url, "creds").replace("    secretRef: {name: creds}\n", "")
    };
    apply_yaml(&ns, &no_ref(&name).replace("name: x", "name: required"));
    apply_yaml(&ns, &no_ref(&optional).replace("name: x", "name: optional"));
    wait_connector(
        &ns,
        "wrong-type",
        "SecretReady",
        "False",
        "SecretTypeMismatch",
    );
    let c = wait_connector(
        &ns,
        "missing-key",
        "SecretReady",
        "False",
        "SecretMissingKeys",
    );
    assert!(condition(&c, "SecretReady").2.contains("password"));
    let c = wait_connector(
        &ns,
        "cross-ns",
        "SecretReady",
        "False",
        "CrossNamespaceSecret",
    );
    assert!(condition(&c, "SecretReady").2.contains("kube-system"));
    wait_connector(&ns, "required", "SecretReady", "False", "SecretRequired");
    wait_connector(&ns, "optional", "SecretReady", "True", "SecretOptional");
    // The cross-namespace Secret was never read: the operator's request log has the
    // GETs of this namespace's Secrets and none of a Secret in kube-system.
    let logs = operator().logs();
    assert!(
        logs.contains(&format!("/namespaces/{ns}/secrets/creds")),
        "request log missing"
    );
    assert!(
        !logs.contains("/namespaces/kube-system/secrets/creds"),
        "the operator requested a Secret in another namespace"
    );
}

#[test]
fn proxy_service_is_owned_garbage_collected_and_never_taken_over() {
    let url = setup();
    let ns = TestNamespace::new("conn-proxy");
    let name = class_name(&ns, "proxied");
    let _class = ClassGuard::apply(&name, &format!("{}{PROXY_CLASS_EXTRA}", git_class(&name)));
    apply_yaml(&ns, &basic_secret("creds", "demo-password"));
    apply_yaml(&ns, &connector("my.git.tool", &name, &url, "creds"));
    let c = wait_connector(&ns, "my.git.tool", "ProxyServiceReady", "True", "");
    assert_eq!(
        c["status"]["proxy"]["httpAddress"]["url"],
        "http://connectors-proxy.connectors-system.svc:8080"
    );
    assert_eq!(
        c["status"]["api"]["path"],
        format!("/connectors/v1alpha1/{ns}/my.git.tool/path")
    );
    let svc = get_json(&ns, "service", "c-my-git-tool");
    assert_eq!(svc["spec"]["type"], "ExternalName");
    assert_eq!(
        svc["spec"]["externalName"],
        "connectors-proxy.connectors-system.svc"
    );
    let owner = &svc["metadata"]["ownerReferences"][0];
    assert_eq!(owner["kind"], "Connector");
    assert_eq!(owner["uid"], c["metadata"]["uid"]);
    assert_eq!(owner["controller"], true);

    // A foreign Service of the same name is reported and left untouched.
    apply_yaml(
        &ns,
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: c-taken\nspec:\n  type: ExternalName\n  externalName: somewhere.else\n",
    );
    let before = get_json(&ns, "service", "c-taken");
    apply_yaml(&ns, &connector("taken", &name, &url, "creds"));
    let c = wait_connector(
        &ns,
        "taken",
        "ProxyServiceReady",
        "False",
        "ProxyServiceConflict",
    );
    assert_eq!(condition(&c, "Ready").1, "ProxyServiceConflict");
    let after = get_json(&ns, "service", "c-taken");
    assert_eq!(
        before["metadata"]["resourceVersion"],
        after["metadata"]["resourceVersion"]
    );
    assert_eq!(after["spec"]["externalName"], "somewhere.else");

    // Deleting the Connector garbage-collects its Service.
    kubectl_ok(["delete", "connector", "my.git.tool", "-n", &ns]);
    eventually(TIMEOUT, || {
        match try_get_json(&ns, "service", "c-my-git-tool")? {
            None => Ok(()),
            Some(_) => Err("proxy Service still exists".to_string()),
        }
    });
}

#[test]
fn path_resolver_long_names_and_api_mirroring() {
    let url = setup();
    let ns = TestNamespace::new("conn-path");
    let name = class_name(&ns, "path");
    let yaml = format!(
        "{}{PROXY_CLASS_EXTRA}  api:\n    uri: http://127.0.0.1:1/api\n",
        git_class(&name)
    )
    .replace(
        &format!("  name: {name}\n"),
        &format!("  name: {name}\n  annotations:\n    connectors.cpaas.io/proxy-resolver: path\n"),
    );
    let _class = ClassGuard::apply(&name, &yaml);
    apply_yaml(&ns, &basic_secret("creds", "demo-password"));
    let long = format!("a{}", "b".repeat(70));
    apply_yaml(&ns, &connector(&long, &name, &url, "creds"));
    let c = wait_connector(&ns, &long, "ProxyServiceReady", "True", "");
    assert_eq!(
        c["status"]["proxy"]["httpAddress"]["url"],
        format!(
            "http://connectors-proxy.connectors-system.svc:8080/namespaces/{ns}/connectors/{long}"
        )
    );
    let c = wait_connector(&ns, &long, "APIReady", "False", "APINotReady");
    assert!(
        condition(&c, "APIReady").2.contains("127.0.0.1:1"),
        "{:?}",
        condition(&c, "APIReady")
    );
    let services = kubectl_ok(["get", "services", "-n", &ns, "-o", "name"]);
    let service = services
        .lines()
        .next()
        .unwrap_or_default()
        .trim_start_matches("service/");
    assert!(
        service.len() <= 63 && service.starts_with("c-ab"),
        "{services}"
    );
}

#[test]
fn ca_cert_conditions_and_warning_events() {
    let (url, ns, name, _class) = git_scenario("conn-ca");
    let with_ca = |conn: &str, secret: &str| {
        connector(conn, &name, &url, "creds").replace(
            "spec:\n",
            &format!("spec:\n  caCertSecretRef: {{name: {secret}}}\n"),
        )
    };
    apply_yaml(&ns, &with_ca("no-ca", "missing-ca"));
    apply_yaml(
        &ns,
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: bad-ca\nstringData:\n  ca.crt: not a certificate\n",
    );
    apply_yaml(&ns, &with_ca("bad-ca", "bad-ca"));
    apply_yaml(&ns, &ca_secret("good-ca", false));
    apply_yaml(&ns, &with_ca("good-ca", "good-ca"));
    let c = wait_connector(&ns, "no-ca", "CACertReady", "False", "SecretNotFound");
    // CACertReady is informational: the Connector is still Ready.
    assert_eq!(condition(&c, "Ready").0, "True");
    let c = wait_connector(&ns, "bad-ca", "CACertReady", "False", "InvalidPEM");
    assert_eq!(
        condition(&c, "CACertReady").2,
        "Secret \"bad-ca\" contains invalid PEM data"
    );
    let c = wait_connector(&ns, "good-ca", "CACertReady", "True", "Valid");
    assert_eq!(
        condition(&c, "CACertReady").2,
        "CA certificate loaded from secret \"good-ca\""
    );
    for (conn, reason) in [
        ("no-ca", "CACertSecretNotFound"),
        ("bad-ca", "InvalidCACert"),
    ] {
        wait_event(&ns, conn, "Warning", reason);
    }
    // Fixing the CA Secret changes the condition within seconds.
    apply_yaml(&ns, &ca_secret("bad-ca", false));
    wait_connector(&ns, "bad-ca", "CACertReady", "True", "Valid");
}

#[test]
fn at_rest_nothing_is_written() {
    let url = setup();
    let ns = TestNamespace::new("conn-rest");
    let name = class_name(&ns, "proxied");
    let _class = ClassGuard::apply(&name, &format!("{}{PROXY_CLASS_EXTRA}", git_class(&name)));
    apply_yaml(&ns, &basic_secret("creds", "demo-password"));
    apply_yaml(&ns, &basic_secret("wrong", "nope"));
    apply_yaml(&ns, &connector("ok", &name, &url, "creds"));
    apply_yaml(&ns, &connector("failing", &name, &url, "wrong"));
    wait(&ns, "connector", "ok", "Ready", TIMEOUT);
    wait_connector(&ns, "failing", "AuthReady", "False", "AuthenticationFailed");
    // Let the first rounds settle, then watch for 30 s (15 probe intervals).
    std::thread::sleep(Duration::from_secs(3));
    let versions = |kind: &str| -> Vec<String> {
        ["ok", "failing"]
            .iter()
            .map(|n| {
                let name = if kind == "service" {
                    format!("c-{n}")
                } else {
                    n.to_string()
                };
                get_json(&ns, kind, &name)["metadata"]["resourceVersion"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string()
            })
            .collect()
    };
    let connectors_before = versions("connector");
    let services_before = versions("service");
    let probes_before = operator().metric(&format!(
        "connectors_operator_probes_total{{class=\"{name}\""
    ));
    std::thread::sleep(Duration::from_secs(30));
    assert_eq!(
        versions("connector"),
        connectors_before,
        "a Connector was written at rest"
    );
    assert_eq!(
        versions("service"),
        services_before,
        "a Service was written at rest"
    );
    let probes = operator().metric(&format!(
        "connectors_operator_probes_total{{class=\"{name}\""
    )) - probes_before;
    // Probing did go on (periodic re-probe), it just changed nothing.
    assert!(probes >= 10.0, "only {probes} probes in 30 s");
}
