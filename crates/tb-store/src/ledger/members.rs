//! Member keys (`member_keys` table, `tokenbuddyd keys`): who may use a
//! team gateway, stored in the ledger so every daemon sharing a PostgreSQL
//! ledger sees the same keys. Only the SHA-256 of a key is stored.

use std::collections::{BTreeMap, HashMap, HashSet};

use std::sync::LazyLock;
use std::sync::atomic::{AtomicU64, Ordering};
use tb_billing::record::CallRecord;

use super::{Ledger, Pool};
use crate::StoreError;
use crate::codec::RowExt;

/// Binds `$1`…`$10` of the admission statements.
macro_rules! bind_admission {
    ($query:expr, $ask:expr) => {
        $query
            .bind($ask.member)
            .bind($ask.window_start_ms)
            .bind($ask.budget_usd_micros)
            .bind($ask.rpm)
            .bind($ask.tpm)
            .bind($ask.reservation_id)
            .bind($ask.cost_usd_micros)
            .bind($ask.tokens)
            .bind($ask.expires_at_ms)
            .bind($ask.must_fit_usd_micros)
    };
}

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

/// One request's admission: the member, its key's limits and what the
/// call reserves until its record is written ([`Ledger::admit_member`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberAdmission<'a> {
    /// The member's name.
    pub member: &'a str,
    /// The reservation's id: the id the call's record will have.
    pub reservation_id: &'a str,
    /// The current minute window (unix ms, a multiple of 60,000).
    pub window_start_ms: i64,
    /// The key's budget, USD micros.
    pub budget_usd_micros: Option<i64>,
    /// The key's requests per minute.
    pub rpm: Option<i64>,
    /// The key's tokens per minute.
    pub tpm: Option<i64>,
    /// The call's estimated worst cost, USD micros, reserved.
    pub cost_usd_micros: i64,
    /// The call's estimated tokens (input + output), reserved in the window.
    pub tokens: i64,
    /// When the reservation lapses if no record replaces it (a daemon that
    /// died mid-call, a video job nobody polled to its end), unix ms.
    pub expires_at_ms: i64,
    /// A cost that must fit whole in what is left of the budget, USD
    /// micros: a video job's worst cost (dollars, where a call's are
    /// cents). 0 for a call, which is admitted while anything is left.
    pub must_fit_usd_micros: i64,
}

