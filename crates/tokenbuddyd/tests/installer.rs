//! End-to-end installer: `tokenbuddyd install` writes each client's config
//! in a temporary home; a request made the way that client makes it, with
//! what was written, succeeds against the running daemon; `--undo` restores
//! the original bytes; `--dry-run` never shows the token.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;

use bytes::Bytes;
use common::*;
use http::Method;
use tb_test_support::MockUpstream;
use tb_test_support::daemon::{Daemon, body_bytes, command};

async fn install(daemon: &Daemon, home: &Path, args: &[&str]) -> (bool, String, String) {
    let out = command(bin(), daemon.home())
        .env("HOME", home)
        .arg("install")
        .args(args)
        .output()
        .await
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[tokio::test]
async fn installed_clients_reach_the_daemon_and_undo_restores_their_files() {
    let upstream = MockUpstream::start().await.unwrap();
    let config = format!(
        "[[providers]]\nid = \"oa\"\nkind = \"openai\"\nbase_url = \"{}\"\napi_key = \"k\"\nmodels = [\"gpt-test\"]\nprotocols = [\"chat_completions\", \"responses\", \"messages\"]\n",
        upstream.base_url()
    );
    let daemon = Daemon::start(bin(), &config, &[]).await.unwrap();
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    // Existing configs with the user's own settings, which must survive.
    std::fs::create_dir_all(h.join(".claude")).unwrap();
    let claude_before =
        "{\n  \"permissions\": {\"allow\": [\"Bash(ls)\"]},\n  \"hooks\": {\"Stop\": []}\n}\n";
    std::fs::write(h.join(".claude/settings.json"), claude_before).unwrap();
    std::fs::create_dir_all(h.join(".codex")).unwrap();
    let codex_before =
        "# my codex\nmodel = \"o3\"\n\n[projects.\"/src\"]\ntrust_level = \"trusted\"\n";
    std::fs::write(h.join(".codex/config.toml"), codex_before).unwrap();
    std::fs::create_dir_all(h.join(".config/opencode")).unwrap();
    std::fs::create_dir_all(h.join(".openclaw")).unwrap();
    std::fs::create_dir_all(h.join(".hermes")).unwrap();
    let hermes_before = "model: old-model\nterminal:\n  backend: local\n";
    std::fs::write(h.join(".hermes/config.yaml"), hermes_before).unwrap();

    let (ok, diff, err) = install(&daemon, h, &["--dry-run", "--model", "gpt-test"]).await;
    assert!(ok, "{err}");
    assert!(diff.contains("ANTHROPIC_BASE_URL"), "{diff}");
    assert!(
        !diff.contains(&daemon.token),
        "the dry run never shows the full token"
    );
    assert_eq!(
        read(&h.join(".claude/settings.json")),
        claude_before,
        "a dry run writes nothing"
    );

    let (ok, out, err) = install(&daemon, h, &["--model", "gpt-test"]).await;
    assert!(ok, "{out}\n{err}");

    // Claude Code: Anthropic Messages at ANTHROPIC_BASE_URL with the auth token as Bearer.
    let claude: serde_json::Value =
        serde_json::from_str(&read(&h.join(".claude/settings.json"))).unwrap();
    assert_eq!(
        claude["permissions"]["allow"][0], "Bash(ls)",
        "the user's keys are kept"
    );
    let base = claude["env"]["ANTHROPIC_BASE_URL"]
        .as_str()
        .unwrap()
        .to_string();
    let auth = claude["env"]["ANTHROPIC_AUTH_TOKEN"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(base, daemon.proxy_url);
    let resp = daemon
        .request(
            Method::POST,
            "/v1/messages",
            &[("authorization", &format!("Bearer {auth}")), ("anthropic-version", "2023-06-01")],
            Bytes::from_static(br#"{"model":"gpt-test","max_tokens":5,"messages":[{"role":"user","content":"hi"}]}"#),
        )
        .await;
    assert_eq!(resp.status(), 200, "Claude Code's request");
    body_bytes(resp).await;

    // Codex: Responses at <base_url>/responses with the bearer token.
    let codex: toml::Value = toml::from_str(&read(&h.join(".codex/config.toml"))).unwrap();
    assert!(
        read(&h.join(".codex/config.toml")).contains("# my codex"),
        "comments kept"
    );
    let p = &codex["model_providers"]["tokenbuddy"];
    let codex_base = p["base_url"].as_str().unwrap();
    assert_eq!(codex_base, format!("{}/v1", daemon.proxy_url));
    let bearer = p["experimental_bearer_token"].as_str().unwrap();
    let resp = daemon
        .request(
            Method::POST,
            "/v1/responses",
            &[("authorization", &format!("Bearer {bearer}"))],
            Bytes::from_static(br#"{"model":"gpt-test","input":"hi"}"#),
        )
        .await;
    assert_eq!(resp.status(), 200, "Codex's request");
    body_bytes(resp).await;

    // opencode, OpenClaw, Hermes: chat completions with their keys.
    let opencode: serde_json::Value =
        serde_json::from_str(&read(&h.join(".config/opencode/opencode.json"))).unwrap();
    let openclaw: serde_json::Value =
        serde_json::from_str(&read(&h.join(".openclaw/openclaw.json"))).unwrap();
    let hermes = read(&h.join(".hermes/config.yaml"));
    assert!(
        hermes.contains("terminal:\n  backend: local"),
        "other Hermes sections kept: {hermes}"
    );
    let hermes_key = hermes
        .lines()
        .find_map(|l| l.trim().strip_prefix("api_key:"))
        .unwrap()
        .trim()
        .trim_matches('"')
        .to_string();
    for (client, key, url) in [
        (
            "opencode",
            opencode["provider"]["tokenbuddy"]["options"]["apiKey"]
                .as_str()
                .unwrap()
                .to_string(),
            opencode["provider"]["tokenbuddy"]["options"]["baseURL"]
                .as_str()
                .unwrap()
                .to_string(),
        ),
        (
            "openclaw",
            openclaw["models"]["providers"]["tokenbuddy"]["apiKey"]
                .as_str()
                .unwrap()
                .to_string(),
            openclaw["models"]["providers"]["tokenbuddy"]["baseUrl"]
                .as_str()
                .unwrap()
                .to_string(),
        ),
        ("hermes", hermes_key, format!("{}/v1", daemon.proxy_url)),
    ] {
        assert_eq!(url, format!("{}/v1", daemon.proxy_url), "{client}");
        let resp = daemon
            .request(
                Method::POST,
                "/v1/chat/completions",
                &[("authorization", &format!("Bearer {key}"))],
                Bytes::from_static(br#"{"model":"gpt-test","messages":[]}"#),
            )
            .await;
        assert_eq!(resp.status(), 200, "{client}'s request");
        body_bytes(resp).await;
    }

    // Undo restores the original bytes (and removes files we created).
    let (ok, out, err) = install(&daemon, h, &["--undo"]).await;
    assert!(ok, "{out}\n{err}");
    assert_eq!(read(&h.join(".claude/settings.json")), claude_before);
    assert_eq!(read(&h.join(".codex/config.toml")), codex_before);
    assert_eq!(read(&h.join(".hermes/config.yaml")), hermes_before);
    assert!(!h.join(".config/opencode/opencode.json").exists());
}
