#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;

/// An owned copy of an [`SseItem`], short to write in tables.
#[derive(Debug, Clone, PartialEq, Eq)]
enum It {
    /// `(event, data, id, start, end)`
    Ev(Option<String>, String, Option<String>, u64, u64),
    Comment(String),
    Retry(u64),
    Oversized(u64),
}

fn ev(event: Option<&str>, data: &str, start: u64, end: u64) -> It {
    It::Ev(event.map(str::to_owned), data.to_owned(), None, start, end)
}

fn ev_id(event: Option<&str>, data: &str, id: &str, start: u64, end: u64) -> It {
    It::Ev(
        event.map(str::to_owned),
        data.to_owned(),
        Some(id.to_owned()),
        start,
        end,
    )
}

fn owned(item: SseItem<'_>) -> It {
    match item {
        SseItem::Event(e) => It::Ev(
            e.event.map(str::to_owned),
            e.data.to_owned(),
            e.id.map(str::to_owned),
            e.range.start,
            e.range.end,
        ),
        SseItem::Comment(c) => It::Comment(c.to_owned()),
        SseItem::Retry(ms) => It::Retry(ms),
        SseItem::Oversized { start } => It::Oversized(start),
    }
}

fn parse_chunks(parser: &mut SseParser, chunks: &[&[u8]]) -> Vec<It> {
    let mut out = Vec::new();
    for chunk in chunks {
        parser.feed(chunk, |item| out.push(owned(item)));
    }
    parser.finish(|item| out.push(owned(item)));
    out
}

/// Parses `input` whole, and cut at every single position, and cut into
/// single bytes: all must give `expected`.
fn check(input: &[u8], expected: &[It]) {
    check_with(SseParser::new, input, expected);
}

fn check_with(new: impl Fn() -> SseParser, input: &[u8], expected: &[It]) {
    let whole = parse_chunks(&mut new(), &[input]);
    assert_eq!(
        whole,
        expected,
        "input {:?}",
        String::from_utf8_lossy(input)
    );
    for cut in 0..=input.len() {
        let (a, b) = input.split_at(cut);
        let got = parse_chunks(&mut new(), &[a, b]);
        assert_eq!(
            got,
            expected,
            "cut at {cut} of {:?}",
            String::from_utf8_lossy(input)
        );
    }
    let bytes: Vec<&[u8]> = input.chunks(1).collect();
    assert_eq!(parse_chunks(&mut new(), &bytes), expected, "byte by byte");
}

#[test]
fn line_ends_lf_crlf_cr_and_mixed() {
    let cases: &[(&[u8], &[It])] = &[
        (b"data: a\n\n", &[ev(None, "a", 0, 9)]),
        (b"data: a\r\n\r\n", &[ev(None, "a", 0, 11)]),
        (b"data: a\r\r", &[ev(None, "a", 0, 9)]),
        (b"data: a\r\n\n", &[ev(None, "a", 0, 10)]),
        (b"data: a\n\r\n", &[ev(None, "a", 0, 10)]),
        (b"data: a\r\n\r", &[ev(None, "a", 0, 10)]),
        (
            b"data: a\r\rdata: b\n\n",
            &[ev(None, "a", 0, 9), ev(None, "b", 9, 18)],
        ),
        (
            b"data: a\r\n\r\ndata: b\r\n\r\n",
            &[ev(None, "a", 0, 11), ev(None, "b", 11, 22)],
        ),
    ];
    for (input, expected) in cases {
        check(input, expected);
    }
}

#[test]
fn fields_values_and_spaces() {
    let cases: &[(&[u8], &[It])] = &[
        // One leading space is stripped, not two, and not a tab.
        (b"data:  two\n\n", &[ev(None, " two", 0, 12)]),
        (b"data:none\n\n", &[ev(None, "none", 0, 11)]),
        (b"data:\ttab\n\n", &[ev(None, "\ttab", 0, 11)]),
        // `data` alone (no colon) is an empty data line: dispatched.
        (b"data\n\n", &[ev(None, "", 0, 6)]),
        (b"data:\n\n", &[ev(None, "", 0, 7)]),
        // Data lines are joined with \n; an empty one adds an empty line.
        (b"data: a\ndata\ndata: b\n\n", &[ev(None, "a\n\nb", 0, 22)]),
        // The value may contain colons.
        (
            b"data: {\"a\":\"b:c\"}\n\n",
            &[ev(None, "{\"a\":\"b:c\"}", 0, 19)],
        ),
        // event: the last one wins; empty means none.
        (
            b"event: a\nevent: b\ndata: x\n\n",
            &[ev(Some("b"), "x", 0, 27)],
        ),
        (b"event:\ndata: x\n\n", &[ev(None, "x", 0, 16)]),
        // Unknown fields and case-different names are ignored.
        (b"Data: x\nfoo: y\ndata: z\n\n", &[ev(None, "z", 0, 24)]),
        // No data: not dispatched, but the next event starts after it.
        (b"event: x\n\ndata: y\n\n", &[ev(None, "y", 10, 19)]),
        (b"\n\n\ndata: y\n\n", &[ev(None, "y", 3, 12)]),
        // An event type does not leak into the next event.
        (
            b"event: a\ndata: 1\n\ndata: 2\n\n",
            &[ev(Some("a"), "1", 0, 18), ev(None, "2", 18, 27)],
        ),
    ];
    for (input, expected) in cases {
        check(input, expected);
    }
}

