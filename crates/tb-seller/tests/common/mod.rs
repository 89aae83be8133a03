//! Shared fixtures: an HTTP client like the proxy's, a mock seller, a
//! controllable clock and a broker over an in-memory store.

#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use serde_json::json;
use tb_seller::{
    CreditBroker, HttpClient, MemoryTokenStore, PurchasePolicy, SellerClient, SellerRef,
    TokenCipher, TokenStore,
};
use tb_test_support::{MockUpstream, Reply};

/// 2027-01-15T08:00:00Z.
pub const NOW: i64 = 1_800_000_000_000;
pub const HOUR: i64 = 3_600_000;

/// The daemon's client with an empty root store (the mock serves plain
/// HTTP).
pub fn http_client() -> HttpClient {
    tb_http::client_with_roots(tb_http::RootCertStore::empty()).unwrap()
}

pub fn seller_client() -> SellerClient {
    SellerClient::new(http_client(), Duration::from_secs(5))
}

/// A clock tests move by hand.
#[derive(Clone)]
pub struct TestClock(Arc<AtomicI64>);

impl TestClock {
    pub fn new(ms: i64) -> TestClock {
        TestClock(Arc::new(AtomicI64::new(ms)))
    }
    pub fn set(&self, ms: i64) {
        self.0.store(ms, Ordering::SeqCst);
    }
    pub fn advance(&self, ms: i64) {
        self.0.fetch_add(ms, Ordering::SeqCst);
    }
    pub fn clock(&self) -> tb_seller::Clock {
        let t = Arc::clone(&self.0);
        Arc::new(move || t.load(Ordering::SeqCst))
    }
}

pub fn quote_reply(price_usd_micros: u64) -> Reply {
    Reply::json(
        200,
        json!({
            "quoteId": format!("q-{price_usd_micros}"),
            "creditMicros": 1_000_000,
            "priceUsdMicros": price_usd_micros,
            "expiresAt": "2027-01-15T08:05:00Z",
        })
        .to_string(),
    )
}

pub fn complete_reply(token: &str, balance: u64, expires_at_ms: i64) -> Reply {
    Reply::json(
        200,
        json!({
            "accessToken": token,
            "creditMicros": 1_000_000,
            "balanceMicros": balance,
            "expiresAt": expires_at_ms,
            "paymentReference": "mock-ref",
        })
        .to_string(),
    )
}

/// Scripts one successful purchase: quote (price 800,000) then complete.
pub fn script_purchase(mock: &MockUpstream, token: &str) {
    mock.push_reply(quote_reply(800_000));
    mock.push_reply(complete_reply(token, 1_000_000, NOW + HOUR));
}

/// How many requests went to `path`.
pub fn hits(mock: &MockUpstream, path: &str) -> usize {
    mock.requests().iter().filter(|r| r.path() == path).count()
}

pub fn policy() -> PurchasePolicy {
    PurchasePolicy::default()
}

pub struct Fixture {
    pub mock: MockUpstream,
    pub seller: SellerRef,
    pub store: Arc<MemoryTokenStore>,
    pub cipher: TokenCipher,
    pub clock: TestClock,
    pub broker: CreditBroker,
}

impl Fixture {
    pub async fn new() -> Fixture {
        Fixture::with_policy(policy()).await
    }

    pub async fn with_policy(policy: PurchasePolicy) -> Fixture {
        let mock = MockUpstream::start().await.unwrap();
        let seller = SellerRef::new("s-alpha", mock.root_url());
        let store = Arc::new(MemoryTokenStore::new());
        let cipher = TokenCipher::from_key_bytes([42; 32]);
        let clock = TestClock::new(NOW);
        let broker = broker_with(
            Arc::clone(&store) as Arc<dyn TokenStore>,
            cipher.clone(),
            policy,
            &clock,
        );
        Fixture {
            mock,
            seller,
            store,
            cipher,
            clock,
            broker,
        }
    }

    pub fn quotes(&self) -> usize {
        hits(&self.mock, "/purchase/quote")
    }

    pub fn completes(&self) -> usize {
        hits(&self.mock, "/purchase/complete")
    }
}

pub fn broker_with(
    store: Arc<dyn TokenStore>,
    cipher: TokenCipher,
    policy: PurchasePolicy,
    clock: &TestClock,
) -> CreditBroker {
    CreditBroker::new(seller_client(), store, cipher, policy, clock.clock())
}
