//! Hostile CEL and Rego (issue 20, items 2, 3, 5 and 8): long and deep sources are
//! compile errors, never a stack overflow or a stall; evaluation is bounded in time;
//! evaluation errors do not quote response values.

use std::sync::mpsc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::HeaderMap;

use super::{build, class, connector, wait};
use crate::probe::bounds::{CEL_LIMITS, Language, REGO_LIMITS, check_source};
use crate::probe::cel_check::{CelCheck, CelVerdict};
use crate::probe::rego_auth::RegoPolicy;
use crate::probe::{CompiledClass, FailureReason, HttpResponse, ProbeKind};

/// Runs `f` on a thread with the 2 MiB stack of a tokio worker, failing the test
/// when it does not return within `limit`. A stack overflow aborts the test binary.
fn on_worker_stack<T: Send + 'static>(
    limit: Duration,
    f: impl FnOnce() -> T + Send + 'static,
) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::Builder::new()
        .stack_size(2 * 1024 * 1024)
        .spawn(move || {
            let _ = tx.send(f());
        })
        .unwrap();
    rx.recv_timeout(limit)
        .unwrap_or_else(|_| panic!("did not return within {limit:?}"))
}

fn repeat(head: &str, unit: &str, tail: &str, n: usize) -> String {
    let mut s = String::from(head);
    for _ in 0..n {
        s.push_str(unit);
    }
    s.push_str(tail);
    s
}

fn nested(open: &str, inner: &str, close: &str, n: usize) -> String {
    format!("{}{inner}{}", open.repeat(n), close.repeat(n))
}

/// Left-deep, right-deep and nested shapes, long and short, many of them beyond the
/// ones the issue names.
fn hostile_cel() -> Vec<(&'static str, String)> {
    vec![
        ("member chain", repeat("response", ".a", " == 1", 5000)),
        ("unicode member chain", repeat("response", ".ü", "", 3000)),
        ("index chain", repeat("response.body", "[0]", "", 3000)),
        (
            "string index chain",
            repeat("response.body", "['k']", "", 2000),
        ),
        ("optional chain", repeat("response.body", ".?a", "", 3000)),
        ("sum", repeat("1", " + 1", " == 2", 3000)),
        ("and chain", repeat("true", " && true", "", 2500)),
        ("comparison chain", repeat("1", "<1", "", 5000)),
        (
            "string concatenation",
            repeat("'x'", "+'y'", " == ''", 2500),
        ),
        ("ternary chain", repeat("", "true ? 1 : ", "2 == 1", 1000)),
        ("negations", repeat("", "!", "true", 8000)),
        ("unary minus", repeat("", "-", "1 == 1", 8000)),
        (
            "method chain",
            repeat("response.bodyString", ".trim()", " == ''", 1500),
        ),
        ("size calls", nested("size(", "'x'", ")", 500)),
        ("parentheses", nested("(", "true", ")", 500)),
        ("lists", nested("[", "1", "]", 500)),
        ("maps", nested("{1: ", "1", "}", 300)),
        ("mixed brackets", nested("[(", "1", ")]", 300)),
        (
            "brackets after a macro",
            nested("[1].all(x, ", "x > 0", ")", 60),
        ),
        ("deep but short parentheses", nested("(", "1", ")", 40)),
        ("deep but short lists", nested("[", "1", "]", 40)),
        ("long and flat", format!("[{}1] == []", "1, ".repeat(4000))),
        (
            "grouped left-deep",
            nested("(", "response.a.a.a.a.a.a.a.a", ").a.a.a.a.a.a.a.a", 30),
        ),
        (
            "chain in a comment-free wide expression",
            repeat(
                "response.statusCode == 200",
                " && response.body.a.b.c.d == 1",
                "",
                120,
            ),
        ),
    ]
}

