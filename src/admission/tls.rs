//! HTTPS serving for the webhook with a certificate that can be swapped while serving
//! (renewal, or cert-manager rewriting the mounted files), without dropping the listener.
//!
//! The port is reachable by anyone on the network, so what one client can cost is
//! bounded (SPEC section 6; the request body is bounded in [`super::router`]):
//! - at most [`MAX_CONNECTIONS`] connections are open at once. A connection beyond the
//!   cap closes the oldest open connection that has no request in flight (idle, still
//!   in its TLS handshake, or still sending a request head); when every connection has
//!   a request in flight, it waits in the listen backlog until one finishes (requests
//!   are bounded by the body read timeout and the handlers' own deadlines), so slow
//!   clients cannot keep the API server out;
//! - the TLS handshake must finish within [`HANDSHAKE_TIMEOUT`];
//! - HTTP/1 request heads must arrive within [`HEADER_READ_TIMEOUT`] (also the idle
//!   limit of a keep-alive connection), in at most 64 KiB;
//! - a connection with no request in flight for [`IDLE_TIMEOUT`] is closed (HTTP/2,
//!   where a half-sent HEADERS frame is never a request);
//! - HTTP/2: at most 8 concurrent streams, 16 KiB of headers, 256 KiB flow-control
//!   windows (what the peer may send before the server reads it).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use axum::extract::Request;
use axum::middleware::Next;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use rustls::ServerConfig;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;

/// A client that has not finished its TLS handshake by then is dropped.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// An HTTP/1 request head (or the next one on a keep-alive connection) must be
/// complete within this time, or the connection is closed.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);
/// A connection with no request in flight for this long is closed.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// Connections open at once; see the module documentation for what happens beyond.
pub const MAX_CONNECTIONS: usize = 64;
/// HTTP/1 read buffer: a request head must fit.
const H1_MAX_BUF: usize = 64 * 1024;
const H2_MAX_STREAMS: u32 = 8;
const H2_MAX_HEADER_LIST: u32 = 16 * 1024;
const H2_WINDOW: u32 = 256 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("certificate PEM: {0}")]
    Pem(String),
    #[error("TLS: {0}")]
    Rustls(#[from] rustls::Error),
}

/// The certificate currently served; [`ReloadableCert::set`] replaces it for new
/// connections.
#[derive(Debug)]
pub struct ReloadableCert(RwLock<Arc<CertifiedKey>>);

impl ReloadableCert {
    pub fn new(cert_pem: &str, key_pem: &str) -> Result<Self, TlsError> {
        Ok(ReloadableCert(RwLock::new(Arc::new(certified_key(
            cert_pem, key_pem,
        )?))))
    }

    pub fn set(&self, cert_pem: &str, key_pem: &str) -> Result<(), TlsError> {
        let key = Arc::new(certified_key(cert_pem, key_pem)?);
        match self.0.write() {
            Ok(mut current) => *current = key,
            Err(poisoned) => *poisoned.into_inner() = key,
        }
        Ok(())
    }
}

impl ResolvesServerCert for ReloadableCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        match self.0.read() {
            Ok(current) => Some(current.clone()),
            Err(poisoned) => Some(poisoned.into_inner().clone()),
        }
    }
}

fn certified_key(cert_pem: &str, key_pem: &str) -> Result<CertifiedKey, TlsError> {
    let certs = rustls_pemfile::certs(&mut cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Pem(format!("certificate: {e}")))?;
    if certs.is_empty() {
        return Err(TlsError::Pem("no certificate found".into()));
    }
    let key = rustls_pemfile::private_key(&mut key_pem.as_bytes())
        .map_err(|e| TlsError::Pem(format!("private key: {e}")))?
        .ok_or_else(|| TlsError::Pem("no private key found".into()))?;
    let signing_key = rustls::crypto::ring::sign::any_supported_type(&key)?;
    Ok(CertifiedKey::new(certs, signing_key))
}

/// Serves `router` over HTTPS on `listener` until `shutdown` completes. Connections in
/// flight are left to finish on their own.
pub async fn serve(
    listener: TcpListener,
    cert: Arc<ReloadableCert>,
    router: axum::Router,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_cert_resolver(cert);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let connections = Arc::new(Connections::new(MAX_CONNECTIONS));
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            _ = &mut shutdown => return Ok(()),
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: back off, keep serving.
                    tracing::warn!(error = %e, "webhook accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let slot = tokio::select! {
            _ = &mut shutdown => return Ok(()),
            slot = connections.admit() => slot,
        };
        let acceptor = acceptor.clone();
        let router = router.clone();
        tokio::spawn(async move {
            let activity = slot.activity.clone();
            tokio::select! {
                _ = serve_connection(acceptor, stream, router, &activity, peer) => {}
                _ = activity.evicted.notified() => {
                    tracing::debug!(%peer, "webhook connection without a request closed to make room for a new one");
                }
            }
            drop(slot);
        });
    }
}

