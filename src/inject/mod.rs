//! Credential injection toward a tool (SPEC.md section 4, SPEC-proxy.md section 4),
//! one module for the auth probe now and the proxy and API gateway later.
//!
//! Pure: it builds the Rego generator's input, reads the generator's answer into an
//! [`Injection`], derives an injection from a Secret's type when there is no generator
//! (basic, bearer), and plans the changes to a request ([`Effects`]). Evaluating the
//! policy is the engine's job (`probe::RegoPolicy`), sending is the caller's.

use std::collections::BTreeMap;

use base64::Engine as _;
use bytes::Bytes;
use http::{HeaderName, HeaderValue, Method};
use serde_json::{Map as JsonMap, Value as Json};
use url::Url;

#[cfg(test)]
mod tests;

/// Where a generator puts the credentials.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Position {
    Header,
    Query,
    Body,
}

/// What to inject: credential values by key, and where. `Debug` never shows values.
#[derive(Clone, PartialEq, Eq)]
pub struct Injection {
    pub position: Position,
    pub content_type: Option<String>,
    pub auth: BTreeMap<String, String>,
}

impl std::fmt::Debug for Injection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Injection")
            .field("position", &self.position)
            .field("content_type", &self.content_type)
            .field("keys", &self.auth.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Injection {
    /// The credential values, for the redactor.
    pub fn values(&self) -> impl Iterator<Item = &str> {
        self.auth.values().map(String::as_str)
    }
}

/// The changes an injection makes to one request, planned before anything is sent.
/// `Debug` shows header names and sizes, never values.
#[derive(Clone, Default)]
pub struct Effects {
    /// Headers to set (every earlier value of the name is removed first).
    pub set_headers: Vec<(HeaderName, HeaderValue)>,
    /// The new query string, when the query changes.
    pub query: Option<String>,
    /// The new body and its content type, when the body changes.
    pub body: Option<(HeaderValue, Bytes)>,
}

impl std::fmt::Debug for Effects {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Effects")
            .field(
                "set_headers",
                &self.set_headers.iter().map(|(n, _)| n).collect::<Vec<_>>(),
            )
            .field("query_len", &self.query.as_ref().map(String::len))
            .field("body_len", &self.body.as_ref().map(|(_, b)| b.len()))
            .finish()
    }
}

/// The outgoing request as a generator sees it (`input.request`).
pub struct RequestView<'a> {
    pub method: &'a Method,
    pub url: &'a Url,
    pub headers: &'a [(HeaderName, HeaderValue)],
    pub body: &'a str,
}

/// Headers a class API receives (SPEC.md section 4, SPEC-proxy.md section 8): the
/// tool's address always; with a Secret, its type and its data (values base64, as in
/// the Secret object). The same builder serves the API probe and the gateway.
pub const PLUGIN_META: &str = "x-plugin-meta";
pub const PLUGIN_AUTH: &str = "x-plugin-auth";
pub const PLUGIN_SECRET: &str = "x-plugin-secret";

/// A Secret as the class API sees it: its type and its decoded data.
pub struct PluginSecret<'a> {
    pub type_: &'a str,
    pub data: &'a BTreeMap<String, String>,
}

/// One header for a class API; `credential` ones carry Secret material.
pub struct PluginHeader {
    pub name: HeaderName,
    pub value: HeaderValue,
    pub credential: bool,
}

