//! Go templates: the published ones byte-exact, the data shape, every listed sprig
//! function, bounds.

use std::time::Duration;

use super::super::template::{Fields, parse, template_context};
use super::{connector, secret};
use crate::api::Connector;
use crate::probe::SecretMaterial;

const GIT_PATH: &str = r#"/{{- range .Connector.Spec.Auth.Params }}{{- if eq .Name "repository" }}{{ .Value.StringVal }}{{ end }}{{- end }}/info/refs?service=git-upload-pack"#;
const BASIC_AUTH: &str = r#"{{- if .Secret }}Basic {{ printf "%s:%s" .Secret.StringData.username .Secret.StringData.password | b64enc }} {{- end }}"#;

fn git_connector() -> Connector {
    connector(
        r#"
        connectorClassName: git
        address: https://git.example.com/base
        auth:
          name: basicAuth
          secretRef: {name: creds}
          params:
          - name: other
            value: x
          - name: repository
            value: org/repo
        params:
        - name: list
          value: [a, b, c]
        - name: obj
          value: {k1: v1}
        addressExtensions:
        - name: ssh
          value: https://ssh.example.com
        "#,
    )
}

fn render_with(text: &str, c: &Connector, s: Option<&SecretMaterial>) -> Result<String, String> {
    let t = parse(text, 64 * 1024, Duration::from_millis(500))?;
    // The pruned data (what a probe renders with) and the whole data agree.
    let pruned = t.render(Some(&template_context(c, s, t.fields())));
    let whole = t.render(Some(&template_context(c, s, Fields::all())));
    if pruned.is_ok() || whole.is_ok() {
        assert_eq!(pruned, whole, "{text}");
    }
    pruned
}

fn render(text: &str) -> String {
    let s = secret(&[
        ("username", "user"),
        ("password", "pass"),
        ("token", "dG9rZW4="),
    ]);
    render_with(text, &git_connector(), Some(&s)).unwrap_or_else(|e| panic!("{text}: {e}"))
}

#[test]
fn published_git_path_renders_exactly() {
    assert_eq!(
        render(GIT_PATH),
        "/org/repo/info/refs?service=git-upload-pack"
    );
}

#[test]
fn published_basic_auth_renders_exactly() {
    assert_eq!(render(BASIC_AUTH), "Basic dXNlcjpwYXNz");
    // No Secret: `.Secret` is false and nothing is written.
    assert_eq!(render_with(BASIC_AUTH, &git_connector(), None).unwrap(), "");
}

#[test]
fn data_mirrors_the_go_objects() {
    let cases = [
        (
            "{{ .Connector.Name }}/{{ .Connector.Namespace }}",
            "my-git/team-a",
        ),
        (
            "{{ .Connector.ObjectMeta.Name }}.{{ .Connector.ObjectMeta.Namespace }}",
            "my-git.team-a",
        ),
        (
            "{{ .Connector.Spec.Address }}",
            "https://git.example.com/base",
        ),
        ("{{ .Connector.Spec.ConnectorClassName }}", "git"),
        ("{{ .Connector.Spec.Auth.Name }}", "basicAuth"),
        (
            "{{ (index .Connector.Spec.Auth.Params 1).Value.Type }}",
            "string",
        ),
        (
            "{{ range .Connector.Spec.Params }}{{ .Name }}={{ .Value.Type }};{{ end }}",
            "list=array;obj=object;",
        ),
        (
            "{{ (index .Connector.Spec.Params 0).Value.ArrayVal | join \",\" }}",
            "a,b,c",
        ),
        (
            "{{ (index .Connector.Spec.Params 1).Value.ObjectVal.k1 }}",
            "v1",
        ),
        (
            "{{ range .Connector.Spec.AddressExtensions }}{{ .Name }} {{ .Value.StringVal }}{{ end }}",
            "ssh https://ssh.example.com",
        ),
        (
            "{{ .Secret.Name }} {{ .Secret.Type }}",
            "creds kubernetes.io/basic-auth",
        ),
        ("{{ .Secret.StringData.username }}", "user"),
        ("{{ .Connector.Kind }}", "Connector"),
    ];
    for (t, want) in cases {
        assert_eq!(render(t), want, "template {t}");
    }
}

