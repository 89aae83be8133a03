//! `MockUpstream` driven by a plain hyper client over loopback TCP.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};
use tb_domain::Protocol;
use tb_test_support::{Chunk, MockUpstream, Reply, StreamEnd, canned, chunking};
use tokio::sync::Notify;

/// Generous upper bound for things that should happen at once.
const PATIENCE: Duration = Duration::from_secs(10);

type HttpClient = Client<HttpConnector, Full<Bytes>>;

fn client() -> HttpClient {
    Client::builder(TokioExecutor::new()).build_http()
}

async fn send(
    client: &HttpClient,
    method: Method,
    url: &str,
    body: impl Into<Bytes>,
) -> Response<Incoming> {
    let req = Request::builder()
        .method(method)
        .uri(url)
        .header("content-type", "application/json")
        .body(Full::new(body.into()))
        .unwrap();
    tokio::time::timeout(PATIENCE, client.request(req))
        .await
        .expect("response head in time")
        .unwrap()
}

async fn post_json(mock: &MockUpstream, protocol: Protocol, body: &Value) -> Response<Incoming> {
    let url = format!("{}{}", mock.base_url(), protocol.upstream_suffix());
    send(
        &client(),
        Method::POST,
        &url,
        serde_json::to_vec(body).unwrap(),
    )
    .await
}

async fn body_bytes(resp: Response<Incoming>) -> Bytes {
    tokio::time::timeout(PATIENCE, resp.into_body().collect())
        .await
        .expect("body in time")
        .unwrap()
        .to_bytes()
}

async fn next_data(body: &mut Incoming) -> Option<Bytes> {
    loop {
        let frame = tokio::time::timeout(PATIENCE, body.frame())
            .await
            .expect("frame in time")?;
        if let Ok(data) = frame.unwrap().into_data() {
            return Some(data);
        }
    }
}

async fn stream_end(mock: &MockUpstream) -> StreamEnd {
    tokio::time::timeout(PATIENCE, mock.next_stream_end())
        .await
        .expect("stream end reported in time")
}

#[tokio::test]
async fn default_json_reply_per_protocol_names_the_model() {
    let mock = MockUpstream::start().await.unwrap();
    for protocol in Protocol::ALL {
        let resp = post_json(
            &mock,
            protocol,
            &json!({ "model": "model-under-test", "input": "hi" }),
        )
        .await;
        assert_eq!(resp.status(), StatusCode::OK, "{protocol}");
        assert_eq!(resp.headers()["content-type"], "application/json");
        let body = body_bytes(resp).await;
        assert_eq!(
            body,
            canned::json(protocol, "model-under-test"),
            "{protocol}"
        );
        let value: Value = serde_json::from_slice(&body).unwrap();
        match protocol {
            Protocol::ChatCompletions => {
                assert_eq!(value["model"], "model-under-test");
                assert_eq!(value["choices"][0]["message"]["content"], canned::TEXT);
                assert_eq!(value["usage"]["prompt_tokens"], canned::INPUT_TOKENS);
            }
            Protocol::Responses => {
                assert_eq!(value["model"], "model-under-test");
                assert_eq!(value["output"][0]["content"][0]["text"], canned::TEXT);
                assert_eq!(value["usage"]["output_tokens"], canned::OUTPUT_TOKENS);
            }
            Protocol::Messages => {
                assert_eq!(value["model"], "model-under-test");
                assert_eq!(value["content"][0]["text"], canned::TEXT);
                assert_eq!(
                    value["usage"]["cache_read_input_tokens"],
                    canned::CACHED_INPUT_TOKENS
                );
            }
            Protocol::ImagesGenerations => {
                assert_eq!(value["data"][0]["b64_json"], canned::PNG_1X1_B64);
                assert!(value["usage"]["total_tokens"].as_u64().unwrap() > 0);
            }
            Protocol::Embeddings => {
                assert_eq!(value["model"], "model-under-test");
                assert_eq!(value["data"][0]["object"], "embedding");
                assert_eq!(value["usage"]["prompt_tokens"], canned::INPUT_TOKENS);
            }
            // Not in Protocol::ALL: the video job API has its own sim, and
            // image edits are multipart (tests/images_edits.rs in tokenbuddyd).
            Protocol::Videos | Protocol::ImagesEdits => {
                unreachable!("Protocol::ALL holds JSON protocols only")
            }
        }
    }
    assert_eq!(mock.requests().len(), Protocol::ALL.len());
}

