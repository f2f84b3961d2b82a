//! [`HttpProber`]: sends one probe request (manual redirects, TLS trust, a total
//! deadline, a body cap) and returns the response.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, Method, StatusCode};
use tokio::time::Instant;
use url::Url;

use super::destination::{DestinationPolicy, PolicyResolver, Refused, check_url, find_refusal};
use super::secret::cut_message;
use super::trust::TrustBundle;
use super::{FailureReason, ProbeOutcome, ProbeRequest, ProbeSettings};

/// A response as judged: status, headers, and the body read up to the cap.
/// `Debug` shows header names and the body size only.
#[derive(Clone, Default)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// The body was longer than the cap and was cut there.
    pub truncated: bool,
}

impl fmt::Debug for HttpResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.headers.keys().map(|k| k.as_str()).collect();
        f.debug_struct("HttpResponse")
            .field("status", &self.status)
            .field("headers", &names)
            .field("body", &format!("<{} bytes>", self.body.len()))
            .field("truncated", &self.truncated)
            .finish()
    }
}

impl HttpResponse {
    /// A response with a status, headers and a whole body (for tests and callers that
    /// judge responses they obtained otherwise).
    pub fn new(status: u16, headers: HeaderMap, body: impl Into<Bytes>) -> Self {
        HttpResponse {
            status,
            headers,
            body: body.into(),
            truncated: false,
        }
    }
}

/// Sends probe requests. Keeps one HTTP client per [`TrustBundle`] (by
/// [`TrustBundle::id`]); cheap to clone (the clients are shared).
#[derive(Clone)]
pub struct HttpProber {
    settings: ProbeSettings,
    clients: Arc<Mutex<HashMap<u64, reqwest::Client>>>,
}

impl fmt::Debug for HttpProber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpProber")
            .field("settings", &self.settings)
            .finish()
    }
}

/// Clients kept at most; past it the cache starts over (bundles change rarely).
const MAX_CLIENTS: usize = 256;

const STAGE_HEADERS: u8 = 0;
const STAGE_BODY: u8 = 1;

