//! Seller token storage (`tokens` table), on both backends like the rest
//! of the ledger suite.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[macro_use]
mod common;

use common::{Fixture, POSTGRES_URL};
use sqlx::Connection;
use tb_domain::PaymentMethod;
use tb_store::{LedgerTarget, TokenRow};

both_backends!(
    token_round_trip,
    token_unknowns_stay_unknown,
    token_upsert_replaces_per_seller_and_method,
    token_delete,
    token_survives_reopen,
    token_extremes,
    token_unknown_payment_method_is_skipped,
);

fn row(seller: &str, method: PaymentMethod, n: u8) -> TokenRow {
    TokenRow {
        seller_id: seller.into(),
        payment_method: method,
        // Binary with NUL and high bytes: stored as BLOB / BYTEA, not text.
        ciphertext: vec![0, n, 0xff, 0x80, 7, 0],
        nonce: (0..24).map(|i| i ^ n).collect(),
        fingerprint: format!("fp{n:010}"),
        credit_micros: Some(1_000_000 + u64::from(n)),
        balance_micros: Some(990_000 + u64::from(n)),
        price_usd_micros: Some(800_000),
        expires_at_ms: Some(1_800_000_000_000 + i64::from(n)),
        purchased_at_ms: 1_700_000_000_000,
        updated_at_ms: 1_700_000_000_500 + i64::from(n),
    }
}

async fn token_round_trip(fx: Fixture) {
    assert!(fx.ledger.load_tokens().await.unwrap().is_empty());
    let b = row("s-beta", PaymentMethod::Mock, 2);
    // Upper case sorts before lower case bytewise (not in most locales).
    let upper = row("S-zeta", PaymentMethod::Mock, 4);
    let a_mock = row("s-alpha", PaymentMethod::Mock, 1);
    let a_claw = row("s-alpha", PaymentMethod::Clawtip, 3);
    for t in [&b, &a_mock, &upper, &a_claw] {
        fx.ledger.save_token(t).await.unwrap();
    }
    // Ordered by seller id, then payment method name.
    assert_eq!(
        fx.ledger.load_tokens().await.unwrap(),
        vec![upper, a_claw, a_mock, b]
    );
}

async fn token_unknowns_stay_unknown(fx: Fixture) {
    let t = TokenRow {
        credit_micros: None,
        balance_micros: None,
        price_usd_micros: None,
        expires_at_ms: None,
        ..row("s", PaymentMethod::Mock, 1)
    };
    fx.ledger.save_token(&t).await.unwrap();
    assert_eq!(fx.ledger.load_tokens().await.unwrap(), vec![t]);
}

async fn token_upsert_replaces_per_seller_and_method(fx: Fixture) {
    fx.ledger
        .save_token(&row("s", PaymentMethod::Mock, 1))
        .await
        .unwrap();
    fx.ledger
        .save_token(&row("s", PaymentMethod::Clawtip, 2))
        .await
        .unwrap();
    let newer = TokenRow {
        balance_micros: Some(5),
        ..row("s", PaymentMethod::Mock, 9)
    };
    fx.ledger.save_token(&newer).await.unwrap();
    let all = fx.ledger.load_tokens().await.unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(all[0], row("s", PaymentMethod::Clawtip, 2));
    assert_eq!(all[1], newer);
}

async fn token_delete(fx: Fixture) {
    fx.ledger
        .save_token(&row("s", PaymentMethod::Mock, 1))
        .await
        .unwrap();
    fx.ledger
        .save_token(&row("s", PaymentMethod::Clawtip, 2))
        .await
        .unwrap();
    assert!(
        fx.ledger
            .delete_token("s", PaymentMethod::Mock)
            .await
            .unwrap()
    );
    assert!(
        !fx.ledger
            .delete_token("s", PaymentMethod::Mock)
            .await
            .unwrap()
    );
    assert!(
        !fx.ledger
            .delete_token("other", PaymentMethod::Clawtip)
            .await
            .unwrap()
    );
    assert_eq!(
        fx.ledger.load_tokens().await.unwrap(),
        vec![row("s", PaymentMethod::Clawtip, 2)]
    );
}

async fn token_survives_reopen(fx: Fixture) {
    let t = row("s", PaymentMethod::Mock, 4);
    fx.ledger.save_token(&t).await.unwrap();
    fx.ledger.close().await;
    let again = fx.reopen().await;
    assert_eq!(again.load_tokens().await.unwrap(), vec![t]);
    again.close().await;
}

async fn token_extremes(fx: Fixture) {
    let t = TokenRow {
        seller_id: "s \"quoted\" ✓ 余额".into(),
        ciphertext: vec![0; 4096],
        nonce: Vec::new(),
        credit_micros: Some(0),
        balance_micros: Some(i64::MAX as u64),
        price_usd_micros: Some(u64::MAX),
        expires_at_ms: Some(i64::MIN),
        ..row("s", PaymentMethod::Mock, 1)
    };
    fx.ledger.save_token(&t).await.unwrap();
    let got = fx.ledger.load_tokens().await.unwrap();
    // Above i64::MAX saturates; everything else is exact.
    assert_eq!(
        got,
        vec![TokenRow {
            price_usd_micros: Some(i64::MAX as u64),
            ..t
        }]
    );
}

async fn token_unknown_payment_method_is_skipped(fx: Fixture) {
    fx.ledger
        .save_token(&row("s", PaymentMethod::Mock, 1))
        .await
        .unwrap();
    // A newer daemon sharing the ledger, and a hand-edited negative
    // balance: neither breaks loading.
    raw_sql(
        &fx.target,
        "INSERT INTO tokens (seller_id, payment_method, token_ciphertext, token_nonce, \
           token_fingerprint, balance_micros, purchased_at_ms, updated_at_ms) \
         VALUES ('s', 'bitcoin', X'00', X'00', 'f', 5, 1, 1); \
         UPDATE tokens SET balance_micros = -5 WHERE payment_method = 'mock'",
    )
    .await;
    let got = fx.ledger.load_tokens().await.unwrap();
    assert_eq!(
        got,
        vec![TokenRow {
            balance_micros: None,
            ..row("s", PaymentMethod::Mock, 1)
        }]
    );
}

/// Runs SQL on the fixture's database with a connection of its own.
async fn raw_sql(target: &LedgerTarget, sql: &str) {
    match target {
        LedgerTarget::Sqlite(path) => {
            let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display()))
                .await
                .unwrap();
            sqlx::raw_sql(sql).execute(&mut conn).await.unwrap();
            conn.close().await.unwrap();
        }
        LedgerTarget::Postgres { schema, .. } => {
            let mut conn = sqlx::PgConnection::connect(POSTGRES_URL).await.unwrap();
            let schema = schema.as_deref().unwrap();
            // SQLite's blob literal X'..' is a bit string in PostgreSQL.
            let sql = sql.replace("X'00'", "'\\x00'::bytea");
            sqlx::raw_sql(&format!("SET search_path TO \"{schema}\"; {sql}"))
                .execute(&mut conn)
                .await
                .unwrap();
            conn.close().await.unwrap();
        }
    }
}
