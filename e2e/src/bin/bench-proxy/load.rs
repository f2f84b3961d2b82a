//! The load generator: HTTP/1.1 over keep-alive connections (one hyper client
//! connection per simulated client), 1 KiB GETs timed one by one, and single streamed
//! downloads and uploads timed end to end. Bodies are counted, never kept.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, Request, StatusCode, header};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, StreamBody};
use hyper::body::Frame;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

type Body = BoxBody<Bytes, Infallible>;

/// Chunk size of generated upload bodies.
const CHUNK: usize = 64 * 1024;
static ZEROS: [u8; CHUNK] = [0; CHUNK];

/// Where requests go: a loopback port, the `Host` to send and an optional
/// `Authorization` value (the ServiceAccount token, for the proxy).
#[derive(Clone, Debug)]
pub struct Target {
    pub name: &'static str,
    pub port: u16,
    pub host: String,
    pub authorization: Option<String>,
}

impl Target {
    fn request(&self, method: Method, path: &str, body: Body) -> Request<Body> {
        let mut builder = Request::builder()
            .method(method)
            .uri(path)
            .header(header::HOST, &self.host);
        if let Some(value) = &self.authorization {
            builder = builder.header(header::AUTHORIZATION, value);
        }
        builder.body(body).expect("a valid request")
    }
}

async fn connect(port: u16) -> std::io::Result<SendRequest<Body>> {
    let stream = TcpStream::connect(("127.0.0.1", port)).await?;
    stream.set_nodelay(true)?;
    let (sender, connection) = http1::handshake(TokioIo::new(stream))
        .await
        .map_err(std::io::Error::other)?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(sender)
}

fn empty() -> Body {
    Empty::<Bytes>::new().boxed()
}

/// Sends one request and reads the whole answer; returns the status and body bytes.
async fn exchange(
    sender: &mut SendRequest<Body>,
    request: Request<Body>,
) -> Result<(StatusCode, u64), String> {
    sender.ready().await.map_err(|e| e.to_string())?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| e.to_string())?;
    let status = response.status();
    let mut body = response.into_body();
    let mut bytes = 0u64;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| e.to_string())?;
        if let Some(data) = frame.data_ref() {
            bytes += data.len() as u64;
        }
    }
    Ok((status, bytes))
}

/// The outcome of a latency run: every successful request's time, and the failures.
#[derive(Debug, Default)]
pub struct Latencies {
    /// Microseconds, sorted.
    pub micros: Vec<u64>,
    pub errors: u64,
    pub first_error: Option<String>,
    pub seconds: f64,
}

impl Latencies {
    pub fn merge(&mut self, other: Latencies) {
        self.micros.extend(other.micros);
        self.micros.sort_unstable();
        self.errors += other.errors;
        self.first_error = self.first_error.take().or(other.first_error);
        self.seconds += other.seconds;
    }

    /// Quantile `q` in milliseconds.
    pub fn ms(&self, q: f64) -> f64 {
        if self.micros.is_empty() {
            return f64::NAN;
        }
        let index = ((self.micros.len() as f64 - 1.0) * q).round() as usize;
        self.micros[index.min(self.micros.len() - 1)] as f64 / 1000.0
    }

    pub fn requests_per_second(&self) -> f64 {
        self.micros.len() as f64 / self.seconds.max(f64::EPSILON)
    }
}

/// `requests` GETs of `path` shared by `clients` keep-alive connections, each client
/// sending its next request as soon as the previous answer is read. A failed
/// connection is replaced.
pub async fn latency(target: &Target, path: &str, clients: usize, requests: usize) -> Latencies {
    latency_until(target, path, clients, requests, None).await
}

