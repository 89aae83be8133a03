//! Claude Code: `settings.json` `env` keys, and `hasCompletedOnboarding` in
//! `.claude.json`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::JsonBackups;
use crate::contract::{
    ClientInstaller, FileChange, Files, Installed, Options, PlanError, Pointer, Pristine, Target,
    change, is_loopback_url, undo_file,
};
use crate::env::InstallEnv;
use crate::jsonc::{self, J, JsonDoc};

const BASE_URL: [&str; 2] = ["env", "ANTHROPIC_BASE_URL"];
const AUTH_TOKEN: [&str; 2] = ["env", "ANTHROPIC_AUTH_TOKEN"];
const MODEL: [&str; 2] = ["env", "ANTHROPIC_MODEL"];
const API_KEY: [&str; 2] = ["env", "ANTHROPIC_API_KEY"];
const ONBOARDING: [&str; 1] = ["hasCompletedOnboarding"];
const STASH_API_KEY: &str = "env.ANTHROPIC_API_KEY";

/// Claude Code (`claude`).
#[derive(Debug, Clone, Copy, Default)]
pub struct ClaudeCode;

impl ClaudeCode {
    /// `$CLAUDE_CONFIG_DIR`, else `~/.claude`.
    fn dir(env: &InstallEnv) -> PathBuf {
        env.var_path("CLAUDE_CONFIG_DIR")
            .unwrap_or_else(|| env.home.join(".claude"))
    }

    /// `<dir>/settings.json`.
    pub fn settings_path(env: &InstallEnv) -> PathBuf {
        Self::dir(env).join("settings.json")
    }

    /// `~/.claude.json`; `$CLAUDE_CONFIG_DIR/.claude.json` when that is set
    /// (Claude Code keeps its global state inside the moved dir).
    pub fn global_path(env: &InstallEnv) -> PathBuf {
        match env.var_path("CLAUDE_CONFIG_DIR") {
            Some(d) => d.join(".claude.json"),
            None => env.home.join(".claude.json"),
        }
    }

    fn paths(files: &Files) -> Result<(PathBuf, PathBuf), PlanError> {
        Ok((files.named("settings.json")?, files.named(".claude.json")?))
    }
}

impl ClientInstaller for ClaudeCode {
    fn id(&self) -> &'static str {
        "claude-code"
    }

    fn name(&self) -> &'static str {
        "Claude Code"
    }

    fn detect(&self, env: &InstallEnv) -> Installed {
        let local = Self::dir(env).join("local").join("claude");
        Installed {
            binary: env
                .find_binary("claude")
                .or_else(|| local.is_file().then_some(local)),
            config_dir_exists: Self::dir(env).is_dir(),
        }
    }

    fn config_paths(&self, env: &InstallEnv) -> Vec<PathBuf> {
        vec![Self::settings_path(env), Self::global_path(env)]
    }

    fn pointer(&self, files: &Files) -> Option<Pointer> {
        let (settings, _) = Self::paths(files).ok()?;
        let doc = JsonDoc::open(&settings, files.get(&settings)).ok()?;
        let url = doc.get_str(&BASE_URL)?;
        Some(Pointer::new(&url, doc.get_str(&AUTH_TOKEN).as_deref()))
    }

    fn plan(
        &self,
        files: &Files,
        target: &Target,
        opts: &Options,
    ) -> Result<Vec<FileChange>, PlanError> {
        target.check()?;
        let (settings, global) = Self::paths(files)?;
        let mut changes = Vec::new();

        let before = files.get(&settings);
        let mut doc = JsonDoc::open(&settings, before)?;
        doc.expect_object(&["env"])?;
        let mut stash = BTreeMap::new();
        let mut description =
            "set env.ANTHROPIC_BASE_URL, env.ANTHROPIC_AUTH_TOKEN and env.ANTHROPIC_MODEL"
                .to_owned();
        if let Some(key) = doc.get(&API_KEY)
            && jsonc::as_str(&key).as_deref() != Some("")
        {
            if !opts.force {
                return Err(PlanError::Conflict {
                    path: settings.clone(),
                    message: "env.ANTHROPIC_API_KEY is set; together with tokenbuddy's \
                                  ANTHROPIC_AUTH_TOKEN Claude Code reports an auth conflict. \
                                  Remove it, or run again with --force to move it into \
                                  tokenbuddy's backup (undo puts it back)"
                        .to_owned(),
                });
            }
            stash.insert(STASH_API_KEY.to_owned(), doc.raw(&key).to_owned());
            doc.remove(&API_KEY)?;
            description.push_str(
                "; move your env.ANTHROPIC_API_KEY into tokenbuddy's backup (undo restores it)",
            );
        }
        doc.set(&BASE_URL, J::s(target.base()))?;
        doc.set(&AUTH_TOKEN, J::s(&target.token))?;
        doc.set(&MODEL, J::s(&target.model))?;
        if let Some(mut c) = change(
            self.id(),
            &settings,
            description,
            before,
            Some(doc.into_text()),
            true,
        ) {
            c.stash = stash;
            changes.push(c);
        }

        let before = files.get(&global);
        let mut doc = JsonDoc::open(&global, before)?;
        doc.set(&ONBOARDING, J::Bool(true))?;
        changes.extend(change(
            self.id(),
            &global,
            "set hasCompletedOnboarding so Claude Code does not stop at the login screen",
            before,
            Some(doc.into_text()),
            false,
        ));
        Ok(changes)
    }

    fn plan_undo(&self, files: &Files, pristine: &Pristine) -> Result<Vec<FileChange>, PlanError> {
        let (settings, global) = Self::paths(files)?;
        let mut changes = Vec::new();
        changes.extend(undo_file(
            self.id(),
            &settings,
            files,
            pristine,
            |current, pf| {
                let b = JsonBackups::open(&settings, pf);
                let mut doc = JsonDoc::open(&settings, Some(current))?;
                let ours = doc.get_str(&BASE_URL).is_some_and(|u| is_loopback_url(&u));
                for key in [BASE_URL, AUTH_TOKEN, MODEL] {
                    if b.still_ours(&doc, &key, ours) {
                        b.restore_or_remove(&mut doc, &key)?;
                    }
                }
                if doc.get(&API_KEY).is_none() {
                    let saved = pf
                        .and_then(|p| p.stash.get(STASH_API_KEY).cloned())
                        .or_else(|| {
                            let o = b.original.as_ref()?;
                            o.get(&API_KEY).map(|n| o.raw(&n).to_owned())
                        });
                    if let Some(raw) = saved {
                        doc.set(&API_KEY, J::Raw(raw))?;
                    }
                }
                b.prune(&mut doc, &["env"])?;
                Ok(b.finish(doc))
            },
        )?);
        changes.extend(undo_file(
            self.id(),
            &global,
            files,
            pristine,
            |current, pf| {
                let b = JsonBackups::open(&global, pf);
                let mut doc = JsonDoc::open(&global, Some(current))?;
                // Without a backup there is no telling whether the user
                // onboarded themselves: leave the key.
                let is_true = doc.get(&ONBOARDING).is_some_and(|n| doc.raw(&n) == "true");
                if pf.is_some() && is_true && b.still_ours(&doc, &ONBOARDING, true) {
                    b.restore_or_remove(&mut doc, &ONBOARDING)?;
                }
                Ok(b.finish(doc))
            },
        )?);
        Ok(changes)
    }
}
