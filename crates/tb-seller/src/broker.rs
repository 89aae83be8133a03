//! The credit broker: the token cache, single-flight purchases, the
//! session budget and the credit tracker.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};

use tb_domain::PaymentMethod;
use tb_store::{CreditHistory, LedgerSender, PurchaseEvent, PurchaseRow, PurchaseStatus, WasteRow};

use crate::waste::{self, TokenEvent, TokenFacts};

mod team;
mod wallet;
use crate::{
    PaymentRequest, Purchased, SellerClient, SellerError, SellerSecret, SellerToken, StoredToken,
    TokenCipher, TokenStore, TokenStoreError,
};
pub use team::{TeamCredit, TeamError, TeamLease, team_wait_ms};

/// Where the broker writes every purchase attempt and every change of
/// wasted credit, without waiting (the ledger's purchase writer in the
/// daemon). Never given the token: only its fingerprint.
pub trait PurchaseJournal: Send + Sync {
    /// Queues `event`; never blocks. A refused event is logged.
    fn record(&self, event: PurchaseEvent);
}

impl PurchaseJournal for LedgerSender<PurchaseEvent> {
    fn record(&self, event: PurchaseEvent) {
        if let Err(dropped) = LedgerSender::record(self, event) {
            tracing::warn!(target: "ledger.dropped", "{dropped}");
        }
    }
}

/// The current time as unix milliseconds. Injected so tests control time.
pub type Clock = Arc<dyn Fn() -> i64 + Send + Sync>;

/// The system clock (unix ms, UTC).
pub fn system_clock() -> Clock {
    Arc::new(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
            .unwrap_or(0)
    })
}

/// The `purchase.*` settings (marketplace.md, "Tokens and credit").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PurchasePolicy {
    /// Credit asked for in each quote, micros (default 1,000,000).
    pub amount_credit_micros: u64,
    /// What this run may spend buying credit, USD micros (default 5 USD).
    pub session_budget_usd_micros: u64,
    /// A token at or below this balance is bought again, micros (default
    /// 10,000).
    pub rebuy_min_balance_micros: u64,
    /// A token expiring within this margin is bought again, ms (default
    /// 60,000).
    pub token_expiry_margin_ms: u64,
    /// Credit left on a seller abandoned within this long of buying counts
    /// as wasted, ms (default 300,000).
    pub fresh_window_ms: u64,
}

impl Default for PurchasePolicy {
    fn default() -> PurchasePolicy {
        PurchasePolicy {
            amount_credit_micros: 1_000_000,
            session_budget_usd_micros: 5_000_000,
            rebuy_min_balance_micros: 10_000,
            token_expiry_margin_ms: 60_000,
            fresh_window_ms: 300_000,
        }
    }
}

/// The seller to buy from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SellerRef {
    /// The registry id.
    pub id: String,
    /// The base URL (calls are relative to it).
    pub url: String,
}

impl SellerRef {
    /// A seller reference.
    pub fn new(id: impl Into<String>, url: impl Into<String>) -> SellerRef {
        SellerRef {
            id: id.into(),
            url: url.into(),
        }
    }
}

/// A token to send a request with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// The bearer token (masked in `Debug`).
    pub token: SellerSecret,
    /// Its fingerprint, for logs.
    pub fingerprint: String,
    /// Whether this call bought it (`false`: cached, or bought by the
    /// concurrent call this one waited for).
    pub bought: bool,
    /// The seller it is for.
    pub seller_id: String,
    /// How it was paid for.
    pub payment_method: PaymentMethod,
}

/// Why no token could be had. Every variant is the routing outcome
/// `purchase_failed` (routing.md): fail over, no purchase.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AcquireError {
    /// Buying would exceed `purchase.session_budget_usd_micros`.
    #[error(
        "session purchase budget spent: {spent} of {budget} USD micros committed, and this \
         purchase would exceed it; sellers that need a purchase are skipped until the daemon \
         restarts or purchase.session_budget_usd_micros is raised"
    )]
    BudgetSpent {
        /// USD micros spent (and reserved by purchases in flight).
        spent: u64,
        /// The budget, USD micros.
        budget: u64,
    },
    /// A wallet purchase (clawtip) waits for the user to pay: the message
    /// names the seller, the amount and where to pay.
    #[error("{0}")]
    PaymentPending(Box<PendingPayment>),
    /// The quote or the completion failed, or the seller sold an unusable
    /// token. The message names the seller, the call and the problem.
    #[error("buying seller credit failed: {0}")]
    PurchaseFailed(String),
}

/// A wallet purchase (clawtip) quoted and waiting for the user to pay
/// (marketplace.md): the daemon polls `complete` until it is paid, expires
/// or is cancelled. Not secret: it is what the user is shown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingPayment {
    /// The purchase's id in the ledger.
    pub purchase_id: String,
    /// The seller.
    pub seller_id: String,
    /// The model the quote is for.
    pub model: String,
    /// How it is paid.
    pub payment_method: PaymentMethod,
    /// The seller's quote id.
    pub quote_id: String,
    /// Credit it buys, micros.
    pub credit_micros: u64,
    /// What the user pays, USD micros.
    pub price_usd_micros: u64,
    /// When the quote lapses, unix ms.
    pub expires_at_ms: i64,
    /// When it was quoted, unix ms.
    pub created_at_ms: i64,
    /// Where and how to pay.
    pub request: PaymentRequest,
}

impl fmt::Display for PendingPayment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "payment required: seller {} asks {} for {} micros of credit ({}); pay it with {} at \
             {} before {}, then retry (`tokenbuddyd pay` shows the QR code)",
            self.seller_id,
            usd(self.price_usd_micros),
            self.credit_micros,
            self.model,
            self.payment_method,
            self.request.pay_url,
            rfc3339(self.expires_at_ms)
        )
    }
}

/// USD micros as `$1.234567` (display only).
fn usd(micros: u64) -> String {
    format!("${}.{:06}", micros / 1_000_000, micros % 1_000_000)
}

/// Unix ms as RFC 3339 UTC (display only).
fn rfc3339(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .map(|t| {
            format!(
                "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
                t.year(),
                u8::from(t.month()),
                t.day(),
                t.hour(),
                t.minute(),
                t.second()
            )
        })
        .unwrap_or_else(|_| format!("{ms} ms since 1970"))
}

/// A wallet token whose balance ran low: where to recharge it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RechargePrompt {
    /// The seller.
    pub seller_id: String,
    /// How the token was paid.
    pub payment_method: PaymentMethod,
    /// What is left on the token, micros.
    pub balance_micros: u64,
    /// What was bought, micros.
    pub credit_micros: u64,
    /// Where to recharge (the quote's `rechargeQrUrl`).
    pub recharge_url: String,
}

/// Whether a wallet token runs low: at or under a fifth of the credit it
/// was bought with, or at or under `rebuy_min_balance_micros` (where the
/// next request needs a new payment). Pure.
pub fn recharge_due(
    balance_micros: u64,
    credit_micros: u64,
    rebuy_min_balance_micros: u64,
) -> bool {
    balance_micros <= rebuy_min_balance_micros
        || u128::from(balance_micros) * 5 <= u128::from(credit_micros)
}

