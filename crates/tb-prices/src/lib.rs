//! The bundled LLM price table, price lookup, and integer cost arithmetic.
//!
//! # Why
//!
//! tokenbuddy reports what every proxied call cost and what it saved. That
//! needs list prices that are available offline, reviewable in a diff, and
//! free of floating-point drift. So the table is **generated at development
//! time** from a committed LiteLLM snapshot (`data/`, MIT-licensed) by
//! `cargo xtask gen-prices`, committed as `src/generated.rs`, and compiled in
//! as a sorted static slice: no I/O, no parsing, no allocation at run time.
//!
//! Every price is an integer number of **USD micros per 1M tokens** (or USD
//! micros per image), converted from LiteLLM's per-token floats exactly, by
//! decimal arithmetic on the JSON text. A price LiteLLM does not give (or
//! gives as `0`, its placeholder) is `None`, never `0`: an unknown price makes
//! a cost unknown rather than free. Costs are computed with `u128`
//! intermediates and rounded up once at the end.
//!
//! Tiered prices are in the table too ([`ModelPrice::tiers`]): the
//! `_priority` and `_flex` service tiers, the context thresholds
//! (`…_above_200k_tokens`: the whole call at the higher rates) and the
//! 1-hour cache-write price; [`ModelPrice::tiered`] picks what a call is
//! billed at from what its answer reports. `_batches` prices are not (the
//! batch API is not proxied).
//!
//! # Example
//!
//! ```
//! use tb_prices::{ServiceTier, TokenCounts, price_for};
//!
//! // A provider prefix and a dotted version still find the table entry.
//! let found = price_for("anthropic/claude-sonnet-4.5").expect("priced");
//! assert_eq!(found.resolved, "claude-sonnet-4-5");
//! assert_eq!(found.rule.to_string(), "provider prefix removed + version separator swapped");
//! assert_eq!(found.price.tokens.input, Some(3_000_000)); // $3.00 per 1M
//!
//! // 1M input tokens (200k of them cache reads) and 100k output tokens.
//! let counts = TokenCounts { input: 1_000_000, cached: 200_000, output: 100_000, ..TokenCounts::default() };
//! assert_eq!(found.price.cost_usd_micros(counts), Some(3_960_000)); // $3.960000
//!
//! // Gemini 2.5 Pro above 200k input tokens: the whole call at 2× input, 1.5× output.
//! let gemini = tb_prices::get("gemini-2.5-pro").expect("priced");
//! let long = TokenCounts { input: 300_000, output: 10_000, ..TokenCounts::default() };
//! let billed = gemini.tiered(ServiceTier::Standard, long);
//! assert_eq!(billed.tier.to_string(), "above_200k");
//! assert_eq!(tb_prices::cost_usd_micros(&billed.prices, long), Some(900_000)); // 0.3M × $2.50 + 10k × $15
//!
//! // Unknown models are unpriced, never free; `closest` helps the message.
//! assert!(price_for("no-such-model").is_none());
//! assert!(!tb_prices::closest("gpt-4o-mni", 3).is_empty());
//! ```

mod cost;
mod generated;
mod image;
mod lookup;
mod ratio;
mod tier;
mod video;

use std::fmt;

pub use cost::{TokenCounts, cached_saving, cost_usd_micros};
pub use image::{ImageCost, ImageCostBasis, ImageTokenCounts, ImageUsage, image_cost_usd_micros};
pub use lookup::{Lookup, LookupRule, closest, get, price_for};
pub use ratio::{Ppm, RatioError, apply_discount, apply_fee};
pub use tier::{
    BadBilledTier, BilledTier, ServiceTier, Threshold, TierPrices, Tiered, UnknownServiceTier,
};
pub use video::{VideoPrice, video_price, video_table};

/// The LiteLLM snapshot file the table was generated from (its file name in
/// `crates/tb-prices/data/`).
pub const SOURCE_FILE: &str = generated::SOURCE_FILE;

/// The SHA-256 (lowercase hex) of [`SOURCE_FILE`] as generated.
pub const SOURCE_SHA256: &str = generated::SOURCE_SHA256;

/// Every priced model, sorted by [`ModelPrice::id`] (ids are unique).
#[must_use]
pub fn table() -> &'static [ModelPrice] {
    generated::ENTRIES
}

/// What kind of endpoint a model is priced for (LiteLLM's `mode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Mode {
    /// Chat completions (`mode: chat`).
    Chat,
    /// The Responses API only (`mode: responses`).
    Responses,
    /// Image generation (`mode: image_generation`).
    ImageGeneration,
    /// Embeddings (`mode: embedding`): input tokens only.
    Embedding,
}

impl Mode {
    /// LiteLLM's spelling: `chat`, `responses`, `image_generation` or
    /// `embedding`.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Mode::Chat => "chat",
            Mode::Responses => "responses",
            Mode::ImageGeneration => "image_generation",
            Mode::Embedding => "embedding",
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Per-token prices in **USD micros per 1M tokens** (`2_500_000` is $2.50
/// per 1M tokens). `None` means the price is unknown, never free.
///
/// The same shape serves the table's text-token prices, its image-token
/// prices, and an effective route price after a discount or a fee.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct TokenPrices {
    /// Fresh (uncached) input tokens.
    pub input: Option<u64>,
    /// Output tokens (reasoning tokens included: they are inside output).
    pub output: Option<u64>,
    /// Input tokens read from the prompt cache; `None` bills them at `input`.
    pub cache_read: Option<u64>,
    /// Input tokens written to the prompt cache; `None` bills them at `input`.
    pub cache_write: Option<u64>,
    /// Input tokens written to the prompt cache for 1 hour (Anthropic's
    /// extended cache); `None` bills them at `cache_write`, else `input`.
    pub cache_write_1h: Option<u64>,
}

impl TokenPrices {
    /// No price known at all.
    pub const NONE: TokenPrices = TokenPrices {
        input: None,
        output: None,
        cache_read: None,
        cache_write: None,
        cache_write_1h: None,
    };

