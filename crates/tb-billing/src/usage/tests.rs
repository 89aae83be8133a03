#![allow(clippy::unwrap_used, clippy::expect_used)]

use proptest::prelude::*;
use proptest::sample::Index;
use tb_domain::Protocol;
use tb_sse::{SseItem, SseParser};
use tb_test_support::{Chunk, canned, chunking};

use super::wire::usd_text_to_micros;
use super::*;

const CHAT: Protocol = Protocol::ChatCompletions;
const RESP: Protocol = Protocol::Responses;
const MSGS: Protocol = Protocol::Messages;
const IMGS: Protocol = Protocol::ImagesGenerations;

/// Token fields: `(input, cached, cache_write, output, reasoning)`.
type Tokens = (
    Option<u64>,
    Option<u64>,
    Option<u64>,
    Option<u64>,
    Option<u64>,
);

fn tokens(u: &Usage) -> Tokens {
    (
        u.input_tokens,
        u.cached_input_tokens,
        u.cache_write_tokens,
        u.output_tokens,
        u.reasoning_tokens,
    )
}

fn report(protocol: Protocol, body: &str) -> UsageReport {
    from_json(protocol, body.as_bytes(), &RequestFacts::default())
}

/// `from_json` of `usage_json` wrapped as the body's `usage`.
fn check_usage(protocol: Protocol, usage_json: &str, expected: Option<Tokens>) {
    let body = format!(r#"{{"usage": {usage_json}}}"#);
    let got = report(protocol, &body).usage.as_ref().map(tokens);
    assert_eq!(got, expected, "{protocol}: {usage_json}");
}

const N: Option<u64> = None;

// ------------------------------------------------------------ aliases ----

#[test]
fn aliases_and_first_valid_wins() {
    let cases: &[(Protocol, &str, Option<Tokens>)] = &[
        // OpenAI names.
        (
            CHAT,
            r#"{"prompt_tokens":12,"completion_tokens":9,"prompt_tokens_details":{"cached_tokens":3},"completion_tokens_details":{"reasoning_tokens":4}}"#,
            Some((Some(12), Some(3), N, Some(9), Some(4))),
        ),
        (
            RESP,
            r#"{"input_tokens":12,"output_tokens":9,"input_tokens_details":{"cached_tokens":3},"output_tokens_details":{"reasoning_tokens":4}}"#,
            Some((Some(12), Some(3), N, Some(9), Some(4))),
        ),
        // Aliases across protocols: Responses names in a chat body and back.
        (
            CHAT,
            r#"{"input_tokens":5,"output_tokens":2}"#,
            Some((Some(5), N, N, Some(2), N)),
        ),
        (
            RESP,
            r#"{"prompt_tokens":5,"completion_tokens":2,"prompt_tokens_details":{"cached_tokens":1}}"#,
            Some((Some(5), Some(1), N, Some(2), N)),
        ),
        // Both present: the first name of the list wins.
        (
            CHAT,
            r#"{"input_tokens":5,"prompt_tokens":6,"output_tokens":2,"completion_tokens":3}"#,
            Some((Some(5), N, N, Some(2), N)),
        ),
        // The first one is junk: the alias is used.
        (
            CHAT,
            r#"{"input_tokens":"5","prompt_tokens":6,"output_tokens":-1,"completion_tokens":3}"#,
            Some((Some(6), N, N, Some(3), N)),
        ),
        // Cache-read aliases, top level or in the details.
        (
            CHAT,
            r#"{"prompt_tokens":10,"cache_read_input_tokens":4}"#,
            Some((Some(10), Some(4), N, N, N)),
        ),
        (
            CHAT,
            r#"{"prompt_tokens":10,"cache_read_tokens":4}"#,
            Some((Some(10), Some(4), N, N, N)),
        ),
        (
            CHAT,
            r#"{"prompt_tokens":10,"cached_tokens":4}"#,
            Some((Some(10), Some(4), N, N, N)),
        ),
        (
            RESP,
            r#"{"input_tokens":10,"input_tokens_details":{"cache_read_tokens":4}}"#,
            Some((Some(10), Some(4), N, N, N)),
        ),
        // OpenAI protocols: the details win over the top level.
        (
            CHAT,
            r#"{"prompt_tokens":10,"cached_tokens":1,"prompt_tokens_details":{"cached_tokens":4}}"#,
            Some((Some(10), Some(4), N, N, N)),
        ),
        // Cache writes (OpenRouter puts them in the details).
        (
            CHAT,
            r#"{"prompt_tokens":10,"prompt_tokens_details":{"cached_tokens":0,"cache_write_tokens":6}}"#,
            Some((Some(10), Some(0), Some(6), N, N)),
        ),
        // Reasoning at the top level as a fallback.
        (
            CHAT,
            r#"{"completion_tokens":10,"reasoning_tokens":7}"#,
            Some((N, N, N, Some(10), Some(7))),
        ),
        // Only output: still usage, input unknown.
        (MSGS, r#"{"output_tokens":3}"#, Some((N, N, N, Some(3), N))),
    ];
    for (protocol, usage, expected) in cases {
        check_usage(*protocol, usage, *expected);
    }
}

#[test]
fn counts_must_be_non_negative_integers() {
    let junk = [
        "-1",
        "1.5",
        "12.0",
        "1e3",
        "\"12\"",
        "null",
        "true",
        "[]",
        "{}",
        "18446744073709551616",
    ];
    for protocol in Protocol::ALL {
        for j in junk {
            let usage = format!(
                r#"{{"input_tokens":{j},"prompt_tokens":{j},"output_tokens":{j},"completion_tokens":{j},"cached_tokens":{j},"cache_read_input_tokens":{j},"cache_creation_input_tokens":{j},"reasoning_tokens":{j}}}"#
            );
            let body = format!(r#"{{"usage": {usage}}}"#);
            let r = report(protocol, &body);
            if protocol == IMGS {
                assert_eq!(r.usage, None, "{protocol}: {j}");
            } else {
                assert!(r.usage_missing, "{protocol}: {j}");
            }
        }
        // Zero is a count.
        check_usage(
            protocol,
            r#"{"input_tokens":0,"output_tokens":0}"#,
            Some((Some(0), N, N, Some(0), N)),
        );
        // The largest u64 is a count too.
        check_usage(
            protocol,
            r#"{"output_tokens":18446744073709551615}"#,
            Some((N, N, N, Some(u64::MAX), N)),
        );
    }
}

#[test]
fn anthropic_total_input_adds_cache_reads_and_writes() {
    let cases: &[(&str, Tokens)] = &[
        (
            r#"{"input_tokens":12,"cache_read_input_tokens":3,"cache_creation_input_tokens":2,"output_tokens":9}"#,
            (Some(17), Some(3), Some(2), Some(9), N),
        ),
        (
            r#"{"input_tokens":12,"output_tokens":9}"#,
            (Some(12), N, N, Some(9), N),
        ),
        (
            r#"{"input_tokens":0,"cache_read_input_tokens":100,"output_tokens":1}"#,
            (Some(100), Some(100), N, Some(1), N),
        ),
        // Aliases for the cache fields.
        (
            r#"{"input_tokens":1,"cache_read_tokens":2,"cache_write_tokens":4}"#,
            (Some(7), Some(2), Some(4), N, N),
        ),
        // Junk cache fields add nothing.
        (
            r#"{"input_tokens":5,"cache_read_input_tokens":-3,"cache_creation_input_tokens":"2"}"#,
            (Some(5), N, N, N, N),
        ),
        // No input_tokens: the total is unknown, the parts are kept.
        (
            r#"{"cache_read_input_tokens":3,"output_tokens":1}"#,
            (N, Some(3), N, Some(1), N),
        ),
    ];
    for (usage, expected) in cases {
        check_usage(MSGS, usage, Some(*expected));
    }
    // OpenAI's input already includes cached tokens: nothing is added.
    check_usage(
        CHAT,
        r#"{"prompt_tokens":12,"cache_read_input_tokens":3,"cache_creation_input_tokens":2}"#,
        Some((Some(12), Some(3), Some(2), N, N)),
    );
}

// -------------------------------------------------------------- images ----

fn image_of(body: &str, request: &RequestFacts) -> (ImageUsage, UsageReport) {
    let r = from_json(IMGS, body.as_bytes(), request);
    (r.usage.as_ref().unwrap().image.clone().unwrap(), r)
}

#[test]
fn images_count_and_display_fields() {
    let request = RequestFacts::from_request_json(
        IMGS,
        br#"{"model":"gpt-image-1","prompt":"a cat","n":3,"size":"1536x1024","quality":"high","output_format":"webp"}"#,
    );
    assert_eq!(
        request,
        RequestFacts {
            n: Some(3),
            size: Some("1536x1024".into()),
            quality: Some("high".into()),
            output_format: Some("webp".into()),
        }
    );

    // Response fields win; count = len(data).
    let (img, r) = image_of(
        r#"{"data":[{"b64_json":"AA"},{"b64_json":"BB"}],"size":"1024x1024","quality":"low","output_format":"png"}"#,
        &request,
    );
    assert_eq!(img.count, Some(2));
    assert_eq!(
        (
            img.size.as_deref(),
            img.quality.as_deref(),
            img.output_format.as_deref()
        ),
        (Some("1024x1024"), Some("low"), Some("png"))
    );
    assert!(r.saw_content && !r.usage_missing);

    // Else the first image's fields, else the request's.
    let (img, _) = image_of(
        r#"{"data":[{"url":"https://x/1.png","size":"512x512"},{"quality":"medium"}]}"#,
        &request,
    );
    assert_eq!(
        (
            img.count,
            img.size.as_deref(),
            img.quality.as_deref(),
            img.output_format.as_deref()
        ),
        (Some(2), Some("512x512"), Some("high"), Some("webp"))
    );

    // No data: the request's n.
    let (img, r) = image_of(r#"{"created":1}"#, &request);
    assert_eq!(img.count, Some(3));
    assert!(!r.saw_content);

    // No data, no n, no usage: missing.
    let r = from_json(IMGS, br#"{"created":1}"#, &RequestFacts::default());
    assert!(r.usage_missing);

    // Junk display strings are ignored (falls through to the request).
    let (img, _) = image_of(
        r#"{"data":[],"size":"<script>","quality":"","output_format":12}"#,
        &request,
    );
    assert_eq!(
        (
            img.count,
            img.size.as_deref(),
            img.quality.as_deref(),
            img.output_format.as_deref()
        ),
        (Some(0), Some("1536x1024"), Some("high"), Some("webp"))
    );
}

#[test]
fn images_tokens_when_reported() {
    let (img, r) = image_of(
        r#"{"data":[{"b64_json":"AA"}],"usage":{"input_tokens":50,"input_tokens_details":{"text_tokens":10,"image_tokens":40},"output_tokens":4160,"output_tokens_details":{"image_tokens":4000,"text_tokens":160}}}"#,
        &RequestFacts::default(),
    );
    let u = r.usage.unwrap();
    assert_eq!(tokens(&u), (Some(50), N, N, Some(4160), N));
    assert_eq!(
        (
            img.input_text_tokens,
            img.input_image_tokens,
            img.output_image_tokens,
            img.output_text_tokens
        ),
        (Some(10), Some(40), Some(4000), Some(160))
    );
    // No usage: tokens unknown, count known.
    let (img, r) = image_of(r#"{"data":[{"b64_json":"AA"}]}"#, &RequestFacts::default());
    assert_eq!(tokens(r.usage.as_ref().unwrap()), (N, N, N, N, N));
    assert_eq!(img.count, Some(1));
}

#[test]
fn request_facts_are_lenient() {
    let cases: &[(Protocol, &[u8], RequestFacts)] = &[
        (IMGS, b"not json", RequestFacts::default()),
        (
            IMGS,
            br#"{"n":-1,"size":5,"quality":"auto"}"#,
            RequestFacts {
                quality: Some("auto".into()),
                ..RequestFacts::default()
            },
        ),
        (IMGS, br#"{"n":4294967296}"#, RequestFacts::default()),
        (IMGS, br#"{"n":2.0}"#, RequestFacts::default()),
        // Only images requests carry facts.
        (
            CHAT,
            br#"{"n":2,"size":"1024x1024"}"#,
            RequestFacts::default(),
        ),
    ];
    for (protocol, body, expected) in cases {
        assert_eq!(
            &RequestFacts::from_request_json(*protocol, body),
            expected,
            "{}",
            String::from_utf8_lossy(body)
        );
    }
}

// ------------------------------------------- empty, missing, content ----

#[test]
fn empty_completion_and_missing_usage() {
    // (protocol, body, usage_missing, empty_completion, saw_content)
    let cases: &[(Protocol, &str, bool, bool, bool)] = &[
        (
            CHAT,
            r#"{"choices":[{"message":{"role":"assistant","content":""}}],"usage":{"prompt_tokens":5,"completion_tokens":0}}"#,
            false,
            true,
            false,
        ),
        (
            CHAT,
            r#"{"choices":[{"message":{"content":null,"tool_calls":[{"id":"c"}]}}],"usage":{"prompt_tokens":5,"completion_tokens":0}}"#,
            false,
            false,
            true,
        ),
        (
            CHAT,
            r#"{"choices":[{"message":{"content":"hi"}}],"usage":{"prompt_tokens":5,"completion_tokens":0}}"#,
            false,
            false,
            true,
        ),
        (
            CHAT,
            r#"{"choices":[{"message":{"content":"","refusal":"no"}}],"usage":{"prompt_tokens":5}}"#,
            false,
            false,
            true,
        ),
        // Output not reported counts as zero for this rule.
        (
            CHAT,
            r#"{"choices":[],"usage":{"prompt_tokens":5}}"#,
            false,
            true,
            false,
        ),
        // Input 0: not an empty completion.
        (
            CHAT,
            r#"{"choices":[],"usage":{"prompt_tokens":0,"completion_tokens":0}}"#,
            false,
            false,
            false,
        ),
        // No usage at all.
        (
            CHAT,
            r#"{"choices":[{"message":{"content":"hi"}}]}"#,
            true,
            false,
            true,
        ),
        (CHAT, r#"{"choices":[],"usage":null}"#, true, false, false),
        (CHAT, r#"{"usage":"12"}"#, true, false, false),
        (CHAT, "not json", true, false, false),
        (CHAT, "[1,2]", true, false, false),
        (CHAT, "", true, false, false),
        (
            RESP,
            r#"{"output":[{"type":"message","content":[{"type":"output_text","text":""}]}],"usage":{"input_tokens":5,"output_tokens":0}}"#,
            false,
            true,
            false,
        ),
        (
            RESP,
            r#"{"output":[{"type":"function_call","name":"f","arguments":"{}"}],"usage":{"input_tokens":5,"output_tokens":0}}"#,
            false,
            false,
            true,
        ),
        (
            RESP,
            r#"{"output":[{"type":"reasoning","summary":[]},{"type":"message","content":[{"type":"output_text","text":"x"}]}],"usage":{"input_tokens":5,"output_tokens":3}}"#,
            false,
            false,
            true,
        ),
        (
            MSGS,
            r#"{"content":[],"usage":{"input_tokens":5,"output_tokens":0}}"#,
            false,
            true,
            false,
        ),
        (
            MSGS,
            r#"{"content":[{"type":"text","text":""}],"usage":{"input_tokens":0,"cache_read_input_tokens":5,"output_tokens":0}}"#,
            false,
            true,
            false,
        ),
        (
            MSGS,
            r#"{"content":[{"type":"tool_use","id":"t","name":"f","input":{}}],"usage":{"input_tokens":5,"output_tokens":0}}"#,
            false,
            false,
            true,
        ),
        (
            IMGS,
            r#"{"data":[],"usage":{"input_tokens":5,"output_tokens":0}}"#,
            false,
            true,
            false,
        ),
    ];
    for (protocol, body, missing, empty, content) in cases {
        let r = report(*protocol, body);
        assert_eq!(
            (r.usage_missing, r.empty_completion, r.saw_content),
            (*missing, *empty, *content),
            "{protocol}: {body}"
        );
        assert_eq!(r.usage_missing, r.usage.is_none());
    }
}

// ---------------------------------------------------------------- cost ----

#[test]
fn usd_text_converts_exactly() {
    let cases: &[(&str, Option<u64>)] = &[
        ("0", Some(0)),
        ("1", Some(1_000_000)),
        ("12", Some(12_000_000)),
        ("0.000001", Some(1)),
        ("0.0000005", Some(1)),
        ("0.0000004999", Some(0)),
        ("0.00123456", Some(1235)),
        ("0.00123449", Some(1234)),
        // Where f64 arithmetic goes wrong: 0.000129 × 10^6 = 128.99999…
        ("0.000129", Some(129)),
        ("1.1", Some(1_100_000)),
        ("1e-6", Some(1)),
        ("1E-6", Some(1)),
        ("1.5e+2", Some(150_000_000)),
        ("2.5e-7", Some(0)),
        ("5e-7", Some(1)),
        ("123456789.123456789", Some(123_456_789_123_457)),
        ("1e9", Some(1_000_000_000_000_000)),
        ("1.000000001e9", None),
        ("1e10", None),
        ("0e999999999999999999999", Some(0)),
        ("1e999999999999999999999", None),
        ("1e-999999999999999999999", Some(0)),
        ("-0.5", None),
        ("-0", None),
        ("\"0.5\"", None),
        ("null", None),
        ("01", None),
        ("1.", None),
        (".5", None),
        ("1e", None),
        ("0x10", None),
    ];
    for (text, expected) in cases {
        assert_eq!(usd_text_to_micros(text), *expected, "{text}");
    }
}

#[test]
fn reported_cost_sources() {
    let cases: &[(&str, Option<u64>)] = &[
        (r#"{"prompt_tokens":1,"cost":0.000129}"#, Some(129)),
        (r#"{"prompt_tokens":1,"cost":0}"#, Some(0)),
        (
            r#"{"prompt_tokens":1,"cost_details":{"upstream_inference_cost":0.0042}}"#,
            Some(4200),
        ),
        // `cost` wins over the details.
        (
            r#"{"prompt_tokens":1,"cost":0.001,"cost_details":{"upstream_inference_cost":0.0042}}"#,
            Some(1000),
        ),
        // Junk cost: the details are used.
        (
            r#"{"prompt_tokens":1,"cost":"0.001","cost_details":{"upstream_inference_cost":0.0042}}"#,
            Some(4200),
        ),
        (r#"{"prompt_tokens":1,"cost":-1}"#, None),
        (r#"{"prompt_tokens":1,"cost":null}"#, None),
        (r#"{"prompt_tokens":1,"cost_details":null}"#, None),
        (r#"{"prompt_tokens":1,"cost_details":5}"#, None),
        (r#"{"prompt_tokens":1}"#, None),
    ];
    for (usage, expected) in cases {
        let body = format!(r#"{{"usage": {usage}}}"#);
        assert_eq!(
            report(CHAT, &body).reported_cost_usd_micros,
            *expected,
            "{usage}"
        );
    }
}

// ----------------------------------------------------------------- tap ----

fn tap_classes(protocol: Protocol, events: &[(Option<&str>, &str)]) -> (Vec<EventClass>, UsageTap) {
    let mut tap = UsageTap::new(protocol, &RequestFacts::default());
    let classes = events
        .iter()
        .map(|(name, data)| tap.on_event(*name, data))
        .collect();
    (classes, tap)
}

#[test]
fn chat_events_are_classified() {
    use EventClass::*;
    let cases: &[(&str, EventClass)] = &[
        (
            r#"{"choices":[{"delta":{"role":"assistant","content":""}}]}"#,
            Other,
        ),
        (r#"{"choices":[{"delta":{"content":"x"}}]}"#, Content),
        (
            r#"{"choices":[{"delta":{"reasoning_content":"x"}}]}"#,
            Content,
        ),
        (r#"{"choices":[{"delta":{"reasoning":"x"}}]}"#, Content),
        (r#"{"choices":[{"delta":{"refusal":"x"}}]}"#, Content),
        (
            r#"{"choices":[{"delta":{"tool_calls":[{"index":0}]}}]}"#,
            Content,
        ),
        (r#"{"choices":[{"delta":{"tool_calls":[]}}]}"#, Other),
        (
            r#"{"choices":[{"delta":{},"finish_reason":"stop"}]}"#,
            Other,
        ),
        (r#"{"choices":[],"usage":{"prompt_tokens":1}}"#, UsageOnly),
        (r#"{"usage":{"prompt_tokens":1}}"#, UsageOnly),
        (r#"{"choices":[],"usage":null}"#, Other),
        // Content and usage in one chunk: content (never removed).
        (
            r#"{"choices":[{"delta":{"content":"x"}}],"usage":{"prompt_tokens":1}}"#,
            Content,
        ),
        (r#"{"error":{"message":"boom"}}"#, Error),
        ("[DONE]", Done),
        (" [DONE] ", Done),
        (": not json", Other),
    ];
    for (data, expected) in cases {
        let (classes, tap) = tap_classes(CHAT, &[(None, data)]);
        assert_eq!(classes, [*expected], "{data}");
        assert_eq!(tap.saw_content(), *expected == Content, "{data}");
        assert_eq!(tap.saw_done(), *expected == Done, "{data}");
        assert_eq!(tap.saw_error(), *expected == Error, "{data}");
    }
    let (classes, _) = tap_classes(CHAT, &[(Some("error"), r#"{"message":"x"}"#)]);
    assert_eq!(classes, [Error]);
}

#[test]
fn is_usage_only_chunk_cases() {
    let cases: &[(&str, bool)] = &[
        (
            r#"{"id":"c","choices":[],"usage":{"prompt_tokens":1}}"#,
            true,
        ),
        (r#"{"usage":{}}"#, true),
        (
            r#"{"choices":[{"delta":{}}],"usage":{"prompt_tokens":1}}"#,
            false,
        ),
        (r#"{"choices":[],"usage":null}"#, false),
        (r#"{"choices":[]}"#, false),
        (r#"{"choices":{},"usage":{}}"#, false),
        (r#"{"choices":[],"usage":"x"}"#, false),
        ("[DONE]", false),
        ("", false),
    ];
    for (data, expected) in cases {
        assert_eq!(is_usage_only_chunk(data), *expected, "{data}");
    }
}

#[test]
fn responses_events_are_classified() {
    use EventClass::*;
    let cases: &[(&str, &str, EventClass)] = &[
        ("response.created", "{}", Other),
        ("response.in_progress", "{}", Other),
        (
            "response.output_item.added",
            r#"{"item":{"type":"message"}}"#,
            Other,
        ),
        (
            "response.output_item.added",
            r#"{"item":{"type":"reasoning"}}"#,
            Other,
        ),
        (
            "response.output_item.added",
            r#"{"item":{"type":"function_call"}}"#,
            Content,
        ),
        ("response.content_part.added", "{}", Other),
        ("response.output_text.delta", r#"{"delta":"x"}"#, Content),
        ("response.reasoning_text.delta", r#"{"delta":"x"}"#, Content),
        (
            "response.reasoning_summary_text.delta",
            r#"{"delta":"x"}"#,
            Content,
        ),
        ("response.reasoning_summary_part.added", "{}", Other),
        (
            "response.function_call_arguments.delta",
            r#"{"delta":"{"}"#,
            Content,
        ),
        ("response.refusal.delta", r#"{"delta":"no"}"#, Content),
        ("response.output_text.done", "{}", Other),
        ("response.completed", r#"{"response":{}}"#, Other),
        ("response.incomplete", r#"{"response":{}}"#, Other),
        ("response.failed", r#"{"response":{}}"#, Error),
        ("error", r#"{"message":"x"}"#, Error),
        ("tokenbuddy.settlement", r#"{"settledUsdMicros":1}"#, Other),
    ];
    for (name, data, expected) in cases {
        let (classes, _) = tap_classes(RESP, &[(Some(name), data)]);
        assert_eq!(classes, [*expected], "{name}");
        // Without the `event:` line, the data's `type` names it.
        let typed = data.replacen('{', &format!(r#"{{"type":"{name}","#), 1);
        let typed = typed.replace(",}", "}");
        let (classes, _) = tap_classes(RESP, &[(None, &typed)]);
        assert_eq!(classes, [*expected], "{typed}");
    }
}

#[test]
fn responses_usage_from_terminal_events() {
    for name in [
        "response.completed",
        "response.incomplete",
        "response.failed",
    ] {
        let data = r#"{"response":{"usage":{"input_tokens":8,"output_tokens":2,"input_tokens_details":{"cached_tokens":4},"output_tokens_details":{"reasoning_tokens":1},"cost":0.5}}}"#;
        let (_, tap) = tap_classes(
            RESP,
            &[
                (Some("response.created"), r#"{"response":{"usage":null}}"#),
                (Some(name), data),
            ],
        );
        let r = tap.finish();
        assert_eq!(
            tokens(r.usage.as_ref().unwrap()),
            (Some(8), Some(4), N, Some(2), Some(1)),
            "{name}"
        );
        assert_eq!(r.reported_cost_usd_micros, Some(500_000));
        // Output > 0: not empty even without content.
        assert!(!r.empty_completion && !r.saw_content);
    }
}

#[test]
fn messages_events_are_classified() {
    use EventClass::*;
    let cases: &[(&str, &str, EventClass)] = &[
        (
            "message_start",
            r#"{"message":{"usage":{"input_tokens":1}}}"#,
            Other,
        ),
        (
            "content_block_start",
            r#"{"content_block":{"type":"text","text":""}}"#,
            Other,
        ),
        (
            "content_block_start",
            r#"{"content_block":{"type":"thinking"}}"#,
            Other,
        ),
        (
            "content_block_start",
            r#"{"content_block":{"type":"tool_use","id":"t"}}"#,
            Content,
        ),
        (
            "content_block_start",
            r#"{"content_block":{"type":"server_tool_use"}}"#,
            Content,
        ),
        ("ping", "{}", Other),
        (
            "content_block_delta",
            r#"{"delta":{"type":"text_delta","text":"x"}}"#,
            Content,
        ),
        (
            "content_block_delta",
            r#"{"delta":{"type":"input_json_delta"}}"#,
            Content,
        ),
        ("content_block_stop", "{}", Other),
        ("message_delta", r#"{"usage":{"output_tokens":3}}"#, Other),
        ("message_stop", "{}", Other),
        ("error", r#"{"error":{"type":"overloaded_error"}}"#, Error),
    ];
    for (name, data, expected) in cases {
        let (classes, _) = tap_classes(MSGS, &[(Some(name), data)]);
        assert_eq!(classes, [*expected], "{name} {data}");
    }
}

#[test]
fn messages_usage_start_then_last_delta() {
    let start = r#"{"type":"message_start","message":{"usage":{"input_tokens":12,"cache_creation_input_tokens":2,"cache_read_input_tokens":3,"output_tokens":1}}}"#;
    // Classic: message_delta carries only output_tokens (cumulative).
    let (_, tap) = tap_classes(
        MSGS,
        &[
            (Some("message_start"), start),
            (Some("content_block_delta"), r#"{"delta":{"text":"x"}}"#),
            (Some("message_delta"), r#"{"usage":{"output_tokens":5}}"#),
            (Some("message_delta"), r#"{"usage":{"output_tokens":9}}"#),
        ],
    );
    assert_eq!(
        tokens(tap.finish().usage.as_ref().unwrap()),
        (Some(17), Some(3), Some(2), Some(9), N)
    );
    // Newer: message_delta repeats the input side; it replaces it.
    let (_, tap) = tap_classes(
        MSGS,
        &[
            (Some("message_start"), start),
            (
                Some("message_delta"),
                r#"{"usage":{"input_tokens":20,"cache_read_input_tokens":0,"output_tokens":9}}"#,
            ),
        ],
    );
    assert_eq!(
        tokens(tap.finish().usage.as_ref().unwrap()),
        (Some(22), Some(0), Some(2), Some(9), N)
    );
    // Cut off after message_start with no content: empty completion? No:
    // message_start's output_tokens (1) is what we know.
    let (_, tap) = tap_classes(MSGS, &[(Some("message_start"), start)]);
    let r = tap.finish();
    assert!(!r.saw_content && !r.empty_completion && !r.usage_missing);
    // Output 0 and no content: empty.
    let (_, tap) = tap_classes(
        MSGS,
        &[
            (Some("message_start"), start),
            (Some("message_delta"), r#"{"usage":{"output_tokens":0}}"#),
        ],
    );
    assert!(tap.finish().empty_completion);
}

#[test]
fn chat_stream_usage_and_missing() {
    // No usage chunk (the upstream ignored include_usage).
    let (_, tap) = tap_classes(
        CHAT,
        &[
            (
                None,
                r#"{"choices":[{"delta":{"content":"x"}}],"usage":null}"#,
            ),
            (None, "[DONE]"),
        ],
    );
    let r = tap.finish();
    assert!(r.usage_missing && r.saw_content && !r.empty_completion);
    // Nothing but [DONE]: no usage, no content.
    let (_, tap) = tap_classes(CHAT, &[(None, "[DONE]")]);
    let r = tap.finish();
    assert!(r.usage_missing && !r.saw_content && tap.saw_done());
    // Usage with zero output and no content: empty completion.
    let (_, tap) = tap_classes(
        CHAT,
        &[
            (
                None,
                r#"{"choices":[{"delta":{"role":"assistant","content":""}}]}"#,
            ),
            (
                None,
                r#"{"choices":[],"usage":{"prompt_tokens":5,"completion_tokens":0}}"#,
            ),
            (None, "[DONE]"),
        ],
    );
    let r = tap.finish();
    assert!(r.empty_completion && !r.usage_missing);
}

#[test]
fn images_stream_counts_completed_images() {
    use EventClass::*;
    let request = RequestFacts {
        n: Some(2),
        size: Some("1024x1536".into()),
        quality: Some("high".into()),
        output_format: Some("jpeg".into()),
    };
    let completed = r#"{"type":"image_generation.completed","b64_json":"AA","size":"1024x1024","quality":"low","usage":{"input_tokens":10,"output_tokens":272,"input_tokens_details":{"text_tokens":10,"image_tokens":0}}}"#;
    let mut tap = UsageTap::new(IMGS, &request);
    assert_eq!(
        tap.on_event(
            Some("image_generation.partial_image"),
            r#"{"b64_json":"AA"}"#
        ),
        Content
    );
    assert_eq!(
        tap.on_event(Some("image_generation.completed"), completed),
        Content
    );
    assert_eq!(tap.on_event(None, completed), Content);
    let r = tap.finish();
    let u = r.usage.unwrap();
    let img = u.image.clone().unwrap();
    // Two images; tokens summed; size/quality from the events, format from
    // the request.
    assert_eq!(tokens(&u), (Some(20), N, N, Some(544), N));
    assert_eq!(
        (
            img.count,
            img.size.as_deref(),
            img.quality.as_deref(),
            img.output_format.as_deref()
        ),
        (Some(2), Some("1024x1024"), Some("low"), Some("jpeg"))
    );
    assert_eq!(
        (img.input_text_tokens, img.input_image_tokens),
        (Some(20), Some(0))
    );

    // A stream that produced nothing.
    let tap = UsageTap::new(IMGS, &request);
    let r = tap.finish();
    assert!(r.usage_missing && !r.saw_content);
}

// -------------------------------------------- canned bodies agree ----

fn report_of_stream(protocol: Protocol, chunks: &[&[u8]], request: &RequestFacts) -> UsageReport {
    let mut parser = SseParser::new();
    let mut tap = UsageTap::new(protocol, request);
    let mut on_item = |item: SseItem<'_>| {
        if let SseItem::Event(ev) = item {
            tap.on_sse_event(&ev);
        }
    };
    for chunk in chunks {
        parser.feed(chunk, &mut on_item);
    }
    parser.finish(&mut on_item);
    tap.finish()
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

#[test]
fn canned_json_gives_the_expected_usage() {
    use canned::*;
    let none = RequestFacts::default();
    let chat = from_json(CHAT, &json(CHAT, "m"), &none);
    assert_eq!(
        tokens(chat.usage.as_ref().unwrap()),
        (
            Some(INPUT_TOKENS),
            Some(CACHED_INPUT_TOKENS),
            Some(0),
            Some(OUTPUT_TOKENS),
            Some(0)
        )
    );
    let resp = from_json(RESP, &json(RESP, "m"), &none);
    assert_eq!(
        tokens(resp.usage.as_ref().unwrap()),
        (
            Some(INPUT_TOKENS),
            Some(CACHED_INPUT_TOKENS),
            Some(0),
            Some(OUTPUT_TOKENS),
            Some(0)
        )
    );
    let msgs = from_json(MSGS, &json(MSGS, "m"), &none);
    assert_eq!(
        tokens(msgs.usage.as_ref().unwrap()),
        (
            Some(INPUT_TOKENS + CACHED_INPUT_TOKENS + CACHE_CREATION_INPUT_TOKENS),
            Some(CACHED_INPUT_TOKENS),
            Some(CACHE_CREATION_INPUT_TOKENS),
            Some(OUTPUT_TOKENS),
            N
        )
    );
    let imgs = from_json(IMGS, &json(IMGS, "m"), &none);
    let u = imgs.usage.as_ref().unwrap();
    assert_eq!(
        tokens(u),
        (
            Some(IMAGE_TEXT_INPUT_TOKENS),
            N,
            N,
            Some(IMAGE_OUTPUT_TOKENS),
            N
        )
    );
    assert_eq!(
        u.image,
        Some(ImageUsage {
            count: Some(1),
            size: Some("1024x1024".into()),
            quality: Some("low".into()),
            output_format: Some("png".into()),
            input_text_tokens: Some(IMAGE_TEXT_INPUT_TOKENS),
            input_image_tokens: Some(0),
            output_image_tokens: None,
            output_text_tokens: None,
        })
    );
    for r in [chat, resp, msgs, imgs] {
        assert!(r.saw_content && !r.usage_missing && !r.empty_completion);
        assert_eq!(r.reported_cost_usd_micros, None);
    }
}

/// The protocols that stream (embeddings answer whole only).
fn streamed() -> Vec<Protocol> {
    Protocol::ALL
        .into_iter()
        .filter(|p| *p != Protocol::Embeddings)
        .collect()
}

#[test]
fn canned_streams_agree_with_canned_json_byte_by_byte() {
    let request = RequestFacts::default();
    for protocol in streamed() {
        let expected = from_json(protocol, &canned::json(protocol, "m"), &request);
        let body = canned::sse_body(protocol, "m");
        for n in [1, 2, 3, 7, 64, body.len()] {
            let pieces = chunking::split_every(&body, n);
            assert_eq!(
                report_of_stream(protocol, &data_pieces(&pieces), &request),
                expected,
                "{protocol}, n = {n}"
            );
        }
    }
}

#[test]
fn canned_chat_stream_has_exactly_one_usage_only_chunk_last_before_done() {
    let events = canned::sse_events(CHAT, "m");
    let flags: Vec<bool> = events
        .iter()
        .map(|e| {
            let text = std::str::from_utf8(e).unwrap();
            is_usage_only_chunk(text.trim_end().strip_prefix("data: ").unwrap())
        })
        .collect();
    let n = flags.len();
    assert_eq!(flags.iter().filter(|f| **f).count(), 1);
    assert!(flags[n - 2]);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn any_chunking_of_a_canned_stream_gives_the_json_usage(
        protocol in prop::sample::select(streamed()),
        picks in prop::collection::vec(any::<Index>(), 0..48),
        crlf in any::<bool>(),
    ) {
        let request = RequestFacts::default();
        let expected = from_json(protocol, &canned::json(protocol, "gpt-x"), &request);
        let mut body = canned::sse_body(protocol, "gpt-x");
        if crlf {
            body = body
                .iter()
                .flat_map(|&b| if b == b'\n' { vec![b'\r', b'\n'] } else { vec![b] })
                .collect();
        }
        let mut cuts: Vec<usize> = picks.iter().map(|i| i.index(body.len() + 1)).collect();
        cuts.sort_unstable();
        let pieces = chunking::split_at(&body, &cuts);
        prop_assert_eq!(report_of_stream(protocol, &data_pieces(&pieces), &request), expected);
    }
}

// ------------------------------------------------------------- tiers ----

/// `(service tier, 1-hour cache writes)`.
type TierFacts = (Option<tb_prices::ServiceTier>, Option<u64>);

/// The [`TierFacts`] of a report.
fn tier_facts(r: &UsageReport) -> TierFacts {
    let u = r.usage.as_ref().expect("usage");
    (u.service_tier, u.cache_write_1h_tokens)
}

#[test]
fn service_tier_and_one_hour_writes_from_json_answers() {
    use tb_prices::ServiceTier::{Flex, Priority, Standard};
    let cases: &[(Protocol, &str, TierFacts)] = &[
        // OpenAI chat and Responses: the top-level `service_tier`.
        (
            CHAT,
            r#"{"service_tier":"priority","choices":[],"usage":{"prompt_tokens":5,"completion_tokens":1}}"#,
            (Some(Priority), None),
        ),
        (
            CHAT,
            r#"{"service_tier":"default","usage":{"prompt_tokens":5}}"#,
            (Some(Standard), None),
        ),
        (
            RESP,
            r#"{"object":"response","service_tier":"flex","usage":{"input_tokens":5,"output_tokens":1}}"#,
            (Some(Flex), None),
        ),
        // Not reported, or not a string: unknown (billed standard).
        (CHAT, r#"{"usage":{"prompt_tokens":5}}"#, (None, None)),
        (
            CHAT,
            r#"{"service_tier":7,"usage":{"prompt_tokens":5}}"#,
            (None, None),
        ),
        // Anthropic: `usage.service_tier` and `usage.cache_creation`.
        (
            MSGS,
            r#"{"usage":{"input_tokens":10,"cache_creation_input_tokens":300,"cache_creation":{"ephemeral_5m_input_tokens":100,"ephemeral_1h_input_tokens":200},"output_tokens":2,"service_tier":"standard"}}"#,
            (Some(Standard), Some(200)),
        ),
        (
            MSGS,
            r#"{"usage":{"input_tokens":10,"output_tokens":2,"service_tier":"priority","cache_creation":{"ephemeral_1h_input_tokens":-1}}}"#,
            (Some(Priority), None),
        ),
    ];
    for (protocol, body, want) in cases {
        assert_eq!(tier_facts(&report(*protocol, body)), *want, "{body}");
    }
    // A service tier alone is no usage.
    let r = report(CHAT, r#"{"service_tier":"priority","choices":[]}"#);
    assert!(r.usage_missing && r.usage.is_none());
    let r = report(MSGS, r#"{"usage":{"service_tier":"priority"}}"#);
    assert!(r.usage_missing, "{r:?}");
}

#[test]
fn service_tier_and_one_hour_writes_from_streams() {
    use tb_prices::ServiceTier::{Priority, Standard};
    // Chat: every chunk carries it; the usage-only chunk too.
    let mut tap = UsageTap::new(CHAT, &RequestFacts::default());
    tap.on_event(
        None,
        r#"{"service_tier":"priority","choices":[{"delta":{"content":"Hi"}}]}"#,
    );
    tap.on_event(
        None,
        r#"{"service_tier":"priority","choices":[],"usage":{"prompt_tokens":7,"completion_tokens":1}}"#,
    );
    assert_eq!(tier_facts(&tap.finish()), (Some(Priority), None));
    // Responses: the terminal event's `response.service_tier` wins over
    // the `auto` of `response.created`.
    let mut tap = UsageTap::new(RESP, &RequestFacts::default());
    tap.on_event(
        Some("response.created"),
        r#"{"type":"response.created","response":{"service_tier":"auto"}}"#,
    );
    tap.on_event(
        Some("response.completed"),
        r#"{"type":"response.completed","response":{"service_tier":"priority","usage":{"input_tokens":9,"output_tokens":2}}}"#,
    );
    assert_eq!(tier_facts(&tap.finish()), (Some(Priority), None));
    // Messages: `message_start` has the input side (cache_creation,
    // service_tier); `message_delta` repeats only the output.
    let mut tap = UsageTap::new(MSGS, &RequestFacts::default());
    tap.on_event(
        Some("message_start"),
        r#"{"type":"message_start","message":{"usage":{"input_tokens":4,"cache_creation_input_tokens":1000,"cache_creation":{"ephemeral_5m_input_tokens":0,"ephemeral_1h_input_tokens":1000},"output_tokens":1,"service_tier":"standard"}}}"#,
    );
    tap.on_event(
        Some("message_delta"),
        r#"{"type":"message_delta","usage":{"output_tokens":30}}"#,
    );
    let r = tap.finish();
    assert_eq!(tier_facts(&r), (Some(Standard), Some(1_000)));
    let u = r.usage.unwrap();
    assert_eq!(
        (u.input_tokens, u.cache_write_tokens, u.output_tokens),
        (Some(1_004), Some(1_000), Some(30))
    );
}
