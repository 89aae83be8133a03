//! `tokenbuddyd prices MODEL…`: the bundled price of a model, how the
//! lookup resolved it, and what a given usage would cost.

use anyhow::anyhow;
use clap::Args;
use tb_billing::record::usd;
use tb_prices::{BilledTier, ServiceTier, TokenCounts, TokenPrices, price_for};

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
    /// Of the cache writes, tokens written for 1 hour (Anthropic's
    /// extended cache, billed at the 1-hour write price).
    #[arg(long = "cache-write-1h", default_value_t = 0)]
    cache_write_1h: u64,
    /// The service tier the answer reported: standard, priority or flex
    /// (billed at the model's tier prices when it publishes them).
    #[arg(long, default_value = "standard")]
    tier: ServiceTier,
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
    if args.cache_write_1h > args.cache_write {
        return Err(format!(
            "--cache-write-1h ({}) is a part of --cache-write ({}): it cannot be larger",
            args.cache_write_1h, args.cache_write
        ));
    }
    let p = found.price;
    let mut out = format!("resolved: {} (via {})\n", found.resolved, found.rule);
    token_prices(&mut out, "", &p.tokens);
    if !p.tiers.is_empty() {
        let names: Vec<String> = p
            .tiers
            .iter()
            .map(|t| {
                BilledTier {
                    service: t.service,
                    above: t.above,
                    cache_write_1h: false,
                }
                .to_string()
            })
            .collect();
        out.push_str(&format!("tiers: {}\n", names.join(", ")));
    }
    for (key, micros) in p.per_image {
        out.push_str(&format!(
            "image {key}: {} / image\n",
            usd(i64::try_from(*micros).unwrap_or(i64::MAX))
        ));
    }
    let counts = TokenCounts {
        input: args.input.unwrap_or(0),
        cached: args.cached,
        cache_write: args.cache_write,
        cache_write_1h: args.cache_write_1h,
        output: args.output.unwrap_or(0),
    };
    // What the counts are billed at: the tier the answer reported, the
    // context threshold the input passes, 1-hour writes.
    let tiered = p.tiered(args.tier, counts);
    if tiered.tier != BilledTier::STANDARD {
        out.push_str(&format!("tier: {}\n", tiered.tier));
        token_prices(&mut out, "tier ", &tiered.prices);
    }
    if args.input.is_some() || args.output.is_some() {
        match tb_prices::cost_usd_micros(&tiered.prices, counts) {
            Some(c) => out.push_str(&format!(
                "cost: {}\n",
                usd(i64::try_from(c).unwrap_or(i64::MAX))
            )),
            None => out.push_str("cost: unknown (a needed price is missing)\n"),
        }
    }
    Ok(out)
}

/// The `input/output/cache read/cache write[/cache write 1h]` lines, each
/// label after `prefix`; the 1-hour line only when that price is known.
fn token_prices(out: &mut String, prefix: &str, p: &TokenPrices) {
    out.push_str(&format!("{prefix}input: {}\n", per_million(p.input)));
    out.push_str(&format!("{prefix}output: {}\n", per_million(p.output)));
    out.push_str(&format!(
        "{prefix}cache read: {}\n",
        per_million(p.cache_read)
    ));
    out.push_str(&format!(
        "{prefix}cache write: {}\n",
        per_million(p.cache_write)
    ));
    if p.cache_write_1h.is_some() {
        out.push_str(&format!(
            "{prefix}cache write 1h: {}\n",
            per_million(p.cache_write_1h)
        ));
    }
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
            cache_write_1h: 0,
            tier: ServiceTier::Standard,
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
             cache read: $0.300000 / 1M tokens\ncache write: $3.750000 / 1M tokens\n\
             cache write 1h: $6.000000 / 1M tokens\ncost: $3.960000\n"
        );
    }

    #[test]
    fn tiers_are_listed_and_billed_by_the_flags() {
        // Gemini 2.5 Pro at 300k input: above 200k, 2× input and 1.5× output.
        let long = PricesArgs {
            input: Some(300_000),
            output: Some(2_000),
            ..args(None, 0, None)
        };
        let text = describe("gemini-2.5-pro", &long).unwrap();
        assert!(
            text.contains("tiers: above_200k, priority, priority+above_200k, flex\n"),
            "{text}"
        );
        assert!(
            text.ends_with(
                "tier: above_200k\ntier input: $2.500000 / 1M tokens\ntier output: $15.000000 / 1M tokens\n\
                 tier cache read: $0.250000 / 1M tokens\ntier cache write: unknown\ncost: $0.780000\n"
            ),
            "{text}"
        );
        // GPT-5 priority: 2×.
        let priority = PricesArgs {
            input: Some(10_000),
            cached: 1_000,
            output: Some(500),
            tier: ServiceTier::Priority,
            ..args(None, 0, None)
        };
        let text = describe("gpt-5", &priority).unwrap();
        assert!(
            text.contains("tier: priority\ntier input: $2.500000 / 1M tokens\n"),
            "{text}"
        );
        assert!(text.ends_with("cost: $0.032750\n"), "{text}");
        // Claude 1-hour cache writes.
        let one_hour = PricesArgs {
            input: Some(10_100),
            cache_write: 10_000,
            cache_write_1h: 10_000,
            output: Some(200),
            ..args(None, 0, None)
        };
        let text = describe("claude-sonnet-4-5", &one_hour).unwrap();
        assert!(text.contains("tier: cache_write_1h\n"), "{text}");
        assert!(text.ends_with("cost: $0.063300\n"), "{text}");
        // A part larger than its whole is refused.
        let bad = PricesArgs {
            cache_write: 1,
            cache_write_1h: 2,
            ..args(Some(10), 0, None)
        };
        let err = describe("claude-sonnet-4-5", &bad).unwrap_err();
        assert!(err.contains("--cache-write-1h"), "{err}");
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
