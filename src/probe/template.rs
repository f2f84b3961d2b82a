//! Go `text/template` (gtmpl-ng) with the sprig/Helm function library, over data
//! shaped like the Go objects of the original system (SPEC section 4, "Templates").
//!
//! Rendering is bounded by gtmpl-ng's [`Limits`]: output size (64 KiB by default),
//! iterations, and a wall-clock deadline checked between steps. The only functions
//! whose single call could outlast the deadline (key generation, bcrypt) are not
//! registered, so a render ends within about the deadline on the calling thread.

use std::collections::HashMap;
use std::time::Duration;

use gtmpl_ng::helm_functions::HELM_FUNCTIONS;
use gtmpl_ng::{Context, Func, FuncError, Limits, Template, Value};

use crate::api::{Connector, Param, ParamValue};

use super::secret::SecretMaterial;

/// Helm functions left out: each is one call that can burn a lot of CPU (key
/// generation, bcrypt), which the render deadline cannot interrupt, and none has a
/// use in a probe path or header.
const EXCLUDED: &[&str] = &["genCA", "genSelfSignedCert", "genSignedCert", "htpasswd"];

/// Sprig functions that gtmpl-ng's Helm library does not have, hand-written here
/// (each a few lines, following sprig's definition).
const EXTRA: &[(&str, Func)] = &[
    ("join", join as Func),
    ("splitList", split_list as Func),
    ("urlParse", url_parse as Func),
];

/// One parsed template, or a literal when the text has no action.
pub(crate) enum CompiledTemplate {
    Literal(String),
    Go(Box<Template>),
}

impl std::fmt::Debug for CompiledTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CompiledTemplate::Literal(s) => write!(f, "Literal({s:?})"),
            CompiledTemplate::Go(_) => write!(f, "Go(..)"),
        }
    }
}

/// Parses `text`; the error is the parser's message.
pub(crate) fn parse(
    text: &str,
    output_cap: usize,
    deadline: Duration,
) -> Result<CompiledTemplate, String> {
    if !text.contains("{{") {
        return Ok(CompiledTemplate::Literal(text.to_string()));
    }
    let limits = Limits::default()
        .with_output_bytes(output_cap)
        .with_function_output(output_cap)
        .with_deadline(deadline);
    let mut tmpl = Template::with_limits(limits);
    let funcs: Vec<(&str, Func)> = HELM_FUNCTIONS
        .iter()
        .filter(|(name, _)| !EXCLUDED.contains(name))
        .copied()
        .chain(EXTRA.iter().copied())
        .collect();
    tmpl.add_funcs(&funcs);
    tmpl.parse(text).map_err(|e| e.to_string())?;
    Ok(CompiledTemplate::Go(Box::new(tmpl)))
}

impl CompiledTemplate {
    /// Whether rendering needs the data at all.
    pub(crate) fn is_literal(&self) -> bool {
        matches!(self, CompiledTemplate::Literal(_))
    }

    /// Renders with `data` (needed unless the template is a literal); the error is the
    /// executor's message.
    pub(crate) fn render(&self, data: Option<&Context>) -> Result<String, String> {
        match self {
            CompiledTemplate::Literal(s) => Ok(s.clone()),
            CompiledTemplate::Go(t) => match data {
                Some(ctx) => t.render(ctx).map_err(|e| e.to_string()),
                None => t.render(&Context::empty()).map_err(|e| e.to_string()),
            },
        }
    }
}

/// The data a probe template sees: `.Connector` (Go field names of the original
/// types) and `.Secret` (nil when there is no Secret, so `{{ if .Secret }}` is false).
pub(crate) fn template_context(connector: &Connector, secret: Option<&SecretMaterial>) -> Context {
    let mut root = HashMap::new();
    root.insert("Connector".to_string(), connector_value(connector));
    root.insert(
        "Secret".to_string(),
        match secret {
            Some(s) => secret_value(s),
            None => Value::Nil,
        },
    );
    Context::from(Value::Map(root))
}

fn s(v: impl Into<String>) -> Value {
    Value::String(v.into())
}

fn opt_s(v: &Option<String>) -> Value {
    s(v.clone().unwrap_or_default())
}

