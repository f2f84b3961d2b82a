//! `bench-proxy`: the proxy benchmark of issue #14 (`docs/benchmarks.md`, section
//! "Proxy", defines every figure).
//!
//! On a local control plane (its own, through `e2e/cluster.sh with`, unless
//! `--existing`), with the release proxy and the release demo tool as processes, all
//! on loopback, in one run:
//! 1. latency of 1 KiB GETs (`/bytes/1024`) at `--clients` keep-alive clients, direct
//!    to the tool, through nginx (the Debian package, a plain reverse proxy) and
//!    through the proxy, in interleaved rounds after a warm-up;
//! 2. the apiserver requests the proxy made during step 1 (its own metrics and the
//!    apiserver's `apiserver_request_total`), per proxied request;
//! 3. a 1 GiB download and a 1 GiB upload (streamed from a generator), direct and
//!    through the proxy;
//! 4. the proxy's peak RSS (VmHWM) with `--uploads` concurrent streamed uploads.
//!
//! Prints a table, the goals with `met`/`MISSED` and, last, one `bench-proxy ...` line.

mod connect;
#[allow(dead_code)]
#[path = "../bench/cost.rs"]
mod cost;
mod load;
mod nginx;

use std::path::PathBuf;
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

use clap::Parser;
use connectors_e2e::fixtures::{ClassGuard, PROXY_CLASS_EXTRA, basic_secret, connector, git_class};
use connectors_e2e::process::{DemoTool, metric_value};
use connectors_e2e::proxy::{ProxyOptions, ProxyProcess, service_account_with_access};
use connectors_e2e::{TestNamespace, apply_yaml, install_crds};

use cost::Cost;
use load::{Latencies, Target, Transfer};
use nginx::Nginx;

/// The proxy benchmark: added latency (vs direct and nginx), throughput, RSS,
/// apiserver requests per proxied request.
#[derive(Parser, Clone, Debug)]
#[command(name = "bench-proxy")]
struct Args {
    /// Concurrent keep-alive clients of the latency phase.
    #[arg(long, default_value_t = 100)]
    clients: usize,
    /// Measured 1 KiB GETs per target (after the warm-up), split over the rounds.
    #[arg(long, default_value_t = 20_000)]
    requests: usize,
    /// Rounds of the latency phase: each sends requests/rounds to every target in
    /// turn (direct, nginx, proxy), so drift in machine load hits all three alike.
    #[arg(long, default_value_t = 4)]
    rounds: usize,
    /// GETs per target from a single client after the rounds (the unloaded path,
    /// not a goal).
    #[arg(long, default_value_t = 2_000)]
    single_requests: usize,
    /// Warm-up GETs per target before anything is measured.
    #[arg(long, default_value_t = 3_000)]
    warmup: usize,
    /// Seconds of proxy-only load after the latency rounds, longer than the token
    /// cache TTL (30 s), so every review cache and the Secret cache expire at least
    /// once: apiserver requests per proxied request are counted over it.
    #[arg(long, default_value_t = 35)]
    sustain_seconds: u64,
    /// Size of the download and the upload, bytes.
    #[arg(long, default_value_t = 1 << 30)]
    transfer_bytes: u64,
    /// Transfers of each kind per path; the best is reported.
    #[arg(long, default_value_t = 2)]
    transfer_runs: usize,
    /// Concurrent uploads of the RSS phase.
    #[arg(long, default_value_t = 100)]
    uploads: usize,
    /// Size of each of those uploads, bytes.
    #[arg(long, default_value_t = 20 << 20)]
    upload_bytes: u64,
    /// nginx worker processes (the machine's cores by default).
    #[arg(long, default_value_t = 0)]
    nginx_workers: usize,
    /// Use the cluster of the current KUBECONFIG instead of starting one.
    #[arg(long)]
    existing: bool,
    /// The proxy's `RUST_LOG` (its JSON log goes to /tmp/connectors-e2e/).
    #[arg(long, default_value = "info")]
    proxy_log: String,
    /// Directory of the built release `connectors-operator` and `demo-tool`.
    #[arg(long, env = "BENCH_OPERATOR_BIN_DIR")]
    operator_bin_dir: Option<PathBuf>,
}

const CLASS: &str = "bench-proxy";
const CONNECTOR: &str = "bench";
const LATENCY_PATH: &str = "/bytes/1024";

fn repo_root() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

fn progress(message: &str) {
    eprintln!("bench-proxy: {message}");
}

