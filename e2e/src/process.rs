//! The operator and the demo tool as real processes, for the e2e tests.
//!
//! Both binaries are built by the test command before the e2e stage
//! (`cargo build --bins -p connectors-operator`); their path is
//! `$E2E_BIN_DIR` or the workspace's `target/debug`.
//!
//! Each process runs under a small shell guard that kills it when the test binary's
//! end of a pipe closes, so no operator outlives the test binary that started it
//! (a static shared operator is never dropped).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{kubectl, kubectl_bin};

/// The operator's namespace in the e2e cluster (Lease, global CA Secrets).
pub const OPERATOR_NAMESPACE: &str = "connectors-system";

/// Directory of the workspace's binaries.
pub fn bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("E2E_BIN_DIR") {
        return PathBuf::from(dir);
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../target")));
    target.join("debug")
}

pub(crate) fn binary(name: &str) -> PathBuf {
    let path = bin_dir().join(name);
    if !path.exists() {
        panic!(
            "e2e: {} is missing; build it first: cargo build --bins -p connectors-operator",
            path.display()
        );
    }
    path
}

/// A free loopback port (bound and released; the race is acceptable in tests).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind an ephemeral port")
}

/// A child under the guard: `pid` is the real process; closing `guard` kills it.
pub(crate) struct Guarded {
    shell: Child,
    guard: Option<ChildStdin>,
    pid: u32,
}

impl Guarded {
    pub(crate) fn spawn(
        program: &PathBuf,
        args: &[String],
        env: &[(String, String)],
        log: &PathBuf,
    ) -> Self {
        let log_file = std::fs::File::create(log).expect("create log file");
        // fd 3 keeps the pipe; the program gets /dev/null as stdin. When the pipe
        // closes (this process exits or drops the guard), the program is killed.
        let script = r#"prog=$1; shift; "$prog" "$@" </dev/null >&2 & pid=$!; echo "$pid"; read -r _; kill -9 "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; exit 0"#;
        let mut cmd = Command::new("bash");
        cmd.arg("-c")
            .arg(script)
            .arg("guard")
            .arg(program)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(log_file.try_clone().expect("clone log handle"));
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut shell = cmd.spawn().expect("spawn guard shell");
        let mut line = String::new();
        BufReader::new(shell.stdout.take().expect("stdout piped"))
            .read_line(&mut line)
            .expect("guard prints the pid");
        let pid = line.trim().parse().expect("pid");
        let guard = shell.stdin.take();
        Guarded { shell, guard, pid }
    }

    fn signal(&self, signal: &str) {
        let _ = Command::new("kill")
            .args([format!("-{signal}"), self.pid.to_string()])
            .status();
    }

    pub(crate) fn pid(&self) -> u32 {
        self.pid
    }

    pub(crate) fn alive(&self) -> bool {
        Command::new("kill")
            .args(["-0", &self.pid.to_string()])
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    }

    fn stop(&mut self) {
        if let Some(mut guard) = self.guard.take() {
            let _ = guard.write_all(b"\n");
        }
        let _ = self.shell.wait();
    }
}

