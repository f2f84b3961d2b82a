//! Judging responses: CEL variables and every reference example, errors, the
//! status-code defaults, API probes.

use bytes::Bytes;
use http::HeaderMap;

use super::{build, compiled, connector, wait};
use crate::probe::{
    CompiledClass, FailureReason, HttpResponse, ProbeKind, ProbeOutcome, ProbeTarget,
};

fn cel_class(cel: &str) -> CompiledClass {
    compiled(&format!(
        "auth:\n  types: [{{name: basicAuth}}]\nlivenessProbe:\n  http:\n    path: /x\n    response:\n      cel: {cel:?}\nauthProbes:\n- authName: basicAuth\n  probe:\n    http:\n      path: /y\n      response:\n        cel: {cel:?}\n"
    ))
}

fn response(status: u16, headers: &[(&str, &str)], body: &str) -> HttpResponse {
    let mut map = HeaderMap::new();
    for (k, v) in headers {
        map.append(
            http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            http::HeaderValue::from_str(v).unwrap(),
        );
    }
    HttpResponse::new(status, map, Bytes::from(body.to_string()))
}

fn judge(class: &CompiledClass, kind: ProbeKind, resp: &HttpResponse) -> ProbeOutcome {
    let c = connector("connectorClassName: test\naddress: https://g.io\nauth: {name: basicAuth}");
    let r = build(class, kind, &c, None);
    wait(class.judge(kind, &r, resp))
}

fn cel(expr: &str, resp: &HttpResponse) -> ProbeOutcome {
    judge(&cel_class(expr), ProbeKind::Liveness, resp)
}

const JSON: &[(&str, &str)] = &[("Content-Type", "application/json; charset=utf-8")];

