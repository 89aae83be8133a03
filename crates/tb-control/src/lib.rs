//! tokenbuddy's control plane: the loopback JSON API (`/v1/…`), the
//! Prometheus endpoint (`/metrics`) and the embedded web dashboard (`/`).
//!
//! Why a separate crate: the control plane is the daemon's *outside* —
//! HTTP, the DNS-rebinding guard, authentication of mutating calls, query
//! and body limits, the dashboard assets — and none of that should know how
//! the ledger, the pool or the installer work. The daemon implements
//! [`ControlApi`] (one method per endpoint, answering the typed documents of
//! [`api`], as `docs/control-plane.md` describes them) and hands it to
//! [`serve`]; the types are the contract, shared by the server and every
//! reader, and `GET /v1/openapi.json` describes them (a test checks live
//! answers against it).
//!
//! What the HTTP layer enforces, before the API is asked anything:
//!
//! - **`Host` guard**: a request whose `Host` is not `127.0.0.1`,
//!   `localhost` or `[::1]` (optionally with a port) is refused with `403`,
//!   so a rebinding page on another name cannot read the API.
//! - **No CORS**: no `Access-Control-*` header is ever sent.
//! - **Authentication**: `PUT` and `POST` need [`ControlApi::authorized`],
//!   else `401`; reads are open on loopback.
//! - **Limits**: `/v1/calls` `limit` is `1..=1000` (default 50); bodies are
//!   JSON objects of at most [`MAX_BODY_BYTES`] (`413` past it, `400` when
//!   invalid).
//! - Errors are `{"error": {"message", "code"}}`; unknown paths `404`,
//!   wrong methods `405` with `Allow`.
//! - The dashboard is served with `Content-Security-Policy: default-src
//!   'self'`, `X-Content-Type-Options: nosniff` and `Referrer-Policy:
//!   no-referrer`; it renders data with `textContent` only.
//!
//! ```no_run
//! use std::sync::Arc;
//! use http::HeaderMap;
//! use tb_control::api::*;
//! use tb_control::{ApiError, ControlApi, Fut};
//!
//! struct Daemon;
//!
//! impl ControlApi for Daemon {
//!     fn status(&self) -> Fut<'_, Status> { unreachable!("a real daemon builds its status here") }
//!     fn upstreams(&self) -> Upstreams { Upstreams { scorer: "speed".into(), upstreams: vec![] } }
//!     fn prewarm(&self) -> Prewarm { None }
//!     fn credit(&self) -> Credit { None }
//!     fn pending_purchases(&self) -> PendingPurchases { PendingPurchases { payments: vec![], recharges: vec![] } }
//!     fn calls(&self, _limit: u32, _before: Option<String>, _filter: CallFilter) -> Fut<'_, Result<Calls, ApiError>> {
//!         Box::pin(async { Ok(Calls { calls: vec![], next_before: None }) })
//!     }
//!     fn call(&self, id: String) -> Fut<'_, Result<CallRecord, ApiError>> {
//!         Box::pin(async move { Err(ApiError::new(404, "call_not_found", format!("no call {id}"))) })
//!     }
//!     fn series(&self, _request: SeriesRequest) -> Fut<'_, Result<Series, ApiError>> {
//!         Box::pin(async { Err(ApiError::internal("no ledger")) })
//!     }
//!     fn usage(&self, _since: String, _by: UsageBy) -> Fut<'_, Result<Usage, ApiError>> {
//!         Box::pin(async { Err(ApiError::internal("no ledger")) })
//!     }
//!     fn sellers(&self, _since: String) -> Fut<'_, Result<Sellers, ApiError>> {
//!         Box::pin(async { Ok(Sellers { since_ms: 0, sellers: vec![] }) })
//!     }
//!     fn seller_audit(&self, _since: String) -> Fut<'_, Result<SellerAudit, ApiError>> {
//!         Box::pin(async { Err(ApiError::internal("no ledger")) })
//!     }
//!     fn provider_mode(&self) -> ProviderMode { unreachable!("a real daemon reports the mode in force here") }
//!     fn set_provider_mode(&self, _body: ProviderModeUpdate) -> Fut<'_, Result<ProviderMode, ApiError>> {
//!         Box::pin(async { Err(ApiError::bad_request("read-only example")) })
//!     }
//!     fn install_status(&self) -> Fut<'_, Result<InstallStatus, ApiError>> {
//!         Box::pin(async { Ok(InstallStatus { clients: vec![], instructions: vec![] }) })
//!     }
//!     fn install_preview(&self, _body: InstallRequest) -> Fut<'_, Result<InstallPreview, ApiError>> {
//!         Box::pin(async { Ok(InstallPreview { changes: vec![], diff: String::new() }) })
//!     }
//!     fn install_apply(&self, _body: InstallRequest) -> Fut<'_, Result<InstallChanged, ApiError>> {
//!         Box::pin(async { Ok(InstallChanged { changed: vec![] }) })
//!     }
//!     fn install_undo(&self, _body: UndoRequest) -> Fut<'_, Result<InstallChanged, ApiError>> {
//!         Box::pin(async { Ok(InstallChanged { changed: vec![] }) })
//!     }
//!     fn doctor(&self) -> Fut<'_, DoctorReport> {
//!         Box::pin(async { DoctorReport::new(vec![Check::pass("example", "fine")]) })
//!     }
//!     fn trust(&self) -> Trust { Trust { expiry_secs: 0, overcount_threshold: 25, entries: vec![] } }
//!     fn reload_probes(&self) -> Fut<'_, Result<ProbeReload, ApiError>> {
//!         Box::pin(async { Ok(ProbeReload { entries: 0 }) })
//!     }
//!     fn metrics(&self) -> String { String::new() }
//!     fn authorized(&self, headers: &HeaderMap) -> bool {
//!         headers.get("authorization").is_some_and(|v| v == "Bearer secret")
//!     }
//! }
//!
//! # async fn run() -> std::io::Result<()> {
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! println!("control: http://{}", listener.local_addr()?);
//! tb_control::serve(listener, Arc::new(Daemon), async {
//!     let _ = tokio::signal::ctrl_c().await;
//! })
//! .await;
//! # Ok(()) }
//! ```

pub mod api;
mod assets;
mod filter;
mod guard;
mod query;
mod response;
mod router;
mod server;

pub use api::{ApiError, ControlApi, Fut};
pub use server::{MAX_CONNECTIONS, SHUTDOWN_GRACE, ShutdownOutcome, serve};

/// The largest accepted request body (`PUT`/`POST`), in bytes: 1 MiB.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// The OpenAPI 3.1 document served at `GET /v1/openapi.json`.
pub fn openapi_json() -> &'static str {
    assets::OPENAPI_JSON
}