impl HttpProber {
    pub fn new(settings: ProbeSettings) -> Self {
        HttpProber {
            settings,
            clients: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    pub fn settings(&self) -> &ProbeSettings {
        &self.settings
    }

    /// The client trusting the system roots plus `trust`, built once per bundle.
    fn client(&self, trust: &TrustBundle) -> Result<reqwest::Client, String> {
        let mut clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(c) = clients.get(&trust.id()) {
            return Ok(c.clone());
        }
        let client = build_client(trust, &self.settings)?;
        if clients.len() >= MAX_CLIENTS {
            clients.clear();
        }
        clients.insert(trust.id(), client.clone());
        Ok(client)
    }

    /// Sends the request: redirects followed by hand (at most `max_redirects`, none
    /// when the probe disables them; credential headers are not sent to another
    /// host), all within the total deadline, the body read up to the cap. A transport
    /// failure is `ConnectionFailed` with a Go-style message
    /// `Get "https://host/path": <cause>`.
    pub async fn send(
        &self,
        request: &ProbeRequest,
        trust: &TrustBundle,
    ) -> Result<HttpResponse, ProbeOutcome> {
        let client = self.client(trust).map_err(|e| {
            ProbeOutcome::failed(
                FailureReason::ConnectionFailed,
                format!("could not set up the HTTP client: {e}"),
            )
        })?;
        let deadline = Instant::now() + self.settings.timeout;
        let stage = AtomicU8::new(STAGE_HEADERS);
        let hop = Mutex::new(Hop {
            url: request.url.clone(),
            redirects: 0,
        });
        let exchange = self.exchange(&client, request, &stage, &hop);
        let result = match tokio::time::timeout_at(deadline, exchange).await {
            Ok(r) => r,
            Err(_) => {
                let cause = if stage.load(Ordering::Relaxed) == STAGE_BODY {
                    "context deadline exceeded (Client.Timeout or context cancellation while reading body)"
                } else {
                    "context deadline exceeded (Client.Timeout exceeded while awaiting headers)"
                };
                let hop = hop
                    .lock()
                    .map(|h| h.clone())
                    .unwrap_or_else(|e| e.into_inner().clone());
                Err(Failure::connection(hop.error(request, cause)))
            }
        };
        result.map_err(|f| ProbeOutcome::failed(f.reason, request.bounded(&f.message)))
    }

    /// Whether `url` answers at all (any HTTP status counts): one GET, no redirect
    /// followed, body not read, within the probe deadline. `Err` is a Go-style
    /// transport message (`Get "url": cause`). For the class API/proxy reachability
    /// checks.
    pub async fn reach(&self, url: &str, trust: &TrustBundle) -> Result<u16, String> {
        let parsed = Url::parse(url).map_err(|e| format!("invalid URL {url:?}: {e}"))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(format!("invalid URL {url:?}: scheme is not http or https"));
        }
        if let Err(refused) = check_url(&parsed, self.settings.destinations) {
            return Err(cut_message(&go_error(
                &Method::GET,
                &parsed,
                &refused.to_string(),
            )));
        }
        let client = self
            .client(trust)
            .map_err(|e| format!("could not set up the HTTP client: {e}"))?;
        let send = client.get(parsed.clone()).send();
        let result = match tokio::time::timeout(self.settings.timeout, send).await {
            Ok(Ok(response)) => Ok(response.status().as_u16()),
            Ok(Err(e)) => Err(go_error(&Method::GET, &parsed, &cause(&e))),
            Err(_) => Err(go_error(
                &Method::GET,
                &parsed,
                "context deadline exceeded (Client.Timeout exceeded while awaiting headers)",
            )),
        };
        result.map_err(|e| cut_message(&e))
    }

    async fn exchange(
        &self,
        client: &reqwest::Client,
        request: &ProbeRequest,
        stage: &AtomicU8,
        hop: &Mutex<Hop>,
    ) -> Result<HttpResponse, Failure> {
        let origin = host_key(&request.url);
        let mut url = request.url.clone();
        let mut method = request.method.clone();
        let mut body = request.body.clone();
        let mut with_credentials = true;
        let mut redirects = 0usize;
        loop {
            let here = Hop {
                url: url.clone(),
                redirects,
            };
            set(hop, here.clone());
            if let Err(refused) = check_url(&url, self.settings.destinations) {
                return Err(Failure {
                    reason: FailureReason::DestinationRefused,
                    message: here.error(request, &refused.to_string()),
                });
            }
            if host_key(&url) != origin && with_credentials {
                with_credentials = false;
                if request.body_is_credential {
                    body = None;
                }
            }
            let rb = hop_request(
                client,
                request,
                &method,
                &url,
                body.as_ref(),
                with_credentials,
            );
            tracing::debug!(url = %here.display(request), method = %method, "sending probe request");
            let response = rb
                .send()
                .await
                .map_err(|e| Failure::transport(&e, here.error(request, &cause(&e))))?;
            let status = response.status();
            if request.follow_redirects
                && status.is_redirection()
                && let Some(next) = location(&response, &url)
            {
                if redirects >= self.settings.max_redirects {
                    let last = Hop {
                        url: next,
                        redirects: redirects + 1,
                    };
                    return Err(Failure::connection(format!(
                        "{}: stopped after {} redirects (the last to host {})",
                        go_request(request),
                        self.settings.max_redirects,
                        last.host()
                    )));
                }
                redirects += 1;
                redirect_method(status, &mut method, &mut body);
                url = next;
                continue;
            }
            stage.store(STAGE_BODY, Ordering::Relaxed);
            let headers = response.headers().clone();
            let (body, truncated) = read_capped(response, self.settings.body_cap)
                .await
                .map_err(|e| Failure::transport(&e, here.error(request, &cause(&e))))?;
            tracing::debug!(url = %here.display(request), status = status.as_u16(), bytes = body.len(), truncated, "probe response");
            return Ok(HttpResponse {
                status: status.as_u16(),
                headers,
                body,
                truncated,
            });
        }
    }
}

/// One hop's request: credential headers only toward the original host, and no
/// Content-Type once the body was dropped.
fn hop_request(
    client: &reqwest::Client,
    request: &ProbeRequest,
    method: &Method,
    url: &url::Url,
    body: Option<&bytes::Bytes>,
    with_credentials: bool,
) -> reqwest::RequestBuilder {
    let mut rb = client.request(method.clone(), url.clone());
    for h in &request.headers {
        if h.credential && !with_credentials {
            continue;
        }
        if body.is_none() && h.name == http::header::CONTENT_TYPE && request.body.is_some() {
            continue;
        }
        rb = rb.header(h.name.clone(), h.value.clone());
    }
    if let Some(b) = body {
        rb = rb.body(b.clone());
    }
    rb
}

/// As Go does: 301/302/303 turn into a GET without body (but HEAD stays HEAD);
/// 307/308 repeat the method and body.
fn redirect_method(status: StatusCode, method: &mut Method, body: &mut Option<bytes::Bytes>) {
    if matches!(
        status,
        StatusCode::MOVED_PERMANENTLY | StatusCode::FOUND | StatusCode::SEE_OTHER
    ) && *method != Method::HEAD
    {
        *method = Method::GET;
        *body = None;
    }
}

/// Why a request failed, before it becomes an outcome (scrubbed and bounded then).
struct Failure {
    reason: FailureReason,
    message: String,
}

impl Failure {
    fn connection(message: String) -> Self {
        Failure {
            reason: FailureReason::ConnectionFailed,
            message,
        }
    }

