//! One proxied request (SPEC-proxy sections 2-4, 6, 7): classify -> authenticate ->
//! authorise -> plan the injection (pure, `inject/` and `route/`) -> send and relay.
//! Every step that refuses returns a [`Refusal`]; nothing here logs a token, a
//! Secret value or a query string.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Instant;

use http::{HeaderName, HeaderValue, Method, Request, Response, header};
use hyper::body::Incoming;
use kube::ResourceExt;
use url::Url;

use crate::api::ConnectorClass;
use crate::dataplane::body::ProxyBody;
use crate::dataplane::refusal::Refusal;
use crate::dataplane::review::{Access, Identity};
use crate::dataplane::send::{self, Outgoing};
use crate::dataplane::{DataPlane, Resolved};
use crate::decide::connector::PROXY_RESOLVER_ANNOTATION;
use crate::inject::RequestView;
use crate::probe::CompiledClass;
use crate::route::{self, ConnectorTargets, Form, Found, ProxyService, Routed};

use super::answer::text_response;

/// The proxy: the shared data plane, its own names and its CA (CONNECT).
pub struct Proxy {
    pub dp: DataPlane,
    pub own: ProxyService,
    pub ca: super::ca::ProxyCa,
}

/// Serves one request; every outcome is a response.
pub async fn handle(
    proxy: Arc<Proxy>,
    request: Request<Incoming>,
) -> Result<Response<ProxyBody>, Infallible> {
    let start = Instant::now();
    let method = request.method().clone();
    let mode = if method == Method::CONNECT {
        "connect"
    } else if request.uri().scheme().is_some() {
        "forward"
    } else {
        "reverse"
    };
    let mut class = String::new();
    let served = match mode {
        "connect" => proxy.clone().connect(request).await,
        "forward" => proxy.forward_absolute(request).await,
        _ => proxy.serve(request, &mut class).await,
    };
    let response = served.unwrap_or_else(|refusal| {
        tracing::debug!(%method, status = refusal.status().as_u16(), "refused");
        text_response(refusal)
    });
    proxy
        .dp
        .metrics
        .record(mode, response.status().as_u16(), class, start);
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
        let host = request_host(&request);
        let routed = route::route(
            &host,
            request.uri().path(),
            &self.dp.caches.index(),
            &self.own,
        )
        .ok_or_else(|| Refusal::NotFound(format!("no connector is served at host {host:?}")))?;
        let connector = self.dp.caches.connector(&routed.namespace, &routed.name);
        let class = connector
            .as_ref()
            .and_then(|c| self.dp.caches.class(&c.spec.connector_class_name));
        let compiled = match class.as_ref().filter(|c| c.spec.proxy.is_some()) {
            Some(c) => Some(self.dp.caches.compiled(c).await),
            None => None,
        };
        let extractor = compiled.as_ref().and_then(|c| c.as_ref().ok());
        let found = self.client_token(&request, &host, extractor, &routed)?;
        let identity = self.dp.authenticate(&found.token).await?;
        let connector = connector.ok_or(Refusal::Forbidden)?;
        self.authorise(&identity, &routed.namespace, &routed.name)
            .await?;
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
            namespace: routed.namespace.clone(),
            name: routed.name.clone(),
        };
        let outgoing = self
            .plan(&request, &host, &found, &resolved, &routed)
            .await?;
        send::relay(&self.dp, request, outgoing, &resolved.key()).await
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

    /// `get` on the Connector; with `enable-connector-proxy-permissions` also `get` on
    /// its `proxy` subresource, or for a pod-bound token on
    /// `proxy/v1/pod/{namespace}/{pod}` (the generic `proxy` grant admits every pod).
    pub(super) async fn authorise(
        &self,
        identity: &Arc<Identity>,
        namespace: &str,
        name: &str,
    ) -> Result<(), Refusal> {
        let access =
            |subresource: Option<String>| Access::connector(namespace, name, subresource, "get");
        let mut allowed = self.dp.allowed(identity, &access(None)).await?;
        if allowed && self.dp.caches.flags().proxy_permissions() {
            let pod_grant = match identity.pod() {
                Some((ns, pod)) => {
                    self.dp
                        .allowed(identity, &access(Some(format!("proxy/v1/pod/{ns}/{pod}"))))
                        .await?
                }
                None => false,
            };
            allowed = pod_grant
                || self
                    .dp
                    .allowed(identity, &access(Some("proxy".into())))
                    .await?;
        }
        self.dp
            .metrics
            .auth_result(if allowed { "allowed" } else { "denied" });
        if allowed {
            Ok(())
        } else {
            Err(Refusal::Forbidden)
        }
    }

    /// Where the request goes and what it carries (SPEC-proxy section 4).
    async fn plan(
        &self,
        request: &Request<Incoming>,
        host: &str,
        found: &Found,
        resolved: &Resolved,
        routed: &Routed,
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
        let mut url = self.dp.tool_url(resolved, &address, &routed.rest, query)?;
        let body_injection = self
            .dp
            .inject(resolved, request.method(), &mut url, &mut headers)
            .await?;
        let proxy_base = proxy_base(host, routed);
        let trust = self.dp.trust(resolved).await;
        Ok(Outgoing {
            url,
            headers,
            upgrade,
            body_injection,
            proxy_base: Some(proxy_base),
            address,
            trust,
        })
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
