//! The seller audit: per marketplace seller, what its call records say
//! about how it was used and how it bills — attempts and failures, what it
//! settled against what the daemon estimated (with its own manifest
//! prices, else the table × its discount), the median drift between the
//! two — and a finding when it bills far off: a median drift beyond ±20 %
//! ([`DRIFT_LIMIT_PPM`]), or a settled/estimated ratio near ×100 or ÷100
//! (the classic dollars-vs-cents slip), with the calls that show it.
//!
//! Pure: call records in, figures out; no clock, no I/O.

use std::collections::{BTreeMap, BTreeSet};

use tb_domain::Outcome;

use crate::record::{BalanceSource, CallRecord};

/// A median drift beyond this (either way, parts per million of the
/// estimate) is a finding: 20 %.
pub const DRIFT_LIMIT_PPM: i64 = 200_000;

/// "Near ×100": a settled/estimated ratio within a factor of two of 100,
/// in ppm of the estimate (×50 to ×200).
pub const HUNDREDFOLD_PPM: (u64, u64) = (50_000_000, 200_000_000);

/// "Near ÷100": a ratio within a factor of two of 1/100 (÷200 to ÷50).
pub const HUNDREDTH_PPM: (u64, u64) = (5_000, 20_000);

/// How many calls a finding lists as evidence (the most recent).
pub const EVIDENCE_LIMIT: usize = 10;

const ONE: u64 = 1_000_000;

/// What one seller's call records add up to.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SellerStats {
    /// The seller.
    pub seller_id: String,
    /// Calls that tried it at least once.
    pub calls: u64,
    /// Attempts at it (a retried call counts each attempt).
    pub attempts: u64,
    /// Attempts that failed for a reason of its own (not the caller
    /// going away, not the caller's own bad request).
    pub failed_attempts: u64,
    /// Calls it answered.
    pub won: u64,
    /// Calls it answered with a settlement and a known estimate, both
    /// above zero: the calls the drift is measured on.
    pub settled_calls: u64,
    /// What it settled over those calls, USD micros.
    pub settled_usd_micros: u64,
    /// What the daemon estimated for the same calls, USD micros.
    pub estimated_usd_micros: u64,
    /// The median of `settled / estimated − 1` over those calls, signed
    /// ppm (`+200000` = billed 20 % above the estimate).
    pub median_drift_ppm: Option<i64>,
    /// The latest call that tried it, unix ms.
    pub last_call_ms: Option<i64>,
}

impl SellerStats {
    /// Failed attempts per attempt, ppm; `None` without attempts.
    pub fn failure_share_ppm(&self) -> Option<u64> {
        (self.attempts > 0).then(|| self.failed_attempts * ONE / self.attempts)
    }
}

/// How a seller bills off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FindingKind {
    /// Median ratio near ×100.
    Hundredfold,
    /// Median ratio near ÷100.
    Hundredth,
    /// Median drift above +20 %.
    Overbilling,
    /// Median drift below −20 %.
    Underbilling,
}

