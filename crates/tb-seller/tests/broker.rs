//! The credit broker against a scripted mock seller: cache reuse, rebuy
//! rules, budget, single flight, dropped and dry tokens, settlements, the
//! tracker, persistence and hostile sellers.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{
    Fixture, HOUR, NOW, TestClock, broker_with, complete_reply, policy, quote_reply,
    script_purchase,
};
use serde_json::json;
use tb_domain::PaymentMethod;
use tb_seller::{
    AcquireError, Lease, MemoryTokenStore, PurchasePolicy, SellerRef, TokenCipher, TokenStore,
};
use tb_test_support::{MockUpstream, Reply};

const MOCK: PaymentMethod = PaymentMethod::Mock;
const MODEL: &str = "deepseek-chat";

#[tokio::test]
async fn buys_once_then_reuses_the_cached_token() {
    let fx = Fixture::new().await;
    script_purchase(&fx.mock, "tok-1");
    let first = fx
        .broker
        .acquire(&fx.seller, MODEL, MOCK, false)
        .await
        .unwrap();
    assert!(first.bought);
    assert_eq!(first.token.expose(), "tok-1");
    assert_eq!(first.fingerprint, first.token.fingerprint());
    assert_eq!(
        (first.seller_id.as_str(), first.payment_method),
        ("s-alpha", MOCK)
    );
    let quote = &fx.mock.requests()[0];
    assert_eq!(
        quote.json(),
        json!({"modelId": MODEL, "paymentMethod": "mock", "creditMicros": 1_000_000})
    );
    assert_eq!(fx.mock.requests()[1].json()["quoteId"], "q-800000");

    for _ in 0..5 {
        let again = fx
            .broker
            .acquire(&fx.seller, MODEL, MOCK, false)
            .await
            .unwrap();
        assert!(!again.bought);
        assert_eq!(again.token.expose(), "tok-1");
    }
    // Another model on the same seller and payment method: same token.
    let other = fx
        .broker
        .acquire(&fx.seller, "claude-sonnet-4-5", MOCK, false)
        .await
        .unwrap();
    assert!(!other.bought);
    assert_eq!((fx.quotes(), fx.completes()), (1, 1));
    // Bought tokens are persisted before acquire returns.
    assert_eq!(fx.store.snapshot().len(), 1);
}

#[tokio::test]
async fn expiry_inside_the_margin_buys_again() {
    let fx = Fixture::new().await;
    script_purchase(&fx.mock, "tok-1"); // expires NOW + 1 h
    fx.broker
        .acquire(&fx.seller, MODEL, MOCK, false)
        .await
        .unwrap();
    let margin = 60_000;
    // One ms before the margin reaches the expiry: still usable.
    fx.clock.set(NOW + HOUR - margin - 1);
    let l = fx
        .broker
        .acquire(&fx.seller, MODEL, MOCK, false)
        .await
        .unwrap();
    assert!(!l.bought);
    // now + margin == expires_at: not usable any more.
    fx.clock.set(NOW + HOUR - margin);
    fx.mock.push_reply(quote_reply(800_000));
    fx.mock
        .push_reply(complete_reply("tok-2", 1_000_000, NOW + 2 * HOUR));
    let l = fx
        .broker
        .acquire(&fx.seller, MODEL, MOCK, false)
        .await
        .unwrap();
    assert!(l.bought);
    assert_eq!(l.token.expose(), "tok-2");
    assert_eq!(fx.completes(), 2);
}

#[tokio::test]
async fn balance_at_the_minimum_buys_again() {
    let fx = Fixture::new().await;
    script_purchase(&fx.mock, "tok-1");
    let lease = fx
        .broker
        .acquire(&fx.seller, MODEL, MOCK, false)
        .await
        .unwrap();
    fx.broker.settle_lease(&lease, None, Some(10_001));
    assert!(
        !fx.broker
            .acquire(&fx.seller, MODEL, MOCK, false)
            .await
            .unwrap()
            .bought
    );
    fx.broker.settle_lease(&lease, None, Some(10_000));
    script_purchase(&fx.mock, "tok-2");
    let l = fx
        .broker
        .acquire(&fx.seller, MODEL, MOCK, false)
        .await
        .unwrap();
    assert!(l.bought);
    assert_eq!(l.token.expose(), "tok-2");
    assert_eq!((fx.quotes(), fx.completes()), (2, 2));
}

