//! Forward mode (SPEC-proxy sections 2, 3, 5): absolute-form requests and `CONNECT`,
//! the client named by `Proxy-Authorization` (`407` + `Proxy-Authenticate` without
//! it), each listed Connector authorised on its own, credentials only toward a
//! matching Connector's targets, everything else forwarded without credentials.
//! CONNECT is answered `200` and the TLS inside is terminated with a leaf of the
//! proxy's CA; requests inside must stay on the CONNECT authority (`421`).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::{Method, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio_rustls::LazyConfigAcceptor;
use url::Url;

use crate::dataplane::Resolved;
use crate::dataplane::body::{ProxyBody, empty};
use crate::dataplane::refusal::Refusal;
use crate::dataplane::review::Identity;
use crate::dataplane::send::{self, Outgoing};
use crate::dataplane::server::{HEADER_LIMIT, HEADER_READ_TIMEOUT};
use crate::route::forward::{Authority, proxy_credentials};
use crate::route::{self, ConnectorTargets};

use super::answer::text_response;
use super::handler::Proxy;

const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// An authenticated forward client and the Connectors it may use.
pub struct ForwardClient {
    pub identity: Arc<Identity>,
    pub connectors: Vec<Resolved>,
}

impl Proxy {
    /// Who the forward client is and which of the listed Connectors it may use.
    async fn forward_client(&self, request: &Request<Incoming>) -> Result<ForwardClient, Refusal> {
        let credentials = request
            .headers()
            .get(header::PROXY_AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(proxy_credentials)
            .ok_or(Refusal::ProxyAuthRequired)?;
        let identity = match self.dp.authenticate(&credentials.token).await {
            Err(Refusal::Unauthenticated) => return Err(Refusal::ProxyAuthRequired),
            other => other?,
        };
        if credentials.connectors.len() > 1 && !self.dp.caches.flags().multi_connector() {
            return Err(Refusal::BadRequest(
                "Proxy-Authorization lists several connectors, which needs the enable-multi-connector flag".into(),
            ));
        }
        let mut connectors = Vec::new();
        for named in &credentials.connectors {
            let namespace = named
                .namespace
                .clone()
                .or_else(|| identity.service_account_namespace().map(str::to_string));
            let Some(namespace) = namespace else { continue };
            if let Some(resolved) = self.usable(&identity, &namespace, &named.name).await? {
                connectors.push(resolved);
            }
        }
        if connectors.is_empty() {
            return Err(Refusal::Forbidden);
        }
        Ok(ForwardClient {
            identity,
            connectors,
        })
    }

    /// A listed Connector, when it exists, is authorised and has a proxying class.
    async fn usable(
        &self,
        identity: &Arc<Identity>,
        namespace: &str,
        name: &str,
    ) -> Result<Option<Resolved>, Refusal> {
        match self.authorise(identity, namespace, name).await {
            Ok(()) => {}
            Err(Refusal::Forbidden) => return Ok(None),
            Err(other) => return Err(other),
        }
        let Some(connector) = self.dp.caches.connector(namespace, name) else {
            return Ok(None);
        };
        let Some(class) = self
            .dp
            .caches
            .class(&connector.spec.connector_class_name)
            .filter(|c| c.spec.proxy.is_some())
        else {
            return Ok(None);
        };
        let compiled = self.dp.caches.compiled(&class).await.map_err(|e| {
            Refusal::BadGateway(format!(
                "connector {namespace}/{name}: its ConnectorClass does not compile: {e}"
            ))
        })?;
        Ok(Some(Resolved {
            connector,
            class,
            compiled,
            namespace: namespace.to_string(),
            name: name.to_string(),
        }))
    }

    /// An absolute-form request (`GET http://tool/...`).
    pub(super) async fn forward_absolute(
        &self,
        request: Request<Incoming>,
    ) -> Result<Response<ProxyBody>, Refusal> {
        let client = self.forward_client(&request).await?;
        let url = Url::parse(&request.uri().to_string())
            .map_err(|_| Refusal::BadRequest("the request URL is not valid".into()))?;
        if url.scheme() != "http" {
            return Err(Refusal::BadRequest(
                "forward requests in absolute form must be http://; use CONNECT for https".into(),
            ));
        }
        self.forward(request, &client, url).await
    }

    /// Sends a forward request: credentials of the first listed Connector whose
    /// targets match, else none.
    async fn forward(
        &self,
        request: Request<Incoming>,
        client: &ForwardClient,
        mut url: Url,
    ) -> Result<Response<ProxyBody>, Refusal> {
        let mut headers = request.headers().clone();
        let upgrade = send::upgrade_of(&headers);
        route::strip_for_upstream(&mut headers, None, &[]);
        crate::probe::check_url(&url, self.dp.upstream.policy())
            .map_err(|refused| Refusal::DestinationRefused(refused.to_string()))?;
        let matching = client
            .connectors
            .iter()
            .find(|r| ConnectorTargets::of(&r.connector).allows(&url));
        let (body_injection, trust, key) = match matching {
            Some(resolved) => (
                self.dp
                    .inject(resolved, request.method(), &mut url, &mut headers)
                    .await?,
                self.dp.trust(resolved).await,
                resolved.key(),
            ),
            None => (None, self.dp.caches.global_trust(), "(none)".to_string()),
        };
        let address = url.clone();
        let outgoing = Outgoing {
            url,
            headers,
            upgrade,
            body_injection,
            proxy_base: None,
            address,
            trust,
        };
        send::relay(&self.dp, request, outgoing, &key).await
    }

    /// `CONNECT host:port`: authenticated first (`407`), then `200` and a TLS server
    /// with a leaf for the authority on the upgraded connection.
    pub(super) async fn connect(
        self: Arc<Self>,
        mut request: Request<Incoming>,
    ) -> Result<Response<ProxyBody>, Refusal> {
        let authority = request
            .uri()
            .authority()
            .and_then(|a| Authority::parse(a.as_str()))
            .ok_or_else(|| Refusal::BadRequest("CONNECT needs host:port".into()))?;
        let client = Arc::new(self.forward_client(&request).await?);
        let origin = Url::parse(&authority.https_origin())
            .map_err(|_| Refusal::BadRequest("CONNECT needs host:port".into()))?;
        crate::probe::check_url(&origin, self.dp.upstream.policy())
            .map_err(|refused| Refusal::DestinationRefused(refused.to_string()))?;
        let (config, cached) = self.ca.server_config(&authority.host).map_err(|e| {
            Refusal::BadGateway(format!("minting a certificate for {}: {e}", authority.host))
        })?;
        self.dp.metrics.cache_lookup("leaf", cached);
        let on_upgrade = hyper::upgrade::on(&mut request);
        tokio::spawn(async move {
            match on_upgrade.await {
                Ok(upgraded) => {
                    self.tunnel(TokioIo::new(upgraded), authority, client, config)
                        .await
                }
                Err(e) => tracing::debug!(error = %e, "CONNECT upgrade failed"),
            }
        });
        let mut response = Response::new(empty());
        *response.status_mut() = StatusCode::OK;
        Ok(response)
    }

    /// Terminates the client's TLS inside the tunnel and serves its requests.
    async fn tunnel<IO>(
        self: Arc<Self>,
        io: IO,
        authority: Authority,
        client: Arc<ForwardClient>,
        config: Arc<rustls::ServerConfig>,
    ) where
        IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let acceptor = LazyConfigAcceptor::new(rustls::server::Acceptor::default(), io);
        let Ok(Ok(start)) = tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor).await else {
            tracing::debug!("no TLS ClientHello inside the tunnel");
            return;
        };
        let sni_matches = start
            .client_hello()
            .server_name()
            .is_none_or(|sni| authority.matches_sni(sni));
        let Ok(tls) = start.into_stream(config).await else {
            tracing::debug!("TLS handshake inside the tunnel failed");
            return;
        };
        let proxy = self.clone();
        let authority = Arc::new(authority);
        let service = service_fn(move |request| {
            let (proxy, authority, client) = (proxy.clone(), authority.clone(), client.clone());
            async move { proxy.inner(request, &authority, &client, sni_matches).await }
        });
        let served = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(HEADER_READ_TIMEOUT)
            .max_buf_size(HEADER_LIMIT)
            .serve_connection(TokioIo::new(tls), service)
            .with_upgrades()
            .await;
        if let Err(e) = served {
            tracing::debug!(error = %e, "tunnel ended with an error");
        }
    }

    /// One request inside a tunnel: on the authority only, then as a forward request
    /// to `https://authority`.
    async fn inner(
        &self,
        request: Request<Incoming>,
        authority: &Authority,
        client: &ForwardClient,
        sni_matches: bool,
    ) -> Result<Response<ProxyBody>, Infallible> {
        let start = Instant::now();
        let host = request
            .headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .map(str::to_string)
            .or_else(|| request.uri().authority().map(|a| a.to_string()))
            .unwrap_or_default();
        let result = if !sni_matches
            || !authority.matches_host(&host)
            || request.method() == Method::CONNECT
        {
            Err(Refusal::Misdirected(format!(
                "misdirected request: this tunnel is for {}:{}",
                authority.host, authority.port
            )))
        } else {
            let path = request
                .uri()
                .path_and_query()
                .map(|p| p.as_str())
                .unwrap_or("/");
            match Url::parse(&format!("{}{path}", authority.https_origin())) {
                Ok(url) => self.forward(request, client, url).await,
                Err(_) => Err(Refusal::BadRequest("the request URL is not valid".into())),
            }
        };
        let response = result.unwrap_or_else(text_response);
        self.dp.metrics.record(
            "connect-inner",
            response.status().as_u16(),
            String::new(),
            start,
        );
        Ok(response)
    }
}
