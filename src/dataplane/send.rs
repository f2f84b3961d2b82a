//! Sending a planned request to the tool and relaying the answer (SPEC-proxy section
//! 6): bodies streamed both ways, a 1 MiB buffer only for a body injection, the
//! response-head timeout counted from the end of the request body, `Location`
//! rewritten into the proxy, upgrades spliced only after a `101`.

use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Limited};
use hyper::body::{Body, Incoming};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::sync::Notify;
use url::Url;

use crate::inject::{self, Injection};
use crate::probe::TrustBundle;
use crate::route;

use super::DataPlane;
use super::body::{Metered, ProxyBody, empty, full};
use super::metrics::{DirectionLabels, KindLabels};
use super::refusal::Refusal;
use super::upstream::UpstreamFailure;

/// The most of a client body buffered to inject credentials into it.
pub const BODY_INJECTION_LIMIT: usize = 1024 * 1024;

/// A request as planned: where it goes, its headers after stripping and injection.
pub struct Outgoing {
    pub url: Url,
    pub headers: HeaderMap,
    /// The client's `Upgrade` value when it asked for one.
    pub upgrade: Option<HeaderValue>,
    /// A body-position injection still to merge into the client's body.
    pub body_injection: Option<Injection>,
    /// The proxy URL a `Location` into the tool's address is rewritten under (none in
    /// forward mode: the client addressed the tool itself).
    pub proxy_base: Option<String>,
    pub address: Url,
    pub trust: TrustBundle,
}

/// The `Upgrade` a request asks for (`Connection: upgrade` and an `Upgrade` value).
pub fn upgrade_of(headers: &HeaderMap) -> Option<HeaderValue> {
    let asks = headers.get_all(header::CONNECTION).iter().any(|v| {
        v.to_str().is_ok_and(|s| {
            s.split(',')
                .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
        })
    });
    asks.then(|| headers.get(header::UPGRADE).cloned())
        .flatten()
}

/// Sends `outgoing` with the client's body and relays the tool's answer.
pub async fn relay(
    proxy: &DataPlane,
    mut request: Request<Incoming>,
    outgoing: Outgoing,
    key: &str,
) -> Result<Response<ProxyBody>, Refusal> {
    let key = key.to_string();
    let client_upgrade = outgoing
        .upgrade
        .is_some()
        .then(|| hyper::upgrade::on(&mut request));
    let method = request.method().clone();
    let content_type = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let ended = Arc::new(Notify::new());
    let mut headers = outgoing.headers;
    let body = request_body(
        proxy,
        request.into_body(),
        outgoing.body_injection.as_ref(),
        content_type.as_deref(),
        &mut headers,
        &ended,
        &key,
    )
    .await?;
    set_host(&mut headers, &outgoing.url);
    if let Some(upgrade) = &outgoing.upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(header::UPGRADE, upgrade.clone());
    }
    let mut upstream_request = Request::builder()
        .method(method)
        .uri(outgoing.url.as_str())
        .body(body)
        .map_err(|e| Refusal::BadRequest(format!("connector {key}: {e}")))?;
    *upstream_request.headers_mut() = headers;
    let client = proxy
        .upstream
        .client(&outgoing.trust)
        .map_err(|e| Refusal::BadGateway(format!("connector {key}: TLS set-up failed: {e}")))?;
    let timeout = proxy.response_timeout;
    let response = tokio::select! {
        sent = client.request(upstream_request) => sent.map_err(|e| failure(proxy, &key, &e))?,
        () = async { ended.notified().await; tokio::time::sleep(timeout).await } => {
            proxy.metrics.upstream_errors.get_or_create(&KindLabels { kind: "timeout" }).inc();
            return Err(Refusal::GatewayTimeout);
        }
    };
    Ok(respond(
        proxy,
        response,
        &outgoing.address,
        outgoing.proxy_base.as_deref(),
        client_upgrade,
    ))
}

/// The body sent to the tool: the client's, streamed and counted, or with the
/// credentials merged in. `ended` is notified once it has all been sent.
async fn request_body(
    proxy: &DataPlane,
    body: Incoming,
    injection: Option<&Injection>,
    content_type: Option<&str>,
    headers: &mut HeaderMap,
    ended: &Arc<Notify>,
    key: &str,
) -> Result<ProxyBody, Refusal> {
    if let Some(injection) = injection {
        let (content_type, merged) = merged_body(body, injection, content_type, key).await?;
        headers.insert(header::CONTENT_TYPE, content_type);
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(merged.len()));
        ended.notify_one();
        return Ok(full(merged));
    }
    if body.is_end_stream() {
        ended.notify_one();
    }
    let counter = proxy
        .metrics
        .bytes
        .get_or_create(&DirectionLabels {
            direction: "upstream",
        })
        .clone();
    Ok(Metered::new(body, counter)
        .signal_end(ended.clone())
        .boxed())
}

