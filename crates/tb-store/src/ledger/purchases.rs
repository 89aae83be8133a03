//! Seller credit purchases (`purchases` table) and the credit they wasted:
//! one row per purchase attempt (quote → complete), written by the
//! purchase journal (a [`LedgerWriter`](crate::LedgerWriter) of
//! [`PurchaseEvent`]s, off the request path), and the queries the credit
//! tracker is rebuilt from at start-up. The token itself is never here:
//! only its fingerprint, which is also what waste is keyed by.

use std::collections::BTreeMap;

use tb_domain::PaymentMethod;

use super::{Ledger, Pool};
use crate::StoreError;
use crate::codec::RowExt;
use crate::writer::BatchSink;

/// Where a purchase attempt stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PurchaseStatus {
    /// The seller quoted; the completion has not answered (a row left in
    /// this state means the daemon stopped in between).
    Quoted,
    /// Paid for: the daemon holds the token.
    Completed,
    /// The quote or the completion failed (`error` says why).
    Failed,
    /// Quoted, but completing would have passed the session budget.
    Declined,
    /// A wallet purchase (clawtip) waiting for the user to pay;
    /// `payment_reference` is where to pay.
    Pending,
    /// A wallet purchase whose quote lapsed unpaid.
    Expired,
    /// A wallet purchase the user cancelled.
    Cancelled,
}

impl PurchaseStatus {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            PurchaseStatus::Quoted => "quoted",
            PurchaseStatus::Completed => "completed",
            PurchaseStatus::Failed => "failed",
            PurchaseStatus::Declined => "declined",
            PurchaseStatus::Pending => "pending",
            PurchaseStatus::Expired => "expired",
            PurchaseStatus::Cancelled => "cancelled",
        }
    }

    /// The status stored as `s`.
    pub fn parse(s: &str) -> Option<PurchaseStatus> {
        Some(match s {
            "quoted" => PurchaseStatus::Quoted,
            "completed" => PurchaseStatus::Completed,
            "failed" => PurchaseStatus::Failed,
            "declined" => PurchaseStatus::Declined,
            "pending" => PurchaseStatus::Pending,
            "expired" => PurchaseStatus::Expired,
            "cancelled" => PurchaseStatus::Cancelled,
            _ => return None,
        })
    }
}

/// Why credit on a token counts as wasted (routing.md / marketplace.md,
/// "Tokens and credit").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WasteReason {
    /// The daemon failed over away from the seller within
    /// `purchase.fresh_window_ms` of buying the token.
    Failover,
    /// The token expired (or came within `token_expiry_margin_ms` of it)
    /// with credit left.
    Expired,
    /// The seller left the registry with credit left on the token.
    Delisted,
}

impl WasteReason {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            WasteReason::Failover => "failover",
            WasteReason::Expired => "expired",
            WasteReason::Delisted => "delisted",
        }
    }

    /// The reason stored as `s`.
    pub fn parse(s: &str) -> Option<WasteReason> {
        Some(match s {
            "failover" => WasteReason::Failover,
            "expired" => WasteReason::Expired,
            "delisted" => WasteReason::Delisted,
            _ => return None,
        })
    }
}

/// One purchase attempt as written: the whole row, replacing the stored
/// one of the same `id` (a purchase is written when quoted, then again
/// when it completes or fails). Money is micros, times unix ms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PurchaseRow {
    /// Unique per attempt.
    pub id: String,
    /// The seller's registry id.
    pub seller_id: String,
    /// The model the credit was quoted for.
    pub model: Option<String>,
    /// How it was (to be) paid.
    pub payment_method: PaymentMethod,
    /// Where it stands.
    pub status: PurchaseStatus,
    /// The seller's quote id.
    pub quote_id: Option<String>,
    /// Credit quoted, then bought, micros.
    pub credit_micros: Option<u64>,
    /// The quote's price, USD micros.
    pub price_usd_micros: Option<u64>,
    /// The payment method's reference for the payment.
    pub payment_reference: Option<String>,
    /// The bought token's fingerprint (never the token).
    pub token_fingerprint: Option<String>,
    /// Why it failed.
    pub error: Option<String>,
    /// When the attempt started.
    pub created_at_ms: i64,
    /// When it completed, failed or was declined.
    pub completed_at_ms: Option<i64>,
    /// When the quote lapses (set once quoted): how long a `pending`
    /// wallet purchase is polled, also after a restart.
    pub expires_at_ms: Option<i64>,
}

/// The credit wasted on the token with `token_fingerprint` (of
/// `seller_id`): replaces what was recorded for it. `wasted_credit_micros
/// = 0` with no reason undoes earlier waste (the token was spent again).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WasteRow {
    /// The seller.
    pub seller_id: String,
    /// The token's fingerprint (the completed purchase that sold it).
    pub token_fingerprint: String,
    /// Credit left on the token when it was lost, micros.
    pub wasted_credit_micros: u64,
    /// Why; `None` when the waste is undone.
    pub reason: Option<WasteReason>,
    /// When.
    pub at_ms: i64,
}