impl FindingKind {
    /// The JSON / CLI name.
    pub fn as_str(self) -> &'static str {
        match self {
            FindingKind::Hundredfold => "times_100",
            FindingKind::Hundredth => "div_100",
            FindingKind::Overbilling => "over_billing",
            FindingKind::Underbilling => "under_billing",
        }
    }

    /// What it means, for people.
    pub fn describe(self) -> &'static str {
        match self {
            FindingKind::Hundredfold => {
                "settles about 100× the estimate (a units slip: cents billed as dollars?)"
            }
            FindingKind::Hundredth => {
                "settles about 1/100 of the estimate (a units slip: dollars billed as cents?)"
            }
            FindingKind::Overbilling => "settles more than 20 % above the estimate",
            FindingKind::Underbilling => "settles more than 20 % below the estimate",
        }
    }

    /// The kind a settled/estimated ratio (ppm) falls in, if any.
    pub fn of_ratio(ratio_ppm: u64) -> Option<FindingKind> {
        let within = |(low, high): (u64, u64)| (low..=high).contains(&ratio_ppm);
        let drift = i128::from(ratio_ppm) - i128::from(ONE);
        if within(HUNDREDFOLD_PPM) {
            Some(FindingKind::Hundredfold)
        } else if within(HUNDREDTH_PPM) {
            Some(FindingKind::Hundredth)
        } else if drift > i128::from(DRIFT_LIMIT_PPM) {
            Some(FindingKind::Overbilling)
        } else if drift < -i128::from(DRIFT_LIMIT_PPM) {
            Some(FindingKind::Underbilling)
        } else {
            None
        }
    }

    /// Whether one call's ratio is evidence for this kind: the same class
    /// for the ×100 / ÷100 kinds; any drift beyond the limit that way for
    /// the others.
    fn shown_by(self, ratio_ppm: u64) -> bool {
        let drift = i128::from(ratio_ppm) - i128::from(ONE);
        match self {
            FindingKind::Hundredfold | FindingKind::Hundredth => {
                FindingKind::of_ratio(ratio_ppm) == Some(self)
            }
            FindingKind::Overbilling => drift > i128::from(DRIFT_LIMIT_PPM),
            FindingKind::Underbilling => drift < -i128::from(DRIFT_LIMIT_PPM),
        }
    }
}

/// One call that shows a finding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Evidence {
    /// The call record's id.
    pub call_id: String,
    /// When it started, unix ms.
    pub started_at_ms: i64,
    /// The model sent upstream.
    pub model: String,
    /// What the seller settled, USD micros.
    pub settled_usd_micros: u64,
    /// What the daemon estimated, USD micros.
    pub estimated_usd_micros: u64,
    /// `settled / estimated − 1`, signed ppm.
    pub drift_ppm: i64,
}

/// A seller that bills far off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// How.
    pub kind: FindingKind,
    /// The median `settled / estimated`, ppm (100× = 100,000,000).
    pub median_ratio_ppm: u64,
    /// The calls that show it, most recent first, at most
    /// [`EVIDENCE_LIMIT`].
    pub evidence: Vec<Evidence>,
    /// How many calls show it in all.
    pub evidence_calls: u64,
}

/// One seller: its figures and, when it bills far off, the finding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SellerAudit {
    /// The figures.
    pub stats: SellerStats,
    /// The finding, if any.
    pub finding: Option<Finding>,
}

/// One settled call of a seller: (record, ratio ppm).
type Settled<'a> = (&'a CallRecord, u64);

/// Audits every marketplace seller that appears in `records` (as a
/// winner or in an attempt), sorted by id. An upstream is a seller unless
/// it is one of `manual_ids` (the configured providers) or answered a
/// call paid with a provider key. `rejected` calls (no upstream saw them)
/// are skipped.
pub fn audit_sellers(records: &[CallRecord], manual_ids: &BTreeSet<String>) -> Vec<SellerAudit> {
    let manual: BTreeSet<&str> = records
        .iter()
        .filter(|r| r.balance_source == BalanceSource::SelfFundedProvider)
        .filter_map(|r| r.winner.as_deref())
        .chain(manual_ids.iter().map(String::as_str))
        .collect();
    let mut stats: BTreeMap<&str, SellerStats> = BTreeMap::new();
    let mut settled: BTreeMap<&str, Vec<Settled<'_>>> = BTreeMap::new();
    for r in records {
        let mut tried: BTreeSet<&str> = BTreeSet::new();
        for a in &r.attempts {
            if manual.contains(a.upstream.as_str()) {
                continue;
            }
            let s = entry(&mut stats, &a.upstream);
            s.attempts += 1;
            if is_failure(a.outcome) {
                s.failed_attempts += 1;
            }
            if tried.insert(&a.upstream) {
                s.calls += 1;
                s.last_call_ms = s.last_call_ms.max(Some(r.started_at_ms));
            }
        }
        let Some(winner) = r.winner.as_deref().filter(|w| !manual.contains(w)) else {
            continue;
        };
        let s = entry(&mut stats, winner);
        s.won += 1;
        if tried.insert(winner) {
            // A record without the winning attempt (older records): still a call.
            s.calls += 1;
            s.last_call_ms = s.last_call_ms.max(Some(r.started_at_ms));
        }
        if let Some((cost, est)) = settled_pair(r) {
            s.settled_calls += 1;
            s.settled_usd_micros = s.settled_usd_micros.saturating_add(cost);
            s.estimated_usd_micros = s.estimated_usd_micros.saturating_add(est);
            settled
                .entry(winner)
                .or_default()
                .push((r, ratio_ppm(cost, est)));
        }
    }
    stats
        .into_values()
        .map(|mut s| {
            let calls = settled.remove(s.seller_id.as_str()).unwrap_or_default();
            let median = median_ratio(&calls);
            s.median_drift_ppm = median.map(drift_of);
            let finding = median.and_then(|m| finding(m, &calls));
            SellerAudit { stats: s, finding }
        })
        .collect()
}

