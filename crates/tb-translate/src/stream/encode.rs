//! What the three stream encoders share: the answer's head (id, model,
//! creation time, started/closed) and the rules every client stream
//! follows — it starts once, writes nothing after it closed, and closes
//! with its terminal events when the upstream said how the answer
//! finished, else with an error event.
//!
//! What differs by protocol stays in each encoder: the events, the id
//! prefix, and the error type a broken stream reports.

use super::{BROKEN_STREAM, Ev};
use crate::ids;

/// The answer an encoder is writing: what its start and terminal events
/// repeat.
#[derive(Debug)]
pub(super) struct Head {
    /// The client protocol's answer id (`chatcmpl-…`, `resp_…`, `msg_…`).
    pub(super) id: String,
    pub(super) model: String,
    /// Unix seconds (Messages has no creation time and ignores it).
    pub(super) created: u64,
    pub(super) started: bool,
    pub(super) closed: bool,
}

impl Head {
    pub(super) fn new(model: &str, created: u64) -> Head {
        Head {
            id: String::new(),
            model: model.to_owned(),
            created,
            started: false,
            closed: false,
        }
    }

    /// Starts the answer with the upstream's id, model and time (each
    /// kept from the request when the upstream did not say it): `false`
    /// when it had already started, and nothing changes.
    pub(super) fn begin(
        &mut self,
        prefix: &str,
        id: &str,
        model: &str,
        created: Option<u64>,
    ) -> bool {
        if self.started {
            return false;
        }
        self.started = true;
        self.id = ids::prefixed(prefix, id).into_owned();
        if !model.is_empty() {
            model.clone_into(&mut self.model);
        }
        self.created = created.unwrap_or(self.created);
        true
    }
}

/// A client protocol's stream writer.
pub(super) trait Encode {
    /// The error type of the event that closes a stream the upstream broke
    /// off.
    const BROKEN_KIND: &'static str;

    fn head(&self) -> &Head;

    /// Writes the start events (once; see [`Head::begin`]).
    fn start(&mut self, id: &str, model: &str, created: Option<u64>, out: &mut Vec<u8>);

    /// Writes what one content event (text, reasoning, tool calls, usage,
    /// finish) means; the stream is open.
    fn event(&mut self, ev: Ev<'_>, out: &mut Vec<u8>);

    /// Whether the upstream said how the answer finished.
    fn finished(&self) -> bool;

    /// Writes the terminal events and closes the stream.
    fn complete(&mut self, out: &mut Vec<u8>);

    /// Writes an error event and closes the stream.
    fn fail(&mut self, kind: &str, message: &str, out: &mut Vec<u8>);

    /// Writes what one upstream event means, nothing once closed.
    fn emit(&mut self, ev: Ev<'_>, out: &mut Vec<u8>) {
        if self.head().closed {
            return;
        }
        match ev {
            Ev::Start { id, model, created } => self.start(id, model, created, out),
            Ev::Done => self.complete(out),
            Ev::Error { kind, message } => self.fail(kind, message, out),
            ev => self.event(ev, out),
        }
    }

    /// Writes the start events with what the request said, unless the
    /// upstream's start already did.
    fn ensure_started(&mut self, out: &mut Vec<u8>) {
        if !self.head().started {
            self.start("", "", None, out);
        }
    }

    /// The upstream ended: complete if it said how the answer finished,
    /// else report the break.
    fn close(&mut self, out: &mut Vec<u8>) {
        if self.head().closed {
            return;
        }
        if self.finished() {
            self.complete(out);
        } else {
            self.fail(Self::BROKEN_KIND, BROKEN_STREAM, out);
        }
    }
}
