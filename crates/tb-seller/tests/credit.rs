//! Wasted credit and the purchase journal: every quote and completion is
//! journaled (never the token), the three waste rules count and journal
//! their waste, spending a wasted token undoes it, and a broker rebuilt
//! from a real ledger shows the same figures.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{
    Fixture, HOUR, NOW, broker_with, complete_reply, policy, quote_reply, script_purchase,
};
use tb_billing::record::CallRecord;
use tb_domain::PaymentMethod;
use tb_seller::{PurchaseJournal, SellerCredit, SellerRef, TokenStore};
use tb_store::{
    Ledger, LedgerTarget, LedgerWriter, PurchaseEvent, PurchaseLog, PurchaseStatus, WasteReason,
};
use tb_test_support::{MockUpstream, Reply};

const MOCK: PaymentMethod = PaymentMethod::Mock;
const MODEL: &str = "deepseek-chat";

#[derive(Default)]
struct MemJournal(Mutex<Vec<PurchaseEvent>>);

impl PurchaseJournal for MemJournal {
    fn record(&self, event: PurchaseEvent) {
        self.0.lock().unwrap().push(event);
    }
}

impl MemJournal {
    fn events(&self) -> Vec<PurchaseEvent> {
        self.0.lock().unwrap().clone()
    }

    fn wastes(&self) -> Vec<(u64, Option<WasteReason>)> {
        self.events()
            .into_iter()
            .filter_map(|e| match e {
                PurchaseEvent::Waste(w) => Some((w.wasted_credit_micros, w.reason)),
                PurchaseEvent::Purchase(_) => None,
            })
            .collect()
    }
}

fn journaled(fx: &Fixture) -> Arc<MemJournal> {
    let journal = Arc::new(MemJournal::default());
    fx.broker
        .set_journal(Arc::clone(&journal) as Arc<dyn PurchaseJournal>);
    journal
}

#[tokio::test]
async fn every_quote_and_completion_is_journaled_without_the_token() {
    let fx = Fixture::new().await;
    let journal = journaled(&fx);
    script_purchase(&fx.mock, "tok-secret-1");
    let lease = fx
        .broker
        .acquire(&fx.seller, MODEL, MOCK, false)
        .await
        .unwrap();
    // A quote that fails, then a completion that fails.
    fx.mock.push_reply(Reply::json(503, "{}"));
    assert!(
        fx.broker
            .acquire(&fx.seller, MODEL, MOCK, true)
            .await
            .is_err()
    );
    fx.mock.push_reply(quote_reply(800_000));
    fx.mock.push_reply(Reply::json(500, "{}"));
    assert!(
        fx.broker
            .acquire(&fx.seller, MODEL, MOCK, true)
            .await
            .is_err()
    );
    let rows: Vec<_> = journal
        .events()
        .into_iter()
        .map(|e| match e {
            PurchaseEvent::Purchase(p) => p,
            PurchaseEvent::Waste(w) => panic!("unexpected waste {w:?}"),
        })
        .collect();
    let states: Vec<_> = rows.iter().map(|r| (r.id.clone(), r.status)).collect();
    // Bought: quoted then completed (same id). Quote failed: one row.
    // Completion failed: quoted then failed.
    assert_eq!(states.len(), 5, "{states:?}");
    assert_eq!(states[0].1, PurchaseStatus::Quoted);
    assert_eq!(states[1], (states[0].0.clone(), PurchaseStatus::Completed));
    assert_eq!(states[2].1, PurchaseStatus::Failed);
    assert_eq!(states[3].1, PurchaseStatus::Quoted);
    assert_eq!(states[4], (states[3].0.clone(), PurchaseStatus::Failed));
    let ids: std::collections::HashSet<_> = states.iter().map(|s| s.0.clone()).collect();
    assert_eq!(ids.len(), 3, "one id per attempt");
    let done = &rows[1];
    assert_eq!(done.seller_id, "s-alpha");
    assert_eq!(done.model.as_deref(), Some(MODEL));
    assert_eq!(done.payment_method, MOCK);
    assert_eq!(done.quote_id.as_deref(), Some("q-800000"));
    assert_eq!(done.credit_micros, Some(1_000_000));
    assert_eq!(done.price_usd_micros, Some(800_000));
    assert_eq!(done.payment_reference.as_deref(), Some("mock-ref"));
    assert_eq!(
        done.token_fingerprint.as_deref(),
        Some(lease.fingerprint.as_str())
    );
    assert_eq!(done.completed_at_ms, Some(NOW));
    assert!(rows[2].error.as_deref().unwrap().contains("seller s-alpha"));
    assert_eq!(rows[2].quote_id, None);
    assert_eq!(rows[4].quote_id.as_deref(), Some("q-800000"));
    let text = format!("{:?}", journal.events());
    assert!(
        !text.contains("tok-secret-1"),
        "the token reached the journal"
    );
}

