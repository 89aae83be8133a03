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
//! property tests below hold both paths to that).
//!
//! Two paths. The common one ([`Fast`]) walks the text once and copies
//! what is already canonical (string runs found with `memchr`, integers,
//! literals), so a 200 KB prompt of file contents is mostly `memcpy`;
//! decoding each string and escaping it again through serde was most of
//! the hash's cost. Anything it does not expect (a float, an escape it
//! does not rewrite, a syntax error) sends the whole value to the serde
//! path ([`Canonical`]), which is the reference.

use std::borrow::Cow;
use std::fmt;
use std::ops::Range;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

/// Writes the canonical form of the JSON text `raw` to `out`.
pub(crate) fn write_canonical(raw: &str, out: &mut Vec<u8>) -> Result<(), serde_json::Error> {
    let start = out.len();
    if Fast::new(raw).document(out).is_some() {
        return Ok(());
    }
    out.truncate(start);
    write_canonical_with_serde(raw, out)
}

/// A character inside a string, as serde_json writes it: the two-character
/// escapes, `\u00xx` for the other control characters, the rest as UTF-8.
fn write_char(out: &mut Vec<u8>, c: char) {
    let short: &[u8] = match c {
        '"' => b"\\\"",
        '\\' => b"\\\\",
        '\u{8}' => b"\\b",
        '\u{c}' => b"\\f",
        '\n' => b"\\n",
        '\r' => b"\\r",
        '\t' => b"\\t",
        c if u32::from(c) < 0x20 => {
            out.extend_from_slice(format!("\\u{:04x}", u32::from(c)).as_bytes());
            return;
        }
        c => {
            out.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes());
            return;
        }
    };
    out.extend_from_slice(short);
}

/// The reference path: serde_json reads the text, [`Canonical`] writes it.
fn write_canonical_with_serde(raw: &str, out: &mut Vec<u8>) -> Result<(), serde_json::Error> {
    let mut de = serde_json::Deserializer::from_str(raw);
    Canonical(out).deserialize(&mut de)?;
    de.end()
}

/// The same nesting limit as serde_json's reader: deeper text goes to the
/// serde path, which refuses it the same way.
const MAX_DEPTH: usize = 128;

/// The one-pass writer. Every method returns `None` to hand the value to
/// the serde path.
struct Fast<'a> {
    text: &'a str,
    pos: usize,
    depth: usize,
    /// Member buffers of finished objects, reused by the next ones.
    spare: Vec<Vec<u8>>,
}

impl<'a> Fast<'a> {
    fn new(text: &'a str) -> Fast<'a> {
        Fast {
            text,
            pos: 0,
            depth: 0,
            spare: Vec::new(),
        }
    }

    fn bytes(&self) -> &'a [u8] {
        self.text.as_bytes()
    }

    fn peek(&self) -> Option<u8> {
        self.bytes().get(self.pos).copied()
    }

