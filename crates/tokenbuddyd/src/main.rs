//! `tokenbuddyd`: the tokenbuddy daemon and its command line.
//!
//! This binary only wires things together: flags → config → tracing →
//! components → serve → wait for a signal → drain. Exit codes: 0 success,
//! 1 runtime failure, 2 usage or configuration error.

mod cli;
mod control;
mod demo;
mod doctor;
mod history;
mod install;
mod ledger;
mod prices;
mod serve;

use std::process::ExitCode;

use clap::Parser;

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
