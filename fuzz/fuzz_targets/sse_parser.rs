//! `tb_sse::SseParser` fed the same bytes whole, in fuzzer-chosen chunks and
//! byte by byte: it must never panic, must report the same items whatever
//! the chunking, and every event range must lie inside the stream, in
//! order, and end with a line end.
//!
//! Input: `[cap, seed × 8, stream…]`. `cap` 255 is the default event cap;
//! anything else a small cap (`cap * 4` bytes), so oversized events and
//! their skipping are exercised too.

#![no_main]

use libfuzzer_sys::fuzz_target;
use tb_sse::{DEFAULT_MAX_EVENT_BYTES, SseItem, SseParser};
use tokenbuddy_fuzz::{Input, bytewise, split};

#[derive(Debug, Clone, PartialEq, Eq)]
enum Item {
    Event {
        event: Option<String>,
        data: String,
        id: Option<String>,
        start: u64,
        end: u64,
    },
    Comment(String),
    Retry(u64),
    Oversized(u64),
}

fn owned(item: SseItem<'_>) -> Item {
    match item {
        SseItem::Event(e) => {
            assert_eq!(
                e.event_type(),
                e.event.unwrap_or("message"),
                "event_type disagrees with event"
            );
            Item::Event {
                event: e.event.map(str::to_owned),
                data: e.data.to_owned(),
                id: e.id.map(str::to_owned),
                start: e.range.start,
                end: e.range.end,
            }
        }
        SseItem::Comment(c) => Item::Comment(c.to_owned()),
        SseItem::Retry(ms) => Item::Retry(ms),
        SseItem::Oversized { start } => Item::Oversized(start),
    }
}

fn parse(cap: usize, chunks: &[&[u8]]) -> Vec<Item> {
    let mut parser = SseParser::with_max_event_bytes(cap);
    let mut out = Vec::new();
    let mut fed = 0u64;
    let mut last_block_start = 0u64;
    for chunk in chunks {
        parser.feed(chunk, |item| out.push(owned(item)));
        fed += chunk.len() as u64;
        assert_eq!(parser.offset(), fed, "offset counts the bytes fed");
        let bs = parser.block_start();
        assert!(bs <= fed, "block_start {bs} past the offset {fed}");
        assert!(
            bs >= last_block_start,
            "block_start went back: {last_block_start} → {bs}"
        );
        last_block_start = bs;
    }
    parser.finish(|item| out.push(owned(item)));
    assert!(
        parser.is_at_boundary(),
        "finish leaves the parser at a boundary"
    );
    assert_eq!(parser.block_start(), fed);
    out
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input::new(data);
    let cap = match input.byte() {
        255 => DEFAULT_MAX_EVENT_BYTES,
        n => usize::from(n) * 4,
    };
    let seed = input.u64();
    let stream = input.rest();

    let whole = parse(cap, &[stream]);
    let chunked = parse(cap, &split(stream, seed));
    assert_eq!(whole, chunked, "chunking changed the items");
    let bytes = parse(cap, &bytewise(stream));
    assert_eq!(whole, bytes, "byte-by-byte feeding changed the items");

    let mut prev_end = 0u64;
    for item in &whole {
        match item {
            Item::Event { start, end, .. } => {
                assert!(start < end, "empty event range {start}..{end}");
                assert!(*start >= prev_end, "event ranges overlap or go back");
                assert!(*end <= stream.len() as u64, "event range past the stream");
                let last = stream[(*end - 1) as usize];
                assert!(
                    last == b'\n' || last == b'\r',
                    "an event range must end with its blank line"
                );
                prev_end = *end;
            }
            Item::Oversized(start) => {
                assert!(*start >= prev_end, "oversized event before the last event");
                assert!(*start <= stream.len() as u64);
            }
            Item::Comment(_) | Item::Retry(_) => {}
        }
    }
});
