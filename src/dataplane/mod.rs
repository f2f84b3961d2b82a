//! What the data-plane processes (the proxy, the API gateway) share: caches fed by
//! watches, token and access reviews, Secrets by GET, the upstream client, streaming
//! bodies, the reasons a request is refused, and the credential step of a request
//! (which Secret, which trust pool, what to inject). Below the processes: neither
//! imports the other, both import this.

pub mod body;
pub mod caches;
pub mod metrics;
pub mod refusal;
pub mod review;
pub mod secrets;
pub mod send;
pub mod server;
pub mod upstream;

use std::sync::Arc;
use std::time::Duration;

use http::{HeaderMap, HeaderName, HeaderValue, Method};
use url::Url;

use crate::api::{Connector, ConnectorClass};
use crate::inject::{self, Injection, RequestView};
use crate::observe::{
    SecretLookup, ca_bundle_from_secret, ca_lookup, secret_lookup, secret_material,
};
use crate::probe::{CompiledClass, DestinationPolicy, SecretMaterial, TrustBundle};

use caches::Caches;
use metrics::DataPlaneMetrics;
use refusal::Refusal;
use review::{Access, Identity, Reviewer};
use secrets::SecretSource;
use upstream::Upstream;

/// Everything a request needs, shared by all connections of a process.
pub struct DataPlane {
    pub caches: Arc<Caches>,
    pub reviewer: Reviewer,
    pub secrets: SecretSource,
    pub upstream: Upstream,
    pub metrics: Arc<DataPlaneMetrics>,
    /// Time the tool has to send a response head once the request body is sent.
    pub response_timeout: Duration,
}

/// How a data-plane process talks to the apiserver and the tools.
pub struct DataPlaneSettings {
    pub destinations: DestinationPolicy,
    pub token_audience: Option<String>,
    pub secret_ttl: Duration,
    pub response_timeout: Duration,
}

impl DataPlane {
    pub fn new(
        client: kube::Client,
        caches: Arc<Caches>,
        metrics: Arc<DataPlaneMetrics>,
        settings: &DataPlaneSettings,
    ) -> Self {
        DataPlane {
            caches,
            reviewer: Reviewer::new(client.clone(), settings.token_audience.clone()),
            secrets: SecretSource::new(client, settings.secret_ttl),
            upstream: Upstream::new(settings.destinations),
            metrics,
            response_timeout: settings.response_timeout,
        }
    }
}

/// The Connector of a request with its class, compiled.
pub struct Resolved {
    pub connector: Arc<Connector>,
    pub class: Arc<ConnectorClass>,
    pub compiled: CompiledClass,
    pub namespace: String,
    pub name: String,
}

impl Resolved {
    /// `namespace/name`, as messages name the Connector.
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

impl DataPlane {
    /// The tool URL of a request: `base` joined with the raw `rest` and `query`, which
    /// must stay within the Connector's addresses (`400`) and may not be a refused
    /// destination (`403`).
    pub fn tool_url(
        &self,
        resolved: &Resolved,
        base: &Url,
        rest: &str,
        query: Option<&str>,
    ) -> Result<Url, Refusal> {
        let key = resolved.key();
        let url = crate::route::join_target(base, rest, query)
            .map_err(|e| Refusal::BadRequest(format!("connector {key}: {e}")))?;
        if !crate::route::ConnectorTargets::of(&resolved.connector).allows(&url) {
            return Err(Refusal::BadRequest(format!(
                "connector {key}: the path leaves the connector's address"
            )));
        }
        crate::probe::check_url(&url, self.upstream.policy())
            .map_err(|refused| Refusal::DestinationRefused(refused.to_string()))?;
        Ok(url)
    }

    /// The credential step of a request toward the tool (SPEC-proxy section 4): reads
    /// the Connector's Secret, asks what to inject, and applies a header or query
    /// injection to `headers` and `url`; a body injection is returned, to be merged
    /// into the body when it is sent.
    pub async fn inject(
        &self,
        resolved: &Resolved,
        method: &Method,
        url: &mut Url,
        headers: &mut HeaderMap,
    ) -> Result<Option<Injection>, Refusal> {
        let key = resolved.key();
        let secret = self.tool_secret(resolved).await?;
        let Some(injection) = injection(resolved, secret.as_ref(), method, url, headers)? else {
            return Ok(None);
        };
        if injection.position == inject::Position::Body {
            return Ok(Some(injection));
        }
        let effects = inject::plan(&injection, url)
            .map_err(|e| Refusal::BadGateway(format!("connector {key}: {e}")))?;
        for (name, value) in effects.set_headers {
            headers.remove(&name);
            headers.insert(name, value);
        }
        if let Some(query) = effects.query {
            url.set_query(Some(&query));
        }
        Ok(None)
    }

