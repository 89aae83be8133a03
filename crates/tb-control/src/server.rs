//! The listener: accepts connections, serves HTTP/1.1 with keep-alive, and
//! drains in-flight requests on shutdown within [`SHUTDOWN_GRACE`].

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;

use crate::api::ControlApi;
use crate::router::handle;

/// How long in-flight requests may run after shutdown was asked.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// How the server stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShutdownOutcome {
    /// Every in-flight request finished within the grace period.
    Drained,
    /// The grace period ran out; remaining connections were dropped.
    GraceExpired,
}

/// Serves the control plane on `listener` until `shutdown` completes, then
/// stops accepting, lets idle keep-alive connections close and in-flight
/// requests finish (at most [`SHUTDOWN_GRACE`]).
///
/// The listener should be bound to a loopback address; the `Host` guard
/// refuses requests addressed to any other name either way.
pub async fn serve(
    listener: TcpListener,
    api: Arc<dyn ControlApi>,
    shutdown: impl Future<Output = ()>,
) -> ShutdownOutcome {
    let graceful = GracefulShutdown::new();
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(30))
        .keep_alive(true);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => {
                    let _ = stream.set_nodelay(true);
                    let api = Arc::clone(&api);
                    let svc = service_fn(move |req| {
                        let api = Arc::clone(&api);
                        async move { Ok::<_, Infallible>(handle(api, req).await) }
                    });
                    let conn = graceful.watch(builder.serve_connection(TokioIo::new(stream), svc));
                    tokio::spawn(async move {
                        if let Err(e) = conn.await {
                            tracing::debug!(target: "control.connection", error = %e, "connection ended with an error");
                        }
                    });
                }
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(target: "control.accept_failed", error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    tracing::info!(target: "control.draining", grace_ms = SHUTDOWN_GRACE.as_millis() as u64, "control plane stopped accepting; draining in-flight requests");
    match tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown()).await {
        Ok(()) => ShutdownOutcome::Drained,
        Err(_) => ShutdownOutcome::GraceExpired,
    }
}
