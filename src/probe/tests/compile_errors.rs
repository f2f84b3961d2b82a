//! `CompiledClass::compile`: every error, with its field path.

use super::{class, unindent};
use crate::probe::CompiledClass;

fn errors(spec: &str) -> Vec<(String, String)> {
    match CompiledClass::compile(&class(spec)) {
        Ok(_) => Vec::new(),
        Err(errs) => errs.into_iter().map(|e| (e.path, e.message)).collect(),
    }
}

fn paths(spec: &str) -> Vec<String> {
    errors(spec).into_iter().map(|(p, _)| p).collect()
}

fn rego_block(rego: &str, indent: usize) -> String {
    let pad = " ".repeat(indent);
    unindent(rego)
        .lines()
        .map(|l| format!("{pad}{l}\n"))
        .collect()
}

#[test]
fn all_errors_are_reported_with_paths() {
    let spec = r#"
auth:
  types:
  - name: basicAuth
    generator:
      rego: "package proxy\nauth := {"
livenessProbe:
  http:
    path: "/{{ .Connector.Name "
    httpHeaders:
    - {name: X-A, value: "{{ end }}"}
    response:
      cel: "response.statusCode =="
authProbes:
- authName: basicAuth
  probe:
    api: {path: "{{ if }}"}
- authName: nope
  probe:
    http:
      path: /ok
      response: {cel: "response.body.("}
proxy:
  authExtractor: {rego: "package proxy\nauth = {"}
api:
  permissions: {rego: "package nope\nresult = {\"verb\": \"read\"}"}
"#;
    let got = errors(spec);
    let got_paths: Vec<&str> = got.iter().map(|(p, _)| p.as_str()).collect();
    let mut want = vec![
        "spec.livenessProbe.http.path",
        "spec.livenessProbe.http.httpHeaders[0].value",
        "spec.livenessProbe.http.response.cel",
        "spec.authProbes[0].probe.api.path",
        "spec.authProbes[1].probe.http.response.cel",
        "spec.auth.types[0].generator.rego",
        "spec.proxy.authExtractor.rego",
        "spec.api.permissions.rego",
    ];
    let mut sorted = got_paths.clone();
    sorted.sort();
    want.sort();
    assert_eq!(sorted, want, "{got:#?}");
    for (p, m) in &got {
        assert!(!m.is_empty(), "{p} has an empty message");
    }
    let pkg = got
        .iter()
        .find(|(p, _)| p == "spec.api.permissions.rego")
        .map(|(_, m)| m.clone());
    assert!(pkg.is_some_and(|m| m.contains("package `permissions`")));
}

#[test]
fn published_rego_examples_compile() {
    // The reference's permissions example: v0 with `import future.keywords.if` and `else`.
    let permissions = r#"
        package permissions
        import future.keywords.if

        result = { "verb": "read" } if {
          startswith(input.request.path, "/search")
          input.request.method == "POST"
        } else = { "verb": "" }
    "#;
    // The reference's authExtractor example (v0).
    let extractor = r#"
        package proxy
        auth = { "token": input.request.headers["Private-Token"][0] }
    "#;
    // A v1 generator.
    let generator = r#"
        package proxy
        import rego.v1
        auth := {"position": "header", "auth": {"Authorization": sprintf("Bearer %s", [input.data.token])}} if input.data.token
    "#;
    let spec = format!(
        "api:\n  permissions:\n    rego: |\n{}proxy:\n  authExtractor:\n    rego: |\n{}auth:\n  types:\n  - name: t\n    generator:\n      rego: |\n{}",
        rego_block(permissions, 6),
        rego_block(extractor, 6),
        rego_block(generator, 8)
    );
    assert_eq!(paths(&spec), Vec::<String>::new());
}

#[test]
fn a_valid_class_compiles_and_is_shared() {
    let c = CompiledClass::compile(&class(
        r#"
        livenessProbe:
          http:
            path: /x
            response: {cel: "response.statusCode == 200"}
        "#,
    ));
    let c = c.map(std::sync::Arc::new);
    assert!(c.is_ok());
}

#[test]
fn missing_rule_is_reported() {
    let spec = "auth:\n  types:\n  - name: t\n    generator:\n      rego: \"package proxy\\nother := 1\"\n";
    let got = errors(spec);
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(got[0].1.contains("`auth`"), "{got:?}");
}

#[test]
fn generators_may_not_allocate_unbounded_ranges() {
    let spec = "auth:\n  types:\n  - name: t\n    generator:\n      rego: \"package proxy\\nauth := {\\\"x\\\": numbers.range(1, 1000000000)}\"\n";
    let got = errors(spec);
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(got[0].1.contains("numbers.range"), "{got:?}");
}
