//! Tidy checks, in the style of rust-analyzer's `tidy.rs`: the project's
//! conventions and the promises its documents make, checked mechanically on
//! every `cargo test --workspace`. Each check collects every problem before
//! failing, so one run lists every fix.

mod architecture;
mod conventions;
mod deny;
mod length;
mod metadata;
mod wording;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

/// The workspace root: xtask lives directly under it.
fn root() -> Result<PathBuf> {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .context("xtask's manifest directory has no parent")
}

/// Reads a file given relative to the workspace root.
fn read(relative: &str) -> Result<String> {
    let path = root()?.join(relative);
    std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))
}

/// Fails with every problem, one per line, under `what`.
fn report(what: &str, problems: &[String]) -> Result<()> {
    if problems.is_empty() {
        return Ok(());
    }
    bail!("{what}:\n  - {}", problems.join("\n  - "))
}

/// The text of the Markdown section opened by the exact heading line
/// `heading`, up to the next heading of the same or a higher level.
fn section<'a>(doc: &'a str, file: &str, heading: &str) -> Result<&'a str> {
    let level = heading.chars().take_while(|&c| c == '#').count();
    let (index, heading_line) = doc
        .lines()
        .enumerate()
        .find(|(_, line)| *line == heading)
        .with_context(|| format!("{file} has no `{heading}` heading"))?;
    // Byte offsets come from the line slices themselves, so CRLF or LF does not matter.
    let after = offset(doc, heading_line) + heading_line.len();
    let body_start = after + doc[after..].find('\n').map_or(0, |newline| newline + 1);
    let mut in_code = false;
    for line in doc.lines().skip(index + 1) {
        if line.starts_with("```") {
            in_code = !in_code;
        }
        let hashes = line.chars().take_while(|&c| c == '#').count();
        // A `#` inside a code block is not a heading.
        if !in_code && hashes > 0 && hashes <= level && line[hashes..].starts_with(' ') {
            return Ok(&doc[body_start..offset(doc, line)]);
        }
    }
    Ok(&doc[body_start..])
}

/// Where `part`, a slice of `whole`, starts in it.
fn offset(whole: &str, part: &str) -> usize {
    part.as_ptr() as usize - whole.as_ptr() as usize
}

#[test]
fn section_stops_at_a_heading_of_the_same_level_but_not_a_lower_one() -> Result<()> {
    let doc = "# T\n## A\none\n### A.1\ntwo\n```\n## not a heading\n```\n## B\nthree\n";
    let a = section(doc, "doc", "## A")?;
    assert_eq!(a, "one\n### A.1\ntwo\n```\n## not a heading\n```\n");
    assert_eq!(
        section(doc, "doc", "### A.1")?,
        "two\n```\n## not a heading\n```\n"
    );
    assert_eq!(section(doc, "doc", "## B")?, "three\n");
    assert_eq!(section("## A\n## B\n", "doc", "## A")?, "");
    let Err(missing) = section(doc, "doc", "## C") else {
        bail!("a missing heading must be an error");
    };
    assert_eq!(missing.to_string(), "doc has no `## C` heading");
    Ok(())
}