/// What the purchase journal writes, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PurchaseEvent {
    /// A purchase attempt, new or updated.
    Purchase(PurchaseRow),
    /// Waste on a bought token, new or undone.
    Waste(WasteRow),
}

/// A stored purchase with its waste.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredPurchase {
    /// The purchase.
    pub row: PurchaseRow,
    /// Credit wasted on its token, micros (`None`: never wasted).
    pub wasted_credit_micros: Option<u64>,
    /// Why it was wasted.
    pub waste_reason: Option<WasteReason>,
    /// When.
    pub wasted_at_ms: Option<i64>,
}

/// One seller's credit as the ledger knows it, over every stored purchase
/// and call (every daemon sharing the ledger).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SellerCreditHistory {
    /// The seller.
    pub seller_id: String,
    /// Completed purchases.
    pub purchases: u64,
    /// Failed purchase attempts.
    pub purchase_failures: u64,
    /// Credit bought, micros.
    pub purchased_credit_micros: u64,
    /// Paid for it, USD micros.
    pub paid_usd_micros: u64,
    /// Credit the sellers settled calls for (`calls.settled_credit_micros`
    /// of the calls the seller answered), micros.
    pub spent_credit_micros: u64,
    /// Credit wasted, micros.
    pub wasted_credit_micros: u64,
}

/// What the credit tracker is rebuilt from at start-up.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CreditHistory {
    /// Per seller, by id (bytewise).
    pub sellers: Vec<SellerCreditHistory>,
    /// Tokens with waste recorded: (seller id, fingerprint, wasted micros).
    pub wasted_tokens: Vec<(String, String, u64)>,
}

/// One seller's wasted credit ([`Ledger::wasted_credit_by_seller`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SellerWaste {
    /// The seller.
    pub seller_id: String,
    /// Credit wasted, micros.
    pub wasted_credit_micros: u64,
    /// Purchases whose token wasted credit.
    pub wasted_purchases: u64,
}

const PURCHASE_COLUMNS: &str = "id, seller_id, model, payment_method, status, quote_id, \
    credit_micros, price_usd_micros, payment_reference, token_fingerprint, error, \
    created_at_ms, completed_at_ms, expires_at_ms";

/// The purchase journal's sink: [`PurchaseEvent`]s into the ledger.
#[derive(Debug, Clone)]
pub struct PurchaseLog(pub Ledger);

impl BatchSink for PurchaseLog {
    type Item = PurchaseEvent;

    async fn write_batch(&self, batch: &[PurchaseEvent]) -> Result<(), StoreError> {
        self.0.write_purchase_events(batch).await
    }
}

impl Ledger {
    /// Applies `events` in order, in one transaction. Idempotent: a
    /// purchase replaces the row of its `id`, waste replaces the waste of
    /// its token, so a batch retried after an ambiguous failure leaves the
    /// same state.
    pub async fn write_purchase_events(&self, events: &[PurchaseEvent]) -> Result<(), StoreError> {
        if events.is_empty() {
            return Ok(());
        }
        let upsert = format!(
            "INSERT INTO purchases ({PURCHASE_COLUMNS}) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14) \
             ON CONFLICT (id) DO UPDATE SET \
               seller_id = excluded.seller_id, model = excluded.model, \
               payment_method = excluded.payment_method, status = excluded.status, \
               quote_id = excluded.quote_id, credit_micros = excluded.credit_micros, \
               price_usd_micros = excluded.price_usd_micros, \
               payment_reference = excluded.payment_reference, \
               token_fingerprint = excluded.token_fingerprint, error = excluded.error, \
               created_at_ms = excluded.created_at_ms, \
               completed_at_ms = excluded.completed_at_ms, \
               expires_at_ms = excluded.expires_at_ms"
        );
        let waste = "UPDATE purchases SET wasted_credit_micros = $1, waste_reason = $2, \
             wasted_at_ms = $3 \
             WHERE token_fingerprint = $4 AND seller_id = $5 AND status = 'completed'";
        with_pool!(self, pool => write_transaction!(pool, |tx| {
            for event in events {
                match event {
                    PurchaseEvent::Purchase(p) => {
                        sqlx::query(&upsert)
                            .bind(p.id.as_str())
                            .bind(p.seller_id.as_str())
                            .bind(p.model.as_deref())
                            .bind(p.payment_method.as_str())
                            .bind(p.status.as_str())
                            .bind(p.quote_id.as_deref())
                            .bind(p.credit_micros.map(saturating_i64))
                            .bind(p.price_usd_micros.map(saturating_i64))
                            .bind(p.payment_reference.as_deref())
                            .bind(p.token_fingerprint.as_deref())
                            .bind(p.error.as_deref())
                            .bind(p.created_at_ms)
                            .bind(p.completed_at_ms)
                            .bind(p.expires_at_ms)
                            .execute(&mut *tx)
                            .await?;
                    }
                    PurchaseEvent::Waste(w) => {
                        sqlx::query(waste)
                            .bind(saturating_i64(w.wasted_credit_micros))
                            .bind(w.reason.map(WasteReason::as_str))
                            .bind(w.at_ms)
                            .bind(w.token_fingerprint.as_str())
                            .bind(w.seller_id.as_str())
                            .execute(&mut *tx)
                            .await?;
                    }
                }
            }
        }))
    }

