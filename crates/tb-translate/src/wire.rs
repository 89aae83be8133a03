//! Building blocks for the wire types: borrowed strings, "string or
//! array" members, and the [`wire!`] macro that declares a typed struct
//! which keeps every member it does not know.
//!
//! Why not `#[serde(flatten)] extra` and `#[serde(tag = "type")]` enums:
//! serde implements both by first buffering the whole object into an
//! intermediate tree. On a 200 KB Claude Code request that doubles the
//! parse, and the buffered tree cannot hand out `&RawValue` (tool schemas
//! and tool inputs are carried through as raw JSON, never re-parsed). The
//! macro below reads an object member by member straight from the input,
//! so known members are typed, unknown ones land in [`Extra`] as raw JSON
//! (to be refused or dropped as advisory), and nothing is buffered.

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;
use std::ops::Deref;

use serde::de::value::{MapAccessDeserializer, SeqAccessDeserializer};
use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::{Serialize, Serializer};
use serde_json::value::RawValue;

/// A string borrowed from the input when it has no escapes, owned
/// otherwise (serde's own `Cow<str>` always copies).
#[derive(Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct Str<'a>(pub(crate) Cow<'a, str>);

impl<'a> Str<'a> {
    pub(crate) fn borrowed(s: &'a str) -> Str<'a> {
        Str(Cow::Borrowed(s))
    }

    pub(crate) fn owned(s: String) -> Str<'a> {
        Str(Cow::Owned(s))
    }
}

impl Deref for Str<'_> {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Str<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl Serialize for Str<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Str<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = Str<'a>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Str<'a>, E> {
                Ok(Str::borrowed(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Str<'a>, E> {
                Ok(Str::owned(v.to_owned()))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Str<'a>, E> {
                Ok(Str::owned(v))
            }
        }
        d.deserialize_str(V(PhantomData))
    }
}

/// Raw JSON kept as it came, or produced by the translation.
pub(crate) type Raw<'a> = Cow<'a, RawValue>;

/// A member that is either a string or something else (an array of parts,
/// an object): `content`, `system`, `tool_choice`, `stop`, `input`.
#[derive(Debug)]
pub(crate) enum StrOr<'a, T> {
    Str(Str<'a>),
    Other(T),
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for StrOr<'de, T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
            type Value = StrOr<'de, T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string, an array or an object")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(StrOr::Str(Str::borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(StrOr::Str(Str::owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(StrOr::Str(Str::owned(v)))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
                T::deserialize(SeqAccessDeserializer::new(seq)).map(StrOr::Other)
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                T::deserialize(MapAccessDeserializer::new(map)).map(StrOr::Other)
            }
        }
        d.deserialize_any(V(PhantomData))
    }
}

/// The members of an object that its wire type does not declare, as raw
/// JSON, in input order.
#[derive(Debug, Default)]
pub(crate) struct Extra<'a>(Vec<(Str<'a>, &'a RawValue)>);

impl<'a> Extra<'a> {
    pub(crate) fn push(&mut self, key: Str<'a>, value: &'a RawValue) {
        self.0.push((key, value));
    }

