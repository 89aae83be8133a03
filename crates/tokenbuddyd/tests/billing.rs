//! End-to-end billing: every proxied request leaves one correct call record
//! in the ledger, streamed and non-streamed answers cost the same, and
//! SIGTERM under load loses no record.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::*;
use tb_domain::Protocol;
use tb_test_support::daemon::{Daemon, body_bytes};
use tb_test_support::{MockUpstream, Reply, canned};

/// The protocols that answer streamed or not (embeddings only answer
/// whole; `embeddings_are_routed_failed_over_and_billed` covers them).
const STREAMABLE: [Protocol; 4] = [
    Protocol::ChatCompletions,
    Protocol::Responses,
    Protocol::Messages,
    Protocol::ImagesGenerations,
];

fn model_of(p: Protocol) -> &'static str {
    match p {
        Protocol::Messages => "claude-sonnet-4-5",
        Protocol::ImagesGenerations => "gpt-image-1",
        _ => "gpt-4o",
    }
}

/// What the canned usage (12 input of which 3 cached, 9 output) costs at
/// the table price, rounded up once: billing.md's formula.
fn expected_cost(p: Protocol) -> Option<i64> {
    let (input, cache_read, output) = match p {
        Protocol::Messages => (3_000_000u128, 300_000u128, 15_000_000u128),
        Protocol::ImagesGenerations => return None,
        _ => (2_500_000, 1_250_000, 10_000_000),
    };
    let (i, c, o) = (
        canned::INPUT_TOKENS as u128,
        canned::CACHED_INPUT_TOKENS as u128,
        canned::OUTPUT_TOKENS as u128,
    );
    // Anthropic's canned usage also writes to the cache; those tokens are
    // billed at the cache-write price.
    let (fresh, writes, write_price) = if p == Protocol::Messages {
        let w = canned::CACHE_CREATION_INPUT_TOKENS as u128;
        (i + c + w - c - w, w, 3_750_000u128)
    } else {
        (i - c, 0, 0)
    };
    let total = fresh * input + c * cache_read + writes * write_price + o * output;
    Some(total.div_ceil(1_000_000) as i64)
}

