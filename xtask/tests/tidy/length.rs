//! Functions short enough to read at once: in the request path (tb-proxy)
//! no function outside tests is longer than [`MAX_LINES`]. The check reads
//! rustfmt's layout (a function closes with `}` at its own indentation), so
//! braces inside strings or byte literals do not confuse it.

use std::path::Path;

use anyhow::Result;

/// The longest function tb-proxy may have (issue 14).
const MAX_LINES: usize = 100;

/// Crates held to the limit.
const CRATES: [&str; 1] = ["crates/tb-proxy/src"];

/// `(name, first line, length)` of each function in `source` before its
/// `#[cfg(test)]` module.
pub(crate) fn functions(source: &str) -> Vec<(String, usize, usize)> {
    let lines: Vec<&str> = source
        .lines()
        .take_while(|l| l.trim() != "#[cfg(test)]")
        .collect();
    let mut found = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let Some(name) = fn_name(line) else { continue };
        if line.trim_end().ends_with('}') || line.trim_end().ends_with(';') {
            continue;
        }
        let indent = &line[..line.len() - line.trim_start().len()];
        let close = format!("{indent}}}");
        if let Some(end) = lines[i + 1..].iter().position(|l| l.trim_end() == close) {
            found.push((name, i + 1, end + 2));
        }
    }
    found
}

/// The function a line declares, if it declares one.
fn fn_name(line: &str) -> Option<String> {
    let code = line.trim_start();
    let at = code.find("fn ")?;
    let before = &code[..at];
    let qualifiers = [
        "pub",
        "pub(crate)",
        "pub(super)",
        "async",
        "const",
        "unsafe",
        "extern",
    ];
    if !before.split_whitespace().all(|w| qualifiers.contains(&w)) {
        return None;
    }
    let rest = &code[at + 3..];
    let end = rest.find(|c: char| !(c.is_alphanumeric() || c == '_'))?;
    Some(rest[..end].to_string())
}

fn too_long(root: &Path) -> Result<Vec<String>> {
    let mut problems = Vec::new();
    for dir in CRATES {
        let mut files = Vec::new();
        crate::conventions::rust_files(&root.join(dir), &mut files)?;
        for file in files {
            let relative = file
                .strip_prefix(root)
                .unwrap_or(&file)
                .display()
                .to_string();
            if relative.contains("/tests") {
                continue;
            }
            let source = std::fs::read_to_string(&file)?;
            for (name, line, len) in functions(&source) {
                if len > MAX_LINES {
                    problems.push(format!(
                        "{relative}:{line}: fn {name} is {len} lines (at most {MAX_LINES}); split it into named stages"
                    ));
                }
            }
        }
    }
    Ok(problems)
}

#[test]
fn request_path_functions_are_short() -> Result<()> {
    let problems = too_long(&crate::root()?)?;
    crate::report("functions too long to read at once", &problems)
}

#[test]
fn lengths_follow_rustfmt_layout_not_braces_in_literals() {
    let source = "fn a() {\n    let x = b'{';\n    x\n}\n\npub(crate) async fn b(\n    y: u8,\n) -> u8 {\n    y\n}\nfn one() {}\n#[cfg(test)]\nmod tests {\n    fn hidden() {\n    }\n}\n";
    assert_eq!(
        functions(source),
        vec![("a".to_string(), 1, 4), ("b".to_string(), 6, 5)]
    );
}
