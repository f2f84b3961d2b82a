//! A built probe request: what is sent, which parts are credentials, and the
//! secret strings to keep out of every message about it.

use std::fmt;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Method};
use sha2::{Digest, Sha256};
use url::Url;

use super::ProbeKind;
use super::cel_check::CelCheck;
use super::secret::{REDACTED, Redactor};
use crate::inject::canonical_header_name;

/// One request header. `credential` headers (Authorization, Cookie, any header whose
/// template reads `.Secret`, any header a Rego generator injected) are dropped when a
/// redirect leads to another host.
#[derive(Clone)]
pub struct RequestHeader {
    pub name: HeaderName,
    pub value: HeaderValue,
    pub credential: bool,
}

/// How the response of a request is judged; shared by the requests of one probe.
#[derive(Debug)]
pub(crate) struct ProbeCheck {
    /// Field path of the probe, e.g. `spec.livenessProbe.http`.
    pub(crate) field: String,
    /// An API probe (200 passes) rather than an HTTP probe.
    pub(crate) api: bool,
    pub(crate) cel: Option<CelCheck>,
}

/// A request ready to send. `Debug` never shows a credential: credential header
/// values are redacted, the body is shown by size only, and secret values are
/// scrubbed from the URL and other header values.
#[derive(Clone)]
pub struct ProbeRequest {
    pub(crate) kind: ProbeKind,
    pub(crate) method: Method,
    pub(crate) url: Url,
    pub(crate) headers: Vec<RequestHeader>,
    pub(crate) body: Option<Bytes>,
    /// The body carries injected credentials: not re-sent to another host.
    pub(crate) body_is_credential: bool,
    pub(crate) follow_redirects: bool,
    pub(crate) check: Arc<ProbeCheck>,
    pub(crate) redactor: Redactor,
}

impl ProbeRequest {
    pub fn kind(&self) -> ProbeKind {
        self.kind
    }

    pub fn method(&self) -> &Method {
        &self.method
    }

    /// The URL sent. It may carry credentials in its query (a Rego generator with
    /// `position: query`): log [`ProbeRequest::display_url`] instead.
    pub fn url(&self) -> &Url {
        &self.url
    }

    /// The URL with secret values replaced by `[redacted]`, for messages and logs.
    pub fn display_url(&self) -> String {
        self.scrub(self.url.as_str())
    }

    pub fn headers(&self) -> &[RequestHeader] {
        &self.headers
    }

    pub fn body(&self) -> Option<&Bytes> {
        self.body.as_ref()
    }

    pub fn follow_redirects(&self) -> bool {
        self.follow_redirects
    }

    /// Field path of the probe this request comes from, e.g. `spec.authProbes[0].probe.http`.
    pub fn probe_field(&self) -> &str {
        &self.check.field
    }

    /// `text` with every secret value of this request replaced by `[redacted]`.
    pub fn scrub(&self, text: &str) -> String {
        self.redactor.scrub(text)
    }

    /// `text` as an outcome message: scrubbed, cut to 1 KiB on a character boundary,
    /// and scrubbed again after the cut (SPEC section 4).
    pub(crate) fn bounded(&self, text: &str) -> String {
        self.redactor.bounded(text)
    }

    /// Equal for identical requests (method, URL, headers, body, redirect flag), so
    /// Connectors whose liveness requests are identical can share one request and
    /// its [`HttpResponse`](super::HttpResponse) (each still judges it with its own
    /// class). A hex SHA-256 digest, safe to log. The trust bundle is not part of it:
    /// callers key on `(dedup_key, TrustBundle::id)`.
    pub fn dedup_key(&self) -> String {
        let mut h = Sha256::new();
        let mut field = |b: &[u8]| {
            h.update((b.len() as u64).to_be_bytes());
            h.update(b);
        };
        field(self.method.as_str().as_bytes());
        field(self.url.as_str().as_bytes());
        for hd in &self.headers {
            field(hd.name.as_str().as_bytes());
            field(hd.value.as_bytes());
        }
        field(b"--body--");
        field(self.body.as_deref().unwrap_or_default());
        field(&[u8::from(self.follow_redirects), u8::from(self.check.api)]);
        let digest = h.finalize();
        digest.iter().map(|b| format!("{b:02x}")).collect()
    }
}

