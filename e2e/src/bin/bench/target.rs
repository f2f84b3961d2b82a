//! The probe target, in process: several "tool" listeners that answer like the demo
//! tool (`/` healthy JSON, `/{org}/{repo}/info/refs` with Basic `demo:demo-password`),
//! and one listener that accepts connections and never answers. Every request is
//! counted, so the benchmark reports what the operator sent.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::routing::get;
use base64::Engine;
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;

use crate::BenchError;

/// The credentials the auth probe must carry (the Secrets hold them).
pub const USERNAME: &str = "demo";
pub const PASSWORD: &str = "demo-password";

#[derive(Default)]
struct Counters {
    liveness: AtomicU64,
    auth_ok: AtomicU64,
    auth_denied: AtomicU64,
    hung_connections: AtomicU64,
}

/// A snapshot of the request counters.
#[derive(Clone, Copy, Debug, Default)]
pub struct Counts {
    pub liveness: u64,
    pub auth_ok: u64,
    pub auth_denied: u64,
    /// Connections accepted by the listener that never answers.
    pub hung_connections: u64,
}

impl Counts {
    /// What happened between `earlier` and this snapshot.
    pub fn since(&self, earlier: &Counts) -> Counts {
        Counts {
            liveness: self.liveness - earlier.liveness,
            auth_ok: self.auth_ok - earlier.auth_ok,
            auth_denied: self.auth_denied - earlier.auth_denied,
            hung_connections: self.hung_connections - earlier.hung_connections,
        }
    }
}

#[derive(Clone)]
struct ToolState {
    counters: Arc<Counters>,
    authorization: Arc<str>,
}

/// The running listeners (they live as long as the runtime).
pub struct Targets {
    /// `http://127.0.0.1:PORT` of each tool listener.
    pub tool_urls: Vec<String>,
    /// `http://127.0.0.1:PORT` of the listener that never answers.
    pub hung_url: String,
    counters: Arc<Counters>,
}

impl Targets {
    /// Starts `tools` tool listeners and the hanging one on loopback.
    pub async fn start(tools: usize) -> Result<Targets, BenchError> {
        let counters = Arc::new(Counters::default());
        let credentials =
            base64::engine::general_purpose::STANDARD.encode(format!("{USERNAME}:{PASSWORD}"));
        let state = ToolState {
            counters: counters.clone(),
            authorization: format!("Basic {credentials}").into(),
        };
        let router = Router::new()
            .route("/", get(liveness))
            .route("/{org}/{repo}/info/refs", get(info_refs))
            .with_state(state);
        let mut tool_urls = Vec::with_capacity(tools);
        for _ in 0..tools.max(1) {
            let listener = TcpListener::bind("127.0.0.1:0").await?;
            tool_urls.push(format!("http://{}", listener.local_addr()?));
            let router = router.clone();
            tokio::spawn(async move {
                if let Err(e) = axum::serve(listener, router).await {
                    eprintln!("bench: tool listener stopped: {e}");
                }
            });
        }
        let hung = TcpListener::bind("127.0.0.1:0").await?;
        let hung_url = format!("http://{}", hung.local_addr()?);
        tokio::spawn(never_answer(hung, counters.clone()));
        Ok(Targets {
            tool_urls,
            hung_url,
            counters,
        })
    }

    pub fn counts(&self) -> Counts {
        let c = &self.counters;
        Counts {
            liveness: c.liveness.load(Ordering::Relaxed),
            auth_ok: c.auth_ok.load(Ordering::Relaxed),
            auth_denied: c.auth_denied.load(Ordering::Relaxed),
            hung_connections: c.hung_connections.load(Ordering::Relaxed),
        }
    }
}

async fn liveness(
    State(state): State<ToolState>,
) -> ([(header::HeaderName, &'static str); 1], &'static str) {
    state.counters.liveness.fetch_add(1, Ordering::Relaxed);
    (
        [(header::CONTENT_TYPE, "application/json")],
        r#"{"status":"healthy"}"#,
    )
}

async fn info_refs(State(state): State<ToolState>, headers: HeaderMap) -> StatusCode {
    let authorized = headers
        .get(header::AUTHORIZATION)
        .is_some_and(|v| v.as_bytes() == state.authorization.as_bytes());
    if authorized {
        state.counters.auth_ok.fetch_add(1, Ordering::Relaxed);
        StatusCode::OK
    } else {
        state.counters.auth_denied.fetch_add(1, Ordering::Relaxed);
        StatusCode::UNAUTHORIZED
    }
}

/// Accepts connections and reads (and drops) whatever arrives, never writing a byte;
/// a connection is released when the client gives up and closes it.
async fn never_answer(listener: TcpListener, counters: Arc<Counters>) {
    loop {
        match listener.accept().await {
            Ok((mut stream, _)) => {
                counters.hung_connections.fetch_add(1, Ordering::Relaxed);
                tokio::spawn(async move {
                    let mut sink = [0u8; 4096];
                    while matches!(stream.read(&mut sink).await, Ok(n) if n > 0) {}
                });
            }
            // Out of file descriptors or similar: back off instead of spinning.
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(50)).await,
        }
    }
}
