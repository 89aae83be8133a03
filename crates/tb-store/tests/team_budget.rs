//! The team's figures for operators on PostgreSQL: the budget, live
//! leases and members with limits in one read, and a budget reset that
//! zeroes the spent sum while purchases in flight keep their reservations.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::Fixture;
use tb_store::{BudgetReset, KeySelector, MemberKeyRow, Reservation, TeamSummary};

fn key(id: &str, member: &str, budget: Option<i64>, rpm: Option<i64>) -> MemberKeyRow {
    MemberKeyRow {
        id: id.into(),
        member: member.into(),
        key_hash: format!("hash-{id}"),
        models: None,
        created_at_ms: 1,
        revoked_at_ms: None,
        budget_usd_micros: budget,
        rpm,
        tpm: None,
    }
}

#[tokio::test]
async fn the_summary_counts_live_leases_and_limited_members_and_a_reset_keeps_reservations() {
    let fixture = Fixture::postgres().await;
    let store = fixture.ledger.team_store().unwrap();
    // Before any daemon joined: nothing to show, nothing to reset.
    assert_eq!(store.summary().await.unwrap(), TeamSummary::default());
    assert_eq!(store.reset_spent().await.unwrap(), None);
    store.key_check(b"check", b"nonce").await.unwrap();

    // One purchase completed (3 USD, its lease gone), one in flight (2 USD
    // reserved, its lease live), one lease expired (not live).
    store.try_lock("s-a:mock", "d1", 60_000).await.unwrap();
    let r = store.reserve("s-a:mock", "d1", 3_000_000, 10_000_000).await;
    assert!(matches!(r.unwrap(), Reservation::Reserved { .. }));
    assert!(store.finish("s-a:mock", "d1", 3_000_000).await.unwrap());
    store.try_lock("s-b:mock", "d2", 60_000).await.unwrap();
    let r = store.reserve("s-b:mock", "d2", 2_000_000, 10_000_000).await;
    assert!(matches!(r.unwrap(), Reservation::Reserved { .. }));
    store.try_lock("s-c:mock", "d3", 0).await.unwrap();

    // Members: ana (budget), bo (rpm, two keys), cy (no limits), dee
    // (limited, revoked).
    for k in [
        key("k1", "ana", Some(5_000_000), None),
        key("k2", "bo", None, Some(60)),
        key("k3", "bo", None, Some(30)),
        key("k4", "cy", None, None),
        key("k5", "dee", Some(1), None),
    ] {
        fixture.ledger.create_member_key(&k).await.unwrap();
    }
    fixture
        .ledger
        .revoke_member_keys(KeySelector::Member("dee"), 2)
        .await
        .unwrap();

    let before = store.round_trips();
    assert_eq!(
        store.summary().await.unwrap(),
        TeamSummary {
            joined: true,
            spent_usd_micros: 3_000_000,
            reserved_usd_micros: 2_000_000,
            live_leases: 1,
            members_with_limits: 2,
        }
    );
    assert_eq!(store.round_trips() - before, 1, "one statement");

    // A new period: spent goes to 0, the purchase in flight keeps its
    // reservation and, completing, counts in the new period.
    assert_eq!(
        store.reset_spent().await.unwrap(),
        Some(BudgetReset {
            spent_before_usd_micros: 3_000_000,
            reserved_usd_micros: 2_000_000,
        })
    );
    let after = store.summary().await.unwrap();
    assert_eq!(
        (after.spent_usd_micros, after.reserved_usd_micros),
        (0, 2_000_000)
    );
    assert!(store.finish("s-b:mock", "d2", 2_000_000).await.unwrap());
    let budget = store.budget().await.unwrap();
    assert_eq!(
        (budget.spent_usd_micros, budget.reserved_usd_micros),
        (2_000_000, 0)
    );
}
