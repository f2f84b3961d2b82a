//! `bench`: the scale benchmark (issue #7; `docs/benchmarks.md` defines every figure).
//!
//! Against a local control plane (its own, through `e2e/cluster.sh with`, unless
//! `--existing`) and an in-process probe target, on one control plane in one run:
//! 1. the apiserver floor: a bare kube client makes the operator's minimal writes
//!    (one proxy Service and one status write per Connector) at the operator's
//!    concurrency, timed until the bench's watch has seen every Connector Ready;
//! 2. the release operator, started with N Connectors already present: time until all
//!    are Ready, peak RSS, requests at the target;
//! 3. at rest for several probe periods: status and Service writes (metrics and
//!    resourceVersions) and probe requests per period;
//! 4. steps 1 and 2 again (without the rest), `--rounds` times in all (3 by default):
//!    the ratio divides the mean of the operator runs by the mean of the floors, so
//!    that one phase's luck on a shared two-core machine does not decide it;
//! 5. step 2 again with every tenth Connector on a target that never answers: time
//!    until the others are Ready.
//!
//! Each timed phase (1, 2, 4 and 5) starts once the apiserver is idle, so that none
//! pays for the controller-manager working off an earlier phase's clean-up, and runs
//! the same watch on the Connectors (the bench's observer). The namespaces and their
//! Secrets are kept from phase to phase.
//!
//! Prints a table and, last, one machine-readable `bench ...` line.

mod cost;
mod ready;
mod target;
mod workload;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

use clap::Parser;
use connectors_e2e::fixtures::{PROXY_CLASS_EXTRA, git_class};
use connectors_e2e::process::{Operator, OperatorOptions, metric_value};
use connectors_e2e::{apply_yaml, install_crds};
use connectors_operator::api::ConnectorClass;
use connectors_operator::decide::proxy_service::class_proxy_host;
use kube::Client;
use kube::api::Api;

use cost::Cost;
use ready::{ReadyWatch, quantile};
use target::{Counts, Targets};
use workload::{
    Plan, changed, delete_all, delete_namespaces, floor_writes, resource_versions, writers,
};

