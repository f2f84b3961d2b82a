//! A tiny stand-in for a Git server, used by the demo and the e2e tests: liveness at
//! `/`, `/{org}/{repo}/info/refs` that accepts only HTTP Basic `demo:demo-password`, and
//! a class API route `/plugin/check` that checks the same credentials in
//! `X-Plugin-Secret`.
//!
//! It is also a real Git server (module `git`): repositories under the git root
//! (`--git-root DIR` or `DEMO_TOOL_GIT_ROOT`, else a fresh temporary directory; a bare
//! `demo/repo.git` with one commit on `main` is created there at start-up) are served
//! through `git http-backend` at `/{org}/{repo}.git/...` and `/{org}/{repo}/...`, behind
//! the same Basic credentials. Paths of repositories that do not exist keep the
//! stand-in answers above.
//!
//! Under `/misbehave/` it also answers the way broken tools do, so the e2e bad-input
//! corpus (`e2e/corpus/`) can probe them: error statuses, huge, non-UTF-8 and invalid
//! JSON bodies, no Content-Type, redirect loops, slow-drip bodies, hanging headers, slow
//! answers, and a liveness that flaps between up and down on a fixed period.
//!
//! Unauthenticated test routes (module `test_routes`): `/echo[/...]`, `/bytes/{n}`,
//! `/sink`, `/redirect?to=URL`, `/upgrade`, `/upgrade-refused`; and the request log
//! (module `request_log`): `GET|DELETE /_requests`.
//!
//! Usage: `demo-tool [--git-root DIR] [ADDR...]` (default `127.0.0.1:18080`); every
//! address is served and the first line on stderr names the first one.

mod git;
mod request_log;
mod test_routes;
mod tls;

use std::collections::HashMap;
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use base64::Engine;
use bytes::Bytes;
use clap::Parser;

const USER: &str = "demo";
const PASSWORD: &str = "demo-password";
const HEALTHY: &str = r#"{"status":"healthy"}"#;

async fn health() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], HEALTHY)
}

/// What the handlers share: the git root and the request log.
#[derive(Clone)]
struct AppState {
    git_root: Arc<PathBuf>,
    log: Arc<request_log::RequestLog>,
}

/// Whether the request carries HTTP Basic `demo:demo-password`.
fn authorized(headers: &HeaderMap) -> bool {
    let expected = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}"))
    );
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    given.trim() == expected
}

/// `/{org}/{repo}/info/refs`: the Git backend when the repository exists under the
/// git root, else the stand-in answer: 200 with a one-line advertisement header for
/// the demo credentials, 401 (no challenge) otherwise.
async fn info_refs(State(state): State<AppState>, request: Request) -> Response {
    if let Some(path_info) = git::locate(&state.git_root, request.uri().path()) {
        return git::serve(state.git_root.to_path_buf(), path_info, request).await;
    }
    if authorized(request.headers()) {
        (StatusCode::OK, "001e# service=git-upload-pack\n").into_response()
    } else {
        (StatusCode::UNAUTHORIZED, "authentication required\n").into_response()
    }
}

/// Any other path: the Git backend for `/{org}/{repo}[.git]/...` of an existing
/// repository, else 404.
async fn git_or_not_found(State(state): State<AppState>, request: Request) -> Response {
    match git::locate(&state.git_root, request.uri().path()) {
        Some(path_info) => git::serve(state.git_root.to_path_buf(), path_info, request).await,
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

/// Checks the headers a class API gets (SPEC section 4): `X-Plugin-Meta` present and
/// `X-Plugin-Secret` (base64 JSON of the Secret's data, values base64) holding
/// `demo` / `demo-password`.
fn plugin_credentials(headers: &HeaderMap) -> Result<(), (StatusCode, &'static str)> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let decoded = |name: &str| {
        headers
            .get(name)
            .and_then(|v| b64.decode(v.as_bytes()).ok())
            .and_then(|bytes| serde_json::from_slice::<serde_json::Value>(&bytes).ok())
    };
    let field = |data: &serde_json::Value, key: &str| {
        data[key]
            .as_str()
            .and_then(|v| b64.decode(v).ok())
            .and_then(|v| String::from_utf8(v).ok())
    };
    let meta = decoded("x-plugin-meta");
    let secret = decoded("x-plugin-secret").unwrap_or_default();
    let valid = field(&secret, "username").as_deref() == Some(USER)
        && field(&secret, "password").as_deref() == Some(PASSWORD);
    match (meta, valid) {
        (None, _) => Err((StatusCode::BAD_REQUEST, "X-Plugin-Meta missing\n")),
        (Some(_), true) => Ok(()),
        (Some(_), false) => Err((StatusCode::UNAUTHORIZED, "credentials refused\n")),
    }
}

/// `/plugin/check`: a class API as the gateway and the API probe call it: 200 when
/// the plugin headers carry the demo credentials, 401 otherwise.
async fn plugin_check(headers: HeaderMap) -> impl IntoResponse {
    match plugin_credentials(&headers) {
        Ok(()) => (StatusCode::OK, "credentials accepted\n"),
        Err(refused) => refused,
    }
}

/// `/plugin/api/v4/projects/{id}/repository/branches`: the class API the project ships
/// for the gateway (an `x-provider-type: api` operation): the branches of repository
/// `{id}` (`group/project`, `%2F`-encoded in the path) under the git root, as
/// `[{"name": ...}]`, after checking the plugin headers.
async fn plugin_branches(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Err(refused) = plugin_credentials(&headers) {
        return refused.into_response();
    }
    let valid = id
        .split('/')
        .all(|p| !p.is_empty() && p != "." && p != "..");
    let repo = state.git_root.join(format!("{id}.git"));
    if !valid || !repo.is_dir() {
        return (StatusCode::NOT_FOUND, "no such project\n").into_response();
    }
    let out = tokio::process::Command::new("git")
        .arg("--git-dir")
        .arg(&repo)
        .args(["for-each-ref", "--format=%(refname:short)", "refs/heads"])
        .output()
        .await;
    match out {
        Ok(out) if out.status.success() => {
            let names: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
                .lines()
                .map(|name| serde_json::json!({ "name": name }))
                .collect();
            axum::Json(names).into_response()
        }
        _ => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "git for-each-ref failed\n",
        )
            .into_response(),
    }
}

