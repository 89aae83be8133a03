//! Integer cost of a text-token call.

use crate::TokenPrices;

/// Prices are per 1M tokens, so a sum of `tokens × price` is divided by this.
pub(crate) const PER_MILLION: u128 = 1_000_000;

/// Token counts of one call, as extracted from the answer's usage.
///
/// `input` is the **total** input: fresh + cache reads + cache writes.
/// Reasoning tokens are not a field: they are already inside `output`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct TokenCounts {
    /// Total input tokens (fresh + `cached` + `cache_write`).
    pub input: u64,
    /// Input tokens read from the prompt cache.
    pub cached: u64,
    /// Input tokens written to the prompt cache (1-hour writes included).
    pub cache_write: u64,
    /// Of `cache_write`, the tokens written for 1 hour (billed at the
    /// 1-hour write price).
    pub cache_write_1h: u64,
    /// Output tokens (reasoning included).
    pub output: u64,
}

impl TokenCounts {
    /// The counts with `cached + cache_write` clamped to at most `input`:
    /// `cached` is clamped first, then `cache_write` to what is left, then
    /// `cache_write_1h` to at most `cache_write`.
    #[must_use]
    pub fn clamped(self) -> TokenCounts {
        let cached = self.cached.min(self.input);
        let cache_write = self.cache_write.min(self.input - cached);
        TokenCounts {
            input: self.input,
            cached,
            cache_write,
            cache_write_1h: self.cache_write_1h.min(cache_write),
            output: self.output,
        }
    }

    /// Fresh input tokens: `input − cached − cache_write` after clamping.
    #[must_use]
    pub fn fresh_input(self) -> u64 {
        let c = self.clamped();
        c.input - c.cached - c.cache_write
    }
}

/// `tokens × price` in USD micros × 1M, or `None` when tokens are billed
/// but the price is unknown. Zero tokens cost nothing whatever the price.
pub(crate) fn term(tokens: u64, price: Option<u64>) -> Option<u128> {
    if tokens == 0 {
        return Some(0);
    }
    Some(u128::from(tokens) * u128::from(price?))
}

/// The unrounded cost in USD micros × 1M (sum of `tokens × price`).
pub(crate) fn cost_numerator(prices: &TokenPrices, counts: TokenCounts) -> Option<u128> {
    let c = counts.clamped();
    let fresh = c.input - c.cached - c.cache_write;
    let write = prices.cache_write.or(prices.input);
    let parts = [
        term(fresh, prices.input)?,
        term(c.cached, prices.cache_read.or(prices.input))?,
        term(c.cache_write - c.cache_write_1h, write)?,
        term(c.cache_write_1h, prices.cache_write_1h.or(write))?,
        term(c.output, prices.output)?,
    ];
    parts.iter().try_fold(0u128, |sum, p| sum.checked_add(*p))
}

/// `numerator ÷ 1M`, rounded up; `None` when it does not fit in a `u64`.
pub(crate) fn ceil_micros(numerator: u128) -> Option<u64> {
    u64::try_from(numerator.div_ceil(PER_MILLION)).ok()
}

/// The cost of a call in USD micros, rounded up once at the end:
///
/// `(input − cached − cache_write) × input_price + cached × (cache_read ??
/// input_price) + (cache_write − cache_write_1h) × (cache_write ??
/// input_price) + cache_write_1h × (cache_write_1h ?? cache_write ??
/// input_price) + output × output_price`, all ÷ 1,000,000, with `u128`
/// intermediates and `cached + cache_write` clamped to at most `input` (see
/// [`TokenCounts::clamped`]).
///
/// `None` when a price needed for a non-zero count is unknown (the call is
/// unpriced, never priced at 0) or on overflow.
///
/// ```
/// use tb_prices::{TokenCounts, TokenPrices, cost_usd_micros};
/// let p = TokenPrices { input: Some(3_000_000), output: Some(15_000_000), cache_read: Some(300_000), cache_write: Some(3_750_000), cache_write_1h: Some(6_000_000) };
/// let c = TokenCounts { input: 1_000, output: 1, ..TokenCounts::default() };
/// assert_eq!(cost_usd_micros(&p, c), Some(3_015)); // 3000 + 15 micros
/// // 1000 tokens written to the cache, 600 of them for 1 hour.
/// let c = TokenCounts { input: 1_000, cache_write: 1_000, cache_write_1h: 600, ..TokenCounts::default() };
/// assert_eq!(cost_usd_micros(&p, c), Some(5_100)); // 400 × 3.75 + 600 × 6
/// ```
#[must_use]
pub fn cost_usd_micros(prices: &TokenPrices, counts: TokenCounts) -> Option<u64> {
    ceil_micros(cost_numerator(prices, counts)?)
}

/// What the provider's prompt cache saved on this call, in USD micros: the
/// cached (cache-read) tokens at the input price minus the same tokens at the
/// cache-read price, rounded **down** (a saving is never overstated).
///
/// `Some(0)` when nothing was cached or no cache-read price is known (such
/// tokens are billed at the input price, so nothing was saved) or when the
/// cache-read price is not below the input price; `None` when tokens were
/// cached but the input price is unknown. This is the provider's own
/// discount, never a routing saving.
#[must_use]
pub fn cached_saving(prices: &TokenPrices, counts: TokenCounts) -> Option<u64> {
    let cached = counts.clamped().cached;
    if cached == 0 {
        return Some(0);
    }
    let input = prices.input?;
    let Some(read) = prices.cache_read else {
        return Some(0);
    };
    let per_token = u128::from(input.saturating_sub(read));
    u64::try_from(u128::from(cached) * per_token / PER_MILLION).ok()
}
