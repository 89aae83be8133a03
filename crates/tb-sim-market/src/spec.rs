//! What a simulated seller does ([`SellerSpec`]) and what a call costs
//! there ([`CallCost`]).

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use serde_json::{Value, json};
use tb_domain::{PaymentMethod, Protocol};

use crate::canned;

/// List prices of one model, in USD micros per 1M tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ModelPrice {
    /// Fresh input tokens (and Anthropic cache writes).
    pub input: u64,
    /// Output tokens.
    pub output: u64,
    /// Input tokens read from the prompt cache.
    pub cache_read: u64,
}

impl ModelPrice {
    /// Prices in USD micros per 1M tokens.
    pub const fn new(input: u64, output: u64, cache_read: u64) -> ModelPrice {
        ModelPrice {
            input,
            output,
            cache_read,
        }
    }
}

impl Default for ModelPrice {
    /// 10 / 30 / 1 USD per 1M (input / output / cache read): round numbers
    /// that make every canned call cost whole micros (chat and responses
    /// 363, messages 413).
    fn default() -> ModelPrice {
        ModelPrice::new(10_000_000, 30_000_000, 1_000_000)
    }
}

/// One scripted failing answer (see [`SellerSpec::fail_next`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ScriptedFailure {
    /// The status.
    pub status: u16,
    /// A `Retry-After` header value in seconds.
    pub retry_after_secs: Option<u64>,
}

impl ScriptedFailure {
    /// A failure with this status and no `Retry-After`.
    pub const fn new(status: u16) -> ScriptedFailure {
        ScriptedFailure {
            status,
            retry_after_secs: None,
        }
    }

    /// Adds `Retry-After: <secs>`.
    #[must_use]
    pub const fn retry_after(mut self, secs: u64) -> ScriptedFailure {
        self.retry_after_secs = Some(secs);
        self
    }
}

impl From<u16> for ScriptedFailure {
    fn from(status: u16) -> ScriptedFailure {
        ScriptedFailure::new(status)
    }
}

/// Deterministic failure rate: every `every`-th inference call (counted
/// over all inference calls that reach this check, 1-based) fails with
/// `status`. `every: 1` fails every call; `0` never fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FailEvery {
    /// Period in calls.
    pub every: u64,
    /// The failing status.
    pub status: u16,
}

/// Where (and what) a seller reports as settlement on a successful
/// inference call.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum SettlementMode {
    /// As `marketplace.md` says: the [header](super::SETTLEMENT_HEADER) on
    /// non-streamed answers, the [SSE event](super::SETTLEMENT_EVENT) on streamed
    /// ones.
    #[default]
    Auto,
    /// The header on every answer, streamed ones included (computed before
    /// the head is sent).
    Header,
    /// The SSE event on streamed answers; non-streamed answers carry none.
    SseEvent,
    /// The header on every answer and, on streamed ones, the event too (the
    /// same settlement twice: a daemon must count it once).
    Both,
    /// No settlement at all (the daemon must estimate).
    None,
    /// This JSON, verbatim, where `Auto` would put the computed one (for
    /// hostile or malformed fields). The seller still charges the real cost.
    Custom(Value),
    /// This text, verbatim and not even base64-encoded, where `Auto` would
    /// put the settlement: as the header value (skipped if not a valid
    /// header value) or as the event's `data:`. For undecodable settlements.
    Raw(String),
}

/// What a simulated seller sells unless told otherwise: the four LLM
/// protocols with streams (embeddings are left to manual providers, so the
/// marketplace suites keep walking what sellers stream).
pub const SOLD_PROTOCOLS: [Protocol; 4] = [
    Protocol::ChatCompletions,
    Protocol::Responses,
    Protocol::Messages,
    Protocol::ImagesGenerations,
];

