//! Rego policies of a class: compiled once (v1 syntax, else v0), and the auth
//! generator evaluated per auth probe.

use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::Duration;

use regorus::utils::limits::ExecutionTimerConfig;
use regorus::{Engine, Value};

use super::bounds::{
    COMPILE_DEADLINE, COMPILE_STACK, Language, REGO_LIMITS, check_source, grace, run_bounded,
};

/// Stack of the thread that evaluates a policy: evaluation recurses along rules that
/// depend on one another (about 20 KiB a rule in a debug build), which the names
/// limit of [`REGO_LIMITS`] bounds to about 500.
const EVAL_STACK: usize = 64 * 1024 * 1024;

/// A compiled policy, ready to evaluate one rule. Evaluation runs on a clone of the
/// prepared engine (kept in a small pool for reuse, since cloning costs more than
/// evaluating), bounded by regorus' cooperative execution timer.
pub(crate) struct RegoPolicy {
    engine: Engine,
    pool: Mutex<Vec<Engine>>,
    rule: String,
    timeout: Duration,
}

/// Prepared engines kept for reuse at most.
const POOL_MAX: usize = 8;

impl std::fmt::Debug for RegoPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RegoPolicy({})", self.rule)
    }
}

impl RegoPolicy {
    /// Compiles `source`, which must be `package {package}` and define `{rule}`. Rego
    /// v1 is tried first, then v0 (rule bodies without `if`); the error reported is
    /// the one of the syntax the policy seems to use.
    pub(crate) fn compile(
        source: &str,
        package: &str,
        rule: &str,
        timeout: Duration,
    ) -> Result<RegoPolicy, String> {
        // Parsing and analysis recurse, and their time grows exponentially with the
        // nesting: bound the source first, then compile off the caller's thread with
        // a stack of its own and a deadline.
        check_source(source, Language::Rego, &REGO_LIMITS)?;
        let (source, package, rule) = (source.to_string(), package.to_string(), rule.to_string());
        run_bounded("compiling", COMPILE_STACK, COMPILE_DEADLINE, move || {
            Self::compile_inner(&source, &package, &rule, timeout).map_err(|e| one_line(&e))
        })?
    }

    /// Like [`RegoPolicy::compile`], for a policy this operator evaluates itself:
    /// also refuses `numbers.range`/`numbers.range_step`, the builtins that allocate
    /// their whole result in one call (which no execution timer interrupts, and a
    /// huge span would exhaust memory), and that an auth generator has no use for.
    pub(crate) fn compile_generator(source: &str, timeout: Duration) -> Result<RegoPolicy, String> {
        if source.contains("numbers.range") {
            return Err(
                "numbers.range and numbers.range_step are not allowed in a generator".to_string(),
            );
        }
        Self::compile(source, "proxy", "auth", timeout)
    }

    fn compile_inner(
        source: &str,
        package: &str,
        rule: &str,
        timeout: Duration,
    ) -> Result<RegoPolicy, String> {
        let v1 = Self::compile_as(source, package, rule, timeout, false);
        let v1_err = match v1 {
            Ok(p) => return Ok(p),
            Err(e) => e,
        };
        match Self::compile_as(source, package, rule, timeout, true) {
            Ok(p) => Ok(p),
            Err(v0_err) => {
                // A policy written for v1 (with `if`/`contains` or `import rego.v1`)
                // is best explained by the v1 parser, any other by the v0 one.
                if looks_like_v1(source) {
                    Err(v1_err)
                } else {
                    Err(v0_err)
                }
            }
        }
    }

