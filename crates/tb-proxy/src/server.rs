//! The listener: the shared accept loop of `tb-listener` with the proxy's
//! limits (`proxy.max_connections`, `proxy.header_read_timeout_ms`, the
//! shutdown grace) and a refusal in the client's own protocol shape.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use http::{HeaderValue, header};
use hyper::service::service_fn;
use tb_domain::ApiFamily;
use tb_listener::{EventLoops, ListenerOptions};
use tokio::net::TcpListener;

pub use tb_listener::ShutdownOutcome;

use crate::error::{ErrorCode, ProxyError};
use crate::handler::handle;
use crate::{ProxyState, UpstreamClient};

pub(crate) async fn serve(
    state: Arc<ProxyState>,
    listener: TcpListener,
    loops: &EventLoops,
    shutdown: impl Future<Output = ()>,
) -> ShutdownOutcome {
    let settings = &state.settings;
    let options = ListenerOptions {
        name: "proxy",
        max_connections: settings.max_connections,
        header_read_timeout: settings.header_read_timeout,
        grace: settings.shutdown_grace,
        tls: state.tls.get().cloned(),
    };
    let max_connections = settings.max_connections;
    let connections = Arc::clone(&state.connections);
    // Loop 0 calls upstreams over the shared pool (the one the prewarmer
    // keeps warm); every other loop over a pool of its own.
    let service = |client: UpstreamClient| {
        let state = Arc::clone(&state);
        service_fn(move |req| {
            let (state, client) = (Arc::clone(&state), client.clone());
            async move { Ok::<_, Infallible>(handle(state, &client, req).await) }
        })
    };
    let refuse = service_fn(
        move |req: hyper::Request<hyper::body::Incoming>| async move {
            let family = ApiFamily::for_path(req.uri().path());
            let err = ProxyError::new(
                ErrorCode::Overloaded,
                format!(
                    "tokenbuddy is serving its limit of {max_connections} connections (proxy.max_connections); retry shortly or raise the limit"
                ),
            );
            let mut resp = err.response(family);
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            Ok::<_, Infallible>(resp)
        },
    );
    let draining = {
        let state = Arc::clone(&state);
        async move {
            shutdown.await;
            state.draining.store(true, Ordering::Relaxed);
            let delay = state.settings.drain_delay;
            if !delay.is_zero() {
                tracing::info!(
                    target: "http.drain_delay",
                    delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
                    "readiness is 503; still serving new connections so the load balancer notices"
                );
                tokio::select! {
                    () = tokio::time::sleep(delay) => {}
                    () = state.end_drain_delay.notified() => tracing::info!(
                        target: "http.drain_delay",
                        "drain delay cut short: no new connections; finishing the requests in flight"
                    ),
                }
            }
        }
    };
    let services = |i: usize| {
        let client = if i == 0 {
            state.client.clone()
        } else {
            state.clients.client()
        };
        (service(client), refuse)
    };
    tb_listener::serve_on(listener, &options, loops, services, connections, draining).await
}
