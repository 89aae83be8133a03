//! Stage 1 of the fast path, in the style of simdjson: the body is read 64
//! bytes at a time and each block becomes bit masks (bit `k` = byte `k` of
//! the block) — quotes, backslashes, control bytes, whitespace, structural
//! characters, valid escape characters and `u`. Plain integer arithmetic on
//! those masks then finds the escaped bytes (odd backslash runs, carried
//! across blocks), the bytes inside strings (prefix XOR of the unescaped
//! quotes, carried), the errors inside strings (a raw control byte, an
//! invalid escape character) and the *tokens*: the structural characters
//! and opening quotes outside strings, and the first byte of every run of
//! other bytes outside strings (a number or literal, or garbage). Only the
//! tokens go on to the grammar walk (`fast.rs`); string content is never
//! looked at byte by byte. `\u` escapes are checked by a scalar helper
//! where they occur (four hex digits, surrogate pairs).
//!
//! Two classifiers produce the masks: AVX2 (x86_64, detected at run time;
//! `unsafe` only for the unaligned loads and the call into the
//! `target_feature` code) and a portable byte loop, the reference the tests
//! compare AVX2 against. The production portable path is the scalar
//! scanner of `validate.rs`: the fast path runs only where AVX2 is present.

/// One 64-byte block's byte classes, bit `k` for byte `k` (the tests'
/// reference; the kernels compute only the classes a block needs).
#[cfg(test)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(super) struct Classes {
    /// `"`.
    pub(super) quote: u64,
    /// `\`.
    pub(super) backslash: u64,
    /// Below 0x20.
    pub(super) control: u64,
    /// Space, tab, line feed, carriage return.
    pub(super) ws: u64,
    /// Not a one-character escape (`"\/bfnrt`): after a backslash such a
    /// byte is an error or a `u` (checked by [`unicode_escapes`]).
    pub(super) unusual_escape: u64,
}

/// The portable classifier: the definition of every class, byte by byte.
#[cfg(test)]
pub(super) fn classify_portable(block: &[u8; 64]) -> Classes {
    let mut m = Classes::default();
    for (k, &c) in block.iter().enumerate() {
        let bit = 1u64 << k;
        let set = |mask: &mut u64, yes: bool| *mask |= if yes { bit } else { 0 };
        set(&mut m.quote, c == b'"');
        set(&mut m.backslash, c == b'\\');
        set(&mut m.control, c < 0x20);
        set(&mut m.ws, matches!(c, b' ' | b'\t' | b'\n' | b'\r'));
        set(
            &mut m.unusual_escape,
            !matches!(c, b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't'),
        );
    }
    m
}

const EVEN: u64 = 0x5555_5555_5555_5555;

/// The bytes escaped by a backslash: the byte after each odd-length run of
/// backslashes (simdjson's `find_escaped`). `carry` is 1 when the previous
/// block ended in an escaping backslash; it is updated for the next block.
#[inline(always)]
pub(super) fn escaped(backslash: u64, carry: &mut u64) -> u64 {
    // A backslash escaped by the previous block's last byte starts nothing.
    let backslash = backslash & !*carry;
    let follows_escape = (backslash << 1) | *carry;
    // Runs starting on an odd bit: adding the run start to the run carries
    // past its end; the parity of where each run starts and ends tells
    // which run ends in an escaping backslash.
    let odd_starts = backslash & !EVEN & !follows_escape;
    let (even_series, overflow) = odd_starts.overflowing_add(backslash);
    *carry = u64::from(overflow);
    let invert = even_series << 1;
    (EVEN ^ invert) & follows_escape
}

/// Bit `k` = XOR of bits `0..=k` (the portable prefix XOR).
#[cfg(test)]
pub(super) fn prefix_xor_portable(mut x: u64) -> u64 {
    x ^= x << 1;
    x ^= x << 2;
    x ^= x << 4;
    x ^= x << 8;
    x ^= x << 16;
    x ^= x << 32;
    x
}

/// The per-block operations of one classifier. The loaded block `B`
/// stays in registers; the classes the block needs are computed from it
/// lazily (a block inside a long string only needs the first three).
pub(super) struct Kernel<Load, Strings, Escapes, Ws, PrefixXor> {
    /// Reads a block.
    pub(super) load: Load,
    /// `[quote, backslash, control]`.
    pub(super) strings: Strings,
    /// Bytes that are not a one-character escape (`"\/bfnrt`).
    pub(super) escapes: Escapes,
    /// Space, tab, line feed, carriage return.
    pub(super) ws: Ws,
    /// Bit `k` = XOR of bits `0..=k`.
    pub(super) prefix_xor: PrefixXor,
}

