//! Where seller tokens persist: the [`TokenStore`] trait, its
//! implementation for the ledger, and an in-memory one for tests.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Mutex, PoisonError};

use tb_domain::PaymentMethod;
use tb_store::{Ledger, TeamStore, TokenRow};

/// A boxed, `Send` future (what [`TokenStore`]'s methods return, so the
/// trait can be used as `Arc<dyn TokenStore>`).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A token as persisted: the ciphertext, nonce and fingerprint, never the
/// clear token, plus the numbers the cache needs after a restart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredToken {
    /// The seller's registry id.
    pub seller_id: String,
    /// How the token was paid for.
    pub payment_method: PaymentMethod,
    /// The token encrypted with [`TokenCipher`](crate::TokenCipher).
    pub ciphertext: Vec<u8>,
    /// The nonce it was encrypted with.
    pub nonce: Vec<u8>,
    /// First 12 hex chars of the token's SHA-256.
    pub fingerprint: String,
    /// Credit bought, micros.
    pub credit_micros: u64,
    /// Credit left, micros.
    pub balance_micros: u64,
    /// What the purchase cost, USD micros.
    pub price_usd_micros: u64,
    /// When the token expires, unix ms.
    pub expires_at_ms: i64,
    /// When it was bought, unix ms.
    pub purchased_at_ms: i64,
    /// When this state was written, unix ms.
    pub updated_at_ms: i64,
}

/// Why the token store failed.
#[derive(Debug, Clone, thiserror::Error)]
#[error("seller token store: {0}")]
pub struct TokenStoreError(pub String);

impl From<tb_store::StoreError> for TokenStoreError {
    fn from(e: tb_store::StoreError) -> TokenStoreError {
        TokenStoreError(e.to_string())
    }
}

/// Persistence for seller tokens: one per (seller, payment method).
///
/// The methods return boxed futures so the broker can hold an
/// `Arc<dyn TokenStore>`.
pub trait TokenStore: Send + Sync {
    /// Stores `token`, replacing the one of the same seller and payment
    /// method.
    fn save(&self, token: StoredToken) -> BoxFuture<'_, Result<(), TokenStoreError>>;

    /// Every stored token.
    fn load_all(&self) -> BoxFuture<'_, Result<Vec<StoredToken>, TokenStoreError>>;

    /// Removes the token of (`seller_id`, `payment`), if any.
    fn delete<'a>(
        &'a self,
        seller_id: &'a str,
        payment: PaymentMethod,
    ) -> BoxFuture<'a, Result<(), TokenStoreError>>;
}

/// The ledger's `tokens` table. Unknown numbers in a stored row (NULL or
/// negative) read as 0, which makes the token unusable (it is bought
/// again), never wrongly usable.
impl TokenStore for Ledger {
    fn save(&self, token: StoredToken) -> BoxFuture<'_, Result<(), TokenStoreError>> {
        Box::pin(async move { Ok(self.save_token(&token_row(token)).await?) })
    }

    fn load_all(&self) -> BoxFuture<'_, Result<Vec<StoredToken>, TokenStoreError>> {
        Box::pin(async move {
            Ok(self
                .load_tokens()
                .await?
                .into_iter()
                .map(stored_token)
                .collect())
        })
    }

    fn delete<'a>(
        &'a self,
        seller_id: &'a str,
        payment: PaymentMethod,
    ) -> BoxFuture<'a, Result<(), TokenStoreError>> {
        Box::pin(async move {
            self.delete_token(seller_id, payment).await?;
            Ok(())
        })
    }
}

pub(crate) fn token_row(token: StoredToken) -> TokenRow {
    TokenRow {
        seller_id: token.seller_id,
        payment_method: token.payment_method,
        ciphertext: token.ciphertext,
        nonce: token.nonce,
        fingerprint: token.fingerprint,
        credit_micros: Some(token.credit_micros),
        balance_micros: Some(token.balance_micros),
        price_usd_micros: Some(token.price_usd_micros),
        expires_at_ms: Some(token.expires_at_ms),
        purchased_at_ms: token.purchased_at_ms,
        updated_at_ms: token.updated_at_ms,
    }
}

