//! Unauthenticated routes for testing a proxy in front of the tool: an echo of the
//! request, a byte source and a byte sink that stream (never buffer), and an
//! HTTP/1.1 upgrade to a byte echo.

use std::convert::Infallible;

use axum::body::Body;
use axum::extract::{Path, Request};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures::StreamExt;
use hyper_util::rt::TokioIo;
use serde_json::json;

/// Largest body `/echo` reads.
const ECHO_LIMIT: usize = 2 * 1024 * 1024;

/// Chunk size of `/bytes/{n}`.
const CHUNK: usize = 64 * 1024;

static ZEROS: [u8; CHUNK] = [0; CHUNK];

/// The protocol `/upgrade` switches to.
const UPGRADE_PROTOCOL: &str = "echo-test";

fn json_response(status: StatusCode, value: serde_json::Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        value.to_string(),
    )
        .into_response()
}

fn header_pairs(headers: &HeaderMap) -> Vec<[String; 2]> {
    headers
        .iter()
        .map(|(name, value)| {
            [
                name.as_str().to_string(),
                String::from_utf8_lossy(value.as_bytes()).into_owned(),
            ]
        })
        .collect()
}

/// `ANY /echo[/...]`: the request as JSON (method, path, query, headers, body as a
/// string when UTF-8 else null, body_len); 413 past 2 MiB of body.
pub async fn echo(request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let too_long = || (StatusCode::PAYLOAD_TOO_LARGE, "body over 2 MiB\n").into_response();
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > ECHO_LIMIT as u64) {
        return too_long();
    }
    let Ok(bytes) = axum::body::to_bytes(body, ECHO_LIMIT).await else {
        return too_long();
    };
    json_response(
        StatusCode::OK,
        json!({
            "method": parts.method.as_str(),
            "path": parts.uri.path(),
            "query": parts.uri.query(),
            "headers": header_pairs(&parts.headers),
            "body": std::str::from_utf8(&bytes).ok(),
            "body_len": bytes.len(),
        }),
    )
}

/// `GET /bytes/{n}`: `n` zero bytes in 64 KiB chunks, with `Content-Length: n`.
pub async fn bytes(Path(n): Path<u64>) -> Response {
    let chunk = Bytes::from_static(&ZEROS);
    let chunks = futures::stream::unfold(n, move |left| {
        let chunk = chunk.clone();
        async move {
            let take = left.min(CHUNK as u64);
            (take > 0).then(|| {
                (
                    Ok::<_, Infallible>(chunk.slice(..take as usize)),
                    left - take,
                )
            })
        }
    });
    let mut response = Response::new(Body::from_stream(chunks));
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(n));
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    response
}

/// `POST|PUT /sink`: reads the body as it comes and answers `{"received": N}`.
pub async fn sink(request: Request) -> Response {
    let mut chunks = request.into_body().into_data_stream();
    let mut received: u64 = 0;
    while let Some(chunk) = chunks.next().await {
        match chunk {
            Ok(chunk) => received += chunk.len() as u64,
            Err(e) => {
                let error = json!({"received": received, "error": e.to_string()});
                return json_response(StatusCode::BAD_REQUEST, error);
            }
        }
    }
    json_response(StatusCode::OK, json!({"received": received}))
}

/// Whether the request asks to upgrade to `echo-test` (`Connection: Upgrade` and
/// `Upgrade: echo-test`).
fn wants_upgrade(headers: &HeaderMap) -> bool {
    let has = |name: header::HeaderName, token: &str| {
        headers.get_all(name).iter().any(|value| {
            value
                .to_str()
                .unwrap_or_default()
                .split(',')
                .any(|t| t.trim().eq_ignore_ascii_case(token))
        })
    };
    has(header::CONNECTION, "upgrade") && has(header::UPGRADE, UPGRADE_PROTOCOL)
}

/// `GET /upgrade`: `101 Switching Protocols` to `echo-test`, then every byte received
/// on the connection is sent back; 426 without the upgrade headers.
pub async fn upgrade(mut request: Request) -> Response {
    if !wants_upgrade(request.headers()) {
        return (
            StatusCode::UPGRADE_REQUIRED,
            [(header::UPGRADE, UPGRADE_PROTOCOL)],
            "send Connection: Upgrade and Upgrade: echo-test\n",
        )
            .into_response();
    }
    let on_upgrade = hyper::upgrade::on(&mut request);
    tokio::spawn(async move {
        let Ok(upgraded) = on_upgrade.await else {
            return;
        };
        let (mut reader, mut writer) = tokio::io::split(TokioIo::new(upgraded));
        let _ = tokio::io::copy(&mut reader, &mut writer).await;
    });
    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(header::UPGRADE, HeaderValue::from_static(UPGRADE_PROTOCOL));
    response
}

/// `GET /upgrade-refused`: `200 ok` whatever the request asks (never upgrades).
pub async fn upgrade_refused() -> Response {
    (StatusCode::OK, "ok").into_response()
}
