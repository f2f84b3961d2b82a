//! The apiserver client every process uses: kube's own layers (base URI, auth, retry of
//! 429/503/504, extra headers) over two connection pools: watches share one HTTP/2
//! connection (when the apiserver offers `h2` in ALPN, as every kube-apiserver does over
//! TLS), every other request goes over HTTP/1.1 connections, at most `max_requests`
//! waiting on a response at once ([`MAX_HTTP1_REQUESTS`] unless configured).
//!
//! Why not `kube::Client::try_default`: kube-client 5 offers only HTTP/1 in ALPN, so each
//! request in flight holds its own TLS connection, watches included. At 10,000
//! Connectors the controller held ~300 of them (~14 MiB of TLS buffers, as many
//! handshakes on both sides).
//!
//! Why not everything over the one HTTP/2 connection (what this client did before): the
//! same 20,000 writes took 23% longer on average over it than over HTTP/1, and etcd
//! twice the CPU (`bench --floor-clients 4`, docs/benchmarks.md). Plain-HTTP cluster
//! URLs are HTTP/1 in both pools.

use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::future::BoxFuture;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::{Client as PoolClient, connect::HttpConnector};
use hyper_util::rt::{TokioExecutor, TokioTimer};
use kube::client::retry::RetryPolicy;
use kube::client::{Body, ClientBuilder, ConfigExt};
use tokio::sync::Semaphore;
use tower::{BoxError, ServiceBuilder, retry::RetryLayer, util::BoxService};

/// The request stack below kube's `Client`, boxed so callers may add their own layers.
pub type ApiService =
    BoxService<http::Request<Body>, http::Response<hyper::body::Incoming>, BoxError>;

/// Pings on an idle HTTP/2 connection find a dead apiserver connection (a vanished node,
/// a dropped NAT entry) before a watch waits on it forever.
const KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(30);
const KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(10);

/// The default of requests other than watches waiting on their response at once
/// (`--apiserver-max-requests`), each on its own HTTP/1.1 connection (kept open for
/// the next one); more wait for a turn. A turn ends when the response headers arrive,
/// so a body still being read can briefly hold one more connection. At 10,000
/// Connectors each connection cost 30-70 KiB of peak RSS; 128 gave the best ratio to
/// the floor of the runs so far (1.11; 256: 1.21; 64: 1.30 on another machine) and a
/// peak 2.2 MiB over the 100 MiB goal in the hanging run (docs/benchmarks.md).
pub const MAX_HTTP1_REQUESTS: usize = 128;

/// The request log kube's own stack kept at debug, in its words and field names
/// (`requesting`, `http.method`, `http.url`; `RUST_LOG=connectors_operator=debug`):
/// method and path, which name objects but never carry a credential.
fn log_request(request: http::Request<Body>) -> http::Request<Body> {
    tracing::debug!(http.method = %request.method(), http.url = %request.uri(), "requesting");
    request
}

/// A client of the current kubeconfig (or in-cluster config), at most `max_requests`
/// (at least 1) other than watches waiting on a response at once.
pub async fn apiserver_client(max_requests: usize) -> Result<kube::Client, kube::Error> {
    let config = kube::Config::infer()
        .await
        .map_err(kube::Error::InferConfig)?;
    Ok(apiserver_client_builder(&config, max_requests)?.build())
}

/// The builder of [`apiserver_client`] for `config`, to add layers to.
pub fn apiserver_client_builder(
    config: &kube::Config,
    max_requests: usize,
) -> Result<ClientBuilder<ApiService>, kube::Error> {
    let max_requests = max_requests.max(1);
    // Refused with kube's own error (its stack is built here without its proxy
    // features); going around a configured proxy silently would be worse.
    if let Some(proxy) = &config.proxy_url {
        let protocol_feature = match proxy.scheme_str() {
            Some("socks5") => "kube/socks5",
            _ => "kube/http-proxy",
        };
        return Err(kube::Error::ProxyProtocolDisabled {
            proxy_url: Box::new(proxy.clone()),
            protocol_feature,
        });
    }
    let pools = SplitPools {
        watches: PoolClient::builder(TokioExecutor::new())
            .timer(TokioTimer::new())
            .pool_timer(TokioTimer::new())
            .http2_keep_alive_interval(KEEP_ALIVE_INTERVAL)
            .http2_keep_alive_timeout(KEEP_ALIVE_TIMEOUT)
            .build(tls_connector(config, Protocols::Http2AndHttp1)?),
        requests: PoolClient::builder(TokioExecutor::new())
            .timer(TokioTimer::new())
            .pool_timer(TokioTimer::new())
            .pool_max_idle_per_host(max_requests)
            .build(tls_connector(config, Protocols::Http1)?),
        turns: Arc::new(Semaphore::new(max_requests)),
    };
    let retry = config
        .default_retry
        .then(|| RetryLayer::new(RetryPolicy::server_retry()));
    let service = ServiceBuilder::new()
        .map_request(log_request)
        .layer(config.base_uri_layer())
        .option_layer(retry)
        .option_layer(config.auth_layer()?)
        .layer(config.extra_headers_layer()?)
        .service(pools);
    Ok(ClientBuilder::new(
        BoxService::new(service),
        config.default_namespace.clone(),
    ))
}

