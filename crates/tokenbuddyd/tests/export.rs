//! End-to-end export of call records (`[export.http]`, `[export.otlp]`)
//! against receivers started by the test: JSON batches with the configured
//! auth header that ride out a receiver outage, drops counted only past the
//! queue bound, no prompt or secret in any byte sent, and OTLP traces with
//! one span per request and per attempt, joined to the client's
//! `traceparent`. The state shows in `/v1/status`, `doctor` and `/metrics`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use common::*;
use http::{HeaderMap, Method, Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AttrValue;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message as _;
use serde_json::Value;
use tb_test_support::daemon::{Daemon, body_bytes};
use tb_test_support::{MockUpstream, Reply};
use tokio::sync::watch;

const PROMPT_MARKER: &str = "PROMPT-MARKER-7f3a9c";
const EXPORT_SECRET: &str = "Bearer export-s3cret-token";

/// One request the receiver accepted.
#[derive(Debug, Clone)]
struct Received {
    path: String,
    headers: HeaderMap,
    body: Bytes,
}

/// A loopback HTTP receiver that answers 503 while "down" and records
/// (then 200s) what it gets while "up"; every byte it is sent, accepted or
/// not, is kept for the no-secret check.
struct Receiver {
    addr: SocketAddr,
    up: Arc<AtomicBool>,
    accepted: Arc<Mutex<Vec<Received>>>,
    all_bytes: Arc<Mutex<Vec<u8>>>,
    /// Accepted requests so far.
    accepted_count: watch::Receiver<usize>,
    /// Refused (503) requests so far.
    refused_count: watch::Receiver<usize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Receiver {
    async fn start(up: bool) -> Receiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let up = Arc::new(AtomicBool::new(up));
        let accepted = Arc::new(Mutex::new(Vec::new()));
        let all_bytes = Arc::new(Mutex::new(Vec::new()));
        let (accepted_tx, accepted_count) = watch::channel(0usize);
        let (refused_tx, refused_count) = watch::channel(0usize);
        let accepted_tx = Arc::new(accepted_tx);
        let refused_tx = Arc::new(refused_tx);
        let state = (
            Arc::clone(&up),
            Arc::clone(&accepted),
            Arc::clone(&all_bytes),
        );
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let (up, accepted, all_bytes) = state.clone();
                let (accepted_tx, refused_tx) = (Arc::clone(&accepted_tx), Arc::clone(&refused_tx));
                tokio::spawn(async move {
                    let service = service_fn(move |req: Request<Incoming>| {
                        let (up, accepted, all_bytes) =
                            (up.clone(), accepted.clone(), all_bytes.clone());
                        let (accepted_tx, refused_tx) = (accepted_tx.clone(), refused_tx.clone());
                        async move {
                            let (parts, body) = req.into_parts();
                            let body = body.collect().await.unwrap().to_bytes();
                            {
                                let mut all = all_bytes.lock().unwrap();
                                for (name, value) in &parts.headers {
                                    all.extend_from_slice(name.as_str().as_bytes());
                                    all.extend_from_slice(value.as_bytes());
                                }
                                all.extend_from_slice(parts.uri.to_string().as_bytes());
                                all.extend_from_slice(&body);
                            }
                            let status = if up.load(Ordering::SeqCst) {
                                accepted.lock().unwrap().push(Received {
                                    path: parts.uri.path().to_owned(),
                                    headers: parts.headers,
                                    body,
                                });
                                accepted_tx.send_modify(|n| *n += 1);
                                200
                            } else {
                                refused_tx.send_modify(|n| *n += 1);
                                503
                            };
                            let mut resp = Response::new(Full::new(Bytes::from_static(b"{}")));
                            *resp.status_mut() = http::StatusCode::from_u16(status).unwrap();
                            Ok::<_, std::convert::Infallible>(resp)
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tcp), service)
                        .await;
                });
            }
        });
        Receiver {
            addr,
            up,
            accepted,
            all_bytes,
            accepted_count,
            refused_count,
            task,
        }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn set_up(&self, up: bool) {
        self.up.store(up, Ordering::SeqCst);
    }

    async fn wait_accepted(&self, n: usize) -> Vec<Received> {
        let mut rx = self.accepted_count.clone();
        tokio::time::timeout(Duration::from_secs(30), rx.wait_for(|c| *c >= n))
            .await
            .expect("the receiver got the batches in time")
            .unwrap();
        self.accepted.lock().unwrap().clone()
    }

    async fn wait_refused(&self, n: usize) {
        let mut rx = self.refused_count.clone();
        tokio::time::timeout(Duration::from_secs(30), rx.wait_for(|c| *c >= n))
            .await
            .expect("the daemon tried the receiver")
            .unwrap();
    }

    fn all_bytes(&self) -> Vec<u8> {
        self.all_bytes.lock().unwrap().clone()
    }
}

