//! Candidates and the four scorers (routing.md, "Scorers").
//!
//! Every sub-score is kept as an integer in units of 1/10,000 of a point
//! (0..=1,000,000 for 0–100 points): a discount in parts per million maps
//! onto it exactly and a latency in milliseconds too, so totals (weights in
//! whole percents, units of 1/1,000,000 of a point) are exact integers and
//! the order never depends on floating-point rounding. Only the tokens/s
//! input is a float; it is rounded once, to 1/10,000 of a token per second.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// One upstream that can serve the request's (model, protocol, payment
/// method) key, with everything the scorers and the planner look at.
///
/// The caller assembles it from the model index, the pool and the prewarm
/// cache; this crate never reads those itself. `Default` is an empty id
/// with health 0 and no metrics, handy with struct update syntax.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Candidate {
    /// The upstream id (provider id or seller id). An `Arc` so the caller can
    /// build candidates per request without copying strings.
    pub id: Arc<str>,
    /// Position in the registry (sellers) or in `[[providers]]` (manual);
    /// the last tie-breaker of every scorer and the manual fallback order.
    pub registry_order: usize,
    /// The registry's `defaultSeller` (first among equals for `balanced`).
    pub is_default_seller: bool,
    /// Pool health, 0–100 (values above 100 count as 100).
    pub health_score: u8,
    /// Time to first token observed on real calls.
    pub ttft_ms: Option<u64>,
    /// Latency of the last health probe.
    pub probe_latency_ms: Option<u64>,
    /// Average latency of real calls.
    pub avg_latency_ms: Option<u64>,
    /// Mean tokens per second of recent successful calls.
    pub tokens_per_second: Option<f64>,
    /// Fraction off the list price, in parts per million (200,000 = 20 %).
    pub discount_ppm: Option<u32>,
    /// Effective price (input + output), USD micros per 1M tokens.
    pub price_usd_micros_per_1m: Option<u64>,
    /// Set by the pool while the upstream should not be tried first: open
    /// circuit, capacity block (`429` / `capacityBlockedUntil`), or a
    /// half-open trial already in flight (then the time the pool expects it
    /// to end, or `i64::MAX`). Benched means `benched_until_ms > now_ms`.
    pub benched_until_ms: Option<i64>,
    /// The circuit is half-open (informational: the caller must take the
    /// trial slot before trying it; a busy slot is reported as benched).
    pub half_open: bool,
    /// Pushed back for this request by probe findings ([`crate::assess`]):
    /// ordered after every trusted candidate that is not benched, before
    /// the benched ones; never dropped.
    pub demoted: bool,
}

impl Candidate {
    /// Effective TTFT: `ttft_ms ?? probe_latency_ms ?? avg_latency_ms`.
    pub fn effective_ttft_ms(&self) -> Option<u64> {
        self.ttft_ms
            .or(self.probe_latency_ms)
            .or(self.avg_latency_ms)
    }

    /// Whether the pool benched this upstream at `now_ms`.
    pub fn is_benched(&self, now_ms: i64) -> bool {
        self.benched_until_ms.is_some_and(|until| until > now_ms)
    }
}

/// How auto-mode candidates are ordered (`routing.scorer`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scorer {
    /// 0.65 latency + 0.25 throughput + 0.10 health.
    Speed,
    /// 1.00 discount.
    Discount,
    /// 0.35 health + 0.20 latency + 0.20 throughput + 0.25 discount.
    #[default]
    Balanced,
    /// Lowest effective price first, unpriced last.
    Cheapest,
}

impl Scorer {
    /// Every scorer, in documentation order.
    pub const ALL: [Scorer; 4] = [
        Scorer::Speed,
        Scorer::Discount,
        Scorer::Balanced,
        Scorer::Cheapest,
    ];

