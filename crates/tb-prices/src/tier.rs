//! Tiered prices: which of a model's published prices a call is billed at
//! (billing.md, "Price table").
//!
//! A provider charges more (or less) than the base price when the answer
//! says so:
//!
//! - the **service tier** the answer reports (`service_tier: "priority"` or
//!   `"flex"` on an OpenAI answer, `usage.service_tier` on an Anthropic
//!   one): the tier's prices, each class falling back to the base price
//!   when the tier does not publish it (LiteLLM's rule);
//! - a **context threshold** (`…_above_200k_tokens`): when the prompt's
//!   total input (fresh + cache reads + cache writes) is over it, the
//!   **whole call** (input, cache, output) is billed at the higher rates, as
//!   the providers bill; with a service tier too, the service tier's
//!   above-threshold price wins, then the standard above-threshold price,
//!   then the service tier's (or base) price;
//! - **1-hour cache writes** (Anthropic's
//!   `usage.cache_creation.ephemeral_1h_input_tokens`): those tokens at the
//!   1-hour write price (`cache_creation_input_token_cost_above_1hr`, per
//!   threshold too), else the 5-minute write price, else the input price.
//!
//! Pure: the usage facts come in as values.

use std::fmt;
use std::str::FromStr;

use crate::{ModelPrice, TokenCounts, TokenPrices};

/// The service tier an answer was served at, as far as prices go.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ServiceTier {
    /// The base price (`default`, `auto`, `standard`, `scale`, or no tier
    /// reported).
    #[default]
    Standard,
    /// Priority processing (`priority`; `fast` is billed as priority, as
    /// LiteLLM does).
    Priority,
    /// Flex processing (`flex`): slower, cheaper.
    Flex,
}

impl ServiceTier {
    /// `standard`, `priority` or `flex`.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            ServiceTier::Standard => "standard",
            ServiceTier::Priority => "priority",
            ServiceTier::Flex => "flex",
        }
    }

    /// What an answer's `service_tier` value is billed as. Every value
    /// without a price of its own (`default`, `auto`, `standard`, `scale`,
    /// `batch`, anything new) is the standard tier.
    #[must_use]
    pub fn from_answer(value: &str) -> ServiceTier {
        match value.trim().to_ascii_lowercase().as_str() {
            "priority" | "fast" => ServiceTier::Priority,
            "flex" => ServiceTier::Flex,
            _ => ServiceTier::Standard,
        }
    }
}

impl fmt::Display for ServiceTier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A service tier name that is not `standard`, `default`, `priority` or `flex`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown service tier {0:?} (expected standard, priority or flex)")]
pub struct UnknownServiceTier(pub String);

impl FromStr for ServiceTier {
    type Err = UnknownServiceTier;

    /// Strict, for a user's flag: `standard` (or `default`), `priority`, `flex`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "standard" | "default" => Ok(ServiceTier::Standard),
            "priority" => Ok(ServiceTier::Priority),
            "flex" => Ok(ServiceTier::Flex),
            other => Err(UnknownServiceTier(other.to_owned())),
        }
    }
}

/// A context-length threshold of a tiered price.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Threshold {
    /// Applies when the total input is **over** the count (`> 200_000`):
    /// how Google, OpenAI, Anthropic and the others bill `…_above_200k_tokens`.
    Over(u64),
    /// Applies from the count on (`>= 200_000`): xAI's reading of the same
    /// keys (as LiteLLM bills it).
    AtLeast(u64),
}

impl Threshold {
    /// The token count named by the price key (`200_000` for `above_200k`).
    #[must_use]
    pub const fn tokens(self) -> u64 {
        match self {
            Threshold::Over(n) | Threshold::AtLeast(n) => n,
        }
    }

    /// Whether a call with `input` total input tokens is billed above it.
    #[must_use]
    pub const fn applies(self, input: u64) -> bool {
        match self {
            Threshold::Over(n) => input > n,
            Threshold::AtLeast(n) => input >= n,
        }
    }

    fn count_text(n: u64) -> String {
        if n > 0 && n.is_multiple_of(1_000) {
            format!("{}k", n / 1_000)
        } else {
            n.to_string()
        }
    }

    fn parse_count(text: &str) -> Option<u64> {
        let (digits, scale) = match text.strip_suffix('k') {
            Some(d) => (d, 1_000),
            None => (text, 1),
        };
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        digits.parse::<u64>().ok()?.checked_mul(scale)
    }
}

impl fmt::Display for Threshold {
    /// `above_200k` (over) or `from_200k` (at least).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Threshold::Over(n) => write!(f, "above_{}", Threshold::count_text(*n)),
            Threshold::AtLeast(n) => write!(f, "from_{}", Threshold::count_text(*n)),
        }
    }
}

/// The prices one tier publishes, as the table holds them. A `None` price
/// falls back (see [`ModelPrice::tiered`]); it is never free.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TierPrices {
    /// The service tier these prices are for.
    pub service: ServiceTier,
    /// The context threshold above which they apply; `None`: at any length.
    pub above: Option<Threshold>,
    /// The prices (`cache_write_1h` included).
    pub tokens: TokenPrices,
}