    /// Members whose value says something: `null`, `false`, `{}` and `[]`
    /// are what a client sends for "not set", so they never cause a
    /// refusal.
    pub(crate) fn meaningful(&self) -> impl Iterator<Item = (&str, &'a RawValue)> + '_ {
        self.0
            .iter()
            .filter(|(_, v)| !is_unset(v))
            .map(|(k, v)| (&*k.0, *v))
    }
}

/// `null`, `false`, `{}` or `[]` (whitespace inside allowed).
pub(crate) fn is_unset(v: &RawValue) -> bool {
    let text = v.get();
    let squeezed = text.trim();
    matches!(squeezed, "null" | "false")
        || (squeezed.len() >= 2
            && (squeezed.starts_with('{') || squeezed.starts_with('['))
            && squeezed[1..squeezed.len() - 1].trim().is_empty())
}

/// Adds the member name to a deserialisation error so a refusal can say
/// where the body went wrong (serde_json keeps the line and column).
pub(crate) fn at<E: de::Error>(key: &str, err: E) -> E {
    E::custom(format_args!("{key}: {err}"))
}

/// Declares a wire struct: every listed member is an `Option` of its type
/// (JSON `null` reads as absent), everything else is kept in `extra`
/// (`struct`) or skipped without being stored (`lenient struct`, for
/// upstream answers and events, where unknown members are ignored).
macro_rules! wire {
    (
        $(#[$meta:meta])*
        struct $name:ident { $($body:tt)* }
    ) => {
        $crate::wire::wire!(@define keep [] $(#[$meta])* $name { $($body)* });
    };
    (
        $(#[$meta:meta])*
        lenient struct $name:ident { $($body:tt)* }
    ) => {
        $crate::wire::wire!(
            @define skip [#[allow(dead_code, reason = "lenient types skip unknown members")]]
            $(#[$meta])* $name { $($body)* }
        );
    };
    (@unknown keep, $out:ident, $map:ident, $key:ident) => {{
        let value = $map
            .next_value()
            .map_err(|e| $crate::wire::at(&$key, e))?;
        $out.extra.push($key, value)
    }};
    (@unknown skip, $out:ident, $map:ident, $key:ident) => {{
        let _ = &$key;
        $map.next_value::<serde::de::IgnoredAny>()?;
    }};
    (
        @define $mode:ident [$(#[$extra_meta:meta])*]
        $(#[$meta:meta])*
        $name:ident {
            $( $(#[$fmeta:meta])* $field:ident : $ty:ty = $key:literal, )*
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Default)]
        pub(crate) struct $name<'a> {
            $( $(#[$fmeta])* pub(crate) $field: Option<$ty>, )*
            /// The members this type does not declare.
            $(#[$extra_meta])*
            pub(crate) extra: $crate::wire::Extra<'a>,
        }

        impl<'de> serde::Deserialize<'de> for $name<'de> {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct V;
                impl<'de> serde::de::Visitor<'de> for V {
                    type Value = $name<'de>;
                    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        f.write_str("a JSON object")
                    }
                    fn visit_map<A: serde::de::MapAccess<'de>>(
                        self,
                        mut map: A,
                    ) -> Result<Self::Value, A::Error> {
                        let mut out = $name::default();
                        while let Some(key) = map.next_key::<$crate::wire::Str<'de>>()? {
                            match &*key {
                                $( $key => {
                                    out.$field = map
                                        .next_value()
                                        .map_err(|e| $crate::wire::at($key, e))?
                                } )*
                                _ => $crate::wire::wire!(@unknown $mode, out, map, key),
                            }
                        }
                        Ok(out)
                    }
                }
                d.deserialize_map(V)
            }
        }
    };
}

pub(crate) use wire;

/// Parses a whole body as `T`, keeping serde's message (with the member
/// path the macro adds, and line/column) for the caller.
pub(crate) fn parse<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, serde_json::Error> {
    serde_json::from_slice(body)
}

/// The first element of an array; the rest is skipped without being
/// stored (Chat `choices`: translated requests ask for one).
#[derive(Debug, Default)]
pub(crate) struct First<T>(pub(crate) Option<T>);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for First<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
            type Value = First<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an array")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<First<T>, A::Error> {
                let first = seq.next_element()?;
                while seq.next_element::<de::IgnoredAny>()?.is_some() {}
                Ok(First(first))
            }
        }
        d.deserialize_seq(V(PhantomData))
    }
}

/// A `&RawValue` for JSON text this crate wrote itself.
pub(crate) fn raw_owned(json: String) -> Raw<'static> {
    match RawValue::from_string(json) {
        Ok(raw) => Cow::Owned(raw),
        // Only reachable if this crate wrote invalid JSON: fall back to an
        // empty object rather than panic.
        Err(_) => Cow::Owned(empty_object()),
    }
}

/// `{}` as raw JSON.
pub(crate) fn empty_object() -> Box<RawValue> {
    RawValue::from_string("{}".to_owned()).unwrap_or_else(|_| {
        // `{}` is valid JSON; this branch cannot run, but a panic is not an option.
        RawValue::NULL.to_owned()
    })
}

/// The text of a JSON string value: `"a\nb"` → `a` newline `b`.
pub(crate) fn json_string(text: &str) -> String {
    serde_json::to_string(text).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    wire! {
        struct Probe {
            name: Str<'a> = "name",
            size: u64 = "size",
            items: StrOr<'a, Vec<Str<'a>>> = "items",
        }
    }

    fn check(input: &str, expected: &str) {
        let got = match parse::<Probe<'_>>(input.as_bytes()) {
            Ok(p) => {
                let extra: Vec<String> = p
                    .extra
                    .meaningful()
                    .map(|(k, v)| format!("{k}={}", v.get()))
                    .collect();
                format!("{:?} {:?} {:?} extra={extra:?}", p.name, p.size, p.items)
            }
            Err(e) => format!("error: {e}"),
        };
        assert_eq!(got, expected, "{input}");
    }

    #[test]
    fn wire_structs_keep_unknown_members_and_name_bad_ones() {
        check(
            r#"{"name":"a","size":2,"x":[1],"y":null,"z":{}}"#,
            r#"Some("a") Some(2) None extra=["x=[1]"]"#,
        );
        check(
            r#"{"items":"one","size":null}"#,
            r#"None None Some(Str("one")) extra=[]"#,
        );
        check(
            r#"{"items":["a","b\n"]}"#,
            r#"None None Some(Other(["a", "b\n"])) extra=[]"#,
        );
        check(
            r#"{"size":"big"}"#,
            r#"error: size: invalid type: string "big", expected u64 at line 1 column 13"#,
        );
    }

    #[test]
    fn unset_values() {
        for (text, unset) in [
            ("null", true),
            ("false", true),
            ("{ }", true),
            ("[]", true),
            ("0", false),
            ("\"\"", false),
            ("[1]", false),
            ("true", false),
        ] {
            let raw = RawValue::from_string(text.to_owned()).unwrap_or_else(|_| empty_object());
            assert_eq!(is_unset(&raw), unset, "{text}");
        }
    }
}