fn string_map<'a>(m: impl IntoIterator<Item = (&'a String, &'a String)>) -> Value {
    Value::Map(
        m.into_iter()
            .map(|(k, v)| (k.clone(), s(v.clone())))
            .collect(),
    )
}

fn object<const N: usize>(fields: [(&str, Value); N]) -> Value {
    Value::Object(
        fields
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
    )
}

fn connector_value(c: &Connector) -> Value {
    let meta = &c.metadata;
    let labels = string_map(meta.labels.iter().flatten());
    let annotations = string_map(meta.annotations.iter().flatten());
    let creation = meta
        .creation_timestamp
        .as_ref()
        .map(|t| t.0.to_string())
        .unwrap_or_default();
    let object_meta = object([
        ("Name", opt_s(&meta.name)),
        ("Namespace", opt_s(&meta.namespace)),
        ("Labels", labels.clone()),
        ("Annotations", annotations.clone()),
        ("UID", opt_s(&meta.uid)),
        ("ResourceVersion", opt_s(&meta.resource_version)),
        (
            "Generation",
            Value::from(meta.generation.unwrap_or_default()),
        ),
        ("GenerateName", opt_s(&meta.generate_name)),
        ("CreationTimestamp", s(creation.clone())),
    ]);
    let spec = &c.spec;
    let auth = spec.auth.as_ref();
    let secret_ref = auth
        .and_then(|a| a.secret_ref.as_ref())
        .map(|r| {
            object([
                ("Name", opt_s(&r.name)),
                ("Namespace", opt_s(&r.namespace)),
                ("Kind", opt_s(&r.kind)),
                ("APIVersion", opt_s(&r.api_version)),
            ])
        })
        .unwrap_or(Value::Nil);
    let auth_value = object([
        (
            "Name",
            s(auth.and_then(|a| a.name.clone()).unwrap_or_default()),
        ),
        (
            "Params",
            params_value(auth.and_then(|a| a.params.as_deref())),
        ),
        ("SecretRef", secret_ref),
    ]);
    let ca_ref = spec
        .ca_cert_secret_ref
        .as_ref()
        .map(|r| object([("Name", s(r.name.clone()))]))
        .unwrap_or(Value::Nil);
    let spec_value = object([
        ("ConnectorClassName", s(spec.connector_class_name.clone())),
        ("Address", opt_s(&spec.address)),
        ("Auth", auth_value),
        ("Params", params_value(spec.params.as_deref())),
        (
            "AddressExtensions",
            params_value(spec.address_extensions.as_deref()),
        ),
        ("CACertSecretRef", ca_ref),
    ]);
    // ObjectMeta and TypeMeta are embedded in the Go struct, so their fields are also
    // reachable directly (`.Connector.Name`).
    object([
        ("Name", opt_s(&meta.name)),
        ("Namespace", opt_s(&meta.namespace)),
        ("Labels", labels),
        ("Annotations", annotations),
        ("UID", opt_s(&meta.uid)),
        ("ResourceVersion", opt_s(&meta.resource_version)),
        (
            "Generation",
            Value::from(meta.generation.unwrap_or_default()),
        ),
        ("GenerateName", opt_s(&meta.generate_name)),
        ("CreationTimestamp", s(creation)),
        ("ObjectMeta", object_meta),
        ("APIVersion", s("connectors.alauda.io/v1alpha1")),
        ("Kind", s("Connector")),
        (
            "TypeMeta",
            object([
                ("APIVersion", s("connectors.alauda.io/v1alpha1")),
                ("Kind", s("Connector")),
            ]),
        ),
        ("Spec", spec_value),
    ])
}

fn params_value(params: Option<&[Param]>) -> Value {
    Value::Array(params.unwrap_or_default().iter().map(param_value).collect())
}

/// A Tekton `Param`: `.Name`, `.Value.Type`, `.Value.StringVal`, `.Value.ArrayVal`,
/// `.Value.ObjectVal` (the unused ones hold Go zero values).
fn param_value(p: &Param) -> Value {
    let (string_val, array_val, object_val) = match &p.value {
        ParamValue::String(v) => (v.clone(), Vec::new(), Value::Map(HashMap::new())),
        ParamValue::Array(v) => (
            String::new(),
            v.iter().map(|x| s(x.clone())).collect(),
            Value::Map(HashMap::new()),
        ),
        ParamValue::Object(v) => (String::new(), Vec::new(), string_map(v)),
    };
    object([
        ("Name", s(p.name.clone())),
        (
            "Value",
            object([
                ("Type", s(p.value.type_name())),
                ("StringVal", s(string_val)),
                ("ArrayVal", Value::Array(array_val)),
                ("ObjectVal", object_val),
            ]),
        ),
    ])
}

