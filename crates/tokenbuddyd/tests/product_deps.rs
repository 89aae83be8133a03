//! What users run links product code only: the daemon's normal dependency
//! tree (what `cargo build --release` puts in the binary) has no test
//! helpers (`tb-test-support`) and no test-certificate generator (`rcgen`).
//! `tokenbuddyd demo` gets its marketplace from `tb-sim-market` instead.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Command;

/// Crates that may appear in the daemon's tree only as dev-dependencies.
const TEST_ONLY: [&str; 2] = ["tb-test-support", "rcgen"];

/// `cargo tree -p tokenbuddyd -e normal`, one crate per line
/// (`name vX.Y.Z …`), from the workspace root, without the network.
fn normal_tree() -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let out = Command::new(env!("CARGO"))
        .current_dir(&root)
        .args(["tree", "-p", "tokenbuddyd", "-e", "normal"])
        .args(["--prefix", "none", "--offline"])
        .output()
        .expect("running cargo tree");
    assert!(
        out.status.success(),
        "cargo tree failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("cargo tree prints UTF-8")
}

/// The crate names in a `--prefix none` tree.
fn crate_names(tree: &str) -> Vec<&str> {
    tree.lines()
        .filter_map(|line| line.split_whitespace().next())
        .collect()
}

#[test]
fn the_daemon_links_no_test_support() {
    let tree = normal_tree();
    let names = crate_names(&tree);
    // Not vacuous: the tree is the daemon's, with the demo's marketplace.
    assert!(names.contains(&"tokenbuddyd"), "{tree}");
    assert!(names.contains(&"tb-sim-market"), "{tree}");
    for banned in TEST_ONLY {
        assert!(
            !names.contains(&banned),
            "{banned} is a normal dependency of tokenbuddyd (move it to \
             [dev-dependencies]):\n{tree}"
        );
    }
}

#[test]
fn crate_names_reads_prefixless_tree_lines() {
    let tree = "tokenbuddyd v0.1.0 (/w/crates/tokenbuddyd)\nrcgen v0.14.5\nbytes v1.10.1 (*)\n";
    assert_eq!(crate_names(tree), ["tokenbuddyd", "rcgen", "bytes"]);
}
