//! End-to-end with the official SDKs: the `openai` and `anthropic` Python
//! packages drive the real daemon (chat, responses, messages, images;
//! streaming and not; error → exception mapping), and their stream helpers
//! accumulate translated streams exactly as they do native ones. The test
//! installs the pinned SDKs from PyPI into a venv under the target dir on
//! first run.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use tb_domain::Protocol;
use tb_test_support::MockUpstream;
use tb_test_support::agent_upstream::{AgentUpstream, INPUT_TOKENS, OUTPUT_TOKENS, ToolTask, Turn};
use tb_test_support::daemon::Daemon;
use tb_test_support::text_and_call::{self, TextAndCallUpstream};

const SDKS: [&str; 2] = ["openai==3.54.0", "anthropic==2.12.0"];

/// A venv with the pinned SDKs, created once per target dir (and once per
/// run: the tests of this file share it).
fn sdk_python() -> PathBuf {
    static PYTHON: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    PYTHON.get_or_init(install_sdks).clone()
}

fn install_sdks() -> PathBuf {
    let venv = Path::new(env!("CARGO_TARGET_TMPDIR")).join("sdk-venv");
    let python = venv.join("bin").join("python");
    let marker = venv.join(format!(".installed-{}", SDKS.join("-")));
    if marker.exists() {
        return python;
    }
    let run = |cmd: &mut Command, what: &str| {
        let out = cmd
            .output()
            .unwrap_or_else(|e| panic!("{what}: {e} (is python3 installed?)"));
        assert!(
            out.status.success(),
            "{what} failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(
        Command::new("python3")
            .args(["-m", "venv", "--clear"])
            .arg(&venv),
        "python3 -m venv",
    );
    run(
        Command::new(&python)
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
            ])
            .args(SDKS),
        "pip install openai anthropic",
    );
    std::fs::write(&marker, "").unwrap();
    python
}

#[tokio::test]
async fn official_sdks_work_through_the_daemon() {
    let python = tokio::task::spawn_blocking(sdk_python).await.unwrap();
    let upstream = MockUpstream::start().await.unwrap();
    let config = providers_config(
        &upstream.base_url(),
        &["gpt-4o-mini", "gpt-image-1"],
        &["claude-haiku-4-5"],
        "",
    );
    let daemon = Daemon::start(bin(), &config, &[("TEST_OPENAI_KEY", OPENAI_KEY)])
        .await
        .unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sdk/sdk_check.py");
    let out = tokio::process::Command::new(&python)
        .arg(&script)
        .env("OPENAI_BASE_URL", format!("{}/v1", daemon.proxy_url))
        .env("ANTHROPIC_BASE_URL", &daemon.proxy_url)
        .env("OPENAI_API_KEY", &daemon.token)
        .env("ANTHROPIC_API_KEY", &daemon.token)
        .env_remove("OPENAI_ORG_ID")
        .env_remove("OPENAI_PROJECT_ID")
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}");
    assert!(
        out.status.success(),
        "SDK checks failed:\n{stdout}\n{}\ndaemon logs:\n{}",
        String::from_utf8_lossy(&out.stderr),
        daemon.logs()
    );
    assert!(
        stdout.contains("NotFoundError") && stdout.contains("AuthenticationError"),
        "{stdout}"
    );
    // Every SDK call went through the daemon to the upstream with the provider key.
    for req in upstream.requests() {
        let key_ok = req.header("authorization") == Some(&format!("Bearer {OPENAI_KEY}"))
            || req.header("x-api-key") == Some(ANTHROPIC_KEY);
        assert!(
            key_ok,
            "{} reached the upstream without the provider key",
            req.path_and_query
        );
    }
    assert!(
        upstream.request_count() >= 12,
        "only {} upstream calls",
        upstream.request_count()
    );
}

