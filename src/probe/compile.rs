//! [`CompiledClass`]: every template, CEL expression and Rego policy of a class,
//! compiled once per class generation; builds the probe requests of a Connector.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Method};
use serde_json::{Map as JsonMap, Value as Json};

use crate::api::{ConnectorClass, Probe};
use crate::validation::FieldError;

use super::cel_check::{CelCheck, canonical_header_name};
use super::judge;
use super::rego_auth::RegoPolicy;
use super::request::{ProbeCheck, ProbeRequest, RequestHeader, api_probe_url, http_probe_url};
use super::secret::RedactorBuilder;
use super::template::{self, CompiledTemplate, Fields};
use super::{FailureReason, HttpResponse, ProbeKind, ProbeOutcome, ProbeSettings, ProbeTarget};

/// A class with everything compiled. Cheap to clone and `Send + Sync`: the
/// controller compiles once per class generation and shares it.
#[derive(Clone, Debug)]
pub struct CompiledClass {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    liveness: Option<CompiledProbe>,
    /// `authProbes[]` by auth name (the first entry of a name wins).
    auth_probes: Vec<(String, Option<CompiledProbe>)>,
    /// Generators of the auth types that have one, by auth type name.
    generators: BTreeMap<String, (String, RegoPolicy)>,
}

#[derive(Debug)]
enum CompiledProbe {
    Http(HttpPart),
    Api(ApiPart),
}

#[derive(Debug)]
struct HttpPart {
    field: String,
    path: CompiledTemplate,
    host: Option<String>,
    scheme: Option<String>,
    method: Option<String>,
    headers: Vec<HeaderPart>,
    follow_redirects: bool,
    check: Arc<ProbeCheck>,
    /// The data fields the templates of this probe can reach.
    fields: Fields,
}

#[derive(Debug)]
struct HeaderPart {
    /// The parsed name, or the name as written when it is not a valid header name.
    name: Result<HeaderName, String>,
    value: CompiledTemplate,
    credential: bool,
}

#[derive(Debug)]
struct ApiPart {
    field: String,
    path: Option<CompiledTemplate>,
    fields: Fields,
    check: Arc<ProbeCheck>,
}

/// Header names that always carry credentials (Go's client drops the same ones on a
/// redirect to another domain).
const CREDENTIAL_HEADERS: &[&str] = &["authorization", "proxy-authorization", "cookie", "cookie2"];

impl CompiledClass {
    /// Compiles with the default [`ProbeSettings`] limits.
    pub fn compile(class: &ConnectorClass) -> Result<CompiledClass, Vec<FieldError>> {
        Self::compile_with(class, &ProbeSettings::default())
    }

