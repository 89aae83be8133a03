//! Shared setup for the end-to-end tests: a mock upstream and the real
//! daemon binary configured to use it.
#![allow(
    dead_code,
    missing_docs,
    unreachable_pub,
    clippy::unwrap_used,
    clippy::expect_used
)]

pub mod team;

use std::path::Path;

use sqlx::Connection as _;

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

/// A `[[providers]]` entry of kind openai serving `model` over all four
/// protocols at `url` (key `k-<id>`).
pub fn all_protocols_provider(id: &str, url: &str, model: &str) -> String {
    format!(
        "[[providers]]\nid = \"{id}\"\nkind = \"openai\"\nbase_url = \"{url}\"\napi_key = \"k-{id}\"\nmodels = [\"{model}\"]\nprotocols = [\"chat_completions\", \"responses\", \"messages\", \"images_generations\"]\n"
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

/// The index of the first content event of a canned stream: until it,
/// the daemon holds the stream back (it may still fail over).
pub fn first_content(protocol: tb_domain::Protocol, events: &[Vec<u8>]) -> usize {
    let mut tap =
        tb_billing::usage::UsageTap::new(protocol, &tb_billing::usage::RequestFacts::default());
    for (i, e) in events.iter().enumerate() {
        let text = String::from_utf8_lossy(e);
        let name = text.lines().find_map(|l| l.strip_prefix("event: "));
        let data: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("data: "))
            .collect();
        if tap.on_event(name, &data.join("\n")) == tb_billing::usage::EventClass::Content {
            return i;
        }
    }
    panic!("no content event in the canned {protocol} stream")
}

/// An SSE reply that sends everything up to the first content event, then
/// waits for the returned gate before sending the rest: proves streaming
/// without timing. Also returns the index of that content event.
pub fn gated_after_first_content(
    protocol: tb_domain::Protocol,
    events: &[Vec<u8>],
) -> (Reply, Arc<Notify>, usize) {
    let k = first_content(protocol, events);
    let gate = Arc::new(Notify::new());
    let mut chunks: Vec<Chunk> = events[..=k]
        .iter()
        .map(|e| Chunk::Data(Bytes::from(e.clone())))
        .collect();
    chunks.push(Chunk::WaitFor(Arc::clone(&gate)));
    chunks.extend(
        events[k + 1..]
            .iter()
            .map(|e| Chunk::Data(Bytes::from(e.clone()))),
    );
    (Reply::sse(chunks), gate, k)
}

/// Everything up to the first content event, then silence.
pub fn hang_after_first_content(
    protocol: tb_domain::Protocol,
    events: &[Vec<u8>],
) -> (Reply, usize) {
    let k = first_content(protocol, events);
    let mut chunks: Vec<Chunk> = events[..=k]
        .iter()
        .map(|e| Chunk::Data(Bytes::from(e.clone())))
        .collect();
    chunks.push(Chunk::Hang);
    (Reply::sse(chunks), k)
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
    let records = read_ledger(daemon.home()).await;
    assert_no_secrets(daemon, &records);
    records
}

/// The access token and the provider keys of [`two_provider_config`] are
/// in no log line and no call record.
pub fn assert_no_secrets(daemon: &Daemon, records: &[serde_json::Value]) {
    let logs = daemon.logs();
    let records = serde_json::to_string(records).unwrap();
    for (name, secret) in [
        ("access token", daemon.token.as_str()),
        ("provider key", OPENAI_KEY),
        ("provider key", ANTHROPIC_KEY),
    ] {
        assert!(!logs.contains(secret), "the {name} is in the daemon's logs");
        assert!(!records.contains(secret), "the {name} is in a call record");
    }
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

/// One request to the control plane: optional `Host` override and access
/// token; returns status and body text.
pub async fn control(
    daemon: &Daemon,
    method: http::Method,
    path: &str,
    host: Option<&str>,
    auth: bool,
    body: &str,
) -> (u16, String) {
    let url = daemon
        .control_url
        .clone()
        .expect("the daemon printed its control URL");
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Full<Bytes>>();
    let mut req = http::Request::new(http_body_util::Full::new(Bytes::from(body.to_string())));
    *req.method_mut() = method;
    *req.uri_mut() = format!("{url}{path}").parse().unwrap();
    if let Some(h) = host {
        req.headers_mut()
            .insert(http::header::HOST, h.parse().unwrap());
    }
    if auth {
        req.headers_mut().insert(
            http::header::AUTHORIZATION,
            format!("Bearer {}", daemon.token).parse().unwrap(),
        );
    }
    let resp = client.request(req).await.unwrap();
    let status = resp.status().as_u16();
    let text = String::from_utf8(
        http_body_util::BodyExt::collect(resp.into_body())
            .await
            .unwrap()
            .to_bytes()
            .to_vec(),
    )
    .unwrap();
    (status, text)
}

/// `GET` on the control plane, expecting 200 and JSON.
pub async fn get_json(daemon: &Daemon, path: &str) -> serde_json::Value {
    let (status, text) = control(daemon, http::Method::GET, path, None, false, "").await;
    assert_eq!(status, 200, "{path}: {text}");
    serde_json::from_str(&text).unwrap()
}

/// Parses the Prometheus text format: metric name + sorted labels → value.
pub fn parse_metrics(text: &str) -> std::collections::BTreeMap<String, f64> {
    let mut out = std::collections::BTreeMap::new();
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
    {
        let (series, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("not a sample: {line}"));
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("bad value in {line}"));
        out.insert(series.to_string(), value);
    }
    out
}

/// The protocols that answer both streamed and whole, which the
/// per-protocol suites walk (embeddings answer whole only and have their
/// own test in billing.rs).
pub const STREAMING_PROTOCOLS: [tb_domain::Protocol; 4] = [
    tb_domain::Protocol::ChatCompletions,
    tb_domain::Protocol::Responses,
    tb_domain::Protocol::Messages,
    tb_domain::Protocol::ImagesGenerations,
];

/// An upstream `error` event in `p`'s stream dialect.
pub fn error_event(p: tb_domain::Protocol) -> &'static str {
    match p {
        tb_domain::Protocol::ChatCompletions
        | tb_domain::Protocol::Embeddings
        | tb_domain::Protocol::Videos => {
            "data: {\"error\":{\"message\":\"overloaded\",\"type\":\"server_error\"}}\n\n"
        }
        tb_domain::Protocol::Messages => {
            "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"overloaded\"}}\n\n"
        }
        tb_domain::Protocol::Responses => {
            "event: error\ndata: {\"type\":\"error\",\"code\":\"server_error\",\"message\":\"overloaded\"}\n\n"
        }
        tb_domain::Protocol::ImagesGenerations | tb_domain::Protocol::ImagesEdits => {
            "event: error\ndata: {\"type\":\"error\",\"error\":{\"message\":\"overloaded\"}}\n\n"
        }
    }
}

