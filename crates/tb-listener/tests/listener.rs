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

/// `serve_on` over two event loops: a lone client is served by loop 0 on
/// the calling thread, a second connection open meanwhile by loop 1 on its
/// own thread, the limit counts both loops, and the drain covers both.
#[tokio::test]
async fn connections_spread_over_event_loops() {
    let loops = tb_listener::EventLoops::start(2).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let options = ListenerOptions {
        name: "test",
        max_connections: 2,
        header_read_timeout: Duration::from_secs(30),
        grace: Duration::from_secs(5),
        tls: None,
    };
    let services = |i: usize| {
        let ok = service_fn(
            move |req: hyper::Request<hyper::body::Incoming>| async move {
                let thread = std::thread::current().name().unwrap_or("?").to_owned();
                let body = format!("served {} by loop {i} on {thread}", req.uri().path());
                Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(body))))
            },
        );
        let refuse = service_fn(|_req: hyper::Request<hyper::body::Incoming>| async move {
            let mut r = Response::new(Full::new(Bytes::from("refused")));
            *r.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
            Ok::<_, Infallible>(r)
        });
        (ok, refuse)
    };
    let stats = Arc::new(ConnectionStats::default());
    let (stop, stopped) = oneshot::channel::<()>();
    let serving = tb_listener::serve_on(
        listener,
        &options,
        &loops,
        services,
        Arc::clone(&stats),
        async {
            let _ = stopped.await;
        },
    );
    let main = std::thread::current().name().unwrap_or("?").to_owned();
    let client = async {
        let lone = get(addr, "/a").await;
        assert!(
            lone.ends_with(&format!("served /a by loop 0 on {main}")),
            "{lone}"
        );
        eventually("closed", || stats.open() == 0).await;

        // An idle connection holds loop 0; the next one goes to loop 1.
        let held = TcpStream::connect(addr).await.unwrap();
        eventually("held", || stats.per_loop() == [1, 0]).await;
        let mut second = TcpStream::connect(addr).await.unwrap();
        second
            .write_all(b"GET /b HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut head = vec![0; 512];
        let n = second.read(&mut head).await.unwrap();
        let head = String::from_utf8_lossy(&head[..n]).into_owned();
        assert!(head.ends_with("served /b by loop 1 on tb-loop-1"), "{head}");
        assert_eq!(stats.per_loop(), [1, 1]);

        // Both slots are taken, one on each loop: the third is refused.
        let refused = get(addr, "/c").await;
        assert!(refused.starts_with("HTTP/1.1 503"), "{refused}");
        assert_eq!(stats.refused(), 1);
        drop((held, second));
        eventually("none open", || stats.per_loop() == [0, 0]).await;
        let _ = stop.send(());
    };
    let (outcome, ()) = tokio::join!(serving, client);
    assert_eq!(outcome, ShutdownOutcome::Drained);
    assert_eq!(stats.open(), 0);
}
