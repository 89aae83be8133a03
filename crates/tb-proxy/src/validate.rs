//! Strict request validation before anything goes upstream: the whole body
//! is checked in one pass without building a tree — RFC 8259 syntax with no
//! trailing data, UTF-8 everywhere, no raw control characters or bad escapes
//! in strings, nesting at most [`MAX_DEPTH`] — and the members the proxy
//! reads are type-checked on the way. A malformed request is the client's
//! problem: it gets a 400 here instead of an upstream error that could count
//! against a healthy upstream's breaker.
//!
//! The verdict (valid or not) equals `serde_json::from_slice::<Value>`'s,
//! lone surrogate escapes included (both refuse `"\ud800"`), with two
//! deliberate exceptions: numbers are checked against the grammar only
//! (serde_json refuses `1e400` as out of range for an f64; RFC 8259 allows
//! it and upstreams parse it), and the depth limit is 128 where serde_json's
//! is 127. Offsets are bytes counted from 0.
//!
//! Two paths give that verdict. The fast one (`fast.rs` over `stage1.rs`,
//! x86_64 with AVX2 and PCLMULQDQ, detected at run time) classifies the
//! body 64 bytes at a time into bit masks, finds the strings by prefix XOR
//! of the unescaped quotes and checks their content with masks, then walks
//! the grammar over the few bytes outside strings only. The scalar scanner
//! below is the other: it runs on CPUs without the fast path and whenever
//! the fast path does not accept a body, so every problem and offset a
//! client sees comes from it. The tests check that the two accept exactly
//! the same bodies with the same facts.

use tb_domain::Protocol;

use crate::error::{ErrorCode, ProxyError};

/// The deepest nesting accepted (the top-level object is depth 1).
pub const MAX_DEPTH: usize = 128;

/// What the proxy needs to know about a request body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestProbe {
    /// The client's `model`.
    pub model: String,
    /// `"stream": true`.
    pub stream: bool,
    /// `"stream_options": {"include_usage": true}`: the client asked for
    /// the usage chunk itself.
    pub usage_requested: bool,
    /// A non-empty top-level `tools` array: routing keeps upstreams whose
    /// tool-call probe failed off the front of the plan.
    pub has_tools: bool,
}

/// What is wrong with a body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    /// Nothing but whitespace.
    #[error("the request body is empty")]
    Empty,
    /// Valid JSON, but not an object.
    #[error("the request body is not a JSON object")]
    NotObject,
    /// A byte sequence that is not UTF-8.
    #[error("invalid UTF-8")]
    InvalidUtf8,
    /// A raw byte below 0x20 inside a string.
    #[error("unescaped control character in a string")]
    ControlCharacter,
    /// A backslash not followed by a JSON escape.
    #[error("invalid escape")]
    InvalidEscape,
    /// A `\uD800`–`\uDFFF` escape that is not half of a pair.
    #[error("lone surrogate escape")]
    LoneSurrogate,
    /// A number outside the JSON grammar.
    #[error("invalid number")]
    InvalidNumber,
    /// Not `true`, `false` or `null`.
    #[error("invalid literal")]
    InvalidLiteral,
    /// No value where one must be.
    #[error("expected a value")]
    ExpectedValue,
    /// No string where an object key must be.
    #[error("expected a string key")]
    ExpectedKey,
    /// No `:` after a key.
    #[error("expected `:`")]
    ExpectedColon,
    /// An object member not followed by `,` or `}`.
    #[error("expected `,` or `}}`")]
    ExpectedObjectEnd,
    /// An array element not followed by `,` or `]`.
    #[error("expected `,` or `]`")]
    ExpectedArrayEnd,
    /// The body ends inside a value.
    #[error("unexpected end of the body")]
    Truncated,
    /// Something after the top-level value.
    #[error("trailing data after the JSON value")]
    Trailing,
    /// More than [`MAX_DEPTH`] nested containers.
    #[error("nesting deeper than 128")]
    TooDeep,
    /// A member the proxy reads appears twice (which one counts upstream is
    /// not ours to guess).
    #[error("`{0}` appears twice")]
    Duplicate(&'static str),
    /// No `model` member.
    #[error("no `model`")]
    MissingModel,
    /// A member the proxy reads has the wrong type.
    #[error("`{field}` must be {expected}")]
    WrongType {
        /// The member.
        field: &'static str,
        /// What it must be.
        expected: &'static str,
    },
}

