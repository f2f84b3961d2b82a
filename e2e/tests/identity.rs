//! Identity providers (SPEC-identity sections 1, 2): Dex `Connector`s
//! (`dex.coreos.com/v1`) health-checked by the operator (a real process) against a
//! real OpenLDAP (`slapd`, e2e/src/ldap.rs) on loopback, on the real apiserver.
//!
//! Tests run one at a time, each with its own operator (its own probe interval, no
//! leader election), its own slapd and namespace.

use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use base64::Engine as _;
use connectors_e2e::ldap::{ADMIN_DN, GROUPS_DN, PEOPLE_DN, Slapd};
use connectors_e2e::oidc::OidcProvider;
use connectors_e2e::process::{Operator, OperatorOptions};
use connectors_e2e::{
    TestNamespace, apply_yaml, describe, get_json, kubectl, kubectl_ok, wait_condition,
};
use serde_json::{Value, json};

const RESOURCE: &str = "connectors.dex.coreos.com";
const TIMEOUT: Duration = Duration::from_secs(45);

fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// The Dex CRD from `crds/dex/` (not in `crds/`, so `install_crds` leaves it out),
/// before the operator starts (without it the identity controller stays idle).
fn install_dex_crd() {
    static DONE: std::sync::OnceLock<()> = std::sync::OnceLock::new();
    DONE.get_or_init(|| {
        connectors_e2e::install_crds();
        let file = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../crds/dex/dex.coreos.com.yaml"
        );
        let out = kubectl([
            "apply",
            "--server-side",
            "--force-conflicts",
            "--field-manager=e2e-crds",
            "-f",
            file,
        ]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "applying the Dex CRD: {stderr}");
        assert!(!stderr.to_ascii_lowercase().contains("warning"), "{stderr}");
        connectors_e2e::wait("", "crd", RESOURCE, "Established", TIMEOUT);
        connectors_e2e::eventually(TIMEOUT, || {
            let out = kubectl(["get", RESOURCE, "--all-namespaces", "-o", "name"]);
            if out.status.success() {
                Ok(())
            } else {
                Err(String::from_utf8_lossy(&out.stderr).into_owned())
            }
        });
    });
}

fn operator(name: &str, interval: u64) -> Operator {
    install_dex_crd();
    Operator::start(OperatorOptions {
        identity: format!("e2e-identity-{name}"),
        probe_interval_seconds: interval,
        probe_timeout_seconds: 3,
        extra_args: vec!["--leader-elect=false".into(), "--webhook=false".into()],
        ..OperatorOptions::default()
    })
}

fn sentinel(what: &str) -> String {
    format!("S3ntinel-{what}-{:08x}", rand::random::<u32>())
}

fn b64(text: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(text)
}

/// An LDAP config against `slapd`: LDAPS with the test CA, bind as the admin with
/// the password from Secret `bind`/`password`.
fn ldap_config(slapd: &Slapd) -> Value {
    json!({
        "host": slapd.ldaps_host(),
        "rootCAData": b64(&slapd.ca_pem),
        "bindDN": ADMIN_DN,
        "bindPWRef": {"name": "bind", "key": "password"},
        "userSearch": {
            "baseDN": PEOPLE_DN,
            "filter": "(objectClass=inetOrgPerson)",
            "username": "uid", "idAttr": "uid", "emailAttr": "mail", "nameAttr": "cn",
        },
        "groupSearch": {
            "baseDN": GROUPS_DN,
            "filter": "(objectClass=groupOfNames)",
            "userMatchers": [{"userAttr": "DN", "groupAttr": "member"}],
            "nameAttr": "cn",
        },
    })
}

fn connector(name: &str, config: &Value) -> String {
    json!({
        "apiVersion": "dex.coreos.com/v1",
        "kind": "Connector",
        "metadata": {"name": name},
        "id": name,
        "name": "Corp LDAP",
        "type": "ldap",
        "spec": {"config": config},
    })
    .to_string()
}

