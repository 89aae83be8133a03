//! Incremental Server-Sent Events parsing over arbitrary byte chunks.
//!
//! The proxy forwards SSE bytes as they arrive and never re-serialises them,
//! but it still has to *read* the stream: to find usage, to see the first
//! content event (until then it can fail over), and to cut the seller's
//! private `tokenbuddy.settlement` event out of what the client sees. Network
//! reads split a stream anywhere — inside a line, between `\r` and `\n`,
//! inside a UTF-8 character — so this crate turns such chunks back into the
//! events the [WHATWG event-stream rules] define, and also says *where* each
//! event sits in the byte stream, so a later stage can remove a whole event
//! even when it spans several chunks.
//!
//! [`SseParser`] is pure: no I/O, no async, no clock. Memory is bounded: it
//! keeps the current incomplete line and the current event's fields, never
//! the stream, and an event larger than a configurable cap (16 MiB by
//! default) is reported as [`SseItem::Oversized`] and skipped instead of
//! growing a buffer without limit. After warm-up, feeding a chunk does not
//! allocate: buffers are reused from event to event.
//!
//! Rules implemented (WHATWG HTML, "Interpreting an event stream"):
//! - lines end in `\r\n`, `\n` or `\r`; a leading UTF-8 BOM is dropped;
//! - `field: value` — one space after the colon is stripped; a line without
//!   a colon is a field with an empty value; unknown fields are ignored;
//! - `data` lines are joined with `\n`; `event` sets the type; `id` sets the
//!   last event id (ignored when it contains NUL; it persists across events);
//!   `retry` with only ASCII digits is reported as [`SseItem::Retry`];
//! - a line starting with `:` is a comment, reported as [`SseItem::Comment`];
//! - an empty line dispatches the event; an event without any `data` line is
//!   not dispatched; an unfinished event at the end of the stream is dropped.
//!
//! Invalid UTF-8 never panics and never stops the parse: it is replaced with
//! U+FFFD (lossy decoding), line by line, after the line has been
//! reassembled, so a character split across chunks is decoded intact.
//!
//! [WHATWG event-stream rules]: https://html.spec.whatwg.org/multipage/server-sent-events.html#event-stream-interpretation
//!
//! ```
//! use tb_sse::{SseItem, SseParser};
//!
//! let mut parser = SseParser::new();
//! let mut seen = Vec::new();
//! // One event split across three reads, with CRLF line ends.
//! for chunk in [&b"event: ping\r\ndata: {\"a\""[..], b":1}\r", b"\n\r\n: bye\n"] {
//!     parser.feed(chunk, |item| match item {
//!         SseItem::Event(ev) => {
//!             seen.push(format!("{:?} {} {:?}", ev.event, ev.data, ev.range))
//!         }
//!         SseItem::Comment(text) => seen.push(format!("comment {text}")),
//!         _ => {}
//!     });
//! }
//! parser.finish(|_| {});
//! assert_eq!(
//!     seen,
//!     [r#"Some("ping") {"a":1} 0..30"#, "comment bye"]
//! );
//! ```

mod parser;

pub use parser::{DEFAULT_MAX_EVENT_BYTES, SseEvent, SseItem, SseParser};

#[cfg(test)]
mod tests;
