//! `tokenbuddyd probe` end to end (docs/probe.md): the real binary probes
//! simulated providers — honest, ignoring `max_tokens` and over-counting
//! prompt tokens, or breaking tool calls — prints the trust matrix, stores
//! it in the ledger, and the daemon routes by it (told by the probe, or
//! reading it at start-up); the reason shows in `route.decision` and
//! `GET /v1/trust`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;

use common::{bin, get_json, home_stdout, log_events};
use serde_json::{Value, json};
use tb_test_support::daemon::{Daemon, body_bytes, home_with_config};
use tb_test_support::{MockUpstream, ProviderSim};

const MODEL: &str = "gpt-4o-mini";

/// Ignores `max_tokens` and over-counts prompt tokens by 30 %, but calls
/// tools.
fn liar() -> ProviderSim {
    ProviderSim {
        honours_max_tokens: false,
        prompt_tokens_pct: 130,
        calls_tools: true,
    }
}

/// Honest but for tool calls: answers in words instead; over-counts by
/// 30 % too (within the test's raised threshold).
fn no_tools() -> ProviderSim {
    ProviderSim {
        calls_tools: false,
        prompt_tokens_pct: 130,
        ..ProviderSim::honest()
    }
}

/// Two providers of `MODEL`, `first` listed (preferred) and discounted
/// (cheaper), then `second`; JSON logs; `extra` goes on top.
fn config(first: (&str, &MockUpstream), second: (&str, &MockUpstream), extra: &str) -> String {
    format!(
        r#"
{extra}
[log]
level = "info"
format = "json"

[routing]
auto_sort = true

[[providers]]
id = "{a}"
kind = "openai"
base_url = "{a_url}"
api_key = "sk-{a}-key"
models = ["{MODEL}"]
protocols = ["chat_completions"]
discount = 0.5

[[providers]]
id = "{b}"
kind = "openai"
base_url = "{b_url}"
api_key = "sk-{b}-key"
models = ["{MODEL}"]
protocols = ["chat_completions"]
"#,
        a = first.0,
        a_url = first.1.base_url(),
        b = second.0,
        b_url = second.1.base_url(),
    )
}

/// `tokenbuddyd ARGS` in `home`: exit code, stdout, stderr.
async fn run(home: &Path, args: &[&str]) -> (i32, String, String) {
    let out = tb_test_support::daemon::command(bin(), home)
        .args(args)
        .output()
        .await
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

/// The matrix row of `upstream`.
fn row<'a>(stdout: &'a str, upstream: &str) -> &'a str {
    stdout
        .lines()
        .find(|l| l.starts_with(&format!("{upstream} ")))
        .unwrap_or_else(|| panic!("no row for {upstream} in:\n{stdout}"))
}

