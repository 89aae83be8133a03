//! The two envelope fields every answer and chat chunk is read for, `usage`
//! and `choices`, read in the envelope's own pass.
//!
//! Kept as raw text, each was scanned again after the envelope: `usage`
//! into a member list and then each details object, `choices` once per
//! element and again per message. That made reading a small chat answer
//! scan its bytes about three times (callgrind: 29k instructions for a
//! 622-byte answer, the largest single item of a proxied call). Here the
//! deserializer visits them once, keeping only counts, a few raw numbers
//! and yes/no facts.
//!
//! The reading is the one the raw text gave (`wire::RawObject`): the last
//! occurrence of a repeated key wins, a value of the wrong type is absent,
//! a count is a JSON integer in `0..=u64::MAX`. The property tests below
//! hold it against that reading.

use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;

use tb_domain::TokenCount;

use super::wire::Key;

/// The count keys of a `usage` object or one of its details objects.
const COUNT_KEYS: [&str; 14] = [
    "input_tokens",
    "prompt_tokens",
    "output_tokens",
    "completion_tokens",
    "cache_read_input_tokens",
    "cache_read_tokens",
    "cached_tokens",
    "cache_creation_input_tokens",
    "cache_write_tokens",
    "cache_creation_tokens",
    "reasoning_tokens",
    "text_tokens",
    "image_tokens",
    "ephemeral_1h_input_tokens",
];

/// Keys kept as raw text: exact decimal costs, and the service tier.
const RAW_KEYS: [&str; 3] = ["cost", "upstream_inference_cost", "service_tier"];

/// The objects inside `usage` that are read (one level deep, no further).
const CHILD_KEYS: [&str; 6] = [
    "input_tokens_details",
    "prompt_tokens_details",
    "output_tokens_details",
    "completion_tokens_details",
    "cache_creation",
    "cost_details",
];

fn position(keys: &[&str], name: &str) -> Option<usize> {
    keys.iter().position(|k| *k == name)
}

/// What one object (`usage` itself or a details object) holds of the keys
/// above: the last occurrence of each, `None` when absent or of the wrong
/// type.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Members<'a> {
    counts: [Option<u64>; COUNT_KEYS.len()],
    raws: [Option<&'a RawValue>; RAW_KEYS.len()],
}

impl<'a> Members<'a> {
    /// A member that is a non-negative integer.
    pub(crate) fn count(&self, name: &str) -> Option<u64> {
        self.counts[position(&COUNT_KEYS, name)?]
    }

    /// A member kept raw (`cost`, `upstream_inference_cost`,
    /// `service_tier`).
    pub(crate) fn raw(&self, name: &str) -> Option<&'a RawValue> {
        self.raws[position(&RAW_KEYS, name)?]
    }

    /// Reads the members of an object; with `children`, also the details
    /// objects into them (only `usage` itself has children).
    fn read<'de: 'a, A: MapAccess<'de>>(
        mut map: A,
        mut children: Option<&mut [Option<Members<'a>>; CHILD_KEYS.len()]>,
    ) -> Result<Members<'a>, A::Error> {
        let mut out = Members::default();
        while let Some(Key(key)) = map.next_key::<Key<'de>>()? {
            if let Some(i) = position(&COUNT_KEYS, &key) {
                out.counts[i] = map.next_value::<TokenCount>()?.0;
            } else if let Some(i) = position(&RAW_KEYS, &key) {
                out.raws[i] = Some(map.next_value::<&'a RawValue>()?);
            } else if let (Some(i), Some(children)) =
                (position(&CHILD_KEYS, &key), children.as_deref_mut())
            {
                children[i] = map.next_value::<Child<'a>>()?.0;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(out)
    }
}

/// A `usage` object, read in the envelope's pass.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct UsageObject<'a> {
    top: Members<'a>,
    children: [Option<Members<'a>>; CHILD_KEYS.len()],
}

