//! Team mode's shared state (issue 19, `team_*` tables): seller tokens
//! every daemon of a team spends, purchase leases, and the team's purchase
//! budget. PostgreSQL only ([`Ledger::team_store`]).
//!
//! Every guarantee rests on one PostgreSQL mechanism, named at each
//! method: a unique key (one lease per key), a row lock held for one
//! transaction (lease takeover, budget reservation), or a single
//! conditional statement (settlement, lease release). Lease expiry is
//! judged on the database's clock, so daemons on machines whose clocks
//! disagree still agree on who holds a lease.
//!
//! [`TeamStore`] counts every statement it sends (transaction `BEGIN` and
//! `COMMIT` included) in [`TeamStore::round_trips`].

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use sqlx::Row;
use sqlx::postgres::{PgPool, PgRow};
use tb_domain::PaymentMethod;

use super::tokens::TOKEN_COLUMNS as TEAM_TOKEN_COLUMNS;
use super::{Ledger, Pool};
use crate::StoreError;
use crate::codec::RowExt;
use crate::ledger::TokenRow;

/// The database's clock as unix milliseconds.
const NOW_MS: &str = "CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT)";

/// The team's shared state in a PostgreSQL ledger. Cheap to clone (a pool
/// and a shared counter).
#[derive(Debug, Clone)]
pub struct TeamStore {
    pool: PgPool,
    round_trips: Arc<AtomicU64>,
}

/// What [`TeamStore::try_lock`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LockAttempt {
    /// The caller holds the lease now. `took_over` names the holder whose
    /// lease had expired, if any.
    Acquired {
        /// The previous, expired holder.
        took_over: Option<String>,
    },
    /// Another holder's lease runs for `expires_in_ms` more (0: it was
    /// released meanwhile; try again at once).
    Held {
        /// Who holds it.
        holder: String,
        /// Until it expires, ms on the database's clock.
        expires_in_ms: u64,
    },
}

/// What [`TeamStore::reserve`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reservation {
    /// The price is reserved; the figures are after the reservation.
    Reserved {
        /// Paid by the team, USD micros.
        spent: u64,
        /// Held by purchases in flight (this one included), USD micros.
        reserved: u64,
    },
    /// The price does not fit in the budget; nothing changed.
    OverBudget {
        /// Paid by the team, USD micros.
        spent: u64,
        /// Held by purchases in flight, USD micros.
        reserved: u64,
    },
    /// The caller's lease expired and was taken over: it must not buy.
    LeaseLost,
}

/// The team's purchase budget as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TeamBudget {
    /// Paid by the team, USD micros.
    pub spent_usd_micros: u64,
    /// Held by purchases in flight, USD micros.
    pub reserved_usd_micros: u64,
}

/// A lease as stored (tests, diagnostics).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TeamLock {
    /// `seller:payment`.
    pub key: String,
    /// Who holds it.
    pub holder: String,
    /// Until it expires, ms on the database's clock (0 when expired).
    pub expires_in_ms: u64,
    /// What its purchase reserved of the budget, USD micros.
    pub reserved_usd_micros: u64,
}

/// Whether a lease that expires at `expires_at_ms` is over at `now_ms`
/// (both on the database's clock): `Some(ms left)` while it runs, `None`
/// once it may be taken over. Pure.
pub fn lease_left(expires_at_ms: i64, now_ms: i64) -> Option<u64> {
    (expires_at_ms > now_ms)
        .then(|| u64::try_from(i128::from(expires_at_ms) - i128::from(now_ms)).unwrap_or(u64::MAX))
}

/// What a purchase of `price` leaves of `budget` when the team has `spent`
/// and purchases in flight hold `reserved`: `Some(left after it)` when it
/// fits, `None` when it would exceed the budget. Pure; the same rule as
/// the conditional `UPDATE` of [`TeamStore::reserve`].
pub fn budget_after(spent: u64, reserved: u64, price: u64, budget: u64) -> Option<u64> {
    let committed = spent.checked_add(reserved)?.checked_add(price)?;
    budget.checked_sub(committed)
}

/// The shared balance after a settlement batch: `unreported` micros of
/// calls whose seller did not say what is left come off the balance, and
/// the seller's lowest reported balance (`min_remaining`) caps it (the
/// seller's word is authoritative and balances only go down). Pure; the
/// same rule as the `UPDATE` of [`TeamStore::settle`].
pub fn settled_balance(balance: u64, unreported: u64, min_remaining: Option<u64>) -> u64 {
    let lowered = balance.saturating_sub(unreported);
    min_remaining.map_or(lowered, |r| lowered.min(r))
}

