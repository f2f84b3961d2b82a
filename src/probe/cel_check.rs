//! `response.cel`: compiled once per class generation, evaluated per response.

use crate::inject::canonical_header_name;
use std::collections::HashMap;
use std::sync::{Arc, LazyLock};

use std::time::{Duration, Instant};

use cel::common::ast::{CallExpr, EntryExpr, Expr, MapExpr, StructExpr, operators};
use cel::objects::{Key, Map};
use cel::parser::Expression;
use cel::{Context, Env, ExecutionError, Value};

use super::bounds::{
    CEL_LIMITS, COMPILE_DEADLINE, COMPILE_STACK, Language, check_source, grace, run_bounded,
};
use super::cel_names::check_names;
use super::engine_pool::EnginePool;
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

/// Stack of the thread that evaluates (recursion per level of the syntax tree and
/// of the response's JSON, which `serde_json` bounds at 128 levels).
const EVAL_STACK: usize = 16 * 1024 * 1024;
/// The threads evaluations run on: as many as evaluations run at once, at most this
/// many (beyond it they queue; each ends within its deadline).
static EVAL_POOL: EnginePool = EnginePool::new("cel-eval", EVAL_STACK, 32);
/// Wall-clock bound of evaluating one expression, with [`CelCheck::compile`] (the
/// default `ProbeSettings::eval_timeout`; [`CelCheck::compile_with`] takes another).
#[cfg(test)]
pub(crate) const DEFAULT_EVAL_DEADLINE: Duration = Duration::from_millis(500);
/// Macros (`all`, `exists`, `exists_one`, `map`, `filter`) nested in one another at
/// most: each level multiplies the cost by the size of a list.
pub(crate) const MAX_COMPREHENSION_NESTING: usize = 3;
/// The function the compiler wraps around each loop step: it returns its argument,
/// or fails once the evaluation's deadline has passed. `@` cannot be written in CEL.
const DEADLINE_FN: &str = "@deadline";

/// A compiled `response.cel`.
pub(crate) struct CelCheck {
    expr: Arc<Expression>,
    /// The source: an error may name what the expression itself holds.
    source: Arc<str>,
    deadline: Duration,
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
    /// Evaluation failed; what went wrong, without the values involved.
    Error(String),
}

impl CelCheck {
    /// Compiles with the default evaluation deadline (tests).
    #[cfg(test)]
    pub(crate) fn compile(source: &str) -> Result<CelCheck, String> {
        Self::compile_with(source, DEFAULT_EVAL_DEADLINE)
    }

    /// Checks the source against [`CEL_LIMITS`], then parses it on a thread of its
    /// own (stack [`COMPILE_STACK`], deadline [`COMPILE_DEADLINE`]); refuses macros
    /// nested deeper than [`MAX_COMPREHENSION_NESTING`] and `lists.range` (which
    /// allocates its whole result in one call); and makes every loop check
    /// `eval_deadline`.
    pub(crate) fn compile_with(source: &str, eval_deadline: Duration) -> Result<CelCheck, String> {
        check_source(source, Language::Cel, &CEL_LIMITS)?;
        let owned = source.to_string();
        let expr = run_bounded("compiling", COMPILE_STACK, COMPILE_DEADLINE, move || {
            let mut expr = ENV
                .parser()
                .parse(&owned)
                .map_err(|e| one_line(&e.to_string()))?;
            let nesting = comprehension_nesting(&expr);
            if nesting > MAX_COMPREHENSION_NESTING {
                return Err(format!(
                    "macros (all, exists, exists_one, map, filter) nested {nesting} deep, at most {MAX_COMPREHENSION_NESTING} are allowed"
                ));
            }
            if calls_lists_range(&expr) {
                return Err("lists.range is not allowed".to_string());
            }
            check_names(&expr, &ENV)?;
            instrument(&mut expr);
            Ok(expr)
        })??;
        Ok(CelCheck {
            expr: Arc::new(expr),
            source: Arc::from(source),
            deadline: eval_deadline,
        })
    }

