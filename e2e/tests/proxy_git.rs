//! Real git through the proxy (host form and path form) against a real git server
//! (`git http-backend` behind Basic auth in the demo tool), the client holding only
//! a token from `kubectl create token`: clone, and push of a commit with a 100 MB file.

use std::time::Duration;

use connectors_e2e::fixtures::{ClassGuard, PROXY_CLASS_EXTRA, basic_secret, connector, git_class};
use connectors_e2e::git::{self, ScratchDir};
use connectors_e2e::process::{DemoTool, http_get};
use connectors_e2e::proxy::{ProxyOptions, ProxyProcess, service_account_with_access};
use connectors_e2e::{TestNamespace, apply_yaml, eventually};

const SIZE: u64 = 100 * 1024 * 1024;

fn clone_push_clone(proxy: &ProxyProcess, repo_url: &str, token: &str, scratch: &ScratchDir) {
    let resolve = format!("http.curloptResolve={}", proxy.git_resolve(repo_url));
    let with_token = git::with_userinfo(repo_url, "builder", token);
    let work = scratch.join("work");
    let out = eventually(Duration::from_secs(20), || {
        let out = git::clone(&with_token, &work, &[&resolve]);
        if out.status.success() {
            Ok(out)
        } else {
            Err(git::stderr(&out))
        }
    });
    git::assert_success(&out, "clone through the proxy");
    git::commit_file(&work, "big.bin", SIZE);
    let start = std::time::Instant::now();
    let out = git::push(&work, &[&resolve]);
    git::assert_success(&out, "push of a 100 MB file through the proxy");
    eprintln!("push of 100 MB through the proxy: {:?}", start.elapsed());
    let again = scratch.join("again");
    git::assert_success(
        &git::clone(&with_token, &again, &[&resolve]),
        "second clone",
    );
    let size = std::fs::metadata(again.join("big.bin"))
        .map(|m| m.len())
        .unwrap_or(0);
    assert_eq!(size, SIZE, "the pushed file came back whole");

    // Without credentials, the proxy's challenge makes git ask for them.
    let out = git::clone(repo_url, &scratch.join("anonymous"), &[&resolve]);
    assert!(!out.status.success());
    let err = git::stderr(&out);
    assert!(
        err.contains("terminal prompts disabled") || err.contains("Authentication failed"),
        "{err}"
    );
    let out = git::clone(
        &git::with_userinfo(repo_url, "builder", "wrong-token"),
        &scratch.join("wrong"),
        &[&resolve],
    );
    assert!(
        git::stderr(&out).contains("Authentication failed"),
        "{}",
        git::stderr(&out)
    );
}

/// The tool saw the Connector's credentials on every git request and never the token.
fn assert_tool_saw_only_tool_credentials(tool: &DemoTool, token: &str) {
    let (_, log) = http_get(tool.port, "/_requests").expect("request log");
    assert!(!log.contains(token), "the token reached the tool");
    let requests: serde_json::Value = serde_json::from_str(&log).unwrap();
    let git_requests: Vec<&serde_json::Value> = requests
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| {
            r["uri"]
                .as_str()
                .is_some_and(|u| u.starts_with("/demo/repo.git"))
        })
        .collect();
    assert!(git_requests.len() >= 4, "{log}");
    for request in git_requests {
        let auth: Vec<&str> = request["headers"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|h| h[0] == "authorization")
            .map(|h| h[1].as_str().unwrap())
            .collect();
        assert_eq!(auth, vec!["Basic ZGVtbzpkZW1vLXBhc3N3b3Jk"], "{request}");
    }
}

#[test]
fn git_clone_and_push_100mb_through_the_host_and_path_forms() {
    let host_class = format!("proxy-git-{}", std::process::id());
    let path_class = format!("proxy-git-path-{}", std::process::id());
    let _h = ClassGuard::apply(
        &host_class,
        &format!("{}{PROXY_CLASS_EXTRA}", git_class(&host_class)),
    );
    let path_yaml = git_class(&path_class).replacen(
        &format!("  name: {path_class}\n"),
        &format!(
            "  name: {path_class}\n  annotations:\n    connectors.cpaas.io/proxy-resolver: path\n"
        ),
        1,
    );
    let _p = ClassGuard::apply(&path_class, &format!("{path_yaml}{PROXY_CLASS_EXTRA}"));
    let ns = TestNamespace::new("proxy-git");
    let tool = DemoTool::start();
    apply_yaml(&ns, &basic_secret("git-auth", "demo-password"));
    apply_yaml(&ns, &connector("git", &host_class, &tool.url(), "git-auth"));
    apply_yaml(
        &ns,
        &connector("gitp", &path_class, &tool.url(), "git-auth"),
    );
    let token = service_account_with_access(&ns, "builder");
    let proxy = ProxyProcess::start(ProxyOptions::default());

    let host_form = format!("{}/demo/repo.git", proxy.host_url(&ns, "c-git"));
    clone_push_clone(
        &proxy,
        &host_form,
        &token,
        &ScratchDir::new("proxy-git-host"),
    );

    let path_form = format!(
        "{}/namespaces/{}/connectors/gitp/demo/repo.git",
        proxy.host_url(&ns, "c-gitp"),
        ns.name()
    );
    clone_push_clone(
        &proxy,
        &path_form,
        &token,
        &ScratchDir::new("proxy-git-path"),
    );
    // A path-form class is not served in host form.
    let r = proxy.curl(
        &format!("{}/demo/repo.git/info/refs", proxy.host_url(&ns, "c-gitp")),
        &["-u", &format!("x:{token}")],
    );
    assert_eq!(r.status, 404, "{r:?}");

    assert_tool_saw_only_tool_credentials(&tool, &token);
    let metrics = proxy.metrics();
    let apiserver_secret_reads = connectors_e2e::process::metric_value(
        &metrics,
        "connectors_proxy_apiserver_requests_total{kind=\"secret\"}",
    );
    eprintln!("apiserver Secret reads by the proxy: {apiserver_secret_reads}");
    eprintln!(
        "proxy peak RSS: {:?}",
        std::fs::read_to_string(format!("/proc/{}/status", proxy.pid()))
            .ok()
            .and_then(|s| s
                .lines()
                .find(|l| l.starts_with("VmHWM"))
                .map(str::to_string))
    );
}
