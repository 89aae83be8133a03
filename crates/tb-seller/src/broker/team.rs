//! Team mode (issue 19): seller credit shared by every daemon of a team
//! through PostgreSQL ([`TeamStore`]).
//!
//! - Tokens live in `team_tokens`, encrypted with a key derived from the
//!   team key ([`TokenCipher::from_team_key`]); a daemon without a usable
//!   token looks there before buying.
//! - One purchase in flight per (seller, payment method) across the team:
//!   a lease row with an expiry on the database's clock. The others poll
//!   ([`team_wait_ms`]) until the holder's token appears or its lease
//!   expires, for at most twice the lease plus five seconds.
//! - The team budget (`purchase.session_budget_usd_micros`, counted in
//!   `team_state`) is reserved under the lease before completing a
//!   purchase, and released or turned into spending when it ends.
//! - Settlements are applied to the shared balance in batches, every
//!   100 ms, by one atomic `UPDATE` per token; the request path never waits
//!   for PostgreSQL while a cached token is usable.
//! - A purchase ends by storing its token and releasing the lease in one
//!   transaction. When PostgreSQL is gone at that moment (a restart), the
//!   daemon keeps using the token it bought and repeats that transaction in
//!   the background until PostgreSQL is back; meanwhile that token's
//!   settlements wait in memory, since the shared row they apply to exists
//!   only from then on.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::{Duration, Instant};

use tb_domain::PaymentMethod;
use tb_store::{
    LockAttempt, PurchaseRow, PurchaseStatus, Reservation, StoreError, TeamStore, TokenRow,
};

use super::{AcquireError, CreditBroker, Entry, Inner, Lease, SellerRef, TokenKey};
use crate::{CipherError, SellerSecret, SellerToken, TokenCipher};

/// What the team's key check encrypts.
const KEY_CHECK: &str = "tokenbuddy team key check v1";
/// How often settlement batches go to PostgreSQL.
const SETTLE_EVERY: Duration = Duration::from_millis(100);
/// The first and the longest wait between attempts to end a lease while
/// PostgreSQL is unreachable.
const RELEASE_RETRY: (Duration, Duration) = (Duration::from_millis(100), Duration::from_secs(1));

/// Why team mode could not start.
#[derive(Debug, thiserror::Error)]
pub enum TeamError {
    /// PostgreSQL refused or could not be reached.
    #[error("team state in PostgreSQL: {0}")]
    Store(#[from] tb_store::StoreError),
    /// The key check stored by the team's first daemon does not open with
    /// this key.
    #[error(
        "the team key differs from the one this team's database was set up with; every daemon \
         of a team needs the same key (TB_TEAM_KEY or [team] key_file)"
    )]
    WrongKey,
    /// Encrypting the key check failed.
    #[error(transparent)]
    Cipher(#[from] CipherError),
}

/// The purchase lease a buying daemon holds, and what it paid under it.
#[derive(Debug)]
pub struct TeamLease {
    /// `seller:payment`.
    pub key: String,
    /// This attempt's holder id (daemon instance + counter).
    pub holder: String,
    paid: AtomicU64,
}

impl TeamLease {
    /// Records that the seller completed the purchase at `price` USD
    /// micros (it counts as spent when the lease ends).
    pub(super) fn paid(&self, price: u64) {
        self.paid.store(price, Ordering::Relaxed);
    }
}

/// How long a daemon waiting for another's purchase sleeps before looking
/// again, ms: 25 ms doubling to 1 s, but never much past the holder's
/// lease expiry (`expires_in_ms`), so a dead holder is taken over promptly.
/// Pure.
pub fn team_wait_ms(attempt: u32, expires_in_ms: u64) -> u64 {
    const FIRST_MS: u64 = 25;
    const MAX_MS: u64 = 1_000;
    let backoff = FIRST_MS
        .checked_shl(attempt.min(16))
        .map_or(MAX_MS, |d| d.min(MAX_MS));
    backoff.min(expires_in_ms.saturating_add(5))
}

/// Settlements of one token not yet applied to the shared balance.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Pending {
    /// Credit of calls whose seller did not say what is left, micros.
    unreported: u64,
    /// The lowest balance the seller reported, micros.
    min_remaining: Option<u64>,
}

