//! The HTTP/1.1 listener both of tokenbuddy's planes run on: it accepts
//! connections, serves them with hyper, bounds how many are open at once,
//! and drains in-flight requests on shutdown.
//!
//! Why a crate of its own: the proxy plane and the control plane need the
//! same accept loop with the same defences, and neither may depend on the
//! other. What it guarantees:
//!
//! - **A connection limit** ([`ListenerOptions::max_connections`]). Past
//!   it, a new connection is not silently dropped: it is read far enough to
//!   know what it asked for and answered by the `refuse` service (the
//!   proxy answers `503 overloaded` in the client's protocol shape) with
//!   `Connection: close`. At most [`REFUSALS_IN_FLIGHT`] refusals run at
//!   once; beyond that a connection is closed straight away, so a flood
//!   cannot turn refusals into a second unbounded pool.
//! - **A header-read timeout** ([`ListenerOptions::header_read_timeout`]):
//!   a slow-loris client that trickles its head is cut off.
//! - **Optional TLS** ([`ServerTls`], from PEM files): the handshake runs
//!   on the connection's own task, bounded like a request head.
//! - **A graceful drain**: after `shutdown` resolves, no connection is
//!   accepted, idle keep-alive connections close, and in-flight requests get
//!   [`ListenerOptions::grace`] to finish ([`ShutdownOutcome`] says whether
//!   they did).
//! - **Counters** ([`ConnectionStats`]) for metrics: open connections and
//!   refusals, read lock-free by whoever renders metrics.
//!
//! ```no_run
//! use std::convert::Infallible;
//! use std::sync::Arc;
//! use std::time::Duration;
//! use hyper::{Response, service::service_fn};
//! use tb_listener::{ConnectionStats, ListenerOptions, serve};
//!
//! # async fn demo() -> std::io::Result<()> {
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let ok = service_fn(|_req| async { Ok::<_, Infallible>(Response::new("hi".to_string())) });
//! let busy = service_fn(|_req| async {
//!     Ok::<_, Infallible>(Response::builder().status(503).body("busy".to_string()).unwrap())
//! });
//! let options = ListenerOptions {
//!     name: "example",
//!     max_connections: 64,
//!     header_read_timeout: Duration::from_secs(30),
//!     grace: Duration::from_secs(5),
//!     tls: None,
//! };
//! let stats = Arc::new(ConnectionStats::default());
//! serve(listener, &options, ok, busy, stats, async {
//!     let _ = tokio::signal::ctrl_c().await;
//! })
//! .await;
//! # Ok(())
//! # }
//! ```

use std::error::Error as StdError;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use http_body::Body;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::Service;
use hyper::{Request, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

mod tls;

pub use tls::{ServerTls, ServerTlsError};

/// Refusals answered at once when over the connection limit; more
/// connections than this past the limit are closed without an answer.
pub const REFUSALS_IN_FLIGHT: usize = 64;

/// How long a refused connection may take to send its request head.
const REFUSAL_HEADER_TIMEOUT: Duration = Duration::from_secs(2);

/// How a listener behaves.
#[derive(Debug, Clone)]
pub struct ListenerOptions {
    /// Which plane this is (`proxy`, `control`), for logs.
    pub name: &'static str,
    /// Connections served at once; more are refused (at least 1).
    pub max_connections: usize,
    /// How long a client may take to send a request head, counted from
    /// the first byte it is awaited.
    pub header_read_timeout: Duration,
    /// How long in-flight requests may run after shutdown.
    pub grace: Duration,
    /// Serve HTTPS with this certificate (`None`: plain HTTP). The
    /// handshake must finish within `header_read_timeout`.
    pub tls: Option<ServerTls>,
}

/// How the server stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShutdownOutcome {
    /// Every in-flight request finished within the grace period.
    Drained,
    /// The grace period ran out; remaining connections were dropped.
    GraceExpired,
}

/// Live connection counters, shared with whoever renders metrics.
#[derive(Debug, Default)]
pub struct ConnectionStats {
    open: AtomicU64,
    refused: AtomicU64,
}

impl ConnectionStats {
    /// Connections being served right now (refusals not counted).
    pub fn open(&self) -> u64 {
        self.open.load(Ordering::Relaxed)
    }

    /// Connections refused over the connection limit so far.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }
}

/// Holds a connection slot; gives it back (and the count) when dropped.
struct Slot {
    _permit: OwnedSemaphorePermit,
    stats: Arc<ConnectionStats>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.stats.open.fetch_sub(1, Ordering::Relaxed);
    }
}

type BoxError = Box<dyn StdError + Send + Sync>;

