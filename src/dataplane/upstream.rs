//! Sending to the tool (SPEC-proxy section 6): hyper's client over rustls with the
//! probe engine's trust pool (one client per distinct pool, so a pool change applies
//! to the next request), a resolver that refuses loopback, link-local and metadata
//! addresses at connect time, a 10 s connect timeout, HTTP/1.1 (upgrades need it), no
//! redirect following (hyper's client follows none).

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Mutex;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::connect::dns::Name;
use hyper_util::rt::TokioExecutor;

use crate::probe::{DestinationPolicy, TrustBundle, find_refusal};

use super::body::{BoxError, ProxyBody};

pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The destination policy as hyper's resolver.
#[derive(Clone)]
pub struct PolicyDns {
    policy: DestinationPolicy,
}

impl tower_service::Service<Name> for PolicyDns {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: Name) -> Self::Future {
        let policy = self.policy;
        Box::pin(async move { Ok(policy.resolve(name.as_str(), 0).await?.into_iter()) })
    }
}

pub type UpstreamClient = Client<HttpsConnector<HttpConnector<PolicyDns>>, ProxyBody>;

/// Why a request did not reach the tool.
#[derive(Debug, PartialEq, Eq)]
pub enum UpstreamFailure {
    /// The destination is loopback, link-local or metadata: `403`.
    Refused(String),
    /// TLS failed (untrusted certificate, handshake): `502`.
    Tls(String),
    /// Connecting failed: `502`.
    Connect(String),
    /// No response head in time: `504`.
    Timeout,
}

impl UpstreamFailure {
    pub fn kind(&self) -> &'static str {
        match self {
            UpstreamFailure::Refused(_) => "refused",
            UpstreamFailure::Tls(_) => "tls",
            UpstreamFailure::Connect(_) => "connect",
            UpstreamFailure::Timeout => "timeout",
        }
    }

    /// Classifies a client error by its chain.
    pub fn of(e: &hyper_util::client::legacy::Error) -> Self {
        use std::error::Error as _;
        if let Some(refused) = e.source().and_then(find_refusal) {
            return UpstreamFailure::Refused(refused.to_string());
        }
        let mut next = e.source();
        let mut last = e.to_string();
        while let Some(cause) = next {
            if let Some(tls) = cause.downcast_ref::<rustls::Error>() {
                return UpstreamFailure::Tls(tls.to_string());
            }
            if let Some(io) = cause.downcast_ref::<std::io::Error>()
                && let Some(tls) = io.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>())
            {
                return UpstreamFailure::Tls(tls.to_string());
            }
            last = cause.to_string();
            next = cause.source();
        }
        if last.contains("timed out") || last.contains("timeout") {
            return UpstreamFailure::Timeout;
        }
        // hyper-rustls reports handshake failures as I/O errors holding the rustls
        // error's text; the type is not always reachable through the chain.
        if ["certificate", "handshake", "tls", "alert"]
            .iter()
            .any(|w| last.to_ascii_lowercase().contains(w))
        {
            return UpstreamFailure::Tls(last);
        }
        UpstreamFailure::Connect(last)
    }
}

/// HTTP clients by trust pool.
pub struct Upstream {
    policy: DestinationPolicy,
    clients: Mutex<HashMap<u64, UpstreamClient>>,
}

impl Upstream {
    pub fn new(policy: DestinationPolicy) -> Self {
        Upstream {
            policy,
            clients: Mutex::new(HashMap::new()),
        }
    }

    pub fn policy(&self) -> DestinationPolicy {
        self.policy
    }

    /// The client trusting `trust` (built once per distinct pool; a handful exist).
    pub fn client(&self, trust: &TrustBundle) -> Result<UpstreamClient, String> {
        let id = trust.id();
        if let Ok(clients) = self.clients.lock()
            && let Some(client) = clients.get(&id)
        {
            return Ok(client.clone());
        }
        let mut http = HttpConnector::new_with_resolver(PolicyDns {
            policy: self.policy,
        });
        http.enforce_http(false);
        http.set_connect_timeout(Some(CONNECT_TIMEOUT));
        http.set_nodelay(true);
        let tls = trust.client_config()?;
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(90))
            .build(https);
        if let Ok(mut clients) = self.clients.lock() {
            // Pools change rarely; an unbounded map of old ones would not.
            if clients.len() > 64 {
                clients.clear();
            }
            clients.insert(id, client.clone());
        }
        Ok(client)
    }
}
