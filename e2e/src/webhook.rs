//! Registering the operator's admission webhook with the e2e apiserver by URL on
//! loopback (the operator runs as a local process, so there is no Service to point at).

use std::sync::Mutex;
use std::time::Duration;

use serde_json::{Value, json};

use crate::{eventually, get_json, kubectl, kubectl_stdin};

/// Which objects a registration sends to the webhook.
pub struct Scope {
    /// Namespaces (by label `key=value`) whose Connectors are validated; `None`: all.
    pub connector_namespace_label: Option<(String, String)>,
    /// Also validate ConnectorClasses: all of them, or (with `class_label`) only those
    /// labelled `key=value`.
    pub classes: bool,
    pub class_label: Option<(String, String)>,
}

/// A ValidatingWebhookConfiguration named `name` pointing at `https://127.0.0.1:port`,
/// `failurePolicy: Fail` (so a test can only pass when the webhook answered) and no
/// caBundle: the operator under test must inject it.
pub fn register(name: &str, port: u16, scope: &Scope) -> Value {
    let selector = match &scope.connector_namespace_label {
        Some((k, v)) => json!({"matchLabels": {k: v}}),
        None => json!({}),
    };
    let hook = |hook_name: &str, path: &str, resource: &str, scope_name: &str| {
        json!({
            "name": hook_name,
            "admissionReviewVersions": ["v1"],
            "sideEffects": "None",
            "failurePolicy": "Fail",
            "timeoutSeconds": 10,
            "clientConfig": {"url": format!("https://127.0.0.1:{port}{path}")},
            "rules": [{
                "apiGroups": ["connectors.alauda.io"], "apiVersions": ["v1alpha1"],
                "operations": ["CREATE", "UPDATE"], "resources": [resource], "scope": scope_name,
            }],
        })
    };
    let mut connector_hook = hook(
        "vconnector.connectors.alauda.io",
        "/validate/connectors",
        "connectors",
        "Namespaced",
    );
    connector_hook["namespaceSelector"] = selector;
    let mut webhooks = vec![connector_hook];
    if scope.classes {
        let mut class_hook = hook(
            "vconnectorclass.connectors.alauda.io",
            "/validate/connectorclasses",
            "connectorclasses",
            "Cluster",
        );
        if let Some((k, v)) = &scope.class_label {
            class_hook["objectSelector"] = json!({"matchLabels": {k: v}});
        }
        webhooks.push(class_hook);
    }
    let config = json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": name},
        "webhooks": webhooks,
    });
    let out = kubectl_stdin(["create", "-f", "-"], &config.to_string());
    assert!(
        out.status.success(),
        "creating webhook configuration {name}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    config
}

/// Waits until every webhook of configuration `name` carries a caBundle; returns them.
pub fn wait_ca_bundles(name: &str, timeout: Duration) -> Vec<String> {
    eventually(timeout, || {
        let config = get_json("", "validatingwebhookconfiguration", name);
        let bundles: Vec<String> = config["webhooks"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|w| w["clientConfig"]["caBundle"].as_str())
            .map(String::from)
            .collect();
        let count = config["webhooks"].as_array().map_or(0, Vec::len);
        if count > 0 && bundles.len() == count {
            Ok(bundles)
        } else {
            Err(format!("caBundle not injected yet: {config:#}"))
        }
    })
}

pub fn delete(name: &str) {
    let _ = kubectl([
        "delete",
        "validatingwebhookconfiguration",
        name,
        "--ignore-not-found",
        "--wait=true",
    ]);
}

/// A registration that lives as long as the test binary: deleted when the process
/// exits normally (libtest returns from `main` even when tests fail), so the next test
/// binary never meets a `failurePolicy: Fail` webhook whose operator is gone.
pub fn register_for_process(name: &str, port: u16, scope: &Scope) {
    static NAMES: Mutex<Vec<String>> = Mutex::new(Vec::new());
    extern "C" fn delete_all() {
        if let Ok(names) = NAMES.lock() {
            for name in names.iter() {
                delete(name);
            }
        }
    }
    unsafe extern "C" {
        fn atexit(callback: extern "C" fn()) -> std::ffi::c_int;
    }
    delete(name);
    let mut names = NAMES.lock().expect("webhook names");
    if names.is_empty() {
        // SAFETY: registers a plain function with the C runtime; it runs once at exit.
        let rc = unsafe { atexit(delete_all) };
        assert_eq!(rc, 0, "atexit");
    }
    names.push(name.to_string());
    drop(names);
    register(name, port, scope);
}

/// A registration deleted when dropped (also when the test panics).
pub struct Registration(pub String);

impl Registration {
    pub fn new(name: &str, port: u16, scope: &Scope) -> Self {
        delete(name);
        register(name, port, scope);
        Registration(name.to_string())
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        delete(&self.0);
    }
}
