//! Codex CLI: `config.toml`, edited with a format-preserving TOML editor.

use std::path::{Path, PathBuf};

use toml_edit::{DocumentMut, InlineTable, Item, Table, TableLike, Value};

use super::PROVIDER_ID;
use crate::contract::{
    ClientInstaller, FileChange, Files, Installed, Options, PlanError, Pointer, Pristine, Target,
    change, undo_file,
};
use crate::env::InstallEnv;

const FILE: &str = "config.toml";

/// Codex CLI (`codex`). Never touches `auth.json`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Codex;

impl Codex {
    fn dir(env: &InstallEnv) -> PathBuf {
        env.var_path("CODEX_HOME")
            .unwrap_or_else(|| env.home.join(".codex"))
    }
}

const BOM: char = '\u{feff}';

/// The byte-order mark toml_edit would drop, to put back on output.
fn bom_of(text: Option<&str>) -> &'static str {
    if text.is_some_and(|t| t.starts_with(BOM)) {
        "\u{feff}"
    } else {
        ""
    }
}

fn parse(path: &Path, text: Option<&str>) -> Result<DocumentMut, PlanError> {
    let text = text.unwrap_or("");
    text.strip_prefix(BOM)
        .unwrap_or(text)
        .parse::<DocumentMut>()
        .map_err(|e| PlanError::Malformed {
            path: path.to_path_buf(),
            reason: format!("not valid TOML: {}", e.to_string().trim_end()),
        })
}

fn type_name(item: &Item) -> String {
    match item {
        Item::None => "nothing".into(),
        Item::Table(_) => "a table".into(),
        Item::ArrayOfTables(_) => "an array of tables".into(),
        Item::Value(v) => format!("a {}", v.type_name()),
    }
}

/// Sets `key` to the string `v`, keeping the key's position and comments
/// and the value's trailing comment.
fn set_str(
    t: &mut dyn TableLike,
    key: &str,
    v: &str,
    path: &Path,
    dotted: &str,
) -> Result<(), PlanError> {
    match t.get_mut(key) {
        Some(Item::Value(val)) => {
            if val.as_str() != Some(v) {
                let decor = val.decor().clone();
                *val = Value::from(v);
                *val.decor_mut() = decor;
            }
        }
        Some(other) if !other.is_none() => {
            return Err(PlanError::WrongType {
                path: path.to_path_buf(),
                key: dotted.to_owned(),
                expected: "a string",
                found: type_name(other),
            });
        }
        _ => {
            t.insert(key, toml_edit::value(v));
        }
    }
    Ok(())
}

fn provider_fields(target: &Target) -> [(&'static str, String); 4] {
    [
        ("name", "tokenbuddy".to_owned()),
        ("base_url", target.v1()),
        ("wire_api", "responses".to_owned()),
        ("experimental_bearer_token", target.token.clone()),
    ]
}

fn root_str<'a>(doc: &'a DocumentMut, key: &str) -> Option<&'a str> {
    doc.get(key).and_then(Item::as_str)
}

fn provider(doc: &DocumentMut) -> Option<&dyn TableLike> {
    doc.get("model_providers")?
        .as_table_like()?
        .get(PROVIDER_ID)?
        .as_table_like()
}

/// Removes a root key; comment lines above it move to the next root key
/// (or the top of the file) instead of vanishing with it.
fn remove_keeping_comments(doc: &mut DocumentMut, key: &str) {
    let prefix = doc
        .key(key)
        .and_then(|k| k.leaf_decor().prefix())
        .and_then(|p| p.as_str())
        .filter(|p| !p.trim().is_empty())
        .map(str::to_owned);
    let keys: Vec<String> = doc
        .iter()
        .filter(|(_, v)| v.is_value())
        .map(|(k, _)| k.to_owned())
        .collect();
    let next = keys
        .iter()
        .skip_while(|k| k.as_str() != key)
        .nth(1)
        .cloned();
    doc.remove(key);
    let Some(prefix) = prefix else { return };
    let decor = match next.as_deref().and_then(|n| doc.key_mut(n)) {
        Some(mut k) => {
            let d = k.leaf_decor_mut();
            let old = d.prefix().and_then(|p| p.as_str()).unwrap_or("").to_owned();
            d.set_prefix(format!("{prefix}{old}"));
            return;
        }
        None => doc.decor_mut(),
    };
    let old = decor
        .prefix()
        .and_then(|p| p.as_str())
        .unwrap_or("")
        .to_owned();
    decor.set_prefix(format!("{old}{prefix}"));
}

