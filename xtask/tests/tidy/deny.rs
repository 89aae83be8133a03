//! The wrapper rules docs/ARCHITECTURE.md says deny.toml enforces ("only
//! tb-store knows sqlx") against deny.toml's `[bans] deny` list and against
//! who depends on what.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{Context, Result, bail};
use serde::Deserialize;

use crate::metadata::{Crate, workspace_crates};

const DOC: &str = "docs/ARCHITECTURE.md";
const HEADING: &str = "### Enforced by deny.toml";
/// Marks a wrapper allowed the crate in its tests only.
const DEV: &str = " (dev)";

/// An external crate's wrappers: the workspace crates that may depend on
/// it directly, each `true` when only as a dev-dependency.
type Rules = BTreeMap<String, BTreeMap<String, bool>>;

#[derive(Deserialize)]
struct DenyToml {
    bans: Bans,
}

#[derive(Deserialize)]
struct Bans {
    #[serde(default)]
    deny: Vec<DenyEntry>,
}

/// A `[bans] deny` entry: a bare name or a table.
#[derive(Deserialize)]
#[serde(untagged)]
enum DenyEntry {
    Name(String),
    Table {
        #[serde(rename = "crate")]
        krate: String,
        wrappers: Option<Vec<String>>,
    },
}

#[test]
fn deny_toml_enforces_the_documented_wrappers() -> Result<()> {
    let doc = crate::read(DOC)?;
    let rules = parse_rules(crate::section(&doc, DOC, HEADING)?)?;
    let deny: DenyToml = toml::from_str(&crate::read("deny.toml")?).context("parsing deny.toml")?;
    let mut problems = check_deny(&rules, &deny.bans.deny);
    problems.extend(check_users(&rules, &workspace_crates()?));
    crate::report(
        "deny.toml, the workspace and docs/ARCHITECTURE.md disagree",
        &problems,
    )
}

/// Parses the section's bullets: ``- `crate`: wrapper, wrapper (dev)``.
fn parse_rules(section: &str) -> Result<Rules> {
    let mut rules = Rules::new();
    for line in section.lines().filter(|l| l.starts_with("- ")) {
        let parsed = line
            .strip_prefix("- `")
            .and_then(|rest| rest.split_once("`: "))
            .with_context(|| {
                format!("{DOC}: {HEADING}: expected \"- `crate`: wrapper, …\": {line:?}")
            })?;
        let (krate, wrappers) = parsed;
        let wrappers = wrappers
            .split(", ")
            .map(|w| match w.strip_suffix(DEV) {
                Some(name) => (name.to_string(), true),
                None => (w.to_string(), false),
            })
            .collect();
        if rules.insert(krate.to_string(), wrappers).is_some() {
            bail!("{DOC}: {HEADING} lists `{krate}` twice");
        }
    }
    if rules.is_empty() {
        bail!("{DOC}: {HEADING} lists no rule");
    }
    Ok(rules)
}

/// Each documented rule has a deny entry with the same wrappers, and each
/// deny entry with wrappers is documented.
fn check_deny(rules: &Rules, deny: &[DenyEntry]) -> Vec<String> {
    let entries: BTreeMap<&str, Option<BTreeSet<&str>>> = deny
        .iter()
        .map(|entry| match entry {
            DenyEntry::Name(name) => (name.as_str(), None),
            DenyEntry::Table { krate, wrappers } => (
                krate.as_str(),
                wrappers
                    .as_ref()
                    .map(|w| w.iter().map(String::as_str).collect()),
            ),
        })
        .collect();
    let mut problems = Vec::new();
    for (krate, wrappers) in rules {
        let documented: BTreeSet<&str> = wrappers.keys().map(String::as_str).collect();
        let quoted: Vec<String> = documented.iter().map(|w| format!("{w:?}")).collect();
        let fix = format!(
            "{{ crate = {krate:?}, wrappers = [{}] }}",
            quoted.join(", ")
        );
        match entries.get(krate.as_str()) {
            Some(Some(actual)) if *actual == documented => {}
            Some(Some(actual)) => problems.push(format!(
                "deny.toml lets {actual:?} wrap `{krate}`, but {DOC} says {documented:?} (make it `{fix}`)"
            )),
            Some(None) | None => problems.push(format!(
                "{DOC} says only {documented:?} may depend on `{krate}`, but deny.toml's [bans] \
                 deny has no such entry (add `{fix}`)"
            )),
        }
    }
    for (krate, _) in entries.iter().filter(|(_, w)| w.is_some()) {
        if !rules.contains_key(*krate) {
            problems.push(format!(
                "deny.toml limits who may depend on `{krate}`, but {DOC}'s \"{HEADING}\" list does not say so"
            ));
        }
    }
    problems
}