/// Every hostile shape is a compile error, returned quickly on a worker-sized stack.
#[test]
fn hostile_cel_is_a_compile_error_not_a_crash() {
    for (name, source) in hostile_cel() {
        let len = source.len();
        let started = Instant::now();
        let result = on_worker_stack(Duration::from_secs(20), move || {
            CelCheck::compile(&source).map(|_| ())
        });
        let err = match result {
            Ok(()) => panic!("{name} ({len} bytes) compiled"),
            Err(e) => e,
        };
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{name}: took {:?}",
            started.elapsed()
        );
        assert!(err.len() < 400, "{name}: long message: {err}");
        assert!(
            ["too long", "nest", "chain", "syntax"]
                .iter()
                .any(|w| err.contains(w)),
            "{name}: {err}"
        );
    }
}

/// Through the class: the field path names the expression (SpecValid False and an
/// admission rejection are built from these errors).
#[test]
fn hostile_cel_in_a_class_names_the_field() {
    let source = repeat("response.body", "[0]", " == 1", 4000);
    let errors = on_worker_stack(Duration::from_secs(20), move || {
        let spec = format!(
            "livenessProbe:\n  http:\n    path: /x\n    response:\n      cel: {source:?}\n"
        );
        CompiledClass::compile(&class(&spec)).map(|_| ())
    })
    .expect_err("compiled");
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0].path, "spec.livenessProbe.http.response.cel");
    assert!(errors[0].message.contains("too long"), "{errors:?}");
}

/// What real classes write still compiles, with a margin: the published examples
/// and a long but realistic expression.
#[test]
fn real_cel_still_compiles() {
    let long = [
        "response.statusCode == 200",
        "response.headers['content-type'][0].startsWith('application/json')",
        "response.body.status in ['healthy', 'ok', 'up']",
        "response.body.uptime > 60 && response.body.errors.size() == 0",
        "response.body.items.all(i, i.state == 'ok' && i.checks.exists(c, c.name == 'db' && c.passed))",
        "(has(response.body.version) ? response.body.version.matches('^v[0-9]+\\\\.[0-9]+') : true)",
        "response.body.components.filter(c, c.status != 'up').map(c, c.name).size() == 0",
        "!(response.bodyString.contains('maintenance')) || response.body.mode == \"read-only\"",
        "int(response.headers['X-RateLimit-Remaining'][0]) >= 0",
    ]
    .join(" && ");
    let sources = [
        "response.statusCode == 200 && response.body.status == 'healthy'".to_string(),
        "response.body.uptime > 60 && response.body.errors.size() == 0".to_string(),
        "response.headers['content-type'][0].startsWith('application/json')".to_string(),
        "response.bodyString.contains('ok') // a comment (((((".to_string(),
        "r'\\d+[(' != '''multi\nline ] ) ''' && b'\\x00' != b'\\x01'".to_string(),
        nested("(", "response.statusCode == 200", ")", 12),
        nested("[", "1", "]", 12) + " != []",
        long,
    ];
    for source in sources {
        let s = source.clone();
        let result = on_worker_stack(Duration::from_secs(20), move || {
            CelCheck::compile(&s).map(|_| ())
        });
        assert!(result.is_ok(), "{source}: {result:?}");
    }
}

fn json_response(body: &str) -> HttpResponse {
    let mut headers = HeaderMap::new();
    headers.insert("content-type", "application/json".parse().unwrap());
    HttpResponse::new(200, headers, Bytes::from(body.to_string()))
}