    /// The newest purchase attempts first (by `created_at_ms`, then `id`),
    /// at most `limit`. A row whose payment method or status this version
    /// does not know is skipped.
    pub async fn recent_purchases(&self, limit: u32) -> Result<Vec<StoredPurchase>, StoreError> {
        self.purchases_where("", limit).await
    }

    /// The wallet purchases left `pending` (the user had not paid when the
    /// daemon stopped), newest first, at most `limit`: the daemon polls
    /// them again at start-up.
    pub async fn pending_purchases(&self, limit: u32) -> Result<Vec<PurchaseRow>, StoreError> {
        let rows = self
            .purchases_where("WHERE status = 'pending'", limit)
            .await?;
        Ok(rows.into_iter().map(|p| p.row).collect())
    }

    /// The purchases matching `filter` (a fixed SQL `WHERE` clause, or
    /// empty), newest first, at most `limit`.
    async fn purchases_where(
        &self,
        filter: &'static str,
        limit: u32,
    ) -> Result<Vec<StoredPurchase>, StoreError> {
        let sql = format!(
            "SELECT {PURCHASE_COLUMNS}, wasted_credit_micros, waste_reason, wasted_at_ms \
             FROM purchases {filter} ORDER BY created_at_ms DESC, id DESC LIMIT $1"
        );
        with_pool!(self, pool => {
            let rows = sqlx::query(&sql).bind(i64::from(limit)).fetch_all(pool).await?;
            let mut out = Vec::with_capacity(rows.len());
            for row in &rows {
                let method = row.text_col("payment_method")?;
                let status = row.text_col("status")?;
                let (Some(payment_method), Some(status)) =
                    (PaymentMethod::parse(&method), PurchaseStatus::parse(&status))
                else {
                    continue;
                };
                out.push(StoredPurchase {
                    row: PurchaseRow {
                        id: row.text_col("id")?,
                        seller_id: row.text_col("seller_id")?,
                        model: row.opt_text_col("model")?,
                        payment_method,
                        status,
                        quote_id: row.opt_text_col("quote_id")?,
                        credit_micros: non_negative(row.opt_i64_col("credit_micros")?),
                        price_usd_micros: non_negative(row.opt_i64_col("price_usd_micros")?),
                        payment_reference: row.opt_text_col("payment_reference")?,
                        token_fingerprint: row.opt_text_col("token_fingerprint")?,
                        error: row.opt_text_col("error")?,
                        created_at_ms: row.i64_col("created_at_ms")?,
                        completed_at_ms: row.opt_i64_col("completed_at_ms")?,
                        expires_at_ms: row.opt_i64_col("expires_at_ms")?,
                    },
                    wasted_credit_micros: non_negative(row.opt_i64_col("wasted_credit_micros")?),
                    waste_reason: row
                        .opt_text_col("waste_reason")?
                        .as_deref()
                        .and_then(WasteReason::parse),
                    wasted_at_ms: row.opt_i64_col("wasted_at_ms")?,
                });
            }
            Ok(out)
        })
    }

    /// Wasted credit per seller, over every stored purchase (all reasons),
    /// by seller id; sellers that wasted nothing are left out. The figure
    /// `/v1/credit` shows, for per-seller reports (`tokenbuddyd sellers`).
    pub async fn wasted_credit_by_seller(&self) -> Result<Vec<SellerWaste>, StoreError> {
        with_pool!(self, pool => {
            let rows = sqlx::query(
                "SELECT seller_id, \
                   CAST(SUM(wasted_credit_micros) AS BIGINT) AS wasted, \
                   COUNT(*) AS n \
                 FROM purchases WHERE wasted_credit_micros > 0 GROUP BY seller_id",
            )
            .fetch_all(pool)
            .await?;
            let mut out = rows
                .iter()
                .map(|row| {
                    Ok(SellerWaste {
                        seller_id: row.text_col("seller_id")?,
                        wasted_credit_micros: unsigned_or_zero(row.i64_col("wasted")?),
                        wasted_purchases: unsigned_or_zero(row.i64_col("n")?),
                    })
                })
                .collect::<Result<Vec<_>, StoreError>>()?;
            out.sort_by(|a, b| a.seller_id.cmp(&b.seller_id));
            Ok(out)
        })
    }

