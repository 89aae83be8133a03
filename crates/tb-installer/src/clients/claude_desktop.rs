//! Claude Desktop (third-party inference): `Claude-3p/` on macOS and
//! Windows. There is no Linux build.

use std::path::PathBuf;

use super::{JsonBackups, PROVIDER_ID};
use crate::contract::{
    ClientInstaller, FileChange, Files, Installed, Options, PlanError, Pointer, Pristine, Target,
    change, undo_file,
};
use crate::env::{InstallEnv, Os};
use crate::jsonc::{J, JsonDoc, str_member};
use jsonc_parser::cst::CstNode;

/// tokenbuddy's fixed entry id in Claude Desktop's config library.
pub const DESKTOP_CONFIG_ID: &str = "6f6b656e-6275-4464-b979-746f6b656e62";

const MAIN: &str = "claude_desktop_config.json";
const META: &str = "_meta.json";
const ENTRY: &str = "6f6b656e-6275-4464-b979-746f6b656e62.json";
const NAME: &str = "Claude Desktop";

/// Claude Desktop in third-party ("3p") inference mode.
#[derive(Debug, Clone, Copy, Default)]
pub struct ClaudeDesktop;

impl ClaudeDesktop {
    /// The `Claude-3p` dir, `None` on Linux.
    fn dir(env: &InstallEnv) -> Option<PathBuf> {
        match env.os {
            Os::MacOs => Some(
                env.home
                    .join("Library")
                    .join("Application Support")
                    .join("Claude-3p"),
            ),
            Os::Windows => Some(env.local_app_data().join("Claude-3p")),
            Os::Linux => None,
        }
    }

    fn unsupported() -> PlanError {
        PlanError::Unsupported {
            client: NAME,
            reason: "Claude Desktop has no Linux build; tokenbuddy configures it on macOS and Windows only".into(),
        }
    }
}

fn id_is_ours(n: &CstNode) -> bool {
    str_member(n, "id").as_deref() == Some(DESKTOP_CONFIG_ID)
}