/// A refused body: the first problem and where it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{problem} at byte {offset}")]
pub struct Invalid {
    /// What is wrong.
    pub problem: Problem,
    /// Byte offset of the problem, from 0.
    pub offset: usize,
}

impl Invalid {
    /// The client's 400, with the problem and its offset in the message.
    pub(crate) fn to_proxy_error(self) -> ProxyError {
        let Invalid { problem, offset } = self;
        let hint =
            "send a JSON object like {\"model\": \"…\", …} with Content-Type: application/json";
        let (code, message) = match problem {
            Problem::Empty | Problem::NotObject => (ErrorCode::InvalidJson, format!("{problem}; {hint}")),
            Problem::MissingModel => (
                ErrorCode::MissingModel,
                "the request body has no \"model\"; add the model id, e.g. \"model\": \"gpt-4o-mini\"".to_string(),
            ),
            Problem::WrongType { field: "model", .. } => {
                (ErrorCode::MissingModel, format!("{problem} (byte {offset})"))
            }
            Problem::WrongType { .. } | Problem::Duplicate(_) => {
                (ErrorCode::InvalidField, format!("{problem} (byte {offset})"))
            }
            _ => (
                ErrorCode::InvalidJson,
                format!("the request body is not valid JSON: {self}"),
            ),
        };
        ProxyError::new(code, message)
    }
}

/// Validates a request body for `protocol` and returns what the proxy
/// needs from it, or the first problem.
pub fn validate(body: &[u8], protocol: Protocol) -> Result<RequestProbe, Invalid> {
    // One bulk check up front: outside strings any non-ASCII byte is a
    // syntax error anyway, so the scanner only has to find `"`, `\` and
    // control bytes inside strings.
    let text = utf8(body)?;
    let first = body.iter().position(|b| !is_ws(*b));
    match first.map(|i| (i, body[i])) {
        None => return Err(invalid(Problem::Empty, body.len())),
        Some((_, b'{')) => {}
        Some((i, _)) => {
            // A syntax error beats "not an object": it is the first problem.
            check_syntax(body)?;
            return Err(invalid(Problem::NotObject, i));
        }
    }
    let facts = match fast::scan(body, Some(protocol)) {
        Some(facts) => facts,
        None => {
            // Invalid, or no fast path on this CPU: the scalar scanner
            // decides, and names the problem and its offset.
            let mut scan = Scan::new(body, Some(protocol));
            scan.run()?;
            scan.facts
        }
    };
    facts.into_probe(text, body.len())
}

/// Validates JSON syntax only (any top-level value, no member rules). The
/// body's UTF-8 must be checked by the caller if it matters.
pub fn check_syntax(body: &[u8]) -> Result<(), Invalid> {
    if fast::scan(body, None).is_some() {
        return Ok(());
    }
    Scan::new(body, None).run()
}

/// The body as text. simdutf8's vectorised check (several times std's on
/// long text) decides; std's, only on failure, finds the offset.
fn utf8(body: &[u8]) -> Result<&str, Invalid> {
    simdutf8::basic::from_utf8(body).map_err(|_| {
        let offset = std::str::from_utf8(body).map_or_else(|e| e.valid_up_to(), |_| 0);
        invalid(Problem::InvalidUtf8, offset)
    })
}

fn invalid(problem: Problem, offset: usize) -> Invalid {
    Invalid { problem, offset }
}

fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\n' | b'\r' | b'\t')
}

/// Bytes that end a run of plain string content.
#[inline(always)]
fn special(c: u8) -> bool {
    (c == b'"') | (c == b'\\') | (c < 0x20)
}

