use proptest::prelude::*;
use serde_json::Value;

use super::*;

const CHAT: Protocol = Protocol::ChatCompletions;

fn err(body: &[u8]) -> Invalid {
    match validate(body, CHAT) {
        Ok(p) => panic!("{:?} accepted as {p:?}", String::from_utf8_lossy(body)),
        Err(e) => e,
    }
}

fn nested(open: &str, depth: usize, close: &str) -> Vec<u8> {
    format!("{}1{}", open.repeat(depth), close.repeat(depth)).into_bytes()
}

#[test]
fn a_non_empty_top_level_tools_array_is_noticed() {
    let tools = |b: &str| validate(b.as_bytes(), CHAT).unwrap().has_tools;
    assert!(tools(r#"{"model":"m","tools":[{"type":"function"}]}"#));
    assert!(tools(r#"{"tools": [ {} ],"model":"m"}"#));
    assert!(!tools(r#"{"model":"m","tools":[]}"#));
    assert!(!tools(r#"{"model":"m","tools":[ ]}"#));
    assert!(!tools(r#"{"model":"m","tools":null}"#));
    assert!(!tools(r#"{"model":"m"}"#));
    // Only the top level counts; the upstream judges the rest.
    assert!(!tools(r#"{"model":"m","x":{"tools":[1]}}"#));
    assert!(!tools(r#"{"model":"m","tools":{"a":[1]}}"#));
    // A repeated or oddly typed `tools` is not ours to refuse.
    assert!(tools(r#"{"model":"m","tools":[],"tools":[1]}"#));
    assert!(!tools(r#"{"model":"m","tools":"x"}"#));
}

#[test]
fn accepts_objects_with_a_model_and_reads_the_facts() {
    let p = validate(br#" {"model":"m","stream":true,"messages":[]} "#, CHAT).unwrap();
    assert!(p.stream && p.model == "m" && !p.usage_requested);
    let p = validate(br#"{"stream":false,"model":"a\/b"}"#, CHAT).unwrap();
    assert!(!p.stream && p.model == "a/b");
    let p = validate(br#"{"mod\u0065l":"h\u00e9 \ud83d\ude00"}"#, CHAT).unwrap();
    assert_eq!(p.model, "hé 😀");
    let usage = |b: &str| validate(b.as_bytes(), CHAT).unwrap().usage_requested;
    assert!(usage(
        r#"{"model":"m","stream_options":{"include_usage":true}}"#
    ));
    assert!(usage(
        r#"{"model":"m","stream_options":{"x":[{"include_usage":1}],"include_usage":true}}"#
    ));
    assert!(!usage(
        r#"{"model":"m","stream_options":{"include_usage":false}}"#
    ));
    assert!(!usage(
        r#"{"model":"m","stream_options":{"include_usage":null}}"#
    ));
    assert!(!usage(r#"{"model":"m","stream_options":null}"#));
    assert!(!usage(
        r#"{"model":"m","messages":[{"include_usage":true}]}"#
    ));
    // Nullable members and other members' shapes are not ours to judge.
    assert!(
        !validate(br#"{"model":"m","stream":null}"#, CHAT)
            .unwrap()
            .stream
    );
    validate(
        br#"{"model":"m","n":1.5,"size":3,"x":{"model":1,"stream":"y"}}"#,
        CHAT,
    )
    .unwrap();
    validate(
        br#"{"model":"m","messages":[{"model":1},{"model":2}]}"#,
        CHAT,
    )
    .unwrap();
    // Image members are read (and typed) only for image generations.
    let images = Protocol::ImagesGenerations;
    validate(
        br#"{"model":"m","n":2,"size":"1024x1024","quality":null,"output_format":"png"}"#,
        images,
    )
    .unwrap();
    // Every RFC 8259 value shape, whitespace everywhere it may be.
    validate(
        b" {\r\n\t\"model\" : \"m\" , \"a\" : [ 0 , -0 , 1.5e+3 , -2E-2 , 10 , true , false , null , { } , [ ] , \"\\\"\\\\\\/\\b\\f\\n\\r\\t\\u00Ff\" ] } \n",
        CHAT,
    )
    .unwrap();
    // Exactly the depth limit.
    let mut deep = b"{\"model\":\"m\",\"a\":".to_vec();
    deep.extend(nested("[", MAX_DEPTH - 1, "]"));
    deep.push(b'}');
    validate(&deep, CHAT).unwrap();
}

#[test]
fn every_error_class_with_its_offset() {
    use Problem::*;
    let model = |field, expected| WrongType { field, expected };
    let string = "a non-empty string";
    let cases: &[(&[u8], Problem, usize)] = &[
        (b"", Empty, 0),
        (b" \n\t", Empty, 3),
        (b"[1,2]", NotObject, 0),
        (b"  \"model\"", NotObject, 2),
        (b"42", NotObject, 0),
        (b"[1,", Truncated, 3),
        (b"{\"model\":\"\xff\"}", InvalidUtf8, 10),
        (b"{\"model\":\"m\",\"t\":\"ok \xc3\x28\"}", InvalidUtf8, 21),
        (b"{\"model\":\"m\",\"t\":\"\xed\xa0\x80\"}", InvalidUtf8, 18),
        (b"{\"model\":\"m\",\"t\":\"\xc0\x80\"}", InvalidUtf8, 18),
        (b"{\"model\":\"m\"}\xff", InvalidUtf8, 13),
        (b"\xef\xbb\xbf{\"model\":\"m\"}", ExpectedValue, 0),
        (b"{\"model\":\"m\",\"t\":\"a\x01\"}", ControlCharacter, 19),
        (b"{\"model\":\"m\",\"t\":\"a\nb\"}", ControlCharacter, 19),
        (b"{\"model\":\"m\",\"t\":\"\\x\"}", InvalidEscape, 18),
        (b"{\"model\":\"m\",\"t\":\"\\u12G4\"}", InvalidEscape, 22),
        (b"{\"model\":\"m\",\"t\":\"\\ud800\"}", LoneSurrogate, 18),
        (b"{\"model\":\"m\",\"t\":\"\\udc00\"}", LoneSurrogate, 18),
        (
            b"{\"model\":\"m\",\"t\":\"\\ud800\\u0041\"}",
            LoneSurrogate,
            18,
        ),
        (b"{\"model\":\"m\",\"t\":\"\\ud800x\"}", LoneSurrogate, 18),
        (
            b"{\"model\":\"m\",\"t\":\"\\ud800\\ud800\"}",
            LoneSurrogate,
            18,
        ),
        (b"{\"model\":\"m\",\"t\":\"\\u00", Truncated, 22),
        (b"{\"model\":\"m\",\"t\":\"abc", Truncated, 21),
        (b"{\"model\":\"m\",\"t\":01}", ExpectedObjectEnd, 18),
        (b"{\"model\":\"m\",\"t\":1.}", InvalidNumber, 19),
        (b"{\"model\":\"m\",\"t\":-}", InvalidNumber, 18),
        (b"{\"model\":\"m\",\"t\":1e}", InvalidNumber, 19),
        (b"{\"model\":\"m\",\"t\":+1}", ExpectedValue, 17),
        (b"{\"model\":\"m\",\"t\":.5}", ExpectedValue, 17),
        (b"{\"model\":\"m\",\"t\":tru}", InvalidLiteral, 20),
        (b"{\"model\":\"m\",\"t\":nul", Truncated, 20),
        (b"{\"model\":\"m\",\"t\":NaN}", ExpectedValue, 17),
        (b"{\"model\":\"m\",\"t\":}", ExpectedValue, 17),
        (b"{\"model\":\"m\",\"t\":[1,]}", ExpectedValue, 20),
        (b"{\"model\":\"m\",}", ExpectedKey, 13),
        (b"{\"model\":\"m\",'t':1}", ExpectedKey, 13),
        (b"{\"model\" \"m\"}", ExpectedColon, 9),
        (b"{\"model\":\"m\" \"t\":1}", ExpectedObjectEnd, 13),
        (b"{\"model\":\"m\",\"t\":[1 2]}", ExpectedArrayEnd, 20),
        (b"{\"model\":\"m\",\"t\":[1}", ExpectedArrayEnd, 19),
        (b"{\"model\":\"m\"", Truncated, 12),
        (b"{\"model\":\"m\"} x", Trailing, 14),
        (b"{\"model\":\"m\"}{}", Trailing, 13),
        (b"{\"model\":\"m\"}\0", Trailing, 13),
        (b"{\"model\":\"m\",\"model\":\"n\"}", Duplicate("model"), 13),
        (
            b"{\"model\":\"m\",\"stream\":true,\"str\\u0065am\":false}",
            Duplicate("stream"),
            27,
        ),
        (
            b"{\"model\":\"m\",\"stream_options\":{\"include_usage\":true,\"include_usage\":true}}",
            Duplicate("stream_options.include_usage"),
            52,
        ),
        (b"{}", MissingModel, 2),
        (b"{\"messages\":[]}", MissingModel, 15),
        (b"{\"model\":null}", model("model", string), 9),
        (b"{\"model\":42}", model("model", string), 9),
        (b"{\"model\":[\"m\"]}", model("model", string), 9),
        (b"{\"model\":\"\"}", model("model", string), 9),
        (
            b"{\"model\":\"m\",\"stream\":\"true\"}",
            model("stream", "a boolean"),
            22,
        ),
        (
            b"{\"model\":\"m\",\"stream\":1}",
            model("stream", "a boolean"),
            22,
        ),
        (
            b"{\"model\":\"m\",\"stream_options\":true}",
            model("stream_options", "an object"),
            30,
        ),
        (
            b"{\"model\":\"m\",\"stream_options\":[]}",
            model("stream_options", "an object"),
            30,
        ),
        (
            b"{\"model\":\"m\",\"stream_options\":{\"include_usage\":\"yes\"}}",
            model("stream_options.include_usage", "a boolean"),
            47,
        ),
    ];
    for &(body, problem, offset) in cases {
        let got = err(body);
        assert_eq!(
            got,
            Invalid { problem, offset },
            "{:?}",
            String::from_utf8_lossy(body)
        );
    }
}

#[test]
fn image_members_are_typed_for_image_generations() {
    use Problem::WrongType;
    let images = Protocol::ImagesGenerations;
    let cases: &[(&[u8], &str, usize)] = &[
        (br#"{"model":"m","n":"2"}"#, "n", 17),
        (br#"{"model":"m","n":-1}"#, "n", 17),
        (br#"{"model":"m","n":1.5}"#, "n", 17),
        (br#"{"model":"m","n":1e3}"#, "n", 17),
        (br#"{"model":"m","size":1024}"#, "size", 20),
        (br#"{"model":"m","quality":{}}"#, "quality", 23),
        (
            br#"{"model":"m","output_format":true}"#,
            "output_format",
            29,
        ),
    ];
    for &(body, field, offset) in cases {
        let got = validate(body, images).unwrap_err();
        assert!(
            matches!(got.problem, WrongType { field: f, .. } if f == field) && got.offset == offset,
            "{:?}: {got:?}",
            String::from_utf8_lossy(body)
        );
        // Other protocols do not read them.
        validate(body, CHAT).unwrap();
    }
}

#[test]
fn nesting_is_limited_to_128_without_recursion() {
    let mut ok = b"{\"model\":\"m\",\"a\":".to_vec();
    ok.extend(nested("{\"k\":", MAX_DEPTH - 1, "}"));
    ok.push(b'}');
    validate(&ok, CHAT).unwrap();
    let mut deep = b"{\"model\":\"m\",\"a\":".to_vec();
    let at = deep.len() + MAX_DEPTH - 1;
    deep.extend(nested("[", 100_000, "]"));
    deep.push(b'}');
    assert_eq!(
        err(&deep),
        Invalid {
            problem: Problem::TooDeep,
            offset: at
        }
    );
    // A bare 100,000-deep array: syntax first, so still "too deep".
    let bare = nested("[", 100_000, "]");
    assert_eq!(err(&bare).problem, Problem::TooDeep);
    assert_eq!(err(&bare).offset, MAX_DEPTH);
}

#[test]
fn errors_become_protocol_shaped_400s_naming_problem_and_offset() {
    let msg = |b: &[u8]| err(b).to_proxy_error();
    let e = msg(b"{\"model\":\"m\",\"t\":\"\xff\"}");
    assert_eq!(e.code, ErrorCode::InvalidJson);
    assert_eq!(
        e.message,
        "the request body is not valid JSON: invalid UTF-8 at byte 18"
    );
    let e = msg(&nested("[", 200, "]"));
    assert_eq!(
        e.message,
        "the request body is not valid JSON: nesting deeper than 128 at byte 128"
    );
    let e = msg(br#"{"model":42}"#);
    assert_eq!(e.code, ErrorCode::MissingModel);
    assert_eq!(e.message, "`model` must be a non-empty string (byte 9)");
    let e = msg(br#"{"stream":1,"model":"m"}"#);
    assert_eq!(e.code, ErrorCode::InvalidField);
    assert_eq!(e.message, "`stream` must be a boolean (byte 10)");
    let e = msg(b"{}");
    assert_eq!(e.code, ErrorCode::MissingModel);
    assert!(e.message.contains("no \"model\""), "{}", e.message);
    let e = msg(b"[]");
    assert_eq!(e.code, ErrorCode::InvalidJson);
    assert!(
        e.message
            .starts_with("the request body is not a JSON object; send")
    );
    assert_eq!(e.code.status().as_u16(), 400);
}

/// serde_json's verdict, or `None` where we differ on purpose (numbers out
/// of f64 range; the generators stay far below the depth limits).
fn serde_verdict(body: &[u8]) -> Option<bool> {
    match serde_json::from_slice::<Value>(body) {
        Ok(_) => Some(true),
        Err(e) if e.to_string().starts_with("number out of range") => None,
        Err(_) => Some(false),
    }
}

fn our_verdict(body: &[u8]) -> bool {
    std::str::from_utf8(body).is_ok() && check_syntax(body).is_ok()
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        any::<String>().prop_map(Value::String),
        "[a-z\"\\\\/\u{0}-\u{1f}é😀]{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(6, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            prop::collection::btree_map("[a-z\"\\\\é]{0,6}", inner, 0..8)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Bytes that matter to a JSON scanner, and some that never may appear.
fn json_byte() -> impl Strategy<Value = u8> {
    prop_oneof![
        prop::sample::select(b"{}[]\":,\\ \t\n\rtrufalsenl0123456789-+.eEuDdAa".to_vec()),
        Just(0u8),
        Just(0x1f),
        Just(0x7f),
        0x80u8..=0xff,
        any::<u8>(),
    ]
}

#[derive(Debug, Clone)]
enum Mutation {
    Replace(usize, u8),
    Insert(usize, u8),
    Delete(usize),
}

fn mutate(mut bytes: Vec<u8>, edits: &[Mutation]) -> Vec<u8> {
    for m in edits {
        let len = bytes.len();
        match *m {
            Mutation::Replace(at, b) if len > 0 => bytes[at % len] = b,
            Mutation::Insert(at, b) => bytes.insert(at % (len + 1), b),
            Mutation::Delete(at) if len > 0 => {
                bytes.remove(at % len);
            }
            _ => {}
        }
    }
    bytes
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), json_byte()).prop_map(|(a, b)| Mutation::Replace(a, b)),
        (any::<usize>(), json_byte()).prop_map(|(a, b)| Mutation::Insert(a, b)),
        any::<usize>().prop_map(Mutation::Delete),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    #[test]
    fn serialized_json_is_valid(v in json_value(), pretty in any::<bool>()) {
        let text = if pretty { serde_json::to_string_pretty(&v) } else { serde_json::to_string(&v) };
        let text = text.unwrap();
        prop_assert!(our_verdict(text.as_bytes()), "{text}");
    }

    #[test]
    fn verdict_matches_serde_json_on_mutated_json(
        v in json_value(),
        edits in prop::collection::vec(mutation(), 1..4),
    ) {
        let body = mutate(serde_json::to_vec(&v).unwrap(), &edits);
        if let Some(want) = serde_verdict(&body) {
            prop_assert_eq!(our_verdict(&body), want, "{:?}", String::from_utf8_lossy(&body));
        }
    }

    #[test]
    fn verdict_matches_serde_json_on_arbitrary_bytes(
        body in prop::collection::vec(json_byte(), 0..40),
    ) {
        if let Some(want) = serde_verdict(&body) {
            prop_assert_eq!(our_verdict(&body), want, "{:?}", String::from_utf8_lossy(&body));
        }
    }

    #[test]
    fn objects_with_a_string_model_probe_like_serde(
        v in json_value(),
        model in "[a-z0-9./\u{e9}-]{1,16}",
        stream in prop::option::of(any::<bool>()),
    ) {
        let mut obj = serde_json::Map::new();
        obj.insert("messages".into(), v);
        obj.insert("model".into(), Value::String(model.clone()));
        if let Some(s) = stream {
            obj.insert("stream".into(), Value::Bool(s));
        }
        let body = serde_json::to_vec(&obj).unwrap();
        let p = validate(&body, CHAT).unwrap();
        prop_assert_eq!(p.model, model);
        prop_assert_eq!(p.stream, stream == Some(true));
    }
}

#[test]
fn word_flags_are_exact_for_every_byte_at_every_position() {
    for byte in 0..=255u8 {
        for pos in 0..8 {
            for filler in [b'a', 0xff, b'~', 0x20] {
                let mut w = [filler; 8];
                w[pos] = byte;
                let flags = special_bytes(u64::from_le_bytes(w));
                for (k, &c) in w.iter().enumerate() {
                    let want = special(c);
                    assert_eq!(flags >> (8 * k + 7) & 1 == 1, want, "{w:?} at {k}");
                }
                let mut body = vec![b'x'; 70];
                body[3 + pos * 9] = byte;
                let want = body.iter().position(|&c| special(c));
                assert_eq!(next_special(&body, 0), want, "{byte:#x} at {pos}");
            }
        }
    }
}

// The fast path (stage 1 + token walk) against the scalar scanner: the same
// verdict and the same facts on every body; errors are always the scalar
// scanner's own, so equal verdicts mean equal messages and offsets.

/// The scalar scanner's verdict and facts.
fn scalar_scan(body: &[u8], protocol: Option<Protocol>) -> Option<Facts> {
    let mut scan = Scan::new(body, protocol);
    scan.run().ok().map(|()| scan.facts)
}

/// Checks the fast path (portable and, where the CPU has it, AVX2) against
/// the scalar scanner on `body`, for the syntax check and for two
/// protocols, and the public entry points; returns the syntax verdict.
fn paths_agree(body: &[u8]) -> bool {
    let show = || String::from_utf8_lossy(body).into_owned();
    for protocol in [None, Some(CHAT), Some(Protocol::ImagesGenerations)] {
        let scalar = scalar_scan(body, protocol);
        let portable = fast::scan_portable(body, protocol);
        assert_eq!(portable, scalar, "portable {protocol:?} {}", show());
        #[cfg(target_arch = "x86_64")]
        if stage1::avx2::available() {
            let avx2 = fast::scan(body, protocol);
            assert_eq!(
                avx2,
                scalar_scan(body, protocol),
                "avx2 {protocol:?} {}",
                show()
            );
        }
    }
    let syntax = Scan::new(body, None).run();
    assert_eq!(check_syntax(body), syntax, "{}", show());
    if let (Some(b'{'), Ok(text)) = (body.iter().find(|b| !is_ws(**b)), std::str::from_utf8(body)) {
        let mut scan = Scan::new(body, Some(CHAT));
        let want = scan
            .run()
            .and_then(|()| scan.facts.into_probe(text, body.len()));
        assert_eq!(validate(body, CHAT), want, "{}", show());
    }
    syntax.is_ok()
}

/// A few documents with strings across 64-byte blocks, escapes and
/// multi-byte UTF-8 at block boundaries, every value shape and the members
/// the proxy reads.
fn sample_documents() -> Vec<Vec<u8>> {
    let long = "x".repeat(61);
    vec![
        br#"{"model":"m","stream":true,"stream_options":{"include_usage":true},"tools":[{"a":1}],"n":2,"size":"1x1"}"#.to_vec(),
        format!(r#"{{"model":"gpt","a":"{long}\\\"\\\\\n\u00e9é😀","b":[1,-2.5e+3,true,false,null,{{}},[]]}}"#).into_bytes(),
        format!(r#"{{"mod\u0065l":"a\/b","x":"{long}\ud83d\ude00","y":"\\\\\\\\\\\"","z":0}}"#).into_bytes(),
        format!("{{\"model\" : \"m\" ,\r\n\t\"k\" : [ \"{}\" , 1 ] }}", "é".repeat(40)).into_bytes(),
        br#"[1,"a",{"b":null}]"#.to_vec(),
        br#""top""#.to_vec(),
        b"-12.5e-3 ".to_vec(),
    ]
}

#[test]
fn fast_path_agrees_on_every_single_byte_change_of_small_documents() {
    let replacements: &[u8] = b"{}[]\":,\\ \tx0-.eEtu\x00\x0c\x1a\x1f\x7f\x80\xc3\xff";
    for doc in sample_documents() {
        assert!(paths_agree(&doc), "{:?}", String::from_utf8_lossy(&doc));
        for at in 0..doc.len() {
            for &r in replacements {
                let mut body = doc.clone();
                body[at] = r;
                paths_agree(&body);
            }
            let mut cut = doc.clone();
            cut.remove(at);
            paths_agree(&cut);
            paths_agree(&doc[..at]);
        }
    }
}

#[test]
fn fast_path_agrees_on_backslash_runs_and_quotes_at_block_boundaries() {
    for pad in 40..75 {
        for run in 0..6 {
            for after in [b'"', b'n', b'u', b'x', b'\\', b'/'] {
                let mut body =
                    format!("{{\"model\":\"m\",\"k\":\"{}", "a".repeat(pad)).into_bytes();
                body.extend(std::iter::repeat_n(b'\\', run));
                body.push(after);
                body.extend_from_slice(b"0041\",\"v\":[1]}");
                paths_agree(&body);
                // The same string reaching past the second block too.
                let mut long = body.clone();
                long.splice(10..10, std::iter::repeat_n(b' ', 64));
                paths_agree(&long);
            }
        }
    }
}

#[test]
fn fast_path_agrees_on_multibyte_utf8_and_surrogates_across_blocks() {
    for pad in 50..70 {
        for piece in [
            "é",
            "😀",
            "\\ud83d\\ude00",
            "\\ud83d",
            "\\ude00",
            "\\u00e9",
            "\\u12",
        ] {
            let body = format!(
                "{{\"model\":\"{}{piece}{piece}\",\"a\":1}}",
                "m".repeat(pad)
            );
            paths_agree(body.as_bytes());
        }
    }
}

#[test]
fn fast_path_agrees_at_the_depth_limit() {
    for depth in [MAX_DEPTH - 2, MAX_DEPTH - 1, MAX_DEPTH, MAX_DEPTH + 1] {
        let mut body = b"{\"model\":\"m\",\"a\":".to_vec();
        body.extend(nested("[", depth, "]"));
        body.push(b'}');
        assert_eq!(paths_agree(&body), depth < MAX_DEPTH, "{depth}");
        paths_agree(&nested("{\"k\":", depth, "}"));
    }
}

/// The escaped bytes, byte by byte: the byte after an escaping backslash.
fn escaped_model(backslash: &[u64]) -> Vec<u64> {
    let mut escaping = false;
    backslash
        .iter()
        .map(|&word| {
            let mut out = 0;
            for k in 0..64 {
                if escaping {
                    out |= 1 << k;
                    escaping = false;
                } else if word >> k & 1 == 1 {
                    escaping = true;
                }
            }
            out
        })
        .collect()
}

/// Words with long and short backslash runs.
fn backslash_word() -> impl Strategy<Value = u64> {
    prop_oneof![
        any::<u64>(),
        Just(u64::MAX),
        Just(1 << 63),
        Just(1),
        (any::<u64>(), any::<u64>()).prop_map(|(a, b)| a & b),
        (any::<u64>(), any::<u64>()).prop_map(|(a, b)| a | b),
    ]
}

#[test]
fn avx2_classes_match_the_portable_ones_for_every_byte_at_every_position() {
    #[cfg(target_arch = "x86_64")]
    if stage1::avx2::available() {
        for byte in 0..=255u8 {
            for filler in [b'a', b' ', b'"', 0x80] {
                let mut block = [filler; 64];
                for k in 0..64 {
                    block[k] = byte;
                    assert_eq!(
                        stage1::avx2::classify_checked(&block),
                        stage1::classify_portable(&block),
                        "{byte:#x} at {k}"
                    );
                    block[k] = filler;
                }
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn escaped_bytes_match_the_byte_by_byte_model(words in prop::collection::vec(backslash_word(), 1..6)) {
        let mut carry = 0;
        let got: Vec<u64> = words.iter().map(|&w| stage1::escaped(w, &mut carry)).collect();
        prop_assert_eq!(got, escaped_model(&words));
    }

    #[test]
    fn prefix_xor_matches_bit_by_bit(x in any::<u64>()) {
        let mut want = 0;
        let mut acc = 0;
        for k in 0..64 {
            acc ^= x >> k & 1;
            want |= acc << k;
        }
        prop_assert_eq!(stage1::prefix_xor_portable(x), want);
        #[cfg(target_arch = "x86_64")]
        if stage1::avx2::available() {
            prop_assert_eq!(stage1::avx2::prefix_xor_checked(x), want);
        }
    }

    #[test]
    fn avx2_classes_match_the_portable_ones(block in prop::collection::vec(json_byte(), 64)) {
        #[cfg(target_arch = "x86_64")]
        if stage1::avx2::available() {
            let block: [u8; 64] = block.try_into().unwrap_or([0; 64]);
            prop_assert_eq!(stage1::avx2::classify_checked(&block), stage1::classify_portable(&block));
        }
    }

    #[test]
    fn fast_path_agrees_on_generated_json(v in json_value(), pretty in any::<bool>()) {
        let text = if pretty { serde_json::to_string_pretty(&v) } else { serde_json::to_string(&v) };
        let text = text.unwrap();
        prop_assert!(paths_agree(text.as_bytes()), "{text}");
        let mut obj = serde_json::Map::new();
        obj.insert("model".into(), Value::String("m".into()));
        obj.insert("messages".into(), v);
        paths_agree(&serde_json::to_vec(&obj).unwrap());
    }

    #[test]
    fn fast_path_agrees_on_mutated_json(
        v in json_value(),
        edits in prop::collection::vec(mutation(), 1..4),
    ) {
        let mut obj = serde_json::Map::new();
        obj.insert("model".into(), Value::String("m".into()));
        obj.insert("stream".into(), Value::Bool(true));
        obj.insert("messages".into(), v);
        paths_agree(&mutate(serde_json::to_vec(&obj).unwrap(), &edits));
    }

    #[test]
    fn fast_path_agrees_on_arbitrary_bytes(body in prop::collection::vec(json_byte(), 0..150)) {
        paths_agree(&body);
    }
}
