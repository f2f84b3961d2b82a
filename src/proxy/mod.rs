//! `connectors-operator proxy`: the reverse proxy behind every Connector's proxy
//! address (SPEC-proxy.md sections 1-4, 6, 7, 9). Stateless and active-active: it
//! reads Connectors, classes, flags and global CA Secrets from watches, tool Secrets by
//! GET with a short TTL, and reviews tokens with the apiserver (cached).
//!
//! A request goes classify (`route::route`) -> authenticate (`review`) -> authorise
//! -> plan the injection (`inject`, pure) -> send (`send`, streamed).

pub mod answer;
pub mod ca;
pub mod forward;
pub mod handler;

use std::net::SocketAddr;
use std::sync::Arc;

use crate::dataplane::server::{serve, start};
use crate::dataplane::{DataPlane, DataPlaneSettings};
use crate::route::ProxyService;
use crate::runtime::Shutdown;
use handler::Proxy;

pub struct ProxySettings {
    pub addr: SocketAddr,
    pub metrics_addr: SocketAddr,
    /// The operator namespace: flags ConfigMap and global CA Secrets.
    pub namespace: String,
    /// The proxy's own Service (path-form requests may name it in `Host`).
    pub service: String,
    /// Other host names the proxy is published under (path form only).
    pub public_hosts: Vec<String>,
    pub max_connections: usize,
    pub data_plane: DataPlaneSettings,
}

/// Binds both listeners, fills the caches, then serves until `shutdown`.
pub async fn run(
    client: kube::Client,
    settings: ProxySettings,
    shutdown: Shutdown,
) -> Result<(), String> {
    // Before anything answers: a ready proxy has published its CA.
    let ca = ca::ensure(&client, &settings.namespace).await?;
    let started = start(
        &client,
        settings.addr,
        settings.metrics_addr,
        &settings.namespace,
        "connectors_proxy",
        &shutdown,
    )
    .await?;
    let (caches, metrics) = (started.caches, started.metrics);
    tracing::info!(addr = %settings.addr, connectors = caches.connector_count(), "proxy serving");
    let proxy = Arc::new(Proxy {
        ca,
        dp: DataPlane::new(client, caches, metrics.clone(), &settings.data_plane),
        own: ProxyService {
            name: settings.service.clone(),
            namespace: settings.namespace.clone(),
            public_hosts: settings.public_hosts.clone(),
        },
    });
    let handler = move |request| handler::handle(proxy.clone(), request);
    serve(
        started.listener,
        settings.max_connections,
        metrics,
        shutdown,
        handler,
    )
    .await;
    tracing::info!("proxy stopped accepting");
    Ok(())
}
