//! Hermes: `config.yaml`, edited as text, one section only.
//!
//! There is no YAML library in the workspace, and none is needed: only the
//! top-level `model:` section is touched. The file is read as lines, its top
//! level checked to be a plain block mapping, the `model:` section found (at
//! most one: never a duplicate), and only the lines of the keys tokenbuddy
//! owns replaced or added. Every other line is kept byte-for-byte, CRLF
//! files stay CRLF. Anything unusual about `model:` (a flow mapping, an
//! anchor, a block scalar, a list, a second `model:`) is an error, never a
//! rewrite.

use std::path::{Path, PathBuf};

use crate::contract::{
    ClientInstaller, FileChange, Files, Installed, Options, PlanError, Pointer, Pristine, Target,
    change, is_loopback_url, undo_file,
};
use crate::env::InstallEnv;
use crate::jsonc::quote;

const FILE: &str = "config.yaml";
const OWNED: [&str; 5] = ["default", "provider", "base_url", "api_key", "api_mode"];

/// Hermes (`hermes`).
#[derive(Debug, Clone, Copy, Default)]
pub struct Hermes;

impl Hermes {
    fn dir(env: &InstallEnv) -> PathBuf {
        env.var_path("HERMES_HOME")
            .unwrap_or_else(|| env.home.join(".hermes"))
    }
}

/// One key of the `model:` mapping: its key line and deeper lines.
#[derive(Debug, Clone)]
struct Child {
    key: String,
    start: usize,
    end: usize,
}

#[derive(Debug, Clone)]
enum Shape {
    /// `model:` followed by (possibly no) `key: value` lines.
    Mapping {
        children: Vec<Child>,
        indent: Option<String>,
    },
    /// Legacy `model: some-name`.
    Scalar,
}

#[derive(Debug, Clone)]
struct Block {
    header: usize,
    end: usize,
    shape: Shape,
}

#[derive(Debug, Clone)]
struct Yaml {
    /// The file starts with a byte-order mark (kept, not parsed).
    bom: bool,
    lines: Vec<String>,
    nl: &'static str,
    had_final_nl: bool,
    /// The file ends in a lone `\r` (a line break too): kept as it is when
    /// the last line stays last.
    final_cr: bool,
    unit: String,
    block: Option<Block>,
}

fn body(line: &str) -> &str {
    line.trim_end_matches(['\n', '\r'])
}

fn is_trivia(line: &str) -> bool {
    let t = body(line).trim_start();
    t.is_empty() || t.starts_with('#')
}

fn indent(line: &str) -> &str {
    let b = body(line);
    &b[..b.len() - b.trim_start_matches([' ', '\t']).len()]
}

/// `key: rest` at the start of `s`: the key (unquoted) and what follows the
/// colon.
fn parse_key(s: &str) -> Option<(String, &str)> {
    let first = s.chars().next()?;
    let (key, after) = if first == '"' || first == '\'' {
        let mut end = None;
        let mut escaped = false;
        for (i, c) in s.char_indices().skip(1) {
            if escaped {
                escaped = false;
            } else if c == '\\' && first == '"' {
                escaped = true;
            } else if c == first {
                end = Some(i);
                break;
            }
        }
        let end = end?;
        let rest = s[end + 1..].trim_start_matches([' ', '\t']);
        (s[1..end].to_owned(), rest.strip_prefix(':')?)
    } else {
        if s.starts_with("- ")
            || s == "-"
            || s.starts_with(['[', '{', '?', '&', '*', '!', '|', '>', '%', '@', '`', '#'])
        {
            return None;
        }
        let idx = s
            .char_indices()
            .find(|&(i, c)| {
                c == ':'
                    && s[i + 1..]
                        .chars()
                        .next()
                        .is_none_or(|n| n == ' ' || n == '\t')
            })?
            .0;
        (s[..idx].trim_end().to_owned(), &s[idx + 1..])
    };
    let after_ok = after.is_empty() || after.starts_with([' ', '\t']);
    after_ok.then_some((key, after))
}

/// The value text after `key:`, without a trailing comment.
fn inline_value(after: &str) -> &str {
    let t = after.trim();
    if t.starts_with('#') {
        return "";
    }
    match t.find(" #").or_else(|| t.find("\t#")) {
        Some(i) if !t.starts_with(['"', '\'']) => t[..i].trim_end(),
        _ => t,
    }
}

/// A scalar value without its quotes.
fn unquote(v: &str) -> String {
    let v = v.trim();
    if v.len() >= 2
        && ((v.starts_with('"') && v.ends_with('"')) || (v.starts_with('\'') && v.ends_with('\'')))
    {
        return v[1..v.len() - 1].to_owned();
    }
    v.to_owned()
}

