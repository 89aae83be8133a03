//! The route planner (routing.md, "Route planner", "Provider modes").

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

use crate::scorer::{Candidate, ScoreBreakdown, Scorer, price_key, score_breakdown, scorer_key};
use crate::sticky::StickyHint;

/// `routing.max_attempts` when the config says nothing.
pub const DEFAULT_MAX_ATTEMPTS: usize = 4;

/// `routing.manual_policy`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ManualPolicy {
    /// The listed order (or cheapest first with `auto_sort`), failing over
    /// down the list.
    #[default]
    Fallback,
    /// Only the first provider that serves the model; never fail over.
    Locked,
}

impl ManualPolicy {
    /// The config name.
    pub fn as_str(self) -> &'static str {
        match self {
            ManualPolicy::Fallback => "fallback",
            ManualPolicy::Locked => "locked",
        }
    }
}

/// Where the candidates come from and so how they are ordered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PlanMode {
    /// `[[providers]]` from the config.
    Manual {
        /// `routing.manual_policy`.
        policy: ManualPolicy,
        /// `routing.auto_sort`: cheapest effective price first (unpriced
        /// last, stable) instead of the listed order. Ignored when locked.
        auto_sort: bool,
    },
    /// Marketplace range `recommended`: every registry seller, by scorer.
    FullAuto,
    /// Marketplace range `custom`: only `seller_ids` (the caller filters),
    /// by scorer.
    FixedSet,
    /// Marketplace `selected_seller` (the caller filters to it), by scorer.
    Fixed,
}

/// Everything the planner needs, as plain values.
#[derive(Debug, Clone)]
pub struct PlanInput<'a> {
    /// Upstreams serving the request's (model, protocol, payment method)
    /// key, already filtered by the caller (`incompatible` /
    /// `filtered_by_mode` are its diagnostics), in registry / config order.
    pub candidates: &'a [Candidate],
    /// How to order them.
    pub mode: PlanMode,
    /// `routing.scorer`; used by the marketplace modes only.
    pub scorer: Scorer,
    /// `routing.max_attempts`: at most this many distinct upstreams are
    /// planned (0 counts as 1).
    pub max_attempts: usize,
    /// The caller's clock, for benching and stickiness.
    pub now_ms: i64,
    /// From [`Stickiness::hint`](crate::Stickiness::hint) for the model.
    pub sticky: Option<StickyHint>,
}

impl<'a> PlanInput<'a> {
    /// An input with the defaults: `balanced`, [`DEFAULT_MAX_ATTEMPTS`], no
    /// stickiness.
    pub fn new(candidates: &'a [Candidate], mode: PlanMode, now_ms: i64) -> PlanInput<'a> {
        PlanInput {
            candidates,
            mode,
            scorer: Scorer::default(),
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            now_ms,
            sticky: None,
        }
    }
}

/// How the plan was ranked before benching and stickiness.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Ranking {
    /// Manual fallback: the listed order.
    ConfigOrder,
    /// Manual fallback with `auto_sort`: cheapest effective price first.
    CheapestFirst,
    /// Manual locked: the first listed provider only.
    Locked,
    /// Marketplace: by this scorer.
    Scorer(Scorer),
}

/// What happened to the sticky hint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StickyStatus {
    /// No hint was given.
    NoHint,
    /// The sticky upstream was moved to the front.
    Applied,
    /// The sticky upstream ranked first anyway.
    AlreadyFirst,
    /// The hint's `until_ms` has passed: the ranking stands.
    Expired,
    /// The sticky upstream does not serve this key (any more).
    NotACandidate,
    /// The sticky upstream is benched now; it keeps its benched place.
    Benched,
    /// Manual `locked` never moves off its first provider.
    IgnoredLocked,
    /// The sticky upstream is demoted by probe findings for this request;
    /// it keeps its demoted place.
    Demoted,
}

impl StickyStatus {
    /// The wire and log name.
    pub fn as_str(self) -> &'static str {
        match self {
            StickyStatus::NoHint => "no_hint",
            StickyStatus::Applied => "applied",
            StickyStatus::AlreadyFirst => "already_first",
            StickyStatus::Expired => "expired",
            StickyStatus::NotACandidate => "not_a_candidate",
            StickyStatus::Benched => "benched",
            StickyStatus::IgnoredLocked => "ignored_locked",
            StickyStatus::Demoted => "demoted",
        }
    }
}

