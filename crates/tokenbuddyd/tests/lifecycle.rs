//! End-to-end: process contract, config commands, graceful shutdown.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use http_body_util::BodyExt;
use tb_domain::Protocol;
use tb_test_support::daemon::{command, home_with_config};
use tb_test_support::{StreamEnd, canned};

#[tokio::test]
async fn sigterm_lets_a_running_stream_finish() {
    let Setup {
        upstream,
        mut daemon,
    } = setup().await;
    let daemon_json = daemon.data_dir().join("daemon.json");
    let info: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&daemon_json).unwrap()).unwrap();
    assert_eq!(info["proxy_url"], daemon.proxy_url.as_str());
    assert_eq!(info["pid"], daemon.pid().unwrap());

    let stream = held_stream(&upstream, &daemon).await;

    daemon.sigterm().unwrap();
    daemon.wait_for_log("draining in-flight requests").await;
    stream.finish().await;
    assert_eq!(upstream.next_stream_end().await, StreamEnd::Completed);
    let status = daemon.wait().await.unwrap();
    assert!(status.success(), "{status:?}");
    assert!(
        !daemon_json.exists(),
        "daemon.json is removed on clean exit"
    );
}

#[tokio::test]
async fn config_show_masks_secrets_and_names_sources() {
    let home = home_with_config(&two_provider_config("http://127.0.0.1:1/v1", "")).unwrap();
    let out = command(bin(), home.path())
        .args(["config", "show"])
        .env("TB_LOG__LEVEL", "debug")
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!stdout.contains(ANTHROPIC_KEY), "{stdout}");
    assert!(
        stdout.contains("providers[1].api_key = \"********\""),
        "{stdout}"
    );
    let line = |key: &str| {
        stdout
            .lines()
            .find(|l| l.starts_with(&format!("{key} =")))
            .unwrap_or_else(|| panic!("{key} in {stdout}"))
            .to_string()
    };
    let id = line("providers[0].id");
    assert!(id.contains("\"oa\"") && id.contains("# file "), "{stdout}");
    assert!(
        line("log.level").contains("# env TB_LOG__LEVEL"),
        "{stdout}"
    );
    assert!(
        line("proxy.max_body_bytes").ends_with("# default"),
        "{stdout}"
    );
}

#[tokio::test]
async fn unknown_config_key_fails_naming_key_and_file() {
    let home = home_with_config("[proxy]\nport = 0\nmax_body_byte = 5\n").unwrap();
    for args in [&["serve"][..], &["config", "show"][..]] {
        let stderr = refused(home.path(), args).await;
        assert!(stderr.contains("max_body_byte"), "{stderr}");
    }
}

#[tokio::test]
async fn removed_config_keys_fail_saying_they_were_removed() {
    for (toml, key) in [
        ("[ledger]\nstore_bodies = true\n", "ledger.store_bodies"),
        ("[log]\nbodies = false\n", "log.bodies"),
    ] {
        let home = home_with_config(toml).unwrap();
        let stderr = refused(home.path(), &["serve", "--port", "0"]).await;
        assert!(
            stderr.contains(&format!("`{key}` was removed")) && stderr.contains("delete the key"),
            "{stderr}"
        );
    }
}

#[tokio::test]
async fn missing_key_variable_fails_with_exit_2() {
    let home = home_with_config(&two_provider_config("http://127.0.0.1:1/v1", "")).unwrap();
    let out = command(bin(), home.path())
        .args(["serve", "--port", "0"])
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("TEST_OPENAI_KEY") && stderr.contains("providers[0]"),
        "{stderr}"
    );
}

#[tokio::test]
async fn config_init_and_path() {
    let home = tempfile::tempdir().unwrap();
    let out = command(bin(), home.path())
        .args(["config", "path"])
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        stdout.contains(&home.path().join("config.toml").display().to_string()),
        "{stdout}"
    );
    assert!(
        stdout.contains(&home.path().join("data").display().to_string()),
        "{stdout}"
    );

    let out = command(bin(), home.path())
        .args(["config", "init"])
        .output()
        .await
        .unwrap();
    assert!(out.status.success());
    assert!(home.path().join("config.toml").exists());
    let again = command(bin(), home.path())
        .args(["config", "init"])
        .output()
        .await
        .unwrap();
    assert!(!again.status.success(), "init refuses to overwrite");
    let show = command(bin(), home.path())
        .args(["config", "show"])
        .output()
        .await
        .unwrap();
    assert!(
        show.status.success(),
        "{}",
        String::from_utf8_lossy(&show.stderr)
    );
}

#[tokio::test]
async fn remote_bind_without_allow_remote_is_refused() {
    let home = home_with_config("").unwrap();
    let out = command(bin(), home.path())
        .args(["serve", "--port", "0", "--bind", "0.0.0.0"])
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("allow_remote"), "{stderr}");
}

