//! The apiserver client every process uses: kube's own layers (base URI, auth, retry of
//! 429/503/504, extra headers) over a connection pool that speaks HTTP/2 when the apiserver
//! offers it in ALPN, as every kube-apiserver does over TLS.
//!
//! Why not `kube::Client::try_default`: kube-client 5 offers only HTTP/1 in ALPN, so each
//! request in flight holds its own TLS connection. At 10,000 Connectors the controller held
//! ~300 of them (~14 MiB of TLS buffers, as many handshakes on both sides); over HTTP/2 all
//! requests share one connection, as client-go's do. Plain-HTTP cluster URLs stay HTTP/1.

use std::time::Duration;

use hyper_util::client::legacy::{Client as PoolClient, connect::HttpConnector};
use hyper_util::rt::{TokioExecutor, TokioTimer};
use kube::client::retry::RetryPolicy;
use kube::client::{Body, ClientBuilder, ConfigExt};
use tower::{BoxError, ServiceBuilder, retry::RetryLayer, util::BoxService};

/// The request stack below kube's `Client`, boxed so callers may add their own layers.
pub type ApiService =
    BoxService<http::Request<Body>, http::Response<hyper::body::Incoming>, BoxError>;

/// Pings on an idle HTTP/2 connection find a dead apiserver connection (a vanished node,
/// a dropped NAT entry) before a watch waits on it forever.
const KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(30);
const KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(10);

/// The request log kube's own stack kept at debug, in its words and field names
/// (`requesting`, `http.method`, `http.url`; `RUST_LOG=connectors_operator=debug`):
/// method and path, which name objects but never carry a credential.
fn log_request(request: http::Request<Body>) -> http::Request<Body> {
    tracing::debug!(http.method = %request.method(), http.url = %request.uri(), "requesting");
    request
}

/// A client of the current kubeconfig (or in-cluster config).
pub async fn apiserver_client() -> Result<kube::Client, kube::Error> {
    let config = kube::Config::infer()
        .await
        .map_err(kube::Error::InferConfig)?;
    Ok(apiserver_client_builder(&config)?.build())
}

/// The builder of [`apiserver_client`] for `config`, to add layers to.
pub fn apiserver_client_builder(
    config: &kube::Config,
) -> Result<ClientBuilder<ApiService>, kube::Error> {
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
    let connector = tls.enable_all_versions().wrap_connector(tcp);
    let pool = PoolClient::builder(TokioExecutor::new())
        .timer(TokioTimer::new())
        .pool_timer(TokioTimer::new())
        .http2_keep_alive_interval(KEEP_ALIVE_INTERVAL)
        .http2_keep_alive_timeout(KEEP_ALIVE_TIMEOUT)
        .build(connector);
    let retry = config
        .default_retry
        .then(|| RetryLayer::new(RetryPolicy::server_retry()));
    let service = ServiceBuilder::new()
        .map_request(log_request)
        .layer(config.base_uri_layer())
        .option_layer(retry)
        .option_layer(config.auth_layer()?)
        .layer(config.extra_headers_layer()?)
        .map_err(BoxError::from)
        .service(pool);
    Ok(ClientBuilder::new(
        BoxService::new(service),
        config.default_namespace.clone(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_proxy_in_the_kubeconfig_is_refused_not_bypassed() {
        let mut config = kube::Config::new("https://127.0.0.1:6443".parse().expect("url"));
        config.proxy_url = Some("http://proxy.example:3128".parse().expect("url"));
        let refused = apiserver_client_builder(&config).err();
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