/// How long the daemon waits before its `attempt`-th poll (0-based) of a
/// pending wallet purchase, ms: 2 s doubling to at most 15 s
/// (marketplace.md). Pure: the poller adds the clock.
pub fn payment_poll_delay_ms(attempt: u32) -> u64 {
    const FIRST_MS: u64 = 2_000;
    const MAX_MS: u64 = 15_000;
    FIRST_MS
        .checked_shl(attempt.min(16))
        .map_or(MAX_MS, |d| d.min(MAX_MS))
}

/// The wait before the next poll of a quote expiring at `expires_at_ms`,
/// at `now_ms`: the backoff, but never past the expiry (the poll right
/// after it learns the final answer). `None` once the quote has expired
/// and been polled after it (`polled_after_expiry`): stop.
pub fn next_payment_poll_ms(
    attempt: u32,
    now_ms: i64,
    expires_at_ms: i64,
    polled_after_expiry: bool,
) -> Option<u64> {
    if now_ms >= expires_at_ms {
        return (!polled_after_expiry).then_some(0);
    }
    let left = u64::try_from(expires_at_ms.saturating_sub(now_ms)).unwrap_or(u64::MAX);
    Some(payment_poll_delay_ms(attempt).min(left))
}

/// Credit bookkeeping for one seller. Purchases, payments, spending and
/// waste count over the ledger's history (rebuilt at start-up with
/// [`CreditBroker::restore`]) plus this run; `remaining` is the balance of
/// the tokens held now (restored ones included) that are not counted as
/// wasted.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SellerCredit {
    /// The seller.
    pub seller_id: String,
    /// Completed purchases.
    pub purchases: u64,
    /// Failed purchase attempts (quote or completion).
    pub purchase_failures: u64,
    /// Credit bought, micros.
    pub purchased_credit_micros: u64,
    /// Paid for it, USD micros.
    pub paid_usd_micros: u64,
    /// Credit used by settled calls, micros.
    pub spent_credit_micros: u64,
    /// Balance of the tokens held now, micros.
    pub remaining_credit_micros: u64,
    /// Credit lost (see [`crate::waste`]): left on the seller when it was
    /// failed over within `fresh_window_ms` of buying, on a token that
    /// expired, or on a seller that left the registry, micros.
    pub wasted_credit_micros: u64,
}

/// The credit tracker over all sellers, plus the session budget.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CreditSummary {
    /// Per seller, by id.
    pub sellers: Vec<SellerCredit>,
    /// Sum of `purchases`.
    pub purchases: u64,
    /// Sum of `purchase_failures`.
    pub purchase_failures: u64,
    /// Sum of `purchased_credit_micros`.
    pub purchased_credit_micros: u64,
    /// Sum of `paid_usd_micros`.
    pub paid_usd_micros: u64,
    /// Sum of `spent_credit_micros`.
    pub spent_credit_micros: u64,
    /// Sum of `remaining_credit_micros`.
    pub remaining_credit_micros: u64,
    /// Sum of `wasted_credit_micros`.
    pub wasted_credit_micros: u64,
    /// `purchase.session_budget_usd_micros`.
    pub budget_usd_micros: u64,
    /// USD micros paid this run (the budget is per run: history does not
    /// count against it).
    pub budget_spent_usd_micros: u64,
    /// What may still be spent (budget − paid − reserved by purchases in
    /// flight).
    pub budget_left_usd_micros: u64,
}

/// `402`, or an error answer (status ≥ 400) whose body says the credit ran
/// out: `insufficient`, `out of credit`, `quota`, `balance`, `余额不足`,
/// `欠费` or `扣款`, case-insensitively (marketplace.md). Then the token is
/// dry: [`CreditBroker::mark_lease_dry`], buy once and retry the same seller
/// once.
///
/// A 401/403 with such wording is a dry token too, not an invalid one. A
/// success is never insufficient funds, and `balance` inside
/// `balancer` ("load balancer error") does not count. Only the first 64 KiB
/// of the body are looked at.
pub fn is_insufficient_funds(status: u16, body: &[u8]) -> bool {
    if status == 402 {
        return true;
    }
    if status < 400 {
        return false;
    }
    let body = &body[..body.len().min(64 * 1024)];
    let text = String::from_utf8_lossy(body).to_lowercase();
    const WORDS: [&str; 6] = [
        "insufficient",
        "out of credit",
        "quota",
        "余额不足",
        "欠费",
        "扣款",
    ];
    WORDS.iter().any(|w| text.contains(w))
        || text
            .match_indices("balance")
            .any(|(at, w)| !text[at + w.len()..].starts_with('r'))
}

/// The stateful core the proxy calls to get seller tokens.
///
/// - **Cache**: one token per (seller, payment method), reused while
///   [`SellerToken::usable`] under the policy's margin and minimum.
/// - **Single flight**: callers that need a purchase for the same
///   `seller:model:payment` wait for the one in flight and share its
///   token. The purchase runs in a task of its own, so a caller that goes
///   away never leaves a paid purchase half recorded.
/// - **Budget**: a quote whose price would take this run's spending (plus
///   purchases in flight) past the budget is not completed.
/// - **Persistence**: purchases are saved (encrypted) before
///   [`acquire`](CreditBroker::acquire) returns; settlements, drops and
///   dry marks are saved by a background task (coalesced per token, always
///   writing the newest state), never awaited by the request path.
///   [`flush`](CreditBroker::flush) waits for them (shutdown, tests).
///   A store failure is logged; the token stays usable in memory.
///
/// In-memory state is behind a `std::sync::Mutex` that is never held
/// across an `.await`. Cheap to clone (shared state).
#[derive(Clone)]
pub struct CreditBroker {
    inner: Arc<Inner>,
}

impl fmt::Debug for CreditBroker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let st = self.inner.state();
        f.debug_struct("CreditBroker")
            .field("policy", &self.inner.policy)
            .field("tokens", &st.tokens.len())
            .field("budget_spent_usd_micros", &st.budget_spent)
            .finish_non_exhaustive()
    }
}

type TokenKey = (String, PaymentMethod);
type FlightKey = (String, String, PaymentMethod);
type Gate = Arc<tokio::sync::Mutex<()>>;

struct Inner {
    client: SellerClient,
    store: Arc<dyn TokenStore>,
    cipher: TokenCipher,
    policy: PurchasePolicy,
    clock: Clock,
    state: Mutex<State>,
    gates: Mutex<HashMap<FlightKey, Gate>>,
    journal: OnceLock<Arc<dyn PurchaseJournal>>,
    /// Serialises store writes; each write stores the state current when
    /// it holds this lock, so the last write is always the newest state.
    persist_lock: tokio::sync::Mutex<()>,
    /// Counts wallet purchases that ended (paid, expired, cancelled or
    /// failed), for whoever waits on one.
    wallet_ends: tokio::sync::watch::Sender<u64>,
    /// Team mode: tokens, purchase leases and the budget shared in
    /// PostgreSQL (set once, at start).
    team: OnceLock<Arc<TeamCredit>>,
}

