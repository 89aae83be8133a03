//! The control plane over real sockets with a fake daemon: routing, the
//! Host guard, authentication, errors, queries, bodies, the OpenAPI
//! document, the dashboard assets and shutdown.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::{Value, json};
use support::{FakeApi, Reply, Server, TOKEN, raw, read_one};
use tb_control::ShutdownOutcome;
use tb_control::api::UsageBy;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

const BEARER: &str = "Bearer test-token-0123456789";

async fn post(s: &Server, path: &str, body: &str) -> Reply {
    s.send(
        "POST",
        path,
        Some(&s.host()),
        &[
            ("Authorization", BEARER),
            ("Content-Type", "application/json"),
        ],
        Some(body.as_bytes()),
    )
    .await
}

#[tokio::test]
async fn every_read_endpoint_answers_the_api_document() {
    let s = Server::start().await;
    let cases: Vec<(&str, Value)> = vec![
        ("/v1/status", FakeApi::status_doc()),
        ("/v1/upstreams", FakeApi::upstreams_doc()),
        ("/v1/credit", FakeApi::credit_doc()),
        ("/v1/purchases/pending", FakeApi::pending_doc()),
        ("/v1/usage", FakeApi::usage_doc("model")),
        ("/v1/sellers", FakeApi::sellers_doc()),
        ("/v1/sellers/audit", FakeApi::seller_audit_doc()),
        ("/v1/doctor", FakeApi::doctor_doc()),
        ("/v1/trust", FakeApi::trust_doc()),
        (
            "/v1/calls",
            json!({"calls": FakeApi::all_calls(), "next_before": null}),
        ),
    ];
    for (path, want) in cases {
        let r = s.get(path).await;
        assert_eq!(r.status, 200, "{path}: {}", r.text());
        assert_eq!(r.header("content-type"), Some("application/json"), "{path}");
        assert_eq!(r.header("cache-control"), Some("no-store"), "{path}");
        assert_eq!(r.json(), want, "{path}");
    }
    let r = s.get("/v1/prewarm").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["entries"][0]["entry"]["state"], "warm");
    let r = s.get("/v1/provider-mode").await;
    assert_eq!(r.json()["mode"], "both");
    let r = s.get("/v1/install").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["clients"][1]["id"], "codex");

    let r = s.get("/healthz").await;
    assert_eq!((r.status, r.text().as_str()), (200, "ok"));
    assert_eq!(r.header("content-type"), Some("text/plain; charset=utf-8"));

    let r = s.get("/metrics").await;
    assert_eq!(r.status, 200);
    assert!(
        r.header("content-type")
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    assert_eq!(r.text(), FakeApi::metrics_text());
}

#[tokio::test]
async fn manual_mode_nulls_are_answered_as_json_null() {
    let mut api = FakeApi::new(TOKEN);
    api.manual_mode = true;
    let s = Server::start_with(api).await;
    for path in ["/v1/credit", "/v1/prewarm"] {
        let r = s.get(path).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.json(), Value::Null, "{path}");
    }
}

