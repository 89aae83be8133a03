//! `tokenbuddyd prices MODEL…`: the bundled price of a model, how the
//! lookup resolved it, and what a given usage would cost.

use anyhow::anyhow;
use clap::Args;
use tb_billing::record::usd;
use tb_prices::{TokenCounts, price_for};

use crate::Failure;

#[derive(Debug, Args)]
pub(crate) struct PricesArgs {
    /// Model ids to look up.
    #[arg(required = true)]
    models: Vec<String>,
    /// Total input tokens (fresh + cache reads + cache writes).
    #[arg(long)]
    input: Option<u64>,
    /// Of the input, tokens read from the prompt cache.
    #[arg(long, default_value_t = 0)]
    cached: u64,
    /// Of the input, tokens written to the prompt cache.
    #[arg(long, default_value_t = 0)]
    cache_write: u64,
    /// Output tokens.
    #[arg(long)]
    output: Option<u64>,
}

fn per_million(micros: Option<u64>) -> String {
    match micros {
        Some(m) => format!("{} / 1M tokens", usd(i64::try_from(m).unwrap_or(i64::MAX))),
        None => "unknown".into(),
    }
}

/// The text `prices` prints for one model, or why it cannot.
pub(crate) fn describe(model: &str, args: &PricesArgs) -> Result<String, String> {
    let Some(found) = price_for(model) else {
        let close = tb_prices::closest(model, 5);
        let hint = if close.is_empty() {
            String::new()
        } else {
            format!("; closest: {}", close.join(", "))
        };
        return Err(format!("no bundled price for {model:?}{hint}"));
    };
    let p = found.price;
    let mut out = format!("resolved: {} (via {})\n", found.resolved, found.rule);
    out.push_str(&format!("input: {}\n", per_million(p.tokens.input)));
    out.push_str(&format!("output: {}\n", per_million(p.tokens.output)));
    out.push_str(&format!(
        "cache read: {}\n",
        per_million(p.tokens.cache_read)
    ));
    out.push_str(&format!(
        "cache write: {}\n",
        per_million(p.tokens.cache_write)
    ));
    for (key, micros) in p.per_image {
        out.push_str(&format!(
            "image {key}: {} / image\n",
            usd(i64::try_from(*micros).unwrap_or(i64::MAX))
        ));
    }
    if args.input.is_some() || args.output.is_some() {
        let counts = TokenCounts {
            input: args.input.unwrap_or(0),
            cached: args.cached,
            cache_write: args.cache_write,
            output: args.output.unwrap_or(0),
        };
        match p.cost_usd_micros(counts) {
            Some(c) => out.push_str(&format!(
                "cost: {}\n",
                usd(i64::try_from(c).unwrap_or(i64::MAX))
            )),
            None => out.push_str("cost: unknown (a needed price is missing)\n"),
        }
    }
    Ok(out)
}

pub(crate) fn run(args: &PricesArgs) -> Result<(), Failure> {
    let mut failed = Vec::new();
    for (i, model) in args.models.iter().enumerate() {
        if i > 0 {
            println!();
        }
        match describe(model, args) {
            Ok(text) => print!("{text}"),
            Err(e) => failed.push(e),
        }
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(Failure::Runtime(anyhow!(failed.join("\n"))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(input: Option<u64>, cached: u64, output: Option<u64>) -> PricesArgs {
        PricesArgs {
            models: vec![],
            input,
            cached,
            cache_write: 0,
            output,
        }
    }

    #[test]
    fn claude_sonnet_example_costs_to_the_micro() {
        let text = describe(
            "claude-sonnet-4-5",
            &args(Some(1_000_000), 200_000, Some(100_000)),
        )
        .unwrap();
        assert_eq!(
            text,
            "resolved: claude-sonnet-4-5 (via exact)\ninput: $3.000000 / 1M tokens\noutput: $15.000000 / 1M tokens\n\
             cache read: $0.300000 / 1M tokens\ncache write: $3.750000 / 1M tokens\ncost: $3.960000\n"
        );
    }

    #[test]
    fn fallbacks_and_unknowns() {
        let text = describe("anthropic/claude-sonnet-4.5", &args(None, 0, None)).unwrap();
        assert!(text.starts_with("resolved: claude-sonnet-4-5 (via provider prefix removed + version separator swapped)"), "{text}");
        let err = describe("gpt-4oo", &args(None, 0, None)).unwrap_err();
        assert!(err.contains("closest") && err.contains("gpt-4o"), "{err}");
        let image = describe("gpt-image-1", &args(None, 0, None)).unwrap();
        assert!(image.contains("image low/1024x1024: $"), "{image}");
    }
}
