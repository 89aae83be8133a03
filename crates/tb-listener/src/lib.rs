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
//! - **Event loops** ([`EventLoops`], [`serve_on`]): one listener served
//!   by several single-threaded runtimes, each accepted connection handed
//!   to the loop holding the fewest and kept there for its life; the limit
//!   and the drain cover them all. [`serve`] is the one-loop case.
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
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};

mod loops;
mod tls;

pub use loops::{EventLoops, EventLoopsError};
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
    /// Open connections per event loop ([`serve_on`] only).
    loops: std::sync::OnceLock<Vec<Arc<AtomicU64>>>,
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

    /// Connections each event loop holds right now, refusals included
    /// (empty unless served by [`serve_on`]).
    pub fn per_loop(&self) -> Vec<u64> {
        self.loops.get().map_or_else(Vec::new, |loops| {
            loops.iter().map(|l| l.load(Ordering::Relaxed)).collect()
        })
    }

    fn set_loops(&self, loops: Vec<Arc<AtomicU64>>) {
        let _ = self.loops.set(loops);
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

/// What one event loop needs to serve the connections handed to it: the
/// two hyper builders, the limits shared by every loop of the listener,
/// and this loop's own drain.
struct Admission<S, R> {
    name: &'static str,
    max_connections: usize,
    header_read_timeout: Duration,
    tls: Option<ServerTls>,
    builder: http1::Builder,
    refusing: http1::Builder,
    limits: Limits,
    graceful: GracefulShutdown,
    service: S,
    refuse: R,
}

/// The limits every loop of one listener shares.
#[derive(Clone)]
struct Limits {
    slots: Arc<Semaphore>,
    refusals: Arc<Semaphore>,
    stats: Arc<ConnectionStats>,
}

impl Limits {
    fn new(options: &ListenerOptions, stats: Arc<ConnectionStats>) -> Limits {
        Limits {
            slots: Arc::new(Semaphore::new(options.max_connections.max(1))),
            refusals: Arc::new(Semaphore::new(REFUSALS_IN_FLIGHT)),
            stats,
        }
    }
}

impl<S, B, R, RB> Admission<S, R>
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
    fn new(options: &ListenerOptions, limits: &Limits, service: S, refuse: R) -> Self {
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
        Admission {
            name: options.name,
            max_connections: options.max_connections,
            header_read_timeout: options.header_read_timeout,
            tls: options.tls.clone(),
            builder,
            refusing,
            limits: limits.clone(),
            graceful: GracefulShutdown::new(),
            service,
            refuse,
        }
    }

    /// Serves an accepted connection on its own task of the current
    /// runtime, or refuses it politely when the listener is at its limit.
    /// `held` (the loop's load count) is released when the connection ends.
    fn take(&self, stream: TcpStream, held: LoadGuard) {
        let _ = stream.set_nodelay(true);
        let name = self.name;
        let Ok(permit) = Arc::clone(&self.limits.slots).try_acquire_owned() else {
            return self.refuse(stream, held);
        };
        self.limits.stats.open.fetch_add(1, Ordering::Relaxed);
        let slot = Slot {
            _permit: permit,
            stats: Arc::clone(&self.limits.stats),
        };
        // Watched from now: the drain waits for a handshake under way too.
        let watcher = self.graceful.watcher();
        let builder = self.builder.clone();
        let service = self.service.clone();
        let tls = self.tls.clone();
        let handshake_limit = self.header_read_timeout;
        tokio::spawn(async move {
            let served = match tls {
                None => {
                    watcher
                        .watch(builder.serve_connection(TokioIo::new(stream), service))
                        .await
                }
                Some(tls) => match handshake(&tls, stream, handshake_limit, name).await {
                    Some(io) => watcher.watch(builder.serve_connection(io, service)).await,
                    None => Ok(()),
                },
            };
            if let Err(e) = served {
                tracing::debug!(target: "http.connection", plane = name, error = %e, "connection ended with an error");
            }
            drop((slot, held));
        });
    }

    fn refuse(&self, stream: TcpStream, held: LoadGuard) {
        let name = self.name;
        let refused = self.limits.stats.refused.fetch_add(1, Ordering::Relaxed) + 1;
        // A flood must not become a log storm: the 1st, 2nd, 4th, … refusal is logged.
        if refused.is_power_of_two() {
            tracing::warn!(target: "http.connection_limit", plane = name, max_connections = self.max_connections, refused_total = refused, "connection limit reached; refusing new connections");
        }
        let Ok(permit) = Arc::clone(&self.limits.refusals).try_acquire_owned() else {
            // Refusals saturated too: close without an answer.
            return;
        };
        let refusing = self.refusing.clone();
        let refuse = self.refuse.clone();
        let tls = self.tls.clone();
        tokio::spawn(async move {
            match tls {
                None => {
                    let _ = refusing
                        .serve_connection(TokioIo::new(stream), refuse)
                        .await;
                }
                Some(tls) => {
                    if let Some(io) = handshake(&tls, stream, REFUSAL_HEADER_TIMEOUT, name).await {
                        let _ = refusing.serve_connection(io, refuse).await;
                    }
                }
            }
            drop((permit, held));
        });
    }

    /// Lets this loop's in-flight requests finish within `grace`.
    async fn drain(self, grace: Duration) -> ShutdownOutcome {
        match tokio::time::timeout(grace, self.graceful.shutdown()).await {
            Ok(()) => ShutdownOutcome::Drained,
            Err(_) => ShutdownOutcome::GraceExpired,
        }
    }
}