fn chat_body() -> String {
    format!(
        r#"{{"model":"gpt-test","messages":[{{"role":"user","content":"{PROMPT_MARKER} say hi"}}]}}"#
    )
}

/// Sends one chat request and returns its request id.
async fn chat(daemon: &Daemon) -> String {
    let resp = daemon.post_json("/v1/chat/completions", chat_body()).await;
    assert_eq!(resp.status(), 200);
    let id = resp.headers()["x-tokenbuddy-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    body_bytes(resp).await;
    id
}

/// The export sink `name` of `/v1/status`, once `ready` holds for it.
async fn sink_when(daemon: &Daemon, name: &str, ready: impl Fn(&Value) -> bool) -> Value {
    for _ in 0..600 {
        let status = get_json(daemon, "/v1/status").await;
        let sink = status["export"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["sink"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("no {name} sink in {status}"));
        if ready(&sink) {
            return sink;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the {name} sink never reached the expected state")
}

/// The `export <name>` check of `/v1/doctor` has `verdict` and its detail
/// says `says`.
async fn assert_doctor(daemon: &Daemon, name: &str, verdict: &str, says: &str) {
    let report = get_json(daemon, "/v1/doctor").await;
    let check = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == format!("export {name}"))
        .unwrap_or_else(|| panic!("no export check in {report}"));
    assert_eq!(check["verdict"], verdict, "{check}");
    assert!(check["detail"].as_str().unwrap().contains(says), "{check}");
}

async fn metric(daemon: &Daemon, series: &str) -> f64 {
    let (status, text) = control(daemon, Method::GET, "/metrics", None, false, "").await;
    assert_eq!(status, 200);
    parse_metrics(&text).get(series).copied().unwrap_or(0.0)
}

fn http_export(receiver: &Receiver, batch_size: usize, queue_capacity: usize) -> String {
    format!(
        "[export.http]\nurl = \"{}/ingest?tenant=t1\"\nheaders = {{ authorization = \"{EXPORT_SECRET}\" }}\nbatch_size = {batch_size}\nqueue_capacity = {queue_capacity}\n",
        receiver.url()
    )
}

#[tokio::test]
async fn http_sink_batches_records_with_the_auth_header_and_survives_an_outage() {
    let receiver = Receiver::start(false).await;
    let Setup { upstream, daemon } = setup_with(&http_export(&receiver, 2, 100)).await;
    let mut ids = Vec::new();
    for _ in 0..5 {
        ids.push(chat(&daemon).await);
    }
    // Down: the records wait (none dropped) and the sink says it is failing.
    receiver.wait_refused(1).await;
    let sink = sink_when(&daemon, "http", |s| {
        s["queue_depth"] == 5 && s["state"] == "failing"
    })
    .await;
    assert_eq!(sink["dropped"], 0, "{sink}");
    assert_eq!(
        sink["target"],
        format!("{}/ingest", receiver.url()),
        "no query shown"
    );
    assert!(
        sink["last_error"].as_str().unwrap().contains("503"),
        "{sink}"
    );
    assert_doctor(&daemon, "http", "warn", "failing").await;

    // Back up: every record arrives once, in batches of at most 2.
    receiver.set_up(true);
    let batches = receiver.wait_accepted(3).await;
    let mut got = Vec::new();
    for b in &batches {
        assert_eq!(b.path, "/ingest");
        assert_eq!(b.headers["authorization"], EXPORT_SECRET);
        assert_eq!(b.headers["content-type"], "application/json");
        let doc: Value = serde_json::from_slice(&b.body).unwrap();
        let calls = doc["calls"].as_array().unwrap();
        assert!(!calls.is_empty() && calls.len() <= 2, "{doc}");
        for c in calls {
            assert_eq!(c["model"], "gpt-test");
            assert_eq!(c["outcome"], "ok");
            assert_eq!(c["winner"], "oa");
            assert!(c["input_tokens"].is_u64(), "{c}");
            assert!(c.get("prompt_hash").is_none(), "{c}");
            got.push(c["request_id"].as_str().unwrap().to_owned());
        }
    }
    assert_eq!(
        batches
            .iter()
            .map(
                |b| serde_json::from_slice::<Value>(&b.body).unwrap()["calls"]
                    .as_array()
                    .unwrap()
                    .len()
            )
            .collect::<Vec<_>>(),
        [2, 2, 1],
        "the five waiting records go out in full batches"
    );
    assert_eq!(got, ids, "one record per call, in order");
    let sink = sink_when(&daemon, "http", |s| s["sent"] == 5).await;
    assert_eq!(sink["state"], "healthy", "{sink}");
    assert_eq!(sink["queue_depth"], 0, "{sink}");
    assert_doctor(&daemon, "http", "pass", "healthy").await;
    assert_eq!(
        metric(&daemon, "tb_export_sent_total{sink=\"http\"}").await,
        5.0
    );
    assert!(metric(&daemon, "tb_export_failed_total{sink=\"http\"}").await >= 1.0);

    // No prompt, provider key, access token or export secret leaks.
    let sent = String::from_utf8_lossy(&receiver.all_bytes()).into_owned();
    for (what, secret) in [
        ("the prompt", PROMPT_MARKER),
        ("the provider key", OPENAI_KEY),
        ("the access token", daemon.token.as_str()),
    ] {
        assert!(!sent.contains(secret), "{what} reached the receiver");
    }
    assert!(
        upstream
            .requests()
            .iter()
            .all(|r| String::from_utf8_lossy(&r.body).contains(PROMPT_MARKER))
    );
    let logs = daemon.logs();
    assert!(
        !logs.contains("export-s3cret"),
        "the export header is in the logs"
    );
    let status = serde_json::to_string(&get_json(&daemon, "/v1/status").await).unwrap();
    assert!(
        !status.contains("export-s3cret") && !status.contains("tenant=t1"),
        "{status}"
    );
}

#[tokio::test]
async fn a_small_queue_drops_exactly_past_its_bound() {
    let receiver = Receiver::start(false).await;
    let Setup {
        upstream: _upstream,
        daemon,
    } = setup_with(&http_export(&receiver, 10, 3)).await;
    for _ in 0..7 {
        chat(&daemon).await;
    }
    let sink = sink_when(&daemon, "http", |s| {
        s["queue_depth"].as_u64().unwrap() + s["dropped"].as_u64().unwrap() == 7
    })
    .await;
    assert_eq!(sink["dropped"], 4, "{sink}");
    assert_eq!(sink["queue_depth"], 3, "{sink}");
    assert_eq!(sink["queue_capacity"], 3, "{sink}");
    assert_eq!(sink["state"], "dropping", "{sink}");
    assert_doctor(&daemon, "http", "fail", "dropping").await;
    // The CLI shows the same: `doctor` fails, `status` names the state.
    let cli = |arg: &'static str| {
        tb_test_support::daemon::command(bin(), daemon.home())
            .arg(arg)
            .output()
    };
    let out = cli("doctor").await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("✗ export http: dropping"), "{stdout}");
    let out = cli("status").await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("export http: dropping to http://127.0.0.1:")
            && stdout.contains("4 dropped, queue 3/3"),
        "{stdout}"
    );
    assert_eq!(
        metric(&daemon, "tb_export_dropped_total{sink=\"http\"}").await,
        4.0
    );
    assert_eq!(
        metric(&daemon, "tb_export_queue_depth{sink=\"http\"}").await,
        3.0
    );

    receiver.set_up(true);
    let batches = receiver.wait_accepted(1).await;
    let doc: Value = serde_json::from_slice(&batches[0].body).unwrap();
    assert_eq!(doc["calls"].as_array().unwrap().len(), 3, "{doc}");
    let sink = sink_when(&daemon, "http", |s| s["sent"] == 3).await;
    assert_eq!(sink["dropped"], 4, "drops are counted once: {sink}");
    assert_doctor(&daemon, "http", "warn", "dropped earlier").await;
}

