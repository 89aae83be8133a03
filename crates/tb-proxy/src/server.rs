//! The listener: the shared accept loop of `tb-listener` with the proxy's
//! limits (`proxy.max_connections`, `proxy.header_read_timeout_ms`, the
//! shutdown grace) and a refusal in the client's own protocol shape.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;

use http::{HeaderValue, header};
use hyper::service::service_fn;
use tb_domain::ApiFamily;
use tb_listener::ListenerOptions;
use tokio::net::TcpListener;

pub use tb_listener::ShutdownOutcome;

use crate::ProxyState;
use crate::error::{ErrorCode, ProxyError};
use crate::handler::handle;

pub(crate) async fn serve(
    state: Arc<ProxyState>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> ShutdownOutcome {
    let settings = &state.settings;
    let options = ListenerOptions {
        name: "proxy",
        max_connections: settings.max_connections,
        header_read_timeout: settings.header_read_timeout,
        grace: settings.shutdown_grace,
    };
    let max_connections = settings.max_connections;
    let connections = Arc::clone(&state.connections);
    let svc = {
        let state = Arc::clone(&state);
        service_fn(move |req| {
            let state = Arc::clone(&state);
            async move { Ok::<_, Infallible>(handle(state, req).await) }
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
    tb_listener::serve(listener, &options, svc, refuse, connections, shutdown).await
}
