#![allow(clippy::unwrap_used)]

use super::*;
use crate::record::CallOutcome;
use crate::record::tests::attempt;

/// A call answered by `winner` at once, settled at `cost` against an
/// estimate of `est`.
fn call(n: i64, winner: &str, cost: Option<i64>, est: Option<i64>) -> CallRecord {
    CallRecord {
        id: format!("call-{n:03}"),
        request_id: format!("r{n}"),
        started_at_ms: 1_000 + n,
        model: "m".into(),
        winner: Some(winner.into()),
        attempts: vec![attempt(winner, Outcome::Ok)],
        cost_usd_micros: cost,
        est_cost_usd_micros: est,
        settled_credit_micros: cost,
        balance_source: BalanceSource::SellerAuthoritative,
        ..crate::record::tests::sample()
    }
}

fn audit(records: &[CallRecord]) -> Vec<SellerAudit> {
    audit_sellers(records, &BTreeSet::new())
}

fn one(records: &[CallRecord]) -> SellerAudit {
    let mut all = audit(records);
    assert_eq!(all.len(), 1, "{all:?}");
    all.remove(0)
}

/// The finding kind for a seller whose calls settle at `costs` against an
/// estimate of 1,000 each.
fn kind_for(costs: &[i64]) -> Option<FindingKind> {
    let records: Vec<CallRecord> = costs
        .iter()
        .enumerate()
        .map(|(i, c)| call(i as i64, "s", Some(*c), Some(1_000)))
        .collect();
    one(&records).finding.map(|f| f.kind)
}

#[test]
fn ratios_classify_at_the_documented_edges() {
    let check = |ratio: u64, expected: Option<FindingKind>| {
        assert_eq!(FindingKind::of_ratio(ratio), expected, "ratio {ratio} ppm");
    };
    check(1_000_000, None);
    check(1_200_000, None);
    check(1_200_001, Some(FindingKind::Overbilling));
    check(800_000, None);
    check(799_999, Some(FindingKind::Underbilling));
    check(0, Some(FindingKind::Underbilling));
    check(49_999_999, Some(FindingKind::Overbilling));
    check(50_000_000, Some(FindingKind::Hundredfold));
    check(100_000_000, Some(FindingKind::Hundredfold));
    check(200_000_000, Some(FindingKind::Hundredfold));
    check(200_000_001, Some(FindingKind::Overbilling));
    check(u64::MAX, Some(FindingKind::Overbilling));
    check(4_999, Some(FindingKind::Underbilling));
    check(5_000, Some(FindingKind::Hundredth));
    check(10_000, Some(FindingKind::Hundredth));
    check(20_000, Some(FindingKind::Hundredth));
    check(20_001, Some(FindingKind::Underbilling));
}

#[test]
fn the_median_decides_not_one_outlier() {
    assert_eq!(kind_for(&[1_000, 1_050, 950]), None);
    assert_eq!(kind_for(&[1_000, 1_000, 100_000]), None, "one ×100 call");
    assert_eq!(
        kind_for(&[100_000, 100_000, 1_000]),
        Some(FindingKind::Hundredfold)
    );
    assert_eq!(kind_for(&[10, 10, 11]), Some(FindingKind::Hundredth));
    assert_eq!(
        kind_for(&[1_250, 1_300, 900]),
        Some(FindingKind::Overbilling)
    );
    assert_eq!(
        kind_for(&[700, 790, 1_000]),
        Some(FindingKind::Underbilling)
    );
    // Even counts: the mean of the two middle ratios (1.1 and 1.3 → 1.2: not beyond).
    assert_eq!(kind_for(&[1_100, 1_300]), None);
    assert_eq!(kind_for(&[1_100, 1_302]), Some(FindingKind::Overbilling));
    // The classic slip: every call ×100.
    assert_eq!(kind_for(&[100_000; 5]), Some(FindingKind::Hundredfold));
}

#[test]
fn a_finding_lists_the_calls_that_show_it_most_recent_first() {
    let mut records: Vec<CallRecord> = (0..15)
        .map(|i| call(i, "s", Some(100_000), Some(1_000)))
        .collect();
    records.push(call(20, "s", Some(1_000), Some(1_000)));
    let a = one(&records);
    let f = a.finding.unwrap();
    assert_eq!(f.kind, FindingKind::Hundredfold);
    assert_eq!(f.median_ratio_ppm, 100_000_000);
    assert_eq!(f.evidence_calls, 15, "the fair call is not evidence");
    assert_eq!(f.evidence.len(), EVIDENCE_LIMIT);
    assert_eq!(f.evidence[0].call_id, "call-014");
    assert_eq!(f.evidence[9].call_id, "call-005");
    let e = &f.evidence[0];
    assert_eq!(
        (e.settled_usd_micros, e.estimated_usd_micros, e.drift_ppm),
        (100_000, 1_000, 99_000_000)
    );
    assert_eq!(a.stats.median_drift_ppm, Some(99_000_000));

    // Drift findings list every call beyond the limit that way, ×100 ones too.
    let records = [
        call(1, "s", Some(1_500), Some(1_000)),
        call(2, "s", Some(100_000), Some(1_000)),
        call(3, "s", Some(1_300), Some(1_000)),
        call(4, "s", Some(1_000), Some(1_000)),
        call(5, "s", Some(500), Some(1_000)),
    ];
    let f = one(&records).finding.unwrap();
    assert_eq!(f.kind, FindingKind::Overbilling);
    let ids: Vec<&str> = f.evidence.iter().map(|e| e.call_id.as_str()).collect();
    assert_eq!(ids, ["call-003", "call-002", "call-001"]);
}