    /// `DestinationRefused` when the resolver refused every address of the host.
    fn transport(e: &reqwest::Error, message: String) -> Self {
        let reason = if find_refusal(e).is_some() {
            FailureReason::DestinationRefused
        } else {
            FailureReason::ConnectionFailed
        };
        Failure { reason, message }
    }
}

/// Where a request is: its URL and how many redirects led there.
#[derive(Clone)]
struct Hop {
    url: Url,
    redirects: usize,
}

impl Hop {
    /// The URL for logs and messages: the probe's own URL (scrubbed); after a
    /// redirect, the host only (a Location may carry what an internal service
    /// answered).
    fn display(&self, request: &ProbeRequest) -> String {
        if self.redirects == 0 {
            request.scrub(self.url.as_str())
        } else {
            format!("{}://{}", self.url.scheme(), self.host())
        }
    }

    /// `host:port` (the port when it is not the scheme's default).
    fn host(&self) -> String {
        let host = self.url.host_str().unwrap_or_default();
        match self.url.port() {
            Some(p) => format!("{host}:{p}"),
            None => host.to_string(),
        }
    }

    /// Go's `url.Error` text for the probe's request, the redirect named by host:
    /// `Get "https://host/path": cause`, or
    /// `Get "https://host/path": after 2 redirects, to host other:8080: cause`.
    fn error(&self, request: &ProbeRequest, cause: &str) -> String {
        if self.redirects == 0 {
            go_error(&request.method, &self.url, cause)
        } else {
            let plural = if self.redirects == 1 { "" } else { "s" };
            format!(
                "{}: after {} redirect{plural}, to host {}: {cause}",
                go_request(request),
                self.redirects,
                self.host()
            )
        }
    }
}

/// `Get "https://host/path"` of the probe's own request.
fn go_request(request: &ProbeRequest) -> String {
    let full = go_error(&request.method, &request.url, "");
    full.trim_end_matches(": ").to_string()
}

fn set<T>(m: &Mutex<T>, v: T) {
    match m.lock() {
        Ok(mut g) => *g = v,
        Err(e) => *e.into_inner() = v,
    }
}

/// Host and port: credential headers go to the origin's host and port only.
fn host_key(url: &Url) -> (String, Option<u16>) {
    (
        url.host_str().unwrap_or_default().to_ascii_lowercase(),
        url.port_or_known_default(),
    )
}

fn location(response: &reqwest::Response, base: &Url) -> Option<Url> {
    let loc = response
        .headers()
        .get(http::header::LOCATION)?
        .to_str()
        .ok()?;
    let next = base.join(loc.trim()).ok()?;
    matches!(next.scheme(), "http" | "https").then_some(next)
}

/// Reads the body up to `cap` bytes; past it the rest is not read.
async fn read_capped(
    mut response: reqwest::Response,
    cap: usize,
) -> Result<(Bytes, bool), reqwest::Error> {
    let mut buf = BytesMut::new();
    while let Some(chunk) = response.chunk().await? {
        let room = cap.saturating_sub(buf.len());
        if chunk.len() > room {
            buf.extend_from_slice(&chunk[..room]);
            return Ok((buf.freeze(), true));
        }
        buf.extend_from_slice(&chunk);
    }
    Ok((buf.freeze(), false))
}

/// Go's `url.Error` text: `Get "https://host/path": cause`.
fn go_error(method: &Method, url: &Url, cause: &str) -> String {
    let m = method.as_str();
    let op = match m.split_at_checked(1) {
        Some((first, rest)) => format!("{first}{}", rest.to_ascii_lowercase()),
        None => m.to_string(),
    };
    format!("{op} \"{url}\": {cause}")
}

/// The cause of a transport error, worded close to Go's where it is recognised.
fn cause(e: &reqwest::Error) -> String {
    use std::error::Error as StdError;
    if e.is_timeout() {
        return "context deadline exceeded (Client.Timeout exceeded while awaiting headers)"
            .to_string();
    }
    // Every error below the reqwest one, including those an `io::Error` wraps (its
    // `source()` skips the wrapped error itself).
    let mut chain: Vec<&(dyn StdError + 'static)> = Vec::new();
    let mut next = e.source();
    while let Some(s) = next {
        chain.push(s);
        next = match s
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            Some(inner) => Some(inner as &(dyn StdError + 'static)),
            None => s.source(),
        };
    }
    for s in &chain {
        if let Some(refused) = s.downcast_ref::<Refused>() {
            return refused.to_string();
        }
        if let Some(tls) = s.downcast_ref::<rustls::Error>() {
            return tls_cause(tls);
        }
        if let Some(io) = s.downcast_ref::<std::io::Error>()
            && io.kind() == std::io::ErrorKind::ConnectionRefused
        {
            return "connect: connection refused".to_string();
        }
    }
    // Otherwise the innermost messages, without the repeats of outer ones.
    let mut messages: Vec<String> = Vec::new();
    for s in chain.iter().rev() {
        let text = s.to_string();
        if !messages
            .iter()
            .any(|m| m.contains(&text) || text.contains(m.as_str()))
        {
            messages.push(text);
        }
    }
    if messages.is_empty() {
        return e.to_string();
    }
    messages.reverse();
    messages.join(": ")
}

fn tls_cause(e: &rustls::Error) -> String {
    use rustls::CertificateError as C;
    match e {
        rustls::Error::InvalidCertificate(c) => {
            let what = match c {
                C::UnknownIssuer => "x509: certificate signed by unknown authority".to_string(),
                C::Expired
                | C::ExpiredContext { .. }
                | C::NotValidYet
                | C::NotValidYetContext { .. } => {
                    format!("x509: certificate has expired or is not yet valid ({e})")
                }
                C::NotValidForName | C::NotValidForNameContext { .. } => {
                    format!("x509: certificate is not valid for this host ({e})")
                }
                _ => e.to_string(),
            };
            format!("tls: failed to verify certificate: {what}")
        }
        other => format!("tls: {other}"),
    }
}

/// The probes' HTTP client (see [`build_client`]) for other checks of the same
/// process family (the identity controller's OIDC check).
pub fn probe_client(
    trust: &TrustBundle,
    settings: &ProbeSettings,
) -> Result<reqwest::Client, String> {
    build_client(trust, settings)
}

/// A client trusting the system roots plus the bundle, with rustls on the `ring`
/// provider, no automatic redirects, no proxy (a proxy would connect to the
/// destination unchecked) and, unless the policy is `Any`, a resolver that keeps only
/// the addresses the policy allows.
fn build_client(trust: &TrustBundle, settings: &ProbeSettings) -> Result<reqwest::Client, String> {
    let mut config = trust.client_config()?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let mut builder = reqwest::Client::builder();
    if settings.destinations != DestinationPolicy::Any {
        builder = builder.dns_resolver(Arc::new(PolicyResolver {
            policy: settings.destinations,
        }));
    }
    builder
        .tls_backend_preconfigured(config)
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(settings.timeout)
        .user_agent(concat!("connectors-operator/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| e.to_string())
}
