//! The ledger handle: opening either backend and every query the product
//! needs.

use std::collections::HashSet;
use std::str::FromStr;
use std::sync::{Arc, LazyLock, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{Executor, Row};
use tb_billing::record::CallRecord;
use tb_billing::series::CallFilter;

use crate::StoreError;
use crate::codec::{CALL_COLUMNS, EncodedCall, RowExt, bind_call, decode_call};
use crate::target::{Backend, LedgerTarget, is_postgres_url, valid_schema_name};

static SQLITE_MIGRATOR: Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATOR: Migrator = sqlx::migrate!("./migrations/postgres");

/// How long a SQLite connection waits for another writer (another process
/// on the same file, e.g. a CLI next to the daemon) before failing.
const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// One writer task plus readers (control plane, CLI queries).
const SQLITE_MAX_CONNECTIONS: u32 = 4;
const POSTGRES_MAX_CONNECTIONS: u32 = 8;
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);

/// The largest multi-row `INSERT` (rows). Batches are cut into power-of-two
/// chunks no larger than this, so at most `log2(MAX_CHUNK) + 1` distinct
/// statements exist and each stays in the prepared-statement cache.
/// 128 rows × 47 columns = 6,016 parameters, well under both engines' caps.
const MAX_CHUNK: usize = 128;

/// The ledger: every call record, plus seller tokens, purchases and small
/// named values. Cheap to clone (it is a connection pool).
#[derive(Debug, Clone)]
pub struct Ledger {
    pool: Pool,
}

#[derive(Debug, Clone)]
enum Pool {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// Runs the same code against whichever pool the ledger holds. The body is
/// compiled once per backend, so `sqlx::query(..)` infers its database from
/// the pool.
macro_rules! with_pool {
    ($ledger:expr, $pool:ident => $body:expr) => {
        match &$ledger.pool {
            Pool::Sqlite($pool) => $body,
            Pool::Postgres($pool) => $body,
        }
    };
}

/// Runs `$write` (which uses `$conn`) on a connection taken from `$pool`
/// for it. A connection whose write failed is closed, not returned to the
/// pool: after a failed write on SQLite, sqlx's idea of the connection can
/// be wrong, and a connection SQLite opened read-only while the file was not
/// writable stays read-only after it is mended (decisions.md, "A connection
/// whose write failed is closed").
macro_rules! closing_on_failure {
    ($pool:expr, |$conn:ident| $write:expr) => {{
        let mut $conn = $pool.acquire().await?;
        let result = $write;
        if result.is_err() {
            $conn.close_on_drop();
        }
        result
    }};
}

/// Runs `$body` in a transaction and commits it, closing the connection if
/// any of it fails ([`closing_on_failure!`]). Inside `$body`, `?` ends the
/// transaction with that error (rolled back).
macro_rules! write_transaction {
    ($pool:expr, |$tx:ident| $body:expr) => {
        closing_on_failure!($pool, |conn| {
            let result: Result<_, StoreError> = async {
                let mut $tx = sqlx::Connection::begin(&mut *conn).await?;
                let value = $body;
                $tx.commit().await?;
                Ok(value)
            }
            .await;
            result
        })
    };
}

/// Runs one write statement, closing the connection if it fails
/// ([`closing_on_failure!`]).
macro_rules! write_statement {
    ($pool:expr, $query:expr) => {
        closing_on_failure!($pool, |conn| $query.execute(&mut *conn).await)
    };
}

mod members;
mod probes;
mod purchases;
mod sellers;
mod series;
mod team;
mod tokens;
pub use members::{
    KeySelector, MemberAdmission, MemberCounters, MemberKeyRow, member_pg_round_trips,
};
mod video_jobs;
pub use probes::{ProbeCheckRow, ProbeRun};
pub use purchases::{
    CreditHistory, PurchaseEvent, PurchaseLog, PurchaseRow, PurchaseStatus, SellerCreditHistory,
    SellerWaste, StoredPurchase, WasteReason, WasteRow,
};
pub use series::{MAX_SERIES_SAMPLES, SeriesSamples};
pub use team::{BudgetReset, TeamSummary};
pub use team::{
    LockAttempt, Reservation, TeamBudget, TeamLock, TeamStore, budget_after, lease_left,
    settled_balance,
};
pub use tokens::TokenRow;
pub use video_jobs::VideoJob;

/// A position in the recent-first listing: the last record of a page.
/// Records are ordered by `started_at_ms` descending, then `id` descending,
/// so equal timestamps still page without gaps or repeats.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallCursor {
    /// The record's `started_at_ms`.
    pub started_at_ms: i64,
    /// The record's `id`.
    pub id: String,
}