/// Whether a 64-byte chunk holds a `"`, `\` or control byte. Fixed size and
/// branch-free so LLVM vectorises it (the crate forbids `unsafe`, so no
/// explicit intrinsics).
#[inline(always)]
fn any_special(chunk: &[u8; 64]) -> bool {
    let mut hit = 0u8;
    for &c in chunk {
        hit |= u8::from(special(c));
    }
    hit != 0
}

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGH: u64 = 0x8080_8080_8080_8080;
const LOW7: u64 = 0x7f7f_7f7f_7f7f_7f7f;

/// The high bit of each byte of `w` set where that byte is `"`, `\` or
/// below 0x20, and nowhere else (SWAR: the adds never carry across bytes,
/// so the flags are exact, not just "somewhere in the word").
#[inline(always)]
fn special_bytes(w: u64) -> u64 {
    let zero = |t: u64| !(((t & LOW7) + LOW7) | t) & HIGH;
    let quote = zero(w ^ (ONES * u64::from(b'"')));
    let backslash = zero(w ^ (ONES * u64::from(b'\\')));
    let control = !(((w & LOW7) + ONES * 0x60) | w) & HIGH;
    quote | backslash | control
}

/// The index of the next `"`, `\` or control byte at or after `i`, or
/// `None` at the end of the body. Word by word; after a few clean words
/// (a long run of text) 64 bytes at a time.
#[inline(always)]
fn next_special(b: &[u8], mut i: usize) -> Option<usize> {
    let mut clean = 0u32;
    loop {
        if clean == 4 {
            while let Some(chunk) = b.get(i..).and_then(|r| r.first_chunk::<64>()) {
                if any_special(chunk) {
                    break;
                }
                i += 64;
            }
            clean = 0;
        }
        let Some(word) = b.get(i..).and_then(|r| r.first_chunk::<8>()) else {
            return b[i.min(b.len())..]
                .iter()
                .position(|&c| special(c))
                .map(|k| i + k);
        };
        let flags = special_bytes(u64::from_le_bytes(*word));
        if flags != 0 {
            return Some(i + (flags.trailing_zeros() / 8) as usize);
        }
        i += 8;
        clean += 1;
    }
}

/// The members the proxy reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    Other,
    Model,
    Stream,
    StreamOptions,
    IncludeUsage,
    N,
    Size,
    Quality,
    OutputFormat,
    /// Read for routing only; never type-checked or refused when repeated
    /// (the upstream judges `tools`).
    Tools,
}

impl Field {
    fn name(self) -> &'static str {
        match self {
            Field::Other => "",
            Field::Model => "model",
            Field::Stream => "stream",
            Field::StreamOptions => "stream_options",
            Field::IncludeUsage => "stream_options.include_usage",
            Field::N => "n",
            Field::Size => "size",
            Field::Quality => "quality",
            Field::OutputFormat => "output_format",
            Field::Tools => "tools",
        }
    }

    /// A top-level member by its decoded name; the image members only
    /// matter (tb-billing's `RequestFacts`) for image generations.
    fn top_level(key: &[u8], protocol: Protocol) -> Field {
        let images = protocol.is_images();
        match key {
            b"model" => Field::Model,
            b"stream" => Field::Stream,
            b"stream_options" => Field::StreamOptions,
            b"tools" => Field::Tools,
            b"n" if images => Field::N,
            b"size" if images => Field::Size,
            b"quality" if images => Field::Quality,
            b"output_format" if images => Field::OutputFormat,
            _ => Field::Other,
        }
    }

    /// Whether a value starting with `first` has an acceptable type, and
    /// what it must be otherwise. `null` is accepted wherever the APIs
    /// document a member as nullable (all but `model`).
    fn accepts(self, first: u8) -> Result<(), &'static str> {
        let (ok, expected) = match self {
            Field::Other | Field::Tools => (true, ""),
            Field::Model => (first == b'"', "a non-empty string"),
            Field::Stream | Field::IncludeUsage => {
                (matches!(first, b't' | b'f' | b'n'), "a boolean")
            }
            Field::StreamOptions => (matches!(first, b'{' | b'n'), "an object"),
            Field::N => (
                first.is_ascii_digit() || first == b'n',
                "a non-negative integer",
            ),
            Field::Size | Field::Quality | Field::OutputFormat => {
                (matches!(first, b'"' | b'n'), "a string")
            }
        };
        if ok { Ok(()) } else { Err(expected) }
    }
}

