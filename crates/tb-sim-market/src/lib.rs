//! A simulated tokenbuddy marketplace (`marketplace.md`): a registry server
//! and seller servers on ephemeral loopback ports, speaking the real seller
//! protocol over plain HTTP.
//!
//! Why a product crate: `tokenbuddyd demo` shows a newcomer the daemon
//! buying credit, routing by price and failing over — without an account,
//! a key or the network — so the marketplace it talks to ships in the
//! binary. The same servers drive the daemon's end-to-end tests and the
//! benchmarks (`tb-test-support` re-exports this crate as `marketplace`).
//! Nothing here generates certificates or other test-only material: a demo
//! on loopback needs no TLS.
//!
//! - [`RegistryServer`] serves the registry document at
//!   `http://127.0.0.1:PORT/registry.json`, or answers `413`, a status,
//!   garbage, an oversized body or nothing at all
//!   ([`RegistryBehaviour`]). [`registry_doc`] builds the document from
//!   running sellers; [`registry_doc_with_n_sellers`] builds a large fake
//!   one for scale tests.
//! - [`SellerServer`] implements the seller endpoints: `GET /healthz`,
//!   `GET /manifest`, `POST /purchase/quote`, `POST /purchase/complete`
//!   and inference on `/v1/chat/completions`, `/v1/responses`,
//!   `/v1/messages` and `/v1/images/generations` with the tokens it
//!   issued, answering with the [`canned`] bodies and
//!   reporting settlement. Everything it does is set by a [`SellerSpec`]
//!   (prices, latency, TTFT, pacing, failures, settlement placement,
//!   chunking…), which can be changed between requests.
//! - [`Marketplace`] starts a few sellers and a registry listing them.
//! - [`canned`]: the deterministic OpenAI/Anthropic bodies the sellers
//!   answer with; [`RecordedRequest`]: what a seller saw.
//!
//! # Units
//!
//! Credit is counted in **credit micros**, and one credit micro is worth
//! one USD micro of the seller's *list* prices: a call costing 363 USD
//! micros at list price (after discount and fee) deducts 363 credit
//! micros (`settledMicros`). What the credit cost the buyer is separate:
//! a quote's `priceUsdMicros` is `credit × usd_per_credit` (default 1.0,
//! or a fixed [`SellerSpec::price_usd_micros`]), and `settledUsdMicros`
//! is `settledMicros × usd_per_credit`, rounded. See
//! [`SellerSpec::call_cost`] for how a call is priced from the canned
//! usage.
//!
//! ```
//! use tb_domain::Protocol;
//! use tb_sim_market::{Marketplace, SellerSpec, registry_doc, RegistryServer, SellerServer};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> std::io::Result<()> {
//! let seller = SellerServer::start(SellerSpec::new("s-alpha").models(["deepseek-chat"])).await?;
//! let registry = RegistryServer::start(registry_doc(&[&seller], Some("s-alpha"))).await?;
//! // Point the daemon's `registry.url` at `registry.url()`, send requests,
//! // then look at what the seller saw:
//! assert!(registry.url().ends_with("/registry.json"));
//! assert_eq!(seller.inference_count(), 0);
//! let cost = seller.spec().call_cost(Protocol::ChatCompletions, "deepseek-chat");
//! assert_eq!(cost.settled_micros, 363);
//!
//! let market = Marketplace::start(3).await?;
//! assert_eq!(market.registry.document()["sellers"].as_array().map(Vec::len), Some(3));
//! # Ok(())
//! # }
//! ```

mod bodies;
pub mod canned;
mod net;
mod recorded;
mod registry;
mod seller;
mod spec;

use std::io;
use std::time::Duration;

use tb_domain::PaymentMethod;

pub use recorded::RecordedRequest;
pub use registry::{
    REGISTRY_PATH, RegistryBehaviour, RegistryServer, TOO_LARGE_HEADER, registry_doc,
    registry_doc_with_n_sellers,
};
pub use seller::{
    BALANCE_HEADER, DEFAULT_PURCHASE_CREDIT_MICROS, IssuedToken, SELLER_ID_HEADER,
    SELLER_REQUEST_ID_HEADER, SETTLEMENT_EVENT, SETTLEMENT_HEADER, SellerCounters, SellerServer,
};
pub use spec::{
    CallCost, FailEvery, ModelPrice, SOLD_PROTOCOLS, ScriptedFailure, SellerSpec, SettlementMode,
};

