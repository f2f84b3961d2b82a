use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use connectors_operator::admission::{self, CertSource, WebhookSettings};
use connectors_operator::check::{self, Output};
use std::sync::Arc;

use connectors_operator::controller::Settings;
use connectors_operator::dataplane::DataPlaneSettings;
use connectors_operator::gateway::GatewaySettings;
use connectors_operator::probe::{DestinationPolicy, ProbeSettings, RunnerSettings};
use connectors_operator::proxy::ProxySettings;
use connectors_operator::runtime::{LeaseSettings, Shutdown};
use connectors_operator::telemetry::{self, LogFormat, Metrics, init_logging};

/// Kubernetes operator for Connector and ConnectorClass (connectors.alauda.io/v1alpha1).
#[derive(Parser)]
#[command(name = "connectors-operator", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print the CRDs as YAML (all groups, or one with `--group`).
    Crds {
        /// Only this API group: `connectors.alauda.io`, `dex.coreos.com`, `auth.alauda.io`
        /// (User) or `user.openshift.io` (the Group stand-in).
        #[arg(long)]
        group: Option<String>,
    },
    /// Validate and probe Connectors from files, without a cluster; exit 0 only when
    /// every Connector is Ready.
    Check {
        /// Files with ConnectorClass, Connector and Secret documents (`-` for stdin).
        #[arg(short = 'f', long = "filename", required = true)]
        files: Vec<PathBuf>,
        /// Output format.
        #[arg(short = 'o', long, value_enum, default_value = "describe")]
        output: Output,
        /// Request timeout of one probe, in seconds.
        #[arg(long, default_value_t = 10)]
        probe_timeout: u64,
    },
    /// Run the controllers (and the admission webhook) against the cluster of the
    /// current kubeconfig.
    Run(Box<RunArgs>),
    /// Serve only the admission webhook (no controllers, no leader election). Takes the
    /// same flags as `run`; the controller ones are ignored.
    Webhook(Box<RunArgs>),
    /// Serve the Connectors proxy: each Connector's proxy address, with the tool's
    /// credentials injected for a client holding a ServiceAccount token.
    Proxy(Box<ProxyArgs>),
    /// OpenShift-style LDAP group sync (`oc adm groups sync|prune` on an LDAPSyncConfig):
    /// a dry run unless `--confirm`.
    #[command(subcommand)]
    Groups(connectors_operator::identity::cli::GroupsCommand),
    /// Serve the Connectors API gateway: `/connectors/v1alpha1/{ns}/{name}/path/...`
    /// toward the class API or the tool, with the tool's credentials.
    Api(Box<ApiArgs>),
}

#[derive(clap::Args)]
struct ProxyArgs {
    /// Address of the proxy (the Service `connectors-proxy-service` sends port 80 here).
    #[arg(long, env = "PROXY_ADDR", default_value = "0.0.0.0:8080")]
    addr: std::net::SocketAddr,
    /// Address of /metrics, /healthz and /readyz.
    #[arg(
        long = "metrics-bind-address",
        env = "METRICS_ADDR",
        default_value = "0.0.0.0:8443"
    )]
    metrics_addr: std::net::SocketAddr,
    /// The proxy's own Service (path-form requests may name it in `Host`).
    #[arg(
        long,
        env = "PROXY_SERVICE",
        default_value = "connectors-proxy-service"
    )]
    service: String,
    /// Host names the proxy is also published under, comma-separated, e.g. the host
    /// of a class's absolute `spec.proxy.uri` (an Ingress); they serve the path form.
    #[arg(long, env = "PROXY_PUBLIC_HOSTS", value_delimiter = ',')]
    public_hosts: Vec<String>,
    #[command(flatten)]
    data_plane: DataPlaneArgs,
}

#[derive(clap::Args)]
struct ApiArgs {
    /// Address of the API gateway (the Service `connectors-api` sends port 80 here).
    #[arg(long, env = "API_ADDR", default_value = "0.0.0.0:8081")]
    addr: std::net::SocketAddr,
    /// Address of /metrics, /healthz and /readyz.
    #[arg(
        long = "metrics-bind-address",
        env = "METRICS_ADDR",
        default_value = "0.0.0.0:8444"
    )]
    metrics_addr: std::net::SocketAddr,
    #[command(flatten)]
    data_plane: DataPlaneArgs,
}

