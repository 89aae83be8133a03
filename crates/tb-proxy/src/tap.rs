//! The taps that watch answers on their way to the client: they read usage
//! and spot the first content event without delaying or storing the stream
//! (billing.md, "Usage extraction").

use std::ops::Range;

use bytes::{Bytes, BytesMut};
use tb_billing::settlement::{MAX_SETTLEMENT_BYTES, SETTLEMENT_EVENT};
use tb_billing::usage::{EventClass, RequestFacts, UsageReport, UsageTap};
use tb_domain::Protocol;
use tb_sse::SseParser;
use tb_translate::StreamTranslator;

use crate::stream::Tap;

/// The tap for one answer, chosen by status, content type and protocol.
pub(crate) enum ResponseTap {
    /// Nothing to read (error answers).
    Opaque,
    /// An event stream.
    Sse(Box<SseTap>),
    /// A whole answer already read: its usage is known.
    Ready(Box<UsageReport>),
}

impl ResponseTap {
    /// A tap that only forwards.
    pub(crate) fn opaque() -> ResponseTap {
        ResponseTap::Opaque
    }

    /// A tap for an event stream. It always removes a seller's private
    /// `tokenbuddy.settlement` event (keeping its data for the ledger);
    /// `strip_usage_only` also removes the chat usage-only chunk the daemon
    /// asked for on the client's behalf.
    pub(crate) fn sse(
        protocol: Protocol,
        facts: &RequestFacts,
        strip_usage_only: bool,
    ) -> ResponseTap {
        ResponseTap::Sse(Box::new(SseTap {
            parser: SseParser::new(),
            usage: UsageTap::new(protocol, facts),
            strip: Strip {
                pending: BytesMut::new(),
                pending_start: 0,
                drop: Vec::new(),
            },
            strip_usage_only,
            settlement: None,
            translator: None,
        }))
    }

    /// The same tap, with what it forwards translated into the client's
    /// protocol (an event-stream tap only; others are returned as they are).
    pub(crate) fn translated(self, translator: StreamTranslator) -> ResponseTap {
        match self {
            ResponseTap::Sse(mut t) => {
                t.translator = Some(Box::new(translator));
                ResponseTap::Sse(t)
            }
            other => other,
        }
    }

    /// The data of the settlement event the stream carried, if any.
    pub(crate) fn settlement(&self) -> Option<&str> {
        match self {
            ResponseTap::Sse(t) => t.settlement.as_deref(),
            _ => None,
        }
    }

    /// What the answer used; `None` for error answers.
    pub(crate) fn report(&mut self) -> Option<UsageReport> {
        match self {
            ResponseTap::Opaque => None,
            ResponseTap::Sse(t) => Some(t.usage.finish()),
            ResponseTap::Ready(r) => Some(r.as_ref().clone()),
        }
    }

    /// Whether the stream carried an error event.
    pub(crate) fn saw_error(&self) -> bool {
        match self {
            ResponseTap::Sse(t) => t.usage.saw_error(),
            _ => false,
        }
    }
}

impl Tap for ResponseTap {
    fn on_data(&mut self, data: Bytes) -> Bytes {
        match self {
            ResponseTap::Opaque | ResponseTap::Ready(_) => data,
            ResponseTap::Sse(t) => {
                let forwarded = t.on_data(data);
                t.translate(forwarded, false)
            }
        }
    }

    fn on_end(&mut self) -> Bytes {
        match self {
            ResponseTap::Sse(t) => {
                let tail = t.on_end();
                t.translate(tail, true)
            }
            _ => Bytes::new(),
        }
    }

    fn saw_content(&self) -> bool {
        match self {
            ResponseTap::Sse(t) => t.usage.saw_content(),
            _ => false,
        }
    }
}

/// Reads an event stream as it passes.
pub(crate) struct SseTap {
    parser: SseParser,
    usage: UsageTap,
    strip: Strip,
    strip_usage_only: bool,
    /// The last settlement event's data (bounded by the parser's event cap
    /// and [`tb_billing::settlement::MAX_SETTLEMENT_BYTES`]).
    settlement: Option<String>,
    /// On a translated route: writes the client's stream from what the
    /// tap forwards (the upstream's, settlement cut out).
    translator: Option<Box<StreamTranslator>>,
}