/// Everything a [`SellerServer`](super::SellerServer) does, builder-style. Fields are public so
/// [`SellerServer::update`](super::SellerServer::update) can change any of them between requests.
///
/// ```
/// use std::time::Duration;
/// use tb_domain::{PaymentMethod, Protocol};
/// use tb_sim_market::{ModelPrice, SellerSpec, SettlementMode};
///
/// let spec = SellerSpec::new("s-alpha")
///     .models(["deepseek-chat", "claude-sonnet-4-5"])
///     .protocols([Protocol::ChatCompletions, Protocol::Messages])
///     .payment_methods([PaymentMethod::Mock, PaymentMethod::Clawtip])
///     .discount_ratio(0.2)
///     .price("deepseek-chat", ModelPrice::new(2_000_000, 8_000_000, 200_000))
///     .latency(Duration::from_millis(20))
///     .fail_next([503, 429])
///     .settlement(SettlementMode::Header);
/// assert_eq!(spec.scripted_failures.len(), 2);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct SellerSpec {
    /// Seller id (registry `id`). Default `s-sim`.
    pub id: String,
    /// Display name. Default `Seller <id>`.
    pub name: String,
    /// Models sold; inference and quotes for others are refused. Default
    /// `["sim-model"]`.
    pub models: Vec<String>,
    /// Protocols served; inference over others answers `404`. Default all
    /// four.
    pub protocols: Vec<Protocol>,
    /// Accepted payment methods. Default `[mock]`.
    pub payment_methods: Vec<PaymentMethod>,
    /// Discount on list prices (registry `discountRatio`; applied to the
    /// settled cost). Default 0.
    pub discount_ratio: f64,
    /// Service fee on top (registry `serviceFeeRatio`; applied to the
    /// settled cost after the discount). Default 0.
    pub service_fee_ratio: f64,
    /// List prices per model; models not listed use `default_price`.
    pub prices: BTreeMap<String, ModelPrice>,
    /// Prices of models not in `prices`. Default [`ModelPrice::default`].
    pub default_price: ModelPrice,
    /// List price of one generated image, USD micros. Default 40,000.
    pub image_price: u64,
    /// Credit a purchase grants; `None` grants what the quote asked for.
    pub credit_per_purchase: Option<u64>,
    /// Price of every quote in USD micros; `None` prices it at
    /// `credit × usd_per_credit`.
    pub price_usd_micros: Option<u64>,
    /// USD micros paid per credit micro: prices quotes (when
    /// `price_usd_micros` is `None`) and converts `settledMicros` to
    /// `settledUsdMicros`. Default 1.0.
    pub usd_per_credit: f64,
    /// Delay before every answer's head (health probes and purchases
    /// too). Default 0.
    pub latency: Duration,
    /// Streams: delay after the head, before the first event. Default 0.
    pub ttft: Duration,
    /// Streams: events per second after the first (a delay of `1 / tps`
    /// before each). `None`: no delay.
    pub tokens_per_sec: Option<f64>,
    /// Lifetime of issued tokens (`expiresAt = now + ttl`); zero makes
    /// them expired at once. Default 1 hour.
    pub token_ttl: Duration,
    /// Lifetime of quotes. Default 10 minutes.
    pub quote_ttl: Duration,
    /// Failing answers for the next inference calls, consumed in order,
    /// checked before authentication.
    pub scripted_failures: VecDeque<ScriptedFailure>,
    /// Deterministic failure rate, checked after scripted failures.
    pub fail_every: Option<FailEvery>,
    /// After this many successful calls on one token, answer `402`
    /// ("insufficient balance") on it; a new token starts again at 0.
    pub insufficient_after: Option<u64>,
    /// Settlement placement.
    pub settlement: SettlementMode,
    /// Streams: cut the byte stream into HTTP chunks of this many bytes,
    /// across events, lines, `\r\n` pairs and UTF-8 characters (also cut at
    /// the start of every delayed event).
    pub chunk_every: Option<usize>,
    /// Streams: CRLF line endings instead of LF.
    pub crlf: bool,
    /// Drop the connection mid-answer: streams after this many events
    /// (at most all but the last; the settlement is never sent), whole
    /// bodies after half their bytes. Such calls are not charged.
    pub mid_stream_drop: Option<usize>,
    /// Answer with no content and zero output tokens (input still billed;
    /// images: no image, nothing billed).
    pub empty_completion: bool,
    /// `GET /manifest` answer; `None` answers `404`. See
    /// [`generated_manifest`](SellerSpec::generated_manifest).
    pub manifest: Option<Value>,
}