fn stored_token(row: TokenRow) -> StoredToken {
    StoredToken {
        seller_id: row.seller_id,
        payment_method: row.payment_method,
        ciphertext: row.ciphertext,
        nonce: row.nonce,
        fingerprint: row.fingerprint,
        credit_micros: row.credit_micros.unwrap_or(0),
        balance_micros: row.balance_micros.unwrap_or(0),
        price_usd_micros: row.price_usd_micros.unwrap_or(0),
        expires_at_ms: row.expires_at_ms.unwrap_or(0),
        purchased_at_ms: row.purchased_at_ms,
        updated_at_ms: row.updated_at_ms,
    }
}

/// A team's shared tokens (`team_tokens`, team mode): what the broker
/// saves at a purchase and restores at start. Settlements and drops of a
/// team's tokens do not come through here (they go to the shared balance
/// by fingerprint, see [`TeamCredit`](crate::TeamCredit)).
impl TokenStore for TeamStore {
    fn save(&self, token: StoredToken) -> BoxFuture<'_, Result<(), TokenStoreError>> {
        Box::pin(async move { Ok(self.save_token(&token_row(token)).await?) })
    }

    fn load_all(&self) -> BoxFuture<'_, Result<Vec<StoredToken>, TokenStoreError>> {
        Box::pin(async move { Ok(self.tokens().await?.into_iter().map(stored_token).collect()) })
    }

    fn delete<'a>(
        &'a self,
        seller_id: &'a str,
        payment: PaymentMethod,
    ) -> BoxFuture<'a, Result<(), TokenStoreError>> {
        Box::pin(async move {
            self.delete_token(seller_id, payment).await?;
            Ok(())
        })
    }
}

/// An in-memory [`TokenStore`] (tests, and a daemon without a ledger).
/// It can be told to fail, to exercise error paths.
#[derive(Debug, Default)]
pub struct MemoryTokenStore {
    inner: Mutex<MemoryInner>,
}

#[derive(Debug, Default)]
struct MemoryInner {
    tokens: BTreeMap<(String, PaymentMethod), StoredToken>,
    fail: Option<String>,
    saves: u64,
    deletes: u64,
}

impl MemoryTokenStore {
    /// An empty store.
    pub fn new() -> MemoryTokenStore {
        MemoryTokenStore::default()
    }

    fn inner(&self) -> std::sync::MutexGuard<'_, MemoryInner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Everything stored, by seller id then payment method.
    pub fn snapshot(&self) -> Vec<StoredToken> {
        self.inner().tokens.values().cloned().collect()
    }

    /// How many saves and deletes succeeded so far.
    pub fn writes(&self) -> (u64, u64) {
        let inner = self.inner();
        (inner.saves, inner.deletes)
    }

    /// From now on every call fails with `message` (`None`: works again).
    pub fn fail_with(&self, message: Option<&str>) {
        self.inner().fail = message.map(str::to_owned);
    }

    fn check(&self) -> Result<std::sync::MutexGuard<'_, MemoryInner>, TokenStoreError> {
        let inner = self.inner();
        match &inner.fail {
            Some(message) => Err(TokenStoreError(message.clone())),
            None => Ok(inner),
        }
    }
}

impl TokenStore for MemoryTokenStore {
    fn save(&self, token: StoredToken) -> BoxFuture<'_, Result<(), TokenStoreError>> {
        let result = self.check().map(|mut inner| {
            inner.saves += 1;
            inner
                .tokens
                .insert((token.seller_id.clone(), token.payment_method), token);
        });
        Box::pin(std::future::ready(result))
    }

    fn load_all(&self) -> BoxFuture<'_, Result<Vec<StoredToken>, TokenStoreError>> {
        let result = self
            .check()
            .map(|inner| inner.tokens.values().cloned().collect());
        Box::pin(std::future::ready(result))
    }

    fn delete<'a>(
        &'a self,
        seller_id: &'a str,
        payment: PaymentMethod,
    ) -> BoxFuture<'a, Result<(), TokenStoreError>> {
        let result = self.check().map(|mut inner| {
            inner.deletes += 1;
            inner.tokens.remove(&(seller_id.to_owned(), payment));
        });
        Box::pin(std::future::ready(result))
    }
}
