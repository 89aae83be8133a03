//! A call record for the unit tests: a successful chat call with usage,
//! a cost and a prompt hash, no attempts.

use tb_billing::record::CallRecord;

pub(crate) fn record() -> CallRecord {
    serde_json::from_value(serde_json::json!({
        "id": "c-1", "request_id": "r-1", "started_at_ms": 1_000, "endpoint": "chat",
        "protocol": "chat_completions", "requested_model": "m", "model": "m",
        "stream": false, "ok": true, "outcome": "ok", "winner": "p1", "failed_over": false,
        "attempts": [], "latency_ms": 5, "ttft_ms": null, "input_tokens": 7,
        "cached_input_tokens": null, "cache_write_tokens": null, "output_tokens": 3,
        "reasoning_tokens": null, "tokens_per_second": null, "cost_usd_micros": 12,
        "est_cost_usd_micros": 12, "baseline_usd_micros": null, "baseline_kind": null,
        "saved_usd_micros": null, "cached_saving_usd_micros": null,
        "settled_credit_micros": null, "balance_source": "self_funded_provider",
        "remaining_credit_micros": null, "billing_unit": "tokens", "image_count": null,
        "image_size": null, "image_quality": null, "image_format": null,
        "usage_missing": false, "empty_completion": false, "unpriced": false,
        "price_drift_ppm": null, "prompt_hash": "deadbeefcafe"
    }))
    .unwrap_or_else(|e| panic!("the fixture is a call record: {e}"))
}