/// Asks `daemon` for `MODEL`, with or without tools; returns the upstream
/// that answered.
async fn served_by(daemon: &Daemon, tools: bool) -> String {
    let mut body =
        json!({"model": MODEL, "messages": [{"role": "user", "content": "Weather in Paris?"}]});
    if tools {
        body["tools"] = json!([{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]);
    }
    let resp = daemon
        .post_json("/v1/chat/completions", body.to_string())
        .await;
    assert_eq!(resp.status(), 200);
    let upstream = resp.headers()["x-tokenbuddy-upstream"]
        .to_str()
        .unwrap()
        .to_string();
    body_bytes(resp).await;
    upstream
}

/// The `route.decision` events so far, once `n` are logged.
async fn decisions(daemon: &Daemon, n: usize) -> Vec<Value> {
    daemon.wait_for_log_count("\"route.decision\"", n).await;
    log_events(daemon, "route.decision")
}

#[tokio::test]
async fn a_provider_that_ignores_max_tokens_and_overcounts_is_marked_and_pushed_back() {
    let bad = MockUpstream::start().await.unwrap();
    bad.simulate(liar());
    let honest = MockUpstream::start().await.unwrap();
    honest.simulate(ProviderSim::honest());
    let daemon = Daemon::start(bin(), &config(("bad", &bad), ("honest", &honest), ""), &[])
        .await
        .unwrap();
    // Before any probe: the cheaper, first-listed provider serves.
    assert_eq!(served_by(&daemon, true).await, "bad");

    let (code, out, err) = run(daemon.home(), &["probe", "--yes"]).await;
    assert_eq!(code, 0, "{out}\n{err}");
    let bad_row = row(&out, "bad");
    assert!(bad_row.contains("✗ 200 tokens"), "{out}");
    assert!(bad_row.contains("✗ +30 %"), "{out}");
    let honest_row = row(&out, "honest");
    assert!(honest_row.contains("✓ 16 tokens"), "{out}");
    assert!(honest_row.contains("✓ +0 %"), "{out}");
    assert!(
        !honest_row.contains('✗') && !honest_row.contains('?'),
        "{out}"
    );
    assert!(
        out.contains("200 completion tokens for max_tokens = 16"),
        "{out}"
    );
    assert!(
        out.contains("the running daemon reloaded the results"),
        "{out}"
    );
    // Five calls each: plain, stream, tool call, tool result, max_tokens.
    assert_eq!(bad.request_count(), 1 + 5);
    assert_eq!(honest.request_count(), 5);

    // Now the honest provider goes first, with tools or without, and the
    // decision says why.
    assert_eq!(served_by(&daemon, true).await, "honest");
    assert_eq!(served_by(&daemon, false).await, "honest");
    let events = decisions(&daemon, 3).await;
    let reason = events[1]["reason"].as_str().unwrap();
    assert!(
        reason.contains("demoted by probe: bad (ignores max_tokens (200 completion tokens))"),
        "{reason}"
    );
    assert_eq!(events[1]["candidates"], r#"["honest", "bad"]"#);
    assert_eq!(events[1]["tools"], true);

    let trust = get_json(&daemon, "/v1/trust").await;
    let entries = trust["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 2, "{trust}");
    assert_eq!(entries[0]["upstream_id"], "bad");
    assert_eq!(
        entries[0]["demoted_for_all"],
        "ignores max_tokens (200 completion tokens)"
    );
    let prompt = entries[0]["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["check"] == "prompt_tokens")
        .unwrap();
    assert_eq!(
        (&prompt["verdict"], &prompt["measured"]),
        (&json!("fail"), &json!(30))
    );
    assert_eq!(entries[1]["upstream_id"], "honest");
    assert_eq!(entries[1]["demoted_for_all"], Value::Null);
    assert_eq!(entries[1]["demoted_for_tools"], Value::Null);
    // No provider key in what the probe printed or the daemon logged.
    for text in [&out, &err, &daemon.logs()] {
        assert!(!text.contains("sk-bad-key") && !text.contains("sk-honest-key"));
    }
}

#[tokio::test]
async fn a_broken_tool_call_demotes_only_requests_with_tools() {
    let broken = MockUpstream::start().await.unwrap();
    broken.simulate(no_tools());
    let honest = MockUpstream::start().await.unwrap();
    honest.simulate(ProviderSim::honest());
    // The over-count of 30 % is tolerated here: overcount_threshold = 40.
    let toml = config(
        ("broken", &broken),
        ("honest", &honest),
        "[probe]\novercount_threshold = 40\n",
    );
    let home = home_with_config(&toml).unwrap();
    let (code, out, err) = run(home.path(), &["probe", "--yes", "--json"]).await;
    assert_eq!(code, 0, "{out}\n{err}");
    let doc: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(doc["daemon_reloaded"], Value::Null, "no daemon runs");
    let checks = |i: usize| -> Vec<(String, String, Value)> {
        doc["results"][i]["checks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                (
                    c["check"].as_str().unwrap().to_string(),
                    c["verdict"].as_str().unwrap().to_string(),
                    c["measured"].clone(),
                )
            })
            .collect()
    };
    assert_eq!(doc["results"][0]["upstream_id"], "broken");
    let broken_checks = checks(0);
    let verdict = |cs: &[(String, String, Value)], name: &str| {
        cs.iter().find(|c| c.0 == name).cloned().unwrap()
    };
    assert_eq!(verdict(&broken_checks, "tool_call").1, "fail");
    assert_eq!(
        verdict(&broken_checks, "prompt_tokens"),
        ("prompt_tokens".into(), "pass".into(), json!(30))
    );
    assert_eq!(verdict(&broken_checks, "max_tokens").1, "pass");
    assert!(checks(1).iter().all(|c| c.1 == "pass"), "{out}");
    // The tool result is never sent when the tool was not called.
    assert_eq!(broken.request_count(), 4);

    // The daemon reads the results at start.
    let daemon = Daemon::start_in(bin(), home, &[]).await.unwrap();
    assert_eq!(served_by(&daemon, false).await, "broken");
    assert_eq!(served_by(&daemon, true).await, "honest");
    let events = decisions(&daemon, 2).await;
    assert!(
        !events[0]["reason"].as_str().unwrap().contains("demoted"),
        "{}",
        events[0]
    );
    assert!(
        events[1]["reason"]
            .as_str()
            .unwrap()
            .contains("demoted by probe: broken (tool call failed)"),
        "{}",
        events[1]
    );
    let trust = get_json(&daemon, "/v1/trust").await;
    assert_eq!(trust["overcount_threshold"], 40);
    assert_eq!(trust["entries"][0]["demoted_for_tools"], "tool call failed");
    assert_eq!(trust["entries"][0]["demoted_for_all"], Value::Null);
}

#[tokio::test]
async fn expired_results_are_ignored() {
    let bad = MockUpstream::start().await.unwrap();
    bad.simulate(liar());
    let honest = MockUpstream::start().await.unwrap();
    honest.simulate(ProviderSim::honest());
    let toml = config(
        ("bad", &bad),
        ("honest", &honest),
        "[probe]\nexpiry_secs = 0\n",
    );
    let home = home_with_config(&toml).unwrap();
    let (code, out, err) = run(home.path(), &["probe", "--yes"]).await;
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(row(&out, "bad").contains("✗ +30 %"), "{out}");
    let daemon = Daemon::start_in(bin(), home, &[]).await.unwrap();
    // Results older than expiry_secs (0: all of them) count for nothing.
    assert_eq!(served_by(&daemon, true).await, "bad");
    let trust = get_json(&daemon, "/v1/trust").await;
    assert_eq!(trust["entries"][0]["expired"], true);
    assert_eq!(trust["entries"][0]["demoted_for_all"], Value::Null);
}

#[tokio::test]
async fn without_yes_only_the_plan_and_its_cost_are_shown() {
    let a = MockUpstream::start().await.unwrap();
    let b = MockUpstream::start().await.unwrap();
    let home = home_with_config(&config(("a", &a), ("b", &b), "")).unwrap();
    let out = home_stdout(home.path(), ["probe"]).await;
    assert!(out.contains("probe plan: 10 calls"), "{out}");
    assert!(
        out.contains(&format!("a × {MODEL}: 5 calls, estimated cost ")),
        "{out}"
    );
    assert!(out.contains("no call made; run again with --yes"), "{out}");
    let plan: Value =
        serde_json::from_str(&home_stdout(home.path(), ["probe", "b", "--json"]).await).unwrap();
    assert_eq!(plan["calls"], 5);
    assert_eq!(plan["ran"], false);
    assert_eq!(plan["targets"][0]["upstream_id"], "b");
    let cost = plan["estimated_cost_usd_micros"].as_u64().unwrap();
    assert!(cost > 0, "{plan}");
    assert_eq!(plan["cost_incomplete"], false);
    assert_eq!((a.request_count(), b.request_count()), (0, 0));

    // A plan over probe.max_cost_usd_micros is refused before any call.
    let cheap = config(("a", &a), ("b", &b), "[probe]\nmax_cost_usd_micros = 1\n");
    let home = home_with_config(&cheap).unwrap();
    let (code, out, err) = run(home.path(), &["probe", "--yes"]).await;
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(
        err.contains("more than probe.max_cost_usd_micros = 1"),
        "{err}"
    );
    // An unknown provider is a usage error naming the known ones.
    let (code, _, err) = run(home.path(), &["probe", "nope"]).await;
    assert_eq!(code, 2);
    assert!(
        err.contains("\"nope\" is not a [[providers]] id; the providers are: a, b"),
        "{err}"
    );
    assert_eq!((a.request_count(), b.request_count()), (0, 0));
}
