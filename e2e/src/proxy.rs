//! `connectors-operator proxy` (or `api`, the gateway) as a real process for the e2e
//! tests, and clients of it (curl with `--resolve`, so the `Host` is a Connector's
//! Service name as in a cluster).

use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use crate::process::{
    Guarded, OPERATOR_NAMESPACE, binary, ensure_operator_namespace, free_port, http_get,
};
use crate::{apply_yaml, kubectl_ok};

/// Options of a proxy process.
#[derive(Clone, Debug)]
pub struct ProxyOptions {
    pub allow_loopback_destinations: bool,
    /// Kubeconfig of the process (e.g. the proxy ServiceAccount's); `None` is admin.
    pub kubeconfig: Option<PathBuf>,
    pub rust_log: String,
    pub extra_args: Vec<String>,
    /// The proxy's operator namespace (flags ConfigMap, global CA Secrets); a test
    /// that changes the flags gives its proxy a namespace of its own, so proxies of
    /// concurrent tests keep the defaults.
    pub namespace: String,
    /// `proxy` or `api` (the API gateway: same flags, same data plane).
    pub command: &'static str,
}

impl Default for ProxyOptions {
    fn default() -> Self {
        ProxyOptions {
            allow_loopback_destinations: true,
            kubeconfig: None,
            rust_log: "debug,hyper=info,h2=info,rustls=info,tower=info,kube_client=info".into(),
            extra_args: Vec::new(),
            namespace: OPERATOR_NAMESPACE.to_string(),
            command: "proxy",
        }
    }
}

pub struct ProxyProcess {
    process: Guarded,
    pub port: u16,
    pub metrics_port: u16,
    pub log: PathBuf,
}

impl ProxyProcess {
    pub fn start(options: ProxyOptions) -> Self {
        crate::install_crds();
        ensure_operator_namespace();
        let port = free_port();
        let metrics_port = free_port();
        let dir = std::env::temp_dir().join("connectors-e2e");
        std::fs::create_dir_all(&dir).expect("temp dir");
        let log = dir.join(format!("{}-{port}.log", options.command));
        let mut args: Vec<String> = vec![
            options.command.into(),
            "--addr".into(),
            format!("127.0.0.1:{port}"),
            "--metrics-bind-address".into(),
            format!("127.0.0.1:{metrics_port}"),
            "--namespace".into(),
            options.namespace.clone(),
            "--log-format".into(),
            "json".into(),
            format!(
                "--allow-loopback-destinations={}",
                options.allow_loopback_destinations
            ),
        ];
        args.extend(options.extra_args.iter().cloned());
        let mut env = vec![("RUST_LOG".to_string(), options.rust_log.clone())];
        if let Some(path) = &options.kubeconfig {
            env.push(("KUBECONFIG".to_string(), path.display().to_string()));
        }
        let process = Guarded::spawn(&binary("connectors-operator"), &args, &env, &log);
        let proxy = ProxyProcess {
            process,
            port,
            metrics_port,
            log,
        };
        proxy.wait_ready();
        proxy
    }

