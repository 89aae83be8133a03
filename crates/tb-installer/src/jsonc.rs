//! Format-preserving JSON editing by patching text.
//!
//! A small reader for JSON plus the common relaxations (JSONC `//` and
//! `/* */` comments, trailing commas; JSON5 bare and single-quoted keys and
//! single-quoted strings) that records the byte span of every value. The
//! [`JsonDoc`] editor changes one value at a time by splicing text, so key
//! order, indentation, comments and everything it does not touch stay
//! byte-for-byte; new values are pretty-printed with the file's own
//! indentation unit and line ending. After each splice the text is read
//! again, so spans are always fresh.

use std::path::{Path, PathBuf};

use crate::contract::PlanError;

/// A value and where it is.
#[derive(Debug, Clone)]
pub(crate) struct Node {
    /// First byte of the value.
    pub start: usize,
    /// One past its last byte.
    pub end: usize,
    /// What it is.
    pub kind: Kind,
}

/// The kinds of values.
#[derive(Debug, Clone)]
pub(crate) enum Kind {
    Object(Vec<Item>),
    Array(Vec<Item>),
    Str(String),
    Num,
    Bool,
    Null,
}

impl Kind {
    /// "an object", "a string", … for messages.
    pub(crate) fn describe(&self) -> &'static str {
        match self {
            Kind::Object(_) => "an object",
            Kind::Array(_) => "an array",
            Kind::Str(_) => "a string",
            Kind::Num => "a number",
            Kind::Bool => "a boolean",
            Kind::Null => "null",
        }
    }
}

/// A member of an object (with a key) or an element of an array.
#[derive(Debug, Clone)]
pub(crate) struct Item {
    pub key: Option<String>,
    /// Where the item starts: its key, or the value for array elements.
    pub start: usize,
    /// Position of the `:` (objects only).
    pub colon: Option<usize>,
    pub value: Node,
    /// Position of the comma after the value, if any.
    pub comma: Option<usize>,
}

impl Node {
    pub(crate) fn as_str(&self) -> Option<&str> {
        match &self.kind {
            Kind::Str(s) => Some(s),
            _ => None,
        }
    }

    pub(crate) fn items(&self) -> Option<&[Item]> {
        match &self.kind {
            Kind::Object(items) | Kind::Array(items) => Some(items),
            _ => None,
        }
    }

    pub(crate) fn is_object(&self) -> bool {
        matches!(self.kind, Kind::Object(_))
    }

    /// The last member called `key` (like `JSON.parse`, the last one wins).
    pub(crate) fn member(&self, key: &str) -> Option<&Item> {
        match &self.kind {
            Kind::Object(items) => items.iter().rev().find(|i| i.key.as_deref() == Some(key)),
            _ => None,
        }
    }
}

/// A syntax error with its position (1-based line and column).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SyntaxError {
    pub line: usize,
    pub col: usize,
    pub msg: String,
}

impl std::fmt::Display for SyntaxError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "not valid JSON at line {}, column {}: {}",
            self.line, self.col, self.msg
        )
    }
}

/// Reads `text`. `Ok(None)` for a document with nothing but whitespace and
/// comments.
pub(crate) fn parse(text: &str) -> Result<Option<Node>, SyntaxError> {
    let mut p = Parser {
        s: text.as_bytes(),
        text,
        i: 0,
    };
    if text.starts_with('\u{feff}') {
        p.i = 3;
    }
    p.skip()?;
    if p.i >= p.s.len() {
        return Ok(None);
    }
    let root = p.value(0)?;
    p.skip()?;
    if p.i < p.s.len() {
        return Err(p.err("unexpected content after the document"));
    }
    Ok(Some(root))
}

struct Parser<'a> {
    s: &'a [u8],
    text: &'a str,
    i: usize,
}

const MAX_DEPTH: usize = 200;