impl From<&CallRecord> for CallCursor {
    fn from(r: &CallRecord) -> CallCursor {
        CallCursor {
            started_at_ms: r.started_at_ms,
            id: r.id.clone(),
        }
    }
}

/// What [`Ledger::usage_summary`] groups by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GroupBy {
    /// The model sent upstream (`model`).
    Model,
    /// The upstream that answered (`winner`); calls nothing answered are
    /// grouped under the empty key `""`.
    Upstream,
    /// The UTC day the call started, `YYYY-MM-DD`.
    Day,
    /// The member whose key authenticated the call; calls made with the
    /// access token are grouped under the empty key `""`.
    Member,
}

/// One group of a usage summary. Token and money sums skip unknown (NULL)
/// values: unknown is not zero.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageRow {
    /// The model, upstream (`""` for none) or UTC day.
    pub key: String,
    /// Calls in the group.
    pub calls: u64,
    /// Calls that ended `ok`.
    pub ok_calls: u64,
    /// Sum of known `input_tokens`.
    pub input_tokens: u64,
    /// Sum of known `cached_input_tokens`.
    pub cached_input_tokens: u64,
    /// Sum of known `output_tokens`.
    pub output_tokens: u64,
    /// Sum of known costs, USD micros.
    pub cost_usd_micros: i64,
    /// Sum of known savings, USD micros.
    pub saved_usd_micros: i64,
    /// Calls whose cost is unknown (excluded from `cost_usd_micros`).
    pub unpriced_calls: u64,
}

/// Spend vs savings over a window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Totals {
    /// Calls in the window.
    pub calls: u64,
    /// Sum of known costs, USD micros.
    pub cost_usd_micros: i64,
    /// Sum of known savings, USD micros.
    pub saved_usd_micros: i64,
    /// Calls whose cost is unknown (excluded from the sum).
    pub unpriced_calls: u64,
}

impl Ledger {
    /// Opens (creating if needed) the ledger at `target` and brings its
    /// schema up to date.
    ///
    /// SQLite: the file and its directory are created if missing; WAL mode,
    /// `synchronous = NORMAL`, a 5 s busy timeout. PostgreSQL: with a
    /// `schema`, every connection's `search_path` is set to it and it is
    /// created if missing. Fails (never falls back) when the server cannot
    /// be reached.
    pub async fn open(target: &LedgerTarget) -> Result<Ledger, StoreError> {
        match target {
            LedgerTarget::Sqlite(path) => Self::open_sqlite(path).await,
            LedgerTarget::Postgres { url, schema } => {
                Self::open_postgres(url, schema.as_deref()).await
            }
        }
    }

