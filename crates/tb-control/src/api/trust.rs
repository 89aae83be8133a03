//! `GET /v1/trust` and `POST /v1/probe/reload`: what `tokenbuddyd probe`
//! found about each upstream × model, and what routing makes of it now.

use serde::{Deserialize, Serialize};
use tb_domain::{ProbeCheck, Verdict};

/// `GET /v1/trust`: every upstream × model with probe results, by
/// upstream then model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Trust {
    /// `probe.expiry_secs`: results older than this count for nothing.
    pub expiry_secs: u64,
    /// `probe.overcount_threshold`, percent.
    pub overcount_threshold: u32,
    /// One entry per upstream × model probed.
    pub entries: Vec<TrustEntry>,
}

/// One upstream × model's latest probe.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrustEntry {
    /// Provider id or seller id.
    pub upstream_id: String,
    /// The upstream model id probed.
    pub model: String,
    /// When it was probed, unix ms.
    pub probed_at_ms: i64,
    /// Older than `expiry_secs`: routing ignores it.
    pub expired: bool,
    /// Why it is not first choice for requests with tools (`null`: it is
    /// trusted for them), e.g. `tool call failed`.
    pub demoted_for_tools: Option<String>,
    /// Why it is pushed back for requests without tools, e.g.
    /// `prompt tokens +30 %`.
    pub demoted_for_all: Option<String>,
    /// What each check found.
    pub checks: Vec<TrustCheck>,
}

/// One check of a probe.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrustCheck {
    /// The check.
    pub check: ProbeCheck,
    /// ✓ (`pass`) / ✗ (`fail`) / ? (`unknown`).
    pub verdict: Verdict,
    /// Its number: the prompt over-count in percent, the completion tokens
    /// of the `max_tokens` check, the plain answer's latency in ms.
    pub measured: Option<i64>,
}

/// `POST /v1/probe/reload`: the results were read again from the ledger.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProbeReload {
    /// How many upstream × model pairs routing now has results for.
    pub entries: u64,
}
