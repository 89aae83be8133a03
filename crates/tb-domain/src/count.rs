//! A token count as an upstream reports it.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

/// A token count read leniently (billing.md: a count that is not a
/// non-negative integer is ignored): what `u64` accepts, a non-negative
/// JSON integer that fits, is `Some`; any other value (a float, a string,
/// `null`, an array …) is read past and is `None`, never an error.
///
/// ```
/// use tb_domain::TokenCount;
///
/// let counts: Vec<TokenCount> = serde_json::from_str(r#"[12, -1, 1.5, "3", null, {"a":1}]"#).unwrap();
/// assert_eq!(counts.iter().map(|c| c.0).collect::<Vec<_>>(), [Some(12), None, None, None, None, None]);
/// ```
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct TokenCount(pub Option<u64>);

impl<'de> Deserialize<'de> for TokenCount {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = TokenCount;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a token count")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<TokenCount, E> {
                Ok(TokenCount(Some(v)))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<TokenCount, E> {
                Ok(TokenCount(u64::try_from(v).ok()))
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<TokenCount, E> {
                Ok(TokenCount(None))
            }
            fn visit_str<E: de::Error>(self, _: &str) -> Result<TokenCount, E> {
                Ok(TokenCount(None))
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<TokenCount, E> {
                Ok(TokenCount(None))
            }
            fn visit_unit<E: de::Error>(self) -> Result<TokenCount, E> {
                Ok(TokenCount(None))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<TokenCount, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(TokenCount(None))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<TokenCount, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(TokenCount(None))
            }
        }
        d.deserialize_any(V)
    }
}