    async fn open_sqlite(path: &std::path::Path) -> Result<Ledger, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            tokio::fs::create_dir_all(dir).await.map_err(|e| {
                StoreError::InvalidTarget(format!("cannot create {}: {e}", dir.display()))
            })?;
        }
        let pool = sqlite_pool_options(SQLITE_MAX_CONNECTIONS)
            .connect_with(sqlite_connect_options(path))
            .await?;
        SQLITE_MIGRATOR.run(&pool).await?;
        Ok(Ledger {
            pool: Pool::Sqlite(pool),
        })
    }

    async fn open_postgres(url: &str, schema: Option<&str>) -> Result<Ledger, StoreError> {
        if !is_postgres_url(url) {
            return Err(StoreError::InvalidTarget(
                "a PostgreSQL ledger URL starts with postgres:// or postgresql://".into(),
            ));
        }
        let options = PgConnectOptions::from_str(url)?;
        let mut pool_options = PgPoolOptions::new()
            .max_connections(POSTGRES_MAX_CONNECTIONS)
            .acquire_timeout(ACQUIRE_TIMEOUT);
        if let Some(schema) = schema {
            if !valid_schema_name(schema) {
                return Err(StoreError::InvalidTarget(format!(
                    "schema name {schema:?}: use letters, digits and _ (not first), at most 63"
                )));
            }
            let set_path: Arc<str> = format!("SET search_path TO \"{schema}\"").into();
            pool_options = pool_options.after_connect(move |conn, _meta| {
                let set_path = Arc::clone(&set_path);
                Box::pin(async move {
                    conn.execute(&*set_path).await?;
                    Ok(())
                })
            });
        }
        let pool = pool_options.connect_with(options).await?;
        if let Some(schema) = schema {
            pool.execute(format!("CREATE SCHEMA IF NOT EXISTS \"{schema}\"").as_str())
                .await?;
        }
        POSTGRES_MIGRATOR.run(&pool).await?;
        Ok(Ledger {
            pool: Pool::Postgres(pool),
        })
    }

    /// Which engine this ledger uses.
    pub fn backend(&self) -> Backend {
        match self.pool {
            Pool::Sqlite(_) => Backend::Sqlite,
            Pool::Postgres(_) => Backend::Postgres,
        }
    }

    /// Closes every connection (waits for checked-out ones to return).
    pub async fn close(&self) {
        with_pool!(self, pool => pool.close().await)
    }

    /// One round trip (`SELECT 1`): whether the ledger answers now
    /// (readiness probes).
    pub async fn ping(&self) -> Result<(), StoreError> {
        with_pool!(self, pool => {
            sqlx::query("SELECT 1").execute(pool).await?;
            Ok(())
        })
    }

    /// Stores `records` in one transaction, with multi-row inserts.
    /// Idempotent: a record whose `id` is already stored is skipped, so a
    /// batch retried after an ambiguous failure (commit sent, answer lost)
    /// is not duplicated and does not fail. Returns how many rows were new.
    pub async fn insert_batch(&self, records: &[CallRecord]) -> Result<u64, StoreError> {
        if records.is_empty() {
            return Ok(0);
        }
        let encoded = records
            .iter()
            .map(EncodedCall::new)
            .collect::<Result<Vec<_>, _>>()?;
        let backend = self.backend();
        // Only member calls need to know which ids were new (their spend
        // counts once); any other batch skips `RETURNING` and its rows.
        let settle = members::MemberSettle::of(records);
        let returning = settle.is_some();
        with_pool!(self, pool => write_transaction!(pool, |tx| {
            let mut inserted = HashSet::new();
            let mut new_rows = 0;
            let mut rest = encoded.as_slice();
            while !rest.is_empty() {
                let rows = chunk_len(rest.len());
                let (chunk, tail) = rest.split_at(rows);
                let mut query = sqlx::query(insert_sql(backend, rows, returning));
                for e in chunk {
                    query = bind_call!(query, e);
                }
                if returning {
                    for row in query.fetch_all(&mut *tx).await? {
                        inserted.insert(row.text_col("id")?);
                    }
                } else {
                    new_rows += query.execute(&mut *tx).await?.rows_affected();
                }
                rest = tail;
            }
            // Member calls: their reservations become their actual cost.
            if let Some(settle) = settle {
                let sql = settle.delete_sql();
                let mut query = sqlx::query(&sql);
                for id in settle.ids() {
                    query = query.bind(id);
                }
                self.trip();
                let mut released = Vec::new();
                for row in query.fetch_all(&mut *tx).await? {
                    released.push(members::Released::from_row(&row)?);
                }
                for delta in settle.deltas(&inserted, &released) {
                    let (member, spent, given_back, window, tokens, fresh) = delta.binds();
                    self.trip();
                    sqlx::query(members::SETTLE_UPSERT)
                        .bind(member)
                        .bind(spent)
                        .bind(given_back)
                        .bind(window)
                        .bind(tokens)
                        .bind(fresh)
                        .execute(&mut *tx)
                        .await?;
                }
            }
            if returning { inserted.len() as u64 } else { new_rows }
        }))
    }

    /// The most recent calls, newest first (`started_at_ms` then `id`,
    /// both descending). Pass the last record of a page as `before` to get
    /// the next page.
    pub async fn recent_calls(
        &self,
        limit: u32,
        before: Option<&CallCursor>,
    ) -> Result<Vec<CallRecord>, StoreError> {
        self.recent_calls_matching(limit, before, &CallFilter::default())
            .await
    }

    /// Calls that started after `started_after_ms`, oldest first.
    ///
    /// Records are written when a call ends, so a long call can appear
    /// after later-started short ones; to follow new records as they are
    /// written use [`Ledger::calls_after_seq`].
    pub async fn calls_since(
        &self,
        started_after_ms: i64,
        limit: u32,
    ) -> Result<Vec<CallRecord>, StoreError> {
        self.calls_by(&SELECT_SINCE, started_after_ms, i64::from(limit))
            .await
    }

    /// Runs a query for call records with two integer parameters (`$1`,
    /// `$2`) and decodes the rows.
    pub(crate) async fn calls_by(
        &self,
        sql: &str,
        first: i64,
        second: i64,
    ) -> Result<Vec<CallRecord>, StoreError> {
        with_pool!(self, pool => {
            sqlx::query(sql)
                .bind(first)
                .bind(second)
                .fetch_all(pool)
                .await?
                .iter()
                .map(decode_call)
                .collect()
        })
    }

    /// The write position of the newest stored record (0 when empty). Take
    /// it before listing recent calls, then poll
    /// [`Ledger::calls_after_seq`] from it (`calls --tail`).
    pub async fn last_seq(&self) -> Result<i64, StoreError> {
        with_pool!(self, pool => {
            let row = sqlx::query("SELECT CAST(COALESCE(MAX(seq), 0) AS BIGINT) AS s FROM calls")
                .fetch_one(pool)
                .await?;
            Ok(row.try_get::<i64, _>("s")?)
        })
    }

    /// Records written after position `after_seq`, in write order, each
    /// with its position. On a PostgreSQL ledger shared by several daemons
    /// a concurrent transaction may commit a lower position later; a
    /// single daemon writes in order.
    pub async fn calls_after_seq(
        &self,
        after_seq: i64,
        limit: u32,
    ) -> Result<Vec<(i64, CallRecord)>, StoreError> {
        with_pool!(self, pool => {
            sqlx::query(&SELECT_AFTER_SEQ)
                .bind(after_seq)
                .bind(i64::from(limit))
                .fetch_all(pool)
                .await?
                .iter()
                .map(|row| Ok((row.i64_col("seq")?, decode_call(row)?)))
                .collect()
        })
    }

    /// Usage per model, upstream or UTC day for calls started at or after
    /// `since_ms`, ordered by key. Unknown tokens and costs are left out of
    /// the sums; calls with an unknown cost are counted in `unpriced_calls`.
    /// `rejected` calls (malformed requests refused before any upstream)
    /// are left out: they are neither usage nor an upstream's failure.
    pub async fn usage_summary(
        &self,
        since_ms: i64,
        by: GroupBy,
    ) -> Result<Vec<UsageRow>, StoreError> {
        let key = match (by, self.backend()) {
            (GroupBy::Model, _) => "model",
            (GroupBy::Upstream, _) => "COALESCE(winner, '')",
            (GroupBy::Member, _) => "COALESCE(member, '')",
            (GroupBy::Day, Backend::Sqlite) => {
                "strftime('%Y-%m-%d', started_at_ms / 1000, 'unixepoch')"
            }
            (GroupBy::Day, Backend::Postgres) => {
                "to_char(to_timestamp(started_at_ms / 1000) AT TIME ZONE 'UTC', 'YYYY-MM-DD')"
            }
        };
        let sql = format!(
            "SELECT {key} AS k, \
               COUNT(*) AS calls, \
               COUNT(CASE WHEN ok THEN 1 END) AS ok_calls, \
               CAST(COALESCE(SUM(input_tokens), 0) AS BIGINT) AS input_tokens, \
               CAST(COALESCE(SUM(cached_input_tokens), 0) AS BIGINT) AS cached_input_tokens, \
               CAST(COALESCE(SUM(output_tokens), 0) AS BIGINT) AS output_tokens, \
               CAST(COALESCE(SUM(cost_usd_micros), 0) AS BIGINT) AS cost, \
               CAST(COALESCE(SUM(saved_usd_micros), 0) AS BIGINT) AS saved, \
               COUNT(*) - COUNT(cost_usd_micros) AS unpriced_calls \
             FROM calls WHERE started_at_ms >= $1 AND outcome <> 'rejected' \
             GROUP BY 1 ORDER BY 1"
        );
        with_pool!(self, pool => {
            sqlx::query(&sql)
                .bind(since_ms)
                .fetch_all(pool)
                .await?
                .iter()
                .map(|row| {
                    Ok(UsageRow {
                        key: row.text_col("k")?,
                        calls: unsigned(row, "calls")?,
                        ok_calls: unsigned(row, "ok_calls")?,
                        input_tokens: unsigned(row, "input_tokens")?,
                        cached_input_tokens: unsigned(row, "cached_input_tokens")?,
                        output_tokens: unsigned(row, "output_tokens")?,
                        cost_usd_micros: row.i64_col("cost")?,
                        saved_usd_micros: row.i64_col("saved")?,
                        unpriced_calls: unsigned(row, "unpriced_calls")?,
                    })
                })
                .collect()
        })
    }

    /// The models (`model`, as sent upstream) of calls started at or after
    /// `since_ms`, most used first (ties by name): the focus set.
    /// `rejected` calls are left out (they name no usable model).
    pub async fn models_used_since(
        &self,
        since_ms: i64,
        limit: u32,
    ) -> Result<Vec<String>, StoreError> {
        with_pool!(self, pool => {
            sqlx::query(
                "SELECT model, COUNT(*) AS n FROM calls \
                 WHERE started_at_ms >= $1 AND outcome <> 'rejected' \
                 GROUP BY model ORDER BY n DESC, model ASC LIMIT $2",
            )
            .bind(since_ms)
            .bind(i64::from(limit))
            .fetch_all(pool)
            .await?
            .iter()
            .map(|row| Ok(row.text_col("model")?))
            .collect()
        })
    }

    /// Spend vs savings for calls started at or after `since_ms`
    /// (`rejected` calls left out).
    pub async fn totals(&self, since_ms: i64) -> Result<Totals, StoreError> {
        with_pool!(self, pool => {
            let row = sqlx::query(
                "SELECT COUNT(*) AS calls, \
                   CAST(COALESCE(SUM(cost_usd_micros), 0) AS BIGINT) AS cost, \
                   CAST(COALESCE(SUM(saved_usd_micros), 0) AS BIGINT) AS saved, \
                   COUNT(*) - COUNT(cost_usd_micros) AS unpriced_calls \
                 FROM calls WHERE started_at_ms >= $1 AND outcome <> 'rejected'",
            )
            .bind(since_ms)
            .fetch_one(pool)
            .await?;
            Ok(Totals {
                calls: unsigned(&row, "calls")?,
                cost_usd_micros: row.i64_col("cost")?,
                saved_usd_micros: row.i64_col("saved")?,
                unpriced_calls: unsigned(&row, "unpriced_calls")?,
            })
        })
    }

    /// Deletes calls that started before `before_ms` (`ledger.retention_days`).
    /// Returns how many were deleted.
    pub async fn delete_calls_before(&self, before_ms: i64) -> Result<u64, StoreError> {
        with_pool!(self, pool => {
            Ok(write_statement!(
                pool,
                sqlx::query("DELETE FROM calls WHERE started_at_ms < $1").bind(before_ms)
            )?
            .rows_affected())
        })
    }

    /// The value stored under `key` in `config_kv`.
    pub async fn config_get(&self, key: &str) -> Result<Option<String>, StoreError> {
        with_pool!(self, pool => {
            let row = sqlx::query("SELECT value FROM config_kv WHERE key = $1")
                .bind(key)
                .fetch_optional(pool)
                .await?;
            match row {
                Some(row) => Ok(Some(row.text_col("value")?)),
                None => Ok(None),
            }
        })
    }

    /// Stores `value` under `key` (replacing any previous value) and stamps
    /// it with the current time.
    pub async fn config_put(&self, key: &str, value: &str) -> Result<(), StoreError> {
        let now = now_ms();
        with_pool!(self, pool => {
            let upsert = sqlx::query(
                "INSERT INTO config_kv (key, value, updated_at_ms) VALUES ($1, $2, $3) \
                 ON CONFLICT (key) DO UPDATE \
                 SET value = excluded.value, updated_at_ms = excluded.updated_at_ms",
            )
            .bind(key)
            .bind(value)
            .bind(now);
            write_statement!(pool, upsert)?;
            Ok(())
        })
    }

    /// Removes `key` from `config_kv`; returns whether it was there.
    pub async fn config_delete(&self, key: &str) -> Result<bool, StoreError> {
        with_pool!(self, pool => {
            let delete = sqlx::query("DELETE FROM config_kv WHERE key = $1").bind(key);
            Ok(write_statement!(pool, delete)?.rows_affected() > 0)
        })
    }
}

