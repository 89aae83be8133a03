//! Helpers shared by the fuzz targets in `fuzz_targets/`.
//!
//! The targets take plain bytes. Most of them use a short header (a
//! selector byte, a seed) and treat the rest as the input under test;
//! [`Input`] reads that header without ever failing, so every byte string
//! is a valid fuzz input. [`split`] turns a seed into chunk boundaries, for
//! the invariant shared by every incremental parser here: feeding the same
//! bytes in different chunks gives the same result.

/// A fuzz input read front to back. Reading past the end yields zeros.
pub struct Input<'a> {
    rest: &'a [u8],
}

impl<'a> Input<'a> {
    /// Wraps the raw fuzz input.
    pub fn new(data: &'a [u8]) -> Self {
        Self { rest: data }
    }

    /// The next byte (0 when exhausted).
    pub fn byte(&mut self) -> u8 {
        match self.rest.split_first() {
            Some((b, rest)) => {
                self.rest = rest;
                *b
            }
            None => 0,
        }
    }

    /// The next 8 bytes as a little-endian `u64` (zero-padded).
    pub fn u64(&mut self) -> u64 {
        let mut buf = [0u8; 8];
        let n = self.rest.len().min(8);
        buf[..n].copy_from_slice(&self.rest[..n]);
        self.rest = &self.rest[n..];
        u64::from_le_bytes(buf)
    }

    /// Everything not read yet.
    pub fn rest(self) -> &'a [u8] {
        self.rest
    }
}

/// A xorshift64* generator: deterministic chunking from a fuzzer seed.
pub struct Rng(u64);

impl Rng {
    /// A generator from any seed (zero is remapped: xorshift needs a
    /// non-zero state).
    pub fn new(seed: u64) -> Self {
        Self((seed ^ 0x9E37_79B9_7F4A_7C15) | 1)
    }

    /// The next pseudo-random value.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A value in `0..n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
}

/// Cuts `data` into chunks at pseudo-random points chosen by `seed`:
/// mostly short chunks (so splits land inside lines, between `\r` and
/// `\n`, inside UTF-8 characters), sometimes empty ones, sometimes long
/// ones. The chunks concatenate back to `data`.
pub fn split(data: &[u8], seed: u64) -> Vec<&[u8]> {
    let mut rng = Rng::new(seed);
    let mut out = Vec::new();
    let mut at = 0;
    while at < data.len() {
        let len = match rng.below(8) {
            0 => 0,
            1 => rng.below(256),
            _ => 1 + rng.below(8),
        };
        let end = (at + len).min(data.len());
        out.push(&data[at..end]);
        at = end;
    }
    out
}

/// One chunk per byte.
pub fn bytewise(data: &[u8]) -> Vec<&[u8]> {
    data.chunks(1).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_concatenates_back() {
        let data: Vec<u8> = (0..=255).collect();
        for seed in 0..50 {
            assert_eq!(split(&data, seed).concat(), data);
        }
    }
}