impl Drop for Guarded {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Options of an operator process.
#[derive(Clone, Debug)]
pub struct OperatorOptions {
    pub probe_interval_seconds: u64,
    pub probe_timeout_seconds: u64,
    pub lease_duration_seconds: u64,
    pub identity: String,
    /// Port of the admission webhook on 127.0.0.1; `None`: a free one. Give the old
    /// port to a restarted operator so a registered webhook URL stays valid.
    pub webhook_port: Option<u16>,
    /// `run` (controllers and webhook) or `webhook` (the webhook alone).
    pub command: &'static str,
    pub extra_args: Vec<String>,
    /// `--allow-loopback-destinations`: the tools of the e2e tests and the benchmark
    /// listen on 127.0.0.1, which the operator otherwise refuses (`DestinationRefused`).
    /// Default true; false to test the refusal.
    pub allow_loopback_destinations: bool,
    /// Kubeconfig of the process (e.g. a ServiceAccount's from `sa_kubeconfig`);
    /// `None` inherits `KUBECONFIG` (admin).
    pub kubeconfig: Option<PathBuf>,
    /// `RUST_LOG` of the process; `None` is debug for the operator and kube_client (the
    /// tests read debug logs; the benchmark runs at `info` so logging does not weigh on
    /// its figures).
    pub rust_log: Option<String>,
}

impl Default for OperatorOptions {
    fn default() -> Self {
        OperatorOptions {
            probe_interval_seconds: 2,
            probe_timeout_seconds: 2,
            lease_duration_seconds: 6,
            identity: format!("e2e-{}", std::process::id()),
            webhook_port: None,
            command: "run",
            extra_args: Vec::new(),
            allow_loopback_destinations: true,
            kubeconfig: None,
            rust_log: None,
        }
    }
}

/// `connectors-operator run` against the e2e cluster (KUBECONFIG), logging in JSON
/// to a file (at debug level unless `rust_log` says otherwise).
pub struct Operator {
    process: Option<Guarded>,
    pub options: OperatorOptions,
    pub metrics_port: u16,
    pub webhook_port: u16,
    pub log: PathBuf,
}

impl Operator {
    pub fn start(options: OperatorOptions) -> Self {
        crate::install_crds();
        ensure_operator_namespace();
        let metrics_port = free_port();
        let webhook_port = options.webhook_port.unwrap_or_else(free_port);
        let dir = std::env::temp_dir().join("connectors-e2e");
        std::fs::create_dir_all(&dir).expect("temp dir");
        let log = dir.join(format!("operator-{}-{metrics_port}.log", options.identity));
        let mut args: Vec<String> = [
            options.command,
            "--probe-interval",
            &options.probe_interval_seconds.to_string(),
            "--probe-timeout",
            &options.probe_timeout_seconds.to_string(),
            "--metrics-addr",
            &format!("127.0.0.1:{metrics_port}"),
            "--namespace",
            OPERATOR_NAMESPACE,
            "--identity",
            &options.identity,
            "--lease-duration",
            &options.lease_duration_seconds.to_string(),
            "--lease-renew-before",
            "2",
            "--log-format",
            "json",
            "--webhook-addr",
            &format!("127.0.0.1:{webhook_port}"),
            "--webhook-hosts",
            "127.0.0.1",
        ]
        .map(String::from)
        .to_vec();
        args.push(format!(
            "--allow-loopback-destinations={}",
            options.allow_loopback_destinations
        ));
        args.extend(options.extra_args.iter().cloned());
        let rust_log = options.rust_log.clone().unwrap_or_else(|| {
            "debug,hyper=info,h2=info,rustls=info,tower=info,kube_client=debug".to_string()
        });
        let mut env = vec![("RUST_LOG".to_string(), rust_log)];
        if let Some(path) = &options.kubeconfig {
            env.push(("KUBECONFIG".to_string(), path.display().to_string()));
        }
        let process = Guarded::spawn(&binary("connectors-operator"), &args, &env, &log);
        let op = Operator {
            process: Some(process),
            options,
            metrics_port,
            webhook_port,
            log,
        };
        op.wait_healthy();
        op
    }

