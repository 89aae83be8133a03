//! Tidy checks: the conventions that matter, checked mechanically on every
//! test run (rust-analyzer style).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn crate_dirs() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = fs::read_dir(root().join("crates"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("Cargo.toml").exists())
        .collect();
    dirs.sort();
    dirs
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            if path.file_name().is_some_and(|n| n != "target") {
                rust_files(&path, out);
            }
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn every_crate_has_a_crate_doc() {
    for dir in crate_dirs().into_iter().chain([root().join("xtask")]) {
        let roots: Vec<PathBuf> = ["src/lib.rs", "src/main.rs"]
            .iter()
            .map(|f| dir.join(f))
            .filter(|p| p.exists())
            .collect();
        assert!(
            !roots.is_empty(),
            "{} has no lib.rs or main.rs",
            dir.display()
        );
        for file in roots {
            let text = fs::read_to_string(&file).unwrap();
            assert!(
                text.trim_start().starts_with("//!"),
                "{} must open with a //! crate doc",
                file.display()
            );
        }
    }
}

#[test]
fn architecture_lists_every_crate() {
    let arch = fs::read_to_string(root().join("docs/ARCHITECTURE.md")).unwrap();
    for dir in crate_dirs() {
        let name = dir.file_name().unwrap().to_string_lossy().to_string();
        assert!(
            arch.contains(&format!("### `crates/{name}`")),
            "docs/ARCHITECTURE.md has no section for crates/{name}"
        );
    }
}

#[test]
fn no_debugging_leftovers_or_shared_paths() {
    let mut files = Vec::new();
    rust_files(&root().join("crates"), &mut files);
    rust_files(&root().join("xtask/src"), &mut files);
    let forbidden = [
        concat!("dbg", "!("),
        concat!("todo", "!("),
        concat!("unimplemented", "!("),
    ];
    for file in files {
        let text = fs::read_to_string(&file).unwrap();
        for bad in forbidden {
            assert!(!text.contains(bad), "{} contains {bad}", file.display());
        }
        let in_tests = file.components().any(|c| c.as_os_str() == "tests");
        if !in_tests {
            assert!(
                !text.contains(concat!("..", "/shared")),
                "{} refers to ../shared; the project must not read it at run time",
                file.display()
            );
        }
    }
}
