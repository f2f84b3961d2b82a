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

/// gtmpl-ng's limit errors, recognised by their wording, and what is said instead for
/// a template that reads `.Secret`: never the error's own text, which a `fail` of the
/// template could have written to look like a limit error around a Secret value.
const LIMIT_MESSAGES: &[(&str, &str)] = &[
    (
        "iterations allowed",
        "the render ran more iterations than allowed",
    ),
    (
        "bytes allowed",
        "the render would write more than the {output_cap} bytes allowed",
    ),
    (
        "a function produced a value",
        "a function produced a value over the allowed size",
    ),
    (
        "did not finish within",
        "the render did not finish within {deadline:?}",
    ),
    (
        "maximum template nesting depth",
        "the template nests deeper than allowed",
    ),
];

/// The error of a template that reads `.Secret`, other than a limit.
const WITHHELD: &str =
    "the template reads .Secret, so its error is not shown (it may quote Secret data)";

/// One parsed template, or a literal when the text has no action.
pub(crate) enum CompiledTemplate {
    Literal(String),
    /// The template and the fields its text names.
    Go(Box<GoTemplate>),
}

/// A parsed Go template with what it reads and the limits it renders under.
pub(crate) struct GoTemplate {
    template: Template,
    fields: Fields,
    output_cap: usize,
    deadline: Duration,
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
    Ok(CompiledTemplate::Go(Box::new(GoTemplate {
        template: tmpl,
        fields: Fields::used_by(text),
        output_cap,
        deadline,
    })))
}

impl CompiledTemplate {
    /// Whether rendering needs the data at all.
    pub(crate) fn is_literal(&self) -> bool {
        matches!(self, CompiledTemplate::Literal(_))
    }

    /// The data fields the template can reach.
    pub(crate) fn fields(&self) -> Fields {
        match self {
            CompiledTemplate::Literal(_) => Fields::default(),
            CompiledTemplate::Go(t) => t.fields,
        }
    }

    /// Renders with `data` (needed unless the template is a literal); the error is the
    /// executor's message, except for a template that reads `.Secret`: its errors
    /// (`fail`, a failed conversion, a range over a value) may quote what it made of a
    /// Secret value in a form no redactor knows (`upper`, `trunc`, ...), so only the
    /// messages of the render limits, which quote no value, are kept.
    pub(crate) fn render(&self, data: Option<&Context>) -> Result<String, String> {
        match self {
            CompiledTemplate::Literal(s) => Ok(s.clone()),
            CompiledTemplate::Go(t) => {
                let result = match data {
                    Some(ctx) => t.template.render(ctx),
                    None => t.template.render(&Context::empty()),
                };
                result.map_err(|e| {
                    let message = e.to_string();
                    if t.fields.reads_secret() {
                        t.limit_message(&message)
                            .unwrap_or_else(|| WITHHELD.to_string())
                    } else {
                        message
                    }
                })
            }
        }
    }
}

impl GoTemplate {
    /// Our own wording of a limit error (with our own limit values), if `message` is one.
    fn limit_message(&self, message: &str) -> Option<String> {
        let (_, said) = LIMIT_MESSAGES
            .iter()
            .find(|(wording, _)| message.contains(wording))?;
        Some(
            said.replace("{output_cap}", &self.output_cap.to_string())
                .replace("{deadline:?}", &format!("{:?}", self.deadline)),
        )
    }
}

/// Which struct fields the templates of one probe can reach. A template reaches a
/// field only by writing its name (`.Spec.Address`, `index . "Address"`), so fields
/// whose names appear in none of the probe's templates are left out of the data:
/// building the whole tree for every request would cost more than rendering. Maps
/// (labels, `StringData`, `ObjectVal`) are always whole. The only visible effect is
/// on whole-struct dumps (`toJson .Connector`), which never mirrored Go's output.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Fields(u64);

/// Every struct field name of the data, by bit.
const FIELD_NAMES: &[&str] = &[
    "Connector",
    "Secret",
    "Name",
    "Namespace",
    "Labels",
    "Annotations",
    "UID",
    "ResourceVersion",
    "Generation",
    "GenerateName",
    "CreationTimestamp",
    "ObjectMeta",
    "TypeMeta",
    "APIVersion",
    "Kind",
    "Spec",
    "ConnectorClassName",
    "Address",
    "Auth",
    "Params",
    "SecretRef",
    "AddressExtensions",
    "CACertSecretRef",
    "Value",
    "Type",
    "StringVal",
    "ArrayVal",
    "ObjectVal",
    "StringData",
];