impl Parser<'_> {
    fn err(&self, msg: impl Into<String>) -> SyntaxError {
        let (line, col) = line_col(self.text, self.i);
        SyntaxError {
            line,
            col,
            msg: msg.into(),
        }
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    /// Skips whitespace and comments.
    fn skip(&mut self) -> Result<(), SyntaxError> {
        loop {
            match self.peek() {
                Some(b' ' | b'\t' | b'\n' | b'\r') => self.i += 1,
                Some(b'/') if self.s.get(self.i + 1) == Some(&b'/') => {
                    while let Some(c) = self.peek() {
                        if c == b'\n' {
                            break;
                        }
                        self.i += 1;
                    }
                }
                Some(b'/') if self.s.get(self.i + 1) == Some(&b'*') => {
                    let start = self.i;
                    self.i += 2;
                    loop {
                        match self.peek() {
                            None => {
                                self.i = start;
                                return Err(self.err("unterminated /* comment"));
                            }
                            Some(b'*') if self.s.get(self.i + 1) == Some(&b'/') => {
                                self.i += 2;
                                break;
                            }
                            Some(_) => self.i += 1,
                        }
                    }
                }
                _ => return Ok(()),
            }
        }
    }

    fn value(&mut self, depth: usize) -> Result<Node, SyntaxError> {
        if depth > MAX_DEPTH {
            return Err(self.err("nested too deeply"));
        }
        let start = self.i;
        let kind = match self.peek() {
            Some(b'{') => Kind::Object(self.container(depth, b'}')?),
            Some(b'[') => Kind::Array(self.container(depth, b']')?),
            Some(q @ (b'"' | b'\'')) => Kind::Str(self.string(q)?),
            Some(b't') => self.literal("true", Kind::Bool)?,
            Some(b'f') => self.literal("false", Kind::Bool)?,
            Some(b'n') => self.literal("null", Kind::Null)?,
            Some(b'-' | b'+' | b'.' | b'0'..=b'9') => self.number()?,
            Some(_) => return Err(self.err("expected a value")),
            None => return Err(self.err("unexpected end of file")),
        };
        Ok(Node {
            start,
            end: self.i,
            kind,
        })
    }

    fn literal(&mut self, word: &str, kind: Kind) -> Result<Kind, SyntaxError> {
        if self.s[self.i..].starts_with(word.as_bytes()) {
            self.i += word.len();
            Ok(kind)
        } else {
            Err(self.err("expected a value"))
        }
    }

    fn number(&mut self) -> Result<Kind, SyntaxError> {
        let start = self.i;
        while let Some(b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9') = self.peek() {
            self.i += 1;
        }
        let t = &self.text[start..self.i];
        let body = t.strip_prefix(['-', '+']).unwrap_or(t);
        if !body.bytes().any(|c| c.is_ascii_digit()) || t.parse::<f64>().is_err() {
            self.i = start;
            return Err(self.err("invalid number"));
        }
        Ok(Kind::Num)
    }

    fn string(&mut self, q: u8) -> Result<String, SyntaxError> {
        let start = self.i;
        self.i += 1;
        let mut out = String::new();
        loop {
            let Some(c) = self.peek() else {
                self.i = start;
                return Err(self.err("unterminated string"));
            };
            match c {
                _ if c == q => {
                    self.i += 1;
                    return Ok(out);
                }
                b'\\' => {
                    self.i += 1;
                    let Some(e) = self.peek() else {
                        return Err(self.err("unterminated string"));
                    };
                    self.i += 1;
                    match e {
                        b'"' => out.push('"'),
                        b'\'' => out.push('\''),
                        b'\\' => out.push('\\'),
                        b'/' => out.push('/'),
                        b'b' => out.push('\u{8}'),
                        b'f' => out.push('\u{c}'),
                        b'n' => out.push('\n'),
                        b'r' => out.push('\r'),
                        b't' => out.push('\t'),
                        b'u' => {
                            let hi = self.hex4()?;
                            let ch = if (0xD800..0xDC00).contains(&hi)
                                && self.s[self.i..].starts_with(b"\\u")
                            {
                                self.i += 2;
                                let lo = self.hex4()?;
                                char::from_u32(
                                    0x10000
                                        + ((hi - 0xD800) << 10)
                                        + (lo.wrapping_sub(0xDC00) & 0x3FF),
                                )
                            } else {
                                char::from_u32(hi)
                            };
                            out.push(ch.unwrap_or('\u{fffd}'));
                        }
                        b'\n' => {} // JSON5 line continuation.
                        _ => return Err(self.err("invalid escape in string")),
                    }
                }
                b'\n' | b'\r' => return Err(self.err("line break inside a string")),
                _ => {
                    // Copy one UTF-8 character.
                    let ch_len = utf8_len(c);
                    out.push_str(&self.text[self.i..self.i + ch_len]);
                    self.i += ch_len;
                }
            }
        }
    }

    fn hex4(&mut self) -> Result<u32, SyntaxError> {
        let h = self
            .text
            .get(self.i..self.i + 4)
            .ok_or_else(|| self.err("invalid \\u escape"))?;
        let v = u32::from_str_radix(h, 16).map_err(|_| self.err("invalid \\u escape"))?;
        self.i += 4;
        Ok(v)
    }

    fn key(&mut self) -> Result<String, SyntaxError> {
        match self.peek() {
            Some(q @ (b'"' | b'\'')) => self.string(q),
            Some(c) if c.is_ascii_alphabetic() || c == b'_' || c == b'$' => {
                let start = self.i;
                while let Some(c) = self.peek() {
                    if c.is_ascii_alphanumeric() || c == b'_' || c == b'$' {
                        self.i += 1;
                    } else {
                        break;
                    }
                }
                Ok(self.text[start..self.i].to_owned())
            }
            _ => Err(self.err("expected a key")),
        }
    }

    fn container(&mut self, depth: usize, close: u8) -> Result<Vec<Item>, SyntaxError> {
        let is_obj = close == b'}';
        self.i += 1;
        let mut items = Vec::new();
        loop {
            self.skip()?;
            match self.peek() {
                Some(c) if c == close => {
                    self.i += 1;
                    return Ok(items);
                }
                None => return Err(self.err("unexpected end of file")),
                _ => {}
            }
            let start = self.i;
            let (key, colon) = if is_obj {
                let k = self.key()?;
                self.skip()?;
                if self.peek() != Some(b':') {
                    return Err(self.err("expected `:`"));
                }
                let colon = self.i;
                self.i += 1;
                self.skip()?;
                (Some(k), Some(colon))
            } else {
                (None, None)
            };
            let value = self.value(depth + 1)?;
            self.skip()?;
            let comma = match self.peek() {
                Some(b',') => {
                    self.i += 1;
                    Some(self.i - 1)
                }
                Some(c) if c == close => None,
                _ => {
                    return Err(self.err(if is_obj {
                        "expected `,` or `}`"
                    } else {
                        "expected `,` or `]`"
                    }));
                }
            };
            items.push(Item {
                key,
                start,
                colon,
                value,
                comma,
            });
        }
    }
}

