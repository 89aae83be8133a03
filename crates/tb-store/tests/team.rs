//! Team mode's shared state on PostgreSQL, with several "daemons" (each
//! its own pool on the same schema) racing: one lease per key, takeover
//! only after expiry, the budget never exceeded by concurrent
//! reservations, and settlement batches never lost.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::Fixture;
use tb_domain::PaymentMethod;
use tb_store::{LockAttempt, Reservation, TeamStore, TokenRow};

async fn stores(fixture: &Fixture, n: usize) -> Vec<TeamStore> {
    let mut out = vec![fixture.ledger.team_store().unwrap()];
    for _ in 1..n {
        out.push(fixture.reopen().await.team_store().unwrap());
    }
    out[0].key_check(b"check", b"nonce").await.unwrap();
    out
}

#[tokio::test]
async fn sqlite_has_no_team_store() {
    assert!(Fixture::sqlite().await.ledger.team_store().is_none());
}

#[tokio::test]
async fn one_lease_per_key_and_takeover_only_after_expiry() {
    let fixture = Fixture::postgres().await;
    let team = stores(&fixture, 4).await;
    let mut tasks = Vec::new();
    for (i, store) in team.iter().enumerate() {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            store
                .try_lock("s-alpha:mock", &format!("d{i}"), 60_000)
                .await
                .unwrap()
        }));
    }
    let mut acquired = 0;
    for t in tasks {
        match t.await.unwrap() {
            LockAttempt::Acquired { took_over } => {
                assert_eq!(took_over, None);
                acquired += 1;
            }
            LockAttempt::Held { expires_in_ms, .. } => assert!(expires_in_ms > 50_000),
        }
    }
    assert_eq!(acquired, 1, "exactly one holder");

    // A short lease: held, then taken over once expired; its reservation
    // is counted as spent (the dead holder may have paid).
    let (a, b) = (&team[0], &team[1]);
    assert_eq!(
        a.try_lock("s-beta:mock", "a", 300).await.unwrap(),
        LockAttempt::Acquired { took_over: None }
    );
    assert_eq!(
        a.reserve("s-beta:mock", "a", 700, 10_000).await.unwrap(),
        Reservation::Reserved {
            spent: 0,
            reserved: 700
        }
    );
    assert!(matches!(
        b.try_lock("s-beta:mock", "b", 300).await.unwrap(),
        LockAttempt::Held { ref holder, .. } if holder == "a"
    ));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        match b.try_lock("s-beta:mock", "b", 60_000).await.unwrap() {
            LockAttempt::Acquired { took_over } => {
                assert_eq!(took_over.as_deref(), Some("a"));
                break;
            }
            LockAttempt::Held { expires_in_ms, .. } => {
                assert!(expires_in_ms <= 300);
                assert!(std::time::Instant::now() < deadline, "never expired");
                tokio::time::sleep(std::time::Duration::from_millis(expires_in_ms + 1)).await;
            }
        }
    }
    let budget = b.budget().await.unwrap();
    assert_eq!(
        (budget.spent_usd_micros, budget.reserved_usd_micros),
        (700, 0)
    );
    // The old holder can neither reserve nor release any more.
    assert_eq!(
        a.reserve("s-beta:mock", "a", 1, 10_000).await.unwrap(),
        Reservation::LeaseLost
    );
    assert!(!a.finish("s-beta:mock", "a", 700).await.unwrap());
    assert_eq!(b.budget().await.unwrap().spent_usd_micros, 700, "not twice");
    // The new holder's failed purchase releases its reservation.
    b.reserve("s-beta:mock", "b", 500, 10_000).await.unwrap();
    assert!(b.finish("s-beta:mock", "b", 0).await.unwrap());
    let budget = b.budget().await.unwrap();
    assert_eq!(
        (budget.spent_usd_micros, budget.reserved_usd_micros),
        (700, 0)
    );
    let locks = b.locks().await.unwrap();
    assert_eq!(locks.len(), 1, "only the 4-way race's lease is left");
    assert!(b.round_trips() > 0);
}

#[tokio::test]
async fn concurrent_reservations_never_exceed_the_budget() {
    let fixture = Fixture::postgres().await;
    let team = stores(&fixture, 3).await;
    // 12 purchases of 1 USD against a 5 USD budget, from three daemons.
    let mut tasks = Vec::new();
    for i in 0..12 {
        let store = team[i % 3].clone();
        tasks.push(tokio::spawn(async move {
            let key = format!("s-{i}:mock");
            let holder = format!("d{i}");
            assert!(matches!(
                store.try_lock(&key, &holder, 60_000).await.unwrap(),
                LockAttempt::Acquired { .. }
            ));
            let r = store
                .reserve(&key, &holder, 1_000_000, 5_000_000)
                .await
                .unwrap();
            let paid = matches!(r, Reservation::Reserved { .. });
            store
                .finish(&key, &holder, if paid { 1_000_000 } else { 0 })
                .await
                .unwrap();
            paid
        }));
    }
    let mut paid = 0;
    for t in tasks {
        paid += u64::from(t.await.unwrap());
    }
    assert_eq!(paid, 5);
    let budget = team[0].budget().await.unwrap();
    assert_eq!(budget.spent_usd_micros, 5_000_000);
    assert_eq!(budget.reserved_usd_micros, 0);
    assert_eq!(
        team[1].reserve("x", "nobody", 1, 5_000_000).await.unwrap(),
        Reservation::LeaseLost
    );
    assert!(team[0].locks().await.unwrap().is_empty());
}