#[tokio::test]
async fn force_new_buys_even_with_a_usable_token() {
    let fx = Fixture::new().await;
    script_purchase(&fx.mock, "tok-1");
    fx.broker
        .acquire(&fx.seller, MODEL, MOCK, false)
        .await
        .unwrap();
    script_purchase(&fx.mock, "tok-2");
    let l = fx
        .broker
        .acquire(&fx.seller, MODEL, MOCK, true)
        .await
        .unwrap();
    assert!(l.bought);
    assert_eq!(l.token.expose(), "tok-2");
    assert_eq!(fx.completes(), 2);
}

#[tokio::test]
async fn a_quote_over_the_budget_is_not_completed() {
    let fx = Fixture::with_policy(PurchasePolicy {
        session_budget_usd_micros: 1_000_000,
        ..policy()
    })
    .await;
    script_purchase(&fx.mock, "tok-1"); // 0.8 USD
    let first = fx
        .broker
        .acquire(&fx.seller, MODEL, MOCK, false)
        .await
        .unwrap();
    assert_eq!(fx.broker.budget_left(), 200_000);

    // 0.8 + 0.200001 > 1.0: refused after the quote, before completing.
    fx.broker.mark_lease_dry(&first);
    fx.mock.push_reply(quote_reply(200_001));
    let err = fx
        .broker
        .acquire(&fx.seller, MODEL, MOCK, false)
        .await
        .unwrap_err();
    assert_eq!(
        err,
        AcquireError::BudgetSpent {
            spent: 800_000,
            budget: 1_000_000
        }
    );
    assert!(err.to_string().contains("budget"), "{err}");
    assert_eq!((fx.quotes(), fx.completes()), (2, 1));

    // Exactly the budget is allowed.
    fx.mock.push_reply(quote_reply(200_000));
    fx.mock
        .push_reply(complete_reply("tok-2", 1_000_000, NOW + HOUR));
    let second = fx
        .broker
        .acquire(&fx.seller, MODEL, MOCK, false)
        .await
        .unwrap();
    assert!(second.bought);
    assert_eq!(fx.broker.budget_left(), 0);

    // Spent: the next purchase is refused without even asking for a quote.
    fx.broker.mark_lease_dry(&second);
    let err = fx
        .broker
        .acquire(&fx.seller, MODEL, MOCK, false)
        .await
        .unwrap_err();
    assert!(matches!(
        err,
        AcquireError::BudgetSpent {
            spent: 1_000_000,
            budget: 1_000_000
        }
    ));
    assert_eq!((fx.quotes(), fx.completes()), (3, 2));
    let summary = fx.broker.credit_summary();
    assert_eq!(summary.budget_spent_usd_micros, 1_000_000);
    assert_eq!(summary.budget_left_usd_micros, 0);
}

#[tokio::test]
async fn fifty_concurrent_acquires_make_one_purchase() {
    let fx = Fixture::new().await;
    // Slow completion, so every caller arrives while it is in flight.
    fx.mock.push_reply(quote_reply(800_000));
    fx.mock.push_reply(
        complete_reply("tok-shared", 1_000_000, NOW + HOUR)
            .with_head_delay(Duration::from_millis(200)),
    );
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..50 {
        let broker = fx.broker.clone();
        let seller = fx.seller.clone();
        tasks.spawn(async move { broker.acquire(&seller, MODEL, MOCK, false).await });
    }
    let mut bought = 0;
    while let Some(result) = tasks.join_next().await {
        let lease = result.unwrap().unwrap();
        assert_eq!(lease.token.expose(), "tok-shared");
        bought += usize::from(lease.bought);
    }
    assert_eq!(bought, 1);
    assert_eq!((fx.quotes(), fx.completes()), (1, 1));
    assert_eq!(fx.mock.request_count(), 2);
    assert_eq!(fx.broker.credit_summary().purchases, 1);
}

#[tokio::test]
async fn concurrent_force_new_callers_share_the_new_purchase() {
    let fx = Fixture::new().await;
    script_purchase(&fx.mock, "tok-1");
    fx.broker
        .acquire(&fx.seller, MODEL, MOCK, false)
        .await
        .unwrap();
    fx.mock.push_reply(quote_reply(800_000));
    fx.mock.push_reply(
        complete_reply("tok-2", 1_000_000, NOW + HOUR).with_head_delay(Duration::from_millis(150)),
    );
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..10 {
        let broker = fx.broker.clone();
        let seller = fx.seller.clone();
        tasks.spawn(async move { broker.acquire(&seller, MODEL, MOCK, true).await });
    }
    while let Some(result) = tasks.join_next().await {
        assert_eq!(result.unwrap().unwrap().token.expose(), "tok-2");
    }
    assert_eq!(fx.completes(), 2);
}