#[test]
fn figures_per_seller() {
    let mut failed_over = call(3, "s-b", Some(2_000), Some(1_000));
    failed_over.attempts = vec![
        attempt("s-a", Outcome::ServerError),
        attempt("s-a", Outcome::ServerError),
        attempt("s-b", Outcome::Ok),
    ];
    let mut all_failed = call(4, "s-a", None, None);
    all_failed.winner = None;
    all_failed.ok = false;
    all_failed.outcome = CallOutcome::Failed;
    all_failed.attempts = vec![attempt("s-a", Outcome::Deadline)];
    let mut cancelled = call(5, "s-a", None, None);
    cancelled.winner = None;
    cancelled.attempts = vec![attempt("s-a", Outcome::Cancelled)];
    let mut bad_request = call(6, "s-a", None, None);
    bad_request.winner = None;
    bad_request.attempts = vec![attempt("s-a", Outcome::ClientError)];
    let mut estimated = call(7, "s-a", Some(900), Some(900));
    estimated.balance_source = BalanceSource::Estimated;
    let mut unpriced = call(8, "s-a", Some(900), None);
    unpriced.unpriced = true;
    let records = [
        call(1, "s-a", Some(1_000), Some(1_000)),
        call(2, "s-a", Some(1_100), Some(1_000)),
        failed_over,
        all_failed,
        cancelled,
        bad_request,
        estimated,
        unpriced,
    ];
    let all = audit(&records);
    let ids: Vec<&str> = all.iter().map(|a| a.stats.seller_id.as_str()).collect();
    assert_eq!(ids, ["s-a", "s-b"]);
    let a = &all[0].stats;
    assert_eq!(a.calls, 8, "every call that tried s-a once");
    assert_eq!(a.attempts, 9);
    assert_eq!(
        a.failed_attempts, 3,
        "not the cancellation, not the bad request"
    );
    assert_eq!(a.failure_share_ppm(), Some(333_333));
    assert_eq!(a.won, 4);
    assert_eq!(a.settled_calls, 2, "only settled calls with an estimate");
    assert_eq!(
        (a.settled_usd_micros, a.estimated_usd_micros),
        (2_100, 2_000)
    );
    assert_eq!(a.median_drift_ppm, Some(50_000));
    assert_eq!(a.last_call_ms, Some(1_008));
    assert!(all[0].finding.is_none());
    let b = &all[1];
    assert_eq!((b.stats.calls, b.stats.attempts, b.stats.won), (1, 1, 1));
    assert_eq!(b.stats.median_drift_ppm, Some(1_000_000));
    assert_eq!(b.finding.as_ref().unwrap().kind, FindingKind::Overbilling);
}

#[test]
fn manual_providers_are_not_sellers() {
    let mut own_key = call(1, "openai", Some(1_000), Some(10));
    own_key.balance_source = BalanceSource::SelfFundedProvider;
    let mut failed_over = call(2, "s", Some(1_000), Some(1_000));
    failed_over.attempts = vec![
        attempt("openai", Outcome::ServerError),
        attempt("configured", Outcome::ServerError),
        attempt("s", Outcome::Ok),
    ];
    let manual: BTreeSet<String> = ["configured".to_string()].into();
    let all = audit_sellers(&[own_key, failed_over], &manual);
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].stats.seller_id, "s");
    assert_eq!(all[0].stats.failed_attempts, 0);
}

#[test]
fn nothing_to_measure_is_no_finding() {
    assert!(audit(&[]).is_empty());
    let a = one(&[
        call(1, "s", None, Some(1_000)),
        call(2, "s", Some(0), Some(0)),
    ]);
    assert_eq!(a.stats.settled_calls, 0);
    assert_eq!(a.stats.median_drift_ppm, None);
    assert!(a.finding.is_none());
    assert_eq!(ratio_ppm(5, 0), u64::MAX);
    assert_eq!(ratio_ppm(u64::MAX, 1), u64::MAX);
    assert_eq!(ratio_ppm(1, 3), 333_333);
}
