//! The seller audit documents: `GET /v1/sellers` (a row per marketplace
//! seller: calls, failures, settled against estimated, drift, wasted
//! credit, last purchase) and `GET /v1/sellers/audit` (the sellers that
//! bill far off, with the calls that show it).

use serde::{Deserialize, Serialize};

/// `GET /v1/sellers?since=7d`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sellers {
    /// Window start, unix ms.
    pub since_ms: i64,
    /// One row per seller seen in the window's calls, by id.
    pub sellers: Vec<SellerRow>,
}

/// One seller over the window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SellerRow {
    /// The seller's registry id.
    pub seller_id: String,
    /// Calls that tried it.
    pub calls: u64,
    /// Attempts at it.
    pub attempts: u64,
    /// Attempts that failed on its side (not cancellations, not the
    /// caller's bad requests).
    pub failed_attempts: u64,
    /// `failed_attempts / attempts`, ppm; `null` without attempts.
    pub failure_share_ppm: Option<u64>,
    /// Calls it answered.
    pub won: u64,
    /// Answered calls with a settlement and an estimate (the drift sample).
    pub settled_calls: u64,
    /// What it settled over those calls, USD micros.
    pub settled_usd_micros: u64,
    /// What the daemon estimated for them (its manifest prices, else the
    /// table × its discount), USD micros.
    pub estimated_usd_micros: u64,
    /// Median of `settled / estimated − 1`, signed ppm; `null` without a
    /// sample.
    pub median_drift_ppm: Option<i64>,
    /// Credit left behind on it, micros.
    pub wasted_credit_micros: u64,
    /// The latest call that tried it, unix ms.
    pub last_call_ms: Option<i64>,
    /// When credit was last bought from it, unix ms.
    pub last_purchase_ms: Option<i64>,
}

/// `GET /v1/sellers/audit?since=7d`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SellerAudit {
    /// Window start, unix ms.
    pub since_ms: i64,
    /// Sellers audited (seen in the window's calls).
    pub sellers_checked: u64,
    /// The allowed median drift either way, ppm (200,000 = 20 %).
    pub drift_limit_ppm: i64,
    /// The sellers that bill far off, by id; empty when none.
    pub flagged: Vec<FlaggedSeller>,
}

/// How a flagged seller bills off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum FindingKind {
    /// Median ratio near ×100.
    #[serde(rename = "times_100")]
    Times100,
    /// Median ratio near ÷100.
    #[serde(rename = "div_100")]
    Div100,
    /// Median drift above +20 %.
    #[serde(rename = "over_billing")]
    OverBilling,
    /// Median drift below −20 %.
    #[serde(rename = "under_billing")]
    UnderBilling,
}

/// One flagged seller.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlaggedSeller {
    /// The seller.
    pub seller_id: String,
    /// How it bills off.
    pub kind: FindingKind,
    /// What that means, for people.
    pub message: String,
    /// Median `settled / estimated`, ppm (×100 = 100,000,000).
    pub median_ratio_ppm: u64,
    /// Median `settled / estimated − 1`, signed ppm.
    pub median_drift_ppm: i64,
    /// Calls the median is over.
    pub settled_calls: u64,
    /// Calls that show the finding in all.
    pub evidence_calls: u64,
    /// The most recent of them (at most 10), newest first.
    pub calls: Vec<AuditedCall>,
}

/// A call that shows a finding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditedCall {
    /// The call record's id (`tokenbuddyd calls --json` shows it).
    pub call_id: String,
    /// When it started, unix ms.
    pub started_at_ms: i64,
    /// The model sent upstream.
    pub model: String,
    /// What the seller settled, USD micros.
    pub settled_usd_micros: u64,
    /// What the daemon estimated, USD micros.
    pub estimated_usd_micros: u64,
    /// `settled / estimated − 1`, signed ppm.
    pub drift_ppm: i64,
}