/// The events of `target` in a daemon's JSON logs (`log.format = "json"`,
/// one flattened object per line), in order.
#[allow(dead_code)]
pub fn log_events(daemon: &Daemon, target: &str) -> Vec<serde_json::Value> {
    daemon
        .logs()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["target"] == target)
        .collect()
}

/// The machine's PostgreSQL server (trust auth).
pub const POSTGRES_SERVER: &str = "postgres://postgres@127.0.0.1:5432";

/// A database of its own on the machine's PostgreSQL server, dropped when
/// the test ends.
pub struct PgDatabase {
    pub name: String,
}

impl PgDatabase {
    pub async fn create() -> PgDatabase {
        let name = format!("tb_e2e_{}", uuid::Uuid::now_v7().simple());
        let mut admin = sqlx::PgConnection::connect(&format!("{POSTGRES_SERVER}/postgres"))
            .await
            .unwrap_or_else(|e| panic!("these tests need PostgreSQL at {POSTGRES_SERVER}: {e}"));
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut admin)
            .await
            .unwrap();
        PgDatabase { name }
    }

    pub fn url_via(&self, host_port: &str) -> String {
        format!("postgres://postgres@{host_port}/{}", self.name)
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        let name = self.name.clone();
        // Drop cannot await: a thread with its own runtime.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                if let Ok(mut admin) =
                    sqlx::PgConnection::connect(&format!("{POSTGRES_SERVER}/postgres")).await
                {
                    let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .execute(&mut admin)
                        .await;
                }
            });
        })
        .join();
    }
}

impl PgDatabase {
    /// The URL of this database on the machine's server.
    pub fn url(&self) -> String {
        self.url_via("127.0.0.1:5432")
    }

    /// Ends every server session on this database (what a server restart
    /// does to them), this call's own aside; how many it ended.
    pub async fn terminate_backends(&self) -> i64 {
        let mut admin = sqlx::PgConnection::connect(&format!("{POSTGRES_SERVER}/postgres"))
            .await
            .unwrap();
        sqlx::query_scalar(
            "SELECT COUNT(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = $1 AND pid <> pg_backend_pid()) AS ended",
        )
        .bind(&self.name)
        .fetch_one(&mut admin)
        .await
        .unwrap()
    }
}

/// Runs `tokenbuddyd ARGS` against the daemon's home and returns its
/// stdout, failing the test (with its stderr) when it does not succeed.
#[allow(dead_code)]
pub async fn cli_stdout<I, S>(daemon: &Daemon, args: I) -> String
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    home_stdout(daemon.home(), args).await
}

