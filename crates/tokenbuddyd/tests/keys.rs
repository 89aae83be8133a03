//! Member keys end to end (issue 19): `keys create|list|revoke` against
//! the real binary; a member key authenticates like the access token and
//! names the member on every call record; `usage --by member`; a model the
//! key does not allow is refused; a revoked key is refused within one
//! second, by every daemon sharing a PostgreSQL ledger.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use tb_test_support::MockUpstream;
use tb_test_support::daemon::{Daemon, body_bytes, body_json};

const CHAT: &str = r#"{"model":"gpt-test","messages":[{"role":"user","content":"hi"}]}"#;

/// `keys create --member NAME [extra…]`: returns the whole output and the
/// key (the last line).
async fn create_key(home: &Path, member: &str, extra: &[&str]) -> (String, String) {
    let mut args = vec!["keys", "create", "--member", member];
    args.extend_from_slice(extra);
    let out = home_stdout(home, &args).await;
    let key = out.lines().last().unwrap().to_string();
    assert!(
        key.starts_with("tbm_"),
        "the last line is the key alone: {out}"
    );
    assert_eq!(key.len(), 4 + 43, "{out}");
    (out, key)
}

/// A chat request with `header: value`; returns status and body.
async fn chat_with(daemon: &Daemon, header: &str, value: &str, body: &str) -> (u16, String) {
    let resp = daemon
        .request(
            http::Method::POST,
            "/v1/chat/completions",
            &[(header, value), ("content-type", "application/json")],
            body.to_string(),
        )
        .await;
    let status = resp.status().as_u16();
    let body = body_bytes(resp).await;
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// A chat request with `key` as `Authorization: Bearer`.
async fn chat_as(daemon: &Daemon, key: &str, body: &str) -> http::Response<hyper::body::Incoming> {
    let auth = format!("Bearer {key}");
    daemon
        .request(
            http::Method::POST,
            "/v1/chat/completions",
            &[("authorization", &auth)],
            body.to_string(),
        )
        .await
}

async fn bearer(daemon: &Daemon, key: &str) -> u16 {
    chat_with(daemon, "authorization", &format!("Bearer {key}"), CHAT)
        .await
        .0
}

/// How long until `daemon` answers `method path` sent with `key` by
/// `want`, polling every 20 ms for at most 3 s.
async fn time_until_on(
    daemon: &Daemon,
    key: &str,
    want: u16,
    (method, path, body): (http::Method, &str, &str),
) -> Duration {
    let since = Instant::now();
    let auth = format!("Bearer {key}");
    loop {
        let resp = daemon
            .request(
                method.clone(),
                path,
                &[
                    ("authorization", &auth),
                    ("content-type", "application/json"),
                ],
                body.to_string(),
            )
            .await;
        if resp.status() == want {
            return since.elapsed();
        }
        assert!(
            since.elapsed() < Duration::from_secs(3),
            "the daemon never answered {want} to {path} for the key"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// [`time_until_on`] for a chat request.
async fn time_until(daemon: &Daemon, key: &str, want: u16) -> Duration {
    let chat = (http::Method::POST, "/v1/chat/completions", CHAT);
    time_until_on(daemon, key, want, chat).await
}

/// Waits until `daemon` knows `key` without spending a request of its
/// window: a GET of the models list needs authentication but counts
/// nothing.
async fn time_until_known(daemon: &Daemon, key: &str) {
    time_until_on(daemon, key, 200, (http::Method::GET, "/v1/models", "")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn member_keys_authenticate_attribute_limit_models_and_revoke() {
    let Setup { upstream, daemon } = setup().await;
    let home = daemon.home();
    let (out, ana) = create_key(home, "ana", &[]).await;
    assert!(out.contains("shown only this once"), "{out}");
    let list = home_stdout(home, ["keys", "list"]).await;
    assert!(list.contains("ana") && list.contains("valid"), "{list}");
    assert!(
        !list.contains(&ana),
        "keys list must never show a key: {list}"
    );

    // The key is accepted as soon as the directory reloads (≤ 1 s).
    assert!(time_until(&daemon, &ana, 200).await < Duration::from_secs(1));
    let (status, _) = chat_with(&daemon, "x-api-key", &ana, CHAT).await;
    assert_eq!(status, 200);
    post_ok(&daemon, CHAT).await; // the access token still works
    assert_eq!(bearer(&daemon, "tbm_not-a-key").await, 401);

    // Every call record carries its member; the access token's none.
    let calls = wait_for_calls(&daemon, 3).await;
    let mut members: Vec<String> = calls["calls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["member"].as_str().unwrap_or("").to_string())
        .collect();
    members.sort();
    assert_eq!(members, ["", "ana", "ana"]);
    let usage = home_stdout(home, ["usage", "--by", "member", "--json"]).await;
    let usage: serde_json::Value = serde_json::from_str(&usage).unwrap();
    assert_eq!(usage["by"], "member");
    let rows = usage["rows"].as_array().unwrap();
    let calls_of = |key: &str| {
        rows.iter()
            .find(|r| r["key"] == key)
            .map(|r| r["calls"].as_u64().unwrap())
    };
    assert_eq!(calls_of("ana"), Some(2), "{usage}");
    assert_eq!(calls_of(""), Some(1), "{usage}");
    let api = get_json(&daemon, "/v1/usage?by=member").await;
    assert_eq!(api["rows"], usage["rows"]);
    let table = home_stdout(home, ["usage", "--by", "member"]).await;
    assert!(table.lines().any(|l| l.starts_with("ana ")), "{table}");

    // A key limited to some models refuses the others, protocol-shaped.
    let (_, bo) = create_key(home, "bo", &["--models", "gpt-test"]).await;
    time_until(&daemon, &bo, 200).await;
    let other = r#"{"model":"claude-test","messages":[{"role":"user","content":"hi"}]}"#;
    let before = upstream.request_count();
    let resp = chat_as(&daemon, &bo, other).await;
    assert_eq!(resp.status(), 403);
    let err = body_json(resp).await;
    assert_eq!(err["error"]["code"], "model_not_allowed", "{err}");
    let message = err["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("claude-test") && message.contains("bo"),
        "{message}"
    );
    assert_eq!(
        upstream.request_count(),
        before,
        "a refused model reaches no upstream"
    );

    // Revoked: refused within a second; the access token unaffected.
    home_stdout(home, ["keys", "revoke", "--member", "ana"]).await;
    let took = time_until(&daemon, &ana, 401).await;
    assert!(took < Duration::from_secs(1), "revocation took {took:?}");
    let before = upstream.request_count();
    assert_eq!(bearer(&daemon, &ana).await, 401);
    post_ok(&daemon, CHAT).await;
    assert_eq!(
        upstream.request_count(),
        before + 1,
        "a revoked key reaches no upstream"
    );
    let list = home_stdout(home, ["keys", "list"]).await;
    assert!(
        list.lines()
            .any(|l| l.contains("ana") && l.contains("revoked")),
        "{list}"
    );

    // Bad input: precise errors, exit 2 for usage, 1 for nothing to revoke.
    let out = tb_test_support::daemon::command(bin(), home)
        .args(["keys", "create", "--member", "has space"])
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a member name"));
    let out = tb_test_support::daemon::command(bin(), home)
        .args(["keys", "revoke", "--member", "ana"])
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no valid key for member ana"));

    let mut daemon = daemon;
    let records = stop_and_read_ledger(&mut daemon).await;
    let all = serde_json::to_string(&records).unwrap();
    assert!(
        !all.contains(&ana) && !all.contains(&bo),
        "a key is in a call record"
    );
    assert!(!daemon.logs().contains(&ana), "a key is in the logs");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_daemons_on_one_postgres_share_keys_and_revocations() {
    let db = PgDatabase::create().await;
    let upstream = MockUpstream::start().await.unwrap();
    let config = two_provider_config(
        &upstream.base_url(),
        &format!("[ledger]\nurl = \"{}\"\n", db.url()),
    );
    let env = [("TEST_OPENAI_KEY", OPENAI_KEY)];
    let a = Daemon::start(bin(), &config, &env).await.unwrap();
    let b = Daemon::start(bin(), &config, &env).await.unwrap();

    // Created through one daemon's home, accepted by the other.
    let (_, key) = create_key(a.home(), "cy", &[]).await;
    assert!(time_until(&b, &key, 200).await < Duration::from_secs(1));
    assert!(time_until(&a, &key, 200).await < Duration::from_secs(1));

    // Revoked through the other, refused by the first within a second.
    home_stdout(b.home(), ["keys", "revoke", "--member", "cy"]).await;
    let revoked = Instant::now();
    time_until(&a, &key, 401).await;
    time_until(&b, &key, 401).await;
    let took = revoked.elapsed();
    assert!(took < Duration::from_secs(1), "revocation took {took:?}");

    // Requests per minute are counted across both daemons.
    assert_rpm_holds(&[&a, &b], a.home()).await;

    // Both daemons' calls are in the one ledger, with the member.
    let usage = home_stdout(a.home(), ["usage", "--by", "member", "--json"]).await;
    let usage: serde_json::Value = serde_json::from_str(&usage).unwrap();
    let cy = usage["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["key"] == "cy")
        .map(|r| r["calls"].as_u64().unwrap());
    assert!(cy >= Some(2), "{usage}");
}

/// The current minute window (as the daemon counts).
fn window() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis()
        / 60_000
}

/// Sends `n` requests with `key` through `daemons` in turn and returns the
/// statuses, or `None` when a minute window ended meanwhile (the counts
/// restarted: the caller tries again).
async fn burst(daemons: &[&Daemon], key: &str, n: usize) -> Option<Vec<u16>> {
    let start = window();
    let mut statuses = Vec::new();
    for i in 0..n {
        statuses.push(bearer(daemons[i % daemons.len()], key).await);
    }
    (window() == start).then_some(statuses)
}

/// A key with `--rpm 2`: the third request in a minute gets a
/// protocol-shaped 429 with `Retry-After` and the reason. `daemons` share
/// the counters.
async fn assert_rpm_holds(daemons: &[&Daemon], home: &Path) {
    for attempt in 0..2 {
        let member = format!("rpm{attempt}");
        let (_, key) = create_key(home, &member, &["--rpm", "2"]).await;
        for d in daemons {
            time_until_known(d, &key).await;
        }
        // `time_until_known` spent no request of the window.
        let Some(statuses) = burst(daemons, &key, 3).await else {
            continue;
        };
        assert_eq!(
            statuses,
            [200, 200, 429],
            "rpm 2 across {} daemon(s)",
            daemons.len()
        );
        let resp = chat_as(daemons[0], &key, CHAT).await;
        assert_eq!(resp.status(), 429);
        let retry: u64 = resp.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((1..=60).contains(&retry), "{retry}");
        let err = body_json(resp).await;
        assert_eq!(err["error"]["code"], "rate_limit_exceeded", "{err}");
        assert!(
            err["error"]["message"]
                .as_str()
                .unwrap()
                .contains("2 requests per minute"),
            "{err}"
        );
        return;
    }
    panic!("two minute windows ended mid-burst");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn member_limits_refuse_over_rpm_tpm_and_budget() {
    let upstream = MockUpstream::start().await.unwrap();
    let config = format!(
        "{}prices = {{ gpt-test = {{ input = 1000.0, output = 1000.0 }} }}\n",
        all_protocols_provider("oa", &upstream.base_url(), "gpt-test")
    );
    let mut daemon = Daemon::start(bin(), &config, &[]).await.unwrap();
    let home = daemon.home().to_path_buf();
    assert_rpm_holds(&[&daemon], &home).await;

    // Budget: the first call spends more than a micro-dollar; once it is
    // recorded, the next is refused with 402 and the reason.
    let (out, key) = create_key(&home, "dee", &["--budget-usd", "0.000001"]).await;
    assert!(out.contains("budget $0.000001"), "{out}");
    time_until_known(&daemon, &key).await;
    assert_eq!(bearer(&daemon, &key).await, 200);
    let refused = time_until(&daemon, &key, 402).await;
    assert!(refused < Duration::from_secs(2));
    let (_, body) = chat_with(&daemon, "authorization", &format!("Bearer {key}"), CHAT).await;
    assert!(
        body.contains("member_budget_spent") && body.contains("budget"),
        "{body}"
    );

    // Tokens per minute: once the recorded tokens reach the limit, a 429.
    let (_, key) = create_key(&home, "eve", &["--tpm", "1"]).await;
    time_until_known(&daemon, &key).await;
    assert_eq!(bearer(&daemon, &key).await, 200);
    let (status, body) = loop {
        let (status, body) =
            chat_with(&daemon, "authorization", &format!("Bearer {key}"), CHAT).await;
        if status != 200 {
            break (status, body);
        }
    };
    assert_eq!(status, 429, "{body}");
    assert!(body.contains("tokens per minute"), "{body}");

    let list = home_stdout(&home, ["keys", "list"]).await;
    assert!(list.contains("1 tpm") && list.contains("2 rpm"), "{list}");
    let out = tb_test_support::daemon::command(bin(), &home)
        .args(["keys", "create", "--member", "x", "--budget-usd", "1.5e3"])
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not an amount in USD such as"));
    daemon.sigterm().unwrap();
    daemon.wait().await.unwrap();
}

/// A chat request capped at 20 output tokens: the daemon reserves about
/// 27 input (80 bytes / 3) + 20 output tokens for it; the mock answers
/// with 12 + 9.
const CAPPED: &str =
    r#"{"model":"gpt-test","max_tokens":20,"messages":[{"role":"user","content":"hi"}]}"#;

/// What one request of a concurrent burst got.
struct Answer {
    status: u16,
    retry_after: Option<u64>,
    body: String,
}

/// `n` concurrent chat requests with `key`, spread over `daemons`, against
/// an upstream that holds each answer `delay` (so they are all in flight
/// at once).
async fn concurrent_burst(
    upstream: &MockUpstream,
    daemons: &[&Daemon],
    key: &str,
    n: usize,
) -> Vec<Answer> {
    let slow =
        tb_test_support::Reply::canned(tb_domain::Protocol::ChatCompletions, "gpt-test", false)
            .with_head_delay(Duration::from_millis(600));
    upstream.push_replies(std::iter::repeat_n(slow, n));
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..n {
        let client = daemons[i % daemons.len()].client();
        let auth = format!("Bearer {key}");
        tasks.spawn(async move {
            let resp = client
                .request(
                    http::Method::POST,
                    "/v1/chat/completions",
                    &[
                        ("authorization", &auth),
                        ("content-type", "application/json"),
                    ],
                    CAPPED.to_string(),
                )
                .await;
            let status = resp.status().as_u16();
            let retry_after = resp
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok()?.parse().ok());
            let body = String::from_utf8_lossy(&body_bytes(resp).await).into_owned();
            Answer {
                status,
                retry_after,
                body,
            }
        });
    }
    let mut out = Vec::new();
    while let Some(done) = tasks.join_next().await {
        out.push(done.unwrap());
    }
    out
}

/// The member's recorded calls (polling until `n` are there).
async fn member_calls(daemon: &Daemon, member: &str, n: usize) -> Vec<serde_json::Value> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let calls = get_json(daemon, "/v1/calls?limit=100").await;
        let mine: Vec<serde_json::Value> = calls["calls"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["member"] == member)
            .cloned()
            .collect();
        if mine.len() >= n {
            assert_eq!(mine.len(), n, "more calls recorded than admitted");
            return mine;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {n} calls recorded",
            mine.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn count(answers: &[Answer], status: u16) -> usize {
    answers.iter().filter(|a| a.status == status).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn budgets_and_tpm_hold_across_daemons_with_calls_in_flight() {
    let db = PgDatabase::create().await;
    let upstream = MockUpstream::start().await.unwrap();
    // $1,000 per 1M tokens: 1,000 micros a token, 21,000 a canned call.
    let config = format!(
        "{}prices = {{ gpt-test = {{ input = 1000.0, output = 1000.0 }} }}\n[ledger]\nurl = \"{}\"\n",
        all_protocols_provider("oa", &upstream.base_url(), "gpt-test"),
        db.url()
    );
    let a = Daemon::start(bin(), &config, &[]).await.unwrap();
    let b = Daemon::start(bin(), &config, &[]).await.unwrap();

    // Budget $0.10: 16 concurrent calls of 21,000 each would spend 336,000
    // if calls in flight were not reserved.
    let budget = 100_000;
    let (_, key) = create_key(a.home(), "fay", &["--budget-usd", "0.1"]).await;
    time_until_known(&a, &key).await;
    time_until_known(&b, &key).await;
    let trips_before = round_trips(&a).await + round_trips(&b).await;
    let answers = concurrent_burst(&upstream, &[&a, &b], &key, 16).await;
    let (ok, spent) = (count(&answers, 200), count(&answers, 402));
    assert_eq!(ok + spent, 16, "only 200 or 402");
    assert!(ok >= 1 && spent >= 1, "{ok} admitted, {spent} refused");
    let refused = answers.iter().find(|a| a.status == 402).unwrap();
    assert!(
        refused.body.contains("member_budget_spent") && refused.body.contains("reserved"),
        "{}",
        refused.body
    );
    let calls = member_calls(&a, "fay", ok).await;
    let costs: Vec<i64> = calls
        .iter()
        .map(|c| c["cost_usd_micros"].as_i64().unwrap())
        .collect();
    let total: i64 = costs.iter().sum();
    let one_call = costs.iter().copied().max().unwrap();
    assert!(
        total <= budget + one_call,
        "recorded {total} against a {budget} budget ({ok} calls admitted)"
    );
    // Admission costs one PostgreSQL round trip (the first, three: the
    // member's row is created); the writer settles per batch.
    let trips = round_trips(&a).await + round_trips(&b).await - trips_before;
    assert!(
        (16..=16 + 2 + 2 * ok as u64).contains(&trips),
        "{trips} round trips for 16 requests"
    );
    // The admitted calls spent less than they reserved: the rest of the
    // budget is spent one call at a time, then the Anthropic protocol's
    // refusal is its own shape.
    let messages =
        r#"{"model":"gpt-test","max_tokens":20,"messages":[{"role":"user","content":"hi"}]}"#;
    let mut tries = 0;
    let resp = loop {
        let resp = a
            .request(
                http::Method::POST,
                "/v1/messages",
                &[("x-api-key", &key), ("content-type", "application/json")],
                messages,
            )
            .await;
        if resp.status() != 200 {
            break resp;
        }
        body_bytes(resp).await;
        tries += 1;
        assert!(tries < 10, "the budget is never spent");
    };
    assert_eq!(resp.status(), 402);
    let err = body_json(resp).await;
    assert_eq!(err["type"], "error", "{err}");
    assert_eq!(err["error"]["type"], "billing_error", "{err}");

    // Tokens per minute: 100, about 47 reserved per call: three admitted
    // of sixteen in flight, the rest 429 with Retry-After.
    for attempt in 0..2 {
        let member = format!("gus{attempt}");
        let (_, key) = create_key(a.home(), &member, &["--tpm", "100"]).await;
        time_until_known(&a, &key).await;
        time_until_known(&b, &key).await;
        let start = window();
        let answers = concurrent_burst(&upstream, &[&a, &b], &key, 16).await;
        if window() != start {
            continue; // a new minute window began mid-burst
        }
        let (ok, limited) = (count(&answers, 200), count(&answers, 429));
        assert_eq!(ok + limited, 16, "only 200 or 429");
        assert!(ok >= 1 && limited >= 1, "{ok} admitted, {limited} limited");
        let refused = answers.iter().find(|a| a.status == 429).unwrap();
        assert!((1..=60).contains(&refused.retry_after.unwrap()));
        assert!(
            refused.body.contains("rate_limit_exceeded")
                && refused.body.contains("tokens per minute"),
            "{}",
            refused.body
        );
        let calls = member_calls(&a, &member, ok).await;
        let tokens: Vec<u64> = calls
            .iter()
            .map(|c| c["input_tokens"].as_u64().unwrap() + c["output_tokens"].as_u64().unwrap())
            .collect();
        let total: u64 = tokens.iter().sum();
        assert!(
            total <= 100 + tokens.iter().copied().max().unwrap(),
            "{total} tokens recorded against a limit of 100 a minute"
        );
        return;
    }
    panic!("two minute windows ended mid-burst");
}

/// `tb_member_pg_round_trips_total` of `daemon`.
async fn round_trips(daemon: &Daemon) -> u64 {
    let (status, text) = control(daemon, http::Method::GET, "/metrics", None, false, "").await;
    assert_eq!(status, 200);
    text.lines()
        .find_map(|l| l.strip_prefix("tb_member_pg_round_trips_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no tb_member_pg_round_trips_total in {text}"))
}
