//! Purchases and wasted credit (`purchases` table), on both backends: the
//! journal's events round-trip, waste is keyed by the token fingerprint,
//! and the credit history the tracker is rebuilt from survives a reopen.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[macro_use]
mod common;

use std::time::Duration;

use common::{Fixture, minimal_record};
use tb_domain::PaymentMethod;
use tb_store::{
    LedgerWriter, PurchaseEvent, PurchaseLog, PurchaseRow, PurchaseStatus, SellerCreditHistory,
    SellerWaste, WasteReason, WasteRow,
};

both_backends!(
    purchase_round_trip_and_update,
    waste_is_keyed_by_fingerprint_and_can_be_undone,
    credit_history_sums_purchases_calls_and_waste,
    purchases_through_the_writer_survive_reopen,
    pending_wallet_purchases_are_found_for_the_restart,
);

fn quoted(id: &str, seller: &str, at: i64) -> PurchaseRow {
    PurchaseRow {
        id: id.into(),
        seller_id: seller.into(),
        model: Some("gpt-4o".into()),
        payment_method: PaymentMethod::Mock,
        status: PurchaseStatus::Quoted,
        quote_id: Some(format!("q-{id}")),
        credit_micros: Some(1_000_000),
        price_usd_micros: Some(800_000),
        payment_reference: None,
        token_fingerprint: None,
        error: None,
        created_at_ms: at,
        completed_at_ms: None,
        expires_at_ms: Some(at + 600_000),
    }
}

fn completed(id: &str, seller: &str, at: i64, fingerprint: &str) -> PurchaseRow {
    PurchaseRow {
        status: PurchaseStatus::Completed,
        payment_reference: Some(format!("pay-{id}")),
        token_fingerprint: Some(fingerprint.into()),
        completed_at_ms: Some(at + 5),
        ..quoted(id, seller, at)
    }
}

fn failed(id: &str, seller: &str, at: i64) -> PurchaseRow {
    PurchaseRow {
        status: PurchaseStatus::Failed,
        quote_id: None,
        credit_micros: None,
        price_usd_micros: None,
        error: Some("seller s: quote: HTTP 503".into()),
        completed_at_ms: Some(at + 1),
        ..quoted(id, seller, at)
    }
}

fn waste(seller: &str, fp: &str, micros: u64, reason: Option<WasteReason>) -> PurchaseEvent {
    PurchaseEvent::Waste(WasteRow {
        seller_id: seller.into(),
        token_fingerprint: fp.into(),
        wasted_credit_micros: micros,
        reason,
        at_ms: 1_700_000_000_900,
    })
}

async fn purchase_round_trip_and_update(fx: Fixture) {
    let l = &fx.ledger;
    assert!(l.recent_purchases(10).await.unwrap().is_empty());
    let q = quoted("p1", "s-alpha", 1_700_000_000_000);
    l.write_purchase_events(&[PurchaseEvent::Purchase(q.clone())])
        .await
        .unwrap();
    let stored = l.recent_purchases(10).await.unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].row, q);
    assert_eq!(stored[0].wasted_credit_micros, None);
    // The completion replaces the quoted row (same id); a retried batch
    // leaves the same state.
    let c = completed("p1", "s-alpha", 1_700_000_000_000, "abcdef012345");
    let batch = [PurchaseEvent::Purchase(c.clone())];
    l.write_purchase_events(&batch).await.unwrap();
    l.write_purchase_events(&batch).await.unwrap();
    let f = failed("p2", "s-beta", 1_700_000_000_100);
    l.write_purchase_events(&[PurchaseEvent::Purchase(f.clone())])
        .await
        .unwrap();
    let stored = l.recent_purchases(10).await.unwrap();
    let rows: Vec<_> = stored.iter().map(|s| s.row.clone()).collect();
    assert_eq!(rows, vec![f, c], "newest first, one row per purchase");
    assert_eq!(l.recent_purchases(1).await.unwrap().len(), 1);
    // Extremes saturate instead of failing.
    let mut big = quoted("p3", "s-alpha", 1_700_000_000_200);
    big.credit_micros = Some(u64::MAX);
    l.write_purchase_events(&[PurchaseEvent::Purchase(big)])
        .await
        .unwrap();
    let newest = &l.recent_purchases(1).await.unwrap()[0];
    assert_eq!(newest.row.credit_micros, Some(i64::MAX as u64));
}