    /// Compiles every template, CEL expression and Rego policy of the class. Returns
    /// every error, each with its field path; also one per `authProbes[].authName`
    /// that names no `auth.types[].name`.
    pub fn compile_with(
        class: &ConnectorClass,
        settings: &ProbeSettings,
    ) -> Result<CompiledClass, Vec<FieldError>> {
        let spec = &class.spec;
        let mut errors = Vec::new();
        let liveness = spec
            .liveness_probe
            .as_ref()
            .and_then(|p| compile_probe("spec.livenessProbe", p, settings, &mut errors));
        let auth_types = spec
            .auth
            .as_ref()
            .and_then(|a| a.types.as_deref())
            .unwrap_or_default();
        let mut auth_probes: Vec<(String, Option<CompiledProbe>)> = Vec::new();
        for (i, ap) in spec.auth_probes.iter().flatten().enumerate() {
            let path = format!("spec.authProbes[{i}]");
            let compiled = ap
                .probe
                .as_ref()
                .and_then(|p| compile_probe(&format!("{path}.probe"), p, settings, &mut errors));
            if !auth_probes.iter().any(|(n, _)| n == &ap.auth_name) {
                auth_probes.push((ap.auth_name.clone(), compiled));
            }
        }
        let mut generators = BTreeMap::new();
        for (i, t) in auth_types.iter().enumerate() {
            let Some(source) = t.generator.as_ref().and_then(|g| g.rego.as_deref()) else {
                continue;
            };
            let field = format!("spec.auth.types[{i}].generator.rego");
            match RegoPolicy::compile_generator(source, settings.eval_timeout) {
                Ok(policy) => {
                    generators.entry(t.name.clone()).or_insert((field, policy));
                }
                Err(e) => errors.push(FieldError::new(field, e)),
            }
        }
        if let Some(source) = spec
            .proxy
            .as_ref()
            .and_then(|p| p.auth_extractor.as_ref())
            .and_then(|r| r.rego.as_deref())
            && let Err(e) = RegoPolicy::compile(source, "proxy", "auth", settings.eval_timeout)
        {
            errors.push(FieldError::new("spec.proxy.authExtractor.rego", e));
        }
        if let Some(source) = spec
            .api
            .as_ref()
            .and_then(|a| a.permissions.as_ref())
            .and_then(|r| r.rego.as_deref())
            && let Err(e) =
                RegoPolicy::compile(source, "permissions", "result", settings.eval_timeout)
        {
            errors.push(FieldError::new("spec.api.permissions.rego", e));
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(CompiledClass {
            inner: Arc::new(Inner {
                liveness,
                auth_probes,
                generators,
            }),
        })
    }

    /// The compiled probe of that kind for the target: the liveness probe, or the
    /// auth probe of the Connector's `spec.auth.name`.
    fn probe_for(&self, kind: ProbeKind, target: &ProbeTarget<'_>) -> Option<&CompiledProbe> {
        match kind {
            ProbeKind::Liveness => self.inner.liveness.as_ref(),
            ProbeKind::Auth => {
                let name = target.connector.auth_name()?;
                self.inner
                    .auth_probes
                    .iter()
                    .find(|(n, _)| n == name)
                    .and_then(|(_, p)| p.as_ref())
            }
        }
    }

    /// Whether the class has a probe of that kind for the target (a liveness probe,
    /// or an auth probe for the Connector's `spec.auth.name`).
    pub fn has_probe(&self, kind: ProbeKind, target: &ProbeTarget<'_>) -> bool {
        self.probe_for(kind, target).is_some()
    }

    /// Builds the request of that kind for the target. `None` when the class has no
    /// such probe; `Some(Err(outcome))` (a `ProbeError`) when a template or the
    /// generator cannot be evaluated or the URL cannot be built.
    pub fn request(
        &self,
        kind: ProbeKind,
        target: &ProbeTarget<'_>,
    ) -> Option<Result<ProbeRequest, ProbeOutcome>> {
        let probe = self.probe_for(kind, target)?;
        let mut redactor = RedactorBuilder::default();
        if let Some(secret) = target.secret {
            redactor.add_all(secret.data.values());
        }
        let result = match probe {
            CompiledProbe::Http(part) => self.http_request(kind, part, target, &mut redactor),
            CompiledProbe::Api(part) => api_request(kind, part, target, &mut redactor),
        };
        Some(result.map_err(|message| {
            let message = redactor_snapshot(&redactor).scrub(&message);
            ProbeOutcome::failed(FailureReason::ProbeError, message)
        }))
    }

    /// Judges a response to a request built by [`CompiledClass::request`].
    pub fn judge(
        &self,
        kind: ProbeKind,
        request: &ProbeRequest,
        response: &HttpResponse,
    ) -> ProbeOutcome {
        judge::judge(kind, request, response)
    }

    fn http_request(
        &self,
        kind: ProbeKind,
        part: &HttpPart,
        target: &ProbeTarget<'_>,
        redactor: &mut RedactorBuilder,
    ) -> Result<ProbeRequest, String> {
        let needs_data =
            !part.path.is_literal() || part.headers.iter().any(|h| !h.value.is_literal());
        let data = needs_data.then(|| {
            template::template_context(target.connector, template_secret(kind, target), part.fields)
        });
        let field = &part.field;
        let path = part
            .path
            .render(data.as_ref())
            .map_err(|e| format!("{field}.path: the template could not be rendered: {e}"))?;
        if part.path.fields().reads_secret() {
            redactor.add(&path);
        }
        let mut url = http_probe_url(
            target.connector.spec.address.as_deref(),
            part.host.as_deref(),
            part.scheme.as_deref(),
            &path,
        )
        .map_err(|e| format!("{field}: {e}"))?;
        let method = match part.method.as_deref().map(str::trim) {
            None | Some("") => Method::GET,
            Some(m) if m.eq_ignore_ascii_case("GET") => Method::GET,
            Some(m) if m.eq_ignore_ascii_case("POST") => Method::POST,
            Some(m) => {
                return Err(format!(
                    "{field}.method: {m:?} is not supported: use GET or POST"
                ));
            }
        };
        let mut headers = Vec::with_capacity(part.headers.len());
        for (i, h) in part.headers.iter().enumerate() {
            let hfield = || format!("{field}.httpHeaders[{i}]");
            let name = h
                .name
                .clone()
                .map_err(|raw| format!("{}.name: {raw:?} is not a valid header name", hfield()))?;
            let rendered = h.value.render(data.as_ref()).map_err(|e| {
                format!(
                    "{}.value: the template could not be rendered: {e}",
                    hfield()
                )
            })?;
            let value = HeaderValue::from_str(&rendered).map_err(|_| {
                format!(
                    "{}.value: the rendered value is not a valid header value",
                    hfield()
                )
            })?;
            if h.credential {
                redactor.add_credential(&rendered);
            }
            // A header whose template renders nothing (`{{ if .Secret }}...{{ end }}`
            // without a Secret) is left out rather than sent empty.
            if rendered.is_empty() {
                continue;
            }
            headers.push(RequestHeader {
                name,
                value,
                credential: h.credential,
            });
        }
        let mut body = None;
        let mut body_is_credential = false;
        if kind == ProbeKind::Auth
            && let Some(auth_name) = target.connector.auth_name()
            && let Some((gfield, policy)) = self.inner.generators.get(auth_name)
        {
            let secret_data = target.secret.map(|s| &s.data);
            let injected = generate(policy, secret_data, &method, &url, &headers)
                .map_err(|e| format!("{gfield}: {e}"))?;
            if let Some(injection) = injected {
                for v in injection.auth.values() {
                    redactor.add_credential(v);
                }
                apply_injection(injection, &mut url, &mut headers, &mut body)
                    .map_err(|e| format!("{gfield}: {e}"))?;
                body_is_credential = body.is_some();
            }
        }
        Ok(ProbeRequest {
            kind,
            method,
            url,
            headers,
            body,
            body_is_credential,
            follow_redirects: part.follow_redirects,
            check: part.check.clone(),
            redactor: redactor_snapshot(redactor),
        })
    }
}

/// The Secret templates see: none for liveness probes, which carry no credentials
/// (SPEC section 5), so `{{ if .Secret }}` is false there.
fn template_secret<'a>(
    kind: ProbeKind,
    target: &ProbeTarget<'a>,
) -> Option<&'a super::SecretMaterial> {
    match kind {
        ProbeKind::Liveness => None,
        ProbeKind::Auth => target.secret,
    }
}

