//! Registry document validation, one rule per case.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Instant;

use serde_json::{Value, json};
use tb_domain::{PaymentMethod, Protocol, UpstreamId};
use tb_prices::Ppm;
use tb_registry::{RegistryError, SellerEntry, parse_registry};

fn base() -> Value {
    json!({
        "id": "s-alpha", "name": "Alpha", "url": "https://alpha.example",
        "models": ["deepseek-chat", "claude-sonnet-4-5"],
        "protocols": ["chat_completions", "messages"],
        "paymentMethods": ["mock", "clawtip"],
        "discountRatio": 0.2, "serviceFeeRatio": 0.02, "status": "active"
    })
}

fn expected() -> SellerEntry {
    SellerEntry {
        id: UpstreamId::new("s-alpha"),
        name: "Alpha".into(),
        url: "https://alpha.example".into(),
        models: vec!["deepseek-chat".into(), "claude-sonnet-4-5".into()],
        protocols: vec![Protocol::ChatCompletions, Protocol::Messages],
        payment_methods: vec![PaymentMethod::Mock, PaymentMethod::Clawtip],
        discount_ratio: Ppm::new(200_000),
        service_fee_ratio: Ppm::new(20_000),
    }
}

/// Parses a document holding the seller `v` alone.
fn one(v: Value) -> (Option<SellerEntry>, Vec<String>) {
    let text = json!({"version": "v1", "sellers": [v]}).to_string();
    let parsed = parse_registry(text.as_bytes()).unwrap();
    assert!(parsed.doc.sellers.len() <= 1);
    (parsed.doc.sellers.into_iter().next(), parsed.warnings)
}

/// The base seller with fields replaced (`Some`) or removed (`None`).
fn patched(changes: &[(&str, Option<Value>)]) -> Value {
    let mut v = base();
    let obj = v.as_object_mut().unwrap();
    for (k, change) in changes {
        match change {
            Some(new) => obj.insert((*k).to_string(), new.clone()),
            None => obj.remove(*k),
        };
    }
    v
}

