//! Compile-time name checks of a CEL expression (SPEC section 4). The cel crate parses
//! without type-checking, so an undeclared identifier or an unknown function would
//! only fail when a probe runs. This walks the parsed expression and asks the engine's
//! own environment whether each name is declared (the engine's list of functions is
//! the one that counts, not a copy of it here).

use std::collections::BTreeSet;
use std::sync::Arc;

use cel::common::ast::Expr;
use cel::parser::Expression;
use cel::{Context, Env, ExecutionError};

use super::cel_check::for_each_child;

/// The one variable a probe's CEL expression sees.
const VARIABLE: &str = "response";

/// Names a probe expression uses but the engine does not declare.
#[derive(Default)]
struct Unknown {
    identifiers: BTreeSet<String>,
    functions: BTreeSet<String>,
}

/// Err names every undeclared identifier (only `response` and the variables of
/// macros are) and every function or macro the engine does not have.
pub(super) fn check_names(expr: &Expression, env: &Arc<Env>) -> Result<(), String> {
    let mut unknown = Unknown::default();
    walk(expr, env, &mut Vec::new(), &mut unknown);
    let quoted = |names: &BTreeSet<String>| {
        names
            .iter()
            .map(|n| format!("'{n}'"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut problems = Vec::new();
    if !unknown.identifiers.is_empty() {
        problems.push(format!(
            "undeclared reference to {}: the only variable is `{VARIABLE}`",
            quoted(&unknown.identifiers)
        ));
    }
    if !unknown.functions.is_empty() {
        problems.push(format!(
            "unknown function or macro {}",
            quoted(&unknown.functions)
        ));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("; "))
    }
}

fn walk(e: &Expression, env: &Arc<Env>, scope: &mut Vec<String>, unknown: &mut Unknown) {
    match &e.expr {
        Expr::Ident(name) => {
            let bound = name.starts_with('@') || name == VARIABLE || scope.contains(name);
            if !bound && !declared(env, name) {
                unknown.identifiers.insert(name.clone());
            }
        }
        Expr::Call(call) => {
            // Operators (`_+_`, `!_`) and the internal calls macros expand to
            // (`math.@max`) are the engine's own.
            let operator = !call
                .func_name
                .starts_with(|c: char| c.is_ascii_alphabetic())
                || call.func_name.contains('@');
            let qualified = call.target.as_deref().and_then(|t| match &t.expr {
                Expr::Ident(ns) if !scope.contains(ns) && ns != VARIABLE => {
                    Some(format!("{ns}.{}()", call.func_name))
                }
                _ => None,
            });
            match (&call.target, qualified) {
                // `math.greatest(..)`: a namespaced function, not a variable `math`.
                (Some(_), Some(probe)) if declared(env, &probe) => {}
                (Some(target), _) => {
                    walk(target, env, scope, unknown);
                    if !operator && !declared(env, &format!("null.{}()", call.func_name)) {
                        unknown.functions.insert(call.func_name.clone());
                    }
                }
                (None, _) => {
                    if !operator && !declared(env, &format!("{}()", call.func_name)) {
                        unknown.functions.insert(call.func_name.clone());
                    }
                }
            }
            for arg in &call.args {
                walk(arg, env, scope, unknown);
            }
        }
        Expr::Comprehension(c) => {
            walk(&c.iter_range, env, scope, unknown);
            walk(&c.accu_init, env, scope, unknown);
            let outer = scope.len();
            scope.push(c.iter_var.clone());
            scope.extend(c.iter_var2.clone());
            scope.push(c.accu_var.clone());
            for part in [&c.loop_cond, &c.loop_step, &c.result] {
                walk(part, env, scope, unknown);
            }
            scope.truncate(outer);
        }
        // Every other node: its children, as the engine's own tree walk sees them.
        _ => for_each_child(e, &mut |child| walk(child, env, scope, unknown)),
    }
}

/// Whether the engine resolves `source` (a name, or a call with no arguments) to
/// something declared: any outcome but "undeclared reference" (a wrong argument count
/// is an overload error, which means the function exists).
fn declared(env: &Arc<Env>, source: &str) -> bool {
    let Ok(expr) = env.parser().parse(source) else {
        return false;
    };
    let ctx = Context::with_env(env.clone());
    !matches!(
        ctx.resolve(&expr),
        Err(ExecutionError::UndeclaredReference(_))
    )
}

#[cfg(test)]
mod tests {
    use crate::probe::cel_check::CelCheck;

    fn compile_error(source: &str) -> String {
        match CelCheck::compile(source) {
            Ok(_) => panic!("{source:?} compiled"),
            Err(e) => e,
        }
    }

    /// Issue 13: an early published draft used undeclared variables; an unknown
    /// function passed too. Both must be compile errors, not probe-time failures.
    #[test]
    fn undeclared_names_and_unknown_functions_do_not_compile() {
        let e = compile_error("statusCode == 200 && bodyJSON.status == 'UP'");
        assert!(
            e.contains("undeclared reference to 'bodyJSON', 'statusCode'"),
            "{e}"
        );
        assert!(e.contains("the only variable is `response`"), "{e}");
        let e = compile_error("foo(1)");
        assert!(e.contains("unknown function or macro 'foo'"), "{e}");
        let e = compile_error("response.body.items.allx(i, i > 0)");
        assert!(e.contains("'allx'"), "{e}");
        let e = compile_error("response.bodyString.startswith('x')");
        assert!(e.contains("'startswith'"), "{e}");
        let e = compile_error("[1].exists(x, y > 0)");
        assert!(e.contains("'y'") && !e.contains("'x'"), "{e}");
        let e = compile_error("notmath.greatest(1, 2) == 2");
        assert!(e.contains("'notmath'"), "{e}");
    }

    #[test]
    fn declared_names_compile() {
        for source in [
            "response.statusCode == 200 && response.body.status == 'healthy'",
            "response.body.uptime > 60 && response.body.errors.size() == 0",
            "response.headers['content-type'][0].startsWith('application/json')",
            "response.body.contains('ok') || size(response.bodyString) > 0",
            "response.body.items.all(i, i.ready) && [1, 2].exists(x, x > 1)",
            "response.body.items.map(i, i.name).filter(n, n != '').size() >= 0",
            "type(response.body) == map && int('1') == 1 && double(response.statusCode) > 0.0",
            "has(response.body.status) && response.bodyString.matches('^ok')",
            "math.greatest(1, 2) == 2 && 'A'.lowerAscii() == 'a'",
            "base64.encode(b'x') != '' && dyn(response.statusCode) == 200",
        ] {
            if let Err(e) = CelCheck::compile(source) {
                panic!("{source:?}: {e}");
            }
        }
    }
}
