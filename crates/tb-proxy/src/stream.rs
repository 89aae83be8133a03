//! The response body as it streams to the client: bytes pass through frame
//! by frame as they arrive; an idle timeout or an upstream failure after the
//! head has gone out ends an SSE stream with a protocol-shaped error event.

use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::time::{Instant, Sleep};

use crate::BoxError;
use crate::error::{ErrorCode, ProxyError};
use tb_domain::Protocol;

/// What to do when the stream breaks after the head went out.
#[derive(Debug, Clone, Copy)]
pub(crate) enum OnBreak {
    /// SSE: write an error event in this protocol's shape, then end.
    ErrorEvent(Protocol),
    /// Anything else: abort the body (the client sees a truncated response).
    Abort,
}

/// Wraps an upstream body with an idle timeout and error-event handling.
pub(crate) struct PassThrough<B> {
    inner: B,
    idle: Duration,
    sleep: Pin<Box<Sleep>>,
    on_break: OnBreak,
    upstream: String,
    /// Whether the bytes forwarded so far end on an event boundary.
    at_boundary: bool,
    done: bool,
}

impl<B> PassThrough<B> {
    pub(crate) fn new(inner: B, idle: Duration, on_break: OnBreak, upstream: String) -> Self {
        PassThrough {
            inner,
            idle,
            sleep: Box::pin(tokio::time::sleep(idle)),
            on_break,
            upstream,
            at_boundary: true,
            done: false,
        }
    }

    fn break_frame(&mut self, err: ProxyError) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.done = true;
        match self.on_break {
            OnBreak::ErrorEvent(protocol) => {
                let event = err.sse_event(protocol.family(), protocol == Protocol::ChatCompletions);
                let bytes = if self.at_boundary {
                    event
                } else {
                    // Close the half-written event so the error is its own event.
                    let mut v = Vec::with_capacity(event.len() + 2);
                    v.extend_from_slice(b"\n\n");
                    v.extend_from_slice(&event);
                    Bytes::from(v)
                };
                Poll::Ready(Some(Ok(Frame::data(bytes))))
            }
            OnBreak::Abort => Poll::Ready(Some(Err(err.message.into()))),
        }
    }
}

impl<B> Body for PassThrough<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Display,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(None);
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref()
                    && !data.is_empty()
                {
                    this.at_boundary = data.ends_with(b"\n\n") || data.ends_with(b"\r\n\r\n");
                }
                let deadline = Instant::now() + this.idle;
                this.sleep.as_mut().reset(deadline);
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => {
                tracing::warn!(target: "stream.upstream_error", upstream = %this.upstream, error = %e, "upstream stream broke after the response head was sent");
                let msg = format!("upstream {} broke the stream: {e}", this.upstream);
                this.break_frame(ProxyError::new(ErrorCode::UpstreamUnreachable, msg))
            }
            Poll::Ready(None) => {
                this.done = true;
                Poll::Ready(None)
            }
            Poll::Pending => {
                ready!(this.sleep.as_mut().poll(cx));
                tracing::warn!(target: "stream.idle_timeout", upstream = %this.upstream, idle_ms = this.idle.as_millis() as u64, "upstream went silent");
                let msg = format!(
                    "upstream {} sent nothing for {} ms (routing.stream_idle_timeout_ms); the stream was ended",
                    this.upstream,
                    this.idle.as_millis()
                );
                this.break_frame(ProxyError::new(ErrorCode::UpstreamTimeout, msg))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        match self.on_break {
            // An error event may be added, so the size is not exact.
            OnBreak::ErrorEvent(_) => SizeHint::default(),
            OnBreak::Abort => self.inner.size_hint(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    struct Scripted {
        frames: Vec<Bytes>,
        then_error: bool,
    }

    impl Body for Scripted {
        type Data = Bytes;
        type Error = &'static str;
        fn poll_frame(
            mut self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
            if self.frames.is_empty() {
                if self.then_error {
                    self.then_error = false;
                    return Poll::Ready(Some(Err("connection reset")));
                }
                return Poll::Pending; // hang
            }
            let f = self.frames.remove(0);
            Poll::Ready(Some(Ok(Frame::data(f))))
        }
    }

    async fn drain(body: PassThrough<Scripted>) -> Vec<u8> {
        let mut body = body;
        let mut out = Vec::new();
        while let Some(frame) = body.frame().await {
            out.extend_from_slice(frame.unwrap().data_ref().unwrap());
        }
        out
    }

    #[tokio::test(start_paused = true)]
    async fn idle_timeout_ends_sse_with_an_error_event() {
        let body = PassThrough::new(
            Scripted {
                frames: vec![Bytes::from_static(b"data: {\"a\":1}\n\n")],
                then_error: false,
            },
            Duration::from_millis(1_000),
            OnBreak::ErrorEvent(Protocol::ChatCompletions),
            "up".into(),
        );
        let out = String::from_utf8(drain(body).await).unwrap();
        assert!(
            out.starts_with("data: {\"a\":1}\n\ndata: {\"error\""),
            "{out}"
        );
        assert!(out.contains("upstream_timeout"), "{out}");
    }

    #[tokio::test(start_paused = true)]
    async fn upstream_error_mid_event_closes_the_event_first() {
        let body = PassThrough::new(
            Scripted {
                frames: vec![Bytes::from_static(
                    b"event: content_block_delta\ndata: {\"x",
                )],
                then_error: true,
            },
            Duration::from_millis(1_000),
            OnBreak::ErrorEvent(Protocol::Messages),
            "up".into(),
        );
        let out = String::from_utf8(drain(body).await).unwrap();
        assert!(out.contains("{\"x\n\nevent: error\ndata: "), "{out}");
        assert!(out.ends_with("\n\n"));
    }

    #[tokio::test]
    async fn non_sse_errors_abort() {
        let mut body = PassThrough::new(
            Scripted {
                frames: vec![Bytes::from_static(b"{\"par")],
                then_error: true,
            },
            Duration::from_secs(60),
            OnBreak::Abort,
            "up".into(),
        );
        assert!(body.frame().await.unwrap().is_ok());
        assert!(body.frame().await.unwrap().is_err());
    }
}