fn sqlite_connect_options(path: &std::path::Path) -> SqliteConnectOptions {
    SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .busy_timeout(SQLITE_BUSY_TIMEOUT)
        .foreign_keys(true)
}

fn sqlite_pool_options(max_connections: u32) -> SqlitePoolOptions {
    SqlitePoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(ACQUIRE_TIMEOUT)
}

fn unsigned(row: &impl RowExt, col: &'static str) -> Result<u64, StoreError> {
    let v = row.i64_col(col)?;
    u64::try_from(v).map_err(|_| StoreError::Corrupt {
        id: String::new(),
        column: col,
        detail: format!("negative aggregate {v}"),
    })
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// The largest power of two ≤ `remaining`, capped at [`MAX_CHUNK`].
fn chunk_len(remaining: usize) -> usize {
    let capped = remaining.min(MAX_CHUNK);
    1 << (usize::BITS - 1 - capped.leading_zeros())
}

/// `INSERT … VALUES (…), (…) ON CONFLICT (id) DO NOTHING` for `rows` rows
/// (a power of two ≤ [`MAX_CHUNK`]), in `backend`'s placeholder style,
/// with `RETURNING id` when `returning`.
///
/// SQLite gets anonymous `?` placeholders: with numbered ones, binding
/// looks each parameter's name up in a list (`sqlite3_bind_parameter_name`
/// is a linear scan), which makes a 5,120-parameter insert quadratic and
/// several times slower than row-at-a-time inserts.
fn insert_sql(backend: Backend, rows: usize, returning: bool) -> &'static str {
    static SQL: OnceLock<[Vec<String>; 4]> = OnceLock::new();
    let all = SQL.get_or_init(|| {
        [
            (Backend::Sqlite, false),
            (Backend::Sqlite, true),
            (Backend::Postgres, false),
            (Backend::Postgres, true),
        ]
        .map(|(backend, returning)| {
            let mut out = Vec::new();
            let mut n = 1;
            while n <= MAX_CHUNK {
                out.push(build_insert_sql(backend, n, returning));
                n *= 2;
            }
            out
        })
    });
    let dialect = match backend {
        Backend::Sqlite => 0,
        Backend::Postgres => 2,
    };
    &all[dialect + usize::from(returning)][rows.trailing_zeros() as usize]
}