fn bin_dir(args: &Args) -> Result<PathBuf, String> {
    if let Some(dir) = &args.operator_bin_dir {
        return Ok(dir.clone());
    }
    progress("building the release proxy and demo tool");
    let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(["build", "--release", "-p", "connectors-operator", "--bins"])
        .current_dir(repo_root())
        .status()
        .map_err(|e| e.to_string())?;
    if !status.success() {
        return Err(format!("cargo build failed: {status}"));
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target"));
    Ok(target.join("release"))
}

/// This same command with `--existing` under `e2e/cluster.sh with`, which starts a
/// control plane in `$E2E_DIR` and always tears it down.
fn under_own_cluster(bin_dir: &PathBuf) -> Result<ExitCode, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let e2e_dir = std::env::var_os("E2E_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("connectors-bench-proxy"));
    progress(&format!(
        "starting a local control plane in {}",
        e2e_dir.display()
    ));
    let status = Command::new(repo_root().join("e2e/cluster.sh"))
        .args(["with", "--"])
        .arg(exe)
        .arg("--existing")
        .args(std::env::args_os().skip(1))
        .env("E2E_DIR", &e2e_dir)
        .env("BENCH_OPERATOR_BIN_DIR", bin_dir)
        .status()
        .map_err(|e| e.to_string())?;
    Ok(ExitCode::from(
        status.code().unwrap_or(1).clamp(0, 255) as u8
    ))
}

fn main() -> ExitCode {
    let args = Args::parse();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = match bin_dir(&args) {
        Ok(dir) => dir,
        Err(e) => return fail(e),
    };
    // SAFETY: start-up, no other thread exists yet. The process helpers find the
    // proxy and the demo tool through this variable.
    unsafe { std::env::set_var("E2E_BIN_DIR", &dir) };
    if !args.existing {
        return under_own_cluster(&dir).unwrap_or_else(fail);
    }
    match run(&args) {
        Ok(report) => {
            print!("{}", report.render(&args));
            ExitCode::SUCCESS
        }
        Err(e) => fail(e),
    }
}

fn fail(e: String) -> ExitCode {
    eprintln!("bench-proxy: error: {e}");
    ExitCode::from(1)
}

/// `VmHWM` or `VmRSS` of a process, in MiB.
fn status_mib(pid: u32, field: &str) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix(field))
                .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        })
        .map_or(0.0, |kib| kib / 1024.0)
}

/// CPU seconds (user + system) of `pid` and of its child processes (nginx's
/// workers), 0 when gone.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = |pid: &str| -> Option<(u32, f64)> {
        let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let fields: Vec<&str> = text.rsplit_once(')')?.1.split_whitespace().collect();
        let ppid = fields.get(1)?.parse().ok()?;
        let ticks = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
        // USER_HZ is 100 on Linux.
        Some((ppid, ticks / 100.0))
    };
    let own = stat(&pid.to_string()).map_or(0.0, |(_, s)| s);
    let children: f64 = std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str().map(str::to_string))
        .filter(|name| name.bytes().all(|b| b.is_ascii_digit()))
        .filter_map(|name| stat(&name))
        .filter(|(ppid, _)| *ppid == pid)
        .map(|(_, s)| s)
        .fold(0.0, |a, b| a + b);
    own + children
}

/// CPU seconds so far of: the tool, nginx (with its workers), the proxy, this bench.
fn cpu_now(pids: [u32; 3]) -> [f64; 4] {
    [
        cpu_seconds(pids[0]),
        cpu_seconds(pids[1]),
        cpu_seconds(pids[2]),
        cpu_seconds(std::process::id()),
    ]
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "?".into())
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// The proxy's counters read from its `/metrics`.
#[derive(Clone, Debug, Default)]
struct ProxyCounters {
    /// `connectors_proxy_apiserver_requests_total` by kind.
    apiserver: Vec<(String, f64)>,
    cache_misses: f64,
    cache_hits: f64,
    requests: f64,
}

impl ProxyCounters {
    fn read(proxy: &ProxyProcess) -> Self {
        let text = proxy.metrics();
        let sum_where = |name: &str, needle: &str| -> f64 {
            text.lines()
                .filter(|l| l.starts_with(name) && l.contains(needle))
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .fold(0.0, |a, b| a + b)
        };
        let mut apiserver: Vec<(String, f64)> = Vec::new();
        for line in text
            .lines()
            .filter(|l| l.starts_with("connectors_proxy_apiserver_requests_total"))
        {
            let kind = line
                .split_once("kind=\"")
                .and_then(|(_, r)| r.split_once('"'))
                .map_or("", |(k, _)| k)
                .to_string();
            let value = line
                .rsplit(' ')
                .next()
                .and_then(|v| v.parse().ok())
                .unwrap_or(0.0);
            apiserver.push((kind, value));
        }
        ProxyCounters {
            apiserver,
            cache_misses: sum_where("connectors_proxy_cache_lookups_total", "result=\"miss\""),
            cache_hits: sum_where("connectors_proxy_cache_lookups_total", "result=\"hit\""),
            requests: metric_value(&text, "connectors_proxy_requests_total") + 0.0,
        }
    }

    fn apiserver_total(&self) -> f64 {
        // An empty `sum` would be -0.0.
        self.apiserver
            .iter()
            .map(|(_, v)| v)
            .fold(0.0, |a, b| a + b)
    }