/// The scale benchmark: apiserver floor, time to Ready, writes at rest, a hanging tool.
#[derive(Parser, Clone, Debug)]
#[command(name = "bench")]
struct Args {
    /// Connectors per run.
    #[arg(long, default_value_t = 1000)]
    connectors: usize,
    /// Namespaces they are spread over (0: one per 100 Connectors).
    #[arg(long, default_value_t = 0)]
    namespaces: usize,
    /// Distinct tool addresses (loopback ports); half the Connectors use the first.
    #[arg(long, default_value_t = 8)]
    tools: usize,
    /// The operator's `--workers`, also the floor client's concurrency.
    #[arg(long, default_value_t = 256)]
    workers: u16,
    /// The operator's probe interval in the timed runs, seconds (its default).
    #[arg(long, default_value_t = 300)]
    probe_interval: u64,
    /// The short probe interval of the rest phase, seconds.
    #[arg(long, default_value_t = 30)]
    rest_interval: u64,
    /// The operator's probe timeout, seconds (its default).
    #[arg(long, default_value_t = 10)]
    probe_timeout: u64,
    /// Probe periods the Connectors are left at rest.
    #[arg(long, default_value_t = 3)]
    rest_periods: u32,
    /// Rounds of a floor and a Ready run (1 to 5); the ratio divides their means.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u8).range(1..=5))]
    rounds: u8,
    /// One Connector in this many points at the hanging target in the last run.
    #[arg(long, default_value_t = 10)]
    hung_every: usize,
    /// Longest wait for any phase, seconds.
    #[arg(long, default_value_t = 900)]
    timeout: u64,
    /// Use the cluster of the current KUBECONFIG instead of starting one (it must be
    /// a scratch cluster: the benchmark creates and deletes many objects).
    #[arg(long)]
    existing: bool,
    /// The operator's `RUST_LOG` (its JSON log goes to /tmp/connectors-e2e/).
    #[arg(long, default_value = "info")]
    operator_log: String,
    /// Directory of a built `connectors-operator` (default: build the release binary).
    #[arg(long, env = "BENCH_OPERATOR_BIN_DIR")]
    operator_bin_dir: Option<PathBuf>,
    /// Only the floor, this many times (at most 8), alternating kube's own client
    /// (HTTP/1, one connection per request in flight) and the operator's
    /// (`runtime::apiserver`), each on its own fresh Connectors (nothing deleted in
    /// between, so no garbage collection runs in a timed phase); then stop.
    #[arg(long, default_value_t = 0)]
    floor_clients: usize,
    /// The operator client's requests in flight in `--floor-clients` rounds (the
    /// operator's `--apiserver-max-requests`, from the same variable).
    #[arg(long, env = "APISERVER_MAX_REQUESTS", default_value_t = connectors_operator::runtime::MAX_HTTP1_REQUESTS)]
    operator_client_requests: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("operator code: {0}")]
    Operator(#[from] connectors_operator::controller::Error),
    #[error("operator code: {0}")]
    Uid(#[from] connectors_operator::decide::proxy_service::MissingUid),
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("fixture YAML: {0}")]
    Yaml(#[from] serde_yaml::Error),
    #[error("timed out after {after:?} waiting for {what}")]
    Timeout { what: String, after: Duration },
    #[error("{0}")]
    Command(String),
}

const CLASS: &str = "bench-git";
/// Namespace prefix of every timed phase (the namespaces are kept between phases).
const PREFIX: &str = "bench";
/// What the operator logs when it stops being the leader.
const LEASE_LOST: &str = "lost the leader Lease";
/// Table names of each round's floor and Ready run, and the Ready run's Lease identity.
const ROUNDS: [(&str, &str, &str); 5] = [
    ("floor", "ready", "bench-normal"),
    ("floor2", "ready2", "bench-normal2"),
    ("floor3", "ready3", "bench-normal3"),
    ("floor4", "ready4", "bench-normal4"),
    ("floor5", "ready5", "bench-normal5"),
];
const CPU_FIGURE: &str = "CPU s: apiserver / etcd / operator / bench";
const MACHINE_FIGURE: &str = "machine CPU s: busy / idle / steal";

fn repo_root() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

fn progress(message: &str) {
    eprintln!("bench: {message}");
}

/// The directory of the release operator, building it unless one was given.
fn operator_bin_dir(args: &Args) -> Result<PathBuf, BenchError> {
    if let Some(dir) = &args.operator_bin_dir {
        return Ok(dir.clone());
    }
    progress("building the release operator (cargo build --release --bin connectors-operator)");
    let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args([
            "build",
            "--release",
            "-p",
            "connectors-operator",
            "--bin",
            "connectors-operator",
        ])
        .current_dir(repo_root())
        .status()?;
    if !status.success() {
        return Err(BenchError::Command(format!("cargo build failed: {status}")));
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target"));
    Ok(target.join("release"))
}

/// The control plane's variable for the controller-manager's client rate.
const CONTROLLER_MANAGER_QPS: &str = "E2E_CONTROLLER_MANAGER_QPS";

/// Runs this same command with `--existing` under `e2e/cluster.sh with`, which starts
/// a control plane in `$E2E_DIR` (default: a temp dir) and always tears it down.
fn under_own_cluster(bin_dir: &PathBuf) -> Result<ExitCode, BenchError> {
    let exe = std::env::current_exe()?;
    let e2e_dir = std::env::var_os("E2E_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("connectors-bench"));
    progress(&format!(
        "starting a local control plane in {}",
        e2e_dir.display()
    ));
    let mut cluster = Command::new(repo_root().join("e2e/cluster.sh"));
    cluster
        .args(["with", "--"])
        .arg(exe)
        .arg("--existing")
        .args(std::env::args_os().skip(1))
        .env("E2E_DIR", &e2e_dir)
        .env("BENCH_OPERATOR_BIN_DIR", bin_dir);
    // The controller-manager works off each phase's clean-up (one endpoints DELETE
    // per deleted Service) before the next phase may start: at its default 20
    // requests per second that is 8 idle minutes per phase at 10,000 Connectors.
    if std::env::var_os(CONTROLLER_MANAGER_QPS).is_none() {
        cluster.env(CONTROLLER_MANAGER_QPS, "200");
    }
    let status = cluster.status()?;
    Ok(ExitCode::from(
        status.code().unwrap_or(1).clamp(0, 255) as u8
    ))
}

fn main() -> ExitCode {
    let args = Args::parse();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let bin_dir = match operator_bin_dir(&args) {
        Ok(dir) => dir,
        Err(e) => return fail(e),
    };
    // SAFETY: start-up, no other thread exists yet. `Operator::start` finds the
    // binary through this variable.
    unsafe { std::env::set_var("E2E_BIN_DIR", &bin_dir) };
    if !args.existing {
        return under_own_cluster(&bin_dir).unwrap_or_else(fail);
    }
    match run(&args) {
        Ok(Some(report)) => {
            print!("{}", report.render(&args));
            ExitCode::SUCCESS
        }
        Ok(None) => ExitCode::SUCCESS,
        Err(e) => fail(e),
    }
}

fn fail(e: BenchError) -> ExitCode {
    eprintln!("bench: error: {e}");
    ExitCode::from(1)
}

/// The operator's counters that the benchmark reads from `/metrics`.
#[derive(Clone, Copy, Debug, Default)]
struct OperatorCounters {
    connector_status_writes: u64,
    class_status_writes: u64,
    service_writes: u64,
    events: u64,
    reconciles: u64,
    reconcile_errors: u64,
    probes_shared: u64,
}

impl OperatorCounters {
    fn read(operator: &Operator) -> Self {
        let text = operator.metrics();
        // Counters are whole numbers (an absent one sums to -0.0, hence the cast).
        let m = |prefix: &str| {
            metric_value(&text, &format!("connectors_operator_{prefix}")).max(0.0) as u64
        };
        OperatorCounters {
            connector_status_writes: m("status_writes_total{kind=\"Connector\"}"),
            class_status_writes: m("status_writes_total{kind=\"ConnectorClass\"}"),
            service_writes: m("service_writes_total"),
            events: m("events_total"),
            reconciles: m("reconciles_total{kind=\"Connector\"}"),
            reconcile_errors: m("reconcile_errors_total"),
            probes_shared: m("probes_shared_total"),
        }
    }
}

/// `VmHWM` (peak resident set) of a process, in MiB.
fn peak_rss_mib(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kib| kib.parse::<f64>().ok())
        })
        .map_or(0.0, |kib| kib / 1024.0)
}