#[test]
fn comments_are_reported_and_do_not_dispatch() {
    check(
        b": ping\n\n:x\n:\n\n",
        &[
            It::Comment("ping".into()),
            It::Comment("x".into()),
            It::Comment(String::new()),
        ],
    );
    // A comment inside an event belongs to its range.
    check(
        b": hi\nevent: e\ndata: d\n\n",
        &[It::Comment("hi".into()), ev(Some("e"), "d", 0, 23)],
    );
}

#[test]
fn id_persists_and_ignores_nul() {
    check(
        b"id: 1\ndata: a\n\ndata: b\n\nid\ndata: c\n\nid: x\0y\ndata: d\n\n",
        &[
            ev_id(None, "a", "1", 0, 15),
            ev_id(None, "b", "1", 15, 24),
            ev(None, "c", 24, 36),
            ev(None, "d", 36, 53),
        ],
    );
}

#[test]
fn retry_needs_only_digits() {
    check(
        b"retry: 3000\nretry: 10x\nretry:\nretry: -1\nretry: 99999999999999999999999\ndata: a\n\n",
        &[It::Retry(3000), ev(None, "a", 0, 80)],
    );
}

#[test]
fn unfinished_event_at_end_is_dropped() {
    check(b"data: a\n\ndata: b\n", &[ev(None, "a", 0, 9)]);
    check(b"data: a\n\ndata: b", &[ev(None, "a", 0, 9)]);
    check(b"data: a", &[]);
    check(b"", &[]);
}

#[test]
fn bom_is_dropped_at_stream_start_only() {
    check(b"\xEF\xBB\xBFdata: a\n\n", &[ev(None, "a", 0, 12)]);
    // A second BOM is part of the field name: an unknown field.
    check(b"\xEF\xBB\xBF\xEF\xBB\xBFdata: a\n\n", &[]);
    check(
        b"data: a\n\n\xEF\xBB\xBFdata: b\n\n",
        &[ev(None, "a", 0, 9)],
    );
}

#[test]
fn invalid_utf8_is_replaced_not_fatal() {
    check(
        b"event: \xFF\ndata: a\xC3\n: \xFE\n\n",
        &[
            It::Comment("\u{FFFD}".into()),
            ev(Some("\u{FFFD}"), "a\u{FFFD}", 0, 23),
        ],
    );
    // A character split across chunks is decoded whole (check() cuts
    // inside the two-byte 'é' and the four-byte rocket).
    check("data: é🚀\n\n".as_bytes(), &[ev(None, "é🚀", 0, 14)]);
}

#[test]
fn oversized_event_is_skipped_to_the_next_blank_line() {
    // Cap 16: "data: 0123456789\n" is 17 bytes.
    let new = || SseParser::with_max_event_bytes(16);
    check_with(
        new,
        b"data: 0123456789\ndata: more\n\ndata: ok\n\n",
        &[It::Oversized(0), ev(None, "ok", 29, 39)],
    );
    // Exactly at the cap is fine ("data: 012345678\n" is 16 bytes).
    check_with(new, b"data: 012345678\n\n", &[ev(None, "012345678", 0, 17)]);
    // A line that never ends is cut off too; a comment in a skipped event
    // is not reported; the event after it is intact.
    check_with(
        new,
        b"data: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\n: c\n\nevent:e\ndata:b\n\n",
        &[It::Oversized(0), ev(Some("e"), "b", 45, 61)],
    );
    // The cap counts the event's lines, not earlier events.
    check_with(
        new,
        b"data: 01234567\n\ndata: 01234567\n\n",
        &[ev(None, "01234567", 0, 16), ev(None, "01234567", 16, 32)],
    );
}