fn failure(proxy: &DataPlane, key: &str, e: &hyper_util::client::legacy::Error) -> Refusal {
    let failure = UpstreamFailure::of(e);
    proxy
        .metrics
        .upstream_errors
        .get_or_create(&KindLabels {
            kind: failure.kind(),
        })
        .inc();
    tracing::debug!(connector = key, kind = failure.kind(), "upstream failed");
    match failure {
        UpstreamFailure::Refused(m) => Refusal::DestinationRefused(m),
        UpstreamFailure::Tls(m) => {
            Refusal::BadGateway(format!("connector {key}: TLS with the tool failed: {m}"))
        }
        UpstreamFailure::Connect(m) => {
            Refusal::BadGateway(format!("connector {key}: cannot reach the tool: {m}"))
        }
        UpstreamFailure::Timeout => Refusal::GatewayTimeout,
    }
}

/// The client's body with the credentials merged in (at most 1 MiB is read).
async fn merged_body(
    body: Incoming,
    injection: &Injection,
    content_type: Option<&str>,
    key: &str,
) -> Result<(HeaderValue, Bytes), Refusal> {
    let collected = Limited::new(body, BODY_INJECTION_LIMIT).collect().await.map_err(|_| {
        Refusal::PayloadTooLarge(format!(
            "connector {key}: credentials go into the body, which may be at most {BODY_INJECTION_LIMIT} bytes"
        ))
    })?;
    inject::merge_into_body(injection, &collected.to_bytes(), content_type)
        .map_err(|e| Refusal::BadGateway(format!("connector {key}: {e}")))
}

fn set_host(headers: &mut HeaderMap, url: &Url) {
    let host = match url.port() {
        Some(port) => format!("{}:{port}", url.host_str().unwrap_or_default()),
        None => url.host_str().unwrap_or_default().to_string(),
    };
    if let Ok(value) = HeaderValue::from_str(&host) {
        headers.insert(header::HOST, value);
    }
}

fn respond(
    proxy: &DataPlane,
    response: Response<Incoming>,
    address: &Url,
    proxy_base: Option<&str>,
    client_upgrade: Option<OnUpgrade>,
) -> Response<ProxyBody> {
    let (mut parts, body) = response.into_parts();
    if let Some(client_upgrade) = client_upgrade {
        if parts.status == StatusCode::SWITCHING_PROTOCOLS {
            let mut upstream = Response::from_parts(parts, body);
            let upstream_upgrade = hyper::upgrade::on(&mut upstream);
            tokio::spawn(splice(client_upgrade, upstream_upgrade));
            let (parts, _) = upstream.into_parts();
            return Response::from_parts(parts, empty());
        }
        // Any other answer to an upgrade request ends the connection after it.
        route::strip_response_hop_by_hop(&mut parts.headers);
        parts
            .headers
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    } else {
        route::strip_response_hop_by_hop(&mut parts.headers);
    }
    if parts.status.is_redirection()
        && let Some(location) = parts
            .headers
            .get(header::LOCATION)
            .and_then(|l| l.to_str().ok())
        && let Some(proxy_base) = proxy_base
        && let Some(rewritten) = route::rewrite_location(location, address, proxy_base)
        && let Ok(value) = HeaderValue::from_str(&rewritten)
    {
        parts.headers.insert(header::LOCATION, value);
    }
    let counter = proxy
        .metrics
        .bytes
        .get_or_create(&DirectionLabels {
            direction: "downstream",
        })
        .clone();
    Response::from_parts(parts, Metered::new(body, counter).boxed())
}

/// Both upgraded connections, copied into each other until either side closes.
async fn splice(client: OnUpgrade, upstream: OnUpgrade) {
    let (client, upstream) = match tokio::try_join!(client, upstream) {
        Ok(both) => both,
        Err(e) => {
            tracing::debug!(error = %e, "upgrade failed");
            return;
        }
    };
    let mut client = TokioIo::new(client);
    let mut upstream = TokioIo::new(upstream);
    if let Err(e) = tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
        tracing::debug!(error = %e, "upgraded connection ended");
    }
}