    /// Evaluates on a thread of [`EVAL_POOL`], within the deadline: every loop fails
    /// once it has passed, and the wait gives up shortly after it in any case.
    pub(crate) async fn evaluate(&self, response: &HttpResponse) -> CelVerdict {
        let expr = Arc::clone(&self.expr);
        let deadline = self.deadline;
        let parts = (
            response.status,
            response.headers.clone(),
            response.body.clone(),
            response.truncated,
        );
        let run = move || {
            let mut ctx = Context::with_env(ENV.clone());
            ctx.add_variable_from_value("response", response_value(parts));
            // No deadline for one too far to represent.
            let end = Instant::now().checked_add(deadline);
            let added = ctx.add_function(
                DEADLINE_FN,
                move |v: Value| -> Result<Value, ExecutionError> {
                    if end.is_some_and(|end| Instant::now() >= end) {
                        Err(ExecutionError::function_error(DEADLINE_FN, "deadline"))
                    } else {
                        Ok(v)
                    }
                },
            );
            if added.is_err() {
                return Err(ExecutionError::InternalError(DEADLINE_SETUP_FAILED.into()));
            }
            ctx.resolve(&expr)
        };
        match EVAL_POOL.run("evaluation", grace(deadline), run).await {
            Ok(Ok(Value::Bool(true))) => CelVerdict::True,
            Ok(Ok(Value::Bool(false))) => CelVerdict::False,
            Ok(Ok(other)) => CelVerdict::NotBool(other.type_of().to_string()),
            Ok(Err(e)) => CelVerdict::Error(describe(&e, &self.source, deadline)),
            Err(e) => CelVerdict::Error(e),
        }
    }
}

/// What went wrong, naming the expression's problem and types, never a value: the
/// values come from the response, and a condition message must not carry them. A
/// missing key is named when the expression itself holds it.
fn describe(e: &ExecutionError, source: &str, deadline: Duration) -> String {
    fn ty(v: &Value) -> String {
        v.type_of().to_string()
    }
    match e {
        ExecutionError::FunctionError { function, .. } if function == DEADLINE_FN => format!(
            "evaluation exceeded its deadline of {} ms",
            deadline.as_millis()
        ),
        ExecutionError::InvalidArgumentCount { expected, actual } => {
            format!("invalid argument count: expected {expected}, got {actual}")
        }
        ExecutionError::UnsupportedTargetType { target } => {
            format!("invalid argument type: {}", ty(target))
        }
        ExecutionError::NotSupportedAsMethod { method, target } => {
            format!("method '{method}' not supported on type {}", ty(target))
        }
        ExecutionError::UnsupportedKeyType(v) => format!("unable to use a {} as a key", ty(v)),
        ExecutionError::UnexpectedType { got, want } => {
            format!("unexpected type: got {got}, want {want}")
        }
        ExecutionError::NoSuchKey(k) if is_named_in(source, k) => format!("no such key: {k}"),
        ExecutionError::NoSuchKey(_) => "no such key".to_string(),
        // Function name and argument types only.
        ExecutionError::NoSuchOverload(o) => o.to_string(),
        ExecutionError::UndeclaredReference(name) if is_named_in(source, name) => {
            format!("undeclared reference to '{name}'")
        }
        ExecutionError::UndeclaredReference(_) => "undeclared reference".to_string(),
        ExecutionError::MissingArgumentOrTarget => "missing argument or target".to_string(),
        ExecutionError::ValuesNotComparable(a, b) => {
            format!("a {} can not be compared to a {}", ty(a), ty(b))
        }
        ExecutionError::UnsupportedBinaryOperator(op, a, b) => format!(
            "unsupported binary operator '{op}' on {} and {}",
            ty(a),
            ty(b)
        ),
        ExecutionError::UnsupportedIndex(i, v) => {
            format!("cannot use a {} to index a {}", ty(i), ty(v))
        }
        ExecutionError::FunctionError { function, .. } => {
            format!("function '{function}' failed on its arguments")
        }
        ExecutionError::DivisionByZero(_) => "division by zero".to_string(),
        ExecutionError::RemainderByZero(_) => "remainder by zero".to_string(),
        ExecutionError::Overflow(op, _, _) => format!("overflow from operator '{op}'"),
        ExecutionError::IndexOutOfBounds(_) => "index out of bounds".to_string(),
        ExecutionError::DuplicateKey(_) => "repeated map key".to_string(),
        ExecutionError::InternalError(m) if m == DEADLINE_SETUP_FAILED => m.clone(),
        _ => "evaluation error".to_string(),
    }
}

