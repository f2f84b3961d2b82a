//! The API gateway (`connectors-operator api`) as a process against the real
//! apiserver (SPEC-proxy section 8): tokens from `kubectl create token`, real RBAC,
//! curl as the client, the demo tool as tool and class API (its request log shows
//! what each received).

use std::time::Duration;

use base64::Engine as _;
use connectors_e2e::fixtures::{BASIC_AUTH_TYPE, ClassGuard, basic_secret, class_head};
use connectors_e2e::process::{DemoTool, http_get};
use connectors_e2e::proxy::{
    CurlResponse, JSON_POST, ProxyOptions, ProxyProcess, service_account_with_access,
};
use connectors_e2e::{TestNamespace, apply_yaml, eventually, kubectl_ok};
use serde_json::Value;

fn class_yaml(name: &str, api_uri: &str) -> String {
    format!(
        r#"{}{BASIC_AUTH_TYPE}  api:
    uri: {api_uri}
    openapi:
      paths:
        /api/v4/projects/{{id}}/repository/branches:
          get: {{x-provider-type: api}}
        /echo/typed:
          get: {{x-provider-type: proxy}}
        /echo/ext:
          get: {{x-openapi-address: web}}
        /echo/missing-ext:
          get: {{x-openapi-address: nope}}
        /echo/outside:
          get: {{x-openapi-address: "http://evil.example/"}}
"#,
        class_head(name)
    )
}

struct Env {
    ns: TestNamespace,
    operator_ns: TestNamespace,
    class: String,
    _class: ClassGuard,
    tool: DemoTool,
    gateway: ProxyProcess,
    token: String,
}

fn env() -> Env {
    let class = format!("gateway-{}", std::process::id());
    let tool = DemoTool::start();
    let guard = ClassGuard::apply(
        &class,
        &class_yaml(&class, &format!("{}/plugin", tool.url())),
    );
    // The class API address as the controller resolves it (no operator runs here).
    kubectl_ok([
        "patch",
        "connectorclass",
        &class,
        "--subresource=status",
        "--type=merge",
        "-p",
        &format!(
            r#"{{"status":{{"api":{{"address":{{"url":"{}/plugin"}}}}}}}}"#,
            tool.url()
        ),
    ]);
    let ns = TestNamespace::new("gateway");
    apply_yaml(&ns, &basic_secret("basic", "demo-password"));
    apply_yaml(
        &ns,
        &format!(
            "apiVersion: connectors.alauda.io/v1alpha1\nkind: Connector\nmetadata: {{name: gw}}\nspec:\n  connectorClassName: {class}\n  address: {url}\n  addressExtensions: [{{name: web, value: \"{url}/echo\"}}]\n  auth: {{name: basicAuth, secretRef: {{name: basic}}}}\n",
            url = tool.url()
        ),
    );
    let token = service_account_with_access(&ns, "builder");
    let operator_ns = TestNamespace::new("gateway-operator");
    let gateway = ProxyProcess::start(ProxyOptions {
        command: "api",
        namespace: operator_ns.name().to_string(),
        rust_log: "trace".into(),
        ..Default::default()
    });
    Env {
        ns,
        operator_ns,
        class,
        _class: guard,
        tool,
        gateway,
        token,
    }
}

impl Env {
    fn call(&self, path: &str, extra: &[&str]) -> CurlResponse {
        let url = format!(
            "http://127.0.0.1:{}/connectors/v1alpha1/{}/gw/path{path}",
            self.gateway.port,
            self.ns.name()
        );
        let auth = format!("Authorization: Bearer {}", self.token);
        let mut args = vec!["-H", auth.as_str()];
        args.extend_from_slice(extra);
        self.gateway.curl(&url, &args)
    }

    fn flag(&self, key: &str, value: &str) {
        let data = format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: connectors-config}}\ndata:\n  {key}: \"{value}\"\n"
        );
        apply_yaml(&self.operator_ns, &data);
    }

    /// The last request the tool received under `prefix`.
    fn tool_saw(&self, prefix: &str) -> Value {
        let (_, log) = http_get(self.tool.port, "/_requests").expect("request log");
        let all: Value = serde_json::from_str(&log).unwrap();
        all.as_array()
            .unwrap()
            .iter()
            .rev()
            .find(|r| r["uri"].as_str().is_some_and(|u| u.starts_with(prefix)))
            .cloned()
            .unwrap_or_else(|| panic!("no request under {prefix}: {log}"))
    }
}