    /// The config / wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Scorer::Speed => "speed",
            Scorer::Discount => "discount",
            Scorer::Balanced => "balanced",
            Scorer::Cheapest => "cheapest",
        }
    }

    /// Weights in whole percents, `(health, latency, throughput, discount)`;
    /// `None` for `cheapest`, which ranks by price instead of a score.
    fn weights(self) -> Option<(u64, u64, u64, u64)> {
        match self {
            Scorer::Speed => Some((10, 65, 25, 0)),
            Scorer::Discount => Some((0, 0, 0, 100)),
            Scorer::Balanced => Some((35, 20, 20, 25)),
            Scorer::Cheapest => None,
        }
    }

    /// The inputs whose absence this scorer reports, as [`Missing`] bits.
    fn uses(self) -> u8 {
        match self {
            Scorer::Speed => Missing::TTFT | Missing::TPS,
            Scorer::Discount => Missing::DISCOUNT,
            Scorer::Balanced => Missing::TTFT | Missing::TPS | Missing::DISCOUNT,
            Scorer::Cheapest => Missing::PRICE,
        }
    }
}

impl fmt::Display for Scorer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Sub-score units per point.
pub(crate) const UNITS_PER_POINT: u64 = 10_000;
/// 100 points.
const MAX_UNITS: u64 = 100 * UNITS_PER_POINT;
/// Total units per point (sub-score units × whole-percent weights).
const TOTAL_UNITS_PER_POINT: u64 = UNITS_PER_POINT * 100;

/// Bits for inputs that were missing.
struct Missing;

impl Missing {
    const TTFT: u8 = 1;
    const TPS: u8 = 2;
    const DISCOUNT: u8 = 4;
    const PRICE: u8 = 8;
    /// Names as shown in `missing_inputs`, in that order.
    const NAMES: [(u8, &'static str); 4] = [
        (Missing::TTFT, "ttft"),
        (Missing::TPS, "tokens_per_second"),
        (Missing::DISCOUNT, "discount_ratio"),
        (Missing::PRICE, "effective_price"),
    ];
}

/// The four sub-scores of one candidate, in 1/10,000 points.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SubScores {
    pub(crate) latency: u64,
    pub(crate) throughput: u64,
    pub(crate) discount: u64,
    pub(crate) health: u64,
    missing: u8,
}

impl SubScores {
    pub(crate) fn of(c: &Candidate) -> SubScores {
        let mut missing = 0;
        let latency = match c.effective_ttft_ms() {
            // 100 − ms/10 points = 1,000,000 − 1,000·ms units.
            Some(ms) => MAX_UNITS.saturating_sub(ms.saturating_mul(1_000)),
            None => {
                missing |= Missing::TTFT;
                0
            }
        };
        let throughput = match tps_units(c.tokens_per_second) {
            Some(u) => u.min(MAX_UNITS),
            None => {
                missing |= Missing::TPS;
                0
            }
        };
        let discount = match c.discount_ppm {
            // 100 × ppm/1e6 points = ppm units, exactly.
            Some(ppm) => u64::from(ppm).min(MAX_UNITS),
            None => {
                missing |= Missing::DISCOUNT;
                0
            }
        };
        if c.price_usd_micros_per_1m.is_none() {
            missing |= Missing::PRICE;
        }
        SubScores {
            latency,
            throughput,
            discount,
            health: u64::from(c.health_score.min(100)) * UNITS_PER_POINT,
            missing,
        }
    }

    /// The weighted total in 1/1,000,000 points (0..=100,000,000); `None`
    /// for `cheapest`.
    pub(crate) fn total(self, scorer: Scorer) -> Option<u64> {
        let (h, l, t, d) = scorer.weights()?;
        Some(h * self.health + l * self.latency + t * self.throughput + d * self.discount)
    }
}

/// Tokens per second in 1/10,000 tokens/s, clamped below at 0; `None` when
/// missing or NaN. Used both for the throughput sub-score (then capped at
/// 100 tokens/s) and, uncapped, for the `speed` tie-breaker.
pub(crate) fn tps_units(tps: Option<f64>) -> Option<u64> {
    let tps = tps.filter(|t| !t.is_nan())?;
    // `as` saturates: +inf → u64::MAX, negatives → 0.
    Some((tps.max(0.0) * UNITS_PER_POINT as f64).round() as u64)
}

