//! Answer bodies of a simulated seller: SSE events, the empty-completion
//! variants of the canned bodies, and the step scripts that pace, chunk
//! and drop streams.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use bytes::Bytes;
use serde_json::{Value, json};
use tb_domain::Protocol;

use super::SellerSpec;
use super::net::{self, Step};
use crate::canned;

/// One SSE event: optional `event:` line, one `data:` line, blank line.
pub(super) fn sse_event(name: Option<&str>, data: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + 32);
    if let Some(name) = name {
        out.extend_from_slice(b"event: ");
        out.extend_from_slice(name.as_bytes());
        out.push(b'\n');
    }
    out.extend_from_slice(b"data: ");
    out.extend_from_slice(data.as_bytes());
    out.extend_from_slice(b"\n\n");
    out
}

/// Turns events into body steps: CRLF if asked, TTFT and pacing delays,
/// chunking, and a final drop.
pub(super) fn stream_steps(events: Vec<Vec<u8>>, spec: &SellerSpec, drop: bool) -> Vec<Step> {
    let events: Vec<Vec<u8>> = if spec.crlf {
        events.into_iter().map(|e| to_crlf(&e)).collect()
    } else {
        events
    };
    let gap = spec
        .tokens_per_sec
        .filter(|t| t.is_finite() && *t > 0.0)
        .map_or(Duration::ZERO, |t| Duration::from_secs_f64(1.0 / t));
    let delay_before = |i: usize| if i == 0 { spec.ttft } else { gap };
    let mut steps = Vec::new();
    match spec.chunk_every.filter(|&k| k > 0) {
        None => {
            for (i, event) in events.into_iter().enumerate() {
                let delay = delay_before(i);
                if !delay.is_zero() {
                    steps.push(Step::Delay(delay));
                }
                steps.push(Step::Data(event.into()));
            }
        }
        Some(k) => {
            let mut body = Vec::new();
            let mut delays: BTreeMap<usize, Duration> = BTreeMap::new();
            for (i, event) in events.iter().enumerate() {
                let delay = delay_before(i);
                if !delay.is_zero() {
                    *delays.entry(body.len()).or_default() += delay;
                }
                body.extend_from_slice(event);
            }
            let mut cuts: BTreeSet<usize> = (k..body.len()).step_by(k).collect();
            cuts.extend(delays.keys().copied());
            cuts.insert(body.len());
            let mut start = 0;
            if let Some(delay) = delays.get(&0) {
                steps.push(Step::Delay(*delay));
            }
            for cut in cuts {
                if cut <= start {
                    continue;
                }
                steps.push(Step::Data(Bytes::copy_from_slice(&body[start..cut])));
                if let Some(delay) = delays.get(&cut) {
                    steps.push(Step::Delay(*delay));
                }
                start = cut;
            }
        }
    }
    if drop {
        steps.push(Step::Drop);
    }
    steps
}

fn to_crlf(event: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(event.len() + 4);
    for &b in event {
        if b == b'\n' {
            out.extend_from_slice(b"\r\n");
        } else {
            out.push(b);
        }
    }
    out
}