/// Our own internal error: the evaluation could not be set up.
const DEADLINE_SETUP_FAILED: &str = "could not install the evaluation deadline check";

/// `name` appears in the source as a whole word (an identifier or a quoted key), so it
/// is the expression's, not a piece of the response that happens to be a substring.
fn is_named_in(source: &str, name: &str) -> bool {
    let word = |c: char| c.is_alphanumeric() || c == '_';
    !name.is_empty()
        && source.match_indices(name).any(|(at, _)| {
            let before = source[..at].chars().next_back();
            let after = source[at + name.len()..].chars().next();
            !before.is_some_and(word) && !after.is_some_and(word)
        })
}

/// How deep comprehensions (expanded macros) nest in one another. Recurses per level
/// of the tree, which [`CEL_LIMITS`] bounds; runs on the compile thread.
fn comprehension_nesting(e: &Expression) -> usize {
    let own = usize::from(matches!(e.expr, Expr::Comprehension(_)));
    let mut deepest = 0;
    for_each_child(e, &mut |child| {
        deepest = deepest.max(comprehension_nesting(child));
    });
    own + deepest
}

/// Whether `lists.range(...)` is called anywhere (parsed as `range` on `lists`).
fn calls_lists_range(e: &Expression) -> bool {
    let here = match &e.expr {
        Expr::Call(c) => {
            c.func_name == "lists.range"
                || (c.func_name == "range"
                    && c.target.as_deref().is_some_and(
                        |t| matches!(&t.expr, Expr::Ident(n) if n == "lists" || n == ".lists"),
                    ))
        }
        _ => false,
    };
    let mut found = here;
    for_each_child(e, &mut |child| found = found || calls_lists_range(child));
    found
}

pub(super) fn for_each_child<'e>(e: &'e Expression, f: &mut dyn FnMut(&'e Expression)) {
    match &e.expr {
        Expr::Comprehension(c) => {
            for child in [
                &c.iter_range,
                &c.accu_init,
                &c.loop_cond,
                &c.loop_step,
                &c.result,
            ] {
                f(child);
            }
        }
        Expr::Call(c) => {
            if let Some(t) = c.target.as_deref() {
                f(t);
            }
            c.args.iter().for_each(f);
        }
        Expr::List(l) => l.elements.iter().for_each(f),
        Expr::Map(MapExpr { entries }) | Expr::Struct(StructExpr { entries, .. }) => {
            for entry in entries {
                match &entry.expr {
                    EntryExpr::StructField(field) => f(&field.value),
                    EntryExpr::MapEntry(m) => {
                        f(&m.key);
                        f(&m.value);
                    }
                }
            }
        }
        Expr::Select(s) => f(&s.operand),
        Expr::Ident(_) | Expr::Literal(_) | Expr::Unspecified => {}
    }
}

