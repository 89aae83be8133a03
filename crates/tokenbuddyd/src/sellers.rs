//! `sellers` and `sellers audit`, and the documents of `GET /v1/sellers`
//! and `GET /v1/sellers/audit`: per marketplace seller, what the ledger's
//! call records say (tb-billing's audit), with its wasted credit and last
//! purchase. Like `usage`, the CLI reads the ledger directly, so it works
//! whether or not a daemon is running.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{Context, anyhow};
use clap::{Args, Subcommand};
use tb_billing::audit::{self, FindingKind};
use tb_billing::record::usd;
use tb_config::LoadedConfig;
use tb_control::api as wire;
use tb_store::{Ledger, StoreError};

use crate::Failure;

/// The most recent calls of the window the audit reads.
const WINDOW_CALLS: u32 = 100_000;

#[derive(Debug, Args)]
pub(crate) struct SellersArgs {
    #[command(subcommand)]
    command: Option<SellersCommand>,
    #[command(flatten)]
    window: WindowArgs,
}

#[derive(Debug, Subcommand)]
enum SellersCommand {
    /// Flag the sellers whose median drift between settled and estimated
    /// cost is beyond ±20 %, or whose ratio is near ×100 or ÷100, with
    /// the calls that show it. Exit 1 when a seller is flagged.
    Audit(WindowArgs),
}

#[derive(Debug, Args)]
struct WindowArgs {
    /// Window start: `30m`, `12h`, `7d` or an RFC 3339 time.
    #[arg(long, default_value = "7d")]
    since: String,
    /// One JSON document (the control plane's).
    #[arg(long)]
    json: bool,
}

/// The configured manual providers: never sellers.
pub(crate) fn manual_ids(config: &tb_config::Config) -> BTreeSet<String> {
    config.providers.iter().map(|p| p.id.clone()).collect()
}

/// Credit left behind on each seller, micros: the ledger's waste per
/// seller (failover in the fresh window, expiry, delisting), the figure
/// `/v1/credit` shows.
async fn wasted_by_seller(ledger: &Ledger) -> Result<BTreeMap<String, u64>, StoreError> {
    Ok(ledger
        .wasted_credit_by_seller()
        .await?
        .into_iter()
        .map(|w| (w.seller_id, w.wasted_credit_micros))
        .collect())
}

async fn audited(
    ledger: &Ledger,
    since_ms: i64,
    manual: &BTreeSet<String>,
) -> Result<Vec<audit::SellerAudit>, StoreError> {
    let calls = ledger.calls_in_window(since_ms, WINDOW_CALLS).await?;
    Ok(audit::audit_sellers(&calls, manual))
}

/// The document of `GET /v1/sellers` and `sellers --json`.
pub(crate) async fn sellers_doc(
    ledger: &Ledger,
    since_ms: i64,
    manual: &BTreeSet<String>,
) -> Result<wire::Sellers, StoreError> {
    let audits = audited(ledger, since_ms, manual).await?;
    let wasted = wasted_by_seller(ledger).await?;
    let bought = ledger.last_purchases().await?;
    let sellers = audits
        .into_iter()
        .map(|a| {
            let s = a.stats;
            wire::SellerRow {
                failure_share_ppm: s.failure_share_ppm(),
                wasted_credit_micros: wasted.get(&s.seller_id).copied().unwrap_or(0),
                last_purchase_ms: bought.get(&s.seller_id).copied(),
                seller_id: s.seller_id,
                calls: s.calls,
                attempts: s.attempts,
                failed_attempts: s.failed_attempts,
                won: s.won,
                settled_calls: s.settled_calls,
                settled_usd_micros: s.settled_usd_micros,
                estimated_usd_micros: s.estimated_usd_micros,
                median_drift_ppm: s.median_drift_ppm,
                last_call_ms: s.last_call_ms,
            }
        })
        .collect();
    Ok(wire::Sellers { since_ms, sellers })
}

/// The document of `GET /v1/sellers/audit` and `sellers audit --json`.
pub(crate) async fn audit_doc(
    ledger: &Ledger,
    since_ms: i64,
    manual: &BTreeSet<String>,
) -> Result<wire::SellerAudit, StoreError> {
    let audits = audited(ledger, since_ms, manual).await?;
    let sellers_checked = audits.len() as u64;
    let flagged = audits
        .into_iter()
        .filter_map(|a| {
            let f = a.finding?;
            Some(wire::FlaggedSeller {
                seller_id: a.stats.seller_id,
                kind: kind_to_wire(f.kind),
                message: f.kind.describe().to_string(),
                median_ratio_ppm: f.median_ratio_ppm,
                median_drift_ppm: a.stats.median_drift_ppm.unwrap_or_default(),
                settled_calls: a.stats.settled_calls,
                evidence_calls: f.evidence_calls,
                calls: f
                    .evidence
                    .into_iter()
                    .map(|e| wire::AuditedCall {
                        call_id: e.call_id,
                        started_at_ms: e.started_at_ms,
                        model: e.model,
                        settled_usd_micros: e.settled_usd_micros,
                        estimated_usd_micros: e.estimated_usd_micros,
                        drift_ppm: e.drift_ppm,
                    })
                    .collect(),
            })
        })
        .collect();
    Ok(wire::SellerAudit {
        since_ms,
        sellers_checked,
        drift_limit_ppm: audit::DRIFT_LIMIT_PPM,
        flagged,
    })
}

fn kind_to_wire(kind: FindingKind) -> wire::FindingKind {
    match kind {
        FindingKind::Hundredfold => wire::FindingKind::Times100,
        FindingKind::Hundredth => wire::FindingKind::Div100,
        FindingKind::Overbilling => wire::FindingKind::OverBilling,
        FindingKind::Underbilling => wire::FindingKind::UnderBilling,
    }
}