impl ClientInstaller for Codex {
    fn id(&self) -> &'static str {
        "codex"
    }

    fn name(&self) -> &'static str {
        "Codex CLI"
    }

    fn detect(&self, env: &InstallEnv) -> Installed {
        Installed {
            binary: env.find_binary("codex"),
            config_dir_exists: Self::dir(env).is_dir(),
        }
    }

    fn config_paths(&self, env: &InstallEnv) -> Vec<PathBuf> {
        vec![Self::dir(env).join(FILE)]
    }

    fn pointer(&self, files: &Files) -> Option<Pointer> {
        let path = files.named(FILE).ok()?;
        let doc = parse(&path, files.get(&path)).ok()?;
        if root_str(&doc, "model_provider") != Some(PROVIDER_ID) {
            return None;
        }
        let provider = provider(&doc)?;
        let url = provider.get("base_url").and_then(Item::as_str)?;
        let token = provider
            .get("experimental_bearer_token")
            .and_then(Item::as_str);
        Some(Pointer::new(url, token))
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
        let mut doc = parse(&path, before)?;

        // Root keys: toml_edit prints the root table's keys before every
        // table, so new ones land after the existing root keys.
        set_str(
            doc.as_table_mut(),
            "model_provider",
            PROVIDER_ID,
            &path,
            "model_provider",
        )?;
        set_str(doc.as_table_mut(), "model", &target.model, &path, "model")?;

        if doc.get("model_providers").is_none() {
            let mut t = Table::new();
            t.set_implicit(true);
            doc.insert("model_providers", Item::Table(t));
        }
        let wrong = |key: &str, item: &Item| PlanError::WrongType {
            path: path.clone(),
            key: key.to_owned(),
            expected: "a table",
            found: type_name(item),
        };
        let providers_item =
            doc.get_mut("model_providers")
                .ok_or_else(|| PlanError::Malformed {
                    path: path.clone(),
                    reason: "internal error: model_providers vanished".into(),
                })?;
        let providers_is_inline = providers_item.is_inline_table();
        let Some(providers) = providers_item.as_table_like_mut() else {
            return Err(wrong("model_providers", providers_item));
        };
        match providers.get_mut(PROVIDER_ID) {
            None => {
                if providers_is_inline {
                    let mut t = InlineTable::new();
                    for (k, v) in provider_fields(target) {
                        t.insert(k, Value::from(v));
                    }
                    providers.insert(PROVIDER_ID, Item::Value(Value::InlineTable(t)));
                } else {
                    let mut t = Table::new();
                    for (k, v) in provider_fields(target) {
                        t.insert(k, toml_edit::value(v));
                    }
                    providers.insert(PROVIDER_ID, Item::Table(t));
                }
            }
            Some(item) => {
                let key = format!("model_providers.{PROVIDER_ID}");
                let found = type_name(item);
                let Some(t) = item.as_table_like_mut() else {
                    return Err(PlanError::WrongType {
                        path: path.clone(),
                        key,
                        expected: "a table",
                        found,
                    });
                };
                for (k, v) in provider_fields(target) {
                    set_str(t, k, &v, &path, &format!("{key}.{k}"))?;
                }
            }
        }

        Ok(change(
            self.id(),
            &path,
            "set model_provider and model; add [model_providers.tokenbuddy] (wire_api = \"responses\")",
            before,
            Some(format!("{}{doc}", bom_of(before))),
            true,
        )
        .into_iter()
        .collect())
    }

    fn plan_undo(&self, files: &Files, pristine: &Pristine) -> Result<Vec<FileChange>, PlanError> {
        let path = files.named(FILE)?;
        let c = undo_file(self.id(), &path, files, pristine, |current, pf| {
            let mut doc = parse(&path, Some(current))?;
            let original = pf
                .and_then(|p| p.original.as_deref())
                .and_then(|t| parse(&path, Some(t)).ok());
            let installed = pf
                .and_then(|p| p.installed.as_deref())
                .and_then(|t| parse(&path, Some(t)).ok());
            let was_ours = root_str(&doc, "model_provider") == Some(PROVIDER_ID);

            // Our provider table.
            if let Some(providers) = doc
                .get_mut("model_providers")
                .and_then(Item::as_table_like_mut)
            {
                providers.remove(PROVIDER_ID);
                let empty = providers.is_empty();
                let had = original
                    .as_ref()
                    .is_some_and(|o| o.get("model_providers").is_some());
                if empty && !had {
                    doc.remove("model_providers");
                }
            }
            // Root keys: put back what was there, if they still hold ours.
            for key in ["model_provider", "model"] {
                let Some(cur) = doc.get(key).and_then(Item::as_str).map(str::to_owned) else {
                    continue;
                };
                let ours = match &installed {
                    Some(i) => i.get(key).and_then(Item::as_str) == Some(cur.as_str()),
                    None => was_ours,
                } && (key != "model_provider" || was_ours);
                if !ours {
                    continue;
                }
                match original.as_ref().and_then(|o| o.get(key)) {
                    Some(orig @ Item::Value(_)) => {
                        if let Some(item) = doc.get_mut(key) {
                            *item = orig.clone();
                        }
                    }
                    _ => remove_keeping_comments(&mut doc, key),
                }
            }
            let text = format!("{}{doc}", bom_of(Some(current)));
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