/// Why the plan looks the way it does (for `route.decision` and the call
/// record). Candidates are named by index into the input slice.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PlanDiagnostics {
    /// How candidates were ranked.
    pub ranking: Ranking,
    /// Number of candidates given.
    pub considered: usize,
    /// How many of them were benched at `now_ms`.
    pub benched: usize,
    /// The planned candidates that are benched (they sit at the back).
    pub benched_in_plan: Vec<usize>,
    /// How many candidates probe findings demoted for this request (they
    /// follow the trusted ones that are not benched).
    pub demoted: usize,
    /// Every candidate was benched (they are all still tried).
    pub all_benched: bool,
    /// What the sticky hint did.
    pub sticky: StickyStatus,
    /// Candidates not planned: beyond `max_attempts`, beyond the first for
    /// `locked`, or a repeated upstream id.
    pub left_out: usize,
}

/// The ordered routes for one request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Plan {
    /// Indices into [`PlanInput::candidates`], in attempt order; distinct
    /// upstream ids, at most `max_attempts` of them.
    pub order: Vec<usize>,
    /// Why.
    pub diagnostics: PlanDiagnostics,
}

impl Plan {
    /// Score breakdowns of the planned candidates under the plan's scorer
    /// (`balanced` for manual plans, for display only), in plan order. Not
    /// on the hot path: `doctor`, the control plane, debug logs.
    pub fn breakdowns(&self, candidates: &[Candidate]) -> Vec<(usize, ScoreBreakdown)> {
        let scorer = match self.diagnostics.ranking {
            Ranking::Scorer(s) => s,
            Ranking::CheapestFirst => Scorer::Cheapest,
            Ranking::ConfigOrder | Ranking::Locked => Scorer::Balanced,
        };
        self.order
            .iter()
            .filter_map(|&i| candidates.get(i).map(|c| (i, score_breakdown(c, scorer))))
            .collect()
    }
}

/// Sort key: `[bench, demoted, k1, k2, k3, k4, index]`, ascending. `bench`
/// is 0 for a candidate that is not benched, else the milliseconds until it
/// recovers (so benched ones sort last, soonest first); `demoted` is 1 for
/// a candidate probe findings push back (after the trusted ones, before
/// the benched ones); `k1..k4` come from the ranking; the index makes every
/// key unique, so an unstable sort is deterministic and stable.
type Key = [u64; 7];

