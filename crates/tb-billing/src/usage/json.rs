//! Usage of a whole JSON answer.

use serde_json::value::RawValue;
use tb_domain::Protocol;

use super::wire::{
    self, Envelope, RawObject, raw_elements, raw_non_empty_array, raw_non_empty_str,
};
use super::{ImageUsage, RequestFacts, UsageReport, build_usage};

/// Extracts usage from a non-streamed answer body of `protocol`.
///
/// Sources per billing.md: `usage` with the accepted aliases (first valid
/// one wins); for Anthropic the total input adds cache reads and writes;
/// for images the count is `len(data)` (else the request's `n`) and size,
/// quality and format come from the response, else its first image, else
/// the request. A body that is not a JSON object gives `usage_missing`.
pub fn from_json(protocol: Protocol, body: &[u8], request: &RequestFacts) -> UsageReport {
    let env = Envelope::of(body);
    let (mut counts, cost) = wire::read_usage(protocol, env.usage_object());
    counts.take_service_tier(env.service_tier);
    let (image, saw_content) = match protocol {
        Protocol::ChatCompletions => (None, env.choices.is_some_and(|c| c.message_content)),
        Protocol::Responses => (None, responses_has_content(env.output)),
        Protocol::Messages => (None, messages_has_content(env.content)),
        Protocol::ImagesGenerations | Protocol::ImagesEdits => {
            let (image, images) = image_facts(&env, request);
            (Some(image), images > 0)
        }
        // An embedding has no content to look for: a vector per input.
        Protocol::Embeddings => (None, raw_non_empty_array(env.data)),
        // A video job object is billed by `video`, not read as usage.
        Protocol::Videos => (None, false),
    };
    UsageReport::new(build_usage(protocol, &counts, image), saw_content, cost)
}

/// Image count and display fields of an images answer; also how many
/// images it holds.
fn image_facts(env: &Envelope<'_>, request: &RequestFacts) -> (ImageUsage, usize) {
    let data = raw_elements(env.data);
    let images = data.as_ref().map_or(0, Vec::len);
    let first = Envelope::of_raw(data.as_ref().and_then(|d| d.first().copied()));
    let count = match &data {
        Some(d) => u32::try_from(d.len()).ok(),
        None => request.n,
    };
    let pick = |response: Option<&RawValue>, image: Option<&RawValue>, req: &Option<String>| {
        wire::display_str(response)
            .or_else(|| wire::display_str(image))
            .or_else(|| req.clone())
    };
    let image = ImageUsage {
        count,
        size: pick(env.size, first.size, &request.size),
        quality: pick(env.quality, first.quality, &request.quality),
        output_format: pick(
            env.output_format,
            first.output_format,
            &request.output_format,
        ),
        ..ImageUsage::default()
    };
    (image, images)
}

