//! Ratios (discounts, fees) as integer parts per million.

use std::fmt;

/// A ratio in integer **parts per million**: `Ppm::new(150_000)` is 15 %.
///
/// Used for a provider's `discount`, a seller's `discountRatio` and
/// `serviceFeeRatio`: the effective price is the table price
/// × (1 − discount) × (1 + fee), see [`apply_discount`] and [`apply_fee`].
#[doc(alias = "Discount")]
#[doc(alias = "Ratio")]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Ppm(u32);

/// A decimal ratio that is not a valid [`Ppm`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RatioError {
    /// Not a plain non-negative decimal (`0.15`, `1`, `.5`).
    #[error("not a non-negative decimal ratio: {0:?}")]
    Syntax(String),
    /// Too large to hold as parts per million in a `u32`.
    #[error("ratio too large: {0:?}")]
    TooLarge(String),
}

impl Ppm {
    /// 0 %.
    pub const ZERO: Ppm = Ppm(0);
    /// 100 % (1,000,000 ppm).
    pub const ONE: Ppm = Ppm(1_000_000);

    /// A ratio of `ppm` parts per million.
    #[must_use]
    pub const fn new(ppm: u32) -> Ppm {
        Ppm(ppm)
    }

    /// The ratio in parts per million.
    #[must_use]
    pub const fn get(self) -> u32 {
        self.0
    }

    /// Parses a decimal ratio (`"0.15"` → 150,000 ppm) exactly, by digits;
    /// digits beyond the sixth decimal round half away from zero.
    ///
    /// # Errors
    ///
    /// [`RatioError`] for anything but digits with at most one `.`, or a
    /// value above `u32::MAX` ppm.
    pub fn from_decimal_str(text: &str) -> Result<Ppm, RatioError> {
        let syntax = || RatioError::Syntax(text.to_owned());
        let (int, frac) = text.split_once('.').unwrap_or((text, ""));
        let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
        if (int.is_empty() && frac.is_empty()) || !all_digits(int) || !all_digits(frac) {
            return Err(syntax());
        }
        let too_large = || RatioError::TooLarge(text.to_owned());
        let mut ppm: u64 = 0;
        for b in int.bytes() {
            ppm = ppm
                .checked_mul(10)
                .and_then(|v| v.checked_add(u64::from(b - b'0')))
                .filter(|v| *v <= u64::from(u32::MAX))
                .ok_or_else(too_large)?;
        }
        ppm = ppm.checked_mul(1_000_000).ok_or_else(too_large)?;
        for (i, b) in frac.bytes().enumerate() {
            let digit = u64::from(b - b'0');
            match i {
                // Six decimals are exact ppm; the seventh rounds.
                0..=5 => ppm += digit * 10u64.pow(5 - i as u32),
                6 => ppm += u64::from(digit >= 5),
                _ => break,
            }
        }
        u32::try_from(ppm).map(Ppm).map_err(|_| too_large())
    }
}

impl fmt::Display for Ppm {
    /// As a decimal: `0.15`, `1`, `0.000001`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (int, frac) = (self.0 / 1_000_000, self.0 % 1_000_000);
        if frac == 0 {
            return write!(f, "{int}");
        }
        let frac = format!("{frac:06}");
        write!(f, "{int}.{}", frac.trim_end_matches('0'))
    }
}

/// `amount × (1 − discount)`, rounded up. A discount above 100 % counts as
/// 100 % (the result is 0).
#[must_use]
pub fn apply_discount(amount: u64, discount: Ppm) -> u64 {
    let keep = 1_000_000 - u128::from(discount.0.min(1_000_000));
    let scaled = (u128::from(amount) * keep).div_ceil(1_000_000);
    // keep ≤ 1M, so the result never exceeds `amount`.
    u64::try_from(scaled).unwrap_or(amount)
}

/// `amount × (1 + fee)`, rounded up; `None` when it does not fit in a `u64`.
#[must_use]
pub fn apply_fee(amount: u64, fee: Ppm) -> Option<u64> {
    let scaled = (u128::from(amount) * (1_000_000 + u128::from(fee.0))).div_ceil(1_000_000);
    u64::try_from(scaled).ok()
}
