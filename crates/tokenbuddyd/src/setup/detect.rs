//! Finding the provider keys a user already has: the conventional
//! environment variables first, then the files where agents keep a key of
//! their own. Pure: the variables and the files' contents come in as
//! values ([`agent_key_files`] says which files to read).

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use serde::Deserialize;
use tb_installer::InstallEnv;

use super::known::{KNOWN, KnownProvider};

/// How an agent keeps its keys in a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AgentFormat {
    /// Codex's `auth.json`: `{"OPENAI_API_KEY": "…"}`.
    CodexAuth,
    /// Claude Code's `settings.json`: `{"env": {"ANTHROPIC_API_KEY": "…"}}`.
    ClaudeSettings,
    /// opencode's `auth.json`: `{"anthropic": {"type": "api", "key": "…"}}`.
    OpencodeAuth,
    /// A dotenv file (Hermes's `.env`): `OPENAI_API_KEY=…` lines.
    DotEnv,
}

/// One agent file that may hold keys, and its content when it exists.
#[derive(Clone)]
pub(crate) struct AgentFile {
    /// The agent's name, for people.
    pub agent: &'static str,
    /// The file.
    pub path: PathBuf,
    /// How it keeps keys.
    pub format: AgentFormat,
    /// Its content (`None`: missing or unreadable).
    pub content: Option<String>,
}

/// Claude Code's name as a key source.
pub(crate) const CLAUDE_CODE: &str = "Claude Code";

/// The files agents keep keys in, for this machine's home and variables.
pub(crate) fn agent_key_files(env: &InstallEnv) -> Vec<(&'static str, AgentFormat, PathBuf)> {
    let dir =
        |var: &str, default: &str| env.var_path(var).unwrap_or_else(|| env.home.join(default));
    let data_home = env
        .var_path("XDG_DATA_HOME")
        .unwrap_or_else(|| env.home.join(".local").join("share"));
    vec![
        (
            "Codex",
            AgentFormat::CodexAuth,
            dir("CODEX_HOME", ".codex").join("auth.json"),
        ),
        (
            CLAUDE_CODE,
            AgentFormat::ClaudeSettings,
            dir("CLAUDE_CONFIG_DIR", ".claude").join("settings.json"),
        ),
        (
            "opencode",
            AgentFormat::OpencodeAuth,
            data_home.join("opencode").join("auth.json"),
        ),
        (
            "Hermes",
            AgentFormat::DotEnv,
            dir("HERMES_HOME", ".hermes").join(".env"),
        ),
    ]
}

/// Where a found key came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum KeySource {
    /// An environment variable: the config references it (`api_key_env`).
    Env(&'static str),
    /// An agent's file: the key is copied into a key file of its own that
    /// the config references (`api_key_file`).
    AgentFile {
        /// The agent's name.
        agent: &'static str,
        /// The agent's file.
        path: PathBuf,
    },
}

impl fmt::Display for KeySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeySource::Env(var) => write!(f, "${var}"),
            KeySource::AgentFile { agent, path } => write!(f, "{agent}'s {}", path.display()),
        }
    }
}

/// A provider key found on this machine.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct FoundKey {
    /// Whose key it is.
    pub provider: &'static KnownProvider,
    /// The key itself: never printed (see [`FoundKey::masked`]).
    pub key: String,
    /// Where it was found.
    pub source: KeySource,
    /// The base URL to use: the base-URL variable's, else the public one.
    pub base_url: String,
}

impl FoundKey {
    /// The key as it may be shown: `…` and its last four characters.
    pub(crate) fn masked(&self) -> String {
        tb_installer::mask(&self.key)
    }
}

impl fmt::Debug for FoundKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FoundKey")
            .field("provider", &self.provider.id)
            .field("key", &self.masked())
            .field("source", &self.source)
            .field("base_url", &self.base_url)
            .finish()
    }
}

