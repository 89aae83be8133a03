//! `GET /v1/calls`, `/v1/usage`, `/v1/credit` and `/v1/prewarm`: what the
//! ledger, the credit broker and the prewarmer know.

use serde::{Deserialize, Serialize};

/// One proxied request, as the ledger stores it.
pub use tb_billing::record::CallRecord;
/// The prewarmer's entries, focus set and counters.
pub use tb_prewarm::PrewarmSnapshot;
use tb_prewarm::{EntrySnapshot, SchedulerStats};

/// `GET /v1/prewarm`: `null` in manual mode.
pub type Prewarm = Option<PrewarmReport>;

/// The prewarmer's state with what it serves: the pool the warm entries
/// feed and the credit the sellers hold, in one snapshot (operations.md).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrewarmReport {
    /// The instant the states were evaluated at (Unix milliseconds).
    pub now_ms: i64,
    /// The focus set.
    pub focus: Vec<String>,
    /// Every known key, sorted.
    pub entries: Vec<EntrySnapshot>,
    /// Scheduler counters.
    pub stats: SchedulerStats,
    /// The upstream pool now.
    pub pool: PoolSummary,
    /// The sellers' credit (as `GET /v1/credit`).
    pub credit: Option<CreditReport>,
}

impl PrewarmReport {
    /// The prewarmer's snapshot with the pool and credit summaries.
    pub fn new(
        snapshot: PrewarmSnapshot,
        pool: PoolSummary,
        credit: Option<CreditReport>,
    ) -> PrewarmReport {
        PrewarmReport {
            now_ms: snapshot.now_ms,
            focus: snapshot.focus,
            entries: snapshot.entries,
            stats: snapshot.stats,
            pool,
            credit,
        }
    }
}

/// The upstream pool in counts: how much of it can take a request now.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolSummary {
    /// Upstreams in the routing table.
    pub upstreams: u64,
    /// Of them, marketplace sellers.
    pub sellers: u64,
    /// Circuit closed.
    pub closed: u64,
    /// Circuit open (benched).
    pub open: u64,
    /// Circuit half-open (one trial at a time).
    pub half_open: u64,
    /// Under a capacity block (429 with `Retry-After`).
    pub capacity_blocked: u64,
}

/// `GET /v1/credit`: `null` in manual mode.
pub type Credit = Option<CreditReport>;

/// `GET /v1/calls`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Calls {
    /// Newest first.
    pub calls: Vec<CallRecord>,
    /// The cursor of the next (older) page, `<started_at_ms>:<id>`; `None`
    /// on the last page.
    pub next_before: Option<String>,
}

/// How `GET /v1/usage` groups its rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UsageBy {
    /// The requested model.
    #[default]
    Model,
    /// The upstream that answered.
    Upstream,
    /// The UTC day.
    Day,
    /// The member whose key made the call (empty: the access token).
    Member,
}

impl UsageBy {
    /// The query and wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            UsageBy::Model => "model",
            UsageBy::Upstream => "upstream",
            UsageBy::Day => "day",
            UsageBy::Member => "member",
        }
    }

    /// Parses the query value.
    pub fn parse(s: &str) -> Option<UsageBy> {
        [
            UsageBy::Model,
            UsageBy::Upstream,
            UsageBy::Day,
            UsageBy::Member,
        ]
        .into_iter()
        .find(|b| b.as_str() == s)
    }
}

/// `GET /v1/usage` (also `tokenbuddyd usage --json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Usage {
    /// The window's start (Unix milliseconds).
    pub since_ms: i64,
    /// The grouping.
    pub by: UsageBy,
    /// One row per group.
    pub rows: Vec<UsageRow>,
    /// The whole window.
    pub totals: UsageTotals,
}

/// One group of `GET /v1/usage`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UsageRow {
    /// The model, upstream or day (empty: no upstream answered).
    pub key: String,
    /// Calls.
    pub calls: u64,
    /// Calls that succeeded.
    pub ok_calls: u64,
    /// Input tokens.
    pub input_tokens: u64,
    /// Input tokens served from the cache.
    pub cached_input_tokens: u64,
    /// Output tokens.
    pub output_tokens: u64,
    /// Spend, USD micros.
    pub cost_usd_micros: i64,
    /// Saved against list prices, USD micros.
    pub saved_usd_micros: i64,
    /// Calls without a price (not in the sums).
    pub unpriced_calls: u64,
}

