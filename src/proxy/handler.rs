//! One proxied request (SPEC-proxy sections 2-4, 6, 7): classify -> authenticate ->
//! authorise -> plan the injection (pure, `inject/` and `route/`) -> send and relay.
//! Every step that refuses returns a [`Refusal`]; nothing here logs a token, a
//! Secret value or a query string.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, header};
use hyper::body::Incoming;
use kube::ResourceExt;
use url::Url;

use crate::api::{Connector, ConnectorClass};
use crate::decide::connector::PROXY_RESOLVER_ANNOTATION;
use crate::inject::{self, Injection, RequestView};
use crate::observe::{
    SecretLookup, ca_bundle_from_secret, ca_lookup, secret_lookup, secret_material,
};
use crate::probe::{CompiledClass, SecretMaterial, TrustBundle};
use crate::route::{self, ConnectorTargets, Form, Found, ProxyService, Routed};

use super::answer::Refusal;
use super::body::ProxyBody;
use super::caches::Caches;
use super::metrics::{ModeLabels, ProxyMetrics, RequestLabels};
use super::review::{Access, Identity, Reviewer};
use super::secrets::SecretSource;
use super::send::{self, Outgoing};
use super::upstream::Upstream;

/// Everything a request needs, shared by all connections.
pub struct Proxy {
    pub caches: Arc<Caches>,
    pub reviewer: Reviewer,
    pub secrets: SecretSource,
    pub upstream: Upstream,
    pub metrics: Arc<ProxyMetrics>,
    pub own: ProxyService,
    pub response_timeout: Duration,
}

/// The Connector of a request with its class, compiled.
pub(super) struct Resolved {
    pub connector: Arc<Connector>,
    pub class: Arc<ConnectorClass>,
    pub compiled: CompiledClass,
    pub routed: Routed,
}

impl Resolved {
    pub fn key(&self) -> String {
        format!("{}/{}", self.routed.namespace, self.routed.name)
    }
}

/// Serves one request; every outcome is a response.
pub async fn handle(
    proxy: Arc<Proxy>,
    request: Request<Incoming>,
) -> Result<Response<ProxyBody>, Infallible> {
    let start = Instant::now();
    let method = request.method().clone();
    let mut class = String::new();
    let response = match proxy.serve(request, &mut class).await {
        Ok(response) => response,
        Err(refusal) => {
            tracing::debug!(%method, status = refusal.status().as_u16(), "refused");
            refusal.into_response()
        }
    };
    let code = response.status().as_u16();
    proxy
        .metrics
        .requests
        .get_or_create(&RequestLabels {
            mode: "reverse",
            code,
            class,
        })
        .inc();
    proxy
        .metrics
        .first_byte
        .get_or_create(&ModeLabels { mode: "reverse" })
        .observe(start.elapsed().as_secs_f64());
    Ok(response)
}

fn request_host(request: &Request<Incoming>) -> String {
    request
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_string)
        .or_else(|| request.uri().authority().map(|a| a.to_string()))
        .unwrap_or_default()
}

impl Proxy {
    async fn serve(
        &self,
        request: Request<Incoming>,
        class_label: &mut String,
    ) -> Result<Response<ProxyBody>, Refusal> {
        if request.method() == Method::CONNECT || request.uri().scheme().is_some() {
            return Err(Refusal::NotImplemented(
                "forward-proxy requests (absolute form, CONNECT) are not served yet: use the Connector's proxy address".into(),
            ));
        }
        let host = request_host(&request);
        let routed = route::route(&host, request.uri().path(), &self.caches.index(), &self.own)
            .ok_or_else(|| Refusal::NotFound(format!("no connector is served at host {host:?}")))?;
        let connector = self.caches.connector(&routed.namespace, &routed.name);
        let class = connector
            .as_ref()
            .and_then(|c| self.caches.class(&c.spec.connector_class_name));
        let compiled = match class.as_ref().filter(|c| c.spec.proxy.is_some()) {
            Some(c) => Some(self.caches.compiled(c).await),
            None => None,
        };
        let extractor = compiled.as_ref().and_then(|c| c.as_ref().ok());
        let found = self.client_token(&request, &host, extractor, &routed)?;
        let identity = self.authenticate(&found.token).await?;
        let connector = connector.ok_or(Refusal::Forbidden)?;
        self.authorise(&identity, &routed).await?;
        let class = class.ok_or_else(|| {
            Refusal::NotFound(format!(
                "connector {}/{}: its ConnectorClass does not exist",
                routed.namespace, routed.name
            ))
        })?;
        *class_label = class.name_any();
        let compiled = resolve_class(&class, compiled, &routed)?;
        let resolved = Resolved {
            connector,
            class,
            compiled,
            routed,
        };
        let outgoing = self.plan(&request, &host, &found, &resolved).await?;
        send::relay(self, request, outgoing, &resolved).await
    }