#[tokio::test]
async fn a_refused_token_is_dropped_and_the_next_acquire_buys() {
    let fx = Fixture::new().await;
    script_purchase(&fx.mock, "tok-1");
    let old = fx
        .broker
        .acquire(&fx.seller, MODEL, MOCK, false)
        .await
        .unwrap();
    // The seller answered 401: the proxy drops the token.
    fx.broker.drop_lease(&old);
    assert!(fx.broker.cached_token("s-alpha", MOCK).is_none());
    fx.broker.flush().await;
    assert!(fx.store.snapshot().is_empty(), "dropped from the store too");
    script_purchase(&fx.mock, "tok-2");
    let new = fx
        .broker
        .acquire(&fx.seller, MODEL, MOCK, false)
        .await
        .unwrap();
    assert!(new.bought);
    assert_eq!(new.token.expose(), "tok-2");
    // A late 401 for the old lease does not drop the new token.
    fx.broker.drop_lease(&old);
    assert!(
        !fx.broker
            .acquire(&fx.seller, MODEL, MOCK, false)
            .await
            .unwrap()
            .bought
    );
    fx.broker.drop_lease(&new);
    assert!(fx.broker.cached_token("s-alpha", MOCK).is_none());
    assert_eq!(fx.completes(), 2);
}

#[tokio::test]
async fn a_dry_token_is_bought_again() {
    let fx = Fixture::new().await;
    script_purchase(&fx.mock, "tok-1");
    let old = fx
        .broker
        .acquire(&fx.seller, MODEL, MOCK, false)
        .await
        .unwrap();
    assert!(tb_seller::is_insufficient_funds(402, b""));
    fx.broker.mark_lease_dry(&old);
    assert_eq!(
        fx.broker
            .cached_token("s-alpha", MOCK)
            .unwrap()
            .balance_micros,
        0
    );
    script_purchase(&fx.mock, "tok-2");
    let new = fx
        .broker
        .acquire(&fx.seller, MODEL, MOCK, false)
        .await
        .unwrap();
    assert!(new.bought);
    // A second 402 on the old token must not waste the new one.
    fx.broker.mark_lease_dry(&old);
    let again = fx
        .broker
        .acquire(&fx.seller, MODEL, MOCK, false)
        .await
        .unwrap();
    assert!(!again.bought);
    assert_eq!(again.token.expose(), "tok-2");
    // A 402 on the current token does empty it.
    fx.broker.mark_lease_dry(&again);
    script_purchase(&fx.mock, "tok-3");
    assert!(
        fx.broker
            .acquire(&fx.seller, MODEL, MOCK, false)
            .await
            .unwrap()
            .bought
    );
    assert_eq!(fx.completes(), 3);
}

fn clawtip_quote(quote_id: &str, expires_at_ms: i64) -> Reply {
    Reply::json(
        200,
        json!({
            "quoteId": quote_id, "creditMicros": 1_000_000, "priceUsdMicros": 800_000,
            "expiresAt": expires_at_ms,
            "payment": {"payUrl": format!("https://pay.example/{quote_id}"),
                        "qrPayload": format!("clawtip://{quote_id}")}
        })
        .to_string(),
    )
}

#[tokio::test]
async fn clawtip_waits_for_the_wallet_then_caches_the_token() {
    const CLAWTIP: PaymentMethod = PaymentMethod::Clawtip;
    let fx = Fixture::new().await;
    fx.mock.push_reply(clawtip_quote("q-claw", NOW + HOUR));
    fx.mock
        .push_reply(Reply::json(202, json!({"status": "pending"}).to_string()));
    fx.mock
        .push_reply(complete_reply("tok-claw", 1_000_000, NOW + 2 * HOUR));
    let err = fx
        .broker
        .acquire(&fx.seller, MODEL, CLAWTIP, false)
        .await
        .unwrap_err();
    let AcquireError::PaymentPending(pending) = &err else {
        panic!("{err}");
    };
    assert_eq!(pending.request.pay_url, "https://pay.example/q-claw");
    assert_eq!(pending.request.qr_payload, "clawtip://q-claw");
    assert_eq!(
        (pending.price_usd_micros, pending.credit_micros),
        (800_000, 1_000_000)
    );
    let text = err.to_string();
    assert!(
        text.contains("s-alpha")
            && text.contains("https://pay.example/q-claw")
            && text.contains("$0.800000"),
        "{text}"
    );
    // The price is reserved while the user pays.
    assert_eq!(fx.broker.budget_left(), 5_000_000 - 800_000);
    // A second request while pending: the same payment, no second quote.
    let again = fx
        .broker
        .acquire(&fx.seller, MODEL, CLAWTIP, false)
        .await
        .unwrap_err();
    assert_eq!(again, err);
    assert_eq!(fx.broker.pending_payments().len(), 1);
    assert_eq!(fx.quotes(), 1);
    // The poller: pending once, then paid.
    assert_eq!(fx.broker.wallet_purchases_ended(1).await, 1);
    assert_eq!(fx.completes(), 2);
    assert!(fx.broker.pending_payments().is_empty());
    let lease = fx
        .broker
        .acquire(&fx.seller, MODEL, CLAWTIP, false)
        .await
        .unwrap();
    assert_eq!(lease.token.expose(), "tok-claw");
    assert!(!lease.bought, "bought by the poller, not this call");
    let summary = fx.broker.credit_summary();
    assert_eq!(
        (summary.purchases, summary.budget_spent_usd_micros),
        (1, 800_000)
    );
    assert_eq!(fx.store.snapshot().len(), 1);
}