impl ClientInstaller for ClaudeDesktop {
    fn id(&self) -> &'static str {
        "claude-desktop"
    }

    fn name(&self) -> &'static str {
        NAME
    }

    fn detect(&self, env: &InstallEnv) -> Installed {
        let Some(dir) = Self::dir(env) else {
            return Installed::default();
        };
        let app = match env.os {
            Os::MacOs => [
                env.home.join("Applications/Claude.app"),
                PathBuf::from("/Applications/Claude.app"),
            ]
            .into_iter()
            .find(|p| p.is_dir()),
            Os::Windows => Some(
                env.local_app_data()
                    .join("AnthropicClaude")
                    .join("claude.exe"),
            )
            .filter(|p| p.is_file()),
            Os::Linux => None,
        };
        let first_party = dir.with_file_name("Claude");
        Installed {
            binary: app,
            config_dir_exists: dir.is_dir() || first_party.is_dir(),
        }
    }

    fn config_paths(&self, env: &InstallEnv) -> Vec<PathBuf> {
        let Some(dir) = Self::dir(env) else {
            return Vec::new();
        };
        let lib = dir.join("configLibrary");
        vec![dir.join(MAIN), lib.join(ENTRY), lib.join(META)]
    }

    fn pointer(&self, files: &Files) -> Option<Pointer> {
        let (main, entry, meta) = (
            files.named(MAIN).ok()?,
            files.named(ENTRY).ok()?,
            files.named(META).ok()?,
        );
        let get = |p: &PathBuf, key: &str| {
            JsonDoc::open(p, files.get(p))
                .ok()
                .and_then(|d| d.get_str(&[key]))
        };
        let ours = get(&main, "deploymentMode").as_deref() == Some("3p")
            && get(&meta, "appliedId").as_deref() == Some(DESKTOP_CONFIG_ID);
        ours.then_some(())?;
        let url = get(&entry, "inferenceGatewayBaseUrl")?;
        Some(Pointer::new(
            &url,
            get(&entry, "inferenceGatewayApiKey").as_deref(),
        ))
    }

    fn plan(
        &self,
        files: &Files,
        target: &Target,
        _opts: &Options,
    ) -> Result<Vec<FileChange>, PlanError> {
        if files.iter().next().is_none() {
            return Err(Self::unsupported());
        }
        target.check()?;
        let (main, entry, meta) = (files.named(MAIN)?, files.named(ENTRY)?, files.named(META)?);
        let restart = "; restart Claude Desktop to apply";
        let mut changes = Vec::new();

        let before = files.get(&main);
        let mut doc = JsonDoc::open(&main, before)?;
        doc.set(&["deploymentMode"], J::s("3p"))?;
        changes.extend(change(
            self.id(),
            &main,
            format!("set deploymentMode = \"3p\" (third-party inference){restart}"),
            before,
            Some(doc.into_text()),
            false,
        ));

        let before = files.get(&entry);
        let mut doc = JsonDoc::open(&entry, before)?;
        doc.set(&["inferenceProvider"], J::s("gateway"))?;
        doc.set(&["inferenceGatewayBaseUrl"], J::s(target.base()))?;
        doc.set(&["inferenceGatewayApiKey"], J::s(&target.token))?;
        doc.set(&["inferenceGatewayAuthScheme"], J::s("bearer"))?;
        let mut description = format!("tokenbuddy's gateway profile{restart}");
        if target.model.starts_with("claude-") {
            doc.set(&["inferenceModels"], J::Arr(vec![J::s(&target.model)]))?;
        } else {
            // Claude Desktop only offers claude-… ids; leave the list to it.
            doc.remove(&["inferenceModels"])?;
            description.push_str(&format!(
                " (`{}` is not a claude-… id, so no inferenceModels are set: pass --model claude-… to pick one)",
                target.model
            ));
        }
        changes.extend(change(
            self.id(),
            &entry,
            description,
            before,
            Some(doc.into_text()),
            true,
        ));

        let before = files.get(&meta);
        let mut doc = JsonDoc::open(&meta, before)?;
        doc.set(&["appliedId"], J::s(DESKTOP_CONFIG_ID))?;
        doc.upsert_element(
            &["entries"],
            id_is_ours,
            J::obj([("id", J::s(DESKTOP_CONFIG_ID)), ("name", J::s(PROVIDER_ID))]),
        )?;
        changes.extend(change(
            self.id(),
            &meta,
            format!("select tokenbuddy's profile (appliedId){restart}"),
            before,
            Some(doc.into_text()),
            false,
        ));
        Ok(changes)
    }

    fn plan_undo(&self, files: &Files, pristine: &Pristine) -> Result<Vec<FileChange>, PlanError> {
        if files.iter().next().is_none() {
            return Ok(Vec::new());
        }
        let (main, entry, meta) = (files.named(MAIN)?, files.named(ENTRY)?, files.named(META)?);
        let mut changes = Vec::new();
        // The profile file is entirely ours.
        changes.extend(undo_file(self.id(), &entry, files, pristine, |_, pf| {
            Ok(pf.and_then(|p| p.original.clone()))
        })?);
        let ours_applied = files
            .get(&meta)
            .and_then(|t| JsonDoc::open(&meta, Some(t)).ok())
            .and_then(|d| d.get_str(&["appliedId"]))
            .as_deref()
            == Some(DESKTOP_CONFIG_ID);
        changes.extend(undo_file(
            self.id(),
            &meta,
            files,
            pristine,
            |current, pf| {
                let b = JsonBackups::open(&meta, pf);
                let mut doc = JsonDoc::open(&meta, Some(current))?;
                if ours_applied {
                    b.restore_or_remove(&mut doc, &["appliedId"])?;
                }
                if doc.remove_elements(&["entries"], id_is_ours)? {
                    b.prune(&mut doc, &["entries"])?;
                }
                Ok(b.finish(doc))
            },
        )?);
        changes.extend(undo_file(
            self.id(),
            &main,
            files,
            pristine,
            |current, pf| {
                let b = JsonBackups::open(&main, pf);
                let mut doc = JsonDoc::open(&main, Some(current))?;
                let is_3p = doc.get_str(&["deploymentMode"]).as_deref() == Some("3p");
                if is_3p && b.still_ours(&doc, &["deploymentMode"], ours_applied) {
                    b.restore_or_remove(&mut doc, &["deploymentMode"])?;
                }
                Ok(b.finish(doc))
            },
        )?);
        Ok(changes)
    }
}
