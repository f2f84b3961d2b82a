//! The proxy's own answers (SPEC-proxy section 7): status, a short text body naming
//! the cause, and the Basic challenge on `401` and `407`.

use http::{HeaderValue, Response, header};

use crate::dataplane::body::{ProxyBody, full};
use crate::dataplane::refusal::Refusal;

const CHALLENGE: &str = r#"Basic realm="connectors-proxy""#;

/// The proxy's answer for a refusal.
pub fn text_response(refusal: Refusal) -> Response<ProxyBody> {
    let mut response = Response::new(full(format!("{}\n", refusal.message())));
    *response.status_mut() = refusal.status();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    if refusal == Refusal::Unauthenticated {
        headers.insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static(CHALLENGE),
        );
    }
    if refusal == Refusal::ProxyAuthRequired {
        headers.insert(
            header::PROXY_AUTHENTICATE,
            HeaderValue::from_static(CHALLENGE),
        );
    }
    response
}
