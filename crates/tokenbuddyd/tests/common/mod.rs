//! Shared setup for the end-to-end tests: a mock upstream and the real
//! daemon binary configured to use it.
#![allow(
    dead_code,
    missing_docs,
    unreachable_pub,
    clippy::unwrap_used,
    clippy::expect_used
)]

use std::path::Path;

use std::sync::Arc;

use bytes::Bytes;
use tb_test_support::daemon::Daemon;
use tb_test_support::{Chunk, MockUpstream, Reply};
use tokio::sync::Notify;

pub const OPENAI_KEY: &str = "sk-openai-provider-key";
pub const ANTHROPIC_KEY: &str = "sk-ant-provider-key";

pub fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_tokenbuddyd"))
}

/// Two providers on one mock: `oa` (kind openai, key from env) serving the
/// OpenAI protocols, `an` (kind anthropic, inline key) serving messages.
pub fn two_provider_config(base_url: &str, extra: &str) -> String {
    providers_config(
        base_url,
        &["gpt-test", "gpt-image-1"],
        &["claude-test"],
        extra,
    )
}

/// [`two_provider_config`] with the model lists chosen by the caller.
pub fn providers_config(
    base_url: &str,
    openai_models: &[&str],
    anthropic_models: &[&str],
    extra: &str,
) -> String {
    let list = |models: &[&str]| {
        models
            .iter()
            .map(|m| format!("{m:?}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    format!(
        r#"
[log]
level = "info,tb_proxy=debug"
{extra}
[[providers]]
id = "oa"
kind = "openai"
base_url = "{base_url}"
api_key_env = "TEST_OPENAI_KEY"
models = [{oa}]
protocols = ["chat_completions", "responses", "images_generations"]

[[providers]]
id = "an"
kind = "anthropic"
base_url = "{base_url}"
api_key = "{ANTHROPIC_KEY}"
models = [{an}]
"#,
        oa = list(openai_models),
        an = list(anthropic_models),
    )
}

pub struct Setup {
    pub upstream: MockUpstream,
    pub daemon: Daemon,
}

pub async fn setup_with(extra: &str) -> Setup {
    let upstream = MockUpstream::start().await.unwrap();
    let config = two_provider_config(&upstream.base_url(), extra);
    let daemon = Daemon::start(bin(), &config, &[("TEST_OPENAI_KEY", OPENAI_KEY)])
        .await
        .unwrap();
    Setup { upstream, daemon }
}

pub async fn setup() -> Setup {
    setup_with("").await
}

/// An SSE reply that sends the first event, then waits for the returned
/// gate before sending the rest: proves streaming without timing.
pub fn gated_after_first(events: &[Vec<u8>]) -> (Reply, Arc<Notify>) {
    let gate = Arc::new(Notify::new());
    let mut chunks = vec![
        Chunk::Data(Bytes::from(events[0].clone())),
        Chunk::WaitFor(Arc::clone(&gate)),
    ];
    chunks.extend(
        events[1..]
            .iter()
            .map(|e| Chunk::Data(Bytes::from(e.clone()))),
    );
    (Reply::sse(chunks), gate)
}

/// Stops the daemon with SIGTERM (which drains the ledger writer), then
/// reads every call record with `tokenbuddyd calls --json`, oldest first.
pub async fn stop_and_read_ledger(daemon: &mut Daemon) -> Vec<serde_json::Value> {
    daemon.sigterm().unwrap();
    let status = daemon.wait().await.unwrap();
    assert!(
        status.success(),
        "daemon exit {status:?}; logs:\n{}",
        daemon.logs()
    );
    read_ledger(daemon.home()).await
}

/// Every call record in the ledger of `home`, oldest first.
pub async fn read_ledger(home: &Path) -> Vec<serde_json::Value> {
    let out = tb_test_support::daemon::command(bin(), home)
        .args(["calls", "--json", "--limit", "100000"])
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "calls --json failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}