#[tokio::test]
async fn grace_period_bounds_the_drain() {
    let Setup {
        upstream,
        mut daemon,
    } = setup_with("[proxy]\nshutdown_grace_ms = 1000\n").await;
    let events = canned::sse_events(Protocol::Messages, "claude-test");
    upstream.push_reply(hang_after_first_content(Protocol::Messages, &events).0);
    let resp = daemon
        .post_json("/v1/messages", r#"{"model":"claude-test","stream":true}"#)
        .await;
    let mut body = resp.into_body();
    body.frame().await.unwrap().unwrap();
    daemon.sigterm().unwrap();
    let status = daemon.wait().await.unwrap();
    assert!(status.success(), "{status:?}");
    assert!(
        daemon.logs().contains("grace period expired"),
        "{}",
        daemon.logs()
    );
    assert_eq!(upstream.next_stream_end().await, StreamEnd::ClientGone);
}

#[tokio::test]
async fn json_logs_carry_the_request_id_and_no_secrets() {
    let upstream = tb_test_support::MockUpstream::start().await.unwrap();
    let config = two_provider_config(&upstream.base_url(), "").replace(
        "level = \"info,tb_proxy=debug\"",
        "level = \"info\"\nformat = \"json\"",
    );
    let daemon =
        tb_test_support::daemon::Daemon::start(bin(), &config, &[("TEST_OPENAI_KEY", OPENAI_KEY)])
            .await
            .unwrap();
    let resp = daemon
        .request(
            http::Method::POST,
            "/v1/chat/completions",
            &[
                ("authorization", &format!("Bearer {}", daemon.token)),
                ("x-request-id", "req-from-client-1"),
            ],
            r#"{"model":"gpt-test"}"#,
        )
        .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()["x-tokenbuddy-request-id"],
        "req-from-client-1"
    );
    assert_eq!(
        upstream.wait_for_requests(1).await[0].header("x-request-id"),
        Some("req-from-client-1")
    );
    daemon.wait_for_log("request.completed").await;
    let logs = daemon.logs();
    let mut completed = None;
    for line in logs.lines().filter(|l| !l.trim().is_empty()) {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        if v["target"] == "request.completed" {
            completed = Some(v);
        }
    }
    let completed = completed.expect("a request.completed event");
    assert_eq!(completed["status"], 200);
    assert_eq!(completed["upstream"], "oa");
    assert_eq!(
        completed["span"]["request_id"], "req-from-client-1",
        "{completed}"
    );
    for secret in [daemon.token.as_str(), OPENAI_KEY, ANTHROPIC_KEY] {
        assert!(!logs.contains(secret), "a secret reached the logs");
    }
}

#[tokio::test]
async fn prices_command_costs_usage_to_the_micro() {
    let home = tempfile::tempdir().unwrap();
    let out = command(bin(), home.path())
        .args([
            "prices",
            "claude-sonnet-4-5",
            "--input",
            "1000000",
            "--cached",
            "200000",
            "--output",
            "100000",
        ])
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(
        stdout.starts_with("resolved: claude-sonnet-4-5 (via exact)\n"),
        "{stdout}"
    );
    // (1,000,000 − 200,000) × $3 + 200,000 × $0.30 + 100,000 × $15, per 1M.
    assert_eq!(stdout.lines().last(), Some("cost: $3.960000"), "{stdout}");

    // Tiers: a priority GPT-5 answer (2×) and 1-hour cache writes (1.6×).
    let prices = |args: &'static [&'static str]| {
        let home = home.path().to_path_buf();
        async move {
            let out = command(bin(), &home).args(args).output().await.unwrap();
            (
                out.status.code(),
                String::from_utf8_lossy(&out.stdout).into_owned(),
                String::from_utf8_lossy(&out.stderr).into_owned(),
            )
        }
    };
    let (code, stdout, _) = prices(&[
        "prices", "gpt-5", "--tier", "priority", "--input", "10000", "--cached", "1000",
        "--output", "500",
    ])
    .await;
    assert_eq!(code, Some(0), "{stdout}");
    assert!(
        stdout.contains("tiers: priority, flex\ntier: priority\n"),
        "{stdout}"
    );
    // 9k × $2.50 + 1k × $0.25 + 500 × $20.
    assert_eq!(stdout.lines().last(), Some("cost: $0.032750"), "{stdout}");
    let (code, stdout, _) = prices(&[
        "prices",
        "claude-sonnet-4-5",
        "--input",
        "10100",
        "--cache-write",
        "10000",
        "--cache-write-1h",
        "10000",
        "--output",
        "200",
    ])
    .await;
    assert_eq!(code, Some(0), "{stdout}");
    assert!(
        stdout.contains("cache write 1h: $6.000000 / 1M tokens\n"),
        "{stdout}"
    );
    // 100 × $3 + 10k × $6 + 200 × $15.
    assert_eq!(stdout.lines().last(), Some("cost: $0.063300"), "{stdout}");
    let (code, _, stderr) = prices(&["prices", "gpt-5", "--tier", "turbo"]).await;
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("standard, priority or flex"), "{stderr}");

    let out = command(bin(), home.path())
        .args(["prices", "gpt-4oo"])
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("gpt-4oo") && stderr.contains("closest") && stderr.contains("gpt-4o"),
        "{stderr}"
    );
}