fn header(request: &Value, name: &str) -> Option<String> {
    request["headers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h[0] == name)
        .map(|h| h[1].as_str().unwrap().to_string())
}

fn status_of(r: &CurlResponse) -> Value {
    serde_json::from_str(&r.body).unwrap_or_else(|e| panic!("Status JSON: {e}: {r:?}"))
}

const BASIC: &str = "Basic ZGVtbzpkZW1vLXBhc3N3b3Jk";

#[test]
fn the_gateway_routes_by_openapi_with_the_connectors_credentials_and_its_flags() {
    let e = env();
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    // An `api` operation, `%2F` kept in one segment: the class API gets the plugin
    // headers and never the client's Authorization.
    let r = eventually(Duration::from_secs(20), || {
        let r = e.call("/api/v4/projects/demo%2Frepo/repository/branches", &[]);
        if r.status == 200 {
            Ok(r)
        } else {
            Err(format!("{} {}", r.status, r.body))
        }
    });
    assert_eq!(r.body, r#"[{"name":"main"}]"#);
    let seen = e.tool_saw("/plugin/");
    assert_eq!(
        seen["uri"],
        "/plugin/api/v4/projects/demo%2Frepo/repository/branches"
    );
    assert_eq!(
        header(&seen, "x-plugin-meta"),
        Some(b64(&format!(r#"{{"baseURL":"{}"}}"#, e.tool.url())))
    );
    assert_eq!(
        header(&seen, "x-plugin-auth"),
        Some(b64("kubernetes.io/basic-auth"))
    );
    assert!(header(&seen, "x-plugin-secret").is_some());
    assert_eq!(header(&seen, "authorization"), None);

    // `proxy`-typed and unmatched operations reach the tool with the credentials.
    for path in ["/echo/typed", "/echo/unmatched?x=1"] {
        let r = e.call(path, &[]);
        assert_eq!(r.status, 200, "{path}: {r:?}");
        let echo: Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!(
            header(&echo, "authorization").as_deref(),
            Some(BASIC),
            "{path}"
        );
        assert!(!r.body.contains(&e.token));
    }
    // x-openapi-address: an extension's base; a missing one and a foreign URL are 400.
    let ext = e.call("/echo/ext", &[]);
    assert_eq!(ext.status, 200, "{ext:?}");
    assert_eq!(
        serde_json::from_str::<Value>(&ext.body).unwrap()["path"],
        "/echo/echo/ext"
    );
    for path in ["/echo/missing-ext", "/echo/outside"] {
        let r = e.call(path, &[]);
        assert_eq!(r.status, 400, "{path}: {r:?}");
        let status = status_of(&r);
        assert_eq!(
            (
                status["kind"].as_str(),
                status["reason"].as_str(),
                status["code"].as_u64()
            ),
            (Some("Status"), Some("BadRequest"), Some(400))
        );
    }

    // Writes: 405 with Allow until the passthrough flag, then body and query pass.
    let post = JSON_POST;
    let r = e.call("/echo/write?q=2", &post);
    assert_eq!(r.status, 405, "{r:?}");
    assert_eq!(r.header("allow").as_deref(), Some("GET, HEAD, OPTIONS"));
    assert_eq!(status_of(&r)["reason"], "MethodNotAllowed");
    e.flag("enable-connector-apis-write-passthrough", "true");
    let r = eventually(Duration::from_secs(20), || {
        let r = e.call("/echo/write?q=2", &post);
        if r.status == 200 {
            Ok(r)
        } else {
            Err(format!("{}", r.status))
        }
    });
    let echo: Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(
        (
            echo["method"].as_str(),
            echo["query"].as_str(),
            echo["body"].as_str()
        ),
        (Some("POST"), Some("q=2"), Some(r#"{"a":1}"#))
    );

    // apis permissions: no grant 403; a template grant admits exactly that template;
    // a class-level grant admits all.
    e.flag("enable-connector-apis-permissions", "true");
    let branches = "/api/v4/projects/demo%2Frepo/repository/branches";
    eventually(Duration::from_secs(20), || {
        let r = e.call(branches, &[]);
        if r.status == 403 {
            Ok(())
        } else {
            Err(format!("{}", r.status))
        }
    });
    let grant = |name: &str, resource: &str| {
        apply_yaml(
            &e.ns,
            &format!(
                "apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata: {{name: {name}}}\nrules:\n- apiGroups: [connectors.alauda.io]\n  resources: [\"{resource}\"]\n  verbs: [get]\n---\napiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {{name: {name}}}\nroleRef: {{apiGroup: rbac.authorization.k8s.io, kind: Role, name: {name}}}\nsubjects:\n- {{kind: ServiceAccount, name: builder, namespace: {}}}\n",
                e.ns.name()
            ),
        );
    };
    grant(
        "template",
        &format!(
            "connectors/apis/{}/api/v4/projects/{{id}}/repository/branches",
            e.class
        ),
    );
    eventually(Duration::from_secs(20), || {
        let r = e.call(branches, &[]);
        if r.status == 200 {
            Ok(())
        } else {
            Err(format!("{}", r.status))
        }
    });
    assert_eq!(e.call("/echo/typed", &[]).status, 403);
    grant("class", &format!("connectors/apis/{}", e.class));
    eventually(Duration::from_secs(20), || {
        let r = e.call("/echo/typed", &[]);
        if r.status == 200 {
            Ok(())
        } else {
            Err(format!("{}", r.status))
        }
    });

    // No token: 401 as Status; feature flags need get on connectorclasses.
    let url = format!(
        "http://127.0.0.1:{}/connectors/v1alpha1/{}/gw/path/echo/x",
        e.gateway.port,
        e.ns.name()
    );
    let anonymous = e.gateway.curl(&url, &[]);
    assert_eq!(
        (
            anonymous.status,
            status_of(&anonymous)["reason"].as_str().map(str::to_string)
        ),
        (401, Some("Unauthorized".to_string()))
    );
    let flags_url = format!(
        "http://127.0.0.1:{}/connectors-operator/featureflags",
        e.gateway.port
    );
    let auth = format!("Authorization: Bearer {}", e.token);
    assert_eq!(e.gateway.curl(&flags_url, &["-H", &auth]).status, 403);
    apply_yaml(
        "",
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {name: view-connectorclasses-e2e}\nrules:\n- apiGroups: [connectors.alauda.io]\n  resources: [connectorclasses]\n  verbs: [get]\n",
    );
    kubectl_ok([
        "create",
        "clusterrolebinding",
        &format!("{}-flags", e.ns.name()),
        "--clusterrole=view-connectorclasses-e2e",
        &format!("--serviceaccount={}:builder", e.ns.name()),
    ]);
    let flags = eventually(Duration::from_secs(20), || {
        let r = e.gateway.curl(&flags_url, &["-H", &auth]);
        if r.status == 200 {
            Ok(r)
        } else {
            Err(format!("{}", r.status))
        }
    });
    let flags: Value = serde_json::from_str(&flags.body).unwrap();
    assert_eq!(flags.as_object().unwrap().len(), 7, "{flags}");
    assert_eq!(flags["enable-connector-apis-permissions"], "true");
    assert_eq!(flags["enable-multi-connector"], "false");
    kubectl_ok([
        "delete",
        "clusterrolebinding",
        &format!("{}-flags", e.ns.name()),
    ]);

    // Unknown keys are ignored with a warning.
    e.flag("enable-something-unknown", "true");
    eventually(Duration::from_secs(20), || {
        let logs = e.gateway.logs();
        match logs.contains("enable-something-unknown")
            && logs.contains("ignored: not a known flag")
        {
            true => Ok(()),
            false => Err("no warning for the unknown flag yet".to_string()),
        }
    });

    // Neither the token nor the Secret's password is in the gateway's trace log.
    let logs = e.gateway.logs();
    assert!(logs.contains("TRACE"));
    for (what, value) in [
        ("token", e.token.clone()),
        ("password", "demo-password".to_string()),
        ("basic", BASIC[6..].to_string()),
    ] {
        assert!(!logs.contains(&value), "{what} in the gateway log");
    }
}

#[test]
fn an_unresolved_class_api_is_the_published_400() {
    let class = format!("gateway-noapi-{}", std::process::id());
    let tool = DemoTool::start();
    let _guard = ClassGuard::apply(
        &class,
        &class_yaml(&class, "http://unresolved.invalid/plugin"),
    );
    let ns = TestNamespace::new("gateway-noapi");
    apply_yaml(
        &ns,
        &format!(
            "apiVersion: connectors.alauda.io/v1alpha1\nkind: Connector\nmetadata: {{name: gw}}\nspec:\n  connectorClassName: {class}\n  address: {}\n",
            tool.url()
        ),
    );
    let token = service_account_with_access(&ns, "builder");
    let gateway = ProxyProcess::start(ProxyOptions {
        command: "api",
        ..Default::default()
    });
    let url = format!(
        "http://127.0.0.1:{}/connectors/v1alpha1/{}/gw/path/api/v4/projects/x/repository/branches",
        gateway.port,
        ns.name()
    );
    let r = eventually(Duration::from_secs(20), || {
        let r = gateway.curl(&url, &["-H", &format!("Authorization: Bearer {token}")]);
        if r.status == 400 {
            Ok(r)
        } else {
            Err(format!("{} {}", r.status, r.body))
        }
    });
    let status: Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(
        status,
        serde_json::json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": format!("api address of connectorclass '{class}' is not resolved"), "reason": "BadRequest", "code": 400})
    );
}