#[tokio::test]
async fn default_sse_reply_is_the_canned_stream() {
    let mock = MockUpstream::start().await.unwrap();
    for protocol in Protocol::ALL {
        let resp = post_json(
            &mock,
            protocol,
            &json!({ "model": "streamer", "stream": true }),
        )
        .await;
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(resp.headers()["content-type"], "text/event-stream");
        assert!(resp.headers().get("content-length").is_none());
        assert_eq!(
            body_bytes(resp).await,
            canned::sse_body(protocol, "streamer"),
            "{protocol}"
        );
        assert_eq!(stream_end(&mock).await, StreamEnd::Completed);
    }
}

#[tokio::test]
async fn default_routes_for_health_unknown_paths_and_bad_bodies() {
    let mock = MockUpstream::start().await.unwrap();
    let client = client();

    let resp = send(
        &client,
        Method::GET,
        &format!("{}/healthz", mock.root_url()),
        "",
    )
    .await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(body_bytes(resp).await, "ok");

    let resp = send(
        &client,
        Method::POST,
        &format!("{}/nope", mock.base_url()),
        "{}",
    )
    .await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    let err: Value = serde_json::from_slice(&body_bytes(resp).await).unwrap();
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("/v1/nope")
    );

    let resp = send(
        &client,
        Method::POST,
        &format!("{}/chat/completions?x=1", mock.base_url()),
        "not json",
    )
    .await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let err: Value = serde_json::from_slice(&body_bytes(resp).await).unwrap();
    assert_eq!(err["error"]["type"], "invalid_request_error");

    let resp = send(
        &client,
        Method::POST,
        &format!("{}/messages", mock.base_url()),
        "{",
    )
    .await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let err: Value = serde_json::from_slice(&body_bytes(resp).await).unwrap();
    assert_eq!(err["type"], "error");
}

#[tokio::test]
async fn scripted_replies_are_sent_verbatim_in_order() {
    let mock = MockUpstream::start().await.unwrap();
    let error = r#"{"error":{"message":"overloaded","type":"server_error"}}"#;
    mock.push_reply(
        Reply::json(503, error)
            .with_header("retry-after", "7")
            .with_header("x-custom", "yes"),
    );
    mock.push_reply(Reply::bytes(299, "raw bytes"));
    assert_eq!(mock.pending_replies(), 2);

    let resp = post_json(&mock, Protocol::ChatCompletions, &json!({ "model": "m" })).await;
    assert_eq!(resp.status().as_u16(), 503);
    assert_eq!(resp.headers()["retry-after"], "7");
    assert_eq!(resp.headers()["x-custom"], "yes");
    assert_eq!(resp.headers()["content-type"], "application/json");
    assert_eq!(body_bytes(resp).await, error);

    let resp = post_json(&mock, Protocol::Messages, &json!({ "model": "m" })).await;
    assert_eq!(resp.status().as_u16(), 299);
    assert!(resp.headers().get("content-type").is_none());
    assert_eq!(body_bytes(resp).await, "raw bytes");

    // Queue empty again: the default reply.
    let resp = post_json(&mock, Protocol::Messages, &json!({ "model": "m" })).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        body_bytes(resp).await,
        canned::json(Protocol::Messages, "m")
    );
}

#[tokio::test]
async fn split_chunks_reassemble_over_the_wire() {
    let mock = MockUpstream::start().await.unwrap();
    let body = canned::sse_body(Protocol::Responses, "m");
    mock.push_reply(Reply::sse(chunking::split_every(&body, 3)));
    let resp = post_json(
        &mock,
        Protocol::Responses,
        &json!({ "model": "m", "stream": true }),
    )
    .await;
    assert_eq!(body_bytes(resp).await, body);
    assert_eq!(stream_end(&mock).await, StreamEnd::Completed);
}

