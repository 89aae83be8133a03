//! Reading the upstreams' JSON: lenient envelopes, usage counts with their
//! aliases, the reported cost as exact decimal micros, display strings.
//!
//! Nothing here fails: a field of the wrong type is treated as absent.

use serde::Deserialize;
use std::borrow::Cow;

use serde_json::Value;
use serde_json::value::RawValue;
use tb_domain::Protocol;
use tb_prices::ServiceTier;

use super::fields::{Choices, Members, UsageField, UsageObject};

/// The top-level fields any body or event of the four protocols may carry
/// that usage extraction looks at. `usage` and `choices` are read in this
/// same pass; everything else is kept raw (borrowed, not parsed), so a
/// large field that is not needed (an image's `b64_json`, a long `output`)
/// costs a scan, not an allocation.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct Envelope<'a> {
    #[serde(borrow, default, rename = "type")]
    pub(crate) kind: Option<&'a RawValue>,
    /// Read in this pass (`fields`), not kept raw: every answer and chat
    /// chunk is read for it.
    #[serde(borrow, default)]
    pub(crate) usage: Option<UsageField<'a>>,
    /// Read in this pass, like `usage`.
    #[serde(default)]
    pub(crate) choices: Option<Choices>,
    #[serde(borrow, default)]
    pub(crate) output: Option<&'a RawValue>,
    #[serde(borrow, default)]
    pub(crate) content: Option<&'a RawValue>,
    #[serde(borrow, default)]
    pub(crate) data: Option<&'a RawValue>,
    #[serde(borrow, default)]
    pub(crate) response: Option<&'a RawValue>,
    #[serde(borrow, default)]
    pub(crate) message: Option<&'a RawValue>,
    #[serde(borrow, default)]
    pub(crate) item: Option<&'a RawValue>,
    #[serde(borrow, default)]
    pub(crate) content_block: Option<&'a RawValue>,
    #[serde(borrow, default)]
    pub(crate) error: Option<&'a RawValue>,
    #[serde(borrow, default)]
    pub(crate) size: Option<&'a RawValue>,
    #[serde(borrow, default)]
    pub(crate) quality: Option<&'a RawValue>,
    #[serde(borrow, default)]
    pub(crate) output_format: Option<&'a RawValue>,
    #[serde(borrow, default)]
    pub(crate) n: Option<&'a RawValue>,
    /// OpenAI's `service_tier` (chat answers and chunks, Responses
    /// answers and the `response` of its events).
    #[serde(borrow, default)]
    pub(crate) service_tier: Option<&'a RawValue>,
}

impl<'a> Envelope<'a> {
    /// The envelope of a JSON object; anything else (not JSON, not an
    /// object) gives an empty envelope.
    pub(crate) fn of(text: &'a [u8]) -> Envelope<'a> {
        serde_json::from_slice(text).unwrap_or_default()
    }

    /// `usage`, when it is an object.
    pub(crate) fn usage_object(&self) -> Option<&UsageObject<'a>> {
        self.usage.as_ref().and_then(UsageField::object)
    }

