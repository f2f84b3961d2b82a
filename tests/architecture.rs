//! Architecture test: the layer rules of `docs/architecture.md`, checked against the
//! `use` declarations and `crate::` paths of `src/` (like ArchUnit). The rules are
//! written once, here. Test code (`#[cfg(test)] mod tests`, `tests/` folders,
//! `testing.rs`) is exempt; so are `main.rs` (the top) and the demo tool.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Each module of the library and the modules it may import, bottom to top.
const LAYERS: &[(&str, &[&str])] = &[
    ("types", &[]),
    ("api", &["types"]),
    ("inject", &["types", "api"]),
    ("probe", &["types", "api", "inject"]),
    ("validation", &["types", "api", "probe"]),
    ("decide", &["types", "api", "validation"]),
    ("route", &["types", "api", "inject", "decide"]),
    ("telemetry", &["types", "api", "probe"]),
    ("runtime", &["types"]),
    (
        "observe",
        &["types", "api", "inject", "probe", "validation", "decide"],
    ),
    // What the data-plane processes share: everything below them.
    ("dataplane", BELOW_PROCESSES),
    // Processes: anything below, never another process.
    ("controller", BELOW_PROCESSES),
    ("admission", BELOW_PROCESSES),
    ("check", BELOW_PROCESSES),
    ("proxy", BELOW_PROCESSES),
    ("gateway", BELOW_PROCESSES),
    ("identity", BELOW_PROCESSES),
];

/// What a process may import: every layer below the processes.
const BELOW_PROCESSES: &[&str] = &[
    "types",
    "api",
    "inject",
    "probe",
    "validation",
    "decide",
    "route",
    "telemetry",
    "runtime",
    "observe",
    "dataplane",
];

/// Paths the pure layers must not name: clients, sockets, files, the async runtime.
const IO_PATHS: &[&str] = &[
    "kube::Client",
    "kube::Api",
    "kube::api::Api",
    "kube::runtime",
    "tokio",
    "reqwest",
    "hyper",
    "std::fs",
    "std::net",
    "std::process",
];

/// Layers that do no I/O.
const PURE: &[&str] = &["types", "api", "inject", "validation", "decide", "route"];

/// Pure files inside a process (its decisions), held to the same rule.
const PURE_FILES: &[&str] = &["admission/review.rs"];

/// The longest non-test function allowed, in lines.
const MAX_FUNCTION_LINES: usize = 80;

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            if path.file_name().is_some_and(|n| n != "tests" && n != "bin") {
                rust_files(&path, out);
            }
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module a file belongs to (`src/probe/http.rs` -> `probe`).
fn module_of(path: &Path) -> Option<String> {
    let relative = path.strip_prefix(src()).ok()?;
    let first = relative.components().next()?.as_os_str().to_str()?;
    let module = first.trim_end_matches(".rs");
    match module {
        "lib" | "main" | "testing" | "tests" => None,
        m if relative.to_string_lossy().ends_with("/tests.rs") => {
            let _ = m;
            None
        }
        m => Some(m.to_string()),
    }
}

/// The file without its trailing `#[cfg(test)] mod .. { .. }` modules.
fn production_code(text: &str) -> &str {
    // Test modules (any name) close a file, by the project's convention.
    match text.find("#[cfg(test)]\nmod ") {
        Some(at) => &text[..at],
        None => text,
    }
}

/// Every crate module named by `use crate::...` (groups included) or `crate::x::`.
fn crate_imports(code: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let mut rest = code;
    while let Some(at) = rest.find("crate::") {
        let before = rest[..at].chars().last();
        rest = &rest[at + "crate::".len()..];
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue; // e.g. `my_crate::`
        }
        if let Some(group) = rest.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            for item in group[..end].split(',') {
                let name: String = item
                    .trim()
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                if !name.is_empty() {
                    found.insert(name);
                }
            }
            continue;
        }
        let name: String = rest
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        if !name.is_empty() {
            found.insert(name);
        }
    }
    found
}

fn code_files() -> Vec<(PathBuf, String, String)> {
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    files
        .into_iter()
        .filter_map(|path| {
            let module = module_of(&path)?;
            let text = std::fs::read_to_string(&path).expect("read file");
            Some((path, module, production_code(&text).to_string()))
        })
        .collect()
}

#[test]
fn imports_follow_the_layers() {
    let mut wrong = Vec::new();
    let files = code_files();
    assert!(files.len() > 30, "src/ was not read: {} files", files.len());
    for (path, module, code) in &files {
        let Some((_, allowed)) = LAYERS.iter().find(|(m, _)| m == module) else {
            wrong.push(format!(
                "{}: module {module:?} has no layer",
                path.display()
            ));
            continue;
        };
        for import in crate_imports(code) {
            if import != *module && !allowed.contains(&import.as_str()) {
                wrong.push(format!("{}: {module} imports {import}", path.display()));
            }
        }
        let relative = path.strip_prefix(src()).unwrap_or(path);
        let pure_file = PURE_FILES.iter().any(|f| relative == Path::new(f));
        if PURE.contains(&module.as_str()) || pure_file {
            for io in IO_PATHS {
                if names_path(code, io) {
                    wrong.push(format!("{}: pure {module} names {io}", path.display()));
                }
            }
        }
    }
    assert!(wrong.is_empty(), "wrong-way imports:\n{}", wrong.join("\n"));
}

