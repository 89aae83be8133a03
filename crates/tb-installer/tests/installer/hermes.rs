use crate::support::*;

const CONFIG: &str = ".hermes/config.yaml";

const USER: &str = "# Hermes agent config
model:
  default: anthropic/claude-opus-4   # the big one
  provider: openrouter
  context_length: 200000

terminal:
  backend: local
  cwd: .   # here

# memory settings
memory:
  memory_enabled: true
";

fn owned(indent: &str) -> String {
    format!(
        "{indent}default: \"gpt-5\"\n{indent}provider: custom\n{indent}base_url: \"http://127.0.0.1:8787/v1\"\n{indent}api_key: \"{TOKEN}\"\n{indent}api_mode: chat_completions\n"
    )
}

#[test]
fn mapping_keys_are_set_and_other_sections_kept() {
    let h = Home::linux();
    h.write(CONFIG, USER);
    h.install("hermes", &target("gpt-5"), &opts());
    let expected = format!(
        "# Hermes agent config\nmodel:\n  default: \"gpt-5\"\n  provider: custom\n  context_length: 200000\n  base_url: \"http://127.0.0.1:8787/v1\"\n  api_key: \"{TOKEN}\"\n  api_mode: chat_completions\n\nterminal:\n  backend: local\n  cwd: .   # here\n\n# memory settings\nmemory:\n  memory_enabled: true\n"
    );
    assert_eq!(h.read(CONFIG).unwrap(), expected);
}

#[test]
fn round_trip_restores_original_bytes() {
    let h = Home::linux();
    h.write(CONFIG, USER);
    h.round_trip("hermes", &target("gpt-5"), &opts(), &[CONFIG]);
}

#[test]
fn missing_file_is_created() {
    let h = Home::linux();
    h.install("hermes", &target("gpt-5"), &opts());
    assert_eq!(h.read(CONFIG).unwrap(), format!("model:\n{}", owned("  ")));
    h.undo("hermes");
    assert!(h.read(CONFIG).is_none());
}

#[test]
fn legacy_scalar_is_replaced_by_the_mapping() {
    let h = Home::linux();
    let text = "toolsets:\n    - web\nmodel: anthropic/claude-sonnet-4   # legacy\nmemory:\n    memory_enabled: false\n";
    h.write(CONFIG, text);
    h.install("hermes", &target("gpt-5"), &opts());
    assert_eq!(
        h.read(CONFIG).unwrap(),
        format!(
            "toolsets:\n    - web\nmodel:\n{}memory:\n    memory_enabled: false\n",
            owned("    ")
        )
    );
    assert_eq!(h.read(CONFIG).unwrap().matches("model:").count(), 1);
    h.undo("hermes");
    assert_eq!(h.read(CONFIG).unwrap(), text);
}

#[test]
fn legacy_scalar_comes_back_without_backup() {
    let h = Home::linux();
    let text = "model: \"old-model\"\nother: 1\n";
    let changes = plan("hermes", &h.env, &[Some(text)], &target("gpt-5"), &opts()).unwrap();
    let installed = after_of(&changes, "config.yaml").unwrap().to_owned();
    // No backup: our keys are removed and the section goes with them.
    let undo = plan_undo_bare("hermes", &h.env, &[Some(&installed)]);
    assert_eq!(after_of(&undo, "config.yaml"), Some("other: 1\n"));
}

#[test]
fn file_without_model_section_gets_one_appended() {
    let h = Home::linux();
    let text = "terminal:\n  backend: docker\n# trailing comment";
    h.write(CONFIG, text);
    h.install("hermes", &target("gpt-5"), &opts());
    assert_eq!(
        h.read(CONFIG).unwrap(),
        format!(
            "terminal:\n  backend: docker\n# trailing comment\nmodel:\n{}",
            owned("  ")
        )
    );
    h.undo("hermes");
    assert_eq!(h.read(CONFIG).unwrap(), text);
}

#[test]
fn crlf_files_stay_crlf() {
    let h = Home::linux();
    let text =
        "model:\r\n  default: old\r\n  max_tokens: 4096\r\nterminal:\r\n  backend: local\r\n";
    h.write(CONFIG, text);
    h.install("hermes", &target("gpt-5"), &opts());
    let now = h.read(CONFIG).unwrap();
    assert_eq!(
        now,
        format!(
            "model:\r\n  default: \"gpt-5\"\r\n  max_tokens: 4096\r\n  provider: custom\r\n  base_url: \"http://127.0.0.1:8787/v1\"\r\n  api_key: \"{TOKEN}\"\r\n  api_mode: chat_completions\r\nterminal:\r\n  backend: local\r\n"
        )
    );
    assert_eq!(
        now.matches('\n').count(),
        now.matches("\r\n").count(),
        "a bare LF slipped in"
    );
    h.undo("hermes");
    assert_eq!(h.read(CONFIG).unwrap(), text);
}

