//! The benchmark harness's two helpers (driven by `cargo xtask bench`):
//!
//! - `bench_mock serve [--delay-ms D] [--gap-us G]`: a lean OpenAI chat
//!   upstream on an ephemeral loopback port — no request recording, no
//!   scripting, so it is never the bottleneck. Non-streamed requests get
//!   the canned JSON after `D` ms; `"stream":true` gets the canned SSE
//!   events with `G` µs between them. Prints `url: http://…`.
//! - `bench_mock forward URL`: the smallest HTTP/1.1 proxy hyper makes — it
//!   sends each request on to `URL` through a pooled client and streams the
//!   answer back, nothing else (no auth, no parsing, no routing, no
//!   ledger). Its throughput is the ceiling any two-hop gateway can reach
//!   on the machine; the harness reports the daemon against it.
//!   Prints `url: http://…`.
//! - `bench_mock stream-probe URL [TOKEN] [N] [--messages]`: opens `N`
//!   streams one after the other and prints, as JSON, the time to the
//!   first byte, to the first *content* byte (the first chunk with a
//!   non-empty delta: the daemon holds a stream until then so it can still
//!   fail over) and the gaps between body chunks (µs percentiles). Run once
//!   direct and once through the daemon, the difference is what the daemon
//!   adds. `--messages` asks `/v1/messages` in Anthropic's shape instead of
//!   chat completions: through the daemon in front of this chat-only mock,
//!   that is a translated route.
//!
//! ```text
//! cargo run --release -p tb-test-support --example bench_mock -- serve
//! ```
#![allow(clippy::print_stdout)]

use std::convert::Infallible;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tb_domain::Protocol;
use tb_test_support::canned;
use tokio::net::TcpListener;

type Boxed = http_body_util::combinators::BoxBody<Bytes, Infallible>;

fn arg_after(args: &[String], flag: &str) -> Option<u64> {
    args.iter()
        .position(|a| a == flag)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("serve") => {
            let delay = Duration::from_millis(arg_after(&args, "--delay-ms").unwrap_or(0));
            let gap = Duration::from_micros(arg_after(&args, "--gap-us").unwrap_or(0));
            serve(delay, gap).await
        }
        Some("forward") => {
            let upstream = args.get(1).ok_or("forward URL")?;
            forward(upstream.trim_end_matches('/').to_owned()).await
        }
        Some("stream-probe") => {
            let url = args.get(1).ok_or("stream-probe URL [TOKEN] [N]")?;
            let token = args.get(2).cloned().unwrap_or_default();
            let n = args.get(3).and_then(|n| n.parse().ok()).unwrap_or(200);
            let shape = if args.iter().any(|a| a == "--messages") {
                ProbeShape::MESSAGES
            } else {
                ProbeShape::CHAT
            };
            stream_probe(url, &token, n, shape).await
        }
        _ => Err(
            "usage: bench_mock serve [--delay-ms D] [--gap-us G] | forward URL | stream-probe URL [TOKEN] [N] [--messages]"
                .into(),
        ),
    }
}

