//! `tb_billing::settlement`: `from_json` on a seller's settlement document
//! and `from_header` on an `X-TokenBuddy-Settlement` value.
//!
//! Input: `[mode, document…]`: mode bit 0 reads the rest as JSON, else as a
//! header value; bit 1 also round-trips the JSON through base64url (padded
//! or not) and checks the header reads the same. Invariants: no panic; a
//! sanitised settlement keeps every rule of `marketplace.md`: integers ≤
//! 10^15, request id 1–128 visible ASCII, display strings 1–80 chars of
//! their alphabet, a token breakdown has both prices, an image breakdown its
//! per-image cost (the type says so); dropped-field names are non-empty.

#![no_main]

use libfuzzer_sys::fuzz_target;
use tb_billing::settlement::{self, Breakdown, MAX_SETTLEMENT_BYTES, Settlement, SettlementError};

const MAX_INT: u64 = 1_000_000_000_000_000;

fn int(v: Option<u64>) {
    if let Some(v) = v {
        assert!(v <= MAX_INT, "integer {v} over 10^15");
    }
}

fn text(v: &Option<String>, max: usize, ok: impl Fn(char) -> bool) {
    if let Some(s) = v {
        assert!(!s.is_empty() && s.len() <= max, "bad length {s:?}");
        assert_eq!(s.trim(), s, "not trimmed {s:?}");
        assert!(s.chars().all(ok), "bad character in {s:?}");
    }
}

fn display(v: &Option<String>) {
    text(v, 80, |c| c.is_ascii_alphanumeric() || " _./:-".contains(c));
}

fn tier(v: &Option<String>) {
    text(v, 80, |c| c.is_ascii_alphanumeric() || " _.-".contains(c));
}

fn check(result: &Result<(Settlement, Vec<String>), SettlementError>) {
    let Ok((s, dropped)) = result else {
        return;
    };
    assert!(dropped.iter().all(|d| !d.is_empty()));
    text(&s.request_id, 128, |c| c.is_ascii_graphic());
    int(s.settled_micros);
    int(s.settled_usd_micros);
    int(s.remaining_credit_micros);
    match &s.breakdown {
        None => {}
        Some(Breakdown::Tokens {
            input_price_micros_per_1m,
            output_price_micros_per_1m,
            cache_read_price_micros_per_1m,
            input_cost_micros,
            output_cost_micros,
            cache_read_cost_micros,
            original_usd_micros,
            service_tier,
        }) => {
            for v in [
                Some(*input_price_micros_per_1m),
                Some(*output_price_micros_per_1m),
                *cache_read_price_micros_per_1m,
                *input_cost_micros,
                *output_cost_micros,
                *cache_read_cost_micros,
                *original_usd_micros,
            ] {
                int(v);
            }
            tier(service_tier);
        }
        Some(Breakdown::Images {
            image_cost_micros_per_image,
            image_count,
            image_size,
            image_quality,
            image_output_format,
            image_output_tokens,
            image_output_cost_micros,
            service_tier,
        }) => {
            for v in [
                Some(*image_cost_micros_per_image),
                *image_count,
                *image_output_tokens,
                *image_output_cost_micros,
            ] {
                int(v);
            }
            display(image_size);
            display(image_quality);
            display(image_output_format);
            tier(service_tier);
        }
    }
}

/// base64url, padded or not (a tiny encoder: the fuzz crate keeps its
/// dependencies to what the code under test uses).
fn b64url(bytes: &[u8], pad: bool) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for c in bytes.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        let chars = c.len() + 1;
        for i in 0..4 {
            if i < chars {
                out.push(char::from(A[((n >> (18 - 6 * i)) & 63) as usize]));
            } else if pad {
                out.push('=');
            }
        }
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, doc)) = data.split_first() else {
        return;
    };
    if mode & 1 == 0 {
        check(&settlement::from_header(doc));
        return;
    }
    let json = settlement::from_json(doc);
    check(&json);
    assert_eq!(json, settlement::from_json(doc), "not deterministic");
    if doc.len() > MAX_SETTLEMENT_BYTES {
        assert_eq!(json, Err(SettlementError::TooLarge));
    }
    if mode & 2 != 0 {
        let header = b64url(doc, mode & 4 != 0);
        let via_header = settlement::from_header(header.as_bytes());
        if doc.len() <= MAX_SETTLEMENT_BYTES {
            assert_eq!(
                json, via_header,
                "the header reads differently from its JSON"
            );
        }
    }
});
