//! What the seller audit reads (`tokenbuddyd sellers`, `GET /v1/sellers`):
//! the recent calls of a window and each seller's last purchase.

use std::collections::BTreeMap;

use sqlx::Row;
use tb_billing::record::CallRecord;

use super::{Ledger, Pool, select_calls};
use crate::StoreError;

impl Ledger {
    /// The calls started at or after `since_ms`, newest first, at most
    /// `limit` (the newest ones when the window holds more).
    pub async fn calls_in_window(
        &self,
        since_ms: i64,
        limit: u32,
    ) -> Result<Vec<CallRecord>, StoreError> {
        let sql = select_calls(
            "WHERE started_at_ms >= $1 AND outcome <> 'rejected' \
             ORDER BY started_at_ms DESC, id DESC LIMIT $2",
        );
        self.calls_by(&sql, since_ms, i64::from(limit)).await
    }

    /// When credit was last bought from each seller, unix ms: the newest of
    /// its stored tokens' `purchased_at_ms` and its completed purchases'
    /// `completed_at_ms`.
    pub async fn last_purchases(&self) -> Result<BTreeMap<String, i64>, StoreError> {
        let sql = "SELECT seller_id, CAST(MAX(t) AS BIGINT) AS t FROM ( \
                     SELECT seller_id, purchased_at_ms AS t FROM tokens \
                     UNION ALL \
                     SELECT seller_id, completed_at_ms AS t FROM purchases \
                       WHERE status = 'completed' AND completed_at_ms IS NOT NULL \
                   ) AS bought GROUP BY seller_id";
        with_pool!(self, pool => {
            let rows = sqlx::query(sql).fetch_all(pool).await?;
            let mut out = BTreeMap::new();
            for row in &rows {
                let seller: String = row.try_get("seller_id")?;
                let at: Option<i64> = row.try_get("t")?;
                if let Some(at) = at {
                    out.insert(seller, at);
                }
            }
            Ok(out)
        })
    }
}