    /// The client's token: the class's extractor first, then `Authorization`.
    fn client_token(
        &self,
        request: &Request<Incoming>,
        host: &str,
        compiled: Option<&CompiledClass>,
        routed: &Routed,
    ) -> Result<Found, Refusal> {
        let headers = request.headers();
        let query = request.uri().query();
        let mut token = None;
        if let Some(compiled) = compiled.filter(|c| c.has_auth_extractor()) {
            let path_and_query = request
                .uri()
                .path_and_query()
                .map(|p| p.as_str())
                .unwrap_or("/");
            let url = Url::parse(&format!("http://{host}{path_and_query}"))
                .map_err(|_| Refusal::BadRequest("the request URL is not valid".into()))?;
            let pairs: Vec<(HeaderName, HeaderValue)> = headers
                .iter()
                .map(|(n, v)| (n.clone(), v.clone()))
                .collect();
            // The body is never read before authentication: the extractor sees none.
            let view = RequestView {
                method: request.method(),
                url: &url,
                headers: &pairs,
                body: "",
            };
            token = compiled.extract_token(&view).map_err(|e| {
                Refusal::BadGateway(format!(
                    "connector {}/{}: {e}",
                    routed.namespace, routed.name
                ))
            })?;
        }
        let token = token.or_else(|| {
            headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(route::token_from_authorization)
        });
        let token = token.ok_or(Refusal::Unauthenticated)?;
        Ok(route::locate_token(&token, headers, query))
    }

