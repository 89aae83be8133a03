use crate::support::*;

const JSON: &str = ".config/opencode/opencode.json";
const JSONC: &str = ".config/opencode/opencode.jsonc";

const USER: &str = r#"{
    "$schema": "https://opencode.ai/config.json",
    "theme": "tokyonight",
    "provider": {
        "anthropic": {
            "options": { "apiKey": "{env:ANTHROPIC_API_KEY}" }
        }
    },
    "mcp": {
        "docs": { "type": "local", "command": ["npx", "-y", "docs-mcp"] }
    },
    "model": "anthropic/claude-sonnet-4-5"
}"#;

fn provider_block(indent: &str) -> String {
    let i = |n: usize| indent.repeat(n);
    format!(
        "\"tokenbuddy\": {{\n{i3}\"npm\": \"@ai-sdk/openai-compatible\",\n{i3}\"name\": \"tokenbuddy\",\n{i3}\"options\": {{\n{i4}\"baseURL\": \"http://127.0.0.1:8787/v1\",\n{i4}\"apiKey\": \"{TOKEN}\"\n{i3}}},\n{i3}\"models\": {{\n{i4}\"gpt-5\": {{\n{i5}\"name\": \"gpt-5\"\n{i4}}}\n{i3}}}\n{i2}}}",
        i2 = i(2),
        i3 = i(3),
        i4 = i(4),
        i5 = i(5)
    )
}

#[test]
fn missing_file_is_created() {
    let h = Home::linux();
    h.install("opencode", &target("gpt-5"), &opts());
    assert_eq!(
        h.read(JSON).unwrap(),
        format!(
            "{{\n  \"provider\": {{\n    {}\n  }},\n  \"model\": \"tokenbuddy/gpt-5\"\n}}\n",
            provider_block("  ")
        )
    );
    assert!(h.read(JSONC).is_none());
    h.undo("opencode");
    assert!(h.read(JSON).is_none());
}

#[test]
fn unrelated_keys_are_kept_with_the_files_indentation() {
    let h = Home::linux();
    h.write(JSON, USER);
    h.install("opencode", &target("gpt-5"), &opts());
    let expected = USER
        .replace(
            "        }\n    },\n    \"mcp\"",
            &format!(
                "        }},\n        {}\n    }},\n    \"mcp\"",
                provider_block("    ")
            ),
        )
        .replace("\"anthropic/claude-sonnet-4-5\"", "\"tokenbuddy/gpt-5\"");
    assert_eq!(h.read(JSON).unwrap(), expected);
}

#[test]
fn round_trip_restores_original_bytes() {
    let h = Home::linux();
    h.write(JSON, USER);
    h.round_trip("opencode", &target("gpt-5"), &opts(), &[JSON, JSONC]);
}

const USER_JSONC: &str = "// opencode settings\n{\n  /* theme */\n  \"theme\": \"opencode\",\n  \"autoupdate\": false, // no updates\n}\n";

#[test]
fn jsonc_is_edited_and_its_comments_kept() {
    let h = Home::linux();
    h.write(JSON, "{\"theme\": \"other\"}");
    h.write(JSONC, USER_JSONC);
    h.install("opencode", &target("gpt-5"), &opts());
    assert_eq!(
        h.read(JSON).unwrap(),
        "{\"theme\": \"other\"}",
        "the .json is left alone"
    );
    let now = h.read(JSONC).unwrap();
    assert!(now.starts_with("// opencode settings\n{\n  /* theme */\n  \"theme\": \"opencode\",\n  \"autoupdate\": false, // no updates\n  \"provider\": {\n"), "{now}");
    assert!(
        now.ends_with("  \"model\": \"tokenbuddy/gpt-5\",\n}\n"),
        "{now}"
    );
    h.undo("opencode");
    assert_eq!(h.read(JSONC).unwrap(), USER_JSONC);
}

#[test]
fn jsonc_key_removal_keeps_comments() {
    let h = Home::linux();
    let changes = plan(
        "opencode",
        &h.env,
        &[None, Some(USER_JSONC)],
        &target("gpt-5"),
        &opts(),
    )
    .unwrap();
    let installed = after_of(&changes, "opencode.jsonc").unwrap().to_owned();
    let undo = plan_undo_bare("opencode", &h.env, &[None, Some(&installed)]);
    assert_eq!(after_of(&undo, "opencode.jsonc"), Some(USER_JSONC));
}

