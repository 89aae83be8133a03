//! What a call cost, what it would have cost, and what routing saved
//! (billing.md, "Settlement vs estimate" and "Savings baseline").
//!
//! Pure: the usage, the route prices and the reported cost come in as
//! values; integer USD micros come out. `None` is unknown, never zero.

use tb_prices::{BilledTier, ImageTokenCounts, ModelPrice, Ppm, TokenCounts, TokenPrices};

use crate::record::{BalanceSource, BaselineKind};
use crate::usage::Usage;

/// How one route prices one model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoutePrice {
    /// The provider's explicit `prices` for the model (they win over the table).
    Explicit(TokenPrices),
    /// The bundled table price × (1 − discount) × (1 + fee).
    Table {
        /// The table entry.
        price: &'static ModelPrice,
        /// The provider's or seller's discount.
        discount: Ppm,
        /// A seller's service fee (zero for manual providers).
        fee: Ppm,
    },
    /// No price known.
    Unpriced,
}

impl RoutePrice {
    /// A manual provider's price for `model`: explicit prices, else the
    /// table (with the provider's discount), else unpriced.
    pub fn manual(explicit: Option<TokenPrices>, model: &str, discount: Ppm) -> RoutePrice {
        RoutePrice::seller(explicit, model, discount, Ppm::ZERO)
    }

    /// A marketplace seller's price for `model`: its manifest price, else
    /// the table × (1 − `discountRatio`) × (1 + `serviceFeeRatio`).
    pub fn seller(
        manifest: Option<TokenPrices>,
        model: &str,
        discount: Ppm,
        fee: Ppm,
    ) -> RoutePrice {
        if let Some(p) = manifest {
            return RoutePrice::Explicit(p);
        }
        match tb_prices::price_for(model) {
            Some(found) => RoutePrice::Table {
                price: found.price,
                discount,
                fee,
            },
            None => RoutePrice::Unpriced,
        }
    }

    /// The first-party list price of `model` (no discount): the `official` baseline.
    pub fn official(model: &str) -> RoutePrice {
        RoutePrice::manual(None, model, Ppm::ZERO)
    }

    /// What `usage` costs at this price, rounded up; `None` when the price
    /// or the usage needed is unknown. A table price is the tier the answer
    /// says it used (service tier, context length, 1-hour cache writes:
    /// [`ModelPrice::tiered`]); explicit prices have no tiers.
    pub fn cost(&self, usage: &Usage) -> Option<u64> {
        match usage.image.as_ref() {
            Some(image) => self.image_cost(usage, image),
            None => {
                let counts = counts(usage)?;
                tb_prices::cost_usd_micros(&self.tiered(usage, counts)?.0, counts)
            }
        }
    }

    /// The provider's own prompt-cache discount on `usage` at this price
    /// (at the tier's cache-read price).
    pub fn cached_saving(&self, usage: &Usage) -> Option<u64> {
        if usage.image.is_some() {
            return None;
        }
        let counts = counts(usage)?;
        tb_prices::cached_saving(&self.tiered(usage, counts)?.0, counts)
    }

    /// Which price tier `usage` is billed at: a table price's tier; `None`
    /// for explicit prices (they have none), an unpriced route, an image
    /// answer or unknown usage.
    pub fn billed_tier(&self, usage: &Usage) -> Option<BilledTier> {
        if usage.image.is_some() {
            return None;
        }
        self.tiered(usage, counts(usage)?)?.1
    }

    /// The effective input + output price of the base tier, USD micros per
    /// 1M tokens (what the `cheapest` scorer compares); `None` when either
    /// is unknown.
    pub fn list_price_per_1m(&self) -> Option<u64> {
        let p = match self {
            RoutePrice::Explicit(p) => *p,
            RoutePrice::Table {
                price,
                discount,
                fee,
            } => price.tokens.discounted(*discount).with_fee(*fee)?,
            RoutePrice::Unpriced => return None,
        };
        p.input?.checked_add(p.output?)
    }