    pub async fn authenticate(&self, token: &str) -> Result<Arc<Identity>, Refusal> {
        let (identity, lookup) = self.reviewer.authenticate(token).await.map_err(|e| {
            self.metrics.auth_result("unavailable");
            Refusal::Unavailable(format!("cannot authenticate the token now: {e}"))
        })?;
        self.metrics
            .cache_lookup("token", lookup == review::Lookup::Hit);
        if lookup == review::Lookup::Miss {
            self.metrics.apiserver_request("tokenreview");
        }
        match identity {
            Some(identity) => {
                self.metrics.auth_result("authenticated");
                Ok(identity)
            }
            None => {
                self.metrics.auth_result("unauthenticated");
                Err(Refusal::Unauthenticated)
            }
        }
    }

    pub async fn allowed(
        &self,
        identity: &Arc<Identity>,
        access: &Access,
    ) -> Result<bool, Refusal> {
        let (allowed, lookup) = self.reviewer.allowed(identity, access).await.map_err(|e| {
            self.metrics.auth_result("unavailable");
            Refusal::Unavailable(format!("cannot authorise the request now: {e}"))
        })?;
        self.metrics
            .cache_lookup("access", lookup == review::Lookup::Hit);
        if lookup == review::Lookup::Miss {
            self.metrics.apiserver_request("subjectaccessreview");
        }
        Ok(allowed)
    }

    pub async fn tool_secret(
        &self,
        resolved: &Resolved,
    ) -> Result<Option<SecretMaterial>, Refusal> {
        let key = resolved.key();
        let name = match secret_lookup(&resolved.connector) {
            SecretLookup::None => return Ok(None),
            SecretLookup::CrossNamespace(ns) => {
                return Err(Refusal::BadGateway(format!(
                    "connector {key}: spec.auth.secretRef points to namespace {ns:?}; only the connector's own namespace is read"
                )));
            }
            SecretLookup::InvalidName(_) => {
                return Err(Refusal::BadGateway(format!(
                    "connector {key}: spec.auth.secretRef.name is not a valid name"
                )));
            }
            SecretLookup::InOwnNamespace(name) => name,
        };
        let secret = self
            .secrets
            .get(&resolved.namespace, &name, &self.metrics)
            .await
            .map_err(|e| Refusal::BadGateway(format!("connector {key}: {e}")))?
            .ok_or_else(|| {
                Refusal::BadGateway(format!("connector {key}: Secret {name:?} not found"))
            })?;
        Ok(Some(secret_material(&secret)))
    }

    /// The trust pool: system roots, the labelled global CA Secrets and the
    /// Connector's `caCertSecretRef` (a missing or invalid one adds nothing; the
    /// controller reports it).
    pub async fn trust(&self, resolved: &Resolved) -> TrustBundle {
        let global = self.caches.global_trust();
        let SecretLookup::InOwnNamespace(name) = ca_lookup(&resolved.connector) else {
            return global;
        };
        match self
            .secrets
            .get(&resolved.namespace, &name, &self.metrics)
            .await
        {
            Ok(Some(secret)) => match ca_bundle_from_secret(&secret) {
                Ok(extra) => global.merged(&extra),
                Err(_) => global,
            },
            _ => global,
        }
    }
}

/// What to inject (SPEC-proxy section 4): the chosen auth type's generator, else the
/// Secret type's default; nothing without a Secret.
fn injection(
    resolved: &Resolved,
    secret: Option<&SecretMaterial>,
    method: &Method,
    url: &Url,
    headers: &HeaderMap,
) -> Result<Option<Injection>, Refusal> {
    let Some(secret) = secret else {
        return Ok(None);
    };
    let key = resolved.key();
    let auth_type = resolved
        .class
        .chosen_auth_type(&resolved.connector)
        .map(|t| t.name.as_str());
    if let Some(auth_type) = auth_type.filter(|t| resolved.compiled.has_generator(t)) {
        let pairs: Vec<(HeaderName, HeaderValue)> = headers
            .iter()
            .map(|(n, v)| (n.clone(), v.clone()))
            .collect();
        let view = RequestView {
            method,
            url,
            headers: &pairs,
            body: "",
        };
        return resolved
            .compiled
            .generated_injection(auth_type, Some(&secret.data), &view)
            .map_err(|e| Refusal::BadGateway(format!("connector {key}: {e}")));
    }
    inject::from_secret_type(&secret.type_, &secret.data)
        .map(Some)
        .map_err(|e| Refusal::BadGateway(format!("connector {key}: {e}")))
}
