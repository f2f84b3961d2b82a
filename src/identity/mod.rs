//! The identity controller (SPEC-identity section 2): health of Dex `Connector`s
//! (`dex.coreos.com/v1`) of type `ldap` and `oidc`.
//!
//! Same shape as the Connector controller: observe (the Connector, its Secret, CA
//! trust, the live LDAP or OIDC checks) -> decide (`decide::identity`, pure) -> act
//! (status by server-side apply only when it differs: zero writes at rest). Leader
//! elected on its own Lease (`<lease>-identity`); re-checks every interval with
//! jitter, exponential backoff after failures. The checks themselves are in
//! `observe::identity` (shared with `check`).

pub mod cli;
mod objects;
mod reconcile;
pub mod sync;
mod watches;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::Client;
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::Store;
use rand::Rng;

use crate::observe::ca_bundle_from_secret;
use crate::probe::{DestinationPolicy, TrustBundle};
use crate::runtime::{LeaseSettings, Shutdown, backoff_delay, run_while_leader};

/// The field manager of the controller's status writes (the operator's one name).
pub const MANAGER: &str = "connectors-operator";

/// Settings of the identity controller (flags of `run`).
#[derive(Clone, Debug)]
pub struct IdentitySettings {
    /// Re-check interval (±10% jitter).
    pub interval: Duration,
    /// First retry delay after a failure; doubles up to `interval`.
    pub min_backoff: Duration,
    /// Bound of each network step (connect, handshake, bind, search, request).
    pub timeout: Duration,
    /// Which addresses the checks may reach (as for tool probes).
    pub destinations: DestinationPolicy,
    /// Namespace of the operator: global CA Secrets and the Lease.
    pub namespace: String,
    pub workers: u16,
    /// `None`: no leader election. The name gets `-identity` appended.
    pub leader_election: Option<LeaseSettings>,
    /// The process's metrics; `None` leaves the directory sync and User validity off.
    pub metrics: Option<Arc<crate::telemetry::Metrics>>,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("{0} took longer than its deadline")]
    Deadline(&'static str),
}

/// Shared state of the controller.
pub struct Context {
    pub client: Client,
    pub settings: IdentitySettings,
    pub recorder: Recorder,
    /// The labelled global CA Secrets of the operator's namespace.
    pub global_cas: Store<Secret>,
    failures: Mutex<HashMap<String, u32>>,
}

impl Context {
    fn new(client: Client, settings: IdentitySettings, global_cas: Store<Secret>) -> Self {
        let recorder = Recorder::new(
            client.clone(),
            Reporter {
                controller: MANAGER.into(),
                instance: settings
                    .leader_election
                    .as_ref()
                    .map(|l| l.identity.clone()),
            },
        );
        Context {
            client,
            settings,
            recorder,
            global_cas,
            failures: Mutex::default(),
        }
    }

    /// Global CA bundles (labelled Secrets of the operator's namespace), name order.
    pub fn global_trust(&self) -> TrustBundle {
        let mut secrets = self.global_cas.state();
        secrets.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
        secrets
            .iter()
            .filter_map(|s| ca_bundle_from_secret(s).ok())
            .fold(TrustBundle::empty(), |acc, b| acc.merged(&b))
    }

    /// The interval (±10%) when healthy, else backoff from `min_backoff`.
    pub fn next_check(&self, key: &str, healthy: bool) -> Duration {
        let failures = match self.failures.lock() {
            Ok(mut map) if healthy => {
                map.remove(key);
                0
            }
            Ok(mut map) => {
                let n = map.entry(key.to_string()).or_insert(0);
                *n = n.saturating_add(1);
                *n
            }
            Err(_) => 0,
        };
        backoff_delay(
            failures,
            self.settings.min_backoff,
            self.settings.interval,
            rand::rng().random_range(-0.1..=0.1),
        )
    }

    pub fn forget(&self, key: &str) {
        if let Ok(mut map) = self.failures.lock() {
            map.remove(key);
        }
    }
}

/// The longest one apiserver request may take.
pub const API_REQUEST_DEADLINE: Duration = Duration::from_secs(15);

/// In-flight checks get this long to finish after a shutdown signal.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Runs the controller until `shutdown`, while this process holds the identity Lease.
pub async fn run(client: Client, settings: IdentitySettings, shutdown: Shutdown) {
    let lease = settings.leader_election.clone().map(|mut l| {
        l.name = format!("{}-identity", l.name);
        l
    });
    let namespace = settings.namespace.clone();
    run_while_leader(
        client.clone(),
        &namespace,
        lease,
        shutdown.clone(),
        |leading| tracing::info!(leading, "identity controller leadership"),
        || {
            let (client, settings, shutdown) = (client.clone(), settings.clone(), shutdown.clone());
            async move {
                let deadline = {
                    let shutdown = shutdown.clone();
                    async move {
                        shutdown.wait().await;
                        tokio::time::sleep(SHUTDOWN_GRACE).await;
                    }
                };
                let work = async {
                    if wait_for_crd(&client, &shutdown).await {
                        watches::controller(client.clone(), settings, shutdown.clone()).await;
                    }
                };
                tokio::select! {
                    _ = work => {}
                    _ = deadline => {}
                }
            }
        },
    )
    .await;
    tracing::info!("identity controller stopped");
}

/// How often a cluster without the Dex CRD (or without the RBAC to read it) is asked
/// again.
const CRD_RECHECK: Duration = Duration::from_secs(30);

/// Waits until Dex Connectors can be listed: a cluster without Dex's CRD (or without
/// `config/identity`'s RBAC) leaves the controller idle, not failing. False on shutdown.
async fn wait_for_crd(client: &Client, shutdown: &Shutdown) -> bool {
    let api = kube::Api::<crate::api::DexConnector>::all(client.clone());
    let mut told = false;
    loop {
        let listed = tokio::time::timeout(
            API_REQUEST_DEADLINE,
            api.list_metadata(&kube::api::ListParams::default().limit(1)),
        )
        .await;
        match listed {
            Ok(Ok(_)) => return true,
            Ok(Err(kube::Error::Api(e))) if e.code == 404 || e.code == 403 => {
                if !told {
                    tracing::info!(
                        code = e.code,
                        "Dex Connectors (connectors.dex.coreos.com) cannot be listed: the identity controller waits (install config/identity)"
                    );
                    told = true;
                }
            }
            Ok(Err(e)) => tracing::warn!(error = %e, "listing Dex Connectors failed"),
            Err(_) => tracing::warn!("listing Dex Connectors timed out"),
        }
        tokio::select! {
            _ = tokio::time::sleep(CRD_RECHECK) => {}
            _ = shutdown.clone().wait() => return false,
        }
    }
}

/// Builds the context (used by the watches).
fn context(client: Client, settings: IdentitySettings, global_cas: Store<Secret>) -> Arc<Context> {
    Arc::new(Context::new(client, settings, global_cas))
}