    /// `true` when no price is known.
    #[must_use]
    pub const fn is_none(&self) -> bool {
        self.input.is_none()
            && self.output.is_none()
            && self.cache_read.is_none()
            && self.cache_write.is_none()
            && self.cache_write_1h.is_none()
    }

    /// Each price of `self`, else the same class's price of `fallback`.
    #[must_use]
    pub const fn or(self, fallback: TokenPrices) -> TokenPrices {
        const fn pick(a: Option<u64>, b: Option<u64>) -> Option<u64> {
            match a {
                Some(a) => Some(a),
                None => b,
            }
        }
        TokenPrices {
            input: pick(self.input, fallback.input),
            output: pick(self.output, fallback.output),
            cache_read: pick(self.cache_read, fallback.cache_read),
            cache_write: pick(self.cache_write, fallback.cache_write),
            cache_write_1h: pick(self.cache_write_1h, fallback.cache_write_1h),
        }
    }

    /// Every known price × (1 − `discount`), each rounded up
    /// (see [`apply_discount`]).
    #[must_use]
    pub fn discounted(self, discount: Ppm) -> TokenPrices {
        let f = |p: Option<u64>| p.map(|p| apply_discount(p, discount));
        TokenPrices {
            input: f(self.input),
            output: f(self.output),
            cache_read: f(self.cache_read),
            cache_write: f(self.cache_write),
            cache_write_1h: f(self.cache_write_1h),
        }
    }

    /// Every known price × (1 + `fee`), each rounded up (see [`apply_fee`]);
    /// `None` on overflow.
    #[must_use]
    pub fn with_fee(self, fee: Ppm) -> Option<TokenPrices> {
        let f = |p: Option<u64>| match p {
            Some(p) => apply_fee(p, fee).map(Some),
            None => Some(None),
        };
        Some(TokenPrices {
            input: f(self.input)?,
            output: f(self.output)?,
            cache_read: f(self.cache_read)?,
            cache_write: f(self.cache_write)?,
            cache_write_1h: f(self.cache_write_1h)?,
        })
    }
}

/// One model's list prices, as generated from LiteLLM's data.
///
/// Chat and responses models always have `tokens.input` and `tokens.output`
/// (entries without both are not in the table). Image models may have any
/// mix of text-token prices, image-token prices and per-image prices.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ModelPrice {
    /// The model id: LiteLLM's key with everything up to the first `/`
    /// removed (`gpt-4o`, `claude-sonnet-4-5`, `deepseek-chat`).
    pub id: &'static str,
    /// LiteLLM's `litellm_provider` of the entry the price came from
    /// (`openai`, `anthropic`, `deepseek`, …).
    pub provider: &'static str,
    /// The endpoint kind this model is priced for.
    pub mode: Mode,
    /// Text-token prices of the base (standard) tier.
    pub tokens: TokenPrices,
    /// The tiered prices LiteLLM publishes for the model (`_priority`,
    /// `_flex`, `…_above_200k_tokens` and their combinations), sorted by
    /// service tier then threshold; empty for most models. See
    /// [`ModelPrice::tiered`].
    pub tiers: &'static [TierPrices],
    /// Image-token prices (`input_cost_per_image_token`,
    /// `output_cost_per_image_token`, `cache_read_input_image_token_cost`;
    /// `cache_write` is always `None`). Used for an image answer that reports
    /// token usage.
    pub image_tokens: TokenPrices,
    /// USD micros per generated image, by `quality/WxH` (`low/1024x1024`,
    /// `default/1024x1024` when LiteLLM gives no quality), sorted by key.
    pub per_image: &'static [(&'static str, u64)],
    /// USD micros per generated image at any quality and size: the price on
    /// the model's own entry, the last fallback of
    /// [`ModelPrice::per_image_price`].
    pub per_image_any_size: Option<u64>,
}

impl ModelPrice {
    /// The cost of a text-token call at the base (standard) tier; see
    /// [`cost_usd_micros`] and, for what an answer says it used,
    /// [`ModelPrice::tiered`].
    #[must_use]
    pub fn cost_usd_micros(&self, counts: TokenCounts) -> Option<u64> {
        cost_usd_micros(&self.tokens, counts)
    }

    /// The prompt-cache saving of a text-token call; see [`cached_saving`].
    #[must_use]
    pub fn cached_saving(&self, counts: TokenCounts) -> Option<u64> {
        cached_saving(&self.tokens, counts)
    }

    /// The cost of an image answer; see [`image_cost_usd_micros`].
    #[must_use]
    pub fn image_cost(&self, usage: &ImageUsage<'_>) -> Option<ImageCost> {
        image_cost_usd_micros(self, usage)
    }
}