/// A member's shared counters after an admission: the new values when it
/// was admitted, the values it was refused on otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemberCounters {
    /// Whether the request was admitted (and its reservation made).
    pub admitted: bool,
    /// Admitted requests in the window.
    pub requests: u64,
    /// Tokens in the window: recorded calls plus reservations.
    pub tokens: u64,
    /// The member's recorded spend, USD micros.
    pub spent_usd_micros: i64,
    /// What the member's calls in flight have reserved, USD micros.
    pub reserved_usd_micros: i64,
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
    /// Stores a new key, and the member's usage row if it has none (so
    /// admissions find it: one statement each).
    pub async fn create_member_key(&self, key: &MemberKeyRow) -> Result<(), StoreError> {
        let sql = format!(
            "INSERT INTO member_keys ({KEY_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
        );
        let models = key.models.as_ref().map(|m| m.join(","));
        with_pool!(self, pool => {
            let insert = sqlx::query(&sql)
                .bind(key.id.as_str())
                .bind(key.member.as_str())
                .bind(key.key_hash.as_str())
                .bind(models.as_deref())
                .bind(key.created_at_ms)
                .bind(key.revoked_at_ms)
                .bind(key.budget_usd_micros)
                .bind(key.rpm)
                .bind(key.tpm);
            write_statement!(pool, insert)?;
            write_statement!(pool, sqlx::query(CREATE_USAGE_ROW).bind(key.member.as_str()))?;
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
            let done = write_statement!(pool, sqlx::query(&sql).bind(at_ms).bind(value))?;
            Ok(done.rows_affected())
        })
    }

    /// Admits one request of a member, or refuses it, in one atomic
    /// conditional statement on the member's `member_usage` row (PostgreSQL:
    /// one round trip, the reservation inserted by the same statement;
    /// SQLite: one short transaction). The request is admitted when the
    /// recorded spend plus the reservations is under the budget, and the
    /// window's requests and tokens are under the rpm and tpm; then it
    /// counts one request, reserves its estimated tokens in the window and
    /// its cost. The condition is evaluated on the row's latest version,
    /// so concurrent admissions on any number of daemons never both take
    /// the last of a limit.
    pub async fn admit_member(
        &self,
        ask: &MemberAdmission<'_>,
    ) -> Result<MemberCounters, StoreError> {
        for _ in 0..2 {
            if let Some(counters) = self.try_admit(ask).await? {
                return Ok(counters);
            }
            // No row yet (a member whose first call this is): create it,
            // then admit against it.
            with_pool!(self, pool => {
                self.trip();
                write_statement!(pool, sqlx::query(CREATE_USAGE_ROW).bind(ask.member))?;
            });
        }
        Err(StoreError::Corrupt {
            id: ask.member.to_string(),
            column: "member",
            detail: "member_usage has no row for the member after creating it".to_string(),
        })
    }

    async fn try_admit(
        &self,
        ask: &MemberAdmission<'_>,
    ) -> Result<Option<MemberCounters>, StoreError> {
        let reserve = ask.cost_usd_micros > 0 || ask.tokens > 0;
        let row = match &self.pool {
            Pool::Postgres(pool) => {
                self.trip();
                bind_admission!(sqlx::query(&ADMIT_PG), ask)
                    .fetch_optional(pool)
                    .await?
                    .map(|row| counters(&row))
                    .transpose()?
            }
            Pool::Sqlite(pool) => write_transaction!(pool, |tx| {
                let row = bind_admission!(sqlx::query(&ADMIT_SQLITE), ask)
                    .fetch_optional(&mut *tx)
                    .await?
                    .map(|row| counters(&row))
                    .transpose()?;
                if reserve && row.is_some_and(|c| c.admitted) {
                    bind_admission!(sqlx::query(RESERVE_SQLITE), ask)
                        .execute(&mut *tx)
                        .await?;
                }
                row
            })?,
        };
        Ok(row)
    }

    /// Gives back the reservations that lapsed before `now_ms` (their
    /// daemon died, or their record was lost): deletes them and takes
    /// their cost off each member's reserved total, in one transaction.
    /// Returns how many lapsed.
    pub async fn expire_member_reservations(&self, now_ms: i64) -> Result<u64, StoreError> {
        let delete = "DELETE FROM member_reservations WHERE expires_at_ms < $1 \
             RETURNING member, cost_usd_micros";
        with_pool!(self, pool => write_transaction!(pool, |tx| {
            self.trip();
            let rows = sqlx::query(delete).bind(now_ms).fetch_all(&mut *tx).await?;
            let mut by_member: BTreeMap<String, i64> = BTreeMap::new();
            for row in &rows {
                *by_member.entry(row.text_col("member")?).or_default() += row.i64_col("cost_usd_micros")?;
            }
            for (member, cost) in &by_member {
                self.trip();
                sqlx::query(RELEASE_LAPSED)
                    .bind(member.as_str())
                    .bind(*cost)
                    .execute(&mut *tx)
                    .await?;
            }
            self.trip();
            rows.len() as u64
        }))
    }

    /// The member's counters as stored (`None`: no row yet).
    pub async fn member_usage(&self, member: &str) -> Result<Option<MemberCounters>, StoreError> {
        let sql = "SELECT requests, tokens, spent_usd_micros, reserved_usd_micros, \
             CAST(0 AS BIGINT) AS admitted FROM member_usage WHERE member = $1";
        with_pool!(self, pool => {
            let row = sqlx::query(sql).bind(member).fetch_optional(pool).await?;
            row.map(|r| counters(&r)).transpose()
        })
    }

    /// Counts one round trip of the member limits to PostgreSQL.
    pub(super) fn trip(&self) {
        if matches!(self.pool, Pool::Postgres(_)) {
            MEMBER_PG_ROUND_TRIPS.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Round trips to PostgreSQL made for member limits by this process:
/// admissions, the writer's settling of reservations, lapsed ones given
/// back (`tb_member_pg_round_trips_total`).
static MEMBER_PG_ROUND_TRIPS: AtomicU64 = AtomicU64::new(0);

/// How many round trips to PostgreSQL the member limits have made in this
/// process (0 on SQLite).
pub fn member_pg_round_trips() -> u64 {
    MEMBER_PG_ROUND_TRIPS.load(Ordering::Relaxed)
}

fn counters(row: &impl RowExt) -> Result<MemberCounters, StoreError> {
    let n = |col| row.i64_col(col).map(|v| u64::try_from(v).unwrap_or(0));
    Ok(MemberCounters {
        admitted: row.i64_col("admitted")? == 1,
        requests: n("requests")?,
        tokens: n("tokens")?,
        spent_usd_micros: row.i64_col("spent_usd_micros")?,
        reserved_usd_micros: row.i64_col("reserved_usd_micros")?,
    })
}

/// The window's count of `col`: the stored one while the window is current
/// (a daemon whose clock lags counts into the newer window), else 0.
fn current(col: &str) -> String {
    format!("(CASE WHEN window_start_ms >= CAST($2 AS BIGINT) THEN {col} ELSE 0 END)")
}

/// The admission condition, on the row as stored: spend plus reservations
/// under the budget (and, for a cost that must fit whole, spend plus
/// reservations plus that cost within it), requests and tokens of the
/// window under rpm and tpm.
fn admissible() -> String {
    format!(
        "((CAST($3 AS BIGINT) IS NULL OR (spent_usd_micros + reserved_usd_micros < CAST($3 AS BIGINT) \
              AND spent_usd_micros + reserved_usd_micros + CAST($10 AS BIGINT) <= CAST($3 AS BIGINT))) \
          AND (CAST($4 AS BIGINT) IS NULL OR {req} < CAST($4 AS BIGINT)) \
          AND (CAST($5 AS BIGINT) IS NULL OR {tok} < CAST($5 AS BIGINT)))",
        req = current("requests"),
        tok = current("tokens"),
    )
}

/// The conditional UPDATE: every assignment reads the row before it, so
/// the condition is the same in each; a refused request changes nothing
/// but the window's start.
fn admit_update() -> String {
    let ok = admissible();
    format!(
        "UPDATE member_usage SET \
           requests = {req} + (CASE WHEN {ok} THEN 1 ELSE 0 END), \
           tokens = {tok} + (CASE WHEN {ok} THEN CAST($8 AS BIGINT) ELSE 0 END), \
           reserved_usd_micros = reserved_usd_micros + (CASE WHEN {ok} THEN CAST($7 AS BIGINT) ELSE 0 END), \
           last_admitted = (CASE WHEN {ok} THEN CAST($6 AS TEXT) ELSE last_admitted END), \
           window_start_ms = (CASE WHEN window_start_ms > CAST($2 AS BIGINT) THEN window_start_ms ELSE CAST($2 AS BIGINT) END) \
         WHERE member = $1 \
         RETURNING requests, tokens, spent_usd_micros, reserved_usd_micros, \
           CAST(CASE WHEN last_admitted = CAST($6 AS TEXT) THEN 1 ELSE 0 END AS BIGINT) AS admitted",
        req = current("requests"),
        tok = current("tokens"),
    )
}

/// The reservation row of an admitted request with something to reserve.
const RESERVE_VALUES: &str = "SELECT CAST($6 AS TEXT), CAST($1 AS TEXT), CAST($2 AS BIGINT), \
     CAST($7 AS BIGINT), CAST($8 AS BIGINT), CAST($9 AS BIGINT)";

/// PostgreSQL: the UPDATE and the reservation in one statement.
static ADMIT_PG: LazyLock<String> = LazyLock::new(|| {
    format!(
        "WITH u AS ({update}), \
         r AS (INSERT INTO member_reservations \
                 (id, member, window_start_ms, cost_usd_micros, tokens, expires_at_ms) \
               {RESERVE_VALUES} FROM u \
               WHERE u.admitted = 1 AND (CAST($7 AS BIGINT) > 0 OR CAST($8 AS BIGINT) > 0)) \
         SELECT requests, tokens, spent_usd_micros, reserved_usd_micros, admitted FROM u",
        update = admit_update()
    )
});

/// SQLite (no data-modifying CTEs): the UPDATE, then [`RESERVE_SQLITE`] in
/// the same transaction.
static ADMIT_SQLITE: LazyLock<String> = LazyLock::new(admit_update);

const RESERVE_SQLITE: &str = "INSERT INTO member_reservations \
     (id, member, window_start_ms, cost_usd_micros, tokens, expires_at_ms) \
     VALUES ($6, $1, $2, $7, $8, $9)";

const CREATE_USAGE_ROW: &str =
    "INSERT INTO member_usage (member) VALUES ($1) ON CONFLICT (member) DO NOTHING";

const RELEASE_LAPSED: &str = "UPDATE member_usage \
     SET reserved_usd_micros = reserved_usd_micros - $2 WHERE member = $1";

/// What the ledger writer does for the member calls of one batch, in the
/// batch's transaction: each call's reservation (keyed by the record's id)
/// is deleted, and the member's row takes the actual cost and tokens in
/// place of the reserved ones. Only records newly inserted add spend, so a
/// batch retried after an ambiguous commit counts nothing twice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct MemberSettle {
    calls: Vec<MemberCall>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct MemberCall {
    id: String,
    member: String,
    started_at_ms: i64,
    cost_usd_micros: i64,
    tokens: i64,
}

/// A reservation the settle deleted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Released {
    id: String,
    window_start_ms: i64,
    cost_usd_micros: i64,
    tokens: i64,
}

/// One change to a member's row: spend added, reservations taken off, and
/// tokens moved in one window.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(super) struct UsageDelta {
    member: String,
    window_start_ms: i64,
    spent_usd_micros: i64,
    released_usd_micros: i64,
    tokens: i64,
}