    fn compile_as(
        source: &str,
        package: &str,
        rule: &str,
        timeout: Duration,
        v0: bool,
    ) -> Result<RegoPolicy, String> {
        let mut engine = Engine::new();
        engine.set_rego_v0(v0);
        engine.set_execution_timer_config(timer(timeout));
        let found = engine
            .add_policy("policy.rego".to_string(), source.to_string())
            .map_err(|e| e.to_string())?;
        let expected = format!("data.{package}");
        if found != expected {
            return Err(format!(
                "the policy must be in package `{package}`, not `{}`",
                found.trim_start_matches("data.")
            ));
        }
        let rule_path = format!("{expected}.{rule}");
        let declared = engine
            .has_declared_rule_rooted_at("policy.rego", rule)
            .map_err(|e| e.to_string())?;
        if !declared {
            return Err(format!(
                "the policy must define the rule `{rule}` in package `{package}`"
            ));
        }
        // Analyses the whole policy (unknown functions, unsafe variables, ...) and
        // leaves the engine prepared, so clones evaluate without re-analysing.
        engine
            .compile_with_entrypoint(&rule_path.as_str().into())
            .map_err(|e| e.to_string())?;
        Ok(RegoPolicy {
            pool: Mutex::new(Vec::new()),
            engine,
            rule: rule_path,
            timeout,
        })
    }

    /// Evaluates the rule with `input`: `None` when it is undefined. Runs on a thread
    /// of its own; the execution timer ends it at the timeout, and the wait gives up
    /// shortly after in any case.
    pub(crate) fn evaluate(&self, input: Value) -> Result<Option<serde_json::Value>, String> {
        let pooled = self.pool.lock().ok().and_then(|mut p| p.pop());
        let mut engine = pooled.unwrap_or_else(|| {
            let mut e = self.engine.clone();
            e.set_execution_timer_config(timer(self.timeout));
            e
        });
        let rule = self.rule.clone();
        let wait = grace(self.timeout);
        let (engine, value) = run_bounded("evaluation", EVAL_STACK, wait, move || {
            engine.set_input(input);
            let value = engine.eval_rule(rule);
            // The input holds Secret data: do not keep it around in the pool.
            engine.set_input(Value::new_object());
            (engine, value)
        })?;
        // An engine whose evaluation failed is dropped rather than reused.
        let value = value.map_err(|e| without_values(&one_line(&e.to_string())))?;
        if let Ok(mut pool) = self.pool.lock()
            && pool.len() < POOL_MAX
        {
            pool.push(engine);
        }
        if value == Value::Undefined {
            return Ok(None);
        }
        serde_json::to_value(&value)
            .map(Some)
            .map_err(|e| e.to_string())
    }
}

fn timer(limit: Duration) -> ExecutionTimerConfig {
    ExecutionTimerConfig {
        limit,
        check_interval: NonZeroU32::MIN.saturating_add(63),
    }
}

fn looks_like_v1(source: &str) -> bool {
    source.contains("import rego.v1")
        || source
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '.'))
            .any(|w| w == "if" || w == "contains")
}

/// regorus reports `--> file:line:col`, a source excerpt and `error: what`; this
/// makes it one line: `policy.rego:2:10: what`.
/// An evaluation error without the values it quotes: regorus puts the offending value
/// in backticks or quotes (`max requires array/set argument. Got `{..}``), and at
/// evaluation that value may be a transformed Secret (`upper(input.data.token)`) that
/// no redactor knows. The location and the kind of error stay.
fn without_values(message: &str) -> String {
    let cut = message.find(['`', '"', '\'']).unwrap_or(message.len());
    let kept = message[..cut].trim_end();
    let kept = kept.strip_suffix("Got").unwrap_or(kept).trim_end();
    if cut < message.len() {
        format!("{kept} (value not shown)")
    } else {
        kept.to_string()
    }
}

fn one_line(message: &str) -> String {
    let location = message
        .lines()
        .find_map(|l| l.trim().strip_prefix("--> "))
        .map(str::trim);
    let what: Vec<&str> = message
        .lines()
        .filter_map(|l| l.trim().strip_prefix("error: "))
        .map(str::trim)
        .collect();
    match (location, what.is_empty()) {
        (Some(loc), false) => format!("{loc}: {}", what.join("; ")),
        _ => message.split_whitespace().collect::<Vec<_>>().join(" "),
    }
}