    fn skip_ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\n' | b'\r' | b'\t')) {
            self.pos += 1;
        }
    }

    fn eat(&mut self, byte: u8) -> Option<()> {
        self.skip_ws();
        (self.peek()? == byte).then(|| self.pos += 1)
    }

    fn document(&mut self, out: &mut Vec<u8>) -> Option<()> {
        self.value(out)?;
        self.skip_ws();
        (self.pos == self.text.len()).then_some(())
    }

    fn value(&mut self, out: &mut Vec<u8>) -> Option<()> {
        self.skip_ws();
        match self.peek()? {
            b'{' => self.nested(out, Fast::object),
            b'[' => self.nested(out, Fast::array),
            b'"' => self.string(out),
            b't' => self.literal(out, "true"),
            b'f' => self.literal(out, "false"),
            b'n' => self.literal(out, "null"),
            _ => self.integer(out),
        }
    }

    fn nested(
        &mut self,
        out: &mut Vec<u8>,
        f: fn(&mut Self, &mut Vec<u8>) -> Option<()>,
    ) -> Option<()> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return None;
        }
        f(self, out)?;
        self.depth -= 1;
        Some(())
    }

    fn literal(&mut self, out: &mut Vec<u8>, word: &str) -> Option<()> {
        let end = self.pos + word.len();
        (self.text.get(self.pos..end)? == word).then_some(())?;
        self.pos = end;
        out.extend_from_slice(word.as_bytes());
        Some(())
    }

    /// An integer `Value` keeps as written: `-?digits` within `i64`/`u64`,
    /// not `-0` (a float to serde_json). Anything else goes to serde.
    fn integer(&mut self, out: &mut Vec<u8>) -> Option<()> {
        let rest = self.bytes().get(self.pos..)?;
        let len = rest
            .iter()
            .position(|b| !matches!(b, b'-' | b'0'..=b'9'))
            .unwrap_or(rest.len());
        let text = self.text.get(self.pos..self.pos + len)?;
        if matches!(rest.get(len), Some(b'.' | b'e' | b'E')) {
            return None;
        }
        let digits = text.strip_prefix('-').unwrap_or(text);
        let canonical = !digits.is_empty()
            && digits.bytes().all(|b| b.is_ascii_digit())
            && (digits == "0" || !digits.starts_with('0'))
            && text != "-0"
            && (text.parse::<u64>().is_ok() || text.parse::<i64>().is_ok());
        canonical.then_some(())?;
        self.pos += len;
        out.extend_from_slice(text.as_bytes());
        Some(())
    }

    fn array(&mut self, out: &mut Vec<u8>) -> Option<()> {
        self.eat(b'[')?;
        out.push(b'[');
        self.skip_ws();
        if self.peek()? == b']' {
            self.pos += 1;
            out.push(b']');
            return Some(());
        }
        loop {
            self.value(out)?;
            self.skip_ws();
            match self.peek()? {
                b',' => {
                    self.pos += 1;
                    out.push(b',');
                }
                b']' => {
                    self.pos += 1;
                    out.push(b']');
                    return Some(());
                }
                _ => return None,
            }
        }
    }

    /// Members are written to a buffer of their own, then copied out in
    /// key order; of a repeated key only the last is kept.
    fn object(&mut self, out: &mut Vec<u8>) -> Option<()> {
        self.eat(b'{')?;
        let mut buf = self.spare.pop().unwrap_or_default();
        buf.clear();
        let mut members: Vec<(Cow<'a, str>, Range<usize>)> = Vec::new();
        self.skip_ws();
        if self.peek()? == b'}' {
            self.pos += 1;
        } else {
            loop {
                self.skip_ws();
                let start = buf.len();
                let key = self.key(&mut buf)?;
                self.eat(b':')?;
                buf.push(b':');
                self.value(&mut buf)?;
                members.push((key, start..buf.len()));
                self.skip_ws();
                match self.peek()? {
                    b',' => self.pos += 1,
                    b'}' => {
                        self.pos += 1;
                        break;
                    }
                    _ => return None,
                }
            }
        }
        write_members(&mut members, &buf, out)?;
        self.spare.push(buf);
        Some(())
    }

    /// Writes a string value canonically.
    fn string(&mut self, out: &mut Vec<u8>) -> Option<()> {
        self.string_span(out).map(|_| ())
    }

    /// Writes an object key canonically; returns its text, for sorting
    /// (borrowed unless it had escapes).
    fn key(&mut self, out: &mut Vec<u8>) -> Option<Cow<'a, str>> {
        let out_start = out.len();
        let (open, escaped) = self.string_span(out)?;
        if !escaped {
            return Some(Cow::Borrowed(self.text.get(open..self.pos - 1)?));
        }
        let written = std::str::from_utf8(out.get(out_start..)?).ok()?;
        serde_json::from_str::<String>(written).ok().map(Cow::Owned)
    }

    /// Writes a string; returns where its text starts and whether it had
    /// escapes. The escapes serde_json writes the same way (`\n`, `\"` …)
    /// are copied with the text around them: only `\/` and `\u` stop the
    /// copy, so text full of newlines and quotes is copied in one piece.
    fn string_span(&mut self, out: &mut Vec<u8>) -> Option<(usize, bool)> {
        self.eat(b'"')?;
        let open = self.pos;
        out.push(b'"');
        let mut escaped = false;
        let mut copied = self.pos;
        loop {
            let rest = self.bytes().get(self.pos..)?;
            let at = self.pos + memchr::memchr2(b'"', b'\\', rest)?;
            if self.bytes().get(at) == Some(&b'"') {
                self.copy(copied, at, out)?;
                self.pos = at + 1;
                break;
            }
            escaped = true;
            match self.bytes().get(at + 1)? {
                b'"' | b'\\' | b'b' | b'f' | b'n' | b'r' | b't' => self.pos = at + 2,
                _ => {
                    self.copy(copied, at, out)?;
                    self.pos = at;
                    self.escape(out)?;
                    copied = self.pos;
                }
            }
        }
        out.push(b'"');
        Some((open, escaped))
    }

    /// Copies `text[from..to]` (string content) to `out`; `None` when it
    /// holds a raw control character, which serde_json refuses.
    fn copy(&self, from: usize, to: usize, out: &mut Vec<u8>) -> Option<()> {
        let span = self.bytes().get(from..to)?;
        // A fold, not `any`: no early exit, so it vectorises.
        if span.iter().fold(false, |seen, &b| seen | (b < 0x20)) {
            return None;
        }
        out.extend_from_slice(span);
        Some(())
    }

    /// One escape at `self.pos` (the backslash), written as serde_json
    /// writes the character it stands for.
    fn escape(&mut self, out: &mut Vec<u8>) -> Option<()> {
        let kind = *self.bytes().get(self.pos + 1)?;
        match kind {
            b'"' | b'\\' | b'b' | b'f' | b'n' | b'r' | b't' => {
                out.extend_from_slice(&[b'\\', kind]);
                self.pos += 2;
            }
            b'/' => {
                out.push(b'/');
                self.pos += 2;
            }
            b'u' => {
                let unit = self.hex4(self.pos + 2)?;
                self.pos += 6;
                let code = match unit {
                    0xD800..=0xDBFF => {
                        // A surrogate pair; a lone half goes to serde, which
                        // refuses it.
                        if self.bytes().get(self.pos..self.pos + 2)? != b"\\u" {
                            return None;
                        }
                        let low = self.hex4(self.pos + 2)?;
                        if !(0xDC00..=0xDFFF).contains(&low) {
                            return None;
                        }
                        self.pos += 6;
                        0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00)
                    }
                    0xDC00..=0xDFFF => return None,
                    _ => unit,
                };
                write_char(out, char::from_u32(code)?);
            }
            _ => return None,
        }
        Some(())
    }

    fn hex4(&self, at: usize) -> Option<u32> {
        let digits = self.text.get(at..at + 4)?;
        if !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        u32::from_str_radix(digits, 16).ok()
    }
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
        // Each member (`"key":value`) is written to `values`; the members
        // are then copied out in key order.
        let mut values = Vec::new();
        let mut members: Vec<(String, Range<usize>)> = Vec::new();
        while let Some(key) = map.next_key::<String>()? {
            let start = values.len();
            serde_json::to_writer(&mut values, &key).map_err(de::Error::custom)?;
            values.push(b':');
            map.next_value_seed(Canonical(&mut values))?;
            members.push((key, start..values.len()));
        }
        write_members(&mut members, &values, self.0)
            .ok_or_else(|| de::Error::custom("a member outside its buffer"))
    }
}