fn redactor_snapshot(b: &RedactorBuilder) -> super::secret::Redactor {
    b.snapshot()
}

fn api_request(
    kind: ProbeKind,
    part: &ApiPart,
    target: &ProbeTarget<'_>,
    redactor: &mut RedactorBuilder,
) -> Result<ProbeRequest, String> {
    let field = &part.field;
    let Some(base) = target
        .class_api_url
        .map(str::trim)
        .filter(|u| !u.is_empty())
    else {
        return Err(format!(
            "{field}: the class API address is not resolved (ConnectorClass status.api.address.url is empty)"
        ));
    };
    let path = match &part.path {
        Some(t) => {
            let data = (!t.is_literal()).then(|| {
                template::template_context(
                    target.connector,
                    template_secret(kind, target),
                    part.fields,
                )
            });
            let path = t
                .render(data.as_ref())
                .map_err(|e| format!("{field}.path: the template could not be rendered: {e}"))?;
            if t.fields().reads_secret() {
                redactor.add(&path);
            }
            path
        }
        None => String::new(),
    };
    let url = api_probe_url(base, &path).map_err(|e| format!("{field}: {e}"))?;
    Ok(ProbeRequest {
        kind,
        method: Method::GET,
        url,
        headers: Vec::new(),
        body: None,
        body_is_credential: false,
        follow_redirects: true,
        check: part.check.clone(),
        redactor: redactor_snapshot(redactor),
    })
}

