use crate::support::*;

const CONFIG: &str = ".openclaw/openclaw.json";

const USER: &str = r#"{
  "gateway": { "port": 18789, "auth": { "token": "gw-token-abcdefgh1234" } },
  "models": {
    "providers": {
      "ollama": {
        "baseUrl": "http://127.0.0.1:11434/v1",
        "api": "openai-completions",
        "models": [{ "id": "llama3.3", "name": "Llama 3.3" }]
      }
    }
  },
  "agents": {
    "defaults": {
      "model": "ollama/llama3.3",
      "workspace": "~/clawd"
    }
  }
}
"#;

fn our_provider(model_entries: &str) -> String {
    format!(
        "\"tokenbuddy\": {{\n        \"baseUrl\": \"http://127.0.0.1:8787/v1\",\n        \"apiKey\": \"{TOKEN}\",\n        \"auth\": \"api-key\",\n        \"api\": \"openai-completions\",\n        \"models\": [\n{model_entries}\n        ]\n      }}"
    )
}

const ENTRY: &str = "          {\n            \"id\": \"gpt-5\",\n            \"name\": \"gpt-5\",\n            \"input\": [\n              \"text\",\n              \"image\"\n            ]\n          }";

#[test]
fn legacy_string_model_is_replaced_and_other_providers_kept() {
    let h = Home::linux();
    h.write(CONFIG, USER);
    h.install("openclaw", &target("gpt-5"), &opts());
    let expected = USER
        .replace(
            "\"Llama 3.3\" }]\n      }\n",
            &format!(
                "\"Llama 3.3\" }}]\n      }},\n      {}\n",
                our_provider(ENTRY)
            ),
        )
        .replace("\"ollama/llama3.3\"", "\"tokenbuddy/gpt-5\"");
    assert_eq!(h.read(CONFIG).unwrap(), expected);
}

#[test]
fn object_model_form_keeps_its_shape() {
    let h = Home::linux();
    let text = "{\n  \"agents\": {\n    \"defaults\": {\n      \"model\": { \"primary\": \"ollama/llama3.3\", \"fallbacks\": [\"ollama/qwen3\"] }\n    }\n  }\n}\n";
    let changes = plan("openclaw", &h.env, &[Some(text)], &target("gpt-5"), &opts()).unwrap();
    let after = after_of(&changes, "openclaw.json").unwrap();
    assert!(
        after.contains(
            "\"model\": { \"primary\": \"tokenbuddy/gpt-5\", \"fallbacks\": [\"ollama/qwen3\"] }"
        ),
        "{after}"
    );
    let undo = plan_undo_bare("openclaw", &h.env, &[Some(after)]);
    let back = after_of(&undo, "openclaw.json").unwrap();
    assert!(
        back.contains("\"model\": { \"fallbacks\": [\"ollama/qwen3\"] }"),
        "{back}"
    );
    assert!(!back.contains("tokenbuddy"), "{back}");
}

#[test]
fn only_our_model_entry_is_replaced() {
    let h = Home::linux();
    let text = "{\n  \"models\": {\n    \"providers\": {\n      \"tokenbuddy\": {\n        \"baseUrl\": \"http://127.0.0.1:1/v1\",\n        \"apiKey\": \"old\",\n        \"auth\": \"api-key\",\n        \"api\": \"openai-completions\",\n        \"models\": [\n          { \"id\": \"other\", \"name\": \"Other\" },\n          { \"id\": \"gpt-5\", \"name\": \"stale\" }\n        ]\n      }\n    }\n  }\n}\n".to_string();
    let changes = plan(
        "openclaw",
        &h.env,
        &[Some(&text)],
        &target("gpt-5"),
        &opts(),
    )
    .unwrap();
    let after = after_of(&changes, "openclaw.json").unwrap();
    assert!(after.contains("{ \"id\": \"other\", \"name\": \"Other\" },\n          {\n            \"id\": \"gpt-5\","), "{after}");
    assert!(
        !after.contains("stale") && !after.contains("\"old\""),
        "{after}"
    );
    // No key outside OpenClaw's schema is written.
    for key in ["\"npm\"", "\"options\"", "\"baseURL\"", "\"provider\""] {
        assert!(!after.contains(key), "{key} in {after}");
    }
}

#[test]
fn missing_file_is_created_and_round_trips() {
    let h = Home::linux();
    h.install("openclaw", &target("gpt-5"), &opts());
    let expected = format!(
        "{{\n  \"models\": {{\n    \"providers\": {{\n      {}\n    }}\n  }},\n  \"agents\": {{\n    \"defaults\": {{\n      \"model\": \"tokenbuddy/gpt-5\"\n    }}\n  }}\n}}\n",
        our_provider(ENTRY)
    );
    assert_eq!(h.read(CONFIG).unwrap(), expected);
    h.undo("openclaw");
    assert!(h.read(CONFIG).is_none());
}

#[test]
fn round_trip_restores_original_bytes() {
    let h = Home::linux();
    h.write(CONFIG, USER);
    h.round_trip("openclaw", &target("gpt-5"), &opts(), &[CONFIG]);
}

#[test]
fn undo_without_backup_removes_our_provider_and_model() {
    let h = Home::linux();
    let changes = plan("openclaw", &h.env, &[Some(USER)], &target("gpt-5"), &opts()).unwrap();
    let installed = after_of(&changes, "openclaw.json").unwrap().to_owned();
    let undo = plan_undo_bare("openclaw", &h.env, &[Some(&installed)]);
    // Without a backup the replaced model cannot be known: it is removed.
    assert_eq!(
        after_of(&undo, "openclaw.json").unwrap(),
        USER.replace("      \"model\": \"ollama/llama3.3\",\n", "")
    );
}

#[test]
fn config_path_and_state_dir_vars() {
    let h = Home::linux().with_var("OPENCLAW_CONFIG_PATH", "elsewhere/claw.json");
    h.install("openclaw", &target("gpt-5"), &opts());
    assert!(h.read("elsewhere/claw.json").is_some());
    let h = Home::linux().with_var("OPENCLAW_STATE_DIR", "state");
    h.install("openclaw", &target("gpt-5"), &opts());
    assert!(h.read("state/openclaw.json").is_some());
}

#[test]
fn already_configured_plans_nothing() {
    let h = Home::linux();
    h.write(CONFIG, USER);
    h.install("openclaw", &target("gpt-5"), &opts());
    assert!(
        h.preview("openclaw", &target("gpt-5"), &opts())
            .unwrap()
            .changes
            .is_empty()
    );
}

#[test]
fn hostile_content_is_an_error_naming_the_file() {
    let h = Home::linux();
    for (bad, what) in [
        ("[{\"models\": {}}]", "array"),
        ("{\"models\": {\"providers\": \"x\"}}", "models.providers"),
        (
            "{\"agents\": {\"defaults\": {\"model\": 7}}}",
            "agents.defaults.model",
        ),
    ] {
        h.write(CONFIG, bad);
        let msg = h
            .preview("openclaw", &target("m"), &opts())
            .unwrap_err()
            .to_string();
        assert!(msg.contains("openclaw.json") && msg.contains(what), "{msg}");
        assert_eq!(h.read(CONFIG).unwrap(), bad);
    }
}