fn bind_secret(password: &str) -> String {
    json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "bind"},
        "stringData": {"password": password},
    })
    .to_string()
}

#[track_caller]
fn wait_idp(ns: &str, name: &str, type_: &str, status: &str, reason: &str) -> Value {
    wait_condition(ns, RESOURCE, name, type_, status, reason, TIMEOUT)
}

/// No sentinel in the object, `kubectl describe` (events included), the namespace's
/// events, the operator's metrics or its log.
#[track_caller]
fn assert_never_shown(ns: &str, name: &str, op: &Operator, sentinels: &[&str]) {
    let object = kubectl_ok(["get", RESOURCE, name, "-n", ns, "-o", "yaml"]);
    let described = describe(ns, RESOURCE, name);
    let events = kubectl_ok(["get", "events", "-n", ns, "-o", "yaml"]);
    let logs = op.logs();
    let metrics = op.metrics();
    assert!(!metrics.is_empty(), "no metrics read");
    for s in sentinels {
        assert!(!metrics.contains(s), "sentinel in the metrics");
        assert!(!object.contains(s), "sentinel in the object: {object}");
        assert!(!described.contains(s), "sentinel in describe: {described}");
        assert!(!events.contains(s), "sentinel in events");
        assert!(
            !logs.contains(s),
            "sentinel in the operator log {}",
            op.log.display()
        );
    }
}

/// Good config: Ready; a wrong password in the Secret: `AuthReady False
/// InvalidCredentials`, seen long before the next periodic check (interval 60 s), so
/// the Secret edit itself triggered it; fixed: Ready again. The passwords never show.
#[test]
fn ldap_ready_wrong_password_and_a_prompt_secret_edit() {
    let _serial = serial();
    let good = sentinel("bind");
    let slapd = Slapd::start(&good);
    let op = operator("password", 60);
    let ns = TestNamespace::new("idp-ldap");
    apply_yaml(&ns, &bind_secret(&good));
    apply_yaml(&ns, &connector("corp", &ldap_config(&slapd)));
    let c = wait_idp(&ns, "corp", "Ready", "True", "");
    for type_ in [
        "ConfigValid",
        "SecretReady",
        "LivenessReady",
        "AuthReady",
        "SearchReady",
    ] {
        assert_eq!(
            connectors_e2e::condition(&c, type_).unwrap().0,
            "True",
            "{type_}: {c}"
        );
    }
    assert_eq!(
        c["status"]["observedGeneration"],
        c["metadata"]["generation"]
    );
    let printed = kubectl_ok(["get", RESOURCE, "-n", &ns]);
    assert!(
        printed.contains("TYPE") && printed.contains("ldap"),
        "{printed}"
    );

    let wrong = sentinel("wrong");
    let edited = Instant::now();
    apply_yaml(&ns, &bind_secret(&wrong));
    let c = wait_idp(&ns, "corp", "AuthReady", "False", "InvalidCredentials");
    let took = edited.elapsed();
    assert_eq!(
        connectors_e2e::condition(&c, "Ready").unwrap().1,
        "InvalidCredentials"
    );
    assert!(
        took < Duration::from_secs(30),
        "the Secret edit was seen after {took:?}"
    );
    eprintln!(
        "wrong bind password seen {:.1}s after the Secret edit (interval 60s)",
        took.as_secs_f64()
    );

    apply_yaml(&ns, &bind_secret(&good));
    wait_idp(&ns, "corp", "Ready", "True", "");
    assert_never_shown(&ns, "corp", &op, &[&good, &wrong]);
    op.assert_alive_without_panic();
}