/// Runs `tokenbuddyd ARGS` with `home` as its home (no daemon needed) and
/// returns its stdout, failing the test (with its stderr) when it does not
/// succeed.
#[allow(dead_code)]
pub async fn home_stdout<I, S>(home: &Path, args: I) -> String
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    let out = tb_test_support::daemon::command(bin(), home)
        .args(args)
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "tokenbuddyd failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Posts a chat completion `body` and reads the whole answer, which must
/// be a 200.
pub async fn post_ok(daemon: &Daemon, body: &str) {
    let resp = daemon
        .post_json("/v1/chat/completions", body.to_string())
        .await;
    assert_eq!(resp.status(), 200);
    tb_test_support::daemon::body_bytes(resp).await;
}

/// `GET /v1/calls?limit=100` once it lists `n` calls: records reach the
/// ledger off the request path (the writer commits within 50 ms).
pub async fn wait_for_calls(daemon: &Daemon, n: usize) -> serde_json::Value {
    let mut calls = serde_json::Value::Null;
    for _ in 0..100 {
        calls = get_json(daemon, "/v1/calls?limit=100").await;
        if calls["calls"].as_array().map_or(0, Vec::len) == n {
            return calls;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("the ledger did not list {n} calls: {calls}")
}

/// Runs `args` against the config in `home`, which must be refused with
/// exit 2 and an error naming the config file; returns stderr.
pub async fn refused(home: &Path, args: &[&str]) -> String {
    let out = tb_test_support::daemon::command(bin(), home)
        .args(args)
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
    assert!(
        stderr.contains(&home.join("config.toml").display().to_string()),
        "{stderr}"
    );
    stderr
}

/// A chat completions stream in flight through a daemon, held by the mock
/// upstream after its first content event ([`held_stream`]).
#[allow(dead_code)]
pub struct HeldStream {
    body: hyper::body::Incoming,
    gate: Arc<Notify>,
    rest: Bytes,
}

/// Starts a streamed chat request through `daemon` that `upstream` holds
/// after its first content event, and reads the first frame: a request
/// in flight for shutdown tests. [`HeldStream::finish`] lets it end.
#[allow(dead_code)]
pub async fn held_stream(upstream: &MockUpstream, daemon: &Daemon) -> HeldStream {
    use http_body_util::BodyExt as _;
    let protocol = tb_domain::Protocol::ChatCompletions;
    let events = tb_test_support::canned::sse_events(protocol, "gpt-test");
    let (reply, gate, k) = gated_after_first_content(protocol, &events);
    upstream.push_reply(reply);
    let resp = daemon
        .post_json(
            "/v1/chat/completions",
            r#"{"model":"gpt-test","stream":true,"stream_options":{"include_usage":true}}"#,
        )
        .await;
    assert_eq!(resp.status(), 200);
    let mut body = resp.into_body();
    body.frame().await.unwrap().unwrap();
    HeldStream {
        body,
        gate,
        rest: Bytes::from(events[k + 1..].concat()),
    }
}

impl HeldStream {
    /// Lets the upstream send the rest; the client gets all of it.
    #[allow(dead_code)]
    pub async fn finish(self) {
        use http_body_util::BodyExt as _;
        self.gate.notify_one();
        let rest = self.body.collect().await.unwrap().to_bytes();
        assert_eq!(rest, self.rest, "the stream in flight finished in full");
    }
}

/// `keys create --member NAME extra…` in `daemon`'s home; the key, once
/// `daemon` accepts it (a models list spends nothing).
pub async fn member_key(daemon: &Daemon, member: &str, extra: &[&str]) -> String {
    let mut args = vec!["keys", "create", "--member", member];
    args.extend_from_slice(extra);
    let out = home_stdout(daemon.home(), &args).await;
    let key = out.lines().last().unwrap().to_string();
    let auth = format!("Bearer {key}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
    loop {
        let resp = daemon
            .request(
                http::Method::GET,
                "/v1/models",
                &[("authorization", &auth)],
                "",
            )
            .await;
        if resp.status() == 200 {
            return key;
        }
        assert!(std::time::Instant::now() < deadline, "key never accepted");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// A video submit of `model` for `seconds` with member key `key`.
pub async fn submit_video_as(
    daemon: &Daemon,
    key: &str,
    model: &str,
    seconds: u32,
) -> http::Response<hyper::body::Incoming> {
    let auth = format!("Bearer {key}");
    daemon
        .request(
            http::Method::POST,
            "/v1/videos",
            &[
                ("authorization", &auth),
                ("content-type", "application/json"),
            ],
            format!(r#"{{"model":"{model}","prompt":"a cat","seconds":"{seconds}"}}"#),
        )
        .await
}