#[tokio::test]
async fn clawtip_expired_or_cancelled_quotes_end_and_the_next_request_quotes_again() {
    const CLAWTIP: PaymentMethod = PaymentMethod::Clawtip;
    let fx = Fixture::new().await;
    fx.mock.push_reply(clawtip_quote("q-1", NOW + HOUR));
    fx.mock
        .push_reply(Reply::json(410, json!({"status": "expired"}).to_string()));
    let first = fx.broker.acquire(&fx.seller, MODEL, CLAWTIP, false).await;
    assert!(matches!(first, Err(AcquireError::PaymentPending(_))));
    fx.broker.wallet_purchases_ended(1).await;
    assert!(fx.broker.pending_payments().is_empty());
    assert_eq!(
        fx.broker.budget_left(),
        5_000_000,
        "the reservation is released"
    );
    assert_eq!(fx.broker.credit_summary().purchase_failures, 0);

    fx.mock.push_reply(clawtip_quote("q-2", NOW + HOUR));
    fx.mock
        .push_reply(Reply::json(409, json!({"status": "cancelled"}).to_string()));
    let second = fx
        .broker
        .acquire(&fx.seller, MODEL, CLAWTIP, false)
        .await
        .unwrap_err();
    assert!(second.to_string().contains("q-2"), "{second}");
    fx.broker.wallet_purchases_ended(2).await;
    assert_eq!(fx.quotes(), 2);
    assert!(fx.broker.cached_token("s-alpha", CLAWTIP).is_none());

    // A clawtip quote without a way to pay fails; nothing stays pending.
    fx.mock.push_reply(quote_reply(800_000));
    let third = fx
        .broker
        .acquire(&fx.seller, MODEL, CLAWTIP, false)
        .await
        .unwrap_err();
    assert!(
        matches!(&third, AcquireError::PurchaseFailed(m) if m.contains("payUrl")),
        "{third}"
    );
    assert!(fx.broker.pending_payments().is_empty());
    assert_eq!(fx.broker.budget_left(), 5_000_000);
}

#[tokio::test]
async fn provider_key_cannot_buy() {
    let fx = Fixture::new().await;
    let err = fx
        .broker
        .acquire(&fx.seller, MODEL, PaymentMethod::ProviderKey, false)
        .await
        .unwrap_err();
    assert!(
        matches!(err, AcquireError::PurchaseFailed(ref m) if m.contains("provider_key")),
        "{err}"
    );
    assert_eq!(fx.mock.request_count(), 0);
}

