//! Test support: the fake API and a raw HTTP/1.1 client (raw so a test can
//! send any `Host`, none at all, or a malformed request).
#![allow(dead_code, unreachable_pub)]

pub mod fake;
pub mod schema;

use std::net::SocketAddr;
use std::sync::Arc;

use serde_json::Value;
use tb_control::ShutdownOutcome;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use fake::FakeApi;

/// The token the fake accepts.
pub const TOKEN: &str = "test-token-0123456789";

/// A running control plane over a fake API.
pub struct Server {
    pub addr: SocketAddr,
    pub api: Arc<FakeApi>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<ShutdownOutcome>>,
}

impl Server {
    pub async fn start() -> Server {
        Server::start_with(FakeApi::new(TOKEN)).await
    }

    pub async fn start_with(api: FakeApi) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let api = Arc::new(api);
        let (tx, rx) = oneshot::channel::<()>();
        let dyn_api: Arc<dyn tb_control::ControlApi> = api.clone();
        let task = tokio::spawn(tb_control::serve(listener, dyn_api, async move {
            let _ = rx.await;
        }));
        Server {
            addr,
            api,
            stop: Some(tx),
            task: Some(task),
        }
    }

    /// `localhost:<port>`.
    pub fn host(&self) -> String {
        format!("localhost:{}", self.addr.port())
    }

    /// Asks for shutdown and waits for `serve` to return.
    pub async fn stop(&mut self) -> ShutdownOutcome {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        self.task.take().unwrap().await.unwrap()
    }

    /// Sends one request (`Connection: close`) with `Host: localhost:<port>`.
    pub async fn get(&self, path: &str) -> Reply {
        self.send("GET", path, Some(&self.host()), &[], None).await
    }

    /// Sends one request; `host: None` sends no Host header.
    pub async fn send(
        &self,
        method: &str,
        path: &str,
        host: Option<&str>,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> Reply {
        let mut head = format!("{method} {path} HTTP/1.1\r\n");
        if let Some(h) = host {
            head.push_str(&format!("Host: {h}\r\n"));
        }
        for (n, v) in headers {
            head.push_str(&format!("{n}: {v}\r\n"));
        }
        if let Some(b) = body {
            head.push_str(&format!("Content-Length: {}\r\n", b.len()));
        }
        head.push_str("Connection: close\r\n\r\n");
        let mut bytes = head.into_bytes();
        if let Some(b) = body {
            bytes.extend_from_slice(b);
        }
        raw(self.addr, &bytes).await
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

/// A parsed response.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// Asserts a JSON error answer with this status and code.
    pub fn assert_error(&self, status: u16, code: &str) {
        assert_eq!(self.status, status, "body: {}", self.text());
        assert_eq!(self.header("content-type"), Some("application/json"));
        let v = self.json();
        assert_eq!(v["error"]["code"], code, "body: {v}");
        assert!(
            v["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "body: {v}"
        );
    }
}

/// Writes `request` and reads the whole answer (the server closes).
pub async fn raw(addr: SocketAddr, request: &[u8]) -> Reply {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut buf = Vec::new();
    stream.read_to_end(&mut buf).await.unwrap();
    let (reply, _) = parse(&buf)
        .unwrap_or_else(|| panic!("incomplete response: {:?}", String::from_utf8_lossy(&buf)));
    reply
}

/// Reads exactly one response from a kept-alive connection.
pub async fn read_one(stream: &mut TcpStream, pending: &mut Vec<u8>) -> Reply {
    loop {
        if let Some((reply, used)) = parse(pending) {
            pending.drain(..used);
            return reply;
        }
        let mut chunk = [0u8; 8192];
        let n = stream.read(&mut chunk).await.unwrap();
        assert!(n > 0, "connection closed before a full response");
        pending.extend_from_slice(&chunk[..n]);
    }
}

/// Parses one response with a `Content-Length` body; `None` when incomplete.
fn parse(buf: &[u8]) -> Option<(Reply, usize)> {
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&buf[..end]).ok()?;
    let mut lines = head.split("\r\n");
    let status: u16 = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
        .collect();
    assert!(
        !headers
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case("transfer-encoding")),
        "the control plane answers with Content-Length"
    );
    // No CORS, ever: checked on every answer any test reads.
    for (n, _) in &headers {
        assert!(
            !n.to_ascii_lowercase().starts_with("access-control-"),
            "CORS header {n} sent"
        );
    }
    let len: usize = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
        .map_or(0, |(_, v)| v.parse().unwrap_or(0));
    let start = end + 4;
    if buf.len() < start + len {
        return None;
    }
    Some((
        Reply {
            status,
            headers,
            body: buf[start..start + len].to_vec(),
        },
        start + len,
    ))
}
