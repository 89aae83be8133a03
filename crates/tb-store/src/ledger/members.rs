//! Member keys (`member_keys` table, `tokenbuddyd keys`): who may use a
//! team gateway, stored in the ledger so every daemon sharing a PostgreSQL
//! ledger sees the same keys. Only the SHA-256 of a key is stored.

use super::{Ledger, Pool};
use crate::StoreError;
use crate::codec::RowExt;

/// One member key as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberKeyRow {
    /// The key id (`keys revoke --id`); not secret.
    pub id: String,
    /// The member's name.
    pub member: String,
    /// SHA-256 (hex) of the key.
    pub key_hash: String,
    /// The models the key may use; `None`: every model.
    pub models: Option<Vec<String>>,
    /// When the key was created, unix ms.
    pub created_at_ms: i64,
    /// When it was revoked, unix ms; `None` while valid.
    pub revoked_at_ms: Option<i64>,
    /// The member's budget, USD micros.
    pub budget_usd_micros: Option<i64>,
    /// Requests per minute window.
    pub rpm: Option<i64>,
    /// Tokens per minute window.
    pub tpm: Option<i64>,
}

/// A member's shared counters, as [`Ledger::count_member_request`] leaves
/// them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemberCounters {
    /// Requests in the window, this one included.
    pub requests: u64,
    /// Input + output tokens of the member's calls started in the window.
    pub tokens: u64,
    /// The member's recorded spend, USD micros.
    pub spent_usd_micros: i64,
}

/// Which keys [`Ledger::revoke_member_keys`] revokes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeySelector<'a> {
    /// Every key of the member.
    Member(&'a str),
    /// The one key with this id.
    Id(&'a str),
}

const KEY_COLUMNS: &str =
    "id, member, key_hash, models, created_at_ms, revoked_at_ms, budget_usd_micros, rpm, tpm";

impl Ledger {
    /// Stores a new key.
    pub async fn create_member_key(&self, key: &MemberKeyRow) -> Result<(), StoreError> {
        let sql = format!(
            "INSERT INTO member_keys ({KEY_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
        );
        let models = key.models.as_ref().map(|m| m.join(","));
        with_pool!(self, pool => {
            sqlx::query(&sql)
                .bind(key.id.as_str())
                .bind(key.member.as_str())
                .bind(key.key_hash.as_str())
                .bind(models.as_deref())
                .bind(key.created_at_ms)
                .bind(key.revoked_at_ms)
                .bind(key.budget_usd_micros)
                .bind(key.rpm)
                .bind(key.tpm)
                .execute(pool)
                .await?;
            Ok(())
        })
    }

    /// Every key, revoked ones included, oldest first.
    pub async fn member_keys(&self) -> Result<Vec<MemberKeyRow>, StoreError> {
        self.select_keys("").await
    }

    /// The keys not revoked, oldest first: what the proxy accepts.
    pub async fn active_member_keys(&self) -> Result<Vec<MemberKeyRow>, StoreError> {
        self.select_keys("WHERE revoked_at_ms IS NULL").await
    }

    async fn select_keys(&self, filter: &str) -> Result<Vec<MemberKeyRow>, StoreError> {
        let sql =
            format!("SELECT {KEY_COLUMNS} FROM member_keys {filter} ORDER BY created_at_ms, id");
        with_pool!(self, pool => {
            let rows = sqlx::query(&sql).fetch_all(pool).await?;
            let mut out = Vec::with_capacity(rows.len());
            for row in &rows {
                out.push(MemberKeyRow {
                    id: row.text_col("id")?,
                    member: row.text_col("member")?,
                    key_hash: row.text_col("key_hash")?,
                    models: row
                        .opt_text_col("models")?
                        .map(|m| m.split(',').map(str::to_string).collect()),
                    created_at_ms: row.i64_col("created_at_ms")?,
                    revoked_at_ms: row.opt_i64_col("revoked_at_ms")?,
                    budget_usd_micros: row.opt_i64_col("budget_usd_micros")?,
                    rpm: row.opt_i64_col("rpm")?,
                    tpm: row.opt_i64_col("tpm")?,
                });
            }
            Ok(out)
        })
    }

    /// Revokes the selected keys still valid at `at_ms`; returns how many.
    pub async fn revoke_member_keys(
        &self,
        which: KeySelector<'_>,
        at_ms: i64,
    ) -> Result<u64, StoreError> {
        let (column, value) = match which {
            KeySelector::Member(m) => ("member", m),
            KeySelector::Id(id) => ("id", id),
        };
        let sql = format!(
            "UPDATE member_keys SET revoked_at_ms = $1 WHERE {column} = $2 AND revoked_at_ms IS NULL"
        );
        with_pool!(self, pool => {
            let done = sqlx::query(&sql).bind(at_ms).bind(value).execute(pool).await?;
            Ok(done.rows_affected())
        })
    }

    /// Counts one request of `member` in the minute window starting at
    /// `window_start_ms` (one atomic upsert, so concurrent daemons never
    /// lose a count) and reads the member's tokens in the window and
    /// total spend from the recorded calls.
    pub async fn count_member_request(
        &self,
        member: &str,
        window_start_ms: i64,
    ) -> Result<MemberCounters, StoreError> {
        let upsert = "INSERT INTO member_windows (member, window_start_ms, requests) VALUES ($1, $2, 1) \
             ON CONFLICT (member, window_start_ms) DO UPDATE SET requests = member_windows.requests + 1 \
             RETURNING requests";
        let sums = "SELECT \
               CAST(COALESCE(SUM(CASE WHEN started_at_ms >= $2 \
                 THEN COALESCE(input_tokens, 0) + COALESCE(output_tokens, 0) ELSE 0 END), 0) AS BIGINT) AS tokens, \
               CAST(COALESCE(SUM(cost_usd_micros), 0) AS BIGINT) AS spent \
             FROM calls WHERE member = $1";
        let (requests, tokens, spent) = with_pool!(self, pool => {
            let row = sqlx::query(upsert).bind(member).bind(window_start_ms).fetch_one(pool).await?;
            let requests = row.i64_col("requests")?;
            let row = sqlx::query(sums).bind(member).bind(window_start_ms).fetch_one(pool).await?;
            Ok::<_, StoreError>((requests, row.i64_col("tokens")?, row.i64_col("spent")?))
        })?;
        Ok(MemberCounters {
            requests: u64::try_from(requests).unwrap_or(0),
            tokens: u64::try_from(tokens).unwrap_or(0),
            spent_usd_micros: spent,
        })
    }

    /// Deletes the request windows that ended before `before_ms`.
    pub async fn delete_member_windows_before(&self, before_ms: i64) -> Result<u64, StoreError> {
        with_pool!(self, pool => {
            let done = sqlx::query("DELETE FROM member_windows WHERE window_start_ms < $1")
                .bind(before_ms)
                .execute(pool)
                .await?;
            Ok(done.rows_affected())
        })
    }
}