/// Settings the proxy and the API gateway share.
#[derive(clap::Args)]
struct DataPlaneArgs {
    /// The operator namespace: flags ConfigMap `connectors-config`, global CA Secrets.
    #[arg(long, env = "OPERATOR_NAMESPACE", default_value = "connectors-system")]
    namespace: String,
    /// Audience asked of TokenReview (default: the apiserver's own).
    #[arg(long, env = "TOKEN_AUDIENCE")]
    token_audience: Option<String>,
    /// Let requests reach tools on loopback addresses (local demos and tests);
    /// link-local and cloud-metadata addresses stay refused.
    #[arg(long, env = "CONNECTORS_ALLOW_LOOPBACK_DESTINATIONS", default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    allow_loopback_destinations: bool,
    /// Client connections served at once; more wait to be accepted.
    #[arg(long, env = "MAX_CONNECTIONS", default_value_t = 4096)]
    max_connections: usize,
    /// How long a tool Secret read is reused, in seconds.
    #[arg(long, env = "SECRET_CACHE_SECONDS", default_value_t = 10)]
    secret_cache_seconds: u64,
    /// Time the tool has to answer once the request body is sent, in seconds.
    #[arg(long, env = "RESPONSE_HEADER_TIMEOUT_SECONDS", default_value_t = 300)]
    response_header_timeout: u64,
    /// Log format.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value = "text")]
    log_format: LogFormat,
}

impl DataPlaneArgs {
    fn settings(&self) -> DataPlaneSettings {
        DataPlaneSettings {
            destinations: if self.allow_loopback_destinations {
                DestinationPolicy::AllowLoopback
            } else {
                DestinationPolicy::Public
            },
            token_audience: self.token_audience.clone(),
            secret_ttl: Duration::from_secs(self.secret_cache_seconds),
            response_timeout: Duration::from_secs(self.response_header_timeout.max(1)),
        }
    }
}

#[derive(clap::Args)]
struct RunArgs {
    /// Periodic re-probe interval in seconds (±10% jitter).
    #[arg(long, env = "PROBE_INTERVAL_SECONDS", default_value_t = 300)]
    probe_interval: u64,
    /// Request timeout of one probe, in seconds.
    #[arg(long, env = "PROBE_TIMEOUT_SECONDS", default_value_t = 10)]
    probe_timeout: u64,
    /// Largest response body read by a probe, in bytes.
    #[arg(long, env = "PROBE_BODY_CAP_BYTES", default_value_t = 1024 * 1024)]
    body_cap: usize,
    /// Let probes reach loopback destinations (local demos and tests); link-local and
    /// cloud-metadata addresses stay refused.
    #[arg(long, env = "CONNECTORS_ALLOW_LOOPBACK_DESTINATIONS", default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    allow_loopback_destinations: bool,
    /// Probe requests in flight at once.
    #[arg(long, env = "MAX_CONCURRENT_PROBES", default_value_t = 128)]
    max_concurrent_probes: usize,
    /// Probe requests in flight at once to one scheme://host:port.
    #[arg(long, env = "MAX_PROBES_PER_HOST", default_value_t = 16)]
    max_probes_per_host: usize,
    /// Reconciles run at once, per kind.
    #[arg(long, env = "RECONCILE_WORKERS", default_value_t = 256)]
    workers: u16,
    /// Apiserver requests other than watches awaiting a response at once, each on its
    /// own HTTP/1.1 connection (watches share one HTTP/2 connection).
    #[arg(long, env = "APISERVER_MAX_REQUESTS", default_value_t = connectors_operator::runtime::MAX_HTTP1_REQUESTS)]
    apiserver_max_requests: usize,
    /// Cluster DNS domain used in Service URLs.
    #[arg(long, env = "CLUSTER_DOMAIN", default_value = "cluster.local")]
    cluster_domain: String,
    /// The operator's namespace (global CA Secrets and the leader Lease live here).
    #[arg(long, env = "OPERATOR_NAMESPACE", default_value = "connectors-system")]
    namespace: String,
    /// Address of /metrics, /healthz and /readyz.
    #[arg(long, env = "METRICS_ADDR", default_value = "0.0.0.0:8080")]
    metrics_addr: std::net::SocketAddr,
    /// Elect a leader with a Lease so that only one replica writes.
    #[arg(long, env = "LEADER_ELECT", default_value_t = true, action = clap::ArgAction::Set)]
    leader_elect: bool,
    /// Name of the leader Lease.
    #[arg(long, env = "LEASE_NAME", default_value = "connectors-operator")]
    lease_name: String,
    /// Lease duration in seconds: the longest hand-over after the leader dies.
    #[arg(long, env = "LEASE_DURATION_SECONDS", default_value_t = 15)]
    lease_duration: u64,
    /// The leader renews this many seconds before the Lease expires.
    #[arg(long, env = "LEASE_RENEW_BEFORE_SECONDS", default_value_t = 5)]
    lease_renew_before: u64,
    /// Identity in the Lease (default: pod name, else host name and a random suffix).
    #[arg(long, env = "POD_NAME")]
    identity: Option<String>,
    /// Log format.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value = "text")]
    log_format: LogFormat,
    /// Health-check Dex `Connector`s (dex.coreos.com/v1, LDAP and OIDC identity
    /// providers); `--identity-controller=false` turns it off.
    #[arg(long = "identity-controller", env = "IDENTITY_CONTROLLER_ENABLED", default_value_t = true, action = clap::ArgAction::Set)]
    identity_controller: bool,
    #[command(flatten)]
    webhook: WebhookArgs,
}

