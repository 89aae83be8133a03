//! The canonical compact JSON of a value (keys sorted, no whitespace,
//! escapes and numbers as serde_json writes them), written without building
//! a `serde_json::Value`.
//!
//! `prompt_hash` hashes the prompt in this form. Going through a `Value`
//! allocated a string per string and a tree node per member: for the
//! 100–300 KB bodies coding agents send, that was the largest CPU cost of
//! a call after forwarding it. This visitor writes each scalar as it is
//! read; only an object's members are held (their keys, and their values
//! already written) until they can be sorted.
//!
//! The output is byte for byte `serde_json::to_vec(&Value)` of the same
//! text: a repeated key keeps its last value, as `Value`'s map does (the
//! property test below holds it to that).

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

/// Writes the canonical form of the JSON text `raw` to `out`.
pub(crate) fn write_canonical(raw: &str, out: &mut Vec<u8>) -> Result<(), serde_json::Error> {
    let mut de = serde_json::Deserializer::from_str(raw);
    Canonical(out).deserialize(&mut de)?;
    de.end()
}

/// Deserializes one value, writing its canonical form to the buffer.
struct Canonical<'b>(&'b mut Vec<u8>);

impl<'de> DeserializeSeed<'de> for Canonical<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl Canonical<'_> {
    /// A scalar, written as serde_json writes it (the same as its `Value`).
    fn scalar<T: serde::Serialize + ?Sized, E: de::Error>(self, v: &T) -> Result<(), E> {
        serde_json::to_writer(&mut *self.0, v).map_err(E::custom)
    }
}

impl<'de> Visitor<'de> for Canonical<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<(), E> {
        self.scalar(&v)
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<(), E> {
        self.scalar(&v)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<(), E> {
        self.scalar(&v)
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<(), E> {
        // What `Value` keeps of a float (a non-finite one cannot come from
        // JSON text, and would be written `null` by both).
        self.scalar(&serde_json::Number::from_f64(v))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<(), E> {
        self.scalar(v)
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.0.extend_from_slice(b"null");
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        self.0.push(b'[');
        let mut first = true;
        loop {
            let start = self.0.len();
            if !first {
                self.0.push(b',');
            }
            if seq.next_element_seed(Canonical(&mut *self.0))?.is_none() {
                self.0.truncate(start);
                break;
            }
            first = false;
        }
        self.0.push(b']');
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        // Each member's value is written to `values`; the members are then
        // sorted by key (stable, so the last of a repeated key is last).
        let mut values = Vec::new();
        let mut members: Vec<(String, std::ops::Range<usize>)> = Vec::new();
        while let Some(key) = map.next_key::<String>()? {
            let start = values.len();
            map.next_value_seed(Canonical(&mut values))?;
            members.push((key, start..values.len()));
        }
        members.sort_by(|a, b| a.0.cmp(&b.0));
        self.0.push(b'{');
        let mut first = true;
        for (i, (key, range)) in members.iter().enumerate() {
            if members.get(i + 1).is_some_and(|next| next.0 == *key) {
                continue;
            }
            if !first {
                self.0.push(b',');
            }
            first = false;
            serde_json::to_writer(&mut *self.0, key).map_err(de::Error::custom)?;
            self.0.push(b':');
            self.0.extend_from_slice(&values[range.clone()]);
        }
        self.0.push(b'}');
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use proptest::prelude::*;
    use serde_json::Value;

    fn canonical(text: &str) -> String {
        let mut out = Vec::new();
        write_canonical(text, &mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    fn via_value(text: &str) -> String {
        serde_json::to_string(&serde_json::from_str::<Value>(text).unwrap()).unwrap()
    }

    #[test]
    fn sorts_keys_keeps_the_last_of_a_repeated_key_and_normalises() {
        let text = r#" { "b" : [1, 2.50, -3, 1e2, "\u00e9\/"], "a":{"z":null,"y":true}, "b":{} } "#;
        assert_eq!(canonical(text), r#"{"a":{"y":true,"z":null},"b":{}}"#);
        assert_eq!(canonical(text), via_value(text));
        let text = r#"[{"role":"user","content":"h\ti \"x\" \ud83d\ude80"}, [], {}]"#;
        assert_eq!(canonical(text), via_value(text));
        for text in [
            "0",
            "-0",
            "1.0",
            "18446744073709551616",
            "-9223372036854775809",
            "\"\"",
        ] {
            assert_eq!(canonical(text), via_value(text), "{text}");
        }
    }

    #[test]
    fn not_json_is_an_error() {
        for text in ["", "{", "[1,]", "{\"a\"}", "1 2"] {
            assert!(write_canonical(text, &mut Vec::new()).is_err(), "{text}");
        }
    }

    fn json_text() -> impl Strategy<Value = String> {
        let leaf = prop::sample::select(vec![
            "null",
            "true",
            "false",
            "0",
            "-0",
            "7",
            "-12",
            "1.5",
            "2.50",
            "1e2",
            "1E-3",
            "123456789012345678901234567890",
            "\"\"",
            "\"x\"",
            "\"\\u00e9\\n\\/\"",
            "\"é🚀\"",
        ])
        .prop_map(str::to_owned);
        leaf.prop_recursive(4, 64, 6, |inner| {
            let key = prop::sample::select(vec!["a", "b", "role", "content", "\\u0061", "é", ""]);
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..5)
                    .prop_map(|items| format!("[ {} ]", items.join(" , "))),
                prop::collection::vec((key, inner), 0..6).prop_map(|members| {
                    let members: Vec<String> = members
                        .iter()
                        .map(|(k, v)| format!("\"{k}\" : {v}"))
                        .collect();
                    format!("{{ {} }}", members.join(",\n"))
                }),
            ]
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1024))]

        #[test]
        fn writes_what_serde_json_writes_of_the_value(text in json_text()) {
            prop_assert_eq!(canonical(&text), via_value(&text));
        }
    }
}