    /// The envelope of a raw JSON value (a nested object).
    pub(crate) fn of_raw(raw: Option<&'a RawValue>) -> Envelope<'a> {
        raw.map(|r| Envelope::of(r.get().as_bytes()))
            .unwrap_or_default()
    }
}

/// A raw value as a string, when it is one.
pub(crate) fn raw_str(raw: Option<&RawValue>) -> Option<String> {
    raw.and_then(|r| serde_json::from_str::<String>(r.get()).ok())
}

/// A raw value parsed into a [`Value`] (null when absent or not JSON).
pub(crate) fn raw_value(raw: Option<&RawValue>) -> Value {
    raw.and_then(|r| serde_json::from_str(r.get()).ok())
        .unwrap_or(Value::Null)
}

/// Whether a raw value is a string other than `""` (every escape decodes
/// to at least one character, so only `""` is empty).
pub(crate) fn raw_non_empty_str(raw: Option<&RawValue>) -> bool {
    raw.is_some_and(|r| {
        let t = r.get().trim();
        t.starts_with('"') && t.len() > 2
    })
}

/// Whether a raw value is an array, and whether it has elements.
fn raw_array_has_elements(raw: Option<&RawValue>) -> Option<bool> {
    let inner = raw?.get().trim().strip_prefix('[')?;
    Some(!inner.trim_start().starts_with(']'))
}

/// Whether a raw value is an array with at least one element.
pub(crate) fn raw_non_empty_array(raw: Option<&RawValue>) -> bool {
    raw_array_has_elements(raw) == Some(true)
}

/// The elements of a raw array, borrowed (`None` when it is not one).
pub(crate) fn raw_elements(raw: Option<&RawValue>) -> Option<Vec<&RawValue>> {
    raw.and_then(|r| serde_json::from_str(r.get()).ok())
}

/// A raw value as a string when it is one, borrowed unless it has escapes.
pub(crate) fn raw_text(raw: Option<&RawValue>) -> Option<Cow<'_, str>> {
    raw.and_then(|r| serde_json::from_str::<Key<'_>>(r.get()).ok())
        .map(|k| k.0)
}

/// The service tier a `service_tier` value is billed at; `None` when it is
/// absent or not a string.
pub(crate) fn service_tier(raw: Option<&RawValue>) -> Option<ServiceTier> {
    raw_text(raw).map(|t| ServiceTier::from_answer(&t))
}

/// A short display string (image size, quality, format) as the settlement
/// rules accept them (marketplace.md): 1–80 characters of
/// `[A-Za-z0-9 _./:-]` after trimming. Anything else is ignored, so junk
/// from an upstream never reaches the ledger or the logs.
pub(crate) fn display_str(raw: Option<&RawValue>) -> Option<String> {
    let s = raw_str(raw)?;
    let s = s.trim();
    let ok = (1..=80).contains(&s.chars().count())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || " _./:-".contains(c));
    ok.then(|| s.to_owned())
}

/// Token counts as an upstream reported them, before the protocol's
/// arithmetic. Every field is `None` when absent or not a non-negative
/// integer.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Counts {
    /// `input_tokens` / `prompt_tokens` as reported: the total for OpenAI,
    /// only the uncached part for Anthropic.
    pub(crate) input: Option<u64>,
    pub(crate) cache_read: Option<u64>,
    pub(crate) cache_write: Option<u64>,
    /// Of `cache_write`, the 1-hour writes
    /// (`cache_creation.ephemeral_1h_input_tokens`).
    pub(crate) cache_write_1h: Option<u64>,
    pub(crate) output: Option<u64>,
    pub(crate) reasoning: Option<u64>,
    /// Images only: `input_tokens_details.text_tokens`.
    pub(crate) input_text: Option<u64>,
    /// Images only: `input_tokens_details.image_tokens`.
    pub(crate) input_image: Option<u64>,
    /// Images only: `output_tokens_details.image_tokens`.
    pub(crate) output_image: Option<u64>,
    /// Images only: `output_tokens_details.text_tokens`.
    pub(crate) output_text: Option<u64>,
    /// The service tier reported: Anthropic's `usage.service_tier`, or
    /// OpenAI's top-level `service_tier` (set by the caller with
    /// [`Counts::take_service_tier`]). Not a count: it alone is no usage.
    pub(crate) service_tier: Option<ServiceTier>,
}

const INPUT: &[&str] = &["input_tokens", "prompt_tokens"];
const OUTPUT: &[&str] = &["output_tokens", "completion_tokens"];
const CACHE_READ: &[&str] = &[
    "cache_read_input_tokens",
    "cache_read_tokens",
    "cached_tokens",
];
const CACHE_WRITE: &[&str] = &[
    "cache_creation_input_tokens",
    "cache_write_tokens",
    "cache_creation_tokens",
];
const INPUT_DETAILS: &[&str] = &["input_tokens_details", "prompt_tokens_details"];
const OUTPUT_DETAILS: &[&str] = &["output_tokens_details", "completion_tokens_details"];

