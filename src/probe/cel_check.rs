//! `response.cel`: compiled once per class generation, evaluated per response.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock};

use cel::objects::{Key, Map};
use cel::{Context, Env, Program, Value};

use super::http::HttpResponse;

/// The CEL environment: the standard library plus the strings, lists, math and
/// encoders extensions (as Kubernetes offers them).
static ENV: LazyLock<Arc<Env>> = LazyLock::new(|| {
    let mut env = Env::stdlib();
    for ext in [
        cel::extensions::strings as fn(&mut Env) -> Result<(), cel::DeclarationError>,
        cel::extensions::lists,
        cel::extensions::math,
        cel::extensions::encoders,
    ] {
        if let Err(e) = env.add_extension(ext) {
            tracing::error!(error = %e, "could not add a CEL extension");
        }
    }
    Arc::new(env)
});

/// A compiled `response.cel`.
pub(crate) struct CelCheck {
    program: Program,
}

impl std::fmt::Debug for CelCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CelCheck")
    }
}

/// What evaluating the expression gave.
#[derive(Debug, PartialEq)]
pub(crate) enum CelVerdict {
    True,
    False,
    /// The expression did not give a boolean; the type it gave.
    NotBool(String),
    /// Evaluation failed; the evaluator's message.
    Error(String),
}

impl CelCheck {
    pub(crate) fn compile(source: &str) -> Result<CelCheck, String> {
        let program = ENV.compile(source).map_err(|e| one_line(&e.to_string()))?;
        Ok(CelCheck { program })
    }

    pub(crate) fn evaluate(&self, response: &HttpResponse) -> CelVerdict {
        let mut ctx = Context::with_env(ENV.clone());
        ctx.add_variable_from_value("response", response_value(response));
        match self.program.execute(&ctx) {
            Ok(Value::Bool(true)) => CelVerdict::True,
            Ok(Value::Bool(false)) => CelVerdict::False,
            Ok(other) => CelVerdict::NotBool(other.type_of().to_string()),
            Err(e) => CelVerdict::Error(e.to_string()),
        }
    }
}

fn key(k: &str) -> Key {
    Key::String(Arc::new(k.to_string()))
}

fn string(s: String) -> Value {
    Value::String(Arc::new(s))
}

/// `response`: `statusCode`, `headers` (lowercase and canonical names), `body` (JSON
/// when the whole body parses as JSON, else the text) and `bodyString`.
fn response_value(r: &HttpResponse) -> Value {
    let mut headers: HashMap<Key, Vec<Value>> = HashMap::new();
    for (name, value) in r.headers.iter() {
        let v = string(String::from_utf8_lossy(value.as_bytes()).into_owned());
        let lower = name.as_str();
        headers.entry(key(lower)).or_default().push(v.clone());
        let canonical = canonical_header_name(lower);
        if canonical != lower {
            headers.entry(key(&canonical)).or_default().push(v);
        }
    }
    let headers: HashMap<Key, Value> = headers
        .into_iter()
        .map(|(k, v)| (k, Value::List(Arc::new(v))))
        .collect();
    let body_string = String::from_utf8_lossy(&r.body).into_owned();
    let body = if r.truncated {
        string(body_string.clone())
    } else {
        match serde_json::from_slice::<serde_json::Value>(&r.body) {
            Ok(json) => json_to_cel(json),
            Err(_) => string(body_string.clone()),
        }
    };
    let mut fields: HashMap<Key, Value> = HashMap::with_capacity(4);
    fields.insert(key("statusCode"), Value::Int(i64::from(r.status)));
    fields.insert(
        key("headers"),
        Value::Map(Map {
            map: Arc::new(headers),
        }),
    );
    fields.insert(key("body"), body);
    fields.insert(key("bodyString"), string(body_string));
    Value::Map(Map {
        map: Arc::new(fields),
    })
}

fn json_to_cel(v: serde_json::Value) -> Value {
    match v {
        serde_json::Value::Null => Value::Null,
        serde_json::Value::Bool(b) => Value::Bool(b),
        serde_json::Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                Value::Int(i)
            } else if let Some(u) = n.as_u64() {
                Value::UInt(u)
            } else {
                Value::Float(n.as_f64().unwrap_or(f64::NAN))
            }
        }
        serde_json::Value::String(s) => string(s),
        serde_json::Value::Array(a) => {
            Value::List(Arc::new(a.into_iter().map(json_to_cel).collect()))
        }
        serde_json::Value::Object(o) => Value::Map(Map {
            map: Arc::new(
                o.into_iter()
                    .map(|(k, v)| (Key::String(Arc::new(k)), json_to_cel(v)))
                    .collect(),
            ),
        }),
    }
}

/// Go's `http.CanonicalHeaderKey`: `content-type` -> `Content-Type`.
pub(crate) fn canonical_header_name(name: &str) -> String {
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

/// The parser reports each error as `ERROR: <input>:1:23: what` plus a source excerpt;
/// this keeps `1:23: what` of each.
fn one_line(message: &str) -> String {
    let errors: Vec<&str> = message
        .lines()
        .filter(|l| !l.starts_with('|') && !l.trim().is_empty())
        .map(|l| {
            l.trim()
                .trim_start_matches("ERROR: ")
                .trim_start_matches("<input>:")
        })
        .collect();
    errors.join("; ")
}
