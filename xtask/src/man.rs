//! `cargo xtask man [--out DIR]`: the man pages, generated from the clap
//! definitions by the daemon's hidden `tokenbuddyd man --out DIR` (xtask
//! depends on no crate of ours, so it runs the binary through cargo).

use std::path::PathBuf;

use anyhow::{Result, bail};

/// Where the pages go without `--out`.
const DEFAULT_OUT: &str = "target/man/man1";

pub(crate) fn run(args: &[String]) -> Result<()> {
    let out = out_dir(args)?;
    let out = out.to_string_lossy();
    crate::cargo(&[
        "run",
        "--quiet",
        "--package",
        "tokenbuddyd",
        "--",
        "man",
        "--out",
        &out,
    ])
}

/// The `--out DIR` of `args`, or the default.
fn out_dir(args: &[String]) -> Result<PathBuf> {
    match args {
        [] => Ok(PathBuf::from(DEFAULT_OUT)),
        [flag, dir] if flag == "--out" => Ok(PathBuf::from(dir)),
        [flag] if flag == "--help" || flag == "-h" => {
            bail!("usage: cargo xtask man [--out DIR] (default {DEFAULT_OUT})")
        }
        other => bail!(
            "unexpected arguments {other:?}; usage: cargo xtask man [--out DIR] (default {DEFAULT_OUT})"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn out_dir_defaults_and_takes_out() {
        assert_eq!(out_dir(&[]).unwrap(), PathBuf::from(DEFAULT_OUT));
        assert_eq!(
            out_dir(&args(&["--out", "x/y"])).unwrap(),
            PathBuf::from("x/y")
        );
    }

    #[test]
    fn out_dir_rejects_anything_else() {
        for bad in [&["--out"][..], &["x"], &["--out", "a", "b"], &["--help"]] {
            let err = out_dir(&args(bad)).unwrap_err().to_string();
            assert!(err.contains("usage: cargo xtask man"), "{bad:?}: {err}");
        }
    }
}