#[tokio::test]
async fn settlements_update_the_balance_and_reach_the_store() {
    let fx = Fixture::new().await;
    script_purchase(&fx.mock, "tok-1"); // balance 1,000,000
    let lease = fx
        .broker
        .acquire(&fx.seller, MODEL, MOCK, false)
        .await
        .unwrap();
    let balance = || {
        fx.broker
            .cached_token("s-alpha", MOCK)
            .unwrap()
            .balance_micros
    };

    // Settled only: subtract.
    fx.broker.settle_lease(&lease, Some(1_234), None);
    assert_eq!(balance(), 998_766);
    // Remaining is authoritative, even when it disagrees with settled.
    fx.broker.settle_lease(&lease, Some(1), Some(900_000));
    assert_eq!(balance(), 900_000);
    // Remaining only: the difference counts as spent.
    fx.broker.settle_lease(&lease, None, Some(850_000));
    assert_eq!(balance(), 850_000);
    // Nothing known: unchanged.
    fx.broker.settle_lease(&lease, None, None);
    assert_eq!(balance(), 850_000);
    // Settled more than the balance: floors at zero.
    fx.broker.settle_lease(&lease, Some(5_000_000), None);
    assert_eq!(balance(), 0);
    // A seller with no cached token: no panic, counted as spent there.
    let nobody = Lease {
        seller_id: "s-nobody".into(),
        ..lease.clone()
    };
    fx.broker.settle_lease(&nobody, Some(7), None);
    assert!(fx.broker.cached_token("s-nobody", MOCK).is_none());

    let summary = fx.broker.credit_summary();
    let alpha = &summary.sellers[0];
    assert_eq!(alpha.seller_id, "s-alpha");
    assert_eq!(alpha.spent_credit_micros, 1_234 + 1 + 50_000 + 5_000_000);
    assert_eq!(alpha.remaining_credit_micros, 0);
    assert_eq!(summary.sellers[1].spent_credit_micros, 7);

    // The store catches up in the background.
    fx.broker.flush().await;
    assert_eq!(fx.store.snapshot()[0].balance_micros, 0);
}

#[tokio::test]
async fn a_late_settlement_of_a_replaced_token_keeps_the_new_balance() {
    let fx = Fixture::new().await;
    script_purchase(&fx.mock, "tok-1");
    let old = fx
        .broker
        .acquire(&fx.seller, MODEL, MOCK, false)
        .await
        .unwrap();
    fx.broker.mark_lease_dry(&old);
    script_purchase(&fx.mock, "tok-2");
    fx.broker
        .acquire(&fx.seller, MODEL, MOCK, false)
        .await
        .unwrap();
    fx.broker.settle_lease(&old, Some(500), Some(0));
    let t = fx.broker.cached_token("s-alpha", MOCK).unwrap();
    assert_eq!(t.balance_micros, 1_000_000);
    // The credit still counts as spent on the seller.
    assert_eq!(fx.broker.credit_summary().spent_credit_micros, 500);
}

#[tokio::test]
async fn background_persistence_coalesces_and_ends_with_the_newest_state() {
    let fx = Fixture::new().await;
    script_purchase(&fx.mock, "tok-1");
    let lease = fx
        .broker
        .acquire(&fx.seller, MODEL, MOCK, false)
        .await
        .unwrap();
    for i in 1..=200u64 {
        fx.broker.settle_lease(&lease, None, Some(1_000_000 - i));
    }
    fx.broker.flush().await;
    assert_eq!(fx.store.snapshot()[0].balance_micros, 1_000_000 - 200);
    let (saves, _) = fx.store.writes();
    assert!(saves < 200, "{saves} writes for 200 settlements");
}

#[tokio::test]
async fn the_tracker_counts_purchases_spending_and_waste() {
    let fx = Fixture::new().await;
    let beta_mock = MockUpstream::start().await.unwrap();
    let beta = SellerRef::new("s-beta", beta_mock.root_url());
    script_purchase(&fx.mock, "tok-a");
    script_purchase(&beta_mock, "tok-b");
    let alpha_lease = fx
        .broker
        .acquire(&fx.seller, MODEL, MOCK, false)
        .await
        .unwrap();
    let beta_lease = fx.broker.acquire(&beta, MODEL, MOCK, false).await.unwrap();
    fx.broker.settle_lease(&alpha_lease, Some(100_000), None);

    // Alpha is abandoned 5 min − 1 ms after buying: its 900,000 left count
    // as wasted, once.
    fx.clock.advance(300_000 - 1);
    assert_eq!(fx.broker.abandoned("s-alpha", MOCK), 900_000);
    assert_eq!(fx.broker.abandoned("s-alpha", MOCK), 0);
    // Beta abandoned exactly at the end of the window: not wasted.
    fx.clock.advance(1);
    assert_eq!(fx.broker.abandoned("s-beta", MOCK), 0);
    // Nothing cached: nothing wasted.
    assert_eq!(fx.broker.abandoned("s-gamma", MOCK), 0);

    // A failed purchase counts as a failure, not a purchase.
    fx.broker.mark_lease_dry(&beta_lease);
    beta_mock.push_reply(Reply::json(500, "{}"));
    assert!(fx.broker.acquire(&beta, MODEL, MOCK, false).await.is_err());

    let s = fx.broker.credit_summary();
    let (alpha, b) = (&s.sellers[0], &s.sellers[1]);
    assert_eq!(
        (
            alpha.seller_id.as_str(),
            alpha.purchases,
            alpha.purchase_failures
        ),
        ("s-alpha", 1, 0)
    );
    assert_eq!(alpha.purchased_credit_micros, 1_000_000);
    assert_eq!(alpha.paid_usd_micros, 800_000);
    assert_eq!(alpha.spent_credit_micros, 100_000);
    // The wasted credit left `remaining`: bought = spent + remaining + wasted.
    assert_eq!(alpha.remaining_credit_micros, 0);
    assert_eq!(alpha.wasted_credit_micros, 900_000);
    assert_eq!(
        (b.seller_id.as_str(), b.purchases, b.purchase_failures),
        ("s-beta", 1, 1)
    );
    assert_eq!(b.remaining_credit_micros, 0);
    assert_eq!(b.wasted_credit_micros, 0);
    assert_eq!(s.purchases, 2);
    assert_eq!(s.purchase_failures, 1);
    assert_eq!(s.purchased_credit_micros, 2_000_000);
    assert_eq!(s.paid_usd_micros, 1_600_000);
    assert_eq!(s.spent_credit_micros, 100_000);
    assert_eq!(s.remaining_credit_micros, 0);
    assert_eq!(s.wasted_credit_micros, 900_000);
    assert_eq!(s.budget_usd_micros, 5_000_000);
    assert_eq!(s.budget_spent_usd_micros, 1_600_000);
    assert_eq!(s.budget_left_usd_micros, 3_400_000);
    assert_eq!(fx.broker.budget_left(), 3_400_000);
}