/// `tokenbuddyd sellers [audit]`.
pub(crate) fn run(loaded: LoadedConfig, args: &SellersArgs) -> Result<(), Failure> {
    let (window, audit) = match &args.command {
        None => (&args.window, false),
        Some(SellersCommand::Audit(w)) => (w, true),
    };
    let now_ms = crate::history::now_ms();
    let since_ms = crate::history::parse_since(&window.since, now_ms).map_err(Failure::Config)?;
    let manual = manual_ids(&loaded.config);
    let runtime = crate::history::runtime()?;
    runtime.block_on(async {
        let ledger = crate::history::open(&loaded).await?;
        let store = |e: StoreError| Failure::Runtime(anyhow!(e).context("reading the ledger"));
        if !audit {
            let doc = sellers_doc(&ledger, since_ms, &manual)
                .await
                .map_err(store)?;
            return print_doc(&doc, window.json, sellers_table);
        }
        let doc = audit_doc(&ledger, since_ms, &manual).await.map_err(store)?;
        print_doc(&doc, window.json, audit_text)?;
        match doc.flagged.len() {
            0 => Ok(()),
            n => Err(Failure::Runtime(anyhow!(
                "{n} seller(s) bill far off their estimate (see above)"
            ))),
        }
    })
}

fn print_doc<T: serde::Serialize>(
    doc: &T,
    json: bool,
    text: fn(&T) -> String,
) -> Result<(), Failure> {
    if json {
        let line = serde_json::to_string(doc)
            .context("encoding the document")
            .map_err(Failure::Runtime)?;
        println!("{line}");
    } else {
        print!("{}", text(doc));
    }
    Ok(())
}

/// `+2.7%` from signed ppm.
fn percent(ppm: i64) -> String {
    let sign = if ppm < 0 { "-" } else { "+" };
    let abs = ppm.unsigned_abs();
    format!("{sign}{}.{}%", abs / 10_000, (abs % 10_000) / 1_000)
}

fn when(ms: Option<i64>) -> String {
    match ms.and_then(|ms| u64::try_from(ms).ok()) {
        Some(ms) => humantime::format_rfc3339_seconds(
            std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms),
        )
        .to_string(),
        None => "-".into(),
    }
}

fn micros(v: u64) -> String {
    usd(i64::try_from(v).unwrap_or(i64::MAX))
}

/// The table `sellers` prints.
fn sellers_table(doc: &wire::Sellers) -> String {
    use std::fmt::Write as _;
    let width = doc
        .sellers
        .iter()
        .map(|s| s.seller_id.len())
        .max()
        .unwrap_or(0)
        .max(6);
    let mut out = format!(
        "{:<width$}  {:>6}  {:>6}  {:>12}  {:>12}  {:>9}  {:>12}  last purchase\n",
        "seller", "calls", "failed", "settled", "estimated", "drift", "wasted"
    );
    for s in &doc.sellers {
        let failed = s.failure_share_ppm.map_or("-".into(), |p| {
            format!("{}.{}%", p / 10_000, (p % 10_000) / 1_000)
        });
        let drift = s.median_drift_ppm.map_or("-".into(), percent);
        let _ = writeln!(
            out,
            "{:<width$}  {:>6}  {:>6}  {:>12}  {:>12}  {:>9}  {:>12}  {}",
            s.seller_id,
            s.calls,
            failed,
            micros(s.settled_usd_micros),
            micros(s.estimated_usd_micros),
            drift,
            micros(s.wasted_credit_micros),
            when(s.last_purchase_ms),
        );
    }
    if doc.sellers.is_empty() {
        out.push_str("no seller calls in the window\n");
    }
    out
}

/// The report `sellers audit` prints.
fn audit_text(doc: &wire::SellerAudit) -> String {
    use std::fmt::Write as _;
    if doc.flagged.is_empty() {
        return format!(
            "ok: {} seller(s) checked, none bills beyond ±{} of its estimate or near ×100/÷100\n",
            doc.sellers_checked,
            percent(doc.drift_limit_ppm).trim_start_matches('+')
        );
    }
    let mut out = String::new();
    for f in &doc.flagged {
        let ratio = f.median_ratio_ppm;
        let _ = writeln!(
            out,
            "FLAGGED {} ({}): median ×{}.{:02} of the estimate ({} drift over {} settled calls); {}",
            f.seller_id,
            match f.kind {
                wire::FindingKind::Times100 => "times_100",
                wire::FindingKind::Div100 => "div_100",
                wire::FindingKind::OverBilling => "over_billing",
                wire::FindingKind::UnderBilling => "under_billing",
            },
            ratio / 1_000_000,
            (ratio % 1_000_000) / 10_000,
            percent(f.median_drift_ppm),
            f.settled_calls,
            f.message,
        );
        for c in &f.calls {
            let _ = writeln!(
                out,
                "  {}  {}  {}  settled {}  estimated {}  ({})",
                c.call_id,
                when(Some(c.started_at_ms)),
                c.model,
                micros(c.settled_usd_micros),
                micros(c.estimated_usd_micros),
                percent(c.drift_ppm),
            );
        }
        if f.evidence_calls > f.calls.len() as u64 {
            let _ = writeln!(
                out,
                "  … and {} more",
                f.evidence_calls - f.calls.len() as u64
            );
        }
    }
    let _ = writeln!(
        out,
        "{} of {} seller(s) flagged",
        doc.flagged.len(),
        doc.sellers_checked
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percents_are_signed_with_one_decimal() {
        assert_eq!(percent(27_000), "+2.7%");
        assert_eq!(percent(-250_000), "-25.0%");
        assert_eq!(percent(99_000_000), "+9900.0%");
        assert_eq!(percent(0), "+0.0%");
    }
}
