//! [`CompiledClass`]: every template, CEL expression and Rego policy of a class,
//! compiled once per class generation. Requests are built from it in `build.rs`.

use std::collections::BTreeMap;
use std::sync::Arc;

use http::HeaderName;

use crate::api::{ApiProbe, ConnectorClass, HttpProbe, Probe, chosen_auth_name};
use crate::types::FieldError;

use super::cel_check::CelCheck;
use super::rego_auth::RegoPolicy;
use super::request::ProbeCheck;
use super::template::{self, CompiledTemplate, Fields};
use super::{ProbeKind, ProbeSettings, ProbeTarget};

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
    /// The class's first auth type: the chosen one when a Connector names none.
    first_auth_type: Option<String>,
    /// `spec.proxy.authExtractor`: where the proxy finds a client's token.
    auth_extractor: Option<RegoPolicy>,
}

#[derive(Debug)]
pub(super) enum CompiledProbe {
    Http(HttpPart),
    Api(ApiPart),
}

#[derive(Debug)]
pub(super) struct HttpPart {
    pub(super) field: String,
    pub(super) path: CompiledTemplate,
    pub(super) host: Option<String>,
    pub(super) scheme: Option<String>,
    pub(super) method: Option<String>,
    pub(super) headers: Vec<HeaderPart>,
    pub(super) follow_redirects: bool,
    pub(super) check: Arc<ProbeCheck>,
    /// The data fields the templates of this probe can reach.
    pub(super) fields: Fields,
}

#[derive(Debug)]
pub(super) struct HeaderPart {
    /// The parsed name, or the name as written when it is not a valid header name.
    pub(super) name: Result<HeaderName, String>,
    pub(super) value: CompiledTemplate,
    pub(super) credential: bool,
}

#[derive(Debug)]
pub(super) struct ApiPart {
    pub(super) field: String,
    pub(super) path: Option<CompiledTemplate>,
    pub(super) fields: Fields,
    pub(super) check: Arc<ProbeCheck>,
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
        let auth_extractor = spec
            .proxy
            .as_ref()
            .and_then(|p| p.auth_extractor.as_ref())
            .and_then(|r| r.rego.as_deref())
            .and_then(|source| {
                match RegoPolicy::compile(source, "proxy", "auth", settings.eval_timeout) {
                    Ok(policy) => Some(policy),
                    Err(e) => {
                        errors.push(FieldError::new("spec.proxy.authExtractor.rego", e));
                        None
                    }
                }
            });
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
                first_auth_type: auth_types.first().map(|t| t.name.clone()),
                auth_extractor,
            }),
        })
    }

    /// The compiled probe of that kind for the target: the liveness probe, or the
    /// auth probe of the Connector's chosen auth type (SPEC section 4).
    pub(super) fn probe_for(
        &self,
        kind: ProbeKind,
        target: &ProbeTarget<'_>,
    ) -> Option<&CompiledProbe> {
        match kind {
            ProbeKind::Liveness => self.inner.liveness.as_ref(),
            ProbeKind::Auth => {
                let name = self.chosen_auth_type(target)?;
                self.inner
                    .auth_probes
                    .iter()
                    .find(|(n, _)| n == name)
                    .and_then(|(_, p)| p.as_ref())
            }
        }
    }

    /// The auth type the target's Connector uses.
    pub(super) fn chosen_auth_type<'t>(&'t self, target: &ProbeTarget<'t>) -> Option<&'t str> {
        chosen_auth_name(
            target.connector.auth_name(),
            self.inner.first_auth_type.as_deref(),
        )
    }

    /// The class's `authExtractor`, if it has one.
    pub(super) fn auth_extractor(&self) -> Option<&RegoPolicy> {
        self.inner.auth_extractor.as_ref()
    }

    /// The field path of an auth type's generator.
    pub(super) fn generator_field(&self, auth_type: &str) -> Option<&str> {
        self.generator(auth_type).map(|(field, _)| field.as_str())
    }

    /// The generator of an auth type, with its field path.
    pub(super) fn generator(&self, auth_type: &str) -> Option<&(String, RegoPolicy)> {
        self.inner.generators.get(auth_type)
    }

    /// Whether the class has a probe of that kind for the target (a liveness probe,
    /// or an auth probe for the Connector's chosen auth type).
    pub fn has_probe(&self, kind: ProbeKind, target: &ProbeTarget<'_>) -> bool {
        self.probe_for(kind, target).is_some()
    }
}

fn compile_probe(
    field: &str,
    probe: &Probe,
    settings: &ProbeSettings,
    errors: &mut Vec<FieldError>,
) -> Option<CompiledProbe> {
    if let Some(http) = &probe.http {
        return compile_http(&format!("{field}.http"), http, settings, errors)
            .map(CompiledProbe::Http);
    }
    if let Some(api) = &probe.api {
        return compile_api(&format!("{field}.api"), api, settings, errors).map(CompiledProbe::Api);
    }
    None
}

fn parse_template(text: &str, settings: &ProbeSettings) -> Result<CompiledTemplate, String> {
    template::parse(text, settings.template_output_cap, settings.eval_timeout)
}

fn compile_http(
    field: &str,
    http: &HttpProbe,
    settings: &ProbeSettings,
    errors: &mut Vec<FieldError>,
) -> Option<HttpPart> {
    let before = errors.len();
    let path = parse_template(&http.path, settings)
        .map_err(|e| errors.push(FieldError::new(format!("{field}.path"), e)));
    let mut headers = Vec::new();
    for (i, h) in http.http_headers.iter().flatten().enumerate() {
        match parse_template(&h.value, settings) {
            Ok(value) => headers.push(HeaderPart {
                name: HeaderName::from_bytes(h.name.trim().as_bytes()).map_err(|_| h.name.clone()),
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
        Some(src) if !src.trim().is_empty() => {
            match CelCheck::compile_with(src, settings.eval_timeout) {
                Ok(c) => Some(c),
                Err(e) => {
                    errors.push(FieldError::new(format!("{field}.response.cel"), e));
                    None
                }
            }
        }
        _ => None,
    };
    let Ok(path) = path else { return None };
    if errors.len() != before {
        return None;
    }
    let fields = headers
        .iter()
        .fold(path.fields(), |f, h| f.union(h.value.fields()));
    Some(HttpPart {
        fields,
        path,
        host: http.host.clone(),
        scheme: http.scheme.clone(),
        method: http.method.clone(),
        headers,
        follow_redirects: !http.disable_redirect.unwrap_or(false),
        check: Arc::new(ProbeCheck {
            field: field.to_string(),
            api: false,
            cel,
        }),
        field: field.to_string(),
    })
}

fn compile_api(
    field: &str,
    api: &ApiProbe,
    settings: &ProbeSettings,
    errors: &mut Vec<FieldError>,
) -> Option<ApiPart> {
    let path = match api.path.as_deref() {
        Some(p) => match parse_template(p, settings) {
            Ok(t) => Some(t),
            Err(e) => {
                errors.push(FieldError::new(format!("{field}.path"), e));
                return None;
            }
        },
        None => None,
    };
    Some(ApiPart {
        fields: path
            .as_ref()
            .map(CompiledTemplate::fields)
            .unwrap_or_default(),
        path,
        check: Arc::new(ProbeCheck {
            field: field.to_string(),
            api: true,
            cel: None,
        }),
        field: field.to_string(),
    })
}
