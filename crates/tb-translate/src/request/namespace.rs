//! Flat names for the tools of a Responses `namespace`.
//!
//! Codex declares each MCP server's tools, and some of its own, inside a
//! `{"type":"namespace","name":…,"tools":[…]}` tool, and routes a call on
//! its `namespace` and `name`. Chat and Messages know only top-level tools,
//! so each tool of a namespace is sent as a top-level tool under one flat
//! name, and the answer translation maps a call of that name back
//! ([`NamespacedTool`](crate::NamespacedTool)).
//!
//! A flat name is `<namespace>__<name>`, which must be a valid tool name
//! for both targets (`^[a-zA-Z0-9_-]{1,64}$`, OpenAI Chat functions and
//! Anthropic tools alike). When it is not, characters outside that set
//! become `_`, and a name over 64 characters keeps its first 55 and gets
//! `_` and 8 hex digits of a hash of the namespace and name: deterministic,
//! so every turn of a conversation names the tool the same way, and the
//! history's calls match the tools.

use std::collections::HashSet;

/// Longest tool name OpenAI Chat and Anthropic accept.
pub(crate) const MAX_NAME: usize = 64;

/// Codex's reserved namespace for plain function tools (Responses Lite
/// wraps every top-level function in it): its tools keep their own names.
const DEFAULT_NAMESPACE: &str = "functions";

/// Length of `_` + 8 hex digits.
const SUFFIX: usize = 9;

/// The flat name of tool `name` in `namespace`, before collisions with
/// other tools are considered.
pub(crate) fn flat_name(namespace: &str, name: &str) -> String {
    let joined = if namespace == DEFAULT_NAMESPACE {
        name.to_owned()
    } else if namespace.ends_with("__") {
        // Already ends with the separator (`mcp__server__`).
        format!("{namespace}{name}")
    } else {
        format!("{namespace}__{name}")
    };
    if is_valid(&joined) {
        return joined;
    }
    let sanitized: String = joined
        .chars()
        .map(|c| if allowed(c) { c } else { '_' })
        .collect();
    if sanitized.is_empty() {
        return format!("tool_{:08x}", hash(namespace, name, 0));
    }
    if sanitized.len() <= MAX_NAME {
        return sanitized;
    }
    shortened(&sanitized, namespace, name, 0)
}

/// [`flat_name`], made unique among `taken` (the other tools' names):
/// a clash gets a hash suffix.
pub(crate) fn unique_flat_name(namespace: &str, name: &str, taken: &HashSet<String>) -> String {
    let flat = flat_name(namespace, name);
    if !taken.contains(&flat) {
        return flat;
    }
    (1u32..)
        .map(|salt| shortened(&flat, namespace, name, salt))
        .find(|candidate| !taken.contains(candidate))
        .unwrap_or(flat)
}

/// A valid tool name for every target.
pub(crate) fn is_valid(name: &str) -> bool {
    !name.is_empty() && name.len() <= MAX_NAME && name.chars().all(allowed)
}

fn allowed(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '-'
}

/// `base` cut to leave room for `_` and 8 hex digits of the hash.
/// `base` is ASCII here (sanitised or valid), so any cut is a character
/// boundary.
fn shortened(base: &str, namespace: &str, name: &str, salt: u32) -> String {
    let keep = base.len().min(MAX_NAME - SUFFIX);
    let prefix = base.get(..keep).unwrap_or(base);
    format!("{prefix}_{:08x}", hash(namespace, name, salt))
}

/// FNV-1a over the namespace, a separator, the name and the salt, folded
/// to 32 bits: stable across runs and builds (no random seed).
fn hash(namespace: &str, name: &str, salt: u32) -> u32 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let bytes = namespace
        .bytes()
        .chain([0])
        .chain(name.bytes())
        .chain(salt.to_le_bytes());
    for b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    (h ^ (h >> 32)) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flat_names_are_valid_and_stable() {
        let long_ns = "mcp__a_very_long_server_name_that_someone_configured";
        let long_name = "fetch_every_single_issue_comment_and_attachment";
        for (namespace, name, expected) in [
            ("mcp__x", "js", "mcp__x__js"),
            (
                "multi_agent_v1",
                "spawn_agent",
                "multi_agent_v1__spawn_agent",
            ),
            ("functions", "exec", "exec"),
            ("mcp__atlassian__", "get_issue", "mcp__atlassian__get_issue"),
            ("mcp__my.server", "read file", "mcp__my_server__read_file"),
            ("ns", "é", "ns___"),
            (
                long_ns,
                long_name,
                "mcp__a_very_long_server_name_that_someone_configured__f_",
            ),
        ] {
            let got = flat_name(namespace, name);
            assert!(is_valid(&got), "{got}");
            assert!(got.starts_with(expected), "{namespace} {name}: {got}");
            assert_eq!(got, flat_name(namespace, name), "deterministic");
        }
        let long = flat_name(long_ns, long_name);
        assert_eq!(long.len(), MAX_NAME);
        assert_ne!(
            long,
            flat_name(long_ns, "fetch_every_single_issue_comment_and_attachments")
        );
    }

    #[test]
    fn clashes_get_a_suffix() {
        let taken: HashSet<String> = ["mcp__x__js".to_owned()].into();
        let got = unique_flat_name("mcp__x", "js", &taken);
        assert!(got.starts_with("mcp__x__js_") && got.len() == "mcp__x__js".len() + SUFFIX);
        assert!(is_valid(&got));
        assert_eq!(unique_flat_name("mcp__x", "ts", &taken), "mcp__x__ts");
    }
}