/// `X-Plugin-Meta: base64({"baseURL": address})`, and with a Secret
/// `X-Plugin-Auth: base64(type)` and `X-Plugin-Secret: base64(JSON of the data, values
/// base64)`. Base64 output is always a valid header value.
pub fn plugin_headers(address: &str, secret: Option<&PluginSecret<'_>>) -> Vec<PluginHeader> {
    let b64 = |bytes: &[u8]| base64::engine::general_purpose::STANDARD.encode(bytes);
    let header = |name: &'static str, value: String, credential: bool| {
        HeaderValue::from_str(&value)
            .ok()
            .map(|value| PluginHeader {
                name: HeaderName::from_static(name),
                value,
                credential,
            })
    };
    let meta = serde_json::json!({ "baseURL": address }).to_string();
    let mut headers: Vec<PluginHeader> = header(PLUGIN_META, b64(meta.as_bytes()), false)
        .into_iter()
        .collect();
    if let Some(secret) = secret {
        let data: JsonMap<String, Json> = secret
            .data
            .iter()
            .map(|(k, v)| (k.clone(), Json::String(b64(v.as_bytes()))))
            .collect();
        let data = Json::Object(data).to_string();
        headers.extend(header(PLUGIN_AUTH, b64(secret.type_.as_bytes()), true));
        headers.extend(header(PLUGIN_SECRET, b64(data.as_bytes()), true));
    }
    headers
}

/// Secret types that carry credentials without a generator (SPEC-proxy section 4).
pub const BASIC_AUTH_SECRET_TYPE: &str = "kubernetes.io/basic-auth";
pub const BEARER_TOKEN_SECRET_TYPE: &str = "connectors.cpaas.io/bearer-token";

/// The generator's input: `{data: <decoded Secret data>, request: {method, path, host,
/// headers, query, body}}`, header names canonical (`X-Plain`), values as lists.
pub fn generator_input(
    secret_data: Option<&BTreeMap<String, String>>,
    request: &RequestView<'_>,
) -> regorus::Value {
    use regorus::Value as R;
    let data: BTreeMap<R, R> = secret_data
        .into_iter()
        .flatten()
        .map(|(k, v)| (R::from(k.as_str()), R::from(v.as_str())))
        .collect();
    let parts = request_parts(request);
    object([("data", R::from(data)), ("request", object(parts))])
}