impl Default for SellerSpec {
    fn default() -> SellerSpec {
        SellerSpec::new("s-sim")
    }
}

impl SellerSpec {
    /// A seller with this id and the defaults listed on each field.
    pub fn new(id: impl Into<String>) -> SellerSpec {
        let id = id.into();
        SellerSpec {
            name: format!("Seller {id}"),
            id,
            models: vec!["sim-model".into()],
            protocols: SOLD_PROTOCOLS.to_vec(),
            payment_methods: vec![PaymentMethod::Mock],
            discount_ratio: 0.0,
            service_fee_ratio: 0.0,
            prices: BTreeMap::new(),
            default_price: ModelPrice::default(),
            image_price: 40_000,
            credit_per_purchase: None,
            price_usd_micros: None,
            usd_per_credit: 1.0,
            latency: Duration::ZERO,
            ttft: Duration::ZERO,
            tokens_per_sec: None,
            token_ttl: Duration::from_secs(3600),
            quote_ttl: Duration::from_secs(600),
            scripted_failures: VecDeque::new(),
            fail_every: None,
            insufficient_after: None,
            settlement: SettlementMode::Auto,
            chunk_every: None,
            crlf: false,
            mid_stream_drop: None,
            empty_completion: false,
            manifest: None,
        }
    }

    /// Sets the display name.
    #[must_use]
    pub fn name(mut self, name: impl Into<String>) -> SellerSpec {
        self.name = name.into();
        self
    }

    /// Sets the models sold.
    #[must_use]
    pub fn models(mut self, models: impl IntoIterator<Item = impl Into<String>>) -> SellerSpec {
        self.models = models.into_iter().map(Into::into).collect();
        self
    }

    /// Sets the protocols served.
    #[must_use]
    pub fn protocols(mut self, protocols: impl IntoIterator<Item = Protocol>) -> SellerSpec {
        self.protocols = protocols.into_iter().collect();
        self
    }

    /// Sets the accepted payment methods.
    #[must_use]
    pub fn payment_methods(
        mut self,
        methods: impl IntoIterator<Item = PaymentMethod>,
    ) -> SellerSpec {
        self.payment_methods = methods.into_iter().collect();
        self
    }

    /// Sets the discount ratio (0.2 = 20 % off).
    #[must_use]
    pub fn discount_ratio(mut self, ratio: f64) -> SellerSpec {
        self.discount_ratio = ratio;
        self
    }

    /// Sets the service fee ratio (0.02 = 2 % on top).
    #[must_use]
    pub fn service_fee_ratio(mut self, ratio: f64) -> SellerSpec {
        self.service_fee_ratio = ratio;
        self
    }

    /// Sets the list prices of one model.
    #[must_use]
    pub fn price(mut self, model: impl Into<String>, price: ModelPrice) -> SellerSpec {
        self.prices.insert(model.into(), price);
        self
    }

    /// Sets the prices of models without their own.
    #[must_use]
    pub fn default_price(mut self, price: ModelPrice) -> SellerSpec {
        self.default_price = price;
        self
    }

    /// Sets the list price of one image (USD micros).
    #[must_use]
    pub fn image_price(mut self, usd_micros: u64) -> SellerSpec {
        self.image_price = usd_micros;
        self
    }

    /// Grants this much credit per purchase, whatever was asked.
    #[must_use]
    pub fn credit_per_purchase(mut self, credit_micros: u64) -> SellerSpec {
        self.credit_per_purchase = Some(credit_micros);
        self
    }