fn build_insert_sql(backend: Backend, rows: usize, returning: bool) -> String {
    let cols = CALL_COLUMNS.len();
    let mut sql = format!("INSERT INTO calls ({}) VALUES ", CALL_COLUMNS.join(", "));
    for r in 0..rows {
        if r > 0 {
            sql.push_str(", ");
        }
        sql.push('(');
        for c in 0..cols {
            if c > 0 {
                sql.push_str(", ");
            }
            match backend {
                Backend::Sqlite => sql.push('?'),
                Backend::Postgres => {
                    sql.push('$');
                    sql.push_str(&(r * cols + c + 1).to_string());
                }
            }
        }
        sql.push(')');
    }
    sql.push_str(" ON CONFLICT (id) DO NOTHING");
    if returning {
        sql.push_str(" RETURNING id");
    }
    sql
}

/// `SELECT seq, <every call column> FROM calls <tail>`.
fn select_calls(tail: &str) -> String {
    format!("SELECT seq, {} FROM calls {tail}", CALL_COLUMNS.join(", "))
}

static SELECT_SINCE: LazyLock<String> = LazyLock::new(|| {
    select_calls("WHERE started_at_ms > $1 ORDER BY started_at_ms ASC, id ASC LIMIT $2")
});
static SELECT_AFTER_SEQ: LazyLock<String> =
    LazyLock::new(|| select_calls("WHERE seq > $1 ORDER BY seq ASC LIMIT $2"));