#[derive(clap::Args)]
struct WebhookArgs {
    /// Serve the admission webhook (`--webhook=false` turns it off).
    #[arg(long = "webhook", env = "WEBHOOK_ENABLED", default_value_t = true, action = clap::ArgAction::Set)]
    enabled: bool,
    /// Address of the HTTPS admission endpoints.
    #[arg(
        long = "webhook-addr",
        env = "WEBHOOK_ADDR",
        default_value = "0.0.0.0:9443"
    )]
    addr: std::net::SocketAddr,
    /// Serve `tls.crt`/`tls.key` from this directory (e.g. cert-manager's) instead of
    /// a self-managed certificate; the CA bundle is then left to cert-manager.
    #[arg(long = "webhook-cert-dir", env = "WEBHOOK_CERT_DIR")]
    cert_dir: Option<PathBuf>,
    /// Secret (operator namespace) holding the self-managed certificate and its CA.
    #[arg(
        long = "webhook-secret",
        env = "WEBHOOK_SECRET",
        default_value = "connectors-operator-webhook-cert"
    )]
    secret: String,
    /// ValidatingWebhookConfiguration whose caBundle the operator keeps current.
    #[arg(
        long = "webhook-config",
        env = "WEBHOOK_CONFIG",
        default_value = "connectors-operator"
    )]
    config: String,
    /// Service in front of the webhook; its DNS names go into the certificate.
    #[arg(
        long = "webhook-service",
        env = "WEBHOOK_SERVICE",
        default_value = "connectors-operator-webhook"
    )]
    service: String,
    /// More certificate host names or IPs, comma-separated (e.g. 127.0.0.1 when the
    /// webhook is registered by URL).
    #[arg(long = "webhook-hosts", env = "WEBHOOK_HOSTS", value_delimiter = ',')]
    hosts: Vec<String>,
}

#[cfg(feature = "dhat-heap")]
#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

fn main() -> ExitCode {
    // Written to dhat-heap-{pid}.json when main returns (a SIGTERM'd `run` returns).
    #[cfg(feature = "dhat-heap")]
    let _profiler = dhat::Profiler::builder()
        .file_name(format!("dhat-heap-{}.json", std::process::id()))
        .build();
    let cli = Cli::parse();
    // One rustls crypto provider for the whole process (kube and reqwest share it).
    let _ = rustls::crypto::ring::default_provider().install_default();
    match cli.command {
        Command::Crds { group } => match crds_yaml(group.as_deref()) {
            Ok(yaml) => match write_stdout(&yaml) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => fail(e),
            },
            Err(e) => fail(e),
        },
        Command::Run(args) => run(*args, Mode::ControllersAndWebhook),
        Command::Webhook(args) => run(*args, Mode::WebhookOnly),
        Command::Proxy(args) => run_proxy(*args),
        Command::Api(args) => run_api(*args),
        Command::Groups(command) => connectors_operator::identity::cli::main(command),
        Command::Check {
            files,
            output,
            probe_timeout,
        } => {
            let settings = ProbeSettings {
                timeout: Duration::from_secs(probe_timeout),
                ..ProbeSettings::default()
            };
            let docs = match check::read_documents(&files) {
                Ok(docs) => docs,
                Err(e) => return fail(e),
            };
            let runtime = match tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => return fail(e),
            };
            let results = runtime.block_on(check::check(&docs, settings.clone()));
            let identity = runtime.block_on(check::check_identity(&docs, settings));
            match check::render_all(&results, &identity, output) {
                Ok(text) => {
                    if let Err(e) = write_stdout(&text) {
                        return fail(e);
                    }
                }
                Err(e) => return fail(e),
            }
            if results.iter().all(|(_, status)| check::is_ready(status))
                && identity
                    .iter()
                    .all(|(_, status)| check::is_idp_ready(status))
            {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
    }
}

