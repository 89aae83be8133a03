//! `calls` and `usage`: read the ledger directly, so they work whether or
//! not a daemon is running (SQLite in WAL mode allows a reader beside the
//! writer; PostgreSQL is shared anyway).

use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use clap::{Args, ValueEnum};
use tb_billing::record::{CallRecord, usd};
use tb_config::LoadedConfig;
use tb_control::api::{Usage, UsageBy, UsageRow, UsageTotals};
use tb_store::{GroupBy, Ledger, StoreError};

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
    /// Group by model, upstream, UTC day or member (`-`: the access token).
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
    Member,
}

/// How often `calls --tail` looks for new records.
const TAIL_POLL: Duration = Duration::from_millis(500);

pub(crate) fn runtime() -> Result<tokio::runtime::Runtime, Failure> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
        .map_err(Failure::Runtime)
}

pub(crate) async fn open(loaded: &LoadedConfig) -> Result<Ledger, Failure> {
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

/// The usage document of `GET /v1/usage` and `usage --json`.
pub(crate) async fn usage_doc(
    ledger: &Ledger,
    since_ms: i64,
    by: UsageBy,
) -> Result<Usage, StoreError> {
    let group = match by {
        UsageBy::Model => GroupBy::Model,
        UsageBy::Upstream => GroupBy::Upstream,
        UsageBy::Day => GroupBy::Day,
        UsageBy::Member => GroupBy::Member,
    };
    let rows = ledger.usage_summary(since_ms, group).await?;
    let t = ledger.totals(since_ms).await?;
    Ok(Usage {
        since_ms,
        by,
        rows: rows
            .into_iter()
            .map(|r| UsageRow {
                key: r.key,
                calls: r.calls,
                ok_calls: r.ok_calls,
                input_tokens: r.input_tokens,
                cached_input_tokens: r.cached_input_tokens,
                output_tokens: r.output_tokens,
                cost_usd_micros: r.cost_usd_micros,
                saved_usd_micros: r.saved_usd_micros,
                unpriced_calls: r.unpriced_calls,
            })
            .collect(),
        totals: UsageTotals {
            calls: t.calls,
            cost_usd_micros: t.cost_usd_micros,
            saved_usd_micros: t.saved_usd_micros,
            unpriced_calls: t.unpriced_calls,
        },
    })
}

pub(crate) fn usage(loaded: LoadedConfig, args: &UsageArgs) -> Result<(), Failure> {
    let now_ms = now_ms();
    let since_ms = parse_since(&args.since, now_ms).map_err(Failure::Config)?;
    let by = match args.by {
        By::Model => UsageBy::Model,
        By::Upstream => UsageBy::Upstream,
        By::Day => UsageBy::Day,
        By::Member => UsageBy::Member,
    };
    runtime()?.block_on(async {
        let ledger = open(&loaded).await?;
        let doc = usage_doc(&ledger, since_ms, by)
            .await
            .map_err(|e| Failure::Runtime(anyhow!(e).context("reading the ledger")))?;
        if args.json {
            let line = serde_json::to_string(&doc)
                .context("encoding the usage document")
                .map_err(Failure::Runtime)?;
            println!("{line}");
        } else {
            print!("{}", usage_table(&doc));
        }
        Ok(())
    })
}

/// The table `usage` prints.
fn usage_table(doc: &Usage) -> String {
    use std::fmt::Write as _;
    let width = doc
        .rows
        .iter()
        .map(|r| r.key.len())
        .max()
        .unwrap_or(0)
        .max(8);
    let mut out = format!(
        "{:<width$}  {:>6}  {:>6}  {:>10}  {:>10}  {:>10}  {:>12}  {:>12}\n",
        "key", "calls", "ok", "input", "cached", "output", "spend", "saved"
    );
    for r in &doc.rows {
        let key = if r.key.is_empty() {
            "-"
        } else {
            r.key.as_str()
        };
        let unpriced = if r.unpriced_calls > 0 {
            format!("  ({} unpriced)", r.unpriced_calls)
        } else {
            String::new()
        };
        let _ = writeln!(
            out,
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
    let t = &doc.totals;
    let unpriced = if t.unpriced_calls > 0 {
        format!(" ({} calls unpriced)", t.unpriced_calls)
    } else {
        String::new()
    };
    let _ = writeln!(
        out,
        "total: {} calls, spend {}, saved {}{unpriced}",
        t.calls,
        usd(t.cost_usd_micros),
        usd(t.saved_usd_micros),
    );
    out
}

pub(crate) fn now_ms() -> i64 {
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
