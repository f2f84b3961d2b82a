//! A tiny stand-in for a Git server, used by the demo and the e2e tests: liveness at
//! `/`, and `/{org}/{repo}/info/refs` that accepts only HTTP Basic `demo:demo-password`.

use std::net::SocketAddr;

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use base64::Engine;

const USER: &str = "demo";
const PASSWORD: &str = "demo-password";

async fn health() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json")],
        r#"{"status":"healthy"}"#,
    )
}

async fn info_refs(
    Path((_org, _repo)): Path<(String, String)>,
    headers: HeaderMap,
) -> impl IntoResponse {
    let expected = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}"))
    );
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if given.trim() == expected {
        (StatusCode::OK, "001e# service=git-upload-pack\n")
    } else {
        (StatusCode::UNAUTHORIZED, "authentication required\n")
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::io::Result<()> {
    let addr: SocketAddr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:18080".into())
        .parse()
        .map_err(std::io::Error::other)?;
    let app = Router::new()
        .route("/", get(health))
        .route("/{org}/{repo}/info/refs", get(info_refs));
    let listener = tokio::net::TcpListener::bind(addr).await?;
    eprintln!("demo-tool listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app).await
}