#[tokio::test]
async fn a_quote_over_the_budget_is_journaled_as_declined() {
    let fx = Fixture::with_policy(tb_seller::PurchasePolicy {
        session_budget_usd_micros: 500_000,
        ..policy()
    })
    .await;
    let journal = journaled(&fx);
    fx.mock.push_reply(quote_reply(800_000));
    assert!(
        fx.broker
            .acquire(&fx.seller, MODEL, MOCK, false)
            .await
            .is_err()
    );
    let events = journal.events();
    assert_eq!(events.len(), 1);
    let PurchaseEvent::Purchase(row) = &events[0] else {
        panic!("{events:?}")
    };
    assert_eq!(row.status, PurchaseStatus::Declined);
    assert!(row.error.as_deref().unwrap().contains("budget"));
    // Declined is not a failure.
    assert_eq!(fx.broker.credit_summary().purchase_failures, 0);
}

#[tokio::test]
async fn a_fresh_failover_wastes_the_balance_until_the_token_is_spent_again() {
    let fx = Fixture::new().await;
    let journal = journaled(&fx);
    script_purchase(&fx.mock, "tok-a");
    let lease = fx
        .broker
        .acquire(&fx.seller, MODEL, MOCK, false)
        .await
        .unwrap();
    fx.broker.settle_lease(&lease, Some(100_000), None);
    fx.clock.advance(1_000);
    assert_eq!(fx.broker.abandon_lease(&lease), 900_000);
    assert_eq!(fx.broker.abandon_lease(&lease), 0, "once per token");
    let s = fx.broker.credit_summary();
    assert_eq!(
        (
            s.spent_credit_micros,
            s.remaining_credit_micros,
            s.wasted_credit_micros
        ),
        (100_000, 0, 900_000)
    );
    assert_eq!(
        journal.wastes(),
        vec![(900_000, Some(WasteReason::Failover))]
    );
    // The seller serves again with that token: not wasted after all.
    fx.broker.settle_lease(&lease, Some(50_000), Some(850_000));
    let s = fx.broker.credit_summary();
    assert_eq!(
        (
            s.spent_credit_micros,
            s.remaining_credit_micros,
            s.wasted_credit_micros
        ),
        (150_000, 850_000, 0)
    );
    assert_eq!(journal.wastes()[1], (0, None));
    // Outside the window a failover wastes nothing.
    fx.clock.advance(300_000);
    assert_eq!(fx.broker.abandon_lease(&lease), 0);
}

#[tokio::test]
async fn a_failover_on_a_replaced_token_wastes_nothing_of_the_new_one() {
    let fx = Fixture::new().await;
    script_purchase(&fx.mock, "tok-old");
    let old = fx
        .broker
        .acquire(&fx.seller, MODEL, MOCK, false)
        .await
        .unwrap();
    script_purchase(&fx.mock, "tok-new");
    fx.broker
        .acquire(&fx.seller, MODEL, MOCK, true)
        .await
        .unwrap();
    assert_eq!(fx.broker.abandon_lease(&old), 0);
    assert_eq!(fx.broker.credit_summary().wasted_credit_micros, 0);
}

#[tokio::test]
async fn expired_tokens_and_delisted_sellers_waste_what_is_left() {
    let fx = Fixture::new().await;
    let journal = journaled(&fx);
    let beta_mock = MockUpstream::start().await.unwrap();
    let beta = SellerRef::new("s-beta", beta_mock.root_url());
    script_purchase(&fx.mock, "tok-a");
    beta_mock.push_reply(quote_reply(800_000));
    beta_mock.push_reply(complete_reply("tok-b", 1_000_000, NOW + 10 * HOUR));
    fx.broker
        .acquire(&fx.seller, MODEL, MOCK, false)
        .await
        .unwrap();
    fx.broker.acquire(&beta, MODEL, MOCK, false).await.unwrap();
    // Both listed and usable: nothing.
    assert_eq!(fx.broker.sweep(Some(&|_: &str| true)), 0);
    assert_eq!(fx.broker.sweep(None), 0);
    // Beta leaves the registry.
    assert_eq!(fx.broker.sweep(Some(&|id: &str| id != "s-beta")), 1_000_000);
    // Alpha's token comes within the expiry margin.
    fx.clock.advance(HOUR - 60_000);
    assert_eq!(fx.broker.sweep(None), 1_000_000);
    assert_eq!(fx.broker.sweep(None), 0, "once per token");
    assert_eq!(
        journal.wastes(),
        vec![
            (1_000_000, Some(WasteReason::Delisted)),
            (1_000_000, Some(WasteReason::Expired)),
        ]
    );
    let s = fx.broker.credit_summary();
    assert_eq!(s.wasted_credit_micros, 2_000_000);
    assert_eq!(s.remaining_credit_micros, 0);
}