/// Fields to replace (`Some`) or remove (`None`).
type Patch = Vec<(&'static str, Option<Value>)>;

enum Want {
    /// Kept, equal to `expected()` after this edit; with a warning
    /// containing the text, or none.
    Kept(fn(&mut SellerEntry), Option<&'static str>),
    /// Dropped, with a warning containing the text.
    Dropped(&'static str),
}

#[test]
fn seller_validation_rules() {
    use Want::*;
    let set = |v: Value| Some(v);
    let cases: Vec<(&str, Patch, Want)> = vec![
        ("a valid seller", vec![], Kept(|_| {}, None)),
        // Field names: snake_case works for every field.
        (
            "snake_case fields",
            vec![
                ("paymentMethods", None),
                ("discountRatio", None),
                ("serviceFeeRatio", None),
                ("payment_methods", set(json!(["mock", "clawtip"]))),
                ("discount_ratio", set(json!(0.2))),
                ("service_fee_ratio", set(json!(0.02))),
            ],
            Kept(|_| {}, None),
        ),
        (
            "unknown fields are ignored",
            vec![("region", set(json!({"x": [1, 2]})))],
            Kept(|_| {}, None),
        ),
        // id
        ("no id", vec![("id", None)], Dropped("dropped: no id")),
        (
            "id not a string",
            vec![("id", set(json!(7)))],
            Dropped("id is not a string"),
        ),
        (
            "empty id",
            vec![("id", set(json!("")))],
            Dropped("id is empty"),
        ),
        (
            "id with a space",
            vec![("id", set(json!("s alpha")))],
            Dropped("has characters"),
        ),
        (
            "id with a slash",
            vec![("id", set(json!("s/alpha")))],
            Dropped("has characters"),
        ),
        (
            "id too long",
            vec![("id", set(json!("s".repeat(129))))],
            Dropped("longer than 128"),
        ),
        // url
        ("no url", vec![("url", None)], Dropped("dropped: no url")),
        (
            "url not a string",
            vec![("url", set(json!(["https://a"])))],
            Dropped("url is not a string"),
        ),
        (
            "ftp url",
            vec![("url", set(json!("ftp://alpha.example")))],
            Dropped("is not http or https"),
        ),
        (
            "url without scheme",
            vec![("url", set(json!("alpha.example")))],
            Dropped("is not http or https"),
        ),
        (
            "url without host",
            vec![("url", set(json!("https://")))],
            Dropped("url \"https://\""),
        ),
        (
            "url with a query",
            vec![("url", set(json!("https://a.example/?k=1")))],
            Dropped("query"),
        ),
        (
            "trailing slashes are removed",
            vec![("url", set(json!("http://10.0.0.1:8080/base//")))],
            Kept(|e| e.url = "http://10.0.0.1:8080/base".into(), None),
        ),
        // models
        (
            "no models field",
            vec![("models", None)],
            Dropped("dropped: no model"),
        ),
        (
            "empty models",
            vec![("models", set(json!([])))],
            Dropped("dropped: no model"),
        ),
        (
            "models not a list",
            vec![("models", set(json!("deepseek-chat")))],
            Dropped("dropped: no model"),
        ),
        (
            "only bad models",
            vec![("models", set(json!([1, "", null])))],
            Dropped("dropped: no model"),
        ),
        (
            "bad model entries are skipped",
            vec![(
                "models",
                set(json!(["deepseek-chat", 3, "", "claude-sonnet-4-5"])),
            )],
            Kept(|_| {}, Some("ignoring 2 model entries")),
        ),
        (
            "repeated models are listed once",
            vec![(
                "models",
                set(json!([
                    "deepseek-chat",
                    "claude-sonnet-4-5",
                    "deepseek-chat"
                ])),
            )],
            Kept(|_| {}, None),
        ),
        // protocols
        (
            "unknown protocols are ignored",
            vec![(
                "protocols",
                set(json!([
                    "chat_completions",
                    "audio_speech",
                    "messages",
                    "chat_completions"
                ])),
            )],
            Kept(|_| {}, Some("unsupported protocol(s) [\"audio_speech\"]")),
        ),
        (
            "no known protocol keeps the seller",
            vec![("protocols", set(json!(["audio_speech"])))],
            Kept(|e| e.protocols.clear(), Some("no supported protocol")),
        ),
        // payment methods
        (
            "unknown payment methods are ignored",
            vec![("paymentMethods", set(json!(["stripe", "mock", "clawtip"])))],
            Kept(|_| {}, Some("unsupported payment method(s) [\"stripe\"]")),
        ),
        (
            "provider_key is not a seller payment method",
            vec![("paymentMethods", set(json!(["provider_key", "mock"])))],
            Kept(
                |e| e.payment_methods = vec![PaymentMethod::Mock],
                Some("[\"provider_key\"]"),
            ),
        ),
        (
            "no payment method keeps the seller",
            vec![("paymentMethods", None)],
            Kept(
                |e| e.payment_methods.clear(),
                Some("no supported payment method"),
            ),
        ),
        // status
        (
            "missing status is active",
            vec![("status", None)],
            Kept(|_| {}, None),
        ),
        (
            "status any case",
            vec![("status", set(json!("Active")))],
            Kept(|_| {}, None),
        ),
        (
            "paused seller",
            vec![("status", set(json!("paused")))],
            Dropped("skipped: status \"paused\""),
        ),
        (
            "status not a string",
            vec![("status", set(json!(false)))],
            Dropped("skipped: status false"),
        ),
        // ratios
        (
            "ratios are exact from the JSON text",
            vec![
                ("discountRatio", set(json!(0.123456))),
                (
                    "serviceFeeRatio",
                    set(serde_json::from_str("2.5e-2").unwrap()),
                ),
            ],
            Kept(
                |e| {
                    e.discount_ratio = Ppm::new(123_456);
                    e.service_fee_ratio = Ppm::new(25_000);
                },
                None,
            ),
        ),
        (
            "missing ratios are 0",
            vec![
                ("discountRatio", None),
                ("serviceFeeRatio", set(Value::Null)),
            ],
            Kept(
                |e| (e.discount_ratio, e.service_fee_ratio) = (Ppm::ZERO, Ppm::ZERO),
                None,
            ),
        ),
        (
            "negative ratio",
            vec![("discountRatio", set(json!(-0.1)))],
            Kept(
                |e| e.discount_ratio = Ppm::ZERO,
                Some("discountRatio -0.1 is negative; using 0"),
            ),
        ),
        (
            "ratio above 1",
            vec![("serviceFeeRatio", set(json!(1.5)))],
            Kept(
                |e| e.service_fee_ratio = Ppm::ZERO,
                Some("serviceFeeRatio 1.5 is outside 0..1; using 0"),
            ),
        ),
        (
            "ratio as a string",
            vec![("discountRatio", set(json!("0.2")))],
            Kept(
                |e| e.discount_ratio = Ppm::ZERO,
                Some("is not a number; using 0"),
            ),
        ),
        // name
        (
            "missing name is the id",
            vec![("name", None)],
            Kept(|e| e.name = "s-alpha".into(), None),
        ),
        (
            "blank name is the id",
            vec![("name", set(json!("  ")))],
            Kept(|e| e.name = "s-alpha".into(), None),
        ),
    ];
    for (name, changes, want) in cases {
        let (got, warnings) = one(patched(&changes));
        match want {
            Want::Kept(edit, warning) => {
                let mut exp = expected();
                edit(&mut exp);
                assert_eq!(got.as_ref(), Some(&exp), "{name}: {warnings:?}");
                match warning {
                    None => assert!(warnings.is_empty(), "{name}: {warnings:?}"),
                    Some(w) => assert!(
                        warnings
                            .iter()
                            .any(|x| x.contains(w) && x.contains("seller #0 (\"s-alpha\")")),
                        "{name}: want {w:?} in {warnings:?}"
                    ),
                }
            }
            Want::Dropped(w) => {
                assert_eq!(got, None, "{name}");
                assert!(
                    warnings.iter().any(|x| x.contains(w)),
                    "{name}: want {w:?} in {warnings:?}"
                );
            }
        }
    }
}

#[test]
fn later_duplicate_ids_are_dropped_and_bad_sellers_do_not_spoil_the_document() {
    let mut second = base();
    second["name"] = json!("Alpha again");
    let mut beta = base();
    beta["id"] = json!("s-beta");
    // An invalid first "s-gamma" does not block a later valid one.
    let mut bad_gamma = base();
    bad_gamma["id"] = json!("s-gamma");
    bad_gamma["url"] = json!("gopher://x");
    let mut gamma = base();
    gamma["id"] = json!("s-gamma");
    let text = json!({
        "version": "v2", "defaultSeller": "s-beta",
        "sellers": [base(), 42, second, bad_gamma, beta, "x", gamma, null]
    })
    .to_string();
    let parsed = parse_registry(text.as_bytes()).unwrap();
    let ids: Vec<&str> = parsed.doc.sellers.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(ids, ["s-alpha", "s-beta", "s-gamma"]);
    assert_eq!(parsed.doc.sellers[0].name, "Alpha");
    assert_eq!(parsed.doc.default_seller.as_deref(), Some("s-beta"));
    assert_eq!(parsed.doc.version, "v2");
    let w = &parsed.warnings;
    assert!(
        w.iter()
            .any(|x| x == "seller #2 (\"s-alpha\"): dropped: an earlier seller has the same id"),
        "{w:?}"
    );
    assert!(
        w.iter()
            .any(|x| x == "seller #1: dropped: not a JSON object"),
        "{w:?}"
    );
    assert!(
        w.iter()
            .any(|x| x.starts_with("seller #3 (\"s-gamma\"): dropped: url")),
        "{w:?}"
    );
    assert_eq!(w.len(), 5, "{w:?}");
    // Default seller first, then document order.
    let order: Vec<&str> = parsed
        .doc
        .sellers_default_first()
        .map(|s| s.id.as_str())
        .collect();
    assert_eq!(order, ["s-beta", "s-alpha", "s-gamma"]);
}

#[test]
fn document_level_fields() {
    let cases: &[(&str, &str, Option<&str>, Option<&str>)] = &[
        // (document, version, default seller, warning)
        (
            r#"{"version":"v","defaultSeller":"s-alpha","sellers":[@S@]}"#,
            "v",
            Some("s-alpha"),
            None,
        ),
        (
            r#"{"version":"v","default_seller":"s-alpha","sellers":[@S@]}"#,
            "v",
            Some("s-alpha"),
            None,
        ),
        (
            r#"{"version":"v","defaultSeller":null,"sellers":[@S@]}"#,
            "v",
            None,
            None,
        ),
        (
            r#"{"version":"v","defaultSeller":"nobody","sellers":[@S@]}"#,
            "v",
            None,
            Some("defaultSeller \"nobody\" is not an accepted seller"),
        ),
        (
            r#"{"version":"v","defaultSeller":3,"sellers":[@S@]}"#,
            "v",
            None,
            Some("defaultSeller is not a string"),
        ),
        (
            r#"{"version":20261121,"sellers":[@S@]}"#,
            "20261121",
            None,
            None,
        ),
        (r#"{"sellers":[@S@]}"#, "", None, Some("no version")),
        (
            r#"{"version":"v","sellers":[],"extra":{"a":[1]}}"#,
            "v",
            None,
            None,
        ),
        // A repeated key keeps its last value.
        (
            r#"{"version":"a","version":"b","sellers":[]}"#,
            "b",
            None,
            None,
        ),
    ];
    for (text, version, default, warning) in cases {
        let text = text.replace("@S@", &base().to_string());
        let parsed = parse_registry(text.as_bytes()).unwrap();
        assert_eq!(parsed.doc.version, *version, "{text}");
        assert_eq!(parsed.doc.default_seller.as_deref(), *default, "{text}");
        match warning {
            None => assert!(parsed.warnings.is_empty(), "{text}: {:?}", parsed.warnings),
            Some(w) => assert!(
                parsed.warnings.iter().any(|x| x.contains(w)),
                "{text}: {:?}",
                parsed.warnings
            ),
        }
    }
}

#[test]
fn default_seller_must_survive_validation() {
    let mut paused = base();
    paused["status"] = json!("paused");
    let text = json!({"version": "v", "defaultSeller": "s-alpha", "sellers": [paused]}).to_string();
    let parsed = parse_registry(text.as_bytes()).unwrap();
    assert!(parsed.doc.sellers.is_empty());
    assert_eq!(parsed.doc.default_seller, None);
}

#[test]
fn unusable_documents_are_errors() {
    let cases: &[&str] = &[
        "",
        "not json",
        "[]",
        "null",
        "\"sellers\"",
        "{}",
        r#"{"version":"v"}"#,
        r#"{"sellers":{}}"#,
        r#"{"sellers":null}"#,
        r#"{"sellers":[]"#,
        r#"{"sellers":[{"id":"a"}]} trailing"#,
    ];
    for text in cases {
        match parse_registry(text.as_bytes()) {
            Err(RegistryError::Invalid(_)) => {}
            other => panic!("{text:?}: {other:?}"),
        }
    }
    // Invalid UTF-8 inside a string.
    assert!(parse_registry(b"{\"version\":\"\xff\",\"sellers\":[]}").is_err());
}

#[test]
fn a_ten_thousand_seller_document_parses() {
    let sellers: Vec<Value> = (0..10_000)
        .map(|i| {
            let mut s = common::seller(&format!("s-{i:05}"));
            s["models"] = json!(
                (0..50)
                    .map(|k| format!("model-{}", (i + k) % 2000))
                    .collect::<Vec<_>>()
            );
            s
        })
        .collect();
    let text = common::doc("v-big", &sellers);
    assert!(text.len() > 2_000_000, "{}", text.len());
    let started = Instant::now();
    let parsed = parse_registry(text.as_bytes()).unwrap();
    let took = started.elapsed();
    assert_eq!(parsed.doc.sellers.len(), 10_000);
    assert!(parsed.warnings.is_empty(), "{:?}", &parsed.warnings[..3]);
    assert_eq!(parsed.doc.sellers[9_999].models.len(), 50);
    assert_eq!(parsed.doc.default_seller.as_deref(), Some("s-00000"));
    eprintln!("parsed {} bytes, 10,000 sellers, in {took:?}", text.len());
}