/// A JSON object's members, borrowed from the text: keys (owned only when
/// they contain escapes) and raw values. Reading a few counts out of a
/// `usage` object this way builds no `Value` tree.
pub(crate) struct RawObject<'a>(Vec<(Cow<'a, str>, &'a RawValue)>);

/// An object key, borrowed unless it has escapes.
#[derive(Deserialize)]
pub(crate) struct Key<'a>(#[serde(borrow)] pub(crate) Cow<'a, str>);

impl<'de> Deserialize<'de> for RawObject<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Members;
        impl<'de> serde::de::Visitor<'de> for Members {
            type Value = RawObject<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<RawObject<'de>, A::Error> {
                let mut members = Vec::with_capacity(map.size_hint().unwrap_or(8));
                while let Some(Key(k)) = map.next_key::<Key<'de>>()? {
                    let v: &'de RawValue = map.next_value()?;
                    members.push((k, v));
                }
                Ok(RawObject(members))
            }
        }
        d.deserialize_map(Members)
    }
}

impl<'a> RawObject<'a> {
    /// The members of `raw` when it is an object.
    pub(crate) fn parse(raw: &'a RawValue) -> Option<RawObject<'a>> {
        serde_json::from_str(raw.get()).ok()
    }

    /// A member's raw value (the last one when a key repeats, as a
    /// `serde_json::Map` would keep).
    pub(crate) fn get(&self, name: &str) -> Option<&'a RawValue> {
        self.0
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| *v)
    }

    /// A member that is a string (borrowed unless it has escapes).
    pub(crate) fn text(&self, name: &str) -> Option<Cow<'a, str>> {
        raw_text(self.get(name))
    }
}

/// The first of `names` in `obj` that holds a non-negative integer.
fn first_count(obj: &Members<'_>, names: &[&str]) -> Option<u64> {
    names.iter().find_map(|n| obj.count(n))
}

