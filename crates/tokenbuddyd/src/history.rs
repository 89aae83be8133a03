//! `calls` and `usage`: read the ledger directly, so they work whether or
//! not a daemon is running (SQLite in WAL mode allows a reader beside the
//! writer; PostgreSQL is shared anyway).

use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use clap::{Args, ValueEnum};
use serde_json::json;
use tb_billing::record::{CallRecord, usd};
use tb_config::LoadedConfig;
use tb_store::{GroupBy, Ledger};

use crate::Failure;

#[derive(Debug, Args)]
pub(crate) struct CallsArgs {
    /// Keep printing new calls as they are recorded (Ctrl-C stops).
    #[arg(long)]
    tail: bool,
    /// How many recent calls to print first.
    #[arg(long, default_value_t = 20)]
    limit: u32,
    /// JSON Lines, one record per line.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub(crate) struct UsageArgs {
    /// Window start: `30m`, `12h`, `7d` or an RFC 3339 time.
    #[arg(long, default_value = "7d")]
    since: String,
    /// Group by model, upstream or UTC day.
    #[arg(long, value_enum, default_value_t = By::Model)]
    by: By,
    /// One JSON document.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum By {
    Model,
    Upstream,
    Day,
}

/// How often `calls --tail` looks for new records.
const TAIL_POLL: Duration = Duration::from_millis(500);

fn runtime() -> Result<tokio::runtime::Runtime, Failure> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
        .map_err(Failure::Runtime)
}

async fn open(loaded: &LoadedConfig) -> Result<Ledger, Failure> {
    let (ledger, _) =
        crate::ledger::open(loaded.config.ledger.url.as_deref(), &loaded.paths.data_dir)
            .await
            .map_err(Failure::Runtime)?;
    Ok(ledger)
}

fn print_call(record: &CallRecord, json: bool) -> Result<(), Failure> {
    if json {
        let line = serde_json::to_string(record)
            .context("encoding a call record")
            .map_err(Failure::Runtime)?;
        println!("{line}");
    } else {
        println!("{}", record.one_line());
    }
    Ok(())
}

pub(crate) fn calls(loaded: LoadedConfig, args: &CallsArgs) -> Result<(), Failure> {
    runtime()?.block_on(async {
        let ledger = open(&loaded).await?;
        let store =
            |e: tb_store::StoreError| Failure::Runtime(anyhow!(e).context("reading the ledger"));
        // The position first, then the listing: nothing recorded in between is missed.
        let mut seq = if args.tail {
            ledger.last_seq().await.map_err(store)?
        } else {
            0
        };
        let mut recent = ledger.recent_calls(args.limit, None).await.map_err(store)?;
        recent.reverse();
        for r in &recent {
            print_call(r, args.json)?;
        }
        if !args.tail {
            return Ok(());
        }
        loop {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => return Ok(()),
                () = tokio::time::sleep(TAIL_POLL) => {}
            }
            for (s, r) in ledger.calls_after_seq(seq, 1_000).await.map_err(store)? {
                print_call(&r, args.json)?;
                seq = seq.max(s);
            }
        }
    })
}

/// Parses `--since`: `30m`, `12h`, `7d` (before `now_ms`) or an RFC 3339 time.
pub(crate) fn parse_since(text: &str, now_ms: i64) -> anyhow::Result<i64> {
    let text = text.trim();
    let unit_ms = match text.chars().last() {
        Some('m') => Some(60_000),
        Some('h') => Some(3_600_000),
        Some('d') => Some(86_400_000),
        _ => None,
    };
    if let Some(unit) = unit_ms
        && let Ok(n) = text[..text.len() - 1].parse::<i64>()
    {
        if n < 0 {
            bail!("--since {text:?} must not be negative");
        }
        return Ok(now_ms.saturating_sub(n.saturating_mul(unit)));
    }
    let t = humantime::parse_rfc3339_weak(text).map_err(|_| {
        anyhow!("--since {text:?} is not a duration like 30m, 12h, 7d or an RFC 3339 time")
    })?;
    let ms = t
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    Ok(ms)
}

