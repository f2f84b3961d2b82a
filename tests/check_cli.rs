//! `connectors-operator check` as a user runs it: the real binary against the shipped
//! demo tool (a real HTTP server on loopback), one Connector per run so each exit code
//! is attributable. Documents come from `demo/check-demo.yaml`, so the README demo and
//! this test cannot drift apart.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

const OPERATOR: &str = env!("CARGO_BIN_EXE_connectors-operator");
const DEMO_TOOL: &str = env!("CARGO_BIN_EXE_demo-tool");
const DEMO_PORT: &str = "127.0.0.1:18080";

/// The demo tool on an ephemeral port; killed on drop.
struct DemoTool {
    child: Child,
    address: String,
}

impl DemoTool {
    fn start() -> Self {
        let mut child = Command::new(DEMO_TOOL)
            .arg("127.0.0.1:0")
            .stderr(Stdio::piped())
            .spawn()
            .expect("demo-tool starts");
        let stderr = child.stderr.take().expect("stderr piped");
        let mut line = String::new();
        BufReader::new(stderr)
            .read_line(&mut line)
            .expect("demo-tool prints its address");
        let address = line
            .trim()
            .rsplit("http://")
            .next()
            .expect("address in the banner")
            .to_string();
        DemoTool { child, address }
    }
}

impl Drop for DemoTool {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The class and Secrets of the demo file plus the one Connector named `connector`,
/// pointed at `address`.
fn manifest_with(connector: &str, tool: &DemoTool) -> String {
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/demo/check-demo.yaml"))
            .expect("demo manifest");
    let docs: Vec<&str> = text
        .split("\n---\n")
        .filter(|doc| {
            !doc.contains("kind: Connector\n") || doc.contains(&format!("name: {connector}\n"))
        })
        .collect();
    assert_eq!(docs.len(), 4, "class, two Secrets and {connector}");
    docs.join("\n---\n").replace(DEMO_PORT, &tool.address)
}

fn check(manifest: &str, format: &str) -> Output {
    let dir = std::env::temp_dir().join(format!("check-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let path = dir.join(format!("{}.yaml", NEXT.fetch_add(1, Ordering::Relaxed)));
    std::fs::write(&path, manifest).expect("write manifest");
    let output = Command::new(OPERATOR)
        .args(["check", "--probe-timeout", "3", "-o", format, "-f"])
        .arg(&path)
        .output()
        .expect("check runs");
    let _ = std::fs::remove_file(&path);
    output
}

/// (status, reason, message) of one condition in `check -o json` output.
fn condition(output: &Output, kind: &str) -> (String, String, String) {
    let results: serde_json::Value =
        serde_json::from_slice(&output.stdout).expect("check -o json prints JSON");
    let conditions = results[0]["status"]["conditions"]
        .as_array()
        .expect("conditions");
    let found = conditions
        .iter()
        .find(|c| c["type"] == kind)
        .unwrap_or_else(|| panic!("no {kind} condition in {results}"));
    let text = |key: &str| found[key].as_str().unwrap_or_default().to_string();
    (text("status"), text("reason"), text("message"))
}

fn assert_no_password(output: &Output) {
    for leaked in ["demo-password", "not-the-password"] {
        for stream in [&output.stdout, &output.stderr] {
            let text = String::from_utf8_lossy(stream);
            assert!(!text.contains(leaked), "secret value in output:\n{text}");
        }
    }
}

#[test]
fn ready_connector_exits_zero() {
    let tool = DemoTool::start();
    let output = check(&manifest_with("demo-git", &tool), "json");
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    for kind in ["LivenessReady", "AuthReady", "Ready"] {
        assert_eq!(condition(&output, kind).0, "True", "{kind}");
    }
    assert_no_password(&output);
}

#[test]
fn wrong_password_is_authentication_failed_and_exits_one() {
    let tool = DemoTool::start();
    let output = check(&manifest_with("wrong-password", &tool), "json");
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    assert_eq!(condition(&output, "LivenessReady").0, "True");
    let (status, reason, message) = condition(&output, "AuthReady");
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("False", "AuthenticationFailed")
    );
    assert!(message.contains("401"), "{message}");
    assert_eq!(condition(&output, "Ready").0, "False");
    assert_no_password(&output);
}

#[test]
fn unreachable_tool_is_connection_failed_naming_url_and_cause() {
    let tool = DemoTool::start();
    let output = check(&manifest_with("tool-down", &tool), "json");
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let (status, reason, message) = condition(&output, "LivenessReady");
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("False", "ConnectionFailed")
    );
    assert!(message.contains("http://127.0.0.1:1/"), "URL in {message}");
    assert!(message.contains("connection refused"), "cause in {message}");
    assert_no_password(&output);
}

#[test]
fn describe_output_shows_each_condition_like_kubectl() {
    let tool = DemoTool::start();
    let output = check(&manifest_with("wrong-password", &tool), "describe");
    assert_eq!(output.status.code(), Some(1));
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(text.contains("Name:         wrong-password"), "{text}");
    let auth_row = text
        .lines()
        .find(|l| l.trim_start().starts_with("AuthReady"))
        .unwrap_or_else(|| panic!("AuthReady row in\n{text}"));
    assert!(
        auth_row.contains("False") && auth_row.contains("AuthenticationFailed"),
        "{auth_row}"
    );
}

#[test]
fn unreadable_input_exits_two_with_a_message() {
    let output = Command::new(OPERATOR)
        .args(["check", "-f", "/nonexistent/connectors.yaml"])
        .output()
        .expect("check runs");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("/nonexistent/connectors.yaml"), "{stderr}");
}