#[derive(Default)]
struct State {
    tokens: HashMap<TokenKey, Entry>,
    counters: BTreeMap<String, Counters>,
    /// USD micros paid this run.
    budget_spent: u64,
    /// USD micros of quotes being completed.
    budget_reserved: u64,
    next_generation: u64,
    /// Tokens whose stored state is behind memory.
    pending: HashSet<TokenKey>,
    /// Wallet purchases waiting for the user, per `seller:model:payment`.
    payments: HashMap<FlightKey, PendingPayment>,
    /// Where the wallet of a token bought by wallet payment is recharged
    /// (the quote's `rechargeQrUrl`), per token key.
    recharge_urls: HashMap<TokenKey, String>,
}

impl State {
    fn committed(&self) -> u64 {
        self.budget_spent.saturating_add(self.budget_reserved)
    }

    fn counters(&mut self, seller_id: &str) -> &mut Counters {
        self.counters.entry(seller_id.to_owned()).or_default()
    }

    fn generation(&mut self) -> u64 {
        self.next_generation += 1;
        self.next_generation
    }
}

#[derive(Default, Clone, Copy)]
struct Counters {
    purchases: u64,
    purchase_failures: u64,
    purchased_credit: u64,
    paid_usd: u64,
    spent_credit: u64,
    wasted_credit: u64,
}

struct Entry {
    token: SellerToken,
    /// `None` when encryption failed: kept in memory only.
    sealed: Option<(Vec<u8>, Vec<u8>)>,
    fingerprint: String,
    /// Changes only when a new token replaces the entry.
    generation: u64,
    updated_at_ms: i64,
    /// Credit counted as wasted on this token, micros (it then leaves
    /// `remaining`).
    wasted: Option<u64>,
}

impl Entry {
    fn facts(&self) -> TokenFacts {
        TokenFacts {
            balance_micros: self.token.balance_micros,
            purchased_at_ms: self.token.purchased_at_ms,
            expires_at_ms: self.token.expires_at_ms,
        }
    }

    fn lease(&self, bought: bool) -> Lease {
        Lease {
            token: self.token.access_token.clone(),
            fingerprint: self.fingerprint.clone(),
            bought,
            seller_id: self.token.seller_id.clone(),
            payment_method: self.token.payment_method,
        }
    }

    fn stored(&self) -> Option<StoredToken> {
        let (ciphertext, nonce) = self.sealed.clone()?;
        Some(StoredToken {
            seller_id: self.token.seller_id.clone(),
            payment_method: self.token.payment_method,
            ciphertext,
            nonce,
            fingerprint: self.fingerprint.clone(),
            credit_micros: self.token.credit_micros,
            balance_micros: self.token.balance_micros,
            price_usd_micros: self.token.price_usd_micros,
            expires_at_ms: self.token.expires_at_ms,
            purchased_at_ms: self.token.purchased_at_ms,
            updated_at_ms: self.updated_at_ms,
        })
    }
}

impl Inner {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn journal(&self, event: PurchaseEvent) {
        if let Some(journal) = self.journal.get() {
            journal.record(event);
        }
    }

    /// Applies a waste rule's verdict to the cached token of `key`: counts
    /// it (once per token) and journals it. Returns the micros counted.
    fn waste(st: &mut State, key: &TokenKey, event: TokenEvent, now: i64, inner: &Inner) -> u64 {
        let Some(e) = st.tokens.get_mut(key) else {
            return 0;
        };
        if e.wasted.is_some() {
            return 0;
        }
        let Some((amount, reason)) = waste::wasted(e.facts(), event, now, &inner.policy) else {
            return 0;
        };
        e.wasted = Some(amount);
        let row = WasteRow {
            seller_id: key.0.clone(),
            token_fingerprint: e.fingerprint.clone(),
            wasted_credit_micros: amount,
            reason: Some(reason),
            at_ms: now,
        };
        tracing::info!(
            target: "purchase.credit_wasted",
            seller = %key.0,
            payment = %key.1,
            fingerprint = %row.token_fingerprint,
            wasted_credit_micros = amount,
            reason = reason.as_str(),
            "seller credit wasted"
        );
        let c = st.counters(&key.0);
        c.wasted_credit = c.wasted_credit.saturating_add(amount);
        inner.journal(PurchaseEvent::Waste(row));
        amount
    }

    fn now(&self) -> i64 {
        (self.clock)()
    }

    fn usable(&self, token: &SellerToken, now: i64) -> bool {
        token.usable(
            now,
            i64::try_from(self.policy.token_expiry_margin_ms).unwrap_or(i64::MAX),
            self.policy.rebuy_min_balance_micros,
        )
    }

    /// Quote → budget check → complete → record → persist.
    async fn buy(
        &self,
        seller: &SellerRef,
        model: &str,
        payment: PaymentMethod,
        team: Option<&TeamLease>,
    ) -> Result<Lease, AcquireError> {
        let (quote, row) = self
            .quote_within_budget(seller, model, payment, team)
            .await?;
        let price = quote.price_usd_micros;
        let completed = self
            .client
            .complete(&seller.url, &quote.quote_id, payment, None)
            .await;
        let purchased = match completed {
            Ok(purchased) => purchased,
            Err(e) => {
                let error = AcquireError::PurchaseFailed(format!("seller {}: {e}", seller.id));
                self.release_failed(&seller.id, price, row, &error);
                return Err(error);
            }
        };
        if let Some(lease) = team {
            lease.paid(price);
        }
        self.install(seller, model, payment, price, purchased, row)
            .await
    }

    /// A purchase that will not complete: its reserved price is released,
    /// it counts as a failure, and it is journaled as failed.
    fn release_failed(&self, seller_id: &str, price: u64, row: PurchaseRow, error: &AcquireError) {
        {
            let mut st = self.state();
            st.budget_reserved = st.budget_reserved.saturating_sub(price);
            st.counters(seller_id).purchase_failures += 1;
        }
        self.journal_end(row, PurchaseStatus::Failed, Some(error));
    }

