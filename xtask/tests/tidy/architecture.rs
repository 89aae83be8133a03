//! docs/ARCHITECTURE.md against the workspace: a Code map section per
//! crate, and a dependency graph that is exactly the normal dependencies
//! between workspace crates.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{Result, bail};

use crate::metadata::{Crate, workspace_crates};

const DOC: &str = "docs/ARCHITECTURE.md";
const ARROW: &str = "──▶";
/// What a graph line says for a crate that depends on none of ours.
const NONE: &str = "(none)";

/// The dependency graph: each crate and the workspace crates it depends on.
type Graph = BTreeMap<String, BTreeSet<String>>;

#[test]
fn architecture_matches_the_workspace() -> Result<()> {
    let doc = crate::read(DOC)?;
    let code_map = crate::section(&doc, DOC, "## Code map")?;
    let graph = parse_graph(crate::section(&doc, DOC, "## Dependency directions")?)?;
    let crates = workspace_crates()?;
    let mut problems = check_code_map(code_map, &crates);
    problems.extend(check_graph(&graph, &crates));
    crate::report(&format!("{DOC} does not match the workspace"), &problems)
}

/// Parses the first code block of the "Dependency directions" section:
/// one `crate ──▶ dep, dep` line per crate, `(none)` for no dependency.
fn parse_graph(section: &str) -> Result<Graph> {
    let Some(block) = section.split("```").nth(1) else {
        bail!("{DOC}: the Dependency directions section has no code block");
    };
    let mut graph = Graph::new();
    // Line 0 is the rest of the opening fence (an info string, if any).
    let lines = block.lines().enumerate().skip(1);
    for (index, line) in lines.filter(|(_, l)| !l.trim().is_empty()) {
        let (name, deps) = parse_graph_line(line).map_err(|why| {
            anyhow::anyhow!(
                "{DOC}, line {} of the dependency graph: {why} \
                 (expected `crate ──▶ dep, dep` or `crate ──▶ (none)`): {line:?}",
                index
            )
        })?;
        if graph.insert(name.clone(), deps).is_some() {
            bail!("{DOC}: the dependency graph has two lines for `{name}`");
        }
    }
    Ok(graph)
}

/// One graph line, or why it is not one.
fn parse_graph_line(line: &str) -> Result<(String, BTreeSet<String>), String> {
    let (name, deps) = line.split_once(ARROW).ok_or("no arrow")?;
    let name = crate_name(name)?;
    let deps = deps.trim();
    if deps == NONE {
        return Ok((name, BTreeSet::new()));
    }
    let mut set = BTreeSet::new();
    for dep in deps.split(',') {
        let dep = crate_name(dep)?;
        if !set.insert(dep.clone()) {
            return Err(format!("`{dep}` twice"));
        }
    }
    Ok((name, set))
}

/// A crate name, trimmed; anything else (comments, parentheses) is refused
/// so the graph stays simple to read and to parse.
fn crate_name(text: &str) -> Result<String, String> {
    let name = text.trim();
    let valid = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if valid {
        Ok(name.to_string())
    } else {
        Err(format!("{name:?} is not a crate name"))
    }
}

/// Every crate has a "### `dir`" heading, and every such heading names a crate.
fn check_code_map(code_map: &str, crates: &[Crate]) -> Vec<String> {
    let headings: BTreeSet<&str> = code_map.lines().filter(|l| l.starts_with("### ")).collect();
    let expected: BTreeMap<String, &str> = crates
        .iter()
        .map(|c| (format!("### `{}`", c.dir), c.name.as_str()))
        .collect();
    let missing = expected
        .iter()
        .filter(|(heading, _)| !headings.contains(heading.as_str()))
        .map(|(heading, name)| format!("crate `{name}` has no \"{heading}\" section in {DOC}"));
    let stale = headings
        .iter()
        .filter(|heading| !expected.contains_key(**heading))
        .map(|heading| format!("the Code map's \"{heading}\" names no workspace crate"));
    missing.chain(stale).collect()
}