/// A wrong base DN, then a filter that matches nobody: `SearchReady False
/// NoUsersFound`; fixed: Ready. Over StartTLS on the plain port.
#[test]
fn ldap_search_finds_no_users_for_a_wrong_base_or_filter() {
    let _serial = serial();
    let password = sentinel("bind");
    let slapd = Slapd::start(&password);
    let op = operator("search", 3);
    let ns = TestNamespace::new("idp-search");
    apply_yaml(&ns, &bind_secret(&password));
    let mut config = ldap_config(&slapd);
    config["host"] = json!(slapd.ldap_host());
    config["startTLS"] = json!(true);
    apply_yaml(&ns, &connector("corp", &config));
    let c = wait_idp(&ns, "corp", "Ready", "True", "");
    let liveness = connectors_e2e::condition(&c, "LivenessReady").unwrap().2;
    assert!(liveness.contains("StartTLS"), "{liveness}");

    config["userSearch"]["baseDN"] = json!("ou=nobody,dc=example,dc=org");
    apply_yaml(&ns, &connector("corp", &config));
    wait_idp(&ns, "corp", "SearchReady", "False", "NoUsersFound");
    config["userSearch"]["baseDN"] = json!(PEOPLE_DN);
    config["userSearch"]["filter"] = json!("(uid=nobody-by-that-name)");
    apply_yaml(&ns, &connector("corp", &config));
    let c = wait_idp(&ns, "corp", "SearchReady", "False", "NoUsersFound");
    assert_eq!(
        connectors_e2e::condition(&c, "Ready").unwrap().1,
        "NoUsersFound"
    );
    config["userSearch"]["filter"] = json!("(objectClass=person)");
    apply_yaml(&ns, &connector("corp", &config));
    wait_idp(&ns, "corp", "Ready", "True", "");
    assert_never_shown(&ns, "corp", &op, &[&password]);
}

/// Without the test CA the certificate is untrusted (`LivenessReady False
/// TLSFailed`); with it Ready; the server stopped: `ConnectionFailed`; back: Ready.
#[test]
fn ldap_untrusted_certificate_and_stopped_server() {
    let _serial = serial();
    let password = sentinel("bind");
    let mut slapd = Slapd::start(&password);
    let op = operator("liveness", 3);
    let ns = TestNamespace::new("idp-live");
    apply_yaml(&ns, &bind_secret(&password));
    let mut config = ldap_config(&slapd);
    config.as_object_mut().unwrap().remove("rootCAData");
    apply_yaml(&ns, &connector("corp", &config));
    let c = wait_idp(&ns, "corp", "LivenessReady", "False", "TLSFailed");
    eprintln!(
        "untrusted: {:?}",
        connectors_e2e::condition(&c, "LivenessReady")
    );
    apply_yaml(&ns, &connector("corp", &ldap_config(&slapd)));
    wait_idp(&ns, "corp", "Ready", "True", "");

    slapd.stop();
    let stopped = Instant::now();
    wait_idp(&ns, "corp", "LivenessReady", "False", "ConnectionFailed");
    eprintln!(
        "stopped server seen after {:.1}s (interval 3s)",
        stopped.elapsed().as_secs_f64()
    );
    slapd.resume();
    let resumed = Instant::now();
    wait_idp(&ns, "corp", "Ready", "True", "");
    eprintln!(
        "recovery seen after {:.1}s",
        resumed.elapsed().as_secs_f64()
    );
    assert_never_shown(&ns, "corp", &op, &[&password]);
    op.assert_alive_without_panic();
}