/// A field of the data, as its bit in [`Fields`] and its name.
#[derive(Clone, Copy)]
struct F(usize);

macro_rules! fields {
    ($($c:ident = $i:expr),* $(,)?) => { $(const $c: F = F($i);)* };
}
fields!(
    CONNECTOR = 0,
    SECRET = 1,
    NAME = 2,
    NAMESPACE = 3,
    LABELS = 4,
    ANNOTATIONS = 5,
    UID = 6,
    RESOURCE_VERSION = 7,
    GENERATION = 8,
    GENERATE_NAME = 9,
    CREATION_TIMESTAMP = 10,
    OBJECT_META = 11,
    TYPE_META = 12,
    API_VERSION = 13,
    KIND = 14,
    SPEC = 15,
    CONNECTOR_CLASS_NAME = 16,
    ADDRESS = 17,
    AUTH = 18,
    PARAMS = 19,
    SECRET_REF = 20,
    ADDRESS_EXTENSIONS = 21,
    CA_CERT_SECRET_REF = 22,
    VALUE = 23,
    TYPE = 24,
    STRING_VAL = 25,
    ARRAY_VAL = 26,
    OBJECT_VAL = 27,
    STRING_DATA = 28,
);

impl Fields {
    /// Every field.
    #[cfg(test)]
    pub(crate) fn all() -> Self {
        Fields(u64::MAX)
    }

    /// The fields whose names appear as words in `text`.
    pub(crate) fn used_by(text: &str) -> Self {
        let mut bits = 0u64;
        for word in text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
            if let Some(i) = FIELD_NAMES.iter().position(|n| *n == word) {
                bits |= 1 << i;
            }
        }
        Fields(bits)
    }

    pub(crate) fn union(self, other: Fields) -> Fields {
        Fields(self.0 | other.0)
    }

    /// Whether the text names the Secret (`.Secret`, `$.Secret`, `index . "Secret"`).
    pub(crate) fn reads_secret(self) -> bool {
        self.has(SECRET)
    }

    fn has(self, f: F) -> bool {
        self.0 & (1 << f.0) != 0
    }
}

/// An object under construction that keeps only the wanted fields.
struct Obj {
    fields: Fields,
    map: HashMap<String, Value>,
}

impl Obj {
    fn new(fields: Fields) -> Self {
        Obj {
            fields,
            map: HashMap::new(),
        }
    }

    fn put(mut self, f: F, value: impl FnOnce() -> Value) -> Self {
        if self.fields.has(f) {
            self.map.insert(FIELD_NAMES[f.0].to_string(), value());
        }
        self
    }

    fn object(self) -> Value {
        Value::Object(self.map)
    }
}

