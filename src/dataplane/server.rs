//! The HTTP side of a data-plane process: the accept loop (a connection limit,
//! a 64 KiB request head read within 30 s, HTTP/1.1 with upgrades and HTTP/2) and the
//! `/metrics`, `/healthz`, `/readyz` endpoint.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::runtime::{InitialLists, Shutdown};

use super::body::ProxyBody;
use super::caches::Caches;
use super::metrics::DataPlaneMetrics;

/// Largest request head (SPEC-proxy section 9).
pub const HEADER_LIMIT: usize = 64 * 1024;
/// Time a client has to send a request head.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// A started data-plane process: its bound listener, filled caches and metrics.
pub struct Started {
    pub listener: TcpListener,
    pub caches: Arc<Caches>,
    pub metrics: Arc<DataPlaneMetrics>,
}

/// Binds the serving and the health listeners (a port in use fails start-up), starts
/// the watches and the health endpoint, and waits until the caches are filled.
pub async fn start(
    client: &kube::Client,
    addr: std::net::SocketAddr,
    metrics_addr: std::net::SocketAddr,
    namespace: &str,
    metrics_prefix: &str,
    shutdown: &Shutdown,
) -> Result<Started, String> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| format!("binding {addr}: {e}"))?;
    let health = TcpListener::bind(metrics_addr)
        .await
        .map_err(|e| format!("binding {metrics_addr}: {e}"))?;
    let lists = InitialLists::ask(&kube::Api::<crate::api::Connector>::all(client.clone())).await;
    let caches = Caches::start(client, namespace, shutdown, lists);
    let metrics = Arc::new(DataPlaneMetrics::new(metrics_prefix));
    tokio::spawn(serve_health(
        health,
        metrics.clone(),
        caches.clone(),
        shutdown.clone(),
    ));
    if caches.ready.wait().await.is_err() {
        return Err("the caches stopped before they were filled".into());
    }
    Ok(Started {
        listener,
        caches,
        metrics,
    })
}

/// Accepts connections until `shutdown`, at most `max_connections` at once (more
/// wait in the accept queue), each served by `handler`.
pub async fn serve<H, F>(
    listener: TcpListener,
    max_connections: usize,
    metrics: Arc<DataPlaneMetrics>,
    shutdown: Shutdown,
    handler: H,
) where
    H: Fn(Request<Incoming>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Result<Response<ProxyBody>, Infallible>> + Send + 'static,
{
    let permits = Arc::new(Semaphore::new(max_connections.max(1)));
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
                let handler = handler.clone();
                tokio::spawn(serve_connection(stream, permit, metrics.clone(), handler));
            }
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

async fn serve_connection<H, F>(
    stream: TcpStream,
    _permit: OwnedSemaphorePermit,
    metrics: Arc<DataPlaneMetrics>,
    handler: H,
) where
    H: Fn(Request<Incoming>) -> F + Send + Sync + 'static,
    F: Future<Output = Result<Response<ProxyBody>, Infallible>> + Send + 'static,
{
    let _ = stream.set_nodelay(true);
    metrics.open_connections.inc();
    let service = service_fn(handler);
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
    metrics.open_connections.dec();
}

#[derive(Clone)]
struct Health {
    metrics: Arc<DataPlaneMetrics>,
    caches: Arc<Caches>,
}

/// `/metrics`, `/healthz` (the process runs) and `/readyz` (the caches are filled).
pub async fn serve_health(
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