async fn serve_connection(
    acceptor: TlsAcceptor,
    stream: tokio::net::TcpStream,
    router: axum::Router,
    activity: &Arc<Activity>,
    peer: std::net::SocketAddr,
) {
    let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => {
            tracing::debug!(%peer, error = %e, "webhook TLS handshake failed");
            return;
        }
        Err(_) => {
            tracing::debug!(%peer, "webhook TLS handshake timed out");
            return;
        }
    };
    // ALPN decided the protocol: no sniffing (which would wait, unbounded, for the
    // first bytes).
    let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2".as_slice());
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .max_buf_size(H1_MAX_BUF);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(H2_MAX_STREAMS)
        .max_header_list_size(H2_MAX_HEADER_LIST)
        .initial_stream_window_size(H2_WINDOW)
        .initial_connection_window_size(H2_WINDOW);
    let builder = if h2 {
        builder.http2_only()
    } else {
        builder.http1_only()
    };
    let tracked = activity.clone();
    let router = router.layer(axum::middleware::from_fn(
        move |request: Request, next: Next| {
            let busy = tracked.begin();
            async move {
                let response = next.run(request).await;
                drop(busy);
                response
            }
        },
    ));
    let conn = builder.serve_connection(TokioIo::new(tls), TowerToHyperService::new(router));
    tokio::pin!(conn);
    tokio::select! {
        served = conn.as_mut() => {
            if let Err(e) = served {
                tracing::debug!(%peer, error = %e, "webhook connection ended with an error");
            }
        }
        _ = activity.idle(IDLE_TIMEOUT) => {
            tracing::debug!(%peer, "webhook connection idle; closing");
            conn.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(HEADER_READ_TIMEOUT, conn).await;
        }
    }
}

/// What a connection is doing, as far as the connection cap cares.
#[derive(Debug)]
struct Activity {
    /// Requests whose head was read and whose response is not yet produced.
    busy: AtomicUsize,
    /// When the connection last had no request in flight (start, or the end of one).
    idle_since: Mutex<Instant>,
    /// Closes the connection to make room for a new one.
    evicted: Notify,
}

struct Busy(Arc<Activity>);

impl Drop for Busy {
    fn drop(&mut self) {
        if self.0.busy.fetch_sub(1, Ordering::SeqCst) == 1 {
            *self
                .0
                .idle_since
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = Instant::now();
        }
    }
}

impl Activity {
    fn new() -> Self {
        Activity {
            busy: AtomicUsize::new(0),
            idle_since: Mutex::new(Instant::now()),
            evicted: Notify::new(),
        }
    }

    fn begin(self: &Arc<Self>) -> Busy {
        self.busy.fetch_add(1, Ordering::SeqCst);
        Busy(self.clone())
    }

    fn is_busy(&self) -> bool {
        self.busy.load(Ordering::SeqCst) > 0
    }

    /// Completes once the connection has had no request in flight for `limit`.
    async fn idle(&self, limit: Duration) {
        loop {
            let wait = if self.is_busy() {
                limit
            } else {
                let since = *self
                    .idle_since
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                match limit.checked_sub(since.elapsed()) {
                    Some(left) if !left.is_zero() => left,
                    _ => return,
                }
            };
            tokio::time::sleep(wait).await;
        }
    }
}

/// The open connections, oldest first.
struct Connections {
    max: usize,
    open: Mutex<(u64, BTreeMap<u64, Arc<Activity>>)>,
    freed: Notify,
}

/// A connection's place among the open ones, given up on drop.
struct Slot {
    connections: Arc<Connections>,
    id: u64,
    activity: Arc<Activity>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self
            .connections
            .open
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if open.1.remove(&self.id).is_some() {
            self.connections.freed.notify_one();
        }
    }
}

impl Connections {
    fn new(max: usize) -> Self {
        Connections {
            max,
            open: Mutex::new((0, BTreeMap::new())),
            freed: Notify::new(),
        }
    }

    /// A slot for a new connection: a free one, else the one of the oldest connection
    /// without a request in flight (which is closed), else the first one freed.
    async fn admit(self: &Arc<Self>) -> Slot {
        loop {
            {
                let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
                let (next_id, table) = &mut *open;
                if table.len() >= self.max {
                    let idle = table
                        .iter()
                        .find(|(_, activity)| !activity.is_busy())
                        .map(|(id, _)| *id);
                    if let Some(activity) = idle.and_then(|id| table.remove(&id)) {
                        activity.evicted.notify_one();
                    }
                }
                if table.len() < self.max {
                    let id = *next_id;
                    *next_id += 1;
                    let activity = Arc::new(Activity::new());
                    table.insert(id, activity.clone());
                    return Slot {
                        connections: self.clone(),
                        id,
                        activity,
                    };
                }
            }
            self.freed.notified().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_new_connection_evicts_the_oldest_idle_one_never_a_busy_one() {
        let connections = Arc::new(Connections::new(2));
        let first = connections.admit().await;
        let second = connections.admit().await;
        let _busy = first.activity.begin();
        // Full: the idle second connection makes room, the busy first one stays.
        let third = connections.admit().await;
        tokio::time::timeout(Duration::from_secs(1), second.activity.evicted.notified())
            .await
            .expect("the idle connection is told to close");
        let _busy_third = third.activity.begin();
        // Every connection busy: a new one waits until one is given up.
        let waiting = {
            let connections = connections.clone();
            tokio::spawn(async move { connections.admit().await.id })
        };
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(!waiting.is_finished());
        // The evicted connection's slot was already handed over.
        drop(second);
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(!waiting.is_finished());
        drop(first);
        let id = tokio::time::timeout(Duration::from_secs(1), waiting)
            .await
            .expect("admitted once a slot is freed")
            .unwrap();
        assert_eq!(id, 3);
    }

    #[tokio::test(start_paused = true)]
    async fn idle_completes_only_after_the_limit_without_requests() {
        let activity = Arc::new(Activity::new());
        let busy = activity.begin();
        let limit = Duration::from_secs(30);
        assert!(
            tokio::time::timeout(Duration::from_secs(60), activity.idle(limit))
                .await
                .is_err()
        );
        drop(busy);
        let start = tokio::time::Instant::now();
        activity.idle(limit).await;
        assert!(start.elapsed() >= Duration::from_secs(29));
    }
}
