//! The listener: the shared accept loop of `tb-listener` with the control
//! plane's limits (few connections: a dashboard and some scripts) and its
//! own refusal body.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use tb_listener::{ConnectionStats, ListenerOptions};
use tokio::net::TcpListener;

pub use tb_listener::ShutdownOutcome;

use crate::api::{ApiError, ControlApi};
use crate::response;
use crate::router::handle;

/// How long in-flight requests may run after shutdown was asked.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Connections the control plane serves at once; more get `503`.
pub const MAX_CONNECTIONS: usize = 256;

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
    let options = ListenerOptions {
        name: "control",
        max_connections: MAX_CONNECTIONS,
        header_read_timeout: Duration::from_secs(30),
        grace: SHUTDOWN_GRACE,
        tls: None,
    };
    let svc = service_fn(move |req| {
        let api = Arc::clone(&api);
        async move { Ok::<_, Infallible>(handle(api, req).await) }
    });
    let refuse = service_fn(|_req| async {
        let err = ApiError::new(
            503,
            "overloaded",
            format!(
                "the control plane is serving its limit of {MAX_CONNECTIONS} connections; retry shortly"
            ),
        );
        Ok::<_, Infallible>(response::finish(response::error(&err), "no-store"))
    });
    let stats = Arc::new(ConnectionStats::default());
    tb_listener::serve(listener, &options, svc, refuse, stats, shutdown).await
}