/// The CRDs of one API group, or of all.
fn crds_yaml(group: Option<&str>) -> Result<String, String> {
    use connectors_operator::api::{crds_yaml, dex_crd_yaml, group_crd_yaml, user_crd_yaml};
    let e = |e: serde_yaml::Error| e.to_string();
    match group {
        None => Ok(crds_yaml().map_err(e)?
            + &dex_crd_yaml().map_err(e)?
            + &user_crd_yaml().map_err(e)?
            + &group_crd_yaml().map_err(e)?),
        Some("connectors.alauda.io") => crds_yaml().map_err(e),
        Some("dex.coreos.com") => dex_crd_yaml().map_err(e),
        Some("auth.alauda.io") => user_crd_yaml().map_err(e),
        Some("user.openshift.io") => group_crd_yaml().map_err(e),
        Some(other) => Err(format!("unknown API group {other:?}")),
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    ControllersAndWebhook,
    WebhookOnly,
}

fn webhook_settings(args: &RunArgs) -> WebhookSettings {
    let w = &args.webhook;
    let certs = match &w.cert_dir {
        Some(dir) => CertSource::Directory(dir.clone()),
        None => CertSource::SelfManaged {
            secret: w.secret.clone(),
            config: w.config.clone(),
            hosts: admission::service_hosts(
                &w.service,
                &args.namespace,
                &args.cluster_domain,
                &w.hosts,
            ),
        },
    };
    WebhookSettings {
        addr: w.addr,
        namespace: args.namespace.clone(),
        certs,
    }
}

fn run(args: RunArgs, mode: Mode) -> ExitCode {
    limit_malloc_arenas();
    init_logging(args.log_format);
    let webhook =
        (args.webhook.enabled || mode == Mode::WebhookOnly).then(|| webhook_settings(&args));
    let interval = Duration::from_secs(args.probe_interval.max(1));
    let identity = args.identity.unwrap_or_else(|| {
        let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "operator".into());
        format!("{host}-{:08x}", rand::random::<u32>())
    });
    let identity_enabled = args.identity_controller;
    let settings = Settings {
        probe: ProbeSettings {
            timeout: Duration::from_secs(args.probe_timeout.max(1)),
            body_cap: args.body_cap,
            destinations: if args.allow_loopback_destinations {
                DestinationPolicy::AllowLoopback
            } else {
                DestinationPolicy::Public
            },
            ..ProbeSettings::default()
        },
        runner: RunnerSettings {
            max_concurrent: args.max_concurrent_probes,
            max_per_host: args.max_probes_per_host,
            ..RunnerSettings::default()
        },
        probe_interval: interval,
        min_backoff: Duration::from_secs(10).min(interval),
        workers: args.workers,
        cluster_domain: args.cluster_domain,
        namespace: args.namespace,
        leader_election: args.leader_elect.then(|| LeaseSettings {
            name: args.lease_name,
            identity,
            duration: Duration::from_secs(args.lease_duration.max(2)),
            grace: Duration::from_secs(args.lease_renew_before.max(1)),
        }),
    };
    let metrics = Arc::new(Metrics::default());
    let max_requests = args.apiserver_max_requests;
    with_counted_client(metrics.clone(), max_requests, |client| async move {
        let shutdown = Shutdown::on_signal();
        let server = tokio::spawn(telemetry::serve(
            args.metrics_addr,
            metrics.clone(),
            shutdown.clone().wait(),
        ));
        let webhook = match webhook {
            Some(settings) => match admission::bind(settings.addr).await {
                Ok(listener) => Some((listener, settings)),
                Err(e) => return fail(e),
            },
            None => None,
        };
        let webhook = webhook.map(|(listener, settings)| {
            let (client, metrics, shutdown) = (client.clone(), metrics.clone(), shutdown.clone());
            tokio::spawn(async move {
                let result = admission::run(client, listener, settings, metrics, shutdown).await;
                if let Err(e) = &result {
                    tracing::error!(error = %e, "admission webhook stopped");
                }
                result
            })
        });
        match (mode, webhook) {
            (Mode::ControllersAndWebhook, _) => {
                let identity = identity_enabled.then(|| identity_settings(&settings, &metrics));
                let identity = async {
                    if let Some(identity) = identity {
                        connectors_operator::identity::run(
                            client.clone(),
                            identity,
                            shutdown.clone(),
                        )
                        .await;
                    }
                };
                let controllers = connectors_operator::controller::run(
                    client.clone(),
                    settings,
                    metrics,
                    shutdown.clone(),
                );
                futures::join!(controllers, identity);
                tracing::info!("controllers stopped");
            }
            (Mode::WebhookOnly, Some(webhook)) => {
                if let Ok(Err(e)) = webhook.await {
                    return fail(e);
                }
            }
            (Mode::WebhookOnly, None) => {}
        }
        match tokio::time::timeout(Duration::from_secs(5), server).await {
            Ok(Ok(Err(e))) => fail(format!("metrics endpoint: {e}")),
            _ => ExitCode::SUCCESS,
        }
    })
}