#[test]
fn an_unparsable_json_beside_the_jsonc_does_not_block_undo() {
    // Found by the `installer_editors` fuzz target: install edits only the
    // .jsonc, so a broken .json next to it must not make undo impossible.
    let h = Home::linux();
    let broken = "{ \"theme\": ";
    h.write(JSON, broken);
    h.write(JSONC, USER_JSONC);
    h.install("opencode", &target("gpt-5"), &opts());
    assert_eq!(h.read(JSON).unwrap(), broken);
    h.undo("opencode");
    assert_eq!(h.read(JSONC).unwrap(), USER_JSONC);
    assert_eq!(h.read(JSON).unwrap(), broken);
    // Without any backup, too; but an unparsable file install would edit
    // is still an error.
    let undo = plan_undo_bare("opencode", &h.env, &[Some(broken), Some(USER_JSONC)]);
    assert!(undo.is_empty(), "{undo:?}");
    let c = client("opencode");
    let files = files_for("opencode", &h.env, &[Some(broken), None]);
    assert!(
        c.plan_undo(&files, &tb_installer::Pristine::none())
            .is_err()
    );
}

#[test]
fn undo_leaves_a_blank_file_as_it_was() {
    // Found by the `installer_editors` fuzz target: an empty .json beside
    // the .jsonc came back from undo as "{}\n".
    let h = Home::linux();
    h.write(JSON, "");
    h.write(JSONC, USER_JSONC);
    h.install("opencode", &target("gpt-5"), &opts());
    h.undo("opencode");
    assert_eq!(h.read(JSON).unwrap(), "");
    assert_eq!(h.read(JSONC).unwrap(), USER_JSONC);
    // Without a backup, blank and comment-only files plan no change, in
    // every JSON client.
    for blank in ["", "\n", "  // nothing here\n"] {
        let undo = plan_undo_bare("opencode", &h.env, &[Some(blank), Some(blank)]);
        assert!(undo.is_empty(), "{blank:?}: {undo:?}");
        let undo = plan_undo_bare("claude-code", &h.env, &[Some(blank), Some(blank)]);
        assert!(undo.is_empty(), "{blank:?}: {undo:?}");
        let undo = plan_undo_bare("openclaw", &h.env, &[Some(blank)]);
        assert!(undo.is_empty(), "{blank:?}: {undo:?}");
    }
}

#[test]
fn xdg_config_home_is_respected() {
    let h = Home::linux().with_var("XDG_CONFIG_HOME", "xdg");
    h.install("opencode", &target("gpt-5"), &opts());
    assert!(h.read("xdg/opencode/opencode.json").is_some());
    assert!(h.read(JSON).is_none());
}

#[test]
fn already_configured_plans_nothing() {
    let h = Home::linux();
    h.install("opencode", &target("gpt-5"), &opts());
    assert!(
        h.preview("opencode", &target("gpt-5"), &opts())
            .unwrap()
            .changes
            .is_empty()
    );
    // A new model replaces our provider's model list and the selection.
    let p = h
        .preview("opencode", &target("gpt-5-mini"), &opts())
        .unwrap();
    let after = p.changes[0].after.as_deref().unwrap();
    assert!(
        after.contains("\"gpt-5-mini\": {") && !after.contains("\"gpt-5\": {"),
        "{after}"
    );
}

#[test]
fn hostile_content_is_an_error_naming_the_file() {
    let h = Home::linux();
    for (bad, what) in [
        ("[]", "array"),
        ("{\"provider\": [1]}", "provider"),
        ("{'a': }", "line 1"),
    ] {
        h.write(JSON, bad);
        let msg = h
            .preview("opencode", &target("m"), &opts())
            .unwrap_err()
            .to_string();
        assert!(msg.contains("opencode.json") && msg.contains(what), "{msg}");
        assert_eq!(h.read(JSON).unwrap(), bad);
    }
}