    /// Budget check → quote → budget check with the price → reserve the
    /// price and journal the quote. The reservation is the caller's to
    /// release or spend.
    async fn quote_within_budget(
        &self,
        seller: &SellerRef,
        model: &str,
        payment: PaymentMethod,
        team: Option<&TeamLease>,
    ) -> Result<(crate::Quote, PurchaseRow), AcquireError> {
        let budget = self.policy.session_budget_usd_micros;
        let failed =
            |e: SellerError| AcquireError::PurchaseFailed(format!("seller {}: {e}", seller.id));
        let mut row = PurchaseRow {
            id: purchase_id(self.now()),
            seller_id: seller.id.clone(),
            model: Some(model.to_owned()),
            payment_method: payment,
            status: PurchaseStatus::Quoted,
            quote_id: None,
            credit_micros: None,
            price_usd_micros: None,
            payment_reference: None,
            token_fingerprint: None,
            error: None,
            created_at_ms: self.now(),
            completed_at_ms: None,
            expires_at_ms: None,
        };
        // Without a team, this run's purchases are the budget's whole
        // story: a spent budget needs no quote. With one, the team's
        // figures decide (a reset starts a new period whatever this daemon
        // bought), checked with the price below.
        if team.is_none() {
            let st = self.state();
            let spent = st.committed();
            if spent >= budget {
                return Err(AcquireError::BudgetSpent { spent, budget });
            }
        }
        let quote = match self
            .client
            .quote(
                &seller.url,
                model,
                payment,
                self.policy.amount_credit_micros,
            )
            .await
        {
            Ok(quote) => quote,
            Err(e) => {
                self.state().counters(&seller.id).purchase_failures += 1;
                let error = failed(e);
                self.journal_end(row, PurchaseStatus::Failed, Some(&error));
                return Err(error);
            }
        };
        let price = quote.price_usd_micros;
        row.quote_id = Some(quote.quote_id.clone());
        row.expires_at_ms = Some(quote.expires_at_ms);
        row.credit_micros = Some(quote.credit_micros);
        row.price_usd_micros = Some(price);
        if let Some(lease) = team {
            self.reserve_team(seller, lease, price, row.clone()).await?;
            self.state().budget_reserved += price;
            self.journal(PurchaseEvent::Purchase(row.clone()));
            return Ok((quote, row));
        }
        {
            let mut st = self.state();
            let spent = st.committed();
            if spent.saturating_add(price) > budget {
                tracing::warn!(
                    target: "seller.budget",
                    seller = %seller.id,
                    price_usd_micros = price,
                    spent_usd_micros = spent,
                    budget_usd_micros = budget,
                    "session purchase budget would be exceeded; not buying"
                );
                drop(st);
                let error = AcquireError::BudgetSpent { spent, budget };
                self.journal_end(row, PurchaseStatus::Declined, Some(&error));
                return Err(error);
            }
            st.budget_reserved += price;
        }
        self.journal(PurchaseEvent::Purchase(row.clone()));
        Ok((quote, row))
    }

    /// A paid purchase: journal it, count it (the reserved `price` becomes
    /// spent), cache the token (sealed) and persist it.
    async fn install(
        &self,
        seller: &SellerRef,
        model: &str,
        payment: PaymentMethod,
        price: u64,
        purchased: Purchased,
        mut row: PurchaseRow,
    ) -> Result<Lease, AcquireError> {
        let now = self.now();
        row.credit_micros = Some(purchased.credit_micros);
        row.payment_reference = purchased.payment_reference.clone();
        let token = SellerToken {
            seller_id: seller.id.clone(),
            payment_method: payment,
            access_token: purchased.access_token,
            balance_micros: purchased.balance_micros,
            credit_micros: purchased.credit_micros,
            price_usd_micros: price,
            expires_at_ms: purchased.expires_at_ms,
            purchased_at_ms: now,
        };
        let fingerprint = token.fingerprint();
        row.token_fingerprint = Some(fingerprint.clone());
        self.journal_end(row, PurchaseStatus::Completed, None);
        let sealed = match self.cipher.encrypt(&token.access_token) {
            Ok((ciphertext, nonce)) => Some((ciphertext, nonce.to_vec())),
            Err(e) => {
                tracing::warn!(
                    target: "seller.token",
                    seller = %seller.id,
                    fingerprint = %fingerprint,
                    "{e}; the token is kept in memory only"
                );
                None
            }
        };
        let usable = self.usable(&token, now);
        let key = (seller.id.clone(), payment);
        let lease = {
            let mut st = self.state();
            st.budget_reserved = st.budget_reserved.saturating_sub(price);
            st.budget_spent = st.budget_spent.saturating_add(price);
            let c = st.counters(&seller.id);
            c.purchases += 1;
            c.purchased_credit = c.purchased_credit.saturating_add(token.credit_micros);
            c.paid_usd = c.paid_usd.saturating_add(price);
            let entry = Entry {
                generation: st.generation(),
                token,
                sealed,
                fingerprint,
                updated_at_ms: now,
                wasted: None,
            };
            let lease = entry.lease(true);
            tracing::info!(
                target: "seller.purchase",
                seller = %seller.id,
                payment = %payment,
                model,
                fingerprint = %entry.fingerprint,
                credit_micros = entry.token.credit_micros,
                balance_micros = entry.token.balance_micros,
                price_usd_micros = price,
                expires_at_ms = entry.token.expires_at_ms,
                "bought seller credit"
            );
            let unusable = (!usable).then(|| {
                format!(
                    "seller {}: the token it sold is not usable: balance {} micros (must be \
                     above {}), expires at {} ms (must be after now {} + margin {} ms)",
                    seller.id,
                    entry.token.balance_micros,
                    self.policy.rebuy_min_balance_micros,
                    entry.token.expires_at_ms,
                    now,
                    self.policy.token_expiry_margin_ms
                )
            });
            // The token replaced: what expiry left on it is lost.
            Inner::waste(
                &mut st,
                &key,
                TokenEvent::Checked { listed: true },
                now,
                self,
            );
            st.tokens.insert(key.clone(), entry);
            match unusable {
                Some(message) => Err(AcquireError::PurchaseFailed(message)),
                None => Ok(lease),
            }
        };
        self.persist(&key).await;
        lease
    }

    /// Journals the end of a purchase attempt.
    fn journal_end(
        &self,
        mut row: PurchaseRow,
        status: PurchaseStatus,
        error: Option<&AcquireError>,
    ) {
        row.status = status;
        row.error = error.map(ToString::to_string);
        row.completed_at_ms = Some(self.now());
        self.journal(PurchaseEvent::Purchase(row));
    }

    /// Writes the current state of `key` (or deletes it) to the store.
    async fn persist(&self, key: &TokenKey) {
        let _write = self.persist_lock.lock().await;
        let snapshot = {
            let mut st = self.state();
            st.pending.remove(key);
            st.tokens.get(key).map(Entry::stored)
        };
        let result = match snapshot {
            Some(Some(token)) => self.store.save(token).await,
            Some(None) => return,
            None => self.store.delete(&key.0, key.1).await,
        };
        if let Err(e) = result {
            tracing::warn!(
                target: "seller.token",
                seller = %key.0,
                payment = %key.1,
                "{e}; the token state is kept in memory and written with the next change"
            );
        }
    }

