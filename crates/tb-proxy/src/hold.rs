//! Holding an answer back until it is safe to commit to it: a stream until
//! its first content event (before that the request can still fail over —
//! routing.md, "Streaming failover"), a JSON answer until it is whole (so an
//! empty completion can still fail over and its usage is read).

use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use http_body::Body;
use http_body_util::BodyExt;
use tb_domain::Outcome;

use crate::stream::Tap;
use crate::tap::ResponseTap;

/// Largest preamble held back before committing anyway (a stream that
/// sends megabytes of non-content is not waited out in memory).
const MAX_PREAMBLE_BYTES: usize = 1024 * 1024;

/// How holding a stream ended.
pub(crate) enum Held<B> {
    /// Content arrived: send `prefix`, then the rest of the body.
    Commit {
        /// Everything forwarded so far (preamble and the first content).
        prefix: Bytes,
        /// The rest of the upstream body.
        rest: B,
        /// Time from the request's arrival to the first content event.
        ttft: Option<Duration>,
    },
    /// The stream ended with no content: an empty completion.
    Empty {
        /// The whole stream as the client would see it.
        whole: Bytes,
    },
    /// The stream broke, went silent or sent an error event before content.
    Broke {
        /// `server_error` or `deadline`.
        outcome: Outcome,
        /// What happened.
        detail: String,
    },
}

/// Reads `body` through `tap` until the first content event.
pub(crate) async fn hold_stream<B>(
    mut body: B,
    tap: &mut ResponseTap,
    idle: Duration,
    started: Instant,
) -> Held<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Display,
{
    let mut held = BytesMut::new();
    loop {
        match tokio::time::timeout(idle, body.frame()).await {
            Err(_) => {
                return Held::Broke {
                    outcome: Outcome::Deadline,
                    detail: format!(
                        "no event for {} ms before the first content",
                        idle.as_millis()
                    ),
                };
            }
            Ok(None) => {
                held.extend_from_slice(&tap.on_end());
                if tap.saw_content() {
                    let ttft = Some(started.elapsed());
                    return Held::Commit {
                        prefix: held.freeze(),
                        rest: body,
                        ttft,
                    };
                }
                return Held::Empty {
                    whole: held.freeze(),
                };
            }
            Ok(Some(Err(e))) => {
                return Held::Broke {
                    outcome: Outcome::ServerError,
                    detail: format!("the stream broke before the first content: {e}"),
                };
            }
            Ok(Some(Ok(frame))) => {
                let Ok(data) = frame.into_data() else {
                    continue;
                };
                held.extend_from_slice(&tap.on_data(data));
                if tap.saw_content() {
                    let ttft = Some(started.elapsed());
                    return Held::Commit {
                        prefix: held.freeze(),
                        rest: body,
                        ttft,
                    };
                }
                if tap.saw_error() {
                    return Held::Broke {
                        outcome: Outcome::ServerError,
                        detail: "the upstream sent an error event before any content".into(),
                    };
                }
                if held.len() > MAX_PREAMBLE_BYTES {
                    return Held::Commit {
                        prefix: held.freeze(),
                        rest: body,
                        ttft: None,
                    };
                }
            }
        }
    }
}

/// How buffering a JSON answer ended.
pub(crate) enum Buffered<B> {
    /// The whole answer.
    Whole(Bytes),
    /// Over the limit: what was read, then the rest streams through.
    TooLarge {
        /// What was read.
        prefix: Bytes,
        /// The rest.
        rest: B,
    },
    /// The body broke (`server_error`) or went silent (`deadline`).
    Broke {
        /// The failure class.
        class: Outcome,
        /// What happened.
        detail: String,
    },
}

/// Reads a non-streaming answer whole, up to `max` bytes.
pub(crate) async fn buffer_json<B>(mut body: B, max: u64, idle: Duration) -> Buffered<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Display,
{
    let max = usize::try_from(max).unwrap_or(usize::MAX);
    let mut buf = BytesMut::new();
    loop {
        match tokio::time::timeout(idle, body.frame()).await {
            Err(_) => {
                return Buffered::Broke {
                    class: Outcome::Deadline,
                    detail: format!("the answer stalled for {} ms", idle.as_millis()),
                };
            }
            Ok(None) => return Buffered::Whole(buf.freeze()),
            Ok(Some(Err(e))) => {
                return Buffered::Broke {
                    class: Outcome::ServerError,
                    detail: format!("the answer broke: {e}"),
                };
            }
            Ok(Some(Ok(frame))) => {
                let Ok(data) = frame.into_data() else {
                    continue;
                };
                buf.extend_from_slice(&data);
                if buf.len() > max {
                    return Buffered::TooLarge {
                        prefix: buf.freeze(),
                        rest: body,
                    };
                }
            }
        }
    }
}