fn utf8_len(first: u8) -> usize {
    match first {
        0xF0..=0xFF => 4,
        0xE0..=0xEF => 3,
        0xC0..=0xDF => 2,
        _ => 1,
    }
}

/// 1-based line and column (in characters) of byte `pos`.
pub(crate) fn line_col(text: &str, pos: usize) -> (usize, usize) {
    let pos = pos.min(text.len());
    let before = text.get(..pos).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

/// A value to write.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum J {
    Str(String),
    Bool(bool),
    Arr(Vec<J>),
    Obj(Vec<(String, J)>),
    /// Text copied verbatim (e.g. a value from the pristine backup).
    Raw(String),
}

impl J {
    pub(crate) fn s(v: impl Into<String>) -> J {
        J::Str(v.into())
    }

    pub(crate) fn obj<const N: usize>(pairs: [(&str, J); N]) -> J {
        J::Obj(pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
    }
}

/// Quotes `s` as a JSON string.
pub(crate) fn quote(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| format!("\"{}\"", s.escape_default()))
}

/// How new text is laid out, learnt from the file.
#[derive(Debug, Clone)]
struct Style {
    nl: &'static str,
    unit: String,
    /// The root object is on one line: insert members inline.
    compact: bool,
    /// `"key": value` (true) or `"key":value`.
    colon_space: bool,
}

/// Edits one JSON(C) document in place of its text.
#[derive(Debug, Clone)]
pub(crate) struct JsonDoc {
    path: PathBuf,
    text: String,
    style: Style,
    /// The file was empty (or missing): the result gets a final newline.
    fresh: bool,
    /// The text as read, when it was blank (whitespace and comments only).
    blank: Option<String>,
}

