//! SSE streams: the upstream's events are parsed with `tb-sse` (any
//! chunking), decoded into neutral [`Ev`]s by the upstream protocol's
//! decoder, and written as the client protocol's events by its encoder.
//!
//! Memory is bounded by what the client protocol must repeat, never by the
//! stream: the decoders keep a few ids and flags per open block or tool
//! call; the Messages and Chat encoders keep the same; the Responses
//! encoder keeps the text of the item it is writing (its `*.done` events
//! repeat it) and the finished items (its `response.completed` repeats
//! them), so at most one copy of the answer — never the upstream's framing.
//!
//! An event whose data does not parse is skipped (the rest of the stream
//! still translates); an event over `tb-sse`'s cap is skipped the same
//! way. A stream that ends without saying how the answer finished is
//! closed with an error event in the client's protocol.

mod decode;
mod encode;
mod encode_chat;
mod encode_messages;
mod encode_responses;

use serde::Serialize;
use tb_domain::Protocol;
use tb_sse::{SseItem, SseParser};

use crate::ir::{Finish, Usage};
use crate::{AnswerContext, Route};
use encode::Encode;

/// One thing an upstream stream said, in no protocol's shape.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Ev<'a> {
    Start {
        id: &'a str,
        model: &'a str,
        created: Option<u64>,
    },
    Text(&'a str),
    Reasoning(&'a str),
    Refusal(&'a str),
    /// A tool call begins; `key` names it in the later events.
    ToolStart {
        key: u32,
        id: &'a str,
        name: &'a str,
    },
    ToolArgs {
        key: u32,
        delta: &'a str,
    },
    ToolEnd {
        key: u32,
    },
    /// The usage so far (cumulative; the last one counts).
    Usage(Usage),
    Finish(Finish, Option<&'a str>),
    /// The upstream's terminal event.
    Done,
    Error {
        kind: &'a str,
        message: &'a str,
    },
}

/// Translates an upstream SSE stream into the client's protocol, chunk by
/// chunk.
#[derive(Debug)]
pub struct StreamTranslator {
    parser: SseParser,
    decoder: decode::Decoder,
    encoder: Encoder,
    shaper: Shaper,
    native: bool,
}

/// The client protocol's writer.
#[derive(Debug)]
enum Encoder {
    Chat(encode_chat::ChatEncoder),
    Messages(encode_messages::MessagesEncoder),
    Responses(encode_responses::ResponsesEncoder),
    /// A protocol that is not translated: nothing is written.
    None,
}

impl StreamTranslator {
    /// A translator for one answer to a request for `model`.
    pub fn new(route: &Route<'_>, model: &str) -> Self {
        Self::with_context(route, model, &AnswerContext::default())
    }

    /// A translator that knows what the request said
    /// ([`TranslatedRequest::context`](crate::TranslatedRequest)).
    pub fn with_context(route: &Route<'_>, model: &str, ctx: &AnswerContext) -> Self {
        let encoder = match route.client {
            Protocol::ChatCompletions => Encoder::Chat(encode_chat::ChatEncoder::new(model, ctx)),
            Protocol::Messages => Encoder::Messages(encode_messages::MessagesEncoder::new(model)),
            Protocol::Responses => {
                Encoder::Responses(encode_responses::ResponsesEncoder::new(model, ctx))
            }
            Protocol::ImagesGenerations
            | Protocol::ImagesEdits
            | Protocol::Embeddings
            | Protocol::Videos => Encoder::None,
        };
        StreamTranslator {
            parser: SseParser::new(),
            decoder: decode::Decoder::new(route.upstream),
            encoder,
            shaper: Shaper::new(ctx),
            native: route.is_native(),
        }
    }

    /// Feeds the next upstream bytes (split anywhere) and appends the
    /// client bytes they complete to `out`.
    pub fn push(&mut self, chunk: &[u8], out: &mut Vec<u8>) {
        if self.native {
            out.extend_from_slice(chunk);
            return;
        }
        let (decoder, encoder, shaper) = (&mut self.decoder, &mut self.encoder, &mut self.shaper);
        self.parser.feed(chunk, |item| {
            if let SseItem::Event(event) = item {
                decoder.decode(event.event, event.data, &mut |ev| {
                    if let Some(ev) = shaper.shape(ev) {
                        encoder.emit(ev, out);
                    }
                });
            }
        });
    }

    /// The upstream stream ended (cleanly or not): completes what the
    /// last chunk held and closes the client stream — with its terminal
    /// events, or with an error event when the upstream never said how the
    /// answer finished.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        if self.native {
            return;
        }
        let (decoder, encoder, shaper) = (&mut self.decoder, &mut self.encoder, &mut self.shaper);
        self.parser.finish(|item| {
            if let SseItem::Event(event) = item {
                decoder.decode(event.event, event.data, &mut |ev| {
                    if let Some(ev) = shaper.shape(ev) {
                        encoder.emit(ev, out);
                    }
                });
            }
        });
        encoder.close(out);
    }
}

impl Encoder {
    fn emit(&mut self, ev: Ev<'_>, out: &mut Vec<u8>) {
        match self {
            Encoder::Chat(e) => e.emit(ev, out),
            Encoder::Messages(e) => e.emit(ev, out),
            Encoder::Responses(e) => e.emit(ev, out),
            Encoder::None => {}
        }
    }

    fn close(&mut self, out: &mut Vec<u8>) {
        match self {
            Encoder::Chat(e) => e.close(out),
            Encoder::Messages(e) => e.close(out),
            Encoder::Responses(e) => e.close(out),
            Encoder::None => {}
        }
    }
}

/// What the request changes about the answer's events: the forced
/// structured-output tool streams as text, hidden reasoning is dropped.
#[derive(Debug)]
struct Shaper {
    json_tool: Option<String>,
    json_key: Option<u32>,
    hide_reasoning: bool,
}

impl Shaper {
    fn new(ctx: &AnswerContext) -> Shaper {
        Shaper {
            json_tool: ctx.json_tool.clone(),
            json_key: None,
            hide_reasoning: ctx.hide_reasoning,
        }
    }

    fn shape<'a>(&mut self, ev: Ev<'a>) -> Option<Ev<'a>> {
        match ev {
            Ev::Reasoning(_) if self.hide_reasoning => None,
            Ev::ToolStart { key, name, .. } if self.json_tool.as_deref() == Some(name) => {
                self.json_key = Some(key);
                None
            }
            Ev::ToolArgs { key, delta } if self.json_key == Some(key) => Some(Ev::Text(delta)),
            Ev::ToolEnd { key } if self.json_key == Some(key) => None,
            Ev::Finish(Finish::ToolCalls, seq) if self.json_key.is_some() => {
                Some(Ev::Finish(Finish::Stop, seq))
            }
            ev => Some(ev),
        }
    }
}

/// Writes one SSE event: `event: <name>` (when named) and one `data:` line.
pub(crate) fn write_event<T: Serialize>(out: &mut Vec<u8>, name: Option<&str>, data: &T) {
    if let Some(name) = name {
        out.extend_from_slice(b"event: ");
        out.extend_from_slice(name.as_bytes());
        out.push(b'\n');
    }
    out.extend_from_slice(b"data: ");
    // Writing these types to a Vec cannot fail (no maps with non-string
    // keys, no non-finite floats); an error would leave a short line.
    let _ = serde_json::to_writer(&mut *out, data);
    out.extend_from_slice(b"\n\n");
}

/// The message of the error event that closes a stream the upstream
/// broke off.
pub(crate) const BROKEN_STREAM: &str = "the upstream's stream ended before the answer was complete";

#[cfg(test)]
mod tests;