    /// The effective prices for `usage` (its tier for a table price, then
    /// the discount and the fee) and the tier.
    fn tiered(
        &self,
        usage: &Usage,
        counts: TokenCounts,
    ) -> Option<(TokenPrices, Option<BilledTier>)> {
        match self {
            RoutePrice::Explicit(p) => Some((*p, None)),
            RoutePrice::Table {
                price,
                discount,
                fee,
            } => {
                let tiered = price.tiered(usage.service_tier.unwrap_or_default(), counts);
                let prices = tiered.prices.discounted(*discount).with_fee(*fee)?;
                Some((prices, Some(tiered.tier)))
            }
            RoutePrice::Unpriced => None,
        }
    }

    fn image_cost(&self, usage: &Usage, image: &crate::usage::ImageUsage) -> Option<u64> {
        let tokens = image_tokens(usage, image);
        match self {
            RoutePrice::Explicit(p) => {
                // Explicit prices are token prices: usable when tokens were reported.
                let t = tokens?;
                let counts = TokenCounts {
                    input: t.text_input + t.image_input,
                    output: t.output,
                    ..TokenCounts::default()
                };
                tb_prices::cost_usd_micros(p, counts)
            }
            RoutePrice::Table {
                price,
                discount,
                fee,
            } => {
                let used = tb_prices::ImageUsage {
                    count: u64::from(image.count.unwrap_or(0)),
                    quality: image.quality.as_deref(),
                    size: image.size.as_deref(),
                    tokens,
                };
                let full = price.image_cost(&used)?.usd_micros;
                tb_prices::apply_fee(tb_prices::apply_discount(full, *discount), *fee)
            }
            RoutePrice::Unpriced => None,
        }
    }

    /// What `tokens` image output tokens cost at this route's image-token
    /// output price (an explicit price list has one output price for
    /// everything), rounded up; `None` when that price is unknown.
    pub fn image_output_cost(&self, tokens: u64) -> Option<u64> {
        let output = match self {
            RoutePrice::Explicit(p) => p.output?,
            RoutePrice::Table {
                price,
                discount,
                fee,
            } => {
                price
                    .image_tokens
                    .discounted(*discount)
                    .with_fee(*fee)?
                    .output?
            }
            RoutePrice::Unpriced => return None,
        };
        let only_output = TokenPrices {
            output: Some(output),
            ..TokenPrices::NONE
        };
        tb_prices::cost_usd_micros(
            &only_output,
            TokenCounts {
                output: tokens,
                ..TokenCounts::default()
            },
        )
    }

    /// Whether any price is known.
    pub fn is_priced(&self) -> bool {
        !matches!(self, RoutePrice::Unpriced)
    }
}

fn counts(usage: &Usage) -> Option<TokenCounts> {
    Some(TokenCounts {
        input: usage.input_tokens?,
        cached: usage.cached_input_tokens.unwrap_or(0),
        cache_write: usage.cache_write_tokens.unwrap_or(0),
        cache_write_1h: usage.cache_write_1h_tokens.unwrap_or(0),
        output: usage.output_tokens.unwrap_or(0),
    })
}

fn image_tokens(usage: &Usage, image: &crate::usage::ImageUsage) -> Option<ImageTokenCounts> {
    let reported = image.input_text_tokens.is_some()
        || image.input_image_tokens.is_some()
        || image.output_image_tokens.is_some()
        || usage.output_tokens.is_some();
    if !reported {
        return None;
    }
    let image_input = image.input_image_tokens.unwrap_or(0);
    let text_input = image
        .input_text_tokens
        .unwrap_or_else(|| usage.input_tokens.unwrap_or(0).saturating_sub(image_input));
    let output = image
        .output_image_tokens
        .or(usage.output_tokens)
        .unwrap_or(0);
    Some(ImageTokenCounts {
        text_input,
        image_input,
        output,
        ..ImageTokenCounts::default()
    })
}