/// The keys found, one per provider in [`KNOWN`] order: the environment
/// variable when set (non-blank), else the first agent file holding one.
/// `vars` holds the process's variables (only those of [`KNOWN`] are read).
pub(crate) fn detect(vars: &BTreeMap<String, String>, files: &[AgentFile]) -> Vec<FoundKey> {
    let var = |name: &str| vars.get(name).map(|v| v.trim()).filter(|v| !v.is_empty());
    let from_files: Vec<(&AgentFile, BTreeMap<&'static str, String>)> = files
        .iter()
        .filter_map(|f| Some((f, keys_in(f.format, f.content.as_deref()?))))
        .collect();
    KNOWN
        .iter()
        .filter_map(|p| {
            let (key, source) = match var(p.key_var) {
                Some(key) => (key.to_string(), KeySource::Env(p.key_var)),
                None => from_files.iter().find_map(|(f, keys)| {
                    let key = keys.get(p.id)?;
                    let source = KeySource::AgentFile {
                        agent: f.agent,
                        path: f.path.clone(),
                    };
                    Some((key.clone(), source))
                })?,
            };
            Some(FoundKey {
                provider: p,
                key,
                source,
                base_url: p.base_url(var(p.base_url_var)),
            })
        })
        .collect()
}

/// The keys in one agent file, by provider id; a file that does not
/// parse holds none (it is the agent's, not ours to judge).
fn keys_in(format: AgentFormat, content: &str) -> BTreeMap<&'static str, String> {
    let by_var = |pairs: Vec<(String, String)>| {
        pairs
            .into_iter()
            .filter_map(|(name, value)| {
                let p = KNOWN.iter().find(|p| p.key_var == name)?;
                Some((p.id, value))
            })
            .collect::<Vec<_>>()
    };
    let pairs: Vec<(&'static str, String)> = match format {
        AgentFormat::CodexAuth => serde_json::from_str::<CodexAuth>(content)
            .ok()
            .and_then(|a| a.openai_api_key)
            .map(|k| vec![("openai", k)])
            .unwrap_or_default(),
        AgentFormat::ClaudeSettings => serde_json::from_str::<ClaudeSettings>(content)
            .map(|s| {
                by_var(
                    s.env
                        .into_iter()
                        .filter_map(|(k, v)| match v {
                            EnvValue::Text(t) => Some((k, t)),
                            EnvValue::Other(_) => None,
                        })
                        .collect(),
                )
            })
            .unwrap_or_default(),
        AgentFormat::OpencodeAuth => {
            serde_json::from_str::<BTreeMap<String, OpencodeEntry>>(content)
                .map(|entries| {
                    entries
                        .into_iter()
                        .filter(|(_, e)| e.kind == "api")
                        .filter_map(|(name, e)| {
                            let p = KNOWN.iter().find(|p| p.opencode_id == name)?;
                            Some((p.id, e.key?))
                        })
                        .collect()
                })
                .unwrap_or_default()
        }
        AgentFormat::DotEnv => by_var(dotenv_pairs(content)),
    };
    pairs
        .into_iter()
        .map(|(id, key)| (id, key.trim().to_string()))
        .filter(|(_, key)| !key.is_empty())
        .collect()
}

#[derive(Deserialize)]
struct CodexAuth {
    #[serde(rename = "OPENAI_API_KEY", default)]
    openai_api_key: Option<String>,
}