impl<'a> UsageObject<'a> {
    /// The `usage` object's own members.
    pub(crate) fn top(&self) -> &Members<'a> {
        &self.top
    }

    /// A details object (`input_tokens_details`, `cache_creation`, …),
    /// when the last occurrence of its key is an object.
    pub(crate) fn object(&self, name: &str) -> Option<&Members<'a>> {
        self.children[position(&CHILD_KEYS, name)?].as_ref()
    }

    /// Reads `text` as a `usage` value: `None` when it is not an object.
    #[cfg(test)]
    pub(crate) fn parse(text: &'a str) -> Option<UsageObject<'a>> {
        match serde_json::from_str::<UsageField<'a>>(text).ok()? {
            UsageField::Object(usage) => Some(*usage),
            UsageField::NotObject => None,
        }
    }
}

/// The envelope's `usage` field: an object read as [`UsageObject`], or
/// anything else (which carries no usage).
#[derive(Debug, Clone)]
pub(crate) enum UsageField<'a> {
    /// Boxed: the object is about 2 KB and the envelope is moved around.
    Object(Box<UsageObject<'a>>),
    NotObject,
}

impl<'a> UsageField<'a> {
    pub(crate) fn object(&self) -> Option<&UsageObject<'a>> {
        match self {
            UsageField::Object(usage) => Some(&**usage),
            UsageField::NotObject => None,
        }
    }
}

/// Consumes a sequence without keeping it; says whether it had elements.
fn drain_seq<'de, A: SeqAccess<'de>>(mut seq: A) -> Result<bool, A::Error> {
    let mut any = false;
    while seq.next_element::<IgnoredAny>()?.is_some() {
        any = true;
    }
    Ok(any)
}

fn drain_map<'de, A: MapAccess<'de>>(mut map: A) -> Result<(), A::Error> {
    while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
    Ok(())
}

/// Visitors whose value, for every JSON type but the one they read, is a
/// fixed "not this" value: the rest of the type's methods consume what
/// they are given and return it.
macro_rules! other_types_give {
    (@seq $other:expr) => {
        fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
            drain_seq(seq)?;
            Ok($other)
        }
    };
    (@map $other:expr) => {
        fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
            drain_map(map)?;
            Ok($other)
        }
    };
    (@scalars $other:expr) => {
        fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
            Ok($other)
        }
        fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
            Ok($other)
        }
        fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
            Ok($other)
        }
        fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
            Ok($other)
        }
        fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
            Ok($other)
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok($other)
        }
    };
}

/// A details object inside `usage`: its members, or `None` when it is not
/// an object.
struct Child<'a>(Option<Members<'a>>);

impl<'de: 'a, 'a> Deserialize<'de> for Child<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Child<'a>, D::Error> {
        struct V<'a>(PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = Child<'a>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Child<'a>, A::Error> {
                Members::read(map, None).map(|m| Child(Some(m)))
            }
            other_types_give!(@scalars Child(None));
            other_types_give!(@seq Child(None));
        }
        d.deserialize_any(V(PhantomData))
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for UsageField<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<UsageField<'a>, D::Error> {
        struct V<'a>(PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = UsageField<'a>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<UsageField<'a>, A::Error> {
                let mut children = [None; CHILD_KEYS.len()];
                let top = Members::read(map, Some(&mut children))?;
                Ok(UsageField::Object(Box::new(UsageObject { top, children })))
            }
            other_types_give!(@scalars UsageField::NotObject);
            other_types_give!(@seq UsageField::NotObject);
        }
        d.deserialize_any(V(PhantomData))
    }
}

/// What a chat answer's or chunk's `choices` shows: whether it is an
/// empty array, and whether any element's `message` (whole answers) or
/// `delta` (chunks) shows the client something.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Choices {
    pub(crate) empty_array: bool,
    pub(crate) message_content: bool,
    pub(crate) delta_content: bool,
}

