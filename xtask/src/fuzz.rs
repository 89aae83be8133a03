//! `cargo xtask fuzz [--time SECS] [TARGET...]`: coverage-guided fuzzing of
//! the parsers and editors that read untrusted bytes (upstream SSE streams,
//! seller settlements, the registry document, config files, the files of
//! the clients the installer edits).
//!
//! Why a task and not just `cargo fuzz run`: the fuzz crate (`fuzz/`) is its
//! own workspace and needs nightly (sanitizer flags), the committed seed
//! corpus (`fuzz/corpus/<target>/`) must not be polluted by every run, and a
//! crash should fail loudly with the target and the input that reproduces
//! it. So this task installs cargo-fuzz if it is missing, picks the nightly
//! toolchain (or, without one, the pinned toolchain with
//! `RUSTC_BOOTSTRAP=1`, and says so), builds every target once, then runs
//! each target alone, one process, for `--time` seconds (default 60) with
//! a working corpus in `fuzz/target/corpus/<target>/` seeded from the
//! committed one and crash inputs in `fuzz/artifacts/<target>/`. Output goes
//! to the terminal and to `fuzz/target/logs/<target>.log`; the summary
//! table (runs, exec/s, coverage, corpus) is what `fuzz/README.md` records.

use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::SystemTime;

use anyhow::{Context, Result, bail};

use crate::gen_prices::root;

/// Every target in `fuzz/fuzz_targets/`, in the order they run.
const TARGETS: [&str; 7] = [
    "sse_parser",
    "settlement_stripper",
    "usage_extraction",
    "settlement_parse",
    "registry_parse",
    "config_parse",
    "installer_editors",
];

const DEFAULT_SECS: u64 = 60;

const USAGE: &str = "usage: cargo xtask fuzz [--time SECS] [TARGET...]

Runs each fuzz target (all by default) for SECS seconds (default 60), one
process at a time, seeded from fuzz/corpus/<target>/. Fails naming the
target and the crash input (fuzz/artifacts/<target>/…) if any target
crashes. Needs cargo-fuzz (installed if missing) and nightly (else the
pinned toolchain with RUSTC_BOOTSTRAP=1).

targets: sse_parser settlement_stripper usage_extraction settlement_parse
         registry_parse config_parse installer_editors";

/// Runs the task with its arguments (after `fuzz`).
pub(crate) fn run(args: &[String]) -> Result<()> {
    let (secs, targets) = parse_args(args)?;
    let root = root();
    let fuzz_dir = root.join("fuzz");
    let toolchain = Toolchain::pick();
    toolchain.announce();
    ensure_cargo_fuzz(&toolchain)?;

    let mut build = toolchain.cargo(&fuzz_dir);
    build.args(["fuzz", "build"]);
    let status = build
        .status()
        .context("running cargo fuzz build (is rustup on PATH?)")?;
    if !status.success() {
        bail!("cargo fuzz build failed ({status})");
    }

    let mut results = Vec::new();
    let mut crashes = Vec::new();
    for target in &targets {
        let outcome = run_target(&toolchain, &fuzz_dir, target, secs)?;
        if let Some(artifact) = &outcome.crash {
            crashes.push(format!(
                "{target}: crashed; input {} (reproduce: cd fuzz && cargo{} fuzz run {target} {})",
                artifact.display(),
                toolchain.plus(),
                artifact.display()
            ));
        }
        results.push(outcome);
    }
    println!("\n{}", summary(&results));
    if !crashes.is_empty() {
        bail!("fuzzing found crashes:\n  {}", crashes.join("\n  "));
    }
    Ok(())
}

