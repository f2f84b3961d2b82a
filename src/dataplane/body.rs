//! Bodies as the proxy relays them: streamed frame by frame (hyper's flow control is
//! the backpressure), counted for the metrics, and telling when the request body has
//! ended (the response-header timeout starts then, SPEC-proxy section 6).

use std::future::Future;
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

/// A relayed body that moves no byte for this long is ended with an error (SPEC-proxy
/// section 6: no total timeout, but an idle one).
pub const IDLE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(300);

/// Why a relayed body was cut off.
#[derive(Debug, thiserror::Error)]
#[error("no bytes for {0:?}: idle timeout")]
pub struct IdleTimeout(std::time::Duration);

/// A body that counts its data bytes, signals its end, and ends with an error after
/// [`IDLE_TIMEOUT`] without a frame.
pub struct Metered<B> {
    inner: B,
    bytes: Counter,
    ended: Option<Arc<Notify>>,
    idle: Pin<Box<tokio::time::Sleep>>,
    idle_limit: std::time::Duration,
}

impl<B> Metered<B> {
    pub fn new(inner: B, bytes: Counter) -> Self {
        Self::with_idle_timeout(inner, bytes, IDLE_TIMEOUT)
    }

    pub fn with_idle_timeout(inner: B, bytes: Counter, idle_limit: std::time::Duration) -> Self {
        Metered {
            inner,
            bytes,
            ended: None,
            idle: Box::pin(tokio::time::sleep(idle_limit)),
            idle_limit,
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
            Poll::Pending => {
                if self.idle.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Some(Err(Box::new(IdleTimeout(self.idle_limit)))));
                }
            }
            Poll::Ready(Some(Ok(frame))) => {
                let deadline = tokio::time::Instant::now() + self.idle_limit;
                self.idle.as_mut().reset(deadline);
                if let Some(data) = frame.data_ref() {
                    self.bytes.inc_by(data.len() as u64);
                }
                if self.inner.is_end_stream() {
                    self.end();
                }
            }
            Poll::Ready(None) => self.end(),
            Poll::Ready(Some(Err(_))) => {}
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use http_body_util::BodyExt;

    use super::*;

    /// A body that never yields a frame.
    struct Silent;

    impl Body for Silent {
        type Data = Bytes;
        type Error = BoxError;

        fn poll_frame(
            self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
            Poll::Pending
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_body_ends_with_an_error_after_the_idle_timeout() {
        let start = tokio::time::Instant::now();
        let body = Metered::with_idle_timeout(Silent, Counter::default(), Duration::from_secs(300));
        let Err(err) = body.collect().await else {
            panic!("a silent body ended without an idle error");
        };
        assert!(err.to_string().contains("idle timeout"), "{err}");
        assert_eq!(start.elapsed().as_secs(), 300);
    }

    #[tokio::test(start_paused = true)]
    async fn frames_reset_the_idle_timeout() {
        let (mut tx, rx) = futures::channel::mpsc::channel::<Result<Frame<Bytes>, BoxError>>(1);
        let body = Metered::with_idle_timeout(
            http_body_util::StreamBody::new(rx),
            Counter::default(),
            Duration::from_secs(10),
        );
        let sender = tokio::spawn(async move {
            use futures::SinkExt;
            for _ in 0..3 {
                tokio::time::sleep(Duration::from_secs(8)).await;
                let _ = tx.send(Ok(Frame::data(Bytes::from_static(b"x")))).await;
            }
        });
        let collected = body
            .collect()
            .await
            .expect("no idle error while frames come");
        assert_eq!(collected.to_bytes().len(), 3);
        sender.await.unwrap();
    }
}