/// Ends a lease (`$1` key, `$2` holder) and turns its reservation into
/// `$3` USD micros spent, in one statement ([`TeamStore::finish`]).
const FINISH_SQL: &str = "WITH gone AS (DELETE FROM team_locks WHERE lock_key = $1 AND holder = $2 \
       RETURNING reserved_usd_micros AS r) \
     UPDATE team_state SET \
       reserved_usd_micros = GREATEST(team_state.reserved_usd_micros - gone.r, 0), \
       spent_usd_micros = team_state.spent_usd_micros + $3 \
     FROM gone WHERE team_state.id = 1";

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn to_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

impl Ledger {
    /// The team's shared state, on a PostgreSQL ledger; `None` on SQLite.
    pub fn team_store(&self) -> Option<TeamStore> {
        match &self.pool {
            Pool::Postgres(pool) => Some(TeamStore {
                pool: pool.clone(),
                round_trips: Arc::new(AtomicU64::new(0)),
            }),
            Pool::Sqlite(_) => None,
        }
    }
}

impl TeamStore {
    /// Statements sent to PostgreSQL so far (each is one round trip).
    pub fn round_trips(&self) -> u64 {
        self.round_trips.load(Ordering::Relaxed)
    }

    fn trip(&self, n: u64) {
        self.round_trips.fetch_add(n, Ordering::Relaxed);
    }

    /// The team's key check: stores `(ciphertext, nonce)` if the team has
    /// none yet and returns the one stored (the first daemon's). The
    /// caller checks that it opens with its key.
    pub async fn key_check(
        &self,
        ciphertext: &[u8],
        nonce: &[u8],
    ) -> Result<(Vec<u8>, Vec<u8>), StoreError> {
        self.trip(2);
        sqlx::query(
            "INSERT INTO team_state (id, key_check, key_check_nonce, spent_usd_micros, \
             reserved_usd_micros) VALUES (1, $1, $2, 0, 0) ON CONFLICT (id) DO NOTHING",
        )
        .bind(ciphertext)
        .bind(nonce)
        .execute(&self.pool)
        .await?;
        let row = sqlx::query("SELECT key_check, key_check_nonce FROM team_state WHERE id = 1")
            .fetch_one(&self.pool)
            .await?;
        Ok((row.try_get("key_check")?, row.try_get("key_check_nonce")?))
    }

    /// The team's purchase budget figures.
    pub async fn budget(&self) -> Result<TeamBudget, StoreError> {
        self.trip(1);
        let row = sqlx::query(
            "SELECT spent_usd_micros, reserved_usd_micros FROM team_state WHERE id = 1",
        )
        .fetch_optional(&self.pool)
        .await?;
        Ok(match row {
            Some(row) => TeamBudget {
                spent_usd_micros: to_u64(row.i64_col("spent_usd_micros")?),
                reserved_usd_micros: to_u64(row.i64_col("reserved_usd_micros")?),
            },
            None => TeamBudget::default(),
        })
    }