/// Every path a `use` declaration names, groups expanded (`use kube::{api::{Api,
/// Patch}, Client};` names `kube::api::Api`, `kube::api::Patch`, `kube::Client`).
fn used_paths(code: &str) -> Vec<String> {
    fn expand(prefix: &str, tree: &str, out: &mut Vec<String>) {
        let tree = tree.trim();
        let Some(open) = tree.find('{') else {
            let path = tree.split(" as ").next().unwrap_or(tree).trim();
            out.push(format!("{prefix}{path}"));
            return;
        };
        let head = format!("{prefix}{}", &tree[..open]);
        let close = tree.rfind('}').filter(|c| *c > open).unwrap_or(tree.len());
        let inner = &tree[open + 1..close];
        let (mut depth, mut start) = (0, 0);
        for (i, c) in inner.char_indices() {
            match c {
                '{' => depth += 1,
                '}' => depth -= 1,
                ',' if depth == 0 => {
                    expand(&head, &inner[start..i], out);
                    start = i + 1;
                }
                _ => {}
            }
        }
        if !inner[start..].trim().is_empty() {
            expand(&head, &inner[start..], out);
        }
    }
    let mut out = Vec::new();
    let mut statement: Option<String> = None;
    for line in code.lines() {
        let line = line.trim();
        if statement.is_none() {
            let rest = ["use ", "pub use ", "pub(crate) use ", "pub(super) use "]
                .iter()
                .find_map(|p| line.strip_prefix(p));
            statement = rest.map(str::to_string);
        } else if let Some(s) = statement.as_mut() {
            s.push_str(line);
        }
        if let Some(s) = statement.take_if(|s| s.contains(';')) {
            expand("", s.split(';').next().unwrap_or_default(), &mut out);
        }
    }
    out
}

/// Whether `code` names `io` (or something below it), in a path or a `use`.
fn names_path(code: &str, io: &str) -> bool {
    code.contains(&format!("{io}::"))
        || used_paths(code)
            .iter()
            .any(|p| p == io || p.starts_with(&format!("{io}::")))
}

#[test]
fn the_rules_catch_a_wrong_way_import() {
    let imports = crate_imports(
        "use crate::{api::Connector, controller::Context};\nlet x = crate::observe::f();",
    );
    assert_eq!(
        imports,
        ["api", "controller", "observe"].map(String::from).into()
    );
    let (_, probe_allowed) = LAYERS.iter().find(|(m, _)| *m == "probe").expect("probe");
    assert!(!probe_allowed.contains(&"validation"));
    // Grouped imports of I/O are seen too.
    assert!(names_path(
        "use kube::{api::{Api, Patch}, Client};",
        "kube::Client"
    ));
    assert!(names_path(
        "use kube::{api::{Api, Patch}, Client};",
        "kube::api::Api"
    ));
    assert!(names_path("pub use tokio::sync;", "tokio"));
    assert!(!names_path(
        "use kube::{Resource, ResourceExt};",
        "kube::Client"
    ));
}

/// Start lines and lengths of the functions in `code` (brace matching on the
/// function's own indentation).
fn functions(code: &str) -> Vec<(usize, String, usize)> {
    let lines: Vec<&str> = code.lines().collect();
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let trimmed = line.trim_start();
        let is_fn = [
            "fn ",
            "pub fn ",
            "async fn ",
            "pub async fn ",
            "pub(crate) fn ",
            "pub(super) fn ",
            "pub(crate) async fn ",
            "pub(super) async fn ",
            "const fn ",
        ]
        .iter()
        .any(|p| trimmed.starts_with(p));
        if !is_fn {
            continue;
        }
        let indent = line.len() - trimmed.len();
        let closing = " ".repeat(indent) + "}";
        if let Some(end) = lines[i..].iter().position(|l| *l == closing) {
            let name = trimmed.split('(').next().unwrap_or(trimmed).to_string();
            out.push((i + 1, name, end + 1));
        }
    }
    out
}

#[test]
fn functions_are_short() {
    let mut long = Vec::new();
    for (path, _, code) in code_files() {
        for (line, name, length) in functions(&code) {
            if length > MAX_FUNCTION_LINES {
                long.push(format!(
                    "{}:{line}: {name} ({length} lines)",
                    path.display()
                ));
            }
        }
    }
    assert!(
        long.is_empty(),
        "functions longer than {MAX_FUNCTION_LINES} lines:\n{}",
        long.join("\n")
    );
}