#[test]
fn cap_is_the_same_when_a_crlf_is_split() {
    // Found by the `sse_parser` fuzz target: "data: b\r\n" is 9 bytes, over
    // a cap of 8, but cut between its \r and \n the line was measured
    // without the \n and the event got through.
    let new = || SseParser::with_max_event_bytes(8);
    check_with(
        new,
        b"data: b\r\n\r\ndata: c\n\n",
        &[It::Oversized(0), ev(None, "c", 11, 20)],
    );
    // A line exactly at the cap that ends in a lone \r is still fine, and
    // a comment or retry line at the cap is reported in the same place.
    check_with(new, b"data: b\r\r", &[ev(None, "b", 0, 9)]);
    check_with(new, b"data: b\rdata: c\r\r", &[It::Oversized(0)]);
    check_with(
        new,
        b": 34567\r\n\r\n: 3456\r\n",
        &[It::Oversized(0), It::Comment("3456".into())],
    );
    check_with(new, b"retry:1\r\n", &[It::Oversized(0)]);
    check_with(new, b"retry:1\r", &[It::Retry(1)]);
}

#[test]
fn a_bom_only_first_line_is_blank_whatever_the_cap() {
    // Found by the `sse_parser` fuzz target: with a cap under 3 bytes the
    // BOM alone, fed byte by byte, counted as an oversized line.
    for cap in 0..4 {
        check_with(
            || SseParser::with_max_event_bytes(cap),
            b"\xEF\xBB\xBF\n",
            &[],
        );
    }
    check_with(
        || SseParser::with_max_event_bytes(4),
        b"\xEF\xBB\xBF\r\n:\r\n\r\n",
        &[It::Comment(String::new())],
    );
}

#[test]
fn oversized_does_not_grow_buffers() {
    let mut parser = SseParser::with_max_event_bytes(1024);
    let mut items = Vec::new();
    parser.feed(b"data: ", |i| items.push(owned(i)));
    for _ in 0..10_000 {
        parser.feed(&[b'x'; 100], |i| items.push(owned(i)));
    }
    assert!(
        parser.buffered_capacity() <= 4096,
        "{}",
        parser.buffered_capacity()
    );
    parser.feed(b"\n\ndata: y\n\n", |i| items.push(owned(i)));
    assert_eq!(
        items,
        [It::Oversized(0), ev(None, "y", 1_000_008, 1_000_017)]
    );
}

#[test]
fn cr_at_chunk_end_waits_for_the_next_byte() {
    let mut parser = SseParser::new();
    let mut items = Vec::new();
    parser.feed(b"data: a\r\n\r", |i| items.push(owned(i)));
    assert!(items.is_empty());
    assert!(parser.is_at_boundary());
    parser.feed(b"\n", |i| items.push(owned(i)));
    assert_eq!(items, [ev(None, "a", 0, 11)]);
    assert_eq!(parser.block_start(), 11);

    // Something other than \n: dispatched with the range ending at \r.
    let mut items = Vec::new();
    parser.feed(b"data: b\r\r", |i| items.push(owned(i)));
    assert!(items.is_empty());
    parser.feed(b"data: c\r\r", |i| items.push(owned(i)));
    assert_eq!(items, [ev(None, "b", 11, 20)]);
    parser.finish(|i| items.push(owned(i)));
    assert_eq!(items, [ev(None, "b", 11, 20), ev(None, "c", 20, 29)]);
}

#[test]
fn boundary_and_block_start() {
    let mut parser = SseParser::new();
    assert!(parser.is_at_boundary());
    parser.feed(b"data: a\n\nevent: x", |_| {});
    assert!(!parser.is_at_boundary());
    assert_eq!(parser.block_start(), 9);
    assert_eq!(parser.offset(), 17);
    parser.feed(b"\ndata: y\n", |_| {});
    assert!(!parser.is_at_boundary());
    parser.feed(b"\n", |_| {});
    assert!(parser.is_at_boundary());
    assert_eq!(parser.block_start(), 27);
    parser.feed(b"data: z", |_| {});
    parser.finish(|_| panic!("an unfinished event must not be dispatched"));
    assert!(parser.is_at_boundary());
}

#[test]
fn empty_chunks_change_nothing() {
    let mut parser = SseParser::new();
    let mut items = Vec::new();
    for chunk in [&b""[..], b"data: a\r", b"", b"\n", b"", b"\r", b"", b"\n"] {
        parser.feed(chunk, |i| items.push(owned(i)));
    }
    assert_eq!(items, [ev(None, "a", 0, 11)]);
}

#[test]
fn event_type_defaults_to_message() {
    let mut types = Vec::new();
    let mut parser = SseParser::new();
    parser.feed(b"data: a\n\nevent: e\ndata: b\n\n", |item| {
        if let SseItem::Event(e) = item {
            types.push(e.event_type().to_owned());
        }
    });
    assert_eq!(types, ["message", "e"]);
}
