//! `tokenbuddyd`: the tokenbuddy daemon and its command line.
//!
//! This binary only wires things together: flags → config → tracing →
//! components → serve → wait for a signal → drain. Exit codes: 0 success,
//! 1 runtime failure, 2 usage or configuration error.

mod child;
mod cli;
mod control;
mod demo;
mod doctor;
mod gateway;
mod history;
mod install;
mod keys;
mod ledger;
mod manual;
mod metrics;
mod pay;
mod prices;
mod probe;
mod sellers;
mod series;
mod serve;
mod service;
mod setup;
mod team;
mod team_budget;

use std::process::ExitCode;

use clap::Parser;

// The proxy allocates and frees many small buffers per request (headers,
// body chunks, the call record), and the ledger's threads free what the
// event loop allocated; mimalloc's thread-local free lists cut the
// allocator's share of the hot path (glibc malloc was ~15 % of the
// daemon's CPU at peak). Built with `no_thp`: its huge-page advice doubled
// idle RSS (docs/performance.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// An error with the exit code it maps to.
#[derive(Debug)]
pub(crate) enum Failure {
    /// Usage or configuration: exit 2.
    Config(anyhow::Error),
    /// Anything else at run time: exit 1.
    Runtime(anyhow::Error),
}

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    match cli::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Config(e)) => {
            eprintln!("tokenbuddyd: configuration error: {e:#}");
            ExitCode::from(2)
        }
        Err(Failure::Runtime(e)) => {
            eprintln!("tokenbuddyd: error: {e:#}");
            ExitCode::from(1)
        }
    }
}