/// The minute window `at_ms` falls in.
fn window_of(at_ms: i64) -> i64 {
    at_ms - at_ms.rem_euclid(60_000)
}

impl MemberSettle {
    /// The member calls of `records`; `None` when there are none (the
    /// batch then costs no extra statement).
    pub(super) fn of(records: &[CallRecord]) -> Option<MemberSettle> {
        let calls: Vec<MemberCall> = records
            .iter()
            .filter_map(|r| {
                let member = r.member.clone()?;
                let tokens = r
                    .input_tokens
                    .unwrap_or(0)
                    .saturating_add(r.output_tokens.unwrap_or(0));
                Some(MemberCall {
                    id: r.id.clone(),
                    member,
                    started_at_ms: r.started_at_ms,
                    cost_usd_micros: r.cost_usd_micros.unwrap_or(0),
                    tokens: i64::try_from(tokens).unwrap_or(i64::MAX),
                })
            })
            .collect();
        (!calls.is_empty()).then_some(MemberSettle { calls })
    }

    /// `DELETE … WHERE id IN ($1, …) RETURNING …` for the calls' ids.
    pub(super) fn delete_sql(&self) -> String {
        let marks: Vec<String> = (1..=self.calls.len()).map(|i| format!("${i}")).collect();
        format!(
            "DELETE FROM member_reservations WHERE id IN ({}) \
             RETURNING id, window_start_ms, cost_usd_micros, tokens",
            marks.join(", ")
        )
    }