fn parse_args(args: &[String]) -> Result<(u64, Vec<String>)> {
    let mut secs = DEFAULT_SECS;
    let mut targets = Vec::new();
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let time = match arg.as_str() {
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            "--time" => Some(
                it.next()
                    .context("--time needs a number of seconds")?
                    .as_str(),
            ),
            other => other.strip_prefix("--time="),
        };
        if let Some(t) = time {
            secs = t
                .parse()
                .ok()
                .filter(|s| *s > 0)
                .with_context(|| format!("--time {t:?} is not a positive number of seconds"))?;
        } else if arg.starts_with('-') {
            bail!("unknown option {arg:?}\n\n{USAGE}");
        } else if TARGETS.contains(&arg.as_str()) {
            targets.push(arg.clone());
        } else {
            bail!(
                "unknown fuzz target {arg:?}; targets: {}",
                TARGETS.join(", ")
            );
        }
    }
    if targets.is_empty() {
        targets = TARGETS.iter().map(|t| (*t).to_owned()).collect();
    }
    Ok((secs, targets))
}

/// How cargo is invoked for the fuzz crate.
enum Toolchain {
    /// `cargo +nightly` through rustup.
    Nightly,
    /// The pinned toolchain with `RUSTC_BOOTSTRAP=1`.
    Bootstrap,
}

impl Toolchain {
    fn pick() -> Toolchain {
        let nightly = Command::new("cargo")
            .args(["+nightly", "--version"])
            .env_remove("RUSTUP_TOOLCHAIN")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if nightly {
            Toolchain::Nightly
        } else {
            Toolchain::Bootstrap
        }
    }

    fn announce(&self) {
        if let Toolchain::Bootstrap = self {
            println!(
                "no nightly toolchain (`cargo +nightly` failed): using the pinned toolchain \
                 with RUSTC_BOOTSTRAP=1 for the sanitizer flags cargo-fuzz needs"
            );
        }
    }

    fn plus(&self) -> &'static str {
        match self {
            Toolchain::Nightly => " +nightly",
            Toolchain::Bootstrap => "",
        }
    }

    /// A cargo command in `dir`. `cargo` from PATH (the rustup proxy), not
    /// `$CARGO`: that is the pinned toolchain's binary, which ignores
    /// `+nightly`.
    fn cargo(&self, dir: &Path) -> Command {
        let mut cmd = Command::new("cargo");
        cmd.current_dir(dir)
            .env_remove("CARGO")
            .env_remove("RUSTUP_TOOLCHAIN");
        match self {
            Toolchain::Nightly => {
                cmd.arg("+nightly");
            }
            Toolchain::Bootstrap => {
                cmd.env("RUSTC_BOOTSTRAP", "1");
            }
        }
        cmd
    }
}