/// The data a probe template sees: `.Connector` (Go field names of the original
/// types) and `.Secret` (nil when there is no Secret, so `{{ if .Secret }}` is false),
/// limited to `fields`.
pub(crate) fn template_context(
    connector: &Connector,
    secret: Option<&SecretMaterial>,
    fields: Fields,
) -> Context {
    let mut root = HashMap::new();
    if fields.has(CONNECTOR) {
        root.insert("Connector".to_string(), connector_value(connector, fields));
    }
    if fields.has(SECRET) {
        root.insert(
            "Secret".to_string(),
            match secret {
                Some(s) => secret_value(s, fields),
                None => Value::Nil,
            },
        );
    }
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

const API_VERSION_VALUE: &str = "connectors.alauda.io/v1alpha1";

fn connector_value(c: &Connector, f: Fields) -> Value {
    let meta = &c.metadata;
    let creation = || {
        s(meta
            .creation_timestamp
            .as_ref()
            .map(|t| t.0.to_string())
            .unwrap_or_default())
    };
    // ObjectMeta and TypeMeta are embedded in the Go struct, so their fields are also
    // reachable directly (`.Connector.Name`).
    let with_meta = |o: Obj| {
        o.put(NAME, || opt_s(&meta.name))
            .put(NAMESPACE, || opt_s(&meta.namespace))
            .put(LABELS, || string_map(meta.labels.iter().flatten()))
            .put(ANNOTATIONS, || {
                string_map(meta.annotations.iter().flatten())
            })
            .put(UID, || opt_s(&meta.uid))
            .put(RESOURCE_VERSION, || opt_s(&meta.resource_version))
            .put(GENERATION, || {
                Value::from(meta.generation.unwrap_or_default())
            })
            .put(GENERATE_NAME, || opt_s(&meta.generate_name))
            .put(CREATION_TIMESTAMP, creation)
    };
    let with_type = |o: Obj| {
        o.put(API_VERSION, || s(API_VERSION_VALUE))
            .put(KIND, || s("Connector"))
    };
    let spec = &c.spec;
    let auth = spec.auth.as_ref();
    let auth_value = || {
        Obj::new(f)
            .put(NAME, || {
                s(auth.and_then(|a| a.name.clone()).unwrap_or_default())
            })
            .put(PARAMS, || {
                params_value(auth.and_then(|a| a.params.as_deref()), f)
            })
            .put(SECRET_REF, || {
                auth.and_then(|a| a.secret_ref.as_ref())
                    .map(|r| {
                        Obj::new(f)
                            .put(NAME, || opt_s(&r.name))
                            .put(NAMESPACE, || opt_s(&r.namespace))
                            .put(KIND, || opt_s(&r.kind))
                            .put(API_VERSION, || opt_s(&r.api_version))
                            .object()
                    })
                    .unwrap_or(Value::Nil)
            })
            .object()
    };
    let spec_value = || {
        Obj::new(f)
            .put(CONNECTOR_CLASS_NAME, || {
                s(spec.connector_class_name.clone())
            })
            .put(ADDRESS, || opt_s(&spec.address))
            .put(AUTH, auth_value)
            .put(PARAMS, || params_value(spec.params.as_deref(), f))
            .put(ADDRESS_EXTENSIONS, || {
                params_value(spec.address_extensions.as_deref(), f)
            })
            .put(CA_CERT_SECRET_REF, || {
                spec.ca_cert_secret_ref
                    .as_ref()
                    .map(|r| Obj::new(f).put(NAME, || s(r.name.clone())).object())
                    .unwrap_or(Value::Nil)
            })
            .object()
    };
    with_type(with_meta(Obj::new(f)))
        .put(OBJECT_META, || with_meta(Obj::new(f)).object())
        .put(TYPE_META, || with_type(Obj::new(f)).object())
        .put(SPEC, spec_value)
        .object()
}

fn params_value(params: Option<&[Param]>, f: Fields) -> Value {
    Value::Array(
        params
            .unwrap_or_default()
            .iter()
            .map(|p| param_value(p, f))
            .collect(),
    )
}

/// A Tekton `Param`: `.Name`, `.Value.Type`, `.Value.StringVal`, `.Value.ArrayVal`,
/// `.Value.ObjectVal` (the unused ones hold Go zero values).
fn param_value(p: &Param, f: Fields) -> Value {
    let value = || {
        let (string_val, array_val, object_val): (&str, &[String], Option<_>) = match &p.value {
            ParamValue::String(v) => (v, &[], None),
            ParamValue::Array(v) => ("", v, None),
            ParamValue::Object(v) => ("", &[], Some(v)),
        };
        Obj::new(f)
            .put(TYPE, || s(p.value.type_name()))
            .put(STRING_VAL, || s(string_val))
            .put(ARRAY_VAL, || {
                Value::Array(array_val.iter().map(|x| s(x.clone())).collect())
            })
            .put(OBJECT_VAL, || match object_val {
                Some(m) => string_map(m),
                None => Value::Map(HashMap::new()),
            })
            .object()
    };
    Obj::new(f)
        .put(NAME, || s(p.name.clone()))
        .put(VALUE, value)
        .object()
}

fn secret_value(secret: &SecretMaterial, f: Fields) -> Value {
    Obj::new(f)
        .put(NAME, || s(secret.name.clone()))
        .put(TYPE, || s(secret.type_.clone()))
        .put(STRING_DATA, || string_map(&secret.data))
        .object()
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
