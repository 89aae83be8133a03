//! One module per client, plus helpers they share.

pub(crate) mod claude_code;
pub(crate) mod claude_desktop;
pub(crate) mod codex;
pub(crate) mod hermes;
pub(crate) mod openclaw;
pub(crate) mod opencode;

use std::path::Path;

use crate::contract::{PlanError, PristineFile};
use crate::jsonc::{J, JsonDoc};

/// The provider id tokenbuddy owns in every client.
pub const PROVIDER_ID: &str = "tokenbuddy";
/// The prefix of model ids that point at tokenbuddy's provider.
pub const MODEL_PREFIX: &str = "tokenbuddy/";

/// The backups of one file, opened as JSON where they parse.
pub(crate) struct JsonBackups {
    /// The file before tokenbuddy (`None`: did not exist or unknown).
    pub original: Option<JsonDoc>,
    /// What tokenbuddy last wrote.
    pub installed: Option<JsonDoc>,
    /// tokenbuddy created the file.
    pub created: bool,
}

impl JsonBackups {
    pub(crate) fn open(path: &Path, pf: Option<&PristineFile>) -> Self {
        let open = |t: Option<&String>| t.and_then(|t| JsonDoc::open(path, Some(t)).ok());
        Self {
            original: open(pf.and_then(|p| p.original.as_ref())),
            installed: open(pf.and_then(|p| p.installed.as_ref())),
            created: pf.is_some_and(|p| p.original.is_none()),
        }
    }

    /// Whether `path` in `doc` still holds what tokenbuddy wrote; `fallback`
    /// decides when there is no record of it.
    pub(crate) fn still_ours(&self, doc: &JsonDoc, path: &[&str], fallback: bool) -> bool {
        let Some(cur) = doc.get(path) else {
            return false;
        };
        match &self.installed {
            Some(inst) => inst
                .get(path)
                .is_some_and(|n| inst.raw(&n) == doc.raw(&cur)),
            None => fallback,
        }
    }

    /// Puts back the original value at `path`, or removes it (and the
    /// parents that did not exist originally, once empty).
    pub(crate) fn restore_or_remove(
        &self,
        doc: &mut JsonDoc,
        path: &[&str],
    ) -> Result<(), PlanError> {
        if let Some(orig) = &self.original
            && let Some(n) = orig.get(path)
        {
            return doc.set(path, J::Raw(orig.raw(&n)));
        }
        doc.remove(path)?;
        self.prune(doc, &path[..path.len().saturating_sub(1)])
    }

    /// Removes the (empty) objects along `path` that the original lacked.
    pub(crate) fn prune(&self, doc: &mut JsonDoc, path: &[&str]) -> Result<(), PlanError> {
        for n in (1..=path.len()).rev() {
            let p = &path[..n];
            let had = self.original.as_ref().is_some_and(|o| o.get(p).is_some());
            if had || !doc.remove_if_empty(p)? {
                break;
            }
        }
        Ok(())
    }

    /// The finished text, or `None` (delete) when tokenbuddy created the file
    /// and nothing else is left in it.
    pub(crate) fn finish(&self, doc: JsonDoc) -> Option<String> {
        if self.created && doc.text().trim() == "{}" {
            return None;
        }
        // A blank file holds nothing of tokenbuddy's: undo leaves it as is.
        if let Some(blank) = doc.untouched_blank() {
            return Some(blank.to_owned());
        }
        Some(doc.into_text())
    }
}
