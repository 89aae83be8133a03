use tb_installer::{InstallError, PlanError};

use crate::support::*;

const SETTINGS: &str = ".claude/settings.json";
const GLOBAL: &str = ".claude.json";

/// A real-looking settings.json: permissions, hooks, env, a comment.
const USER_SETTINGS: &str = r#"{
  "$schema": "https://json.schemastore.org/claude-code-settings.json",
  "permissions": {
    "allow": ["Bash(npm run test:*)", "Read(~/.zshrc)"],
    "deny": ["Read(./.env)"]
  },
  "env": {
    "DISABLE_TELEMETRY": "1" // keep this
  },
  "hooks": {
    "PostToolUse": [
      {
        "matcher": "Edit|Write",
        "hooks": [{ "type": "command", "command": "prettier --write \"$CLAUDE_FILE_PATHS\"" }]
      }
    ]
  },
  "model": "opus"
}
"#;

const USER_GLOBAL: &str = "{\n  \"numStartups\": 42,\n  \"oauthAccount\": {\n    \"emailAddress\": \"me@example.com\"\n  },\n  \"projects\": {\n    \"/home/me/src\": {\n      \"allowedTools\": []\n    }\n  }\n}";

fn golden_settings() -> String {
    format!(
        r#"{{
  "$schema": "https://json.schemastore.org/claude-code-settings.json",
  "permissions": {{
    "allow": ["Bash(npm run test:*)", "Read(~/.zshrc)"],
    "deny": ["Read(./.env)"]
  }},
  "env": {{
    "DISABLE_TELEMETRY": "1", // keep this
    "ANTHROPIC_BASE_URL": "http://127.0.0.1:8787",
    "ANTHROPIC_AUTH_TOKEN": "{TOKEN}",
    "ANTHROPIC_MODEL": "claude-sonnet-4-5"
  }},
  "hooks": {{
    "PostToolUse": [
      {{
        "matcher": "Edit|Write",
        "hooks": [{{ "type": "command", "command": "prettier --write \"$CLAUDE_FILE_PATHS\"" }}]
      }}
    ]
  }},
  "model": "opus"
}}
"#
    )
}

#[test]
fn missing_files_are_created() {
    let h = Home::linux();
    let applied = h.install("claude-code", &target("claude-sonnet-4-5"), &opts());
    assert_eq!(applied.files.len(), 2);
    assert_eq!(
        h.read(SETTINGS).unwrap(),
        format!(
            "{{\n  \"env\": {{\n    \"ANTHROPIC_BASE_URL\": \"http://127.0.0.1:8787\",\n    \"ANTHROPIC_AUTH_TOKEN\": \"{TOKEN}\",\n    \"ANTHROPIC_MODEL\": \"claude-sonnet-4-5\"\n  }}\n}}\n"
        )
    );
    assert_eq!(
        h.read(GLOBAL).unwrap(),
        "{\n  \"hasCompletedOnboarding\": true\n}\n"
    );
    h.undo("claude-code");
    assert_eq!(h.read(SETTINGS), None);
    assert_eq!(h.read(GLOBAL), None);
}

#[test]
fn unrelated_keys_hooks_and_comments_are_kept_exactly() {
    let h = Home::linux();
    h.write(SETTINGS, USER_SETTINGS);
    h.write(GLOBAL, USER_GLOBAL);
    h.install("claude-code", &target("claude-sonnet-4-5"), &opts());
    assert_eq!(h.read(SETTINGS).unwrap(), golden_settings());
    assert_eq!(
        h.read(GLOBAL).unwrap(),
        "{\n  \"numStartups\": 42,\n  \"oauthAccount\": {\n    \"emailAddress\": \"me@example.com\"\n  },\n  \"projects\": {\n    \"/home/me/src\": {\n      \"allowedTools\": []\n    }\n  },\n  \"hasCompletedOnboarding\": true\n}"
    );
}

#[test]
fn round_trip_restores_original_bytes() {
    let h = Home::linux();
    h.write(SETTINGS, USER_SETTINGS);
    h.write(GLOBAL, USER_GLOBAL);
    h.round_trip(
        "claude-code",
        &target("claude-sonnet-4-5"),
        &opts(),
        &[SETTINGS, GLOBAL],
    );
}

#[test]
fn already_configured_plans_nothing() {
    let h = Home::linux();
    h.write(SETTINGS, &golden_settings());
    h.write(GLOBAL, "{\"hasCompletedOnboarding\": true}");
    let p = h
        .preview("claude-code", &target("claude-sonnet-4-5"), &opts())
        .unwrap();
    assert!(p.changes.is_empty(), "{:?}", p.changes);
    assert!(p.diff.is_empty());
}

#[test]
fn claude_config_dir_moves_both_files() {
    let h = Home::linux().with_var("CLAUDE_CONFIG_DIR", "alt");
    h.install("claude-code", &target("m"), &opts());
    assert!(h.read("alt/settings.json").is_some());
    assert!(h.read("alt/.claude.json").is_some());
    assert!(h.read(SETTINGS).is_none());
}

