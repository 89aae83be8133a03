//! The config edit `setup` makes, as a pure function of the file's text
//! and the plan: `[[providers]]` entries appended for new providers, the
//! focus models, the marketplace. Everything else in the file — comments,
//! keys, order, a provider the user already has (same id or same base
//! URL) — is kept byte for byte, so a re-run that adds nothing changes
//! nothing.

use std::path::PathBuf;

use tb_domain::{Protocol, ProviderKind};
use toml_edit::{Array, ArrayOfTables, DocumentMut, Item, Table, Value};

/// The first lines of a config file `setup` creates.
const HEADER: &str = "# tokenbuddy configuration, written by `tokenbuddyd setup`.\n\
# Edit freely: a re-run of setup keeps your changes, and `tokenbuddyd config show`\n\
# shows every setting with where its value came from.\n";

/// Where a new provider's key is read from (never the key itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum KeyRef {
    /// `api_key_env`: the variable.
    Env(String),
    /// `api_key_file`: the file holding the key.
    File(PathBuf),
}

/// A `[[providers]]` entry to add.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NewProvider {
    /// `id`.
    pub id: String,
    /// `kind`.
    pub kind: ProviderKind,
    /// `base_url`.
    pub base_url: String,
    /// `api_key_env` or `api_key_file`.
    pub key: KeyRef,
    /// `models`.
    pub models: Vec<String>,
    /// `protocols`, when not the kind's defaults.
    pub protocols: Option<Vec<Protocol>>,
}

/// The marketplace settings to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Marketplace {
    /// `registry.url`.
    pub registry_url: String,
    /// `purchase.session_budget_usd_micros`, when given.
    pub budget_usd_micros: Option<u64>,
}

/// The focus models and whether they replace what the file has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Focus {
    /// Chosen by the user (`--focus`, the numbered choice): always written.
    Chosen(Vec<String>),
    /// The default: written only where the file has no focus models.
    Default(Vec<String>),
}

/// Everything `setup` writes into the config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Plan {
    /// Providers to add (those already present are skipped by [`edit`]).
    pub providers: Vec<NewProvider>,
    /// `routing.focus_models`.
    pub focus: Focus,
    /// `registry.url`, `provider.mode`, the budget.
    pub marketplace: Option<Marketplace>,
}

/// A provider of the file: its id and base URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Present {
    /// `id`.
    pub id: String,
    /// `base_url`, without trailing slashes.
    pub base_url: String,
    /// `models`.
    pub models: Vec<String>,
}

/// A key setup writes has a shape it cannot edit.
fn shape(key: &str, found: &str, want: &str) -> anyhow::Error {
    anyhow::anyhow!(
        "{key} is {found}; setup writes it as {want}: change it by hand, or remove it and run setup again"
    )
}

/// The file is not TOML.
fn syntax(e: toml_edit::TomlError) -> anyhow::Error {
    anyhow::anyhow!("it is not valid TOML: {e}; fix it (or move it away) and run setup again")
}