/// What the block loop carries from one block to the next.
#[derive(Debug, Default)]
struct Carry {
    /// The previous block ended in an escaping backslash (0 or 1).
    escaped: u64,
    /// All ones when the previous block ended inside a string.
    in_string: u64,
    /// The `u` of the low half of a surrogate pair already checked.
    skip_u: usize,
}

impl<B, Load, Strings, Escapes, Ws, PrefixXor> Kernel<Load, Strings, Escapes, Ws, PrefixXor>
where
    B: Copy,
    Load: Fn(&[u8; 64]) -> B,
    Strings: Fn(B) -> [u64; 3],
    Escapes: Fn(B) -> u64,
    Ws: Fn(B) -> u64,
    PrefixXor: Fn(u64) -> u64,
{
    /// One block's tokens: the first byte of every string (its opening
    /// quote) and every other byte outside strings that is not whitespace
    /// — structural characters, numbers, literals and garbage alike (the
    /// walk skips the rest of a number or literal it has read). `None` on
    /// an error inside a string.
    #[inline(always)]
    fn tokens(&self, body: &[u8], base: usize, block: &[u8; 64], carry: &mut Carry) -> Option<u64> {
        let v = (self.load)(block);
        let [quote, backslash, control] = (self.strings)(v);
        let mut escaped = 0;
        if backslash | carry.escaped != 0 {
            escaped = self::escaped(backslash, &mut carry.escaped);
            let unusual = escaped & (self.escapes)(v);
            if unusual != 0 && !unicode_escapes(body, base, unusual, &mut carry.skip_u) {
                return None;
            }
        }
        let quotes = quote & !escaped;
        if quotes == 0 && carry.in_string != 0 {
            // Inside one string from end to end: only its content counts.
            return (control == 0).then_some(0);
        }
        // `in_string` holds the opening quote and the content, not the
        // closing quote.
        let in_string = (self.prefix_xor)(quotes) ^ carry.in_string;
        carry.in_string = ((in_string as i64) >> 63) as u64;
        if control & in_string != 0 {
            return None;
        }
        let outside = !(in_string | (self.ws)(v) | quote);
        Some(outside | (quotes & in_string))
    }

    /// Runs stage 1 over `body`, handing each block's token mask to
    /// `walk` (block start, mask). False as soon as a string error is found
    /// or `walk` refuses a token, and at the end if the body ends inside a
    /// string.
    #[inline(always)]
    fn run(&self, body: &[u8], mut walk: impl FnMut(usize, u64) -> bool) -> bool {
        let mut carry = Carry {
            skip_u: usize::MAX,
            ..Carry::default()
        };
        let mut base = 0;
        let mut chunks = body.chunks_exact(64);
        for block in chunks.by_ref() {
            let Some(block) = block.first_chunk::<64>() else {
                return false;
            };
            match self.tokens(body, base, block, &mut carry) {
                Some(0) => {}
                Some(tokens) if walk(base, tokens) => {}
                _ => return false,
            }
            base += 64;
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            // The tail, padded with spaces: whitespace outside strings;
            // inside an unterminated string it changes nothing (the body
            // still ends inside the string), and after a final backslash it
            // is an invalid escape.
            let mut block = [b' '; 64];
            block[..rest.len()].copy_from_slice(rest);
            match self.tokens(body, base, &block, &mut carry) {
                Some(0) => {}
                Some(tokens) if walk(base, tokens) => {}
                _ => return false,
            }
        }
        carry.in_string == 0
    }
}

/// Checks the escapes at the set bits of `mask` (block at `base`), bytes
/// after a backslash that are not one-character escapes: each must be a
/// `u` with four hex digits, and a high surrogate must be followed by `\u`
/// and a low one. `skip` is the `u` of a low half already checked with its
/// high half.
#[cold]
fn unicode_escapes(body: &[u8], base: usize, mut mask: u64, skip: &mut usize) -> bool {
    while mask != 0 {
        let at = base + mask.trailing_zeros() as usize;
        mask &= mask - 1;
        if at == *skip {
            continue;
        }
        if body.get(at) != Some(&b'u') {
            return false;
        }
        match hex4(body, at + 1) {
            Some(0xD800..=0xDBFF) => {
                let pair = body.get(at + 5) == Some(&b'\\') && body.get(at + 6) == Some(&b'u');
                if !(pair && matches!(hex4(body, at + 7), Some(0xDC00..=0xDFFF))) {
                    return false;
                }
                *skip = at + 6;
            }
            Some(0xDC00..=0xDFFF) | None => return false,
            Some(_) => {}
        }
    }
    true
}