const WITH_API_KEY: &str = "{\n  \"env\": {\n    \"ANTHROPIC_API_KEY\": \"sk-ant-api03-usersownkey-XYZW\",\n    \"FOO\": \"bar\"\n  }\n}\n";

#[test]
fn api_key_conflict_stops_without_force() {
    let h = Home::linux();
    h.write(SETTINGS, WITH_API_KEY);
    let err = h.preview("claude-code", &target("m"), &opts()).unwrap_err();
    let InstallError::Plan {
        source: PlanError::Conflict { path, message },
        ..
    } = &err
    else {
        panic!("{err:?}")
    };
    assert_eq!(path, &h.path(SETTINGS));
    assert!(
        message.contains("ANTHROPIC_API_KEY") && message.contains("--force"),
        "{message}"
    );
    assert!(err.to_string().contains("settings.json"));
    assert_eq!(h.read(SETTINGS).unwrap(), WITH_API_KEY);
}

#[test]
fn api_key_conflict_with_force_moves_the_key_and_undo_restores_it() {
    let h = Home::linux();
    h.write(SETTINGS, WITH_API_KEY);
    h.install("claude-code", &target("m"), &force());
    let now = h.read(SETTINGS).unwrap();
    assert!(!now.contains("ANTHROPIC_API_KEY"));
    assert!(!now.contains("usersownkey"));
    assert!(now.contains("\"FOO\": \"bar\""));
    h.undo("claude-code");
    assert_eq!(h.read(SETTINGS).unwrap(), WITH_API_KEY);
}

#[test]
fn forced_key_comes_back_even_after_the_user_edited_the_file() {
    let h = Home::linux();
    h.write(SETTINGS, WITH_API_KEY);
    h.install("claude-code", &target("m"), &force());
    // The user edits another key: the pristine copy can no longer be put
    // back as a whole, so undo removes our keys and restores theirs.
    let edited = h.read(SETTINGS).unwrap().replace("\"bar\"", "\"baz\"");
    h.write(SETTINGS, &edited);
    h.undo("claude-code");
    let now = h.read(SETTINGS).unwrap();
    assert_eq!(
        now,
        "{\n  \"env\": {\n    \"FOO\": \"baz\",\n    \"ANTHROPIC_API_KEY\": \"sk-ant-api03-usersownkey-XYZW\"\n  }\n}\n"
    );
}

#[test]
fn key_re_added_between_installs_is_stashed() {
    let h = Home::linux();
    h.install("claude-code", &target("m"), &opts());
    // The user adds their own key later, then installs again with --force.
    let s = h.read(SETTINGS).unwrap().replace(
        "\"env\": {",
        "\"env\": {\n    \"ANTHROPIC_API_KEY\": \"sk-later-added-key-1234\",",
    );
    h.write(SETTINGS, &s);
    h.install("claude-code", &target("m2"), &force());
    h.undo("claude-code");
    let now = h.read(SETTINGS).unwrap();
    assert!(
        now.contains("\"ANTHROPIC_API_KEY\": \"sk-later-added-key-1234\""),
        "{now}"
    );
    assert!(
        !now.contains("ANTHROPIC_BASE_URL") && !now.contains("ANTHROPIC_MODEL"),
        "{now}"
    );
}

#[test]
fn hostile_content_is_an_error_naming_the_file() {
    let h = Home::linux();
    for (bad, what) in [
        ("[1, 2]", "array"),
        ("{\"env\": \"x\"}", "env"),
        ("{\"env\": {", "line"),
    ] {
        h.write(SETTINGS, bad);
        let err = h.preview("claude-code", &target("m"), &opts()).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("settings.json") && msg.contains(what), "{msg}");
        assert_eq!(h.read(SETTINGS).unwrap(), bad);
    }
}

#[test]
fn undo_without_backup_removes_only_our_keys() {
    let h = Home::linux();
    let configured = golden_settings();
    let changes = plan_undo_bare(
        "claude-code",
        &h.env,
        &[
            Some(&configured),
            Some("{\"hasCompletedOnboarding\": true}"),
        ],
    );
    assert_eq!(
        changes.len(),
        1,
        "onboarding is left alone without a backup"
    );
    assert_eq!(after_of(&changes, "settings.json"), Some(USER_SETTINGS));
}

#[test]
fn a_foreign_base_url_is_not_ours_to_remove() {
    let h = Home::linux();
    let theirs = "{\"env\": {\"ANTHROPIC_BASE_URL\": \"https://gateway.example.com\", \"ANTHROPIC_AUTH_TOKEN\": \"x\"}}";
    let changes = plan_undo_bare("claude-code", &h.env, &[Some(theirs), None]);
    assert!(changes.is_empty(), "{changes:?}");
}