/// Everything the ledger needs to know about a call's money.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Costing {
    /// What the call cost.
    pub cost_usd_micros: Option<u64>,
    /// Usage × the effective price of the serving route.
    pub est_cost_usd_micros: Option<u64>,
    /// What the same usage would have cost without tokenbuddy.
    pub baseline_usd_micros: Option<u64>,
    /// Which baseline.
    pub baseline_kind: Option<BaselineKind>,
    /// `max(0, baseline − cost)`.
    pub saved_usd_micros: Option<u64>,
    /// The provider's own prompt-cache discount.
    pub cached_saving_usd_micros: Option<u64>,
    /// No price for the serving route.
    pub unpriced: bool,
    /// The price tier the estimate was billed at (the serving route's
    /// table price; `None` for explicit prices, images, unknown usage).
    pub price_tier: Option<BilledTier>,
    /// `|cost / est − 1|` in ppm, when both are known and > 0.
    pub price_drift_ppm: Option<u64>,
    /// A reported cost ≥ 25× or ≤ 1/25 of the estimate (log `billing.cost_outlier`).
    pub outlier: bool,
}

/// Prices a call served by a manual provider. `winner` is the route that
/// answered; `plan` the prices of every route of the planned chain, in
/// order; `official` the first-party list price; `reported` the cost the
/// upstream reported itself (it wins over the estimate).
pub fn cost_manual_call(
    usage: Option<&Usage>,
    winner: &RoutePrice,
    plan: &[RoutePrice],
    official: &RoutePrice,
    reported: Option<u64>,
) -> (Costing, BalanceSource) {
    let mut c = Costing {
        unpriced: !winner.is_priced() && reported.is_none(),
        ..Costing::default()
    };
    let Some(usage) = usage else {
        return (c, BalanceSource::SelfFundedProvider);
    };
    c.est_cost_usd_micros = winner.cost(usage);
    c.price_tier = winner.billed_tier(usage);
    c.cost_usd_micros = reported.or(c.est_cost_usd_micros);
    c.cached_saving_usd_micros = winner.cached_saving(usage);
    c.compare_to_estimate(reported);

    c.set_baseline(savings_baseline(usage, Served::Manual, plan, official));
    (c, BalanceSource::SelfFundedProvider)
}

/// Who served a call, for the choice of its savings baseline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Served {
    /// A manual provider (the user's own key).
    Manual,
    /// A marketplace seller.
    Seller,
}

/// The savings baseline of `usage` (billing.md, "Savings baseline"), first
/// that applies:
///
/// 1. `last_leg` — a manual call whose plan prices two or more routes: the
///    last priced route of the chain (not the dearest, so cache-heavy calls
///    show no fake savings);
/// 2. `official` — the first-party list price, when the table knows the
///    model;
/// 3. `priciest_route` — no list price: the priciest priced route of the
///    planned chain (what the call could have cost among the routes the
///    user had);
///
/// else `None` (nothing is priced; `saved` stays unknown).
pub fn savings_baseline(
    usage: &Usage,
    served: Served,
    plan: &[RoutePrice],
    official: &RoutePrice,
) -> Option<(u64, BaselineKind)> {
    let priced: Vec<u64> = plan.iter().filter_map(|p| p.cost(usage)).collect();
    if served == Served::Manual && priced.len() >= 2 {
        return priced.last().map(|b| (*b, BaselineKind::LastLeg));
    }
    if let Some(b) = official.cost(usage) {
        return Some((b, BaselineKind::Official));
    }
    priced
        .iter()
        .max()
        .map(|b| (*b, BaselineKind::PriciestRoute))
}

impl Costing {
    /// Compares what the upstream reported (or settled) with the estimate:
    /// the drift in ppm, and the outlier flag when the two are 25× apart
    /// (log `billing.cost_outlier`). Nothing when either is unknown or 0.
    pub(crate) fn compare_to_estimate(&mut self, reported: Option<u64>) {
        if let (Some(r), Some(e)) = (reported, self.est_cost_usd_micros)
            && r > 0
            && e > 0
        {
            let (r, e) = (u128::from(r), u128::from(e));
            self.outlier = r >= 25 * e || r * 25 <= e;
            let drift = r.abs_diff(e) * 1_000_000 / e;
            self.price_drift_ppm = Some(u64::try_from(drift).unwrap_or(u64::MAX));
        }
    }