/// What the scan learned about the members it reads.
#[derive(Debug, Default, PartialEq, Eq)]
struct Facts {
    /// The `model` string's content span and whether it has escapes.
    model: Option<(usize, usize, bool)>,
    stream: bool,
    usage_requested: bool,
    has_tools: bool,
    /// Which fields were seen (bit = `Field as u16`), for duplicates.
    seen: u16,
}

impl Facts {
    fn into_probe(self, text: &str, len: usize) -> Result<RequestProbe, Invalid> {
        let Some((start, end, escaped)) = self.model else {
            return Err(invalid(Problem::MissingModel, len));
        };
        let model = if escaped {
            // Rare: decode the escapes with serde_json (the span is valid).
            serde_json::from_str::<String>(&text[start - 1..=end]).map_err(|_| {
                invalid(
                    Problem::WrongType {
                        field: "model",
                        expected: "a non-empty string",
                    },
                    start - 1,
                )
            })?
        } else {
            text[start..end].to_string()
        };
        Ok(RequestProbe {
            model,
            stream: self.stream,
            usage_requested: self.usage_requested,
            has_tools: self.has_tools,
        })
    }
}

/// The one-pass scanner: an explicit container stack (one bit per level,
/// set for objects) instead of recursion, so depth costs nothing.
struct Scan<'a> {
    b: &'a [u8],
    i: usize,
    depth: usize,
    objects: u128,
    /// `None`: syntax only.
    protocol: Option<Protocol>,
    /// The member whose value comes next.
    pending: Field,
    /// Inside the top-level `stream_options` object.
    in_options: bool,
    facts: Facts,
}

impl<'a> Scan<'a> {
    fn new(b: &'a [u8], protocol: Option<Protocol>) -> Scan<'a> {
        Scan {
            b,
            i: 0,
            depth: 0,
            objects: 0,
            protocol,
            pending: Field::Other,
            in_options: false,
            facts: Facts::default(),
        }
    }

    fn err(&self, problem: Problem) -> Invalid {
        invalid(problem, self.i)
    }

    /// `problem` at the current byte, or `Truncated` at the end.
    fn err_here(&self, problem: Problem) -> Invalid {
        if self.i >= self.b.len() {
            self.err(Problem::Truncated)
        } else {
            self.err(problem)
        }
    }

    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn ws(&mut self) {
        while self.peek().is_some_and(is_ws) {
            self.i += 1;
        }
    }

    fn run(&mut self) -> Result<(), Invalid> {
        'value: loop {
            self.value()?;
            // After a value: close containers or go on to the next element.
            loop {
                if self.depth == 0 {
                    self.ws();
                    return match self.peek() {
                        None => Ok(()),
                        Some(_) => Err(self.err(Problem::Trailing)),
                    };
                }
                self.ws();
                let object = self.objects & 1 == 1;
                match self.peek() {
                    Some(b',') => {
                        self.i += 1;
                        if object {
                            self.key()?;
                        }
                        continue 'value;
                    }
                    Some(b'}') if object => self.close(),
                    Some(b']') if !object => self.close(),
                    _ if object => return Err(self.err_here(Problem::ExpectedObjectEnd)),
                    _ => return Err(self.err_here(Problem::ExpectedArrayEnd)),
                }
            }
        }
    }