/// Zeroes output token counts (and makes totals equal the input) in any
/// `usage`-like object below `value`.
fn zero_output(value: &mut Value) {
    match value {
        Value::Object(map) => {
            let input = map
                .get("prompt_tokens")
                .or_else(|| map.get("input_tokens"))
                .and_then(Value::as_u64);
            for key in ["completion_tokens", "output_tokens"] {
                if let Some(v) = map.get_mut(key).filter(|v| v.is_u64()) {
                    *v = json!(0);
                }
            }
            if let (Some(total), Some(input)) = (map.get_mut("total_tokens"), input) {
                *total = json!(input);
            }
            for v in map.values_mut() {
                zero_output(v);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(zero_output),
        _ => {}
    }
}

/// The canned JSON body with no content and zero output tokens.
pub(super) fn empty_json(protocol: Protocol, model: &str) -> Vec<u8> {
    let Ok(mut value) = serde_json::from_slice::<Value>(&canned::json(protocol, model)) else {
        return canned::json(protocol, model);
    };
    match protocol {
        Protocol::ChatCompletions => value["choices"][0]["message"]["content"] = json!(""),
        Protocol::Responses => value["output"][0]["content"] = json!([]),
        Protocol::Messages => value["content"] = json!([]),
        Protocol::ImagesGenerations | Protocol::ImagesEdits | Protocol::Embeddings => {
            value["data"] = json!([]);
        }
        Protocol::Videos => value["seconds"] = json!("0"),
    }
    zero_output(&mut value);
    net::to_vec(&value)
}

/// The canned SSE events with the content events removed and zero output
/// tokens.
pub(super) fn empty_events(protocol: Protocol, model: &str) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut sequence = 0u64;
    for event in canned::sse_events(protocol, model) {
        let text = String::from_utf8_lossy(&event);
        let name = text.lines().find_map(|l| l.strip_prefix("event: "));
        let data = text.lines().find_map(|l| l.strip_prefix("data: "));
        let Some(mut value) = data.and_then(|d| serde_json::from_str::<Value>(d).ok()) else {
            out.push(event.clone());
            continue;
        };
        let keep = match protocol {
            Protocol::ChatCompletions => value["choices"][0]["delta"]["content"]
                .as_str()
                .is_none_or(str::is_empty),
            Protocol::Responses => !matches!(
                name,
                Some(
                    "response.content_part.added"
                        | "response.output_text.delta"
                        | "response.output_text.done"
                        | "response.content_part.done"
                )
            ),
            Protocol::Messages => !matches!(
                name,
                Some("content_block_start" | "content_block_delta" | "content_block_stop")
            ),
            Protocol::ImagesGenerations => name != Some("image_generation.partial_image"),
            Protocol::ImagesEdits => name != Some("image_edit.partial_image"),
            Protocol::Embeddings | Protocol::Videos => true,
        };
        if !keep {
            continue;
        }
        match protocol {
            Protocol::Responses => {
                if let Some(item) = value.get_mut("item") {
                    item["content"] = json!([]);
                }
                if let Some(outputs) = value
                    .get_mut("response")
                    .and_then(|r| r.get_mut("output"))
                    .and_then(Value::as_array_mut)
                {
                    for item in outputs {
                        item["content"] = json!([]);
                    }
                }
                value["sequence_number"] = json!(sequence);
                sequence += 1;
            }
            Protocol::ImagesGenerations | Protocol::ImagesEdits => value["b64_json"] = json!(""),
            _ => {}
        }
        zero_output(&mut value);
        out.push(sse_event(name, &value.to_string()));
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn data_of(steps: &[Step]) -> Vec<u8> {
        steps
            .iter()
            .flat_map(|s| match s {
                Step::Data(b) => b.to_vec(),
                _ => Vec::new(),
            })
            .collect()
    }

    #[test]
    fn chunking_reassembles_and_cuts_at_delayed_events() {
        let events = canned::sse_events(Protocol::Messages, "m");
        let mut spec = SellerSpec::default().chunk_every(5);
        let steps = stream_steps(events.clone(), &spec, false);
        assert_eq!(data_of(&steps), events.concat());
        assert!(
            steps
                .iter()
                .all(|s| matches!(s, Step::Data(b) if b.len() <= 5))
        );

        spec.tokens_per_sec = Some(1000.0);
        let steps = stream_steps(events.clone(), &spec, true);
        assert_eq!(data_of(&steps), events.concat());
        assert!(matches!(steps.last(), Some(Step::Drop)));
        // A delay before each event after the first, each right at an
        // event start.
        let delays = steps.iter().filter(|s| matches!(s, Step::Delay(_))).count();
        assert_eq!(delays, events.len() - 1);
    }

    #[test]
    fn empty_variants_have_no_text_and_zero_output() {
        // Embeddings have no output tokens to zero.
        for protocol in Protocol::ALL[..4].iter().copied() {
            let body = String::from_utf8(empty_json(protocol, "m")).unwrap();
            assert!(!body.contains("wörld"), "{protocol}: {body}");
            let v: Value = serde_json::from_str(&body).unwrap();
            assert_eq!(
                v["usage"]
                    .get("completion_tokens")
                    .or(v["usage"].get("output_tokens")),
                Some(&json!(0)),
                "{protocol}"
            );
            let stream = String::from_utf8(empty_events(protocol, "m").concat()).unwrap();
            assert!(!stream.contains("wörld"), "{protocol}: {stream}");
            assert!(!stream.contains("\"output_tokens\":9"), "{protocol}");
        }
    }
}