#[test]
fn every_listed_sprig_function_works() {
    let cases = [
        (r#"{{ "user:pass" | b64enc }}"#, "dXNlcjpwYXNz"),
        (r#"{{ .Secret.StringData.token | b64dec }}"#, "token"),
        (r#"{{ "/api/v1" | trimPrefix "/api" }}"#, "/v1"),
        (r#"{{ "https://x.io/" | trimSuffix "/" }}"#, "https://x.io"),
        (r#"{{ "  padded  " | trim }}"#, "padded"),
        (
            r#"{{ (urlParse .Connector.Spec.Address).host }}"#,
            "git.example.com",
        ),
        (
            r#"{{ (urlParse "http://u:p@h.io:8080/a/b?q=1#f").path }}|{{ (urlParse "http://h.io:8080/a?q=1").query }}|{{ (urlParse "http://h.io:8080/").hostname }}|{{ (urlParse "http://h.io:8080/").host }}|{{ (urlParse "http://h.io/#frag").fragment }}|{{ (urlParse "https://x/").scheme }}"#,
            "/a/b|q=1|h.io|h.io:8080|frag|https",
        ),
        (r#"{{ (urlParse "/rel/path?x=1").path }}"#, "/rel/path"),
        (r#"{{ urlquery "a b&c" }}"#, "a+b%26c"),
        (r#"{{ printf "%s-%d" "a" 5 }}"#, "a-5"),
        (r#"{{ .Missing | default "fallback" }}"#, "fallback"),
        (r#"{{ "" | default "fallback" }}"#, "fallback"),
        (r#"{{ "MiXed" | lower }}"#, "mixed"),
        (r#"{{ "MiXed" | upper }}"#, "MIXED"),
        (r#"{{ "a.b.c" | replace "." "/" }}"#, "a/b/c"),
        (r#"{{ "q" | quote }}"#, r#""q""#),
        (r#"{{ list "a" "b" | join "/" }}"#, "a/b"),
        (r#"{{ splitList "/" "org/repo" | last }}"#, "repo"),
        (r#"{{ splitList "/" "org/repo" | first }}"#, "org"),
        (r#"{{ len (list 1 2 3) }}"#, "3"),
        (r#"{{ (dict "k" "v").k }}"#, "v"),
        (r#"{{ index (dict "k" "v") "k" }}"#, "v"),
        (r#"{{ index (list "x" "y") 1 }}"#, "y"),
        (r#"{{ if hasPrefix "ht" "http" }}yes{{ end }}"#, "yes"),
        (r#"{{ if hasSuffix "tp" "http" }}yes{{ end }}"#, "yes"),
        (r#"{{ if contains "tt" "http" }}yes{{ end }}"#, "yes"),
        (
            r#"{{ if eq 1 1 }}eq{{ end }}{{ if ne 1 2 }}ne{{ end }}"#,
            "eqne",
        ),
        (
            r#"{{ if and true (or false true) (not false) }}ok{{ end }}"#,
            "ok",
        ),
        (r#"{{ len "four" }}"#, "4"),
    ];
    for (t, want) in cases {
        assert_eq!(render(t), want, "template {t}");
    }
}

#[test]
fn render_errors_and_bounds() {
    // A field that does not exist on a struct is an error, as in Go.
    let e = render_with("{{ .Connector.Nope }}", &git_connector(), None).unwrap_err();
    assert!(!e.is_empty());
    // `.Secret.StringData.x` without a Secret is an error (nil pointer in Go).
    assert!(render_with("{{ .Secret.StringData.x }}", &git_connector(), None).is_err());
    // Output is capped.
    let t = parse(
        r#"{{ range 5000 }}0123456789{{ end }}"#,
        1024,
        Duration::from_millis(500),
    )
    .unwrap();
    let e = t.render(None).unwrap_err();
    assert!(e.contains("1024"), "{e}");
    // Expensive single calls are not registered.
    assert!(parse(r#"{{ genCA "x" 365 }}"#, 1024, Duration::from_millis(500)).is_err());
    // A long loop stops at the deadline (or an iteration budget), not later.
    let t = parse(
        r#"{{ range 10000 }}{{ range 10000 }}{{ end }}{{ end }}"#,
        1024,
        Duration::from_millis(50),
    )
    .unwrap();
    let started = std::time::Instant::now();
    assert!(t.render(None).is_err());
    assert!(started.elapsed() < Duration::from_secs(5));
}