/// [`latency`], stopping also at `deadline` when one is given.
pub async fn latency_until(
    target: &Target,
    path: &str,
    clients: usize,
    requests: usize,
    deadline: Option<Instant>,
) -> Latencies {
    let next = Arc::new(AtomicUsize::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(clients);
    for _ in 0..clients {
        let target = target.clone();
        let path = path.to_string();
        let next = next.clone();
        let errors = errors.clone();
        tasks.push(tokio::spawn(async move {
            let mut micros = Vec::with_capacity((requests / clients.max(1)).min(100_000) + 1);
            let mut first_error = None;
            let mut sender = None;
            while next.fetch_add(1, Ordering::Relaxed) < requests
                && deadline.is_none_or(|d| Instant::now() < d)
            {
                if sender.is_none() {
                    match connect(target.port).await {
                        Ok(s) => sender = Some(s),
                        Err(e) => {
                            errors.fetch_add(1, Ordering::Relaxed);
                            first_error.get_or_insert(format!("connect: {e}"));
                            tokio::time::sleep(Duration::from_millis(10)).await;
                            continue;
                        }
                    }
                }
                let Some(s) = sender.as_mut() else { continue };
                let request = target.request(Method::GET, &path, empty());
                let t = Instant::now();
                match exchange(s, request).await {
                    Ok((StatusCode::OK, _)) => micros.push(t.elapsed().as_micros() as u64),
                    Ok((status, _)) => {
                        errors.fetch_add(1, Ordering::Relaxed);
                        first_error.get_or_insert(format!("status {status}"));
                    }
                    Err(e) => {
                        errors.fetch_add(1, Ordering::Relaxed);
                        first_error.get_or_insert(e);
                        sender = None;
                    }
                }
            }
            (micros, first_error)
        }));
    }
    let mut out = Latencies::default();
    for task in tasks {
        if let Ok((micros, first_error)) = task.await {
            out.micros.extend(micros);
            out.first_error = out.first_error.take().or(first_error);
        }
    }
    out.seconds = started.elapsed().as_secs_f64();
    out.micros.sort_unstable();
    out.errors = errors.load(Ordering::Relaxed);
    out
}

/// A body of `len` zero bytes, generated in 64 KiB chunks as it is sent.
fn generated(len: u64) -> Body {
    let chunk = Bytes::from_static(&ZEROS);
    let stream = futures::stream::unfold(len, move |left| {
        let chunk = chunk.clone();
        async move {
            let take = left.min(CHUNK as u64);
            (take > 0).then(|| {
                (
                    Ok::<_, Infallible>(Frame::data(chunk.slice(..take as usize))),
                    left - take,
                )
            })
        }
    });
    StreamBody::new(stream).boxed()
}

/// One transfer: bytes moved and seconds taken.
#[derive(Clone, Copy, Debug)]
pub struct Transfer {
    pub bytes: u64,
    pub seconds: f64,
}

impl Transfer {
    /// Megabytes (10^6 bytes) per second.
    pub fn mb_per_s(&self) -> f64 {
        self.bytes as f64 / 1e6 / self.seconds.max(f64::EPSILON)
    }
}

/// `GET /bytes/{len}` on a fresh connection, the body counted as it arrives.
pub async fn download(target: &Target, len: u64) -> Result<Transfer, String> {
    let mut sender = connect(target.port).await.map_err(|e| e.to_string())?;
    let started = Instant::now();
    let request = target.request(Method::GET, &format!("/bytes/{len}"), empty());
    let (status, bytes) = exchange(&mut sender, request).await?;
    let seconds = started.elapsed().as_secs_f64();
    if status != StatusCode::OK || bytes != len {
        return Err(format!(
            "{} download: status {status}, {bytes} of {len} bytes",
            target.name
        ));
    }
    Ok(Transfer { bytes, seconds })
}

/// `POST /sink` of `len` generated bytes (with `Content-Length`) on a fresh
/// connection; the tool must answer that it received them all.
pub async fn upload(target: &Target, len: u64) -> Result<Transfer, String> {
    let mut sender = connect(target.port).await.map_err(|e| e.to_string())?;
    let started = Instant::now();
    let mut request = target.request(Method::POST, "/sink", generated(len));
    request
        .headers_mut()
        .insert(header::CONTENT_LENGTH, len.into());
    sender.ready().await.map_err(|e| e.to_string())?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| e.to_string())?;
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    let seconds = started.elapsed().as_secs_f64();
    let expected = format!("\"received\":{len}");
    if status != StatusCode::OK || !String::from_utf8_lossy(&body).contains(&expected) {
        return Err(format!(
            "{} upload: status {status}, answer {}",
            target.name,
            String::from_utf8_lossy(&body)
        ));
    }
    Ok(Transfer {
        bytes: len,
        seconds,
    })
}