/// Orders the candidates for one request (routing.md, "Route planner"):
///
/// 1. rank: manual fallback = listed order (`registry_order`), or cheapest
///    effective price first with `auto_sort` (unpriced last, ties in listed
///    order); manual locked = the first listed candidate only;
///    marketplace modes = by the scorer and its tie-breakers;
/// 2. **reorder, never drop**: candidates demoted by probe findings go
///    after the trusted ones, benched candidates to the back, soonest to
///    recover first (ties keep the ranking); when all are benched all are
///    still planned in that order;
/// 3. stickiness: while `now_ms < until_ms`, the sticky upstream goes first
///    if it is a candidate, not benched and not demoted (a benched sticky
///    upstream is exactly what the breaker exists to skip);
/// 4. cap at `max_attempts` distinct upstream ids (a repeated id is skipped).
///
/// Cost: one key per candidate in one `Vec` (no per-candidate allocation),
/// then a selection of the best `max_attempts` and a sort of those only,
/// so it is linear in the number of candidates.
///
/// ```
/// use tb_routing::{Candidate, PlanInput, PlanMode, plan};
///
/// let cands = [
///     Candidate { id: "slow".into(), registry_order: 0, health_score: 90, ttft_ms: Some(900), ..Candidate::default() },
///     Candidate { id: "fast".into(), registry_order: 1, health_score: 90, ttft_ms: Some(100), ..Candidate::default() },
///     Candidate { id: "down".into(), registry_order: 2, health_score: 100, ttft_ms: Some(10), benched_until_ms: Some(5_000), ..Candidate::default() },
/// ];
/// let p = plan(PlanInput::new(&cands, PlanMode::FullAuto, 1_000));
/// assert_eq!(p.order, [1, 0, 2]); // benched last, not dropped
/// assert_eq!(p.diagnostics.benched_in_plan, [2]);
/// ```
pub fn plan(input: PlanInput<'_>) -> Plan {
    let cands = input.candidates;
    let now = input.now_ms;
    let cap = input.max_attempts.max(1);
    let (ranking, cap) = match input.mode {
        PlanMode::Manual {
            policy: ManualPolicy::Locked,
            ..
        } => (Ranking::Locked, 1),
        PlanMode::Manual {
            auto_sort: true, ..
        } => (Ranking::CheapestFirst, cap),
        PlanMode::Manual { .. } => (Ranking::ConfigOrder, cap),
        PlanMode::FullAuto | PlanMode::FixedSet | PlanMode::Fixed => {
            (Ranking::Scorer(input.scorer), cap)
        }
    };

    let mut benched = 0;
    let mut demoted = 0;
    let mut keys: Vec<Key> = Vec::with_capacity(cands.len());
    for (i, c) in cands.iter().enumerate() {
        let bench = match c.benched_until_ms {
            Some(until) if until > now => {
                benched += 1;
                until.abs_diff(now)
            }
            _ => 0,
        };
        let reg = c.registry_order as u64;
        let [k1, k2, k3, k4] = match ranking {
            // Locked ignores benching: its one provider is the first listed.
            Ranking::Locked => {
                keys.push([0, 0, reg, 0, 0, 0, i as u64]);
                continue;
            }
            Ranking::ConfigOrder => [reg, 0, 0, 0],
            Ranking::CheapestFirst => {
                let [unpriced, price] = price_key(c);
                [unpriced, price, reg, 0]
            }
            Ranking::Scorer(s) => scorer_key(c, s),
        };
        demoted += usize::from(c.demoted);
        keys.push([bench, u64::from(c.demoted), k1, k2, k3, k4, i as u64]);
    }

    let (sticky_status, sticky_idx) = match sticky_choice(&input, ranking) {
        StickyPick::Status(s) => (s, None),
        // Keys are still in index order here, so keys[i] is i's key.
        StickyPick::Candidate(i) if keys.iter().all(|k| *k >= keys[i]) => {
            (StickyStatus::AlreadyFirst, Some(i))
        }
        StickyPick::Candidate(i) => (StickyStatus::Applied, Some(i)),
    };

    let mut planned = Planned::with_capacity(cands, cap.min(cands.len()));
    if let Some(s) = sticky_idx {
        planned.push(s);
    }
    if planned.order.len() < cap && !keys.is_empty() {
        // Enough of the best keys to fill the plan even if the sticky one
        // is among them; more are sorted only if repeated ids need them.
        let want = (cap - planned.order.len() + usize::from(sticky_idx.is_some())).min(keys.len());
        let mut sorted = if want < keys.len() {
            keys.select_nth_unstable(want - 1);
            keys[..want].sort_unstable();
            want
        } else {
            keys.sort_unstable();
            keys.len()
        };
        let mut i = 0;
        while i < keys.len() && planned.order.len() < cap {
            if i == sorted {
                keys[sorted..].sort_unstable();
                sorted = keys.len();
            }
            let idx = keys[i][6] as usize;
            i += 1;
            if Some(idx) != sticky_idx && !planned.has_id_of(idx) {
                planned.push(idx);
            }
        }
    }
    let order = planned.order;

    let benched_in_plan = if benched == 0 {
        Vec::new()
    } else {
        order
            .iter()
            .copied()
            .filter(|&i| cands[i].is_benched(now))
            .collect()
    };
    Plan {
        diagnostics: PlanDiagnostics {
            ranking,
            considered: cands.len(),
            benched,
            benched_in_plan,
            demoted,
            all_benched: benched > 0 && benched == cands.len(),
            sticky: sticky_status,
            left_out: cands.len() - order.len(),
        },
        order,
    }
}

enum StickyPick {
    Status(StickyStatus),
    Candidate(usize),
}

fn sticky_choice(input: &PlanInput<'_>, ranking: Ranking) -> StickyPick {
    let Some(hint) = &input.sticky else {
        return StickyPick::Status(StickyStatus::NoHint);
    };
    if ranking == Ranking::Locked {
        return StickyPick::Status(StickyStatus::IgnoredLocked);
    }
    if input.now_ms >= hint.until_ms {
        return StickyPick::Status(StickyStatus::Expired);
    }
    match input
        .candidates
        .iter()
        .position(|c| *c.id == *hint.upstream_id)
    {
        None => StickyPick::Status(StickyStatus::NotACandidate),
        Some(i) if input.candidates[i].is_benched(input.now_ms) => {
            StickyPick::Status(StickyStatus::Benched)
        }
        Some(i) if input.candidates[i].demoted => StickyPick::Status(StickyStatus::Demoted),
        Some(i) => StickyPick::Candidate(i),
    }
}

/// The plan being built, with a check for repeated upstream ids: a scan
/// while the plan is short (the usual `max_attempts` of a few), a hash set
/// beyond [`Planned::SCAN_LIMIT`] so a huge `max_attempts` stays linear.
struct Planned<'c> {
    cands: &'c [Candidate],
    order: Vec<usize>,
    ids: HashSet<&'c str>,
}

impl<'c> Planned<'c> {
    const SCAN_LIMIT: usize = 16;