/// The published Alauda shape (namespace `cpaas-system`, label
/// `cpaas.io/idp.version: v2`, `id` equal to the name, `spec.config`) and a Dex
/// object with only the legacy `config` bytes (inline password: Ready, with the
/// `InlineSecret` warning) apply unchanged; a `github` Connector is left alone.
#[test]
fn published_shapes_apply_and_other_types_are_left_alone() {
    let _serial = serial();
    let password = sentinel("inline");
    let slapd = Slapd::start(&password);
    let op = operator("shapes", 5);
    let _ = kubectl(["create", "namespace", "cpaas-system"]);
    let suffix = format!("{:06x}", rand::random::<u32>() & 0xffffff);
    let alauda = format!("ldap-{suffix}");
    let mut config = ldap_config(&slapd);
    let object = json!({
        "apiVersion": "dex.coreos.com/v1", "kind": "Connector",
        "metadata": {"name": alauda, "namespace": "cpaas-system",
                     "labels": {"cpaas.io/idp.version": "v2"}},
        "id": alauda, "name": "LDAP", "type": "ldap",
        "spec": {"config": config},
    });
    apply_yaml("", &object.to_string());
    apply_yaml("cpaas-system", &bind_secret(&password));
    wait_idp("cpaas-system", &alauda, "Ready", "True", "");
    kubectl_ok(["delete", RESOURCE, &alauda, "-n", "cpaas-system"]);
    kubectl_ok(["delete", "secret", "bind", "-n", "cpaas-system"]);

    let ns = TestNamespace::new("idp-shapes");
    let obj = config.as_object_mut().unwrap();
    obj.remove("bindPWRef");
    obj.insert("bindPW".into(), json!(password));
    let legacy = json!({
        "apiVersion": "dex.coreos.com/v1", "kind": "Connector",
        "metadata": {"name": "legacy"},
        "id": "legacy", "name": "Legacy LDAP", "type": "ldap",
        "config": b64(&config.to_string()),
    });
    apply_yaml(&ns, &legacy.to_string());
    let c = wait_idp(&ns, "legacy", "Ready", "True", "");
    let valid = connectors_e2e::condition(&c, "ConfigValid").unwrap();
    assert_eq!(
        (valid.0.as_str(), valid.1.as_str()),
        ("True", "InlineSecret"),
        "{c}"
    );

    let github = json!({
        "apiVersion": "dex.coreos.com/v1", "kind": "Connector",
        "metadata": {"name": "github"},
        "id": "github", "name": "GitHub", "type": "github",
        "spec": {"config": {"clientID": "x", "clientSecret": "y"}},
    });
    apply_yaml(&ns, &github.to_string());
    let c = wait_idp(&ns, "github", "Ready", "Unknown", "UnsupportedType");
    assert_eq!(
        c["status"]["conditions"].as_array().map(Vec::len),
        Some(1),
        "{c}"
    );
    // The password is inline in the object, so only the log and events are checked.
    assert!(!op.logs().contains(&password), "inline password in the log");
    let events = kubectl_ok(["get", "events", "-n", &ns, "-o", "yaml"]);
    assert!(!events.contains(&password));
    let status = c["status"].to_string() + &get_json(&ns, RESOURCE, "legacy")["status"].to_string();
    assert!(!status.contains(&password));
}

/// At rest, with a 2 s interval, a Ready Connector's resourceVersion does not change
/// for 30 s and the operator sends no status write for it.
#[test]
fn at_rest_no_write_for_30_seconds() {
    let _serial = serial();
    let password = sentinel("bind");
    let slapd = Slapd::start(&password);
    let op = operator("rest", 2);
    let ns = TestNamespace::new("idp-rest");
    apply_yaml(&ns, &bind_secret(&password));
    apply_yaml(&ns, &connector("corp", &ldap_config(&slapd)));
    wait_idp(&ns, "corp", "Ready", "True", "");
    std::thread::sleep(Duration::from_secs(3));
    let before = get_json(&ns, RESOURCE, "corp")["metadata"]["resourceVersion"].clone();
    let writes = |op: &Operator| {
        op.count_log_lines(&[
            "\"PATCH\"",
            &format!("/namespaces/{ns}/connectors/corp/status"),
        ])
    };
    let writes_before = writes(&op);
    let binds_before = op.count_log_lines(&["identity connector status written", ns.name()]);
    std::thread::sleep(Duration::from_secs(30));
    let after = get_json(&ns, RESOURCE, "corp")["metadata"]["resourceVersion"].clone();
    assert_eq!(before, after, "the Connector was written at rest");
    assert_eq!(writes(&op), writes_before, "status PATCHes at rest");
    assert_eq!(
        op.count_log_lines(&["identity connector status written", ns.name()]),
        binds_before
    );
    eprintln!("at rest: resourceVersion {before} unchanged for 30s with a 2s interval");
    op.assert_alive_without_panic();
}

