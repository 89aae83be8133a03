//! Member keys and the shared per-member counters on both backends:
//! keys round-trip with their limits, revocation by member or id, and the
//! admission reserves atomically (concurrent admissions never share the
//! last of a limit), the writer settles reservations, lapsed ones expire.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[macro_use]
mod common;

use common::{Fixture, priced};
use tb_billing::record::CallRecord;
use tb_store::{KeySelector, MemberAdmission, MemberKeyRow};

/// 2024-03-02T00:00:00Z, a minute boundary.
const T: i64 = 1_709_337_600_000;

fn key(id: &str, member: &str) -> MemberKeyRow {
    MemberKeyRow {
        id: id.into(),
        member: member.into(),
        key_hash: format!("hash-{id}"),
        models: Some(vec!["gpt-4o-mini".into(), "claude-haiku-4-5".into()]),
        created_at_ms: T,
        revoked_at_ms: None,
        budget_usd_micros: Some(25_000_000),
        rpm: Some(60),
        tpm: None,
    }
}

async fn keys_round_trip_and_revoke(fx: Fixture) {
    let (a1, a2, b) = (key("a1", "ana"), key("a2", "ana"), key("b", "bo"));
    for k in [&a1, &a2, &b] {
        fx.ledger.create_member_key(k).await.unwrap();
    }
    assert_eq!(
        fx.ledger.member_keys().await.unwrap(),
        [a1.clone(), a2, b.clone()]
    );
    let n = fx
        .ledger
        .revoke_member_keys(KeySelector::Member("ana"), T + 5)
        .await
        .unwrap();
    assert_eq!(n, 2);
    assert_eq!(fx.ledger.active_member_keys().await.unwrap(), [b]);
    let again = fx
        .ledger
        .revoke_member_keys(KeySelector::Member("ana"), T + 6)
        .await;
    assert_eq!(again.unwrap(), 0, "a revoked key is not revoked twice");
    assert_eq!(
        fx.ledger
            .revoke_member_keys(KeySelector::Id("b"), T + 7)
            .await
            .unwrap(),
        1
    );
    let all = fx.ledger.member_keys().await.unwrap();
    assert_eq!(all[0].revoked_at_ms, Some(T + 5));
    assert_eq!(all[2].revoked_at_ms, Some(T + 7));
    assert!(
        fx.ledger.create_member_key(&a1).await.is_err(),
        "ids are unique"
    );
}

/// An admission of `member` in the window starting at `T`.
fn ask<'a>(member: &'a str, id: &'a str, cost: i64, tokens: i64) -> MemberAdmission<'a> {
    MemberAdmission {
        member,
        reservation_id: id,
        window_start_ms: T,
        budget_usd_micros: Some(5_000),
        rpm: Some(10),
        tpm: Some(1_000),
        cost_usd_micros: cost,
        tokens,
        expires_at_ms: T + 600_000,
        must_fit_usd_micros: 0,
    }
}

fn record(id: &str, member: &str, cost: i64) -> CallRecord {
    CallRecord {
        id: id.into(),
        member: Some(member.into()),
        // 100 input + 20 output tokens.
        ..priced(T + 10, "m", Some("alpha"), Some(cost), Some(0))
    }
}

async fn admission_reserves_and_the_record_settles(fx: Fixture) {
    let l = &fx.ledger;
    // Spend recorded before any admission counts (the row is created).
    l.insert_batch(&[record("r0", "ana", 1_500)]).await.unwrap();
    let c = l.admit_member(&ask("ana", "r1", 2_000, 300)).await.unwrap();
    assert!(c.admitted);
    assert_eq!(
        (
            c.requests,
            c.tokens,
            c.spent_usd_micros,
            c.reserved_usd_micros
        ),
        (1, 120 + 300, 1_500, 2_000)
    );
    let c = l.admit_member(&ask("ana", "r2", 2_000, 300)).await.unwrap();
    assert!(c.admitted, "1,500 + 2,000 reserved is under 5,000");
    // Spent + reserved = 5,500 ≥ 5,000: refused, nothing changes.
    let c = l.admit_member(&ask("ana", "r3", 2_000, 300)).await.unwrap();
    assert!(!c.admitted);
    assert_eq!((c.requests, c.reserved_usd_micros), (2, 4_000));
    // r1's record replaces its reservation by its actual cost and tokens;
    // a retried batch changes nothing.
    for _ in 0..2 {
        l.insert_batch(&[record("r1", "ana", 700)]).await.unwrap();
        let u = l.member_usage("ana").await.unwrap().unwrap();
        assert_eq!(
            (u.spent_usd_micros, u.reserved_usd_micros, u.tokens),
            (2_200, 2_000, 120 + 120 + 300)
        );
    }
    // Tokens per minute: 540 + 500 reserved reaches 1,000; the next waits.
    assert!(
        l.admit_member(&ask("ana", "r4", 0, 500))
            .await
            .unwrap()
            .admitted
    );
    let c = l.admit_member(&ask("ana", "r5", 0, 1)).await.unwrap();
    assert!(!c.admitted && c.tokens >= 1_000, "{c:?}");
    // A new window starts with no requests and no tokens.
    let next = MemberAdmission {
        window_start_ms: T + 60_000,
        ..ask("ana", "r6", 0, 1)
    };
    let c = l.admit_member(&next).await.unwrap();
    assert!(c.admitted);
    assert_eq!((c.requests, c.tokens), (1, 1));

    // Reservations of a daemon that died lapse and are given back.
    let before = l.member_usage("ana").await.unwrap().unwrap();
    assert_eq!(l.expire_member_reservations(T).await.unwrap(), 0);
    let lapsed = l.expire_member_reservations(T + 600_001).await.unwrap();
    assert_eq!(lapsed, 3, "r2, r4 and r6 were still reserved");
    let after = l.member_usage("ana").await.unwrap().unwrap();
    assert_eq!(before.reserved_usd_micros, 2_000);
    assert_eq!(after.reserved_usd_micros, 0);
    // A record arriving after its reservation lapsed still spends, once.
    l.insert_batch(&[record("r2", "ana", 900)]).await.unwrap();
    let u = l.member_usage("ana").await.unwrap().unwrap();
    assert_eq!((u.spent_usd_micros, u.reserved_usd_micros), (3_100, 0));
}