    fn with_capacity(cands: &'c [Candidate], capacity: usize) -> Planned<'c> {
        Planned {
            cands,
            order: Vec::with_capacity(capacity),
            ids: HashSet::new(),
        }
    }

    fn has_id_of(&self, idx: usize) -> bool {
        let id = &*self.cands[idx].id;
        if self.order.len() <= Self::SCAN_LIMIT {
            self.order.iter().any(|&j| &*self.cands[j].id == id)
        } else {
            self.ids.contains(id)
        }
    }

    fn push(&mut self, idx: usize) {
        self.order.push(idx);
        if self.order.len() > Self::SCAN_LIMIT {
            if self.ids.is_empty() {
                let cands = self.cands;
                self.ids.extend(self.order.iter().map(|&j| &*cands[j].id));
            } else {
                self.ids.insert(&self.cands[idx].id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_000_000;

    #[test]
    fn log_names_are_the_wire_names() {
        use StickyStatus::*;
        for s in [
            NoHint,
            Applied,
            AlreadyFirst,
            Expired,
            NotACandidate,
            Benched,
            IgnoredLocked,
            Demoted,
        ] {
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
        }
        for p in [ManualPolicy::Fallback, ManualPolicy::Locked] {
            assert_eq!(serde_json::to_value(p).unwrap(), p.as_str());
        }
    }

    fn c(id: &str, reg: usize) -> Candidate {
        Candidate {
            id: id.into(),
            registry_order: reg,
            health_score: 70,
            ..Candidate::default()
        }
    }

    fn ids(cands: &[Candidate], p: &Plan) -> Vec<String> {
        p.order.iter().map(|&i| cands[i].id.to_string()).collect()
    }

    fn run(cands: &[Candidate], mode: PlanMode, scorer: Scorer, max: usize) -> Plan {
        plan(PlanInput {
            scorer,
            max_attempts: max,
            ..PlanInput::new(cands, mode, NOW)
        })
    }

    fn check(cands: &[Candidate], mode: PlanMode, scorer: Scorer, max: usize, want: &[&str]) {
        let p = run(cands, mode, scorer, max);
        assert_eq!(ids(cands, &p), want, "{mode:?} {scorer} max {max}");
    }

    const AUTO: PlanMode = PlanMode::FullAuto;
    const FALLBACK: PlanMode = PlanMode::Manual {
        policy: ManualPolicy::Fallback,
        auto_sort: false,
    };
    const SORTED: PlanMode = PlanMode::Manual {
        policy: ManualPolicy::Fallback,
        auto_sort: true,
    };
    const LOCKED: PlanMode = PlanMode::Manual {
        policy: ManualPolicy::Locked,
        auto_sort: true,
    };

    #[test]
    fn speed_orders_by_total() {
        // a: ttft 100 (L 90), 10 tok/s, health 70 → 58.5 + 2.5 + 7 = 68
        // b: ttft 300 (L 70), 90 tok/s, health 70 → 45.5 + 22.5 + 7 = 75
        // c: no metrics, health 100 → 10
        let cands = [
            Candidate {
                ttft_ms: Some(100),
                tokens_per_second: Some(10.0),
                ..c("a", 0)
            },
            Candidate {
                ttft_ms: Some(300),
                tokens_per_second: Some(90.0),
                ..c("b", 1)
            },
            Candidate {
                health_score: 100,
                ..c("c", 2)
            },
        ];
        let totals: Vec<_> = cands
            .iter()
            .map(|x| score_breakdown(x, Scorer::Speed).total)
            .collect();
        assert_eq!(totals, [Some(68.0), Some(75.0), Some(10.0)]);
        check(&cands, AUTO, Scorer::Speed, 4, &["b", "a", "c"]);
    }

    #[test]
    fn speed_tie_breakers() {
        // Lower TTFT. Equal totals from different mixes:
        // x: ttft 100 (L 90), 20 tok/s, health 70 → 58.5 + 5 + 7 = 70.5
        // y: ttft 150 (L 85), 33 tok/s, health 70 → 55.25 + 8.25 + 7 = 70.5
        let ttft = [
            Candidate {
                ttft_ms: Some(150),
                tokens_per_second: Some(33.0),
                ..c("y", 0)
            },
            Candidate {
                ttft_ms: Some(100),
                tokens_per_second: Some(20.0),
                ..c("x", 1)
            },
        ];
        for x in &ttft {
            assert_eq!(score_breakdown(x, Scorer::Speed).total, Some(70.5));
        }
        check(&ttft, AUTO, Scorer::Speed, 4, &["x", "y"]);
        // Higher tok/s beyond the 100 cap: both L 0 (ttft 1,500), T 100,
        // health 70 → 0 + 25 + 7 = 32; TTFT equal, so tok/s decides.
        let tps = [
            Candidate {
                ttft_ms: Some(1_500),
                tokens_per_second: Some(120.0),
                ..c("y", 0)
            },
            Candidate {
                ttft_ms: Some(1_500),
                tokens_per_second: Some(300.0),
                ..c("x", 1)
            },
        ];
        for x in &tps {
            assert_eq!(score_breakdown(x, Scorer::Speed).total, Some(32.0));
        }
        check(&tps, AUTO, Scorer::Speed, 4, &["x", "y"]);
        // Two TTFTs past 1 s both score L 0: the lower one still wins.
        let slow = [
            Candidate {
                ttft_ms: Some(4_000),
                ..c("y", 0)
            },
            Candidate {
                ttft_ms: Some(1_200),
                ..c("x", 1)
            },
            c("no-ttft", 2),
        ];
        check(&slow, AUTO, Scorer::Speed, 4, &["x", "y", "no-ttft"]);
        // Everything equal: registry order (not slice order).
        let reg = [c("second", 1), c("first", 0)];
        check(&reg, AUTO, Scorer::Speed, 4, &["first", "second"]);
    }

    #[test]
    fn speed_health_tie_breaker_sits_in_the_key() {
        // Health is part of the speed total, so equal total + TTFT + tok/s
        // implies equal health: the health tie-breaker cannot decide a real
        // pair. It is still in the key, after tok/s and before registry
        // order, as the spec lists it.
        let a = Candidate {
            health_score: 60,
            ..c("a", 0)
        };
        let b = Candidate {
            health_score: 90,
            ..c("b", 1)
        };
        let (ka, kb) = (scorer_key(&a, Scorer::Speed), scorer_key(&b, Scorer::Speed));
        assert_eq!(ka[1..3], kb[1..3]);
        assert!(
            kb[3] < ka[3],
            "higher health sorts first despite registry order"
        );
    }

    #[test]
    fn discount_orders_by_discount_then_health_then_registry() {
        let cands = [
            Candidate {
                discount_ppm: Some(100_000),
                health_score: 100,
                ..c("ten", 0)
            },
            Candidate {
                discount_ppm: Some(300_000),
                health_score: 40,
                ..c("thirty-sick", 1)
            },
            Candidate {
                discount_ppm: Some(300_000),
                health_score: 90,
                ..c("thirty-well", 2)
            },
            Candidate {
                discount_ppm: Some(300_000),
                health_score: 90,
                ..c("thirty-well-later", 3)
            },
            c("none", 4),
        ];
        let totals: Vec<_> = cands
            .iter()
            .map(|x| score_breakdown(x, Scorer::Discount).total)
            .collect();
        assert_eq!(
            totals,
            [Some(10.0), Some(30.0), Some(30.0), Some(30.0), Some(0.0)]
        );
        check(
            &cands,
            AUTO,
            Scorer::Discount,
            10,
            &[
                "thirty-well",
                "thirty-well-later",
                "thirty-sick",
                "ten",
                "none",
            ],
        );
    }

    #[test]
    fn balanced_orders_by_total_then_default_seller_then_registry() {
        // a: H 70, L 80 (ttft 200), T 50, D 10 → 24.5 + 16 + 10 + 2.5 = 53
        // b: H 100, no metrics                 → 35
        // c, d, e: H 100, D 0 → 35, e is the default seller
        let cands = [
            Candidate {
                ttft_ms: Some(200),
                tokens_per_second: Some(50.0),
                discount_ppm: Some(100_000),
                ..c("a", 0)
            },
            Candidate {
                health_score: 100,
                ..c("b", 1)
            },
            Candidate {
                health_score: 100,
                discount_ppm: Some(0),
                ..c("c", 2)
            },
            Candidate {
                health_score: 100,
                is_default_seller: true,
                ..c("e", 4)
            },
            Candidate {
                health_score: 100,
                ..c("d", 3)
            },
        ];
        let totals: Vec<_> = cands
            .iter()
            .map(|x| score_breakdown(x, Scorer::Balanced).total)
            .collect();
        assert_eq!(
            totals,
            [Some(53.0), Some(35.0), Some(35.0), Some(35.0), Some(35.0)]
        );
        check(
            &cands,
            AUTO,
            Scorer::Balanced,
            10,
            &["a", "e", "b", "c", "d"],
        );
        // Balanced is the default scorer.
        let p = plan(PlanInput {
            max_attempts: 10,
            ..PlanInput::new(&cands, PlanMode::FixedSet, NOW)
        });
        assert_eq!(ids(&cands, &p), ["a", "e", "b", "c", "d"]);
        assert_eq!(p.diagnostics.ranking, Ranking::Scorer(Scorer::Balanced));
    }

    #[test]
    fn cheapest_orders_by_price_unpriced_last_then_health_then_registry() {
        let cands = [
            c("unpriced", 0),
            Candidate {
                price_usd_micros_per_1m: Some(5_000_000),
                ..c("five", 1)
            },
            Candidate {
                price_usd_micros_per_1m: Some(2_000_000),
                health_score: 20,
                ..c("two-sick", 2)
            },
            Candidate {
                price_usd_micros_per_1m: Some(2_000_000),
                health_score: 95,
                ..c("two-well", 3)
            },
            Candidate {
                price_usd_micros_per_1m: Some(2_000_000),
                health_score: 95,
                ..c("two-well-later", 4)
            },
            Candidate {
                health_score: 100,
                ..c("unpriced-well", 5)
            },
        ];
        check(
            &cands,
            PlanMode::Fixed,
            Scorer::Cheapest,
            10,
            &[
                "two-well",
                "two-well-later",
                "two-sick",
                "five",
                "unpriced-well",
                "unpriced",
            ],
        );
    }

    #[test]
    fn manual_fallback_keeps_config_order_and_ignores_the_scorer() {
        let cands = [
            c("first", 0),
            Candidate {
                health_score: 100,
                ttft_ms: Some(1),
                ..c("fast", 1)
            },
            c("third", 2),
        ];
        for scorer in Scorer::ALL {
            check(&cands, FALLBACK, scorer, 4, &["first", "fast", "third"]);
        }
        let p = run(&cands, FALLBACK, Scorer::Speed, 4);
        assert_eq!(p.diagnostics.ranking, Ranking::ConfigOrder);
    }

    #[test]
    fn manual_auto_sort_is_cheapest_first_unpriced_last_stable() {
        let cands = [
            c("unpriced-a", 0),
            Candidate {
                price_usd_micros_per_1m: Some(3_000_000),
                ..c("three", 1)
            },
            Candidate {
                price_usd_micros_per_1m: Some(1_000_000),
                health_score: 0,
                ..c("one-a", 2)
            },
            c("unpriced-b", 3),
            Candidate {
                price_usd_micros_per_1m: Some(1_000_000),
                health_score: 100,
                ..c("one-b", 4)
            },
        ];
        // Equal prices keep the listed order (health plays no part here).
        check(
            &cands,
            SORTED,
            Scorer::Balanced,
            10,
            &["one-a", "one-b", "three", "unpriced-a", "unpriced-b"],
        );
        assert_eq!(
            run(&cands, SORTED, Scorer::Balanced, 10)
                .diagnostics
                .ranking,
            Ranking::CheapestFirst
        );
    }

    #[test]
    fn locked_plans_only_the_first_listed_even_when_benched() {
        let cands = [
            Candidate {
                price_usd_micros_per_1m: Some(1),
                ..c("cheap", 1)
            },
            Candidate {
                benched_until_ms: Some(NOW + 10),
                ..c("first", 0)
            },
        ];
        for max in [1, 4, 100] {
            let p = plan(PlanInput {
                max_attempts: max,
                sticky: Some(StickyHint {
                    upstream_id: "cheap".into(),
                    until_ms: NOW + 1_000,
                }),
                ..PlanInput::new(&cands, LOCKED, NOW)
            });
            assert_eq!(ids(&cands, &p), ["first"]);
            assert_eq!(p.diagnostics.ranking, Ranking::Locked);
            assert_eq!(p.diagnostics.sticky, StickyStatus::IgnoredLocked);
            assert_eq!(p.diagnostics.benched_in_plan, [1]);
            assert_eq!(p.diagnostics.left_out, 1);
        }
    }

    #[test]
    fn benched_go_to_the_back_soonest_first() {
        let cands = [
            Candidate {
                benched_until_ms: Some(NOW + 30_000),
                ..c("late", 0)
            },
            Candidate {
                benched_until_ms: Some(NOW - 1),
                ..c("recovered", 1)
            },
            Candidate {
                benched_until_ms: Some(NOW + 5_000),
                ..c("soon", 2)
            },
            c("fine", 3),
            Candidate {
                // Recovers exactly now: not benched.
                benched_until_ms: Some(NOW),
                ..c("now", 4)
            },
            Candidate {
                benched_until_ms: Some(i64::MAX),
                half_open: true,
                ..c("trial-busy", 5)
            },
        ];
        for mode in [FALLBACK, SORTED, AUTO] {
            let p = run(&cands, mode, Scorer::Balanced, 10);
            assert_eq!(
                ids(&cands, &p),
                ["recovered", "fine", "now", "soon", "late", "trial-busy"],
                "{mode:?}"
            );
            assert_eq!(p.diagnostics.benched, 3);
            assert_eq!(p.diagnostics.benched_in_plan, [2, 0, 5]);
            assert!(!p.diagnostics.all_benched);
        }
        // The cap applies after the reorder: benched ones fall off first.
        check(
            &cands,
            FALLBACK,
            Scorer::Balanced,
            4,
            &["recovered", "fine", "now", "soon"],
        );
    }

    #[test]
    fn all_benched_are_all_still_tried_soonest_first() {
        let cands = [
            Candidate {
                health_score: 100,
                ttft_ms: Some(1),
                benched_until_ms: Some(NOW + 300),
                ..c("best-but-late", 0)
            },
            Candidate {
                benched_until_ms: Some(NOW + 100),
                ..c("soonest", 1)
            },
            Candidate {
                benched_until_ms: Some(NOW + 200),
                ..c("middle", 2)
            },
            Candidate {
                benched_until_ms: Some(NOW + 200),
                health_score: 100,
                ..c("middle-better", 3)
            },
        ];
        let p = run(&cands, AUTO, Scorer::Speed, 4);
        assert_eq!(
            ids(&cands, &p),
            ["soonest", "middle-better", "middle", "best-but-late"]
        );
        assert!(p.diagnostics.all_benched);
        assert_eq!(p.diagnostics.benched, 4);
    }

    #[test]
    fn max_attempts_caps_distinct_upstreams() {
        let cands: Vec<Candidate> = (0..10).map(|i| c(&format!("u{i}"), i)).collect();
        check(
            &cands,
            FALLBACK,
            Scorer::Balanced,
            4,
            &["u0", "u1", "u2", "u3"],
        );
        check(&cands, AUTO, Scorer::Speed, 2, &["u0", "u1"]);
        // 0 counts as 1.
        check(&cands, AUTO, Scorer::Speed, 0, &["u0"]);
        // More than there are: all of them.
        let p = run(&cands, AUTO, Scorer::Speed, 50);
        assert_eq!(p.order, (0..10).collect::<Vec<_>>());
        assert_eq!(p.diagnostics.left_out, 0);
        assert_eq!(run(&cands, AUTO, Scorer::Speed, 4).diagnostics.left_out, 6);
        // A repeated id counts once and does not use up an attempt.
        let dup = [c("a", 0), c("a", 1), c("b", 2), c("a", 3), c("c", 4)];
        check(&dup, FALLBACK, Scorer::Balanced, 3, &["a", "b", "c"]);
        // Past the scan limit the id check switches to a set.
        let many: Vec<Candidate> = (0..100).map(|i| c(&format!("u{}", i % 40), i)).collect();
        let p = run(&many, FALLBACK, Scorer::Balanced, 1_000);
        assert_eq!(p.order, (0..40).collect::<Vec<_>>());
        let p = run(&many, FALLBACK, Scorer::Balanced, 25);
        assert_eq!(p.order, (0..25).collect::<Vec<_>>());
        // Empty input: empty plan.
        let p = run(&[], AUTO, Scorer::Balanced, 4);
        assert!(p.order.is_empty());
        assert!(!p.diagnostics.all_benched);
    }

    #[test]
    fn demoted_follow_the_trusted_and_precede_the_benched() {
        let demoted = |id, reg| Candidate {
            demoted: true,
            ..c(id, reg)
        };
        let cands = [
            demoted("cheap-liar", 0),
            c("honest", 1),
            Candidate {
                benched_until_ms: Some(NOW + 10),
                ..c("down", 2)
            },
            c("honest-2", 3),
        ];
        for mode in [FALLBACK, SORTED, AUTO] {
            check(
                &cands,
                mode,
                Scorer::Balanced,
                4,
                &["honest", "honest-2", "cheap-liar", "down"],
            );
        }
        let p = run(&cands, FALLBACK, Scorer::Balanced, 4);
        assert_eq!(p.diagnostics.demoted, 1);
        // Never dropped: with max_attempts 1 the trusted one is planned,
        // with all demoted they keep their ranking.
        check(&cands, FALLBACK, Scorer::Balanced, 1, &["honest"]);
        let all = [demoted("a", 0), demoted("b", 1)];
        check(&all, FALLBACK, Scorer::Balanced, 4, &["a", "b"]);
        // Cheapest first still ranks within each class.
        let priced = [
            Candidate {
                price_usd_micros_per_1m: Some(1),
                ..demoted("cheapest", 0)
            },
            Candidate {
                price_usd_micros_per_1m: Some(9),
                ..c("pricey", 1)
            },
            Candidate {
                price_usd_micros_per_1m: Some(5),
                ..c("middle", 2)
            },
        ];
        check(
            &priced,
            SORTED,
            Scorer::Balanced,
            4,
            &["middle", "pricey", "cheapest"],
        );
        // Locked ignores demotion: its one provider is the first listed.
        check(&cands, LOCKED, Scorer::Balanced, 4, &["cheap-liar"]);
        assert_eq!(
            run(&cands, LOCKED, Scorer::Balanced, 4).diagnostics.demoted,
            0
        );
    }

    #[test]
    fn a_demoted_sticky_upstream_is_not_moved_first() {
        let cands = [
            c("a", 0),
            Candidate {
                demoted: true,
                ..c("b", 1)
            },
        ];
        let p = sticky_plan(&cands, FALLBACK, Some(("b", NOW + 1)), 4);
        assert_eq!(ids(&cands, &p), ["a", "b"]);
        assert_eq!(p.diagnostics.sticky, StickyStatus::Demoted);
    }

    fn sticky_plan(
        cands: &[Candidate],
        mode: PlanMode,
        hint: Option<(&str, i64)>,
        max: usize,
    ) -> Plan {
        plan(PlanInput {
            max_attempts: max,
            sticky: hint.map(|(id, until_ms)| StickyHint {
                upstream_id: id.into(),
                until_ms,
            }),
            ..PlanInput::new(cands, mode, NOW)
        })
    }

    #[test]
    fn stickiness_on_off_and_expiry() {
        let cands = [
            c("a", 0),
            c("b", 1),
            c("c", 2),
            Candidate {
                benched_until_ms: Some(NOW + 1),
                ..c("d", 3)
            },
            c("e", 4),
        ];
        type Hint<'a> = Option<(&'a str, i64)>;
        let cases: [(Hint<'_>, usize, &[&str], StickyStatus); 9] = [
            (None, 4, &["a", "b", "c", "e"], StickyStatus::NoHint),
            (
                Some(("c", NOW + 1)),
                4,
                &["c", "a", "b", "e"],
                StickyStatus::Applied,
            ),
            // Beyond the cap without stickiness, first with it.
            (Some(("e", NOW + 1)), 2, &["e", "a"], StickyStatus::Applied),
            (Some(("e", NOW + 1)), 1, &["e"], StickyStatus::Applied),
            (
                Some(("a", NOW + 1)),
                4,
                &["a", "b", "c", "e"],
                StickyStatus::AlreadyFirst,
            ),
            // until is exclusive.
            (
                Some(("c", NOW)),
                4,
                &["a", "b", "c", "e"],
                StickyStatus::Expired,
            ),
            (
                Some(("c", NOW - 5)),
                4,
                &["a", "b", "c", "e"],
                StickyStatus::Expired,
            ),
            (
                Some(("zzz", NOW + 1)),
                4,
                &["a", "b", "c", "e"],
                StickyStatus::NotACandidate,
            ),
            (
                Some(("d", NOW + 9)),
                5,
                &["a", "b", "c", "e", "d"],
                StickyStatus::Benched,
            ),
        ];
        for (hint, max, want, status) in cases {
            for mode in [FALLBACK, AUTO] {
                let p = sticky_plan(&cands, mode, hint, max);
                assert_eq!(ids(&cands, &p), want, "{hint:?} {mode:?}");
                assert_eq!(p.diagnostics.sticky, status, "{hint:?} {mode:?}");
            }
        }
    }

    #[test]
    fn breakdowns_follow_the_plan() {
        let cands = [
            c("a", 0),
            Candidate {
                ttft_ms: Some(0),
                ..c("b", 1)
            },
        ];
        let p = run(&cands, AUTO, Scorer::Speed, 4);
        let b = p.breakdowns(&cands);
        assert_eq!(b.len(), 2);
        assert_eq!(b[0].0, 1);
        assert_eq!(b[0].1.total, Some(72.0)); // 65 + 0 + 7
        assert_eq!(b[1].1.total, Some(7.0));
    }

    #[test]
    fn plan_serializes_for_the_log() {
        let cands = [c("a", 0)];
        let json = serde_json::to_value(run(&cands, AUTO, Scorer::Speed, 4)).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "order": [0],
                "diagnostics": {
                    "ranking": {"scorer": "speed"}, "considered": 1, "benched": 0,
                    "benched_in_plan": [], "demoted": 0, "all_benched": false,
                    "sticky": "no_hint", "left_out": 0,
                },
            })
        );
    }
}