/// Serves `listener` until `shutdown` resolves, then drains (see the crate
/// docs). `service` answers requests on admitted connections; `refuse`
/// answers the one request read from a connection over the limit.
pub async fn serve<S, B, R, RB>(
    listener: TcpListener,
    options: &ListenerOptions,
    service: S,
    refuse: R,
    stats: Arc<ConnectionStats>,
    shutdown: impl Future<Output = ()>,
) -> ShutdownOutcome
where
    S: Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
    R: Service<Request<Incoming>, Response = Response<RB>> + Clone + Send + 'static,
    R::Future: Send + 'static,
    R::Error: Into<BoxError>,
    RB: Body + Send + 'static,
    RB::Data: Send,
    RB::Error: Into<BoxError>,
{
    let name = options.name;
    let graceful = GracefulShutdown::new();
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(options.header_read_timeout)
        .keep_alive(true);
    let mut refusing = http1::Builder::new();
    refusing
        .timer(TokioTimer::new())
        .header_read_timeout(REFUSAL_HEADER_TIMEOUT)
        .keep_alive(false);
    let slots = Arc::new(Semaphore::new(options.max_connections.max(1)));
    let refusals = Arc::new(Semaphore::new(REFUSALS_IN_FLIGHT));
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => {
                    let _ = stream.set_nodelay(true);
                    match Arc::clone(&slots).try_acquire_owned() {
                        Ok(permit) => {
                            stats.open.fetch_add(1, Ordering::Relaxed);
                            let slot = Slot { _permit: permit, stats: Arc::clone(&stats) };
                            // Watched from now: the drain waits for a handshake under way too.
                            let watcher = graceful.watcher();
                            let builder = builder.clone();
                            let service = service.clone();
                            let tls = options.tls.clone();
                            let handshake_limit = options.header_read_timeout;
                            tokio::spawn(async move {
                                let served = match tls {
                                    None => watcher.watch(builder.serve_connection(TokioIo::new(stream), service)).await,
                                    Some(tls) => match handshake(&tls, stream, handshake_limit, name).await {
                                        Some(io) => watcher.watch(builder.serve_connection(io, service)).await,
                                        None => Ok(()),
                                    },
                                };
                                if let Err(e) = served {
                                    tracing::debug!(target: "http.connection", plane = name, error = %e, "connection ended with an error");
                                }
                                drop(slot);
                            });
                        }
                        Err(_) => {
                            let refused = stats.refused.fetch_add(1, Ordering::Relaxed) + 1;
                            // A flood must not become a log storm: the 1st, 2nd, 4th, … refusal is logged.
                            if refused.is_power_of_two() {
                                tracing::warn!(target: "http.connection_limit", plane = name, max_connections = options.max_connections, refused_total = refused, "connection limit reached; refusing new connections");
                            }
                            let Ok(permit) = Arc::clone(&refusals).try_acquire_owned() else {
                                // Refusals saturated too: close without an answer.
                                continue;
                            };
                            let refusing = refusing.clone();
                            let refuse = refuse.clone();
                            let tls = options.tls.clone();
                            tokio::spawn(async move {
                                match tls {
                                    None => {
                                        let _ = refusing.serve_connection(TokioIo::new(stream), refuse).await;
                                    }
                                    Some(tls) => {
                                        if let Some(io) = handshake(&tls, stream, REFUSAL_HEADER_TIMEOUT, name).await {
                                            let _ = refusing.serve_connection(io, refuse).await;
                                        }
                                    }
                                }
                                drop(permit);
                            });
                        }
                    }
                }
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(target: "http.accept_failed", plane = name, error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    tracing::info!(
        target: "http.draining",
        plane = name,
        grace_ms = u64::try_from(options.grace.as_millis()).unwrap_or(u64::MAX),
        "{name} plane stopped accepting; draining in-flight requests"
    );
    match tokio::time::timeout(options.grace, graceful.shutdown()).await {
        Ok(()) => ShutdownOutcome::Drained,
        Err(_) => ShutdownOutcome::GraceExpired,
    }
}

/// The TLS handshake of an accepted connection, bounded by `limit`; `None`
/// (logged at debug: scanners and plain-HTTP clients are routine) when it
/// fails or times out.
async fn handshake(
    tls: &ServerTls,
    stream: TcpStream,
    limit: Duration,
    name: &'static str,
) -> Option<TokioIo<tokio_rustls::server::TlsStream<TcpStream>>> {
    match tokio::time::timeout(limit, tls.acceptor().accept(stream)).await {
        Ok(Ok(tls_stream)) => Some(TokioIo::new(tls_stream)),
        Ok(Err(e)) => {
            tracing::debug!(target: "http.tls_handshake", plane = name, error = %e, "TLS handshake failed");
            None
        }
        Err(_) => {
            tracing::debug!(target: "http.tls_handshake", plane = name, "TLS handshake timed out");
            None
        }
    }
}