impl Pending {
    fn add(&mut self, unreported: u64, remaining: Option<u64>) {
        self.unreported = self.unreported.saturating_add(unreported);
        self.min_remaining = match (self.min_remaining, remaining) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
    }
}

type PendingKey = (String, PaymentMethod, String);

/// Team mode's side of the broker: the shared store, this daemon's
/// instance id and the settlements waiting for the next batch.
#[derive(Debug)]
pub struct TeamCredit {
    store: TeamStore,
    instance: String,
    source: String,
    lease_ttl_ms: u64,
    next_holder: AtomicU64,
    pending: Mutex<HashMap<PendingKey, Pending>>,
    /// (seller, payment) whose purchase has not ended in PostgreSQL (in
    /// flight, or its token not stored): their settlements wait.
    storing: Mutex<HashSet<TokenKey>>,
}

impl TeamCredit {
    /// Joins the team: stores the key check if this is the team's first
    /// daemon, else checks that this daemon's key opens the stored one.
    ///
    /// # Errors
    ///
    /// [`TeamError::WrongKey`] for another key; [`TeamError::Store`] when
    /// PostgreSQL cannot be used.
    pub async fn open(
        store: TeamStore,
        cipher: &TokenCipher,
        lease_ttl_ms: u64,
    ) -> Result<TeamCredit, TeamError> {
        let (ciphertext, nonce) = cipher.encrypt(&SellerSecret::new(KEY_CHECK))?;
        let (stored, stored_nonce) = store.key_check(&ciphertext, &nonce).await?;
        match cipher.decrypt(&stored, &stored_nonce) {
            Ok(check) if check.expose() == KEY_CHECK => {}
            _ => return Err(TeamError::WrongKey),
        }
        let mut id = [0u8; 6];
        getrandom::fill(&mut id).map_err(|e| CipherError::Random(e.to_string()))?;
        Ok(TeamCredit {
            store,
            instance: format!(
                "{}-{}",
                std::process::id(),
                crate::secret::fingerprint_of(&id)
            ),
            source: String::new(),
            lease_ttl_ms,
            next_holder: AtomicU64::new(0),
            pending: Mutex::new(HashMap::new()),
            storing: Mutex::new(HashSet::new()),
        })
    }

    /// Names where the team key came from (shown by `status`; never the
    /// key).
    pub fn with_source(mut self, source: String) -> TeamCredit {
        self.source = source;
        self
    }

    /// Where the team key came from.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// PostgreSQL round trips made for the team's shared state so far.
    pub fn round_trips(&self) -> u64 {
        self.store.round_trips()
    }

    /// How long a purchase lease runs, ms.
    pub fn lease_ttl_ms(&self) -> u64 {
        self.lease_ttl_ms
    }

    /// The shared store.
    pub fn store(&self) -> &TeamStore {
        &self.store
    }

    fn pending(&self) -> MutexGuard<'_, HashMap<PendingKey, Pending>> {
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn storing(&self) -> MutexGuard<'_, HashSet<TokenKey>> {
        self.storing.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Ends `lease` once: stores `token` with it when the purchase paid.
    async fn end_lease(
        &self,
        lease: &TeamLease,
        paid: u64,
        token: Option<&TokenRow>,
    ) -> Result<bool, StoreError> {
        match token {
            Some(token) => {
                self.store
                    .finish_storing(&lease.key, &lease.holder, paid, token)
                    .await
            }
            None => self.store.finish(&lease.key, &lease.holder, paid).await,
        }
    }

    /// Ends the purchase of `key` under `lease` ([`TeamCredit::end_lease`]).
    /// When PostgreSQL cannot be reached it is repeated in the background
    /// until it can (the lease expires on its own meanwhile); the key's
    /// settlements wait until then.
    async fn release(
        self: &Arc<Self>,
        key: TokenKey,
        lease: TeamLease,
        paid: u64,
        token: Option<TokenRow>,
    ) {
        let Err(e) = self.end_lease(&lease, paid, token.as_ref()).await else {
            self.storing().remove(&key);
            return;
        };
        tracing::warn!(target: "team.lease", seller = %key.0, stored_token = token.is_some(), error = %e, "purchase lease not released; retried until PostgreSQL answers (it expires on its own meanwhile)");
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let team = Arc::clone(self);
        runtime.spawn(async move {
            let (mut delay, longest) = RELEASE_RETRY;
            let mut attempts: u32 = 1;
            loop {
                tokio::time::sleep(delay).await;
                attempts = attempts.saturating_add(1);
                match team.end_lease(&lease, paid, token.as_ref()).await {
                    Ok(held) => {
                        team.storing().remove(&key);
                        tracing::info!(target: "team.lease", seller = %key.0, attempts, still_held = held, stored_token = token.is_some(), "purchase lease released after PostgreSQL came back");
                        return;
                    }
                    Err(_) => delay = (delay * 2).min(longest),
                }
            }
        });
    }

