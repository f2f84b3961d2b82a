//! The validating admission webhook (SPEC section 6) against the real apiserver: the
//! operator (a real process) serves it, and it is registered by URL on loopback with
//! `failurePolicy: Fail` and no caBundle, which the operator injects. One test per
//! rule: `kubectl apply` of the bad object fails with the expected message, and the
//! corrected object is accepted. Rules that need only the object are CRD validation
//! rules too; their tests show the apiserver's own message (the webhook never sees
//! such objects).

use std::sync::OnceLock;
use std::time::Duration;

use connectors_e2e::process::{Operator, OperatorOptions};
use connectors_e2e::webhook::{Scope, register_for_process, wait_ca_bundles};
use connectors_e2e::{TestNamespace, eventually, kubectl_ok, kubectl_stdin, sa_kubeconfig};

const CONFIG: &str = "connectors-e2e-admission";
const NS_LABEL: (&str, &str) = ("e2e-admission", "true");
const CONNECTOR_DENIED: &str =
    r#"admission webhook "vconnector.connectors.alauda.io" denied the request: "#;
const CLASS_DENIED: &str =
    r#"admission webhook "vconnectorclass.connectors.alauda.io" denied the request: "#;

/// A class with every kind of contract: required and typed params, an enum, required
/// and optional address extensions, an auth type and an auth probe with a param.
const CONTRACT_CLASS: &str = r#"
apiVersion: connectors.alauda.io/v1alpha1
kind: ConnectorClass
metadata: {name: adm-contract}
spec:
  address: {type: string}
  params:
  - {name: team, type: string}
  - {name: branches, type: array, default: [main]}
  - {name: mode, type: string, default: fast, enum: [fast, safe]}
  addressExtensions:
  - {name: webUrl, type: string}
  - {name: sshUrl, type: string, default: ""}
  auth:
    types:
    - {name: basicAuth, secretType: kubernetes.io/basic-auth}
  livenessProbe: {http: {path: /}}
  authProbes:
  - authName: basicAuth
    params: [{name: repository, type: string}]
    probe: {http: {path: /x}}
"#;

/// The spec lines of a Connector that satisfies [`CONTRACT_CLASS`].
const GOOD_SPEC: &str = r#"  connectorClassName: adm-contract
  address: https://git.example.com
  params:
  - {name: team, value: a}
  addressExtensions:
  - {name: webUrl, value: https://web.example.com}
  auth:
    name: basicAuth
    secretRef: {name: s}
    params: [{name: repository, value: org/repo}]
"#;

fn setup() -> &'static Operator {
    static OPERATOR: OnceLock<Operator> = OnceLock::new();
    OPERATOR.get_or_init(|| {
        let operator = Operator::start(OperatorOptions {
            identity: "e2e-admission".into(),
            extra_args: vec!["--webhook-config".into(), CONFIG.into()],
            ..OperatorOptions::default()
        });
        register_for_process(
            CONFIG,
            operator.webhook_port,
            &Scope {
                connector_namespace_label: Some((NS_LABEL.0.into(), NS_LABEL.1.into())),
                classes: true,
                class_label: None,
            },
        );
        wait_ca_bundles(CONFIG, Duration::from_secs(30));
        accepted("", CONTRACT_CLASS);
        // Client-side apply like the published-samples test, so re-applying is a no-op.
        accepted("", &published("connectorclass-git.yaml"));
        operator
    })
}

fn namespace(prefix: &str) -> TestNamespace {
    setup();
    let ns = TestNamespace::new(prefix);
    kubectl_ok([
        "label",
        "namespace",
        ns.name(),
        &format!("{}={}", NS_LABEL.0, NS_LABEL.1),
    ]);
    ns
}