/// The first of `objects` that has one of `names` as a count.
fn first_in(objects: &[&Members<'_>], names: &[&str]) -> Option<u64> {
    objects.iter().find_map(|o| first_count(o, names))
}

impl Counts {
    /// Reads the counts of a `usage` object.
    fn read(protocol: Protocol, usage: &UsageObject<'_>) -> Counts {
        let details = |names: &[&str]| -> Vec<&Members<'_>> {
            names.iter().filter_map(|n| usage.object(n)).collect()
        };
        let input_details = details(INPUT_DETAILS);
        let output_details = details(OUTPUT_DETAILS);
        let top = usage.top();
        // Where the cache counts live first: top level for Anthropic, the
        // input details for OpenAI; the other place is the fallback.
        let mut cache_places: Vec<&Members<'_>> = Vec::with_capacity(3);
        if protocol == Protocol::Messages {
            cache_places.push(top);
            cache_places.extend(&input_details);
        } else {
            cache_places.extend(&input_details);
            cache_places.push(top);
        }
        let mut reasoning_places = output_details.clone();
        reasoning_places.push(top);
        let images = protocol.is_images();
        let image_count = |places: &[&Members<'_>], name: &str| {
            images.then(|| first_in(places, &[name])).flatten()
        };
        Counts {
            input: first_count(top, INPUT),
            cache_read: first_in(&cache_places, CACHE_READ),
            cache_write: first_in(&cache_places, CACHE_WRITE),
            cache_write_1h: usage
                .object("cache_creation")
                .and_then(|c| c.count("ephemeral_1h_input_tokens")),
            output: first_count(top, OUTPUT),
            reasoning: first_in(&reasoning_places, &["reasoning_tokens"]),
            input_text: image_count(&input_details, "text_tokens"),
            input_image: image_count(&input_details, "image_tokens"),
            output_image: image_count(&output_details, "image_tokens"),
            output_text: image_count(&output_details, "text_tokens"),
            service_tier: service_tier(top.raw("service_tier")),
        }
    }

    /// Nothing was reported (a service tier alone is no usage).
    pub(crate) fn is_empty(&self) -> bool {
        Counts {
            service_tier: None,
            ..*self
        } == Counts::default()
    }

    /// An answer's top-level `service_tier` (OpenAI), when it has one,
    /// wins over what the usage said.
    pub(crate) fn take_service_tier(&mut self, raw: Option<&RawValue>) {
        if let Some(tier) = service_tier(raw) {
            self.service_tier = Some(tier);
        }
    }

    /// Later counts win field by field (a stream repeats and updates
    /// usage: Anthropic's `message_delta` after `message_start`).
    pub(crate) fn overlay(&mut self, newer: Counts) {
        fn pick(old: &mut Option<u64>, new: Option<u64>) {
            if new.is_some() {
                *old = new;
            }
        }
        pick(&mut self.input, newer.input);
        pick(&mut self.cache_read, newer.cache_read);
        pick(&mut self.cache_write, newer.cache_write);
        pick(&mut self.cache_write_1h, newer.cache_write_1h);
        pick(&mut self.output, newer.output);
        pick(&mut self.reasoning, newer.reasoning);
        pick(&mut self.input_text, newer.input_text);
        pick(&mut self.input_image, newer.input_image);
        pick(&mut self.output_image, newer.output_image);
        pick(&mut self.output_text, newer.output_text);
        if newer.service_tier.is_some() {
            self.service_tier = newer.service_tier;
        }
    }

    /// Adds counts (several streamed images, each with its own usage).
    pub(crate) fn add(&mut self, other: Counts) {
        fn sum(acc: &mut Option<u64>, x: Option<u64>) {
            if let Some(x) = x {
                *acc = Some(acc.unwrap_or(0).saturating_add(x));
            }
        }
        sum(&mut self.input, other.input);
        sum(&mut self.cache_read, other.cache_read);
        sum(&mut self.cache_write, other.cache_write);
        sum(&mut self.cache_write_1h, other.cache_write_1h);
        sum(&mut self.output, other.output);
        sum(&mut self.reasoning, other.reasoning);
        sum(&mut self.input_text, other.input_text);
        sum(&mut self.input_image, other.input_image);
        sum(&mut self.output_image, other.output_image);
        sum(&mut self.output_text, other.output_text);
    }

    /// Total input: Anthropic reports the uncached part only, so cache
    /// reads and writes are added; OpenAI's count already is the total.
    pub(crate) fn total_input(&self, protocol: Protocol) -> Option<u64> {
        let input = self.input?;
        if protocol == Protocol::Messages {
            Some(
                input
                    .saturating_add(self.cache_read.unwrap_or(0))
                    .saturating_add(self.cache_write.unwrap_or(0)),
            )
        } else {
            Some(input)
        }
    }
}

/// The counts and the reported cost of a `usage` object (`None`: it was
/// absent or not an object).
pub(crate) fn read_usage(
    protocol: Protocol,
    usage: Option<&UsageObject<'_>>,
) -> (Counts, Option<u64>) {
    let Some(usage) = usage else {
        return (Counts::default(), None);
    };
    (Counts::read(protocol, usage), reported_cost(usage))
}

/// The cost the upstream reports in its `usage` (OpenRouter): `cost`, else
/// `cost_details.upstream_inference_cost`; USD as a JSON number, converted
/// to micros from the number's text.
fn reported_cost(usage: &UsageObject<'_>) -> Option<u64> {
    if let Some(micros) = usage
        .top()
        .raw("cost")
        .and_then(|c| usd_text_to_micros(c.get()))
    {
        return Some(micros);
    }
    let details = usage.object("cost_details")?;
    usd_text_to_micros(details.raw("upstream_inference_cost")?.get())
}

/// The largest amount accepted, in micros (10^15, as for settlements).
const MAX_MICROS: u64 = 1_000_000_000_000_000;

