//! The response body as it streams to the client: bytes pass through frame
//! by frame as they arrive, seen on the way by a [`Tap`] (usage, content,
//! event stripping); an idle timeout or an upstream failure after the head
//! has gone out ends an SSE stream with a protocol-shaped error event; and
//! however the body ends — complete, broken, or dropped because the client
//! went away — the finish callback runs exactly once.

use std::pin::Pin;
use std::task::{Context, Poll};
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

/// Watches the bytes going to the client.
pub(crate) trait Tap: Send + 'static {
    /// Sees `data` as it goes by; returns what to forward (usually `data`
    /// itself; less when an event is held back or stripped).
    fn on_data(&mut self, data: Bytes) -> Bytes;
    /// End of the upstream body: returns held-back bytes still to forward.
    fn on_end(&mut self) -> Bytes {
        Bytes::new()
    }
    /// Whether a content event has gone by (the TTFT moment).
    fn saw_content(&self) -> bool;
}

/// A tap that only forwards.
#[cfg(test)]
pub(crate) struct NoTap;

#[cfg(test)]
impl Tap for NoTap {
    fn on_data(&mut self, data: Bytes) -> Bytes {
        data
    }
    fn saw_content(&self) -> bool {
        false
    }
}

/// How the body ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ending {
    /// The upstream finished and everything was forwarded.
    Complete,
    /// The upstream broke the body.
    UpstreamError,
    /// The upstream went silent for longer than the idle timeout.
    IdleTimeout,
    /// The client went away (the body was dropped unfinished).
    ClientGone,
}

/// Called once when the body ends: how, the time to the first content
/// event (from when the body started), and the tap for its findings.
pub(crate) type Finish<T> = Box<dyn FnOnce(Ending, Option<Duration>, &mut T) + Send>;

/// Wraps an upstream body: idle timeout, tap, error events, finish callback.
pub(crate) struct PassThrough<B, T: Tap> {
    inner: B,
    tap: T,
    idle: Duration,
    sleep: Pin<Box<Sleep>>,
    on_break: OnBreak,
    upstream: String,
    /// Whether the bytes forwarded so far end on an event boundary.
    at_boundary: bool,
    done: bool,
    started: Instant,
    ttft: Option<Duration>,
    finish: Option<Finish<T>>,
    /// Bytes already read (and tapped) while the response was held back,
    /// sent before anything else.
    prefix: Option<Bytes>,
}

impl<B, T: Tap> PassThrough<B, T> {
    pub(crate) fn new(
        inner: B,
        tap: T,
        idle: Duration,
        on_break: OnBreak,
        upstream: String,
        started: Instant,
        finish: Finish<T>,
    ) -> Self {
        PassThrough {
            inner,
            tap,
            idle,
            sleep: Box::pin(tokio::time::sleep(idle)),
            on_break,
            upstream,
            at_boundary: true,
            done: false,
            started,
            ttft: None,
            finish: Some(finish),
            prefix: None,
        }
    }

    /// Sends `prefix` first: bytes the tap has already seen (the held-back
    /// preamble and first content event). `ttft` is when that content came.
    pub(crate) fn with_prefix(mut self, prefix: Bytes, ttft: Option<Duration>) -> Self {
        if !prefix.is_empty() {
            self.prefix = Some(prefix);
        }
        self.ttft = ttft;
        self
    }

    fn end(&mut self, ending: Ending) {
        self.done = true;
        if let Some(finish) = self.finish.take() {
            finish(ending, self.ttft, &mut self.tap);
        }
    }

    fn break_frame(
        &mut self,
        err: ProxyError,
        ending: Ending,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.end(ending);
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

    fn forward(&mut self, data: Bytes) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if !data.is_empty() {
            self.at_boundary = data.ends_with(b"\n\n") || data.ends_with(b"\r\n\r\n");
        }
        Poll::Ready(Some(Ok(Frame::data(data))))
    }
}

impl<B, T: Tap> Drop for PassThrough<B, T> {
    fn drop(&mut self) {
        if self.finish.is_some() {
            self.end(Ending::ClientGone);
        }
    }
}