    /// The ids, in the order of [`MemberSettle::delete_sql`]'s marks.
    pub(super) fn ids(&self) -> impl Iterator<Item = &str> {
        self.calls.iter().map(|c| c.id.as_str())
    }

    /// The row changes, per member and window: each new record's cost is
    /// spent; each released reservation's cost is given back and its
    /// tokens replaced by the record's (in the reservation's window);
    /// a new record without a reservation (a key without limits) adds its
    /// tokens to the window it started in.
    pub(super) fn deltas(
        &self,
        inserted: &HashSet<String>,
        released: &[Released],
    ) -> Vec<UsageDelta> {
        let released: HashMap<&str, &Released> =
            released.iter().map(|r| (r.id.as_str(), r)).collect();
        let mut out: BTreeMap<(&str, i64), UsageDelta> = BTreeMap::new();
        for call in &self.calls {
            let new = inserted.contains(&call.id);
            let reservation = released.get(call.id.as_str());
            let window = reservation.map_or(window_of(call.started_at_ms), |r| r.window_start_ms);
            let d = out
                .entry((call.member.as_str(), window))
                .or_insert_with(|| UsageDelta {
                    member: call.member.clone(),
                    window_start_ms: window,
                    ..UsageDelta::default()
                });
            if new {
                d.spent_usd_micros += call.cost_usd_micros;
                d.tokens += call.tokens;
            }
            if let Some(r) = reservation {
                d.released_usd_micros += r.cost_usd_micros;
                d.tokens -= r.tokens;
            }
        }
        out.into_values().collect()
    }
}