    /// One value; a container is only opened (its elements follow in
    /// `run`'s loop), or opened and closed when empty.
    fn value(&mut self) -> Result<(), Invalid> {
        loop {
            self.ws();
            let at = self.i;
            let Some(c) = self.peek() else {
                return Err(self.err(Problem::Truncated));
            };
            let field = std::mem::replace(&mut self.pending, Field::Other);
            if let Err(expected) = field.accepts(c) {
                return Err(self.err(Problem::WrongType {
                    field: field.name(),
                    expected,
                }));
            }
            match c {
                b'{' | b'[' => {
                    self.open(c == b'{', field)?;
                    self.ws();
                    let close = if c == b'{' { b'}' } else { b']' };
                    if self.peek() == Some(close) {
                        self.close();
                        return Ok(());
                    }
                    if field == Field::Tools && c == b'[' {
                        self.facts.has_tools = true;
                    }
                    if c == b'{' {
                        self.key()?;
                    }
                    // The first element, then the rest in `run`.
                    continue;
                }
                b'"' => {
                    let (start, end, escaped) = self.string()?;
                    if field == Field::Model {
                        if end == start {
                            return Err(invalid(
                                Problem::WrongType {
                                    field: "model",
                                    expected: "a non-empty string",
                                },
                                at,
                            ));
                        }
                        self.facts.model = Some((start, end, escaped));
                    }
                }
                b't' => {
                    self.literal(b"true")?;
                    match field {
                        Field::Stream => self.facts.stream = true,
                        Field::IncludeUsage => self.facts.usage_requested = true,
                        _ => {}
                    }
                }
                b'f' => self.literal(b"false")?,
                b'n' => self.literal(b"null")?,
                b'-' | b'0'..=b'9' => {
                    let integer = self.number()?;
                    if field == Field::N && !integer {
                        return Err(invalid(
                            Problem::WrongType {
                                field: "n",
                                expected: "a non-negative integer",
                            },
                            at,
                        ));
                    }
                }
                _ => return Err(self.err(Problem::ExpectedValue)),
            }
            return Ok(());
        }
    }

    fn open(&mut self, object: bool, field: Field) -> Result<(), Invalid> {
        if self.depth == MAX_DEPTH {
            return Err(self.err(Problem::TooDeep));
        }
        if self.depth == 1 {
            self.in_options = field == Field::StreamOptions;
        }
        self.depth += 1;
        self.objects = (self.objects << 1) | u128::from(object);
        self.i += 1;
        Ok(())
    }

    fn close(&mut self) {
        self.i += 1;
        self.depth -= 1;
        self.objects >>= 1;
    }

    /// A key and its `:`; sets `pending` when it names a member we read.
    fn key(&mut self) -> Result<(), Invalid> {
        self.ws();
        let at = self.i;
        if self.peek() != Some(b'"') {
            return Err(self.err_here(Problem::ExpectedKey));
        }
        let (start, end, escaped) = self.string()?;
        if let Some(protocol) = self.protocol {
            self.classify(at, start, end, escaped, protocol)?;
        }
        self.ws();
        if self.peek() != Some(b':') {
            return Err(self.err_here(Problem::ExpectedColon));
        }
        self.i += 1;
        Ok(())
    }

    fn classify(
        &mut self,
        at: usize,
        start: usize,
        end: usize,
        escaped: bool,
        protocol: Protocol,
    ) -> Result<(), Invalid> {
        let top = self.depth == 1;
        let in_options = self.depth == 2 && self.in_options;
        if !(top || in_options) {
            return Ok(());
        }
        let decoded;
        let key = if escaped {
            // Rare: `"mod\u0065l"` is `model` to every upstream.
            decoded =
                serde_json::from_slice::<String>(&self.b[start - 1..=end]).unwrap_or_default();
            decoded.as_bytes()
        } else {
            &self.b[start..end]
        };
        let field = match (top, key) {
            (true, _) => Field::top_level(key, protocol),
            (false, b"include_usage") => Field::IncludeUsage,
            (false, _) => Field::Other,
        };
        if field == Field::Other {
            return Ok(());
        }
        if field == Field::Tools {
            self.pending = field;
            return Ok(());
        }
        let bit = 1u16 << (field as u16);
        if self.facts.seen & bit != 0 {
            return Err(invalid(Problem::Duplicate(field.name()), at));
        }
        self.facts.seen |= bit;
        self.pending = field;
        Ok(())
    }