#[tokio::test]
async fn replacing_an_expiring_token_wastes_its_balance() {
    let fx = Fixture::new().await;
    let journal = journaled(&fx);
    script_purchase(&fx.mock, "tok-1");
    fx.broker
        .acquire(&fx.seller, MODEL, MOCK, false)
        .await
        .unwrap();
    fx.clock.advance(HOUR - 30_000);
    fx.mock.push_reply(quote_reply(800_000));
    fx.mock
        .push_reply(complete_reply("tok-2", 1_000_000, NOW + 3 * HOUR));
    let new = fx
        .broker
        .acquire(&fx.seller, MODEL, MOCK, false)
        .await
        .unwrap();
    assert!(new.bought);
    assert_eq!(
        journal.wastes(),
        vec![(1_000_000, Some(WasteReason::Expired))]
    );
    let s = fx.broker.credit_summary();
    assert_eq!(s.wasted_credit_micros, 1_000_000);
    assert_eq!(s.remaining_credit_micros, 1_000_000, "the new token");
}

/// The daemon's wiring against a real SQLite ledger: the journal through
/// the ledger's purchase writer, the tokens in the ledger, the spending
/// in the calls; a second broker rebuilt from it shows the same figures.
#[tokio::test]
async fn a_broker_rebuilt_from_the_ledger_shows_the_same_figures() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = Ledger::open(&LedgerTarget::Sqlite(dir.path().join("ledger.db")))
        .await
        .unwrap();
    let fx = Fixture::new().await;
    let clock = fx.clock.clone();
    let broker = broker_with(
        Arc::new(ledger.clone()) as Arc<dyn TokenStore>,
        fx.cipher.clone(),
        policy(),
        &clock,
    );
    let (sender, writer) = LedgerWriter::spawn(PurchaseLog(ledger.clone()), 64);
    broker.set_journal(Arc::new(sender));
    script_purchase(&fx.mock, "tok-a");
    let lease = broker
        .acquire(&fx.seller, MODEL, MOCK, false)
        .await
        .unwrap();
    broker.settle_lease(&lease, Some(30_000), Some(970_000));
    // The call record the proxy writes for that settlement.
    ledger
        .insert_batch(&[settled_call("s-alpha", 30_000)])
        .await
        .unwrap();
    fx.mock.push_reply(Reply::json(503, "{}"));
    assert!(broker.acquire(&fx.seller, MODEL, MOCK, true).await.is_err());
    clock.advance(10_000);
    assert_eq!(broker.abandon_lease(&lease), 970_000);
    broker.flush().await;
    assert!(writer.shutdown(Duration::from_secs(10)).await.is_complete());
    let before = broker.credit_summary();
    assert_eq!(
        before.sellers,
        vec![SellerCredit {
            seller_id: "s-alpha".into(),
            purchases: 1,
            purchase_failures: 1,
            purchased_credit_micros: 1_000_000,
            paid_usd_micros: 800_000,
            spent_credit_micros: 30_000,
            remaining_credit_micros: 0,
            wasted_credit_micros: 970_000,
        }]
    );

    // "Restart": a new broker on the same ledger and key.
    let again = broker_with(
        Arc::new(ledger.clone()) as Arc<dyn TokenStore>,
        fx.cipher.clone(),
        policy(),
        &clock,
    );
    let history = ledger.credit_history().await.unwrap();
    assert_eq!(again.load().await.unwrap(), 1);
    again.restore(&history);
    let after = again.credit_summary();
    assert_eq!(after.sellers, before.sellers);
    assert_eq!(after.wasted_credit_micros, 970_000);
    // The budget is per run.
    assert_eq!(after.budget_spent_usd_micros, 0);
    // The per-seller figure other reports read.
    let per_seller = ledger.wasted_credit_by_seller().await.unwrap();
    assert_eq!(per_seller[0].wasted_credit_micros, 970_000);
    // The token is nowhere in the purchases.
    let stored = format!("{:?}", ledger.recent_purchases(100).await.unwrap());
    assert!(!stored.contains("tok-a"));
}