    async fn authenticate(&self, token: &str) -> Result<Arc<Identity>, Refusal> {
        let (identity, lookup) = self.reviewer.authenticate(token).await.map_err(|e| {
            self.metrics.auth_result("unavailable");
            Refusal::Unavailable(format!("cannot authenticate the token now: {e}"))
        })?;
        self.metrics
            .cache_lookup("token", lookup == super::review::Lookup::Hit);
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

    /// `get` on the Connector; with `enable-connector-proxy-permissions` also `get` on
    /// its `proxy` subresource, or for a pod-bound token on
    /// `proxy/v1/pod/{namespace}/{pod}` (the generic `proxy` grant admits every pod).
    async fn authorise(&self, identity: &Arc<Identity>, routed: &Routed) -> Result<(), Refusal> {
        let access = |subresource: Option<String>| Access {
            namespace: routed.namespace.clone(),
            name: routed.name.clone(),
            subresource,
            verb: "get".into(),
        };
        let mut allowed = self.allowed(identity, &access(None)).await?;
        if allowed && self.caches.flags().proxy_permissions() {
            let pod_grant = match identity.pod() {
                Some((ns, pod)) => {
                    self.allowed(identity, &access(Some(format!("proxy/v1/pod/{ns}/{pod}"))))
                        .await?
                }
                None => false,
            };
            allowed = pod_grant
                || self
                    .allowed(identity, &access(Some("proxy".into())))
                    .await?;
        }
        self.metrics
            .auth_result(if allowed { "allowed" } else { "denied" });
        if allowed {
            Ok(())
        } else {
            Err(Refusal::Forbidden)
        }
    }

    async fn allowed(&self, identity: &Arc<Identity>, access: &Access) -> Result<bool, Refusal> {
        let (allowed, lookup) = self.reviewer.allowed(identity, access).await.map_err(|e| {
            self.metrics.auth_result("unavailable");
            Refusal::Unavailable(format!("cannot authorise the request now: {e}"))
        })?;
        self.metrics
            .cache_lookup("access", lookup == super::review::Lookup::Hit);
        Ok(allowed)
    }

    /// Where the request goes and what it carries (SPEC-proxy section 4).
    async fn plan(
        &self,
        request: &Request<Incoming>,
        host: &str,
        found: &Found,
        resolved: &Resolved,
    ) -> Result<Outgoing, Refusal> {
        let key = resolved.key();
        let targets = ConnectorTargets::of(&resolved.connector);
        let address = targets.address.clone().ok_or_else(|| {
            Refusal::BadGateway(format!("connector {key}: spec.address is not a URL"))
        })?;
        let mut headers = request.headers().clone();
        let upgrade = send::upgrade_of(&headers);
        let query = request.uri().query();
        let stripped = route::strip_for_upstream(&mut headers, query, &found.carriers);
        let query = match &stripped {
            Some(q) if q.is_empty() => None,
            Some(q) => Some(q.as_str()),
            None => query,
        };
        let mut url = route::join_target(&address, &resolved.routed.rest, query)
            .map_err(|e| Refusal::BadRequest(format!("connector {key}: {e}")))?;
        if !targets.allows(&url) {
            return Err(Refusal::BadRequest(format!(
                "connector {key}: the path leaves the connector's address"
            )));
        }
        crate::probe::check_url(&url, self.upstream.policy())
            .map_err(|refused| Refusal::DestinationRefused(refused.to_string()))?;
        let secret = self.tool_secret(resolved).await?;
        let injection = injection(resolved, secret.as_ref(), request.method(), &url, &headers)?;
        let mut body_injection = None;
        if let Some(injection) = injection {
            if injection.position == inject::Position::Body {
                body_injection = Some(injection);
            } else {
                let effects = inject::plan(&injection, &url)
                    .map_err(|e| Refusal::BadGateway(format!("connector {key}: {e}")))?;
                for (name, value) in effects.set_headers {
                    headers.remove(&name);
                    headers.insert(name, value);
                }
                if let Some(q) = effects.query {
                    url.set_query(Some(&q));
                }
            }
        }
        let proxy_base = proxy_base(host, &resolved.routed);
        let trust = self.trust(resolved).await;
        Ok(Outgoing {
            url,
            headers,
            upgrade,
            body_injection,
            proxy_base,
            address,
            trust,
        })
    }

    async fn tool_secret(&self, resolved: &Resolved) -> Result<Option<SecretMaterial>, Refusal> {
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
            .get(&resolved.routed.namespace, &name, &self.metrics)
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
    async fn trust(&self, resolved: &Resolved) -> TrustBundle {
        let global = self.caches.global_trust();
        let SecretLookup::InOwnNamespace(name) = ca_lookup(&resolved.connector) else {
            return global;
        };
        match self
            .secrets
            .get(&resolved.routed.namespace, &name, &self.metrics)
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

/// The class must serve a proxy, in the form the request used, and compile.
fn resolve_class(
    class: &ConnectorClass,
    compiled: Option<Result<CompiledClass, String>>,
    routed: &Routed,
) -> Result<CompiledClass, Refusal> {
    let key = format!("{}/{}", routed.namespace, routed.name);
    let compiled = compiled.ok_or_else(|| {
        Refusal::NotFound(format!(
            "connector {key}: ConnectorClass {:?} has no spec.proxy",
            class.name_any()
        ))
    })?;
    let path_resolver = class
        .annotations()
        .get(PROXY_RESOLVER_ANNOTATION)
        .is_some_and(|v| v == "path");
    if path_resolver && routed.form == Form::Host {
        return Err(Refusal::NotFound(format!(
            "connector {key} is served at /namespaces/{}/connectors/{}",
            routed.namespace, routed.name
        )));
    }
    compiled.map_err(|e| {
        Refusal::BadGateway(format!(
            "connector {key}: its ConnectorClass does not compile: {e}"
        ))
    })
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

/// The proxy URL a rewritten `Location` points under.
fn proxy_base(host: &str, routed: &Routed) -> String {
    match routed.form {
        Form::Host => format!("http://{host}"),
        Form::Path => format!(
            "http://{host}/namespaces/{}/connectors/{}",
            routed.namespace, routed.name
        ),
    }
}