fn entry<'a, 'b>(
    stats: &'b mut BTreeMap<&'a str, SellerStats>,
    id: &'a str,
) -> &'b mut SellerStats {
    stats.entry(id).or_insert_with(|| SellerStats {
        seller_id: id.to_string(),
        ..SellerStats::default()
    })
}

/// Attempts that count against a seller: not the caller going away, not
/// the caller's own bad request, not a success.
fn is_failure(outcome: Outcome) -> bool {
    !matches!(
        outcome,
        Outcome::Ok | Outcome::Cancelled | Outcome::ClientError
    )
}

/// (settled, estimated) of a call the seller settled, both above zero.
fn settled_pair(r: &CallRecord) -> Option<(u64, u64)> {
    if r.balance_source != BalanceSource::SellerAuthoritative {
        return None;
    }
    let cost = u64::try_from(r.cost_usd_micros?).ok().filter(|c| *c > 0)?;
    let est = u64::try_from(r.est_cost_usd_micros?)
        .ok()
        .filter(|e| *e > 0)?;
    Some((cost, est))
}

/// `settled / estimated` in ppm (saturating).
pub fn ratio_ppm(settled: u64, estimated: u64) -> u64 {
    if estimated == 0 {
        return u64::MAX;
    }
    let r = u128::from(settled) * u128::from(ONE) / u128::from(estimated);
    u64::try_from(r).unwrap_or(u64::MAX)
}

/// `ratio − 1`, signed ppm (saturating).
fn drift_of(ratio_ppm: u64) -> i64 {
    i64::try_from(i128::from(ratio_ppm) - i128::from(ONE)).unwrap_or(i64::MAX)
}

/// The median ratio (the mean of the two middle ones for an even count,
/// rounded down); `None` for no calls.
fn median_ratio(calls: &[Settled<'_>]) -> Option<u64> {
    let mut ratios: Vec<u64> = calls.iter().map(|(_, r)| *r).collect();
    ratios.sort_unstable();
    let n = ratios.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(ratios[n / 2]),
        _ => {
            let (a, b) = (u128::from(ratios[n / 2 - 1]), u128::from(ratios[n / 2]));
            u64::try_from((a + b) / 2).ok()
        }
    }
}

fn finding(median_ratio_ppm: u64, calls: &[Settled<'_>]) -> Option<Finding> {
    let kind = FindingKind::of_ratio(median_ratio_ppm)?;
    let mut shown: Vec<&Settled<'_>> = calls.iter().filter(|(_, r)| kind.shown_by(*r)).collect();
    shown.sort_by(|(a, _), (b, _)| {
        (b.started_at_ms, b.id.as_str()).cmp(&(a.started_at_ms, a.id.as_str()))
    });
    let evidence_calls = shown.len() as u64;
    let evidence = shown
        .into_iter()
        .take(EVIDENCE_LIMIT)
        .filter_map(|(r, ratio)| {
            let (settled, estimated) = settled_pair(r)?;
            Some(Evidence {
                call_id: r.id.clone(),
                started_at_ms: r.started_at_ms,
                model: r.model.clone(),
                settled_usd_micros: settled,
                estimated_usd_micros: estimated,
                drift_ppm: drift_of(*ratio),
            })
        })
        .collect();
    Some(Finding {
        kind,
        median_ratio_ppm,
        evidence,
        evidence_calls,
    })
}

#[cfg(test)]
mod tests;