async fn pending_wallet_purchases_are_found_for_the_restart(fx: Fixture) {
    let l = &fx.ledger;
    let pending = |id: &str, at: i64| PurchaseRow {
        payment_method: PaymentMethod::Clawtip,
        status: PurchaseStatus::Pending,
        payment_reference: Some(format!("https://pay.example/{id}")),
        ..quoted(id, "s-claw", at)
    };
    let paid_later = PurchaseRow {
        status: PurchaseStatus::Completed,
        ..pending("p2", 2_000)
    };
    let expired = PurchaseRow {
        status: PurchaseStatus::Expired,
        ..pending("p3", 3_000)
    };
    l.write_purchase_events(&[
        PurchaseEvent::Purchase(pending("p1", 1_000)),
        PurchaseEvent::Purchase(pending("p2", 2_000)),
        PurchaseEvent::Purchase(paid_later),
        PurchaseEvent::Purchase(expired),
        PurchaseEvent::Purchase(pending("p4", 4_000)),
        PurchaseEvent::Purchase(quoted("p5", "s-alpha", 5_000)),
    ])
    .await
    .unwrap();
    let found = l.pending_purchases(10).await.unwrap();
    assert_eq!(found, vec![pending("p4", 4_000), pending("p1", 1_000)]);
    assert_eq!(
        found[0].expires_at_ms,
        Some(604_000),
        "the quote's expiry is kept"
    );
    assert_eq!(l.pending_purchases(1).await.unwrap().len(), 1);
}

async fn waste_is_keyed_by_fingerprint_and_can_be_undone(fx: Fixture) {
    let l = &fx.ledger;
    l.write_purchase_events(&[
        PurchaseEvent::Purchase(completed("p1", "s-alpha", 1_000, "fp-a1")),
        PurchaseEvent::Purchase(completed("p2", "s-alpha", 2_000, "fp-a2")),
        PurchaseEvent::Purchase(completed("p3", "s-beta", 3_000, "fp-b1")),
        // Waste in the same batch as the completion it refers to.
        waste("s-alpha", "fp-a1", 900_000, Some(WasteReason::Failover)),
        waste("s-beta", "fp-b1", 50_000, Some(WasteReason::Expired)),
        // Another seller's fingerprint does not match.
        waste("s-beta", "fp-a2", 1, Some(WasteReason::Delisted)),
    ])
    .await
    .unwrap();
    assert_eq!(
        l.wasted_credit_by_seller().await.unwrap(),
        vec![
            SellerWaste {
                seller_id: "s-alpha".into(),
                wasted_credit_micros: 900_000,
                wasted_purchases: 1,
            },
            SellerWaste {
                seller_id: "s-beta".into(),
                wasted_credit_micros: 50_000,
                wasted_purchases: 1,
            },
        ]
    );
    let p1 = l
        .recent_purchases(10)
        .await
        .unwrap()
        .into_iter()
        .find(|p| p.row.id == "p1")
        .unwrap();
    assert_eq!(p1.wasted_credit_micros, Some(900_000));
    assert_eq!(p1.waste_reason, Some(WasteReason::Failover));
    assert_eq!(p1.wasted_at_ms, Some(1_700_000_000_900));
    // Spent again: the waste is undone.
    l.write_purchase_events(&[waste("s-alpha", "fp-a1", 0, None)])
        .await
        .unwrap();
    assert_eq!(
        l.wasted_credit_by_seller().await.unwrap(),
        vec![SellerWaste {
            seller_id: "s-beta".into(),
            wasted_credit_micros: 50_000,
            wasted_purchases: 1,
        }]
    );
}