fn compile_probe(
    field: &str,
    probe: &Probe,
    settings: &ProbeSettings,
    errors: &mut Vec<FieldError>,
) -> Option<CompiledProbe> {
    let parse =
        |text: &str| template::parse(text, settings.template_output_cap, settings.eval_timeout);
    if let Some(http) = &probe.http {
        let field = format!("{field}.http");
        let before = errors.len();
        let path =
            parse(&http.path).map_err(|e| errors.push(FieldError::new(format!("{field}.path"), e)));
        let mut headers = Vec::new();
        for (i, h) in http.http_headers.iter().flatten().enumerate() {
            match parse(&h.value) {
                Ok(value) => headers.push(HeaderPart {
                    name: HeaderName::from_bytes(h.name.trim().as_bytes())
                        .map_err(|_| h.name.clone()),
                    credential: CREDENTIAL_HEADERS
                        .contains(&h.name.trim().to_ascii_lowercase().as_str())
                        || value.fields().reads_secret(),
                    value,
                }),
                Err(e) => errors.push(FieldError::new(
                    format!("{field}.httpHeaders[{i}].value"),
                    e,
                )),
            }
        }
        let cel = match http.response.as_ref().and_then(|r| r.cel.as_deref()) {
            Some(src) if !src.trim().is_empty() => match CelCheck::compile(src) {
                Ok(c) => Some(c),
                Err(e) => {
                    errors.push(FieldError::new(format!("{field}.response.cel"), e));
                    None
                }
            },
            _ => None,
        };
        let Ok(path) = path else { return None };
        if errors.len() != before {
            return None;
        }
        let fields = headers
            .iter()
            .fold(path.fields(), |f, h| f.union(h.value.fields()));
        return Some(CompiledProbe::Http(HttpPart {
            fields,
            path,
            host: http.host.clone(),
            scheme: http.scheme.clone(),
            method: http.method.clone(),
            headers,
            follow_redirects: !http.disable_redirect.unwrap_or(false),
            check: Arc::new(ProbeCheck {
                field: field.clone(),
                api: false,
                cel,
            }),
            field,
        }));
    }
    if let Some(api) = &probe.api {
        let field = format!("{field}.api");
        let path = match api.path.as_deref() {
            Some(p) => match parse(p) {
                Ok(t) => Some(t),
                Err(e) => {
                    errors.push(FieldError::new(format!("{field}.path"), e));
                    return None;
                }
            },
            None => None,
        };
        return Some(CompiledProbe::Api(ApiPart {
            fields: path
                .as_ref()
                .map(CompiledTemplate::fields)
                .unwrap_or_default(),
            path,
            check: Arc::new(ProbeCheck {
                field: field.clone(),
                api: true,
                cel: None,
            }),
            field,
        }));
    }
    None
}

/// What a generator asked to inject.
struct Injection {
    position: String,
    content_type: Option<String>,
    auth: BTreeMap<String, String>,
}