fn for_each_child_mut(e: &mut Expression, f: &mut dyn FnMut(&mut Expression)) {
    match &mut e.expr {
        Expr::Comprehension(c) => {
            let c = &mut **c;
            for child in [
                &mut c.iter_range,
                &mut c.accu_init,
                &mut c.loop_cond,
                &mut c.loop_step,
                &mut c.result,
            ] {
                f(child);
            }
        }
        Expr::Call(c) => {
            if let Some(t) = c.target.as_deref_mut() {
                f(t);
            }
            c.args.iter_mut().for_each(f);
        }
        Expr::List(l) => l.elements.iter_mut().for_each(f),
        Expr::Map(MapExpr { entries }) | Expr::Struct(StructExpr { entries, .. }) => {
            for entry in entries {
                match &mut entry.expr {
                    EntryExpr::StructField(field) => f(&mut field.value),
                    EntryExpr::MapEntry(m) => {
                        f(&mut m.key);
                        f(&mut m.value);
                    }
                }
            }
        }
        Expr::Select(s) => f(&mut s.operand),
        Expr::Ident(_) | Expr::Literal(_) | Expr::Unspecified => {}
    }
}

/// Makes every comprehension check the deadline once per element: the part of its
/// loop step that the element decides is wrapped in [`DEADLINE_FN`]. The shapes the
/// evaluator recognises (`@result && x` and `@result || x` of `all`/`exists`,
/// `@result + [x]` and `c ? @result + [x] : @result` of `map`/`filter`) keep their
/// shape, so their semantics (errors deferred like cel-go) and speed stay.
fn instrument(e: &mut Expression) {
    for_each_child_mut(e, &mut instrument);
    let Expr::Comprehension(c) = &mut e.expr else {
        return;
    };
    let accu = c.accu_var.clone();
    let is_accu = |e: &Expression| matches!(&e.expr, Expr::Ident(n) if *n == accu);
    let step = &mut c.loop_step;
    if let Expr::Call(call) = &mut step.expr
        && call.target.is_none()
    {
        let name = call.func_name.as_str();
        match call.args.as_mut_slice() {
            [guard, _, _] if name == operators::CONDITIONAL => {
                wrap(guard);
                return;
            }
            [lhs, rhs] if name == operators::ADD && is_accu(lhs) => {
                if let Expr::List(list) = &mut rhs.expr {
                    list.elements.iter_mut().for_each(wrap);
                    return;
                }
            }
            [lhs, rhs]
                if (name == operators::LOGICAL_AND || name == operators::LOGICAL_OR)
                    && is_accu(lhs) =>
            {
                wrap(rhs);
                return;
            }
            _ => {}
        }
    }
    wrap(step);
}

/// `e` becomes `@deadline(e)`.
fn wrap(e: &mut Expression) {
    let inner = std::mem::take(e);
    *e = Expression {
        id: inner.id,
        expr: Expr::Call(CallExpr {
            func_name: DEADLINE_FN.to_string(),
            target: None,
            args: vec![inner],
        }),
    };
}

fn key(k: &str) -> Key {
    Key::String(Arc::new(k.to_string()))
}

fn string(s: String) -> Value {
    Value::String(Arc::new(s))
}

/// What evaluation needs of a response (moved to the evaluating thread).
type ResponseParts = (u16, http::HeaderMap, bytes::Bytes, bool);

/// `response`: `statusCode`, `headers` (lowercase and canonical names), `body` (JSON
/// when the whole body parses as JSON, else the text) and `bodyString`.
fn response_value(r: ResponseParts) -> Value {
    let (status, header_map, raw, truncated) = r;
    let mut headers: HashMap<Key, Vec<Value>> = HashMap::new();
    for (name, value) in header_map.iter() {
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
    let body_string = String::from_utf8_lossy(&raw).into_owned();
    let body = if truncated {
        string(body_string.clone())
    } else {
        match serde_json::from_slice::<serde_json::Value>(&raw) {
            Ok(json) => json_to_cel(json),
            Err(_) => string(body_string.clone()),
        }
    };
    let mut fields: HashMap<Key, Value> = HashMap::with_capacity(4);
    fields.insert(key("statusCode"), Value::Int(i64::from(status)));
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
