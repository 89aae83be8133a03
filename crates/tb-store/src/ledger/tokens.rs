//! Seller tokens (`tokens` table): one row per (seller, payment method),
//! the token itself only as ciphertext + nonce (tb-seller encrypts), next
//! to a fingerprint and the numbers the token cache needs after a restart.

use sqlx::Row;
use tb_domain::PaymentMethod;

use super::{Ledger, Pool};
use crate::StoreError;
use crate::codec::RowExt;

/// One stored seller token. The ledger never sees the clear token.
///
/// Money is micros and times unix milliseconds, as everywhere in the
/// ledger. Values above `i64::MAX` are stored as `i64::MAX`; a negative
/// value read back (written by something else) reads as `None`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRow {
    /// The seller's registry id.
    pub seller_id: String,
    /// How the token was paid for.
    pub payment_method: PaymentMethod,
    /// The encrypted token (`token_ciphertext`).
    pub ciphertext: Vec<u8>,
    /// The nonce it was encrypted with (`token_nonce`).
    pub nonce: Vec<u8>,
    /// The token's fingerprint, for logs (`token_fingerprint`).
    pub fingerprint: String,
    /// Credit bought, micros; `None` when unknown.
    pub credit_micros: Option<u64>,
    /// Credit left, micros; `None` when unknown.
    pub balance_micros: Option<u64>,
    /// What the purchase cost, USD micros; `None` when unknown.
    pub price_usd_micros: Option<u64>,
    /// When the token expires, unix ms; `None` when unknown.
    pub expires_at_ms: Option<i64>,
    /// When the token was bought, unix ms.
    pub purchased_at_ms: i64,
    /// When the row was last written, unix ms.
    pub updated_at_ms: i64,
}

pub(super) const TOKEN_COLUMNS: &str = "seller_id, payment_method, token_ciphertext, token_nonce, \
    token_fingerprint, credit_micros, balance_micros, price_usd_micros, expires_at_ms, \
    purchased_at_ms, updated_at_ms";

/// The upsert of one token row into `table` (`tokens`, or the team's
/// `team_tokens`: the same columns), binding [`TOKEN_COLUMNS`] in order.
pub(super) fn upsert_sql(table: &str) -> String {
    format!(
        "INSERT INTO {table} ({TOKEN_COLUMNS}) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
         ON CONFLICT (seller_id, payment_method) DO UPDATE SET \
           token_ciphertext = excluded.token_ciphertext, \
           token_nonce = excluded.token_nonce, \
           token_fingerprint = excluded.token_fingerprint, \
           credit_micros = excluded.credit_micros, \
           balance_micros = excluded.balance_micros, \
           price_usd_micros = excluded.price_usd_micros, \
           expires_at_ms = excluded.expires_at_ms, \
           purchased_at_ms = excluded.purchased_at_ms, \
           updated_at_ms = excluded.updated_at_ms"
    )
}

impl Ledger {
    /// Stores `token`, replacing the row of the same (seller, payment
    /// method) if there is one.
    pub async fn save_token(&self, token: &TokenRow) -> Result<(), StoreError> {
        let sql = upsert_sql("tokens");
        with_pool!(self, pool => {
            let query = sqlx::query(&sql)
                .bind(token.seller_id.as_str())
                .bind(token.payment_method.as_str())
                .bind(token.ciphertext.as_slice())
                .bind(token.nonce.as_slice())
                .bind(token.fingerprint.as_str())
                .bind(token.credit_micros.map(saturating_i64))
                .bind(token.balance_micros.map(saturating_i64))
                .bind(token.price_usd_micros.map(saturating_i64))
                .bind(token.expires_at_ms)
                .bind(token.purchased_at_ms)
                .bind(token.updated_at_ms);
            write_statement!(pool, query)?;
            Ok(())
        })
    }

    /// Every stored token, by seller id then payment method name (bytewise
    /// on both backends). A row whose
    /// payment method this version does not know is skipped with a
    /// warning (a newer daemon may share the ledger).
    pub async fn load_tokens(&self) -> Result<Vec<TokenRow>, StoreError> {
        let sql = format!("SELECT {TOKEN_COLUMNS} FROM tokens");
        with_pool!(self, pool => {
            let rows = sqlx::query(&sql).fetch_all(pool).await?;
            let mut out = Vec::with_capacity(rows.len());
            for row in &rows {
                let seller_id = row.text_col("seller_id")?;
                let method = row.text_col("payment_method")?;
                let Some(payment_method) = PaymentMethod::parse(&method) else {
                    tracing::warn!(
                        target: "ledger.tokens",
                        seller = %seller_id,
                        payment_method = %method,
                        "skipping a stored seller token with an unknown payment method"
                    );
                    continue;
                };
                out.push(TokenRow {
                    payment_method,
                    ciphertext: row.try_get("token_ciphertext")?,
                    nonce: row.try_get("token_nonce")?,
                    fingerprint: row.text_col("token_fingerprint")?,
                    credit_micros: non_negative(row.opt_i64_col("credit_micros")?),
                    balance_micros: non_negative(row.opt_i64_col("balance_micros")?),
                    price_usd_micros: non_negative(row.opt_i64_col("price_usd_micros")?),
                    expires_at_ms: row.opt_i64_col("expires_at_ms")?,
                    purchased_at_ms: row.i64_col("purchased_at_ms")?,
                    updated_at_ms: row.i64_col("updated_at_ms")?,
                    seller_id,
                });
            }
            // Bytewise, whatever PostgreSQL's collation.
            out.sort_by(|a, b| {
                (a.seller_id.as_str(), a.payment_method.as_str())
                    .cmp(&(b.seller_id.as_str(), b.payment_method.as_str()))
            });
            Ok(out)
        })
    }

    /// Removes the token of (`seller_id`, `payment_method`); returns
    /// whether there was one.
    pub async fn delete_token(
        &self,
        seller_id: &str,
        payment_method: PaymentMethod,
    ) -> Result<bool, StoreError> {
        with_pool!(self, pool => {
            let delete = sqlx::query("DELETE FROM tokens WHERE seller_id = $1 AND payment_method = $2")
                .bind(seller_id)
                .bind(payment_method.as_str());
            Ok(write_statement!(pool, delete)?.rows_affected() > 0)
        })
    }
}

fn saturating_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn non_negative(v: Option<i64>) -> Option<u64> {
    v.and_then(|v| u64::try_from(v).ok())
}
