//! Why a data-plane process answers a request itself instead of the tool (SPEC-proxy
//! section 7). Each process renders it its own way (text for the proxy, a Kubernetes
//! `Status` for the gateway); messages never hold a token or a Secret value.

use http::StatusCode;

/// The one body of every `403` about a Connector: a missing Connector and a denied one
/// must be answered alike, so existence does not leak.
pub const FORBIDDEN_BODY: &str =
    "forbidden: this token may not use the connector, or the connector does not exist\n";

/// Why the proxy answers itself instead of the tool.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    /// No usable token: `401` with the Basic challenge.
    Unauthenticated,
    /// Forward mode without usable proxy credentials: `407` with the challenge.
    ProxyAuthRequired,
    /// A request inside a CONNECT tunnel for another host: `421`.
    Misdirected(String),
    /// Denied, or the Connector does not exist: `403`, one body.
    Forbidden,
    /// The destination may not be reached: `403` naming it.
    DestinationRefused(String),
    /// Unknown host pattern, class without a proxy: `404`.
    NotFound(String),
    BadRequest(String),
    /// The method is not allowed: `405` (the answer lists the allowed ones).
    MethodNotAllowed(String),
    PayloadTooLarge(String),
    /// Connect/TLS failure, generator or extractor error, un-injectable Secret: `502`.
    BadGateway(String),
    /// The apiserver could not review the token: `503`.
    Unavailable(String),
    /// No response head in time: `504`.
    GatewayTimeout,
    /// Not served (yet): `501`.
    NotImplemented(String),
}

impl Refusal {
    pub fn status(&self) -> StatusCode {
        match self {
            Refusal::Unauthenticated => StatusCode::UNAUTHORIZED,
            Refusal::ProxyAuthRequired => StatusCode::PROXY_AUTHENTICATION_REQUIRED,
            Refusal::Misdirected(_) => StatusCode::MISDIRECTED_REQUEST,
            Refusal::Forbidden | Refusal::DestinationRefused(_) => StatusCode::FORBIDDEN,
            Refusal::NotFound(_) => StatusCode::NOT_FOUND,
            Refusal::BadRequest(_) => StatusCode::BAD_REQUEST,
            Refusal::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            Refusal::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Refusal::BadGateway(_) => StatusCode::BAD_GATEWAY,
            Refusal::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Refusal::GatewayTimeout => StatusCode::GATEWAY_TIMEOUT,
            Refusal::NotImplemented(_) => StatusCode::NOT_IMPLEMENTED,
        }
    }

    /// The answer's text: the cause, never a token or a Secret value.
    pub fn message(&self) -> String {
        match self {
            Refusal::Unauthenticated => "unauthorized: a ServiceAccount token is required (Authorization: Bearer, or Basic with the token as password)".to_string(),
            Refusal::Forbidden => FORBIDDEN_BODY.trim_end().to_string(),
            Refusal::ProxyAuthRequired => "proxy authentication required: Proxy-Authorization: Basic base64(\"<namespace>/<connector>:<ServiceAccount token>\")".to_string(),
            Refusal::GatewayTimeout => "gateway timeout: the tool sent no response in time".to_string(),
            Refusal::DestinationRefused(m)
            | Refusal::NotFound(m)
            | Refusal::BadRequest(m)
            | Refusal::Misdirected(m)
            | Refusal::MethodNotAllowed(m)
            | Refusal::PayloadTooLarge(m)
            | Refusal::BadGateway(m)
            | Refusal::Unavailable(m)
            | Refusal::NotImplemented(m) => m.clone(),
        }
    }
}