#[tokio::test]
async fn mutating_endpoints_call_the_api_with_the_body() {
    let s = Server::start().await;
    let r = post(
        &s,
        "/v1/install/preview",
        r#"{"clients": ["codex"], "model": "deepseek-chat"}"#,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.json()["diff"].as_str().unwrap().contains("<redacted>"));

    let r = post(&s, "/v1/install/apply", r#"{"clients": ["codex"]}"#).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["changed"][0]["client"], "codex");
    assert_eq!(
        s.get("/v1/install").await.json()["clients"][1]["configured"],
        true
    );

    let r = post(&s, "/v1/install/undo", r#"{"clients": ["codex"]}"#).await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.json()["changed"][0]["description"],
        "restored the pristine copy"
    );
    assert_eq!(
        s.get("/v1/install").await.json()["clients"][1]["configured"],
        false
    );

    // The API's own errors keep their status and code.
    post(&s, "/v1/install/apply", r#"{"clients": ["nope"]}"#)
        .await
        .assert_error(404, "unknown_client");

    let r = s
        .send(
            "PUT",
            "/v1/provider-mode",
            Some(&s.host()),
            &[("x-api-key", TOKEN)],
            Some(br#"{"mode": "auto"}"#),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["mode"], "auto");
    assert_eq!(s.get("/v1/provider-mode").await.json()["mode"], "auto");
    s.send(
        "PUT",
        "/v1/provider-mode",
        Some(&s.host()),
        &[("x-api-key", TOKEN)],
        Some(br#"{"mode": "sometimes"}"#),
    )
    .await
    .assert_error(400, "invalid_request");

    // An empty body is the empty object.
    let r = post(&s, "/v1/probe/reload", "").await;
    assert_eq!((r.status, r.json()), (200, json!({"entries": 1})));

    let bodies: Vec<&str> = s.api.seen().bodies.iter().map(|(m, _)| *m).collect();
    assert_eq!(
        bodies,
        [
            "install_preview",
            "install_apply",
            "install_undo",
            "install_apply",
            "set_provider_mode",
            "reload_probes",
        ]
    );
    assert_eq!(
        s.api.seen().bodies[0].1,
        json!({"clients": ["codex"], "model": "deepseek-chat"})
    );
}

#[tokio::test]
async fn host_guard() {
    let s = Server::start().await;
    let port = s.addr.port();
    for host in [
        format!("localhost:{port}"),
        "localhost".to_string(),
        format!("127.0.0.1:{port}"),
        "127.0.0.1".to_string(),
        format!("[::1]:{port}"),
        "[::1]".to_string(),
    ] {
        let r = s.send("GET", "/v1/status", Some(&host), &[], None).await;
        assert_eq!(r.status, 200, "Host {host}");
    }
    for host in [
        format!("evil.example:{port}"),
        "evil.example".to_string(),
        format!("localhost.evil.example:{port}"),
        format!("127.0.0.1.nip.io:{port}"),
        format!("192.168.1.10:{port}"),
        format!("0.0.0.0:{port}"),
    ] {
        for path in ["/v1/status", "/", "/app.js", "/healthz", "/nope"] {
            let r = s
                .send(
                    "GET",
                    path,
                    Some(&host),
                    &[("Origin", "http://evil.example")],
                    None,
                )
                .await;
            r.assert_error(403, "forbidden_host");
        }
        // Even with the right token, and before the body is looked at.
        let r = s
            .send(
                "POST",
                "/v1/install/apply",
                Some(&host),
                &[("Authorization", BEARER)],
                Some(b"{}"),
            )
            .await;
        r.assert_error(403, "forbidden_host");
    }
    assert!(s.api.seen().bodies.is_empty());

    // No Host at all: HTTP/1.1 and HTTP/1.0.
    s.send("GET", "/v1/status", None, &[], None)
        .await
        .assert_error(403, "forbidden_host");
    raw(s.addr, b"GET /v1/status HTTP/1.0\r\n\r\n")
        .await
        .assert_error(403, "forbidden_host");
    // Two Host headers.
    let two = format!(
        "GET /v1/status HTTP/1.1\r\nHost: localhost:{port}\r\nHost: evil.example\r\nConnection: close\r\n\r\n"
    );
    let r = raw(s.addr, two.as_bytes()).await;
    assert!(r.status == 400 || r.status == 403, "{}", r.status);
    // An absolute-form target naming another host.
    let abs = format!(
        "GET http://evil.example/v1/status HTTP/1.1\r\nHost: localhost:{port}\r\nConnection: close\r\n\r\n"
    );
    raw(s.addr, abs.as_bytes())
        .await
        .assert_error(403, "forbidden_host");
}

#[tokio::test]
async fn mutations_need_the_token() {
    let s = Server::start().await;
    let cases = [
        ("POST", "/v1/install/preview"),
        ("POST", "/v1/install/apply"),
        ("POST", "/v1/install/undo"),
        ("PUT", "/v1/provider-mode"),
    ];
    for (method, path) in cases {
        let body: &[u8] = if method == "PUT" {
            br#"{"mode": "auto"}"#
        } else {
            b"{}"
        };
        for headers in [
            vec![],
            vec![("Authorization", "Bearer wrong")],
            vec![("Authorization", "Basic dGVzdA==")],
            vec![("x-api-key", "wrong")],
        ] {
            let r = s
                .send(method, path, Some(&s.host()), &headers, Some(body))
                .await;
            r.assert_error(401, "invalid_access_token");
            assert_eq!(r.header("www-authenticate"), Some("Bearer"));
        }
        let r = s
            .send(
                method,
                path,
                Some(&s.host()),
                &[("Authorization", BEARER)],
                Some(body),
            )
            .await;
        assert_eq!(r.status, 200, "{method} {path}: {}", r.text());
        let r = s
            .send(
                method,
                path,
                Some(&s.host()),
                &[("x-api-key", TOKEN)],
                Some(body),
            )
            .await;
        assert_eq!(r.status, 200, "{method} {path}: {}", r.text());
    }
    // Only the 8 authorized requests reached the API.
    assert_eq!(s.api.seen().bodies.len(), 8);
    // Reads need no token.
    assert_eq!(s.get("/v1/provider-mode").await.status, 200);
}

#[tokio::test]
async fn unknown_routes_and_wrong_methods() {
    let s = Server::start().await;
    for path in [
        "/nope",
        "/v1",
        "/v1/",
        "/v1/status/",
        "/v1/install/other",
        "/V1/STATUS",
        "/index.htm",
    ] {
        s.get(path).await.assert_error(404, "unknown_route");
    }
    // 404 comes before authentication.
    s.send("POST", "/v1/nope", Some(&s.host()), &[], Some(b"{}"))
        .await
        .assert_error(404, "unknown_route");

    let cases = [
        ("POST", "/v1/status", "GET"),
        ("DELETE", "/v1/provider-mode", "GET, PUT"),
        ("POST", "/v1/provider-mode", "GET, PUT"),
        ("GET", "/v1/install/apply", "POST"),
        ("PUT", "/v1/install/undo", "POST"),
        ("POST", "/", "GET"),
        ("OPTIONS", "/v1/status", "GET"),
        ("OPTIONS", "/v1/install/apply", "POST"),
    ];
    for (method, path, allow) in cases {
        let r = s
            .send(
                method,
                path,
                Some(&s.host()),
                &[
                    ("Origin", "http://evil.example"),
                    ("Access-Control-Request-Method", "POST"),
                ],
                None,
            )
            .await;
        assert_eq!(r.status, 405, "{method} {path}");
        assert_eq!(r.header("allow"), Some(allow), "{method} {path}");
        r.assert_error(405, "method_not_allowed");
    }
}

#[tokio::test]
async fn query_parsing() {
    let s = Server::start().await;
    assert_eq!(s.get("/v1/calls").await.status, 200);
    let r = s.get("/v1/calls?limit=2").await;
    let page = r.json();
    assert_eq!(page["calls"].as_array().unwrap().len(), 2);
    let cursor = page["next_before"].as_str().unwrap().to_string();
    assert_eq!(
        cursor,
        format!("{}:0190-0002", support::fake::NOW_MS - 120_000)
    );
    let encoded = cursor.replace(':', "%3A");
    let r = s
        .get(&format!("/v1/calls?before={encoded}&limit=1000&unknown=1"))
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["calls"][0]["id"], "0190-0003");
    assert_eq!(s.get("/v1/calls?limit=1").await.status, 200);
    assert_eq!(
        s.api.seen().calls,
        vec![(50, None), (2, None), (1000, Some(cursor)), (1, None)]
    );
    for bad in [
        "limit=0",
        "limit=1001",
        "limit=-3",
        "limit=many",
        "limit=%",
        "before=yesterday",
        "before=1%3A",
        "limit=1&before=%FF",
    ] {
        s.get(&format!("/v1/calls?{bad}"))
            .await
            .assert_error(400, "invalid_query");
    }
    assert_eq!(
        s.api.seen().calls.len(),
        4,
        "invalid queries never reach the API"
    );

    assert_eq!(s.get("/v1/usage").await.status, 200);
    assert_eq!(s.get("/v1/usage?by=day&since=7d").await.status, 200);
    dashboard_queries(&s).await;
    assert_eq!(
        s.get("/v1/usage?since=2024-05-01T00%3A00%3A00%2B02%3A00&by=upstream")
            .await
            .status,
        200
    );
    assert_eq!(s.get("/v1/usage?since=12h&by=").await.status, 200);
    assert_eq!(
        s.api.seen().usage,
        vec![
            ("7d".into(), UsageBy::Model),
            ("7d".into(), UsageBy::Day),
            ("2024-05-01T00:00:00+02:00".into(), UsageBy::Upstream),
            ("12h".into(), UsageBy::Model),
        ]
    );
    s.get("/v1/usage?by=seller")
        .await
        .assert_error(400, "invalid_query");
    s.get("/v1/usage?since=%0A1d")
        .await
        .assert_error(400, "invalid_query");
    // The API's own refusal of `since`.
    s.get("/v1/usage?since=never")
        .await
        .assert_error(400, "invalid_request");

    assert_eq!(s.get("/v1/sellers").await.status, 200);
    assert_eq!(s.get("/v1/sellers/audit?since=30m").await.status, 200);
    s.get("/v1/sellers/audit?since=%0A1d")
        .await
        .assert_error(400, "invalid_query");
    assert_eq!(s.api.seen().sellers, ["7d", "30m"]);
}

#[tokio::test]
async fn request_bodies() {
    let s = Server::start().await;
    // An empty body is `{}` for the installer, but not for the mode.
    let r = s
        .send(
            "POST",
            "/v1/install/apply",
            Some(&s.host()),
            &[("Authorization", BEARER)],
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(s.api.seen().bodies.last().unwrap().1, json!({}));
    s.send(
        "PUT",
        "/v1/provider-mode",
        Some(&s.host()),
        &[("Authorization", BEARER)],
        Some(b""),
    )
    .await
    .assert_error(400, "invalid_json");
    for bad in [
        "{",
        "[1]",
        "\"auto\"",
        "null",
        "{\"mode\": \"auto\"} trailing",
        "\u{feff}{}",
    ] {
        post(&s, "/v1/install/preview", bad)
            .await
            .assert_error(400, "invalid_json");
    }

    // Exactly 1 MiB is accepted.
    let pad = tb_control::MAX_BODY_BYTES - r#"{"model": ""}"#.len();
    let body = format!(r#"{{"model": "{}"}}"#, "x".repeat(pad));
    assert_eq!(body.len(), tb_control::MAX_BODY_BYTES);
    let r = post(&s, "/v1/install/preview", &body).await;
    assert_eq!(r.status, 200, "{}", r.text());

    // One byte more is refused, whether declared or streamed.
    let body = format!(r#"{{"model": "{}"}}"#, "x".repeat(pad + 1));
    post(&s, "/v1/install/preview", &body)
        .await
        .assert_error(413, "body_too_large");
    let declared = format!(
        "POST /v1/install/apply HTTP/1.1\r\nHost: {}\r\nAuthorization: {BEARER}\r\nContent-Length: 5000000\r\nConnection: close\r\n\r\n{{}}",
        s.host()
    );
    // (Read the answer without waiting for the close: the server may keep
    // draining the announced body for a while.)
    let mut stream = TcpStream::connect(s.addr).await.unwrap();
    stream.write_all(declared.as_bytes()).await.unwrap();
    read_one(&mut stream, &mut Vec::new())
        .await
        .assert_error(413, "body_too_large");
    drop(stream);
    let mut chunked = format!(
        "POST /v1/install/apply HTTP/1.1\r\nHost: {}\r\nAuthorization: {BEARER}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
        s.host()
    )
    .into_bytes();
    for _ in 0..17 {
        chunked.extend_from_slice(b"10000\r\n");
        chunked.extend_from_slice(&[b' '; 0x10000]);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    raw(s.addr, &chunked)
        .await
        .assert_error(413, "body_too_large");
    // The refused bodies never reached the API.
    assert_eq!(s.api.seen().bodies.len(), 2);
}

#[tokio::test]
async fn openapi_lists_every_documented_endpoint() {
    let s = Server::start().await;
    let r = s.get("/v1/openapi.json").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/json"));
    let doc = r.json();
    assert_eq!(
        doc,
        serde_json::from_str::<Value>(tb_control::openapi_json()).unwrap()
    );
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
    let paths = doc["paths"].as_object().unwrap();

    // Every `METHOD /path` of the contract, read from the document itself.
    let contract = include_str!("../../../docs/control-plane.md");
    let mut documented = BTreeSet::new();
    for line in contract.lines().filter(|l| l.starts_with("| `")) {
        let mut last_path = None;
        for span in line.split('`').skip(1).step_by(2) {
            let mut words = span.split_whitespace();
            let (Some(method), rest) = (words.next(), words.next()) else {
                continue;
            };
            if !["GET", "PUT", "POST"].contains(&method) {
                continue;
            }
            let path = match rest {
                Some(p) => p.split('?').next().unwrap().to_string(),
                None => last_path
                    .clone()
                    .expect("a method without a path follows one with a path"),
            };
            last_path = Some(path.clone());
            documented.insert((method.to_ascii_lowercase(), path));
        }
    }
    assert!(documented.len() >= 16, "parsed {documented:?}");
    assert!(documented.contains(&("put".into(), "/v1/provider-mode".into())));
    for (method, path) in &documented {
        let op = &paths
            .get(path)
            .unwrap_or_else(|| panic!("openapi lacks {path}"))[method];
        assert!(op.is_object(), "openapi lacks {method} {path}");
        assert!(
            op["responses"]["200"].is_object(),
            "{method} {path} has no 200 answer"
        );
        // And the server really serves it (reads answer 200, writes 401 without a token).
        let path = &path.replace("{id}", "0190-0001");
        let r = s
            .send(
                &method.to_ascii_uppercase(),
                path,
                Some(&s.host()),
                &[],
                Some(b"{}"),
            )
            .await;
        assert!(
            r.status == 200 || r.status == 401,
            "{method} {path}: {}",
            r.status
        );
    }
    assert!(paths.contains_key("/v1/openapi.json"));

    // Every $ref resolves.
    fn refs(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(m) => {
                if let Some(Value::String(r)) = m.get("$ref") {
                    out.push(r.clone());
                }
                m.values().for_each(|v| refs(v, out));
            }
            Value::Array(a) => a.iter().for_each(|v| refs(v, out)),
            _ => {}
        }
    }
    let mut all = Vec::new();
    refs(&doc, &mut all);
    assert!(!all.is_empty());
    for r in all {
        let name = r.strip_prefix("#/components/schemas/").unwrap();
        assert!(
            doc["components"]["schemas"][name].is_object(),
            "dangling {r}"
        );
    }
    // The strict check is not vacuous: a missing field and an extra one fail.
    let p = support::schema::response_pointer("GET", "/v1/doctor");
    assert!(!support::schema::errors(&doc, &p, &json!({"ok": true})).is_empty());
    let extra = json!({"ok": true, "checks": [], "verdict": "pass"});
    assert!(!support::schema::errors(&doc, &p, &extra).is_empty());
    assert!(support::schema::errors(&doc, &p, &json!({"ok": true, "checks": []})).is_empty());
}

/// The typed documents (the fake's canned JSON decoded into the API types
/// and encoded back, as the server does) match the OpenAPI document's
/// schemas strictly: a field added to, removed from or renamed in a type
/// without the document fails here.
#[tokio::test]
async fn every_typed_answer_matches_the_openapi_document() {
    use support::schema::{
        assert_valid, component_pointer, document, request_pointer, response_pointer,
    };
    let doc = document();
    for manual in [false, true] {
        let mut api = FakeApi::new(TOKEN);
        api.manual_mode = manual;
        let s = Server::start_with(api).await;
        for path in [
            "/v1/status",
            "/v1/upstreams",
            "/v1/prewarm",
            "/v1/calls",
            "/v1/usage",
            "/v1/credit",
            "/v1/sellers",
            "/v1/sellers/audit",
            "/v1/purchases/pending",
            "/v1/provider-mode",
            "/v1/install",
            "/v1/doctor",
            "/v1/series",
            "/v1/trust",
        ] {
            let r = s.get(path).await;
            assert_eq!(r.status, 200, "{path}");
            assert_valid(&doc, &response_pointer("GET", path), &r.json());
        }
        let r = s.get("/v1/calls/0190-0002").await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert_valid(&doc, &response_pointer("GET", "/v1/calls/{id}"), &r.json());
        for (path, status) in [("/v1/calls/nope", 404), ("/v1/calls/a%20b", 400)] {
            let r = s.get(path).await;
            assert_eq!(r.status, status, "{path}");
            assert_valid(&doc, &component_pointer("Error"), &r.json());
        }
        for (path, body) in [
            (
                "/v1/install/preview",
                r#"{"clients": ["codex"], "model": "m", "force": true}"#,
            ),
            ("/v1/install/apply", r#"{"clients": ["codex"]}"#),
            ("/v1/install/undo", r#"{"clients": ["codex"]}"#),
            ("/v1/probe/reload", "{}"),
        ] {
            let r = post(&s, path, body).await;
            assert_eq!(r.status, 200, "{path}: {}", r.text());
            assert_valid(&doc, &response_pointer("POST", path), &r.json());
            let sent: Value = serde_json::from_str(body).unwrap();
            assert_valid(&doc, &request_pointer("POST", path), &sent);
        }
        let put = br#"{"mode": "auto", "auto": {"enabled": true, "range": "custom", "seller_ids": ["s-good"], "payment_method": "mock"}}"#;
        let r = s
            .send(
                "PUT",
                "/v1/provider-mode",
                Some(&s.host()),
                &[("x-api-key", TOKEN)],
                Some(put),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert_valid(
            &doc,
            &response_pointer("PUT", "/v1/provider-mode"),
            &r.json(),
        );
        let sent: Value = serde_json::from_slice(put).unwrap();
        assert_valid(&doc, &request_pointer("PUT", "/v1/provider-mode"), &sent);
        // Errors too.
        let r = s.get("/v1/nope").await;
        assert_valid(
            &doc,
            &support::schema::component_pointer("Error"),
            &r.json(),
        );
    }
}

/// A request body that does not match its type is refused before the API
/// sees it: unknown (misspelt) fields, wrong types, a missing mode.
#[tokio::test]
async fn request_bodies_are_typed() {
    let s = Server::start().await;
    for (path, body) in [
        ("/v1/install/preview", r#"{"client": ["codex"]}"#),
        ("/v1/install/apply", r#"{"clients": "codex"}"#),
        (
            "/v1/install/undo",
            r#"{"clients": ["codex"], "model": "m"}"#,
        ),
    ] {
        post(&s, path, body)
            .await
            .assert_error(400, "invalid_request");
    }
    for body in [
        r#"{"auto": null}"#,
        r#"{"mode": "auto", "auto": {"enable": true}}"#,
        r#"{"mode": "auto", "auto": {"range": "everything"}}"#,
    ] {
        s.send(
            "PUT",
            "/v1/provider-mode",
            Some(&s.host()),
            &[("x-api-key", TOKEN)],
            Some(body.as_bytes()),
        )
        .await
        .assert_error(400, "invalid_request");
    }
    assert!(s.api.seen().bodies.is_empty());
}

#[tokio::test]
async fn dashboard_assets_and_security_headers() {
    let s = Server::start().await;
    for (path, ctype) in [
        ("/", "text/html; charset=utf-8"),
        ("/index.html", "text/html; charset=utf-8"),
        ("/app.js", "text/javascript; charset=utf-8"),
        ("/style.css", "text/css; charset=utf-8"),
        ("/favicon.svg", "image/svg+xml"),
    ] {
        let r = s.get(path).await;
        assert_eq!(r.status, 200, "{path}");
        assert_eq!(r.header("content-type"), Some(ctype), "{path}");
        assert_eq!(
            r.header("content-security-policy"),
            Some("default-src 'self'"),
            "{path}"
        );
        assert_eq!(
            r.header("x-content-type-options"),
            Some("nosniff"),
            "{path}"
        );
        assert_eq!(r.header("referrer-policy"), Some("no-referrer"), "{path}");
        assert_eq!(r.header("x-frame-options"), Some("DENY"), "{path}");
        assert!(!r.body.is_empty());
    }
    // API answers carry them too.
    let r = s.get("/v1/status").await;
    assert_eq!(r.header("x-content-type-options"), Some("nosniff"));

    let html = s.get("/").await.text();
    // No inline script or style (the CSP would block them), nothing remote.
    assert_eq!(html.matches("<script").count(), 1);
    assert!(html.contains(r#"<script src="/app.js" defer></script>"#));
    assert!(
        !html.contains("<style") && !html.contains(" style="),
        "inline style"
    );
    let lower = html.to_ascii_lowercase();
    let handler = lower.match_indices(" on").any(|(i, _)| {
        let rest = &lower[i + 3..];
        let name_len = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
        name_len > 0 && rest[name_len..].starts_with('=')
    });
    assert!(!handler, "inline event handler in index.html");
    assert!(!html.contains("http://") && !html.contains("https://") && !html.contains("//cdn"));
    // Landmarks, labelled token field, table headers.
    for needle in [
        "<header",
        "<main",
        "<footer",
        r#"<label for="access-token">"#,
        r#"type="password""#,
        r#"<th scope="col">"#,
        r#"lang="en""#,
    ] {
        assert!(html.contains(needle), "index.html lacks {needle}");
    }
    // The data-testid hooks the browser check relies on.
    let js = s.get("/app.js").await.text();
    for id in [
        "dashboard",
        "status-line",
        "load-error",
        "summary-calls",
        "summary-spend",
        "summary-saved",
        "chart",
        "calls-body",
        "upstreams-body",
        "credit-section",
        "clients-body",
        "access-token",
        "doctor-list",
        "last-updated",
    ] {
        assert!(
            html.contains(&format!(r#"data-testid="{id}""#)),
            "index.html lacks data-testid {id}"
        );
    }
    for id in [
        "chart-svg",
        "call-row",
        "call-model",
        "call-chain",
        "call-cost",
        "call-flags",
        "call-outcome",
        "upstream-row",
        "upstream-circuit",
        "credit-row",
        "client-row",
        "client-configured",
        "client-install",
        "client-undo",
        "client-result",
        "doctor-check",
        "doctor-verdict",
    ] {
        assert!(
            js.contains(&format!("'{id}'")),
            "app.js lacks data-testid {id}"
        );
    }
}

#[tokio::test]
async fn app_js_never_builds_html_from_strings() {
    let s = Server::start().await;
    let js = s.get("/app.js").await.text();
    for banned in [
        "innerHTML",
        "outerHTML",
        "insertAdjacentHTML",
        "document.write",
        "eval(",
        "new Function",
        "createContextualFragment",
    ] {
        assert!(!js.contains(banned), "app.js uses {banned}");
    }
    assert!(js.contains("textContent"));
    // Only same-origin, relative fetches: "http" appears only in the SVG
    // namespace and the pay-link scheme check.
    assert_eq!(js.matches("PAY_LINK = /^https?:").count(), 1);
    assert_eq!(
        js.matches("http").count(),
        js.matches("http://www.w3.org/2000/svg").count() + 1
    );
}

#[tokio::test]
async fn keep_alive_serves_several_requests_on_one_connection() {
    let s = Server::start().await;
    let mut stream = TcpStream::connect(s.addr).await.unwrap();
    let mut pending = Vec::new();
    for path in ["/healthz", "/v1/status", "/nope", "/app.js"] {
        let req = format!("GET {path} HTTP/1.1\r\nHost: {}\r\n\r\n", s.host());
        stream.write_all(req.as_bytes()).await.unwrap();
        let r = read_one(&mut stream, &mut pending).await;
        assert!(r.status == 200 || r.status == 404, "{path}");
    }
    // A refused request does not poison the connection either.
    let req = "GET /v1/status HTTP/1.1\r\nHost: evil.example\r\n\r\n";
    stream.write_all(req.as_bytes()).await.unwrap();
    read_one(&mut stream, &mut pending)
        .await
        .assert_error(403, "forbidden_host");
    let req = format!(
        "POST /v1/install/apply HTTP/1.1\r\nHost: {}\r\nContent-Length: 2\r\n\r\n{{}}",
        s.host()
    );
    stream.write_all(req.as_bytes()).await.unwrap();
    read_one(&mut stream, &mut pending)
        .await
        .assert_error(401, "invalid_access_token");
    let req = format!("GET /healthz HTTP/1.1\r\nHost: {}\r\n\r\n", s.host());
    stream.write_all(req.as_bytes()).await.unwrap();
    assert_eq!(read_one(&mut stream, &mut pending).await.status, 200);
}

#[tokio::test]
async fn shutdown_drains_in_flight_requests() {
    let mut api = FakeApi::new(TOKEN);
    api.doctor_delay = Duration::from_millis(300);
    let mut s = Server::start_with(api).await;
    // An idle keep-alive connection does not hold shutdown up.
    let idle = TcpStream::connect(s.addr).await.unwrap();
    let addr = s.addr;
    let host = s.host();
    let in_flight = tokio::spawn(async move {
        let req = format!("GET /v1/doctor HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
        raw(addr, req.as_bytes()).await
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = std::time::Instant::now();
    assert_eq!(s.stop().await, ShutdownOutcome::Drained);
    assert!(started.elapsed() < Duration::from_secs(3));
    let r = in_flight.await.unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.json(), FakeApi::doctor_doc());
    drop(idle);
    // The listener is closed.
    assert!(TcpStream::connect(addr).await.is_err());
}

/// The filters of `/v1/calls` and `/v1/series` reach the API typed; a bad
/// value is a 400 naming the parameter, before the API is asked.
async fn dashboard_queries(s: &Server) {
    use tb_control::api::{CallFilter, SeriesBucket, SeriesRequest};
    use tb_domain::Protocol;
    let before = s.api.seen().call_filters.len();
    let r = s
        .get("/v1/calls?model=gpt-4o&upstream=s-good&protocol=chat_completions&outcome=ok")
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let seen = s.api.seen().call_filters;
    assert_eq!(seen.len(), before + 1);
    let f = seen.last().unwrap();
    assert_eq!(f.model.as_deref(), Some("gpt-4o"));
    assert_eq!(f.upstream.as_deref(), Some("s-good"));
    assert_eq!(f.protocol, Some(Protocol::ChatCompletions));
    assert_eq!(f.outcome, Some(tb_billing::record::CallOutcome::Ok));
    for bad in ["outcome=bogus", "protocol=chat", "model=%0A"] {
        for path in ["/v1/calls", "/v1/series"] {
            let r = s.get(&format!("{path}?{bad}")).await;
            r.assert_error(400, "invalid_query");
            let name = bad.split('=').next().unwrap();
            assert!(
                r.text().contains(&format!("{name} must be")),
                "{path}?{bad}: {}",
                r.text()
            );
        }
    }
    s.get("/v1/series?bucket=week")
        .await
        .assert_error(400, "invalid_query");
    assert_eq!(s.api.seen().call_filters.len(), before + 1);
    assert!(
        s.api.seen().series.is_empty(),
        "bad series queries never reach the API"
    );
    let r = s.get("/v1/series?since=7d&bucket=day&upstream=s-bad").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        s.api.seen().series,
        vec![SeriesRequest {
            since: "7d".into(),
            bucket: SeriesBucket::Day,
            filter: CallFilter {
                upstream: Some("s-bad".into()),
                ..CallFilter::default()
            },
        }]
    );
    s.get("/v1/calls/")
        .await
        .assert_error(400, "invalid_call_id");
    s.get("/v1/calls/nope")
        .await
        .assert_error(404, "call_not_found");
    assert_eq!(s.get("/v1/calls/0190-0001").await.json()["id"], "0190-0001");
}