    /// Sets the baseline and what routing saved against it.
    pub(crate) fn set_baseline(&mut self, baseline: Option<(u64, BaselineKind)>) {
        if let Some((b, kind)) = baseline {
            self.baseline_usd_micros = Some(b);
            self.baseline_kind = Some(kind);
            self.saved_usd_micros = self.cost_usd_micros.map(|cost| b.saturating_sub(cost));
        }
    }
}

/// Prices a call served by a marketplace seller. The settlement's
/// `settledUsdMicros` is the cost when present (`seller_authoritative`);
/// otherwise the estimate stands (`estimated`). The baseline is the
/// first-party list price, else the priciest route of `plan` (the planned
/// chain's prices, in order).
pub fn cost_seller_call(
    usage: Option<&Usage>,
    winner: &RoutePrice,
    plan: &[RoutePrice],
    official: &RoutePrice,
    settled_usd_micros: Option<u64>,
) -> (Costing, BalanceSource) {
    let mut c = Costing {
        unpriced: !winner.is_priced() && settled_usd_micros.is_none(),
        ..Costing::default()
    };
    let source = if settled_usd_micros.is_some() {
        BalanceSource::SellerAuthoritative
    } else {
        BalanceSource::Estimated
    };
    c.est_cost_usd_micros = usage.and_then(|u| winner.cost(u));
    c.price_tier = usage.and_then(|u| winner.billed_tier(u));
    c.cost_usd_micros = settled_usd_micros.or(c.est_cost_usd_micros);
    c.cached_saving_usd_micros = usage.and_then(|u| winner.cached_saving(u));
    c.compare_to_estimate(settled_usd_micros);
    c.set_baseline(usage.and_then(|u| savings_baseline(u, Served::Seller, plan, official)));
    (c, source)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens(input: u64, cached: u64, output: u64) -> Usage {
        Usage {
            input_tokens: Some(input),
            cached_input_tokens: Some(cached),
            cache_write_tokens: Some(0),
            output_tokens: Some(output),
            ..Usage::default()
        }
    }

    fn explicit(input: u64, output: u64) -> RoutePrice {
        RoutePrice::Explicit(TokenPrices {
            input: Some(input),
            output: Some(output),
            cache_read: None,
            cache_write: None,
            cache_write_1h: None,
        })
    }

    #[test]
    fn table_price_with_discount_and_official_baseline() {
        let u = tokens(1_000_000, 0, 1_000_000);
        let official = RoutePrice::official("gpt-4o");
        assert_eq!(official.cost(&u), Some(12_500_000)); // $2.50 + $10.00
        let winner = RoutePrice::manual(None, "gpt-4o", Ppm::new(200_000));
        let (c, src) = cost_manual_call(Some(&u), &winner, &[winner], &official, None);
        assert_eq!(src, BalanceSource::SelfFundedProvider);
        assert_eq!(c.cost_usd_micros, Some(10_000_000));
        assert_eq!(c.est_cost_usd_micros, Some(10_000_000));
        assert_eq!(
            (c.baseline_usd_micros, c.baseline_kind),
            (Some(12_500_000), Some(BaselineKind::Official))
        );
        assert_eq!(c.saved_usd_micros, Some(2_500_000));
        assert!(!c.unpriced);
    }

    #[test]
    fn two_priced_routes_use_the_last_leg() {
        let u = tokens(1_000_000, 0, 0);
        let cheap = explicit(1_000_000, 0);
        let dear = explicit(3_000_000, 0);
        let (c, _) = cost_manual_call(
            Some(&u),
            &cheap,
            &[cheap, RoutePrice::Unpriced, dear],
            &RoutePrice::official("gpt-4o"),
            None,
        );
        assert_eq!(
            (c.baseline_usd_micros, c.baseline_kind),
            (Some(3_000_000), Some(BaselineKind::LastLeg))
        );
        assert_eq!(c.saved_usd_micros, Some(2_000_000));
        // Failed over to the last leg itself: no fake saving.
        let (c, _) = cost_manual_call(Some(&u), &dear, &[cheap, dear], &RoutePrice::Unpriced, None);
        assert_eq!(c.saved_usd_micros, Some(0));
    }

    #[test]
    fn no_list_price_falls_back_to_the_priciest_route() {
        let u = tokens(1_000_000, 0, 0);
        let (cheap, mid, dear) = (
            explicit(1_000_000, 0),
            explicit(2_000_000, 0),
            explicit(3_000_000, 0),
        );
        let none = RoutePrice::Unpriced;
        // Manual, one priced route and a model the table does not know.
        assert_eq!(
            savings_baseline(&u, Served::Manual, &[none, cheap], &none),
            Some((1_000_000, BaselineKind::PriciestRoute))
        );
        let (c, _) = cost_manual_call(Some(&u), &cheap, &[cheap, none], &none, None);
        assert_eq!(
            (c.baseline_usd_micros, c.baseline_kind, c.saved_usd_micros),
            (Some(1_000_000), Some(BaselineKind::PriciestRoute), Some(0))
        );
        // Two or more priced manual routes: the last leg still wins.
        assert_eq!(
            savings_baseline(&u, Served::Manual, &[dear, cheap], &none),
            Some((1_000_000, BaselineKind::LastLeg))
        );
        // Sellers: never the last leg; the dearest of the chain.
        assert_eq!(
            savings_baseline(&u, Served::Seller, &[mid, dear, none, cheap], &none),
            Some((3_000_000, BaselineKind::PriciestRoute))
        );
        let (c, src) =
            cost_seller_call(Some(&u), &cheap, &[mid, dear, cheap], &none, Some(900_000));
        assert_eq!(src, BalanceSource::SellerAuthoritative);
        assert_eq!(
            (c.baseline_usd_micros, c.baseline_kind, c.saved_usd_micros),
            (
                Some(3_000_000),
                Some(BaselineKind::PriciestRoute),
                Some(2_100_000)
            )
        );
        // A list price, when known, is the baseline before any route.
        let official = RoutePrice::official("gpt-4o");
        assert_eq!(
            savings_baseline(&u, Served::Seller, &[dear], &official),
            Some((2_500_000, BaselineKind::Official))
        );
        assert_eq!(
            savings_baseline(&u, Served::Manual, &[dear], &official),
            Some((2_500_000, BaselineKind::Official))
        );
        // Nothing priced at all: no baseline, nothing claimed as saved.
        assert_eq!(
            savings_baseline(&u, Served::Seller, &[none, none], &none),
            None
        );
        assert_eq!(savings_baseline(&u, Served::Manual, &[], &none), None);
        let (c, _) = cost_seller_call(Some(&u), &none, &[none], &none, Some(5));
        assert_eq!((c.baseline_kind, c.saved_usd_micros), (None, None));
    }

    #[test]
    fn image_output_tokens_cost_the_routes_image_token_price() {
        // gpt-image-1: image output tokens $40 per 1M.
        assert_eq!(
            RoutePrice::official("gpt-image-1").image_output_cost(272),
            Some(10_880)
        );
        // 50 % off, then a 2 % fee: 10_880 × 0.5 × 1.02 = 5_548.8 → 5_549.
        let seller = RoutePrice::seller(None, "gpt-image-1", Ppm::new(500_000), Ppm::new(20_000));
        assert_eq!(seller.image_output_cost(272), Some(5_549));
        assert_eq!(explicit(1, 2_000_000).image_output_cost(3), Some(6));
        assert_eq!(RoutePrice::Unpriced.image_output_cost(3), None);
        // gpt-4o has no image-token price.
        assert_eq!(RoutePrice::official("gpt-4o").image_output_cost(3), None);
        assert_eq!(
            RoutePrice::official("gpt-image-1").image_output_cost(0),
            Some(0)
        );
    }

    #[test]
    fn unknown_stays_unknown() {
        let u = tokens(10, 0, 10);
        let (c, _) = cost_manual_call(
            Some(&u),
            &RoutePrice::Unpriced,
            &[RoutePrice::Unpriced],
            &RoutePrice::Unpriced,
            None,
        );
        assert!(c.unpriced);
        assert_eq!(
            (c.cost_usd_micros, c.baseline_usd_micros, c.saved_usd_micros),
            (None, None, None)
        );
        let (c, _) = cost_manual_call(None, &explicit(1, 1), &[], &RoutePrice::Unpriced, None);
        assert_eq!(
            c.cost_usd_micros, None,
            "usage missing: cost unknown, not zero"
        );
        assert!(!c.unpriced);
    }

    #[test]
    fn reported_cost_wins_and_outliers_are_flagged() {
        let u = tokens(1_000_000, 0, 0);
        let w = explicit(1_000_000, 0);
        let (c, _) = cost_manual_call(Some(&u), &w, &[w], &RoutePrice::Unpriced, Some(1_100_000));
        assert_eq!(
            (c.cost_usd_micros, c.est_cost_usd_micros),
            (Some(1_100_000), Some(1_000_000))
        );
        assert_eq!(c.price_drift_ppm, Some(100_000));
        assert!(!c.outlier);
        let (c, _) = cost_manual_call(Some(&u), &w, &[w], &RoutePrice::Unpriced, Some(25_000_000));
        assert!(c.outlier);
        let (c, _) = cost_manual_call(Some(&u), &w, &[w], &RoutePrice::Unpriced, Some(40_000));
        assert!(c.outlier);
        // A reported cost prices a model the table does not know.
        let (c, _) = cost_manual_call(
            Some(&u),
            &RoutePrice::Unpriced,
            &[],
            &RoutePrice::Unpriced,
            Some(5),
        );
        assert!(!c.unpriced && c.cost_usd_micros == Some(5));
    }

    #[test]
    fn sellers_settle_or_estimate() {
        let u = tokens(1_000_000, 0, 1_000_000);
        let official = RoutePrice::official("gpt-4o");
        // 20 % off, 2 % fee: 12.5 × 0.8 × 1.02 = 10.2 USD.
        let seller = RoutePrice::seller(None, "gpt-4o", Ppm::new(200_000), Ppm::new(20_000));
        let (c, src) = cost_seller_call(Some(&u), &seller, &[seller], &official, None);
        assert_eq!(src, BalanceSource::Estimated);
        assert_eq!(c.cost_usd_micros, Some(10_200_000));
        assert_eq!(c.saved_usd_micros, Some(2_300_000));
        let (c, src) = cost_seller_call(Some(&u), &seller, &[seller], &official, Some(10_000_000));
        assert_eq!(src, BalanceSource::SellerAuthoritative);
        assert_eq!(
            (c.cost_usd_micros, c.est_cost_usd_micros),
            (Some(10_000_000), Some(10_200_000))
        );
        assert_eq!(c.saved_usd_micros, Some(2_500_000));
        assert_eq!(c.price_drift_ppm, Some(19_607));
        // Usage missing but settled: the settlement is the cost.
        let (c, src) = cost_seller_call(None, &seller, &[seller], &official, Some(7));
        assert_eq!(
            (c.cost_usd_micros, src),
            (Some(7), BalanceSource::SellerAuthoritative)
        );
    }

    #[test]
    fn cached_tokens_are_cheaper_and_reported_apart() {
        // claude-sonnet-4-5: input $3, cache read $0.30, output $15 per 1M.
        let u = tokens(1_000_000, 200_000, 100_000);
        let w = RoutePrice::official("claude-sonnet-4-5");
        let (c, _) = cost_manual_call(Some(&u), &w, &[w], &w, None);
        // 800k × 3 + 200k × 0.30 + 100k × 15 = 2.4 + 0.06 + 1.5 = $3.96
        assert_eq!(c.cost_usd_micros, Some(3_960_000));
        // 200k × (3 − 0.30) = $0.54
        assert_eq!(c.cached_saving_usd_micros, Some(540_000));
        assert_eq!(c.saved_usd_micros, Some(0));
    }

    #[test]
    fn table_prices_follow_the_tier_the_answer_reports() {
        use tb_prices::ServiceTier;
        // Gemini 2.5 Pro, 300k input, 2k output: above 200k, the whole call
        // at $2.50 / $15: 0.75 + 0.03 = $0.78; a 10 % discount after the tier.
        let long = Usage {
            input_tokens: Some(300_000),
            output_tokens: Some(2_000),
            ..Usage::default()
        };
        let official = RoutePrice::official("gemini-2.5-pro");
        let discounted = RoutePrice::manual(None, "gemini-2.5-pro", Ppm::new(100_000));
        let (c, _) = cost_manual_call(Some(&long), &discounted, &[discounted], &official, None);
        assert_eq!(c.est_cost_usd_micros, Some(702_000));
        assert_eq!(
            c.baseline_usd_micros,
            Some(780_000),
            "the baseline is tiered too"
        );
        assert_eq!(c.saved_usd_micros, Some(78_000));
        assert_eq!(
            c.price_tier.map(|t| t.to_string()).as_deref(),
            Some("above_200k")
        );
        // GPT-5 priority through a seller with a fee: 2× then the fee.
        let priority = Usage {
            input_tokens: Some(1_000_000),
            output_tokens: Some(0),
            service_tier: Some(ServiceTier::Priority),
            ..Usage::default()
        };
        let seller = RoutePrice::seller(None, "gpt-5", Ppm::ZERO, Ppm::new(20_000));
        let (c, _) = cost_seller_call(
            Some(&priority),
            &seller,
            std::slice::from_ref(&seller),
            &RoutePrice::official("gpt-5"),
            None,
        );
        assert_eq!(c.est_cost_usd_micros, Some(2_550_000));
        assert_eq!(c.baseline_usd_micros, Some(2_500_000));
        assert_eq!(
            c.price_tier.map(|t| t.to_string()).as_deref(),
            Some("priority")
        );
        // Explicit prices have no tiers: no label, the same price.
        let w = explicit(1_000_000, 0);
        let (c, _) = cost_manual_call(Some(&priority), &w, &[w], &RoutePrice::Unpriced, None);
        assert_eq!((c.cost_usd_micros, c.price_tier), (Some(1_000_000), None));
        // 1-hour writes on Claude: $6 instead of $3.75; the saving of cache
        // reads is unchanged.
        let one_hour = Usage {
            input_tokens: Some(1_000_000),
            cache_write_tokens: Some(1_000_000),
            cache_write_1h_tokens: Some(1_000_000),
            output_tokens: Some(0),
            ..Usage::default()
        };
        let claude = RoutePrice::official("claude-sonnet-4-5");
        assert_eq!(claude.cost(&one_hour), Some(6_000_000));
        assert_eq!(
            claude
                .billed_tier(&one_hour)
                .map(|t| t.to_string())
                .as_deref(),
            Some("cache_write_1h")
        );
        // Standard usage is labelled standard; unpriced and images are not labelled.
        let plain = tokens(10, 0, 1);
        assert_eq!(
            claude.billed_tier(&plain),
            Some(tb_prices::BilledTier::STANDARD)
        );
        assert_eq!(RoutePrice::Unpriced.billed_tier(&plain), None);
        let image = Usage {
            image: Some(crate::usage::ImageUsage::default()),
            ..plain
        };
        assert_eq!(claude.billed_tier(&image), None);
    }

    #[test]
    fn images_are_priced_per_image_or_by_tokens() {
        let per_image = Usage {
            image: Some(crate::usage::ImageUsage {
                count: Some(2),
                size: Some("1024x1024".into()),
                quality: Some("low".into()),
                ..Default::default()
            }),
            ..Usage::default()
        };
        let w = RoutePrice::official("gpt-image-1");
        let one = tb_prices::price_for("gpt-image-1")
            .unwrap()
            .price
            .per_image
            .iter()
            .find(|(k, _)| *k == "low/1024x1024")
            .unwrap()
            .1;
        assert_eq!(w.cost(&per_image), Some(2 * one));
        let half = RoutePrice::manual(None, "gpt-image-1", Ppm::new(500_000));
        assert_eq!(half.cost(&per_image), Some(one));
        let by_tokens = Usage {
            input_tokens: Some(10),
            output_tokens: Some(272),
            image: Some(crate::usage::ImageUsage {
                count: Some(1),
                input_text_tokens: Some(10),
                ..Default::default()
            }),
            ..Usage::default()
        };
        assert!(w.cost(&by_tokens).is_some());
        assert_eq!(RoutePrice::Unpriced.cost(&by_tokens), None);
    }
}