impl Yaml {
    fn parse(path: &Path, text: &str) -> Result<Self, PlanError> {
        let malformed = |line: usize, reason: &str| PlanError::Malformed {
            path: path.to_path_buf(),
            reason: format!("line {}: {reason}", line + 1),
        };
        let (bom, text) = match text.strip_prefix('\u{feff}') {
            Some(rest) => (true, rest),
            None => (false, text),
        };
        // A lone `\r` at the very end completes to `\r\n` below, so the file
        // counts as CRLF: lines added after it must not mix line ends.
        let final_cr = text.ends_with('\r');
        let nl = if text.contains("\r\n") || final_cr {
            "\r\n"
        } else {
            "\n"
        };
        let had_final_nl = text.is_empty() || text.ends_with('\n');
        let mut lines: Vec<String> = text.split_inclusive('\n').map(str::to_owned).collect();
        if let Some(last) = lines.last_mut()
            && !last.ends_with('\n')
        {
            if final_cr {
                last.push('\n');
            } else {
                last.push_str(nl);
            }
        }
        let mut started = false;
        let mut headers = Vec::new();
        let mut unit = None;
        for (i, line) in lines.iter().enumerate() {
            let b = body(line);
            if is_trivia(line) {
                continue;
            }
            if b.starts_with([' ', '\t']) {
                if !started {
                    return Err(malformed(i, "indented content before any top-level key"));
                }
                if unit.is_none() {
                    unit = Some(indent(line).to_owned());
                }
                continue;
            }
            if b == "---" || b.starts_with("--- ") || b.starts_with('%') {
                if started {
                    return Err(malformed(
                        i,
                        "more than one YAML document; tokenbuddy edits single-document files only",
                    ));
                }
                continue;
            }
            if b == "..." {
                return Err(malformed(
                    i,
                    "YAML document end marker; tokenbuddy edits single-document files only",
                ));
            }
            let Some((key, _)) = parse_key(b) else {
                return Err(PlanError::UnexpectedRoot {
                    path: path.to_path_buf(),
                    expected: "a YAML mapping (`key: value` lines)",
                    found: format!(
                        "line {}: `{}`",
                        i + 1,
                        b.chars().take(60).collect::<String>()
                    ),
                });
            };
            started = true;
            if key == "model" {
                headers.push(i);
            }
        }
        if headers.len() > 1 {
            let at: Vec<String> = headers.iter().map(|h| (h + 1).to_string()).collect();
            return Err(PlanError::Malformed {
                path: path.to_path_buf(),
                reason: format!(
                    "duplicate top-level `model:` keys (lines {}); keep one and run again",
                    at.join(", ")
                ),
            });
        }
        let block = match headers.first() {
            None => None,
            Some(&h) => Some(Self::block(path, &lines, h)?),
        };
        let unit = unit
            .filter(|u| !u.is_empty())
            .unwrap_or_else(|| "  ".to_owned());
        Ok(Self {
            bom,
            lines,
            nl,
            had_final_nl,
            final_cr,
            unit,
            block,
        })
    }