/// Nested comprehensions over a response cost a product of list sizes: either the
/// nesting is a compile error or the evaluation ends at its deadline with an error,
/// within a bounded time and on a worker-sized stack.
#[test]
fn costly_cel_evaluation_is_bounded() {
    let list = format!("[{}0]", "0,".repeat(399));
    let body = format!("{{\"l\": {list}}}");
    let shapes = [
        "response.body.l.all(a, response.body.l.all(b, response.body.l.all(c, response.body.l.all(d, a == b))))",
        "response.body.l.exists(a, response.body.l.exists(b, response.body.l.exists(c, a == b + c + 1)))",
        "response.body.l.map(a, response.body.l.map(b, response.body.l.filter(c, c > a + b))).size() == 0",
        "response.body.l.exists_one(a, response.body.l.exists_one(b, response.body.l.all(c, c == 7)))",
    ];
    for source in shapes {
        let body = body.clone();
        let started = Instant::now();
        let verdict = on_worker_stack(Duration::from_secs(30), move || {
            CelCheck::compile(source).map(|c| wait(c.evaluate(&json_response(&body))))
        });
        let elapsed = started.elapsed();
        assert!(
            elapsed < Duration::from_secs(3),
            "{source}: took {elapsed:?}"
        );
        match verdict {
            Err(e) => assert!(e.contains("nested 4 deep"), "{source}: {e}"),
            Ok(CelVerdict::Error(e)) => assert!(e.contains("deadline"), "{source}: {e}"),
            Ok(other) => panic!("{source}: {other:?}"),
        }
    }
}

/// `lists.range` allocates its whole result in one call, which no deadline interrupts.
#[test]
fn cel_lists_range_is_refused() {
    for source in [
        "lists.range(1000000000).size() > 0",
        "[1].all(x, lists.range(x * 1000000000).size() > 0)",
        ".lists.range(1000000000).size() > 0",
    ] {
        let err = CelCheck::compile(source).expect_err(source);
        assert_eq!(err, "lists.range is not allowed", "{source}");
    }
}

/// Two levels are allowed, but a wide enough body still meets the deadline.
#[test]
fn cel_evaluation_meets_its_deadline() {
    let list = format!("[{}0]", "0,".repeat(20_000));
    let body = format!("{{\"l\": {list}}}");
    let source = "response.body.l.all(a, response.body.l.all(b, a == b + 0 * 7))";
    let started = Instant::now();
    let verdict = on_worker_stack(Duration::from_secs(60), move || {
        CelCheck::compile(source).map(|c| wait(c.evaluate(&json_response(&body))))
    });
    let elapsed = started.elapsed();
    assert!(elapsed < Duration::from_secs(3), "took {elapsed:?}");
    match verdict {
        Ok(CelVerdict::Error(e)) => assert!(e.contains("deadline"), "{e}"),
        other => panic!("{other:?}"),
    }
}

/// Evaluation errors name the expression's problem, never a response value.
#[test]
fn cel_errors_do_not_quote_the_response() {
    const SENTINEL: &str = "Zq9-RESPONSE-VALUE-Ü-7731";
    let body = format!(
        "{{\"s\": \"{SENTINEL}\", \"n\": 7, \"l\": [\"{SENTINEL}\"], \"m\": {{\"{SENTINEL}\": 1}}, \"k\": \"{SENTINEL}\"}}"
    );
    let cases = [
        ("response.body.s + 1 == 2", "unsupported"),
        ("response.body.s > 1", "no matching overload"),
        ("response.body.s > response.body.n", "no matching overload"),
        ("response.body.l + response.body.s == []", "unsupported"),
        ("response.body[response.body.k] == 1", "no such key"),
        ("response.body.m.nope == 1", "no such key: nope"),
        (
            "response.body.l[response.body.n] == ''",
            "index out of bounds",
        ),
        ("int(response.body.s) == 1", "int"),
        ("response.body.s.matches(response.body.s + '(')", "matches"),
        ("response.body.n / 0 == 1", "division by zero"),
        ("response.body.n % 0 == 1", "remainder by zero"),
        ("response.body.l[response.body.s] == 1", "overload"),
        (
            "{response.body.s: 1, response.body.s: 2}.size() == 1",
            "repeated",
        ),
        ("response.body.s.size(response.body.s) == 1", "size"),
        ("response.body.n * 9223372036854775807 == 1", "overflow"),
        ("duration(response.body.s) == duration('1s')", "duration"),
        ("timestamp(response.body.s) == timestamp(0)", "timestamp"),
        ("response.body.s.startsWith(1)", "startswith"),
    ];
    let resp = json_response(&body);
    let c = connector("connectorClassName: test\naddress: https://g.io");
    for (source, expected) in cases {
        let spec = format!(
            "livenessProbe:\n  http:\n    path: /x\n    response:\n      cel: {source:?}\n"
        );
        let class =
            CompiledClass::compile(&class(&spec)).unwrap_or_else(|e| panic!("{source}: {e:?}"));
        let request = build(&class, ProbeKind::Liveness, &c, None);
        let outcome = wait(class.judge(ProbeKind::Liveness, &request, &resp));
        assert_eq!(
            outcome.reason(),
            Some(FailureReason::ProbeError),
            "{source}: {outcome:?}"
        );
        let message = outcome.message();
        assert!(!message.contains("RESPONSE-VALUE"), "{source}: {message}");
        assert!(!message.contains("Zq9"), "{source}: {message}");
        assert!(
            message.to_lowercase().contains(expected),
            "{source}: {message} (expected {expected:?})"
        );
    }
}

