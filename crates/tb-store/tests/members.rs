//! Member keys and the shared per-member counters on both backends:
//! keys round-trip with their limits, revocation by member or id, and the
//! request window counts every concurrent request exactly once.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[macro_use]
mod common;

use std::collections::BTreeSet;

use common::{Fixture, priced};
use tb_billing::record::CallRecord;
use tb_store::{KeySelector, MemberKeyRow};

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

async fn concurrent_requests_are_each_counted_once(fx: Fixture) {
    let spent = CallRecord {
        member: Some("ana".into()),
        ..priced(T + 10, "m", Some("alpha"), Some(1_500), Some(10))
    };
    let earlier = CallRecord {
        member: Some("ana".into()),
        ..priced(T - 10, "m", Some("alpha"), Some(500), Some(10))
    };
    fx.ledger.insert_batch(&[spent, earlier]).await.unwrap();
    let counts = futures_counts(&fx, 20).await;
    assert_eq!(
        counts,
        (1..=20).collect::<BTreeSet<u64>>(),
        "each request once"
    );
    let c = fx.ledger.count_member_request("ana", T).await.unwrap();
    assert_eq!(c.requests, 21);
    assert_eq!(c.spent_usd_micros, 2_000, "spend is all-time");
    assert_eq!(c.tokens, 100 + 20, "tokens are the window's only");
    let next = fx
        .ledger
        .count_member_request("ana", T + 60_000)
        .await
        .unwrap();
    assert_eq!(next.requests, 1, "a new window starts from one");
    assert_eq!(
        fx.ledger
            .delete_member_windows_before(T + 60_000)
            .await
            .unwrap(),
        1
    );
}

/// `n` concurrent counts of one member in one window; their answers.
async fn futures_counts(fx: &Fixture, n: usize) -> BTreeSet<u64> {
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            let ledger = fx.ledger.clone();
            tokio::spawn(async move { ledger.count_member_request("ana", T).await.unwrap() })
        })
        .collect();
    let mut out = BTreeSet::new();
    for t in tasks {
        out.insert(t.await.unwrap().requests);
    }
    out
}

both_backends!(
    keys_round_trip_and_revoke,
    concurrent_requests_are_each_counted_once
);