#[derive(Deserialize)]
struct ClaudeSettings {
    #[serde(default)]
    env: BTreeMap<String, EnvValue>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum EnvValue {
    Text(String),
    Other(serde::de::IgnoredAny),
}

#[derive(Deserialize)]
struct OpencodeEntry {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    key: Option<String>,
}

/// `NAME=value` lines of a dotenv file (`export ` prefixes, quotes and
/// `#` comment lines handled; a value's own `#` is kept).
fn dotenv_pairs(content: &str) -> Vec<(String, String)> {
    content
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| {
            let l = l.strip_prefix("export ").unwrap_or(l);
            let (name, value) = l.split_once('=')?;
            let value = value.trim();
            let unquoted = ['"', '\'']
                .iter()
                .find_map(|q| value.strip_prefix(*q)?.strip_suffix(*q))
                .unwrap_or(value);
            Some((name.trim().to_string(), unquoted.to_string()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
            .collect()
    }

    fn file(agent: &'static str, format: AgentFormat, content: &str) -> AgentFile {
        AgentFile {
            agent,
            path: PathBuf::from(format!("/h/{agent}")),
            format,
            content: Some(content.to_string()),
        }
    }

    fn found(keys: &[FoundKey]) -> Vec<(&str, &str, String)> {
        keys.iter()
            .map(|k| (k.provider.id, k.key.as_str(), k.source.to_string()))
            .collect()
    }

    #[test]
    fn environment_variables_with_their_base_urls() {
        let keys = detect(
            &vars(&[
                ("DEEPSEEK_API_KEY", " sk-deep-0001 "),
                ("OPENAI_API_KEY", "sk-open-0002"),
                ("OPENAI_BASE_URL", "http://127.0.0.1:7/v1"),
                ("GROQ_API_KEY", "  "),
                ("UNRELATED_API_KEY", "x"),
            ]),
            &[],
        );
        assert_eq!(
            found(&keys),
            [
                ("openai", "sk-open-0002", "$OPENAI_API_KEY".to_string()),
                ("deepseek", "sk-deep-0001", "$DEEPSEEK_API_KEY".to_string()),
            ]
        );
        assert_eq!(keys[0].base_url, "http://127.0.0.1:7/v1");
        assert_eq!(keys[1].base_url, "https://api.deepseek.com/v1");
        assert!(!format!("{keys:?}").contains("sk-open-0002"));
    }

    #[test]
    fn agent_files_fill_in_what_the_environment_lacks() {
        let files = [
            file(
                "Codex",
                AgentFormat::CodexAuth,
                r#"{"OPENAI_API_KEY": "sk-codex-1234", "tokens": null}"#,
            ),
            file(
                "Claude Code",
                AgentFormat::ClaudeSettings,
                r#"{"env": {"ANTHROPIC_API_KEY": "sk-ant-5678", "DISABLE_TELEMETRY": 1}}"#,
            ),
            file(
                "opencode",
                AgentFormat::OpencodeAuth,
                r#"{"google": {"type": "api", "key": "g-key-9999"}, "openrouter": {"type": "oauth", "refresh": "r"}}"#,
            ),
            file(
                "Hermes",
                AgentFormat::DotEnv,
                "# keys\nexport OPENROUTER_API_KEY=\"or-key-0000\"\nOPENAI_API_KEY=sk-hermes\nBROKEN LINE\n",
            ),
        ];
        let keys = detect(&vars(&[("ANTHROPIC_API_KEY", "sk-env-ant")]), &files);
        assert_eq!(
            found(&keys),
            [
                ("openai", "sk-codex-1234", "Codex's /h/Codex".to_string()),
                ("anthropic", "sk-env-ant", "$ANTHROPIC_API_KEY".to_string()),
                ("gemini", "g-key-9999", "opencode's /h/opencode".to_string()),
                (
                    "openrouter",
                    "or-key-0000",
                    "Hermes's /h/Hermes".to_string()
                ),
            ]
        );
    }

    #[test]
    fn unparsable_or_missing_files_hold_no_key() {
        let mut missing = file("Codex", AgentFormat::CodexAuth, "");
        missing.content = None;
        let files = [
            missing,
            file("Claude Code", AgentFormat::ClaudeSettings, "{ // jsonc\n}"),
            file("opencode", AgentFormat::OpencodeAuth, "[]"),
            file("Hermes", AgentFormat::DotEnv, "OPENAI_API_KEY=\n"),
        ];
        assert!(detect(&BTreeMap::new(), &files).is_empty());
    }

    #[test]
    fn the_agent_files_follow_the_agents_variables() {
        let env = InstallEnv::new("/h", tb_installer::Os::Linux).with_var("CODEX_HOME", "/c");
        let paths: Vec<PathBuf> = agent_key_files(&env).into_iter().map(|f| f.2).collect();
        assert_eq!(
            paths,
            [
                PathBuf::from("/c/auth.json"),
                PathBuf::from("/h/.claude/settings.json"),
                PathBuf::from("/h/.local/share/opencode/auth.json"),
                PathBuf::from("/h/.hermes/.env"),
            ]
        );
    }
}