fn oidc_connector(name: &str, issuer: &str, provider: &OidcProvider) -> String {
    json!({
        "apiVersion": "dex.coreos.com/v1",
        "kind": "Connector",
        "metadata": {"name": name},
        "id": name,
        "name": "Corp SSO",
        "type": "oidc",
        "spec": {"config": {
            "issuer": issuer,
            "clientID": provider.client_id,
            "clientSecretRef": {"name": "sso", "key": "clientSecret"},
            "redirectURI": provider.redirect_uri,
            "scopes": ["openid", "email"],
        }},
    })
    .to_string()
}

fn client_secret(secret: &str) -> String {
    json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "sso"},
        "stringData": {"clientSecret": secret},
    })
    .to_string()
}

/// A real OIDC provider (e2e/src/oidc.rs): Ready; a wrong client secret:
/// `AuthReady False InvalidClientCredentials`; an issuer that differs from the one the
/// provider announces: `IssuerMismatch`; the provider down: `LivenessReady False`;
/// back: Ready. The client secrets never show.
#[test]
fn oidc_ready_wrong_secret_issuer_mismatch_and_provider_down() {
    let _serial = serial();
    let good = sentinel("client");
    let mut provider = OidcProvider::start("dex-e2e", &good);
    let op = operator("oidc", 3);
    let ns = TestNamespace::new("idp-oidc");
    apply_yaml(&ns, &client_secret(&good));
    apply_yaml(&ns, &oidc_connector("sso", &provider.issuer, &provider));
    let c = wait_idp(&ns, "sso", "Ready", "True", "");
    assert_eq!(
        connectors_e2e::condition(&c, "SearchReady").unwrap().1,
        "NonSearch"
    );

    let wrong = sentinel("wrong-client");
    apply_yaml(&ns, &client_secret(&wrong));
    let c = wait_idp(&ns, "sso", "AuthReady", "False", "InvalidClientCredentials");
    assert_eq!(
        connectors_e2e::condition(&c, "Ready").unwrap().1,
        "InvalidClientCredentials"
    );
    apply_yaml(&ns, &client_secret(&good));
    wait_idp(&ns, "sso", "Ready", "True", "");

    // The same provider reached as localhost announces 127.0.0.1: not the same issuer.
    let moved = format!("http://localhost:{}", provider.port);
    apply_yaml(&ns, &oidc_connector("sso", &moved, &provider));
    wait_idp(&ns, "sso", "LivenessReady", "False", "IssuerMismatch");
    apply_yaml(&ns, &oidc_connector("sso", &provider.issuer, &provider));
    wait_idp(&ns, "sso", "Ready", "True", "");

    provider.stop();
    let c = wait_idp(&ns, "sso", "LivenessReady", "False", "ConnectionFailed");
    eprintln!(
        "provider down: {:?}",
        connectors_e2e::condition(&c, "LivenessReady")
    );
    provider.resume();
    wait_idp(&ns, "sso", "Ready", "True", "");
    assert_never_shown(&ns, "sso", &op, &[&good, &wrong]);
    op.assert_alive_without_panic();
}

/// A webhook configuration for Dex Connectors in one namespace, pointing at the
/// operator's webhook by URL; deleted on drop.
struct DexWebhook(String);

impl DexWebhook {
    fn register(name: &str, port: u16, ns: &str) -> Self {
        connectors_e2e::webhook::delete(name);
        let config = json!({
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingWebhookConfiguration",
            "metadata": {"name": name},
            "webhooks": [{
                "name": "vdexconnector.connectors.alauda.io",
                "admissionReviewVersions": ["v1"],
                "sideEffects": "None",
                "failurePolicy": "Fail",
                "timeoutSeconds": 10,
                "clientConfig": {"url": format!("https://127.0.0.1:{port}/validate/dex-connectors")},
                "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": ns}},
                "rules": [{
                    "apiGroups": ["dex.coreos.com"], "apiVersions": ["v1"],
                    "operations": ["CREATE", "UPDATE"], "resources": ["connectors"],
                    "scope": "Namespaced",
                }],
            }],
        });
        let out = connectors_e2e::kubectl_stdin(["create", "-f", "-"], &config.to_string());
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        DexWebhook(name.to_string())
    }
}

