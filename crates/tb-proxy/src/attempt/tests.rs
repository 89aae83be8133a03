//! The attempt loop against a scripted upstream, without sockets: one test
//! per outcome row of routing.md's failover table, plus the final-answer
//! rule of proxy.md and the 429 rule with the default breaker config.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, StreamBody};
use tb_billing::record::{CallOutcome, CallRecord};
use tb_domain::{Outcome, PaymentMethod, Protocol, UpstreamId};
use tb_pool::CircuitState;
use tb_router::{Route, RoutePlan, Router, Upstream};
use tb_seller::{Lease, SellerSecret};

use super::*;
use crate::call::{CallSink, unix_ms_now};
use crate::handler::{ReadRequest, forward_with};
use crate::{AccessToken, Proxy, ProxyBody};

const MODEL: &str = "m";
const CHAT_OK: &str = r#"{"id":"c","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"hello"},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5}}"#;
const CHAT_EMPTY: &str = r#"{"id":"c","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":""},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":0,"total_tokens":3}}"#;

/// One scripted answer.
#[derive(Clone)]
enum Reply {
    /// A JSON answer with this status and optional extra headers.
    Json(u16, &'static str, Vec<(&'static str, &'static str)>),
    /// An SSE stream of these chunks.
    Sse(Vec<&'static str>),
    /// An SSE stream that breaks after these chunks.
    SseBreak(Vec<&'static str>),
    /// The connection is refused.
    Connect,
    /// The connection drops before the head.
    Reset,
    /// No head ever comes.
    Hang,
}

fn ok() -> Reply {
    Reply::Json(200, CHAT_OK, vec![])
}

fn status(code: u16) -> Reply {
    Reply::Json(code, r#"{"error":{"message":"scripted"}}"#, vec![])
}

/// Upstreams keyed by host; each answers its queue in order (the last
/// answer repeats). Every request is logged with its `Authorization`.
#[derive(Default)]
struct Script {
    replies: Mutex<HashMap<String, VecDeque<Reply>>>,
    log: Mutex<Vec<(String, Option<String>)>>,
}

impl Script {
    fn new(replies: &[(&str, Vec<Reply>)]) -> Script {
        let map = replies
            .iter()
            .map(|(host, r)| (host.to_string(), r.iter().cloned().collect()))
            .collect();
        Script {
            replies: Mutex::new(map),
            log: Mutex::default(),
        }
    }

    fn hosts(&self) -> Vec<String> {
        self.log
            .lock()
            .unwrap()
            .iter()
            .map(|(h, _)| h.clone())
            .collect()
    }

    fn next(&self, host: &str) -> Reply {
        let mut map = self.replies.lock().unwrap();
        let queue = map.get_mut(host).expect("a scripted host");
        if queue.len() > 1 {
            queue.pop_front().unwrap()
        } else {
            queue.front().cloned().unwrap()
        }
    }
}

type TestBody = ProxyBody;

fn body_of(chunks: Vec<&'static str>, break_at_end: bool) -> TestBody {
    let mut frames: Vec<Result<http_body::Frame<Bytes>, crate::BoxError>> = chunks
        .into_iter()
        .map(|c| Ok(http_body::Frame::data(Bytes::from_static(c.as_bytes()))))
        .collect();
    if break_at_end {
        frames.push(Err("connection reset".into()));
    }
    StreamBody::new(futures_util::stream::iter(frames)).boxed_unsync()
}

impl Transport for Script {
    type Body = TestBody;

    async fn send(&self, req: Request<Full<Bytes>>) -> Result<Response<TestBody>, SendError> {
        let host = req
            .uri()
            .host()
            .unwrap_or_default()
            .trim_end_matches(".test")
            .to_string();
        let auth = req
            .headers()
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        self.log.lock().unwrap().push((host.clone(), auth));
        let reply = self.next(&host);
        let fail = |connect| SendError {
            connect,
            detail: "scripted".into(),
        };
        let (code, content_type, headers, body) = match reply {
            Reply::Connect => return Err(fail(true)),
            Reply::Reset => return Err(fail(false)),
            Reply::Hang => std::future::pending().await,
            Reply::Json(code, body, headers) => (
                code,
                "application/json",
                headers,
                body_of(vec![body], false),
            ),
            Reply::Sse(chunks) => (200, "text/event-stream", vec![], body_of(chunks, false)),
            Reply::SseBreak(chunks) => (200, "text/event-stream", vec![], body_of(chunks, true)),
        };
        let mut resp = Response::new(body);
        *resp.status_mut() = StatusCode::from_u16(code).unwrap();
        resp.headers_mut()
            .insert(http::header::CONTENT_TYPE, content_type.parse().unwrap());
        for (k, v) in headers {
            resp.headers_mut().insert(k, v.parse().unwrap());
        }
        Ok(resp)
    }
}

/// Call records, as the ledger would get them.
#[derive(Default)]
struct Records(Mutex<Vec<CallRecord>>);

impl CallSink for Records {
    fn submit(&self, record: CallRecord) -> Result<(), Box<CallRecord>> {
        self.0.lock().unwrap().push(record);
        Ok(())
    }
}

/// A daemon state with manual providers `a`, `b`, `c` (hosts `a.test` …)
/// serving [`MODEL`], plus `extra` config.
fn proxy(extra: &str) -> (Proxy, Arc<Records>) {
    let mut toml = format!("[routing]\nsticky_reset_ms = 0\n{extra}\n");
    for id in ["a", "b", "c"] {
        toml.push_str(&format!(
            "[[providers]]\nid = \"{id}\"\nkind = \"openai\"\nbase_url = \"http://{id}.test/v1\"\napi_key = \"key-{id}\"\nmodels = [\"{MODEL}\"]\n"
        ));
    }
    let config = tb_config::Config::from_toml_str(&toml).expect("test config");
    let records = Arc::new(Records::default());
    let token = AccessToken::from_string("t".repeat(43)).unwrap();
    let proxy = Proxy::new(
        &config,
        token,
        "/nonexistent/token".into(),
        &|_| None,
        Some(Arc::clone(&records) as Arc<dyn CallSink>),
        None,
    )
    .expect("proxy");
    (proxy, records)
}

/// Sends one chat request through the whole path; returns the status, the
/// attempts header and the body.
async fn call(proxy: &Proxy, script: &Script, stream: bool) -> (u16, String, String) {
    let body = format!(
        r#"{{"model":"{MODEL}","stream":{stream},"messages":[{{"role":"user","content":"hi"}}]}}"#
    );
    let headers = HeaderMap::new();
    let req = ReadRequest {
        protocol: Protocol::ChatCompletions,
        headers: &headers,
        query: None,
        bytes: Bytes::from(body),
        request_id: "req-1",
        started: (Instant::now(), unix_ms_now()),
        member: None,
    };
    let resp = match forward_with(&proxy.state, script, req).await {
        Ok(resp) => resp,
        Err(e) => e.response(Protocol::ChatCompletions.family()),
    };
    let status = resp.status().as_u16();
    let attempts = resp
        .headers()
        .get("x-tokenbuddy-attempts")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        attempts,
        String::from_utf8_lossy(&bytes).into_owned(),
    )
}

fn view(proxy: &Proxy, id: &str) -> tb_pool::PoolView {
    proxy
        .state
        .routing
        .router()
        .views(unix_ms_now())
        .remove(id)
        .expect("a pool entry")
}

fn last_record(records: &Records) -> CallRecord {
    records.0.lock().unwrap().last().cloned().expect("a record")
}

#[tokio::test(start_paused = true)]
async fn ok_commits_to_the_first_upstream() {
    let (proxy, records) = proxy("");
    let script = Script::new(&[("a", vec![ok()]), ("b", vec![ok()])]);
    let (status, attempts, body) = call(&proxy, &script, false).await;
    assert_eq!((status, attempts.as_str()), (200, "a:200|ok"));
    assert!(body.contains("hello"));
    assert_eq!(script.hosts(), ["a"]);
    let record = last_record(&records);
    assert_eq!(record.outcome, CallOutcome::Ok);
    assert_eq!(record.attempts[0].outcome, Outcome::Ok);
    assert_eq!(view(&proxy, "a").consecutive_failures, 0);
}

#[tokio::test(start_paused = true)]
async fn server_error_retries_the_same_upstream_once_then_fails_over() {
    let (proxy, records) = proxy("");
    let script = Script::new(&[("a", vec![status(502)]), ("b", vec![ok()])]);
    let (status, attempts, _) = call(&proxy, &script, false).await;
    assert_eq!(status, 200);
    assert_eq!(attempts, "a:502|server_error,a:502|server_error,b:200|ok");
    assert_eq!(script.hosts(), ["a", "a", "b"]);
    assert_eq!(
        view(&proxy, "a").consecutive_failures,
        2,
        "server errors count"
    );
    let record = last_record(&records);
    assert_eq!(record.attempts.len(), 3);
    assert_eq!(record.attempts[0].error_class, Some(Outcome::ServerError));
}

#[tokio::test(start_paused = true)]
async fn reset_before_the_head_is_a_server_error() {
    let (proxy, _) = proxy("[breaker]\nmax_failures = 10\n");
    let script = Script::new(&[("a", vec![Reply::Reset]), ("b", vec![ok()])]);
    let (status, attempts, _) = call(&proxy, &script, false).await;
    assert_eq!(status, 200);
    assert_eq!(attempts, "a:-|server_error,a:-|server_error,b:200|ok");
}

#[tokio::test(start_paused = true)]
async fn connect_failure_fails_over_without_retrying() {
    let (proxy, _) = proxy("");
    let script = Script::new(&[("a", vec![Reply::Connect]), ("b", vec![ok()])]);
    let (status, attempts, _) = call(&proxy, &script, false).await;
    assert_eq!(
        (status, attempts.as_str()),
        (200, "a:-|connect_failed,b:200|ok")
    );
    assert_eq!(view(&proxy, "a").consecutive_failures, 1);
}

#[tokio::test(start_paused = true)]
async fn deadline_fails_over() {
    let (proxy, _) = proxy("");
    let script = Script::new(&[("a", vec![Reply::Hang]), ("b", vec![ok()])]);
    let (status, attempts, _) = call(&proxy, &script, false).await;
    assert_eq!((status, attempts.as_str()), (200, "a:-|deadline,b:200|ok"));
    assert_eq!(view(&proxy, "a").consecutive_failures, 1);
}

#[tokio::test(start_paused = true)]
async fn auth_invalid_fails_over_and_counts() {
    let (proxy, _) = proxy("");
    let script = Script::new(&[("a", vec![status(401)]), ("b", vec![ok()])]);
    let (status, attempts, _) = call(&proxy, &script, false).await;
    assert_eq!(
        (status, attempts.as_str()),
        (200, "a:401|auth_invalid,b:200|ok")
    );
    assert_eq!(view(&proxy, "a").consecutive_failures, 1);
}

#[tokio::test(start_paused = true)]
async fn insufficient_funds_on_a_manual_provider_fails_over_without_counting() {
    let (proxy, _) = proxy("");
    let script = Script::new(&[("a", vec![status(402)]), ("b", vec![ok()])]);
    let (status, attempts, _) = call(&proxy, &script, false).await;
    assert_eq!(
        (status, attempts.as_str()),
        (200, "a:402|insufficient_funds,b:200|ok")
    );
    assert_eq!(view(&proxy, "a").health_score, 70);
}

#[tokio::test(start_paused = true)]
async fn client_error_fails_over_by_default_without_counting() {
    let (proxy, _) = proxy("");
    let script = Script::new(&[("a", vec![status(400)]), ("b", vec![ok()])]);
    let (status, attempts, _) = call(&proxy, &script, false).await;
    assert_eq!(
        (status, attempts.as_str()),
        (200, "a:400|client_error,b:200|ok")
    );
    let a = view(&proxy, "a");
    assert_eq!((a.consecutive_failures, a.health_score), (0, 70));
}

#[tokio::test(start_paused = true)]
async fn client_error_fails_fast_when_configured() {
    let (proxy, records) = proxy("failover_on_client_error = false\n");
    let script = Script::new(&[("a", vec![status(422)]), ("b", vec![ok()])]);
    let (status, attempts, body) = call(&proxy, &script, false).await;
    assert_eq!((status, attempts.as_str()), (422, "a:422|client_error"));
    assert!(
        body.contains("scripted"),
        "the upstream's answer is passed on"
    );
    assert_eq!(script.hosts(), ["a"]);
    assert_eq!(last_record(&records).outcome, CallOutcome::Failed);
}

/// The 429 rule (docs/decisions.md): a 429 benches the upstream until
/// `Retry-After` but never opens its breaker or costs health — here with
/// the default breaker (3 failures open it), after five 429s in a row.
#[tokio::test(start_paused = true)]
async fn rate_limited_benches_but_never_opens_the_breaker() {
    let (proxy, _) = proxy("");
    let limited = Reply::Json(429, "{}", vec![("retry-after", "0")]);
    let script = Script::new(&[("a", vec![limited]), ("b", vec![ok()])]);
    for _ in 0..5 {
        let (status, attempts, _) = call(&proxy, &script, false).await;
        assert_eq!(
            (status, attempts.as_str()),
            (200, "a:429|rate_limited,b:200|ok")
        );
    }
    let a = view(&proxy, "a");
    assert_eq!(a.circuit, CircuitState::Closed);
    assert_eq!((a.consecutive_failures, a.health_score), (0, 70));

    // Without `Retry-After` the bench is the default 10 s: `a` goes last.
    let script = Script::new(&[
        ("a", vec![Reply::Json(429, "{}", vec![])]),
        ("b", vec![ok()]),
    ]);
    call(&proxy, &script, false).await;
    let (_, attempts, _) = call(&proxy, &script, false).await;
    assert!(attempts.starts_with("b:200"), "{attempts}");
    assert!(view(&proxy, "a").capacity_blocked_until_ms.is_some());
}

#[tokio::test(start_paused = true)]
async fn empty_completion_fails_over_while_routes_are_left() {
    let (proxy, _) = proxy("");
    let empty = Reply::Json(200, CHAT_EMPTY, vec![]);
    let script = Script::new(&[
        ("a", vec![empty.clone()]),
        ("b", vec![empty.clone()]),
        ("c", vec![empty]),
    ]);
    let (status, attempts, body) = call(&proxy, &script, false).await;
    // The last route's empty answer is the answer.
    assert_eq!(status, 200);
    assert_eq!(
        attempts,
        "a:200|empty_completion,b:200|empty_completion,c:200|ok"
    );
    assert!(body.contains("chat.completion"));
}

#[tokio::test(start_paused = true)]
async fn a_stream_that_breaks_before_content_fails_over() {
    let (proxy, records) = proxy("");
    let role = "data: {\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\"}}]}\n\n";
    let content =
        "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"hi\"}}]}\n\ndata: [DONE]\n\n";
    let script = Script::new(&[
        ("a", vec![Reply::SseBreak(vec![role])]),
        ("b", vec![Reply::Sse(vec![role, content])]),
    ]);
    let (status, attempts, body) = call(&proxy, &script, true).await;
    assert_eq!(status, 200);
    assert_eq!(attempts, "a:200|server_error,a:200|server_error,b:200|ok");
    assert!(body.contains("\"hi\"") && body.contains("[DONE]"), "{body}");
    assert_eq!(last_record(&records).outcome, CallOutcome::Ok);
}

#[tokio::test(start_paused = true)]
async fn give_up_passes_the_first_non_transient_answer() {
    let (proxy, records) = proxy("retry_same_on_5xx = false\n");
    let script = Script::new(&[
        ("a", vec![status(503)]),
        ("b", vec![status(404)]),
        ("c", vec![status(500)]),
    ]);
    let (status, attempts, _) = call(&proxy, &script, false).await;
    assert_eq!(status, 404);
    assert_eq!(
        attempts,
        "a:503|server_error,b:404|client_error,c:500|server_error"
    );
    assert_eq!(last_record(&records).outcome, CallOutcome::Failed);
}

#[tokio::test(start_paused = true)]
async fn give_up_with_only_transient_answers_passes_the_last() {
    let (proxy, _) = proxy("retry_same_on_5xx = false\n");
    let script = Script::new(&[
        ("a", vec![status(503)]),
        ("b", vec![Reply::Connect]),
        ("c", vec![Reply::Json(429, "{}", vec![])]),
    ]);
    let (status, _, _) = call(&proxy, &script, false).await;
    assert_eq!(status, 429);
}

#[tokio::test(start_paused = true)]
async fn give_up_without_answers_is_the_daemons_own_error() {
    let (proxy, records) = proxy("");
    let script = Script::new(&[
        ("a", vec![Reply::Hang]),
        ("b", vec![Reply::Hang]),
        ("c", vec![Reply::Hang]),
    ]);
    let (status, attempts, body) = call(&proxy, &script, false).await;
    assert_eq!(status, 504, "every attempt was a deadline");
    assert_eq!(attempts, "a:-|deadline,b:-|deadline,c:-|deadline");
    assert!(body.contains("upstream_timeout"), "{body}");
    assert_eq!(last_record(&records).outcome, CallOutcome::Failed);

    let script = Script::new(&[
        ("a", vec![Reply::Connect]),
        ("b", vec![Reply::Hang]),
        ("c", vec![Reply::Connect]),
    ]);
    let (status, _, body) = call(&proxy, &script, false).await;
    assert_eq!(status, 502);
    assert!(body.contains("upstream_unreachable"), "{body}");
}

// ---- Sellers: the credit stages, with a scripted credit source. ----

/// Leases numbered by purchase; logs what the loop did with them.
#[derive(Default)]
struct FakeCredit {
    bought: Mutex<u32>,
    fail: bool,
    events: Mutex<Vec<String>>,
}

impl Credit for FakeCredit {
    fn acquire<'a>(
        &'a self,
        upstream: &'a Upstream,
        _seller_url: &'a str,
        _model: &'a str,
        force_new: bool,
    ) -> BoxFuture<'a, Result<Lease, NoCredit>> {
        Box::pin(async move {
            if self.fail {
                return Err(NoCredit::from("session purchase budget spent".to_owned()));
            }
            let mut bought = self.bought.lock().unwrap();
            if force_new || *bought == 0 {
                *bought += 1;
            }
            self.events
                .lock()
                .unwrap()
                .push(format!("acquire {} new={force_new}", upstream.id));
            Ok(Lease {
                token: SellerSecret::new(format!("tok-{}", *bought)),
                fingerprint: format!("fp-{}", *bought),
                bought: force_new,
                seller_id: upstream.id.to_string(),
                payment_method: PaymentMethod::Mock,
            })
        })
    }

    fn drop_lease(&self, lease: &Lease) {
        self.events
            .lock()
            .unwrap()
            .push(format!("drop {}", lease.fingerprint));
    }

    fn mark_dry(&self, lease: &Lease) {
        self.events
            .lock()
            .unwrap()
            .push(format!("dry {}", lease.fingerprint));
    }

    fn settle(&self, lease: &Lease, _settled: Option<u64>, _remaining: Option<u64>) {
        self.events
            .lock()
            .unwrap()
            .push(format!("settle {}", lease.fingerprint));
    }

    fn abandon(&self, lease: &Lease) {
        self.events
            .lock()
            .unwrap()
            .push(format!("abandon {}", lease.fingerprint));
    }
}

fn seller(id: &str) -> Arc<Upstream> {
    Arc::new(Upstream::seller(
        &tb_registry::SellerEntry {
            id: UpstreamId::new(id),
            name: id.into(),
            url: format!("http://{id}.test"),
            models: vec![MODEL.into()],
            protocols: vec![Protocol::ChatCompletions],
            payment_methods: vec![PaymentMethod::Mock],
            discount_ratio: tb_prices::Ppm::ZERO,
            service_fee_ratio: tb_prices::Ppm::ZERO,
        },
        None,
    ))
}

/// Runs the loop alone over sellers `s1`, `s2`; returns the attempts'
/// outcomes, the hosts called with their tokens, and the credit events.
async fn walk_sellers(
    script: &Script,
    credit: FakeCredit,
) -> (Vec<Outcome>, Vec<(String, Option<String>)>, Vec<String>) {
    let plan = RoutePlan::from_routes(
        MODEL,
        vec![
            Route::new(seller("s1"), Protocol::ChatCompletions),
            Route::new(seller("s2"), Protocol::ChatCompletions),
        ],
    );
    let config = tb_config::Config::default();
    let router = Router::new(&config.routing, &config.breaker);
    let fake = Arc::new(credit);
    let credit: Arc<dyn Credit> = Arc::clone(&fake) as Arc<dyn Credit>;
    let facts = tb_billing::usage::RequestFacts::default();
    let translations = crate::translation::Translations::default();
    let ctx = Ctx {
        protocol: Protocol::ChatCompletions,
        plan: &plan,
        body: Bytes::from_static(b"{}"),
        translations: &translations,
        base_headers: HeaderMap::new(),
        query: None,
        facts: &facts,
        add_usage: false,
        request_id: "r",
        started: Instant::now(),
        head_deadline: std::time::Duration::from_secs(1),
        idle_timeout: std::time::Duration::from_secs(1),
        max_response_bytes: 1 << 20,
    };
    let env = Env {
        transport: script,
        router: &router,
        credit: Some(&credit),
    };
    let end = AttemptLoop::new(&ctx, env).run(|_| {}).await;
    let mut outcomes: Vec<Outcome> = match &end {
        End::Commit(_, walk) | End::Exhausted(walk) => {
            walk.attempts.iter().map(|a| a.outcome).collect()
        }
    };
    if matches!(end, End::Commit(..)) {
        outcomes.push(Outcome::Ok);
    }
    let log = script.log.lock().unwrap().clone();
    let events = fake.events.lock().unwrap().clone();
    (outcomes, log, events)
}

#[tokio::test(start_paused = true)]
async fn a_dry_seller_gets_one_purchase_and_one_retry() {
    let script = Script::new(&[("s1", vec![status(402), ok()]), ("s2", vec![ok()])]);
    let (outcomes, log, events) = walk_sellers(&script, FakeCredit::default()).await;
    assert_eq!(outcomes, [Outcome::InsufficientFunds, Outcome::Ok]);
    assert_eq!(
        events,
        ["acquire s1 new=false", "dry fp-1", "acquire s1 new=true"]
    );
    assert_eq!(
        log,
        [
            ("s1".to_string(), Some("Bearer tok-1".to_string())),
            ("s1".to_string(), Some("Bearer tok-2".to_string())),
        ],
        "the retry carries the newly bought token"
    );
}

#[tokio::test(start_paused = true)]
async fn a_seller_dry_after_its_purchase_fails_over() {
    let script = Script::new(&[("s1", vec![status(402)]), ("s2", vec![ok()])]);
    let (outcomes, log, _) = walk_sellers(&script, FakeCredit::default()).await;
    assert_eq!(
        outcomes,
        [
            Outcome::InsufficientFunds,
            Outcome::InsufficientFunds,
            Outcome::Ok
        ]
    );
    let hosts: Vec<&str> = log.iter().map(|(h, _)| h.as_str()).collect();
    assert_eq!(hosts, ["s1", "s1", "s2"]);
}

#[tokio::test(start_paused = true)]
async fn a_failed_purchase_fails_over_without_calling_the_seller() {
    let script = Script::new(&[("s1", vec![ok()]), ("s2", vec![ok()])]);
    let credit = FakeCredit {
        fail: true,
        ..FakeCredit::default()
    };
    let (outcomes, log, _) = walk_sellers(&script, credit).await;
    assert_eq!(outcomes, [Outcome::PurchaseFailed, Outcome::PurchaseFailed]);
    assert!(log.is_empty(), "no seller was called without a token");
}

#[tokio::test(start_paused = true)]
async fn a_refused_seller_token_is_dropped_and_the_walk_fails_over() {
    let script = Script::new(&[("s1", vec![status(403)]), ("s2", vec![ok()])]);
    let (outcomes, _, events) = walk_sellers(&script, FakeCredit::default()).await;
    assert_eq!(outcomes, [Outcome::AuthInvalid, Outcome::Ok]);
    assert_eq!(
        events,
        [
            "acquire s1 new=false",
            "abandon fp-1",
            "drop fp-1",
            "acquire s2 new=false"
        ],
        "the failover is reported before the token is dropped"
    );
}

#[tokio::test(start_paused = true)]
async fn failing_over_away_from_a_seller_abandons_its_token_once() {
    // 502 twice: retried once on the same seller (not abandoned), then the
    // walk fails over (abandoned); the seller that answers is not.
    let script = Script::new(&[("s1", vec![status(502), status(502)]), ("s2", vec![ok()])]);
    let (outcomes, _, events) = walk_sellers(&script, FakeCredit::default()).await;
    assert_eq!(
        outcomes,
        [Outcome::ServerError, Outcome::ServerError, Outcome::Ok]
    );
    let abandons: Vec<&String> = events.iter().filter(|e| e.starts_with("abandon")).collect();
    assert_eq!(abandons, ["abandon fp-1"], "{events:?}");
    // The last seller failing is no failover: nothing abandoned.
    let script = Script::new(&[("s1", vec![status(400)]), ("s2", vec![status(400)])]);
    let (_, _, events) = walk_sellers(&script, FakeCredit::default()).await;
    let abandons: Vec<&String> = events.iter().filter(|e| e.starts_with("abandon")).collect();
    assert_eq!(abandons, ["abandon fp-1"], "{events:?}");
}