    fn lease(&self, seller_id: &str, payment: PaymentMethod) -> TeamLease {
        let n = self.next_holder.fetch_add(1, Ordering::Relaxed);
        TeamLease {
            key: format!("{seller_id}:{payment}"),
            holder: format!("{}-{n}", self.instance),
            paid: AtomicU64::new(0),
        }
    }

    /// Adds a settlement to the next batch.
    pub(super) fn queue_settlement(
        &self,
        key: &TokenKey,
        fingerprint: &str,
        unreported: u64,
        remaining: Option<u64>,
    ) {
        self.pending()
            .entry((key.0.clone(), key.1, fingerprint.to_owned()))
            .or_default()
            .add(unreported, remaining);
    }

    /// Deletes the shared token `fingerprint` of `key` in the background
    /// (a token another daemon bought to replace it is kept).
    pub(super) fn drop_shared(&self, key: &TokenKey, fingerprint: &str) {
        let store = self.store.clone();
        let (seller, payment, fingerprint) = (key.0.clone(), key.1, fingerprint.to_owned());
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                if let Err(e) = store.drop_token(&seller, payment, &fingerprint).await {
                    tracing::warn!(target: "team.token", seller = %seller, fingerprint = %fingerprint, error = %e, "the shared token was not dropped");
                }
            });
        }
    }
}

impl CreditBroker {
    /// Switches the broker to team mode (once, at start, after
    /// [`load`](CreditBroker::load)): purchases go through the team's
    /// leases and budget, settlements to the shared balance (a background
    /// task sends them every 100 ms).
    pub fn set_team(&self, team: Arc<TeamCredit>) {
        if self.inner.team.set(team).is_err() {
            tracing::warn!(target: "team.credit", "team mode is already set");
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let inner: Weak<Inner> = Arc::downgrade(&self.inner);
        runtime.spawn(async move {
            let mut every = tokio::time::interval(SETTLE_EVERY);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                every.tick().await;
                let Some(inner) = inner.upgrade() else { return };
                if let Some(team) = inner.team.get() {
                    let team = Arc::clone(team);
                    inner.flush_team(&team).await;
                }
            }
        });
    }

    /// Team mode's state, when on.
    pub fn team(&self) -> Option<Arc<TeamCredit>> {
        self.inner.team.get().cloned()
    }
}

