//! End-to-end with the official SDKs: the `openai` and `anthropic` Python
//! packages drive the real daemon (chat, responses, messages, images;
//! streaming and not; error → exception mapping). The test installs the
//! pinned SDKs from PyPI into a venv under the target dir on first run.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use tb_test_support::MockUpstream;
use tb_test_support::daemon::Daemon;

const SDKS: [&str; 2] = ["openai==3.54.0", "anthropic==2.12.0"];

/// A venv with the pinned SDKs, created once per target dir.
fn sdk_python() -> PathBuf {
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