fn token(fingerprint: &str, balance: u64) -> TokenRow {
    TokenRow {
        seller_id: "s-alpha".into(),
        payment_method: PaymentMethod::Mock,
        ciphertext: vec![1, 2, 3],
        nonce: vec![4; 24],
        fingerprint: fingerprint.into(),
        credit_micros: Some(balance),
        balance_micros: Some(balance),
        price_usd_micros: Some(1_000_000),
        expires_at_ms: Some(i64::MAX),
        purchased_at_ms: 1,
        updated_at_ms: 1,
    }
}

#[tokio::test]
async fn settlement_batches_from_many_daemons_are_never_lost() {
    let fixture = Fixture::postgres().await;
    let team = stores(&fixture, 3).await;
    team[0].save_token(&token("fp1", 1_000_000)).await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..30 {
        let store = team[i % 3].clone();
        tasks.push(tokio::spawn(async move {
            store
                .settle("s-alpha", PaymentMethod::Mock, "fp1", 1_000, None)
                .await
                .unwrap()
        }));
    }
    for t in tasks {
        assert!(t.await.unwrap().is_some());
    }
    let row = team[2]
        .token("s-alpha", PaymentMethod::Mock)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.balance_micros, Some(1_000_000 - 30 * 1_000));
    // The seller's remaining caps it; a stale higher one never raises it.
    let s = &team[1];
    assert_eq!(
        s.settle("s-alpha", PaymentMethod::Mock, "fp1", 0, Some(500_000))
            .await
            .unwrap(),
        Some(500_000)
    );
    assert_eq!(
        s.settle("s-alpha", PaymentMethod::Mock, "fp1", 0, Some(900_000))
            .await
            .unwrap(),
        Some(500_000)
    );
    // A replaced token is not touched by late settlements or drops.
    s.save_token(&token("fp2", 1_000_000)).await.unwrap();
    assert_eq!(
        s.settle("s-alpha", PaymentMethod::Mock, "fp1", 10, None)
            .await
            .unwrap(),
        None
    );
    assert!(
        !s.drop_token("s-alpha", PaymentMethod::Mock, "fp1")
            .await
            .unwrap()
    );
    assert_eq!(s.tokens().await.unwrap().len(), 1);
    assert!(
        s.drop_token("s-alpha", PaymentMethod::Mock, "fp2")
            .await
            .unwrap()
    );
    assert!(
        s.token("s-alpha", PaymentMethod::Mock)
            .await
            .unwrap()
            .is_none()
    );
    // The first key check stays.
    assert_eq!(
        s.key_check(b"other", b"n2").await.unwrap(),
        (b"check".to_vec(), b"nonce".to_vec())
    );
}

#[tokio::test]
async fn finishing_with_the_token_stores_it_once_and_keeps_a_takers_token() {
    let fixture = Fixture::postgres().await;
    let team = stores(&fixture, 2).await;
    let (a, b) = (&team[0], &team[1]);
    let key = "s-alpha:mock";
    let balance = |s: &TeamStore| {
        let s = s.clone();
        async move {
            s.token("s-alpha", PaymentMethod::Mock)
                .await
                .unwrap()
                .map(|r| (r.fingerprint, r.balance_micros.unwrap()))
        }
    };
    // Held: the token appears with the lease's end, the price spent.
    a.try_lock(key, "a", 60_000).await.unwrap();
    assert!(matches!(
        a.reserve(key, "a", 1_000_000, 5_000_000).await.unwrap(),
        Reservation::Reserved { .. }
    ));
    assert!(
        a.finish_storing(key, "a", 1_000_000, &token("fp1", 900))
            .await
            .unwrap()
    );
    assert_eq!(balance(b).await, Some(("fp1".into(), 900)));
    assert!(a.locks().await.unwrap().is_empty());
    let budget = b.budget().await.unwrap();
    assert_eq!(
        (budget.spent_usd_micros, budget.reserved_usd_micros),
        (1_000_000, 0)
    );
    // Repeated (its answer was lost): nothing changes, settlements made
    // since are not undone.
    b.settle("s-alpha", PaymentMethod::Mock, "fp1", 100, None)
        .await
        .unwrap();
    assert!(
        !a.finish_storing(key, "a", 1_000_000, &token("fp1", 900))
            .await
            .unwrap()
    );
    assert_eq!(balance(b).await, Some(("fp1".into(), 800)));
    assert_eq!(b.budget().await.unwrap().spent_usd_micros, 1_000_000);

    // Held again, with the token just saved by the purchase itself: kept
    // as it is (same fingerprint).
    a.try_lock(key, "a2", 60_000).await.unwrap();
    a.save_token(&token("fp2", 500)).await.unwrap();
    b.settle("s-alpha", PaymentMethod::Mock, "fp2", 50, None)
        .await
        .unwrap();
    assert!(
        a.finish_storing(key, "a2", 0, &token("fp2", 500))
            .await
            .unwrap()
    );
    assert_eq!(balance(b).await, Some(("fp2".into(), 450)));

    // Taken over meanwhile: the taker's token stays; into an empty row
    // the late one goes.
    a.try_lock(key, "a3", 1).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    assert_eq!(
        b.try_lock(key, "b", 60_000).await.unwrap(),
        LockAttempt::Acquired {
            took_over: Some("a3".into())
        }
    );
    b.save_token(&token("fp-taker", 1_000)).await.unwrap();
    assert!(
        !a.finish_storing(key, "a3", 0, &token("fp-late", 700))
            .await
            .unwrap()
    );
    assert_eq!(balance(b).await, Some(("fp-taker".into(), 1_000)));
    assert_eq!(b.locks().await.unwrap().len(), 1, "the taker's lease stays");
    b.delete_token("s-alpha", PaymentMethod::Mock)
        .await
        .unwrap();
    assert!(
        !a.finish_storing(key, "a3", 0, &token("fp-late", 700))
            .await
            .unwrap()
    );
    assert_eq!(balance(b).await, Some(("fp-late".into(), 700)));
}