/// Writes an object from its members, each a key (for sorting) and the
/// range of `written` holding its canonical `"key":value`: sorted by key
/// (stable, so of a repeated key the last is kept, as `Value`'s map does).
fn write_members<K: Ord>(
    members: &mut [(K, Range<usize>)],
    written: &[u8],
    out: &mut Vec<u8>,
) -> Option<()> {
    members.sort_by(|a, b| a.0.cmp(&b.0));
    out.push(b'{');
    let mut first = true;
    for (i, (key, range)) in members.iter().enumerate() {
        if members.get(i + 1).is_some_and(|next| next.0 == *key) {
            continue;
        }
        if !first {
            out.push(b',');
        }
        first = false;
        out.extend_from_slice(written.get(range.clone())?);
    }
    out.push(b'}');
    Some(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use proptest::prelude::*;
    use serde_json::Value;

    fn canonical(text: &str) -> Option<String> {
        let mut out = Vec::new();
        write_canonical(text, &mut out).ok()?;
        Some(String::from_utf8(out).unwrap())
    }

    fn fast(text: &str) -> Option<String> {
        let mut out = Vec::new();
        Fast::new(text).document(&mut out)?;
        Some(String::from_utf8(out).unwrap())
    }

    fn with_serde(text: &str) -> Option<String> {
        let mut out = Vec::new();
        write_canonical_with_serde(text, &mut out).ok()?;
        Some(String::from_utf8(out).unwrap())
    }

    fn via_value(text: &str) -> Option<String> {
        Some(serde_json::to_string(&serde_json::from_str::<Value>(text).ok()?).unwrap())
    }

    #[test]
    fn sorts_keys_keeps_the_last_of_a_repeated_key_and_normalises() {
        let text = r#" { "b" : [1, 2.50, -3, 1e2, "\u00e9\/"], "a":{"z":null,"y":true}, "b":{} } "#;
        assert_eq!(
            canonical(text).unwrap(),
            r#"{"a":{"y":true,"z":null},"b":{}}"#
        );
        for text in [
            text,
            r#"[{"role":"user","content":"h\ti \"x\" \ud83d\ude80 \u001F \u0008 \u0041"}, [], {}]"#,
            "0",
            "-0",
            "1.0",
            "18446744073709551616",
            "-9223372036854775809",
            r#""""#,
        ] {
            assert_eq!(canonical(text), via_value(text), "{text}");
            assert_eq!(with_serde(text), via_value(text), "{text}");
        }
    }

    #[test]
    fn what_agents_send_takes_the_fast_path() {
        // JSON.stringify's output (Claude Code, opencode), and Python's
        // `json.dumps` with its `\uXXXX` escapes (the Python SDKs).
        for text in [
            "[{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"fix \\\"parse\\\"\\n\\tcaf\u{e9} \u{1f680}\"}]}]",
            r#"[{"role": "user", "content": "caf\u00e9 \ud83d\ude80 \u001f"}]"#,
            r#"{"z":[1,-2,true,null],"a":"\\"}"#,
        ] {
            assert!(fast(text).is_some(), "{text}");
            assert_eq!(fast(text), via_value(text), "{text}");
        }
        // Floats, `-0`, a lone surrogate, syntax errors are the serde
        // path's, and agree there.
        for text in ["[1.5]", "-0", "1e2", r#""\ud800""#, "[1,]", r#"{"a" 1}"#] {
            assert_eq!(fast(text), None, "{text}");
            assert_eq!(canonical(text), via_value(text), "{text}");
        }
    }

    #[test]
    fn not_json_is_an_error() {
        for text in [
            "",
            "{",
            "[1,]",
            r#"{"a"}"#,
            "1 2",
            "\"\u{1}\"",
            r#""\ud800""#,
        ] {
            assert!(write_canonical(text, &mut Vec::new()).is_err(), "{text}");
        }
    }

    #[test]
    fn nesting_past_the_limit_is_refused_like_serde_json_does() {
        let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
        assert!(fast(&deep).is_none());
        assert_eq!(canonical(&deep), via_value(&deep));
    }

    /// Every kind of leaf: numbers serde_json keeps as integers and those
    /// it turns into floats, strings with every escape.
    const LEAVES: [&str; 24] = [
        "null",
        "true",
        "false",
        "0",
        "7",
        "-12",
        "18446744073709551615",
        "-9223372036854775808",
        r#""""#,
        r#""x""#,
        r#""\u00e9\n\/""#,
        "\"é🚀\"",
        r#""\ud83d\ude80""#,
        r#""\uD83D\uDE80""#,
        r#""\u001F\u0008\u000a\u0022\u005C\u007f""#,
        r#""a\\b\"c\td""#,
        "\"\u{7f}\"",
        // From here on, the serde path's.
        "-0",
        "1.5",
        "2.50",
        "1e2",
        "1E-3",
        "123456789012345678901234567890",
        r#""\ud800""#,
    ];

    /// How many of [`LEAVES`] the fast path writes itself.
    const FAST_LEAVES: usize = 17;

    fn json_of(leaves: &'static [&'static str]) -> impl Strategy<Value = String> {
        let leaf = prop::sample::select(leaves).prop_map(str::to_owned);
        leaf.prop_recursive(4, 64, 6, |inner| {
            let key = prop::sample::select(vec![
                "a", "b", "role", "content", r"\u0061", "é", "", r#"\""#, r"a\/",
            ]);
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
        #![proptest_config(ProptestConfig::with_cases(2048))]

        #[test]
        fn writes_what_serde_json_writes_of_the_value(text in json_of(&LEAVES)) {
            let expected = via_value(&text);
            prop_assert_eq!(canonical(&text), expected.clone());
            prop_assert_eq!(with_serde(&text), expected.clone());
            // The fast path either agrees or hands the text over.
            if let Some(fast) = fast(&text) {
                prop_assert_eq!(Some(fast), expected);
            }
        }

        #[test]
        fn the_fast_path_writes_what_it_accepts(text in json_of(&LEAVES[..FAST_LEAVES])) {
            prop_assert_eq!(fast(&text), via_value(&text));
        }
    }
}