    /// The shared token of (`seller_id`, `payment`), if any.
    pub async fn token(
        &self,
        seller_id: &str,
        payment: PaymentMethod,
    ) -> Result<Option<TokenRow>, StoreError> {
        self.trip(1);
        let sql = format!(
            "SELECT {TEAM_TOKEN_COLUMNS} FROM team_tokens WHERE seller_id = $1 AND payment_method = $2"
        );
        let row = sqlx::query(&sql)
            .bind(seller_id)
            .bind(payment.as_str())
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| token_row(&r, payment)).transpose()
    }

    /// Every shared token whose payment method this version knows.
    pub async fn tokens(&self) -> Result<Vec<TokenRow>, StoreError> {
        self.trip(1);
        let sql = format!("SELECT {TEAM_TOKEN_COLUMNS} FROM team_tokens");
        let rows = sqlx::query(&sql).fetch_all(&self.pool).await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            if let Some(method) = PaymentMethod::parse(&row.text_col("payment_method")?) {
                out.push(token_row(row, method)?);
            }
        }
        Ok(out)
    }

    /// Stores a token just bought, replacing the (seller, payment) row.
    pub async fn save_token(&self, token: &TokenRow) -> Result<(), StoreError> {
        self.trip(1);
        let sql = super::tokens::upsert_sql("team_tokens");
        bind_token(sqlx::query(&sql), token)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Removes the (seller, payment) token, whatever it is.
    pub async fn delete_token(
        &self,
        seller_id: &str,
        payment: PaymentMethod,
    ) -> Result<bool, StoreError> {
        self.trip(1);
        let done =
            sqlx::query("DELETE FROM team_tokens WHERE seller_id = $1 AND payment_method = $2")
                .bind(seller_id)
                .bind(payment.as_str())
                .execute(&self.pool)
                .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Removes the (seller, payment) token only if it is still the one
    /// with `fingerprint` (a token another daemon bought to replace it is
    /// kept).
    pub async fn drop_token(
        &self,
        seller_id: &str,
        payment: PaymentMethod,
        fingerprint: &str,
    ) -> Result<bool, StoreError> {
        self.trip(1);
        let done = sqlx::query(
            "DELETE FROM team_tokens WHERE seller_id = $1 AND payment_method = $2 \
             AND token_fingerprint = $3",
        )
        .bind(seller_id)
        .bind(payment.as_str())
        .bind(fingerprint)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Applies a settlement batch to the token with `fingerprint` in one
    /// atomic `UPDATE` ([`settled_balance`]): concurrent batches of several
    /// daemons serialise on the row, so none is lost. Returns the new
    /// shared balance, or `None` when the token was replaced or dropped.
    pub async fn settle(
        &self,
        seller_id: &str,
        payment: PaymentMethod,
        fingerprint: &str,
        unreported: u64,
        min_remaining: Option<u64>,
    ) -> Result<Option<u64>, StoreError> {
        self.trip(1);
        let sql = format!(
            "UPDATE team_tokens SET \
               balance_micros = LEAST(GREATEST(balance_micros - $4, 0), COALESCE($5, balance_micros)), \
               updated_at_ms = {NOW_MS} \
             WHERE seller_id = $1 AND payment_method = $2 AND token_fingerprint = $3 \
             RETURNING balance_micros"
        );
        let row = sqlx::query(&sql)
            .bind(seller_id)
            .bind(payment.as_str())
            .bind(fingerprint)
            .bind(to_i64(unreported))
            .bind(min_remaining.map(to_i64))
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| r.i64_col("balance_micros").map(to_u64))
            .transpose()
            .map_err(Into::into)
    }

    /// Takes the purchase lease `key` for `holder` for `ttl_ms`: inserted
    /// when nobody holds it (the primary key admits one row), or taken
    /// over when the holder's lease has expired ([`lease_left`] on the
    /// database's clock, under the row's lock); the expired holder's
    /// reservation is then counted as spent, since it may have paid.
    pub async fn try_lock(
        &self,
        key: &str,
        holder: &str,
        ttl_ms: u64,
    ) -> Result<LockAttempt, StoreError> {
        self.trip(1);
        let insert = format!(
            "INSERT INTO team_locks (lock_key, holder, expires_at_ms, reserved_usd_micros) \
             VALUES ($1, $2, {NOW_MS} + $3, 0) ON CONFLICT (lock_key) DO NOTHING RETURNING holder"
        );
        let inserted = sqlx::query(&insert)
            .bind(key)
            .bind(holder)
            .bind(to_i64(ttl_ms))
            .fetch_optional(&self.pool)
            .await?;
        if inserted.is_some() {
            return Ok(LockAttempt::Acquired { took_over: None });
        }
        self.trip(2);
        let mut tx = self.pool.begin().await?;
        let select = format!(
            "SELECT holder, expires_at_ms, reserved_usd_micros, {NOW_MS} AS now_ms \
             FROM team_locks WHERE lock_key = $1 FOR UPDATE"
        );
        let Some(row) = sqlx::query(&select)
            .bind(key)
            .fetch_optional(&mut *tx)
            .await?
        else {
            self.trip(1);
            tx.commit().await?;
            return Ok(LockAttempt::Held {
                holder: String::new(),
                expires_in_ms: 0,
            });
        };
        let previous = row.text_col("holder")?;
        let now_ms = row.i64_col("now_ms")?;
        if let Some(left) = lease_left(row.i64_col("expires_at_ms")?, now_ms) {
            self.trip(1);
            tx.commit().await?;
            return Ok(LockAttempt::Held {
                holder: previous,
                expires_in_ms: left,
            });
        }
        let reserved = row.i64_col("reserved_usd_micros")?;
        self.trip(3);
        sqlx::query(
            "UPDATE team_state SET spent_usd_micros = spent_usd_micros + $1, \
             reserved_usd_micros = GREATEST(reserved_usd_micros - $1, 0) WHERE id = 1",
        )
        .bind(reserved)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE team_locks SET holder = $2, expires_at_ms = $3, reserved_usd_micros = 0 \
             WHERE lock_key = $1",
        )
        .bind(key)
        .bind(holder)
        .bind(now_ms.saturating_add(to_i64(ttl_ms)))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(LockAttempt::Acquired {
            took_over: Some(previous),
        })
    }

    /// Reserves `price` of the team's `budget` for the purchase under the
    /// lease `key` held by `holder`, in one transaction: the lease row is
    /// locked (a takeover waits for it, or it is gone: [`Reservation::LeaseLost`]),
    /// then one conditional `UPDATE` adds the price to the reserved sum
    /// only while spent + reserved + price ≤ budget ([`budget_after`]).
    pub async fn reserve(
        &self,
        key: &str,
        holder: &str,
        price: u64,
        budget: u64,
    ) -> Result<Reservation, StoreError> {
        self.trip(3);
        let mut tx = self.pool.begin().await?;
        if !holds(&mut tx, key, holder).await? {
            tx.rollback().await?;
            return Ok(Reservation::LeaseLost);
        }
        let reserved = sqlx::query(
            "UPDATE team_state SET reserved_usd_micros = reserved_usd_micros + $1 \
             WHERE id = 1 AND spent_usd_micros + reserved_usd_micros + $1 <= $2 \
             RETURNING spent_usd_micros, reserved_usd_micros",
        )
        .bind(to_i64(price))
        .bind(to_i64(budget))
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = reserved else {
            self.trip(2);
            let row = sqlx::query(
                "SELECT spent_usd_micros, reserved_usd_micros FROM team_state WHERE id = 1",
            )
            .fetch_optional(&mut *tx)
            .await?;
            tx.rollback().await?;
            let (spent, reserved) = match row {
                Some(row) => (
                    to_u64(row.i64_col("spent_usd_micros")?),
                    to_u64(row.i64_col("reserved_usd_micros")?),
                ),
                None => (0, 0),
            };
            return Ok(Reservation::OverBudget { spent, reserved });
        };
        self.trip(2);
        sqlx::query(
            "UPDATE team_locks SET reserved_usd_micros = reserved_usd_micros + $3 \
             WHERE lock_key = $1 AND holder = $2",
        )
        .bind(key)
        .bind(holder)
        .bind(to_i64(price))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Reservation::Reserved {
            spent: to_u64(row.i64_col("spent_usd_micros")?),
            reserved: to_u64(row.i64_col("reserved_usd_micros")?),
        })
    }

    /// Ends `holder`'s lease `key` in one statement: the lease row is
    /// deleted and what it reserved released, with `paid` USD micros added
    /// to the spent sum (0 for a purchase that failed). When the lease was
    /// taken over meanwhile nothing changes: the takeover already counted
    /// its reservation as spent. Returns whether the lease was still held.
    pub async fn finish(&self, key: &str, holder: &str, paid: u64) -> Result<bool, StoreError> {
        self.trip(1);
        let done = sqlx::query(FINISH_SQL)
            .bind(key)
            .bind(holder)
            .bind(to_i64(paid))
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    /// [`finish`](TeamStore::finish) for a purchase that paid, with the
    /// token it bought stored in the same transaction: the token appears
    /// for the team exactly when the lease ends. It replaces the shared
    /// row while `holder` still holds the lease (unless that row is this
    /// very token already: its balance may have moved on since); once the
    /// lease was taken over it is stored only when the row is empty (a
    /// token the taker bought is kept). Idempotent, so a daemon whose
    /// PostgreSQL went away mid-purchase repeats it until it succeeds.
    /// Returns whether the lease was still held.
    pub async fn finish_storing(
        &self,
        key: &str,
        holder: &str,
        paid: u64,
        token: &TokenRow,
    ) -> Result<bool, StoreError> {
        self.trip(5);
        let mut tx = self.pool.begin().await?;
        let held = holds(&mut tx, key, holder).await?;
        let store = if held {
            format!(
                "{} WHERE team_tokens.token_fingerprint <> excluded.token_fingerprint",
                super::tokens::upsert_sql("team_tokens")
            )
        } else {
            format!(
                "INSERT INTO team_tokens ({TEAM_TOKEN_COLUMNS}) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
                 ON CONFLICT (seller_id, payment_method) DO NOTHING"
            )
        };
        bind_token(sqlx::query(&store), token)
            .execute(&mut *tx)
            .await?;
        let done = sqlx::query(FINISH_SQL)
            .bind(key)
            .bind(holder)
            .bind(to_i64(paid))
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(done.rows_affected() > 0)
    }

    /// Every lease row, by key.
    pub async fn locks(&self) -> Result<Vec<TeamLock>, StoreError> {
        self.trip(1);
        let sql = format!(
            "SELECT lock_key, holder, expires_at_ms, reserved_usd_micros, {NOW_MS} AS now_ms \
             FROM team_locks ORDER BY lock_key"
        );
        let rows = sqlx::query(&sql).fetch_all(&self.pool).await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            out.push(TeamLock {
                key: row.text_col("lock_key")?,
                holder: row.text_col("holder")?,
                expires_in_ms: lease_left(row.i64_col("expires_at_ms")?, row.i64_col("now_ms")?)
                    .unwrap_or(0),
                reserved_usd_micros: to_u64(row.i64_col("reserved_usd_micros")?),
            });
        }
        Ok(out)
    }
}