#[tokio::test]
async fn a_restart_reuses_the_persisted_token() {
    let fx = Fixture::new().await;
    script_purchase(&fx.mock, "tok-persisted");
    let lease = fx
        .broker
        .acquire(&fx.seller, MODEL, MOCK, false)
        .await
        .unwrap();
    fx.broker.settle_lease(&lease, Some(250_000), None);
    fx.broker.flush().await;

    let restarted = broker_with(
        Arc::clone(&fx.store) as Arc<dyn TokenStore>,
        fx.cipher.clone(),
        policy(),
        &fx.clock,
    );
    assert_eq!(restarted.load().await.unwrap(), 1);
    let l = restarted
        .acquire(&fx.seller, MODEL, MOCK, false)
        .await
        .unwrap();
    assert!(!l.bought);
    assert_eq!(l.token.expose(), "tok-persisted");
    assert_eq!(l.fingerprint, lease.fingerprint);
    let t = restarted.cached_token("s-alpha", MOCK).unwrap();
    assert_eq!(t.balance_micros, 750_000);
    assert_eq!(t.purchased_at_ms, NOW);
    assert_eq!(t.expires_at_ms, NOW + HOUR);
    assert_eq!(t.price_usd_micros, 800_000);
    assert_eq!((fx.quotes(), fx.completes()), (1, 1));
    // The budget is per run: a restored token was not bought this run.
    let s = restarted.credit_summary();
    assert_eq!((s.purchases, s.budget_spent_usd_micros), (0, 0));
    assert_eq!(s.remaining_credit_micros, 750_000);
}

#[tokio::test]
async fn a_restart_with_another_key_buys_again() {
    let fx = Fixture::new().await;
    script_purchase(&fx.mock, "tok-1");
    fx.broker
        .acquire(&fx.seller, MODEL, MOCK, false)
        .await
        .unwrap();
    let other_key = broker_with(
        Arc::clone(&fx.store) as Arc<dyn TokenStore>,
        TokenCipher::from_key_bytes([1; 32]),
        policy(),
        &fx.clock,
    );
    assert_eq!(other_key.load().await.unwrap(), 0);
    script_purchase(&fx.mock, "tok-2");
    assert!(
        other_key
            .acquire(&fx.seller, MODEL, MOCK, false)
            .await
            .unwrap()
            .bought
    );
}

#[tokio::test]
async fn the_store_never_sees_the_clear_token() {
    let fx = Fixture::new().await;
    let token = "tok-must-never-be-stored-0123456789";
    script_purchase(&fx.mock, token);
    let lease = fx
        .broker
        .acquire(&fx.seller, MODEL, MOCK, false)
        .await
        .unwrap();
    fx.broker.settle_lease(&lease, Some(1), None);
    fx.broker.flush().await;
    let stored = fx.store.snapshot();
    assert_eq!(stored.len(), 1);
    let s = &stored[0];
    let everything = format!("{s:?}");
    assert!(!everything.contains(token), "{everything}");
    assert!(!contains(&s.ciphertext, token.as_bytes()));
    assert!(!contains(&s.nonce, token.as_bytes()));
    assert_eq!(s.nonce.len(), 24);
    assert_eq!(
        s.fingerprint,
        tb_seller::SellerSecret::new(token).fingerprint()
    );
    assert_eq!(
        fx.cipher.decrypt(&s.ciphertext, &s.nonce).unwrap().expose(),
        token
    );
}

