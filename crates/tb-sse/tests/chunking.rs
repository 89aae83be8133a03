//! Property tests: chunking never changes what the parser reports, line-end
//! styles parse alike, and event ranges cover exactly the events' bytes.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use proptest::prelude::*;
use proptest::sample::Index;
use tb_domain::Protocol;
use tb_sse::{SseItem, SseParser};
use tb_test_support::{Chunk, canned, chunking};

#[derive(Debug, Clone, PartialEq, Eq)]
enum It {
    Ev {
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

fn owned(item: SseItem<'_>) -> It {
    match item {
        SseItem::Event(e) => It::Ev {
            event: e.event.map(str::to_owned),
            data: e.data.to_owned(),
            id: e.id.map(str::to_owned),
            start: e.range.start,
            end: e.range.end,
        },
        SseItem::Comment(c) => It::Comment(c.to_owned()),
        SseItem::Retry(ms) => It::Retry(ms),
        SseItem::Oversized { start } => It::Oversized(start),
    }
}

fn parse<'a>(chunks: impl IntoIterator<Item = &'a [u8]>) -> Vec<It> {
    let mut parser = SseParser::new();
    let mut out = Vec::new();
    for chunk in chunks {
        parser.feed(chunk, |item| out.push(owned(item)));
    }
    parser.finish(|item| out.push(owned(item)));
    out
}

fn data_pieces(chunks: &[Chunk]) -> Vec<&[u8]> {
    chunks
        .iter()
        .map(|c| match c {
            Chunk::Data(b) => &b[..],
            other => panic!("unexpected chunk {other:?}"),
        })
        .collect()
}

fn cuts(len: usize, picks: &[Index]) -> Vec<usize> {
    let mut cuts: Vec<usize> = picks.iter().map(|i| i.index(len + 1)).collect();
    cuts.sort_unstable();
    cuts
}

fn with_line_ends(body: &[u8], eol: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() * 2);
    for &b in body {
        if b == b'\n' {
            out.extend_from_slice(eol);
        } else {
            out.push(b);
        }
    }
    out
}

/// What the canned events say, with their exact spans in `body_events`.
fn expected_from_canned(body_events: &[Vec<u8>]) -> Vec<It> {
    let mut out = Vec::new();
    let mut start = 0u64;
    for raw in body_events {
        let text = std::str::from_utf8(raw).unwrap();
        let end = start + raw.len() as u64;
        out.push(It::Ev {
            event: text
                .lines()
                .find_map(|l| l.strip_prefix("event: "))
                .map(str::to_owned),
            data: text
                .lines()
                .find_map(|l| l.strip_prefix("data: "))
                .unwrap()
                .to_owned(),
            id: None,
            start,
            end,
        });
        start = end;
    }
    out
}

/// Without the ranges: what a consumer sees whatever the line ends.
fn contents(items: &[It]) -> Vec<It> {
    items
        .iter()
        .map(|it| match it {
            It::Ev {
                event, data, id, ..
            } => It::Ev {
                event: event.clone(),
                data: data.clone(),
                id: id.clone(),
                start: 0,
                end: 0,
            },
            other => other.clone(),
        })
        .collect()
}

#[test]
fn canned_bodies_parse_to_their_events_with_exact_ranges() {
    for protocol in Protocol::ALL {
        let events = canned::sse_events(protocol, "m");
        let body = events.concat();
        let expected = expected_from_canned(&events);
        assert_eq!(parse([&body[..]]), expected, "{protocol}");
        for n in 1..=16 {
            let pieces = chunking::split_every(&body, n);
            assert_eq!(parse(data_pieces(&pieces)), expected, "{protocol}, n = {n}");
        }
    }
}

#[test]
fn line_end_styles_parse_alike_with_exact_ranges() {
    for protocol in Protocol::ALL {
        let events = canned::sse_events(protocol, "m");
        let lf = parse([&events.concat()[..]]);
        for eol in [&b"\r\n"[..], b"\r"] {
            let converted: Vec<Vec<u8>> = events.iter().map(|e| with_line_ends(e, eol)).collect();
            let got = parse([&converted.concat()[..]]);
            assert_eq!(contents(&got), contents(&lf), "{protocol} {eol:?}");
            let mut start = 0;
            for (it, raw) in got.iter().zip(&converted) {
                let It::Ev {
                    start: s, end: e, ..
                } = it
                else {
                    panic!("not an event: {it:?}");
                };
                assert_eq!((*s, *e), (start, start + raw.len() as u64));
                start = *e;
            }
        }
    }
}

