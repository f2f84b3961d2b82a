//! Builds the probe requests of a Connector from a [`CompiledClass`]: templates are
//! rendered, the URL is formed (SPEC section 4), and an auth type's generator injects
//! credentials through [`crate::inject`], the module the proxy uses too.

use http::{HeaderValue, Method};

use crate::inject::{self, RequestView};

use super::compile::{ApiPart, CompiledProbe, HttpPart};
use super::judge;
use super::request::{ProbeRequest, RequestHeader, api_probe_url, http_probe_url};
use super::secret::RedactorBuilder;
use super::template;
use super::{
    CompiledClass, FailureReason, HttpResponse, ProbeKind, ProbeOutcome, ProbeTarget,
    SecretMaterial,
};
use gtmpl_ng::Context;

impl CompiledClass {
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
            let message = redactor.snapshot().bounded(&message);
            ProbeOutcome::failed(FailureReason::ProbeError, message)
        }))
    }

    /// Judges a response to a request built by [`CompiledClass::request`].
    pub async fn judge(
        &self,
        kind: ProbeKind,
        request: &ProbeRequest,
        response: &HttpResponse,
    ) -> ProbeOutcome {
        judge::judge(kind, request, response).await
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
        // What a template made of the Secret is sent: redact that form too.
        if part.path.fields().reads_secret() {
            redactor.add(&path);
        }
        let url = http_probe_url(
            target.connector.spec.address.as_deref(),
            part.host.as_deref(),
            part.scheme.as_deref(),
            &path,
        )
        .map_err(|e| format!("{field}: {e}"))?;
        let method = probe_method(field, part.method.as_deref())?;
        let headers = render_headers(part, data.as_ref(), redactor)?;
        let mut request = ProbeRequest {
            kind,
            method,
            url,
            headers,
            body: None,
            body_is_credential: false,
            follow_redirects: part.follow_redirects,
            check: part.check.clone(),
            // Taken below, once the generator has added what it injected.
            redactor: Default::default(),
        };
        if kind == ProbeKind::Auth {
            self.inject_generated(target, &mut request, redactor)?;
        }
        request.redactor = redactor.snapshot();
        Ok(request)
    }

    /// Runs the chosen auth type's generator (if any) and applies what it asks for.
    fn inject_generated(
        &self,
        target: &ProbeTarget<'_>,
        request: &mut ProbeRequest,
        redactor: &mut RedactorBuilder,
    ) -> Result<(), String> {
        let Some(auth_type) = self.chosen_auth_type(target) else {
            return Ok(());
        };
        let headers: Vec<_> = request
            .headers
            .iter()
            .map(|h| (h.name.clone(), h.value.clone()))
            .collect();
        let view = RequestView {
            method: &request.method,
            url: &request.url,
            headers: &headers,
            body: "",
        };
        let Some(injection) =
            self.generated_injection(auth_type, target.secret.map(|s| &s.data), &view)?
        else {
            return Ok(());
        };
        for value in injection.values() {
            redactor.add_credential(value);
        }
        let effects = inject::plan(&injection, &request.url).map_err(|e| {
            format!(
                "{}: {e}",
                self.generator_field(auth_type).unwrap_or_default()
            )
        })?;
        apply_effects(request, effects);
        Ok(())
    }
}

/// Applies planned injection effects to a probe request.
fn apply_effects(request: &mut ProbeRequest, effects: inject::Effects) {
    for (name, value) in effects.set_headers {
        request.headers.retain(|h| h.name != name);
        request.headers.push(RequestHeader {
            name,
            value,
            credential: true,
        });
    }
    if let Some(query) = effects.query {
        request.url.set_query(Some(&query));
    }
    if let Some((content_type, body)) = effects.body {
        request
            .headers
            .retain(|h| h.name != http::header::CONTENT_TYPE);
        request.headers.push(RequestHeader {
            name: http::header::CONTENT_TYPE,
            value: content_type,
            credential: false,
        });
        request.body = Some(body);
        request.body_is_credential = true;
    }
}

fn probe_method(field: &str, method: Option<&str>) -> Result<Method, String> {
    match method.map(str::trim) {
        None | Some("") => Ok(Method::GET),
        Some(m) if m.eq_ignore_ascii_case("GET") => Ok(Method::GET),
        Some(m) if m.eq_ignore_ascii_case("POST") => Ok(Method::POST),
        Some(m) => Err(format!(
            "{field}.method: {m:?} is not supported: use GET or POST"
        )),
    }
}

/// Renders `httpHeaders[]`; a header whose template renders nothing (`{{ if .Secret
/// }}...{{ end }}` without a Secret) is left out rather than sent empty.
fn render_headers(
    part: &HttpPart,
    data: Option<&Context>,
    redactor: &mut RedactorBuilder,
) -> Result<Vec<RequestHeader>, String> {
    let field = &part.field;
    let mut headers = Vec::with_capacity(part.headers.len());
    for (i, h) in part.headers.iter().enumerate() {
        let hfield = || format!("{field}.httpHeaders[{i}]");
        let name = h
            .name
            .clone()
            .map_err(|raw| format!("{}.name: {raw:?} is not a valid header name", hfield()))?;
        let rendered = h.value.render(data).map_err(|e| {
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
        if rendered.is_empty() {
            continue;
        }
        headers.push(RequestHeader {
            name,
            value,
            credential: h.credential,
        });
    }
    Ok(headers)
}

/// The Secret templates see: none for liveness probes, which carry no credentials
/// (SPEC section 5), so `{{ if .Secret }}` is false there.
fn template_secret<'a>(kind: ProbeKind, target: &ProbeTarget<'a>) -> Option<&'a SecretMaterial> {
    match kind {
        ProbeKind::Liveness => None,
        ProbeKind::Auth => target.secret,
    }
}

/// What a class API receives: the tool's address, and for an auth probe the Secret
/// (its type and data, redacted like every other credential).
fn plugin_headers(
    kind: ProbeKind,
    target: &ProbeTarget<'_>,
    redactor: &mut RedactorBuilder,
) -> Vec<RequestHeader> {
    let address = target.connector.spec.address.as_deref().unwrap_or_default();
    let secret = template_secret(kind, target).map(|s| inject::PluginSecret {
        type_: &s.type_,
        data: &s.data,
    });
    inject::plugin_headers(address, secret.as_ref())
        .into_iter()
        .map(|h| {
            if h.credential {
                redactor.add_credential(h.value.to_str().unwrap_or_default());
            }
            RequestHeader {
                name: h.name,
                value: h.value,
                credential: h.credential,
            }
        })
        .collect()
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
    let headers = plugin_headers(kind, target, redactor);
    Ok(ProbeRequest {
        kind,
        method: Method::GET,
        url,
        headers,
        body: None,
        body_is_credential: false,
        follow_redirects: true,
        check: part.check.clone(),
        redactor: redactor.snapshot(),
    })
}