enum Protocols {
    Http2AndHttp1,
    Http1,
}

/// TCP with TLS from the kubeconfig (its CA, client certificate, server name), offering
/// `protocols` in ALPN.
fn tls_connector(
    config: &kube::Config,
    protocols: Protocols,
) -> Result<HttpsConnector<HttpConnector>, kube::Error> {
    let mut tcp = HttpConnector::new();
    tcp.enforce_http(false);
    tcp.set_nodelay(true);
    tcp.set_connect_timeout(config.connect_timeout);
    let tls = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(config.rustls_client_config()?)
        .https_or_http();
    let tls = match &config.tls_server_name {
        Some(name) => {
            let name = rustls::pki_types::ServerName::try_from(name.clone()).map_err(|e| {
                kube::Error::RustlsTls(kube::client::RustlsTlsError::InvalidServerName(e))
            })?;
            tls.with_server_name_resolver(hyper_rustls::FixedServerNameResolver::new(name))
        }
        None => tls,
    };
    Ok(match protocols {
        Protocols::Http2AndHttp1 => tls.enable_all_versions().wrap_connector(tcp),
        Protocols::Http1 => tls.enable_http1().wrap_connector(tcp),
    })
}

type Pool = PoolClient<HttpsConnector<HttpConnector>, Body>;

/// Watches to the HTTP/2 pool, everything else to the HTTP/1 pool in turns.
#[derive(Clone)]
struct SplitPools {
    watches: Pool,
    requests: Pool,
    turns: Arc<Semaphore>,
}

/// A watch request: `watch=true` (or `1`) in the query, as kube and client-go send it.
fn is_watch(uri: &http::Uri) -> bool {
    uri.query().is_some_and(|query| {
        query
            .split('&')
            .any(|pair| pair == "watch=true" || pair == "watch=1")
    })
}

impl tower::Service<http::Request<Body>> for SplitPools {
    type Response = http::Response<hyper::body::Incoming>;
    type Error = BoxError;
    type Future = BoxFuture<'static, Result<Self::Response, BoxError>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        // Both pools take requests at any time; the turns are awaited per request, so a
        // full HTTP/1 pool never holds up a watch.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        if is_watch(request.uri()) {
            let pool = self.watches.clone();
            return Box::pin(async move { Ok(pool.request(request).await?) });
        }
        let (pool, turns) = (self.requests.clone(), self.turns.clone());
        Box::pin(async move {
            let _turn = turns.acquire_owned().await?;
            Ok(pool.request(request).await?)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_watches_take_the_http2_pool() {
        let watch = |uri: &str| is_watch(&uri.parse().expect("uri"));
        assert!(watch(
            "/api/v1/services?labelSelector=a&watch=true&timeoutSeconds=290"
        ));
        assert!(watch("/apis/x/v1/connectors?watch=1"));
        assert!(!watch("/apis/x/v1/connectors?labelSelector=watch%3Dtrue"));
        assert!(!watch("/apis/x/v1/connectors?limit=500"));
        assert!(!watch("/api/v1/namespaces/a/secrets/watch=true"));
        assert!(!watch("/apis/x/v1/connectors?watch=false"));
    }

    #[test]
    fn a_proxy_in_the_kubeconfig_is_refused_not_bypassed() {
        let mut config = kube::Config::new("https://127.0.0.1:6443".parse().expect("url"));
        config.proxy_url = Some("http://proxy.example:3128".parse().expect("url"));
        let refused = apiserver_client_builder(&config, MAX_HTTP1_REQUESTS).err();
        assert!(
            matches!(
                refused,
                Some(kube::Error::ProxyProtocolDisabled {
                    protocol_feature: "kube/http-proxy",
                    ..
                })
            ),
            "{refused:?}"
        );
    }
}
