//! The seller audit's reads: the calls of a window (newest first, capped)
//! and each seller's last purchase, on both backends.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[macro_use]
mod common;

use common::{Fixture, minimal_record};
use tb_billing::record::CallOutcome;
use tb_domain::PaymentMethod;
use tb_store::TokenRow;

both_backends!(window_is_newest_first_and_capped, last_purchase_per_seller);

async fn window_is_newest_first_and_capped(f: Fixture) {
    let mut records: Vec<_> = (0..5).map(|i| minimal_record(1_000 + i)).collect();
    records[4].outcome = CallOutcome::Rejected;
    f.ledger.insert_batch(&records).await.unwrap();
    let got = f.ledger.calls_in_window(1_001, 100).await.unwrap();
    let starts: Vec<i64> = got.iter().map(|r| r.started_at_ms).collect();
    assert_eq!(
        starts,
        [1_003, 1_002, 1_001],
        "rejected and older calls left out"
    );
    let got = f.ledger.calls_in_window(0, 2).await.unwrap();
    let starts: Vec<i64> = got.iter().map(|r| r.started_at_ms).collect();
    assert_eq!(starts, [1_003, 1_002], "the newest when capped");
}

async fn last_purchase_per_seller(f: Fixture) {
    assert!(f.ledger.last_purchases().await.unwrap().is_empty());
    let token = |seller: &str, method, at| TokenRow {
        seller_id: seller.into(),
        payment_method: method,
        ciphertext: vec![1, 2, 3],
        nonce: vec![0; 24],
        fingerprint: "fp".into(),
        credit_micros: None,
        balance_micros: None,
        price_usd_micros: None,
        expires_at_ms: None,
        purchased_at_ms: at,
        updated_at_ms: at,
    };
    f.ledger
        .save_token(&token("s-a", PaymentMethod::Mock, 5_000))
        .await
        .unwrap();
    f.ledger
        .save_token(&token("s-a", PaymentMethod::Clawtip, 7_000))
        .await
        .unwrap();
    f.ledger
        .save_token(&token("s-b", PaymentMethod::Mock, 1_000))
        .await
        .unwrap();
    let got = f.ledger.last_purchases().await.unwrap();
    assert_eq!(
        got.into_iter().collect::<Vec<_>>(),
        [("s-a".to_string(), 7_000), ("s-b".to_string(), 1_000)]
    );
}