fn secret_value(secret: &SecretMaterial) -> Value {
    object([
        ("Name", s(secret.name.clone())),
        ("Type", s(secret.type_.clone())),
        ("StringData", string_map(&secret.data)),
    ])
}

// ---- hand-written sprig functions -------------------------------------------------

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Nil | Value::NoValue => String::new(),
        other => other.to_string(),
    }
}

/// sprig `join SEP LIST`: the list's items as text, joined by SEP.
fn join(args: &[Value]) -> Result<Value, FuncError> {
    let [sep, list] = args else {
        return Err(FuncError::ExactlyXArgs("join".into(), 2));
    };
    let sep = text(sep);
    let joined = match list {
        Value::Array(items) => items.iter().map(text).collect::<Vec<_>>().join(&sep),
        Value::Nil | Value::NoValue => String::new(),
        other => text(other),
    };
    Ok(Value::String(joined))
}

/// sprig `splitList SEP STRING`: the pieces of STRING between SEPs, as a list.
fn split_list(args: &[Value]) -> Result<Value, FuncError> {
    let [sep, string] = args else {
        return Err(FuncError::ExactlyXArgs("splitList".into(), 2));
    };
    let (sep, string) = (text(sep), text(string));
    let pieces: Vec<Value> = if sep.is_empty() {
        // Go's strings.Split with an empty separator splits after each character.
        string
            .chars()
            .map(|c| Value::String(c.to_string()))
            .collect()
    } else {
        string
            .split(sep.as_str())
            .map(|p| Value::String(p.to_string()))
            .collect()
    };
    Ok(Value::Array(pieces))
}

/// sprig `urlParse URL`: a dict of `scheme`, `host`, `hostname`, `path`, `query`,
/// `opaque`, `fragment`, `userinfo`.
fn url_parse(args: &[Value]) -> Result<Value, FuncError> {
    let [raw] = args else {
        return Err(FuncError::ExactlyXArgs("urlParse".into(), 1));
    };
    let raw = text(raw);
    let mut fields: HashMap<String, Value> = HashMap::new();
    match url::Url::parse(&raw) {
        Ok(u) => {
            let hostname = u.host_str().unwrap_or_default().to_string();
            let host = match u.port() {
                Some(p) => format!("{hostname}:{p}"),
                None => hostname.clone(),
            };
            let userinfo = match (u.username(), u.password()) {
                ("", None) => String::new(),
                (user, None) => user.to_string(),
                (user, Some(pass)) => format!("{user}:{pass}"),
            };
            let (path, opaque) = if u.cannot_be_a_base() {
                (String::new(), u.path().to_string())
            } else {
                (u.path().to_string(), String::new())
            };
            fields.insert("scheme".into(), s(u.scheme()));
            fields.insert("host".into(), s(host));
            fields.insert("hostname".into(), s(hostname));
            fields.insert("path".into(), s(path));
            fields.insert("opaque".into(), s(opaque));
            fields.insert("query".into(), s(u.query().unwrap_or_default()));
            fields.insert("fragment".into(), s(u.fragment().unwrap_or_default()));
            fields.insert("userinfo".into(), s(userinfo));
        }
        Err(url::ParseError::RelativeUrlWithoutBase) => {
            // A relative reference, as Go's url.Parse accepts: path, query, fragment.
            let (rest, fragment) = raw.split_once('#').unwrap_or((raw.as_str(), ""));
            let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
            for key in ["scheme", "host", "hostname", "opaque", "userinfo"] {
                fields.insert(key.into(), s(""));
            }
            fields.insert("path".into(), s(path));
            fields.insert("query".into(), s(query));
            fields.insert("fragment".into(), s(fragment));
        }
        Err(e) => {
            return Err(FuncError::Generic(format!(
                "urlParse: unable to parse url: {e}"
            )));
        }
    }
    Ok(Value::Map(fields))
}
