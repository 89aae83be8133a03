//! The team's figures for operators (`status`, `doctor`, `tokenbuddyd team
//! budget show|reset`): the purchase budget as stored, live purchase
//! leases and members with limits, and starting a new budget period.

use super::{NOW_MS, TeamStore, to_u64};
use crate::StoreError;
use crate::codec::RowExt;

/// The team's shared figures, read in one statement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TeamSummary {
    /// Whether a daemon of the team has joined this database (the
    /// `team_state` row exists); the budget figures are 0 until then.
    pub joined: bool,
    /// Paid by the team in this budget period, USD micros.
    pub spent_usd_micros: u64,
    /// Held by purchases in flight, USD micros.
    pub reserved_usd_micros: u64,
    /// Purchase leases not expired on the database's clock.
    pub live_leases: u64,
    /// Members with at least one key not revoked that has a budget, rpm or
    /// tpm limit.
    pub members_with_limits: u64,
}

/// What [`TeamStore::reset_spent`] changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BudgetReset {
    /// The spent sum before the reset, USD micros.
    pub spent_before_usd_micros: u64,
    /// Held by purchases in flight, kept as it was, USD micros.
    pub reserved_usd_micros: u64,
}

impl TeamStore {
    /// The team's figures ([`TeamSummary`]) in one round trip.
    pub async fn summary(&self) -> Result<TeamSummary, StoreError> {
        self.trip(1);
        let sql = format!(
            "SELECT \
               (SELECT spent_usd_micros FROM team_state WHERE id = 1) AS spent, \
               (SELECT reserved_usd_micros FROM team_state WHERE id = 1) AS reserved, \
               (SELECT COUNT(*) FROM team_locks WHERE expires_at_ms > {NOW_MS}) AS leases, \
               (SELECT COUNT(DISTINCT member) FROM member_keys WHERE revoked_at_ms IS NULL \
                  AND (budget_usd_micros IS NOT NULL OR rpm IS NOT NULL OR tpm IS NOT NULL)) \
                 AS limited"
        );
        let row = sqlx::query(&sql).fetch_one(&self.pool).await?;
        let spent = row.opt_i64_col("spent")?;
        Ok(TeamSummary {
            joined: spent.is_some(),
            spent_usd_micros: spent.map_or(0, to_u64),
            reserved_usd_micros: row.opt_i64_col("reserved")?.map_or(0, to_u64),
            live_leases: to_u64(row.i64_col("leases")?),
            members_with_limits: to_u64(row.i64_col("limited")?),
        })
    }

    /// Starts a new budget period: the spent sum goes to 0 in one
    /// statement, under the `team_state` row's lock, and what purchases in
    /// flight reserved stays (they move it to spent, in the new period,
    /// when they complete). `None` when no daemon of the team has joined
    /// this database.
    pub async fn reset_spent(&self) -> Result<Option<BudgetReset>, StoreError> {
        self.trip(1);
        let row = sqlx::query(
            "WITH before AS (SELECT spent_usd_micros FROM team_state WHERE id = 1 FOR UPDATE) \
             UPDATE team_state SET spent_usd_micros = 0 FROM before WHERE team_state.id = 1 \
             RETURNING before.spent_usd_micros AS spent_before, \
               team_state.reserved_usd_micros AS reserved",
        )
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| -> Result<BudgetReset, StoreError> {
            Ok(BudgetReset {
                spent_before_usd_micros: to_u64(r.i64_col("spent_before")?),
                reserved_usd_micros: to_u64(r.i64_col("reserved")?),
            })
        })
        .transpose()
    }
}