impl Inner {
    /// Sends the waiting settlement batches; the shared balance read back
    /// lowers the cached one (other daemons spend the same token). A batch
    /// that fails goes back in the queue for the next round; so do those
    /// of a key whose purchase has not ended in PostgreSQL.
    pub(super) async fn flush_team(&self, team: &TeamCredit) {
        let storing = team.storing().clone();
        let batch: Vec<(PendingKey, Pending)> = {
            let mut pending = team.pending();
            let all: Vec<(PendingKey, Pending)> = pending.drain().collect();
            let mut go = Vec::with_capacity(all.len());
            for (k, p) in all {
                if storing.contains(&(k.0.clone(), k.1)) {
                    pending.insert(k, p);
                } else {
                    go.push((k, p));
                }
            }
            go
        };
        for ((seller, payment, fingerprint), p) in batch {
            match team
                .store
                .settle(
                    &seller,
                    payment,
                    &fingerprint,
                    p.unreported,
                    p.min_remaining,
                )
                .await
            {
                Ok(shared) => {
                    let mut st = self.state();
                    let key = (seller, payment);
                    if let Some(e) = st.tokens.get_mut(&key)
                        && e.fingerprint == fingerprint
                    {
                        // `None`: another daemon replaced or dropped it.
                        let shared = shared.unwrap_or(0);
                        if shared < e.token.balance_micros {
                            e.token.balance_micros = shared;
                            e.updated_at_ms = self.now();
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(target: "team.settle", seller = %seller, error = %e, "settlement batch not applied to the shared balance; retried");
                    team.pending()
                        .entry((seller, payment, fingerprint))
                        .or_default()
                        .add(p.unreported, p.min_remaining);
                }
            }
        }
    }

    /// A purchase for the team: the shared token when another daemon
    /// bought one, else the lease, then (holding it) the shared token again
    /// or a purchase. `held` is the fingerprint of the cached token judged
    /// unusable (never adopted again).
    pub(super) async fn team_acquire(
        self: &Arc<Self>,
        team: &Arc<TeamCredit>,
        seller: &SellerRef,
        model: &str,
        payment: PaymentMethod,
        held: Option<String>,
    ) -> Result<Lease, AcquireError> {
        let lease = team.lease(&seller.id, payment);
        let failed = |what: &str, e: &dyn std::fmt::Display| {
            AcquireError::PurchaseFailed(format!("seller {}: team {what}: {e}", seller.id))
        };
        let patience =
            Duration::from_millis(team.lease_ttl_ms.saturating_mul(2)) + Duration::from_secs(5);
        let started = Instant::now();
        let mut attempt = 0u32;
        loop {
            if let Some(found) = self
                .adopt_shared(team, &seller.id, payment, held.as_deref())
                .await?
            {
                return Ok(found);
            }
            let expires_in_ms = match team
                .store
                .try_lock(&lease.key, &lease.holder, team.lease_ttl_ms)
                .await
                .map_err(|e| failed("purchase lease", &e))?
            {
                LockAttempt::Acquired { took_over } => {
                    if let Some(previous) = took_over {
                        tracing::warn!(target: "team.lease", seller = %seller.id, previous = %previous, "took over an expired purchase lease (its holder stopped mid-purchase)");
                    }
                    let key = (seller.id.clone(), payment);
                    let result = match self
                        .adopt_shared(team, &seller.id, payment, held.as_deref())
                        .await
                    {
                        Ok(Some(found)) => Ok(found),
                        Ok(None) => {
                            team.storing().insert(key.clone());
                            self.buy(seller, model, payment, Some(&lease)).await
                        }
                        Err(e) => Err(e),
                    };
                    let paid = lease.paid.load(Ordering::Relaxed);
                    // What it bought, as just bought: settlements made
                    // meanwhile reach the shared row after it is stored.
                    let token = (paid > 0)
                        .then(|| self.state().tokens.get(&key).and_then(Entry::stored))
                        .flatten()
                        .map(crate::store::token_row);
                    team.release(key, lease, paid, token).await;
                    return result;
                }
                LockAttempt::Held { expires_in_ms, .. } => expires_in_ms,
            };
            if started.elapsed() > patience {
                return Err(AcquireError::PurchaseFailed(format!(
                    "seller {}: another daemon of the team has been buying credit for {} ms \
                     without finishing",
                    seller.id,
                    started.elapsed().as_millis()
                )));
            }
            tokio::time::sleep(Duration::from_millis(team_wait_ms(attempt, expires_in_ms))).await;
            attempt = attempt.saturating_add(1);
        }
    }

    /// The team's shared token of (`seller_id`, `payment`) when it is
    /// usable and not the `held` one: cached and returned (not bought).
    async fn adopt_shared(
        &self,
        team: &TeamCredit,
        seller_id: &str,
        payment: PaymentMethod,
        held: Option<&str>,
    ) -> Result<Option<Lease>, AcquireError> {
        let row = team.store.token(seller_id, payment).await.map_err(|e| {
            AcquireError::PurchaseFailed(format!("seller {seller_id}: team tokens: {e}"))
        })?;
        let Some(row) = row.filter(|r| Some(r.fingerprint.as_str()) != held) else {
            return Ok(None);
        };
        let Some(token) = self.open_shared(&row) else {
            return Ok(None);
        };
        let now = self.now();
        if !self.usable(&token, now) {
            return Ok(None);
        }
        let key = (seller_id.to_owned(), payment);
        let mut st = self.state();
        let entry = Entry {
            generation: st.generation(),
            token,
            sealed: Some((row.ciphertext, row.nonce)),
            fingerprint: row.fingerprint,
            updated_at_ms: row.updated_at_ms,
            wasted: None,
        };
        let lease = entry.lease(false);
        tracing::info!(target: "team.token", seller = %seller_id, fingerprint = %entry.fingerprint, balance_micros = entry.token.balance_micros, "using the token another daemon of the team bought");
        st.tokens.insert(key, entry);
        Ok(Some(lease))
    }

    fn open_shared(&self, row: &TokenRow) -> Option<SellerToken> {
        match self.cipher.decrypt(&row.ciphertext, &row.nonce) {
            Ok(secret) if secret.fingerprint() == row.fingerprint => Some(SellerToken {
                seller_id: row.seller_id.clone(),
                payment_method: row.payment_method,
                access_token: secret,
                balance_micros: row.balance_micros.unwrap_or(0),
                credit_micros: row.credit_micros.unwrap_or(0),
                price_usd_micros: row.price_usd_micros.unwrap_or(0),
                expires_at_ms: row.expires_at_ms.unwrap_or(0),
                purchased_at_ms: row.purchased_at_ms,
            }),
            _ => {
                tracing::warn!(target: "team.token", seller = %row.seller_id, fingerprint = %row.fingerprint, "the shared token does not open with the team key; skipped");
                None
            }
        }
    }

    /// Reserves `price` of the team budget under `lease`; when it cannot
    /// be, the purchase is journaled as declined (over budget) or failed.
    pub(super) async fn reserve_team(
        &self,
        seller: &SellerRef,
        lease: &TeamLease,
        price: u64,
        row: PurchaseRow,
    ) -> Result<(), AcquireError> {
        let Some(team) = self.team.get() else {
            return Ok(());
        };
        let budget = self.policy.session_budget_usd_micros;
        let (status, error) = match team
            .store
            .reserve(&lease.key, &lease.holder, price, budget)
            .await
        {
            Ok(Reservation::Reserved { .. }) => return Ok(()),
            Ok(Reservation::OverBudget { spent, reserved }) => {
                tracing::warn!(target: "seller.budget", seller = %seller.id, price_usd_micros = price, spent_usd_micros = spent, reserved_usd_micros = reserved, budget_usd_micros = budget, "team purchase budget would be exceeded; not buying");
                (
                    PurchaseStatus::Declined,
                    AcquireError::BudgetSpent {
                        spent: spent.saturating_add(reserved),
                        budget,
                    },
                )
            }
            Ok(Reservation::LeaseLost) => (
                PurchaseStatus::Failed,
                AcquireError::PurchaseFailed(format!(
                    "seller {}: the team purchase lease expired before the purchase",
                    seller.id
                )),
            ),
            Err(e) => (
                PurchaseStatus::Failed,
                AcquireError::PurchaseFailed(format!("seller {}: team budget: {e}", seller.id)),
            ),
        };
        if status == PurchaseStatus::Failed {
            self.state().counters(&seller.id).purchase_failures += 1;
        }
        self.journal_end(row, status, Some(&error));
        Err(error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waiters_back_off_but_wake_right_after_the_lease_expires() {
        let far = u64::MAX;
        let delays: Vec<u64> = (0..8).map(|a| team_wait_ms(a, far)).collect();
        assert_eq!(delays, [25, 50, 100, 200, 400, 800, 1_000, 1_000]);
        assert_eq!(team_wait_ms(u32::MAX, far), 1_000);
        // A lease expiring in 120 ms: woken 5 ms after it.
        assert_eq!(team_wait_ms(6, 120), 125);
        // Released meanwhile: look again almost at once.
        assert_eq!(team_wait_ms(3, 0), 5);
    }

    #[test]
    fn pending_settlements_add_up_and_keep_the_lowest_remaining() {
        let mut p = Pending::default();
        p.add(100, None);
        p.add(0, Some(900));
        p.add(50, Some(700));
        p.add(0, Some(800));
        assert_eq!(
            p,
            Pending {
                unreported: 150,
                min_remaining: Some(700)
            }
        );
        p.add(u64::MAX, None);
        assert_eq!(p.unreported, u64::MAX, "saturates");
    }
}