/// Serves `listener` until `shutdown` resolves, then drains (see the crate
/// docs). `service` answers requests on admitted connections; `refuse`
/// answers the one request read from a connection over the limit. Every
/// connection is served on the current runtime (one event loop).
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
    let this_thread = EventLoops::this_thread();
    let services = |_| (service.clone(), refuse.clone());
    serve_on(listener, options, &this_thread, services, stats, shutdown).await
}

/// Serves `listener` on every loop of `loops` until `shutdown` resolves,
/// then drains them all (see the crate docs and [`EventLoops`]). Each
/// accepted connection is handed to the loop serving the fewest
/// connections (the first one on a tie, so a lone client is served on the
/// calling thread) and stays there; `services(i)` builds loop `i`'s
/// service and refusal. The connection limit counts all loops together.
pub async fn serve_on<S, B, R, RB>(
    listener: TcpListener,
    options: &ListenerOptions,
    loops: &EventLoops,
    services: impl Fn(usize) -> (S, R),
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
    let limits = Limits::new(options, Arc::clone(&stats));
    let lanes: Vec<Lane> = loops
        .handles()
        .iter()
        .enumerate()
        .map(|(i, handle)| {
            let (service, refuse) = services(i);
            let admission = Admission::new(options, &limits, service, refuse);
            let (tx, mut rx) = mpsc::unbounded_channel::<(std::net::TcpStream, LoadGuard)>();
            let (done_tx, done) = oneshot::channel();
            let (grace, name) = (options.grace, options.name);
            handle.spawn(async move {
                while let Some((stream, held)) = rx.recv().await {
                    // Registered with this loop's reactor: the connection lives here.
                    match TcpStream::from_std(stream) {
                        Ok(stream) => admission.take(stream, held),
                        Err(e) => {
                            tracing::warn!(target: "http.accept_failed", plane = name, error = %e, "an accepted connection could not join its event loop")
                        }
                    }
                }
                let _ = done_tx.send(admission.drain(grace).await);
            });
            Lane { tx, load: Arc::default(), done }
        })
        .collect();
    stats.set_loops(lanes.iter().map(|l| Arc::clone(&l.load)).collect());
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => hand_off(&lanes, stream, options.name),
                Err(e) => accept_failed(options.name, e).await,
            },
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    log_draining(options);
    // Every loop drains at once: closing its lane starts its drain.
    let done: Vec<_> = lanes.into_iter().map(|l| l.done).collect();
    let mut outcome = ShutdownOutcome::Drained;
    for done in done {
        if done.await != Ok(ShutdownOutcome::Drained) {
            outcome = ShutdownOutcome::GraceExpired;
        }
    }
    outcome
}

/// One event loop's end of the hand-off: accepted connections go in, its
/// drain's outcome comes out.
struct Lane {
    tx: mpsc::UnboundedSender<(std::net::TcpStream, LoadGuard)>,
    load: Arc<AtomicU64>,
    done: oneshot::Receiver<ShutdownOutcome>,
}

/// Counts a connection against its loop while it is open.
struct LoadGuard(Arc<AtomicU64>);

impl Drop for LoadGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Hands `stream` to the loop with the fewest open connections.
fn hand_off(lanes: &[Lane], stream: TcpStream, name: &'static str) {
    let Some(lane) = lanes.iter().min_by_key(|l| l.load.load(Ordering::Relaxed)) else {
        return;
    };
    let stream = match stream.into_std() {
        Ok(stream) => stream,
        Err(e) => {
            tracing::warn!(target: "http.accept_failed", plane = name, error = %e, "an accepted connection could not be handed to an event loop");
            return;
        }
    };
    lane.load.fetch_add(1, Ordering::Relaxed);
    // A closed lane (its loop gone) drops the connection and its count.
    let _ = lane.tx.send((stream, LoadGuard(Arc::clone(&lane.load))));
}

/// Out of file descriptors and the like: back off instead of spinning.
async fn accept_failed(name: &'static str, e: std::io::Error) {
    tracing::warn!(target: "http.accept_failed", plane = name, error = %e, "accept failed");
    tokio::time::sleep(Duration::from_millis(50)).await;
}

fn log_draining(options: &ListenerOptions) {
    let name = options.name;
    tracing::info!(
        target: "http.draining",
        plane = name,
        grace_ms = u64::try_from(options.grace.as_millis()).unwrap_or(u64::MAX),
        "{name} plane stopped accepting; draining in-flight requests"
    );
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