/// The graph and the normal dependencies between workspace crates agree,
/// edge for edge; dev- and build-dependencies are not edges.
fn check_graph(graph: &Graph, crates: &[Crate]) -> Vec<String> {
    let names: BTreeSet<&str> = crates.iter().map(|c| c.name.as_str()).collect();
    let mut problems = Vec::new();
    for krate in crates {
        let actual: BTreeSet<&str> = krate
            .normal
            .iter()
            .map(String::as_str)
            .filter(|dep| names.contains(dep))
            .collect();
        let Some(listed) = graph.get(&krate.name) else {
            let deps = if actual.is_empty() {
                NONE.to_string()
            } else {
                actual.iter().copied().collect::<Vec<_>>().join(", ")
            };
            problems.push(format!(
                "crate `{}` has no line in the dependency graph of {DOC} (add `{} {ARROW} {deps}`)",
                krate.name, krate.name
            ));
            continue;
        };
        for dep in actual.iter().filter(|dep| !listed.contains(**dep)) {
            problems.push(format!(
                "edge {} -> {dep} is not in the dependency graph of {DOC}",
                krate.name
            ));
        }
        for dep in listed.iter().filter(|dep| names.contains(dep.as_str())) {
            if !actual.contains(dep.as_str()) {
                problems.push(format!(
                    "the dependency graph of {DOC} has edge {} -> {dep}, but {dep} is not a \
                     normal dependency of {}",
                    krate.name, krate.name
                ));
            }
        }
    }
    for (name, deps) in graph {
        for unknown in std::iter::once(name)
            .chain(deps)
            .filter(|n| !names.contains(n.as_str()))
        {
            problems.push(format!(
                "the dependency graph of {DOC} names `{unknown}` (line of `{name}`), which is \
                 not a workspace crate"
            ));
        }
    }
    problems
}

/// A small workspace: tb-b depends on tb-a, and on tb-t only in its tests.
#[cfg(test)]
fn sample() -> Vec<Crate> {
    vec![
        Crate::new("tb-a", "crates/tb-a", &["serde"], &[]),
        Crate::new("tb-b", "crates/tb-b", &["tb-a", "anyhow"], &["tb-t"]),
        Crate::new("tb-t", "crates/tb-t", &["tb-a"], &[]),
    ]
}

#[cfg(test)]
fn graph(text: &str) -> Result<Graph> {
    parse_graph(&format!("intro\n```\n{text}```\nlegend (a) ──▶ b\n"))
}

#[test]
fn a_graph_that_matches_passes_and_dev_dependencies_are_not_edges() -> Result<()> {
    let g = graph("tb-a ──▶ (none)\ntb-b   ──▶ tb-a\n\ntb-t ──▶ tb-a\n")?;
    assert_eq!(check_graph(&g, &sample()), Vec::<String>::new());
    Ok(())
}

#[test]
fn a_missing_crate_line_and_a_missing_edge_are_named() -> Result<()> {
    let g = graph("tb-b ──▶ (none)\ntb-t ──▶ tb-a\n")?;
    assert_eq!(
        check_graph(&g, &sample()),
        [
            "crate `tb-a` has no line in the dependency graph of docs/ARCHITECTURE.md \
             (add `tb-a ──▶ (none)`)",
            "edge tb-b -> tb-a is not in the dependency graph of docs/ARCHITECTURE.md",
        ]
    );
    Ok(())
}

#[test]
fn an_edge_or_crate_the_code_lacks_is_named() -> Result<()> {
    let g = graph("tb-a ──▶ tb-t\ntb-b ──▶ tb-a, tb-gone\ntb-t ──▶ tb-a\ntb-old ──▶ (none)\n")?;
    assert_eq!(
        check_graph(&g, &sample()),
        [
            "the dependency graph of docs/ARCHITECTURE.md has edge tb-a -> tb-t, but tb-t is \
             not a normal dependency of tb-a",
            "the dependency graph of docs/ARCHITECTURE.md names `tb-gone` (line of `tb-b`), \
             which is not a workspace crate",
            "the dependency graph of docs/ARCHITECTURE.md names `tb-old` (line of `tb-old`), \
             which is not a workspace crate",
        ]
    );
    Ok(())
}

#[test]
fn the_graph_syntax_is_strict() {
    for bad in [
        "tb-a tb-b\n",
        "tb-a ──▶ tb-b (why)\n",
        "tb-a ──▶\n",
        "tb-a ──▶ tb-b,\n",
        "tb-a ──▶ tb-b, tb-b\n",
        "tb-a ──▶ (none)\ntb-a ──▶ tb-b\n",
    ] {
        assert!(graph(bad).is_err(), "{bad:?} must be refused");
    }
}

#[test]
fn code_map_headings_and_crates_agree() {
    let map = "### `crates/tb-a`\ntext\n### `crates/tb-t`\n### `crates/tb-old`\n";
    assert_eq!(
        check_code_map(map, &sample()),
        [
            "crate `tb-b` has no \"### `crates/tb-b`\" section in docs/ARCHITECTURE.md",
            "the Code map's \"### `crates/tb-old`\" names no workspace crate",
        ]
    );
}