    /// Prices every quote at this many USD micros.
    #[must_use]
    pub fn price_usd_micros(mut self, usd_micros: u64) -> SellerSpec {
        self.price_usd_micros = Some(usd_micros);
        self
    }

    /// Sets USD micros per credit micro.
    #[must_use]
    pub fn usd_per_credit(mut self, rate: f64) -> SellerSpec {
        self.usd_per_credit = rate;
        self
    }

    /// Delays every answer's head.
    #[must_use]
    pub fn latency(mut self, latency: Duration) -> SellerSpec {
        self.latency = latency;
        self
    }

    /// Delays a stream's first event.
    #[must_use]
    pub fn ttft(mut self, ttft: Duration) -> SellerSpec {
        self.ttft = ttft;
        self
    }

    /// Paces a stream's events after the first.
    #[must_use]
    pub fn tokens_per_sec(mut self, tps: f64) -> SellerSpec {
        self.tokens_per_sec = Some(tps);
        self
    }

    /// Sets the token lifetime.
    #[must_use]
    pub fn token_ttl(mut self, ttl: Duration) -> SellerSpec {
        self.token_ttl = ttl;
        self
    }

    /// Queues failing answers for the next inference calls:
    /// `fail_next([503, 429])`, or with `Retry-After`:
    /// `fail_next([ScriptedFailure::new(429).retry_after(2)])`.
    #[must_use]
    pub fn fail_next(
        mut self,
        failures: impl IntoIterator<Item = impl Into<ScriptedFailure>>,
    ) -> SellerSpec {
        self.scripted_failures
            .extend(failures.into_iter().map(Into::into));
        self
    }

    /// Queues one `401` for the next inference call.
    #[must_use]
    pub fn unauthorized_next(self) -> SellerSpec {
        self.fail_next([401])
    }

    /// Fails every `every`-th inference call with `status`.
    #[must_use]
    pub fn fail_every(mut self, every: u64, status: u16) -> SellerSpec {
        self.fail_every = Some(FailEvery { every, status });
        self
    }

    /// Answers `402` after `calls` successful calls on a token.
    #[must_use]
    pub fn insufficient_after(mut self, calls: u64) -> SellerSpec {
        self.insufficient_after = Some(calls);
        self
    }

    /// Sets the settlement placement.
    #[must_use]
    pub fn settlement(mut self, mode: SettlementMode) -> SellerSpec {
        self.settlement = mode;
        self
    }

    /// Cuts streams into chunks of `bytes`.
    #[must_use]
    pub fn chunk_every(mut self, bytes: usize) -> SellerSpec {
        self.chunk_every = Some(bytes);
        self
    }

    /// Uses CRLF line endings in streams.
    #[must_use]
    pub fn crlf(mut self, crlf: bool) -> SellerSpec {
        self.crlf = crlf;
        self
    }

    /// Drops the connection after `events` events of a stream (half of a
    /// whole body).
    #[must_use]
    pub fn mid_stream_drop(mut self, events: usize) -> SellerSpec {
        self.mid_stream_drop = Some(events);
        self
    }

    /// Answers with empty completions.
    #[must_use]
    pub fn empty_completion(mut self, empty: bool) -> SellerSpec {
        self.empty_completion = empty;
        self
    }

    /// Serves this manifest.
    #[must_use]
    pub fn manifest(mut self, manifest: Value) -> SellerSpec {
        self.manifest = Some(manifest);
        self
    }

    /// Serves [`generated_manifest`](SellerSpec::generated_manifest) (as of
    /// now: later changes to the spec do not update it).
    #[must_use]
    pub fn with_generated_manifest(mut self) -> SellerSpec {
        self.manifest = Some(self.generated_manifest());
        self
    }