impl fmt::Debug for ProbeRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let headers: Vec<String> = self
            .headers
            .iter()
            .map(|h| {
                let value = if h.credential {
                    REDACTED.to_string()
                } else {
                    self.scrub(&String::from_utf8_lossy(h.value.as_bytes()))
                };
                format!("{}: {}", canonical_header_name(h.name.as_str()), value)
            })
            .collect();
        f.debug_struct("ProbeRequest")
            .field("kind", &self.kind)
            .field("method", &self.method)
            .field("url", &self.display_url())
            .field("headers", &headers)
            .field(
                "body",
                &self.body.as_ref().map(|b| format!("<{} bytes>", b.len())),
            )
            .field("follow_redirects", &self.follow_redirects)
            .field("probe", &self.check.field)
            .finish()
    }
}

impl fmt::Debug for RequestHeader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let value = if self.credential {
            REDACTED.to_string()
        } else {
            String::from_utf8_lossy(self.value.as_bytes()).into_owned()
        };
        write!(f, "{}: {}", self.name, value)
    }
}

/// `scheme://host` + `path` for an HTTP probe (SPEC section 4): host from the probe,
/// else the host and port of the address; scheme from the probe, else the address's
/// when the host is the address's, else `http`; the address's own path is dropped.
pub(crate) fn http_probe_url(
    address: Option<&str>,
    host: Option<&str>,
    scheme: Option<&str>,
    path: &str,
) -> Result<Url, String> {
    let address = match address.map(str::trim).filter(|a| !a.is_empty()) {
        Some(a) => {
            Some(Url::parse(a).map_err(|e| format!("spec.address is not a valid URL: {e}"))?)
        }
        None => None,
    };
    let address_host = address.as_ref().and_then(|a| {
        let h = a.host_str()?;
        Some(match a.port() {
            Some(p) => format!("{h}:{p}"),
            None => h.to_string(),
        })
    });
    let mut probe_host = host
        .map(str::trim)
        .filter(|h| !h.is_empty())
        .map(str::to_string);
    let mut scheme = scheme
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string);
    // Tolerate a host written as a URL (`https://tool.example.com:8443`): its host
    // and port, and its scheme unless the probe sets one.
    if let Some(h) = probe_host.clone().filter(|h| h.contains("://")) {
        let u = Url::parse(&h).map_err(|e| format!("http.host {h:?} is not a host: {e}"))?;
        let name = u.host_str().unwrap_or_default();
        probe_host = Some(match u.port() {
            Some(p) => format!("{name}:{p}"),
            None => name.to_string(),
        });
        scheme = scheme.or_else(|| Some(u.scheme().to_string()));
    }
    let probe_host = probe_host.as_deref();
    let host = match (probe_host, &address_host) {
        (Some(h), _) => h.to_string(),
        (None, Some(h)) => h.clone(),
        (None, None) => {
            return Err(
                "the Connector has no spec.address (and the probe sets no http.host)".to_string(),
            );
        }
    };
    let same_host = match (probe_host, &address, &address_host) {
        (None, _, _) => true,
        (Some(h), Some(a), Some(ah)) => {
            h.eq_ignore_ascii_case(ah) || a.host_str().is_some_and(|x| x.eq_ignore_ascii_case(h))
        }
        _ => false,
    };
    let scheme = match scheme {
        Some(s) => s.to_ascii_lowercase(),
        None => match (&address, same_host) {
            (Some(a), true) => a.scheme().to_string(),
            _ => "http".to_string(),
        },
    };
    if scheme != "http" && scheme != "https" {
        return Err(format!("scheme must be http or https, not {scheme:?}"));
    }
    let path = if path.starts_with('/') {
        path.to_string()
    } else {
        format!("/{path}")
    };
    Url::parse(&format!("{scheme}://{host}{path}"))
        .map_err(|e| format!("the probe URL is invalid: {e}"))
}

/// The class API URL (its path prefix kept) joined with the API probe's path.
pub(crate) fn api_probe_url(base: &str, path: &str) -> Result<Url, String> {
    let joined = if path.is_empty() {
        base.to_string()
    } else {
        format!(
            "{}/{}",
            base.trim_end_matches('/'),
            path.trim_start_matches('/')
        )
    };
    let url = Url::parse(&joined).map_err(|e| format!("the API probe URL is invalid: {e}"))?;
    match url.scheme() {
        "http" | "https" => Ok(url),
        other => Err(format!(
            "the class API address has scheme {other:?}, not http or https"
        )),
    }
}