/// Every component of one candidate's score, for `doctor`, the control plane
/// and the `route.decision` log.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScoreBreakdown {
    /// The scorer the total is for.
    pub scorer: Scorer,
    /// `max(0, 100 − effective_ttft_ms / 10)`, 0–100.
    pub latency: f64,
    /// `clamp(tokens_per_second, 0, 100)`.
    pub throughput: f64,
    /// `100 × clamp(discount_ratio, 0, 1)`.
    pub discount: f64,
    /// `health_score`.
    pub health: f64,
    /// The weighted total, 0–100; `None` for `cheapest`, which orders by
    /// [`price_usd_micros_per_1m`](Self::price_usd_micros_per_1m) instead.
    pub total: Option<f64>,
    /// The TTFT the latency sub-score used.
    pub effective_ttft_ms: Option<u64>,
    /// The effective price (what `cheapest` sorts by).
    pub price_usd_micros_per_1m: Option<u64>,
    /// Inputs this scorer uses that were missing (each counted as 0, or
    /// "unpriced, last" for `cheapest`): any of `ttft`,
    /// `tokens_per_second`, `discount_ratio`, `effective_price`.
    pub missing_inputs: Vec<&'static str>,
}

/// Scores one candidate: every sub-score, the total and the missing inputs.
/// A pure function of its inputs (no clock, no I/O).
///
/// ```
/// use tb_routing::{Candidate, Scorer, score_breakdown};
///
/// let c = Candidate {
///     id: "seller-a".into(),
///     health_score: 80,
///     ttft_ms: Some(250),
///     tokens_per_second: Some(40.0),
///     discount_ppm: Some(200_000),
///     ..Candidate::default()
/// };
/// let b = score_breakdown(&c, Scorer::Balanced);
/// // 0.35·80 + 0.20·75 + 0.20·40 + 0.25·20
/// assert_eq!(b.total, Some(56.0));
/// assert!(b.missing_inputs.is_empty());
/// ```
pub fn score_breakdown(candidate: &Candidate, scorer: Scorer) -> ScoreBreakdown {
    let s = SubScores::of(candidate);
    let points = |units: u64| units as f64 / UNITS_PER_POINT as f64;
    let missing = s.missing & scorer.uses();
    ScoreBreakdown {
        scorer,
        latency: points(s.latency),
        throughput: points(s.throughput),
        discount: points(s.discount),
        health: points(s.health),
        total: s
            .total(scorer)
            .map(|t| t as f64 / TOTAL_UNITS_PER_POINT as f64),
        effective_ttft_ms: candidate.effective_ttft_ms(),
        price_usd_micros_per_1m: candidate.price_usd_micros_per_1m,
        missing_inputs: Missing::NAMES
            .iter()
            .filter(|(bit, _)| missing & bit != 0)
            .map(|&(_, name)| name)
            .collect(),
    }
}

/// The ascending sort key of a candidate under `scorer`, without the bench
/// prefix and the index suffix: `[k1, k2, k3, k4]`.
pub(crate) fn scorer_key(c: &Candidate, scorer: Scorer) -> [u64; 4] {
    let reg = c.registry_order as u64;
    let health_desc = 100 - u64::from(c.health_score.min(100));
    match scorer {
        Scorer::Speed => {
            let s = SubScores::of(c);
            [
                total_desc(s, scorer),
                c.effective_ttft_ms().unwrap_or(u64::MAX),
                u64::MAX - tps_units(c.tokens_per_second).unwrap_or(0),
                (health_desc << 56) | reg.min((1 << 56) - 1),
            ]
        }
        Scorer::Discount => {
            let s = SubScores::of(c);
            [total_desc(s, scorer), health_desc, reg, 0]
        }
        Scorer::Balanced => {
            let s = SubScores::of(c);
            [
                total_desc(s, scorer),
                u64::from(!c.is_default_seller),
                reg,
                0,
            ]
        }
        Scorer::Cheapest => {
            let [unpriced, price] = price_key(c);
            [unpriced, price, health_desc, reg]
        }
    }
}

