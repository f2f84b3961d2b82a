//! The gateway's own answers: Kubernetes `Status` JSON (SPEC-proxy section 8), e.g.
//! `{"kind":"Status","apiVersion":"v1","status":"Failure","message":"...",
//! "reason":"BadRequest","code":400}`.

use http::{HeaderValue, Response, StatusCode, header};

use crate::dataplane::body::{ProxyBody, full};
use crate::dataplane::refusal::Refusal;
use crate::route::api::READ_METHODS;

/// The `reason` of a status code, in the apiserver's words where it has one.
fn reason(code: StatusCode) -> &'static str {
    match code {
        StatusCode::BAD_REQUEST => "BadRequest",
        StatusCode::UNAUTHORIZED => "Unauthorized",
        StatusCode::FORBIDDEN => "Forbidden",
        StatusCode::NOT_FOUND => "NotFound",
        StatusCode::METHOD_NOT_ALLOWED => "MethodNotAllowed",
        StatusCode::PAYLOAD_TOO_LARGE => "RequestEntityTooLarge",
        StatusCode::SERVICE_UNAVAILABLE => "ServiceUnavailable",
        StatusCode::GATEWAY_TIMEOUT => "Timeout",
        StatusCode::NOT_IMPLEMENTED => "NotImplemented",
        _ => "BadGateway",
    }
}

/// A `Status` answer for a refusal (`Allow` added to a `405`).
pub fn status_response(refusal: Refusal) -> Response<ProxyBody> {
    let code = refusal.status();
    let body = serde_json::json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": refusal.message(),
        "reason": reason(code),
        "code": code.as_u16(),
    });
    let mut response = Response::new(full(body.to_string()));
    *response.status_mut() = code;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if code == StatusCode::METHOD_NOT_ALLOWED {
        headers.insert(header::ALLOW, HeaderValue::from_static(READ_METHODS));
    }
    response
}

/// A `200` JSON answer of the gateway itself.
pub fn json_response(value: &serde_json::Value) -> Response<ProxyBody> {
    let mut response = Response::new(full(value.to_string()));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}
