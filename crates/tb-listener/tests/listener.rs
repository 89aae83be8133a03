//! The listener over real sockets: the connection limit answers with the
//! refusal service and recovers, a slow-loris head is cut off, and a
//! shutdown drains.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper::{Response, StatusCode};
use tb_listener::{ConnectionStats, ListenerOptions, ShutdownOutcome, serve};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

struct Server {
    addr: SocketAddr,
    stats: Arc<ConnectionStats>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<ShutdownOutcome>,
}

async fn start(max_connections: usize, header_read_timeout: Duration) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let options = ListenerOptions {
        name: "test",
        max_connections,
        header_read_timeout,
        grace: Duration::from_secs(5),
        tls: None,
    };
    let ok = service_fn(|req: hyper::Request<hyper::body::Incoming>| async move {
        let body = format!("served {}", req.uri().path());
        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(body))))
    });
    let refuse = service_fn(|req: hyper::Request<hyper::body::Incoming>| async move {
        let mut r = Response::new(Full::new(Bytes::from(format!(
            "refused {}",
            req.uri().path()
        ))));
        *r.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
        Ok::<_, Infallible>(r)
    });
    let stats = Arc::new(ConnectionStats::default());
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn({
        let stats = Arc::clone(&stats);
        async move {
            serve(listener, &options, ok, refuse, stats, async {
                let _ = stopped.await;
            })
            .await
        }
    });
    Server {
        addr,
        stats,
        stop: Some(stop),
        task,
    }
}

/// Sends one request with `Connection: close` and reads the whole answer.
async fn get(addr: SocketAddr, path: &str) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}

/// Waits (bounded) until `cond` holds; the listener updates its counters
/// from its own tasks, so there is nothing to await directly.
async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn over_the_limit_a_connection_is_refused_politely_then_served_again() {
    let server = start(2, Duration::from_secs(30)).await;
    // Two idle connections hold both slots.
    let a = TcpStream::connect(server.addr).await.unwrap();
    let b = TcpStream::connect(server.addr).await.unwrap();
    eventually("two open", || server.stats.open() == 2).await;

    let refused = get(server.addr, "/v1/messages").await;
    assert!(refused.starts_with("HTTP/1.1 503"), "{refused}");
    assert!(refused.contains("refused /v1/messages"), "{refused}");
    assert!(
        refused.to_ascii_lowercase().contains("connection: close"),
        "{refused}"
    );
    assert_eq!(server.stats.refused(), 1);

    // A slot frees: the next connection is served.
    drop(a);
    eventually("one open", || server.stats.open() == 1).await;
    let served = get(server.addr, "/ok").await;
    assert!(served.starts_with("HTTP/1.1 200"), "{served}");
    assert!(served.ends_with("served /ok"), "{served}");
    eventually("slot returned", || server.stats.open() == 1).await;
    drop(b);
    eventually("none open", || server.stats.open() == 0).await;
}

#[tokio::test]
async fn a_slow_loris_head_is_cut_off_and_frees_its_slot() {
    let server = start(1, Duration::from_millis(300)).await;
    let mut loris = TcpStream::connect(server.addr).await.unwrap();
    loris
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    // It never finishes the head: the server closes the connection.
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), loris.read_to_end(&mut buf)).await;
    assert!(read.is_ok(), "the slow head was not cut off");
    eventually("slot freed", || server.stats.open() == 0).await;
    let served = get(server.addr, "/after").await;
    assert!(served.starts_with("HTTP/1.1 200"), "{served}");
}

#[tokio::test]
async fn shutdown_stops_accepting_and_drains() {
    let mut server = start(8, Duration::from_secs(30)).await;
    assert!(get(server.addr, "/").await.starts_with("HTTP/1.1 200"));
    let _ = server.stop.take().unwrap().send(());
    let outcome = server.task.await.unwrap();
    assert_eq!(outcome, ShutdownOutcome::Drained);
    assert!(TcpStream::connect(server.addr).await.is_err());
}
