use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use connectors_operator::check::{self, Output};
use connectors_operator::probe::ProbeSettings;

/// Kubernetes operator for Connector and ConnectorClass (connectors.alauda.io/v1alpha1).
#[derive(Parser)]
#[command(name = "connectors-operator", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print both CRDs as YAML.
    Crds,
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
    /// Run the controllers against the cluster of the current kubeconfig.
    Run {
        /// Periodic re-probe interval in seconds (±10% jitter).
        #[arg(long, env = "PROBE_INTERVAL_SECONDS", default_value_t = 300)]
        probe_interval: u64,
        /// Request timeout of one probe, in seconds.
        #[arg(long, env = "PROBE_TIMEOUT_SECONDS", default_value_t = 10)]
        probe_timeout: u64,
        /// Largest response body read by a probe, in bytes.
        #[arg(long, env = "PROBE_BODY_CAP_BYTES", default_value_t = 1024 * 1024)]
        body_cap: usize,
        /// Cluster DNS domain used in Service URLs.
        #[arg(long, env = "CLUSTER_DOMAIN", default_value = "cluster.local")]
        cluster_domain: String,
        /// The operator's namespace (global CA Secrets live here).
        #[arg(long, env = "OPERATOR_NAMESPACE", default_value = "connectors-system")]
        namespace: String,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // One rustls crypto provider for the whole process (kube and reqwest share it).
    let _ = rustls::crypto::ring::default_provider().install_default();
    match cli.command {
        Command::Crds => match connectors_operator::api::crds_yaml() {
            Ok(yaml) => {
                print!("{yaml}");
                ExitCode::SUCCESS
            }
            Err(e) => fail(e),
        },
        Command::Run {
            probe_interval,
            probe_timeout,
            body_cap,
            cluster_domain,
            namespace,
        } => {
            tracing_subscriber::fmt()
                .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
                .init();
            let settings = connectors_operator::controller::Settings {
                probe: ProbeSettings {
                    timeout: Duration::from_secs(probe_timeout),
                    body_cap,
                    ..ProbeSettings::default()
                },
                probe_interval: Duration::from_secs(probe_interval),
                min_backoff: Duration::from_secs(10).min(Duration::from_secs(probe_interval)),
                cluster_domain,
                namespace,
            };
            let runtime = match tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => return fail(e),
            };
            runtime.block_on(async {
                let client = match kube::Client::try_default().await {
                    Ok(client) => client,
                    Err(e) => return fail(e),
                };
                connectors_operator::controller::run(client, settings).await;
                ExitCode::SUCCESS
            })
        }
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
            let results = runtime.block_on(check::check(&docs, settings));
            match check::render(&results, output) {
                Ok(text) => print!("{text}"),
                Err(e) => return fail(e),
            }
            if results.iter().all(|(_, status)| check::is_ready(status)) {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
    }
}

fn fail(e: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {e}");
    ExitCode::from(2)
}