/// Whether `holder` holds the lease `key`, locking its row for the rest of
/// `tx` (a takeover waits for it).
async fn holds(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    key: &str,
    holder: &str,
) -> Result<bool, StoreError> {
    let row =
        sqlx::query("SELECT 1 FROM team_locks WHERE lock_key = $1 AND holder = $2 FOR UPDATE")
            .bind(key)
            .bind(holder)
            .fetch_optional(&mut **tx)
            .await?;
    Ok(row.is_some())
}

/// Binds [`TEAM_TOKEN_COLUMNS`] of `token`, in order, as `$1`…`$11`.
fn bind_token<'q>(
    query: sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>,
    token: &'q TokenRow,
) -> sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments> {
    query
        .bind(token.seller_id.as_str())
        .bind(token.payment_method.as_str())
        .bind(token.ciphertext.as_slice())
        .bind(token.nonce.as_slice())
        .bind(token.fingerprint.as_str())
        .bind(to_i64(token.credit_micros.unwrap_or(0)))
        .bind(to_i64(token.balance_micros.unwrap_or(0)))
        .bind(to_i64(token.price_usd_micros.unwrap_or(0)))
        .bind(token.expires_at_ms.unwrap_or(0))
        .bind(token.purchased_at_ms)
        .bind(token.updated_at_ms)
}