/// Whether any element of a raw array is an object that passes `test`.
fn any_object(raw: Option<&RawValue>, test: impl Fn(&RawObject<'_>) -> bool) -> bool {
    raw_elements(raw).is_some_and(|items| {
        items
            .iter()
            .any(|item| RawObject::parse(item).is_some_and(|item| test(&item)))
    })
}

fn responses_has_content(output: Option<&RawValue>) -> bool {
    any_object(output, |item| match item.text("type").as_deref() {
        Some("message") => any_object(item.get("content"), |p| {
            raw_non_empty_str(p.get("text")) || raw_non_empty_str(p.get("refusal"))
        }),
        Some("reasoning") => {
            raw_non_empty_array(item.get("summary")) || raw_non_empty_array(item.get("content"))
        }
        // Tool calls of every kind (function, custom, web search,
        // image generation …) are content.
        Some(_) => true,
        None => false,
    })
}

fn messages_has_content(content: Option<&RawValue>) -> bool {
    any_object(content, |b| match b.text("type").as_deref() {
        Some("text") => raw_non_empty_str(b.get("text")),
        Some("thinking") => raw_non_empty_str(b.get("thinking")),
        // tool_use, server_tool_use, redacted_thinking, results …
        Some(_) => true,
        None => false,
    })
}

/// The raw-text predicates above, and the `choices` reading of the
/// envelope's pass, against a `Value`-tree reading (kept here as the
/// oracle), over arbitrary JSON built from the keys they look at, compact
/// and pretty-printed.
#[cfg(test)]
mod raw_matches_value_reading {
    use super::super::fields::Choices;
    use super::*;
    use proptest::prelude::*;
    use serde_json::{Value, json};

    fn non_empty_str(v: &Value) -> bool {
        v.as_str().is_some_and(|s| !s.is_empty())
    }

    fn non_empty_array(v: &Value) -> bool {
        v.as_array().is_some_and(|a| !a.is_empty())
    }

    fn message_oracle(m: &Value) -> bool {
        non_empty_str(&m["content"])
            || non_empty_array(&m["content"])
            || non_empty_str(&m["reasoning_content"])
            || non_empty_str(&m["reasoning"])
            || non_empty_str(&m["refusal"])
            || non_empty_array(&m["tool_calls"])
            || m["function_call"].is_object()
    }

    fn choices_oracle(v: &Value, key: &str) -> bool {
        v.as_array()
            .is_some_and(|cs| cs.iter().any(|c| message_oracle(&c[key])))
    }

    fn responses_oracle(v: &Value) -> bool {
        v.as_array().is_some_and(|items| {
            items.iter().any(|item| match item["type"].as_str() {
                Some("message") => item["content"].as_array().is_some_and(|parts| {
                    parts
                        .iter()
                        .any(|p| non_empty_str(&p["text"]) || non_empty_str(&p["refusal"]))
                }),
                Some("reasoning") => {
                    non_empty_array(&item["summary"]) || non_empty_array(&item["content"])
                }
                Some(_) => true,
                None => false,
            })
        })
    }

    fn messages_oracle(v: &Value) -> bool {
        v.as_array().is_some_and(|blocks| {
            blocks.iter().any(|b| match b["type"].as_str() {
                Some("text") => non_empty_str(&b["text"]),
                Some("thinking") => non_empty_str(&b["thinking"]),
                Some(_) => true,
                None => false,
            })
        })
    }

    const KEYS: &[&str] = &[
        "content",
        "reasoning_content",
        "reasoning",
        "refusal",
        "tool_calls",
        "function_call",
        "message",
        "delta",
        "type",
        "text",
        "thinking",
        "summary",
    ];

    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(json!(null)),
            Just(json!("")),
            Just(json!("x")),
            Just(json!("\u{0}")),
            Just(json!(0)),
            Just(json!(true)),
            Just(json!([])),
            Just(json!({})),
            prop::sample::select(vec![
                "message",
                "reasoning",
                "text",
                "thinking",
                "tool_use",
                "function_call"
            ])
            .prop_map(|t| json!(t)),
        ];
        leaf.prop_recursive(4, 48, 5, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::vec((prop::sample::select(KEYS), inner), 0..5).prop_map(
                    |members| Value::Object(
                        members
                            .into_iter()
                            .map(|(k, v)| (k.to_owned(), v))
                            .collect()
                    )
                ),
            ]
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn raw_predicates_agree_with_the_value_tree(v in json_value(), pretty in any::<bool>()) {
            let text = if pretty {
                serde_json::to_string_pretty(&v)
            } else {
                serde_json::to_string(&v)
            };
            let text = text.map_err(|e| TestCaseError::fail(e.to_string()))?;
            // The value itself, as an array element, and as a choice's
            // message and delta: each predicate sees it at every level.
            let forms = [
                (text.clone(), v.clone()),
                (format!("[ {text} ]"), json!([v])),
                (
                    format!("[{{\"message\": {text}, \"delta\":{text}}}]"),
                    json!([{"message": v, "delta": v}]),
                ),
            ];
            for (text, v) in &forms {
                let raw: Box<RawValue> = serde_json::from_str(text)
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                let raw = Some(raw.as_ref());
                // `choices` is read in the envelope's pass, not from raw text.
                let choices: Choices = serde_json::from_str(text)
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                prop_assert_eq!(choices.message_content, choices_oracle(v, "message"));
                prop_assert_eq!(choices.delta_content, choices_oracle(v, "delta"));
                prop_assert_eq!(choices.empty_array, v.as_array().is_some_and(Vec::is_empty));
                prop_assert_eq!(responses_has_content(raw), responses_oracle(v));
                prop_assert_eq!(messages_has_content(raw), messages_oracle(v));
            }
        }
    }
}