fn rego_generator(auth: &str) -> String {
    format!(
        "package proxy\n\nauth := {{\"position\": \"header\", \"auth\": {{\"Authorization\": {auth}}}}}\n"
    )
}

/// Deeply nested collections are a compile error returned within a few seconds,
/// whatever the mix of brackets and braces.
#[test]
fn hostile_rego_compiles_within_its_deadline() {
    let shapes = [
        ("arrays", nested("[", "1", "]", 24)),
        ("sets", nested("{", "1", "}", 24)),
        ("objects", nested("{\"k\": ", "1", "}", 24)),
        ("mixed", nested("[{", "\"v\"", "}]", 14)),
        ("comprehensions", nested("[x | x := ", "[1]", "[_]]", 20)),
        ("parentheses", nested("(", "1", ")", 3000)),
        ("sum chain", repeat("1", " + 1", "", 4000)),
        ("ref chain", repeat("input.data", ".a", "", 5000)),
        ("index chain", repeat("input.data", "[0]", "", 4000)),
        (
            "unicode ref chain",
            repeat("input.data", "[\"é\"]", "", 3000),
        ),
    ];
    for (name, value) in shapes {
        let policy = rego_generator(&value);
        let started = Instant::now();
        let result = on_worker_stack(Duration::from_secs(30), move || {
            RegoPolicy::compile_generator(&policy, Duration::from_millis(500)).map(|_| ())
        });
        let elapsed = started.elapsed();
        assert!(elapsed < Duration::from_secs(4), "{name}: took {elapsed:?}");
        let err = result.expect_err(name);
        assert!(
            ["too long", "nest", "chain", "deadline"]
                .iter()
                .any(|w| err.contains(w)),
            "{name}: {err}"
        );
    }
}

/// Real generators still compile, in both syntaxes.
#[test]
fn real_rego_still_compiles() {
    let v1 = r#"package proxy

import rego.v1

auth := {"position": "header", "auth": {"Authorization": concat(" ", ["Bearer", input.data.token])}} if {
	input.data.token != ""
	not startswith(input.request.path, "/public/")
}
"#;
    let v0 = r#"package proxy

default allowed = false

auth = {"position": "query", "auth": {"private_token": input.data.token}} {
	input.data.token
	paths := [p | p := ["api", "v4", [["x"]]][_]]
	count(paths) > 0
}
"#;
    for policy in [v1, v0] {
        let p = policy.to_string();
        let result = on_worker_stack(Duration::from_secs(20), move || {
            RegoPolicy::compile_generator(&p, Duration::from_millis(500)).map(|_| ())
        });
        assert!(result.is_ok(), "{policy}: {result:?}");
    }
}

/// Makes a source of size `n`.
type Generator = Box<dyn Fn(usize) -> String>;

