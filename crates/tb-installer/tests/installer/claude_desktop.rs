use tb_installer::{DESKTOP_CONFIG_ID, InstallError, Os, PlanError};

use crate::support::*;

const BASE: &str = "Library/Application Support/Claude-3p";

fn main_rel() -> String {
    format!("{BASE}/claude_desktop_config.json")
}
fn entry_rel() -> String {
    format!("{BASE}/configLibrary/{DESKTOP_CONFIG_ID}.json")
}
fn meta_rel() -> String {
    format!("{BASE}/configLibrary/_meta.json")
}

#[test]
fn missing_files_are_created_on_macos() {
    let h = Home::new(Os::MacOs);
    let applied = h.install("claude-desktop", &target("claude-sonnet-4-5"), &opts());
    assert_eq!(applied.files.len(), 3);
    assert!(
        applied
            .files
            .iter()
            .all(|f| f.description.contains("restart Claude Desktop"))
    );
    assert_eq!(
        h.read(&main_rel()).unwrap(),
        "{\n  \"deploymentMode\": \"3p\"\n}\n"
    );
    assert_eq!(
        h.read(&entry_rel()).unwrap(),
        format!(
            "{{\n  \"inferenceProvider\": \"gateway\",\n  \"inferenceGatewayBaseUrl\": \"http://127.0.0.1:8787\",\n  \"inferenceGatewayApiKey\": \"{TOKEN}\",\n  \"inferenceGatewayAuthScheme\": \"bearer\",\n  \"inferenceModels\": [\n    \"claude-sonnet-4-5\"\n  ]\n}}\n"
        )
    );
    assert_eq!(
        h.read(&meta_rel()).unwrap(),
        format!(
            "{{\n  \"appliedId\": \"{DESKTOP_CONFIG_ID}\",\n  \"entries\": [\n    {{\n      \"id\": \"{DESKTOP_CONFIG_ID}\",\n      \"name\": \"tokenbuddy\"\n    }}\n  ]\n}}\n"
        )
    );
    h.undo("claude-desktop");
    for r in [main_rel(), entry_rel(), meta_rel()] {
        assert!(h.read(&r).is_none(), "{r} left behind");
    }
}

const USER_MAIN: &str = "{\n  \"mcpServers\": {\n    \"files\": { \"command\": \"npx\", \"args\": [\"-y\", \"fs-mcp\"] }\n  },\n  \"deploymentMode\": \"1p\"\n}\n";
const USER_META: &str = "{\n  \"appliedId\": \"11111111-2222-4333-8444-555555555555\",\n  \"entries\": [\n    { \"id\": \"11111111-2222-4333-8444-555555555555\", \"name\": \"Work gateway\" }\n  ]\n}\n";

#[test]
fn existing_settings_and_entries_are_kept_and_round_trip() {
    let h = Home::new(Os::MacOs);
    h.write(&main_rel(), USER_MAIN);
    h.write(&meta_rel(), USER_META);
    h.install("claude-desktop", &target("claude-sonnet-4-5"), &opts());
    assert_eq!(
        h.read(&main_rel()).unwrap(),
        USER_MAIN.replace("\"1p\"", "\"3p\"")
    );
    let meta = h.read(&meta_rel()).unwrap();
    assert!(
        meta.contains(&format!("\"appliedId\": \"{DESKTOP_CONFIG_ID}\"")),
        "{meta}"
    );
    assert!(
        meta.contains(
            "{ \"id\": \"11111111-2222-4333-8444-555555555555\", \"name\": \"Work gateway\" },"
        ),
        "{meta}"
    );
    h.undo("claude-desktop");
    assert_eq!(h.read(&main_rel()).unwrap(), USER_MAIN);
    assert_eq!(h.read(&meta_rel()).unwrap(), USER_META);
    assert!(h.read(&entry_rel()).is_none());
}

#[test]
fn round_trip_helper() {
    let h = Home::new(Os::MacOs);
    h.write(&main_rel(), USER_MAIN);
    h.write(&meta_rel(), USER_META);
    h.round_trip(
        "claude-desktop",
        &target("claude-opus-4-1"),
        &opts(),
        &[&main_rel(), &entry_rel(), &meta_rel()],
    );
}

#[test]
fn undo_without_backup_puts_nothing_of_ours_back() {
    let h = Home::new(Os::MacOs);
    let changes = plan(
        "claude-desktop",
        &h.env,
        &[Some(USER_MAIN), None, Some(USER_META)],
        &target("claude-x"),
        &opts(),
    )
    .unwrap();
    let contents: Vec<Option<String>> = [
        "claude_desktop_config.json",
        &format!("{DESKTOP_CONFIG_ID}.json"),
        "_meta.json",
    ]
    .iter()
    .map(|n| after_of(&changes, n).map(str::to_owned))
    .collect();
    let refs: Vec<Option<&str>> = contents.iter().map(|c| c.as_deref()).collect();
    let undo = plan_undo_bare("claude-desktop", &h.env, &refs);
    // appliedId and deploymentMode cannot be known without a backup: removed.
    assert_eq!(
        after_of(&undo, "_meta.json").unwrap(),
        "{\n  \"entries\": [\n    { \"id\": \"11111111-2222-4333-8444-555555555555\", \"name\": \"Work gateway\" }\n  ]\n}\n"
    );
    assert_eq!(
        after_of(&undo, "claude_desktop_config.json").unwrap(),
        "{\n  \"mcpServers\": {\n    \"files\": { \"command\": \"npx\", \"args\": [\"-y\", \"fs-mcp\"] }\n  }\n}\n"
    );
    let entry = undo
        .iter()
        .find(|c| c.path.ends_with(format!("{DESKTOP_CONFIG_ID}.json")))
        .unwrap();
    assert_eq!(entry.after, None, "our profile is deleted");
}

#[test]
fn linux_is_unsupported_with_a_clear_message() {
    let h = Home::linux();
    let err = h
        .preview("claude-desktop", &target("claude-x"), &opts())
        .unwrap_err();
    assert!(
        matches!(
            err,
            InstallError::Plan {
                source: PlanError::Unsupported { .. },
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("Linux"), "{err}");
    assert!(client("claude-desktop").config_paths(&h.env).is_empty());
}

#[test]
fn windows_uses_localappdata() {
    let h = Home::new(Os::Windows).with_var("LOCALAPPDATA", "AppData/Local");
    h.install("claude-desktop", &target("claude-x"), &opts());
    assert!(
        h.read("AppData/Local/Claude-3p/claude_desktop_config.json")
            .is_some()
    );
}

#[test]
fn non_claude_models_are_not_listed() {
    let h = Home::new(Os::MacOs);
    let p = h
        .preview("claude-desktop", &target("gpt-5"), &opts())
        .unwrap();
    let entry = p
        .changes
        .iter()
        .find(|c| c.path.ends_with(format!("{DESKTOP_CONFIG_ID}.json")))
        .unwrap();
    assert!(!entry.after.as_deref().unwrap().contains("inferenceModels"));
    assert!(entry.description.contains("claude-"));
}

#[test]
fn hostile_content_is_an_error_naming_the_file() {
    let h = Home::new(Os::MacOs);
    h.write(&meta_rel(), "{\"entries\": {}}");
    let msg = h
        .preview("claude-desktop", &target("claude-x"), &opts())
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("_meta.json") && msg.contains("entries"),
        "{msg}"
    );
    h.write(&meta_rel(), "{}");
    h.write(&main_rel(), "\"3p\"");
    let msg = h
        .preview("claude-desktop", &target("claude-x"), &opts())
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("claude_desktop_config.json") && msg.contains("string"),
        "{msg}"
    );
}
