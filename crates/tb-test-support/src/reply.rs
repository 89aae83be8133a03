//! What the mock answers with, and what it saw.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tb_domain::Protocol;
use tokio::sync::Notify;

use crate::canned;

/// One scripted (or default) response of the mock upstream.
///
/// Build one with [`Reply::json`], [`Reply::sse`] and friends, adjust it with
/// the `with_*` helpers, and queue it with
/// [`MockUpstream::push_reply`](crate::MockUpstream::push_reply).
#[derive(Debug, Clone)]
pub struct Reply {
    /// The HTTP status code, sent as is (an invalid code becomes 500).
    pub status: u16,
    /// Response headers, in order. Names and values that are not valid HTTP
    /// are skipped.
    pub headers: Vec<(String, String)>,
    /// How long to wait before sending the response head.
    pub head_delay: Option<Duration>,
    /// The body.
    pub body: ReplyBody,
}

/// The body of a [`Reply`].
#[derive(Debug, Clone)]
pub enum ReplyBody {
    /// A whole body, sent with `content-length`.
    Bytes(Bytes),
    /// A streamed body, sent with chunked transfer encoding: each
    /// [`Chunk::Data`] becomes its own HTTP chunk, the other variants pause.
    Chunks(Vec<Chunk>),
    /// No response at all: the connection is closed after the request was
    /// read (after the head delay, if any), the way a crashing upstream or
    /// a reset looks to its client.
    Reset,
}

/// One step of a streamed body.
#[derive(Debug, Clone)]
pub enum Chunk {
    /// Send these bytes as one chunk (empty data is skipped).
    Data(Bytes),
    /// Wait this long before going on.
    Delay(Duration),
    /// Wait until the [`Notify`] is notified. Lets a test prove that the
    /// daemon forwards what it has without waiting for more, with no timing
    /// involved. Use [`Notify::notify_one`]: it leaves a permit if the
    /// stream has not reached this step yet, where `notify_waiters` would be
    /// lost.
    WaitFor(Arc<Notify>),
    /// Never go on: the stream stays open, silent, until the peer goes away
    /// (reported as [`StreamEnd::ClientGone`]). For idle-timeout and
    /// disconnect tests.
    Hang,
    /// Cut the connection here: the body fails, so a chunked response ends
    /// without its terminating chunk (a dropped stream).
    Abort,
}

/// How a streamed ([`ReplyBody::Chunks`]) reply ended, as reported by
/// [`MockUpstream::next_stream_end`](crate::MockUpstream::next_stream_end).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StreamEnd {
    /// Every chunk was handed to the connection and the body ended.
    Completed,
    /// The body was dropped before its end: the peer went away (or the
    /// connection failed) while the reply was being sent or was hanging.
    ClientGone,
}

impl Reply {
    /// A whole body with `content-type: application/json`.
    pub fn json(status: u16, body: impl Into<Bytes>) -> Reply {
        Reply::bytes(status, body).with_header("content-type", "application/json")
    }

    /// A whole body with `content-type: text/plain; charset=utf-8`.
    pub fn text(status: u16, body: impl Into<Bytes>) -> Reply {
        Reply::bytes(status, body).with_header("content-type", "text/plain; charset=utf-8")
    }

    /// A whole body with no headers at all.
    pub fn bytes(status: u16, body: impl Into<Bytes>) -> Reply {
        Reply {
            status,
            headers: Vec::new(),
            head_delay: None,
            body: ReplyBody::Bytes(body.into()),
        }
    }

    /// A streamed body with no headers at all.
    pub fn chunked(status: u16, chunks: Vec<Chunk>) -> Reply {
        Reply {
            status,
            headers: Vec::new(),
            head_delay: None,
            body: ReplyBody::Chunks(chunks),
        }
    }

    /// A `200` streamed body with `content-type: text/event-stream`.
    pub fn sse(chunks: Vec<Chunk>) -> Reply {
        Reply::chunked(200, chunks)
            .with_header("content-type", "text/event-stream")
            .with_header("cache-control", "no-cache")
    }

    /// The `200` reply the mock gives by default: [`canned::json`], or when
    /// `stream` is set [`canned::sse_events`] with one chunk per event.
    pub fn canned(protocol: Protocol, model: &str, stream: bool) -> Reply {
        if stream {
            Reply::sse(
                canned::sse_events(protocol, model)
                    .into_iter()
                    .map(|event| Chunk::Data(event.into()))
                    .collect(),
            )
        } else {
            Reply::json(200, canned::json(protocol, model))
        }
    }

    /// An OpenAI-shaped JSON error (see [`canned::openai_error`]).
    pub fn openai_error(status: u16, error_type: &str, code: &str, message: &str) -> Reply {
        Reply::json(status, canned::openai_error(error_type, code, message))
    }

    /// An Anthropic-shaped JSON error (see [`canned::anthropic_error`]).
    pub fn anthropic_error(status: u16, error_type: &str, message: &str) -> Reply {
        Reply::json(status, canned::anthropic_error(error_type, message))
    }

    /// Sets a header, replacing any of the same name (case-insensitive).
    #[must_use]
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Reply {
        let name = name.into();
        self.headers.retain(|(n, _)| !n.eq_ignore_ascii_case(&name));
        self.headers.push((name, value.into()));
        self
    }

    /// Adds a header, keeping any of the same name (for repeated headers).
    #[must_use]
    pub fn append_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Reply {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Closes the connection without answering (see [`ReplyBody::Reset`]).
    pub fn reset() -> Reply {
        Reply {
            status: 0,
            headers: Vec::new(),
            head_delay: None,
            body: ReplyBody::Reset,
        }
    }

    /// Delays the response head by `delay`.
    #[must_use]
    pub fn with_head_delay(mut self, delay: Duration) -> Reply {
        self.head_delay = Some(delay);
        self
    }

    /// Replaces the status code.
    #[must_use]
    pub fn with_status(mut self, status: u16) -> Reply {
        self.status = status;
        self
    }
}