fn ensure_cargo_fuzz(toolchain: &Toolchain) -> Result<()> {
    let present = toolchain
        .cargo(&root())
        .args(["fuzz", "--version"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if present {
        return Ok(());
    }
    println!("installing cargo-fuzz (once)…");
    let status = Command::new("cargo")
        .args(["install", "cargo-fuzz", "--locked"])
        .env_remove("CARGO")
        .status()
        .context("running cargo install cargo-fuzz")?;
    if !status.success() {
        bail!("cargo install cargo-fuzz --locked failed ({status})");
    }
    Ok(())
}

/// What one target's run reported.
#[derive(Debug, Default, PartialEq)]
struct Outcome {
    target: String,
    secs: u64,
    /// `stat::number_of_executed_units`.
    runs: Option<u64>,
    /// `stat::average_exec_per_sec`.
    exec_per_sec: Option<u64>,
    /// `cov:` and `ft:` of the last status line.
    cov: Option<u64>,
    ft: Option<u64>,
    /// `corp:` of the last status line: entries and size.
    corpus: Option<String>,
    /// The input that crashed the target, if it did.
    crash: Option<PathBuf>,
}

fn run_target(toolchain: &Toolchain, fuzz_dir: &Path, target: &str, secs: u64) -> Result<Outcome> {
    let seeds = fuzz_dir.join("corpus").join(target);
    let work = fuzz_dir.join("target/corpus").join(target);
    let artifacts = fuzz_dir.join("artifacts").join(target);
    let logs = fuzz_dir.join("target/logs");
    for dir in [&seeds, &work, &artifacts, &logs] {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let log_path = logs.join(format!("{target}.log"));
    let mut log = std::fs::File::create(&log_path)
        .with_context(|| format!("creating {}", log_path.display()))?;
    println!("\n=== {target}: {secs} s, log {}", log_path.display());

    let started = SystemTime::now();
    let mut cmd = toolchain.cargo(fuzz_dir);
    // New inputs go to the first corpus dir (the working one), never to the
    // committed seeds. One process, one job: the machine is shared.
    cmd.args(["fuzz", "run", target])
        .arg(&work)
        .arg(&seeds)
        .arg("--")
        .arg(format!("-max_total_time={secs}"))
        .arg(format!("-artifact_prefix={}/", artifacts.display()))
        .arg("-timeout=30")
        .arg("-print_final_stats=1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .with_context(|| format!("starting cargo fuzz run {target}"))?;
    let stdout = child.stdout.take().context("no stdout")?;
    // libFuzzer talks on stderr; drain stdout alongside so neither blocks.
    let echo = std::thread::spawn(move || {
        BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .collect::<Vec<_>>()
    });
    let stderr = child.stderr.take().context("no stderr")?;
    let mut lines = Vec::new();
    for line in BufReader::new(stderr).lines() {
        let line = line.context("reading cargo fuzz output")?;
        writeln!(log, "{line}").context("writing the log")?;
        if is_interesting(&line) {
            println!("{line}");
        }
        lines.push(line);
    }
    for line in echo.join().unwrap_or_default() {
        writeln!(log, "{line}").context("writing the log")?;
        lines.push(line);
    }
    let status = child.wait().context("waiting for cargo fuzz")?;

    let mut outcome = parse_stats(target, secs, &lines);
    if !status.success() {
        let crash = written_artifact(&lines)
            .or_else(|| newest_since(&artifacts, started))
            .with_context(|| {
                format!(
                    "{target}: cargo fuzz run failed ({status}) without a crash input; see {}",
                    log_path.display()
                )
            })?;
        println!("!!! {target} crashed: {}", crash.display());
        outcome.crash = Some(crash);
    }
    Ok(outcome)
}

/// Lines worth echoing: progress every power of two, the end, a crash.
fn is_interesting(line: &str) -> bool {
    let status = |word: &str| line.starts_with('#') && line.contains(&format!("\t{word} "));
    status("DONE")
        || status("pulse")
        || status("INITED")
        || line.contains("panicked")
        || line.contains("ERROR")
        || line.contains("SUMMARY")
        || line.contains("Test unit written")
        || line.starts_with("stat::")
        || line.starts_with("error")
}

/// The path in libFuzzer's "Test unit written to <path>" line.
fn written_artifact(lines: &[String]) -> Option<PathBuf> {
    lines.iter().rev().find_map(|l| {
        let (_, path) = l.split_once("Test unit written to ")?;
        Some(PathBuf::from(path.trim()))
    })
}

fn newest_since(dir: &Path, since: SystemTime) -> Option<PathBuf> {
    std::fs::read_dir(dir)
        .ok()?
        .filter_map(Result::ok)
        .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
        .filter(|(t, _)| *t >= since)
        .max_by_key(|(t, _)| *t)
        .map(|(_, p)| p)
}

/// Reads libFuzzer's final stats and its last status line
/// (`#N DONE cov: C ft: F corp: E/S lim: … exec/s: X …`).
fn parse_stats(target: &str, secs: u64, lines: &[String]) -> Outcome {
    let stat = |key: &str| {
        lines.iter().rev().find_map(|l| {
            l.strip_prefix(key)?
                .trim_start_matches(':')
                .trim()
                .parse()
                .ok()
        })
    };
    let mut out = Outcome {
        target: target.to_owned(),
        secs,
        runs: stat("stat::number_of_executed_units"),
        exec_per_sec: stat("stat::average_exec_per_sec"),
        ..Outcome::default()
    };
    let last = lines
        .iter()
        .rev()
        .find(|l| l.starts_with('#') && l.contains(" cov: "));
    if let Some(line) = last {
        let mut words = line.split_whitespace();
        while let Some(w) = words.next() {
            match w {
                "cov:" => out.cov = words.next().and_then(|v| v.parse().ok()),
                "ft:" => out.ft = words.next().and_then(|v| v.parse().ok()),
                "corp:" => out.corpus = words.next().map(str::to_owned),
                _ => {}
            }
        }
    }
    out
}

fn summary(results: &[Outcome]) -> String {
    let show = |v: Option<u64>| v.map_or_else(|| "?".to_owned(), |v| v.to_string());
    let mut s = String::from(
        "| target | time (s) | runs | exec/s | cov | ft | corpus (entries/size) | result |\n\
         |---|---|---|---|---|---|---|---|\n",
    );
    for r in results {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {} | {} |",
            r.target,
            r.secs,
            show(r.runs),
            show(r.exec_per_sec),
            show(r.cov),
            show(r.ft),
            r.corpus.as_deref().unwrap_or("?"),
            if r.crash.is_some() { "CRASH" } else { "ok" },
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn arguments() {
        let (secs, targets) = parse_args(&[]).unwrap();
        assert_eq!(secs, DEFAULT_SECS);
        assert_eq!(targets.len(), TARGETS.len());
        let (secs, targets) =
            parse_args(&args(&["--time", "600", "sse_parser", "--time=5"])).unwrap();
        assert_eq!((secs, targets), (5, vec!["sse_parser".to_owned()]));
        assert!(parse_args(&args(&["--time", "0"])).is_err());
        assert!(parse_args(&args(&["--time"])).is_err());
        assert!(parse_args(&args(&["no_such_target"])).is_err());
        assert!(parse_args(&args(&["--jobs=2"])).is_err());
    }

    #[test]
    fn only_progress_lines_are_echoed() {
        assert!(is_interesting(
            "#8192\tpulse  cov: 423 ft: 1930 corp: 323/230Kb"
        ));
        assert!(is_interesting("#1481149\tDONE   cov: 507 ft: 2250"));
        assert!(!is_interesting(
            "#94540\tREDUCE cov: 2277 ft: 9344 MS: 2 EraseBytes-CMP- DE: \"[DONE]\"-"
        ));
    }

    #[test]
    fn final_stats_and_crash_path_are_read() {
        let lines = args(&[
            "#1048576\tpulse  cov: 100 ft: 200 corp: 10/1Kb exec/s: 5000 rss: 40Mb",
            "#2000000\tDONE   cov: 421 ft: 1914 corp: 379/345Kb lim: 4260 exec/s: 2403 rss: 438Mb",
            "Done 2000000 runs in 601 second(s)",
            "stat::number_of_executed_units: 2000000",
            "stat::average_exec_per_sec:     2403",
            "stat::new_units_added:          52",
        ]);
        let o = parse_stats("sse_parser", 600, &lines);
        assert_eq!(o.runs, Some(2_000_000));
        assert_eq!(o.exec_per_sec, Some(2403));
        assert_eq!((o.cov, o.ft), (Some(421), Some(1914)));
        assert_eq!(o.corpus.as_deref(), Some("379/345Kb"));
        let table = summary(&[o]);
        assert!(
            table.contains("| sse_parser | 600 | 2000000 | 2403 | 421 | 1914 | 379/345Kb | ok |")
        );

        let crash = args(&[
            "artifact_prefix='/r/fuzz/artifacts/x/'; Test unit written to /r/fuzz/artifacts/x/crash-abc",
        ]);
        assert_eq!(
            written_artifact(&crash),
            Some(PathBuf::from("/r/fuzz/artifacts/x/crash-abc"))
        );
        assert_eq!(written_artifact(&lines), None);
    }
}