/// Which tier a call was billed at: what the call record says so the user
/// can see why a call cost 2×. Written `standard`, or the applied parts
/// joined by `+`: the service tier (`priority`, `flex`), the threshold
/// (`above_200k`), `cache_write_1h` when 1-hour cache writes were billed at
/// a 1-hour price (`priority+above_200k`, `cache_write_1h`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct BilledTier {
    /// The service tier whose prices were used (standard when the model
    /// publishes none for the tier the answer reported).
    pub service: ServiceTier,
    /// The context threshold whose prices were used.
    pub above: Option<Threshold>,
    /// 1-hour cache-write tokens were billed at a 1-hour price.
    pub cache_write_1h: bool,
}

impl BilledTier {
    /// The base tier: nothing applied.
    pub const STANDARD: BilledTier = BilledTier {
        service: ServiceTier::Standard,
        above: None,
        cache_write_1h: false,
    };
}

impl fmt::Display for BilledTier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts: Vec<String> = Vec::with_capacity(3);
        if self.service != ServiceTier::Standard {
            parts.push(self.service.as_str().to_owned());
        }
        if let Some(t) = self.above {
            parts.push(t.to_string());
        }
        if self.cache_write_1h {
            parts.push("cache_write_1h".to_owned());
        }
        if parts.is_empty() {
            f.write_str(ServiceTier::Standard.as_str())
        } else {
            f.write_str(&parts.join("+"))
        }
    }
}

/// A billed-tier label that does not read back.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a billed price tier: {0:?}")]
pub struct BadBilledTier(pub String);

impl FromStr for BilledTier {
    type Err = BadBilledTier;

    /// Reads what [`Display`](fmt::Display) writes, exactly.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || BadBilledTier(s.to_owned());
        if s == "standard" {
            return Ok(BilledTier::STANDARD);
        }
        let mut tier = BilledTier::STANDARD;
        // The parts in their written order, each at most once.
        let mut stage = 0;
        for part in s.split('+') {
            let (at, parsed) = match part {
                "priority" => (1, Some(ServiceTier::Priority)),
                "flex" => (1, Some(ServiceTier::Flex)),
                "cache_write_1h" => (3, None),
                _ => (2, None),
            };
            if at <= stage {
                return Err(bad());
            }
            stage = at;
            match at {
                1 => tier.service = parsed.ok_or_else(bad)?,
                3 => tier.cache_write_1h = true,
                _ => {
                    let threshold = if let Some(n) = part.strip_prefix("above_") {
                        Threshold::Over(Threshold::parse_count(n).ok_or_else(bad)?)
                    } else if let Some(n) = part.strip_prefix("from_") {
                        Threshold::AtLeast(Threshold::parse_count(n).ok_or_else(bad)?)
                    } else {
                        return Err(bad());
                    };
                    tier.above = Some(threshold);
                }
            }
        }
        // Lossless: only what Display writes reads back.
        if tier.to_string() == s {
            Ok(tier)
        } else {
            Err(bad())
        }
    }
}

/// The prices a call is billed at, and which tier that is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Tiered {
    /// The resolved prices (fallbacks applied, `cache_write_1h` included).
    pub prices: TokenPrices,
    /// Which tier they are.
    pub tier: BilledTier,
}

impl ModelPrice {
    /// The prices a call is billed at when the answer reports `service`
    /// and used `counts` (its `input` is the total: fresh + cache reads +
    /// cache writes, the length the thresholds are read against).
    ///
    /// 1. The service tier's prices, class by class, else the base price;
    ///    a model that publishes no price for `service` is billed standard.
    /// 2. The highest context threshold the input is over (among those with
    ///    a standard above-threshold input price, as LiteLLM reads them):
    ///    the service tier's above-threshold price, else the standard
    ///    above-threshold price, else step 1's price, class by class.
    ///
    /// `tier.cache_write_1h` is set when 1-hour cache writes were made and
    /// a 1-hour write price is known.
    #[must_use]
    pub fn tiered(&self, service: ServiceTier, counts: TokenCounts) -> Tiered {
        let input = counts.input;
        let published = |s: ServiceTier, above: Option<Threshold>| {
            self.tiers
                .iter()
                .find(|t| t.service == s && t.above == above)
                .map(|t| t.tokens)
        };
        let mut tier = BilledTier::STANDARD;
        let mut prices = self.tokens;
        if service != ServiceTier::Standard && self.tiers.iter().any(|t| t.service == service) {
            tier.service = service;
            if let Some(p) = published(service, None) {
                prices = p.or(prices);
            }
        }
        let threshold = self
            .tiers
            .iter()
            .filter(|t| t.service == ServiceTier::Standard && t.tokens.input.is_some())
            .filter_map(|t| t.above)
            .filter(|t| t.applies(input))
            .max_by_key(|t| t.tokens());
        if let Some(above) = threshold {
            let standard =
                published(ServiceTier::Standard, Some(above)).unwrap_or(TokenPrices::NONE);
            let own = match tier.service {
                ServiceTier::Standard => TokenPrices::NONE,
                s => published(s, Some(above)).unwrap_or(TokenPrices::NONE),
            };
            prices = own.or(standard).or(prices);
            tier.above = Some(above);
        }
        tier.cache_write_1h =
            prices.cache_write_1h.is_some() && counts.clamped().cache_write_1h > 0;
        Tiered { prices, tier }
    }
}