    /// Marks `key` as behind and starts a background write unless one is
    /// already waiting.
    fn schedule_persist(self: &Arc<Self>, key: TokenKey) {
        if !self.state().pending.insert(key.clone()) {
            return;
        }
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                let inner = Arc::clone(self);
                runtime.spawn(async move { inner.persist(&key).await });
            }
            // Outside a runtime: written by the next `flush`.
            Err(_) => tracing::debug!(
                target: "seller.token",
                "no async runtime; token state written at the next flush"
            ),
        }
    }

    /// Applies `change` to the cached token of `key` when there is one and
    /// (if given) its fingerprint matches; persists in the background when
    /// `change` says the stored state changed.
    fn update_token(
        self: &Arc<Self>,
        key: TokenKey,
        fingerprint: &str,
        change: impl FnOnce(&mut State, i64) -> bool,
    ) -> bool {
        let changed = {
            let mut st = self.state();
            let matches = st
                .tokens
                .get(&key)
                .is_some_and(|e| e.fingerprint == fingerprint);
            matches && change(&mut st, self.now())
        };
        if changed && self.team.get().is_none() {
            self.schedule_persist(key);
        }
        changed
    }

    fn settle(
        self: &Arc<Self>,
        seller_id: &str,
        payment: PaymentMethod,
        fingerprint: &str,
        settled: Option<u64>,
        remaining: Option<u64>,
    ) {
        let key = (seller_id.to_owned(), payment);
        let mut spent = settled;
        self.update_token(key.clone(), fingerprint, |st, now| {
            let Some(e) = st.tokens.get_mut(&key) else {
                return false;
            };
            let old = e.token.balance_micros;
            let new = match (remaining, settled) {
                (Some(r), _) => r,
                (None, Some(s)) => old.saturating_sub(s),
                (None, None) => old,
            };
            spent = spent.or(Some(old.saturating_sub(new)));
            if new == old {
                return false;
            }
            e.token.balance_micros = new;
            e.updated_at_ms = now;
            true
        });
        if let Some(team) = self.team.get() {
            let unreported = if remaining.is_some() {
                0
            } else {
                settled.unwrap_or(0)
            };
            team.queue_settlement(&key, fingerprint, unreported, remaining);
        }
        let mut st = self.state();
        if let Some(spent) = spent.filter(|s| *s > 0) {
            let c = st.counters(seller_id);
            c.spent_credit = c.spent_credit.saturating_add(spent);
        }
        if settled.is_some() || remaining.is_some() {
            self.reclaim(&mut st, &key, fingerprint);
        }
    }

    /// The token of `key` served a call after its credit was counted as
    /// wasted: it was not lost after all. The waste is undone (here and in
    /// the ledger).
    fn reclaim(&self, st: &mut State, key: &TokenKey, fingerprint: &str) {
        let Some(e) = st.tokens.get_mut(key) else {
            return;
        };
        if e.fingerprint != fingerprint {
            return;
        }
        let Some(amount) = e.wasted.take() else {
            return;
        };
        let row = WasteRow {
            seller_id: key.0.clone(),
            token_fingerprint: e.fingerprint.clone(),
            wasted_credit_micros: 0,
            reason: None,
            at_ms: self.now(),
        };
        tracing::info!(
            target: "purchase.credit_reclaimed",
            seller = %key.0,
            fingerprint = %row.token_fingerprint,
            reclaimed_credit_micros = amount,
            "a token counted as wasted was spent again; its waste is undone"
        );
        let c = st.counters(&key.0);
        c.wasted_credit = c.wasted_credit.saturating_sub(amount);
        self.journal(PurchaseEvent::Waste(row));
    }

    fn drop_token(self: &Arc<Self>, seller_id: &str, payment: PaymentMethod, fingerprint: &str) {
        let key = (seller_id.to_owned(), payment);
        let dropped = self.update_token(key.clone(), fingerprint, |st, _| {
            if let Some(e) = st.tokens.remove(&key) {
                tracing::info!(
                    target: "seller.token",
                    seller = %seller_id,
                    payment = %payment,
                    fingerprint = %e.fingerprint,
                    "seller refused the token; dropped, the next request buys a new one"
                );
            }
            true
        });
        if dropped && let Some(team) = self.team.get() {
            team.drop_shared(&key, fingerprint);
        }
    }

    fn mark_dry(self: &Arc<Self>, seller_id: &str, payment: PaymentMethod, fingerprint: &str) {
        let key = (seller_id.to_owned(), payment);
        if let Some(team) = self.team.get() {
            team.queue_settlement(&key, fingerprint, 0, Some(0));
        }
        self.update_token(key.clone(), fingerprint, |st, now| {
            let Some(e) = st.tokens.get_mut(&key) else {
                return false;
            };
            tracing::info!(
                target: "seller.token",
                seller = %seller_id,
                payment = %payment,
                fingerprint = %e.fingerprint,
                balance_micros = e.token.balance_micros,
                "seller says the token ran dry; the next request buys credit"
            );
            let changed = e.token.balance_micros != 0;
            e.token.balance_micros = 0;
            e.updated_at_ms = now;
            changed
        });
    }
}

/// The error for a purchase already waiting for the user.
fn pending_error(st: &State, flight: &FlightKey) -> AcquireError {
    match st.payments.get(flight) {
        Some(p) => AcquireError::PaymentPending(Box::new(p.clone())),
        None => AcquireError::PurchaseFailed(format!("seller {}: no pending payment", flight.0)),
    }
}

/// A unique purchase id: the time, then 64 random bits (hex).
fn purchase_id(now_ms: i64) -> String {
    let mut bytes = [0u8; 8];
    // Without randomness the time and a process-wide counter still keep
    // ids apart within this daemon.
    if getrandom::fill(&mut bytes).is_err() {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        bytes = (n ^ u64::from(std::process::id())).to_be_bytes();
    }
    format!("p-{now_ms}-{}", const_hex::encode(bytes))
}

/// Holds a single-flight gate; removes it from the map when the last
/// user lets go (also when the acquiring future is dropped).
struct GateRef<'a> {
    inner: &'a Inner,
    key: FlightKey,
    gate: Option<Gate>,
}

impl Drop for GateRef<'_> {
    fn drop(&mut self) {
        let mut gates = self
            .inner
            .gates
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(gate) = self.gate.take() {
            // The map's reference and ours: nobody else waits.
            if Arc::strong_count(&gate) <= 2 {
                gates.remove(&self.key);
            }
        }
    }
}

impl CreditBroker {
    /// A broker with an empty cache. Call [`load`](CreditBroker::load) to
    /// restore persisted tokens.
    pub fn new(
        client: SellerClient,
        store: Arc<dyn TokenStore>,
        cipher: TokenCipher,
        policy: PurchasePolicy,
        clock: Clock,
    ) -> CreditBroker {
        CreditBroker {
            inner: Arc::new(Inner {
                client,
                store,
                cipher,
                policy,
                clock,
                state: Mutex::new(State::default()),
                gates: Mutex::new(HashMap::new()),
                journal: OnceLock::new(),
                persist_lock: tokio::sync::Mutex::new(()),
                wallet_ends: tokio::sync::watch::Sender::new(0),
                team: OnceLock::new(),
            }),
        }
    }

    /// The purchase settings.
    pub fn policy(&self) -> &PurchasePolicy {
        &self.inner.policy
    }