/// The input of a class's `authExtractor` (SPEC-proxy section 3): `input.request` as
/// for a generator, and its `headers`, `query` and `body` also at the top.
pub fn extractor_input(request: &RequestView<'_>) -> regorus::Value {
    let parts = request_parts(request);
    let top: Vec<(&'static str, regorus::Value)> = parts
        .iter()
        .filter(|(k, _)| matches!(*k, "headers" | "query" | "body"))
        .cloned()
        .collect();
    let mut entries = vec![("request", object(parts))];
    entries.extend(top);
    object(entries)
}

fn object(entries: impl IntoIterator<Item = (&'static str, regorus::Value)>) -> regorus::Value {
    use regorus::Value as R;
    R::from(
        entries
            .into_iter()
            .map(|(k, v)| (R::from(k), v))
            .collect::<BTreeMap<R, R>>(),
    )
}

/// `method, path, host, headers, query, body` of a request, header names canonical
/// and every header and query value a list.
fn request_parts(request: &RequestView<'_>) -> Vec<(&'static str, regorus::Value)> {
    use regorus::Value as R;
    fn multi(m: BTreeMap<String, Vec<R>>) -> R {
        R::from(
            m.into_iter()
                .map(|(k, v)| (R::from(k), R::from(v)))
                .collect::<BTreeMap<R, R>>(),
        )
    }
    let mut headers: BTreeMap<String, Vec<R>> = BTreeMap::new();
    for (name, value) in request.headers {
        headers
            .entry(canonical_header_name(name.as_str()))
            .or_default()
            .push(R::from(String::from_utf8_lossy(value.as_bytes()).as_ref()));
    }
    let mut query: BTreeMap<String, Vec<R>> = BTreeMap::new();
    for (k, v) in request.url.query_pairs() {
        query
            .entry(k.into_owned())
            .or_default()
            .push(R::from(v.as_ref()));
    }
    let url = request.url;
    let host = match url.port() {
        Some(p) => format!("{}:{p}", url.host_str().unwrap_or_default()),
        None => url.host_str().unwrap_or_default().to_string(),
    };
    vec![
        ("method", R::from(request.method.as_str())),
        ("path", R::from(url.path())),
        ("host", R::from(host)),
        ("headers", multi(headers)),
        ("query", multi(query)),
        ("body", R::from(request.body)),
    ]
}

/// Go's `http.CanonicalHeaderKey`: `content-type` -> `Content-Type`, the form policies
/// written for the original system use.
pub fn canonical_header_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut upper = true;
    for c in name.chars() {
        if upper {
            out.extend(c.to_uppercase());
        } else {
            out.extend(c.to_lowercase());
        }
        upper = c == '-';
    }
    out
}

const SHAPE: &str =
    "`auth` must be an object {position: header|query|body, auth: {key: value}, contentType?}";

/// Reads the value of the generator's `auth` rule.
pub fn parse_generator_output(result: &Json) -> Result<Injection, String> {
    let Json::Object(obj) = result else {
        return Err(format!("{SHAPE}, not a {}", json_type(result)));
    };
    let position = match obj.get("position") {
        None => Position::Header,
        Some(Json::String(p)) => match p.trim().to_ascii_lowercase().as_str() {
            "header" => Position::Header,
            "query" => Position::Query,
            "body" => Position::Body,
            other => {
                return Err(format!(
                    "{SHAPE}: position {other:?} is not header, query or body"
                ));
            }
        },
        Some(other) => return Err(format!("{SHAPE}: position is a {}", json_type(other))),
    };
    let content_type = match obj.get("contentType") {
        Some(Json::String(c)) if !c.trim().is_empty() => Some(c.trim().to_string()),
        _ => None,
    };
    let auth = match obj.get("auth") {
        Some(Json::Object(a)) => a
            .iter()
            .filter(|(_, v)| !v.is_null())
            .map(|(k, v)| {
                let v = match v {
                    Json::String(s) => s.clone(),
                    other => other.to_string(),
                };
                (k.clone(), v)
            })
            .collect(),
        Some(other) => return Err(format!("{SHAPE}: auth is a {}", json_type(other))),
        None => BTreeMap::new(),
    };
    Ok(Injection {
        position,
        content_type,
        auth,
    })
}

/// Why a Secret's type gives no injection without a generator.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NoInjection {
    #[error("Secret type {0:?} has no default injection: the auth type needs a generator")]
    UnsupportedSecretType(String),
    #[error("the Secret has no {0:?} key")]
    MissingKey(&'static str),
}

/// The injection of an auth type without a generator, from its Secret:
/// basic-auth -> `Authorization: Basic`, bearer-token -> `Authorization: Bearer`.
pub fn from_secret_type(
    secret_type: &str,
    data: &BTreeMap<String, String>,
) -> Result<Injection, NoInjection> {
    let key = |k: &'static str| data.get(k).ok_or(NoInjection::MissingKey(k));
    let authorization = match secret_type {
        BASIC_AUTH_SECRET_TYPE => {
            let pair = format!("{}:{}", key("username")?, key("password")?);
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(pair)
            )
        }
        BEARER_TOKEN_SECRET_TYPE => format!("Bearer {}", key("token")?),
        other => return Err(NoInjection::UnsupportedSecretType(other.to_string())),
    };
    Ok(Injection {
        position: Position::Header,
        content_type: None,
        auth: BTreeMap::from([("Authorization".to_string(), authorization)]),
    })
}