#[tokio::test]
async fn the_ledger_store_round_trips_and_holds_no_clear_token() {
    let dir = tempfile::tempdir().unwrap();
    let target = tb_store::LedgerTarget::Sqlite(dir.path().join("ledger.db"));
    let ledger = tb_store::Ledger::open(&target).await.unwrap();
    let mock = MockUpstream::start().await.unwrap();
    let seller = SellerRef::new("s-alpha", mock.root_url());
    let cipher = TokenCipher::load_or_create(dir.path()).unwrap();
    let clock = TestClock::new(NOW);
    let token = "tok-ledger-secret-9876543210";
    script_purchase(&mock, token);
    let broker = broker_with(Arc::new(ledger.clone()), cipher.clone(), policy(), &clock);
    let lease = broker.acquire(&seller, MODEL, MOCK, false).await.unwrap();
    broker.settle_lease(&lease, None, Some(123_456));
    broker.flush().await;
    ledger.close().await;

    // Every file of the ledger (database, WAL, shared memory).
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let path = entry.unwrap().path();
        if path
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("ledger.db")
        {
            let bytes = std::fs::read(&path).unwrap();
            assert!(
                !contains(&bytes, token.as_bytes()),
                "{} holds the token",
                path.display()
            );
        }
    }

    let reopened = tb_store::Ledger::open(&target).await.unwrap();
    let restarted = broker_with(
        Arc::new(reopened.clone()),
        TokenCipher::load_or_create(dir.path()).unwrap(),
        policy(),
        &clock,
    );
    assert_eq!(restarted.load().await.unwrap(), 1);
    let l = restarted
        .acquire(&seller, MODEL, MOCK, false)
        .await
        .unwrap();
    assert!(!l.bought);
    assert_eq!(l.token.expose(), token);
    assert_eq!(
        restarted
            .cached_token("s-alpha", MOCK)
            .unwrap()
            .balance_micros,
        123_456
    );
    restarted.drop_lease(&l);
    restarted.flush().await;
    assert!(reopened.load_tokens().await.unwrap().is_empty());
    assert_eq!(mock.request_count(), 2);
    reopened.close().await;
}

#[tokio::test]
async fn a_failing_store_does_not_fail_the_purchase() {
    let fx = Fixture::new().await;
    fx.store.fail_with(Some("disk full"));
    script_purchase(&fx.mock, "tok-1");
    let l = fx
        .broker
        .acquire(&fx.seller, MODEL, MOCK, false)
        .await
        .unwrap();
    assert!(l.bought);
    fx.broker.settle_lease(&l, Some(5), None);
    fx.broker.flush().await;
    assert!(fx.store.snapshot().is_empty());
    assert!(fx.broker.load().await.is_err());
    // The paid token stays usable.
    assert!(
        !fx.broker
            .acquire(&fx.seller, MODEL, MOCK, false)
            .await
            .unwrap()
            .bought
    );
    // Once the store works again, the next change writes the newest state.
    fx.store.fail_with(None);
    fx.broker.settle_lease(&l, Some(5), None);
    fx.broker.flush().await;
    assert_eq!(fx.store.snapshot()[0].balance_micros, 1_000_000 - 10);
}