    /// The list prices of `model`.
    pub fn price_of(&self, model: &str) -> ModelPrice {
        self.prices
            .get(model)
            .copied()
            .unwrap_or(self.default_price)
    }

    /// A manifest describing this spec (`marketplace.md`): models,
    /// protocols, payment methods, `selection` ratios and per-model
    /// `prices` in USD per 1M tokens. The prices are what the seller
    /// charges (billing.md: a manifest price is the route's effective
    /// price): its list price × (1 − discount) × (1 + fee), so a daemon
    /// estimating with them sees (rounding aside) no drift. `usd_per_credit`
    /// is left out on purpose: a seller settling at another rate than it
    /// publishes is what the seller audit catches.
    pub fn generated_manifest(&self) -> Value {
        let discount = 1_000_000 - ratio_ppm(self.discount_ratio).min(1_000_000);
        let fee = 1_000_000 + ratio_ppm(self.service_fee_ratio);
        let charged = |list: u64| {
            let micros = u128::from(list) * u128::from(discount) * u128::from(fee);
            (micros as f64 / 1e12).round() / 1e6
        };
        let prices: serde_json::Map<String, Value> = self
            .models
            .iter()
            .map(|model| {
                let p = self.price_of(model);
                (
                    model.clone(),
                    json!({
                        "inputUsdPer1m": charged(p.input),
                        "outputUsdPer1m": charged(p.output),
                        "cacheReadUsdPer1m": charged(p.cache_read),
                    }),
                )
            })
            .collect();
        json!({
            "models": self.models,
            "protocols": self.protocols.iter().map(|p| p.as_str()).collect::<Vec<_>>(),
            "paymentMethods": self.payment_methods.iter().map(|m| m.as_str()).collect::<Vec<_>>(),
            "selection": {
                "discountRatio": self.discount_ratio,
                "serviceFeeRatio": self.service_fee_ratio,
            },
            "prices": prices,
        })
    }

    /// The registry entry of this seller served at `url`.
    pub fn registry_entry(&self, url: &str) -> Value {
        json!({
            "id": self.id,
            "name": self.name,
            "url": url,
            "models": self.models,
            "protocols": self.protocols.iter().map(|p| p.as_str()).collect::<Vec<_>>(),
            "paymentMethods": self.payment_methods.iter().map(|m| m.as_str()).collect::<Vec<_>>(),
            "discountRatio": self.discount_ratio,
            "serviceFeeRatio": self.service_fee_ratio,
            "status": "active",
        })
    }

