//! The SSE tap that cuts a seller's `tokenbuddy.settlement` event (and, when
//! asked, the chat usage-only chunk) out of the forwarded stream.
//!
//! The stripper is crate-private in `tb-proxy` (`tap.rs`: `ResponseTap`,
//! `SseTap`, `Strip`) and only reachable through a whole HTTP proxy, so this
//! target compiles that very source file in (`#[path]`), with a copy of the
//! one-trait `stream::Tap` seam it implements. If `tap.rs` changes shape,
//! this target stops compiling instead of fuzzing a stale copy.
//!
//! Input: `[flags, seed × 8, stream…]`: flags pick the protocol and
//! `strip_usage_only`. Invariants: no panic; the forwarded bytes, the kept
//! settlement and the usage report are the same whole, in fuzzer-chosen
//! chunks and byte by byte; the forwarded bytes, parsed again, never hold
//! a settlement event; the output is the input minus whole events.

#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use tb_billing::settlement::SETTLEMENT_EVENT;
use tb_billing::usage::{RequestFacts, UsageReport};
use tb_domain::Protocol;
use tb_sse::{SseItem, SseParser};
use tokenbuddy_fuzz::{Input, bytewise, split};

/// The seam `tap.rs` implements (a copy of `tb-proxy/src/stream.rs`'s).
mod stream {
    use bytes::Bytes;

    pub(crate) trait Tap: Send + 'static {
        fn on_data(&mut self, data: Bytes) -> Bytes;
        fn on_end(&mut self) -> Bytes {
            Bytes::new()
        }
        fn saw_content(&self) -> bool;
    }
}

#[allow(dead_code, unreachable_pub)]
#[path = "../../crates/tb-proxy/src/tap.rs"]
mod tap;

use stream::Tap;
use tap::ResponseTap;

const PROTOCOLS: [Protocol; 4] = [
    Protocol::ChatCompletions,
    Protocol::Responses,
    Protocol::Messages,
    Protocol::ImagesGenerations,
];

struct Run {
    out: Vec<u8>,
    settlement: Option<String>,
    report: Option<UsageReport>,
    saw_content: bool,
    saw_error: bool,
}

fn run(protocol: Protocol, strip_usage_only: bool, chunks: &[&[u8]]) -> Run {
    let mut tap = ResponseTap::sse(protocol, &RequestFacts::default(), strip_usage_only);
    let mut out = Vec::new();
    for c in chunks {
        out.extend_from_slice(&tap.on_data(Bytes::copy_from_slice(c)));
    }
    out.extend_from_slice(&tap.on_end());
    Run {
        out,
        settlement: tap.settlement().map(str::to_owned),
        saw_content: tap.saw_content(),
        saw_error: tap.saw_error(),
        report: tap.report(),
    }
}

/// The dispatched events of `bytes`: (type, range).
fn events(bytes: &[u8]) -> Vec<(String, std::ops::Range<u64>)> {
    let mut parser = SseParser::new();
    let mut evs = Vec::new();
    let mut on = |item: SseItem<'_>| {
        if let SseItem::Event(e) = item {
            evs.push((e.event_type().to_owned(), e.range));
        }
    };
    parser.feed(bytes, &mut on);
    parser.finish(&mut on);
    evs
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input::new(data);
    let flags = input.byte();
    let protocol = PROTOCOLS[usize::from(flags & 3)];
    let strip_usage_only = flags & 4 != 0;
    let seed = input.u64();
    let stream = input.rest();

    let whole = run(protocol, strip_usage_only, &[stream]);
    for (how, other) in [
        (
            "fuzzer-chosen chunks",
            run(protocol, strip_usage_only, &split(stream, seed)),
        ),
        (
            "byte by byte",
            run(protocol, strip_usage_only, &bytewise(stream)),
        ),
    ] {
        assert!(whole.out == other.out, "{how}: forwarded bytes differ");
        assert_eq!(
            whole.settlement, other.settlement,
            "{how}: settlement differs"
        );
        assert_eq!(whole.report, other.report, "{how}: usage report differs");
        assert_eq!(
            whole.saw_content, other.saw_content,
            "{how}: saw_content differs"
        );
        assert_eq!(whole.saw_error, other.saw_error, "{how}: saw_error differs");
    }

    // What the client sees never carries a settlement event.
    for (ty, range) in events(&whole.out) {
        assert!(
            ty != SETTLEMENT_EVENT,
            "a settlement event reached the client at {range:?}"
        );
    }

    // The output is the input with whole events cut out: exactly the
    // settlement events (and possibly usage-only chunks) of the input.
    let input_events = events(stream);
    let settlements = input_events
        .iter()
        .filter(|(ty, _)| ty == SETTLEMENT_EVENT)
        .count();
    assert!(whole.out.len() <= stream.len(), "the stripper added bytes");
    if !strip_usage_only {
        let mut expected = Vec::with_capacity(stream.len());
        let mut at = 0usize;
        for (ty, range) in &input_events {
            if ty == SETTLEMENT_EVENT {
                expected.extend_from_slice(&stream[at..range.start as usize]);
                at = range.end as usize;
            }
        }
        expected.extend_from_slice(&stream[at..]);
        assert!(
            whole.out == expected,
            "the output is not the input minus its {settlements} settlement event(s)"
        );
    }
    if settlements == 0 && !strip_usage_only {
        assert!(whole.out == stream, "nothing to cut, yet bytes changed");
    }
});