/// The 1-minute load average, to note how busy the machine was.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "?".into())
}

/// Figures of the rest phase.
#[derive(Debug)]
struct Rest {
    seconds: f64,
    periods: f64,
    /// How long the restarted operator took for its first pass over every Connector.
    first_pass_s: Option<f64>,
    /// What the operator's client sent after its first pass (its own counter, by verb
    /// and resource), watches and the Lease apart.
    api_requests: BTreeMap<String, u64>,
    /// Lease requests of the same window (leader election, not per Connector).
    lease_requests: u64,
    operator: OperatorCounters,
    changed_connectors: usize,
    changed_services: usize,
    requests: Counts,
    cost: Cost,
}

/// How long a phase waited for the control plane to go idle, and whether it did.
#[derive(Debug, Clone, Copy)]
struct Quiet {
    waited_s: f64,
    idle: bool,
}

impl Quiet {
    /// Waits (at most 15 minutes) until the apiserver is idle, so that no phase is
    /// timed while the controller-manager still works off an earlier clean-up.
    fn wait(phase: &str) -> Quiet {
        progress(&format!(
            "{phase}: waiting for the control plane to go idle"
        ));
        let (waited, idle) = cost::wait_until_quiet(Duration::from_secs(900));
        if !idle {
            progress(&format!(
                "{phase}: still busy after {:.0}s; timing anyway",
                waited.as_secs_f64()
            ));
        }
        Quiet {
            waited_s: waited.as_secs_f64(),
            idle,
        }
    }

    fn figure(&self) -> String {
        let busy = if self.idle { "" } else { " (still busy)" };
        format!("{:.0}s{busy}", self.waited_s)
    }
}

const FLOOR_PREFIXES: [&str; 8] = [
    "fp-0", "fp-1", "fp-2", "fp-3", "fp-4", "fp-5", "fp-6", "fp-7",
];

/// The floor over each client in turn (`--floor-clients`), printed as it goes.
async fn floor_clients(
    kube_client: &Client,
    args: &Args,
    class: &ConnectorClass,
    plans: Vec<Plan<'_>>,
) -> Result<(), BenchError> {
    let operator_client =
        connectors_operator::runtime::apiserver_client(args.operator_client_requests).await?;
    for (round, (plan, prefix)) in plans.iter().zip(FLOOR_PREFIXES).enumerate() {
        let (name, client) = if round % 2 == 0 {
            ("kube client", kube_client)
        } else {
            ("operator client", &operator_client)
        };
        let workload = workload::create(kube_client, plan).await?;
        let quiet = Quiet::wait(prefix);
        let before = Cost::now(None);
        let took = floor_writes(client, &workload, class, usize::from(args.workers))
            .await?
            .took;
        let cost = Cost::now(None).since(&before);
        println!(
            "floor {name} round {round}: {:.2}s; {CPU_FIGURE} {}; idle wait {}",
            took.as_secs_f64(),
            cost.cpu_summary(),
            quiet.figure()
        );
    }
    Ok(())
}

/// Figures of one operator run (steps 2 to 4).
#[derive(Debug)]
struct OperatorRun {
    /// The operator's Lease identity, which names the run in progress lines.
    identity: String,
    setup_s: f64,
    ready_s: f64,
    /// Seconds until each answering Connector was Ready, sorted.
    ready_each: Vec<f64>,
    /// Seconds until every hanging Connector showed LivenessReady False.
    hung_failed_s: Option<f64>,
    requests: Counts,
    operator: OperatorCounters,
    rss_mib: f64,
    rest: Option<Rest>,
    leader_lost: bool,
    cleanup_s: f64,
    /// Waiting for the control plane to go idle before the clock started.
    quiet: Quiet,
    load: (String, String),
    /// From operator start to all answering Connectors Ready.
    cost: Cost,
}

/// Figures of one floor phase.
#[derive(Debug)]
struct FloorRun {
    setup_s: f64,
    quiet: Quiet,
    /// Until the last write's response.
    writes_s: f64,
    /// Until the bench's watch saw every Connector Ready: the floor's figure, taken as
    /// the operator runs' is.
    ready_s: f64,
    load: (String, String),
    cost: Cost,
    cleanup_s: f64,
}

struct Report {
    namespaces: usize,
    /// Each before one of the operator's Ready runs (one per round, at least one).
    floors: Vec<FloorRun>,
    /// The operator's Ready runs, one per round; the first one also has the rest phase.
    readies: Vec<OperatorRun>,
    hung: OperatorRun,
}

impl FloorRun {
    /// The floor's table rows: figure and value.
    fn rows(&self) -> [(&'static str, String); 7] {
        [
            (
                "creating the Connectors (before the clock)",
                format!("{:.2}s", self.setup_s),
            ),
            (
                "waiting for an idle control plane (not timed)",
                self.quiet.figure(),
            ),
            (
                "bare client: writes done / all seen Ready",
                format!("{:.2}s / {:.2}s", self.writes_s, self.ready_s),
            ),
            (
                "load average before / after",
                format!("{} / {}", self.load.0, self.load.1),
            ),
            (CPU_FIGURE, self.cost.cpu_summary()),
            (MACHINE_FIGURE, self.cost.machine_summary()),
            ("clean-up", format!("{:.2}s", self.cleanup_s)),
        ]
    }
}

impl Report {
    /// The floor the ratio divides by: the mean of the floor phases.
    fn floor_s(&self) -> f64 {
        self.floors.iter().map(|f| f.ready_s).sum::<f64>() / self.floors.len() as f64
    }