/// `/misbehave/status/{code}`: that status with a short text body.
async fn status(Path(code): Path<u16>) -> Response {
    let status = StatusCode::from_u16(code).unwrap_or(StatusCode::BAD_REQUEST);
    (status, format!("status {code}\n")).into_response()
}

/// `/misbehave/huge/{mib}`: a text body of `mib` MiB, streamed (the tool keeps no copy).
async fn huge(Path(mib): Path<usize>) -> Response {
    let chunk = Bytes::from(vec![b'a'; 1024 * 1024]);
    let chunks =
        futures::stream::iter(std::iter::repeat_n(chunk, mib.min(64)).map(Ok::<_, std::io::Error>));
    text_response(
        StatusCode::OK,
        Body::from_stream(chunks),
        Some("text/plain"),
    )
}

/// `/misbehave/non-utf8`: 200 with a body that is not valid UTF-8.
async fn non_utf8() -> Response {
    let body: &'static [u8] = b"\xff\xfe\xfd healthy \xc3\x28";
    text_response(StatusCode::OK, Body::from(body), Some("text/plain"))
}

/// `/misbehave/no-content-type`: a healthy JSON body without any Content-Type header.
async fn no_content_type() -> Response {
    text_response(StatusCode::OK, Body::from(HEALTHY), None)
}

/// `/misbehave/invalid-json`: declared JSON, cut in the middle.
async fn invalid_json() -> Response {
    text_response(
        StatusCode::OK,
        Body::from(r#"{"status": "heal"#),
        Some("application/json"),
    )
}

/// `/misbehave/json-array`: valid JSON that is not an object.
async fn json_array() -> Response {
    text_response(
        StatusCode::OK,
        Body::from("[1,2,3]"),
        Some("application/json"),
    )
}

/// `/misbehave/redirect-loop`: redirects to itself forever.
async fn redirect_loop() -> Response {
    redirect("/misbehave/redirect-loop")
}

/// `/misbehave/redirect?to=URL`: one redirect to `URL` (e.g. another host).
async fn redirect_to(Query(query): Query<HashMap<String, String>>) -> Response {
    redirect(query.get("to").map(String::as_str).unwrap_or("/"))
}

/// `/misbehave/slow-drip`: headers at once, then one byte every half second for a minute.
async fn slow_drip() -> Response {
    let drip = futures::stream::unfold(0u32, |sent| async move {
        if sent >= 120 {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        Some((Ok::<_, std::io::Error>(Bytes::from_static(b"a")), sent + 1))
    });
    text_response(StatusCode::OK, Body::from_stream(drip), Some("text/plain"))
}

/// `/misbehave/hang`: no response headers for two minutes.
async fn hang() -> Response {
    tokio::time::sleep(Duration::from_secs(120)).await;
    text_response(
        StatusCode::OK,
        Body::from(HEALTHY),
        Some("application/json"),
    )
}

/// `/misbehave/delay/{millis}`: the healthy answer, after a delay (a slow tool).
async fn delay(Path(millis): Path<u64>) -> Response {
    tokio::time::sleep(Duration::from_millis(millis.min(120_000))).await;
    health().await.into_response()
}

/// `/misbehave/flap/{seconds}`: healthy during even periods of `seconds` (wall clock),
/// 503 during odd ones, so every caller sees the same state at the same time.
async fn flap(Path(seconds): Path<u64>) -> Response {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    if (now / seconds.max(1)).is_multiple_of(2) {
        health().await.into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "down for now\n").into_response()
    }
}

fn redirect(location: &str) -> Response {
    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::FOUND;
    if let Ok(value) = HeaderValue::from_str(location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
}

/// A response with exactly the Content-Type given (none when `None`; axum's string
/// bodies would add `text/plain`).
fn text_response(status: StatusCode, body: Body, content_type: Option<&'static str>) -> Response {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    if let Some(value) = content_type {
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(value));
    }
    response
}

