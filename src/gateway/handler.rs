//! One gateway request (SPEC-proxy section 8): authenticate (Bearer only) ->
//! authorise (`get` on the Connector; the apis permission with its flag) -> the method
//! rule -> route by the class's OpenAPI (pure, `route::api`) -> the class API with
//! the `X-Plugin-*` headers, or the tool with the Connector's credentials (the same
//! credential step as the proxy, `DataPlane::inject`) -> relay, streamed.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Instant;

use http::{HeaderMap, Method, Request, Response, header};
use hyper::body::Incoming;
use kube::ResourceExt;
use url::Url;

use crate::dataplane::body::ProxyBody;
use crate::dataplane::refusal::Refusal;
use crate::dataplane::review::{Access, Identity};
use crate::dataplane::send::{self, Outgoing};
use crate::dataplane::{DataPlane, Resolved};
use crate::inject::{self, PluginSecret};
use crate::route::api::{self, ApiPath, Operation, Provider};
use crate::route::{self, Carrier, ConnectorTargets, FLAG_KEYS};

use super::status::{json_response, status_response};

pub const FEATURE_FLAGS_PATH: &str = "/connectors-operator/featureflags";

pub struct Gateway {
    pub dp: DataPlane,
}

/// Serves one request; every outcome is a response.
pub async fn handle(
    gateway: Arc<Gateway>,
    request: Request<Incoming>,
) -> Result<Response<ProxyBody>, Infallible> {
    let start = Instant::now();
    let mut class = String::new();
    let response = match gateway.serve(request, &mut class).await {
        Ok(response) => response,
        Err(refusal) => status_response(refusal),
    };
    gateway
        .dp
        .metrics
        .record("api", response.status().as_u16(), class, start);
    Ok(response)
}

/// The token of `Authorization: Bearer` (the gateway takes no other carrier).
fn bearer(headers: &HeaderMap) -> Result<String, Refusal> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().split_once(' '))
        .filter(|(scheme, token)| scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty())
        .map(|(_, token)| token.trim().to_string())
        .ok_or(Refusal::Unauthenticated)
}

impl Gateway {
    async fn serve(
        &self,
        request: Request<Incoming>,
        class_label: &mut String,
    ) -> Result<Response<ProxyBody>, Refusal> {
        let identity = self.dp.authenticate(&bearer(request.headers())?).await?;
        if request.uri().path() == FEATURE_FLAGS_PATH {
            return self.feature_flags(&identity).await;
        }
        let path = api::parse_api_path(request.uri().path()).ok_or_else(|| {
            Refusal::NotFound(format!(
                "not found: API paths are {}{{namespace}}/{{name}}/path/...",
                api::API_PREFIX
            ))
        })?;
        let connector = self.dp.caches.connector(&path.namespace, &path.name);
        let get = Access::connector(&path.namespace, &path.name, None, "get");
        if !self.dp.allowed(&identity, &get).await? {
            return Err(Refusal::Forbidden);
        }
        let connector = connector.ok_or(Refusal::Forbidden)?;
        let flags = self.dp.caches.flags();
        if !api::method_allowed(
            request.method(),
            flags.get("enable-connector-apis-write-passthrough"),
        ) {
            return Err(Refusal::MethodNotAllowed(format!(
                "method {} is not allowed: only {} unless enable-connector-apis-write-passthrough is set",
                request.method(),
                api::READ_METHODS
            )));
        }
        let class_name = connector.spec.connector_class_name.clone();
        let class = self.dp.caches.class(&class_name).ok_or_else(|| {
            Refusal::NotFound(format!(
                "connectorclass '{class_name}' of connector {}/{} not found",
                path.namespace, path.name
            ))
        })?;
        *class_label = class_name.clone();
        let compiled = self.dp.caches.compiled(&class).await.map_err(|e| {
            Refusal::BadGateway(format!(
                "connectorclass '{class_name}' does not compile: {e}"
            ))
        })?;
        let openapi = class.spec.api.as_ref().and_then(|a| a.openapi.as_ref());
        let operation = api::match_operation(openapi, request.method(), &path.rest);
        if flags.get("enable-connector-apis-permissions") {
            self.authorise_api(
                &identity,
                &path,
                &class_name,
                request.method(),
                operation.as_ref(),
            )
            .await?;
        }
        let resolved = Resolved {
            connector,
            class,
            compiled,
            namespace: path.namespace.clone(),
            name: path.name.clone(),
        };
        let outgoing = match operation.as_ref().map(|o| &o.provider) {
            Some(Provider::ClassApi) => self.to_class_api(&request, &path, &resolved).await?,
            _ => {
                self.to_tool(&request, &path, &resolved, operation.as_ref())
                    .await?
            }
        };
        send::relay(&self.dp, request, outgoing, &resolved.key()).await
    }

