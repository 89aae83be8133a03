//! Cutting a body into [`Chunk`]s at awkward places.
//!
//! A proxy that parses a stream must not assume that a network read holds a
//! whole line, a whole `\r\n` pair or a whole UTF-8 character. These helpers
//! turn a body into [`Chunk::Data`] pieces cut wherever the test says, to be
//! sent by [`Reply::sse`](crate::Reply::sse) as separate HTTP chunks.
//!
//! ```
//! use tb_test_support::{Chunk, chunking};
//!
//! let pieces = chunking::split_every("é!".as_bytes(), 1);
//! assert_eq!(pieces.len(), 3); // 'é' is two bytes, cut in half
//!
//! let pieces = chunking::split_at(b"data: x\n\n", &[3, 8]);
//! let bytes: Vec<u8> = pieces
//!     .iter()
//!     .flat_map(|c| match c {
//!         Chunk::Data(b) => b.to_vec(),
//!         _ => vec![],
//!     })
//!     .collect();
//! assert_eq!(bytes, b"data: x\n\n");
//! ```

use bytes::Bytes;

use crate::Chunk;

/// Cuts `data` into pieces of `n` bytes (the last may be shorter), ignoring
/// line ends, `\r\n` pairs and UTF-8 character boundaries on purpose.
///
/// # Panics
///
/// If `n` is zero.
pub fn split_every(data: &[u8], n: usize) -> Vec<Chunk> {
    assert!(n > 0, "split_every: piece size must be at least 1");
    data.chunks(n)
        .map(|piece| Chunk::Data(Bytes::copy_from_slice(piece)))
        .collect()
}

/// Cuts `data` at the given byte offsets: `split_at(b"abcdef", &[2, 3])`
/// gives `ab`, `c`, `def`. Offsets `0` and `data.len()` and repeated offsets
/// make no empty pieces.
///
/// # Panics
///
/// If the offsets are not ascending or one is past the end of `data`.
pub fn split_at(data: &[u8], cuts: &[usize]) -> Vec<Chunk> {
    let mut pieces = Vec::with_capacity(cuts.len() + 1);
    let mut start = 0;
    for &cut in cuts.iter().chain(std::iter::once(&data.len())) {
        assert!(
            cut >= start && cut <= data.len(),
            "split_at: cut {cut} is out of order or past the end ({} bytes)",
            data.len()
        );
        if cut > start {
            pieces.push(Chunk::Data(Bytes::copy_from_slice(&data[start..cut])));
        }
        start = cut;
    }
    pieces
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use crate::canned;
    use tb_domain::Protocol;

    fn data_of(chunks: &[Chunk]) -> Vec<Bytes> {
        chunks
            .iter()
            .map(|c| match c {
                Chunk::Data(b) => b.clone(),
                other => panic!("unexpected {other:?}"),
            })
            .collect()
    }

    #[test]
    fn split_every_reassembles_and_splits_a_multibyte_character() {
        let body = canned::sse_body(Protocol::Messages, "m");
        for n in 1..=7 {
            let pieces = data_of(&split_every(&body, n));
            assert_eq!(pieces.concat(), body, "n = {n}");
            assert!(pieces.iter().all(|p| !p.is_empty() && p.len() <= n));
            if n > 1 {
                assert!(
                    pieces.iter().any(|p| std::str::from_utf8(p).is_err()),
                    "n = {n}: no piece cut a character in half"
                );
            }
        }
    }

    #[test]
    fn split_every_cuts_crlf_pairs() {
        let pieces = data_of(&split_every(b"a\r\nb\r\n", 2));
        assert_eq!(
            pieces,
            vec![Bytes::from("a\r"), Bytes::from("\nb"), Bytes::from("\r\n")]
        );
    }

    #[test]
    fn split_at_cuts_where_told_without_empty_pieces() {
        let pieces = data_of(&split_at(b"abcdef", &[0, 2, 3, 3, 6]));
        assert_eq!(
            pieces,
            vec![Bytes::from("ab"), Bytes::from("c"), Bytes::from("def")]
        );
        assert!(split_at(b"", &[]).is_empty());
    }

    #[test]
    #[should_panic(expected = "out of order")]
    fn split_at_rejects_unordered_cuts() {
        let _ = split_at(b"abcdef", &[3, 2]);
    }
}