/// Converts the text of a JSON number in USD to integer micros, exactly:
/// the decimal digits are shifted, never multiplied as a float. Rounds half
/// up at the sixth decimal. Negative numbers, non-numbers (strings, `null`)
/// and amounts above 10^15 micros give `None`.
pub(crate) fn usd_text_to_micros(text: &str) -> Option<u64> {
    let bytes = text.trim().as_bytes();
    // JSON number grammar: int [frac] [exp], no sign (negative is refused).
    let int_len = bytes.iter().take_while(|b| b.is_ascii_digit()).count();
    if int_len == 0 || (int_len > 1 && bytes[0] == b'0') {
        return None;
    }
    let mut rest = &bytes[int_len..];
    let mut frac: &[u8] = &[];
    if let Some(after_dot) = rest.strip_prefix(b".") {
        let len = after_dot.iter().take_while(|b| b.is_ascii_digit()).count();
        if len == 0 {
            return None;
        }
        frac = &after_dot[..len];
        rest = &after_dot[len..];
    }
    let mut exp: i64 = 0;
    if let Some(after_e) = rest.strip_prefix(b"e").or_else(|| rest.strip_prefix(b"E")) {
        let (negative, digits) = match after_e.first() {
            Some(b'-') => (true, &after_e[1..]),
            Some(b'+') => (false, &after_e[1..]),
            _ => (false, after_e),
        };
        if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
            return None;
        }
        // More than 18 digits of exponent: clamp (it only needs to be far
        // beyond any digit position).
        let magnitude: i64 = std::str::from_utf8(digits)
            .ok()?
            .parse::<i64>()
            .unwrap_or(i64::MAX / 4)
            .min(i64::MAX / 4);
        exp = if negative { -magnitude } else { magnitude };
        rest = &[];
    }
    if !rest.is_empty() {
        return None;
    }
    let digits: Vec<u8> = bytes[..int_len]
        .iter()
        .chain(frac)
        .map(|d| d - b'0')
        .collect();
    // The micros' decimal point sits after digit number `point`.
    let point = (int_len as i64).saturating_add(exp).saturating_add(6);
    let digit_at = |i: i64| -> u64 {
        usize::try_from(i)
            .ok()
            .and_then(|i| digits.get(i))
            .map_or(0, |&d| u64::from(d))
    };
    let all_zero = digits.iter().all(|&d| d == 0);
    if point > 40 {
        return all_zero.then_some(0);
    }
    let mut micros: u64 = 0;
    for i in 0..point.max(0) {
        micros = micros.checked_mul(10)?.checked_add(digit_at(i))?;
    }
    if digit_at(point) >= 5 {
        micros = micros.checked_add(1)?;
    }
    (micros <= MAX_MICROS).then_some(micros)
}

#[cfg(test)]
mod raw_object_tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn counts(protocol: Protocol, usage: &str) -> Counts {
        read_usage(protocol, UsageObject::parse(usage).as_ref()).0
    }

    #[test]
    fn counts_read_like_a_json_map_would() {
        let c = counts(
            Protocol::ChatCompletions,
            r#"{"prompt_tokens":12,"completion_tokens":3,"prompt_tokens_details":{"cached_tokens":4},"completion_tokens_details":{"reasoning_tokens":2}}"#,
        );
        assert_eq!(
            (c.input, c.output, c.cache_read, c.reasoning),
            (Some(12), Some(3), Some(4), Some(2))
        );
        // An escaped key is the same key; a repeated key keeps the last.
        let c = counts(
            Protocol::Messages,
            r#"{"input\u005ftokens":7,"output_tokens":1,"output_tokens":9}"#,
        );
        assert_eq!((c.input, c.output), (Some(7), Some(9)));
        // Not counts: floats, negatives, strings, huge numbers, null.
        let c = counts(
            Protocol::ChatCompletions,
            r#"{"prompt_tokens":1.5,"completion_tokens":-1,"cached_tokens":"3","reasoning_tokens":18446744073709551616,"output_tokens":null}"#,
        );
        assert!(c.is_empty(), "{c:?}");
        // Not an object at all.
        assert!(counts(Protocol::ChatCompletions, "[1,2]").is_empty());
        assert!(counts(Protocol::ChatCompletions, "\"x\"").is_empty());
    }
}