    /// What one successful call over `protocol` for `model` costs here,
    /// given the canned usage (and [`empty_completion`](Self::empty_completion)).
    ///
    /// Token calls: OpenAI usage (chat, responses) bills
    /// `INPUT_TOKENS − CACHED_INPUT_TOKENS` = 9 fresh input tokens, 3 cache
    /// reads and 9 output tokens; Anthropic usage (messages) bills
    /// `INPUT_TOKENS + CACHE_CREATION_INPUT_TOKENS` = 14 input tokens at the
    /// input price, 3 cache reads and 9 output tokens. Each component cost
    /// is `ceil(tokens × price / 1M)`; `originalUsdMicros` is the sum
    /// rounded up once (`ceil(Σ tokens × price / 1M)`, as the daemon's
    /// price table computes it). Images: one image at
    /// [`image_price`](Self::image_price).
    ///
    /// Then `settledMicros = ceil(ceil(original × (1 − discount)) × (1 +
    /// fee))` (credit micros; 1 credit micro = 1 USD micro at list price),
    /// and `settledUsdMicros = round(settledMicros × usd_per_credit)`.
    pub fn call_cost(&self, protocol: Protocol, model: &str) -> CallCost {
        let discount_ppm = ratio_ppm(self.discount_ratio).min(1_000_000);
        let fee_ppm = ratio_ppm(self.service_fee_ratio);
        let multiplier =
            (1.0 - self.discount_ratio.clamp(0.0, 1.0)) * (1.0 + self.service_fee_ratio.max(0.0));
        let mut cost = CallCost {
            billing_unit: "tokens",
            price: self.price_of(model),
            input_tokens: 0,
            cache_read_tokens: 0,
            output_tokens: 0,
            input_cost_micros: 0,
            cache_read_cost_micros: 0,
            output_cost_micros: 0,
            image_count: 0,
            image_cost_micros_per_image: self.image_price,
            original_usd_micros: 0,
            billing_multiplier: multiplier,
            settled_micros: 0,
            settled_usd_micros: 0,
        };
        let output = if self.empty_completion {
            0
        } else {
            canned::OUTPUT_TOKENS
        };
        match protocol {
            Protocol::ChatCompletions | Protocol::Responses => {
                cost.input_tokens = canned::INPUT_TOKENS - canned::CACHED_INPUT_TOKENS;
                cost.cache_read_tokens = canned::CACHED_INPUT_TOKENS;
                cost.output_tokens = output;
            }
            Protocol::Messages => {
                cost.input_tokens = canned::INPUT_TOKENS + canned::CACHE_CREATION_INPUT_TOKENS;
                cost.cache_read_tokens = canned::CACHED_INPUT_TOKENS;
                cost.output_tokens = output;
            }
            Protocol::ImagesGenerations | Protocol::ImagesEdits => {
                cost.billing_unit = "images";
                cost.image_count = u64::from(!self.empty_completion);
            }
            Protocol::Embeddings => cost.input_tokens = canned::INPUT_TOKENS,
            // Sellers do not serve video jobs: nothing to count.
            Protocol::Videos => {}
        }
        if protocol.is_images() {
            cost.original_usd_micros = cost.image_count.saturating_mul(self.image_price);
        } else {
            let p = cost.price;
            let terms = [
                u128::from(cost.input_tokens) * u128::from(p.input),
                u128::from(cost.cache_read_tokens) * u128::from(p.cache_read),
                u128::from(cost.output_tokens) * u128::from(p.output),
            ];
            cost.input_cost_micros = ceil_million(terms[0]);
            cost.cache_read_cost_micros = ceil_million(terms[1]);
            cost.output_cost_micros = ceil_million(terms[2]);
            cost.original_usd_micros = ceil_million(terms.iter().sum());
        }
        let discounted = ceil_million(
            u128::from(cost.original_usd_micros) * u128::from(1_000_000 - discount_ppm),
        );
        cost.settled_micros =
            ceil_million(u128::from(discounted) * (1_000_000 + u128::from(fee_ppm)));
        cost.settled_usd_micros = (cost.settled_micros as f64 * self.usd_per_credit.max(0.0))
            .round()
            .min(u64::MAX as f64) as u64;
        cost
    }
}

fn ratio_ppm(ratio: f64) -> u64 {
    if ratio.is_finite() && ratio > 0.0 {
        (ratio * 1e6).round().min(1e12) as u64
    } else {
        0
    }
}

fn ceil_million(numerator: u128) -> u64 {
    u64::try_from(numerator.div_ceil(1_000_000)).unwrap_or(u64::MAX)
}

/// The cost of one call at a seller (see [`SellerSpec::call_cost`]); what
/// the settlement reports.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CallCost {
    /// `tokens` or `images`.
    pub billing_unit: &'static str,
    /// The model's list prices (token calls).
    pub price: ModelPrice,
    /// Input tokens billed at the input price.
    pub input_tokens: u64,
    /// Cache-read tokens.
    pub cache_read_tokens: u64,
    /// Output tokens.
    pub output_tokens: u64,
    /// `ceil(input_tokens × input price / 1M)`.
    pub input_cost_micros: u64,
    /// `ceil(cache_read_tokens × cache read price / 1M)`.
    pub cache_read_cost_micros: u64,
    /// `ceil(output_tokens × output price / 1M)`.
    pub output_cost_micros: u64,
    /// Images generated (image calls).
    pub image_count: u64,
    /// List price of one image.
    pub image_cost_micros_per_image: u64,
    /// The list-price cost, USD micros.
    pub original_usd_micros: u64,
    /// `(1 − discount) × (1 + fee)`.
    pub billing_multiplier: f64,
    /// Credit micros deducted from the token.
    pub settled_micros: u64,
    /// USD value of the deducted credit.
    pub settled_usd_micros: u64,
}

