//! Pure rules of the API gateway (SPEC-proxy section 8): which Connector a path names,
//! which methods pass, which OpenAPI operation a raw path matches (literal segments
//! beat templates, `%2F` stays inside its segment), where the operation goes, and the
//! verb and subresource of the apis permission.

use http::Method;
use serde_json::Value as Json;
use url::Url;

use super::target::ConnectorTargets;

/// `/connectors/v1alpha1/{ns}/{name}/path{rest}`: the Connector and the API path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiPath {
    pub namespace: String,
    pub name: String,
    /// The raw (still encoded) rest after `/path`: empty or starting with `/`.
    pub rest: String,
}

/// The prefix of every gateway path.
pub const API_PREFIX: &str = "/connectors/v1alpha1/";

pub fn parse_api_path(raw_path: &str) -> Option<ApiPath> {
    let rest = raw_path.strip_prefix(API_PREFIX)?;
    let mut parts = rest.splitn(4, '/');
    let namespace = parts.next().filter(|s| !s.is_empty())?;
    let name = parts.next().filter(|s| !s.is_empty())?;
    if parts.next()? != "path" {
        return None;
    }
    let rest = parts.next().map(|r| format!("/{r}")).unwrap_or_default();
    Some(ApiPath {
        namespace: namespace.to_string(),
        name: name.to_string(),
        rest,
    })
}

/// The methods that always pass.
pub const READ_METHODS: &str = "GET, HEAD, OPTIONS";

/// GET, HEAD and OPTIONS always; POST, PUT, DELETE and PATCH only with
/// `enable-connector-apis-write-passthrough`; nothing else.
pub fn method_allowed(method: &Method, write_passthrough: bool) -> bool {
    match *method {
        Method::GET | Method::HEAD | Method::OPTIONS => true,
        Method::POST | Method::PUT | Method::DELETE | Method::PATCH => write_passthrough,
        _ => false,
    }
}

/// The RBAC verb of a method (SPEC-proxy section 8).
pub fn verb(method: &Method) -> &'static str {
    match *method {
        Method::POST => "create",
        Method::PUT => "update",
        Method::DELETE => "delete",
        Method::PATCH => "patch",
        _ => "get",
    }
}

/// Where an operation is served.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Provider {
    /// `x-provider-type: api`: the class API.
    ClassApi,
    /// `proxy`, absent, or no matching operation: the tool, with injection.
    Tool,
}

/// The OpenAPI operation a request matched.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Operation {
    pub template: String,
    pub provider: Provider,
    /// `x-openapi-address`: empty = `spec.address`, a name, or a URL.
    pub address: Option<String>,
}

fn segments(path: &str) -> Vec<&str> {
    path.trim_start_matches('/').split('/').collect()
}

/// How well a template fits the raw path: `None` when it does not; otherwise one
/// flag per segment (literal = true), compared left to right so a literal wins over a
/// template at the first place they differ.
fn fit(template: &str, raw_path: &str) -> Option<Vec<bool>> {
    let (t, p) = (segments(template), segments(raw_path));
    if t.len() != p.len() {
        return None;
    }
    t.iter()
        .zip(p.iter())
        .map(|(t, p)| {
            if t.starts_with('{') && t.ends_with('}') {
                (!p.is_empty()).then_some(false)
            } else {
                (t == p).then_some(true)
            }
        })
        .collect()
}

fn extension<'a>(operation: &'a Json, path_item: &'a Json, name: &str) -> Option<&'a str> {
    operation
        .get(name)
        .or_else(|| path_item.get(name))
        .and_then(Json::as_str)
}

/// The operation of `spec.api.openapi.paths` that `method` on `raw_path` matches
/// (extensions read on the operation, else on the path item).
pub fn match_operation(
    openapi: Option<&Json>,
    method: &Method,
    raw_path: &str,
) -> Option<Operation> {
    let paths = openapi?.get("paths")?.as_object()?;
    let method_key = method.as_str().to_ascii_lowercase();
    let (template, path_item, _) = paths
        .iter()
        .filter_map(|(template, item)| {
            let fit = fit(template, raw_path)?;
            item.get(&method_key)?;
            Some((template, item, fit))
        })
        .max_by(|a, b| a.2.cmp(&b.2))?;
    let operation = path_item.get(&method_key)?;
    let provider = match extension(operation, path_item, "x-provider-type") {
        Some("api") => Provider::ClassApi,
        _ => Provider::Tool,
    };
    Some(Operation {
        template: template.clone(),
        provider,
        address: extension(operation, path_item, "x-openapi-address").map(str::to_string),
    })
}

/// Why a tool base cannot be used: a `400`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BadAddress(pub String);

/// The base URL toward the tool for `x-openapi-address`, and whether credentials may
/// go there (SPEC-proxy section 8): empty = `spec.address`; a name = that
/// `addressExtensions` value; a URL = that URL, allowed only within section 4's
/// targets.
pub fn tool_base(address: Option<&str>, targets: &ConnectorTargets) -> Result<Url, BadAddress> {
    let spec_address = || {
        targets
            .address
            .clone()
            .ok_or_else(|| BadAddress("the connector's spec.address is not a URL".into()))
    };
    let Some(address) = address.map(str::trim).filter(|a| !a.is_empty()) else {
        return spec_address();
    };
    if let Ok(url) = Url::parse(address)
        && url.has_host()
    {
        return if targets.allows(&url) {
            Ok(url)
        } else {
            Err(BadAddress(format!(
                "x-openapi-address {address:?} is not one of the connector's addresses"
            )))
        };
    }
    targets
        .extensions
        .iter()
        .find(|(name, _)| name == address)
        .map(|(_, url)| url.clone())
        .ok_or_else(|| {
            BadAddress(format!(
                "x-openapi-address names address extension {address:?}, which the connector does not have"
            ))
        })
}

/// The subresources an apis permission may be granted on for this request: the
/// template's (`apis/{class}{template}`) then the class's (`apis/{class}`).
pub fn apis_subresources(class: &str, operation: Option<&Operation>) -> Vec<String> {
    let mut grants = Vec::new();
    if let Some(op) = operation {
        grants.push(format!(
            "apis/{class}/{}",
            op.template.trim_start_matches('/')
        ));
    }
    grants.push(format!("apis/{class}"));
    grants
}
