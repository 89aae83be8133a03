//! The marketplace registry and the model index.
//!
//! - [`doc`]: the registry document (`GET <registry.url>`), parsed and
//!   validated by [`parse_registry`]. Pure.
//! - [`index`]: the [`ModelIndex`], from `(model, protocol, payment
//!   method)` to upstreams in preference order, with the name resolution
//!   rules (`tokenbuddy/` prefix, aliases, `<upstream>/` pinning). Pure:
//!   takes values, returns values, knows no clock, so every rule is tested
//!   exhaustively here.
//! - [`fetch`]: the [`RegistryFetcher`], the only code that does network
//!   I/O (with a size cap and a timeout).
//! - [`registry`]: the live [`Registry`]: an immutable snapshot behind a
//!   pointer swap, background refresh, stale fallback and a persisted copy
//!   through a [`SnapshotStore`].
//!
//! ```
//! use std::collections::BTreeMap;
//! use tb_domain::{PaymentMethod, Protocol, UpstreamId};
//! use tb_registry::{IndexedUpstream, ModelIndex, parse_registry};
//!
//! let parsed = parse_registry(br#"{"version": "v1", "sellers": [
//!     {"id": "s-alpha", "url": "https://alpha.example/", "models": ["deepseek-chat"],
//!      "protocols": ["chat_completions"], "paymentMethods": ["mock"], "discountRatio": 0.2}
//! ]}"#).unwrap();
//! assert_eq!(parsed.doc.sellers[0].url, "https://alpha.example");
//!
//! let mut upstreams = vec![IndexedUpstream::manual(
//!     UpstreamId::new("openrouter"),
//!     vec!["deepseek-chat".into()],
//!     vec![Protocol::ChatCompletions],
//! )];
//! upstreams.extend(parsed.doc.sellers_default_first().map(IndexedUpstream::from_seller));
//! let index = ModelIndex::new(
//!     upstreams,
//!     BTreeMap::from([("ds".to_string(), "deepseek-chat".to_string())]),
//! );
//! let found = index.lookup(
//!     "tokenbuddy/ds",
//!     Protocol::ChatCompletions,
//!     &[PaymentMethod::ProviderKey, PaymentMethod::Mock],
//! );
//! assert_eq!(found.model, "deepseek-chat");
//! assert_eq!(found.upstreams, vec![0, 1]);
//! ```

pub mod doc;
pub mod fetch;
pub mod index;
pub mod registry;

pub use doc::{Parsed, RegistryDoc, RegistryError, SellerEntry, parse_registry};
pub use fetch::{
    DEFAULT_FETCH_TIMEOUT, FetchError, Fetched, HttpClient, RegistryFetcher, TOO_LARGE_HEADER,
};
pub use index::{
    ALL_PAYMENT_METHODS, IndexedUpstream, Lookup, ModelIndex, PREWARM_ORDER, ResolutionRule,
};
pub use registry::{
    MemoryStore, RefreshOutcome, Registry, RegistrySnapshot, SnapshotStore, StoredSnapshot,
};