    fn wait_ready(&self) {
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(30) {
            if http_get(self.metrics_port, "/readyz").is_some_and(|(code, _)| code == 200) {
                return;
            }
            assert!(
                self.process.alive(),
                "proxy exited at start-up; log:\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("proxy not ready after 30s; log:\n{}", self.logs());
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn alive(&self) -> bool {
        self.process.alive()
    }

    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// Resident memory of the process now (VmRSS), in KiB.
    pub fn rss_kib(&self) -> u64 {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    }

    pub fn metrics(&self) -> String {
        http_get(self.metrics_port, "/metrics")
            .map(|(_, body)| body)
            .unwrap_or_default()
    }

    /// `http://c-{service}.{ns}.svc:{port}`: the Connector's proxy address as a
    /// workload in the cluster uses it (port aside).
    pub fn host_url(&self, namespace: &str, service: &str) -> String {
        format!("http://{service}.{namespace}.svc:{}", self.port)
    }

    /// `--resolve` arguments that send the host of `url` to this proxy.
    pub fn resolve_args(&self, url: &str) -> Vec<String> {
        let host = host_of(url);
        vec![
            "--resolve".into(),
            format!("{host}:{}:127.0.0.1", self.port),
        ]
    }

    /// `git -c http.curloptResolve=...` value for the same purpose.
    pub fn git_resolve(&self, url: &str) -> String {
        let host = host_of(url);
        format!("{host}:{}:127.0.0.1", self.port)
    }

    /// curl through the proxy: `-s -S -i` plus `args`; the response as text.
    pub fn curl(&self, url: &str, args: &[&str]) -> CurlResponse {
        let mut cmd = Command::new("curl");
        cmd.args(["-sS", "-i", "--max-time", "60"])
            .args(self.resolve_args(url))
            .args(args)
            .arg(url);
        CurlResponse::from(cmd.output().expect("run curl"))
    }
}

/// curl arguments of a POST of the JSON body `{"a":1}`.
pub const JSON_POST: [&str; 6] = [
    "-X",
    "POST",
    "-H",
    "Content-Type: application/json",
    "--data",
    r#"{"a":1}"#,
];

/// A curl answer split into status, head and body.
#[derive(Debug)]
pub struct CurlResponse {
    pub status: u16,
    pub head: String,
    pub body: String,
    pub output: Output,
}

impl From<Output> for CurlResponse {
    fn from(output: Output) -> Self {
        let text = String::from_utf8_lossy(&output.stdout).into_owned();
        // A 100 Continue head, or the answer to CONNECT, may come first: the head of
        // the last response wins.
        let mut rest = text.as_str();
        let mut head = String::new();
        while rest.starts_with("HTTP/") {
            let (h, b) = rest.split_once("\r\n\r\n").unwrap_or((rest, ""));
            head = h.to_string();
            rest = b;
            if !rest.starts_with("HTTP/") {
                break;
            }
        }
        let status = head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        CurlResponse {
            status,
            head,
            body: rest.to_string(),
            output,
        }
    }
}

impl CurlResponse {
    pub fn header(&self, name: &str) -> Option<String> {
        self.head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_string())
        })
    }
}

/// A ServiceAccount in `ns` allowed `get` on Connectors there (Role + RoleBinding
/// `{sa}-connectors`), and a token for it from `kubectl create token`.
pub fn service_account_with_access(ns: &str, sa: &str) -> String {
    apply_yaml(
        ns,
        &format!(
            r#"
apiVersion: v1
kind: ServiceAccount
metadata: {{name: {sa}}}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {{name: {sa}-connectors}}
rules:
- apiGroups: [connectors.alauda.io]
  resources: [connectors]
  verbs: [get]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {{name: {sa}-connectors}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: Role, name: {sa}-connectors}}
subjects:
- {{kind: ServiceAccount, name: {sa}, namespace: {ns}}}
"#
        ),
    );
    token(ns, sa)
}

/// A token of ServiceAccount `sa` (created if missing), from `kubectl create token`.
pub fn token(ns: &str, sa: &str) -> String {
    let _ = crate::kubectl(["create", "serviceaccount", sa, "-n", ns]);
    kubectl_ok(["create", "token", sa, "-n", ns, "--duration=1h"])
        .trim()
        .to_string()
}

/// The host of `scheme://host[:port]/...`.
fn host_of(url: &str) -> String {
    let rest = url.split_once("://").map(|(_, r)| r).unwrap_or(url);
    let authority = rest.split(['/', '?']).next().unwrap_or_default();
    let authority = authority
        .rsplit_once('@')
        .map(|(_, a)| a)
        .unwrap_or(authority);
    authority
        .rsplit_once(':')
        .map(|(h, _)| h)
        .unwrap_or(authority)
        .to_string()
}