fn published(file: &str) -> String {
    let path = format!("{}/../config/samples/{file}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// `kubectl apply -f -` of `yaml` in `ns` ("" for cluster-scoped); (success, stderr).
fn apply(ns: &str, yaml: &str) -> (bool, String) {
    let mut args = vec!["apply", "-f", "-"];
    if !ns.is_empty() {
        args.extend(["-n", ns]);
    }
    let out = kubectl_stdin(&args, yaml);
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The bad object is refused with every phrase in its message; returns kubectl's stderr.
#[track_caller]
fn rejected(ns: &str, yaml: &str, phrases: &[&str]) -> String {
    let (ok, stderr) = apply(ns, yaml);
    assert!(!ok, "expected a rejection, but it was accepted:\n{yaml}");
    for phrase in phrases {
        assert!(
            stderr.contains(phrase),
            "the rejection does not say {phrase:?}:\n{stderr}\nobject:\n{yaml}"
        );
    }
    stderr
}

/// The object is admitted; returns kubectl's stderr (where warnings are printed).
#[track_caller]
fn accepted(ns: &str, yaml: &str) -> String {
    let (ok, stderr) = apply(ns, yaml);
    assert!(ok, "expected acceptance, got:\n{stderr}\nobject:\n{yaml}");
    stderr
}

fn connector(name: &str, spec: &str) -> String {
    format!(
        "apiVersion: connectors.alauda.io/v1alpha1\nkind: Connector\nmetadata: {{name: {name}}}\nspec:\n{spec}"
    )
}

/// A Connector rule: the bad spec is rejected by the webhook with `message` exactly
/// (the whole denial), the good one is accepted under the same name.
#[track_caller]
fn connector_rule(prefix: &str, bad_spec: &str, message: &str, good_spec: &str) {
    let ns = namespace(prefix);
    rejected(
        &ns,
        &connector("c", bad_spec),
        &[&format!("{CONNECTOR_DENIED}{message}\n")],
    );
    accepted(&ns, &connector("c", good_spec));
}

#[test]
fn published_samples_are_accepted_unchanged() {
    let ns = namespace("adm-published");
    for file in [
        "connectorclass-git.yaml",
        "secret-git-basic-auth.yaml",
        "connector-git.yaml",
    ] {
        let stderr = accepted(&ns, &published(file));
        assert!(
            !stderr.contains("Warning"),
            "{file} drew warnings:\n{stderr}"
        );
    }
    // The demo's class and Connectors (plain-http addresses: accepted, with a warning).
    let demo_path = format!("{}/../demo/check-demo.yaml", env!("CARGO_MANIFEST_DIR"));
    let demo = std::fs::read_to_string(&demo_path).unwrap();
    accepted(&ns, &demo);
}

#[test]
fn connector_unknown_class() {
    connector_rule(
        "adm-unknown-class",
        &GOOD_SPEC.replace("adm-contract", "adm-nope"),
        r#"spec.connectorClassName: ConnectorClass "adm-nope" not found: create the class first"#,
        GOOD_SPEC,
    );
}

#[test]
fn connector_undeclared_param_names_the_declared_ones() {
    // The issue's own example, on the published git class.
    let good = "  connectorClassName: git\n  address: https://github.com\n  params:\n  - {name: sslVerify, value: \"true\"}\n  auth:\n    name: basicAuth\n    secretRef: {name: s}\n    params: [{name: repository, value: org/repo}]\n";
    let bad = good.replace(
        "  - {name: sslVerify, value: \"true\"}\n",
        "  - {name: sslVerify, value: \"true\"}\n  - {name: sslVerfy, value: \"false\"}\n",
    );
    connector_rule(
        "adm-undeclared-param",
        &bad,
        r#"spec.params[1].name: "sslVerfy" is not declared by ConnectorClass "git" (declared: sslVerify)"#,
        good,
    );
}

#[test]
fn connector_required_param_missing() {
    connector_rule(
        "adm-required-param",
        &GOOD_SPEC.replace(
            "  - {name: team, value: a}\n",
            "  - {name: mode, value: safe}\n",
        ),
        r#"spec.params: "team" is required by ConnectorClass "adm-contract" and missing"#,
        GOOD_SPEC,
    );
}

#[test]
fn connector_param_value_type_and_enum() {
    connector_rule(
        "adm-param-type",
        &GOOD_SPEC.replace(
            "  - {name: team, value: a}\n",
            "  - {name: team, value: a}\n  - {name: branches, value: main}\n",
        ),
        "spec.params[1].value: must be of type array as spec.params declares, not string",
        &GOOD_SPEC.replace(
            "  - {name: team, value: a}\n",
            "  - {name: team, value: a}\n  - {name: branches, value: [main, dev]}\n",
        ),
    );
    connector_rule(
        "adm-param-enum",
        &GOOD_SPEC.replace(
            "  - {name: team, value: a}\n",
            "  - {name: team, value: a}\n  - {name: mode, value: quick}\n",
        ),
        r#"spec.params[1].value: "quick" is not one of the allowed values: fast, safe"#,
        &GOOD_SPEC.replace(
            "  - {name: team, value: a}\n",
            "  - {name: team, value: a}\n  - {name: mode, value: safe}\n",
        ),
    );
}

#[test]
fn connector_required_address_extension_missing() {
    connector_rule(
        "adm-ext-required",
        &GOOD_SPEC.replace("name: webUrl", "name: sshUrl"),
        r#"spec.addressExtensions: "webUrl" is required by ConnectorClass "adm-contract" and missing"#,
        GOOD_SPEC,
    );
}

#[test]
fn connector_undeclared_address_extension() {
    connector_rule(
        "adm-ext-undeclared",
        &GOOD_SPEC.replace(
            "  - {name: webUrl, value: https://web.example.com}\n",
            "  - {name: webUrl, value: https://web.example.com}\n  - {name: apiUrl, value: https://api.example.com}\n",
        ),
        r#"spec.addressExtensions[1].name: "apiUrl" is not declared by ConnectorClass "adm-contract" (declared: webUrl, sshUrl)"#,
        GOOD_SPEC,
    );
}

#[test]
fn connector_address_extension_equal_to_address() {
    connector_rule(
        "adm-ext-same",
        &GOOD_SPEC.replace("https://web.example.com", "https://git.example.com"),
        r#"spec.addressExtensions[0].value: "https://git.example.com" must differ from spec.address"#,
        GOOD_SPEC,
    );
}

#[test]
fn connector_address_extension_not_a_url() {
    connector_rule(
        "adm-ext-url",
        &GOOD_SPEC.replace("https://web.example.com", "web.example.com"),
        r#"spec.addressExtensions[0].value: "web.example.com" is not an absolute URL (relative URL without a base)"#,
        GOOD_SPEC,
    );
}

#[test]
fn connector_auth_name_not_declared() {
    connector_rule(
        "adm-auth-name",
        &GOOD_SPEC.replace("name: basicAuth", "name: oauth2"),
        r#"spec.auth.name: "oauth2" is not an auth type of ConnectorClass "adm-contract" (declared: basicAuth)"#,
        GOOD_SPEC,
    );
}

#[test]
fn connector_auth_probe_param_missing() {
    connector_rule(
        "adm-auth-param",
        &GOOD_SPEC.replace("    params: [{name: repository, value: org/repo}]\n", ""),
        r#"spec.auth.params: "repository" is required by ConnectorClass "adm-contract" and missing"#,
        GOOD_SPEC,
    );
}

#[test]
fn connector_secret_in_another_namespace() {
    let ns = namespace("adm-cross-ns");
    let bad = GOOD_SPEC.replace("{name: s}", "{name: s, namespace: kube-system}");
    rejected(
        &ns,
        &connector("c", &bad),
        &[&format!(
            r#"{CONNECTOR_DENIED}spec.auth.secretRef.namespace: "kube-system" differs from the Connector's namespace "{ns}": a Connector may only use Secrets in its own namespace"#
        )],
    );
    // Naming its own namespace explicitly is fine.
    let own = GOOD_SPEC.replace("{name: s}", &format!("{{name: s, namespace: {ns}}}"));
    accepted(&ns, &connector("c", &own));
}

#[test]
fn connector_duplicate_param_names_are_refused_by_the_schema() {
    let ns = namespace("adm-dup-param");
    let bad = GOOD_SPEC.replace(
        "  - {name: team, value: a}\n",
        "  - {name: team, value: a}\n  - {name: team, value: b}\n",
    );
    rejected(
        &ns,
        &connector("c", &bad),
        &["spec.params[1]: Duplicate value"],
    );
    accepted(&ns, &connector("c", GOOD_SPEC));
}

#[test]
fn connector_address_must_be_an_http_url() {
    let ns = namespace("adm-address");
    rejected(
        &ns,
        &connector(
            "c",
            &GOOD_SPEC.replace("https://git.example.com", "git.example.com"),
        ),
        &["spec.address must be an absolute http or https URL"],
    );
    accepted(&ns, &connector("c", GOOD_SPEC));
}

#[test]
fn connector_credentials_over_plain_http_warn() {
    let ns = namespace("adm-warn-http");
    let stderr = accepted(
        &ns,
        &connector(
            "c",
            &GOOD_SPEC.replace("https://git.example.com", "http://git.example.com"),
        ),
    );
    assert!(
        stderr.contains(r#"Warning: spec.address: "http://git.example.com" is plain http: credentials from Secret "s" will cross the network unencrypted"#),
        "{stderr}"
    );
}

#[test]
fn connector_update_is_judged_on_what_it_changes() {
    let ns = namespace("adm-update");
    accepted(&ns, &connector("c", GOOD_SPEC));
    // A new typo is refused on UPDATE too...
    rejected(
        &ns,
        &connector(
            "c",
            &GOOD_SPEC.replace(
                "  - {name: team, value: a}\n",
                "  - {name: team, value: a}\n  - {name: teem, value: b}\n",
            ),
        ),
        &[r#"spec.params[1].name: "teem" is not declared"#],
    );
    // ...while metadata-only edits always pass.
    kubectl_ok(["label", "-n", &ns, "connector", "c", "owner=me"]);
}

/// The confused deputy (SPEC section 6): a user who may create and edit Connectors but
/// not read a Secret cannot have the operator send it to an address of their choice.
/// The user is a ServiceAccount with a bound token (not impersonation), so the
/// webhook's SubjectAccessReview carries exactly what the API server authenticated.
#[test]
fn connector_secret_the_author_may_not_get_is_refused() {
    let ns = namespace("adm-deputy");
    let user = format!("system:serviceaccount:{ns}:creator");
    kubectl_ok(["create", "serviceaccount", "creator", "-n", &ns]);
    let role = |secrets: &str| {
        format!(
            r#"apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {{name: connector-author}}
rules:
- apiGroups: [connectors.alauda.io]
  resources: [connectors]
  verbs: [get, list, watch, create, update, patch]
{secrets}---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {{name: connector-author}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: Role, name: connector-author}}
subjects:
- {{kind: ServiceAccount, name: creator, namespace: {ns}}}
"#
        )
    };
    let may_get = |names: &str| {
        format!(
            "- apiGroups: [\"\"]\n  resources: [secrets]\n  resourceNames: [{names}]\n  verbs: [get]\n"
        )
    };
    accepted(&ns, &role(""));
    let kubeconfig = sa_kubeconfig(&ns, "creator");
    let kubeconfig = kubeconfig.to_str().expect("utf-8 path").to_string();
    let as_author = |yaml: &str| {
        let out = kubectl_stdin(
            ["--kubeconfig", &kubeconfig, "apply", "-n", &ns, "-f", "-"],
            yaml,
        );
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    // Retried while the new RBAC reaches the authorizer's cache.
    let denied_with = |yaml: &str, expected: &str| {
        eventually(Duration::from_secs(20), || match as_author(yaml) {
            (false, stderr) if stderr.contains(expected) => Ok(()),
            (ok, stderr) => Err(format!("accepted: {ok}; {stderr}")),
        })
    };
    let admitted = |yaml: &str| {
        eventually(Duration::from_secs(20), || match as_author(yaml) {
            (true, _) => Ok(()),
            (false, stderr) => Err(stderr),
        })
    };
    let denial = |field: &str, secret: &str| {
        format!(
            r#"{CONNECTOR_DENIED}{field}: user "{user}" may not get Secret "{secret}" in namespace "{ns}""#
        )
    };

    // May create Connectors, may not get Secret "s": refused, naming field, Secret, user.
    denied_with(
        &connector("c", GOOD_SPEC),
        &denial("spec.auth.secretRef.name", "s"),
    );
    // Allowed to get "s" only: the CA Secret reference is checked too.
    accepted(&ns, &role(&may_get("s")));
    let with_ca = format!("{GOOD_SPEC}  caCertSecretRef: {{name: ca}}\n");
    denied_with(
        &connector("c", &with_ca),
        &denial("spec.caCertSecretRef.name", "ca"),
    );
    admitted(&connector("c", GOOD_SPEC));
    // UPDATE: switching to a Secret the author may not get is refused...
    denied_with(
        &connector("c", &GOOD_SPEC.replace("{name: s}", "{name: admin-token}")),
        &denial("spec.auth.secretRef.name", "admin-token"),
    );
    // ...while edits that keep the references pass, even for an author who has since
    // lost access to the Secret.
    accepted(&ns, &role(""));
    eventually(Duration::from_secs(20), || {
        let out = kubectl_stdin(
            [
                "--kubeconfig",
                &kubeconfig,
                "label",
                "-n",
                &ns,
                "connector",
                "c",
                "team=a",
                "--overwrite",
            ],
            "",
        );
        if out.status.success() {
            Ok(())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    });
    // The admin (who may get every Secret) is not affected.
    accepted(&ns, &connector("c2", &with_ca));
}

/// The shipped RBAC (`config/rbac`) lets the operator's ServiceAccount make the
/// webhook's SubjectAccessReviews.
#[test]
fn operator_rbac_allows_subject_access_reviews() {
    use connectors_e2e::process::{OPERATOR_NAMESPACE, ensure_operator_namespace};
    ensure_operator_namespace();
    let rbac = format!("{}/../config/rbac", env!("CARGO_MANIFEST_DIR"));
    kubectl_ok(["apply", "--server-side", "--force-conflicts", "-k", &rbac]);
    let account = format!("system:serviceaccount:{OPERATOR_NAMESPACE}:connectors-operator");
    eventually(Duration::from_secs(20), || {
        let out = connectors_e2e::kubectl([
            "auth",
            "can-i",
            "create",
            "subjectaccessreviews.authorization.k8s.io",
            "--as",
            &account,
        ]);
        let answer = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if answer == "yes" { Ok(()) } else { Err(answer) }
    });
}

/// A class rule: the bad class is rejected with every phrase, the corrected class is
/// accepted under the same name (then deleted).
#[track_caller]
fn class_rule(name: &str, bad: &str, phrases: &[&str], good: &str) {
    setup();
    rejected("", bad, phrases);
    accepted("", good);
    kubectl_ok(["delete", "connectorclass", name, "--wait=false"]);
}

fn class(name: &str, body: &str) -> String {
    format!(
        "apiVersion: connectors.alauda.io/v1alpha1\nkind: ConnectorClass\nmetadata: {{name: {name}}}\nspec:\n  address: {{type: string}}\n  livenessProbe: {{http: {{path: /}}}}\n{body}"
    )
}

const BASIC_AUTH: &str =
    "  auth:\n    types:\n    - {name: basicAuth, secretType: kubernetes.io/basic-auth}\n";

#[test]
fn class_cel_that_does_not_compile() {
    let good = class("adm-cel", "").replace(
        "livenessProbe: {http: {path: /}}",
        "livenessProbe: {http: {path: /, response: {cel: \"response.statusCode == 200\"}}}",
    );
    let bad = good.replace("response.statusCode == 200", "response.statusCode == ");
    class_rule(
        "adm-cel",
        &bad,
        &[CLASS_DENIED, "spec.livenessProbe.http.response.cel: "],
        &good,
    );
}

#[test]
fn class_rego_that_does_not_compile() {
    let good_rego = "package proxy\nauth := {\"position\": \"header\", \"auth\": {\"Authorization\": input.data.token}}\n";
    let body = |rego: &str| {
        let indented: String = rego.lines().map(|l| format!("          {l}\n")).collect();
        format!(
            "  auth:\n    types:\n    - name: token\n      secretType: Opaque\n      generator:\n        rego: |\n{indented}"
        )
    };
    let bad = class(
        "adm-rego",
        &body("package proxy\nauth := {\"position\": \"header\", \"auth\": {\n"),
    );
    class_rule(
        "adm-rego",
        &bad,
        &[CLASS_DENIED, "spec.auth.types[0].generator.rego: "],
        &class("adm-rego", &body(good_rego)),
    );
}

#[test]
fn class_template_that_does_not_compile() {
    let good = class(
        "adm-template",
        &format!(
            "{BASIC_AUTH}  authProbes:\n  - authName: basicAuth\n    probe:\n      http:\n        path: '/{{{{ .Connector.Name }}}}'\n"
        ),
    );
    let bad = good.replace("{{ .Connector.Name }}", "{{ .Connector.Name ");
    class_rule(
        "adm-template",
        &bad,
        &[CLASS_DENIED, "spec.authProbes[0].probe.http.path: "],
        &good,
    );
}

#[test]
fn class_auth_probe_names_undeclared_auth_type() {
    let good = class(
        "adm-authname",
        &format!(
            "{BASIC_AUTH}  authProbes:\n  - authName: basicAuth\n    probe: {{http: {{path: /x}}}}\n"
        ),
    );
    let bad = good.replace("authName: basicAuth", "authName: oauth2");
    class_rule(
        "adm-authname",
        &bad,
        &[
            "spec.authProbes[].authName must name an auth type declared in spec.auth.types[].name; not declared: oauth2",
        ],
        &good,
    );
}

#[test]
fn class_duplicate_names() {
    let good = class(
        "adm-dups",
        &format!(
            "{BASIC_AUTH}  params:\n  - {{name: a, type: string}}\n  authProbes:\n  - authName: basicAuth\n    probe: {{http: {{path: /x}}}}\n"
        ),
    );
    let dup_type = good.replace(
        "    - {name: basicAuth, secretType: kubernetes.io/basic-auth}\n",
        "    - {name: basicAuth, secretType: kubernetes.io/basic-auth}\n    - {name: basicAuth, secretType: Opaque}\n",
    );
    let dup_param = good.replace(
        "  - {name: a, type: string}\n",
        "  - {name: a, type: string}\n  - {name: a, type: array}\n",
    );
    let dup_probe = good.replace(
        "    probe: {http: {path: /x}}\n",
        "    probe: {http: {path: /x}}\n  - authName: basicAuth\n    probe: {http: {path: /y}}\n",
    );
    setup();
    rejected("", &dup_type, &["spec.auth.types[1]: Duplicate value"]);
    rejected("", &dup_param, &["spec.params[1]: Duplicate value"]);
    rejected("", &dup_probe, &["spec.authProbes[1]: Duplicate value"]);
    accepted("", &good);
    kubectl_ok(["delete", "connectorclass", "adm-dups", "--wait=false"]);
}

#[test]
fn class_probe_method_and_scheme() {
    let good = class(
        "adm-method",
        &format!(
            "{BASIC_AUTH}  authProbes:\n  - authName: basicAuth\n    probe: {{http: {{path: /x, method: POST, scheme: https}}}}\n"
        ),
    );
    setup();
    rejected(
        "",
        &good.replace("method: POST", "method: PUT"),
        &[r#"method must be GET or POST, not "PUT""#],
    );
    rejected(
        "",
        &good.replace("scheme: https", "scheme: ftp"),
        &[r#"scheme must be http or https, not "ftp""#],
    );
    accepted("", &good);
    kubectl_ok(["delete", "connectorclass", "adm-method", "--wait=false"]);
}

#[test]
fn class_warnings_are_printed_but_do_not_reject() {
    setup();
    let stderr = accepted(
        "",
        &class(
            "adm-warn",
            &format!(
                "{BASIC_AUTH}  authProbes:\n  - authName: basicAuth\n    probe: {{http: {{path: /x, scheme: http}}}}\n"
            ),
        ),
    );
    assert!(
        stderr.contains(
            r#"Warning: spec.authProbes[0].probe.http.scheme: "http" sends credentials unencrypted"#
        ),
        "{stderr}"
    );
    kubectl_ok(["delete", "connectorclass", "adm-warn", "--wait=false"]);
}

#[test]
fn webhook_metrics_count_reviews() {
    let operator = setup();
    let ns = namespace("adm-metrics");
    rejected(
        &ns,
        &connector("c", &GOOD_SPEC.replace("adm-contract", "adm-nope")),
        &[CONNECTOR_DENIED],
    );
    let denied = operator
        .metric(r#"connectors_operator_admission_reviews_total{kind="Connector",result="denied"}"#);
    assert!(denied >= 1.0, "denied reviews counted: {denied}");
}

#[test]
fn webhook_command_serves_admission_without_controllers() {
    use connectors_e2e::webhook::Registration;
    setup();
    let alone = Operator::start(OperatorOptions {
        identity: "e2e-webhook-alone".into(),
        command: "webhook",
        extra_args: vec![
            "--webhook-config".into(),
            "connectors-e2e-webhook-alone".into(),
        ],
        ..OperatorOptions::default()
    });
    let ns = TestNamespace::new("adm-alone");
    kubectl_ok(["label", "namespace", ns.name(), "e2e-webhook-alone=true"]);
    let _registration = Registration::new(
        "connectors-e2e-webhook-alone",
        alone.webhook_port,
        &Scope {
            connector_namespace_label: Some(("e2e-webhook-alone".into(), "true".into())),
            classes: false,
            class_label: None,
        },
    );
    wait_ca_bundles("connectors-e2e-webhook-alone", Duration::from_secs(30));
    rejected(
        &ns,
        &connector("c", &GOOD_SPEC.replace("adm-contract", "adm-nope")),
        &[r#"spec.connectorClassName: ConnectorClass "adm-nope" not found"#],
    );
    accepted(&ns, &connector("c", GOOD_SPEC));
    let metrics = alone.metrics();
    assert!(
        metrics.contains(
            r#"connectors_operator_admission_reviews_total{kind="Connector",result="denied"} 1"#
        ),
        "{metrics}"
    );
    assert_eq!(alone.metric("connectors_operator_reconciles_total"), 0.0);
    assert!(alone.alive());
}
