//! Source conventions: crate docs, no debugging leftovers, no run-time
//! reads of the shared directory.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// Directories under `crates/` that hold a crate, sorted.
fn crate_dirs() -> Result<Vec<PathBuf>> {
    let crates = crate::root()?.join("crates");
    let mut dirs = Vec::new();
    for entry in fs::read_dir(&crates).with_context(|| format!("listing {}", crates.display()))? {
        let path = entry?.path();
        if path.join("Cargo.toml").exists() {
            dirs.push(path);
        }
    }
    dirs.sort();
    Ok(dirs)
}

/// Every `.rs` file under `dir`, skipping build output.
pub(crate) fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    for entry in fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        let path = entry?.path();
        if path.is_dir() {
            if path.file_name().is_some_and(|n| n != "target") {
                rust_files(&path, out)?;
            }
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
    Ok(())
}

fn read(path: &Path) -> Result<String> {
    fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
}

#[test]
fn every_crate_has_a_crate_doc() -> Result<()> {
    let mut problems = Vec::new();
    for dir in crate_dirs()?
        .into_iter()
        .chain([crate::root()?.join("xtask")])
    {
        let roots: Vec<PathBuf> = ["src/lib.rs", "src/main.rs"]
            .iter()
            .map(|f| dir.join(f))
            .filter(|p| p.exists())
            .collect();
        if roots.is_empty() {
            problems.push(format!("{} has no lib.rs or main.rs", dir.display()));
        }
        for file in roots {
            if !read(&file)?.trim_start().starts_with("//!") {
                problems.push(format!("{} must open with a //! crate doc", file.display()));
            }
        }
    }
    crate::report("crate docs", &problems)
}

#[test]
fn no_debugging_leftovers_or_shared_paths() -> Result<()> {
    let root = crate::root()?;
    let mut files = Vec::new();
    rust_files(&root.join("crates"), &mut files)?;
    rust_files(&root.join("xtask/src"), &mut files)?;
    // Spelled in pieces so this file does not match itself.
    let forbidden = [
        concat!("dbg", "!("),
        concat!("todo", "!("),
        concat!("unimplemented", "!("),
    ];
    let mut problems = Vec::new();
    for file in files {
        let text = read(&file)?;
        for bad in forbidden.iter().filter(|bad| text.contains(**bad)) {
            problems.push(format!("{} contains {bad}", file.display()));
        }
        let in_tests = file.components().any(|c| c.as_os_str() == "tests");
        if !in_tests && text.contains(concat!("..", "/shared")) {
            problems.push(format!(
                "{} refers to ../shared; the project must not read it at run time",
                file.display()
            ));
        }
    }
    crate::report("debugging leftovers", &problems)
}