fn hex4(body: &[u8], at: usize) -> Option<u16> {
    let digits = body.get(at..at + 4)?;
    digits.iter().try_fold(0u16, |unit, &c| {
        let d = char::from(c).to_digit(16)?;
        Some(unit << 4 | d as u16)
    })
}

/// Stage 1 with the portable classifier (tests: the reference).
#[cfg(test)]
pub(super) fn run_portable(body: &[u8], walk: impl FnMut(usize, u64) -> bool) -> bool {
    let kernel = Kernel {
        load: |b: &[u8; 64]| classify_portable(b),
        strings: |m: Classes| [m.quote, m.backslash, m.control],
        escapes: |m: Classes| m.unusual_escape,
        ws: |m: Classes| m.ws,
        prefix_xor: prefix_xor_portable,
    };
    kernel.run(body, walk)
}

/// Stage 1 with the fastest classifier this CPU has, or `None` when it has
/// no vector unit the fast path supports (the caller uses the scalar
/// scanner).
#[inline]
pub(super) fn run_fast(body: &[u8], walk: impl FnMut(usize, u64) -> bool) -> Option<bool> {
    #[cfg(target_arch = "x86_64")]
    return avx2::run(body, walk);
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (body, walk);
        None
    }
}

#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
pub(super) mod avx2 {
    //! The AVX2 + PCLMULQDQ classifier.

    use std::arch::x86_64::{
        __m256i, _mm_clmulepi64_si128, _mm_cvtsi128_si64, _mm_set_epi64x, _mm_set1_epi8,
        _mm256_and_si256, _mm256_cmpeq_epi8, _mm256_loadu_si256, _mm256_max_epu8,
        _mm256_movemask_epi8, _mm256_set1_epi8, _mm256_setr_epi8, _mm256_setzero_si256,
        _mm256_shuffle_epi8, _mm256_srli_epi16,
    };

    #[cfg(test)]
    use super::Classes;
    use super::Kernel;

    /// Whether this CPU runs [`run`].
    pub(in super::super) fn available() -> bool {
        std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("pclmulqdq")
    }

    /// Stage 1 with AVX2, or `None` when this CPU lacks it.
    pub(in super::super) fn run(body: &[u8], walk: impl FnMut(usize, u64) -> bool) -> Option<bool> {
        if !available() {
            return None;
        }
        // SAFETY: `run_avx2` needs AVX2 and PCLMULQDQ, which `available`
        // detected on this CPU just above.
        Some(unsafe { run_avx2(body, walk) })
    }

    #[target_feature(enable = "avx2,pclmulqdq")]
    fn run_avx2(body: &[u8], walk: impl FnMut(usize, u64) -> bool) -> bool {
        // Closures inherit the function's target features.
        let t = Tables::new();
        let kernel = Kernel {
            load: |b: &[u8; 64]| load(b),
            strings: |v: [__m256i; 2]| [eq(v, b'"'), eq(v, b'\\'), control(v)],
            escapes: |v: [__m256i; 2]| unusual_escape(&t, v),
            ws: |v: [__m256i; 2]| ws(&t, v),
            prefix_xor: |x| prefix_xor(x),
        };
        kernel.run(body, walk)
    }

    /// The lookup tables.
    #[derive(Clone, Copy)]
    struct Tables {
        ws: __m256i,
        escape_low: __m256i,
        escape_high: __m256i,
    }

    impl Tables {
        #[target_feature(enable = "avx2")]
        fn new() -> Tables {
            // `pshufb` looks up the low nibble (a byte with the high bit
            // set reads 0). Whitespace: the entry for a nibble is the one
            // whitespace byte with that nibble, 0xff (never equal to a byte
            // below 0x80) elsewhere.
            let x = -1i8;
            #[rustfmt::skip]
            let ws = _mm256_setr_epi8(
                0x20, x, x, x, x, x, x, x, x, 0x09, 0x0a, x, x, 0x0d, x, x,
                0x20, x, x, x, x, x, x, x, x, 0x09, 0x0a, x, x, 0x0d, x, x,
            );
            // One-character escapes by nibbles: a byte is one when the
            // bits of its low- and high-nibble entries meet. High nibble 2
            // → bit 1 (`"` `/`), 5 → 2 (`\`), 6 → 4 (`b` `f` `n`), 7 → 8
            // (`r` `t`).
            #[rustfmt::skip]
            let escape_low = _mm256_setr_epi8(
                0, 0, 1 | 4 | 8, 0, 8, 0, 4, 0, 0, 0, 0, 0, 2, 0, 4, 1,
                0, 0, 1 | 4 | 8, 0, 8, 0, 4, 0, 0, 0, 0, 0, 2, 0, 4, 1,
            );
            #[rustfmt::skip]
            let escape_high = _mm256_setr_epi8(
                0, 0, 1, 0, 0, 2, 4, 8, 0, 0, 0, 0, 0, 0, 0, 0,
                0, 0, 1, 0, 0, 2, 4, 8, 0, 0, 0, 0, 0, 0, 0, 0,
            );
            Tables {
                ws,
                escape_low,
                escape_high,
            }
        }
    }

