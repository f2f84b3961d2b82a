//! `connectors-operator proxy`: the reverse proxy behind every Connector's proxy
//! address (SPEC-proxy.md sections 1-4, 6, 7, 9). Stateless and active-active: it
//! reads Connectors, classes, flags and global CA Secrets from watches, tool Secrets by
//! GET with a short TTL, and reviews tokens with the apiserver (cached).
//!
//! A request goes classify (`route::route`) -> authenticate (`review`) -> authorise
//! -> plan the injection (`inject`, pure) -> send (`send`, streamed).

pub mod answer;
pub mod handler;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::route::ProxyService;
use crate::runtime::Shutdown;

use crate::dataplane::caches::Caches;
use crate::dataplane::metrics::DataPlaneMetrics;
use crate::dataplane::{DataPlane, DataPlaneSettings};
use handler::Proxy;

/// Largest request head (SPEC-proxy section 9).
pub const HEADER_LIMIT: usize = 64 * 1024;
/// Time a client has to send a request head.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

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
    let listener = TcpListener::bind(settings.addr)
        .await
        .map_err(|e| format!("binding {}: {e}", settings.addr))?;
    let health = TcpListener::bind(settings.metrics_addr)
        .await
        .map_err(|e| format!("binding {}: {e}", settings.metrics_addr))?;
    let caches = Caches::start(&client, &settings.namespace, &shutdown);
    let metrics = Arc::new(DataPlaneMetrics::new("connectors_proxy"));
    tokio::spawn(serve_health(
        health,
        metrics.clone(),
        caches.clone(),
        shutdown.clone(),
    ));
    if caches.ready.wait().await.is_err() {
        return Err("the caches stopped before they were filled".into());
    }
    tracing::info!(addr = %settings.addr, connectors = caches.connector_count(), "proxy serving");
    let proxy = Arc::new(Proxy {
        dp: DataPlane::new(client, caches, metrics, &settings.data_plane),
        own: ProxyService {
            name: settings.service.clone(),
            namespace: settings.namespace.clone(),
            public_hosts: settings.public_hosts.clone(),
        },
    });
    let permits = Arc::new(Semaphore::new(settings.max_connections.max(1)));
    let stop = shutdown.wait();
    tokio::pin!(stop);
    loop {
        let Ok(permit) = permits.clone().acquire_owned().await else {
            break;
        };
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut stop => break,
        };
        match accepted {
            Ok((stream, _)) => {
                tokio::spawn(serve_connection(proxy.clone(), stream, permit));
            }
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    tracing::info!("proxy stopped accepting");
    Ok(())
}

async fn serve_connection(proxy: Arc<Proxy>, stream: TcpStream, _permit: OwnedSemaphorePermit) {
    let _ = stream.set_nodelay(true);
    proxy.dp.metrics.open_connections.inc();
    let service = {
        let proxy = proxy.clone();
        service_fn(move |request| handler::handle(proxy.clone(), request))
    };
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .max_buf_size(HEADER_LIMIT);
    builder.http2().max_header_list_size(HEADER_LIMIT as u32);
    if let Err(e) = builder
        .serve_connection_with_upgrades(TokioIo::new(stream), service)
        .await
    {
        tracing::debug!(error = %e, "connection ended with an error");
    }
    proxy.dp.metrics.open_connections.dec();
}

#[derive(Clone)]
struct Health {
    metrics: Arc<DataPlaneMetrics>,
    caches: Arc<Caches>,
}

/// `/metrics`, `/healthz` (the process runs) and `/readyz` (the caches are filled).
async fn serve_health(
    listener: TcpListener,
    metrics: Arc<DataPlaneMetrics>,
    caches: Arc<Caches>,
    shutdown: Shutdown,
) {
    let app = Router::new()
        .route(
            "/metrics",
            get(|State(h): State<Health>| async move { h.metrics.encode() }),
        )
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/readyz",
            get(|State(h): State<Health>| async move {
                if h.caches.ready.is_ready() {
                    (StatusCode::OK, "ok")
                } else {
                    (StatusCode::SERVICE_UNAVAILABLE, "caches not filled yet")
                }
            }),
        )
        .with_state(Health { metrics, caches });
    if let Err(e) = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown.wait())
        .await
    {
        tracing::error!(error = %e, "health endpoint stopped");
    }
}
