//! `connectors-operator api`: the Connectors API gateway (SPEC-proxy.md section 8) at
//! `/connectors/v1alpha1/{ns}/{name}/path/{api-path}`. Stateless and active-active,
//! on the same data plane as the proxy (`dataplane/`): caches from watches, cached
//! reviews, Secrets by GET, the one credential step; the user's token never goes to
//! the tool or the class API.

pub mod handler;
pub mod status;

use std::net::SocketAddr;
use std::sync::Arc;

use crate::dataplane::server::{serve, start};
use crate::dataplane::{DataPlane, DataPlaneSettings};
use crate::runtime::Shutdown;
use handler::Gateway;

pub struct GatewaySettings {
    pub addr: SocketAddr,
    pub metrics_addr: SocketAddr,
    /// The operator namespace: flags ConfigMap and global CA Secrets.
    pub namespace: String,
    pub max_connections: usize,
    pub data_plane: DataPlaneSettings,
}

/// Binds both listeners, fills the caches, then serves until `shutdown`.
pub async fn run(
    client: kube::Client,
    settings: GatewaySettings,
    shutdown: Shutdown,
) -> Result<(), String> {
    let started = start(
        &client,
        settings.addr,
        settings.metrics_addr,
        &settings.namespace,
        "connectors_api",
        &shutdown,
    )
    .await?;
    tracing::info!(addr = %settings.addr, "API gateway serving");
    let metrics = started.metrics.clone();
    let gateway = Arc::new(Gateway {
        dp: DataPlane::new(
            client,
            started.caches,
            started.metrics,
            &settings.data_plane,
        ),
    });
    let handler = move |request| handler::handle(gateway.clone(), request);
    serve(
        started.listener,
        settings.max_connections,
        metrics,
        shutdown,
        handler,
    )
    .await;
    tracing::info!("API gateway stopped accepting");
    Ok(())
}
