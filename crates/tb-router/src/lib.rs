//! tokenbuddy's routing runtime: the live state that decides where a
//! request goes.
//!
//! # Why
//!
//! The decisions themselves are pure and live elsewhere: the model index
//! (`tb-registry`) says which upstreams serve a model, the planner and
//! scorers (`tb-routing`) order candidates, the pool (`tb-pool`) remembers
//! how each upstream has been doing. Something has to hold their state
//! for a running daemon and keep it current: the routing table over the
//! manual providers and the registry's sellers (rebuilt and swapped
//! atomically on a new registry generation or provider mode), the pool and
//! stickiness behind short locks, and the prewarmer that probes the
//! sellers of the models users need. That is this crate. It knows nothing
//! about HTTP serving: the proxy (`tb-proxy`) asks it for a [`RoutePlan`],
//! walks it, and reports every attempt back to the [`Router`].
//!
//! - [`Routing`]: the runtime — current [`RoutingTable`], provider mode
//!   ([`ModeSetting`]), [`Router`], prewarmer; [`Routing::plan`] per
//!   request, [`Routing::can_route`] for a mode that cannot route at all.
//! - [`Router`]: pool, stickiness and scorer; orders a plan
//!   ([`Router::order`]) and learns from attempts ([`Router::admit`],
//!   [`Router::success`], [`Router::failure`], [`Router::neutral`],
//!   [`Router::rate_limited`], [`Router::served_after_failover`]).
//! - [`Upstream`]: one manual provider or seller, ready to be called.
//! - [`UpstreamsReport`]: the control plane's view of the upstreams.
//!
//! **Invariants:** a request never waits on a rebuild (it reads the
//! current table); no lock is held across an `.await`; an upstream's key
//! is only ever in a sensitive header value.
//!
//! # Example
//!
//! ```
//! use tb_config::Config;
//! use tb_domain::{Outcome, Protocol};
//! use tb_router::Routing;
//!
//! let config = Config::from_toml_str(
//!     r#"
//!     [[providers]]
//!     id = "first"
//!     kind = "openai"
//!     base_url = "http://127.0.0.1:9001/v1"
//!     api_key = "sk-first"
//!     models = ["gpt-4o-mini"]
//!
//!     [[providers]]
//!     id = "second"
//!     kind = "openai"
//!     base_url = "http://127.0.0.1:9002/v1"
//!     api_key = "sk-second"
//!     models = ["gpt-4o-mini"]
//!     "#,
//! )?;
//! // Manual providers only: no registry, so no sellers.
//! let routing = Routing::new(&config, &|_| None, None)?;
//!
//! let plan = routing.plan("gpt-4o-mini", Protocol::ChatCompletions, 0);
//! let order: Vec<&str> = plan.routes.iter().map(|r| r.upstream.id.as_str()).collect();
//! assert_eq!(order, ["first", "second"]);
//!
//! // Three server errors open `first`'s circuit: it is tried last (never dropped).
//! for t in [1_000, 2_000, 3_000] {
//!     routing.router().failure("first", t, Outcome::ServerError);
//! }
//! let plan = routing.plan("gpt-4o-mini", Protocol::ChatCompletions, 4_000);
//! let order: Vec<&str> = plan.routes.iter().map(|r| r.upstream.id.as_str()).collect();
//! assert_eq!(order, ["second", "first"]);
//! assert_eq!(routing.open_circuits(4_000), ["first"]);
//!
//! // A model nobody serves: an empty plan and a message saying what to do.
//! let none = routing.plan("nope", Protocol::ChatCompletions, 4_000);
//! assert!(none.routes.is_empty());
//! assert!(none.not_found_message("nope", Protocol::ChatCompletions).contains("2 upstream(s)"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod manifests;
mod plan;
mod report;
mod router;
mod runtime;
mod table;
mod upstream;
mod warm;

pub use plan::{GroupDecision, Route, RoutePlan};
pub use report::{TrustReport, UpstreamReport, UpstreamsReport};
pub use router::Router;
pub use runtime::{ModeError, ModeSetting, NoRoute, Routing, Sellers};
pub use table::RoutingTable;
pub use upstream::{Upstream, UpstreamError};