    fn block(path: &Path, lines: &[String], h: usize) -> Result<Block, PlanError> {
        let odd = |what: &str| PlanError::Malformed {
            path: path.to_path_buf(),
            reason: format!(
                "line {}: `model:` is {what}; tokenbuddy only edits a `model:` mapping or a single model name — change it by hand",
                h + 1
            ),
        };
        // The section: every following line that is indented, up to the
        // next top-level key (trailing blanks and comments stay outside).
        let mut end = h + 1;
        for (j, line) in lines.iter().enumerate().skip(h + 1) {
            if is_trivia(line) {
                if body(line).starts_with([' ', '\t']) {
                    end = j + 1;
                }
                continue;
            }
            if !body(line).starts_with([' ', '\t']) {
                break;
            }
            end = j + 1;
        }
        let (_, after) = parse_key(body(&lines[h])).ok_or_else(|| odd("unreadable"))?;
        let v = inline_value(after);
        if let Some(c) = v.chars().next() {
            let what = match c {
                '{' => Some("a flow mapping"),
                '[' => Some("a flow sequence"),
                '&' => Some("an anchored value"),
                '*' => Some("an alias"),
                '!' => Some("a tagged value"),
                '|' | '>' => Some("a block scalar"),
                _ => None,
            };
            if let Some(what) = what {
                return Err(odd(what));
            }
            return Ok(Block {
                header: h,
                end,
                shape: Shape::Scalar,
            });
        }
        let mut children: Vec<Child> = Vec::new();
        let mut child_indent: Option<String> = None;
        for (j, line) in lines.iter().enumerate().take(end).skip(h + 1) {
            if is_trivia(line) {
                continue;
            }
            let ind = indent(line);
            let rest = &body(line)[ind.len()..];
            match &child_indent {
                None => {
                    if rest.starts_with("- ") || rest == "-" {
                        return Err(odd("a list"));
                    }
                    child_indent = Some(ind.to_owned());
                }
                Some(ci) if ind.len() < ci.len() || (ind.len() == ci.len() && ind != ci) => {
                    return Err(PlanError::Malformed {
                        path: path.to_path_buf(),
                        reason: format!(
                            "line {}: inconsistent indentation in the `model:` section",
                            j + 1
                        ),
                    });
                }
                Some(_) => {}
            }
            let ci = child_indent.as_deref().unwrap_or_default();
            if ind.len() == ci.len() {
                let Some((key, _)) = parse_key(rest) else {
                    return Err(PlanError::Malformed {
                        path: path.to_path_buf(),
                        reason: format!(
                            "line {}: expected `key: value` in the `model:` section",
                            j + 1
                        ),
                    });
                };
                children.push(Child {
                    key,
                    start: j,
                    end: j + 1,
                });
            } else if let Some(last) = children.last_mut() {
                last.end = j + 1; // Deeper: part of the previous key's value.
            }
        }
        Ok(Block {
            header: h,
            end,
            shape: Shape::Mapping {
                children,
                indent: child_indent,
            },
        })
    }

    fn child(&self, key: &str) -> Option<&Child> {
        match &self.block.as_ref()?.shape {
            Shape::Mapping { children, .. } => children.iter().rev().find(|c| c.key == key),
            Shape::Scalar => None,
        }
    }

    /// The text of a child's lines.
    fn child_text(&self, c: &Child) -> String {
        self.lines[c.start..c.end].concat()
    }

    /// The scalar value of `model.<key>`.
    fn child_value(&self, key: &str) -> Option<String> {
        let c = self.child(key)?;
        let (_, after) = parse_key(body(&self.lines[c.start]).trim_start())?;
        Some(unquote(inline_value(after)))
    }

    fn finish(mut self) -> String {
        if !self.had_final_nl
            && let Some(last) = self.lines.last_mut()
        {
            let trimmed = last.trim_end_matches(['\n', '\r']).len();
            last.truncate(trimmed);
            if self.final_cr {
                last.push('\r');
            }
        }
        let text = self.lines.concat();
        if self.bom {
            format!("\u{feff}{text}")
        } else {
            text
        }
    }
}

fn owned_lines(target: &Target, indent: &str, nl: &str) -> Vec<(&'static str, String)> {
    let values = [
        quote(&target.model),
        "custom".to_owned(),
        quote(&target.v1()),
        quote(&target.token),
        "chat_completions".to_owned(),
    ];
    OWNED
        .iter()
        .zip(values)
        .map(|(k, v)| (*k, format!("{indent}{k}: {v}{nl}")))
        .collect()
}

/// Replaces lines `[start, end)` with `new`, in edits applied bottom-up.
fn apply_edits(lines: &mut Vec<String>, mut edits: Vec<(usize, usize, Vec<String>)>) {
    edits.sort_by_key(|e| std::cmp::Reverse((e.0, e.1)));
    for (s, e, new) in edits {
        lines.splice(s..e, new);
    }
}