/// Decides whether an event leaves the stream: the seller's settlement
/// always (its data is kept), the usage-only chunk when asked.
fn cut(
    ev: &tb_sse::SseEvent<'_>,
    usage: &mut UsageTap,
    strip_usage_only: bool,
    settlement: &mut Option<String>,
) -> bool {
    if ev.event_type() == SETTLEMENT_EVENT {
        if ev.data.len() <= MAX_SETTLEMENT_BYTES {
            *settlement = Some(ev.data.to_string());
        } else {
            tracing::warn!(target: "billing.settlement_invalid", bytes = ev.data.len(), "settlement event too large; ignored");
        }
        return true;
    }
    usage.on_sse_event(ev) == EventClass::UsageOnly && strip_usage_only
}

/// Holds back the bytes of the event being received so that a usage-only
/// chunk can be cut out whole, whatever the chunk boundaries. Only the
/// current, incomplete event is ever held.
struct Strip {
    pending: BytesMut,
    /// Stream offset of `pending[0]`.
    pending_start: u64,
    /// Ranges (stream offsets) of events to cut.
    drop: Vec<Range<u64>>,
}

impl Strip {
    /// Takes the pending bytes before stream offset `upto`, minus dropped ranges.
    fn release(&mut self, upto: u64) -> Bytes {
        let take = usize::try_from(upto.saturating_sub(self.pending_start))
            .unwrap_or(usize::MAX)
            .min(self.pending.len());
        let chunk = self.pending.split_to(take).freeze();
        let chunk_start = self.pending_start;
        self.pending_start += take as u64;
        if self.drop.is_empty() {
            return chunk;
        }
        let mut out = BytesMut::with_capacity(chunk.len());
        let mut at = chunk_start;
        for r in self.drop.drain(..) {
            let keep_end = r.start.clamp(at, self.pending_start);
            out.extend_from_slice(
                &chunk[(at - chunk_start) as usize..(keep_end - chunk_start) as usize],
            );
            at = r.end.clamp(at, self.pending_start);
        }
        out.extend_from_slice(&chunk[(at - chunk_start) as usize..]);
        out.freeze()
    }
}

impl SseTap {
    /// `forwarded` in the client's protocol; `end` closes the stream.
    fn translate(&mut self, forwarded: Bytes, end: bool) -> Bytes {
        let Some(translator) = self.translator.as_mut() else {
            return forwarded;
        };
        let mut out = Vec::with_capacity(forwarded.len() + 128);
        translator.push(&forwarded, &mut out);
        if end {
            translator.finish(&mut out);
        }
        Bytes::from(out)
    }

    fn on_data(&mut self, data: Bytes) -> Bytes {
        let SseTap {
            parser,
            usage,
            strip,
            strip_usage_only,
            settlement,
            ..
        } = self;
        let nothing_held = strip.pending.is_empty();
        parser.feed(&data, |item| {
            if let tb_sse::SseItem::Event(ev) = item
                && cut(&ev, usage, *strip_usage_only, settlement)
            {
                strip.drop.push(ev.range.clone());
            }
        });
        let upto = parser.block_start();
        let data_end = strip.pending_start + data.len() as u64;
        if nothing_held && strip.drop.is_empty() && upto == data_end {
            // The usual chunk: whole events, nothing to cut. Forward the
            // upstream's bytes as they are instead of copying them through
            // the hold-back buffer.
            strip.pending_start = upto;
            return data;
        }
        strip.pending.extend_from_slice(&data);
        strip.release(upto)
    }

