//! The team's shared purchase budget for operators (docs/team.md, "The
//! team budget"): `tokenbuddyd team budget show|reset [--yes]` on the
//! PostgreSQL ledger the config points at (no daemon needed), and the
//! figures `status` and `doctor` show.

use anyhow::anyhow;
use clap::{Args, Subcommand};
use tb_billing::record::usd;
use tb_config::LoadedConfig;
use tb_control::api::TeamBudgetStatus;
use tb_store::{Ledger, TeamSummary};

use crate::Failure;
use crate::history::{open, runtime};

/// `tokenbuddyd team …`.
#[derive(Debug, Args)]
pub(crate) struct TeamArgs {
    #[command(subcommand)]
    command: TeamCommand,
}

#[derive(Debug, Subcommand)]
enum TeamCommand {
    /// The team's shared purchase budget (`[purchase]
    /// session_budget_usd_micros`, counted in PostgreSQL).
    #[command(subcommand)]
    Budget(BudgetCommand),
}

#[derive(Debug, Subcommand)]
enum BudgetCommand {
    /// Budget, spent, reserved by purchases in flight, left, live purchase
    /// leases and members with limits.
    Show,
    /// Start a new budget period: spent goes to 0; purchases in flight
    /// keep their reservations. Without `--yes`, shows what would change.
    Reset {
        /// Reset it (without: show the figures and change nothing).
        #[arg(long)]
        yes: bool,
    },
}

/// The figures of `summary` against this daemon's `budget`. Pure.
pub(crate) fn figures(budget: u64, summary: &TeamSummary) -> TeamBudgetStatus {
    TeamBudgetStatus {
        budget_usd_micros: budget,
        spent_usd_micros: summary.spent_usd_micros,
        reserved_usd_micros: summary.reserved_usd_micros,
        left_usd_micros: tb_store::budget_after(
            summary.spent_usd_micros,
            summary.reserved_usd_micros,
            0,
            budget,
        )
        .unwrap_or(0),
        live_leases: summary.live_leases,
        members_with_limits: summary.members_with_limits,
    }
}

/// The one line the figures take in `status` and `team budget show`:
/// dollars, never micros. Pure.
pub(crate) fn figures_text(f: &TeamBudgetStatus) -> String {
    let plural = |n: u64, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
    format!(
        "{} spent, {} reserved, {} left of {}; {}, {}",
        usd_u(f.spent_usd_micros),
        usd_u(f.reserved_usd_micros),
        usd_u(f.left_usd_micros),
        usd_u(f.budget_usd_micros),
        plural(f.live_leases, "live purchase lease", "live purchase leases"),
        plural(
            f.members_with_limits,
            "member with limits",
            "members with limits"
        ),
    )
}

fn usd_u(micros: u64) -> String {
    usd(i64::try_from(micros).unwrap_or(i64::MAX))
}

pub(crate) fn run(loaded: &LoadedConfig, args: &TeamArgs) -> Result<(), Failure> {
    let budget = loaded.config.purchase.session_budget_usd_micros;
    runtime()?.block_on(async {
        let ledger = open(loaded).await?;
        let done = match &args.command {
            TeamCommand::Budget(BudgetCommand::Show) => show(&ledger, budget).await,
            TeamCommand::Budget(BudgetCommand::Reset { yes }) => reset(&ledger, budget, *yes).await,
        };
        ledger.close().await;
        done
    })
}

fn store(ledger: &Ledger) -> Result<tb_store::TeamStore, Failure> {
    ledger.team_store().ok_or_else(|| {
        Failure::Config(anyhow!(
            "the team budget lives in the team's PostgreSQL ledger: set [ledger] url = \"postgres://…\" \
             to the database the team's daemons share"
        ))
    })
}

const NOT_JOINED: &str = "no daemon of the team has started on this database: there is no team budget (it is created when the first daemon with [team] enabled starts)";

async fn summary(ledger: &Ledger) -> Result<TeamSummary, Failure> {
    store(ledger)?
        .summary()
        .await
        .map_err(|e| Failure::Runtime(anyhow!(e).context("reading the team's figures")))
}

async fn show(ledger: &Ledger, budget: u64) -> Result<(), Failure> {
    let s = summary(ledger).await?;
    if !s.joined {
        println!("{NOT_JOINED}");
        return Ok(());
    }
    println!("team budget: {}", figures_text(&figures(budget, &s)));
    Ok(())
}

async fn reset(ledger: &Ledger, budget: u64, yes: bool) -> Result<(), Failure> {
    if !yes {
        let s = summary(ledger).await?;
        if !s.joined {
            return Err(Failure::Runtime(anyhow!("{NOT_JOINED}")));
        }
        println!("team budget: {}", figures_text(&figures(budget, &s)));
        println!(
            "nothing changed; run again with --yes to set spent to $0 (a new budget period; \
             purchases in flight keep their reservations)"
        );
        return Ok(());
    }
    let done = store(ledger)?
        .reset_spent()
        .await
        .map_err(|e| Failure::Runtime(anyhow!(e).context("resetting the team budget")))?
        .ok_or_else(|| Failure::Runtime(anyhow!("{NOT_JOINED}")))?;
    println!(
        "team budget reset: spent was {}, now $0.000000; {} stays reserved by purchases in flight",
        usd_u(done.spent_before_usd_micros),
        usd_u(done.reserved_usd_micros)
    );
    let s = summary(ledger).await?;
    println!("team budget: {}", figures_text(&figures(budget, &s)));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(spent: u64, reserved: u64) -> TeamSummary {
        TeamSummary {
            joined: true,
            spent_usd_micros: spent,
            reserved_usd_micros: reserved,
            live_leases: 1,
            members_with_limits: 2,
        }
    }

    #[test]
    fn left_is_budget_minus_spent_and_reserved_and_never_negative() {
        let f = figures(50_000_000, &summary(12_000_000, 1_000_000));
        assert_eq!(f.left_usd_micros, 37_000_000);
        assert_eq!(figures(5, &summary(4, 2)).left_usd_micros, 0);
        assert_eq!(figures(0, &summary(0, 0)).left_usd_micros, 0);
        assert_eq!(figures(u64::MAX, &summary(u64::MAX, 1)).left_usd_micros, 0);
    }

    #[test]
    fn the_figures_read_in_dollars() {
        let text = figures_text(&figures(50_000_000, &summary(12_500_000, 1_000_000)));
        assert_eq!(
            text,
            "$12.500000 spent, $1.000000 reserved, $36.500000 left of $50.000000; \
             1 live purchase lease, 2 members with limits"
        );
        let mut none = summary(0, 0);
        none.live_leases = 0;
        none.members_with_limits = 1;
        assert!(
            figures_text(&figures(1, &none))
                .ends_with("0 live purchase leases, 1 member with limits")
        );
    }
}