/// The providers the file already has (none when it does not parse: the
/// edit then reports why).
pub(crate) fn present(existing: Option<&str>) -> Vec<Present> {
    let Some(doc) = existing.and_then(|t| t.parse::<DocumentMut>().ok()) else {
        return Vec::new();
    };
    let Some(tables) = doc.get("providers").and_then(Item::as_array_of_tables) else {
        return Vec::new();
    };
    let text = |t: &Table, k: &str| t.get(k).and_then(Item::as_str).unwrap_or("").to_string();
    tables
        .iter()
        .map(|t| Present {
            id: text(t, "id"),
            base_url: text(t, "base_url").trim_end_matches('/').to_string(),
            models: t
                .get("models")
                .and_then(Item::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(|v| v.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default(),
        })
        .collect()
}

/// Whether `p` is already in the file: same id or same base URL.
pub(crate) fn is_present(present: &[Present], id: &str, base_url: &str) -> bool {
    let url = base_url.trim_end_matches('/');
    present.iter().any(|p| p.id == id || p.base_url == url)
}

/// The file's text after the plan: `existing` (`None` = no file yet)
/// edited in place.
pub(crate) fn edit(existing: Option<&str>, plan: &Plan) -> anyhow::Result<String> {
    let mut doc: DocumentMut = existing.unwrap_or("").parse().map_err(syntax)?;
    set_focus(&mut doc, &plan.focus)?;
    if let Some(m) = &plan.marketplace {
        set_marketplace(&mut doc, m, !plan.providers.is_empty())?;
    }
    let before = present(Some(&doc.to_string()));
    let new: Vec<&NewProvider> = plan
        .providers
        .iter()
        .filter(|p| !is_present(&before, &p.id, &p.base_url))
        .collect();
    if !new.is_empty() {
        let tables = match doc
            .entry("providers")
            .or_insert(Item::ArrayOfTables(ArrayOfTables::new()))
        {
            Item::ArrayOfTables(t) => t,
            _ => {
                return Err(shape(
                    "providers",
                    "not a list of [[providers]] tables",
                    "[[providers]] tables",
                ));
            }
        };
        for p in new {
            tables.push(provider_table(p));
        }
    }
    Ok(match existing {
        Some(_) => doc.to_string(),
        None => format!("{HEADER}\n{doc}"),
    })
}

/// `[routing] focus_models`: chosen ones replace, the default only fills
/// an absent or empty list.
fn set_focus(doc: &mut DocumentMut, focus: &Focus) -> anyhow::Result<()> {
    let (models, replace) = match focus {
        Focus::Chosen(m) => (m, true),
        Focus::Default(m) => (m, false),
    };
    if models.is_empty() {
        return Ok(());
    }
    let routing = table(doc, "routing")?;
    let current: Option<Vec<String>> = routing.get("focus_models").map(|i| {
        i.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    });
    let keep = match &current {
        Some(now) => now == models || (!replace && !now.is_empty()),
        None => false,
    };
    if !keep {
        routing.insert(
            "focus_models",
            Item::Value(Value::Array(string_array(models))),
        );
    }
    Ok(())
}

/// `registry.url`, `provider.mode` (`both` with manual providers, else
/// `auto`; a mode already other than `manual` is kept) and the budget.
fn set_marketplace(
    doc: &mut DocumentMut,
    m: &Marketplace,
    adds_providers: bool,
) -> anyhow::Result<()> {
    let has_providers = adds_providers
        || doc
            .get("providers")
            .and_then(Item::as_array_of_tables)
            .is_some_and(|t| !t.is_empty());
    set_value(table(doc, "registry")?, "url", &m.registry_url);
    let provider = table(doc, "provider")?;
    let mode = provider
        .get("mode")
        .and_then(Item::as_str)
        .unwrap_or("manual");
    if mode == "manual" {
        set_value(
            provider,
            "mode",
            if has_providers { "both" } else { "auto" },
        );
    }
    if let Some(budget) = m.budget_usd_micros {
        let purchase = table(doc, "purchase")?;
        let now = purchase
            .get("session_budget_usd_micros")
            .and_then(Item::as_integer);
        let budget = i64::try_from(budget).unwrap_or(i64::MAX);
        if now != Some(budget) {
            purchase.insert("session_budget_usd_micros", toml_edit::value(budget));
        }
    }
    Ok(())
}

/// Sets a string, leaving the line (and its comment) alone when it
/// already holds that string.
fn set_value(t: &mut Table, key: &str, value: &str) {
    if t.get(key).and_then(Item::as_str) != Some(value) {
        t.insert(key, toml_edit::value(value));
    }
}

/// The table `[name]`, created when missing.
fn table<'d>(doc: &'d mut DocumentMut, name: &'static str) -> anyhow::Result<&'d mut Table> {
    doc.entry(name)
        .or_insert(Item::Table(Table::new()))
        .as_table_mut()
        .ok_or_else(|| shape(name, "not a table", "a [table]"))
}

fn string_array(items: &[String]) -> Array {
    let mut a: Array = items.iter().map(String::as_str).collect();
    if items.len() > 4 {
        // One per line: long model lists stay readable and diff well.
        for v in a.iter_mut() {
            v.decor_mut().set_prefix("\n    ");
        }
        a.set_trailing("\n");
        a.set_trailing_comma(true);
    }
    a
}

fn provider_table(p: &NewProvider) -> Table {
    let mut t = Table::new();
    t.insert("id", toml_edit::value(&p.id));
    let kind = match p.kind {
        ProviderKind::Openai => "openai",
        ProviderKind::Anthropic => "anthropic",
    };
    t.insert("kind", toml_edit::value(kind));
    t.insert("base_url", toml_edit::value(&p.base_url));
    match &p.key {
        KeyRef::Env(var) => t.insert("api_key_env", toml_edit::value(var)),
        KeyRef::File(path) => {
            t.insert("api_key_file", toml_edit::value(path.display().to_string()))
        }
    };
    if let Some(protocols) = &p.protocols {
        let names: Vec<String> = protocols.iter().map(|p| p.as_str().to_string()).collect();
        t.insert("protocols", Item::Value(Value::Array(string_array(&names))));
    }
    t.insert("models", Item::Value(Value::Array(string_array(&p.models))));
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    fn openai(models: &[&str]) -> NewProvider {
        NewProvider {
            id: "openai".into(),
            kind: ProviderKind::Openai,
            base_url: "http://127.0.0.1:9/v1".into(),
            key: KeyRef::Env("OPENAI_API_KEY".into()),
            models: models.iter().map(|m| (*m).to_string()).collect(),
            protocols: None,
        }
    }

    fn deepseek_from_file() -> NewProvider {
        NewProvider {
            id: "deepseek".into(),
            kind: ProviderKind::Openai,
            base_url: "https://api.deepseek.com/v1".into(),
            key: KeyRef::File(PathBuf::from("/data/keys/deepseek.key")),
            models: vec!["deepseek-chat".into()],
            protocols: Some(vec![Protocol::ChatCompletions]),
        }
    }

    fn plan(providers: Vec<NewProvider>, focus: Focus) -> Plan {
        Plan {
            providers,
            focus,
            marketplace: None,
        }
    }

    fn focus(m: &[&str]) -> Vec<String> {
        m.iter().map(|m| (*m).to_string()).collect()
    }

    #[test]
    fn a_new_file_is_valid_config_with_references_only() {
        let text = edit(
            None,
            &plan(
                vec![openai(&["gpt-5"]), deepseek_from_file()],
                Focus::Default(focus(&["gpt-5"])),
            ),
        )
        .unwrap();
        assert!(text.starts_with("# tokenbuddy configuration"), "{text}");
        let config = tb_config::Config::from_toml_str(&text).unwrap();
        config.validate().unwrap();
        assert_eq!(config.routing.focus_models, ["gpt-5"]);
        assert_eq!(
            config.providers[0].api_key_env.as_deref(),
            Some("OPENAI_API_KEY")
        );
        assert_eq!(
            config.providers[1].api_key_file,
            Some(PathBuf::from("/data/keys/deepseek.key"))
        );
        assert_eq!(
            config.providers[1].effective_protocols(),
            [Protocol::ChatCompletions]
        );
        // Re-running the same plan on the result changes nothing.
        let again = edit(
            Some(&text),
            &plan(
                vec![openai(&["gpt-5", "new-model"]), deepseek_from_file()],
                Focus::Default(focus(&["gpt-5"])),
            ),
        )
        .unwrap();
        assert_eq!(again, text);
    }

    #[test]
    fn the_users_comments_keys_and_changes_are_kept() {
        let mine = "# my config\n[proxy]\nport = 9999 # fixed port\n\n[routing]\nfocus_models = [\"my-model\"]\n\n[[providers]]\nid = \"mine\"\nkind = \"openai\"\nbase_url = \"http://127.0.0.1:9/v1/\"\napi_key_env = \"MY_KEY\"\nmodels = [\"my-model\"] # by hand\n";
        let text = edit(
            Some(mine),
            &plan(
                vec![openai(&["gpt-5"]), deepseek_from_file()],
                Focus::Default(focus(&["gpt-5"])),
            ),
        )
        .unwrap();
        assert!(text.starts_with(mine), "the user's part changed:\n{text}");
        assert!(
            !text.contains("id = \"openai\""),
            "same base URL as `mine`: kept as the user has it"
        );
        assert!(text.contains("id = \"deepseek\""));
        assert!(text.contains("focus_models = [\"my-model\"]"));
        let chosen = edit(
            Some(mine),
            &plan(vec![], Focus::Chosen(focus(&["deepseek-chat"]))),
        )
        .unwrap();
        assert!(
            chosen.contains("focus_models = [\"deepseek-chat\"]"),
            "{chosen}"
        );
        assert!(chosen.contains("port = 9999 # fixed port"));
    }

    #[test]
    fn the_marketplace_sets_the_mode_and_budget() {
        let mut p = plan(vec![openai(&["gpt-5"])], Focus::Default(vec![]));
        p.marketplace = Some(Marketplace {
            registry_url: "https://registry.example/doc.json".into(),
            budget_usd_micros: Some(2_500_000),
        });
        let text = edit(None, &p).unwrap();
        let config = tb_config::Config::from_toml_str(&text).unwrap();
        config.validate().unwrap();
        assert_eq!(config.provider.mode, tb_config::ProviderMode::Both);
        assert_eq!(config.purchase.session_budget_usd_micros, 2_500_000);
        p.providers.clear();
        let alone = edit(None, &p).unwrap();
        let config = tb_config::Config::from_toml_str(&alone).unwrap();
        assert_eq!(config.provider.mode, tb_config::ProviderMode::Auto);
        assert_eq!(edit(Some(&alone), &p).unwrap(), alone);
    }

    #[test]
    fn long_model_lists_are_one_per_line() {
        let models: Vec<String> = (0..6).map(|i| format!("m{i}")).collect();
        let refs: Vec<&str> = models.iter().map(String::as_str).collect();
        let text = edit(None, &plan(vec![openai(&refs)], Focus::Default(vec![]))).unwrap();
        assert!(
            text.contains("models = [\n    \"m0\",\n    \"m1\","),
            "{text}"
        );
        let config = tb_config::Config::from_toml_str(&text).unwrap();
        assert_eq!(config.providers[0].models, models);
    }

    #[test]
    fn files_setup_cannot_edit_say_why() {
        let err = edit(Some("[proxy\n"), &plan(vec![], Focus::Default(vec![]))).unwrap_err();
        assert!(err.to_string().contains("not valid TOML"), "{err}");
        let err = edit(
            Some("routing = 3\n"),
            &plan(vec![], Focus::Default(focus(&["m"]))),
        )
        .unwrap_err();
        assert!(
            err.to_string().starts_with("routing is not a table"),
            "{err}"
        );
        let err = edit(
            Some("providers = []\n"),
            &plan(vec![openai(&["m"])], Focus::Default(vec![])),
        )
        .unwrap_err();
        assert!(
            err.to_string().starts_with("providers is not a list"),
            "{err}"
        );
    }
}