/// A chat request for model `m` with a `traceparent` header; returns the
/// upstream that answered.
async fn chat_traced(daemon: &Daemon, traceparent: &str) -> String {
    let auth = format!("Bearer {}", daemon.token);
    let resp = daemon
        .request(
            Method::POST,
            "/v1/chat/completions",
            &[
                ("authorization", &auth),
                ("content-type", "application/json"),
                ("traceparent", traceparent),
            ],
            r#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#,
        )
        .await;
    assert_eq!(resp.status(), 200);
    let upstream = resp.headers()["x-tokenbuddy-upstream"]
        .to_str()
        .unwrap()
        .to_owned();
    body_bytes(resp).await;
    upstream
}

fn attr<'a>(span: &'a Span, key: &str) -> Option<&'a AttrValue> {
    span.attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
        .and_then(|v| v.value.as_ref())
}

fn spans(r: &Received) -> Vec<Span> {
    let req = ExportTraceServiceRequest::decode(r.body.as_ref()).unwrap();
    req.resource_spans
        .into_iter()
        .flat_map(|rs| rs.scope_spans)
        .flat_map(|ss| ss.spans)
        .collect()
}

#[tokio::test]
async fn otlp_traces_join_the_clients_traceparent_with_one_span_per_attempt() {
    let receiver = Receiver::start(true).await;
    let first = MockUpstream::start().await.unwrap();
    let second = MockUpstream::start().await.unwrap();
    let config = format!(
        "[routing]\nsticky_reset_ms = 0\nretry_same_on_5xx = false\n[export.otlp]\nendpoint = \"{}/\"\nprotocol = \"http/protobuf\"\n{}{}",
        receiver.url(),
        all_protocols_provider("first", &first.base_url(), "m"),
        all_protocols_provider("second", &second.base_url(), "m"),
    );
    let daemon = Daemon::start(bin(), &config, &[]).await.unwrap();
    first.push_reply(Reply::openai_error(
        500,
        "server_error",
        "boom",
        "upstream exploded",
    ));
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let parent_id = "00f067aa0ba902b7";
    let traceparent = format!("00-{trace_id}-{parent_id}-01");
    assert_eq!(chat_traced(&daemon, &traceparent).await, "second");

    let got = receiver.wait_accepted(1).await;
    assert_eq!(got[0].path, "/v1/traces");
    assert_eq!(got[0].headers["content-type"], "application/x-protobuf");
    let spans = spans(&got[0]);
    assert_eq!(spans.len(), 3, "{spans:#?}");
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    let root = &spans[0];
    assert_eq!(hex(&root.trace_id), trace_id);
    assert_eq!(hex(&root.parent_span_id), parent_id);
    assert_eq!(root.name, "chat m");
    assert_eq!(
        attr(root, "gen_ai.request.model"),
        Some(&AttrValue::StringValue("m".into()))
    );
    assert_eq!(
        attr(root, "gen_ai.response.model"),
        Some(&AttrValue::StringValue("m".into()))
    );
    assert_eq!(
        attr(root, "gen_ai.system"),
        Some(&AttrValue::StringValue("openai".into()))
    );
    assert!(
        matches!(attr(root, "gen_ai.usage.input_tokens"), Some(AttrValue::IntValue(n)) if *n > 0)
    );
    assert!(
        matches!(attr(root, "gen_ai.usage.output_tokens"), Some(AttrValue::IntValue(n)) if *n > 0)
    );
    let attempts: Vec<&Span> = spans[1..].iter().collect();
    for (span, upstream) in attempts.iter().zip(["first", "second"]) {
        assert_eq!(span.trace_id, root.trace_id);
        assert_eq!(span.parent_span_id, root.span_id);
        assert_eq!(
            attr(span, "tokenbuddy.upstream"),
            Some(&AttrValue::StringValue(upstream.into()))
        );
    }
    assert_eq!(
        attr(attempts[0], "http.response.status_code"),
        Some(&AttrValue::IntValue(500))
    );

    // A request without (or with a malformed) traceparent is a trace of its own.
    chat_traced(&daemon, "00-not-a-trace-01").await;
    let got = receiver.wait_accepted(2).await;
    let spans = self::spans(&got[1]);
    assert_eq!(spans.len(), 2, "one request span, one attempt");
    assert_ne!(hex(&spans[0].trace_id), trace_id);
    assert!(spans[0].parent_span_id.is_empty());
    let sink = sink_when(&daemon, "otlp", |s| s["sent"] == 2).await;
    assert_eq!(sink["state"], "healthy", "{sink}");
    assert_eq!(sink["target"], format!("{}/v1/traces", receiver.url()));
}

