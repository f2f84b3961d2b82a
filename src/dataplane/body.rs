//! Bodies as the proxy relays them: streamed frame by frame (hyper's flow control is
//! the backpressure), counted for the metrics, and telling when the request body has
//! ended (the response-header timeout starts then, SPEC-proxy section 6).

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::BodyExt;
use http_body_util::combinators::BoxBody;
use hyper::body::{Body, Frame, SizeHint};
use prometheus_client::metrics::counter::Counter;
use tokio::sync::Notify;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Every body the proxy sends or answers with.
pub type ProxyBody = BoxBody<Bytes, BoxError>;

/// A whole, small body (errors, buffered generator bodies).
pub fn full(bytes: impl Into<Bytes>) -> ProxyBody {
    http_body_util::Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed()
}

pub fn empty() -> ProxyBody {
    full(Bytes::new())
}

/// A body that counts its data bytes and signals its end.
pub struct Metered<B> {
    inner: B,
    bytes: Counter,
    ended: Option<Arc<Notify>>,
}

impl<B> Metered<B> {
    pub fn new(inner: B, bytes: Counter) -> Self {
        Metered {
            inner,
            bytes,
            ended: None,
        }
    }

    /// Notifies `ended` (once) when the body has been read to its end.
    pub fn signal_end(mut self, ended: Arc<Notify>) -> Self {
        self.ended = Some(ended);
        self
    }

    fn end(&mut self) {
        if let Some(ended) = self.ended.take() {
            ended.notify_one();
        }
    }
}

impl<B> Body for Metered<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    self.bytes.inc_by(data.len() as u64);
                }
                if self.inner.is_end_stream() {
                    self.end();
                }
            }
            Poll::Ready(None) => self.end(),
            _ => {}
        }
        polled.map(|frame| frame.map(|r| r.map_err(Into::into)))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