/// `client.images.edit(...)` of the `openai` SDK through the daemon
/// (`tests/sdk/images_edit.py`): the multipart form reaches the upstream
/// byte for byte (files included), whole and streamed, and each edit is
/// recorded as an `images_edits` call billed per image.
#[tokio::test]
async fn openai_sdk_edits_images_through_the_daemon() {
    const MODEL: &str = "gpt-image-1";
    let python = tokio::task::spawn_blocking(sdk_python).await.unwrap();
    let upstream = MockUpstream::start().await.unwrap();
    let url = upstream.base_url();
    let daemon = one_protocol_daemon(&[(url.as_str(), MODEL)], Protocol::ImagesEdits).await;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sdk/images_edit.py");
    let out = tokio::process::Command::new(&python)
        .arg(&script)
        .env("OPENAI_BASE_URL", format!("{}/v1", daemon.proxy_url))
        .env("OPENAI_API_KEY", &daemon.token)
        .env("IMAGE_MODEL", MODEL)
        .env_remove("OPENAI_ORG_ID")
        .env_remove("OPENAI_PROJECT_ID")
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "images.edit failed:\n{stdout}\n{}\ndaemon logs:\n{}",
        String::from_utf8_lossy(&out.stderr),
        daemon.logs()
    );
    // Only the two good edits reached the upstream, as multipart forms with
    // the SDK's boundary and every file byte.
    let edits = upstream.requests_under("/v1/images/edits");
    assert_eq!(edits.len(), 2, "{stdout}");
    let first = &edits[0];
    let ct = first.header("content-type").unwrap();
    assert!(ct.starts_with("multipart/form-data; boundary="), "{ct}");
    assert_eq!(
        first.header("authorization"),
        Some(format!("Bearer {OPENAI_KEY}").as_str())
    );
    let body = String::from_utf8_lossy(&first.body);
    assert_eq!(body.matches("tokenbuddy-edit-image").count(), 3 * 64);
    assert_eq!(
        tb_test_support::form_text(&first.body, "model").as_deref(),
        Some(MODEL)
    );
    assert_eq!(
        tb_test_support::form_text(&edits[1].body, "stream").as_deref(),
        Some("true")
    );

    daemon.sigterm().unwrap();
    let mut daemon = daemon;
    assert!(daemon.wait().await.unwrap().success());
    let records = read_ledger(daemon.home()).await;
    let edits: Vec<_> = records
        .iter()
        .filter(|r| r["protocol"] == "images_edits" && r["outcome"] == "ok")
        .collect();
    assert_eq!(edits.len(), 2, "{records:#?}");
    for r in edits {
        assert_eq!(r["billing_unit"], "images");
        assert_eq!(r["image_count"], 1);
        assert_eq!(r["winner"], "up0");
    }
    // The form without a model was refused by the daemon and recorded so.
    assert!(
        records
            .iter()
            .any(|r| r["protocol"] == "images_edits" && r["outcome"] == "rejected")
    );
}

/// A daemon whose upstreams all speak `protocol` only: one provider per
/// (url, model).
async fn one_protocol_daemon(upstreams: &[(&str, &str)], protocol: Protocol) -> Daemon {
    let (kind, key) = match protocol {
        Protocol::Messages => ("anthropic", ANTHROPIC_KEY),
        _ => ("openai", OPENAI_KEY),
    };
    let mut config = "[log]\nlevel = \"info,tb_proxy=debug\"\n".to_string();
    for (i, (url, model)) in upstreams.iter().enumerate() {
        config += &format!(
            "\n[[providers]]\nid = \"up{i}\"\nkind = \"{kind}\"\nbase_url = \"{url}\"\napi_key = \"{key}\"\nmodels = [\"{model}\"]\nprotocols = [\"{protocol}\"]\n"
        );
    }
    Daemon::start(bin(), &config, &[]).await.unwrap()
}

