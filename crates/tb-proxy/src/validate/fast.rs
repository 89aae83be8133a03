//! The fast path: stage 1 (`stage1.rs`) finds the tokens outside strings
//! with vector masks; this walk checks the grammar over those tokens only,
//! with the scalar scanner's own pieces for what it reads (numbers,
//! literals, the keys and values of the members the proxy reads, the
//! container stack). It gives a verdict, not a diagnosis: on anything it
//! does not accept it answers `false` and `validate` runs the scalar
//! scanner, whose problem and offset are the answer. So the two paths
//! cannot disagree on an error's message or offset; what must hold, and
//! the tests check, is that the fast path accepts exactly what the scalar
//! scanner accepts, with the same facts.

use super::stage1;
use super::{Facts, Field, MAX_DEPTH, Scan, is_ws};
use tb_domain::Protocol;

/// Where the walk is in the grammar. "Deep" states are inside containers
/// whose keys the proxy does not read and whose values it does not type:
/// there a string, `,` or `:` only moves the state and a bracket only
/// moves the stack (one table lookup, see [`FAST`]). The `Top` states are the objects whose keys are read (the
/// top level, and `stream_options`); they and everything else go through
/// [`Walk::token`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum State {
    /// After `[`: a value or `]`.
    ArrValueOrClose,
    /// After `,` in an array.
    ArrValue,
    /// After a value in an array: `,` or `]`.
    ArrNext,
    /// After `{` (deep): a key or `}`.
    ObjKeyOrClose,
    /// After `,` in an object (deep).
    ObjKey,
    /// After a key (deep).
    ObjColon,
    /// After `:` (deep).
    ObjValue,
    /// After a value in an object (deep): `,` or `}`.
    ObjNext,
    /// The same four for an object whose keys are read.
    TopKeyOrClose,
    TopKey,
    TopColon,
    TopValue,
    TopNext,
    /// The top-level value must come.
    Start,
    /// The top-level value is complete: no token may follow.
    Done,
}

/// What a token does in a state, by table ([`FAST`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// Moves to the state; nothing to read or check.
    Go(State),
    /// Opens a container, by [`Walk::stack`] when deep enough.
    Push,
    /// Closes a container, by [`Walk::stack`] when deep enough.
    Pop,
    /// [`Walk::token`] decides.
    Slow,
}

/// The fast transitions, `[state][byte]`.
const FAST: [[Step; 256]; 15] = {
    use State::*;
    use Step::{Go, Pop, Push};
    let mut t = [[Step::Slow; 256]; 15];
    let (quote, comma, colon) = (b'"' as usize, b',' as usize, b':' as usize);
    t[ArrValueOrClose as usize][quote] = Go(ArrNext);
    t[ArrValue as usize][quote] = Go(ArrNext);
    t[ArrNext as usize][comma] = Go(ArrValue);
    t[ObjKeyOrClose as usize][quote] = Go(ObjColon);
    t[ObjKey as usize][quote] = Go(ObjColon);
    t[ObjColon as usize][colon] = Go(ObjValue);
    t[ObjValue as usize][quote] = Go(ObjNext);
    t[ObjNext as usize][comma] = Go(ObjKey);
    let (open_object, open_array) = (b'{' as usize, b'[' as usize);
    let (close_object, close_array) = (b'}' as usize, b']' as usize);
    let mut s = 0;
    while s < 3 {
        let state = [ArrValueOrClose, ArrValue, ObjValue][s] as usize;
        t[state][open_object] = Push;
        t[state][open_array] = Push;
        s += 1;
    }
    t[ArrValueOrClose as usize][close_array] = Pop;
    t[ArrNext as usize][close_array] = Pop;
    t[ObjKeyOrClose as usize][close_object] = Pop;
    t[ObjNext as usize][close_object] = Pop;
    t
};

