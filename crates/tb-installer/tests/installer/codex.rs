use tb_installer::{InstallError, PlanError};

use crate::support::*;

const CONFIG: &str = ".codex/config.toml";

const USER: &str = r#"# Codex configuration
model = "o3"  # my favourite
approval_policy = "on-request"
notify = ["notify-send", "Codex"]

[projects."/home/me/src/app"]
trust_level = "trusted"

# MCP servers
[mcp_servers.docs]
command = "npx"
args = ["-y", "@acme/docs-mcp"]

[model_providers.ollama]
name = "Ollama"
base_url = "http://localhost:11434/v1"

[profiles.fast]
model = "gpt-5-mini"
"#;

fn golden_user() -> String {
    format!(
        r#"# Codex configuration
model = "gpt-5"  # my favourite
approval_policy = "on-request"
notify = ["notify-send", "Codex"]
model_provider = "tokenbuddy"

[projects."/home/me/src/app"]
trust_level = "trusted"

# MCP servers
[mcp_servers.docs]
command = "npx"
args = ["-y", "@acme/docs-mcp"]

[model_providers.ollama]
name = "Ollama"
base_url = "http://localhost:11434/v1"

[model_providers.tokenbuddy]
name = "tokenbuddy"
base_url = "http://127.0.0.1:8787/v1"
wire_api = "responses"
experimental_bearer_token = "{TOKEN}"

[profiles.fast]
model = "gpt-5-mini"
"#
    )
}

#[test]
fn missing_file_is_created() {
    let h = Home::linux();
    h.install("codex", &target("gpt-5"), &opts());
    assert_eq!(
        h.read(CONFIG).unwrap(),
        format!(
            "model_provider = \"tokenbuddy\"\nmodel = \"gpt-5\"\n\n[model_providers.tokenbuddy]\nname = \"tokenbuddy\"\nbase_url = \"http://127.0.0.1:8787/v1\"\nwire_api = \"responses\"\nexperimental_bearer_token = \"{TOKEN}\"\n"
        )
    );
    assert!(h.read(".codex/auth.json").is_none());
    h.undo("codex");
    assert!(h.read(CONFIG).is_none());
}

#[test]
fn comments_order_and_other_tables_are_kept() {
    let h = Home::linux();
    h.write(CONFIG, USER);
    h.write(".codex/auth.json", "{\"OPENAI_API_KEY\": \"sk-user\"}");
    h.install("codex", &target("gpt-5"), &opts());
    assert_eq!(h.read(CONFIG).unwrap(), golden_user());
    assert_eq!(
        h.read(".codex/auth.json").unwrap(),
        "{\"OPENAI_API_KEY\": \"sk-user\"}"
    );
}

#[test]
fn round_trip_restores_original_bytes() {
    let h = Home::linux();
    h.write(CONFIG, USER);
    h.round_trip("codex", &target("gpt-5"), &opts(), &[CONFIG]);
}

#[test]
fn already_configured_plans_nothing() {
    let h = Home::linux();
    h.write(CONFIG, &golden_user());
    let p = h.preview("codex", &target("gpt-5"), &opts()).unwrap();
    assert!(p.changes.is_empty());
}

#[test]
fn codex_home_is_respected() {
    let h = Home::linux().with_var("CODEX_HOME", "codexhome");
    h.install("codex", &target("gpt-5"), &opts());
    assert!(h.read("codexhome/config.toml").is_some());
    assert!(h.read(CONFIG).is_none());
}

#[test]
fn existing_provider_table_is_updated_in_place() {
    let h = Home::linux();
    let old = "model_provider = \"tokenbuddy\"\nmodel = \"old\"\n\n[model_providers.tokenbuddy]\nname = \"tokenbuddy\"\nbase_url = \"http://127.0.0.1:1111/v1\" # old port\nwire_api = \"chat\"\nexperimental_bearer_token = \"old-token-value-0000\"\nrequest_max_retries = 4\n";
    let changes = plan("codex", &h.env, &[Some(old)], &target("gpt-5"), &opts()).unwrap();
    assert_eq!(
        after_of(&changes, "config.toml").unwrap(),
        format!(
            "model_provider = \"tokenbuddy\"\nmodel = \"gpt-5\"\n\n[model_providers.tokenbuddy]\nname = \"tokenbuddy\"\nbase_url = \"http://127.0.0.1:8787/v1\" # old port\nwire_api = \"responses\"\nexperimental_bearer_token = \"{TOKEN}\"\nrequest_max_retries = 4\n"
        )
    );
}

#[test]
fn undo_without_backup_removes_only_our_keys() {
    let h = Home::linux();
    let changes = plan_undo_bare("codex", &h.env, &[Some(&golden_user())]);
    // `model` is restored only from a backup; without one it is removed.
    assert_eq!(
        after_of(&changes, "config.toml").unwrap(),
        USER.replace("model = \"o3\"  # my favourite\n", "")
    );
}

#[test]
fn hostile_content_is_an_error_naming_the_file() {
    let h = Home::linux();
    for (bad, what) in [
        ("model = \"x\"\n[table\n", "not valid TOML"),
        ("model_providers = \"oops\"\n", "model_providers"),
        (
            "[model_providers]\ntokenbuddy = 3\n",
            "model_providers.tokenbuddy",
        ),
        ("[model]\nname = 1\n", "model"),
    ] {
        h.write(CONFIG, bad);
        let err = h.preview("codex", &target("m"), &opts()).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("config.toml") && msg.contains(what), "{msg}");
        assert!(matches!(
            err,
            InstallError::Plan {
                source: PlanError::Malformed { .. } | PlanError::WrongType { .. },
                ..
            }
        ));
        assert_eq!(h.read(CONFIG).unwrap(), bad);
    }
}

#[test]
fn inline_provider_tables_are_edited_inline() {
    let h = Home::linux();
    let text = "model_providers = { ollama = { name = \"Ollama\" } }\n";
    let changes = plan("codex", &h.env, &[Some(text)], &target("m"), &opts()).unwrap();
    let after = after_of(&changes, "config.toml").unwrap();
    assert!(after.contains("ollama = { name = \"Ollama\" }"), "{after}");
    assert!(after.contains("tokenbuddy = {"), "{after}");
    assert!(!after.contains("[model_providers"), "{after}");
}

#[test]
fn a_byte_order_mark_is_handled() {
    let h = Home::linux();
    let text = "\u{feff}model = \"o3\"\n";
    match plan("codex", &h.env, &[Some(text)], &target("gpt-5"), &opts()) {
        Ok(changes) => assert!(
            after_of(&changes, "config.toml")
                .unwrap()
                .starts_with('\u{feff}')
        ),
        Err(e) => assert!(e.to_string().contains("config.toml"), "{e}"),
    }
}