#[test]
fn reference_examples() {
    let healthy = response(
        200,
        JSON,
        r#"{"status":"healthy","uptime":120,"errors":[]}"#,
    );
    assert_eq!(
        cel(
            "response.statusCode == 200 && response.body.status == 'healthy'",
            &healthy
        ),
        ProbeOutcome::Passed
    );
    assert_eq!(
        cel(
            "response.body.uptime > 60 && response.body.errors.size() == 0",
            &healthy
        ),
        ProbeOutcome::Passed
    );
    assert_eq!(
        cel(
            "response.headers['content-type'][0].startsWith('application/json')",
            &healthy
        ),
        ProbeOutcome::Passed
    );
    let text = response(200, &[("content-type", "text/plain")], "all success here");
    assert_eq!(
        cel(
            "response.body.contains('success') && !response.body.contains('error')",
            &text
        ),
        ProbeOutcome::Passed
    );
    let float = response(200, JSON, r#"{"uptime":60.5}"#);
    assert_eq!(
        cel("response.body.uptime > 60", &float),
        ProbeOutcome::Passed
    );
}

#[test]
fn headers_reachable_in_both_cases() {
    let r = response(
        200,
        &[
            ("X-Request-Id", "a"),
            ("x-request-id", "b"),
            ("content-type", "text/plain"),
        ],
        "ok",
    );
    assert_eq!(
        cel("response.headers['x-request-id'] == ['a', 'b']", &r),
        ProbeOutcome::Passed
    );
    assert_eq!(
        cel("response.headers['X-Request-Id'].size() == 2", &r),
        ProbeOutcome::Passed
    );
    assert_eq!(
        cel("response.headers['Content-Type'][0] == 'text/plain'", &r),
        ProbeOutcome::Passed
    );
}

#[test]
fn json_versus_text_bodies() {
    let json = response(200, &[], r#"{"a":{"b":[1,2]}}"#);
    assert_eq!(
        cel(
            "response.body.a.b[1] == 2 && response.bodyString.startsWith('{')",
            &json
        ),
        ProbeOutcome::Passed
    );
    // Valid JSON even without a JSON content type.
    let scalar = response(200, &[], "42");
    assert_eq!(cel("response.body == 42", &scalar), ProbeOutcome::Passed);
    let text = response(200, &[("content-type", "application/json")], "not { json");
    assert_eq!(
        cel(
            "response.body == 'not { json' && response.bodyString == response.body",
            &text
        ),
        ProbeOutcome::Passed
    );
    // A truncated body is the truncated text, even when it began as JSON.
    let mut cut = response(200, JSON, r#"{"status":"#);
    cut.truncated = true;
    assert_eq!(
        cel("response.body == '{\"status\":'", &cut),
        ProbeOutcome::Passed
    );
}

#[test]
fn false_non_bool_and_errors() {
    let r = response(200, JSON, r#"{"status":"down"}"#);
    assert_eq!(
        cel("response.body.status == 'healthy'", &r),
        ProbeOutcome::failed(FailureReason::ProbeFailed, "response check returned false")
    );
    assert_eq!(
        judge(
            &cel_class("response.body.status == 'healthy'"),
            ProbeKind::Auth,
            &r
        ),
        ProbeOutcome::failed(
            FailureReason::AuthenticationFailed,
            "Authentication failed: response check returned false"
        )
    );
    let o = cel("response.statusCode", &r);
    assert_eq!(o.reason(), Some(FailureReason::ProbeError));
    assert_eq!(
        o.message(),
        "spec.livenessProbe.http.response.cel: the expression returned int, not a bool"
    );
    let o = cel("response.body.missing == 'x'", &r);
    assert_eq!(o.reason(), Some(FailureReason::ProbeError));
    assert!(
        o.message()
            .starts_with("spec.livenessProbe.http.response.cel: evaluation failed: "),
        "{o:?}"
    );
    assert!(o.message().contains("missing"), "{o:?}");
    // An evaluation error on an auth probe is also a ProbeError.
    let o = judge(
        &cel_class("response.body.missing == 'x'"),
        ProbeKind::Auth,
        &r,
    );
    assert_eq!(o.reason(), Some(FailureReason::ProbeError));
}

#[test]
fn status_defaults_without_cel() {
    let class = compiled(
        "auth:\n  types: [{name: basicAuth}]\nlivenessProbe:\n  http: {path: /x}\nauthProbes:\n- authName: basicAuth\n  probe: {http: {path: /y}}\n",
    );
    for s in [200, 204, 299] {
        assert_eq!(
            judge(&class, ProbeKind::Liveness, &response(s, &[], "")),
            ProbeOutcome::Passed
        );
        assert_eq!(
            judge(&class, ProbeKind::Auth, &response(s, &[], "")),
            ProbeOutcome::Passed
        );
    }
    assert_eq!(
        judge(&class, ProbeKind::Liveness, &response(503, &[], "")),
        ProbeOutcome::failed(FailureReason::ProbeFailed, "status code 503")
    );
    assert_eq!(
        judge(&class, ProbeKind::Auth, &response(401, &[], "")),
        ProbeOutcome::failed(
            FailureReason::AuthenticationFailed,
            "Authentication failed: status code 401"
        )
    );
    assert_eq!(
        judge(&class, ProbeKind::Auth, &response(302, &[], "")),
        ProbeOutcome::failed(
            FailureReason::AuthenticationFailed,
            "Authentication failed: status code 302"
        )
    );
}

#[test]
fn api_probe_judging() {
    let class = compiled(
        "api: {uri: http://api.svc}\nauth:\n  types: [{name: basicAuth}]\nlivenessProbe:\n  api: {path: /live}\nauthProbes:\n- authName: basicAuth\n  probe: {api: {path: /auth}}\n",
    );
    let c = connector("connectorClassName: test\naddress: https://g.io\nauth: {name: basicAuth}");
    let t = ProbeTarget {
        connector: &c,
        secret: None,
        class_api_url: Some("http://api.svc"),
    };
    let judge = |kind, status| {
        let r = class
            .request(kind, &t)
            .and_then(Result::ok)
            .unwrap_or_else(|| panic!("no request"));
        wait(class.judge(kind, &r, &response(status, &[], "")))
    };
    assert_eq!(judge(ProbeKind::Liveness, 200), ProbeOutcome::Passed);
    assert_eq!(judge(ProbeKind::Auth, 200), ProbeOutcome::Passed);
    assert_eq!(
        judge(ProbeKind::Liveness, 204),
        ProbeOutcome::failed(FailureReason::ProbeFailed, "status code 204")
    );
    assert_eq!(
        judge(ProbeKind::Liveness, 401),
        ProbeOutcome::failed(FailureReason::ProbeFailed, "status code 401")
    );
    assert_eq!(
        judge(ProbeKind::Auth, 401),
        ProbeOutcome::failed(
            FailureReason::AuthenticationFailed,
            "Authentication failed: status code 401"
        )
    );
    assert_eq!(
        judge(ProbeKind::Auth, 403),
        ProbeOutcome::failed(
            FailureReason::AuthenticationFailed,
            "Authentication failed: status code 403"
        )
    );
    assert_eq!(
        judge(ProbeKind::Auth, 500),
        ProbeOutcome::failed(FailureReason::ProbeFailed, "status code 500")
    );
}