/// The largest `n` for which `make(n)` passes the scan.
fn largest_passing(language: Language, make: &dyn Fn(usize) -> String) -> usize {
    let limits = match language {
        Language::Cel => &CEL_LIMITS,
        Language::Rego => &REGO_LIMITS,
    };
    let mut n = 1;
    while check_source(&make(n + 1), language, limits).is_ok() {
        n += 1;
        assert!(n < 100_000, "never refused");
    }
    assert!(check_source(&make(n), language, limits).is_ok());
    n
}

/// What the scan lets through at its limits compiles and evaluates on the engine
/// threads without overflowing their stacks (a debug build needs the most) and in
/// well under the deadlines.
#[test]
fn cel_at_the_limits_compiles_and_evaluates() {
    let shapes: Vec<(&str, Generator)> = vec![
        ("parentheses", Box::new(|n| nested("(", "true", ")", n))),
        ("lists", Box::new(|n| nested("[", "1", "]", n) + " != []")),
        ("maps", Box::new(|n| nested("{1: ", "1", "}", n) + " != {}")),
        (
            "calls",
            Box::new(|n| nested("string(", "1", ")", n) + " != ''"),
        ),
        (
            "members",
            Box::new(|n| repeat("response", ".body", " == 1", n)),
        ),
        (
            "indexes",
            Box::new(|n| repeat("response.body", "[0]", " == 1", n)),
        ),
        ("sum", Box::new(|n| repeat("1", " + 1", " > 0", n))),
        ("negations", Box::new(|n| repeat("", "!", "true", n))),
        (
            "ternaries",
            Box::new(|n| repeat("", "true ? true : ", "false", n)),
        ),
        ("and", Box::new(|n| repeat("true", " && true", "", n))),
        (
            "grouped members",
            Box::new(|n| nested("(", "response.body.a.a.a", ").a.a.a", n) + " == 1"),
        ),
        (
            "lists of chains",
            Box::new(|n| nested("[", "1+1+1+1+1+1", "]", n) + " != []"),
        ),
    ];
    let resp = json_response("[[[[1]]]]");
    for (name, make) in shapes {
        let n = largest_passing(Language::Cel, &*make);
        let source = make(n);
        let len = source.len();
        let started = Instant::now();
        let resp = HttpResponse::new(resp.status, resp.headers.clone(), resp.body.clone());
        let verdict = on_worker_stack(Duration::from_secs(60), move || {
            CelCheck::compile(&source).map(|c| wait(c.evaluate(&resp)))
        });
        let elapsed = started.elapsed();
        eprintln!("{name}: n={n}, {len} bytes, {elapsed:?}: {verdict:?}");
        assert!(elapsed < Duration::from_secs(5), "{name}: took {elapsed:?}");
        // What passes the scan compiles, or meets the parser's own recursion limit
        // (ternaries nest deeper per operator than the scan counts): never another
        // error, a deadline or a crash.
        assert!(
            match &verdict {
                Ok(_) => true,
                Err(e) => e.contains("Recursion limit of 96 exceeded"),
            },
            "{name}: {verdict:?}"
        );
        if let Ok(CelVerdict::Error(e)) = &verdict {
            assert!(
                !e.contains("deadline") && !e.contains("unexpectedly"),
                "{name}: {e}"
            );
        }
    }
}