fn run_proxy(args: ProxyArgs) -> ExitCode {
    limit_malloc_arenas();
    init_logging(args.data_plane.log_format);
    let settings = ProxySettings {
        addr: args.addr,
        metrics_addr: args.metrics_addr,
        namespace: args.data_plane.namespace.clone(),
        service: args.service,
        public_hosts: args.public_hosts,
        max_connections: args.data_plane.max_connections,
        data_plane: args.data_plane.settings(),
    };
    with_client(|client| async move {
        match connectors_operator::proxy::run(client, settings, Shutdown::on_signal()).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => fail(e),
        }
    })
}

fn run_api(args: ApiArgs) -> ExitCode {
    limit_malloc_arenas();
    init_logging(args.data_plane.log_format);
    let settings = GatewaySettings {
        addr: args.addr,
        metrics_addr: args.metrics_addr,
        namespace: args.data_plane.namespace.clone(),
        max_connections: args.data_plane.max_connections,
        data_plane: args.data_plane.settings(),
    };
    with_client(|client| async move {
        match connectors_operator::gateway::run(client, settings, Shutdown::on_signal()).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => fail(e),
        }
    })
}

/// Runs `work` on a multi-threaded runtime with a client of the current kubeconfig;
/// blocking work (a policy evaluation at its time bound) does not hold the exit.
fn with_client<F, Fut>(work: F) -> ExitCode
where
    F: FnOnce(kube::Client) -> Fut,
    Fut: std::future::Future<Output = ExitCode>,
{
    with_runtime(
        connectors_operator::runtime::apiserver_client(
            connectors_operator::runtime::MAX_HTTP1_REQUESTS,
        ),
        work,
    )
}

/// [`with_client`] whose client counts every apiserver request in `metrics`.
fn with_counted_client<F, Fut>(metrics: Arc<Metrics>, max_requests: usize, work: F) -> ExitCode
where
    F: FnOnce(kube::Client) -> Fut,
    Fut: std::future::Future<Output = ExitCode>,
{
    let client = async move {
        let config = kube::Config::infer()
            .await
            .map_err(kube::Error::InferConfig)?;
        Ok::<_, kube::Error>(
            connectors_operator::runtime::apiserver_client_builder(&config, max_requests)?
                .with_layer(&telemetry::count_api_requests(metrics))
                .build(),
        )
    };
    with_runtime(client, work)
}

fn with_runtime<C, F, Fut>(client: C, work: F) -> ExitCode
where
    C: std::future::Future<Output = Result<kube::Client, kube::Error>>,
    F: FnOnce(kube::Client) -> Fut,
    Fut: std::future::Future<Output = ExitCode>,
{
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return fail(e),
    };
    let code = runtime.block_on(async {
        match client.await {
            Ok(client) => work(client).await,
            Err(e) => fail(e),
        }
    });
    runtime.shutdown_timeout(Duration::from_secs(2));
    code
}

/// The identity controller's settings, from the Connector controller's.
fn identity_settings(
    settings: &Settings,
    metrics: &Arc<Metrics>,
) -> connectors_operator::identity::IdentitySettings {
    connectors_operator::identity::IdentitySettings {
        interval: settings.probe_interval,
        min_backoff: settings.min_backoff,
        timeout: settings.probe.timeout,
        destinations: settings.probe.destinations,
        namespace: settings.namespace.clone(),
        workers: settings.workers.min(32),
        leader_election: settings.leader_election.clone(),
        metrics: Some(metrics.clone()),
    }
}

/// glibc gives each thread that allocates concurrently its own arena (up to 8 per
/// core); with tokio's workers that fragments the heap: at 10,000 Connectors the peak
/// RSS was 155 MiB with the default and 141 MiB with two arenas (docs/benchmarks.md).
/// `MALLOC_ARENA_MAX` in the environment still wins.
fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // SAFETY: mallopt only sets an allocator tunable; called before other threads
        // allocate (the tokio runtime starts after this).
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, 2);
        }
    }
}

/// Writes `text` to stdout; a reader that went away (`| head`) is an error to report
/// and a failing exit code, not the panic of `print!`.
fn write_stdout(text: &str) -> Result<(), String> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .map_err(|e| format!("writing to stdout: {e}"))
}

fn fail(e: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {e}");
    ExitCode::from(2)
}
