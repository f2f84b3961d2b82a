//! A second kube-apiserver on the local control plane's etcd, with flags of a test's
//! choosing (a feature gate turned off, say): how the operator meets an apiserver
//! unlike the e2e one, without a second cluster. Two apiservers on one etcd is how
//! every highly available control plane runs. Only for the local cluster of
//! `e2e/cluster.sh` (it reads `$E2E_DIR/state.json`); panics on kind.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use crate::process::{Guarded, free_port};

/// A kube-apiserver process and an admin kubeconfig that points at it.
pub struct ExtraApiserver {
    _process: Guarded,
    kubeconfig: PathBuf,
}

impl ExtraApiserver {
    /// Starts one with the running apiserver's flags plus `extra_flags`, on a free
    /// port, and waits until its `/readyz` answers ok.
    pub fn start(extra_flags: &[&str]) -> Self {
        let dir = PathBuf::from(std::env::var("E2E_DIR").unwrap_or_else(|_| {
            panic!("ExtraApiserver needs the local cluster of e2e/cluster.sh (E2E_DIR unset)")
        }));
        let state: Value = serde_json::from_slice(
            &std::fs::read(dir.join("state.json")).expect("read $E2E_DIR/state.json"),
        )
        .expect("state.json is JSON");
        let running = running_apiserver_args(&state);
        let old_port = state["apiserverPort"].as_u64().expect("apiserverPort");
        let port = free_port();
        let scratch = std::env::temp_dir().join(format!("connectors-e2e/apiserver-{port}"));
        std::fs::create_dir_all(&scratch).expect("scratch dir");
        let mut args: Vec<String> = running[1..]
            .iter()
            .map(|arg| {
                if arg.starts_with("--secure-port=") {
                    format!("--secure-port={port}")
                } else if arg.starts_with("--cert-dir=") {
                    format!("--cert-dir={}", scratch.display())
                } else {
                    arg.clone()
                }
            })
            .collect();
        args.extend(extra_flags.iter().map(|f| f.to_string()));
        let log = scratch.join("apiserver.log");
        let process = Guarded::spawn(&PathBuf::from(&running[0]), &args, &[], &log);
        let kubeconfig = scratch.join("kubeconfig");
        let admin = std::fs::read_to_string(dir.join("kubeconfig")).expect("read kubeconfig");
        let from = format!("https://127.0.0.1:{old_port}");
        assert!(admin.contains(&from), "the kubeconfig names {from}");
        std::fs::write(
            &kubeconfig,
            admin.replace(&from, &format!("https://127.0.0.1:{port}")),
        )
        .expect("write kubeconfig");
        wait_ready(&kubeconfig, &log);
        ExtraApiserver {
            _process: process,
            kubeconfig,
        }
    }

    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }
}

fn running_apiserver_args(state: &Value) -> Vec<String> {
    state["components"]
        .as_array()
        .expect("components")
        .iter()
        .find(|c| c["name"] == "kube-apiserver")
        .and_then(|c| c["args"].as_array())
        .expect("the kube-apiserver component")
        .iter()
        .map(|a| a.as_str().expect("string arg").to_string())
        .collect()
}

fn wait_ready(kubeconfig: &Path, log: &Path) {
    crate::eventually(Duration::from_secs(90), || {
        let out = std::process::Command::new(crate::kubectl_bin())
            .arg("--kubeconfig")
            .arg(kubeconfig)
            .args(["get", "--raw", "/readyz", "--request-timeout=5s"])
            .output()
            .map_err(|e| format!("run kubectl: {e}"))?;
        if out.status.success() && String::from_utf8_lossy(&out.stdout).trim() == "ok" {
            return Ok(());
        }
        Err(format!(
            "the extra apiserver is not ready; its log:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        ))
    });
}