#[test]
fn a_lone_cr_at_the_end_is_a_crlf_file() {
    // Found by the `installer_editors` fuzz target: a file ending in a lone
    // \r got LF lines appended after it (completing that \r to a CRLF), and
    // a second install then rewrote every line to CRLF.
    let h = Home::linux();
    let text = "terminal:\r\n  backend: local\r";
    h.write(CONFIG, text);
    h.install("hermes", &target("gpt-5"), &opts());
    let now = h.read(CONFIG).unwrap();
    assert!(
        now.starts_with("terminal:\r\n  backend: local\r\nmodel:\r\n"),
        "{now:?}"
    );
    assert_eq!(
        now.matches('\n').count(),
        now.matches("\r\n").count(),
        "a bare LF slipped in"
    );
    assert!(
        h.preview("hermes", &target("gpt-5"), &opts())
            .unwrap()
            .changes
            .is_empty(),
        "a second install changes the file"
    );
    h.undo("hermes");
    assert_eq!(h.read(CONFIG).unwrap(), text);

    // The lone \r is kept when the last line stays last.
    let text = "model:\n  default: old\nterminal: x\r";
    h.write(CONFIG, text);
    let changes = plan("hermes", &h.env, &[Some(text)], &target("gpt-5"), &opts()).unwrap();
    let after = after_of(&changes, "config.yaml").unwrap();
    assert!(after.ends_with("\r\nterminal: x\r"), "{after:?}");
}

#[test]
fn already_configured_plans_nothing() {
    let h = Home::linux();
    h.write(CONFIG, &format!("model:\n{}", owned("  ")));
    assert!(
        h.preview("hermes", &target("gpt-5"), &opts())
            .unwrap()
            .changes
            .is_empty()
    );
}

#[test]
fn undo_without_backup_keeps_the_users_keys() {
    let h = Home::linux();
    let changes = plan("hermes", &h.env, &[Some(USER)], &target("gpt-5"), &opts()).unwrap();
    let installed = after_of(&changes, "config.yaml").unwrap().to_owned();
    let undo = plan_undo_bare("hermes", &h.env, &[Some(&installed)]);
    // default and provider were the user's before; without a backup they
    // cannot be known and go; context_length stays.
    assert_eq!(
        after_of(&undo, "config.yaml").unwrap(),
        USER.replace(
            "  default: anthropic/claude-opus-4   # the big one\n  provider: openrouter\n",
            ""
        )
    );
}

#[test]
fn odd_model_values_and_roots_are_errors() {
    let h = Home::linux();
    for (bad, what) in [
        ("model: {default: x}\n", "flow mapping"),
        ("model: &m\n  default: x\n", "anchored"),
        ("model: |\n  text\n", "block scalar"),
        ("model:\n  - a\n  - b\n", "list"),
        ("model:\n  default: a\nother: 1\nmodel: b\n", "duplicate"),
        ("- a\n- b\n", "mapping"),
        ("just a string\n", "mapping"),
        ("a: 1\n---\nb: 2\n", "document"),
        ("model:\n    default: a\n  provider: b\n", "indentation"),
    ] {
        h.write(CONFIG, bad);
        let msg = h
            .preview("hermes", &target("m"), &opts())
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("config.yaml") && msg.contains(what),
            "{bad:?}: {msg}"
        );
        assert_eq!(h.read(CONFIG).unwrap(), bad);
    }
}

#[test]
fn hermes_home_is_respected() {
    let h = Home::linux().with_var("HERMES_HOME", "hh");
    h.install("hermes", &target("gpt-5"), &opts());
    assert!(h.read("hh/config.yaml").is_some());
}

#[test]
fn a_byte_order_mark_is_kept_and_not_mistaken_for_a_key() {
    let h = Home::linux();
    let text = "\u{feff}model: old\nother: 1\n";
    h.write(CONFIG, text);
    h.install("hermes", &target("gpt-5"), &opts());
    let now = h.read(CONFIG).unwrap();
    assert!(now.starts_with("\u{feff}model:\n"), "{now:?}");
    assert_eq!(now.matches("model:").count(), 1);
    h.undo("hermes");
    assert_eq!(h.read(CONFIG).unwrap(), text);
}
