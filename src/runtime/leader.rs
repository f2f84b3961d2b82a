//! Leader election with a coordination.k8s.io Lease: a process runs its work only
//! while it holds the Lease.

use std::future::Future;
use std::time::Duration;

use kube::Client;

use super::Shutdown;

/// Leader election with a coordination.k8s.io Lease.
#[derive(Clone, Debug)]
pub struct LeaseSettings {
    pub name: String,
    pub identity: String,
    /// How long a lease lasts without renewal: the longest hand-over after a crash.
    pub duration: Duration,
    /// Renewed this long before it expires.
    pub grace: Duration,
}

/// Runs `work` until `shutdown`: right away without a Lease, or while this process
/// holds the Lease in `namespace`. Losing the Lease drops `work` (no write after that)
/// and goes back to waiting for it; `leading` is told of every change.
pub async fn run_while_leader<W, F>(
    client: Client,
    namespace: &str,
    lease: Option<LeaseSettings>,
    shutdown: Shutdown,
    leading: impl Fn(bool),
    work: W,
) where
    W: Fn() -> F,
    F: Future<Output = ()>,
{
    let Some(lease) = lease else {
        leading(true);
        work().await;
        return;
    };
    let manager = match kube_lease_manager::LeaseManagerBuilder::new(client, &lease.name)
        .with_namespace(namespace)
        .with_identity(&lease.identity)
        .with_duration(lease.duration.as_secs().max(1))
        .with_grace(lease.grace.as_secs().max(1))
        .build()
        .await
    {
        Ok(m) => m,
        Err(e) => {
            tracing::error!(error = %e, "cannot set up leader election");
            return;
        }
    };
    let (mut holder, task) = manager.watch().await;
    loop {
        tracing::info!(identity = %lease.identity, lease = %lease.name, "waiting for the leader Lease");
        tokio::select! {
            _ = holder.wait_for(|l| *l) => {}
            _ = shutdown.clone().wait() => break,
        }
        tracing::info!(identity = %lease.identity, "became the leader");
        leading(true);
        let lost = async {
            let _ = holder.wait_for(|l| !*l).await;
        };
        let stop = tokio::select! {
            _ = work() => true,
            _ = lost => false,
        };
        leading(false);
        if stop {
            break;
        }
        tracing::warn!(identity = %lease.identity, "lost the leader Lease; work stopped");
    }
    // Closing the channel releases the Lease, so a standby takes over at once.
    drop(holder);
    if let Ok(Err(e)) = task.await {
        tracing::warn!(error = %e, "could not release the Lease");
    }
}