/// The totals of `GET /v1/usage`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UsageTotals {
    /// Calls.
    pub calls: u64,
    /// Spend, USD micros.
    pub cost_usd_micros: i64,
    /// Saved against list prices, USD micros.
    pub saved_usd_micros: i64,
    /// Calls without a price.
    pub unpriced_calls: u64,
}

/// The credit bought from sellers this session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreditReport {
    /// One row per seller.
    pub sellers: Vec<SellerCredit>,
    /// Summed over the sellers.
    pub totals: CreditCounters,
    /// The session's purchase budget, USD micros.
    pub budget_usd_micros: u64,
    /// What is left of it, USD micros.
    pub budget_left_usd_micros: u64,
}

/// One seller's credit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SellerCredit {
    /// The seller.
    pub seller_id: String,
    /// Purchases that completed.
    pub purchases: u64,
    /// Purchases that failed.
    pub failed_purchases: u64,
    /// Credit bought, seller micros.
    pub credit_bought_micros: u64,
    /// Paid for it, USD micros.
    pub usd_paid_micros: u64,
    /// Credit spent on calls.
    pub credit_spent_micros: u64,
    /// Credit left.
    pub credit_remaining_micros: u64,
    /// Credit wasted: left on the seller when the daemon failed over
    /// within `purchase.fresh_window_ms` of buying it, on a token that
    /// expired, or on a seller that left the registry (undone if the token
    /// is spent again). Not part of `credit_remaining_micros`.
    pub credit_wasted_micros: u64,
}

/// `GET /v1/purchases/pending`: the wallet purchases (clawtip) waiting
/// for the user to pay, oldest first (empty in manual mode).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PendingPurchases {
    /// The pending payments.
    pub payments: Vec<PendingPurchase>,
    /// Wallet tokens running low, with where to recharge them.
    pub recharges: Vec<RechargePrompt>,
}

/// A wallet (clawtip) token whose balance runs low (at or under a fifth of
/// what was bought, or at the rebuy minimum), with the recharge link the
/// seller's quote gave and its QR code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RechargePrompt {
    /// The seller.
    pub seller_id: String,
    /// How the token was paid (`clawtip`).
    pub payment_method: String,
    /// What is left, seller micros.
    pub balance_micros: u64,
    /// What was bought, seller micros.
    pub credit_micros: u64,
    /// Where to recharge the wallet.
    pub recharge_url: String,
    /// The QR code of `recharge_url` as an SVG image.
    pub qr_svg: String,
    /// The same code's modules, one string per row, `1` dark.
    pub qr_modules: Vec<String>,
}

/// One wallet payment the user must make (marketplace.md): the daemon
/// polls the seller until it is paid, expires or is cancelled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PendingPurchase {
    /// The purchase's id in the ledger.
    pub purchase_id: String,
    /// The seller.
    pub seller_id: String,
    /// The model the credit was quoted for.
    pub model: String,
    /// How it is paid (`clawtip`).
    pub payment_method: String,
    /// The seller's quote id.
    pub quote_id: String,
    /// Credit it buys, seller micros.
    pub credit_micros: u64,
    /// What the user pays, USD micros.
    pub price_usd_micros: u64,
    /// When it was quoted (Unix milliseconds).
    pub created_at_ms: i64,
    /// When the quote lapses unpaid (Unix milliseconds).
    pub expires_at_ms: i64,
    /// Where to pay.
    pub pay_url: String,
    /// The text the QR code encodes (usually `pay_url`).
    pub qr_payload: String,
    /// The QR code of `qr_payload` as an SVG image.
    pub qr_svg: String,
    /// The same code's modules, one string per row, `1` dark and `0`
    /// light (what the dashboard draws, without parsing markup).
    pub qr_modules: Vec<String>,
    /// Where the wallet is recharged, when the seller said.
    pub recharge_qr_url: Option<String>,
}

/// The counters of a [`SellerCredit`], summed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreditCounters {
    /// Purchases that completed.
    pub purchases: u64,
    /// Purchases that failed.
    pub failed_purchases: u64,
    /// Credit bought, seller micros.
    pub credit_bought_micros: u64,
    /// Paid for it, USD micros.
    pub usd_paid_micros: u64,
    /// Credit spent on calls.
    pub credit_spent_micros: u64,
    /// Credit left.
    pub credit_remaining_micros: u64,
    /// Credit wasted (see [`SellerCredit::credit_wasted_micros`]).
    pub credit_wasted_micros: u64,
}