#[cfg(test)]
mod tests {
    use super::*;
    use sqlx::Connection;

    /// A table whose trigger fails an insert the two ways SQLite fails a
    /// write on a full or read-only disk: the whole transaction rolled back
    /// (as a failed `COMMIT` is), or only the statement undone.
    const FAILING_TABLE: &str = "CREATE TABLE t (x TEXT NOT NULL); \
         CREATE TRIGGER t_fails BEFORE INSERT ON t BEGIN \
           SELECT RAISE(ROLLBACK, 'injected: the whole transaction') WHERE NEW.x = 'rollback'; \
           SELECT RAISE(ABORT, 'injected: the statement') WHERE NEW.x = 'abort'; \
         END;";

    /// Inserts `x` in a transaction: through [`write_transaction!`], or the
    /// way sqlx's pool does it alone. Whether it reported success.
    async fn insert(pool: &SqlitePool, x: &str, close_failed: bool) -> bool {
        let query = sqlx::query("INSERT INTO t (x) VALUES (?)").bind(x);
        if close_failed {
            let stored: Result<(), StoreError> = async {
                write_transaction!(pool, |tx| {
                    query.execute(&mut *tx).await?;
                })
            }
            .await;
            return stored.is_ok();
        }
        let Ok(mut tx) = pool.begin().await else {
            return false;
        };
        query.execute(&mut *tx).await.is_ok() && tx.commit().await.is_ok()
    }