impl CallCost {
    /// The settlement JSON (`marketplace.md`) for a call with this cost.
    pub fn settlement_json(&self, request_id: &str, remaining_credit_micros: u64) -> Value {
        let breakdown = if self.billing_unit == "images" {
            json!({
                "billingUnit": "images",
                "imageCount": self.image_count,
                "imageSize": "1024x1024",
                "imageQuality": "low",
                "imageOutputFormat": "png",
                "imageOutputTokens": if self.image_count > 0 { canned::IMAGE_OUTPUT_TOKENS } else { 0 },
                "imageOutputCostMicros": self.original_usd_micros,
                "imageCostMicrosPerImage": self.image_cost_micros_per_image,
                "originalUsdMicros": self.original_usd_micros,
                "billingMultiplier": self.billing_multiplier,
                "serviceTier": "default",
            })
        } else {
            json!({
                "billingUnit": "tokens",
                "inputPriceMicrosPer1m": self.price.input,
                "outputPriceMicrosPer1m": self.price.output,
                "cacheReadPriceMicrosPer1m": self.price.cache_read,
                "inputCostMicros": self.input_cost_micros,
                "outputCostMicros": self.output_cost_micros,
                "cacheReadCostMicros": self.cache_read_cost_micros,
                "originalUsdMicros": self.original_usd_micros,
                "billingMultiplier": self.billing_multiplier,
                "serviceTier": "default",
            })
        };
        json!({
            "requestId": request_id,
            "settledMicros": self.settled_micros,
            "settledUsdMicros": self.settled_usd_micros,
            "remainingCreditMicros": remaining_credit_micros,
            "billingBreakdown": breakdown,
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn default_prices_make_whole_micros() {
        let spec = SellerSpec::default();
        let chat = spec.call_cost(Protocol::ChatCompletions, "sim-model");
        assert_eq!(
            (
                chat.input_cost_micros,
                chat.cache_read_cost_micros,
                chat.output_cost_micros
            ),
            (90, 3, 270)
        );
        assert_eq!(chat.original_usd_micros, 363);
        assert_eq!(chat.settled_micros, 363);
        let messages = spec.call_cost(Protocol::Messages, "sim-model");
        assert_eq!(messages.original_usd_micros, 413);
        let image = spec.call_cost(Protocol::ImagesGenerations, "sim-model");
        assert_eq!(
            (image.billing_unit, image.settled_micros),
            ("images", 40_000)
        );
    }

    #[test]
    fn discount_and_fee_round_up_like_the_daemon() {
        let spec = SellerSpec::default()
            .discount_ratio(0.2)
            .service_fee_ratio(0.02)
            .usd_per_credit(0.5);
        let cost = spec.call_cost(Protocol::ChatCompletions, "sim-model");
        // ceil(363 × 0.8) = 291; ceil(291 × 1.02) = 297.
        assert_eq!(cost.settled_micros, 297);
        assert_eq!(cost.settled_usd_micros, 149);
        assert!((cost.billing_multiplier - 0.816).abs() < 1e-9);
    }

    #[test]
    fn empty_completion_bills_input_only() {
        let spec = SellerSpec::default().empty_completion(true);
        let cost = spec.call_cost(Protocol::ChatCompletions, "sim-model");
        assert_eq!((cost.output_cost_micros, cost.original_usd_micros), (0, 93));
        let image = spec.call_cost(Protocol::ImagesGenerations, "sim-model");
        assert_eq!(image.settled_micros, 0);
    }
}