/// Rego at the limits of nesting and chains compiles within well under its deadline.
#[test]
fn rego_at_the_limits_compiles_quickly() {
    let shapes: Vec<(&str, Generator)> = vec![
        (
            "arrays",
            Box::new(|n| rego_generator(&nested("[", "1", "]", n))),
        ),
        (
            "sets",
            Box::new(|n| rego_generator(&nested("{", "1", "}", n))),
        ),
        (
            "objects",
            Box::new(|n| rego_generator(&nested("{\"k\": ", "1", "}", n))),
        ),
        (
            "mixed",
            Box::new(|n| rego_generator(&nested("[{", "2", "}]", n))),
        ),
        (
            "sum",
            Box::new(|n| rego_generator(&repeat("1", " + 1", "", n))),
        ),
        (
            "refs",
            Box::new(|n| rego_generator(&repeat("input.data", ".a", "", n))),
        ),
        (
            "statements",
            Box::new(|n| {
                format!(
                    "package proxy\n\nauth := {{\"auth\": {{\"k\": x}}}} if {{\n{}  x := 1\n}}\n",
                    "  input.data.a.b.c.d == input.request.path\n".repeat(n)
                )
            }),
        ),
    ];
    for (name, make) in shapes {
        let n = largest_passing(Language::Rego, &*make).min(2000);
        let policy = make(n);
        let len = policy.len();
        let started = Instant::now();
        let result = on_worker_stack(Duration::from_secs(60), move || {
            RegoPolicy::compile_generator(&policy, Duration::from_millis(500)).map(|_| ())
        });
        let elapsed = started.elapsed();
        eprintln!("{name}: n={n}, {len} bytes, {elapsed:?}: {result:?}");
        assert!(elapsed < Duration::from_secs(3), "{name}: took {elapsed:?}");
        assert!(
            result.is_ok(),
            "{name}: what passes the scan compiles: {result:?}"
        );
    }
}

/// Rules, functions and statements that each depend on the next: evaluation recurses
/// along such a chain. The longest chains the scan lets through compile and evaluate
/// on the engine threads; longer ones (they fit in 32 KiB) are refused.
#[test]
fn rego_dependency_chains_do_not_crash() {
    let shapes: Vec<(&str, Generator)> = vec![
        (
            "rules",
            Box::new(|n| {
                let links: String = (0..n).map(|i| format!("r{i} := r{}\n", i + 1)).collect();
                rego_generator("sprintf(\"%v\", [r0])") + &links + &format!("r{n} := 1\n")
            }),
        ),
        (
            "functions",
            Box::new(|n| {
                let links: String = (0..n)
                    .map(|i| format!("f{i}(x) := f{}(x)\n", i + 1))
                    .collect();
                rego_generator("sprintf(\"%v\", [f0(1)])") + &links + &format!("f{n}(x) := x\n")
            }),
        ),
        (
            "statements",
            Box::new(|n| {
                let links: String = (0..n)
                    .map(|i| format!("  x{} := x{i} + 1\n", i + 1))
                    .collect();
                format!(
                    "package proxy\n\nauth := {{\"auth\": {{\"k\": sprintf(\"%v\", [x0])}}}} if {{\n  x0 := 0\n{links}}}\n"
                )
            }),
        ),
    ];
    for (name, make) in shapes {
        let n = largest_passing(Language::Rego, &*make);
        let policy = make(n);
        let len = policy.len();
        let refused = check_source(&make(3 * n), Language::Rego, &REGO_LIMITS).unwrap_err();
        assert!(refused.starts_with("too long"), "{name}: {refused}");
        let started = Instant::now();
        let result = on_worker_stack(Duration::from_secs(60), move || {
            let p = RegoPolicy::compile_generator(&policy, Duration::from_secs(3))?;
            p.evaluate(regorus::Value::new_object())
        });
        let elapsed = started.elapsed();
        eprintln!("{name}: n={n}, {len} bytes, {elapsed:?}: {result:?}");
        assert!(elapsed < Duration::from_secs(8), "{name}: took {elapsed:?}");
        assert!(matches!(result, Ok(Some(_))), "{name}: {result:?}");
    }
}

/// A deadline too far to represent means none, not a panic.
#[test]
fn huge_deadlines_do_not_panic() {
    let c = CelCheck::compile_with("response.statusCode == 200", Duration::MAX).unwrap();
    assert_eq!(wait(c.evaluate(&json_response("{}"))), CelVerdict::True);
    let p = RegoPolicy::compile_generator(&rego_generator("\"x\""), Duration::MAX).unwrap();
    assert!(matches!(
        p.evaluate(regorus::Value::new_object()),
        Ok(Some(_))
    ));
}
