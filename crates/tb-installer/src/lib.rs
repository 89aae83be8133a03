//! The provider-config installer: points AI clients at the tokenbuddy proxy
//! by editing their config files, shows the exact change first, and undoes
//! it exactly afterwards.
//!
//! # Why
//!
//! Tools that do this are most often complained about for what goes wrong:
//! whole settings files overwritten, hooks and permissions lost, logins
//! clobbered, no backup. So this crate touches only the keys tokenbuddy owns
//! (provider id `tokenbuddy`, model prefix `tokenbuddy/`), keeps everything
//! else byte-for-byte, and makes every change reversible.
//!
//! # Layout
//!
//! - [`ClientInstaller`]: one implementation per client ([`all_clients`]):
//!   Claude Code, Codex CLI, opencode, OpenClaw, Hermes, Claude Desktop.
//!   Planning is pure: file contents ([`Files`]) in, [`FileChange`]s out.
//! - [`instructions`]: clients with no file to edit safely (Cursor, Cline,
//!   Continue, Aider) get exact instructions instead.
//! - [`Installer`]: the only code doing I/O: status, redacted dry-run diff,
//!   all-or-nothing atomic apply with pristine and timestamped backups, and
//!   undo.
//! - [`default_model`]: `--model`, else the first focus model, else the first
//!   served model.
//!
//! # Decisions
//!
//! - **JSON is patched as text.** A small reader records the byte span of
//!   every value; an edit splices only the value it changes (or inserts a
//!   member after the last one, with the indentation and line ending of the
//!   file). Key order, formatting, comments and trailing commas are kept
//!   exactly — so JSONC (`opencode.jsonc`, commented `settings.json`) is
//!   *preserved*, never stripped; JSON5 bare and single-quoted keys are read
//!   too. Anything else unparsable is an error naming the file and line.
//! - **TOML** (Codex) goes through `toml_edit`: comments, order and other
//!   tables are untouched; new root keys land after the existing root keys,
//!   i.e. before the first table.
//! - **YAML** (Hermes) is edited by section as text: only the top-level
//!   `model:` block, and an odd `model:` (flow, anchor, list, duplicate) is
//!   an error.
//! - **Undo** restores the pristine copy when only tokenbuddy changed the
//!   file since it was saved; otherwise it removes tokenbuddy's keys (only
//!   where they still hold what tokenbuddy wrote) and puts back the values
//!   they replaced. A file tokenbuddy created and nothing else uses is
//!   deleted. The pristine copy is taken at a client's first install and
//!   dropped by its undo.
//!
//! # Example
//!
//! ```
//! use tb_installer::{InstallEnv, Installer, Options, Os, Target, client_by_id};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let home = tempfile::tempdir()?;
//! let data = tempfile::tempdir()?;
//! let installer = Installer::new(data.path(), InstallEnv::new(home.path(), Os::Linux));
//! let target = Target::new("http://127.0.0.1:8787", "tb_access_token_0123456789", "gpt-5");
//! let codex = client_by_id("codex").ok_or("no codex")?;
//!
//! // Dry run: a redacted unified diff.
//! let preview = installer.preview(&[codex.as_ref()], &target, &Options::default())?;
//! assert!(preview.diff.contains("[model_providers.tokenbuddy]"));
//! assert!(!preview.diff.contains("tb_access_token_0123456789"));
//!
//! // Apply, then undo: the file tokenbuddy created is gone again.
//! installer.apply(&preview)?;
//! let status = installer.status(&target.proxy_url);
//! assert!(status.iter().any(|row| row.client == "codex" && row.configured));
//! installer.undo(&[codex.as_ref()])?;
//! assert!(!home.path().join(".codex/config.toml").exists());
//! # Ok(())
//! # }
//! ```

mod clients;
mod contract;
mod env;
mod io;
mod jsonc;
mod manual;
mod redact;

pub use clients::claude_code::ClaudeCode;
pub use clients::claude_desktop::{ClaudeDesktop, DESKTOP_CONFIG_ID};
pub use clients::codex::Codex;
pub use clients::hermes::Hermes;
pub use clients::openclaw::OpenClaw;
pub use clients::opencode::Opencode;
pub use clients::{MODEL_PREFIX, PROVIDER_ID};
pub use contract::{
    ClientInstaller, FileChange, Files, Installed, Options, PlanError, Pointer, Pristine,
    PristineFile, Target, is_loopback_url, same_url, token_fingerprint,
};
pub use env::{ENV_VARS, InstallEnv, NoHomeDir, Os};
pub use io::{
    Action, Applied, AppliedFile, ClientPointer, InstallError, Installer, KEEP_BACKUPS, Preview,
    PreviewKind, StatusRow, unified_diff,
};
pub use manual::{ManualClient, instructions};
pub use redact::{mask, redact};

/// Every client tokenbuddy can configure by editing files.
pub fn all_clients() -> Vec<Box<dyn ClientInstaller>> {
    vec![
        Box::new(ClaudeCode),
        Box::new(Codex),
        Box::new(Opencode),
        Box::new(OpenClaw),
        Box::new(Hermes),
        Box::new(ClaudeDesktop),
    ]
}

/// The client with this id (`claude-code`, `codex`, `opencode`, `openclaw`,
/// `hermes`, `claude-desktop`).
pub fn client_by_id(id: &str) -> Option<Box<dyn ClientInstaller>> {
    all_clients().into_iter().find(|c| c.id() == id)
}

/// No default model could be chosen.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "no default model: routing.focus_models is empty and no configured upstream serves a model; pass --model NAME"
)]
pub struct NoDefaultModel;

/// The model clients default to: `cli_model` (`--model`), else
/// `routing.focus_models[0]`, else the first model served by the configured
/// upstreams. Blank entries are skipped.
pub fn default_model(
    cli_model: Option<&str>,
    focus_models: &[String],
    served_models: &[String],
) -> Result<String, NoDefaultModel> {
    cli_model
        .into_iter()
        .chain(focus_models.iter().map(String::as_str))
        .chain(served_models.iter().map(String::as_str))
        .map(str::trim)
        .find(|m| !m.is_empty())
        .map(str::to_owned)
        .ok_or(NoDefaultModel)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_model_order() {
        let s = |v: &[&str]| v.iter().map(|x| (*x).to_owned()).collect::<Vec<_>>();
        assert_eq!(
            default_model(Some("m"), &s(&["f"]), &s(&["u"])),
            Ok("m".into())
        );
        assert_eq!(
            default_model(Some(" "), &s(&["f"]), &s(&["u"])),
            Ok("f".into())
        );
        assert_eq!(
            default_model(None, &s(&[]), &s(&["u", "v"])),
            Ok("u".into())
        );
        assert_eq!(default_model(None, &s(&[]), &s(&[])), Err(NoDefaultModel));
        assert!(NoDefaultModel.to_string().contains("--model"));
    }

    #[test]
    fn client_ids_are_unique() {
        let ids: Vec<_> = all_clients().iter().map(|c| c.id()).collect();
        assert_eq!(
            ids,
            [
                "claude-code",
                "codex",
                "opencode",
                "openclaw",
                "hermes",
                "claude-desktop"
            ]
        );
        assert!(client_by_id("hermes").is_some());
        assert!(client_by_id("cursor").is_none());
    }
}
