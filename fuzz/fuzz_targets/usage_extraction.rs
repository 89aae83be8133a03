//! `tb_billing::usage` for all four protocols: `from_json` on a whole
//! answer and `UsageTap` over an SSE stream (parsed by `tb_sse`).
//!
//! Input: `[flags, seed × 8, body…]`. flags: bits 0–1 the protocol, bit 2
//! JSON or SSE, bits 3–4 the request facts. Invariants: no panic;
//! extraction is deterministic; a stream read whole, in fuzzer-chosen
//! chunks and byte by byte gives the same event classes and report; a
//! report is self-consistent (`usage_missing` ⇔ no usage, an empty
//! completion saw no content); a chat event classed usage-only is what
//! `is_usage_only_chunk` recognises.

#![no_main]

use libfuzzer_sys::fuzz_target;
use tb_billing::usage::{
    self, EventClass, RequestFacts, UsageReport, UsageTap, is_usage_only_chunk,
};
use tb_domain::Protocol;
use tb_sse::{SseItem, SseParser};
use tokenbuddy_fuzz::{Input, bytewise, split};

const PROTOCOLS: [Protocol; 4] = [
    Protocol::ChatCompletions,
    Protocol::Responses,
    Protocol::Messages,
    Protocol::ImagesGenerations,
];

fn facts(sel: u8, protocol: Protocol, body: &[u8]) -> RequestFacts {
    match sel & 3 {
        0 => RequestFacts::default(),
        1 => RequestFacts::from_request_json(
            Protocol::ImagesGenerations,
            br#"{"model":"gpt-image-1","prompt":"x","n":2,"size":"1024x1024","quality":"low","output_format":"png"}"#,
        ),
        // The body read as a request (mostly nothing, but it is parsed).
        _ => RequestFacts::from_request_json(protocol, body),
    }
}

fn check_report(r: &UsageReport) {
    assert_eq!(
        r.usage_missing,
        r.usage.is_none(),
        "usage_missing ⇔ no usage"
    );
    if r.empty_completion {
        assert!(!r.saw_content, "an empty completion saw content");
        assert!(r.usage.is_some(), "an empty completion without usage");
    }
}

#[derive(Debug, PartialEq, Eq)]
struct Streamed {
    classes: Vec<EventClass>,
    report: UsageReport,
    saw_content: bool,
    saw_done: bool,
    saw_error: bool,
}

fn stream(protocol: Protocol, facts: &RequestFacts, chunks: &[&[u8]]) -> Streamed {
    let mut parser = SseParser::new();
    let mut tap = UsageTap::new(protocol, facts);
    let mut classes = Vec::new();
    let mut on = |item: SseItem<'_>| {
        if let SseItem::Event(ev) = item {
            let class = tap.on_sse_event(&ev);
            if protocol == Protocol::ChatCompletions && class == EventClass::UsageOnly {
                assert!(
                    is_usage_only_chunk(ev.data),
                    "classed usage-only but not a usage-only chunk"
                );
            }
            classes.push(class);
        }
    };
    for c in chunks {
        parser.feed(c, &mut on);
    }
    parser.finish(&mut on);
    let report = tap.finish();
    check_report(&report);
    assert_eq!(report.saw_content, tap.saw_content());
    Streamed {
        classes,
        report,
        saw_content: tap.saw_content(),
        saw_done: tap.saw_done(),
        saw_error: tap.saw_error(),
    }
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input::new(data);
    let flags = input.byte();
    let protocol = PROTOCOLS[usize::from(flags & 3)];
    let sse = flags & 4 != 0;
    let seed = input.u64();
    let body = input.rest();
    let facts = facts(flags >> 3, protocol, body);

    if sse {
        let whole = stream(protocol, &facts, &[body]);
        assert_eq!(
            whole,
            stream(protocol, &facts, &split(body, seed)),
            "chunking changed usage"
        );
        assert_eq!(
            whole,
            stream(protocol, &facts, &bytewise(body)),
            "byte-wise feeding changed usage"
        );
    } else {
        let report = usage::from_json(protocol, body, &facts);
        check_report(&report);
        assert_eq!(
            report,
            usage::from_json(protocol, body, &facts),
            "not deterministic"
        );
        // The same text as one stream event must not panic either.
        let text = String::from_utf8_lossy(body);
        let mut tap = UsageTap::new(protocol, &facts);
        tap.on_event(None, &text);
        check_report(&tap.finish());
        let _ = is_usage_only_chunk(&text);
    }
});
