//! Shell completions and man pages, generated from the clap definitions
//! (`completions <shell>` and the hidden `man --out DIR`).

use std::fs;
use std::io::Write as _;
use std::path::Path;

use anyhow::Context;
use clap::CommandFactory;

use crate::Failure;
use crate::cli::Cli;

/// The name the scripts complete and the pages describe.
const BIN: &str = "tokenbuddyd";

/// `completions <shell>`: the script on stdout.
pub(crate) fn completions(shell: clap_complete::Shell) -> Result<(), Failure> {
    let mut cmd = Cli::command();
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut cmd, BIN, &mut script);
    std::io::stdout()
        .lock()
        .write_all(&script)
        .context("writing the completion script to stdout")
        .map_err(Failure::Runtime)
}

/// `man --out DIR`: `tokenbuddyd.1` and `tokenbuddyd-<sub>.1` for every
/// visible subcommand (nested ones too), each path printed.
pub(crate) fn man(out: &Path) -> Result<(), Failure> {
    write_pages(out).map_err(Failure::Runtime)
}

fn write_pages(out: &Path) -> anyhow::Result<()> {
    fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let mut cmd = Cli::command().disable_help_subcommand(true);
    cmd.build();
    let mut pending = vec![cmd];
    while let Some(cmd) = pending.pop() {
        pending.extend(cmd.get_subcommands().filter(|s| !s.is_hide_set()).cloned());
        let path = clap_mangen::Man::new(cmd)
            .generate_to(out)
            .with_context(|| format!("writing a man page into {}", out.display()))?;
        println!("wrote {}", path.display());
    }
    Ok(())
}