pub(crate) fn usage(loaded: LoadedConfig, args: &UsageArgs) -> Result<(), Failure> {
    let now_ms = tb_store_now_ms();
    let since_ms = parse_since(&args.since, now_ms).map_err(Failure::Config)?;
    let by = match args.by {
        By::Model => GroupBy::Model,
        By::Upstream => GroupBy::Upstream,
        By::Day => GroupBy::Day,
    };
    runtime()?.block_on(async {
        let ledger = open(&loaded).await?;
        let store = |e: tb_store::StoreError| Failure::Runtime(anyhow!(e).context("reading the ledger"));
        let rows = ledger.usage_summary(since_ms, by).await.map_err(store)?;
        let totals = ledger.totals(since_ms).await.map_err(store)?;
        if args.json {
            let rows: Vec<_> = rows
                .iter()
                .map(|r| {
                    json!({
                        "key": r.key, "calls": r.calls, "ok_calls": r.ok_calls,
                        "input_tokens": r.input_tokens, "cached_input_tokens": r.cached_input_tokens,
                        "output_tokens": r.output_tokens, "cost_usd_micros": r.cost_usd_micros,
                        "saved_usd_micros": r.saved_usd_micros, "unpriced_calls": r.unpriced_calls,
                    })
                })
                .collect();
            let doc = json!({
                "since_ms": since_ms,
                "by": format!("{:?}", args.by).to_lowercase(),
                "rows": rows,
                "totals": {
                    "calls": totals.calls, "cost_usd_micros": totals.cost_usd_micros,
                    "saved_usd_micros": totals.saved_usd_micros, "unpriced_calls": totals.unpriced_calls,
                },
            });
            println!("{doc}");
            return Ok(());
        }
        let width = rows.iter().map(|r| r.key.len()).max().unwrap_or(0).max(8);
        println!(
            "{:<width$}  {:>6}  {:>6}  {:>10}  {:>10}  {:>10}  {:>12}  {:>12}",
            "key", "calls", "ok", "input", "cached", "output", "spend", "saved"
        );
        for r in &rows {
            let key = if r.key.is_empty() { "-" } else { r.key.as_str() };
            let unpriced = if r.unpriced_calls > 0 { format!("  ({} unpriced)", r.unpriced_calls) } else { String::new() };
            println!(
                "{key:<width$}  {:>6}  {:>6}  {:>10}  {:>10}  {:>10}  {:>12}  {:>12}{unpriced}",
                r.calls,
                r.ok_calls,
                r.input_tokens,
                r.cached_input_tokens,
                r.output_tokens,
                usd(r.cost_usd_micros),
                usd(r.saved_usd_micros),
            );
        }
        println!(
            "total: {} calls, spend {}, saved {}{}",
            totals.calls,
            usd(totals.cost_usd_micros),
            usd(totals.saved_usd_micros),
            if totals.unpriced_calls > 0 { format!(" ({} calls unpriced)", totals.unpriced_calls) } else { String::new() }
        );
        Ok(())
    })
}

fn tb_store_now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_accepts_durations_and_times() {
        let now = 1_700_000_000_000;
        assert_eq!(parse_since("30m", now).unwrap(), now - 30 * 60_000);
        assert_eq!(parse_since("12h", now).unwrap(), now - 12 * 3_600_000);
        assert_eq!(parse_since("7d", now).unwrap(), now - 7 * 86_400_000);
        assert_eq!(
            parse_since("2023-11-14T22:13:20Z", now).unwrap(),
            1_700_000_000_000
        );
        for bad in ["", "7w", "d", "-1d", "yesterday"] {
            assert!(parse_since(bad, now).is_err(), "{bad}");
        }
    }
}