    #[target_feature(enable = "avx2")]
    fn load(block: &[u8; 64]) -> [__m256i; 2] {
        let ptr = block.as_ptr().cast::<__m256i>();
        // SAFETY: `block` is 64 readable bytes; each load reads 32 of them
        // (offsets 0 and 32) and `loadu` has no alignment requirement.
        unsafe { [_mm256_loadu_si256(ptr), _mm256_loadu_si256(ptr.add(1))] }
    }

    /// The 64-bit mask of the bytes set in the two halves.
    #[target_feature(enable = "avx2")]
    fn mask(v: [__m256i; 2]) -> u64 {
        let low = _mm256_movemask_epi8(v[0]) as u32;
        let high = _mm256_movemask_epi8(v[1]) as u32;
        u64::from(low) | (u64::from(high) << 32)
    }

    #[target_feature(enable = "avx2")]
    fn each(v: [__m256i; 2], f: impl Fn(__m256i) -> __m256i) -> u64 {
        mask([f(v[0]), f(v[1])])
    }

    #[target_feature(enable = "avx2")]
    fn eq(v: [__m256i; 2], c: u8) -> u64 {
        let c = _mm256_set1_epi8(c as i8);
        each(v, |x| _mm256_cmpeq_epi8(x, c))
    }

    /// Bytes below 0x20: those whose maximum with 0x1f is 0x1f.
    #[target_feature(enable = "avx2")]
    fn control(v: [__m256i; 2]) -> u64 {
        let low31 = _mm256_set1_epi8(0x1f);
        each(v, |x| _mm256_cmpeq_epi8(_mm256_max_epu8(x, low31), low31))
    }

    #[target_feature(enable = "avx2")]
    fn ws(t: &Tables, v: [__m256i; 2]) -> u64 {
        each(v, |x| _mm256_cmpeq_epi8(_mm256_shuffle_epi8(t.ws, x), x))
    }

    #[target_feature(enable = "avx2")]
    fn unusual_escape(t: &Tables, v: [__m256i; 2]) -> u64 {
        let nibble = _mm256_set1_epi8(0x0f);
        each(v, |x| {
            let low = _mm256_shuffle_epi8(t.escape_low, _mm256_and_si256(x, nibble));
            let high = _mm256_shuffle_epi8(
                t.escape_high,
                _mm256_and_si256(_mm256_srli_epi16::<4>(x), nibble),
            );
            _mm256_cmpeq_epi8(_mm256_and_si256(low, high), _mm256_setzero_si256())
        })
    }

    /// Carry-less multiplication by all ones: the prefix XOR in one
    /// instruction.
    #[target_feature(enable = "pclmulqdq,sse2")]
    fn prefix_xor(x: u64) -> u64 {
        let product = _mm_clmulepi64_si128::<0>(_mm_set_epi64x(0, x as i64), _mm_set1_epi8(-1));
        _mm_cvtsi128_si64(product) as u64
    }

    /// The classes of a block, for the tests (the caller checked
    /// [`available`]).
    #[cfg(test)]
    pub(in super::super) fn classify_checked(block: &[u8; 64]) -> Classes {
        assert!(available());
        // SAFETY: AVX2 was detected on this CPU just above.
        unsafe {
            let t = Tables::new();
            let v = load(block);
            Classes {
                quote: eq(v, b'"'),
                backslash: eq(v, b'\\'),
                control: control(v),
                ws: ws(&t, v),
                unusual_escape: unusual_escape(&t, v),
            }
        }
    }

    /// [`prefix_xor`] for the tests.
    #[cfg(test)]
    pub(in super::super) fn prefix_xor_checked(x: u64) -> u64 {
        assert!(available());
        // SAFETY: PCLMULQDQ was detected on this CPU just above.
        unsafe { prefix_xor(x) }
    }
}