async fn concurrent_admissions_never_share_the_last_of_a_limit(fx: Fixture) {
    // Budget 5,000 at 1,000 a call: exactly five of twenty fit.
    let admitted = concurrent(&fx, "bo", 1_000, 20, false).await;
    assert_eq!(admitted, 5);
    // rpm 10: the first ten of twenty, whatever they reserve.
    let admitted = concurrent(&fx, "cy", 0, 20, false).await;
    assert_eq!(admitted, 10);
}

/// `n` concurrent admissions of `member` (video jobs when `jobs`); how
/// many were admitted.
async fn concurrent(fx: &Fixture, member: &'static str, cost: i64, n: usize, jobs: bool) -> usize {
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let ledger = fx.ledger.clone();
            tokio::spawn(async move {
                let id = format!("{member}-{i}");
                let admission = if jobs {
                    job(member, &id, cost)
                } else {
                    ask(member, &id, cost, 0)
                };
                ledger.admit_member(&admission).await.unwrap().admitted
            })
        })
        .collect();
    let mut admitted = 0;
    for t in tasks {
        admitted += usize::from(t.await.unwrap());
    }
    admitted
}

/// A video job's worst cost must fit whole in what is left of the budget
/// (a call's need only find something left).
fn job<'a>(member: &'a str, id: &'a str, cost: i64) -> MemberAdmission<'a> {
    MemberAdmission {
        must_fit_usd_micros: cost,
        expires_at_ms: T + 3_600_000,
        ..ask(member, id, cost, 0)
    }
}

async fn a_job_is_admitted_only_when_its_whole_cost_fits(fx: Fixture) {
    let l = &fx.ledger;
    // Budget 5,000: a 3,000 job fits, a second does not (6,000 > 5,000)
    // though a call would still be admitted on the 2,000 left.
    assert!(
        l.admit_member(&job("di", "j1", 3_000))
            .await
            .unwrap()
            .admitted
    );
    let c = l.admit_member(&job("di", "j2", 3_000)).await.unwrap();
    assert!(!c.admitted);
    assert_eq!((c.requests, c.reserved_usd_micros), (1, 3_000));
    // Exactly what is left fits.
    assert!(
        l.admit_member(&job("di", "j3", 2_000))
            .await
            .unwrap()
            .admitted
    );
    // The job reservation outlives a call's (15 min) and lapses at its own.
    assert_eq!(l.expire_member_reservations(T + 900_001).await.unwrap(), 0);
    // j3's record (a job that failed with no cost) gives back its 2,000.
    l.insert_batch(&[record("j3", "di", 0)]).await.unwrap();
    let u = l.member_usage("di").await.unwrap().unwrap();
    assert_eq!((u.spent_usd_micros, u.reserved_usd_micros), (0, 3_000));
    assert_eq!(
        l.expire_member_reservations(T + 3_600_001).await.unwrap(),
        1
    );
    let u = l.member_usage("di").await.unwrap().unwrap();
    assert_eq!(u.reserved_usd_micros, 0);
    // Concurrent jobs of 2,000 on a budget of 5,000: exactly two fit.
    let admitted = concurrent(&fx, "ed", 2_000, 10, true).await;
    assert_eq!(admitted, 2);
}

both_backends!(
    keys_round_trip_and_revoke,
    admission_reserves_and_the_record_settles,
    concurrent_admissions_never_share_the_last_of_a_limit,
    a_job_is_admitted_only_when_its_whole_cost_fits
);