    fn since(&self, earlier: &ProxyCounters) -> ProxyCounters {
        let before = |kind: &str| {
            earlier
                .apiserver
                .iter()
                .find(|(k, _)| k == kind)
                .map_or(0.0, |(_, v)| *v)
        };
        ProxyCounters {
            apiserver: self
                .apiserver
                .iter()
                .map(|(k, v)| (k.clone(), v - before(k)))
                .filter(|(_, v)| *v > 0.0)
                .collect(),
            cache_misses: self.cache_misses - earlier.cache_misses,
            cache_hits: self.cache_hits - earlier.cache_hits,
            requests: self.requests - earlier.requests,
        }
    }
}

/// What the proxy asked of the apiserver in a window, by its metrics and by the
/// apiserver's, and the CPU spent.
struct ApiWindow {
    counters: ProxyCounters,
    /// Requests the apiserver served for tokenreviews, subjectaccessreviews, secrets.
    review_requests: f64,
    /// The same, each: tokenreviews, subjectaccessreviews, secrets.
    by_kind: [f64; 3],
    seconds: f64,
    lines: Vec<String>,
    cost: Cost,
}

impl ApiWindow {
    fn start(proxy: &ProxyProcess) -> (ProxyCounters, Cost, Instant) {
        (
            ProxyCounters::read(proxy),
            Cost::now(Some(proxy.pid())),
            Instant::now(),
        )
    }

    fn end(
        proxy: &ProxyProcess,
        (counters, cost, started): (ProxyCounters, Cost, Instant),
    ) -> ApiWindow {
        let cost = Cost::now(Some(proxy.pid())).since(&cost);
        let counters = ProxyCounters::read(proxy).since(&counters);
        let lines = cost.request_lines(1.0);
        let count = |prefix: &str| {
            lines
                .iter()
                .filter_map(|l| l.strip_prefix(prefix)?.parse::<f64>().ok())
                .fold(0.0, |a, b| a + b)
        };
        let by_kind = [
            count("POST tokenreviews "),
            count("POST subjectaccessreviews "),
            count("GET secrets "),
        ];
        ApiWindow {
            counters,
            review_requests: by_kind.iter().fold(0.0, |a, b| a + b),
            by_kind,
            lines,
            cost,
            seconds: started.elapsed().as_secs_f64(),
        }
    }

    /// The most review and Secret requests a warm proxy needs in this window with one
    /// token, one access decision and one Secret: one refresh of each per TTL (token
    /// 30 s, access 10 s, Secret 10 s), plus one each for a window not aligned on them.
    fn expected_max(&self) -> f64 {
        let refreshes = |ttl: f64| (self.seconds / ttl).floor() + 1.0;
        refreshes(30.0) + refreshes(10.0) + refreshes(10.0)
    }

    /// Apiserver requests per proxied request: the TokenReviews, SubjectAccessReviews
    /// and Secret GETs the apiserver served (nothing else makes them during the
    /// phases), or the proxy's own count if larger.
    fn per_request(&self) -> f64 {
        self.review_requests.max(self.counters.apiserver_total()) / self.counters.requests.max(1.0)
    }

    /// The same by the proxy's `connectors_proxy_apiserver_requests_total` alone.
    fn per_request_by_proxy(&self) -> f64 {
        self.counters.apiserver_total() / self.counters.requests.max(1.0)
    }
}

/// Latencies of the three paths.
struct LatencyPhase {
    direct: Latencies,
    nginx: Latencies,
    proxy: Latencies,
    seconds: f64,
    api: ApiWindow,
    load: (String, String),
    /// CPU seconds of tool / nginx / proxy / bench while each path (direct, nginx,
    /// proxy) was measured.
    cpu: [[f64; 4]; 3],
    /// The same GETs from one client (no queueing): direct, nginx, proxy.
    single: [Latencies; 3],
}

/// Proxy-only load for longer than the cache TTLs.
struct Sustained {
    latencies: Latencies,
    api: ApiWindow,
}

struct Transfers {
    download_direct: Transfer,
    download_nginx: Transfer,
    download_proxy: Transfer,
    upload_direct: Transfer,
    upload_nginx: Transfer,
    upload_proxy: Transfer,
}

struct Uploads {
    seconds: f64,
    peak_rss_before: f64,
    peak_rss: f64,
    rss_after: f64,
    failed: usize,
}

/// HTTPS GETs direct and through CONNECT (issue 15), and the proxy's leaf cache.
struct ConnectPhase {
    direct: Latencies,
    proxied: Latencies,
    leaf_hits: f64,
    leaf_misses: f64,
}

struct Report {
    connect: ConnectPhase,
    nginx_version: String,
    nginx_workers: usize,
    setup_s: f64,
    latency: LatencyPhase,
    sustained: Sustained,
    transfers: Transfers,
    uploads: Uploads,
    proxy_rss_at_start: f64,
}