/// A call `seller` answered and settled for `credit` micros (the fields
/// left out are unknown).
fn settled_call(seller: &str, credit: i64) -> CallRecord {
    serde_json::from_value(serde_json::json!({
        "id": "c-1", "request_id": "r-1", "started_at_ms": NOW, "endpoint": "chat",
        "protocol": "chat_completions", "requested_model": MODEL, "model": MODEL,
        "stream": false, "ok": true, "outcome": "ok", "winner": seller,
        "failed_over": false, "attempts": [], "latency_ms": 10,
        "settled_credit_micros": credit, "balance_source": "seller_authoritative",
        "billing_unit": "tokens", "usage_missing": false, "empty_completion": false,
        "unpriced": false,
    }))
    .unwrap()
}

/// Wallet purchases left pending by a previous run: the resumable one is
/// polled again (its price reserved) and completes; one whose seller left
/// the registry, one missing its expiry, and an older duplicate are
/// journaled `failed` with the reason; other statuses are ignored.
#[tokio::test]
async fn pending_wallet_purchases_are_resumed_or_closed_after_a_restart() {
    use tb_store::PurchaseRow;
    const CLAWTIP: PaymentMethod = PaymentMethod::Clawtip;
    let fx = Fixture::new().await;
    let journal = journaled(&fx);
    let pending = |id: &str, seller: &str, at: i64| PurchaseRow {
        id: id.into(),
        seller_id: seller.into(),
        model: Some(MODEL.into()),
        payment_method: CLAWTIP,
        status: PurchaseStatus::Pending,
        quote_id: Some(format!("q-{id}")),
        credit_micros: Some(1_000_000),
        price_usd_micros: Some(700_000),
        payment_reference: Some(format!("https://pay.example/{id}")),
        token_fingerprint: None,
        error: None,
        created_at_ms: at,
        completed_at_ms: None,
        expires_at_ms: Some(NOW + HOUR),
    };
    let no_expiry = PurchaseRow {
        expires_at_ms: None,
        ..pending("p-noexp", "s-alpha", NOW - 3)
    };
    let done = PurchaseRow {
        status: PurchaseStatus::Completed,
        ..pending("p-done", "s-alpha", NOW - 4)
    };
    fx.mock
        .push_reply(complete_reply("tok-resumed", 1_000_000, NOW + HOUR));
    let url = fx.seller.url.clone();
    let url_of = move |id: &str| (id == "s-alpha").then(|| url.clone());
    let resumed = fx.broker.resume_wallet_purchases(
        vec![
            pending("p-new", "s-alpha", NOW - 1),
            pending("p-old", "s-alpha", NOW - 2),
            pending("p-gone", "s-delisted", NOW - 2),
            no_expiry,
            done,
        ],
        &url_of,
    );
    assert_eq!(resumed, 1);
    let shown = fx.broker.pending_payments();
    assert_eq!(shown.len(), 1);
    assert_eq!(shown[0].purchase_id, "p-new");
    assert_eq!(shown[0].request.qr_payload, "https://pay.example/p-new");
    assert_eq!(fx.broker.budget_left(), 5_000_000 - 700_000);
    // A request meanwhile gets the resumed payment, not a new quote.
    let err = fx
        .broker
        .acquire(&fx.seller, MODEL, CLAWTIP, false)
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("https://pay.example/p-new"),
        "{err}"
    );
    fx.broker.wallet_purchases_ended(1).await;
    let lease = fx
        .broker
        .acquire(&fx.seller, MODEL, CLAWTIP, false)
        .await
        .unwrap();
    assert_eq!(lease.token.expose(), "tok-resumed");
    assert_eq!(fx.quotes(), 0);
    let ends: Vec<(String, PurchaseStatus, Option<String>)> = journal
        .events()
        .into_iter()
        .filter_map(|e| match e {
            PurchaseEvent::Purchase(p) => Some((p.id, p.status, p.error)),
            PurchaseEvent::Waste(_) => None,
        })
        .collect();
    let failed = |id: &str, why: &str| {
        ends.iter().any(|(i, s, e)| {
            i == id && *s == PurchaseStatus::Failed && e.as_deref().is_some_and(|e| e.contains(why))
        })
    };
    assert!(failed("p-old", "newer pending quote"), "{ends:?}");
    assert!(failed("p-gone", "not in the current registry"), "{ends:?}");
    assert!(failed("p-noexp", "quote expiry"), "{ends:?}");
    assert!(!ends.iter().any(|(i, _, _)| i == "p-done"), "{ends:?}");
    assert!(
        ends.iter()
            .any(|(i, s, _)| i == "p-new" && *s == PurchaseStatus::Completed),
        "{ends:?}"
    );
}