/// What cargo-deny cannot see: a wrapper marked `(dev)` has no normal or
/// build dependency on the crate. (Wrappers may be external crates, such as
/// a connector wrapping its root-certificate loader, so a name that is not
/// a workspace crate is no error.)
fn check_users(rules: &Rules, crates: &[Crate]) -> Vec<String> {
    let mut problems = Vec::new();
    for (krate, wrappers) in rules {
        let dev_only = wrappers.iter().filter(|(_, dev_only)| **dev_only);
        for user in dev_only.filter_map(|(name, _)| crates.iter().find(|c| c.name == *name)) {
            if user.normal.contains(krate) || user.build.contains(krate) {
                problems.push(format!(
                    "crate `{}` depends on `{krate}` outside its tests, but {DOC} allows \
                     it only as a dev-dependency",
                    user.name
                ));
            }
        }
    }
    problems
}

#[cfg(test)]
fn rules(text: &str) -> Result<Rules> {
    parse_rules(&format!(
        "Intro.\n\n- `sqlx`: tb-store, tokenbuddyd (dev)\n{text}"
    ))
}

#[cfg(test)]
fn deny(text: &str) -> Result<Vec<DenyEntry>> {
    let toml: DenyToml = toml::from_str(&format!("[bans]\ndeny = [{text}]"))?;
    Ok(toml.bans.deny)
}

#[test]
fn matching_rules_pass() -> Result<()> {
    let deny = deny(
        r#"{ crate = "sqlx", wrappers = ["tokenbuddyd", "tb-store"] }, { crate = "openssl-sys" }, "aws-lc-rs""#,
    )?;
    assert_eq!(check_deny(&rules("")?, &deny), Vec::<String>::new());
    Ok(())
}

#[test]
fn a_missing_or_different_deny_entry_is_named_with_its_fix() -> Result<()> {
    let rules = rules("- `anyhow`: tokenbuddyd\n")?;
    let deny = deny(
        r#"{ crate = "sqlx", wrappers = ["tb-store"] }, { crate = "rcgen", wrappers = ["t"] }"#,
    )?;
    assert_eq!(
        check_deny(&rules, &deny),
        [
            "docs/ARCHITECTURE.md says only {\"tokenbuddyd\"} may depend on `anyhow`, but \
             deny.toml's [bans] deny has no such entry (add `{ crate = \"anyhow\", wrappers = \
             [\"tokenbuddyd\"] }`)",
            "deny.toml lets {\"tb-store\"} wrap `sqlx`, but docs/ARCHITECTURE.md says \
             {\"tb-store\", \"tokenbuddyd\"} (make it `{ crate = \"sqlx\", wrappers = \
             [\"tb-store\", \"tokenbuddyd\"] }`)",
            "deny.toml limits who may depend on `rcgen`, but docs/ARCHITECTURE.md's \
             \"### Enforced by deny.toml\" list does not say so",
        ]
    );
    Ok(())
}

#[test]
fn a_dev_only_wrapper_with_a_normal_dependency_is_named() -> Result<()> {
    let crates = [
        Crate::new("tb-store", "crates/tb-store", &["sqlx"], &[]),
        Crate::new("tokenbuddyd", "crates/tokenbuddyd", &["sqlx"], &["sqlx"]),
    ];
    assert_eq!(
        check_users(&rules("- `x`: tb-gone\n")?, &crates),
        [
            "crate `tokenbuddyd` depends on `sqlx` outside its tests, but \
          docs/ARCHITECTURE.md allows it only as a dev-dependency"
        ]
    );
    let fixed = [
        Crate::new("tb-store", "crates/tb-store", &["sqlx"], &[]),
        Crate::new("tokenbuddyd", "crates/tokenbuddyd", &[], &["sqlx"]),
    ];
    assert_eq!(check_users(&rules("")?, &fixed), Vec::<String>::new());
    Ok(())
}

#[test]
fn a_malformed_rule_is_refused() {
    for bad in [
        "- sqlx: tb-store\n",
        "- `sqlx` tb-store\n",
        "- `sqlx`: tb-store\n",
    ] {
        assert!(rules(bad).is_err(), "{bad:?} must be refused");
    }
}