    /// `connectors/apis/{class}/{template}` or `connectors/apis/{class}` with the
    /// method's verb; an unmatched path needs the class-level grant.
    async fn authorise_api(
        &self,
        identity: &Arc<Identity>,
        path: &ApiPath,
        class: &str,
        method: &Method,
        operation: Option<&Operation>,
    ) -> Result<(), Refusal> {
        for subresource in api::apis_subresources(class, operation) {
            let access = Access::connector(
                &path.namespace,
                &path.name,
                Some(subresource),
                api::verb(method),
            );
            if self.dp.allowed(identity, &access).await? {
                return Ok(());
            }
        }
        Err(Refusal::Forbidden)
    }

    /// `x-provider-type: api`: the class API (`status.api.address.url` + the API
    /// path), with `X-Plugin-Meta`/`-Auth`/`-Secret` and without the client's
    /// credentials.
    async fn to_class_api(
        &self,
        request: &Request<Incoming>,
        path: &ApiPath,
        resolved: &Resolved,
    ) -> Result<Outgoing, Refusal> {
        let class_name = resolved.class.name_any();
        let unresolved = || {
            Refusal::BadRequest(format!(
                "api address of connectorclass '{class_name}' is not resolved"
            ))
        };
        let base = resolved
            .class
            .status
            .as_ref()
            .and_then(|s| s.api.as_ref())
            .and_then(|a| a.address.as_ref())
            .and_then(|a| a.url.as_deref())
            .and_then(|u| Url::parse(u).ok())
            .ok_or_else(unresolved)?;
        let mut headers = request.headers().clone();
        let query = stripped_query(&mut headers, request.uri().query());
        let url = route::join_target(&base, &path.rest, query.as_deref())
            .map_err(|e| Refusal::BadRequest(format!("connector {}: {e}", resolved.key())))?;
        crate::probe::check_url(&url, self.dp.upstream.policy())
            .map_err(|refused| Refusal::DestinationRefused(refused.to_string()))?;
        let secret = self.dp.tool_secret(resolved).await?;
        let plugin_secret = secret.as_ref().map(|s| PluginSecret {
            type_: &s.type_,
            data: &s.data,
        });
        let address = resolved.connector.spec.address.clone().unwrap_or_default();
        for plugin in inject::plugin_headers(&address, plugin_secret.as_ref()) {
            headers.insert(plugin.name, plugin.value);
        }
        Ok(Outgoing {
            url,
            headers,
            upgrade: None,
            body_injection: None,
            proxy_base: Some(gateway_base(path)),
            address: base,
            trust: self.dp.caches.global_trust(),
        })
    }

    /// `proxy`, absent or unmatched: toward the tool (the base chosen by
    /// `x-openapi-address`), with the Connector's credentials.
    async fn to_tool(
        &self,
        request: &Request<Incoming>,
        path: &ApiPath,
        resolved: &Resolved,
        operation: Option<&Operation>,
    ) -> Result<Outgoing, Refusal> {
        let key = resolved.key();
        let targets = ConnectorTargets::of(&resolved.connector);
        let base = api::tool_base(operation.and_then(|o| o.address.as_deref()), &targets)
            .map_err(|e| Refusal::BadRequest(format!("connector {key}: {}", e.0)))?;
        let mut headers = request.headers().clone();
        let query = stripped_query(&mut headers, request.uri().query());
        let mut url = self
            .dp
            .tool_url(resolved, &base, &path.rest, query.as_deref())?;
        let body_injection = self
            .dp
            .inject(resolved, request.method(), &mut url, &mut headers)
            .await?;
        Ok(Outgoing {
            url,
            headers,
            upgrade: None,
            body_injection,
            proxy_base: Some(gateway_base(path)),
            address: base,
            trust: self.dp.trust(resolved).await,
        })
    }

    /// Every key of `connectors-config` plus every flag's default; needs `get` on
    /// connectorclasses.
    async fn feature_flags(
        &self,
        identity: &Arc<Identity>,
    ) -> Result<Response<ProxyBody>, Refusal> {
        let access = Access {
            resource: "connectorclasses",
            namespace: String::new(),
            name: String::new(),
            subresource: None,
            verb: "get".into(),
        };
        if !self.dp.allowed(identity, &access).await? {
            return Err(Refusal::Forbidden);
        }
        let mut flags: BTreeMap<String, String> = FLAG_KEYS
            .iter()
            .map(|k| (k.to_string(), "false".to_string()))
            .collect();
        flags.extend(self.dp.caches.flags_data());
        Ok(json_response(&serde_json::json!(flags)))
    }
}

/// Strips the request for a tool or class API (hop-by-hop, `Authorization`, `Host`);
/// the query is kept (the gateway takes the token only from `Authorization`).
fn stripped_query(headers: &mut HeaderMap, query: Option<&str>) -> Option<String> {
    let carriers = [Carrier::Header(header::AUTHORIZATION)];
    route::strip_for_upstream(headers, query, &carriers).or_else(|| query.map(str::to_string))
}

/// The gateway path a `Location` into the tool is rewritten under.
fn gateway_base(path: &ApiPath) -> String {
    format!("{}{}/{}/path", api::API_PREFIX, path.namespace, path.name)
}