#[tokio::test]
async fn otlp_grpc_is_refused_at_start_with_the_key_named() {
    let home = tb_test_support::daemon::home_with_config(
        "[export.otlp]\nendpoint = \"http://127.0.0.1:4317\"\nprotocol = \"grpc\"\n",
    )
    .unwrap();
    let stderr = refused(home.path(), &["serve", "--port", "0"]).await;
    assert!(
        stderr.contains("export.otlp.protocol") && stderr.contains("http/protobuf"),
        "{stderr}"
    );
}

/// The sinks use the daemon's one outbound client: an HTTPS receiver
/// signed by a private CA is reached once `tls.extra_ca_file` trusts it.
#[tokio::test]
async fn the_http_sink_goes_through_the_outbound_client_and_its_ca_settings() {
    let receiver = MockUpstream::start_tls().await.unwrap();
    receiver.push_reply(Reply::json(200, "{}"));
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("collector-ca.pem");
    std::fs::write(&ca, receiver.ca_pem().unwrap()).unwrap();
    let export = format!(
        "[tls]\nextra_ca_file = '{}'\n[export.http]\nurl = \"{}/ingest\"\n",
        ca.display(),
        receiver.root_url()
    );
    let Setup {
        upstream: _upstream,
        daemon,
    } = setup_with(&export).await;
    let id = chat(&daemon).await;
    let got = receiver.wait_for_requests(1).await;
    assert_eq!(got[0].path(), "/ingest");
    let doc = got[0].json();
    assert_eq!(doc["calls"][0]["request_id"], id.as_str(), "{doc}");
    let sink = sink_when(&daemon, "http", |s| s["sent"] == 1).await;
    assert!(
        sink["target"]
            .as_str()
            .unwrap()
            .starts_with("https://127.0.0.1:"),
        "{sink}"
    );
}