impl<'de> Deserialize<'de> for Choices {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Choices, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Choices;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Choices, A::Error> {
                let mut out = Choices {
                    empty_array: true,
                    ..Choices::default()
                };
                while let Some(choice) = seq.next_element::<Choice>()? {
                    out.empty_array = false;
                    out.message_content |= choice.message;
                    out.delta_content |= choice.delta;
                }
                Ok(out)
            }
            other_types_give!(@scalars Choices::default());
            other_types_give!(@map Choices::default());
        }
        d.deserialize_any(V)
    }
}

/// One element of `choices`: whether its (last) `message` and `delta` show
/// content. Not an object: neither.
#[derive(Default)]
struct Choice {
    message: bool,
    delta: bool,
}

impl<'de> Deserialize<'de> for Choice {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Choice, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Choice;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Choice, A::Error> {
                let mut out = Choice::default();
                while let Some(Key(key)) = map.next_key::<Key<'de>>()? {
                    match &*key {
                        "message" => out.message = map.next_value::<Message>()?.0,
                        "delta" => out.delta = map.next_value::<Message>()?.0,
                        _ => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Ok(out)
            }
            other_types_give!(@scalars Choice::default());
            other_types_give!(@seq Choice::default());
        }
        d.deserialize_any(V)
    }
}

/// A chat message or delta: whether it shows the client something —
/// non-empty `content` (text or parts), `reasoning_content`/`reasoning`,
/// `refusal`, or any tool call (the last occurrence of each key counts).
struct Message(bool);

impl<'de> Deserialize<'de> for Message {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Message, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Message;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Message, A::Error> {
                let keys = [
                    "content",
                    "reasoning_content",
                    "reasoning",
                    "refusal",
                    "tool_calls",
                    "function_call",
                ];
                let mut seen = [Shape::Other; 6];
                while let Some(Key(key)) = map.next_key::<Key<'de>>()? {
                    match position(&keys, &key) {
                        Some(i) => seen[i] = map.next_value::<Shape>()?,
                        None => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                let [
                    content,
                    reasoning_content,
                    reasoning,
                    refusal,
                    tool_calls,
                    function_call,
                ] = seen;
                Ok(Message(
                    matches!(content, Shape::Text | Shape::List)
                        || reasoning_content == Shape::Text
                        || reasoning == Shape::Text
                        || refusal == Shape::Text
                        || tool_calls == Shape::List
                        || function_call == Shape::Object,
                ))
            }
            other_types_give!(@scalars Message(false));
            other_types_give!(@seq Message(false));
        }
        d.deserialize_any(V)
    }
}

/// What kind of value a message field holds, as far as "shows content"
/// needs to know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    /// A string other than `""`.
    Text,
    /// An array with at least one element.
    List,
    Object,
    /// Anything else: `""`, `[]`, numbers, `null`, absent.
    Other,
}