    fn on_end(&mut self) -> Bytes {
        let SseTap {
            parser,
            usage,
            strip,
            strip_usage_only,
            settlement,
            ..
        } = self;
        parser.finish(|item| {
            if let tb_sse::SseItem::Event(ev) = item
                && cut(&ev, usage, *strip_usage_only, settlement)
            {
                strip.drop.push(ev.range.clone());
            }
        });
        let end = strip.pending_start + strip.pending.len() as u64;
        strip.release(end)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use tb_billing::usage;
    use tb_test_support::canned;

    fn run(tap: &mut ResponseTap, pieces: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        for p in pieces {
            out.extend_from_slice(&tap.on_data(Bytes::copy_from_slice(p)));
        }
        out.extend_from_slice(&tap.on_end());
        out
    }

    fn chat_stream_without_usage_chunk() -> (Vec<u8>, Vec<u8>) {
        let events = canned::sse_events(Protocol::ChatCompletions, "m");
        let full = events.concat();
        let kept: Vec<u8> = events
            .iter()
            .filter(|e| {
                let text = String::from_utf8_lossy(e);
                let data = text.trim_start_matches("data: ").trim_end();
                !usage::is_usage_only_chunk(data)
            })
            .flatten()
            .copied()
            .collect();
        assert!(
            kept.len() < full.len(),
            "the canned stream has a usage-only chunk"
        );
        (full, kept)
    }

    proptest! {
        #[test]
        fn stripping_is_exact_under_any_chunking(cuts in proptest::collection::vec(0usize..2000, 0..40)) {
            let (full, kept) = chat_stream_without_usage_chunk();
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % (full.len() + 1)).collect();
            cuts.sort_unstable();
            cuts.dedup();
            let mut pieces = Vec::new();
            let mut at = 0;
            for c in cuts.into_iter().chain([full.len()]) {
                pieces.push(&full[at..c]);
                at = c;
            }
            let mut tap = ResponseTap::sse(Protocol::ChatCompletions, &RequestFacts::default(), true);
            let out = run(&mut tap, &pieces);
            prop_assert_eq!(out, kept);
            let report = tap.report().unwrap();
            prop_assert_eq!(report.usage.unwrap().output_tokens, Some(canned::OUTPUT_TOKENS));
        }

        #[test]
        fn pass_through_taps_forward_every_byte(protocol in prop_oneof![
            Just(Protocol::ChatCompletions), Just(Protocol::Responses), Just(Protocol::Messages), Just(Protocol::ImagesGenerations)
        ], step in 1usize..64) {
            let full = canned::sse_body(protocol, "m");
            let pieces: Vec<&[u8]> = full.chunks(step).collect();
            let mut tap = ResponseTap::sse(protocol, &RequestFacts::default(), false);
            prop_assert_eq!(run(&mut tap, &pieces), full.clone());
            prop_assert!(tap.saw_content());
            let json = usage::from_json(protocol, &canned::json(protocol, "m"), &RequestFacts::default());
            prop_assert_eq!(tap.report().unwrap().usage, json.usage);
        }
    }

    /// A seller stream: the canned events of `protocol` with a settlement
    /// event (holding non-ASCII) before the last one, in LF or CRLF form.
    fn seller_stream(protocol: Protocol, crlf: bool) -> (Vec<u8>, Vec<u8>) {
        let events = canned::sse_events(protocol, "m");
        let settlement = b"event: tokenbuddy.settlement\ndata: {\"settledUsdMicros\":987,\"requestId\":\"r-\xc3\xa9\"}\n\n".to_vec();
        let last = events.len() - 1;
        let mut with = Vec::new();
        let mut without = Vec::new();
        for (i, e) in events.iter().enumerate() {
            if i == last {
                with.extend_from_slice(&settlement);
            }
            with.extend_from_slice(e);
            without.extend_from_slice(e);
        }
        let crlf_of = |b: Vec<u8>| {
            if crlf {
                String::from_utf8(b)
                    .unwrap()
                    .replace('\n', "\r\n")
                    .into_bytes()
            } else {
                b
            }
        };
        (crlf_of(with), crlf_of(without))
    }

    proptest! {
        #[test]
        fn settlement_events_never_reach_the_client(
            protocol in prop_oneof![Just(Protocol::ChatCompletions), Just(Protocol::Responses), Just(Protocol::Messages), Just(Protocol::ImagesGenerations)],
            crlf in any::<bool>(),
            cuts in proptest::collection::vec(0usize..4000, 0..40),
        ) {
            let (full, expected) = seller_stream(protocol, crlf);
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % (full.len() + 1)).collect();
            cuts.sort_unstable();
            cuts.dedup();
            let mut pieces = Vec::new();
            let mut at = 0;
            for c in cuts.into_iter().chain([full.len()]) {
                pieces.push(&full[at..c]);
                at = c;
            }
            let mut tap = ResponseTap::sse(protocol, &RequestFacts::default(), false);
            prop_assert_eq!(run(&mut tap, &pieces), expected);
            prop_assert_eq!(tap.settlement(), Some("{\"settledUsdMicros\":987,\"requestId\":\"r-é\"}"));
            let json = usage::from_json(protocol, &canned::json(protocol, "m"), &RequestFacts::default());
            prop_assert_eq!(tap.report().unwrap().usage, json.usage);
        }
    }
}