    /// A string starting at the current `"`: returns its content span and
    /// whether it has escapes. The content between special bytes is never
    /// looked at byte by byte (UTF-8 was checked for the whole body).
    fn string(&mut self) -> Result<(usize, usize, bool), Invalid> {
        let b = self.b;
        let start = self.i + 1;
        let mut i = start;
        let mut escaped = false;
        loop {
            let Some(at) = next_special(b, i) else {
                return Err(invalid(Problem::Truncated, b.len()));
            };
            match b[at] {
                b'"' => {
                    self.i = at + 1;
                    return Ok((start, at, escaped));
                }
                b'\\' => {
                    escaped = true;
                    i = self.escape(at)?;
                }
                _ => return Err(invalid(Problem::ControlCharacter, at)),
            }
        }
    }

    /// The escape at `at` (a `\`); returns the index after it.
    #[inline(always)]
    fn escape(&self, at: usize) -> Result<usize, Invalid> {
        let b = self.b;
        match b.get(at + 1) {
            None => Err(invalid(Problem::Truncated, b.len())),
            Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => Ok(at + 2),
            Some(b'u') => {
                let unit = self.hex4(at + 2)?;
                match unit {
                    0xD800..=0xDBFF => {
                        let pair = b.get(at + 6) == Some(&b'\\') && b.get(at + 7) == Some(&b'u');
                        let low = if pair { self.hex4(at + 8)? } else { 0 };
                        if (0xDC00..=0xDFFF).contains(&low) {
                            Ok(at + 12)
                        } else {
                            Err(invalid(Problem::LoneSurrogate, at))
                        }
                    }
                    0xDC00..=0xDFFF => Err(invalid(Problem::LoneSurrogate, at)),
                    _ => Ok(at + 6),
                }
            }
            Some(_) => Err(invalid(Problem::InvalidEscape, at)),
        }
    }

    fn hex4(&self, at: usize) -> Result<u16, Invalid> {
        let mut unit = 0u16;
        for k in at..at + 4 {
            let Some(&c) = self.b.get(k) else {
                return Err(invalid(Problem::Truncated, self.b.len()));
            };
            let Some(d) = char::from(c).to_digit(16) else {
                return Err(invalid(Problem::InvalidEscape, k));
            };
            unit = unit << 4 | d as u16;
        }
        Ok(unit)
    }

    fn literal(&mut self, word: &[u8]) -> Result<(), Invalid> {
        let rest = &self.b[self.i..];
        if rest.starts_with(word) {
            self.i += word.len();
            return Ok(());
        }
        // How far it matched: the problem is at the first wrong byte.
        let same = rest.iter().zip(word).take_while(|(a, b)| a == b).count();
        self.i += same;
        Err(self.err_here(Problem::InvalidLiteral))
    }

    /// A number; returns whether it is a plain non-negative integer.
    fn number(&mut self) -> Result<bool, Invalid> {
        let negative = self.peek() == Some(b'-');
        if negative {
            self.i += 1;
        }
        match self.peek() {
            Some(b'0') => self.i += 1,
            Some(b'1'..=b'9') => self.digits(),
            _ => return Err(self.err_here(Problem::InvalidNumber)),
        }
        let mut integer = !negative;
        if self.peek() == Some(b'.') {
            self.i += 1;
            self.required_digits()?;
            integer = false;
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.i += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.i += 1;
            }
            self.required_digits()?;
            integer = false;
        }
        Ok(integer)
    }

    fn digits(&mut self) {
        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
            self.i += 1;
        }
    }

    fn required_digits(&mut self) -> Result<(), Invalid> {
        if !self.peek().is_some_and(|c| c.is_ascii_digit()) {
            return Err(self.err_here(Problem::InvalidNumber));
        }
        self.digits();
        Ok(())
    }
}

mod fast;
// Elsewhere than x86_64 only the tests use the stage-1 kernel.
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
mod stage1;

#[cfg(test)]
mod tests;