#[tokio::test]
async fn streamed_and_plain_answers_leave_equal_records() {
    let upstream = MockUpstream::start().await.unwrap();
    let config = providers_config(
        &upstream.base_url(),
        &["gpt-4o", "gpt-image-1"],
        &["claude-sonnet-4-5"],
        "",
    );
    let mut daemon = Daemon::start(bin(), &config, &[("TEST_OPENAI_KEY", OPENAI_KEY)])
        .await
        .unwrap();

    for protocol in STREAMABLE {
        for stream in [false, true] {
            // Chat streams do not ask for usage: the daemon must add and strip it.
            let body = format!(
                r#"{{"model":"{}","stream":{stream},"messages":[{{"role":"user","content":"hi"}}],"prompt":"a dot","input":"hi","n":1}}"#,
                model_of(protocol)
            );
            let resp = daemon.post_json(protocol.client_path(), body).await;
            assert_eq!(resp.status(), 200);
            let text = String::from_utf8(body_bytes(resp).await.to_vec()).unwrap();
            if protocol == Protocol::ChatCompletions && stream {
                assert!(
                    !text.contains("\"usage\":{"),
                    "the usage-only chunk the client did not ask for is stripped: {text}"
                );
                let sent = upstream.requests().last().unwrap().json();
                assert_eq!(sent["stream_options"]["include_usage"], true);
            }
        }
    }
    // A failed call is recorded too: the 500 is retried once on the same
    // (only) upstream, then its answer is passed on.
    for _ in 0..2 {
        upstream.push_reply(Reply::openai_error(
            500,
            "server_error",
            "boom",
            "upstream exploded",
        ));
    }
    let resp = daemon
        .post_json(
            "/v1/chat/completions",
            r#"{"model":"gpt-4o","messages":[]}"#,
        )
        .await;
    assert_eq!(resp.status(), 500);
    body_bytes(resp).await;

    let records = stop_and_read_ledger(&mut daemon).await;
    assert_eq!(
        records.len(),
        9,
        "one record per proxied request: {records:#?}"
    );
    for protocol in STREAMABLE {
        let of = |stream: bool| {
            records
                .iter()
                .find(|r| {
                    r["protocol"] == protocol.as_str() && r["stream"] == stream && r["ok"] == true
                })
                .unwrap_or_else(|| panic!("{protocol} stream={stream} in {records:#?}"))
        };
        let (plain, streamed) = (of(false), of(true));
        for key in [
            "input_tokens",
            "cached_input_tokens",
            "cache_write_tokens",
            "output_tokens",
            "cost_usd_micros",
            "image_count",
        ] {
            assert_eq!(
                plain[key], streamed[key],
                "{protocol}: {key} differs between JSON and stream"
            );
        }
        assert_eq!(plain["outcome"], "ok");
        assert_eq!(plain["usage_missing"], false, "{protocol}: {plain}");
        assert!(
            plain["ttft_ms"].is_null(),
            "non-streaming calls have no TTFT"
        );
        assert!(streamed["ttft_ms"].is_u64(), "{protocol}: {streamed}");
        assert_eq!(plain["model"], model_of(protocol));
        assert_eq!(
            plain["winner"],
            if protocol == Protocol::Messages {
                "an"
            } else {
                "oa"
            }
        );
        assert_eq!(plain["balance_source"], "self_funded_provider");
        assert_eq!(plain["prompt_hash"].as_str().map(str::len), Some(64));
        if let Some(cost) = expected_cost(protocol) {
            assert_eq!(plain["cost_usd_micros"], cost, "{protocol}: {plain}");
            assert_eq!(
                plain["input_tokens"],
                if protocol == Protocol::Messages {
                    canned::INPUT_TOKENS
                        + canned::CACHED_INPUT_TOKENS
                        + canned::CACHE_CREATION_INPUT_TOKENS
                } else {
                    canned::INPUT_TOKENS
                }
            );
            assert_eq!(plain["baseline_kind"], "official");
            assert_eq!(
                plain["saved_usd_micros"], 0,
                "no discount, one route: nothing saved"
            );
        } else {
            assert_eq!(plain["billing_unit"], "images");
            assert!(
                plain["cost_usd_micros"].is_i64(),
                "images are priced: {plain}"
            );
        }
    }
    let failed = records.iter().find(|r| r["ok"] == false).unwrap();
    assert_eq!(failed["outcome"], "failed");
    assert!(failed["cost_usd_micros"].is_null());
    assert_eq!(failed["attempts"][0]["status"], 500);
    assert_eq!(
        failed["attempts"][1]["status"], 500,
        "retried once: {failed}"
    );
    assert_eq!(failed["attempts"][0]["outcome"], "server_error");

    // `usage` and `calls` read the same ledger, with the daemon stopped.
    let run = |args: &'static [&'static str]| {
        let home = daemon.home().to_path_buf();
        async move {
            let out = tb_test_support::daemon::command(bin(), &home)
                .args(args)
                .output()
                .await
                .unwrap();
            assert!(
                out.status.success(),
                "{args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8(out.stdout).unwrap()
        }
    };
    let usage: serde_json::Value =
        serde_json::from_str(&run(&["usage", "--since", "1h", "--by", "model", "--json"]).await)
            .unwrap();
    let spent: i64 = records
        .iter()
        .filter_map(|r| r["cost_usd_micros"].as_i64())
        .sum();
    assert_eq!(usage["totals"]["calls"], 9);
    assert_eq!(usage["totals"]["cost_usd_micros"], spent);
    let gpt = usage["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["key"] == "gpt-4o")
        .unwrap();
    assert_eq!(
        gpt["calls"], 5,
        "4 chat/responses calls and the failed one: {usage}"
    );
    assert_eq!(gpt["ok_calls"], 4);
    let table = run(&["usage", "--by", "upstream"]).await;
    assert!(
        table.lines().any(|l| l.starts_with("oa ")) && table.contains("total: 9 calls"),
        "{table}"
    );
    let lines = run(&["calls", "--limit", "2"]).await;
    let lines: Vec<&str> = lines.lines().collect();
    assert_eq!(lines.len(), 2);
    assert!(
        lines[0].starts_with("✓ images gpt-image-1  oa  "),
        "{lines:?}"
    );
    assert!(
        lines[1].starts_with("✗ chat gpt-4o  oa→oa  ")
            && lines[1].ends_with("FAILED  ⤷ oa 500, oa 500"),
        "{lines:?}"
    );
}

#[tokio::test]
async fn embeddings_are_routed_failed_over_and_billed() {
    let broken = MockUpstream::start().await.unwrap();
    let upstream = MockUpstream::start().await.unwrap();
    for _ in 0..2 {
        broken.push_reply(Reply::openai_error(500, "server_error", "boom", "down"));
    }
    let config = format!(
        r#"
[[providers]]
id = "first"
kind = "openai"
base_url = "{}"
api_key_env = "TEST_OPENAI_KEY"
models = ["text-embedding-3-small"]

[[providers]]
id = "second"
kind = "openai"
base_url = "{}"
api_key_env = "TEST_OPENAI_KEY"
models = ["text-embedding-3-small"]
"#,
        broken.base_url(),
        upstream.base_url()
    );
    let mut daemon = Daemon::start(bin(), &config, &[("TEST_OPENAI_KEY", OPENAI_KEY)])
        .await
        .unwrap();
    let resp = daemon
        .post_json(
            "/v1/embeddings",
            r#"{"model":"text-embedding-3-small","input":"hello"}"#,
        )
        .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-tokenbuddy-upstream"], "second");
    let body: serde_json::Value = serde_json::from_slice(&body_bytes(resp).await).unwrap();
    assert_eq!(body["data"][0]["object"], "embedding");
    let sent = upstream.requests().pop().unwrap();
    assert_eq!(sent.path(), "/v1/embeddings");
    assert_eq!(sent.json()["input"], "hello");

    let records = stop_and_read_ledger(&mut daemon).await;
    assert_eq!(records.len(), 1, "{records:#?}");
    let r = &records[0];
    assert_eq!(r["protocol"], "embeddings");
    assert_eq!(r["winner"], "second");
    assert_eq!(r["attempts"][0]["status"], 500);
    assert_eq!(r["input_tokens"], canned::INPUT_TOKENS);
    // 12 tokens at $0.02 per 1M (the table's text-embedding-3-small),
    // rounded up once: 0.24 micros → 1.
    let cost = (u128::from(canned::INPUT_TOKENS) * 20_000).div_ceil(1_000_000) as i64;
    assert_eq!(r["cost_usd_micros"], cost, "{r}");
}

#[tokio::test]
async fn discounts_and_unpriced_models_are_recorded_honestly() {
    let upstream = MockUpstream::start().await.unwrap();
    let config = format!(
        "[[providers]]\nid = \"cheap\"\nkind = \"openai\"\nbase_url = \"{base}\"\napi_key = \"k\"\nmodels = [\"gpt-4o\", \"house-model\"]\ndiscount = 0.5\n",
        base = upstream.base_url()
    );
    let mut daemon = Daemon::start(bin(), &config, &[]).await.unwrap();
    for model in ["gpt-4o", "house-model"] {
        let resp = daemon
            .post_json(
                "/v1/chat/completions",
                format!(r#"{{"model":"{model}","messages":[]}}"#),
            )
            .await;
        assert_eq!(resp.status(), 200);
        body_bytes(resp).await;
    }
    let records = stop_and_read_ledger(&mut daemon).await;
    let full = expected_cost(Protocol::ChatCompletions).unwrap();
    let gpt = records.iter().find(|r| r["model"] == "gpt-4o").unwrap();
    assert_eq!(gpt["baseline_usd_micros"], full);
    let cost = gpt["cost_usd_micros"].as_i64().unwrap();
    assert!(cost < full && cost >= full / 2, "half price: {gpt}");
    assert_eq!(gpt["saved_usd_micros"], full - cost);
    let house = records
        .iter()
        .find(|r| r["model"] == "house-model")
        .unwrap();
    assert_eq!(house["unpriced"], true);
    assert!(
        house["cost_usd_micros"].is_null(),
        "unknown, never a silent zero: {house}"
    );
    assert!(house["saved_usd_micros"].is_null());
}

#[tokio::test]
async fn sigterm_under_load_loses_no_record() {
    const N: usize = 64;
    let upstream = MockUpstream::start().await.unwrap();
    let config = providers_config(
        &upstream.base_url(),
        &["gpt-4o"],
        &["claude-sonnet-4-5"],
        "",
    );
    let mut daemon = Daemon::start(bin(), &config, &[("TEST_OPENAI_KEY", OPENAI_KEY)])
        .await
        .unwrap();
    for _ in 0..N {
        upstream.push_reply(
            Reply::json(200, canned::json(Protocol::ChatCompletions, "gpt-4o"))
                .with_head_delay(Duration::from_millis(300)),
        );
    }
    let mut tasks = Vec::new();
    for i in 0..N {
        let client = daemon.client();
        tasks.push(tokio::spawn(async move {
            let body =
                format!(r#"{{"model":"gpt-4o","messages":[{{"role":"user","content":"{i}"}}]}}"#);
            let resp = client.post_json("/v1/chat/completions", body).await;
            let status = resp.status();
            body_bytes(resp).await;
            status
        }));
    }
    // Every request is in flight at the upstream: now stop the daemon.
    upstream.wait_for_requests(N).await;
    daemon.sigterm().unwrap();
    for t in tasks {
        assert_eq!(
            t.await.unwrap(),
            200,
            "in-flight requests finish after SIGTERM"
        );
    }
    assert!(daemon.wait().await.unwrap().success());
    let records = read_ledger(daemon.home()).await;
    assert_eq!(records.len(), N, "every answered request left its record");
    assert!(
        records
            .iter()
            .all(|r| r["ok"] == true && r["output_tokens"] == canned::OUTPUT_TOKENS)
    );
}

#[tokio::test]
async fn calls_tail_follows_a_running_daemon() {
    use tokio::io::{AsyncBufReadExt, BufReader};
    let upstream = MockUpstream::start().await.unwrap();
    let config = providers_config(
        &upstream.base_url(),
        &["gpt-4o"],
        &["claude-sonnet-4-5"],
        "",
    );
    let daemon = Daemon::start(bin(), &config, &[("TEST_OPENAI_KEY", OPENAI_KEY)])
        .await
        .unwrap();
    let mut tail = tb_test_support::daemon::command(bin(), daemon.home())
        .args(["calls", "--tail", "--json"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(tail.stdout.take().unwrap()).lines();

    let resp = daemon
        .post_json(
            "/v1/chat/completions",
            r#"{"model":"gpt-4o","messages":[]}"#,
        )
        .await;
    let request_id = resp.headers()["x-tokenbuddy-request-id"]
        .to_str()
        .unwrap()
        .to_string();
    body_bytes(resp).await;

    let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .expect("calls --tail printed the new call")
        .unwrap()
        .unwrap();
    let record: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(record["request_id"], request_id.as_str());
    assert_eq!(record["output_tokens"], canned::OUTPUT_TOKENS, "{record}");
    tail.kill().await.unwrap();
}

/// `tokenbuddyd calls` (one line per record, oldest first) against the
/// stopped daemon's ledger.
async fn call_lines(daemon: &Daemon) -> Vec<String> {
    cli_stdout(daemon, ["calls", "--limit", "20"])
        .await
        .lines()
        .map(str::to_owned)
        .collect()
}

#[tokio::test]
async fn image_records_carry_every_image_field_computed_by_hand() {
    let upstream = MockUpstream::start().await.unwrap();
    let config = providers_config(&upstream.base_url(), &["gpt-image-1"], &["claude-test"], "");
    let mut daemon = Daemon::start(bin(), &config, &[("TEST_OPENAI_KEY", OPENAI_KEY)])
        .await
        .unwrap();
    // Two images, the answer's own size/quality/format (the request asked
    // for others), 11 text input tokens and 543 image output tokens.
    upstream.push_reply(Reply::json(
        200,
        r#"{"created":1,"data":[{"b64_json":"AA=="},{"b64_json":"AA=="}],"size":"1024x1536","quality":"high","output_format":"webp","usage":{"input_tokens":11,"input_tokens_details":{"text_tokens":11,"image_tokens":0},"output_tokens":543,"total_tokens":554}}"#,
    ));
    for stream in [false, true] {
        let body = format!(
            r#"{{"model":"gpt-image-1","prompt":"two dots","n":2,"size":"1024x1024","quality":"low","stream":{stream}}}"#
        );
        let resp = daemon.post_json("/v1/images/generations", body).await;
        assert_eq!(resp.status(), 200);
        body_bytes(resp).await;
    }
    let records = stop_and_read_ledger(&mut daemon).await;
    assert_eq!(records.len(), 2, "{records:#?}");
    // gpt-image-1 in the table: text input $5 per 1M, image output $40 per
    // 1M. Whole answer: 11 × 5 + 543 × 40 = 21_775 micros for 2 images.
    let plain = records.iter().find(|r| r["stream"] == false).unwrap();
    let want = |cost: i64, per_image: i64, count: i64, out: i64, out_cost: i64, look: [&str; 3]| {
        serde_json::json!({
            "billing_unit": "images", "cost_usd_micros": cost,
            "image_cost_per_image_usd_micros": per_image, "image_count": count,
            "image_output_tokens": out, "image_output_cost_usd_micros": out_cost,
            "image_size": look[0], "image_quality": look[1], "image_format": look[2],
            "baseline_kind": "official", "saved_usd_micros": 0,
        })
    };
    let pick = |r: &serde_json::Value| {
        let keys = want(0, 0, 0, 0, 0, ["", "", ""]);
        let keys = keys.as_object().unwrap().keys().cloned();
        serde_json::Value::Object(keys.map(|k| (k.clone(), r[&k].clone())).collect())
    };
    assert_eq!(
        pick(plain),
        want(
            21_775,
            10_888,
            2,
            543,
            21_720,
            ["1024x1536", "high", "webp"]
        ),
        "{plain}"
    );
    // The canned stream: one image, 10 text input and 272 output tokens:
    // 10 × 5 + 272 × 40 = 10_930 micros, of which output 10_880.
    let streamed = records.iter().find(|r| r["stream"] == true).unwrap();
    assert_eq!(
        pick(streamed),
        want(10_930, 10_930, 1, 272, 10_880, ["1024x1024", "low", "png"]),
        "{streamed}"
    );
}

#[tokio::test]
async fn empty_completions_are_flagged_in_the_record_and_the_call_line() {
    let upstream = MockUpstream::start().await.unwrap();
    let config = providers_config(&upstream.base_url(), &["gpt-4o"], &["claude-test"], "");
    let mut daemon = Daemon::start(bin(), &config, &[("TEST_OPENAI_KEY", OPENAI_KEY)])
        .await
        .unwrap();
    // One route only: the empty answer is the answer, passed on and flagged.
    upstream.push_reply(Reply::json(
        200,
        r#"{"id":"x","object":"chat.completion","model":"gpt-4o","choices":[{"index":0,"message":{"role":"assistant","content":""},"finish_reason":"stop"}],"usage":{"prompt_tokens":12,"completion_tokens":0,"total_tokens":12}}"#,
    ));
    let chunk =
        |json: &str| tb_test_support::Chunk::Data(bytes::Bytes::from(format!("data: {json}\n\n")));
    upstream.push_reply(Reply::sse(vec![
        chunk(r#"{"id":"x","object":"chat.completion.chunk","model":"gpt-4o","choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}"#),
        chunk(r#"{"id":"x","object":"chat.completion.chunk","model":"gpt-4o","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}"#),
        chunk(r#"{"id":"x","object":"chat.completion.chunk","model":"gpt-4o","choices":[],"usage":{"prompt_tokens":12,"completion_tokens":0,"total_tokens":12}}"#),
        chunk("[DONE]"),
    ]));
    for stream in [false, true] {
        let body = format!(
            r#"{{"model":"gpt-4o","stream":{stream},"messages":[{{"role":"user","content":"hi"}}]}}"#
        );
        let resp = daemon.post_json("/v1/chat/completions", body).await;
        assert_eq!(resp.status(), 200);
        body_bytes(resp).await;
    }
    // A normal answer is not flagged.
    let resp = daemon
        .post_json(
            "/v1/chat/completions",
            r#"{"model":"gpt-4o","messages":[]}"#,
        )
        .await;
    body_bytes(resp).await;

    let records = stop_and_read_ledger(&mut daemon).await;
    assert_eq!(records.len(), 3, "{records:#?}");
    for r in &records[..2] {
        assert_eq!(r["ok"], true, "{r}");
        assert_eq!(r["empty_completion"], true, "{r}");
        assert_eq!(
            (r["input_tokens"].as_i64(), r["output_tokens"].as_i64()),
            (Some(12), Some(0)),
            "{r}"
        );
        // The input is still billed: 12 × $2.50 per 1M, rounded up.
        assert_eq!(r["cost_usd_micros"], 30, "{r}");
    }
    assert_eq!(records[2]["empty_completion"], false);
    let lines = call_lines(&daemon).await;
    assert_eq!(lines.len(), 3, "{lines:?}");
    // Oldest first: the two empty answers, then the normal one.
    assert!(!lines[2].contains("⚠empty"), "{lines:?}");
    for line in &lines[..2] {
        assert!(
            line.starts_with("✓ chat gpt-4o  oa  ") && line.ends_with("$0.000030  ⚠empty"),
            "{lines:?}"
        );
    }
}

#[tokio::test]
async fn a_model_without_a_list_price_saves_against_the_priciest_route() {
    let upstream = MockUpstream::start().await.unwrap();
    // Only `priced` knows a price for the house model, and the table does
    // not: with fewer than two priced routes and no list price, the
    // baseline is the priciest priced route of the plan.
    let config = format!(
        r#"
[[providers]]
id = "free"
kind = "openai"
base_url = "{base}"
api_key = "k1"
models = ["house-model"]

[[providers]]
id = "priced"
kind = "openai"
base_url = "{base}"
api_key = "k2"
models = ["house-model"]
prices = {{ house-model = {{ input = 4.0, output = 8.0 }} }}
"#,
        base = upstream.base_url()
    );
    let mut daemon = Daemon::start(bin(), &config, &[]).await.unwrap();
    for _ in 0..2 {
        upstream.push_reply(Reply::openai_error(500, "server_error", "boom", "down"));
    }
    let resp = daemon
        .post_json(
            "/v1/chat/completions",
            r#"{"model":"house-model","messages":[]}"#,
        )
        .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-tokenbuddy-upstream"], "priced");
    body_bytes(resp).await;
    let records = stop_and_read_ledger(&mut daemon).await;
    let r = &records[0];
    // 12 input (3 of them cached, at the input price: no cache-read price)
    // × $4 + 9 output × $8 per 1M = 48 + 72 = 120 micros.
    assert_eq!(r["cost_usd_micros"], 120, "{r}");
    assert_eq!(r["baseline_kind"], "priciest_route", "{r}");
    assert_eq!(r["baseline_usd_micros"], 120, "{r}");
    assert_eq!(
        r["saved_usd_micros"], 0,
        "served by the priciest: nothing saved"
    );
    assert_eq!(r["unpriced"], false);
}

/// One tiered acceptance call: the usage the upstream reports, the service
/// tier it says it served, and the cost in USD micros computed by hand.
#[derive(Clone, Copy)]
struct TieredCall {
    protocol: Protocol,
    model: &'static str,
    /// Total input, cache reads, cache writes, of them 1-hour, output.
    input: u64,
    cached: u64,
    writes: u64,
    writes_1h: u64,
    output: u64,
    service_tier: &'static str,
    price_tier: &'static str,
    cost: i64,
}

impl TieredCall {
    /// The protocol's `usage` object reporting this call.
    fn usage(&self) -> serde_json::Value {
        use serde_json::json;
        match self.protocol {
            Protocol::ChatCompletions => json!({
                "prompt_tokens": self.input,
                "completion_tokens": self.output,
                "total_tokens": self.input + self.output,
                "prompt_tokens_details": {"cached_tokens": self.cached},
            }),
            Protocol::Responses => json!({
                "input_tokens": self.input,
                "input_tokens_details": {"cached_tokens": self.cached},
                "output_tokens": self.output,
                "output_tokens_details": {"reasoning_tokens": 0},
                "total_tokens": self.input + self.output,
            }),
            _ => json!({
                "input_tokens": self.input - self.cached - self.writes,
                "cache_read_input_tokens": self.cached,
                "cache_creation_input_tokens": self.writes,
                "cache_creation": {
                    "ephemeral_5m_input_tokens": self.writes - self.writes_1h,
                    "ephemeral_1h_input_tokens": self.writes_1h,
                },
                "output_tokens": self.output,
                "service_tier": self.service_tier,
            }),
        }
    }

    /// The canned answer (or event payload) with this call's usage and
    /// service tier wherever the protocol carries them.
    fn rewrite(&self, v: &mut serde_json::Value) {
        let Some(object) = v.as_object_mut() else {
            return;
        };
        if self.protocol == Protocol::ChatCompletions {
            // Every chat answer and chunk carries `service_tier`.
            object.insert("service_tier".into(), self.service_tier.into());
        } else if object.contains_key("service_tier") {
            object.insert("service_tier".into(), self.service_tier.into());
        }
        let delta = object.get("type").and_then(|t| t.as_str()) == Some("message_delta");
        if let Some(usage) = object.get_mut("usage").filter(|u| u.is_object()) {
            *usage = if delta {
                serde_json::json!({"output_tokens": self.output})
            } else {
                self.usage()
            };
        }
        for nested in ["response", "message"] {
            if let Some(inner) = object.get_mut(nested) {
                self.rewrite(inner);
            }
        }
    }

    fn reply(&self, stream: bool) -> Reply {
        if !stream {
            let mut v: serde_json::Value =
                serde_json::from_slice(&canned::json(self.protocol, self.model)).unwrap();
            self.rewrite(&mut v);
            return Reply::json(200, serde_json::to_vec(&v).unwrap());
        }
        let events = canned::sse_events(self.protocol, self.model)
            .into_iter()
            .map(|event| {
                let text = String::from_utf8(event).unwrap();
                let lines: Vec<String> = text
                    .lines()
                    .map(|line| match line.strip_prefix("data: ") {
                        Some(data) if data != "[DONE]" => {
                            let mut v: serde_json::Value = serde_json::from_str(data).unwrap();
                            self.rewrite(&mut v);
                            format!("data: {v}")
                        }
                        _ => line.to_owned(),
                    })
                    .collect();
                tb_test_support::Chunk::Data(format!("{}\n\n", lines.join("\n")).into())
            })
            .collect();
        Reply::sse(events)
    }
}

/// Issue 16's acceptance: a 300k-token Gemini 2.5 Pro call, a priority-tier
/// GPT-5 call (chat and Responses) and a 1-hour cache write are priced to
/// the micro as the provider bills them, streamed and not, and the record
/// says which tier was billed.
/// A priority-tier GPT-5 chat call: 10k input (1k cached), 500 output.
const GPT5_PRIORITY: TieredCall = TieredCall {
    protocol: Protocol::ChatCompletions,
    model: "gpt-5",
    input: 10_000,
    cached: 1_000,
    writes: 0,
    writes_1h: 0,
    output: 500,
    service_tier: "priority",
    price_tier: "priority",
    cost: 32_750,
};

#[tokio::test]
async fn tiered_calls_cost_what_the_provider_bills() {
    let calls = [
        // 250k fresh × $2.50 + 50k cached × $0.25 + 2k × $15 (above 200k:
        // 2× input, 1.5× output, the whole call): $0.6675.
        TieredCall {
            protocol: Protocol::ChatCompletions,
            model: "gemini-2.5-pro",
            input: 300_000,
            cached: 50_000,
            writes: 0,
            writes_1h: 0,
            output: 2_000,
            service_tier: "default",
            price_tier: "above_200k",
            cost: 667_500,
        },
        // 9k × $2.50 + 1k × $0.25 + 500 × $20 (priority: 2×): $0.03275.
        GPT5_PRIORITY,
        TieredCall {
            protocol: Protocol::Responses,
            ..GPT5_PRIORITY
        },
        // 100 fresh × $3 + 4k 5-minute writes × $3.75 + 6k 1-hour writes
        // × $6 + 200 × $15: 300 + 15_000 + 36_000 + 3_000 micros.
        TieredCall {
            protocol: Protocol::Messages,
            model: "claude-sonnet-4-5",
            input: 10_100,
            cached: 0,
            writes: 10_000,
            writes_1h: 6_000,
            output: 200,
            service_tier: "standard",
            price_tier: "cache_write_1h",
            cost: 54_300,
        },
    ];
    let upstream = MockUpstream::start().await.unwrap();
    let config = providers_config(
        &upstream.base_url(),
        &["gemini-2.5-pro", "gpt-5"],
        &["claude-sonnet-4-5"],
        "",
    );
    let mut daemon = Daemon::start(bin(), &config, &[("TEST_OPENAI_KEY", OPENAI_KEY)])
        .await
        .unwrap();
    for call in &calls {
        for stream in [false, true] {
            upstream.push_reply(call.reply(stream));
            let body = format!(
                r#"{{"model":"{}","stream":{stream},"max_tokens":10,"messages":[{{"role":"user","content":"hi"}}],"input":"hi"}}"#,
                call.model
            );
            let resp = daemon.post_json(call.protocol.client_path(), body).await;
            assert_eq!(resp.status(), 200, "{} {stream}", call.model);
            body_bytes(resp).await;
        }
    }
    let records = stop_and_read_ledger(&mut daemon).await;
    assert_eq!(records.len(), 2 * calls.len(), "{records:#?}");
    for call in &calls {
        for stream in [false, true] {
            let r = records
                .iter()
                .find(|r| {
                    r["model"] == call.model
                        && r["protocol"] == call.protocol.as_str()
                        && r["stream"] == stream
                })
                .unwrap_or_else(|| panic!("{} stream={stream}: {records:#?}", call.model));
            let what = format!("{} {} stream={stream}: {r}", call.protocol, call.model);
            assert_eq!(r["ok"], true, "{what}");
            assert_eq!(r["input_tokens"], call.input, "{what}");
            assert_eq!(r["cost_usd_micros"], call.cost, "{what}");
            assert_eq!(r["est_cost_usd_micros"], call.cost, "{what}");
            assert_eq!(r["price_tier"], call.price_tier, "{what}");
            // The official baseline is tiered too: no fake saving.
            assert_eq!(r["baseline_usd_micros"], call.cost, "{what}");
            assert_eq!(r["saved_usd_micros"], 0, "{what}");
            let writes_1h = (call.protocol == Protocol::Messages).then_some(call.writes_1h);
            assert_eq!(r["cache_write_1h_tokens"].as_u64(), writes_1h, "{what}");
        }
    }
    // `calls` shows why a call cost more.
    let home = daemon.home().to_path_buf();
    let out = tb_test_support::daemon::command(bin(), &home)
        .args(["calls", "--limit", "8"])
        .output()
        .await
        .unwrap();
    assert!(out.status.success());
    let lines = String::from_utf8(out.stdout).unwrap();
    for (model, cost_and_tier) in [
        ("gemini-2.5-pro", "$0.667500 [above_200k]"),
        ("gpt-5", "$0.032750 [priority]"),
        ("claude-sonnet-4-5", "$0.054300 [cache_write_1h]"),
    ] {
        assert!(
            lines
                .lines()
                .any(|l| l.contains(model) && l.contains(cost_and_tier)),
            "{model}: {lines}"
        );
    }
}

/// Explicit `[[providers]] prices` with their own cache-read and
/// cache-write prices: each kind of token at its price (without the two
/// keys both would cost the input price: 35 micros, not 260).
#[tokio::test]
async fn explicit_cache_read_and_cache_write_prices_are_billed() {
    let upstream = MockUpstream::start().await.unwrap();
    let config = format!(
        r#"
[[providers]]
id = "an"
kind = "anthropic"
base_url = "{base}"
api_key = "k"
models = ["house-claude"]
prices = {{ house-claude = {{ input = 1.0, output = 2.0, cache_read = 10.0, cache_write = 100.0 }} }}
"#,
        base = upstream.base_url()
    );
    let mut daemon = Daemon::start(bin(), &config, &[]).await.unwrap();
    let resp = daemon
        .request(
            http::Method::POST,
            "/v1/messages",
            &[
                ("authorization", &format!("Bearer {}", daemon.token)),
                ("anthropic-version", "2023-06-01"),
            ],
            r#"{"model":"house-claude","max_tokens":5,"messages":[{"role":"user","content":"hi"}]}"#,
        )
        .await;
    assert_eq!(resp.status(), 200);
    body_bytes(resp).await;
    let records = stop_and_read_ledger(&mut daemon).await;
    let r = &records[0];
    // Canned Messages usage: 12 fresh input × $1, 3 cache reads × $10,
    // 2 cache writes × $100, 9 output × $2 per 1M = 12 + 30 + 200 + 18.
    assert_eq!(r["cost_usd_micros"], 260, "{r}");
}