fn app(state: AppState) -> Router {
    Router::new()
        .route("/", get(health))
        .route("/{org}/{repo}/info/refs", get(info_refs))
        .route("/plugin/check", get(plugin_check))
        .route(
            "/plugin/api/v4/projects/{id}/repository/branches",
            get(plugin_branches),
        )
        .route("/misbehave/status/{code}", get(status))
        .route("/misbehave/huge/{mib}", get(huge))
        .route("/misbehave/non-utf8", get(non_utf8))
        .route("/misbehave/no-content-type", get(no_content_type))
        .route("/misbehave/invalid-json", get(invalid_json))
        .route("/misbehave/json-array", get(json_array))
        .route("/misbehave/redirect-loop", get(redirect_loop))
        .route("/misbehave/redirect", get(redirect_to))
        .route("/misbehave/slow-drip", get(slow_drip))
        .route("/misbehave/hang", get(hang))
        .route("/misbehave/delay/{millis}", get(delay))
        .route("/misbehave/flap/{seconds}", get(flap))
        .route(
            request_log::PATH,
            get(request_log::list).delete(request_log::clear),
        )
        .route("/echo", any(test_routes::echo))
        .route("/echo/{*rest}", any(test_routes::echo))
        .route("/bytes/{n}", get(test_routes::bytes))
        .route("/sink", post(test_routes::sink).put(test_routes::sink))
        .route("/redirect", get(redirect_to))
        .route("/upgrade", get(test_routes::upgrade))
        .route("/upgrade-refused", get(test_routes::upgrade_refused))
        .fallback(git_or_not_found)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            request_log::record,
        ))
        .with_state(state)
}

/// Command line of the tool.
#[derive(Parser)]
#[command(
    name = "demo-tool",
    about = "A stand-in Git server for the demo and the e2e tests"
)]
struct Args {
    /// Directory of the served Git repositories (`{org}/{repo}.git`); `demo/repo.git`
    /// is created there unless it exists. Default: a fresh temporary directory.
    #[arg(long, env = "DEMO_TOOL_GIT_ROOT")]
    git_root: Option<PathBuf>,
    /// Serve HTTPS with this certificate chain (PEM; with `--tls-key`).
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The private key of `--tls-cert` (PEM).
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Addresses to listen on (default `127.0.0.1:18080`).
    addrs: Vec<SocketAddr>,
}

/// Prefix of the temporary git roots (`demo-tool-git-{pid}-{nanos}`).
const TEMP_ROOT_PREFIX: &str = "demo-tool-git-";

/// A fresh temporary git root. The tool is usually killed (no clean-up of its own),
/// so the temporary roots of processes that are gone are removed first.
fn temp_git_root() -> PathBuf {
    let temp = std::env::temp_dir();
    let stale = std::fs::read_dir(&temp)
        .into_iter()
        .flatten()
        .flatten()
        .map(|entry| entry.path())
        .filter(|path| {
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default();
            let pid = name
                .strip_prefix(TEMP_ROOT_PREFIX)
                .and_then(|rest| rest.split('-').next())
                .and_then(|pid| pid.parse::<u32>().ok());
            pid.is_some_and(|pid| !std::path::Path::new(&format!("/proc/{pid}")).exists())
        });
    for path in stale {
        let _ = std::fs::remove_dir_all(path);
    }
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    temp.join(format!("{TEMP_ROOT_PREFIX}{}-{nanos}", std::process::id()))
}

/// The git root (created, absolute) with the demo repository in it.
fn prepare_git_root(given: Option<PathBuf>) -> std::io::Result<PathBuf> {
    let root = given.unwrap_or_else(temp_git_root);
    std::fs::create_dir_all(&root)?;
    let root = root.canonicalize()?;
    git::init_demo_repo(&root)?;
    Ok(root)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::io::Result<()> {
    let args = Args::parse();
    let mut addrs = args.addrs;
    if addrs.is_empty() {
        addrs.push(SocketAddr::from(([127, 0, 0, 1], 18080)));
    }
    let git_root = prepare_git_root(args.git_root)?;
    let state = AppState {
        git_root: Arc::new(git_root.clone()),
        log: Arc::default(),
    };
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(tls::server_config(cert, key)?),
        _ => None,
    };
    let mut servers = Vec::new();
    for addr in addrs {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let address = listener.local_addr()?;
        let scheme = if tls.is_some() { "https" } else { "http" };
        let _ = writeln!(
            std::io::stderr(),
            "demo-tool listening on {scheme}://{address}"
        );
        let router = app(state.clone());
        servers.push(match tls.clone() {
            Some(config) => tokio::spawn(tls::serve(listener, router, config)),
            None => {
                let service = router.into_make_service_with_connect_info::<SocketAddr>();
                tokio::spawn(async move { axum::serve(listener, service).await })
            }
        });
    }
    // Not `eprintln!`: callers may close stderr after the first line.
    let _ = writeln!(
        std::io::stderr(),
        "demo-tool git root: {}",
        git_root.display()
    );
    for server in servers {
        server.await.map_err(std::io::Error::other)??;
    }
    Ok(())
}