impl<'de> Deserialize<'de> for Shape {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Shape, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Shape;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Shape, E> {
                Ok(if v.is_empty() {
                    Shape::Other
                } else {
                    Shape::Text
                })
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Shape, A::Error> {
                Ok(if drain_seq(seq)? {
                    Shape::List
                } else {
                    Shape::Other
                })
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Shape, A::Error> {
                drain_map(map)?;
                Ok(Shape::Object)
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Shape, E> {
                Ok(Shape::Other)
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Shape, E> {
                Ok(Shape::Other)
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<Shape, E> {
                Ok(Shape::Other)
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Shape, E> {
                Ok(Shape::Other)
            }
            fn visit_unit<E: de::Error>(self) -> Result<Shape, E> {
                Ok(Shape::Other)
            }
        }
        d.deserialize_any(V)
    }
}

/// The pass-time reading against a `Value`-tree reading of the same text
/// (the oracle: a `serde_json::Map` keeps the last of a repeated key, and
/// `as_u64` is what a count is), over `usage` objects built from the keys
/// read, with repeated keys and values of every type.
#[cfg(test)]
mod usage_matches_value_reading {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use proptest::prelude::*;
    use serde_json::Value;

    fn value_text() -> impl Strategy<Value = String> {
        let leaf = prop::sample::select(vec![
            "0",
            "7",
            "-0",
            "-1",
            "1.5",
            "1e2",
            "0.0000425",
            "18446744073709551615",
            "18446744073709551616",
            "\"3\"",
            "\"\"",
            "null",
            "true",
            "[]",
            "[1]",
            "{}",
        ])
        .prop_map(str::to_owned);
        leaf.prop_recursive(2, 24, 4, |inner| {
            prop::collection::vec((key(), inner), 0..5).prop_map(|members| object(&members))
        })
    }

    fn key() -> impl Strategy<Value = String> {
        let mut keys: Vec<&str> = COUNT_KEYS.to_vec();
        keys.extend(RAW_KEYS);
        keys.extend(CHILD_KEYS);
        keys.extend(["other", "usage"]);
        prop::sample::select(keys).prop_map(str::to_owned)
    }

    fn object(members: &[(String, String)]) -> String {
        let inner: Vec<String> = members
            .iter()
            .map(|(k, v)| format!("\"{k}\":{v}"))
            .collect();
        format!("{{{}}}", inner.join(","))
    }

    fn oracle_count(v: &Value, name: &str) -> Option<u64> {
        v.get(name).and_then(Value::as_u64)
    }

    fn oracle_raw(v: &Value, name: &str) -> Option<String> {
        v.get(name).map(Value::to_string)
    }

    fn check(top: &Members<'_>, v: &Value) -> Result<(), TestCaseError> {
        for name in COUNT_KEYS {
            prop_assert_eq!(top.count(name), oracle_count(v, name), "{}", name);
        }
        for name in RAW_KEYS {
            // Compared as values: the raw text keeps the number's digits.
            let raw = top
                .raw(name)
                .map(|r| serde_json::from_str::<Value>(r.get()).unwrap());
            prop_assert_eq!(raw.map(|r| r.to_string()), oracle_raw(v, name), "{}", name);
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn usage_reads_like_a_value_tree(members in prop::collection::vec((key(), value_text()), 0..12)) {
            let text = object(&members);
            let v: Value = serde_json::from_str(&text).unwrap();
            let usage = UsageObject::parse(&text).unwrap();
            check(usage.top(), &v)?;
            for name in CHILD_KEYS {
                let child = v.get(name).filter(|c| c.is_object());
                prop_assert_eq!(usage.object(name).is_some(), child.is_some(), "{}", name);
                if let (Some(members), Some(child)) = (usage.object(name), child) {
                    check(members, child)?;
                }
            }
        }
    }

    #[test]
    fn not_an_object_is_no_usage() {
        for text in ["[1]", "\"x\"", "3", "null", "true"] {
            assert!(UsageObject::parse(text).is_none(), "{text}");
        }
        assert!(UsageObject::parse("{").is_none());
    }

    #[test]
    fn the_last_message_and_delta_of_a_choice_count() {
        let read = |text: &str| serde_json::from_str::<Choices>(text).unwrap();
        let c = read(r#"[{"message":{"content":"hi"},"message":{"content":""}}]"#);
        assert!(!c.message_content && !c.empty_array);
        let c = read(r#"[{"delta":{"content":""},"delta":{"content":"hi"}}]"#);
        assert!(c.delta_content && !c.message_content);
        let c = read(r#"[{"message":{"content":"hi","content":null}}, 3, "x"]"#);
        assert!(!c.message_content);
        let c = read(r#"[1, {"message":{"tool_calls":[{}]}}]"#);
        assert!(c.message_content);
        assert!(read("[]").empty_array);
        assert_eq!(read(r#"{"message":{"content":"hi"}}"#), Choices::default());
        // An escaped key is the same key.
        assert!(read(r#"[{"m\u0065ssage":{"r\u0065fusal":"no"}}]"#).message_content);
    }
}