#[tokio::test]
async fn a_caller_that_goes_away_does_not_lose_the_purchase() {
    let fx = Fixture::new().await;
    fx.mock.push_reply(quote_reply(800_000));
    fx.mock.push_reply(
        complete_reply("tok-1", 1_000_000, NOW + HOUR).with_head_delay(Duration::from_millis(300)),
    );
    let gone = tokio::time::timeout(
        Duration::from_millis(50),
        fx.broker.acquire(&fx.seller, MODEL, MOCK, false),
    )
    .await;
    assert!(gone.is_err(), "the caller gave up");
    // The purchase finishes on its own task and is cached and stored.
    for _ in 0..100 {
        if fx.broker.cached_token("s-alpha", MOCK).is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let l = fx
        .broker
        .acquire(&fx.seller, MODEL, MOCK, false)
        .await
        .unwrap();
    assert!(!l.bought);
    assert_eq!(l.token.expose(), "tok-1");
    assert_eq!(fx.completes(), 1);
    assert_eq!(fx.broker.credit_summary().paid_usd_micros, 800_000);
}

#[tokio::test]
async fn hostile_sellers_fail_the_purchase_cleanly() {
    let q = |v: serde_json::Value| Reply::json(200, v.to_string());
    let good_quote = || quote_reply(800_000);
    // (name, replies, words the message must contain, completes expected)
    let cases: Vec<(&str, Vec<Reply>, Vec<&str>, usize)> = vec![
        (
            "negative price",
            vec![q(
                json!({"quoteId": "q", "creditMicros": 1, "priceUsdMicros": -1, "expiresAt": 1}),
            )],
            vec!["priceUsdMicros", "-1"],
            0,
        ),
        (
            "huge price",
            vec![q(
                json!({"quoteId": "q", "creditMicros": 1, "priceUsdMicros": 1e20, "expiresAt": 1}),
            )],
            vec!["priceUsdMicros", "10^15"],
            0,
        ),
        (
            "quote missing fields",
            vec![q(json!({"quoteId": "q"}))],
            vec!["creditMicros", "missing"],
            0,
        ),
        (
            "quote not JSON",
            vec![Reply::text(200, "OK!")],
            vec!["not JSON"],
            0,
        ),
        (
            "quote oversized",
            vec![Reply::json(200, format!("[\"{}\"]", "y".repeat(200_000)))],
            vec!["larger than"],
            0,
        ),
        (
            "quote 503",
            vec![Reply::json(503, "{\"error\":\"busy\"}")],
            vec!["HTTP 503"],
            0,
        ),
        (
            "complete negative balance",
            vec![
                good_quote(),
                q(
                    json!({"accessToken": "tok-x", "creditMicros": 1, "balanceMicros": -3,
                         "expiresAt": NOW + HOUR}),
                ),
            ],
            vec!["balanceMicros", "-3"],
            1,
        ),
        (
            "complete missing token",
            vec![
                good_quote(),
                q(json!({"creditMicros": 1, "balanceMicros": 1, "expiresAt": NOW + HOUR})),
            ],
            vec!["accessToken", "missing"],
            1,
        ),
        (
            "complete not JSON",
            vec![good_quote(), Reply::text(200, "\u{0}\u{1}binary")],
            vec!["not JSON"],
            1,
        ),
        (
            "complete 402",
            vec![
                good_quote(),
                Reply::json(402, "{\"error\":\"payment declined\"}"),
            ],
            vec!["HTTP 402", "payment declined"],
            1,
        ),
        (
            "token already expired",
            vec![good_quote(), complete_reply("tok-old", 1_000_000, NOW - 1)],
            vec!["not usable", "expires at"],
            1,
        ),
        (
            "token with no balance",
            vec![good_quote(), complete_reply("tok-empty", 0, NOW + HOUR)],
            vec!["not usable", "balance 0"],
            1,
        ),
    ];
    for (name, replies, words, completes) in cases {
        let fx = Fixture::new().await;
        fx.mock.push_replies(replies);
        let err = fx
            .broker
            .acquire(&fx.seller, MODEL, MOCK, false)
            .await
            .expect_err(name);
        let AcquireError::PurchaseFailed(msg) = &err else {
            panic!("{name}: {err:?}");
        };
        assert!(msg.contains("s-alpha"), "{name}: {msg}");
        for w in words {
            assert!(msg.contains(w), "{name}: {msg:?} lacks {w:?}");
        }
        assert!(!msg.contains("tok-"), "{name} leaks a token: {msg}");
        assert_eq!(fx.completes(), completes, "{name}");
        let s = fx.broker.credit_summary();
        if name.starts_with("token ") {
            // Paid for, but unusable: counted, not a failure.
            assert_eq!(
                (s.purchases, s.budget_spent_usd_micros),
                (1, 800_000),
                "{name}"
            );
        } else {
            // Nothing paid; the reservation is released.
            assert_eq!((s.purchases, s.purchase_failures), (0, 1), "{name}");
            assert_eq!(fx.broker.budget_left(), 5_000_000, "{name}");
        }
    }
}

#[tokio::test]
async fn an_unreachable_seller_fails_the_purchase() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let clock = TestClock::new(NOW);
    let broker = broker_with(
        Arc::new(MemoryTokenStore::new()),
        TokenCipher::from_key_bytes([3; 32]),
        policy(),
        &clock,
    );
    let seller = SellerRef::new("s-down", format!("http://127.0.0.1:{port}"));
    let err = broker
        .acquire(&seller, MODEL, MOCK, false)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, AcquireError::PurchaseFailed(m) if m.contains("s-down") && m.contains("/purchase/quote")),
        "{err}"
    );
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}