/// A plain, whole-input reading of the WHATWG rules, to compare with.
fn reference(input: &[u8]) -> Vec<It> {
    let mut out = Vec::new();
    let (mut event, mut data, mut id) = (String::new(), String::new(), String::new());
    let mut has_data = false;
    let mut block_start = 0u64;
    let mut pos = 0;
    let mut first = true;
    while pos < input.len() {
        let Some(eol) = input[pos..].iter().position(|&b| b == b'\n' || b == b'\r') else {
            break; // an unfinished line at the end is dropped
        };
        let mut line = &input[pos..pos + eol];
        let mut next = pos + eol + 1;
        if input[pos + eol] == b'\r' && input.get(next) == Some(&b'\n') {
            next += 1;
        }
        pos = next;
        if first {
            first = false;
            if line.starts_with(b"\xEF\xBB\xBF") {
                line = &line[3..];
            }
        }
        let lossy = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        let strip = |b: &'_ [u8]| -> Vec<u8> { b.strip_prefix(b" ").unwrap_or(b).to_vec() };
        if line.is_empty() {
            if has_data {
                out.push(It::Ev {
                    event: (!event.is_empty()).then(|| event.clone()),
                    data: data.clone(),
                    id: (!id.is_empty()).then(|| id.clone()),
                    start: block_start,
                    end: pos as u64,
                });
            }
            event.clear();
            data.clear();
            has_data = false;
            block_start = pos as u64;
        } else if line[0] == b':' {
            out.push(It::Comment(lossy(&strip(&line[1..]))));
        } else {
            let (name, value) = match line.iter().position(|&b| b == b':') {
                Some(c) => (&line[..c], strip(&line[c + 1..])),
                None => (line, Vec::new()),
            };
            match name {
                b"data" => {
                    if has_data {
                        data.push('\n');
                    }
                    data.push_str(&lossy(&value));
                    has_data = true;
                }
                b"event" => event = lossy(&value),
                b"id" if !value.contains(&0) => id = lossy(&value),
                b"retry" if !value.is_empty() && value.iter().all(u8::is_ascii_digit) => {
                    if let Ok(ms) = std::str::from_utf8(&value).unwrap().parse() {
                        out.push(It::Retry(ms));
                    }
                }
                _ => {}
            }
        }
    }
    out
}

const TOKENS: &[&[u8]] = &[
    b"data",
    b"data:",
    b"data: ",
    b"event: ",
    b"id: ",
    b"id:\0",
    b"retry: ",
    b"retry: 12",
    b":",
    b": c",
    b"x",
    b"{\"a\":1}",
    b" ",
    b"9",
    "é".as_bytes(),
    "🚀".as_bytes(),
    b"\xFF",
    b"\xF0\x9F",
    b"\xEF\xBB\xBF",
    b"\n",
    b"\n",
    b"\r",
    b"\r\n",
    b"\r\n",
    b"\n\n",
    b"\r\r",
];

fn sse_like() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(0..TOKENS.len(), 0..60).prop_map(|ix| {
        ix.into_iter()
            .flat_map(|i| TOKENS[i].iter().copied())
            .collect()
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn canned_bodies_survive_any_chunking(
        protocol in prop::sample::select(Protocol::ALL.to_vec()),
        picks in prop::collection::vec(any::<Index>(), 0..40),
        eol in prop::sample::select(vec![&b"\n"[..], b"\r\n", b"\r"]),
    ) {
        let body = with_line_ends(&canned::sse_body(protocol, "gpt-x"), eol);
        let whole = parse([&body[..]]);
        let pieces = chunking::split_at(&body, &cuts(body.len(), &picks));
        prop_assert_eq!(parse(data_pieces(&pieces)), whole);
    }

    #[test]
    fn any_stream_matches_the_reference_whatever_the_chunking(
        input in sse_like(),
        picks in prop::collection::vec(any::<Index>(), 0..12),
    ) {
        let expected = reference(&input);
        prop_assert_eq!(parse([&input[..]]), expected.clone());
        let pieces = chunking::split_at(&input, &cuts(input.len(), &picks));
        prop_assert_eq!(parse(data_pieces(&pieces)), expected);
    }

    #[test]
    fn ranges_are_ordered_and_cutting_them_keeps_the_rest(
        input in sse_like(),
        picks in prop::collection::vec(any::<Index>(), 0..12),
    ) {
        let pieces = chunking::split_at(&input, &cuts(input.len(), &picks));
        let items = parse(data_pieces(&pieces));
        let mut last_end = 0;
        for it in &items {
            if let It::Ev { start, end, .. } = it {
                prop_assert!(last_end <= *start && start < end && *end <= input.len() as u64);
                last_end = *end;
            }
        }
        // Each range, parsed on its own, is exactly that one event (ids
        // persist across events, so compare without them).
        for it in &items {
            if let It::Ev { event, data, start, end, .. } = it {
                let raw = &input[*start as usize..*end as usize];
                if *start > 0 && raw.starts_with(b"\xEF\xBB\xBF") {
                    continue; // a BOM is only dropped at the stream's start
                }
                let alone: Vec<It> = parse([raw])
                    .into_iter()
                    .filter(|i| matches!(i, It::Ev { .. }))
                    .collect();
                prop_assert_eq!(alone.len(), 1, "{:?}", String::from_utf8_lossy(raw));
                let It::Ev { event: e2, data: d2, .. } = &alone[0] else { unreachable!() };
                prop_assert_eq!((e2, d2), (event, data));
            }
        }
    }
}