/// The grammar walk over stage 1's tokens.
struct Walk<'a> {
    scan: Scan<'a>,
    state: State,
    /// Tokens before this offset belong to a number or literal already
    /// read.
    skip: usize,
    /// Objects at this depth or shallower have their keys read: with a
    /// protocol 1 (the top level) and, inside `stream_options`, 2; without
    /// one, none (0).
    read_keys: usize,
}

impl<'a> Walk<'a> {
    fn new(body: &'a [u8], protocol: Option<Protocol>) -> Walk<'a> {
        Walk {
            scan: Scan::new(body, protocol),
            state: State::Start,
            skip: 0,
            read_keys: usize::from(protocol.is_some()),
        }
    }

    /// Takes the tokens of one block (`mask` bits, block at `base`).
    #[inline(always)]
    fn tokens(&mut self, base: usize, mut mask: u64) -> bool {
        let b = self.scan.b;
        let mut state = self.state;
        while mask != 0 {
            let at = base + mask.trailing_zeros() as usize;
            mask &= mask - 1;
            let Some(&c) = b.get(at) else {
                return false;
            };
            let step = FAST[state as usize][usize::from(c)];
            if let Step::Go(next) = step {
                state = next;
                continue;
            }
            self.state = state;
            if !(self.stack(step, c) || at < self.skip || self.token(at, c)) {
                return false;
            }
            state = self.state;
        }
        self.state = state;
        true
    }

    /// A [`Step::Push`] or [`Step::Pop`] in a deep container (depth 3 and more: no
    /// member to type, no key to read), on the stack alone; false when it
    /// is neither (or not deep), for [`Walk::token`].
    #[inline(always)]
    fn stack(&mut self, step: Step, c: u8) -> bool {
        let scan = &mut self.scan;
        if step == Step::Push && (2..MAX_DEPTH).contains(&scan.depth) {
            scan.depth += 1;
            scan.objects = (scan.objects << 1) | u128::from(c == b'{');
            self.state = if c == b'{' {
                State::ObjKeyOrClose
            } else {
                State::ArrValueOrClose
            };
            true
        } else if step == Step::Pop && scan.depth > 3 {
            scan.depth -= 1;
            scan.objects >>= 1;
            self.state = if scan.objects & 1 == 1 {
                State::ObjNext
            } else {
                State::ArrNext
            };
            true
        } else {
            false
        }
    }

    /// Any token the fast table and [`Walk::stack`] do not take.
    fn token(&mut self, at: usize, c: u8) -> bool {
        use State::*;
        match (self.state, c) {
            (ArrValueOrClose, b']') | (ArrNext, b']') => self.close(),
            (ObjKeyOrClose | ObjNext | TopKeyOrClose | TopNext, b'}') => self.close(),
            (ArrValueOrClose | ArrValue | ObjValue | TopValue | Start, _) => self.value(at, c),
            (TopKeyOrClose | TopKey, b'"') => self.key(at),
            (TopColon, b':') => {
                self.state = TopValue;
                true
            }
            (TopNext, b',') => {
                self.state = TopKey;
                true
            }
            _ => false,
        }
    }

    fn close(&mut self) -> bool {
        self.scan.close();
        if self.scan.depth < 2 {
            self.read_keys = self.read_keys.min(1);
        }
        self.after_value();
        true
    }

    fn after_value(&mut self) {
        let scan = &self.scan;
        self.state = match (scan.depth, scan.objects & 1 == 1) {
            (0, _) => State::Done,
            (_, false) => State::ArrNext,
            (depth, true) if depth > self.read_keys => State::ObjNext,
            _ => State::TopNext,
        };
    }

    /// A key of an object whose keys are read: decoded and classified as
    /// the scalar scanner does (with a protocol only).
    fn key(&mut self, at: usize) -> bool {
        self.state = State::TopColon;
        let Some(protocol) = self.scan.protocol else {
            return false;
        };
        let scan = &mut self.scan;
        scan.i = at;
        let Ok((start, end, escaped)) = scan.string() else {
            return false;
        };
        scan.classify(at, start, end, escaped, protocol).is_ok()
    }

    /// A value starting with `c` at `at`, typed against the member it is
    /// the value of, as the scalar scanner's `value` does.
    fn value(&mut self, at: usize, c: u8) -> bool {
        let field = std::mem::replace(&mut self.scan.pending, Field::Other);
        if field.accepts(c).is_err() {
            return false;
        }
        self.scan.i = at;
        let ok = match c {
            b'{' | b'[' => return self.open(at, c, field),
            b'"' => field != Field::Model || self.model(),
            b't' | b'f' | b'n' => self.literal(c, field),
            b'-' | b'0'..=b'9' => match self.scan.number() {
                Ok(integer) => (integer || field != Field::N) && self.scalar_ends(),
                Err(_) => false,
            },
            _ => false,
        };
        self.after_value();
        ok
    }

    fn open(&mut self, at: usize, c: u8, field: Field) -> bool {
        let scan = &mut self.scan;
        if scan.open(c == b'{', field).is_err() {
            return false;
        }
        if c == b'[' {
            if field == Field::Tools {
                let next = scan.b[at + 1..].iter().find(|b| !is_ws(**b));
                scan.facts.has_tools |= next != Some(&b']');
            }
            self.state = State::ArrValueOrClose;
            return true;
        }
        if scan.depth == 2 && scan.in_options && scan.protocol.is_some() {
            self.read_keys = 2;
        }
        self.state = if scan.depth > self.read_keys {
            State::ObjKeyOrClose
        } else {
            State::TopKeyOrClose
        };
        true
    }

    /// The `model` string: its span, which must not be empty.
    fn model(&mut self) -> bool {
        match self.scan.string() {
            Ok((start, end, escaped)) if end > start => {
                self.scan.facts.model = Some((start, end, escaped));
                true
            }
            _ => false,
        }
    }

    fn literal(&mut self, c: u8, field: Field) -> bool {
        let word: &[u8] = match c {
            b't' => b"true",
            b'f' => b"false",
            _ => b"null",
        };
        if self.scan.literal(word).is_err() || !self.scalar_ends() {
            return false;
        }
        if c == b't' {
            let facts = &mut self.scan.facts;
            match field {
                Field::Stream => facts.stream = true,
                Field::IncludeUsage => facts.usage_requested = true,
                _ => {}
            }
        }
        true
    }

    /// Whether the number or literal just read ends where its run of
    /// bytes ends (`1x`, `truex`, `01` are refused); the rest of the run's
    /// tokens are skipped.
    fn scalar_ends(&mut self) -> bool {
        self.skip = self.scan.i;
        match self.scan.b.get(self.scan.i) {
            None => true,
            Some(&c) => is_ws(c) || matches!(c, b'"' | b',' | b':' | b'[' | b']' | b'{' | b'}'),
        }
    }
}

/// The fast verdict for a body whose UTF-8 is checked: the facts when the
/// body is valid (syntax, and with a protocol the members the proxy reads),
/// `None` when the body is invalid, or it cannot tell, or the CPU has no
/// fast path — the scalar scanner decides then.
pub(super) fn scan(body: &[u8], protocol: Option<Protocol>) -> Option<Facts> {
    let mut walk = Walk::new(body, protocol);
    let ok = stage1::run_fast(body, |base, mask| walk.tokens(base, mask))?;
    (ok && walk.state == State::Done).then_some(walk.scan.facts)
}

/// [`scan`] with the portable classifier (tests: the reference for the
/// vector one, on any CPU).
#[cfg(test)]
pub(super) fn scan_portable(body: &[u8], protocol: Option<Protocol>) -> Option<Facts> {
    let mut walk = Walk::new(body, protocol);
    let ok = stage1::run_portable(body, |base, mask| walk.tokens(base, mask));
    (ok && walk.state == State::Done).then_some(walk.scan.facts)
}
