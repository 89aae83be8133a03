//! The call record: one per proxied request (billing.md, "Call record").
//! Keys are snake_case everywhere (JSON output, ledger columns).

use serde::{Deserialize, Serialize};
use tb_domain::Protocol;

/// How a request ended, from the client's point of view.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CallOutcome {
    /// The client got a successful answer.
    Ok,
    /// No upstream produced a successful answer.
    Failed,
    /// The client went away first.
    Cancelled,
    /// The stream broke after content had been forwarded.
    FailedMidStream,
}

impl CallOutcome {
    /// The ledger/JSON name.
    pub fn as_str(self) -> &'static str {
        match self {
            CallOutcome::Ok => "ok",
            CallOutcome::Failed => "failed",
            CallOutcome::Cancelled => "cancelled",
            CallOutcome::FailedMidStream => "failed_mid_stream",
        }
    }

    /// Parses the ledger/JSON name.
    pub fn parse(s: &str) -> Option<CallOutcome> {
        Some(match s {
            "ok" => CallOutcome::Ok,
            "failed" => CallOutcome::Failed,
            "cancelled" => CallOutcome::Cancelled,
            "failed_mid_stream" => CallOutcome::FailedMidStream,
            _ => return None,
        })
    }
}

/// Where the cost figure came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BalanceSource {
    /// A seller's settlement.
    SellerAuthoritative,
    /// A manual provider paid with the user's key (our estimate, or the
    /// provider's own reported cost).
    SelfFundedProvider,
    /// Neither: an estimate.
    Estimated,
}

impl BalanceSource {
    /// The ledger/JSON name.
    pub fn as_str(self) -> &'static str {
        match self {
            BalanceSource::SellerAuthoritative => "seller_authoritative",
            BalanceSource::SelfFundedProvider => "self_funded_provider",
            BalanceSource::Estimated => "estimated",
        }
    }

    /// Parses the ledger/JSON name.
    pub fn parse(s: &str) -> Option<BalanceSource> {
        Some(match s {
            "seller_authoritative" => BalanceSource::SellerAuthoritative,
            "self_funded_provider" => BalanceSource::SelfFundedProvider,
            "estimated" => BalanceSource::Estimated,
            _ => return None,
        })
    }
}

/// What the savings baseline is (billing.md, "Savings baseline").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BaselineKind {
    /// The first-party list price.
    Official,
    /// The last priced route of the planned chain.
    LastLeg,
}

impl BaselineKind {
    /// The ledger/JSON name.
    pub fn as_str(self) -> &'static str {
        match self {
            BaselineKind::Official => "official",
            BaselineKind::LastLeg => "last_leg",
        }
    }

    /// Parses the ledger/JSON name.
    pub fn parse(s: &str) -> Option<BaselineKind> {
        Some(match s {
            "official" => BaselineKind::Official,
            "last_leg" => BaselineKind::LastLeg,
            _ => return None,
        })
    }
}

/// What the call is billed in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BillingUnit {
    /// Tokens (chat, responses, messages).
    Tokens,
    /// Images (images_generations).
    Images,
}

impl BillingUnit {
    /// The ledger/JSON name.
    pub fn as_str(self) -> &'static str {
        match self {
            BillingUnit::Tokens => "tokens",
            BillingUnit::Images => "images",
        }
    }

    /// Parses the ledger/JSON name.
    pub fn parse(s: &str) -> Option<BillingUnit> {
        Some(match s {
            "tokens" => BillingUnit::Tokens,
            "images" => BillingUnit::Images,
            _ => return None,
        })
    }
}

/// One upstream attempt of a call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attempt {
    /// Upstream id.
    pub upstream: String,
    /// HTTP status, when the upstream answered.
    pub status: Option<u16>,
    /// `ok`, `http_error`, `connect_failed`, `deadline`, `server_error`, …
    pub outcome: String,
    /// Error class for failures (routing.md outcome names), else `None`.
    pub error_class: Option<String>,
    /// Time from sending to the response head (or the failure).
    pub latency_ms: u64,
}

/// One call record. `None` means unknown, never zero.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CallRecord {
    /// UUIDv7 of the record.
    pub id: String,
    /// The request id (`x-tokenbuddy-request-id`).
    pub request_id: String,
    /// Unix milliseconds UTC when the request arrived.
    pub started_at_ms: i64,
    /// Endpoint label: `chat`, `responses`, `messages`, `images`.
    pub endpoint: String,
    /// Protocol.
    pub protocol: Protocol,
    /// The model the client asked for.
    pub requested_model: String,
    /// The model id sent upstream (after alias/prefix resolution).
    pub model: String,
    /// Whether the client asked for a stream.
    pub stream: bool,
    /// `outcome == ok`.
    pub ok: bool,
    /// How the call ended.
    pub outcome: CallOutcome,
    /// The upstream that produced the answer.
    pub winner: Option<String>,
    /// More than one upstream was tried.
    pub failed_over: bool,
    /// Every attempt, in order.
    pub attempts: Vec<Attempt>,
    /// Total time until the last byte went to the client.
    pub latency_ms: u64,
    /// Time to the first content byte; `None` for non-streaming calls.
    pub ttft_ms: Option<u64>,
    /// Total input tokens (fresh + cache reads + cache writes).
    pub input_tokens: Option<u64>,
    /// Cache-read input tokens.
    pub cached_input_tokens: Option<u64>,
    /// Cache-write input tokens.
    pub cache_write_tokens: Option<u64>,
    /// Output tokens (reasoning included).
    pub output_tokens: Option<u64>,
    /// Reasoning tokens, when reported.
    pub reasoning_tokens: Option<u64>,
    /// `output × 1000 / (latency − ttft)` for streams.
    pub tokens_per_second: Option<f64>,
    /// What the call cost, in USD micros.
    pub cost_usd_micros: Option<i64>,
    /// Our estimate (usage × effective price of the route).
    pub est_cost_usd_micros: Option<i64>,
    /// What the same usage would have cost without tokenbuddy.
    pub baseline_usd_micros: Option<i64>,
    /// Which baseline.
    pub baseline_kind: Option<BaselineKind>,
    /// `max(0, baseline − cost)`; `None` when either is unknown.
    pub saved_usd_micros: Option<i64>,
    /// The provider's own prompt-cache discount (never a routing saving).
    pub cached_saving_usd_micros: Option<i64>,
    /// Credit a seller settled, in credit micros.
    pub settled_credit_micros: Option<i64>,
    /// Where the cost figure came from.
    pub balance_source: BalanceSource,
    /// A seller token's remaining credit after the call.
    pub remaining_credit_micros: Option<i64>,
    /// Tokens or images.
    pub billing_unit: BillingUnit,
    /// Images generated.
    pub image_count: Option<u32>,
    /// Image size (`1024x1024`).
    pub image_size: Option<String>,
    /// Image quality.
    pub image_quality: Option<String>,
    /// Image output format.
    pub image_format: Option<String>,
    /// A successful answer carried no usage.
    pub usage_missing: bool,
    /// Input > 0, output = 0 and no content.
    pub empty_completion: bool,
    /// No price was found for the model.
    pub unpriced: bool,
    /// `|cost / est − 1|` in parts per million, when both are known.
    pub price_drift_ppm: Option<i64>,
    /// SHA-256 (hex) of the compact JSON of the prompt.
    pub prompt_hash: Option<String>,
}