async fn serve(delay: Duration, gap: Duration) -> Result<(), Box<dyn std::error::Error>> {
    let listener = TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))).await?;
    println!("url: http://{}", listener.local_addr()?);
    let json = Bytes::from(canned::json(Protocol::ChatCompletions, "bench-model"));
    let events: Vec<Bytes> = canned::sse_events(Protocol::ChatCompletions, "bench-model")
        .into_iter()
        .map(Bytes::from)
        .collect();
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        let (json, events) = (json.clone(), events.clone());
        tokio::spawn(async move {
            let service =
                service_fn(move |req: Request<Incoming>| {
                    let (json, events) = (json.clone(), events.clone());
                    async move {
                        let body = req
                            .into_body()
                            .collect()
                            .await
                            .map(|b| b.to_bytes())
                            .unwrap_or_default();
                        let streamed = body.windows(13).any(|w| w == b"\"stream\":true");
                        if !delay.is_zero() {
                            tokio::time::sleep(delay).await;
                        }
                        let resp = if streamed {
                            let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(4);
                            tokio::spawn(async move {
                                for (i, e) in events.into_iter().enumerate() {
                                    if i > 0 && !gap.is_zero() {
                                        tokio::time::sleep(gap).await;
                                    }
                                    if tx.send(e).await.is_err() {
                                        return;
                                    }
                                }
                            });
                            let body: Boxed = BodyExt::boxed(ChannelBody(rx));
                            Response::builder()
                                .header("content-type", "text/event-stream")
                                .body(body)
                        } else {
                            Response::builder()
                                .header("content-type", "application/json")
                                .body(BodyExt::boxed(Full::new(json)))
                        };
                        Ok::<_, http::Error>(resp.unwrap_or_else(|_| {
                            Response::new(BodyExt::boxed(Full::new(Bytes::new())))
                        }))
                    }
                });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn forward(upstream: String) -> Result<(), Box<dyn std::error::Error>> {
    let listener = TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))).await?;
    println!("url: http://{}", listener.local_addr()?);
    let client: Client<_, Incoming> = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(64)
        .build_http();
    let upstream: std::sync::Arc<str> = upstream.into();
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        let (client, upstream) = (client.clone(), upstream.clone());
        tokio::spawn(async move {
            let service = service_fn(move |req: Request<Incoming>| {
                let (client, upstream) = (client.clone(), upstream.clone());
                async move {
                    let (mut parts, body) = req.into_parts();
                    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
                    let forwarded = match format!("{upstream}{path}").parse() {
                        Ok(uri) => {
                            parts.uri = uri;
                            parts.headers.remove(http::header::HOST);
                            client.request(Request::from_parts(parts, body)).await.ok()
                        }
                        Err(_) => None,
                    };
                    Ok::<_, Infallible>(match forwarded {
                        Some(resp) => resp.map(BodyExt::boxed),
                        None => {
                            let mut resp = Response::new(
                                Full::new(Bytes::from_static(b"bad gateway"))
                                    .map_err(|never| match never {})
                                    .boxed(),
                            );
                            *resp.status_mut() = http::StatusCode::BAD_GATEWAY;
                            resp
                        }
                    })
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// The stream's body: frames from a channel, so a task can pace them.
struct ChannelBody(tokio::sync::mpsc::Receiver<Bytes>);

impl http_body::Body for ChannelBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.0.poll_recv(cx).map(|b| b.map(|b| Ok(Frame::data(b))))
    }
}

/// What the stream probe asks, and how it recognises the first content.
#[derive(Clone, Copy)]
struct ProbeShape {
    path: &'static str,
    body: &'static str,
    /// The key of a non-empty text delta in this protocol's events.
    content_key: &'static [u8],
}

impl ProbeShape {
    const CHAT: ProbeShape = ProbeShape {
        path: "/v1/chat/completions",
        body: r#"{"model":"bench-model","stream":true,"messages":[{"role":"user","content":"hi"}]}"#,
        content_key: b"\"content\":\"",
    };
    const MESSAGES: ProbeShape = ProbeShape {
        path: "/v1/messages",
        body: r#"{"model":"bench-model","max_tokens":64,"stream":true,"messages":[{"role":"user","content":"hi"}]}"#,
        content_key: b"\"text\":\"",
    };

    /// Whether an SSE chunk carries a non-empty text delta.
    fn has_content(&self, chunk: &[u8]) -> bool {
        let key = self.content_key;
        chunk
            .windows(key.len() + 1)
            .any(|w| w.starts_with(key) && w[key.len()] != b'"')
    }
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

async fn stream_probe(
    url: &str,
    token: &str,
    n: usize,
    shape: ProbeShape,
) -> Result<(), Box<dyn std::error::Error>> {
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let mut ttfb = Vec::with_capacity(n);
    let mut ttfc = Vec::with_capacity(n);
    let mut gaps = Vec::new();
    for _ in 0..n {
        let req = Request::post(format!("{url}{}", shape.path))
            .header("content-type", "application/json")
            .header("authorization", format!("Bearer {token}"))
            .body(Full::new(Bytes::from_static(shape.body.as_bytes())))?;
        let start = Instant::now();
        let resp = client.request(req).await?;
        if !resp.status().is_success() {
            return Err(format!("stream-probe: {url} answered {}", resp.status()).into());
        }
        let mut body = resp.into_body();
        let mut last: Option<Instant> = None;
        let mut content_seen = false;
        while let Some(frame) = body.frame().await {
            let frame = frame?;
            if let Some(d) = frame.data_ref().filter(|d| !d.is_empty()) {
                let now = Instant::now();
                if !content_seen && shape.has_content(d) {
                    content_seen = true;
                    ttfc.push(now.duration_since(start).as_micros() as u64);
                }
                match last {
                    None => ttfb.push(now.duration_since(start).as_micros() as u64),
                    Some(prev) => gaps.push(now.duration_since(prev).as_micros() as u64),
                }
                last = Some(now);
            }
        }
    }
    ttfb.sort_unstable();
    ttfc.sort_unstable();
    gaps.sort_unstable();
    println!(
        "{{\"streams\":{n},\"ttfb_p50_us\":{},\"ttfb_p99_us\":{},\"ttfc_p50_us\":{},\"ttfc_p99_us\":{},\"gap_p50_us\":{},\"gap_p99_us\":{},\"gaps\":{}}}",
        percentile(&ttfb, 0.5),
        percentile(&ttfb, 0.99),
        percentile(&ttfc, 0.5),
        percentile(&ttfc, 0.99),
        percentile(&gaps, 0.5),
        percentile(&gaps, 0.99),
        gaps.len()
    );
    Ok(())
}