/// Seller ids of a [`Marketplace`], in order (then `s-11`, `s-12`, …).
const NAMES: [&str; 10] = [
    "alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliett",
];

/// A registry plus running sellers.
#[derive(Debug)]
pub struct Marketplace {
    /// The registry listing [`sellers`](Marketplace::sellers) (default
    /// seller: the first).
    pub registry: RegistryServer,
    /// The sellers, in registry order.
    pub sellers: Vec<SellerServer>,
}

impl Marketplace {
    /// The models every seller of [`Marketplace::start`] sells (chat,
    /// Anthropic and image names; every seller serves all four protocols
    /// for all of them).
    pub const MODELS: [&str; 3] = ["deepseek-chat", "claude-sonnet-4-5", "gpt-image-1"];

    /// Starts `n_sellers` sellers and a registry listing them, default
    /// seller the first. Seller `i` (from 0) is `s-alpha`, `s-bravo`, …
    /// (`s-<i+1>` past ten), sells [`MODELS`](Self::MODELS) with `mock` (and
    /// `clawtip` for odd `i`), has list prices `(i + 1) ×` the defaults
    /// ([`ModelPrice::default`]), a discount of `0.05 × (i mod 4)`, a 2 %
    /// fee, a latency of `5 ms × i` and a stream pace of `200 × (i + 1)`
    /// events/s. When there are at least two, the last fails every
    /// inference call with `503`.
    ///
    /// # Errors
    ///
    /// If a listener cannot be bound.
    pub async fn start(n_sellers: usize) -> io::Result<Marketplace> {
        let mut sellers = Vec::with_capacity(n_sellers);
        for i in 0..n_sellers {
            let spec = Marketplace::seller_spec(i, n_sellers);
            sellers.push(SellerServer::start(spec).await?);
        }
        let refs: Vec<&SellerServer> = sellers.iter().collect();
        let default = sellers.first().map(SellerServer::id);
        let registry = RegistryServer::start(registry_doc(&refs, default.as_deref())).await?;
        Ok(Marketplace { registry, sellers })
    }

    fn seller_spec(i: usize, n: usize) -> SellerSpec {
        let id = match NAMES.get(i) {
            Some(name) => format!("s-{name}"),
            None => format!("s-{}", i + 1),
        };
        let scale = i as u64 + 1;
        let base = ModelPrice::default();
        let mut payment = vec![PaymentMethod::Mock];
        if i % 2 == 1 {
            payment.push(PaymentMethod::Clawtip);
        }
        let name = format!("Demo seller {}", id.trim_start_matches("s-"));
        let mut spec = SellerSpec::new(id)
            .name(name)
            .models(Marketplace::MODELS)
            .protocols(SOLD_PROTOCOLS)
            .payment_methods(payment)
            .default_price(ModelPrice::new(
                base.input * scale,
                base.output * scale,
                base.cache_read * scale,
            ))
            .image_price(40_000 * scale)
            .discount_ratio(0.05 * (i % 4) as f64)
            .service_fee_ratio(0.02)
            .latency(Duration::from_millis(5 * i as u64))
            .tokens_per_sec(200.0 * scale as f64)
            .with_generated_manifest();
        if n >= 2 && i == n - 1 {
            spec = spec.fail_every(1, 503);
        }
        spec
    }

    /// The registry document URL.
    pub fn registry_url(&self) -> String {
        self.registry.url()
    }

    /// The seller with this id.
    pub fn seller(&self, id: &str) -> Option<&SellerServer> {
        self.sellers.iter().find(|s| s.id() == id)
    }

    /// Rebuilds the registry document from the sellers' current specs
    /// (keeping the default seller).
    pub fn refresh_registry(&self) {
        let refs: Vec<&SellerServer> = self.sellers.iter().collect();
        let doc = self.registry.document();
        let default = doc.get("defaultSeller").and_then(|d| d.as_str());
        self.registry.set_document(registry_doc(&refs, default));
    }
}
