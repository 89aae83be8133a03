//! What the HTTP sink sends for one call: [`ExportedCall`], an explicit
//! list of the call record's public fields. It is built field by field
//! from the domain record, so a field added to `CallRecord` later is not
//! exported until someone adds it here on purpose — no prompt, body,
//! prompt hash or secret can leak by accident.

use serde::Serialize;
use tb_billing::record::{BalanceSource, BaselineKind, BillingUnit, CallOutcome, CallRecord};
use tb_domain::{Outcome, Protocol};

/// One exported call record (JSON, snake_case; `null` means unknown).
#[derive(Debug, Serialize)]
pub struct ExportedCall<'a> {
    /// The record's UUIDv7.
    pub id: &'a str,
    /// The request id (`x-tokenbuddy-request-id`).
    pub request_id: &'a str,
    /// Unix milliseconds UTC when the request arrived.
    pub started_at_ms: i64,
    /// `chat`, `responses`, `messages`, `images`, `embeddings`.
    pub endpoint: &'a str,
    /// The protocol the client spoke.
    pub protocol: Protocol,
    /// The protocol the winning upstream was spoken to in, when translated.
    pub upstream_protocol: Option<Protocol>,
    /// The model the client asked for.
    pub requested_model: &'a str,
    /// The model id sent upstream.
    pub model: &'a str,
    /// Whether the client asked for a stream.
    pub stream: bool,
    /// How the call ended.
    pub outcome: CallOutcome,
    /// The upstream that answered.
    pub winner: Option<&'a str>,
    /// More than one upstream was tried.
    pub failed_over: bool,
    /// Every attempt, in order.
    pub attempts: Vec<ExportedAttempt<'a>>,
    /// Total time until the last byte went to the client.
    pub latency_ms: u64,
    /// Time to the first content byte (streams).
    pub ttft_ms: Option<u64>,
    /// Input tokens (fresh + cache reads + cache writes).
    pub input_tokens: Option<u64>,
    /// Cache-read input tokens.
    pub cached_input_tokens: Option<u64>,
    /// Cache-write input tokens.
    pub cache_write_tokens: Option<u64>,
    /// Output tokens (reasoning included).
    pub output_tokens: Option<u64>,
    /// Reasoning tokens.
    pub reasoning_tokens: Option<u64>,
    /// What the call cost, USD micros.
    pub cost_usd_micros: Option<i64>,
    /// Our estimate, USD micros.
    pub est_cost_usd_micros: Option<i64>,
    /// What it would have cost without tokenbuddy, USD micros.
    pub baseline_usd_micros: Option<i64>,
    /// Which baseline.
    pub baseline_kind: Option<BaselineKind>,
    /// `max(0, baseline − cost)`, USD micros.
    pub saved_usd_micros: Option<i64>,
    /// Where the cost figure came from.
    pub balance_source: BalanceSource,
    /// Tokens or images.
    pub billing_unit: BillingUnit,
    /// Images generated.
    pub image_count: Option<u32>,
    /// A successful answer carried no usage.
    pub usage_missing: bool,
    /// No price was found for the model.
    pub unpriced: bool,
    /// The client's trace id (hex), when it sent a valid `traceparent`.
    pub trace_id: Option<String>,
}

/// One upstream attempt of an exported call.
#[derive(Debug, Serialize)]
pub struct ExportedAttempt<'a> {
    /// Upstream id.
    pub upstream: &'a str,
    /// HTTP status, when the upstream answered.
    pub status: Option<u16>,
    /// How the attempt ended.
    pub outcome: Outcome,
    /// Time from sending to the response head (or the failure).
    pub latency_ms: u64,
}

impl<'a> ExportedCall<'a> {
    /// The public fields of `r`.
    pub fn of(r: &'a CallRecord) -> ExportedCall<'a> {
        ExportedCall {
            id: &r.id,
            request_id: &r.request_id,
            started_at_ms: r.started_at_ms,
            endpoint: &r.endpoint,
            protocol: r.protocol,
            upstream_protocol: r.upstream_protocol,
            requested_model: &r.requested_model,
            model: &r.model,
            stream: r.stream,
            outcome: r.outcome,
            winner: r.winner.as_deref(),
            failed_over: r.failed_over,
            attempts: r
                .attempts
                .iter()
                .map(|a| ExportedAttempt {
                    upstream: &a.upstream,
                    status: a.status,
                    outcome: a.outcome,
                    latency_ms: a.latency_ms,
                })
                .collect(),
            latency_ms: r.latency_ms,
            ttft_ms: r.ttft_ms,
            input_tokens: r.input_tokens,
            cached_input_tokens: r.cached_input_tokens,
            cache_write_tokens: r.cache_write_tokens,
            output_tokens: r.output_tokens,
            reasoning_tokens: r.reasoning_tokens,
            cost_usd_micros: r.cost_usd_micros,
            est_cost_usd_micros: r.est_cost_usd_micros,
            baseline_usd_micros: r.baseline_usd_micros,
            baseline_kind: r.baseline_kind,
            saved_usd_micros: r.saved_usd_micros,
            balance_source: r.balance_source,
            billing_unit: r.billing_unit,
            image_count: r.image_count,
            usage_missing: r.usage_missing,
            unpriced: r.unpriced,
            trace_id: r.trace_parent.map(|t| const_hex::encode(t.trace_id)),
        }
    }
}

/// The HTTP sink's body: `{"calls": [...]}`.
#[derive(Serialize)]
pub(crate) struct Batch<'a> {
    pub calls: Vec<ExportedCall<'a>>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use tb_billing::record::Attempt;
    use tb_domain::TraceParent;

    use crate::fixture::record;

    #[test]
    fn only_public_fields_are_exported() {
        let mut r = record();
        r.attempts.push(Attempt {
            upstream: "p1".into(),
            status: Some(200),
            outcome: Outcome::Ok,
            error_class: None,
            latency_ms: 4,
        });
        r.trace_parent =
            TraceParent::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
        let json = serde_json::to_value(ExportedCall::of(&r)).unwrap();
        assert_eq!(json["input_tokens"], 7);
        assert_eq!(json["cost_usd_micros"], 12);
        assert_eq!(json["attempts"][0]["status"], 200);
        assert_eq!(json["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
        let text = json.to_string();
        assert!(!text.contains("deadbeefcafe"), "no prompt hash: {text}");
        assert!(json.get("prompt_hash").is_none());
    }
}
