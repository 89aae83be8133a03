//! Buying and spending marketplace seller credit (marketplace.md, "Seller
//! endpoints" and "Tokens and credit").
//!
//! - [`SellerClient`]: the seller wire protocol (`/healthz`, `/manifest`,
//!   `/purchase/quote`, `/purchase/complete`) over the proxy's shared
//!   [`HttpClient`], with capped bodies, timeouts and strict validation
//!   of untrusted answers.
//! - [`SellerToken`] and its reuse rule [`SellerToken::usable`].
//! - [`CreditBroker`]: the token cache the proxy asks for a [`Lease`]:
//!   single-flight purchases per `seller:model:payment`, the session
//!   budget, settlement bookkeeping, dropped and dry tokens, and the
//!   credit tracker ([`CreditSummary`]): every purchase attempt and every
//!   change of wasted credit goes to a [`PurchaseJournal`] (the ledger's
//!   `purchases` table in the daemon), and [`CreditBroker::restore`]
//!   rebuilds the tracker from the ledger at start-up.
//! - [`waste`]: the pure rules for wasted credit (failover inside the
//!   fresh-purchase window, expiry, a seller leaving the registry).
//! - [`TokenCipher`]: XChaCha20-Poly1305 with a key in
//!   `<data_dir>/token-key` (mode 0600); tokens are persisted only
//!   encrypted, through a [`TokenStore`] (implemented for the ledger,
//!   [`tb_store::Ledger`], and in memory, [`MemoryTokenStore`]).
//! - Team mode ([`TeamCredit`], [`CreditBroker::set_team`]): tokens,
//!   purchase leases, the purchase budget and balances shared by a team's
//!   daemons in PostgreSQL, tokens encrypted with
//!   [`TokenCipher::from_team_key`].
//! - [`is_insufficient_funds`]: whether a seller's error means the token
//!   ran dry.
//!
//! Tokens never appear in logs or errors: [`SellerSecret`] prints as a
//! mask with its [fingerprint](SellerSecret::fingerprint).
//!
//! ```no_run
//! use std::sync::Arc;
//! use std::time::Duration;
//! use tb_domain::PaymentMethod;
//! use tb_seller::{
//!     CreditBroker, HttpClient, PurchasePolicy, SellerClient, SellerRef, TokenCipher,
//!     system_clock,
//! };
//!
//! # async fn demo(http: HttpClient, ledger: tb_store::Ledger, data_dir: &std::path::Path)
//! # -> Result<(), Box<dyn std::error::Error>> {
//! let broker = CreditBroker::new(
//!     SellerClient::new(http, Duration::from_secs(10)),
//!     Arc::new(ledger),
//!     TokenCipher::load_or_create(data_dir)?,
//!     PurchasePolicy::default(),
//!     system_clock(),
//! );
//! broker.load().await?;
//!
//! let seller = SellerRef::new("s-alpha", "https://alpha.example");
//! let lease = broker.acquire(&seller, "deepseek-chat", PaymentMethod::Mock, false).await?;
//! // … send the request with `Authorization: Bearer {lease.token.expose()}` …
//! broker.settle_lease(&lease, Some(1_234), Some(998_766));
//! # Ok(())
//! # }
//! ```

mod broker;
mod cipher;
mod secret;
mod store;
mod token;
pub mod waste;
mod wire;

pub use broker::{
    AcquireError, Clock, CreditBroker, CreditSummary, Lease, PendingPayment, PurchaseJournal,
    PurchasePolicy, RechargePrompt, SellerCredit, SellerRef, TeamCredit, TeamError, TeamLease,
    is_insufficient_funds, next_payment_poll_ms, payment_poll_delay_ms, recharge_due, system_clock,
    team_wait_ms,
};
pub use cipher::{CipherError, KEY_FILE, KEY_LEN, NONCE_LEN, TokenCipher};
pub use secret::SellerSecret;
pub use store::{BoxFuture, MemoryTokenStore, StoredToken, TokenStore, TokenStoreError};
pub use token::SellerToken;
pub use wire::{
    Call, Completion, HttpClient, MAX_BODY_BYTES, MAX_MICROS, Manifest, PaymentRequest, Purchased,
    Quote, SellerClient, SellerError,
};