impl ClientInstaller for Hermes {
    fn id(&self) -> &'static str {
        "hermes"
    }

    fn name(&self) -> &'static str {
        "Hermes"
    }

    fn detect(&self, env: &InstallEnv) -> Installed {
        Installed {
            binary: env.find_binary("hermes"),
            config_dir_exists: Self::dir(env).is_dir(),
        }
    }

    fn config_paths(&self, env: &InstallEnv) -> Vec<PathBuf> {
        vec![Self::dir(env).join(FILE)]
    }

    fn pointer(&self, files: &Files) -> Option<Pointer> {
        let path = files.named(FILE).ok()?;
        let y = Yaml::parse(&path, files.get(&path).unwrap_or("")).ok()?;
        let url = y.child_value("base_url")?;
        Some(Pointer::new(&url, y.child_value("api_key").as_deref()))
    }

    fn plan(
        &self,
        files: &Files,
        target: &Target,
        _opts: &Options,
    ) -> Result<Vec<FileChange>, PlanError> {
        target.check()?;
        let path = files.named(FILE)?;
        let before = files.get(&path);
        let mut y = Yaml::parse(&path, before.unwrap_or(""))?;
        let nl = y.nl;
        let header = format!("model:{nl}");
        let fresh = |unit: &str| -> Vec<String> {
            std::iter::once(header.clone())
                .chain(owned_lines(target, unit, nl).into_iter().map(|(_, l)| l))
                .collect()
        };
        let description;
        match y.block.clone() {
            None => {
                description = "add the model: section";
                let lines = fresh(&y.unit);
                y.lines.extend(lines);
                y.had_final_nl = true;
            }
            Some(Block {
                header: h,
                end,
                shape: Shape::Scalar,
            }) => {
                description = "replace the legacy `model: <name>` with the model: section";
                let lines = fresh(&y.unit);
                apply_edits(&mut y.lines, vec![(h, end, lines)]);
                if end == y.lines.len() {
                    y.had_final_nl = true;
                }
            }
            Some(Block {
                header: h,
                shape: Shape::Mapping { children, indent },
                ..
            }) => {
                description =
                    "set default, provider, base_url, api_key and api_mode in the model: section";
                let indent = indent.unwrap_or_else(|| y.unit.clone());
                let mut edits = Vec::new();
                let mut appended = Vec::new();
                for (key, line) in owned_lines(target, &indent, nl) {
                    match children.iter().rev().find(|c| c.key == key) {
                        Some(c) => {
                            if y.lines[c.start..c.end].concat() != line {
                                edits.push((c.start, c.end, vec![line]));
                            }
                        }
                        None => appended.push(line),
                    }
                }
                if !appended.is_empty() {
                    let at = children.last().map_or(h + 1, |c| c.end);
                    if at == y.lines.len() {
                        y.had_final_nl = true;
                    }
                    edits.push((at, at, appended));
                }
                apply_edits(&mut y.lines, edits);
            }
        }
        Ok(change(
            self.id(),
            &path,
            description,
            before,
            Some(y.finish()),
            true,
        )
        .into_iter()
        .collect())
    }

    fn plan_undo(&self, files: &Files, pristine: &Pristine) -> Result<Vec<FileChange>, PlanError> {
        let path = files.named(FILE)?;
        let c = undo_file(self.id(), &path, files, pristine, |current, pf| {
            let mut y = Yaml::parse(&path, current)?;
            let original = pf
                .and_then(|p| p.original.as_deref())
                .and_then(|t| Yaml::parse(&path, t).ok());
            let installed = pf
                .and_then(|p| p.installed.as_deref())
                .and_then(|t| Yaml::parse(&path, t).ok());
            let Some(Block {
                header: h,
                end,
                shape: Shape::Mapping { children, .. },
            }) = y.block.clone()
            else {
                return Ok(Some(current.to_owned()));
            };
            let loopback = y
                .child_value("base_url")
                .is_some_and(|u| is_loopback_url(&u));
            let mut edits = Vec::new();
            let mut removed = 0;
            for c in children.iter().filter(|c| OWNED.contains(&c.key.as_str())) {
                let ours = match &installed {
                    Some(i) => i
                        .child(&c.key)
                        .is_some_and(|ic| i.child_text(ic) == y.child_text(c)),
                    None => loopback,
                };
                if !ours {
                    continue;
                }
                match original
                    .as_ref()
                    .and_then(|o| o.child(&c.key).map(|oc| o.child_text(oc)))
                {
                    Some(orig) => edits.push((c.start, c.end, vec![orig])),
                    None => {
                        edits.push((c.start, c.end, Vec::new()));
                        removed += 1;
                    }
                }
            }
            if removed == children.len() && !children.is_empty() {
                // Nothing of the user's is left in the section.
                let orig_block = original.as_ref().and_then(|o| {
                    o.block
                        .clone()
                        .map(|b| (o.lines[b.header..b.end].to_vec(), b))
                });
                match orig_block {
                    Some((
                        lines,
                        Block {
                            shape: Shape::Scalar,
                            ..
                        },
                    )) => edits = vec![(h, end, lines)],
                    Some(_) => {}
                    None => edits = vec![(h, end, Vec::new())],
                }
            }
            apply_edits(&mut y.lines, edits);
            let text = y.finish();
            let created = pf.is_some_and(|p| p.original.is_none());
            Ok(if created && text.trim().is_empty() {
                None
            } else {
                Some(text)
            })
        })?;
        Ok(c.into_iter().collect())
    }
}
