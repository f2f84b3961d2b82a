//! The Connectors proxy as a process against the real apiserver (SPEC-proxy sections
//! 2-4, 6, 7): real tokens from `kubectl create token`, real RBAC, curl as the client,
//! the demo tool as the tool.

use std::time::Duration;

use connectors_e2e::fixtures::{ClassGuard, PROXY_CLASS_EXTRA, basic_secret, connector, git_class};
use connectors_e2e::process::DemoTool;
use connectors_e2e::proxy::{ProxyOptions, ProxyProcess, service_account_with_access, token};
use connectors_e2e::{TestNamespace, apply_yaml, eventually};

/// A class with a proxy, a Connector `git` on the demo tool with the right Secret, a
/// ServiceAccount allowed to get it, and a proxy.
struct Setup {
    ns: TestNamespace,
    _class: ClassGuard,
    tool: DemoTool,
    proxy: ProxyProcess,
    token: String,
    url: String,
}

fn setup(prefix: &str, class_extra: &str) -> Setup {
    let class_name = format!("{prefix}-{}", std::process::id());
    let class = ClassGuard::apply(
        &class_name,
        &format!("{}{PROXY_CLASS_EXTRA}{class_extra}", git_class(&class_name)),
    );
    let ns = TestNamespace::new(prefix);
    let tool = DemoTool::start();
    apply_yaml(&ns, &basic_secret("git-auth", "demo-password"));
    apply_yaml(&ns, &connector("git", &class_name, &tool.url(), "git-auth"));
    let token = service_account_with_access(&ns, "builder");
    let proxy = ProxyProcess::start(ProxyOptions::default());
    let url = proxy.host_url(&ns, "c-git");
    Setup {
        ns,
        _class: class,
        tool,
        proxy,
        token,
        url,
    }
}

fn bearer(token: &str) -> String {
    format!("Authorization: Bearer {token}")
}

#[test]
fn a_token_is_swapped_for_the_tool_credentials() {
    let s = setup("proxy-basic", "");
    let url = format!("{}/org/repo/info/refs", s.url);
    // The Connector reaches the proxy's cache through its watch.
    let ok = eventually(Duration::from_secs(20), || {
        let r = s.proxy.curl(&url, &["-H", &bearer(&s.token)]);
        if r.status == 200 {
            Ok(r)
        } else {
            Err(format!("{} {}", r.status, r.body))
        }
    });
    assert!(ok.body.contains("service=git-upload-pack"), "{}", ok.body);

    let none = s.proxy.curl(&url, &[]);
    assert_eq!(none.status, 401, "{none:?}");
    assert_eq!(
        none.header("www-authenticate").as_deref(),
        Some(r#"Basic realm="connectors-proxy""#)
    );

    let basic = s.proxy.curl(&url, &["-u", &format!("anyone:{}", s.token)]);
    assert_eq!(basic.status, 200, "{basic:?}");

    let wrong = s.proxy.curl(&url, &["-H", &bearer("not-a-token")]);
    assert_eq!(wrong.status, 401, "{wrong:?}");

    // No RBAC: 403, byte-identical to the answer for a Connector that does not exist.
    let stranger = token(&s.ns, "stranger");
    let denied = s.proxy.curl(&url, &["-H", &bearer(&stranger)]);
    assert_eq!(denied.status, 403, "{denied:?}");
    let own = format!(
        "http://connectors-proxy-service.connectors-system.svc:{}",
        s.proxy.port
    );
    let missing = s.proxy.curl(
        &format!(
            "{own}/namespaces/{}/connectors/nope/org/repo/info/refs",
            s.ns.name()
        ),
        &["-H", &bearer(&s.token)],
    );
    assert_eq!(missing.status, 403, "{missing:?}");
    assert_eq!(missing.body, denied.body);
    assert_eq!(
        missing.header("content-type"),
        denied.header("content-type")
    );
    // The path form reaches the existing one.
    let path_form = s.proxy.curl(
        &format!(
            "{own}/namespaces/{}/connectors/git/org/repo/info/refs",
            s.ns.name()
        ),
        &["-H", &bearer(&s.token)],
    );
    assert_eq!(path_form.status, 200, "{path_form:?}");
    let _ = &s.tool;
}