impl Released {
    pub(super) fn from_row(row: &impl RowExt) -> Result<Released, StoreError> {
        Ok(Released {
            id: row.text_col("id")?,
            window_start_ms: row.i64_col("window_start_ms")?,
            cost_usd_micros: row.i64_col("cost_usd_micros")?,
            tokens: row.i64_col("tokens")?,
        })
    }
}

/// Applies one [`UsageDelta`] (`$1` member, `$2` spent, `$3` released,
/// `$4` window, `$5` tokens, `$6` tokens for a new row): tokens move only
/// while the row is still in that window.
pub(super) const SETTLE_UPSERT: &str = "INSERT INTO member_usage \
     (member, spent_usd_micros, reserved_usd_micros, window_start_ms, requests, tokens) \
     VALUES ($1, $2, 0, $4, 0, $6) \
     ON CONFLICT (member) DO UPDATE SET \
       spent_usd_micros = member_usage.spent_usd_micros + $2, \
       reserved_usd_micros = member_usage.reserved_usd_micros - $3, \
       tokens = CASE WHEN member_usage.window_start_ms = $4 \
                THEN member_usage.tokens + $5 ELSE member_usage.tokens END";

impl UsageDelta {
    /// The binds of [`SETTLE_UPSERT`].
    pub(super) fn binds(&self) -> (&str, i64, i64, i64, i64, i64) {
        (
            self.member.as_str(),
            self.spent_usd_micros,
            self.released_usd_micros,
            self.window_start_ms,
            self.tokens,
            self.tokens.max(0),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(id: &str, member: &str, started: i64, cost: i64, tokens: i64) -> MemberCall {
        MemberCall {
            id: id.into(),
            member: member.into(),
            started_at_ms: started,
            cost_usd_micros: cost,
            tokens,
        }
    }

    #[test]
    fn settling_replaces_reservations_by_actual_cost_and_tokens() {
        let settle = MemberSettle {
            calls: vec![
                call("a", "ana", 60_010, 300, 40),
                call("b", "ana", 60_020, 200, 10),
                call("c", "bo", 120_500, 50, 5),
                call("old", "ana", 60_030, 999, 99),
            ],
        };
        assert_eq!(
            settle.delete_sql(),
            "DELETE FROM member_reservations WHERE id IN ($1, $2, $3, $4) \
             RETURNING id, window_start_ms, cost_usd_micros, tokens"
        );
        let inserted: HashSet<String> = ["a", "b", "c"].map(String::from).into();
        let released = [
            Released {
                id: "a".into(),
                window_start_ms: 60_000,
                cost_usd_micros: 1_000,
                tokens: 100,
            },
            // "b" and "c" had none (keys without limits; or lapsed).
        ];
        let deltas = settle.deltas(&inserted, &released);
        assert_eq!(
            deltas,
            [
                UsageDelta {
                    member: "ana".into(),
                    window_start_ms: 60_000,
                    // "old" is a retried record already stored: no spend.
                    spent_usd_micros: 500,
                    released_usd_micros: 1_000,
                    tokens: 40 + 10 - 100,
                },
                UsageDelta {
                    member: "bo".into(),
                    window_start_ms: 120_000,
                    spent_usd_micros: 50,
                    released_usd_micros: 0,
                    tokens: 5,
                },
            ]
        );
        assert_eq!(deltas[0].binds().5, 0, "a new row never starts negative");
        assert!(MemberSettle::of(&[]).is_none());
    }
}