/// HTTPS GETs of a TLS demo tool (its own test CA, trusted by the Connector through
/// `caCertSecretRef`) direct and through CONNECT, the client trusting the proxy CA
/// from ConfigMap `connectors-proxy-ca`.
fn connect_phase(
    runtime: &tokio::runtime::Runtime,
    args: &Args,
    ns: &TestNamespace,
    token: &str,
    proxy: &ProxyProcess,
) -> Result<ConnectPhase, String> {
    progress("CONNECT: HTTPS GETs direct and through CONNECT (TLS terminated by the proxy)");
    let dir = std::env::temp_dir().join(format!("bench-proxy-pki-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let (ca, cert, key) = connectors_e2e::pki::ca_and_leaf(&dir);
    let secure = DemoTool::start_tls(&cert, &key);
    let ca_pem = std::fs::read_to_string(&ca).map_err(|e| e.to_string())?;
    let indented: String = ca_pem.lines().map(|l| format!("    {l}\n")).collect();
    apply_yaml(
        ns,
        &format!(
            "apiVersion: v1\nkind: Secret\nmetadata: {{name: tool-ca}}\nstringData:\n  ca.crt: |\n{indented}"
        ),
    );
    apply_yaml(
        ns,
        &format!(
            "apiVersion: connectors.alauda.io/v1alpha1\nkind: Connector\nmetadata: {{name: secure}}\nspec:\n  connectorClassName: {CLASS}\n  address: {}\n  auth: {{name: basicAuth, secretRef: {{name: tool-auth}}}}\n  caCertSecretRef: {{name: tool-ca}}\n",
            secure.url()
        ),
    );
    let proxy_ca = connectors_e2e::kubectl_ok([
        "get",
        "configmap",
        "connectors-proxy-ca",
        "-n",
        connectors_e2e::process::OPERATOR_NAMESPACE,
        "-o",
        "jsonpath={.data.ca\\.crt}",
    ]);
    let proxy_url = format!("http://127.0.0.1:{}", proxy.port);
    let user = format!("{}/secure", ns.name());
    let direct = connect::client(ca_pem.as_bytes(), None, args.clients)?;
    let proxied = connect::client(
        proxy_ca.as_bytes(),
        Some((&proxy_url, &user, token)),
        args.clients,
    )?;
    let url = format!("{}{LATENCY_PATH}", secure.url());
    let waited = Instant::now();
    while runtime
        .block_on(connect::latency(&proxied, &url, 1, 1))
        .errors
        > 0
    {
        if waited.elapsed() > Duration::from_secs(30) {
            return Err("the proxy did not serve the https Connector within 30s".into());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    for client in [&direct, &proxied] {
        runtime.block_on(connect::latency(client, &url, args.clients, args.warmup));
    }
    let d = runtime.block_on(connect::latency(&direct, &url, args.clients, args.requests));
    let p = runtime.block_on(connect::latency(
        &proxied,
        &url,
        args.clients,
        args.requests,
    ));
    let metrics = proxy.metrics();
    let leaf = |result: &str| {
        metric_value(
            &metrics,
            &format!("connectors_proxy_cache_lookups_total{{cache=\"leaf\",result=\"{result}\"}}"),
        )
    };
    Ok(ConnectPhase {
        direct: d,
        proxied: p,
        leaf_hits: leaf("hit"),
        leaf_misses: leaf("miss"),
    })
}

fn run(args: &Args) -> Result<Report, String> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let started = Instant::now();
    progress("setting up: class, namespace, Secret, Connector, ServiceAccount token");
    install_crds();
    let _class = ClassGuard::apply(CLASS, &format!("{}{PROXY_CLASS_EXTRA}", git_class(CLASS)));
    let ns = TestNamespace::new("bench-proxy");
    let tool = DemoTool::start();
    apply_yaml(&ns, &basic_secret("tool-auth", "demo-password"));
    apply_yaml(&ns, &connector(CONNECTOR, CLASS, &tool.url(), "tool-auth"));
    let token = service_account_with_access(&ns, "client");
    let nginx_workers = if args.nginx_workers == 0 {
        cores()
    } else {
        args.nginx_workers
    };
    let nginx = Nginx::start(tool.port, nginx_workers)?;
    let proxy = ProxyProcess::start(ProxyOptions {
        rust_log: args.proxy_log.clone(),
        ..ProxyOptions::default()
    });
    let proxy_rss_at_start = status_mib(proxy.pid(), "VmRSS:");
    let direct = Target {
        name: "direct",
        port: tool.port,
        host: format!("127.0.0.1:{}", tool.port),
        authorization: None,
    };
    let via_nginx = Target {
        name: "nginx",
        port: nginx.port,
        host: format!("127.0.0.1:{}", nginx.port),
        authorization: None,
    };
    let via_proxy = Target {
        name: "proxy",
        port: proxy.port,
        host: format!("c-{CONNECTOR}.{}.svc:{}", ns.name(), proxy.port),
        authorization: Some(format!("Bearer {token}")),
    };
    // The Connector reaches the proxy through its watch.
    let waited = Instant::now();
    loop {
        let probe = runtime.block_on(load::latency(&via_proxy, LATENCY_PATH, 1, 1));
        if probe.errors == 0 && probe.micros.len() == 1 {
            break;
        }
        if waited.elapsed() > Duration::from_secs(30) {
            return Err(format!(
                "the proxy did not serve the Connector within 30s: {:?}",
                probe.first_error
            ));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let setup_s = started.elapsed().as_secs_f64();

    // 1. Latency.
    progress(&format!(
        "warming up: {} GETs per target at {} clients",
        args.warmup, args.clients
    ));
    for target in [&direct, &via_nginx, &via_proxy] {
        let warm = runtime.block_on(load::latency(
            target,
            LATENCY_PATH,
            args.clients,
            args.warmup,
        ));
        if warm.errors > 0 {
            return Err(format!(
                "{} failed {} warm-up requests: {:?}",
                target.name, warm.errors, warm.first_error
            ));
        }
    }
    let window = ApiWindow::start(&proxy);
    let load_before = load_average();
    let latency_started = Instant::now();
    let per_round = args.requests.div_ceil(args.rounds.max(1));
    let pids = [tool.pid(), nginx.pid(), proxy.pid()];
    let mut cpu = [[0.0; 4]; 3];
    let mut results = [
        Latencies::default(),
        Latencies::default(),
        Latencies::default(),
    ];
    for round in 0..args.rounds.max(1) {
        progress(&format!(
            "latency round {}/{}: {per_round} GETs of {LATENCY_PATH} per target at {} clients",
            round + 1,
            args.rounds,
            args.clients
        ));
        for (i, target) in [&direct, &via_nginx, &via_proxy].into_iter().enumerate() {
            let before = cpu_now(pids);
            let l = runtime.block_on(load::latency(target, LATENCY_PATH, args.clients, per_round));
            let after = cpu_now(pids);
            for (k, used) in cpu[i].iter_mut().enumerate() {
                *used += after[k] - before[k];
            }
            results[i].merge(l);
        }
    }
    let latency_seconds = latency_started.elapsed().as_secs_f64();
    let load_after = load_average();
    let api = ApiWindow::end(&proxy, window);
    let [direct_l, nginx_l, proxy_l] = results;
    for (name, l) in [
        ("direct", &direct_l),
        ("nginx", &nginx_l),
        ("proxy", &proxy_l),
    ] {
        if l.errors > 0 {
            progress(&format!(
                "{name}: {} failed requests, first: {:?}",
                l.errors, l.first_error
            ));
        }
    }
    progress(&format!(
        "single client: {} GETs per target",
        args.single_requests
    ));
    let single = [&direct, &via_nginx, &via_proxy]
        .map(|t| runtime.block_on(load::latency(t, LATENCY_PATH, 1, args.single_requests)));
    let latency = LatencyPhase {
        direct: direct_l,
        nginx: nginx_l,
        proxy: proxy_l,
        seconds: latency_seconds,
        api,
        load: (load_before, load_after),
        cpu,
        single,
    };

    // 1b. The CONNECT path.
    let connect = connect_phase(&runtime, args, &ns, &token, &proxy)?;

    // 2. Sustained proxy load past every cache TTL: apiserver requests per request.
    progress(&format!(
        "sustained: {}s of GETs through the proxy at {} clients",
        args.sustain_seconds, args.clients
    ));
    let window = ApiWindow::start(&proxy);
    let deadline = Instant::now() + Duration::from_secs(args.sustain_seconds);
    let latencies = runtime.block_on(load::latency_until(
        &via_proxy,
        LATENCY_PATH,
        args.clients,
        usize::MAX,
        Some(deadline),
    ));
    let sustained = Sustained {
        latencies,
        api: ApiWindow::end(&proxy, window),
    };

    // 3. Throughput.
    let size = args.transfer_bytes;
    let best = |a: Option<Transfer>, b: Transfer| match a {
        Some(a) if a.seconds <= b.seconds => Some(a),
        _ => Some(b),
    };
    let (mut dd, mut dn, mut dp) = (None, None, None);
    let (mut ud, mut un, mut up) = (None, None, None);
    for run in 0..args.transfer_runs.max(1) {
        progress(&format!(
            "transfers {}/{}: {size} bytes down and up, direct and through the proxy",
            run + 1,
            args.transfer_runs
        ));
        dd = best(dd, runtime.block_on(load::download(&direct, size))?);
        dn = best(dn, runtime.block_on(load::download(&via_nginx, size))?);
        dp = best(dp, runtime.block_on(load::download(&via_proxy, size))?);
        ud = best(ud, runtime.block_on(load::upload(&direct, size))?);
        un = best(un, runtime.block_on(load::upload(&via_nginx, size))?);
        up = best(up, runtime.block_on(load::upload(&via_proxy, size))?);
    }
    let some = |t: Option<Transfer>| t.ok_or("no transfer ran".to_string());
    let transfers = Transfers {
        download_direct: some(dd)?,
        download_nginx: some(dn)?,
        download_proxy: some(dp)?,
        upload_direct: some(ud)?,
        upload_nginx: some(un)?,
        upload_proxy: some(up)?,
    };
    drop(nginx);

    // 4. RSS with concurrent uploads.
    let peak_rss_before = status_mib(proxy.pid(), "VmHWM:");
    progress(&format!(
        "{} concurrent uploads of {} bytes through the proxy",
        args.uploads, args.upload_bytes
    ));
    let uploads_started = Instant::now();
    let outcomes = runtime.block_on(async {
        let tasks: Vec<_> = (0..args.uploads)
            .map(|_| {
                let target = via_proxy.clone();
                let len = args.upload_bytes;
                tokio::spawn(async move { load::upload(&target, len).await })
            })
            .collect();
        let mut outcomes = Vec::new();
        for task in tasks {
            outcomes.push(task.await.map_err(|e| e.to_string()).and_then(|r| r));
        }
        outcomes
    });
    let uploads_seconds = uploads_started.elapsed().as_secs_f64();
    let failed = outcomes.iter().filter(|o| o.is_err()).count();
    if let Some(Err(e)) = outcomes.iter().find(|o| o.is_err()) {
        progress(&format!("{failed} uploads failed, first: {e}"));
    }
    let uploads = Uploads {
        seconds: uploads_seconds,
        peak_rss_before,
        peak_rss: status_mib(proxy.pid(), "VmHWM:"),
        rss_after: status_mib(proxy.pid(), "VmRSS:"),
        failed,
    };
    if !proxy.alive() {
        return Err(format!("the proxy died; log:\n{}", proxy.logs()));
    }
    drop(proxy);
    drop(tool);
    Ok(Report {
        connect,
        nginx_version: Nginx::version(),
        nginx_workers,
        setup_s,
        latency,
        sustained,
        transfers,
        uploads,
        proxy_rss_at_start,
    })
}

impl Report {
    fn render(&self, args: &Args) -> String {
        let l = &self.latency;
        let mut out = String::new();
        let mut row = |phase: &str, figure: &str, value: String| {
            out.push_str(&format!("| {phase:<8} | {figure:<52} | {value:>24} |\n"));
        };
        row(
            "setup",
            "cores / load average before / after latency",
            format!("{} / {} / {}", cores(), l.load.0, l.load.1),
        );
        row(
            "setup",
            "control plane objects + processes up",
            format!("{:.1}s", self.setup_s),
        );
        row(
            "setup",
            "nginx (worker processes)",
            format!(
                "{} ({})",
                self.nginx_version.trim_start_matches("nginx version: "),
                self.nginx_workers
            ),
        );
        row(
            "latency",
            "clients / GETs per target / rounds / warm-up",
            format!(
                "{} / {} / {} / {}",
                args.clients,
                l.direct.micros.len(),
                args.rounds,
                args.warmup
            ),
        );
        for (name, lat) in [
            ("direct", &l.direct),
            ("nginx", &l.nginx),
            ("proxy", &l.proxy),
        ] {
            row(
                "latency",
                &format!("{name}: p50 / p90 / p99 / max ms"),
                format!(
                    "{:.2} / {:.2} / {:.2} / {:.1}",
                    lat.ms(0.5),
                    lat.ms(0.9),
                    lat.ms(0.99),
                    lat.ms(1.0)
                ),
            );
            row(
                "latency",
                &format!("{name}: requests/s (errors)"),
                format!("{:.0} ({})", lat.requests_per_second(), lat.errors),
            );
        }
        for (i, (name, lat)) in [
            ("direct", &l.direct),
            ("nginx", &l.nginx),
            ("proxy", &l.proxy),
        ]
        .into_iter()
        .enumerate()
        {
            let per = |k: usize| l.cpu[i][k] * 1e6 / (lat.micros.len().max(1) as f64);
            row(
                "cpu",
                &format!("{name}: us/request tool / nginx / proxy / client"),
                format!(
                    "{:.0} / {:.0} / {:.0} / {:.0}",
                    per(0),
                    per(1),
                    per(2),
                    per(3)
                ),
            );
        }
        let added = |lat: &Latencies, q: f64| lat.ms(q) - l.direct.ms(q);
        row(
            "latency",
            "added by nginx: p50 / p99 ms",
            format!("{:.2} / {:.2}", added(&l.nginx, 0.5), added(&l.nginx, 0.99)),
        );
        row(
            "latency",
            "added by the proxy: p50 / p99 ms",
            format!("{:.2} / {:.2}", added(&l.proxy, 0.5), added(&l.proxy, 0.99)),
        );
        let ratio_at = |q: f64| added(&l.proxy, q) / added(&l.nginx, q);
        row(
            "latency",
            "proxy added / nginx added: p50 / p99",
            format!("{:.2} / {:.2}", ratio_at(0.5), ratio_at(0.99)),
        );
        let c = &self.connect;
        for (name, lat) in [
            ("direct https", &c.direct),
            ("CONNECT + TLS termination", &c.proxied),
        ] {
            row(
                "connect",
                &format!("{name}: p50 / p99 ms (errors)"),
                format!("{:.2} / {:.2} ({})", lat.ms(0.5), lat.ms(0.99), lat.errors),
            );
        }
        let connect_added = |q: f64| c.proxied.ms(q) - c.direct.ms(q);
        row(
            "connect",
            "added by CONNECT + TLS termination: p50 / p99 ms",
            format!("{:.2} / {:.2}", connect_added(0.5), connect_added(0.99)),
        );
        let leaf_rate = c.leaf_hits / (c.leaf_hits + c.leaf_misses).max(1.0);
        row(
            "connect",
            "leaf cache: hits / misses (hit rate)",
            format!(
                "{:.0} / {:.0} ({:.1}%)",
                c.leaf_hits,
                c.leaf_misses,
                leaf_rate * 100.0
            ),
        );
        let [single_direct, single_nginx, single_proxy] = &l.single;
        for (name, lat) in [
            ("direct", single_direct),
            ("nginx", single_nginx),
            ("proxy", single_proxy),
        ] {
            row(
                "1 client",
                &format!("{name}: p50 / p99 ms (errors)"),
                format!("{:.3} / {:.3} ({})", lat.ms(0.5), lat.ms(0.99), lat.errors),
            );
        }
        let single_added = |lat: &Latencies, q: f64| lat.ms(q) - single_direct.ms(q);
        row(
            "1 client",
            "added by nginx / by the proxy: p50 ms",
            format!(
                "{:.3} / {:.3}",
                single_added(single_nginx, 0.5),
                single_added(single_proxy, 0.5)
            ),
        );
        row(
            "1 client",
            "added by nginx / by the proxy: p99 ms",
            format!(
                "{:.3} / {:.3}",
                single_added(single_nginx, 0.99),
                single_added(single_proxy, 0.99)
            ),
        );
        row(
            "latency",
            "phase seconds; CPU s apiserver/etcd/proxy/bench",
            format!("{:.1}; {}", l.seconds, l.api.cost.cpu_summary()),
        );
        let sus = &self.sustained;
        row(
            "sustain",
            "proxy: seconds / requests/s (errors)",
            format!(
                "{:.1} / {:.0} ({})",
                sus.latencies.seconds,
                sus.latencies.requests_per_second(),
                sus.latencies.errors
            ),
        );
        row(
            "sustain",
            "proxy: p50 / p90 / p99 / max ms",
            format!(
                "{:.2} / {:.2} / {:.2} / {:.1}",
                sus.latencies.ms(0.5),
                sus.latencies.ms(0.9),
                sus.latencies.ms(0.99),
                sus.latencies.ms(1.0)
            ),
        );
        row(
            "sustain",
            "CPU s apiserver/etcd/proxy/bench",
            sus.api.cost.cpu_summary(),
        );
        for (phase, api) in [("latency", &l.api), ("sustain", &sus.api)] {
            let c = &api.counters;
            let kinds = cost::counts_line(
                c.apiserver
                    .iter()
                    .map(|(kind, n)| (kind, format!("{n:.0}"))),
                "none",
            );
            row(
                phase,
                "proxied requests (proxy metric)",
                format!("{:.0}", c.requests),
            );
            row(phase, "proxy's apiserver requests by kind", kinds);
            row(
                phase,
                "proxy cache lookups: miss / hit",
                format!("{:.0} / {:.0}", c.cache_misses, c.cache_hits),
            );
            row(
                phase,
                "apiserver saw: TokenReviews / SARs / Secret GETs",
                format!(
                    "{:.0} / {:.0} / {:.0}",
                    api.by_kind[0], api.by_kind[1], api.by_kind[2]
                ),
            );
            row(
                phase,
                "  at most, one refresh per entry per TTL",
                format!("{:.0} in {:.0}s", api.expected_max(), api.seconds),
            );
            row(
                phase,
                "apiserver requests per proxied request (by proxy)",
                format!(
                    "{:.5} ({:.5})",
                    api.per_request(),
                    api.per_request_by_proxy()
                ),
            );
        }
        let per_request = sus.api.per_request();
        let t = &self.transfers;
        for (name, d, n, p) in [
            (
                "download",
                t.download_direct,
                t.download_nginx,
                t.download_proxy,
            ),
            ("upload", t.upload_direct, t.upload_nginx, t.upload_proxy),
        ] {
            row(
                name,
                "direct / nginx / proxy MB/s (best of runs)",
                format!(
                    "{:.0} / {:.0} / {:.0}",
                    d.mb_per_s(),
                    n.mb_per_s(),
                    p.mb_per_s()
                ),
            );
            row(
                name,
                "nginx / direct, proxy / direct",
                format!(
                    "{:.2}, {:.2}",
                    n.mb_per_s() / d.mb_per_s(),
                    p.mb_per_s() / d.mb_per_s()
                ),
            );
        }
        let u = &self.uploads;
        row(
            "rss",
            &format!(
                "{} x {} MiB uploads: seconds (failed)",
                args.uploads,
                args.upload_bytes >> 20
            ),
            format!("{:.1} ({})", u.seconds, u.failed),
        );
        row(
            "rss",
            "proxy RSS at start / peak before uploads MiB",
            format!("{:.1} / {:.1}", self.proxy_rss_at_start, u.peak_rss_before),
        );
        row(
            "rss",
            "proxy peak RSS (VmHWM) / RSS after MiB",
            format!("{:.1} / {:.1}", u.peak_rss, u.rss_after),
        );

        let p50 = added(&l.proxy, 0.5);
        let p99 = added(&l.proxy, 0.99);
        let nginx_p50 = added(&l.nginx, 0.5);
        let nginx_p99 = added(&l.nginx, 0.99);
        // Within 1.2x of nginx: a proxy that adds no more than nginx meets it even when
        // nginx adds (nearly) nothing.
        let ratio = ratio_at(0.5);
        let within = |proxy: f64, nginx: f64| proxy <= 1.2 * nginx.max(0.0) || proxy <= 0.0;
        let download_ratio = t.download_proxy.mb_per_s() / t.download_direct.mb_per_s();
        let upload_ratio = t.upload_proxy.mb_per_s() / t.upload_direct.mb_per_s();
        let verdict = |ok: bool| if ok { "MET" } else { "MISSED" };
        let mut goals = String::new();
        let mut goal = |text: String, ok: bool| {
            goals.push_str(&format!("goal {text}: {}\n", verdict(ok)));
        };
        goal(format!("added p50 <= 1 ms: {p50:.2} ms"), p50 <= 1.0);
        goal(format!("added p99 <= 5 ms: {p99:.2} ms"), p99 <= 5.0);
        goal(
            format!(
                "added p50 within 1.2x of nginx's: {p50:.2} vs {nginx_p50:.2} ms (ratio {ratio:.2})"
            ),
            within(p50, nginx_p50),
        );
        goal(
            format!(
                "added p99 within 1.2x of nginx's: {p99:.2} vs {nginx_p99:.2} ms (ratio {:.2})",
                ratio_at(0.99)
            ),
            within(p99, nginx_p99),
        );
        goal(
            format!("download >= 80% of direct: {:.0}%", download_ratio * 100.0),
            download_ratio >= 0.8,
        );
        goal(
            format!("upload >= 80% of direct: {:.0}%", upload_ratio * 100.0),
            upload_ratio >= 0.8,
        );
        goal(
            format!("peak RSS <= 64 MiB: {:.1} MiB", u.peak_rss),
            u.peak_rss <= 64.0,
        );
        // A refresh of each cache entry per TTL is expected and tends to 0 per request
        // as the load grows; more than that grows with the load.
        let seen = sus.api.review_requests;
        let expected = sus.api.expected_max();
        goal(
            format!(
                "~0 apiserver requests per warm request: {per_request:.5} ({seen:.0} for {:.0} requests; TTL refreshes alone: at most {expected:.0})",
                sus.api.counters.requests
            ),
            seen <= expected,
        );
        let mut requests = String::new();
        for (phase, api) in [("latency", &l.api), ("sustain", &sus.api)] {
            if !api.lines.is_empty() {
                requests.push_str(&format!(
                    "apiserver requests during the {phase} phase (all clients): {}\n",
                    api.lines.join(", ")
                ));
            }
        }
        format!(
            "\n| {:<8} | {:<52} | {:>24} |\n|{:-<10}|{:-<54}|{:-<26}|\n{out}\n{requests}\n{goals}bench-proxy p50_added_ms={p50:.3} p99_added_ms={p99:.3} nginx_p50_added_ms={nginx_p50:.3} nginx_p99_added_ms={nginx_p99:.3} ratio={ratio:.2} download_ratio={download_ratio:.2} upload_ratio={upload_ratio:.2} rss_mib={:.1} apiserver_requests_per_request={per_request:.5} apiserver_requests={:.0} ttl_refreshes_max={:.0} connect_p50_added_ms={:.3} connect_p99_added_ms={:.3} leaf_hit_rate={:.3}\n",
            "phase",
            "figure",
            "value",
            "",
            "",
            "",
            u.peak_rss,
            seen,
            expected,
            self.connect.proxied.ms(0.5) - self.connect.direct.ms(0.5),
            self.connect.proxied.ms(0.99) - self.connect.direct.ms(0.99),
            self.connect.leaf_hits / (self.connect.leaf_hits + self.connect.leaf_misses).max(1.0),
        )
    }
}
