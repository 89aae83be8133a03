//! Exact decimal scaling of JSON number text, with integers only.
//!
//! LiteLLM gives prices as floats per token (`2.5e-06`). Multiplying the
//! parsed `f64` by 10¹² can land a hair off (`2.8e-08 × 1e12` is
//! `27999.999999999996`), so the number's *text* is read as an integer
//! mantissa and a power-of-ten exponent, and scaled exactly.

use std::fmt;

/// Why a JSON number could not be scaled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum DecimalError {
    /// Not a JSON number (`"1"`, `null`, `1.`, `+1`, …).
    Syntax,
    /// Below zero: a price cannot be negative.
    Negative,
    /// Too many digits or too large for a `u128`.
    Overflow,
}

impl fmt::Display for DecimalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DecimalError::Syntax => "not a JSON number",
            DecimalError::Negative => "negative",
            DecimalError::Overflow => "out of range",
        })
    }
}

impl std::error::Error for DecimalError {}

/// `text × multiplier × 10^pow10`, rounded half away from zero, where `text`
/// is a JSON number (`-?(0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?`). Exact: no
/// floating point anywhere.
///
/// `scale("2.5e-06", 12, 1)` is `2_500_000` (USD per token → USD micros per
/// 1M tokens); `scale("1.0490417e-08", 6, 1024 * 1024)` is a per-pixel price
/// times a pixel count, in USD micros.
pub(crate) fn scale(text: &str, pow10: i32, multiplier: u128) -> Result<u128, DecimalError> {
    let (negative, rest) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (number, exponent) = match rest.find(['e', 'E']) {
        Some(i) => (&rest[..i], parse_exponent(&rest[i + 1..])?),
        None => (rest, 0),
    };
    let (int, frac) = match number.split_once('.') {
        Some((int, frac)) => {
            if frac.is_empty() {
                return Err(DecimalError::Syntax);
            }
            (int, frac)
        }
        None => (number, ""),
    };
    let digits_only = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if int.is_empty() || !digits_only(int) || !digits_only(frac) {
        return Err(DecimalError::Syntax);
    }
    if int.len() > 1 && int.starts_with('0') {
        return Err(DecimalError::Syntax);
    }

    // Integer mantissa of all digits, leading zeros skipped.
    let mut mantissa: u128 = 0;
    for b in int.bytes().chain(frac.bytes()) {
        mantissa = mantissa
            .checked_mul(10)
            .and_then(|m| m.checked_add(u128::from(b - b'0')))
            .ok_or(DecimalError::Overflow)?;
    }
    if mantissa == 0 {
        return Ok(0);
    }
    if negative {
        return Err(DecimalError::Negative);
    }

    let frac_len = i64::try_from(frac.len()).map_err(|_| DecimalError::Overflow)?;
    let exp10 = exponent - frac_len + i64::from(pow10);
    let n = mantissa
        .checked_mul(multiplier)
        .ok_or(DecimalError::Overflow)?;
    if exp10 >= 0 {
        let factor = u32::try_from(exp10)
            .ok()
            .and_then(|e| 10u128.checked_pow(e))
            .ok_or(DecimalError::Overflow)?;
        return n.checked_mul(factor).ok_or(DecimalError::Overflow);
    }
    let Some(divisor) = u32::try_from(-exp10)
        .ok()
        .and_then(|e| 10u128.checked_pow(e))
    else {
        // 10^39 and beyond exceed u128::MAX ≥ n, so n / divisor < 1/2.
        return Ok(0);
    };
    let (q, r) = (n / divisor, n % divisor);
    // Half away from zero: round up when r ≥ divisor / 2, i.e. r ≥ divisor − r.
    Ok(if r >= divisor - r { q + 1 } else { q })
}

/// The exponent after `e`/`E`: optional sign, then digits.
fn parse_exponent(text: &str) -> Result<i64, DecimalError> {
    let (negative, digits) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(DecimalError::Syntax);
    }
    // Any exponent this long is out of range for prices anyway.
    if digits.len() > 6 {
        return Err(DecimalError::Overflow);
    }
    let value: i64 = digits.parse().map_err(|_| DecimalError::Syntax)?;
    Ok(if negative { -value } else { value })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// USD per token → USD micros per 1M tokens.
    fn per_million(text: &str) -> Result<u128, DecimalError> {
        scale(text, 12, 1)
    }

    #[test]
    fn token_prices_convert_exactly() {
        for (text, want) in [
            ("2.5e-06", 2_500_000),
            ("2.8e-08", 28_000),
            ("1e-05", 10_000_000),
            ("1.25e-06", 1_250_000),
            ("3e-07", 300_000),
            ("1.5e-05", 15_000_000),
            ("3.75e-06", 3_750_000),
            ("6e-09", 6_000),
            ("4.2e-07", 420_000),
            ("0.00012", 120_000_000),
            ("4.0000000000000003e-07", 400_000),
            ("4.6999999999999995e-07", 470_000),
            ("4.2000000000000006e-08", 42_000),
            ("1.5E-5", 15_000_000),
            ("1.5e+0", 1_500_000_000_000),
            ("2", 2_000_000_000_000),
            ("0.0", 0),
            ("0", 0),
            ("-0.0", 0),
            ("0e-7", 0),
        ] {
            assert_eq!(per_million(text), Ok(want), "{text}");
        }
    }

    #[test]
    fn rounds_half_away_from_zero_after_scaling() {
        for (text, want) in [
            ("5e-13", 1),   // exactly half a micro per 1M → up
            ("4.9e-13", 0), // below half → down
            ("1.5e-12", 2), // 1.5 → 2
            ("2.5e-12", 3), // 2.5 → 3 (not banker's rounding)
            ("2.4999999999e-12", 2),
            ("1e-13", 0),
            ("1e-300", 0),
            ("1.0000000000000000000000000000000001e-20", 0),
            ("123456789e-50", 0),
        ] {
            assert_eq!(per_million(text), Ok(want), "{text}");
        }
    }

    #[test]
    fn per_image_and_per_pixel() {
        assert_eq!(scale("0.167", 6, 1), Ok(167_000));
        assert_eq!(scale("0.0336", 6, 1), Ok(33_600));
        // 1.0490417e-08 × 1024 × 1024 × 1e6 = 10_999.999…  → 11_000
        assert_eq!(scale("1.0490417e-08", 6, 1024 * 1024), Ok(11_000));
        // 1.59263611e-07 × 1024 × 1024 × 1e6 = 166_999.9…   → 167_000
        assert_eq!(scale("1.59263611e-07", 6, 1024 * 1024), Ok(167_000));
    }

    #[test]
    fn rejects_what_is_not_a_non_negative_json_number() {
        for (text, want) in [
            ("", DecimalError::Syntax),
            ("\"1e-6\"", DecimalError::Syntax),
            ("null", DecimalError::Syntax),
            ("1.", DecimalError::Syntax),
            (".5", DecimalError::Syntax),
            ("+1", DecimalError::Syntax),
            ("01", DecimalError::Syntax),
            ("1e", DecimalError::Syntax),
            ("1e+", DecimalError::Syntax),
            ("1x", DecimalError::Syntax),
            ("-1e-6", DecimalError::Negative),
            ("1e9999999", DecimalError::Overflow),
            ("1e60", DecimalError::Overflow),
            (
                "999999999999999999999999999999999999999999",
                DecimalError::Overflow,
            ),
        ] {
            assert_eq!(per_million(text), Err(want), "{text:?}");
        }
    }
}
