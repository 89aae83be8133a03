//! opencode: `opencode.json` (or `opencode.jsonc` when that exists) under
//! `$XDG_CONFIG_HOME/opencode`.

use std::path::PathBuf;

use super::{JsonBackups, MODEL_PREFIX, PROVIDER_ID};
use crate::contract::{
    ClientInstaller, FileChange, Files, Installed, Options, PlanError, Pointer, Pristine, Target,
    change, undo_file,
};
use crate::env::InstallEnv;
use crate::jsonc::{J, JsonDoc};

const JSON: &str = "opencode.json";
const JSONC: &str = "opencode.jsonc";
const PROVIDER: [&str; 2] = ["provider", PROVIDER_ID];
const BASE_URL: [&str; 4] = ["provider", PROVIDER_ID, "options", "baseURL"];
const MODEL: [&str; 1] = ["model"];

/// opencode (`opencode`).
#[derive(Debug, Clone, Copy, Default)]
pub struct Opencode;

impl Opencode {
    fn dir(env: &InstallEnv) -> PathBuf {
        env.xdg_config_home().join("opencode")
    }

    /// The file to edit: the `.jsonc` when it exists, else the `.json`.
    fn target_path(files: &Files) -> Result<PathBuf, PlanError> {
        let jsonc = files.named(JSONC)?;
        if files.get(&jsonc).is_some() {
            Ok(jsonc)
        } else {
            files.named(JSON)
        }
    }
}

impl ClientInstaller for Opencode {
    fn id(&self) -> &'static str {
        "opencode"
    }

    fn name(&self) -> &'static str {
        "opencode"
    }

    fn detect(&self, env: &InstallEnv) -> Installed {
        Installed {
            binary: env.find_binary("opencode"),
            config_dir_exists: Self::dir(env).is_dir(),
        }
    }

    fn config_paths(&self, env: &InstallEnv) -> Vec<PathBuf> {
        vec![Self::dir(env).join(JSON), Self::dir(env).join(JSONC)]
    }

    fn pointer(&self, files: &Files) -> Option<Pointer> {
        let path = Self::target_path(files).ok()?;
        let doc = JsonDoc::open(&path, files.get(&path)).ok()?;
        let url = doc.get_str(&BASE_URL)?;
        let token = doc.get_str(&["provider", PROVIDER_ID, "options", "apiKey"]);
        Some(Pointer::new(&url, token.as_deref()))
    }

    fn plan(
        &self,
        files: &Files,
        target: &Target,
        _opts: &Options,
    ) -> Result<Vec<FileChange>, PlanError> {
        target.check()?;
        let path = Self::target_path(files)?;
        let before = files.get(&path);
        let mut doc = JsonDoc::open(&path, before)?;
        doc.expect_object(&["provider"])?;
        let provider = J::obj([
            ("npm", J::s("@ai-sdk/openai-compatible")),
            ("name", J::s("tokenbuddy")),
            (
                "options",
                J::obj([
                    ("baseURL", J::s(target.v1())),
                    ("apiKey", J::s(&target.token)),
                ]),
            ),
            (
                "models",
                J::Obj(vec![(
                    target.model.clone(),
                    J::obj([("name", J::s(&target.model))]),
                )]),
            ),
        ]);
        doc.set(&PROVIDER, provider)?;
        doc.set(&MODEL, J::s(format!("{MODEL_PREFIX}{}", target.model)))?;
        Ok(change(
            self.id(),
            &path,
            format!(
                "add provider.tokenbuddy and set model = \"{MODEL_PREFIX}{}\"",
                target.model
            ),
            before,
            Some(doc.into_text()),
            true,
        )
        .into_iter()
        .collect())
    }

    fn plan_undo(&self, files: &Files, pristine: &Pristine) -> Result<Vec<FileChange>, PlanError> {
        let mut changes = Vec::new();
        let edited = Self::target_path(files)?;
        for name in [JSON, JSONC] {
            let path = files.named(name)?;
            // The `.json` beside a `.jsonc` is never edited by an install:
            // with no backup of it and unparsable, it holds nothing undo
            // could remove, and must not block the undo of the other file.
            if path != edited
                && pristine.get(&path).is_none()
                && files
                    .get(&path)
                    .is_some_and(|text| JsonDoc::open(&path, Some(text)).is_err())
            {
                continue;
            }
            changes.extend(undo_file(
                self.id(),
                &path,
                files,
                pristine,
                |current, pf| {
                    let b = JsonBackups::open(&path, pf);
                    let mut doc = JsonDoc::open(&path, Some(current))?;
                    if doc.remove(&PROVIDER)? {
                        b.prune(&mut doc, &["provider"])?;
                    }
                    let ours = doc
                        .get_str(&MODEL)
                        .is_some_and(|m| m.starts_with(MODEL_PREFIX));
                    if ours && b.still_ours(&doc, &MODEL, true) {
                        b.restore_or_remove(&mut doc, &MODEL)?;
                    }
                    Ok(b.finish(doc))
                },
            )?);
        }
        Ok(changes)
    }
}