impl JsonDoc {
    /// Reads `text` (`None` = missing file) as a document whose root must be
    /// an object; a missing or blank file is an empty object.
    pub(crate) fn open(path: &Path, text: Option<&str>) -> Result<Self, PlanError> {
        let text = text.unwrap_or("");
        let root = parse(text).map_err(|e| PlanError::Malformed {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        let Some(root) = root else {
            let nl = if text.contains("\r\n") { "\r\n" } else { "\n" };
            let style = Style {
                nl,
                unit: "  ".into(),
                compact: false,
                colon_space: true,
            };
            // A blank file (or one with only comments) gets an object after
            // whatever was there.
            let mut t = text.trim_end().to_owned();
            if !t.is_empty() {
                t.push_str(nl);
            }
            t.push_str("{}");
            return Ok(Self {
                path: path.to_path_buf(),
                text: t,
                style,
                fresh: true,
                blank: Some(text.to_owned()),
            });
        };
        if !root.is_object() {
            return Err(PlanError::UnexpectedRoot {
                path: path.to_path_buf(),
                expected: "a JSON object",
                found: format!("{} (JSON)", root.kind.describe()),
            });
        }
        let style = detect_style(text, &root);
        Ok(Self {
            path: path.to_path_buf(),
            text: text.to_owned(),
            style,
            fresh: false,
            blank: None,
        })
    }

    /// The document's text now.
    pub(crate) fn into_text(self) -> String {
        let mut t = self.text;
        if self.fresh && !t.ends_with('\n') {
            t.push_str(self.style.nl);
        }
        t
    }

    pub(crate) fn text(&self) -> &str {
        &self.text
    }

    /// The text as read, when the file was blank (whitespace and comments
    /// only) and its object is still empty: there is nothing in it to
    /// write back, so the file can stay as it was.
    pub(crate) fn untouched_blank(&self) -> Option<&str> {
        let blank = self.blank.as_deref()?;
        let empty = self.root().ok()?.items().is_some_and(<[Item]>::is_empty);
        empty.then_some(blank)
    }

    fn root(&self) -> Result<Node, PlanError> {
        match parse(&self.text) {
            Ok(Some(n)) => Ok(n),
            Ok(None) => Err(self.internal("document vanished")),
            Err(e) => Err(self.internal(&e.to_string())),
        }
    }

    fn internal(&self, what: &str) -> PlanError {
        PlanError::Malformed {
            path: self.path.clone(),
            reason: format!("internal error while editing ({what}); nothing was written"),
        }
    }

    /// The value at `path` (object keys), if present.
    pub(crate) fn get(&self, path: &[&str]) -> Option<Node> {
        let mut node = self.root().ok()?;
        for key in path {
            node = node.member(key)?.value.clone();
        }
        Some(node)
    }

    /// The string at `path`, if present and a string.
    pub(crate) fn get_str(&self, path: &[&str]) -> Option<String> {
        self.get(path).and_then(|n| n.as_str().map(str::to_owned))
    }

    /// The text of `node`.
    pub(crate) fn raw(&self, node: &Node) -> &str {
        &self.text[node.start..node.end]
    }

    /// Fails unless the value at `path` is absent or an object.
    pub(crate) fn expect_object(&self, path: &[&str]) -> Result<(), PlanError> {
        for n in 1..=path.len() {
            if let Some(node) = self.get(&path[..n])
                && !node.is_object()
            {
                return Err(self.wrong_type(&path[..n], "an object", node.kind.describe()));
            }
        }
        Ok(())
    }

    pub(crate) fn wrong_type(
        &self,
        path: &[&str],
        expected: &'static str,
        found: &str,
    ) -> PlanError {
        PlanError::WrongType {
            path: self.path.clone(),
            key: path.join("."),
            expected,
            found: found.to_owned(),
        }
    }

    /// Applies edits given in text order (edits at the same position end
    /// up in list order).
    fn splice(&mut self, edits: Vec<(usize, usize, String)>) -> Result<(), PlanError> {
        let mut edits: Vec<(usize, (usize, usize, String))> =
            edits.into_iter().enumerate().collect();
        edits.sort_by_key(|(i, e)| std::cmp::Reverse((e.0, *i)));
        for (_, (s, e, t)) in edits {
            self.text.replace_range(s..e, &t);
        }
        self.root().map(|_| ())
    }

    /// Sets the value at `path`, creating missing parent objects; fails when
    /// a parent exists but is not an object.
    pub(crate) fn set(&mut self, path: &[&str], value: J) -> Result<(), PlanError> {
        let mut node = self.root()?;
        for (i, key) in path.iter().enumerate() {
            let found = node.member(key).cloned();
            match found {
                Some(item) if i + 1 == path.len() => {
                    let indent = line_indent(&self.text, item.start).to_owned();
                    let rendered = self.render(&value, &indent);
                    if self.raw(&item.value) == rendered {
                        return Ok(());
                    }
                    return self.splice(vec![(item.value.start, item.value.end, rendered)]);
                }
                Some(item) => {
                    if !item.value.is_object() {
                        return Err(self.wrong_type(
                            &path[..=i],
                            "an object",
                            item.value.kind.describe(),
                        ));
                    }
                    node = item.value;
                }
                None => {
                    // Build the rest of the path as nested objects.
                    let mut v = value;
                    for k in path[i + 1..].iter().rev() {
                        v = J::Obj(vec![((*k).to_owned(), v)]);
                    }
                    return self.insert(&node, Some(key), &v);
                }
            }
        }
        Err(self.internal("empty key path"))
    }

    /// Removes the member at `path` (every duplicate of it). Returns whether
    /// anything was removed.
    pub(crate) fn remove(&mut self, path: &[&str]) -> Result<bool, PlanError> {
        let Some((last, parent_path)) = path.split_last() else {
            return Ok(false);
        };
        let mut removed = false;
        loop {
            let Some(parent) = self.get(parent_path) else {
                return Ok(removed);
            };
            let Some(items) = parent.items() else {
                return Ok(removed);
            };
            let Some(idx) = items.iter().rposition(|i| i.key.as_deref() == Some(*last)) else {
                return Ok(removed);
            };
            self.remove_item(&parent, idx)?;
            removed = true;
        }
    }

    /// Removes the array elements at `path` for which `pred` holds.
    pub(crate) fn remove_elements(
        &mut self,
        path: &[&str],
        pred: impl Fn(&JsonDoc, &Node) -> bool,
    ) -> Result<bool, PlanError> {
        let mut removed = false;
        loop {
            let Some(arr) = self.get(path) else {
                return Ok(removed);
            };
            let Kind::Array(items) = &arr.kind else {
                return Ok(removed);
            };
            let Some(idx) = items.iter().position(|i| pred(self, &i.value)) else {
                return Ok(removed);
            };
            self.remove_item(&arr, idx)?;
            removed = true;
        }
    }

    /// Replaces the first element at `path` (an array) for which `pred`
    /// holds with `value`, or appends `value`. A missing array is created.
    pub(crate) fn upsert_element(
        &mut self,
        path: &[&str],
        pred: impl Fn(&JsonDoc, &Node) -> bool,
        value: J,
    ) -> Result<(), PlanError> {
        let Some(arr) = self.get(path) else {
            return self.set(path, J::Arr(vec![value]));
        };
        let Kind::Array(items) = &arr.kind else {
            return Err(self.wrong_type(path, "an array", arr.kind.describe()));
        };
        if let Some(item) = items.iter().find(|i| pred(self, &i.value)) {
            let indent = line_indent(&self.text, item.start).to_owned();
            let rendered = self.render(&value, &indent);
            if self.raw(&item.value) == rendered {
                return Ok(());
            }
            return self.splice(vec![(item.value.start, item.value.end, rendered)]);
        }
        self.insert(&arr, None, &value)
    }

    /// Removes `path` when it is an empty object or array.
    pub(crate) fn remove_if_empty(&mut self, path: &[&str]) -> Result<bool, PlanError> {
        match self.get(path) {
            Some(n) if n.items().is_some_and(<[Item]>::is_empty) => self.remove(path),
            _ => Ok(false),
        }
    }

    /// Renders `v` for a position whose line is indented by `indent`.
    fn render(&self, v: &J, indent: &str) -> String {
        let mut out = String::new();
        self.render_into(v, indent, &mut out);
        out
    }

    fn render_into(&self, v: &J, indent: &str, out: &mut String) {
        let st = &self.style;
        let colon = if st.colon_space { ": " } else { ":" };
        match v {
            J::Str(s) => out.push_str(&quote(s)),
            J::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            J::Raw(r) => out.push_str(r),
            J::Arr(items) if items.is_empty() => out.push_str("[]"),
            J::Obj(items) if items.is_empty() => out.push_str("{}"),
            J::Arr(_) | J::Obj(_) => {
                let (open, close) = if matches!(v, J::Arr(_)) {
                    ('[', ']')
                } else {
                    ('{', '}')
                };
                let entries: Vec<(Option<&str>, &J)> = match v {
                    J::Arr(a) => a.iter().map(|x| (None, x)).collect(),
                    J::Obj(o) => o.iter().map(|(k, x)| (Some(k.as_str()), x)).collect(),
                    _ => Vec::new(),
                };
                out.push(open);
                let inner = format!("{indent}{}", st.unit);
                for (n, (k, x)) in entries.iter().enumerate() {
                    if n > 0 {
                        out.push(',');
                        if st.compact && st.colon_space {
                            out.push(' ');
                        }
                    }
                    if !st.compact {
                        out.push_str(st.nl);
                        out.push_str(&inner);
                    }
                    if let Some(k) = k {
                        out.push_str(&quote(k));
                        out.push_str(colon);
                    }
                    self.render_into(x, &inner, out);
                }
                if !st.compact {
                    out.push_str(st.nl);
                    out.push_str(indent);
                }
                out.push(close);
            }
        }
    }

    fn member_text(&self, key: Option<&str>, v: &J, indent: &str) -> String {
        let colon = if self.style.colon_space { ": " } else { ":" };
        let mut s = key
            .map(|k| format!("{}{colon}", quote(k)))
            .unwrap_or_default();
        s.push_str(&self.render(v, indent));
        s
    }

    /// Appends a member (or array element) to container `c`.
    fn insert(&mut self, c: &Node, key: Option<&str>, v: &J) -> Result<(), PlanError> {
        let items = c.items().unwrap_or(&[]);
        let close = c.end - 1;
        let nl = self.style.nl;
        let sep = if self.style.colon_space { " " } else { "" };
        let Some(last) = items.last() else {
            if self.style.compact {
                let text = self.member_text(key, v, "");
                return self.splice(vec![(close, close, text)]);
            }
            let outer = line_indent(&self.text, c.start).to_owned();
            let inner = format!("{outer}{}", self.style.unit);
            let text = self.member_text(key, v, &inner);
            // After any comment inside the braces, before trailing blanks.
            let mut p = close;
            while p > c.start + 1 && self.text.as_bytes()[p - 1].is_ascii_whitespace() {
                p -= 1;
            }
            let gap_has_nl = self.text[p..close].contains('\n');
            let mut ins = format!("{nl}{inner}{text}");
            if !gap_has_nl {
                ins.push_str(nl);
                ins.push_str(&outer);
            }
            return self.splice(vec![(p, p, ins)]);
        };
        if !self.style.compact && own_line(&self.text, last.start) {
            let indent = line_indent(&self.text, last.start).to_owned();
            let text = self.member_text(key, v, &indent);
            if let Some(cp) = last.comma {
                if let Some(eol) = end_of_line(&self.text, cp + 1) {
                    return self.splice(vec![(eol, eol, format!("{nl}{indent}{text},"))]);
                }
            } else if let Some(eol) = end_of_line(&self.text, last.value.end) {
                return self.splice(vec![
                    (last.value.end, last.value.end, ",".to_owned()),
                    (eol, eol, format!("{nl}{indent}{text}")),
                ]);
            }
        }
        // Inline, on the line where the last member's value ends: indented
        // like that line, as `set` indents a value it replaces there.
        let at = last.comma.unwrap_or(last.value.end);
        let text = self.member_text(key, v, line_indent(&self.text, at));
        match last.comma {
            Some(cp) => self.splice(vec![(cp + 1, cp + 1, format!("{sep}{text},"))]),
            None => self.splice(vec![(
                last.value.end,
                last.value.end,
                format!(",{sep}{text}"),
            )]),
        }
    }

    /// Removes item `idx` of container `c` with its separator and, when it
    /// sits on lines of its own, those lines.
    fn remove_item(&mut self, c: &Node, idx: usize) -> Result<(), PlanError> {
        let items = c.items().unwrap_or(&[]);
        let Some(it) = items.get(idx) else {
            return Ok(());
        };
        let prev = idx.checked_sub(1).and_then(|p| items.get(p));
        let next = items.get(idx + 1);
        let mut edits = Vec::new();
        if own_line(&self.text, it.start) {
            // From the line break before the item.
            let mut cut = self.text[..it.start].rfind('\n').unwrap_or(0);
            if cut > 0 && self.text.as_bytes()[cut - 1] == b'\r' {
                cut -= 1;
            }
            let cut = cut.max(c.start + 1);
            match (it.comma, next) {
                (Some(cp), _) => edits.push((cut, cp + 1, String::new())),
                (None, _) => {
                    edits.push((cut, it.value.end, String::new()));
                    if let Some(pc) = prev.and_then(|p| p.comma) {
                        edits.push((pc, pc + 1, String::new()));
                    }
                }
            }
        } else if let Some(n) = next {
            edits.push((it.start, n.start, String::new()));
        } else if let Some(pc) = prev.and_then(|p| p.comma) {
            edits.push((pc, it.value.end, String::new()));
        } else {
            edits.push((
                it.start,
                it.comma.map_or(it.value.end, |cp| cp + 1),
                String::new(),
            ));
        }
        self.splice(edits)?;
        // An object left with only whitespace inside collapses to `{}`.
        if items.len() == 1 {
            let root = self.root()?;
            if let Some(n) = find_at(&root, c.start) {
                let inner = &self.text[n.start + 1..n.end - 1];
                if !inner.is_empty() && inner.trim().is_empty() {
                    self.splice(vec![(n.start + 1, n.end - 1, String::new())])?;
                }
            }
        }
        Ok(())
    }
}

/// The container node that starts at `pos`.
fn find_at(n: &Node, pos: usize) -> Option<&Node> {
    if n.start == pos && n.items().is_some() {
        return Some(n);
    }
    n.items()?
        .iter()
        .find(|i| i.value.start <= pos && pos < i.value.end)
        .and_then(|i| find_at(&i.value, pos))
}

fn detect_style(text: &str, root: &Node) -> Style {
    let nl = if text.contains("\r\n") { "\r\n" } else { "\n" };
    let items = root.items().unwrap_or(&[]);
    let compact = items
        .first()
        .is_some_and(|first| !text[root.start..first.start].contains('\n'));
    let unit = first_indent(text, root).unwrap_or_else(|| "  ".to_owned());
    let colon_space = items.first().and_then(|i| i.colon).is_none_or(|c| {
        text.as_bytes()
            .get(c + 1)
            .is_none_or(|b| b.is_ascii_whitespace())
    });
    Style {
        nl,
        unit,
        compact,
        colon_space,
    }
}

/// The indentation unit: the indentation of the first member on its own
/// line, relative to its container's line.
fn first_indent(text: &str, n: &Node) -> Option<String> {
    let items = n.items()?;
    if let Some(first) = items.first()
        && own_line(text, first.start)
    {
        let outer = line_indent(text, n.start);
        let inner = line_indent(text, first.start);
        if let Some(unit) = inner.strip_prefix(outer)
            && !unit.is_empty()
        {
            return Some(unit.to_owned());
        }
    }
    items.iter().find_map(|i| first_indent(text, &i.value))
}

/// The leading whitespace of the line holding `pos`.
pub(crate) fn line_indent(text: &str, pos: usize) -> &str {
    let start = text[..pos].rfind('\n').map_or(0, |p| p + 1);
    let line = &text[start..];
    let n = line.len() - line.trim_start_matches([' ', '\t']).len();
    &line[..n]
}

/// Only whitespace precedes `pos` on its line.
fn own_line(text: &str, pos: usize) -> bool {
    let start = text[..pos].rfind('\n').map_or(0, |p| p + 1);
    text[start..pos].bytes().all(|b| b == b' ' || b == b'\t')
}

/// Where the line that continues at `pos` ends (before `\r\n` / `\n`),
/// skipping spaces and a trailing comment; `None` if other content follows
/// on the same line.
fn end_of_line(text: &str, pos: usize) -> Option<usize> {
    let b = text.as_bytes();
    let mut i = pos;
    loop {
        match b.get(i) {
            None => return Some(i),
            Some(b' ' | b'\t') => i += 1,
            Some(b'\r') if b.get(i + 1) == Some(&b'\n') => return Some(i),
            Some(b'\n') => return Some(i),
            Some(b'/') if b.get(i + 1) == Some(&b'/') => {
                let e = text[i..].find('\n').map_or(text.len(), |p| i + p);
                return Some(if e > 0 && b.get(e - 1) == Some(&b'\r') {
                    e - 1
                } else {
                    e
                });
            }
            Some(b'/') if b.get(i + 1) == Some(&b'*') => {
                let e = text[i + 2..].find("*/")? + i + 2;
                if text[i..e].contains('\n') {
                    return None;
                }
                i = e + 2;
            }
            Some(_) => return None,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn doc(t: &str) -> JsonDoc {
        JsonDoc::open(Path::new("/x.json"), Some(t)).unwrap()
    }

    #[test]
    fn parses_jsonc_and_json5_bits() {
        let t = "// c\n{a: 1, 'b': 'x\\'y', \"c\": [1, 2,], /* d */ \"d\": {\"e\": null},}\n";
        let n = parse(t).unwrap().unwrap();
        assert_eq!(n.member("b").unwrap().value.as_str(), Some("x'y"));
        assert!(n.member("a").is_some());
        assert!(parse("{\"a\": }").is_err());
        let e = parse("{\n  \"a\": 1\n  \"b\": 2\n}").unwrap_err();
        assert_eq!((e.line, e.col), (3, 3));
        assert!(parse("  // only\n").unwrap().is_none());
        assert_eq!(
            parse("\"\\ud83d\\ude00\"").unwrap().unwrap().as_str(),
            Some("\u{1F600}")
        );
    }

    #[test]
    fn set_and_remove_round_trip_pretty() {
        let orig = "{\n  \"a\": 1, // one\n  \"b\": {\n    \"c\": true\n  }\n}\n";
        let mut d = doc(orig);
        d.set(&["b", "x"], J::s("y")).unwrap();
        d.set(&["n", "m"], J::obj([("k", J::Arr(vec![J::s("p")]))]))
            .unwrap();
        assert_eq!(
            d.text(),
            "{\n  \"a\": 1, // one\n  \"b\": {\n    \"c\": true,\n    \"x\": \"y\"\n  },\n  \"n\": {\n    \"m\": {\n      \"k\": [\n        \"p\"\n      ]\n    }\n  }\n}\n"
        );
        d.remove(&["n"]).unwrap();
        d.remove(&["b", "x"]).unwrap();
        assert_eq!(d.text(), orig);
    }

    #[test]
    fn insert_after_trailing_comment_and_trailing_comma() {
        let orig = "{\n\t\"a\": 1 // keep\n}";
        let mut d = doc(orig);
        d.set(&["z"], J::Bool(true)).unwrap();
        assert_eq!(d.text(), "{\n\t\"a\": 1, // keep\n\t\"z\": true\n}");
        d.remove(&["z"]).unwrap();
        assert_eq!(d.text(), orig);

        let orig = "{\n  \"a\": 1,\n}";
        let mut d = doc(orig);
        d.set(&["z"], J::Bool(true)).unwrap();
        assert_eq!(d.text(), "{\n  \"a\": 1,\n  \"z\": true,\n}");
        d.remove(&["z"]).unwrap();
        assert_eq!(d.text(), orig);
    }

    #[test]
    fn compact_and_empty_objects() {
        let mut d = doc("{\"a\":1}");
        d.set(&["b"], J::s("x")).unwrap();
        assert_eq!(d.text(), "{\"a\":1,\"b\":\"x\"}");
        d.remove(&["a"]).unwrap();
        assert_eq!(d.text(), "{\"b\":\"x\"}");
        d.remove(&["b"]).unwrap();
        assert_eq!(d.text(), "{}");

        let mut d = doc("{}");
        d.set(&["e", "k"], J::s("v")).unwrap();
        assert_eq!(d.text(), "{\n  \"e\": {\n    \"k\": \"v\"\n  }\n}");
        d.remove(&["e", "k"]).unwrap();
        assert_eq!(d.text(), "{\n  \"e\": {}\n}");
        d.remove(&["e"]).unwrap();
        assert_eq!(d.text(), "{}");
    }

    #[test]
    fn setting_again_after_an_inline_insert_changes_nothing() {
        // Found by the `installer_editors` fuzz target: the last member's
        // value ends on a less indented line than it starts, so the new
        // member went inline there, indented like the line the last member
        // starts on; setting it again re-indented it.
        let orig = "{\n  \"p\": {\n    \"a\": {\n      \"x\": 1\n}  }\n}\n";
        let v = || J::obj([("k", J::obj([("m", J::s("v"))]))]);
        let mut d = doc(orig);
        d.set(&["p", "t"], v()).unwrap();
        let once = d.text().to_owned();
        d.set(&["p", "t"], v()).unwrap();
        assert_eq!(d.text(), once);
        assert_eq!(d.get_str(&["p", "t", "k", "m"]).as_deref(), Some("v"));
    }

    #[test]
    fn crlf_and_first_member_removal() {
        let mut d = doc("{\r\n    \"a\": 1\r\n}\r\n");
        d.set(&["b"], J::s("x")).unwrap();
        assert_eq!(d.text(), "{\r\n    \"a\": 1,\r\n    \"b\": \"x\"\r\n}\r\n");
        d.remove(&["a"]).unwrap();
        assert_eq!(d.text(), "{\r\n    \"b\": \"x\"\r\n}\r\n");
    }

    #[test]
    fn arrays() {
        let mut d = doc("{\n  \"l\": [\n    {\"id\": \"a\"}\n  ]\n}");
        let is_b = |d: &JsonDoc, n: &Node| {
            let _ = d;
            n.member("id")
                .and_then(|i| i.value.as_str().map(str::to_owned))
                .as_deref()
                == Some("b")
        };
        d.upsert_element(&["l"], is_b, J::obj([("id", J::s("b"))]))
            .unwrap();
        assert_eq!(
            d.text(),
            "{\n  \"l\": [\n    {\"id\": \"a\"},\n    {\n      \"id\": \"b\"\n    }\n  ]\n}"
        );
        d.remove_elements(&["l"], is_b).unwrap();
        assert_eq!(d.text(), "{\n  \"l\": [\n    {\"id\": \"a\"}\n  ]\n}");
    }

    #[test]
    fn wrong_types_and_roots() {
        assert!(matches!(
            JsonDoc::open(Path::new("/x.json"), Some("[1]")),
            Err(PlanError::UnexpectedRoot { .. })
        ));
        let mut d = doc("{\"env\": []}");
        assert!(matches!(
            d.set(&["env", "A"], J::s("x")),
            Err(PlanError::WrongType { .. })
        ));
        let d = JsonDoc::open(Path::new("/x.json"), None).unwrap();
        assert_eq!(d.into_text(), "{}\n");
    }

    mod props {
        use super::*;
        use proptest::prelude::*;
        use serde_json::Value;

        fn leaf() -> impl Strategy<Value = Value> {
            prop_oneof![
                Just(Value::Null),
                any::<bool>().prop_map(Value::Bool),
                any::<i32>().prop_map(Value::from),
                "[a-z \\\"é/]{0,8}".prop_map(Value::String),
            ]
        }

        fn value() -> impl Strategy<Value = Value> {
            leaf().prop_recursive(3, 24, 4, |inner| {
                prop_oneof![
                    prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                    prop::collection::btree_map("[a-e]{1,2}", inner, 0..4)
                        .prop_map(|m| Value::Object(m.into_iter().collect())),
                ]
            })
        }

        fn object() -> impl Strategy<Value = Value> {
            prop::collection::btree_map("[a-e]{1,2}", value(), 0..5)
                .prop_map(|m| Value::Object(m.into_iter().collect()))
        }

        proptest! {
            /// Setting a new key path and removing it again gives back the
            /// original bytes, and the edited text is the expected JSON.
            #[test]
            fn set_then_remove_round_trips(
                v in object(),
                pretty in any::<bool>(),
                path in prop::collection::vec("[a-g]{1,2}", 1..4),
                new in "[a-z0-9]{0,6}",
            ) {
                let text = if pretty {
                    serde_json::to_string_pretty(&v).unwrap()
                } else {
                    serde_json::to_string(&v).unwrap()
                };
                let keys: Vec<&str> = path.iter().map(String::as_str).collect();
                let mut d = doc(&text);
                // Expected value, or skip when a parent is not an object.
                let mut expected = v.clone();
                let mut cur = &mut expected;
                let mut fresh_at = None;
                for (i, k) in keys.iter().enumerate() {
                    let Value::Object(m) = cur else {
                        prop_assert!(d.set(&keys, J::s(&new)).is_err());
                        return Ok(());
                    };
                    if fresh_at.is_none() && !m.contains_key(*k) {
                        fresh_at = Some(i);
                    }
                    cur = m.entry((*k).to_owned()).or_insert_with(|| {
                        Value::Object(serde_json::Map::new())
                    });
                }
                *cur = Value::String(new.clone());
                d.set(&keys, J::s(&new)).unwrap();
                let got: Value = serde_json::from_str(d.text()).unwrap();
                prop_assert_eq!(&got, &expected);
                if let Some(i) = fresh_at {
                    d.remove(&keys[..=i]).unwrap();
                    prop_assert_eq!(d.text(), text.as_str());
                }
            }
        }
    }
}