    fn wait_healthy(&self) {
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(20) {
            if http_get(self.metrics_port, "/readyz").is_some_and(|(code, _)| code == 200) {
                return;
            }
            if !self.alive() {
                panic!("operator exited at start-up; log:\n{}", self.logs());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("operator not ready after 20s; log:\n{}", self.logs());
    }

    pub fn alive(&self) -> bool {
        self.process.as_ref().is_some_and(Guarded::alive)
    }

    pub fn pid(&self) -> u32 {
        self.process.as_ref().map(|p| p.pid).unwrap_or_default()
    }

    /// SIGKILL: no clean-up, no Lease release.
    pub fn kill(&mut self) {
        if let Some(p) = self.process.take() {
            p.signal("KILL");
            drop(p);
        }
    }

    /// SIGSTOP: the process is frozen (its connections stay open until the peer
    /// drops them) until [`Operator::resume`].
    pub fn pause(&self) {
        if let Some(p) = &self.process {
            p.signal("STOP");
        }
    }

    /// SIGCONT after [`Operator::pause`].
    pub fn resume(&self) {
        if let Some(p) = &self.process {
            p.signal("CONT");
        }
    }

    /// SIGTERM and wait up to 20 s for the process to exit.
    pub fn terminate(&mut self) {
        if let Some(mut p) = self.process.take() {
            p.signal("TERM");
            let start = Instant::now();
            while p.alive() && start.elapsed() < Duration::from_secs(20) {
                std::thread::sleep(Duration::from_millis(100));
            }
            assert!(!p.alive(), "operator did not exit within 20s of SIGTERM");
            p.stop();
        }
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Zero panics, zero restarts: the same process still runs and its log holds no
    /// panic message.
    #[track_caller]
    pub fn assert_alive_without_panic(&self) {
        assert!(
            self.alive(),
            "the operator process exited; log: {}",
            self.log.display()
        );
        assert!(
            !self.logs().contains("panicked"),
            "the operator panicked; see {}",
            self.log.display()
        );
    }

    /// Log lines (JSON) that contain every one of `parts`.
    pub fn count_log_lines(&self, parts: &[&str]) -> usize {
        self.logs()
            .lines()
            .filter(|line| parts.iter().all(|p| line.contains(p)))
            .count()
    }

    /// The `/metrics` text.
    pub fn metrics(&self) -> String {
        http_get(self.metrics_port, "/metrics")
            .map(|(_, body)| body)
            .unwrap_or_default()
    }

    /// Sum of the samples of a metric whose line starts with `prefix`
    /// (e.g. `connectors_operator_status_writes_total{kind="Connector"}`).
    pub fn metric(&self, prefix: &str) -> f64 {
        metric_value(&self.metrics(), prefix)
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let logs = self.logs();
            let tail: Vec<&str> = logs.lines().rev().take(60).collect();
            eprintln!(
                "--- last operator log lines ({}) ---\n{}",
                self.log.display(),
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
    }
}

/// Sum of the samples whose line starts with `prefix`.
pub fn metric_value(text: &str, prefix: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Creates the operator's namespace unless it exists.
pub fn ensure_operator_namespace() {
    let out = kubectl([
        "get",
        "namespace",
        OPERATOR_NAMESPACE,
        "--ignore-not-found",
        "-o",
        "name",
    ]);
    if String::from_utf8_lossy(&out.stdout).trim().is_empty() {
        let out = kubectl(["create", "namespace", OPERATOR_NAMESPACE]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() || stderr.contains("AlreadyExists"),
            "{} create namespace: {stderr}",
            kubectl_bin()
        );
    }
}

/// A plain HTTP/1.1 GET on loopback: (status, body), `None` when nothing answers.
pub fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let status = response.split(' ').nth(1)?.parse().ok()?;
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Some((status, body))
}

/// The shipped demo tool (`demo-tool`): `/` healthy JSON, `/{org}/{repo}/info/refs`
/// accepting Basic `demo:demo-password`, and misbehaving routes under `/misbehave/`.
/// It is also a real Git server for the repositories under its git root (a bare
/// `demo/repo.git` with one commit on `main` is created there), with test routes
/// (`/echo`, `/bytes/{n}`, `/sink`, `/redirect`, `/upgrade`) and a request log
/// (`/_requests`); see `src/bin/demo-tool/main.rs`.
pub struct DemoTool {
    /// Serving HTTPS (`start_tls`).
    https: bool,
    process: Option<Guarded>,
    pub port: u16,
    /// Port on `[::1]` when started with [`DemoTool::start_dual_stack`].
    pub ipv6_port: Option<u16>,
    git_root: PathBuf,
    /// Whether the git root is this value's own (a temporary directory removed on drop).
    own_git_root: bool,
}

impl DemoTool {
    /// On a free loopback port, with a temporary git root of its own.
    pub fn start() -> Self {
        Self::start_on(false, None)
    }

    /// Also listens on the IPv6 loopback (`[::1]`), for IPv6 literal addresses.
    pub fn start_dual_stack() -> Self {
        Self::start_on(true, None)
    }

    /// Serves the repositories under `git_root` (created if missing, kept on drop).
    pub fn start_with_git_root(git_root: &std::path::Path) -> Self {
        Self::start_on(false, Some(git_root.to_path_buf()))
    }

    /// Serves HTTPS with this certificate and key (PEM files); `url()` is `https://`.
    pub fn start_tls(cert: &std::path::Path, key: &std::path::Path) -> Self {
        let tls = vec![
            "--tls-cert".to_string(),
            cert.display().to_string(),
            "--tls-key".to_string(),
            key.display().to_string(),
        ];
        Self::start_with(false, None, tls)
    }

    fn start_on(ipv6: bool, git_root: Option<PathBuf>) -> Self {
        Self::start_with(ipv6, git_root, Vec::new())
    }

    fn start_with(ipv6: bool, git_root: Option<PathBuf>, tls: Vec<String>) -> Self {
        let port = free_port();
        let ipv6_port = ipv6.then(free_port_v6);
        let dir = std::env::temp_dir().join("connectors-e2e");
        std::fs::create_dir_all(&dir).expect("temp dir");
        let log = dir.join(format!("demo-tool-{port}.log"));
        let own_git_root = git_root.is_none();
        let git_root = git_root.unwrap_or_else(|| {
            let root = dir.join(format!("demo-tool-git-{port}"));
            let _ = std::fs::remove_dir_all(&root);
            root
        });
        let mut args = vec!["--git-root".to_string(), git_root.display().to_string()];
        let https = !tls.is_empty();
        args.extend(tls);
        args.push(format!("127.0.0.1:{port}"));
        args.extend(ipv6_port.map(|p| format!("[::1]:{p}")));
        let process = Guarded::spawn(&binary("demo-tool"), &args, &[], &log);
        let start = Instant::now();
        let up = || match https {
            true => TcpStream::connect(("127.0.0.1", port)).is_ok(),
            false => http_get(port, "/").is_some(),
        };
        while !up() {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "demo-tool did not start; log:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        DemoTool {
            process: Some(process),
            port,
            ipv6_port,
            git_root,
            own_git_root,
            https,
        }
    }

    pub fn url(&self) -> String {
        let scheme = if self.https { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// `http://[::1]:PORT`; panics unless started with [`DemoTool::start_dual_stack`].
    pub fn ipv6_url(&self) -> String {
        let port = self.ipv6_port.expect("demo tool started without IPv6");
        format!("http://[::1]:{port}")
    }

    /// The directory of the served repositories (`{org}/{repo}.git`).
    pub fn git_root(&self) -> &std::path::Path {
        &self.git_root
    }

    /// `http://127.0.0.1:PORT/demo/repo.git`, the repository created at start-up
    /// (without credentials; see `connectors_e2e::git::with_userinfo`).
    pub fn repo_url(&self) -> String {
        format!("{}/demo/repo.git", self.url())
    }

    /// Process id of the tool (not of its guard shell).
    pub fn pid(&self) -> u32 {
        self.process.as_ref().map(|p| p.pid).unwrap_or_default()
    }

    /// Peak resident set size of the tool so far (`VmHWM`), in KiB; `None` off Linux
    /// or once the process is gone.
    pub fn peak_rss_kib(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).ok()?;
        let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
        line.split_whitespace().nth(1)?.parse().ok()
    }
}

impl Drop for DemoTool {
    fn drop(&mut self) {
        // Stop the process first: it writes into the git root.
        drop(self.process.take());
        if self.own_git_root {
            let _ = std::fs::remove_dir_all(&self.git_root);
        }
    }
}

/// A free port on the IPv6 loopback.
fn free_port_v6() -> u16 {
    TcpListener::bind("[::1]:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind an ephemeral IPv6 loopback port")
}