    /// One connection (so each transaction gets the last one's, unless it
    /// was closed), a whole-transaction failure, a statement failure, then a
    /// good insert: what the file holds once the pool is closed.
    async fn kept_after_two_failures(close_failed: bool) -> Vec<String> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let pool = sqlite_pool_options(1)
            .connect_with(sqlite_connect_options(&path))
            .await
            .unwrap();
        sqlx::raw_sql(FAILING_TABLE).execute(&pool).await.unwrap();
        assert!(!insert(&pool, "rollback", close_failed).await);
        assert!(!insert(&pool, "abort", close_failed).await);
        assert!(insert(&pool, "kept", close_failed).await);
        pool.close().await;
        let mut conn = sqlx::SqliteConnection::connect_with(&sqlite_connect_options(&path))
            .await
            .unwrap();
        sqlx::query_scalar("SELECT x FROM t")
            .fetch_all(&mut conn)
            .await
            .unwrap()
    }

    /// Whether the pool hands out the connection that made the `marker`
    /// temp table (a temp table lives and dies with its connection).
    async fn marked_connection(pool: &SqlitePool) -> bool {
        let marked: i64 =
            sqlx::query_scalar("SELECT count(*) FROM temp.sqlite_master WHERE name = 'marker'")
                .fetch_one(pool)
                .await
                .unwrap();
        marked == 1
    }

    /// One write, as a statement or a transaction, on a one-connection pool
    /// whose connection is marked: whether the write succeeded, and whether
    /// the next caller gets the same connection.
    async fn write_then_reuse(x: &str, transaction: bool) -> (bool, bool) {
        let dir = tempfile::tempdir().unwrap();
        let pool = sqlite_pool_options(1)
            .connect_with(sqlite_connect_options(&dir.path().join("t.db")))
            .await
            .unwrap();
        sqlx::raw_sql(FAILING_TABLE).execute(&pool).await.unwrap();
        sqlx::query("CREATE TEMP TABLE marker (x)")
            .execute(&pool)
            .await
            .unwrap();
        let query = sqlx::query("INSERT INTO t (x) VALUES (?)").bind(x);
        let written: Result<(), StoreError> = async {
            if transaction {
                write_transaction!(&pool, |tx| {
                    query.execute(&mut *tx).await?;
                })
            } else {
                write_statement!(&pool, query)?;
                Ok(())
            }
        }
        .await;
        (written.is_ok(), marked_connection(&pool).await)
    }

    #[tokio::test]
    async fn a_connection_whose_write_failed_is_never_reused() {
        for transaction in [false, true] {
            assert_eq!(write_then_reuse("abort", transaction).await, (false, false));
            assert_eq!(write_then_reuse("fine", transaction).await, (true, true));
        }
    }

    #[tokio::test]
    async fn a_commit_after_failed_transactions_is_stored() {
        assert_eq!(kept_after_two_failures(true).await, ["kept"]);
    }

    /// Why [`write_transaction!`] closes a failed connection: reused, the
    /// same sequence reports success and stores nothing (sqlx 0.8.6). If a
    /// sqlx upgrade makes this fail, sqlx keeps its depth right by itself.
    #[tokio::test]
    async fn reusing_a_failed_connection_loses_the_commit() {
        assert_eq!(kept_after_two_failures(false).await, Vec::<String>::new());
    }

    #[test]
    fn chunks_are_powers_of_two_that_cover_the_batch() {
        for total in 1..=600 {
            let mut rest = total;
            let mut pieces = 0;
            while rest > 0 {
                let n = chunk_len(rest);
                assert!(n.is_power_of_two() && n <= MAX_CHUNK && n <= rest);
                rest -= n;
                pieces += 1;
            }
            assert!(pieces <= total.div_ceil(MAX_CHUNK) + 7, "{total}: {pieces}");
        }
    }

    #[test]
    fn insert_sql_numbers_every_parameter() {
        let pg = insert_sql(Backend::Postgres, 2, true);
        assert!(pg.contains("$1, "));
        assert!(pg.contains("$94)"));
        assert!(!pg.contains("$95"));
        assert!(pg.ends_with("ON CONFLICT (id) DO NOTHING RETURNING id"));
        for returning in [false, true] {
            for backend in [Backend::Sqlite, Backend::Postgres] {
                let marker = if backend == Backend::Sqlite { '?' } else { '$' };
                let one = insert_sql(backend, 1, returning);
                assert_eq!(one.matches(marker).count(), CALL_COLUMNS.len());
                assert_eq!(one.ends_with("RETURNING id"), returning);
                assert!(one.ends_with("ON CONFLICT (id) DO NOTHING") != returning);
                assert_eq!(
                    insert_sql(backend, MAX_CHUNK, returning)
                        .matches(marker)
                        .count(),
                    CALL_COLUMNS.len() * MAX_CHUNK
                );
            }
        }
        assert!(!insert_sql(Backend::Sqlite, 4, false).contains('$'));
    }
}