    /// Restores the persisted tokens (at start). A token that does not
    /// decrypt with this key, or whose fingerprint does not match, is
    /// skipped with a warning (it will be bought again); a token already
    /// in the cache is kept. Returns how many were restored.
    ///
    /// # Errors
    ///
    /// When the store cannot be read.
    pub async fn load(&self) -> Result<usize, TokenStoreError> {
        let stored = self.inner.store.load_all().await?;
        let mut opened = Vec::with_capacity(stored.len());
        for s in stored {
            match self.inner.cipher.decrypt(&s.ciphertext, &s.nonce) {
                Ok(secret) if secret.fingerprint() == s.fingerprint => opened.push((s, secret)),
                Ok(_) => tracing::warn!(
                    target: "seller.token",
                    seller = %s.seller_id,
                    payment = %s.payment_method,
                    fingerprint = %s.fingerprint,
                    "stored token does not match its fingerprint; skipped, it will be bought again"
                ),
                Err(e) => tracing::warn!(
                    target: "seller.token",
                    seller = %s.seller_id,
                    payment = %s.payment_method,
                    fingerprint = %s.fingerprint,
                    "{e}; skipped, it will be bought again"
                ),
            }
        }
        let mut st = self.inner.state();
        let mut restored = 0;
        for (s, secret) in opened {
            let key = (s.seller_id.clone(), s.payment_method);
            if st.tokens.contains_key(&key) {
                continue;
            }
            let entry = Entry {
                generation: st.generation(),
                token: SellerToken {
                    seller_id: s.seller_id,
                    payment_method: s.payment_method,
                    access_token: secret,
                    balance_micros: s.balance_micros,
                    credit_micros: s.credit_micros,
                    price_usd_micros: s.price_usd_micros,
                    expires_at_ms: s.expires_at_ms,
                    purchased_at_ms: s.purchased_at_ms,
                },
                sealed: Some((s.ciphertext, s.nonce)),
                fingerprint: s.fingerprint,
                updated_at_ms: s.updated_at_ms,
                wasted: None,
            };
            st.tokens.insert(key, entry);
            restored += 1;
        }
        Ok(restored)
    }

    /// A token for `seller`: the cached one when usable (and `force_new`
    /// is false), else a new purchase of
    /// `policy.amount_credit_micros` quoted for `model`.
    ///
    /// Concurrent callers needing a purchase for the same
    /// `seller:model:payment` share one purchase. With `force_new`, a
    /// token another caller bought while this one waited counts as new.
    ///
    /// # Errors
    ///
    /// [`AcquireError::BudgetSpent`] (no completion is attempted),
    /// [`AcquireError::PaymentPending`] for clawtip while the user has not
    /// paid (the first call quotes and starts polling `complete`; later
    /// calls get the same pending payment until it ends),
    /// [`AcquireError::PurchaseFailed`] for any seller or payment-method
    /// problem, including a seller that sells an unusable token.
    pub async fn acquire(
        &self,
        seller: &SellerRef,
        model: &str,
        payment: PaymentMethod,
        force_new: bool,
    ) -> Result<Lease, AcquireError> {
        let key = (seller.id.clone(), payment);
        let flight: FlightKey = (seller.id.clone(), model.to_owned(), payment);
        let seen = {
            let st = self.inner.state();
            let now = self.inner.now();
            match st.tokens.get(&key) {
                Some(e) if !force_new && self.inner.usable(&e.token, now) => {
                    return Ok(e.lease(false));
                }
                // Waiting for the user: never a second quote.
                _ if st.payments.contains_key(&flight) => {
                    return Err(pending_error(&st, &flight));
                }
                Some(e) => Some(e.generation),
                None => None,
            }
        };
        match payment {
            PaymentMethod::Mock | PaymentMethod::Clawtip => {}
            PaymentMethod::ProviderKey => {
                return Err(AcquireError::PurchaseFailed(format!(
                    "seller {}: payment method provider_key cannot buy seller credit",
                    seller.id
                )));
            }
        }
        let gate = {
            let mut gates = self
                .inner
                .gates
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            Arc::clone(gates.entry(flight.clone()).or_default())
        };
        let gate_ref = GateRef {
            inner: &self.inner,
            key: flight,
            gate: Some(Arc::clone(&gate)),
        };
        let guard = gate.lock_owned().await;
        let inner = Arc::clone(&self.inner);
        let seller = seller.clone();
        let model = model.to_owned();
        // The purchase runs on its own task holding the gate, so a caller
        // that goes away neither loses a paid token nor lets a second
        // purchase start while this one completes.
        let task = tokio::spawn(async move {
            let _guard = guard;
            let held = {
                let st = inner.state();
                let now = inner.now();
                if let Some(e) = st.tokens.get(&key) {
                    let replaced = Some(e.generation) != seen;
                    if inner.usable(&e.token, now) && (!force_new || replaced) {
                        return Ok(e.lease(false));
                    }
                }
                let flight = (seller.id.clone(), model.clone(), payment);
                if st.payments.contains_key(&flight) {
                    return Err(pending_error(&st, &flight));
                }
                st.tokens.get(&key).map(|e| e.fingerprint.clone())
            };
            match payment {
                PaymentMethod::Clawtip => {
                    Err(inner.start_wallet_purchase(&seller, &model, payment).await)
                }
                _ => match inner.team.get() {
                    Some(team) => {
                        let team = Arc::clone(team);
                        inner
                            .team_acquire(&team, &seller, &model, payment, held)
                            .await
                    }
                    None => inner.buy(&seller, &model, payment, None).await,
                },
            }
        });
        let result = match task.await {
            Ok(result) => result,
            Err(e) => Err(AcquireError::PurchaseFailed(format!(
                "the purchase task ended abnormally: {e}"
            ))),
        };
        drop(gate_ref);
        result
    }

    /// The wallet purchases waiting for the user to pay, oldest first.
    pub fn pending_payments(&self) -> Vec<PendingPayment> {
        let mut all: Vec<PendingPayment> = self.inner.state().payments.values().cloned().collect();
        all.sort_by(|a, b| {
            (a.created_at_ms, &a.purchase_id).cmp(&(b.created_at_ms, &b.purchase_id))
        });
        all
    }

    /// The wallet tokens whose balance runs low ([`recharge_due`]) and
    /// whose quote said where to recharge, by seller.
    pub fn recharges(&self) -> Vec<RechargePrompt> {
        let st = self.inner.state();
        let min = self.inner.policy.rebuy_min_balance_micros;
        let mut out: Vec<RechargePrompt> = st
            .recharge_urls
            .iter()
            .filter_map(|(key, url)| {
                let e = st.tokens.get(key)?;
                recharge_due(e.token.balance_micros, e.token.credit_micros, min).then(|| {
                    RechargePrompt {
                        seller_id: key.0.clone(),
                        payment_method: key.1,
                        balance_micros: e.token.balance_micros,
                        credit_micros: e.token.credit_micros,
                        recharge_url: url.clone(),
                    }
                })
            })
            .collect();
        out.sort_by(|a, b| a.seller_id.cmp(&b.seller_id));
        out
    }