impl Drop for DexWebhook {
    fn drop(&mut self) {
        connectors_e2e::webhook::delete(&self.0);
    }
}

/// `kubectl apply` of a Dex Connector: (success, stderr).
fn apply_dex(ns: &str, object: &Value) -> (bool, String) {
    let out = connectors_e2e::kubectl_stdin(
        [
            "-n",
            ns,
            "apply",
            "--server-side",
            "--field-manager=e2e",
            "-f",
            "-",
        ],
        &object.to_string(),
    );
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The admission webhook refuses an invalid filter and an `id` unlike the name, with
/// the field path, and admits an inline bind password with a warning (which does not
/// show the password).
#[test]
fn admission_refuses_invalid_filters_with_the_field_path() {
    let _serial = serial();
    install_dex_crd();
    let name = format!("e2e-identity-{}", std::process::id());
    let op = Operator::start(OperatorOptions {
        identity: "e2e-identity-admission".into(),
        extra_args: vec![
            "--leader-elect=false".into(),
            "--identity-controller=false".into(),
            format!("--webhook-config={name}"),
        ],
        ..OperatorOptions::default()
    });
    let ns = TestNamespace::new("idp-admit");
    let _hook = DexWebhook::register(&name, op.webhook_port, &ns);
    connectors_e2e::webhook::wait_ca_bundles(&name, TIMEOUT);
    let password = sentinel("inline");
    let mut object = json!({
        "apiVersion": "dex.coreos.com/v1", "kind": "Connector",
        "metadata": {"name": "corp"}, "id": "corp", "name": "Corp", "type": "ldap",
        "spec": {"config": {
            "host": "ldap.example.org:636",
            "bindDN": ADMIN_DN, "bindPW": password,
            "userSearch": {"baseDN": PEOPLE_DN, "filter": "(objectClass=person",
                           "username": "uid", "idAttr": "uid", "emailAttr": "mail"},
        }},
    });
    // The webhook answers once its certificate is trusted; retry until it does.
    let refused = connectors_e2e::eventually(TIMEOUT, || match apply_dex(&ns, &object) {
        (false, stderr) if stderr.contains("spec.config.userSearch.filter") => Ok(stderr),
        (ok, stderr) => Err(format!("applied: {ok}: {stderr}")),
    });
    assert!(refused.contains("not a valid LDAP filter"), "{refused}");
    assert!(!refused.contains(&password), "{refused}");

    object["id"] = json!("other");
    object["spec"]["config"]["userSearch"]["filter"] = json!("(objectClass=person)");
    let (ok, stderr) = apply_dex(&ns, &object);
    assert!(
        !ok && stderr.contains("id: \"other\" must equal metadata.name"),
        "{stderr}"
    );

    object["id"] = json!("corp");
    let (ok, stderr) = apply_dex(&ns, &object);
    assert!(ok, "{stderr}");
    assert!(stderr.contains("Warning: spec.config.bindPW"), "{stderr}");
    assert!(!stderr.contains(&password), "{stderr}");
    assert!(!op.logs().contains(&password));
}

/// `connectors-operator check -f` judges Dex Connectors from files with their
/// Secrets, against the real slapd: exit 0 when Ready, 1 with `InvalidCredentials`
/// for a wrong password; the password never printed.
#[test]
fn check_cli_judges_ldap_connectors_from_files() {
    let _serial = serial();
    let good = sentinel("bind");
    let slapd = Slapd::start(&good);
    let dir = std::env::temp_dir().join(format!("connectors-e2e-idp-check-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let run = |password: &str| {
        let file = dir.join("idp.yaml");
        let docs = format!(
            "{}\n---\n{}\n",
            bind_secret(password),
            connector("corp", &ldap_config(&slapd))
        );
        std::fs::write(&file, docs).expect("write");
        let out = std::process::Command::new(
            connectors_e2e::process::bin_dir().join("connectors-operator"),
        )
        .args(["check", "-f"])
        .arg(&file)
        .output()
        .expect("run check");
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        (out.status.code(), text)
    };
    let (code, text) = run(&good);
    assert_eq!(code, Some(0), "{text}");
    assert!(
        text.contains("API Version:  dex.coreos.com/v1") && text.contains("SearchReady"),
        "{text}"
    );
    let wrong = sentinel("wrong");
    let (code, text) = run(&wrong);
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("InvalidCredentials"), "{text}");
    assert!(!text.contains(&good) && !text.contains(&wrong), "{text}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// The operator needs nothing beyond `config/rbac` plus `config/identity/rbac` for
/// Dex Connectors: run as that ServiceAccount (bound token), it reads the bind
/// Secret, writes the status and events, with no RBAC denial in its log. (Applying
/// the identity RBAC also keeps later tests that run the operator as this account
/// free of denials for the Dex CRD this binary installed.)
#[test]
fn the_operator_checks_dex_connectors_with_its_own_rbac() {
    let _serial = serial();
    install_dex_crd();
    connectors_e2e::process::ensure_operator_namespace();
    let config = concat!(env!("CARGO_MANIFEST_DIR"), "/../config");
    for dir in ["rbac", "identity/rbac"] {
        kubectl_ok([
            "apply",
            "--server-side",
            "--force-conflicts",
            "-k",
            &format!("{config}/{dir}"),
        ]);
    }
    let password = sentinel("bind");
    let slapd = Slapd::start(&password);
    let ns = TestNamespace::new("idp-rbac");
    let op = Operator::start(OperatorOptions {
        identity: "e2e-identity-rbac".into(),
        probe_interval_seconds: 2,
        kubeconfig: Some(connectors_e2e::sa_kubeconfig(
            connectors_e2e::process::OPERATOR_NAMESPACE,
            "connectors-operator",
        )),
        extra_args: vec!["--lease-name".into(), format!("lease-{ns}")],
        ..OperatorOptions::default()
    });
    // A wrong password first: a Warning, then the Normal `Ready` event when it comes
    // back (a first Ready records no event, SPEC section 5), so both kinds of event
    // are written with this RBAC.
    let wrong = sentinel("wrong-bind");
    apply_yaml(&ns, &bind_secret(&wrong));
    apply_yaml(&ns, &connector("corp", &ldap_config(&slapd)));
    wait_idp(&ns, "corp", "AuthReady", "False", "InvalidCredentials");
    apply_yaml(&ns, &bind_secret(&password));
    wait_idp(&ns, "corp", "Ready", "True", "");
    connectors_e2e::eventually(TIMEOUT, || {
        let events = kubectl_ok(["get", "events", "-n", &ns, "-o", "json"]);
        if events.contains("Connector is ready") {
            Ok(())
        } else {
            Err(events)
        }
    });
    std::thread::sleep(Duration::from_secs(3));
    let logs = op.logs();
    let denied: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("forbidden") && l.contains("cannot"))
        .collect();
    assert!(denied.is_empty(), "RBAC denied: {:?}", denied.first());
    assert_never_shown(&ns, "corp", &op, &[&password, &wrong]);
}

fn identity_lease_holder(lease: &str) -> String {
    connectors_e2e::try_get_json(
        connectors_e2e::process::OPERATOR_NAMESPACE,
        "lease",
        &format!("{lease}-identity"),
    )
    .ok()
    .flatten()
    .and_then(|l| l["spec"]["holderIdentity"].as_str().map(str::to_string))
    .unwrap_or_default()
}

/// Two operators: only the holder of the identity Lease (`<lease>-identity`) writes
/// Dex Connector statuses; after a SIGKILL of the holder the standby takes the Lease
/// and sees a Secret edit made meanwhile.
#[test]
fn only_the_identity_lease_holder_writes_and_a_standby_takes_over() {
    let _serial = serial();
    let password = sentinel("bind");
    let slapd = Slapd::start(&password);
    install_dex_crd();
    let ns = TestNamespace::new("idp-leader");
    let lease = format!("lease-{ns}");
    let options = |name: &str| OperatorOptions {
        identity: name.into(),
        probe_interval_seconds: 2,
        lease_duration_seconds: 6,
        extra_args: vec![
            "--lease-name".into(),
            lease.clone(),
            "--webhook=false".into(),
        ],
        ..OperatorOptions::default()
    };
    let mut first = Operator::start(options("idp-first"));
    connectors_e2e::eventually(TIMEOUT, || match identity_lease_holder(&lease).as_str() {
        "idp-first" => Ok(()),
        other => Err(format!("identity lease held by {other:?}")),
    });
    let second = Operator::start(options("idp-second"));
    apply_yaml(&ns, &bind_secret(&password));
    apply_yaml(&ns, &connector("corp", &ldap_config(&slapd)));
    wait_idp(&ns, "corp", "Ready", "True", "");
    std::thread::sleep(Duration::from_secs(3));
    let written =
        |op: &Operator| op.count_log_lines(&["identity connector status written", ns.name()]);
    assert!(written(&first) >= 1, "the holder wrote nothing");
    assert_eq!(written(&second), 0, "the standby wrote a status");

    first.kill();
    let killed = Instant::now();
    let wrong = sentinel("wrong");
    apply_yaml(&ns, &bind_secret(&wrong));
    wait_idp(&ns, "corp", "AuthReady", "False", "InvalidCredentials");
    assert_eq!(identity_lease_holder(&lease), "idp-second");
    eprintln!(
        "identity hand-over after SIGKILL: InvalidCredentials written {:.1}s after the kill (lease 6s)",
        killed.elapsed().as_secs_f64()
    );
    assert!(written(&second) >= 1);
    second.assert_alive_without_panic();
}

/// Deletes a global CA Secret at the end of a test (also on panic).
struct GlobalCa(String);

impl Drop for GlobalCa {
    fn drop(&mut self) {
        let _ = kubectl([
            "delete",
            "secret",
            &self.0,
            "-n",
            connectors_e2e::process::OPERATOR_NAMESPACE,
            "--ignore-not-found",
        ]);
    }
}

/// Trust from a labelled global CA Secret in the operator's namespace: the untrusted
/// certificate (`TLSFailed`) becomes trusted as soon as the Secret appears (its watch
/// re-checks every Dex Connector; interval 60 s), and untrusted again when it goes.
#[test]
fn a_global_ca_secret_makes_the_certificate_trusted() {
    let _serial = serial();
    let password = sentinel("bind");
    let slapd = Slapd::start(&password);
    let op = operator("global-ca", 60);
    let ns = TestNamespace::new("idp-global-ca");
    apply_yaml(&ns, &bind_secret(&password));
    let mut config = ldap_config(&slapd);
    config.as_object_mut().unwrap().remove("rootCAData");
    apply_yaml(&ns, &connector("corp", &config));
    wait_idp(&ns, "corp", "LivenessReady", "False", "TLSFailed");
    let name = format!("idp-ca-{}", ns.name());
    let secret = json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": name, "labels": {"connectors.cpaas.io/ca-cert": "true"}},
        "stringData": {"ca.crt": slapd.ca_pem},
    });
    let guard = GlobalCa(name);
    let added = Instant::now();
    apply_yaml(
        connectors_e2e::process::OPERATOR_NAMESPACE,
        &secret.to_string(),
    );
    wait_idp(&ns, "corp", "Ready", "True", "");
    let took = added.elapsed();
    assert!(took < Duration::from_secs(30), "seen after {took:?}");
    eprintln!(
        "global CA seen {:.1}s after the Secret appeared (interval 60s)",
        took.as_secs_f64()
    );
    drop(guard);
    wait_idp(&ns, "corp", "LivenessReady", "False", "TLSFailed");
    op.assert_alive_without_panic();
}
