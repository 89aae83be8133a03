//! Project automation: `cargo xtask <task>`. Needs nothing but cargo.
//!
//! Tasks: `ci` runs what `.ci/run` runs (fmt, clippy, deny, tests) and
//! checks the generated price table; `gen-prices` generates
//! `crates/tb-prices/src/generated.rs` from the committed LiteLLM snapshot
//! (see `gen_prices.rs` for what it keeps and where its input comes from).
//! `bench` runs the load harness against the release daemon and writes
//! `target/bench/report.md` (`bench criterion` runs the criterion
//! benchmarks); performance targets live there, never in timed tests.
//! `man` writes the man pages (see `man.rs`).

mod bench;
mod decimal;
mod fuzz;
mod gen_prices;
mod man;

use std::process::Command;

use anyhow::{Context, Result, bail};

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("ci") => ci(),
        Some("gen-prices") => gen_prices::run(&args[1..]),
        Some("bench") => bench::run(&args[1..]),
        Some("fuzz") => fuzz::run(&args[1..]),
        Some("man") => man::run(&args[1..]),
        Some(other) => bail!("unknown task {other:?}; tasks: ci, gen-prices, bench, fuzz, man"),
        None => {
            println!(
                "usage: cargo xtask <task>\n\ntasks:\n  ci          fmt --check, clippy -D warnings, deny, gen-prices --check, tests\n  gen-prices  generate crates/tb-prices/src/generated.rs (--help)\n  bench       load harness → target/bench/report.md [--quick]; `bench criterion [ARGS]` runs cargo bench\n  fuzz        cargo-fuzz every target (--time SECS, default 60; TARGET...; --help)\n  man         tokenbuddyd.1 and a page per subcommand → target/man/man1 [--out DIR]"
            );
            Ok(())
        }
    }
}

pub(crate) fn cargo(args: &[&str]) -> Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(&cargo)
        .args(args)
        .status()
        .with_context(|| format!("running cargo {}", args.join(" ")))?;
    if !status.success() {
        bail!("cargo {} failed ({status})", args.join(" "));
    }
    Ok(())
}

fn ci() -> Result<()> {
    cargo(&["fmt", "--all", "--check"])?;
    cargo(&[
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ])?;
    cargo(&["deny", "check", "bans", "licenses", "sources"])?;
    gen_prices::run(&["--check".to_owned()])?;
    cargo(&["test", "--workspace"])
}