async fn credit_history_sums_purchases_calls_and_waste(fx: Fixture) {
    let l = &fx.ledger;
    assert_eq!(l.credit_history().await.unwrap().sellers, vec![]);
    l.write_purchase_events(&[
        PurchaseEvent::Purchase(completed("p1", "s-alpha", 1_000, "fp-a1")),
        PurchaseEvent::Purchase(completed("p2", "s-alpha", 2_000, "fp-a2")),
        PurchaseEvent::Purchase(failed("p3", "s-alpha", 3_000)),
        // Quoted only, or declined: neither bought nor failed.
        PurchaseEvent::Purchase(quoted("p4", "s-alpha", 4_000)),
        PurchaseEvent::Purchase(PurchaseRow {
            status: PurchaseStatus::Declined,
            ..quoted("p5", "s-beta", 5_000)
        }),
        waste("s-alpha", "fp-a1", 700_000, Some(WasteReason::Failover)),
    ])
    .await
    .unwrap();
    // Calls the sellers settled (and one a manual provider answered).
    let mut calls = Vec::new();
    for (winner, settled) in [
        (Some("s-alpha"), Some(1_500)),
        (Some("s-alpha"), Some(2_500)),
        (Some("s-gamma"), Some(10)),
        (Some("oa"), None),
        (None, None),
    ] {
        let mut r = minimal_record(10_000);
        r.winner = winner.map(str::to_owned);
        r.settled_credit_micros = settled;
        calls.push(r);
    }
    l.insert_batch(&calls).await.unwrap();
    let history = l.credit_history().await.unwrap();
    assert_eq!(
        history.sellers,
        vec![
            SellerCreditHistory {
                seller_id: "s-alpha".into(),
                purchases: 2,
                purchase_failures: 1,
                purchased_credit_micros: 2_000_000,
                paid_usd_micros: 1_600_000,
                spent_credit_micros: 4_000,
                wasted_credit_micros: 700_000,
            },
            SellerCreditHistory {
                seller_id: "s-beta".into(),
                ..SellerCreditHistory::default()
            },
            SellerCreditHistory {
                seller_id: "s-gamma".into(),
                spent_credit_micros: 10,
                ..SellerCreditHistory::default()
            },
        ]
    );
    assert_eq!(
        history.wasted_tokens,
        vec![("s-alpha".into(), "fp-a1".into(), 700_000)]
    );
}

async fn purchases_through_the_writer_survive_reopen(fx: Fixture) {
    let (sender, writer) = LedgerWriter::spawn(PurchaseLog(fx.ledger.clone()), 16);
    sender
        .record(PurchaseEvent::Purchase(quoted("p1", "s-alpha", 1_000)))
        .unwrap();
    sender
        .record(PurchaseEvent::Purchase(completed(
            "p1", "s-alpha", 1_000, "fp-1",
        )))
        .unwrap();
    sender
        .record(waste(
            "s-alpha",
            "fp-1",
            400_000,
            Some(WasteReason::Delisted),
        ))
        .unwrap();
    let report = writer.shutdown(Duration::from_secs(10)).await;
    assert!(report.is_complete());
    assert_eq!(report.written, 3);
    // Queued after shutdown: handed back, named without any secret.
    let dropped = sender
        .record(waste("s-alpha", "fp-1", 1, Some(WasteReason::Expired)))
        .unwrap_err();
    assert_eq!(
        dropped.to_string(),
        "waste of token fp-1 of seller s-alpha not stored: the ledger writer has shut down"
    );
    let reopened = fx.reopen().await;
    let history = reopened.credit_history().await.unwrap();
    assert_eq!(history.sellers.len(), 1);
    assert_eq!(history.sellers[0].purchases, 1);
    assert_eq!(history.sellers[0].wasted_credit_micros, 400_000);
    let stored = reopened.recent_purchases(10).await.unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].row.status, PurchaseStatus::Completed);
    assert_eq!(stored[0].waste_reason, Some(WasteReason::Delisted));
}