/// Plans what `injection` changes on a request to `url`: headers replace every value of
/// their name, query keys replace the same keys (others kept, in order), a body becomes
/// JSON (when the content type says so) or a form.
pub fn plan(injection: &Injection, url: &Url) -> Result<Effects, String> {
    let mut effects = Effects::default();
    match injection.position {
        Position::Header => {
            for (k, v) in &injection.auth {
                let name = HeaderName::from_bytes(k.trim().as_bytes())
                    .map_err(|_| format!("{k:?} is not a valid header name"))?;
                let value = HeaderValue::from_str(v).map_err(|_| {
                    format!("the value for header {k:?} is not a valid header value")
                })?;
                effects.set_headers.push((name, value));
            }
        }
        Position::Query => {
            let mut serializer = url::form_urlencoded::Serializer::new(String::new());
            for (k, v) in url.query_pairs() {
                if !injection.auth.contains_key(k.as_ref()) {
                    serializer.append_pair(&k, &v);
                }
            }
            for (k, v) in &injection.auth {
                serializer.append_pair(k, v);
            }
            effects.query = Some(serializer.finish());
        }
        Position::Body => {
            let json = injection
                .content_type
                .as_deref()
                .is_some_and(|c| c.to_ascii_lowercase().contains("json"));
            let (content_type, bytes) = if json {
                let obj: JsonMap<String, Json> = injection
                    .auth
                    .iter()
                    .map(|(k, v)| (k.clone(), Json::String(v.clone())))
                    .collect();
                (
                    injection
                        .content_type
                        .clone()
                        .unwrap_or_else(|| "application/json".to_string()),
                    serde_json::to_vec(&obj).map_err(|e| e.to_string())?,
                )
            } else {
                let form = url::form_urlencoded::Serializer::new(String::new())
                    .extend_pairs(injection.auth.iter())
                    .finish();
                (
                    injection
                        .content_type
                        .clone()
                        .unwrap_or_else(|| "application/x-www-form-urlencoded".to_string()),
                    form.into_bytes(),
                )
            };
            let value = HeaderValue::from_str(&content_type)
                .map_err(|_| format!("contentType {content_type:?} is not a valid header value"))?;
            effects.body = Some((value, Bytes::from(bytes)));
        }
    }
    Ok(effects)
}

fn json_type(v: &Json) -> &'static str {
    match v {
        Json::Null => "null",
        Json::Bool(_) => "boolean",
        Json::Number(_) => "number",
        Json::String(_) => "string",
        Json::Array(_) => "array",
        Json::Object(_) => "object",
    }
}

/// A body-position injection merged into a client's body (SPEC-proxy section 4): JSON
/// when the generator's content type (else the request's) says so, the credentials
/// set as top-level keys of the body's object (an empty body is `{}`); otherwise form
/// fields, replacing fields of the same name. Returns the content type and the body.
pub fn merge_into_body(
    injection: &Injection,
    body: &[u8],
    request_content_type: Option<&str>,
) -> Result<(HeaderValue, Bytes), String> {
    let content_type = injection
        .content_type
        .clone()
        .or_else(|| request_content_type.map(str::to_string));
    let json = content_type
        .as_deref()
        .is_some_and(|c| c.to_ascii_lowercase().contains("json"));
    let (content_type, merged) = if json {
        let mut object: JsonMap<String, Json> = if body.iter().all(u8::is_ascii_whitespace) {
            JsonMap::new()
        } else {
            match serde_json::from_slice(body) {
                Ok(Json::Object(object)) => object,
                Ok(_) => return Err("the request body is not a JSON object".to_string()),
                Err(_) => return Err("the request body is not valid JSON".to_string()),
            }
        };
        for (k, v) in &injection.auth {
            object.insert(k.clone(), Json::String(v.clone()));
        }
        let bytes = serde_json::to_vec(&object).map_err(|e| e.to_string())?;
        (
            content_type.unwrap_or_else(|| "application/json".into()),
            bytes,
        )
    } else {
        let kept: Vec<(String, String)> = url::form_urlencoded::parse(body)
            .filter(|(k, _)| !injection.auth.contains_key(k.as_ref()))
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        let form = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(kept)
            .extend_pairs(injection.auth.iter())
            .finish();
        (
            content_type.unwrap_or_else(|| "application/x-www-form-urlencoded".into()),
            form.into_bytes(),
        )
    };
    let value = HeaderValue::from_str(&content_type)
        .map_err(|_| format!("contentType {content_type:?} is not a valid header value"))?;
    Ok((value, Bytes::from(merged)))
}