    /// The operator's time the ratio divides: the mean of the Ready runs.
    fn ready_s(&self) -> f64 {
        self.readies.iter().map(|r| r.ready_s).sum::<f64>() / self.readies.len() as f64
    }

    /// The Ready run with the rest phase (the first).
    fn normal(&self) -> Option<&OperatorRun> {
        self.readies.first()
    }
}

/// The whole benchmark's report, or `None` after `--floor-clients` (printed as it ran).
fn run(args: &Args) -> Result<Option<Report>, BenchError> {
    // Its own thread count, so that a TOKIO_WORKER_THREADS given for the operator
    // (which inherits the environment) leaves the bench's runtime as it is.
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()?;
    let targets = runtime.block_on(Targets::start(args.tools))?;
    let client = runtime.block_on(Client::try_default())?;
    install_crds();
    apply_yaml("", &format!("{}{PROXY_CLASS_EXTRA}", git_class(CLASS)));
    let concurrency = usize::from(args.workers);
    let namespaces = if args.namespaces == 0 {
        args.connectors.div_ceil(100).max(1)
    } else {
        args.namespaces
    };
    let plan = |prefix, hung_every| Plan {
        class: CLASS,
        connectors: args.connectors,
        namespaces,
        prefix,
        tool_urls: &targets.tool_urls,
        hung_every,
        hung_url: &targets.hung_url,
        concurrency,
    };
    // Whatever an interrupted run left on an existing cluster.
    runtime.block_on(delete_namespaces(&client, concurrency))?;
    progress("letting the operator reconcile the class once");
    let class = reconciled_class(runtime.handle(), &client)?;

    if args.floor_clients > 0 {
        let plans = FLOOR_PREFIXES
            .iter()
            .take(args.floor_clients)
            .map(|p| plan(p, 0))
            .collect();
        runtime.block_on(floor_clients(&client, args, &class, plans))?;
        return Ok(None);
    }

    let floor = |phase| floor_run(&runtime, &client, args, &class, &plan(PREFIX, 0), phase);
    let operator = |identity, hung_every, rest| {
        operator_run(
            &runtime,
            &client,
            &targets,
            args,
            &plan(PREFIX, hung_every),
            identity,
            rest,
        )
    };
    // 1. The floor. 2 and 3. The operator, then at rest (first round only). The
    // rounds after it repeat both, so that the ratio does not rest on one phase's
    // control plane.
    let (mut floors, mut readies) = (Vec::new(), Vec::new());
    for (round, (floor_name, _, identity)) in ROUNDS.iter().take(args.rounds.into()).enumerate() {
        floors.push(floor(floor_name)?);
        readies.push(operator(identity, 0, round == 0)?);
    }
    // 4. A tenth of the Connectors on a tool that never answers.
    let hung = operator("bench-hung", args.hung_every, false)?;
    progress("deleting the benchmark namespaces");
    runtime.block_on(delete_namespaces(&client, concurrency))?;
    Ok(Some(Report {
        namespaces,
        floors,
        readies,
        hung,
    }))
}

/// One floor phase: creates the Connectors, starts the same Ready watch as the
/// operator runs (the bench's observer costs the apiserver in every timed phase),
/// makes the writes and stops the clock when the watch has seen every Connector
/// Ready; then deletes the Connectors and Services.
fn floor_run(
    runtime: &tokio::runtime::Runtime,
    client: &Client,
    args: &Args,
    class: &ConnectorClass,
    plan: &Plan<'_>,
    phase: &str,
) -> Result<FloorRun, BenchError> {
    let concurrency = usize::from(args.workers);
    let load_before = load_average();
    progress(&format!("{phase}: creating {} Connectors", args.connectors));
    let started = Instant::now();
    let workload = runtime.block_on(workload::create(client, plan))?;
    let setup_s = started.elapsed().as_secs_f64();
    let watch = runtime.block_on(ReadyWatch::start(client))?;
    let quiet = Quiet::wait(phase);
    progress(&format!(
        "{phase}: writing one proxy Service and one status per Connector"
    ));
    let cost_before = Cost::now(None);
    let writes = runtime.block_on(floor_writes(client, &workload, class, concurrency))?;
    runtime.block_on(watch.wait_for(
        &format!("{} Connectors to be Ready", args.connectors),
        Duration::from_secs(args.timeout),
        |t| t.tool_ready >= workload.connectors.len(),
    ))?;
    // From the first write, as the operator runs' clock starts with the operator.
    let ready_s = writes.started.elapsed().as_secs_f64();
    let cost = Cost::now(None).since(&cost_before);
    let load = (load_before, load_average());
    drop(watch);
    progress(&format!("{phase}: {ready_s:.2}s; cleaning up"));
    let cleanup_s = runtime
        .block_on(delete_all(client, concurrency))?
        .as_secs_f64();
    Ok(FloorRun {
        setup_s,
        quiet,
        writes_s: writes.took.as_secs_f64(),
        ready_s,
        load,
        cost,
        cleanup_s,
    })
}

/// The class after one operator reconcile (its proxy address resolved in its
/// status), as in a cluster where the class was installed before the Connectors.
/// Without it the first Connectors of the timed run would be judged against a class
/// without status, and the floor could not compute the status the operator writes.
fn reconciled_class(
    runtime: &tokio::runtime::Handle,
    client: &Client,
) -> Result<ConnectorClass, BenchError> {
    let mut operator = Operator::start(OperatorOptions {
        identity: "bench-class".into(),
        rust_log: Some("info".into()),
        ..OperatorOptions::default()
    });
    let classes = Api::<ConnectorClass>::all(client.clone());
    let started = Instant::now();
    let timeout = Duration::from_secs(60);
    let class = loop {
        let class = runtime.block_on(classes.get(CLASS))?;
        if class_proxy_host(&class).is_some() {
            break class;
        }
        if started.elapsed() > timeout {
            return Err(BenchError::Timeout {
                what: format!("the operator to resolve the proxy of ConnectorClass {CLASS}"),
                after: timeout,
            });
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    operator.terminate();
    Ok(class)
}

/// Creates the Connectors, starts the release operator and times Ready; optionally
/// leaves them at rest; stops the operator and deletes everything.
fn operator_run(
    runtime: &tokio::runtime::Runtime,
    client: &Client,
    targets: &Targets,
    args: &Args,
    plan: &Plan<'_>,
    identity: &str,
    rest: bool,
) -> Result<OperatorRun, BenchError> {
    let timeout = Duration::from_secs(args.timeout);
    let load_before = load_average();
    progress(&format!(
        "{identity}: creating {} Connectors",
        plan.connectors
    ));
    let started = Instant::now();
    runtime.block_on(workload::create(client, plan))?;
    let setup_s = started.elapsed().as_secs_f64();
    let watch = runtime.block_on(ReadyWatch::start(client))?;
    let answering = plan.answering();
    let hanging = plan.connectors - answering;
    let quiet = Quiet::wait(identity);

    progress(&format!("{identity}: starting the operator"));
    let counts_before = targets.counts();
    let cost_before = Cost::now(None);
    let started = Instant::now();
    let mut operator = Operator::start(OperatorOptions {
        probe_interval_seconds: args.probe_interval,
        probe_timeout_seconds: args.probe_timeout,
        lease_duration_seconds: 15,
        identity: identity.into(),
        extra_args: vec!["--workers".into(), args.workers.to_string()],
        rust_log: Some(args.operator_log.clone()),
        ..OperatorOptions::default()
    });
    runtime.block_on(watch.wait_for(
        &format!("{answering} Connectors to be Ready"),
        timeout,
        |t| t.tool_ready >= answering,
    ))?;
    let ready_s = started.elapsed().as_secs_f64();
    let cost = Cost::now(Some(operator.pid())).since(&cost_before);
    let requests = targets.counts().since(&counts_before);
    let operator_counters = OperatorCounters::read(&operator);
    progress(&format!(
        "{identity}: all {answering} Ready in {ready_s:.2}s"
    ));
    let hung_failed_s = if hanging > 0 {
        runtime.block_on(watch.wait_for(
            &format!("{hanging} hanging Connectors to be LivenessReady False"),
            timeout,
            |t| t.hung_failed >= hanging,
        ))?;
        Some(started.elapsed().as_secs_f64())
    } else {
        None
    };
    let ready_each = watch.ready_seconds(started);

    let mut rss_mib = peak_rss_mib(operator.pid());
    let mut leader_lost = operator.logs().contains(LEASE_LOST);
    let load_after = load_average();
    operator.terminate();
    drop(watch);
    let rest = if rest {
        let (rest, rest_rss_mib, lost) = at_rest(runtime, client, targets, args)?;
        rss_mib = rss_mib.max(rest_rss_mib);
        leader_lost |= lost;
        Some(rest)
    } else {
        None
    };
    progress(&format!("{identity}: cleaning up"));
    let cleanup_s = runtime.block_on(delete_all(client, usize::from(args.workers)))?;
    Ok(OperatorRun {
        identity: identity.to_string(),
        setup_s,
        ready_s,
        ready_each,
        hung_failed_s,
        requests,
        operator: operator_counters,
        rss_mib,
        rest,
        leader_lost,
        cleanup_s: cleanup_s.as_secs_f64(),
        quiet,
        load: (load_before, load_after),
        cost,
    })
}

/// Restarts the operator with the short `--rest-interval` and leaves the Ready
/// Connectors alone for `--rest-periods` of it: what did it write, what did it send?
/// The window includes the restart's first pass over every Connector, which must not
/// write either. Returns the figures, the operator's peak RSS and whether it lost the
/// Lease.
fn at_rest(
    runtime: &tokio::runtime::Runtime,
    client: &Client,
    targets: &Targets,
    args: &Args,
) -> Result<(Rest, f64, bool), BenchError> {
    let versions_before = runtime.block_on(resource_versions(client))?;
    let counts_before = targets.counts();
    let cost_before = Cost::now(None);
    let started = Instant::now();
    let length = Duration::from_secs(args.rest_interval) * args.rest_periods;
    progress(&format!(
        "at rest: operator restarted with a {}s probe interval, for {}s",
        args.rest_interval,
        length.as_secs()
    ));
    let mut operator = Operator::start(OperatorOptions {
        probe_interval_seconds: args.rest_interval,
        probe_timeout_seconds: args.probe_timeout,
        lease_duration_seconds: 15,
        identity: "bench-rest".into(),
        extra_args: vec!["--workers".into(), args.workers.to_string()],
        rust_log: Some(args.operator_log.clone()),
        ..OperatorOptions::default()
    });
    let first_pass_s = first_pass(&operator, args.connectors, started, length);
    let after_first_pass = api_requests(&operator.metrics());
    std::thread::sleep(length.saturating_sub(started.elapsed()));
    let seconds = started.elapsed().as_secs_f64();
    let at_rest = minus(&api_requests(&operator.metrics()), &after_first_pass);
    let lease_requests = at_rest
        .iter()
        .filter(|(k, _)| k.ends_with(" leases"))
        .map(|(_, n)| n)
        .sum();
    let api_requests = at_rest
        .into_iter()
        .filter(|(k, _)| !k.ends_with(" leases"))
        .collect();
    let cost = Cost::now(Some(operator.pid())).since(&cost_before);
    let requests = targets.counts().since(&counts_before);
    // A fresh process: its counters are what it did at rest.
    let operator_counters = OperatorCounters::read(&operator);
    let rss_mib = peak_rss_mib(operator.pid());
    let leader_lost = operator.logs().contains(LEASE_LOST);
    let versions_after = runtime.block_on(resource_versions(client))?;
    operator.terminate();
    let changes = changed(&versions_before, &versions_after);
    let count = |kind: &str| changes.iter().filter(|k| k.starts_with(kind)).count();
    if !changes.is_empty() {
        // Name the writer: the managedFields of a few of the rewritten objects.
        for line in runtime.block_on(writers(client, &changes[..changes.len().min(5)]))? {
            progress(&format!("written at rest: {line}"));
        }
    }
    let rest = Rest {
        seconds,
        periods: seconds / args.rest_interval as f64,
        first_pass_s,
        api_requests,
        lease_requests,
        operator: operator_counters,
        changed_connectors: count("Connector "),
        changed_services: count("Service "),
        requests,
        cost,
    };
    Ok((rest, rss_mib, leader_lost))
}

/// Waits (within the rest window) until the operator has reconciled every Connector
/// once: from then on its Secret and Service caches are warm.
fn first_pass(
    operator: &Operator,
    connectors: usize,
    started: Instant,
    length: Duration,
) -> Option<f64> {
    while started.elapsed() < length {
        let reconciles = OperatorCounters::read(operator).reconciles;
        if reconciles >= connectors as u64 {
            return Some(started.elapsed().as_secs_f64());
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    None
}

/// The operator's `apiserver_requests_total` by `verb resource`, watches and lists
/// (the watches' relists) left out.
fn api_requests(metrics: &str) -> BTreeMap<String, u64> {
    let mut sums = BTreeMap::new();
    let prefix = "connectors_operator_apiserver_requests_total{";
    for line in metrics.lines().filter(|l| l.starts_with(prefix)) {
        let Some((labels, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let label = |name: &str| cost::label_value(labels, name);
        let verb = label("verb");
        if verb == "watch" || verb == "list" {
            continue;
        }
        *sums
            .entry(format!("{verb} {}", label("resource")))
            .or_insert(0) += value.parse::<f64>().unwrap_or(0.0) as u64;
    }
    sums
}

fn minus(now: &BTreeMap<String, u64>, then: &BTreeMap<String, u64>) -> BTreeMap<String, u64> {
    now.iter()
        .map(|(k, v)| {
            (
                k.clone(),
                v.saturating_sub(then.get(k).copied().unwrap_or(0)),
            )
        })
        .filter(|(_, v)| *v > 0)
        .collect()
}

impl OperatorRun {
    /// This run's table rows (the rest phase's under `rest`): phase, figure, value.
    fn rows(&self, phase: &'static str) -> Vec<(&'static str, String, String)> {
        let r = self;
        let mut rows = Vec::new();
        {
            let mut row = |phase: &'static str, figure: &str, value: String| {
                rows.push((phase, figure.to_string(), value));
            };
            let answering = r.ready_each.len();
            row(
                phase,
                "creating the Connectors (before the clock)",
                format!("{:.2}s", r.setup_s),
            );
            row(
                phase,
                "waiting for an idle control plane (not timed)",
                r.quiet.figure(),
            );
            row(
                phase,
                &format!("operator start -> {answering} Ready"),
                format!("{:.2}s", r.ready_s),
            );
            row(
                phase,
                "Ready after first / p50 / p90 / p99",
                format!(
                    "{:.1} / {:.1} / {:.1} / {:.1}s",
                    quantile(&r.ready_each, 0.0),
                    quantile(&r.ready_each, 0.5),
                    quantile(&r.ready_each, 0.9),
                    quantile(&r.ready_each, 0.99)
                ),
            );
            if let Some(s) = r.hung_failed_s {
                row(
                    phase,
                    "operator start -> hanging ones LivenessReady False",
                    format!("{s:.2}s"),
                );
                row(
                    phase,
                    "connections to the hanging target",
                    r.requests.hung_connections.to_string(),
                );
            }
            row(
                phase,
                "requests at the target: liveness / auth",
                format!(
                    "{} / {}",
                    r.requests.liveness,
                    r.requests.auth_ok + r.requests.auth_denied
                ),
            );
            row(
                phase,
                "status / Service writes, events (metrics)",
                format!(
                    "{} / {} / {}",
                    r.operator.connector_status_writes + r.operator.class_status_writes,
                    r.operator.service_writes,
                    r.operator.events
                ),
            );
            row(
                phase,
                "reconciles / errors / shared liveness",
                format!(
                    "{} / {} / {}",
                    r.operator.reconciles, r.operator.reconcile_errors, r.operator.probes_shared
                ),
            );
            row(
                phase,
                "operator peak RSS (VmHWM)",
                format!("{:.1} MiB", r.rss_mib),
            );
            row(
                phase,
                "leader Lease lost during the run",
                r.leader_lost.to_string(),
            );
            row(
                phase,
                "load average before / after",
                format!("{} / {}", r.load.0, r.load.1),
            );
            row(phase, CPU_FIGURE, r.cost.cpu_summary());
            row(phase, MACHINE_FIGURE, r.cost.machine_summary());
            if let Some(rest) = &r.rest {
                row(
                    "rest",
                    "seconds (probe periods)",
                    format!("{:.1} ({:.2})", rest.seconds, rest.periods),
                );
                row(
                    "rest",
                    "status / Service writes (metrics)",
                    format!(
                        "{} / {}",
                        rest.operator.connector_status_writes + rest.operator.class_status_writes,
                        rest.operator.service_writes
                    ),
                );
                row(
                    "rest",
                    "Connectors / Services with a new resourceVersion",
                    format!("{} / {}", rest.changed_connectors, rest.changed_services),
                );
                row(
                    "rest",
                    "probe requests per period: liveness / auth",
                    format!(
                        "{:.1} / {:.1}",
                        rest.requests.liveness as f64 / rest.periods,
                        (rest.requests.auth_ok + rest.requests.auth_denied) as f64 / rest.periods
                    ),
                );
                row(
                    "rest",
                    "first pass over every Connector after the restart",
                    rest.first_pass_s
                        .map_or("not within the window".into(), |s| format!("{s:.1}s")),
                );
                row(
                    "rest",
                    "apiserver requests after the first pass (operator)",
                    cost::counts_line(&rest.api_requests, "0"),
                );
                row(
                    "rest",
                    "Lease requests in that window (leader election)",
                    rest.lease_requests.to_string(),
                );
                row(
                    "rest",
                    "reconciles per period",
                    format!("{:.1}", rest.operator.reconciles as f64 / rest.periods),
                );
                row("rest", CPU_FIGURE, rest.cost.cpu_summary());
                row("rest", MACHINE_FIGURE, rest.cost.machine_summary());
            }
            row(phase, "clean-up", format!("{:.2}s", r.cleanup_s));
        }
        rows
    }
}

/// One timed phase of the report, in run order.
enum Step<'a> {
    Floor(&'a FloorRun),
    Operator(&'a OperatorRun),
}

impl Report {
    /// The timed phases in the order they ran, with their table names.
    fn steps(&self) -> Vec<(&'static str, Step<'_>)> {
        let mut steps = Vec::new();
        for ((floor_name, ready_name, _), (floor, ready)) in
            ROUNDS.iter().zip(self.floors.iter().zip(&self.readies))
        {
            steps.push((*floor_name, Step::Floor(floor)));
            steps.push((*ready_name, Step::Operator(ready)));
        }
        steps.push(("hung", Step::Operator(&self.hung)));
        steps
    }

    /// Requests the operator sent at rest once its caches were warm (`None`: its
    /// first pass did not end within the window).
    fn requests_at_rest(&self) -> Option<u64> {
        let rest = self.normal()?.rest.as_ref()?;
        rest.first_pass_s?;
        Some(rest.api_requests.values().sum())
    }

    fn writes_at_rest(&self) -> u64 {
        self.normal().and_then(|n| n.rest.as_ref()).map_or(0, |r| {
            let by_metrics = r.operator.connector_status_writes
                + r.operator.class_status_writes
                + r.operator.service_writes;
            // The larger of the operator's own count and what the apiserver shows.
            by_metrics.max((r.changed_connectors + r.changed_services) as u64)
        })
    }

    fn render(&self, args: &Args) -> String {
        let mut out = String::new();
        let mut row = |phase: &str, figure: &str, value: String| {
            out.push_str(&format!("| {phase:<6} | {figure:<50} | {value:>22} |\n"));
        };
        row(
            "setup",
            "connectors / namespaces / tool addresses",
            format!("{} / {} / {}", args.connectors, self.namespaces, args.tools),
        );
        row(
            "setup",
            "workers / probe interval (rest) / probe timeout",
            format!(
                "{} / {}s ({}s) / {}s",
                args.workers, args.probe_interval, args.rest_interval, args.probe_timeout
            ),
        );
        for (phase, step) in self.steps() {
            match step {
                Step::Floor(floor) => {
                    for (figure, value) in floor.rows() {
                        row(phase, figure, value);
                    }
                }
                Step::Operator(run) => {
                    for (phase, figure, value) in run.rows(phase) {
                        row(phase, &figure, value);
                    }
                }
            }
        }
        // Kinds of request the apiserver served at least once per 20 Connectors.
        let min = (args.connectors / 20).max(1) as f64;
        let mut requests = "apiserver requests by verb and resource:\n".to_string();
        for (phase, step) in self.steps() {
            let (cost, rest) = match step {
                Step::Floor(floor) => (&floor.cost, None),
                Step::Operator(run) => (&run.cost, run.rest.as_ref().map(|r| &r.cost)),
            };
            for (phase, cost) in [(phase, Some(cost)), ("rest", rest)] {
                if let Some(cost) = cost {
                    requests.push_str(&format!(
                        "  {phase}: {}\n",
                        cost.request_lines(min).join(", ")
                    ));
                }
            }
        }
        let floor_s = self.floor_s();
        let ready_s = self.ready_s();
        let ratio = ready_s / floor_s.max(f64::EPSILON);
        let rss = self
            .readies
            .iter()
            .chain([&self.hung])
            .map(|r| r.rss_mib)
            .fold(0.0, f64::max);
        let slowest_ready_s = self.readies.iter().map(|r| r.ready_s).fold(0.0, f64::max);
        let writes = self.writes_at_rest();
        let hung_budget = ready_s + args.probe_timeout as f64;
        let verdict = |ok: bool| if ok { "met" } else { "MISSED" };
        let mut goals = String::new();
        let readies_s = seconds_list(self.readies.iter().map(|r| r.ready_s));
        let floors_s = seconds_list(self.floors.iter().map(|f| f.ready_s));
        goals.push_str(&format!(
            "goal ready <= 1.25 x floor (mean of {readies_s} s over mean of {floors_s} s): ratio {ratio:.2}: {}\n",
            verdict(ratio <= 1.25)
        ));
        for run in &self.readies {
            goals.push_str(&one_write_each(run, args));
        }
        goals.push_str(&format!(
            "goal ready < 60s (the slower Ready run): {slowest_ready_s:.2}s: {}\n",
            verdict(slowest_ready_s < 60.0)
        ));
        goals.push_str(&format!(
            "goal zero writes at rest: {writes}: {}\n",
            verdict(writes == 0)
        ));
        let at_rest = self.requests_at_rest();
        goals.push_str(&format!(
            "goal zero apiserver requests at rest (operator, after its first pass): {}: {}\n",
            at_rest.map_or("first pass not done".into(), |n| n.to_string()),
            verdict(at_rest == Some(0))
        ));
        goals.push_str(&format!(
            "goal peak RSS <= 100 MiB: {rss:.1} MiB: {}\n",
            verdict(rss <= 100.0)
        ));
        goals.push_str(&format!(
            "goal hung run <= ready + probe timeout ({hung_budget:.2}s): {:.2}s: {}\n",
            self.hung.ready_s,
            verdict(self.hung.ready_s <= hung_budget)
        ));
        format!(
            "\n| {:<6} | {:<50} | {:>22} |\n|{:-<8}|{:-<52}|{:-<24}|\n{out}\n{requests}\n{goals}bench connectors={} ready_s={ready_s:.2} readies_s={readies_s} floor_s={floor_s:.2} floors_s={floors_s} ratio={ratio:.2} rss_mib={rss:.1} writes_at_rest={writes} apiserver_requests_at_rest={} hung_ready_s={:.2}\n",
            "phase",
            "figure",
            "value",
            "",
            "",
            "",
            args.connectors,
            at_rest.map_or("unknown".into(), |n| n.to_string()),
            self.hung.ready_s,
        )
    }
}

/// Seconds of each run, comma-separated, as the last line gives them.
fn seconds_list(seconds: impl Iterator<Item = f64>) -> String {
    seconds
        .map(|s| format!("{s:.2}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// Goal line: exactly one status write and one Service create per Connector in a
/// timed Ready run, by the operator's metrics and by the apiserver's counters.
fn one_write_each(run: &OperatorRun, args: &Args) -> String {
    let n = args.connectors as u64;
    let counters = &run.operator;
    let served = |key: &str| run.cost.requests(key).round() as u64;
    let (status, creates) = (served("APPLY connectors/status"), served("POST services"));
    let met = counters.connector_status_writes == n
        && counters.service_writes == n
        && status == n
        && creates == n;
    format!(
        "goal one status write and one Service create per Connector ({n}, {}): metrics {} / {}, apiserver {status} / {creates}: {}\n",
        run.identity,
        counters.connector_status_writes,
        counters.service_writes,
        if met { "met" } else { "MISSED" }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn three_rounds_by_default_and_one_to_five_accepted() {
        let rounds = |extra: &[&str]| {
            Args::try_parse_from(["bench"].iter().chain(extra)).map(|args| args.rounds)
        };
        assert_eq!(rounds(&[]).ok(), Some(3));
        assert_eq!(rounds(&["--rounds", "1"]).ok(), Some(1));
        assert_eq!(rounds(&["--rounds", "5"]).ok(), Some(5));
        assert!(rounds(&["--rounds", "0"]).is_err());
        assert!(rounds(&["--rounds", "6"]).is_err());
        assert!(ROUNDS.len() >= 5, "a table name for every accepted round");
    }

    #[test]
    fn seconds_are_listed_in_run_order_with_two_decimals() {
        assert_eq!(
            seconds_list([32.174, 27.0, 28.986].into_iter()),
            "32.17,27.00,28.99"
        );
        assert_eq!(seconds_list(std::iter::empty()), "");
    }
}