    /// Waits until at least `n` wallet purchases have ended since the
    /// broker started (paid and cached, expired, cancelled or failed);
    /// returns the count.
    pub async fn wallet_purchases_ended(&self, n: u64) -> u64 {
        let mut ends = self.inner.wallet_ends.subscribe();
        let result = ends.wait_for(|&c| c >= n).await.map(|c| *c);
        result.unwrap_or(n)
    }

    /// The cached token of (`seller_id`, `payment`), if any (usable or
    /// not).
    pub fn cached_token(&self, seller_id: &str, payment: PaymentMethod) -> Option<SellerToken> {
        self.inner
            .state()
            .tokens
            .get(&(seller_id.to_owned(), payment))
            .map(|e| e.token.clone())
    }

    /// A settlement for a call made with `lease`: the balance becomes
    /// `remaining_credit_micros` when present (authoritative), else drops
    /// by `settled_credit_micros`; the tracker counts the credit spent on
    /// the seller either way. The balance is only updated while the lease's
    /// token is still the cached one (a late settlement of a replaced token
    /// must not overwrite the new token's balance). Cheap and synchronous:
    /// the store is written by a background task (see
    /// [`flush`](CreditBroker::flush)).
    pub fn settle_lease(
        &self,
        lease: &Lease,
        settled_credit_micros: Option<u64>,
        remaining_credit_micros: Option<u64>,
    ) {
        self.inner.settle(
            &lease.seller_id,
            lease.payment_method,
            &lease.fingerprint,
            settled_credit_micros,
            remaining_credit_micros,
        );
    }

    /// The seller refused the lease's token (401/403 without billing
    /// wording): forget it (in the store too) while it is still the cached
    /// one; the next acquire buys a new one.
    pub fn drop_lease(&self, lease: &Lease) {
        self.inner
            .drop_token(&lease.seller_id, lease.payment_method, &lease.fingerprint);
    }

    /// The seller says the lease's token ran dry ([`is_insufficient_funds`]):
    /// its balance becomes 0, so the next acquire buys; only while it is
    /// still the cached token (so concurrent 402s on an old token do not
    /// waste the token just bought to replace it).
    pub fn mark_lease_dry(&self, lease: &Lease) {
        self.inner
            .mark_dry(&lease.seller_id, lease.payment_method, &lease.fingerprint);
    }

    /// The daemon gave up on the seller (failed over away from it). If the
    /// cached token was bought less than `fresh_window_ms` ago, its balance
    /// counts as wasted (once per token; see [`crate::waste`]) and is
    /// journaled. Returns the micros counted now.
    pub fn abandoned(&self, seller_id: &str, payment: PaymentMethod) -> u64 {
        let now = self.inner.now();
        let mut st = self.inner.state();
        let key = (seller_id.to_owned(), payment);
        Inner::waste(&mut st, &key, TokenEvent::FailedOver, now, &self.inner)
    }

    /// [`abandoned`](CreditBroker::abandoned) for the token `lease` was
    /// paid with, while it is still the cached one (a failover on a token
    /// already replaced wastes nothing of the new one).
    pub fn abandon_lease(&self, lease: &Lease) -> u64 {
        let now = self.inner.now();
        let mut st = self.inner.state();
        let key = (lease.seller_id.clone(), lease.payment_method);
        if st
            .tokens
            .get(&key)
            .is_none_or(|e| e.fingerprint != lease.fingerprint)
        {
            return 0;
        }
        Inner::waste(&mut st, &key, TokenEvent::FailedOver, now, &self.inner)
    }

    /// Applies the expiry and delisting rules to every cached token:
    /// `listed` says whether a seller is in the registry's current document
    /// (`None`: no document to judge by, only expiry applies). Call it
    /// periodically and when the registry changes. Returns the micros
    /// counted as wasted now.
    pub fn sweep(&self, listed: Option<&dyn Fn(&str) -> bool>) -> u64 {
        let now = self.inner.now();
        let mut st = self.inner.state();
        let keys: Vec<TokenKey> = st.tokens.keys().cloned().collect();
        let mut total = 0u64;
        for key in keys {
            let listed = listed.is_none_or(|f| f(&key.0));
            let event = TokenEvent::Checked { listed };
            total = total.saturating_add(Inner::waste(&mut st, &key, event, now, &self.inner));
        }
        total
    }

    /// Sends every purchase attempt and waste change to `journal` from now
    /// on (set once, before the first purchase; later calls are ignored).
    pub fn set_journal(&self, journal: Arc<dyn PurchaseJournal>) {
        if self.inner.journal.set(journal).is_err() {
            tracing::warn!(target: "purchase.journal", "the purchase journal is already set");
        }
    }

    /// Rebuilds the credit tracker from the ledger's `history` (at
    /// start-up, after [`load`](CreditBroker::load)): the per-seller
    /// figures are added to this run's, and restored tokens whose waste
    /// the ledger recorded stay counted as wasted (out of `remaining`).
    /// The session budget is per run and not touched.
    pub fn restore(&self, history: &CreditHistory) {
        let mut st = self.inner.state();
        for h in &history.sellers {
            let c = st.counters(&h.seller_id);
            c.purchases = c.purchases.saturating_add(h.purchases);
            c.purchase_failures = c.purchase_failures.saturating_add(h.purchase_failures);
            c.purchased_credit = c.purchased_credit.saturating_add(h.purchased_credit_micros);
            c.paid_usd = c.paid_usd.saturating_add(h.paid_usd_micros);
            c.spent_credit = c.spent_credit.saturating_add(h.spent_credit_micros);
            c.wasted_credit = c.wasted_credit.saturating_add(h.wasted_credit_micros);
        }
        for (seller, fingerprint, amount) in &history.wasted_tokens {
            for ((id, _), e) in st.tokens.iter_mut() {
                if id == seller && &e.fingerprint == fingerprint {
                    e.wasted = Some(*amount);
                }
            }
        }
    }

    /// What the session budget still allows, USD micros (purchases in
    /// flight already deducted).
    pub fn budget_left(&self) -> u64 {
        self.inner
            .policy
            .session_budget_usd_micros
            .saturating_sub(self.inner.state().committed())
    }

