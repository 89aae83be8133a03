//! The focus set: which models the daemon keeps warm.

/// The reserved environment variable that names the focus models when the
/// config lists none (comma-separated). `operations.md` reserves it: it is
/// never read as a config key.
pub const WARMUP_MODELS_ENV: &str = "TB_WARMUP_MODELS";

/// How many of the ledger's most used models the focus set takes when
/// neither config nor environment name any.
pub const LEDGER_FOCUS_MODELS: usize = 5;

/// Resolves the focus set (`routing.md`, "Prewarm"):
///
/// 1. `routing.focus_models` from config, when it names any model;
/// 2. else `TB_WARMUP_MODELS`, comma-separated;
/// 3. else the (up to) [`LEDGER_FOCUS_MODELS`] most used models of the
///    ledger (`ledger_top_models` is ordered most used first; the caller
///    queries the last 7 days);
/// 4. else empty.
///
/// Every source is normalised the same way: names are trimmed, empty names
/// skipped and duplicates dropped (first occurrence kept). A source that
/// names nothing after that (`TB_WARMUP_MODELS=" , "`) counts as absent.
/// Pure: the caller reads the environment and the ledger.
///
/// ```
/// use tb_prewarm::resolve_focus;
///
/// let config = vec!["gpt-4o".to_string()];
/// assert_eq!(resolve_focus(&config, Some("x"), &[]), ["gpt-4o"]);
/// assert_eq!(resolve_focus(&[], Some(" a, ,b ,a"), &[]), ["a", "b"]);
/// let top: Vec<String> = (1..=7).map(|i| format!("m{i}")).collect();
/// assert_eq!(resolve_focus(&[], None, &top), ["m1", "m2", "m3", "m4", "m5"]);
/// assert!(resolve_focus(&[], None, &[]).is_empty());
/// ```
pub fn resolve_focus(
    config_models: &[String],
    env_warmup: Option<&str>,
    ledger_top_models: &[String],
) -> Vec<String> {
    let from_config = normalise(config_models.iter().map(String::as_str), usize::MAX);
    if !from_config.is_empty() {
        return from_config;
    }
    let from_env = normalise(env_warmup.unwrap_or("").split(','), usize::MAX);
    if !from_env.is_empty() {
        return from_env;
    }
    normalise(
        ledger_top_models.iter().map(String::as_str),
        LEDGER_FOCUS_MODELS,
    )
}

fn normalise<'a>(names: impl Iterator<Item = &'a str>, limit: usize) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for name in names.map(str::trim).filter(|n| !n.is_empty()) {
        if out.len() >= limit {
            break;
        }
        if !out.iter().any(|seen| seen == name) {
            out.push(name.to_string());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    /// (case, config, env, ledger, expected focus)
    type Case = (
        &'static str,
        Vec<String>,
        Option<&'static str>,
        Vec<String>,
        Vec<&'static str>,
    );

    #[test]
    fn precedence_and_normalisation() {
        let top7 = strings(&["l1", "l2", "l3", "l4", "l5", "l6", "l7"]);
        let table: Vec<Case> = vec![
            (
                "config wins over everything",
                strings(&["c1", "c2"]),
                Some("e1"),
                top7.clone(),
                vec!["c1", "c2"],
            ),
            (
                "config is trimmed and deduplicated",
                strings(&[" c1 ", "", "c1", "c2"]),
                None,
                vec![],
                vec!["c1", "c2"],
            ),
            (
                "config naming nothing falls through",
                strings(&["", "  "]),
                Some("e1"),
                vec![],
                vec!["e1"],
            ),
            (
                "env when config is empty",
                vec![],
                Some("e1,e2"),
                top7.clone(),
                vec!["e1", "e2"],
            ),
            (
                "env parts are trimmed, empty ones skipped",
                vec![],
                Some(" e1 ,, e2,  ,e1,"),
                vec![],
                vec!["e1", "e2"],
            ),
            (
                "env naming nothing falls through",
                vec![],
                Some(" , ,"),
                strings(&["l1"]),
                vec!["l1"],
            ),
            (
                "empty env falls through",
                vec![],
                Some(""),
                strings(&["l1"]),
                vec!["l1"],
            ),
            (
                "ledger: the five most used",
                vec![],
                None,
                top7.clone(),
                vec!["l1", "l2", "l3", "l4", "l5"],
            ),
            (
                "ledger: fewer than five",
                vec![],
                None,
                strings(&["l1", "l2"]),
                vec!["l1", "l2"],
            ),
            (
                "ledger: duplicates do not use a slot",
                vec![],
                None,
                strings(&["l1", "l1", "", "l2", "l3", "l4", "l5", "l6"]),
                vec!["l1", "l2", "l3", "l4", "l5"],
            ),
            ("nothing anywhere", vec![], None, vec![], vec![]),
        ];
        for (name, config, env, ledger, want) in table {
            assert_eq!(resolve_focus(&config, env, &ledger), want, "{name}");
        }
    }
}
