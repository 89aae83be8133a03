//! The small HTTP/1.1 serving kit the registry and seller servers share: an
//! accept loop on an ephemeral loopback port, a response body that is either
//! whole or played from a script of steps (data, pauses, a dropped
//! connection) by a task of its own, and a few response builders.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue};
use http::{Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::{JoinHandle, JoinSet};

/// A listening server. Dropping it stops accepting and closes every
/// connection (the accept task owns the connection tasks).
#[derive(Debug)]
pub(super) struct Served {
    pub(super) addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Drop for Served {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Binds `127.0.0.1:0` and serves HTTP/1.1 (keep-alive) with `handler` on
/// the current Tokio runtime.
pub(super) async fn serve<H, F>(handler: H) -> io::Result<Served>
where
    H: Fn(http::Request<Incoming>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<SimBody>> + Send + 'static,
{
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
    let addr = listener.local_addr()?;
    let task = tokio::spawn(accept_loop(listener, handler));
    Ok(Served { addr, task })
}

async fn accept_loop<H, F>(listener: TcpListener, handler: H)
where
    H: Fn(http::Request<Incoming>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<SimBody>> + Send + 'static,
{
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => {
                    connections.spawn(serve_connection(stream, handler.clone()));
                }
                Err(err) => {
                    // E.g. out of file descriptors: back off rather than spin.
                    tracing::warn!(%err, "simulated marketplace: accept failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

async fn serve_connection<H, F>(stream: TcpStream, handler: H)
where
    H: Fn(http::Request<Incoming>) -> F + Send + Sync + 'static,
    F: Future<Output = Response<SimBody>> + Send + 'static,
{
    let service = service_fn(move |req| {
        let answer = handler(req);
        async move { Ok::<_, Infallible>(answer.await) }
    });
    let result = hyper::server::conn::http1::Builder::new()
        .keep_alive(true)
        .serve_connection(TokioIo::new(stream), service)
        .await;
    if let Err(err) = result {
        tracing::debug!(%err, "simulated marketplace: connection ended with an error");
    }
}

/// One step of a [streamed](stream) body.
#[derive(Debug, Clone)]
pub(super) enum Step {
    /// Send these bytes as one HTTP chunk.
    Data(Bytes),
    /// Pause.
    Delay(Duration),
    /// Abort the connection mid-body (after what was sent is flushed).
    Drop,
}

/// A response body: whole (sent with `content-length`), or fed by a task
/// playing a [`Step`] script (sent chunked).
#[derive(Debug)]
pub(super) enum SimBody {
    Full(Option<Bytes>),
    Stream {
        rx: mpsc::Receiver<io::Result<Bytes>>,
        /// An error received but not yet returned: it is held back for one
        /// `Pending`, so that hyper flushes the data before it (hyper drops
        /// the connection as soon as a body yields an error, without
        /// flushing what it buffered).
        held_error: Option<io::Error>,
        done: bool,
    },
}

impl SimBody {
    pub(super) fn full(bytes: impl Into<Bytes>) -> SimBody {
        SimBody::Full(Some(bytes.into()).filter(|b| !b.is_empty()))
    }
}

/// A body that plays `steps` from a task of its own. The task stops as
/// soon as the client goes away.
pub(super) fn stream(steps: Vec<Step>) -> SimBody {
    let (tx, rx) = mpsc::channel(1);
    tokio::spawn(async move {
        for step in steps {
            match step {
                Step::Data(data) => {
                    if data.is_empty() {
                        continue;
                    }
                    if tx.send(Ok(data)).await.is_err() {
                        return;
                    }
                }
                Step::Delay(delay) => {
                    tokio::select! {
                        () = tokio::time::sleep(delay) => {}
                        () = tx.closed() => return,
                    }
                }
                Step::Drop => {
                    let err = io::Error::new(
                        io::ErrorKind::ConnectionAborted,
                        "simulated seller: dropping the connection mid-stream",
                    );
                    let _ = tx.send(Err(err)).await;
                    return;
                }
            }
        }
    });
    SimBody::Stream {
        rx,
        held_error: None,
        done: false,
    }
}

impl Body for SimBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        match self.get_mut() {
            SimBody::Full(data) => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
            SimBody::Stream {
                rx,
                held_error,
                done,
            } => {
                if let Some(err) = held_error.take() {
                    *done = true;
                    return Poll::Ready(Some(Err(err)));
                }
                if *done {
                    return Poll::Ready(None);
                }
                match rx.poll_recv(cx) {
                    Poll::Pending => Poll::Pending,
                    Poll::Ready(None) => {
                        *done = true;
                        Poll::Ready(None)
                    }
                    Poll::Ready(Some(Ok(data))) => Poll::Ready(Some(Ok(Frame::data(data)))),
                    Poll::Ready(Some(Err(err))) => {
                        *held_error = Some(err);
                        cx.waker().wake_by_ref();
                        Poll::Pending
                    }
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            SimBody::Full(data) => data.is_none(),
            SimBody::Stream { done, .. } => *done,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            SimBody::Full(data) => {
                SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64))
            }
            SimBody::Stream { .. } => SizeHint::default(),
        }
    }
}

/// A response with `status` (an invalid code becomes 500), `headers`
/// (invalid names or values are skipped) and `body`.
pub(super) fn response(
    status: u16,
    headers: &[(String, String)],
    body: SimBody,
) -> Response<SimBody> {
    let mut response = Response::new(body);
    *response.status_mut() =
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let map = response.headers_mut();
    for (name, value) in headers {
        match (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            (Ok(name), Ok(value)) => {
                map.append(name, value);
            }
            _ => tracing::warn!(%name, %value, "simulated marketplace: skipping an invalid header"),
        }
    }
    response
}

/// A whole JSON body.
pub(super) fn json_response(status: u16, value: &Value) -> Response<SimBody> {
    response(
        status,
        &[("content-type".into(), "application/json".into())],
        SimBody::full(to_vec(value)),
    )
}

/// Serialises a `Value` (cannot fail: its keys are strings).
pub(super) fn to_vec(value: &Value) -> Vec<u8> {
    serde_json::to_vec(value).unwrap_or_default()
}

/// RFC 3339 with milliseconds, UTC (`2026-11-21T10:00:00.000Z`).
pub(super) fn rfc3339(time: SystemTime) -> String {
    humantime::format_rfc3339_millis(time).to_string()
}

/// `bytes` random bytes as lowercase hex. Falls back to a clock-and-counter
/// mix if the OS has no randomness to give (never in practice): these are
/// test tokens, unique is what matters.
pub(super) fn random_hex(bytes: usize) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static FALLBACK: AtomicU64 = AtomicU64::new(0);

    let mut buf = vec![0u8; bytes];
    if getrandom::fill(&mut buf).is_err() {
        let nanos = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let seed = nanos ^ FALLBACK.fetch_add(1, Ordering::Relaxed).rotate_left(32);
        for (i, b) in buf.iter_mut().enumerate() {
            *b = (seed.rotate_left((i % 8) as u32 * 8) & 0xff) as u8 ^ i as u8;
        }
    }
    const_hex::encode(buf)
}