/// A receiver that refuses a batch for good (a 4xx other than 408/429)
/// is not sent it again: the records are counted as rejected, not queued.
#[tokio::test]
async fn a_batch_the_receiver_refuses_is_counted_not_retried() {
    // A mock with no reply scripted for `/ingest` answers 404.
    let receiver = MockUpstream::start().await.unwrap();
    let export = format!(
        "[export.http]\nurl = \"{}/ingest\"\nbatch_size = 1\n",
        receiver.root_url()
    );
    let Setup {
        upstream: _upstream,
        daemon,
    } = setup_with(&export).await;
    chat(&daemon).await;
    chat(&daemon).await;
    let sink = sink_when(&daemon, "http", |s| s["rejected"] == 2).await;
    assert_eq!(sink["queue_depth"], 0, "{sink}");
    assert_eq!(sink["sent"], 0, "{sink}");
    assert_eq!(sink["dropped"], 0, "{sink}");
    assert_eq!(sink["state"], "failing", "{sink}");
    assert!(
        sink["last_error"].as_str().unwrap().contains("404"),
        "{sink}"
    );
    assert_eq!(
        receiver.request_count(),
        2,
        "one POST per batch, none again"
    );
    assert_eq!(
        metric(&daemon, "tb_export_rejected_total{sink=\"http\"}").await,
        2.0
    );
}
