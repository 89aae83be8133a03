//! Project automation: `cargo xtask <task>`. Needs nothing but cargo.
//!
//! Tasks: `ci` runs what `.ci/run` runs (fmt, clippy, deny, tests).
//! `gen-prices` and `bench` join with the issues that need them.

use std::process::Command;

use anyhow::{Context, Result, bail};

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("ci") => ci(),
        Some(other) => bail!("unknown task {other:?}; tasks: ci"),
        None => {
            println!(
                "usage: cargo xtask <task>\n\ntasks:\n  ci    fmt --check, clippy -D warnings, deny, tests"
            );
            Ok(())
        }
    }
}

fn cargo(args: &[&str]) -> Result<()> {
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
    cargo(&["test", "--workspace"])
}
