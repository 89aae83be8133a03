//! OpenClaw: `openclaw.json`, whose schema is strict (no unknown keys).

use std::path::PathBuf;

use super::{JsonBackups, MODEL_PREFIX, PROVIDER_ID};
use crate::contract::{
    ClientInstaller, FileChange, Files, Installed, Options, PlanError, Pointer, Pristine, Target,
    change, undo_file,
};
use crate::env::InstallEnv;
use crate::jsonc::{J, JsonDoc, Kind, str_member};
use jsonc_parser::cst::CstNode;

const FILE: &str = "openclaw.json";
const PROVIDER: [&str; 3] = ["models", "providers", PROVIDER_ID];
const PROVIDER_MODELS: [&str; 4] = ["models", "providers", PROVIDER_ID, "models"];
const AGENT_MODEL: [&str; 3] = ["agents", "defaults", "model"];
const AGENT_PRIMARY: [&str; 4] = ["agents", "defaults", "model", "primary"];

/// OpenClaw (`openclaw`).
#[derive(Debug, Clone, Copy, Default)]
pub struct OpenClaw;

impl OpenClaw {
    fn state_dir(env: &InstallEnv) -> PathBuf {
        env.var_path("OPENCLAW_STATE_DIR")
            .unwrap_or_else(|| env.home.join(".openclaw"))
    }

    /// `$OPENCLAW_CONFIG_PATH`, else `$OPENCLAW_STATE_DIR/openclaw.json`,
    /// else `~/.openclaw/openclaw.json`.
    fn path(env: &InstallEnv) -> PathBuf {
        env.var_path("OPENCLAW_CONFIG_PATH")
            .unwrap_or_else(|| Self::state_dir(env).join(FILE))
    }
}

fn model_entry(model: &str) -> J {
    J::obj([
        ("id", J::s(model)),
        ("name", J::s(model)),
        ("input", J::Arr(vec![J::s("text"), J::s("image")])),
    ])
}

fn id_is(model: &str) -> impl Fn(&CstNode) -> bool + '_ {
    move |n| str_member(n, "id").as_deref() == Some(model)
}

impl ClientInstaller for OpenClaw {
    fn id(&self) -> &'static str {
        "openclaw"
    }

    fn name(&self) -> &'static str {
        "OpenClaw"
    }

    fn detect(&self, env: &InstallEnv) -> Installed {
        let dir = Self::path(env)
            .parent()
            .map(|p| p.is_dir())
            .unwrap_or(false);
        Installed {
            binary: env.find_binary("openclaw"),
            config_dir_exists: dir || Self::state_dir(env).is_dir(),
        }
    }

    fn config_paths(&self, env: &InstallEnv) -> Vec<PathBuf> {
        vec![Self::path(env)]
    }

    fn pointer(&self, files: &Files) -> Option<Pointer> {
        let path = files.single(FILE).ok()?;
        let doc = JsonDoc::open(&path, files.get(&path)).ok()?;
        let url = doc.get_str(&["models", "providers", PROVIDER_ID, "baseUrl"])?;
        let token = doc.get_str(&["models", "providers", PROVIDER_ID, "apiKey"]);
        Some(Pointer::new(&url, token.as_deref()))
    }

    fn plan(
        &self,
        files: &Files,
        target: &Target,
        _opts: &Options,
    ) -> Result<Vec<FileChange>, PlanError> {
        target.check()?;
        let path = files.single(FILE)?;
        let before = files.get(&path);
        let mut doc = JsonDoc::open(&path, before)?;
        doc.expect_object(&PROVIDER)?;
        doc.expect_object(&["agents", "defaults"])?;

        let fields = [
            ("baseUrl", J::s(target.v1())),
            ("apiKey", J::s(&target.token)),
            ("auth", J::s("api-key")),
            ("api", J::s("openai-completions")),
        ];
        if doc.get(&PROVIDER).is_none() {
            let mut obj: Vec<(String, J)> =
                fields.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
            obj.push((
                "models".to_owned(),
                J::Arr(vec![model_entry(&target.model)]),
            ));
            doc.set(&PROVIDER, J::Obj(obj))?;
        } else {
            for (k, v) in fields {
                doc.set(&["models", "providers", PROVIDER_ID, k], v)?;
            }
            // Replace only our model's entry; keep the others.
            doc.upsert_element(
                &PROVIDER_MODELS,
                id_is(&target.model),
                model_entry(&target.model),
            )?;
        }

        let model = J::s(format!("{MODEL_PREFIX}{}", target.model));
        match doc.get(&AGENT_MODEL).map(|n| Kind::of(&n)) {
            None | Some(Kind::Str) => doc.set(&AGENT_MODEL, model)?,
            Some(Kind::Object) => doc.set(&AGENT_PRIMARY, model)?,
            Some(other) => {
                return Err(doc.wrong_type(
                    &AGENT_MODEL,
                    "a string or an object with `primary`",
                    other.describe(),
                ));
            }
        }
        Ok(change(
            self.id(),
            &path,
            format!(
                "add models.providers.tokenbuddy and set agents.defaults.model to \"{MODEL_PREFIX}{}\"",
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
        let path = files.single(FILE)?;
        let c = undo_file(self.id(), &path, files, pristine, |current, pf| {
            let b = JsonBackups::open(&path, pf);
            let mut doc = JsonDoc::open(&path, Some(current))?;
            if doc.remove(&PROVIDER)? {
                b.prune(&mut doc, &["models", "providers"])?;
            }
            for key in [&AGENT_MODEL[..], &AGENT_PRIMARY[..]] {
                let ours = doc
                    .get_str(key)
                    .is_some_and(|m| m.starts_with(MODEL_PREFIX));
                if ours && b.still_ours(&doc, key, true) {
                    b.restore_or_remove(&mut doc, key)?;
                }
            }
            Ok(b.finish(doc))
        })?;
        Ok(c.into_iter().collect())
    }
}
