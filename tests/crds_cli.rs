//! `connectors-operator crds` as a script runs it: printed whole to a reader, and a
//! reader that went away (`crds | head`, `| diff - missing-file`) reported as an error
//! with a failing exit code instead of a panic.

use std::process::{Command, Stdio};

const OPERATOR: &str = env!("CARGO_BIN_EXE_connectors-operator");

#[test]
fn prints_every_group_to_a_reader() {
    let output = Command::new(OPERATOR)
        .arg("crds")
        .output()
        .expect("operator runs");
    assert!(output.status.success(), "{output:?}");
    let yaml = String::from_utf8(output.stdout).expect("utf-8");
    for group in [
        "connectors.alauda.io",
        "dex.coreos.com",
        "auth.alauda.io",
        "user.openshift.io",
    ] {
        assert!(yaml.contains(&format!("group: {group}")), "{group} missing");
    }
}

#[test]
fn closed_stdout_is_an_error_and_exit_two_not_a_panic() {
    let (reader, writer) = std::io::pipe().expect("pipe");
    // The reader is gone before the first write: every write fails with EPIPE.
    drop(reader);
    let output = Command::new(OPERATOR)
        .arg("crds")
        .stdout(writer)
        .stderr(Stdio::piped())
        .output()
        .expect("operator runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "stderr: {stderr}");
    assert!(
        stderr.contains("error: writing to stdout:"),
        "stderr: {stderr}"
    );
    assert!(!stderr.contains("panicked"), "stderr: {stderr}");
}