/// Evaluates `data.proxy.auth` with `{data: <secret data>, request: {...}}`.
fn generate(
    policy: &RegoPolicy,
    secret_data: Option<&BTreeMap<String, String>>,
    method: &Method,
    url: &url::Url,
    headers: &[RequestHeader],
) -> Result<Option<Injection>, String> {
    use regorus::Value as R;
    fn obj(entries: impl IntoIterator<Item = (&'static str, R)>) -> R {
        R::from(
            entries
                .into_iter()
                .map(|(k, v)| (R::from(k), v))
                .collect::<BTreeMap<R, R>>(),
        )
    }
    let data: BTreeMap<R, R> = secret_data
        .into_iter()
        .flatten()
        .map(|(k, v)| (R::from(k.as_str()), R::from(v.as_str())))
        .collect();
    let mut header_map: BTreeMap<String, Vec<R>> = BTreeMap::new();
    for h in headers {
        header_map
            .entry(canonical_header_name(h.name.as_str()))
            .or_default()
            .push(R::from(
                String::from_utf8_lossy(h.value.as_bytes()).as_ref(),
            ));
    }
    let mut query_map: BTreeMap<String, Vec<R>> = BTreeMap::new();
    for (k, v) in url.query_pairs() {
        query_map
            .entry(k.into_owned())
            .or_default()
            .push(R::from(v.as_ref()));
    }
    let multi = |m: BTreeMap<String, Vec<R>>| -> R {
        R::from(
            m.into_iter()
                .map(|(k, v)| (R::from(k), R::from(v)))
                .collect::<BTreeMap<R, R>>(),
        )
    };
    let host = match url.port() {
        Some(p) => format!("{}:{p}", url.host_str().unwrap_or_default()),
        None => url.host_str().unwrap_or_default().to_string(),
    };
    let input = obj([
        ("data", R::from(data)),
        (
            "request",
            obj([
                ("method", R::from(method.as_str())),
                ("path", R::from(url.path())),
                ("host", R::from(host)),
                ("headers", multi(header_map)),
                ("query", multi(query_map)),
                ("body", R::from("")),
            ]),
        ),
    ]);
    let Some(result) = policy
        .evaluate(input)
        .map_err(|e| format!("evaluation failed: {e}"))?
    else {
        return Ok(None);
    };
    let shape =
        "`auth` must be an object {position: header|query|body, auth: {key: value}, contentType?}";
    let Json::Object(obj) = result else {
        return Err(format!("{shape}, not a {}", json_type(&result)));
    };
    let position = match obj.get("position") {
        Some(Json::String(p)) => p.trim().to_ascii_lowercase(),
        None => "header".to_string(),
        Some(other) => return Err(format!("{shape}: position is a {}", json_type(other))),
    };
    if !matches!(position.as_str(), "header" | "query" | "body") {
        return Err(format!(
            "{shape}: position {position:?} is not header, query or body"
        ));
    }
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
        Some(other) => return Err(format!("{shape}: auth is a {}", json_type(other))),
        None => BTreeMap::new(),
    };
    Ok(Some(Injection {
        position,
        content_type,
        auth,
    }))
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

/// Injects the generated credentials; a key already present is replaced.
fn apply_injection(
    injection: Injection,
    url: &mut url::Url,
    headers: &mut Vec<RequestHeader>,
    body: &mut Option<Bytes>,
) -> Result<(), String> {
    match injection.position.as_str() {
        "header" => {
            for (k, v) in &injection.auth {
                let name = HeaderName::from_bytes(k.trim().as_bytes())
                    .map_err(|_| format!("{k:?} is not a valid header name"))?;
                let value = HeaderValue::from_str(v).map_err(|_| {
                    format!("the value for header {k:?} is not a valid header value")
                })?;
                headers.retain(|h| h.name != name);
                headers.push(RequestHeader {
                    name,
                    value,
                    credential: true,
                });
            }
        }
        "query" => {
            let kept: Vec<(String, String)> = url
                .query_pairs()
                .filter(|(k, _)| !injection.auth.contains_key(k.as_ref()))
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect();
            let mut pairs = url.query_pairs_mut();
            pairs.clear();
            for (k, v) in &kept {
                pairs.append_pair(k, v);
            }
            for (k, v) in &injection.auth {
                pairs.append_pair(k, v);
            }
        }
        _ => {
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
            headers.retain(|h| h.name != http::header::CONTENT_TYPE);
            headers.push(RequestHeader {
                name: http::header::CONTENT_TYPE,
                value,
                credential: false,
            });
            *body = Some(Bytes::from(bytes));
        }
    }
    Ok(())
}