    /// The credit tracker's figures per seller from the stored purchases
    /// (completed: bought, paid, wasted; failed: failures) and the calls'
    /// settled credit, plus the tokens with waste recorded.
    pub async fn credit_history(&self) -> Result<CreditHistory, StoreError> {
        let mut per: BTreeMap<String, SellerCreditHistory> = BTreeMap::new();
        let (purchases, spent, wasted) = with_pool!(self, pool => {
            let purchases = sqlx::query(
                "SELECT seller_id, \
                   COUNT(CASE WHEN status = 'completed' THEN 1 END) AS purchases, \
                   COUNT(CASE WHEN status = 'failed' THEN 1 END) AS failures, \
                   CAST(COALESCE(SUM(CASE WHEN status = 'completed' THEN credit_micros END), 0) \
                     AS BIGINT) AS credit, \
                   CAST(COALESCE(SUM(CASE WHEN status = 'completed' THEN price_usd_micros END), 0) \
                     AS BIGINT) AS paid, \
                   CAST(COALESCE(SUM(CASE WHEN status = 'completed' THEN wasted_credit_micros END), 0) \
                     AS BIGINT) AS wasted \
                 FROM purchases GROUP BY seller_id",
            )
            .fetch_all(pool)
            .await?
            .iter()
            .map(|row| {
                Ok(SellerCreditHistory {
                    seller_id: row.text_col("seller_id")?,
                    purchases: unsigned_or_zero(row.i64_col("purchases")?),
                    purchase_failures: unsigned_or_zero(row.i64_col("failures")?),
                    purchased_credit_micros: unsigned_or_zero(row.i64_col("credit")?),
                    paid_usd_micros: unsigned_or_zero(row.i64_col("paid")?),
                    spent_credit_micros: 0,
                    wasted_credit_micros: unsigned_or_zero(row.i64_col("wasted")?),
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
            let spent = sqlx::query(
                "SELECT winner, CAST(SUM(settled_credit_micros) AS BIGINT) AS spent \
                 FROM calls WHERE winner IS NOT NULL AND settled_credit_micros > 0 \
                 GROUP BY winner",
            )
            .fetch_all(pool)
            .await?
            .iter()
            .map(|row| Ok((row.text_col("winner")?, unsigned_or_zero(row.i64_col("spent")?))))
            .collect::<Result<Vec<_>, StoreError>>()?;
            let wasted = sqlx::query(
                "SELECT seller_id, token_fingerprint, wasted_credit_micros FROM purchases \
                 WHERE status = 'completed' AND wasted_credit_micros > 0 \
                   AND token_fingerprint IS NOT NULL",
            )
            .fetch_all(pool)
            .await?
            .iter()
            .map(|row| {
                Ok((
                    row.text_col("seller_id")?,
                    row.text_col("token_fingerprint")?,
                    unsigned_or_zero(row.i64_col("wasted_credit_micros")?),
                ))
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
            (purchases, spent, wasted)
        });
        for p in purchases {
            per.insert(p.seller_id.clone(), p);
        }
        // Only sellers settle credit (a manual provider's calls have none).
        for (seller, amount) in spent {
            per.entry(seller.clone())
                .or_insert_with(|| SellerCreditHistory {
                    seller_id: seller,
                    ..SellerCreditHistory::default()
                })
                .spent_credit_micros = amount;
        }
        let mut wasted_tokens = wasted;
        wasted_tokens.sort();
        Ok(CreditHistory {
            sellers: per.into_values().collect(),
            wasted_tokens,
        })
    }
}

fn saturating_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn non_negative(v: Option<i64>) -> Option<u64> {
    v.and_then(|v| u64::try_from(v).ok())
}

fn unsigned_or_zero(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

impl crate::writer::LedgerItem for PurchaseEvent {
    fn describe(&self) -> String {
        match self {
            PurchaseEvent::Purchase(p) => format!("purchase {} of seller {}", p.id, p.seller_id),
            PurchaseEvent::Waste(w) => format!(
                "waste of token {} of seller {}",
                w.token_fingerprint, w.seller_id
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_round_trip_and_unknown_ones_are_refused() {
        use PurchaseStatus::*;
        for status in [
            Quoted, Completed, Failed, Declined, Pending, Expired, Cancelled,
        ] {
            assert_eq!(PurchaseStatus::parse(status.as_str()), Some(status));
        }
        assert_eq!(Pending.as_str(), "pending");
        assert_eq!(Expired.as_str(), "expired");
        assert_eq!(Cancelled.as_str(), "cancelled");
        assert_eq!(PurchaseStatus::parse("paid"), None);
    }
}