#[tokio::test]
async fn wait_for_holds_back_later_chunks_until_notified() {
    let mock = MockUpstream::start().await.unwrap();
    let gate = Arc::new(Notify::new());
    mock.push_reply(Reply::sse(vec![
        Chunk::Data("first".into()),
        Chunk::WaitFor(Arc::clone(&gate)),
        Chunk::Data("second".into()),
    ]));
    let resp = post_json(&mock, Protocol::ChatCompletions, &json!({ "stream": true })).await;
    let mut body = resp.into_body();
    assert_eq!(next_data(&mut body).await.unwrap(), "first");

    let early = tokio::time::timeout(Duration::from_millis(100), body.frame()).await;
    assert!(early.is_err(), "a chunk got past the gate: {early:?}");
    assert!(mock.try_next_stream_end().is_none());

    gate.notify_one();
    assert_eq!(next_data(&mut body).await.unwrap(), "second");
    assert!(next_data(&mut body).await.is_none());
    assert_eq!(stream_end(&mock).await, StreamEnd::Completed);
}

#[tokio::test]
async fn client_dropping_a_hanging_stream_is_reported_gone() {
    let mock = MockUpstream::start().await.unwrap();
    mock.push_reply(Reply::sse(vec![
        Chunk::Data("data: x\n\n".into()),
        Chunk::Hang,
    ]));
    let client = client();
    let url = format!("{}/chat/completions", mock.base_url());
    let resp = send(&client, Method::POST, &url, r#"{"stream":true}"#).await;
    let mut body = resp.into_body();
    assert_eq!(next_data(&mut body).await.unwrap(), "data: x\n\n");
    drop(body);
    drop(client);
    assert_eq!(stream_end(&mock).await, StreamEnd::ClientGone);
}

#[tokio::test]
async fn client_dropping_mid_stream_with_more_to_come_is_reported_gone() {
    let mock = MockUpstream::start().await.unwrap();
    let gate = Arc::new(Notify::new());
    mock.push_reply(Reply::sse(vec![
        Chunk::Data("one".into()),
        Chunk::WaitFor(Arc::clone(&gate)),
        Chunk::Data("two".into()),
    ]));
    let client = client();
    let url = format!("{}/responses", mock.base_url());
    let resp = send(&client, Method::POST, &url, r#"{"stream":true}"#).await;
    let mut body = resp.into_body();
    assert_eq!(next_data(&mut body).await.unwrap(), "one");
    drop(body);
    drop(client);
    assert_eq!(stream_end(&mock).await, StreamEnd::ClientGone);
}

#[tokio::test]
async fn requests_are_recorded_with_headers_and_body() {
    let mock = MockUpstream::start().await.unwrap();
    let client = client();
    let body = r#"{"model":"gpt-rec","messages":[{"role":"user","content":"héllo"}]}"#;
    let req = Request::builder()
        .method(Method::POST)
        .uri(format!(
            "{}/chat/completions?api-version=1",
            mock.base_url()
        ))
        .header("authorization", "Bearer sk-upstream")
        .header("x-trace", "abc")
        .body(Full::new(Bytes::from(body)))
        .unwrap();
    let resp = client.request(req).await.unwrap();
    body_bytes(resp).await;

    let seen = mock.requests();
    assert_eq!(seen.len(), 1);
    let req = &seen[0];
    assert_eq!(req.method, Method::POST);
    assert_eq!(req.path_and_query, "/v1/chat/completions?api-version=1");
    assert_eq!(req.path(), "/v1/chat/completions");
    assert_eq!(req.header("authorization"), Some("Bearer sk-upstream"));
    assert_eq!(req.header("X-Trace"), Some("abc"));
    assert_eq!(req.header("missing"), None);
    assert_eq!(req.body, body);
    assert_eq!(req.json()["model"], "gpt-rec");
}

#[tokio::test]
async fn requests_are_recorded_before_the_reply_and_awaitable() {
    let mock = Arc::new(MockUpstream::start().await.unwrap());
    // Neither reply will be sent before the test ends.
    mock.push_reply(Reply::json(200, "{}").with_head_delay(Duration::from_secs(3600)));
    mock.push_reply(Reply::sse(vec![Chunk::Hang]));
    let mut pending = Vec::new();
    for n in 0..2 {
        let url = format!("{}/messages", mock.base_url());
        pending.push(tokio::spawn(async move {
            let client = client();
            send(&client, Method::POST, &url, format!(r#"{{"n":{n}}}"#)).await
        }));
    }
    let seen = tokio::time::timeout(PATIENCE, mock.wait_for_requests(2))
        .await
        .unwrap();
    assert_eq!(seen.len(), 2);
    let mut ns: Vec<u64> = seen
        .iter()
        .map(|r| r.json()["n"].as_u64().unwrap())
        .collect();
    ns.sort_unstable();
    assert_eq!(ns, [0, 1]);
    assert_eq!(mock.request_count(), 2);
    for task in pending {
        task.abort();
    }
}

#[tokio::test]
async fn head_delay_delays_the_head() {
    let mock = MockUpstream::start().await.unwrap();
    let delay = Duration::from_millis(150);
    mock.push_reply(Reply::json(201, "{}").with_head_delay(delay));
    let started = tokio::time::Instant::now();
    let resp = post_json(&mock, Protocol::ChatCompletions, &json!({})).await;
    assert!(started.elapsed() >= delay);
    assert_eq!(resp.status(), StatusCode::CREATED);
}

#[tokio::test]
async fn keep_alive_connections_serve_many_requests() {
    let mock = MockUpstream::start().await.unwrap();
    let client = client();
    let url = format!("{}/chat/completions", mock.base_url());
    for _ in 0..5 {
        let resp = send(&client, Method::POST, &url, r#"{"model":"m"}"#).await;
        body_bytes(resp).await;
    }
    assert_eq!(mock.requests().len(), 5);
}

#[tokio::test]
async fn dropping_the_mock_stops_the_server() {
    let mock = MockUpstream::start().await.unwrap();
    let addr = mock.addr();
    drop(mock);
    // The listener is closed once the aborted task is dropped; connect
    // attempts then fail. Await that rather than sleeping a fixed time.
    let refused = tokio::time::timeout(PATIENCE, async {
        loop {
            if tokio::net::TcpStream::connect(addr).await.is_err() {
                break;
            }
            tokio::task::yield_now().await;
        }
    })
    .await;
    assert!(refused.is_ok());
}

#[tokio::test]
async fn client_giving_up_during_the_head_delay_of_a_stream_is_reported_gone() {
    let mock = MockUpstream::start().await.unwrap();
    mock.push_reply(
        Reply::sse(vec![Chunk::Data("never".into())]).with_head_delay(Duration::from_secs(3600)),
    );
    let url = format!("{}/chat/completions", mock.base_url());
    let request = tokio::spawn(async move {
        let client = client();
        send(&client, Method::POST, &url, "{}").await
    });
    mock.wait_for_requests(1).await;
    request.abort();
    assert_eq!(stream_end(&mock).await, StreamEnd::ClientGone);
}

#[tokio::test]
async fn a_model_list_and_a_required_key() {
    let mock = MockUpstream::start().await.unwrap();
    let models = format!("{}/models", mock.base_url());
    let no_list = send(&client(), Method::GET, &models, "").await;
    assert_eq!(no_list.status(), StatusCode::NOT_FOUND);

    mock.serve_models(&["m-1", "m-2"]);
    mock.require_key("sk-right");
    mock.push_reply(Reply::text(200, "scripted"));
    let without_key = send(&client(), Method::GET, &models, "").await;
    assert_eq!(without_key.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        mock.pending_replies(),
        1,
        "a refused request uses up no reply"
    );

    let listed = Request::get(&models)
        .header("authorization", "Bearer sk-right")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let listed = client().request(listed).await.unwrap();
    assert_eq!(listed.status(), StatusCode::OK);
    let list: Value = serde_json::from_slice(&body_bytes(listed).await).unwrap();
    assert_eq!(list["data"][1]["id"], "m-2");
    assert_eq!(
        mock.pending_replies(),
        1,
        "the list is not a scripted reply"
    );

    let chat = Request::post(format!("{}/chat/completions", mock.base_url()))
        .header("x-api-key", "sk-right")
        .body(Full::new(Bytes::from_static(b"{}")))
        .unwrap();
    let chat = client().request(chat).await.unwrap();
    assert_eq!(body_bytes(chat).await, "scripted");
    assert_eq!(mock.request_count(), 4);
}