    /// The credit tracker: per seller and in total.
    pub fn credit_summary(&self) -> CreditSummary {
        let st = self.inner.state();
        let mut per: BTreeMap<&str, SellerCredit> = BTreeMap::new();
        for (id, c) in &st.counters {
            per.insert(
                id,
                SellerCredit {
                    seller_id: id.clone(),
                    purchases: c.purchases,
                    purchase_failures: c.purchase_failures,
                    purchased_credit_micros: c.purchased_credit,
                    paid_usd_micros: c.paid_usd,
                    spent_credit_micros: c.spent_credit,
                    remaining_credit_micros: 0,
                    wasted_credit_micros: c.wasted_credit,
                },
            );
        }
        for ((id, _), e) in &st.tokens {
            let s = per.entry(id).or_insert_with(|| SellerCredit {
                seller_id: id.clone(),
                ..SellerCredit::default()
            });
            if e.wasted.is_none() {
                s.remaining_credit_micros = s
                    .remaining_credit_micros
                    .saturating_add(e.token.balance_micros);
            }
        }
        let sellers: Vec<SellerCredit> = per.into_values().collect();
        let sum =
            |f: fn(&SellerCredit) -> u64| sellers.iter().map(f).fold(0u64, u64::saturating_add);
        let budget = self.inner.policy.session_budget_usd_micros;
        CreditSummary {
            purchases: sum(|s| s.purchases),
            purchase_failures: sum(|s| s.purchase_failures),
            purchased_credit_micros: sum(|s| s.purchased_credit_micros),
            paid_usd_micros: sum(|s| s.paid_usd_micros),
            spent_credit_micros: sum(|s| s.spent_credit_micros),
            remaining_credit_micros: sum(|s| s.remaining_credit_micros),
            wasted_credit_micros: sum(|s| s.wasted_credit_micros),
            budget_usd_micros: budget,
            budget_spent_usd_micros: st.budget_spent,
            budget_left_usd_micros: budget.saturating_sub(st.committed()),
            sellers,
        }
    }

    /// Waits until every token change made so far is in the store (call at
    /// shutdown; tests use it to observe background writes).
    pub async fn flush(&self) {
        if let Some(team) = self.inner.team.get() {
            self.inner.flush_team(team).await;
        }
        loop {
            let pending: Vec<TokenKey> = self.inner.state().pending.iter().cloned().collect();
            for key in &pending {
                self.inner.persist(key).await;
            }
            // Wait for a background write that already took its snapshot.
            drop(self.inner.persist_lock.lock().await);
            if self.inner.state().pending.is_empty() {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insufficient_funds_wording() {
        let cases: &[(u16, &str, bool)] = &[
            (402, "", true),
            (402, "whatever", true),
            (400, "Insufficient balance", true),
            (403, "{\"error\":{\"code\":\"insufficient_quota\"}}", true),
            (429, "You exceeded your current QUOTA", true),
            (500, "account is OUT OF CREDIT", true),
            (400, "低余额不足，请充值", true),
            (400, "账户欠费", true),
            (400, "扣款失败", true),
            (401, "Balance too low", true),
            (401, "invalid api key", false),
            (403, "forbidden", false),
            (500, "internal error", false),
            (502, "load balancer error", false),
            (502, "load balancer: low balance", true),
            // A success is never a dry token.
            (200, "your balance is 5", false),
            (204, "insufficient", false),
        ];
        for &(status, body, want) in cases {
            assert_eq!(
                is_insufficient_funds(status, body.as_bytes()),
                want,
                "{status} {body:?}"
            );
        }
        // Not UTF-8: still scanned lossily.
        let mut bytes = b"\xff\xfe quota".to_vec();
        assert!(is_insufficient_funds(400, &bytes));
        // Past 64 KiB: not looked at.
        bytes = vec![b' '; 70 * 1024];
        bytes.extend_from_slice(b"quota");
        assert!(!is_insufficient_funds(400, &bytes));
    }

    #[test]
    fn payment_polls_back_off_from_2_to_15_seconds() {
        let delays: Vec<u64> = (0..7).map(payment_poll_delay_ms).collect();
        assert_eq!(
            delays,
            [2_000, 4_000, 8_000, 15_000, 15_000, 15_000, 15_000]
        );
        assert_eq!(payment_poll_delay_ms(u32::MAX), 15_000);
    }

    #[test]
    fn payment_polls_stop_at_the_quote_expiry() {
        // Far from the expiry: the backoff.
        assert_eq!(next_payment_poll_ms(0, 0, 60_000, false), Some(2_000));
        assert_eq!(next_payment_poll_ms(5, 0, 60_000, false), Some(15_000));
        // Never sleeping past the expiry.
        assert_eq!(next_payment_poll_ms(5, 59_000, 60_000, false), Some(1_000));
        // At/after the expiry: one last poll at once, then stop.
        assert_eq!(next_payment_poll_ms(2, 60_000, 60_000, false), Some(0));
        assert_eq!(next_payment_poll_ms(2, 90_000, 60_000, false), Some(0));
        assert_eq!(next_payment_poll_ms(3, 60_001, 60_000, true), None);
        // Extreme clocks do not overflow.
        assert_eq!(
            next_payment_poll_ms(0, i64::MIN, i64::MAX, false),
            Some(2_000)
        );
    }

    #[test]
    fn recharge_is_due_at_a_fifth_or_the_rebuy_minimum() {
        let cases: &[(u64, u64, u64, bool)] = &[
            (1_000_000, 1_000_000, 10_000, false),
            (200_001, 1_000_000, 10_000, false),
            (200_000, 1_000_000, 10_000, true),
            (0, 1_000_000, 10_000, true),
            // A token bought with little credit: the rebuy minimum decides.
            (10_000, 20_000, 10_000, true),
            (10_001, 20_000, 10_000, false),
            (u64::MAX, u64::MAX, 0, false),
            (0, 0, 0, true),
        ];
        for &(balance, credit, min, want) in cases {
            assert_eq!(
                recharge_due(balance, credit, min),
                want,
                "{balance} {credit} {min}"
            );
        }
    }

    #[test]
    fn pending_payments_say_who_what_and_where() {
        let p = PendingPayment {
            purchase_id: "p-1".into(),
            seller_id: "s-claw".into(),
            model: "deepseek-chat".into(),
            payment_method: PaymentMethod::Clawtip,
            quote_id: "q-1".into(),
            credit_micros: 1_000_000,
            price_usd_micros: 1_250_000,
            expires_at_ms: 1_800_000_000_000,
            created_at_ms: 0,
            request: PaymentRequest {
                pay_url: "https://pay.example/q-1".into(),
                qr_payload: "https://pay.example/q-1".into(),
                recharge_qr_url: None,
            },
        };
        let text = p.to_string();
        for part in [
            "s-claw",
            "$1.250000",
            "1000000 micros",
            "clawtip",
            "https://pay.example/q-1",
            "2027-01-15T08:00:00Z",
        ] {
            assert!(text.contains(part), "{part} in {text}");
        }
        assert_eq!(rfc3339(i64::MAX), format!("{} ms since 1970", i64::MAX));
    }

    #[test]
    fn policy_defaults_follow_the_spec() {
        let p = PurchasePolicy::default();
        assert_eq!(p.amount_credit_micros, 1_000_000);
        assert_eq!(p.session_budget_usd_micros, 5_000_000);
        assert_eq!(p.rebuy_min_balance_micros, 10_000);
        assert_eq!(p.token_expiry_margin_ms, 60_000);
        assert_eq!(p.fresh_window_ms, 300_000);
    }
}