/// The SDKs' stream helpers (`messages.stream()`, `chat.completions.stream()`,
/// `responses.stream()`) put a translated stream together into the same
/// final message, tool call and usage as the upstream's native answer:
/// `tests/sdk/translated_streams.py` runs a two-turn tool task each way
/// ([`AgentUpstream`]) and one answer of text then a tool call
/// ([`TextAndCallUpstream`]), and compares with the SDK pointed at the
/// scripted upstream directly.
#[tokio::test]
async fn sdk_stream_helpers_accumulate_translated_streams() {
    const MODEL: &str = "tb-model";
    const FILE: &str = "/work/secret.txt";
    const SECRET: &str = "tb-nonce-7f3a9c";
    const MIXED_MODEL: &str = "tb-mixed";
    let python = tokio::task::spawn_blocking(sdk_python).await.unwrap();
    let upstream = AgentUpstream::start(ToolTask {
        file: FILE.into(),
        marker: "tb-nonce-".into(),
    })
    .await
    .unwrap();
    let mixed = TextAndCallUpstream::start().await.unwrap();
    let upstreams = [
        (upstream.base_url(), MODEL),
        (mixed.base_url(), MIXED_MODEL),
    ];
    let upstreams: Vec<(&str, &str)> = upstreams.iter().map(|(u, m)| (u.as_str(), *m)).collect();
    let via_chat = one_protocol_daemon(&upstreams, Protocol::ChatCompletions).await;
    let via_messages = one_protocol_daemon(&upstreams, Protocol::Messages).await;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sdk/translated_streams.py");
    let root = upstream.base_url().trim_end_matches("/v1").to_string();
    let out = tokio::process::Command::new(&python)
        .arg(&script)
        .env("UPSTREAM_URL", &root)
        .env("VIA_CHAT_URL", &via_chat.proxy_url)
        .env("VIA_CHAT_TOKEN", &via_chat.token)
        .env("VIA_MESSAGES_URL", &via_messages.proxy_url)
        .env("VIA_MESSAGES_TOKEN", &via_messages.token)
        .env("MODEL", MODEL)
        .env("TASK_FILE", FILE)
        .env("SECRET", SECRET)
        .env("INPUT_TOKENS", INPUT_TOKENS.to_string())
        .env("OUTPUT_TOKENS", OUTPUT_TOKENS.to_string())
        .env("MIXED_UPSTREAM_URL", mixed.root_url())
        .env("MIXED_MODEL", MIXED_MODEL)
        .env("MIXED_TEXT", text_and_call::text())
        .env("MIXED_TOOL", text_and_call::TOOL)
        .env("MIXED_ARGUMENTS", text_and_call::arguments())
        .env(
            "MIXED_INPUT_TOKENS",
            text_and_call::INPUT_TOKENS.to_string(),
        )
        .env(
            "MIXED_OUTPUT_TOKENS",
            text_and_call::OUTPUT_TOKENS.to_string(),
        )
        .env_remove("OPENAI_BASE_URL")
        .env_remove("ANTHROPIC_BASE_URL")
        .env_remove("OPENAI_ORG_ID")
        .env_remove("OPENAI_PROJECT_ID")
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}");
    assert!(
        out.status.success(),
        "SDK stream helper checks failed:\n{stdout}\n{}\nvia-chat daemon logs:\n{}\nvia-messages daemon logs:\n{}",
        String::from_utf8_lossy(&out.stderr),
        via_chat.logs(),
        via_messages.logs()
    );
    assert!(stdout.contains("6 checks passed"), "{stdout}");

    // Three helpers × two turns, each natively and translated. The
    // translated ones reached the upstream in its own protocol, and every
    // second turn carried the tool result through the translation.
    let seen = upstream.requests();
    assert_eq!(seen.len(), 12, "{seen:#?}");
    let by_key = |r: &tb_test_support::agent_upstream::AgentRequest| {
        r.headers
            .get("x-api-key")
            .or_else(|| r.headers.get("authorization"))
            .map(|v| v.to_str().unwrap().to_string())
    };
    let translated: Vec<_> = seen
        .iter()
        .filter(|r| {
            let key = by_key(r);
            key.as_deref() == Some(ANTHROPIC_KEY)
                || key.as_deref() == Some(&format!("Bearer {OPENAI_KEY}"))
        })
        .collect();
    let protocols: Vec<_> = translated.iter().map(|r| r.protocol).collect();
    assert_eq!(
        protocols,
        [
            Some(Protocol::ChatCompletions),
            Some(Protocol::ChatCompletions),
            Some(Protocol::Messages),
            Some(Protocol::Messages),
            Some(Protocol::Messages),
            Some(Protocol::Messages),
        ]
    );
    for pair in translated.chunks(2) {
        assert!(pair[0].stream && pair[1].stream);
        assert!(
            matches!(pair[0].turn, Turn::ToolCall { .. }),
            "{:?}",
            pair[0].turn
        );
        assert_eq!(
            pair[1].turn,
            Turn::Final {
                secret: Some(SECRET.into()),
                text: ToolTask::final_text(SECRET)
            }
        );
    }
    // The text-and-call answers: three native, three translated (the
    // anthropic SDK's over chat, the openai SDK's two over Messages).
    let protocols: Vec<_> = mixed.requests().iter().map(|r| r.protocol).collect();
    assert_eq!(
        protocols,
        [
            Some(Protocol::Messages),
            Some(Protocol::ChatCompletions),
            Some(Protocol::ChatCompletions),
            Some(Protocol::Messages),
            Some(Protocol::Responses),
            Some(Protocol::Messages),
        ]
    );
}
