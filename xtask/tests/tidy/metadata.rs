//! The workspace as `cargo metadata` describes it, reduced to what the
//! checks need: each crate's name, directory and dependencies by kind.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, Result, bail};
use serde::Deserialize;

/// The parts of `cargo metadata --format-version 1 --no-deps` read here.
#[derive(Deserialize)]
struct Metadata {
    /// With `--no-deps`, exactly the workspace members.
    packages: Vec<Package>,
    workspace_root: PathBuf,
}

#[derive(Deserialize)]
struct Package {
    name: String,
    manifest_path: PathBuf,
    dependencies: Vec<Dependency>,
}

#[derive(Deserialize)]
struct Dependency {
    /// The package name, even when the dependency is renamed.
    name: String,
    /// `null` for a normal dependency, `"dev"` or `"build"` otherwise.
    kind: Option<String>,
}

/// A workspace crate as the checks see it.
#[derive(Debug, Clone)]
pub(crate) struct Crate {
    pub(crate) name: String,
    /// Its directory relative to the workspace root, `/`-separated
    /// (`crates/tb-proxy`, `xtask`): the Code map heading names it.
    pub(crate) dir: String,
    /// Normal dependencies (any source); target-specific ones included.
    pub(crate) normal: BTreeSet<String>,
    pub(crate) build: BTreeSet<String>,
    pub(crate) dev: BTreeSet<String>,
}

impl Crate {
    /// A crate with only normal and dev dependencies, for the checks' own tests.
    #[cfg(test)]
    pub(crate) fn new(name: &str, dir: &str, normal: &[&str], dev: &[&str]) -> Crate {
        let set = |names: &[&str]| names.iter().map(|n| n.to_string()).collect();
        Crate {
            name: name.to_string(),
            dir: dir.to_string(),
            normal: set(normal),
            build: BTreeSet::new(),
            dev: set(dev),
        }
    }
}

/// Runs `cargo metadata` in the workspace root and returns its crates,
/// sorted by name.
pub(crate) fn workspace_crates() -> Result<Vec<Crate>> {
    let root = crate::root()?;
    // The cargo that runs the tests, so a toolchain override cannot disagree.
    let output = Command::new(env!("CARGO"))
        .args(["metadata", "--format-version", "1", "--no-deps"])
        .current_dir(&root)
        .output()
        .context("running cargo metadata")?;
    if !output.status.success() {
        bail!(
            "cargo metadata failed ({}):\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let metadata: Metadata =
        serde_json::from_slice(&output.stdout).context("parsing cargo metadata's JSON")?;
    let mut crates = metadata
        .packages
        .into_iter()
        .map(|package| to_crate(package, &metadata.workspace_root))
        .collect::<Result<Vec<_>>>()?;
    crates.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(crates)
}

fn to_crate(package: Package, workspace_root: &std::path::Path) -> Result<Crate> {
    let dir = package
        .manifest_path
        .parent()
        .and_then(|dir| dir.strip_prefix(workspace_root).ok())
        .with_context(|| {
            format!(
                "{} is not under the workspace root {}",
                package.manifest_path.display(),
                workspace_root.display()
            )
        })?;
    let dir = dir
        .components()
        .map(|c| c.as_os_str().to_string_lossy())
        .collect::<Vec<_>>()
        .join("/");
    let mut krate = Crate {
        name: package.name,
        dir,
        normal: BTreeSet::new(),
        build: BTreeSet::new(),
        dev: BTreeSet::new(),
    };
    for dependency in package.dependencies {
        let set = match dependency.kind.as_deref() {
            None => &mut krate.normal,
            Some("build") => &mut krate.build,
            Some("dev") => &mut krate.dev,
            Some(other) => bail!("{}: unknown dependency kind {other:?}", krate.name),
        };
        set.insert(dependency.name);
    }
    Ok(krate)
}

#[test]
fn metadata_sees_xtask_and_its_kinds_of_dependency() -> Result<()> {
    let crates = workspace_crates()?;
    let xtask = crates
        .iter()
        .find(|c| c.name == "xtask")
        .context("cargo metadata lists no xtask")?;
    assert_eq!(xtask.dir, "xtask");
    assert!(xtask.normal.contains("anyhow"), "{xtask:?}");
    assert!(
        xtask.dev.contains("toml") && !xtask.normal.contains("toml"),
        "{xtask:?}"
    );
    Ok(())
}