/// `[unpriced, price]`: priced first, cheapest first.
pub(crate) fn price_key(c: &Candidate) -> [u64; 2] {
    match c.price_usd_micros_per_1m {
        Some(p) => [0, p],
        None => [1, 0],
    }
}

fn total_desc(s: SubScores, scorer: Scorer) -> u64 {
    u64::MAX - s.total(scorer).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cand(id: &str) -> Candidate {
        Candidate {
            id: id.into(),
            ..Candidate::default()
        }
    }

    /// A fully described candidate: ttft 250 ms (latency 75), 40 tok/s
    /// (throughput 40), health 80, discount 20 %.
    fn full() -> Candidate {
        Candidate {
            health_score: 80,
            ttft_ms: Some(250),
            tokens_per_second: Some(40.0),
            discount_ppm: Some(200_000),
            price_usd_micros_per_1m: Some(12_000_000),
            ..cand("full")
        }
    }

    #[test]
    fn sub_scores_of_a_full_candidate() {
        let b = score_breakdown(&full(), Scorer::Balanced);
        assert_eq!(
            (b.latency, b.throughput, b.discount, b.health),
            (75.0, 40.0, 20.0, 80.0)
        );
        assert_eq!(b.effective_ttft_ms, Some(250));
        assert_eq!(b.price_usd_micros_per_1m, Some(12_000_000));
    }

    #[test]
    fn each_scorer_total_by_hand() {
        // speed: 0.65·75 + 0.25·40 + 0.10·80 = 48.75 + 10 + 8
        // discount: 1.00·20
        // balanced: 0.35·80 + 0.20·75 + 0.20·40 + 0.25·20 = 28 + 15 + 8 + 5
        // cheapest: no score, ranks by price
        let cases = [
            (Scorer::Speed, Some(66.75)),
            (Scorer::Discount, Some(20.0)),
            (Scorer::Balanced, Some(56.0)),
            (Scorer::Cheapest, None),
        ];
        for (scorer, want) in cases {
            let b = score_breakdown(&full(), scorer);
            assert_eq!(b.total, want, "{scorer}");
            assert_eq!(b.scorer, scorer);
            assert!(b.missing_inputs.is_empty(), "{scorer}");
        }
    }

    #[test]
    fn single_weight_totals() {
        // Isolate each weight: only one input non-zero.
        let only_latency = Candidate {
            ttft_ms: Some(0),
            ..cand("l")
        }; // latency 100
        let only_tps = Candidate {
            tokens_per_second: Some(100.0),
            ..cand("t")
        }; // throughput 100
        let only_health = Candidate {
            health_score: 100,
            ..cand("h")
        };
        let only_discount = Candidate {
            discount_ppm: Some(1_000_000),
            ..cand("d")
        };
        let cases: [(&Candidate, Scorer, f64); 12] = [
            (&only_latency, Scorer::Speed, 65.0),
            (&only_tps, Scorer::Speed, 25.0),
            (&only_health, Scorer::Speed, 10.0),
            (&only_discount, Scorer::Speed, 0.0),
            (&only_latency, Scorer::Discount, 0.0),
            (&only_discount, Scorer::Discount, 100.0),
            (&only_health, Scorer::Discount, 0.0),
            (&only_tps, Scorer::Discount, 0.0),
            (&only_health, Scorer::Balanced, 35.0),
            (&only_latency, Scorer::Balanced, 20.0),
            (&only_tps, Scorer::Balanced, 20.0),
            (&only_discount, Scorer::Balanced, 25.0),
        ];
        for (c, scorer, want) in cases {
            assert_eq!(
                score_breakdown(c, scorer).total,
                Some(want),
                "{} {scorer}",
                c.id
            );
        }
    }

    #[test]
    fn latency_sub_score() {
        let cases = [
            (Some(0), None, None, 100.0),
            (Some(5), None, None, 99.5),
            (Some(999), None, None, 0.1),
            (Some(1_000), None, None, 0.0),
            (Some(50_000), None, None, 0.0),
            (Some(u64::MAX), None, None, 0.0),
            // Effective TTFT: ttft ?? probe ?? avg.
            (Some(100), Some(900), Some(900), 90.0),
            (None, Some(300), Some(900), 70.0),
            (None, None, Some(600), 40.0),
        ];
        for (ttft, probe, avg, want) in cases {
            let c = Candidate {
                ttft_ms: ttft,
                probe_latency_ms: probe,
                avg_latency_ms: avg,
                ..cand("x")
            };
            assert_eq!(
                score_breakdown(&c, Scorer::Speed).latency,
                want,
                "{ttft:?} {probe:?} {avg:?}"
            );
        }
    }

    #[test]
    fn throughput_and_discount_clamp() {
        let tps = [
            (-5.0, 0.0),
            (0.0, 0.0),
            (12.34567, 12.3457),
            (100.0, 100.0),
            (250.0, 100.0),
            (f64::INFINITY, 100.0),
            (f64::NEG_INFINITY, 0.0),
        ];
        for (tps, want) in tps {
            let c = Candidate {
                tokens_per_second: Some(tps),
                ..cand("x")
            };
            assert_eq!(score_breakdown(&c, Scorer::Speed).throughput, want, "{tps}");
        }
        let discounts = [
            (0, 0.0),
            (1, 0.0001),
            (123_456, 12.3456),
            (1_000_000, 100.0),
            (5_000_000, 100.0),
        ];
        for (ppm, want) in discounts {
            let c = Candidate {
                discount_ppm: Some(ppm),
                ..cand("x")
            };
            assert_eq!(
                score_breakdown(&c, Scorer::Discount).discount,
                want,
                "{ppm}"
            );
        }
        let h = Candidate {
            health_score: 250,
            ..cand("x")
        };
        assert_eq!(score_breakdown(&h, Scorer::Speed).health, 100.0);
    }

    #[test]
    fn missing_inputs_count_as_zero_and_are_listed_per_scorer() {
        let bare = Candidate {
            health_score: 50,
            ..cand("bare")
        };
        let cases: [(Scorer, &[&str], Option<f64>); 4] = [
            (Scorer::Speed, &["ttft", "tokens_per_second"], Some(5.0)),
            (Scorer::Discount, &["discount_ratio"], Some(0.0)),
            (
                Scorer::Balanced,
                &["ttft", "tokens_per_second", "discount_ratio"],
                Some(17.5),
            ),
            (Scorer::Cheapest, &["effective_price"], None),
        ];
        for (scorer, missing, total) in cases {
            let b = score_breakdown(&bare, scorer);
            assert_eq!(b.missing_inputs, missing, "{scorer}");
            assert_eq!(b.total, total, "{scorer}");
            assert_eq!((b.latency, b.throughput, b.discount), (0.0, 0.0, 0.0));
        }
        // NaN tokens/s is missing, not a number.
        let nan = Candidate {
            tokens_per_second: Some(f64::NAN),
            ..full()
        };
        assert_eq!(
            score_breakdown(&nan, Scorer::Speed).missing_inputs,
            ["tokens_per_second"]
        );
        // A TTFT from the probe alone is not missing.
        let probed = Candidate {
            ttft_ms: None,
            probe_latency_ms: Some(10),
            ..full()
        };
        assert!(
            score_breakdown(&probed, Scorer::Speed)
                .missing_inputs
                .is_empty()
        );
    }

    #[test]
    fn breakdown_serializes_for_the_control_plane() {
        let json = serde_json::to_value(score_breakdown(&full(), Scorer::Speed)).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "scorer": "speed", "latency": 75.0, "throughput": 40.0,
                "discount": 20.0, "health": 80.0, "total": 66.75,
                "effective_ttft_ms": 250, "price_usd_micros_per_1m": 12_000_000,
                "missing_inputs": [],
            })
        );
    }

    #[test]
    fn scorer_names_round_trip() {
        for s in Scorer::ALL {
            let json = serde_json::to_string(&s).unwrap();
            assert_eq!(json, format!("\"{}\"", s.as_str()));
            assert_eq!(serde_json::from_str::<Scorer>(&json).unwrap(), s);
        }
        assert_eq!(Scorer::default(), Scorer::Balanced);
    }
}