impl<B, T> Body for PassThrough<B, T>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Display,
    T: Tap + Unpin,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        if let Some(prefix) = this.prefix.take() {
            if this.inner.is_end_stream() {
                // The held prefix is the whole answer: finish now, hyper may
                // not poll again once the known length is written.
                let tail = this.tap.on_end();
                this.end(Ending::Complete);
                if !tail.is_empty() {
                    let mut joined = bytes::BytesMut::from(&prefix[..]);
                    joined.extend_from_slice(&tail);
                    return this.forward(joined.freeze());
                }
            }
            return this.forward(prefix);
        }
        if this.done {
            return Poll::Ready(None);
        }
        loop {
            match Pin::new(&mut this.inner).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    let deadline = Instant::now() + this.idle;
                    this.sleep.as_mut().reset(deadline);
                    let data = match frame.into_data() {
                        Ok(data) => data,
                        // Trailers are not part of the LLM protocols; drop them.
                        Err(_) => continue,
                    };
                    let mut out = this.tap.on_data(data);
                    if this.inner.is_end_stream() {
                        // A body of known length ends with its last frame: hyper
                        // will not poll again, so finish now.
                        let tail = this.tap.on_end();
                        if !tail.is_empty() {
                            let mut joined = bytes::BytesMut::from(&out[..]);
                            joined.extend_from_slice(&tail);
                            out = joined.freeze();
                        }
                    }
                    if this.ttft.is_none() && this.tap.saw_content() {
                        this.ttft = Some(this.started.elapsed());
                    }
                    if this.inner.is_end_stream() {
                        this.end(Ending::Complete);
                    }
                    if out.is_empty() {
                        if this.done {
                            return Poll::Ready(None);
                        }
                        // Held back or stripped: nothing to send for this frame.
                        continue;
                    }
                    return this.forward(out);
                }
                Poll::Ready(Some(Err(e))) => {
                    tracing::warn!(target: "stream.upstream_error", upstream = %this.upstream, error = %e, "upstream stream broke after the response head was sent");
                    let msg = format!("upstream {} broke the stream: {e}", this.upstream);
                    return this.break_frame(
                        ProxyError::new(ErrorCode::UpstreamUnreachable, msg),
                        Ending::UpstreamError,
                    );
                }
                Poll::Ready(None) => {
                    let tail = this.tap.on_end();
                    if this.ttft.is_none() && this.tap.saw_content() {
                        this.ttft = Some(this.started.elapsed());
                    }
                    this.end(Ending::Complete);
                    if tail.is_empty() {
                        return Poll::Ready(None);
                    }
                    return this.forward(tail);
                }
                Poll::Pending => {
                    if this.sleep.as_mut().poll(cx).is_pending() {
                        return Poll::Pending;
                    }
                    tracing::warn!(target: "stream.idle_timeout", upstream = %this.upstream, idle_ms = this.idle.as_millis() as u64, "upstream went silent");
                    let msg = format!(
                        "upstream {} sent nothing for {} ms (routing.stream_idle_timeout_ms); the stream was ended",
                        this.upstream,
                        this.idle.as_millis()
                    );
                    return this.break_frame(
                        ProxyError::new(ErrorCode::UpstreamTimeout, msg),
                        Ending::IdleTimeout,
                    );
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done && self.prefix.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        match self.on_break {
            // An error event may be added or an event stripped.
            OnBreak::ErrorEvent(_) => SizeHint::default(),
            // Bytes pass unchanged: the held prefix plus what is left.
            OnBreak::Abort => {
                let extra = self.prefix.as_ref().map_or(0, |p| p.len() as u64);
                let inner = self.inner.size_hint();
                let mut hint = SizeHint::new();
                hint.set_lower(inner.lower() + extra);
                if let Some(upper) = inner.upper() {
                    hint.set_upper(upper + extra);
                }
                hint
            }
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

    fn pass(
        frames: Vec<Bytes>,
        then_error: bool,
        idle_ms: u64,
        on_break: OnBreak,
    ) -> (
        PassThrough<Scripted, NoTap>,
        std::sync::Arc<std::sync::Mutex<Option<Ending>>>,
    ) {
        let seen = std::sync::Arc::new(std::sync::Mutex::new(None));
        let sink = std::sync::Arc::clone(&seen);
        let body = PassThrough::new(
            Scripted { frames, then_error },
            NoTap,
            Duration::from_millis(idle_ms),
            on_break,
            "up".into(),
            Instant::now(),
            Box::new(move |ending, _ttft, _tap| {
                let mut slot = sink.lock().unwrap();
                assert!(slot.is_none(), "finish runs once");
                *slot = Some(ending);
            }),
        );
        (body, seen)
    }

    async fn drain(body: PassThrough<Scripted, NoTap>) -> Vec<u8> {
        let mut body = body;
        let mut out = Vec::new();
        while let Some(frame) = body.frame().await {
            out.extend_from_slice(frame.unwrap().data_ref().unwrap());
        }
        out
    }

    #[tokio::test(start_paused = true)]
    async fn idle_timeout_ends_sse_with_an_error_event() {
        let (body, seen) = pass(
            vec![Bytes::from_static(b"data: {\"a\":1}\n\n")],
            false,
            1_000,
            OnBreak::ErrorEvent(Protocol::ChatCompletions),
        );
        let out = String::from_utf8(drain(body).await).unwrap();
        assert!(
            out.starts_with("data: {\"a\":1}\n\ndata: {\"error\""),
            "{out}"
        );
        assert!(out.contains("upstream_timeout"), "{out}");
        assert_eq!(*seen.lock().unwrap(), Some(Ending::IdleTimeout));
    }

    #[tokio::test(start_paused = true)]
    async fn upstream_error_mid_event_closes_the_event_first() {
        let (body, seen) = pass(
            vec![Bytes::from_static(
                b"event: content_block_delta\ndata: {\"x",
            )],
            true,
            1_000,
            OnBreak::ErrorEvent(Protocol::Messages),
        );
        let out = String::from_utf8(drain(body).await).unwrap();
        assert!(out.contains("{\"x\n\nevent: error\ndata: "), "{out}");
        assert!(out.ends_with("\n\n"));
        assert_eq!(*seen.lock().unwrap(), Some(Ending::UpstreamError));
    }

    #[tokio::test]
    async fn non_sse_errors_abort() {
        let (mut body, seen) = pass(
            vec![Bytes::from_static(b"{\"par")],
            true,
            60_000,
            OnBreak::Abort,
        );
        assert!(body.frame().await.unwrap().is_ok());
        assert!(body.frame().await.unwrap().is_err());
        assert_eq!(*seen.lock().unwrap(), Some(Ending::UpstreamError));
    }

    #[tokio::test]
    async fn dropping_an_unfinished_body_reports_the_client_gone() {
        let (mut body, seen) = pass(
            vec![Bytes::from_static(b"data: 1\n\n")],
            false,
            60_000,
            OnBreak::Abort,
        );
        assert!(body.frame().await.unwrap().is_ok());
        drop(body);
        assert_eq!(*seen.lock().unwrap(), Some(Ending::ClientGone));
    }
}