fn token_row(row: &PgRow, payment_method: PaymentMethod) -> Result<TokenRow, StoreError> {
    Ok(TokenRow {
        seller_id: row.text_col("seller_id")?,
        payment_method,
        ciphertext: row.try_get("token_ciphertext")?,
        nonce: row.try_get("token_nonce")?,
        fingerprint: row.text_col("token_fingerprint")?,
        credit_micros: Some(to_u64(row.i64_col("credit_micros")?)),
        balance_micros: Some(to_u64(row.i64_col("balance_micros")?)),
        price_usd_micros: Some(to_u64(row.i64_col("price_usd_micros")?)),
        expires_at_ms: Some(row.i64_col("expires_at_ms")?),
        purchased_at_ms: row.i64_col("purchased_at_ms")?,
        updated_at_ms: row.i64_col("updated_at_ms")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lease_runs_until_its_expiry_on_the_database_clock() {
        assert_eq!(lease_left(1_000, 400), Some(600));
        assert_eq!(lease_left(1_000, 999), Some(1));
        assert_eq!(lease_left(1_000, 1_000), None, "expired at its expiry");
        assert_eq!(lease_left(1_000, 5_000), None);
        assert_eq!(lease_left(i64::MAX, i64::MIN), Some(u64::MAX));
    }

    #[test]
    fn a_reservation_fits_only_within_the_budget() {
        // 5 USD budget, 3 paid, 1 in flight: a 1 USD purchase fits exactly.
        assert_eq!(
            budget_after(3_000_000, 1_000_000, 1_000_000, 5_000_000),
            Some(0)
        );
        assert_eq!(
            budget_after(3_000_000, 1_000_000, 1_000_001, 5_000_000),
            None
        );
        // Purchases in flight count as spent.
        assert_eq!(budget_after(0, 4_500_000, 600_000, 5_000_000), None);
        assert_eq!(budget_after(0, 0, 0, 0), Some(0));
        assert_eq!(budget_after(u64::MAX, 1, 0, u64::MAX), None, "no overflow");
    }

    #[test]
    fn a_settlement_batch_lowers_and_never_raises_the_balance() {
        assert_eq!(settled_balance(1_000, 300, None), 700);
        assert_eq!(settled_balance(1_000, 2_000, None), 0);
        // The seller's word caps it, whatever the unreported calls.
        assert_eq!(settled_balance(1_000, 100, Some(500)), 500);
        // A stale (higher) remaining never raises it.
        assert_eq!(settled_balance(400, 0, Some(900)), 400);
    }
}
