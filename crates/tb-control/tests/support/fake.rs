//! A fake [`ControlApi`] with canned, realistic documents (the shapes of
//! docs/control-plane.md), a stateful installer and a record of what the
//! HTTP layer passed in. Shared by the integration tests and the
//! `fake_dashboard` example (which serves it for the browser check).
#![allow(dead_code, unreachable_pub)]

use std::sync::Mutex;
use std::time::Duration;

use http::HeaderMap;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tb_control::api::{
    CallFilter, CallRecord, Calls, Credit, DoctorReport, InstallChanged, InstallPreview,
    InstallRequest, InstallStatus, PendingPurchases, Prewarm, ProbeReload, ProviderMode,
    ProviderModeUpdate, SellerAudit, Sellers, Series, SeriesRequest, Status, Trust, UndoRequest,
    Upstreams, Usage, UsageBy,
};
use tb_control::{ApiError, ControlApi, Fut};

/// A canned document as its API type: the canned documents are realistic
/// JSON, and a field the types do not know (or lack) fails the tests here.
pub fn typed<T: DeserializeOwned>(doc: Value) -> T {
    match serde_json::from_value(doc.clone()) {
        Ok(v) => v,
        Err(e) => panic!("canned document does not match its type: {e}\n{doc:#}"),
    }
}

/// What the fake saw.
#[derive(Debug, Default, Clone)]
pub struct Seen {
    /// `(limit, before)` of every `calls`.
    pub calls: Vec<(u32, Option<String>)>,
    /// The filter of every `calls`.
    pub call_filters: Vec<CallFilter>,
    /// Every `series` request.
    pub series: Vec<SeriesRequest>,
    /// `(since, by)` of every `usage`.
    pub usage: Vec<(String, UsageBy)>,
    /// `since` of every `sellers` and `seller_audit`.
    pub sellers: Vec<String>,
    /// `(method name, body)` of every mutating call.
    pub bodies: Vec<(&'static str, Value)>,
    /// How many times `doctor` ran.
    pub doctor_runs: u32,
}

struct State {
    seen: Seen,
    mode: ProviderMode,
    /// `(id, name, detected, configured)`.
    clients: Vec<(String, String, bool, bool)>,
}

/// The fake daemon.
pub struct FakeApi {
    /// The access token `authorized` accepts.
    pub token: String,
    /// How long `doctor` takes (to test draining on shutdown).
    pub doctor_delay: Duration,
    /// Whether `credit` and `prewarm` answer `null` (manual mode).
    pub manual_mode: bool,
    state: Mutex<State>,
}

/// "Now" for the canned documents: 2024-05-07 12:00:00 UTC.
pub const NOW_MS: i64 = 1_715_083_200_000;

impl FakeApi {
    /// A fake accepting `token`.
    pub fn new(token: &str) -> FakeApi {
        FakeApi {
            token: token.to_string(),
            doctor_delay: Duration::ZERO,
            manual_mode: false,
            state: Mutex::new(State {
                seen: Seen::default(),
                mode: typed(json!({
                    "mode": "both",
                    "auto": {"enabled": true, "range": "recommended", "seller_ids": [], "selected_seller": null, "payment_method": "mock"}
                })),
                clients: vec![
                    ("claude-code".into(), "Claude Code".into(), true, false),
                    ("codex".into(), "Codex CLI".into(), true, false),
                    ("openclaw".into(), "OpenClaw".into(), false, false),
                ],
            }),
        }
    }

    /// A copy of what the fake saw so far.
    pub fn seen(&self) -> Seen {
        self.lock().seen.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        match self.state.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// Every canned call record, newest first.
    pub fn all_calls() -> Vec<Value> {
        let attempt = |up: &str,
                       status: Option<u16>,
                       outcome: &str,
                       class: Option<&str>,
                       ms: u64| {
            json!({"upstream": up, "status": status, "outcome": outcome, "error_class": class, "latency_ms": ms})
        };
        let call = |i: i64,
                    model: &str,
                    attempts: Vec<Value>,
                    cost: Option<i64>,
                    saved: Option<i64>,
                    outcome: &str,
                    flags: (bool, bool, bool)| {
            let ok = outcome == "ok";
            let mut record = json!({
                "id": format!("0190-{i:04}"), "request_id": format!("req-{i}"),
                "started_at_ms": NOW_MS - i * 60_000,
                "endpoint": "chat", "protocol": "chat_completions",
                "requested_model": model, "model": model, "stream": true,
                "ok": ok, "outcome": outcome,
                "winner": if ok { attempts.last().map(|a| a["upstream"].clone()) } else { None },
                "failed_over": attempts.len() > 1, "attempts": attempts,
                "latency_ms": 400 + i as u64, "ttft_ms": 120,
                "input_tokens": 100, "cached_input_tokens": 0, "cache_write_tokens": 0,
                "output_tokens": 20, "reasoning_tokens": null, "tokens_per_second": 50.0,
                "cost_usd_micros": cost, "est_cost_usd_micros": cost, "baseline_usd_micros": null,
                "baseline_kind": "official", "saved_usd_micros": saved, "cached_saving_usd_micros": 0,
                "settled_credit_micros": null, "balance_source": "seller_authoritative",
                "remaining_credit_micros": null, "billing_unit": "tokens",
                "image_count": null, "image_size": null, "image_quality": null, "image_format": null,
                "usage_missing": flags.0, "empty_completion": flags.1, "unpriced": flags.2,
                "price_drift_ppm": null, "prompt_hash": null
            });
            // Added apart: one `json!` of every field passes the macro's
            // recursion limit.
            for key in [
                "image_cost_per_image_usd_micros",
                "image_output_tokens",
                "image_output_cost_usd_micros",
            ] {
                record[key] = Value::Null;
            }
            record["cache_write_1h_tokens"] = Value::Null;
            record["price_tier"] = if ok {
                json!("priority+above_200k")
            } else {
                Value::Null
            };
            record
        };
        vec![
            call(
                1,
                "deepseek-chat",
                vec![
                    attempt("s-bad", Some(503), "server_error", Some("server_error"), 30),
                    attempt("s-good", Some(200), "ok", None, 300),
                ],
                Some(363),
                Some(100),
                "ok",
                (false, false, false),
            ),
            call(
                2,
                "mystery-model",
                vec![attempt("s-good", Some(200), "ok", None, 250)],
                None,
                None,
                "ok",
                (true, false, true),
            ),
            call(
                3,
                "deepseek-chat",
                vec![attempt(
                    "s-bad",
                    None,
                    "connect_failed",
                    Some("connect_failed"),
                    5,
                )],
                None,
                None,
                "failed",
                (false, false, false),
            ),
            // Hostile text: must show up as text, never as markup.
            call(
                4,
                "<img src=x onerror=\"window.__xss=1\">",
                vec![attempt("s-good", Some(200), "ok", None, 200)],
                Some(2178),
                Some(400),
                "ok",
                (false, true, false),
            ),
        ]
    }

    /// The canned `/v1/usage?by=day` document (totals: 7 calls, $0.002541
    /// spent, $0.000500 saved).
    pub fn usage_doc(by: &str) -> Value {
        let row = |key: &str, calls: u64, cost: i64, saved: i64, unpriced: u64| {
            json!({"key": key, "calls": calls, "ok_calls": calls, "input_tokens": calls * 100, "cached_input_tokens": 0,
                   "output_tokens": calls * 20, "cost_usd_micros": cost, "saved_usd_micros": saved, "unpriced_calls": unpriced})
        };
        json!({
            "since_ms": NOW_MS - 7 * 86_400_000, "by": by,
            "rows": [row("2024-05-05", 2, 800, 100, 0), row("2024-05-06", 1, 0, 0, 1), row("2024-05-07", 4, 1741, 400, 0)],
            "totals": {"calls": 7, "cost_usd_micros": 2541, "saved_usd_micros": 500, "unpriced_calls": 1}
        })
    }

    /// The canned `/v1/series`: two upstreams over two hours, one of them
    /// failing over to the other.
    pub fn series_doc(bucket: &str) -> Value {
        let h = 3_600_000;
        let t0 = NOW_MS - NOW_MS % h - h;
        let spend = |at: i64, calls: u64, cost: i64, saved: i64| {
            json!({"bucket_start_ms": at, "calls": calls, "ok_calls": calls, "failed_over_calls": 1,
                   "input_tokens": calls * 100, "output_tokens": calls * 20,
                   "cost_usd_micros": cost, "saved_usd_micros": saved, "unpriced_calls": 0})
        };
        let point = |at: i64, attempts: u64, ok: u64, failovers: u64, p50: Option<u64>| {
            json!({"bucket_start_ms": at, "attempts": attempts, "ok_attempts": ok, "failovers": failovers,
                   "success_ppm": ok * 1_000_000 / attempts, "failover_ppm": failovers * 1_000_000 / attempts,
                   "calls_answered": ok, "latency_p50_ms": p50, "latency_p95_ms": p50.map(|v| v * 2),
                   "ttft_p50_ms": p50.map(|v| v / 4), "ttft_p95_ms": p50.map(|v| v / 2),
                   "tokens_per_second_p50": p50.map(|_| 42.5)})
        };
        json!({
            "since_ms": NOW_MS - 86_400_000, "bucket": bucket, "bucket_ms": h,
            "spend": [spend(t0, 3, 900, 300), spend(t0 + h, 4, 1641, 200)],
            "upstreams": [
                {"upstream": "s-bad", "points": [point(t0, 2, 0, 2, None), point(t0 + h, 1, 0, 1, None)]},
                {"upstream": "s-good", "points": [point(t0, 3, 3, 0, Some(180)), point(t0 + h, 4, 4, 0, Some(240))]}
            ],
            "truncated": false
        })
    }

    /// The canned `/v1/status`.
    pub fn status_doc() -> Value {
        json!({
            "version": "0.1.0", "uptime_s": 3725, "mode": "both",
            "proxy_url": "http://127.0.0.1:7878", "control_url": "http://127.0.0.1:7879",
            "upstreams": {"total": 3, "manual": 1, "sellers": 2, "open_circuits": 1},
            "registry": {"url": "http://127.0.0.1:9/registry", "version": "42", "sellers": 2, "stale": false, "age_ms": 1200, "last_error": null},
            "ledger": {"backend": "sqlite", "dropped": 0, "pending": 0, "failed_writes": 0, "error": null, "failing_for_ms": null},
            "connections": {"open": 2, "refused": 0, "max": 1024},
            "budget": {"session_usd_micros": 5_000_000, "spent_usd_micros": 2541, "left_usd_micros": 4_997_459},
            "export": [{"sink": "http", "target": "https://collector.example/calls", "state": "failing",
                        "queue_depth": 12, "queue_capacity": 10_000, "sent": 40, "failed_posts": 3, "dropped": 0,
                        "rejected": 0, "last_success_at_ms": NOW_MS - 60_000,
                        "last_error": "https://collector.example/calls answered HTTP 503 Service Unavailable"}],
            "team": {"key_source": "TB_TEAM_KEY", "lease_ms": 90_000, "pg_round_trips": 14,
                     "budget": {"budget_usd_micros": 50_000_000, "spent_usd_micros": 12_000_000,
                                "reserved_usd_micros": 1_000_000, "left_usd_micros": 37_000_000,
                                "live_leases": 1, "members_with_limits": 2},
                     "budget_error": null}
        })
    }

    /// The canned `/v1/upstreams`.
    pub fn upstreams_doc() -> Value {
        let up = |id: &str,
                  kind: &str,
                  circuit: &str,
                  status: &str,
                  health: u8,
                  total: f64,
                  missing: Vec<&str>| {
            json!({
                "id": id, "kind": kind, "base_url": format!("http://127.0.0.1:9/{id}"), "circuit": circuit,
                "upstream_status": status, "health_score": health, "benched_until_ms": null,
                "ttft_ms": 120.0, "avg_latency_ms": 400.0, "tokens_per_second": 50.0,
                "consecutive_failures": if circuit == "open" { 5 } else { 0 },
                "last_error_class": if circuit == "open" { Some("server_error") } else { None },
                "discount_ppm": 200_000,
                "own_prices": if kind == "seller" { 2 } else { 0 },
                "score": {"scorer": "balanced", "effective_ttft_ms": 120, "price_usd_micros_per_1m": 2_000_000, "latency": 88.0, "throughput": 50.0, "discount": 20.0, "health": f64::from(health), "total": total, "missing_inputs": missing}
            })
        };
        json!({"scorer": "balanced", "upstreams": [
            up("s-good", "seller", "closed", "healthy", 98, 71.25, vec![]),
            up("s-bad", "seller", "open", "unhealthy", 12, 20.5, vec!["tokens_per_second"]),
            up("openai", "manual", "half_open", "degraded", 60, 55.0, vec!["discount_ratio"]),
        ]})
    }

    /// The canned `/v1/sellers`.
    pub fn sellers_doc() -> Value {
        json!({"since_ms": NOW_MS - 7 * 86_400_000, "sellers": [
            {"seller_id": "s-bad", "calls": 4, "attempts": 5, "failed_attempts": 1, "failure_share_ppm": 200_000,
             "won": 3, "settled_calls": 3, "settled_usd_micros": 30_000, "estimated_usd_micros": 300,
             "median_drift_ppm": 99_000_000, "wasted_credit_micros": 0, "last_call_ms": NOW_MS - 60_000,
             "last_purchase_ms": NOW_MS - 3_600_000},
            {"seller_id": "s-good", "calls": 2, "attempts": 2, "failed_attempts": 0, "failure_share_ppm": 0,
             "won": 2, "settled_calls": 2, "settled_usd_micros": 2541, "estimated_usd_micros": 2500,
             "median_drift_ppm": 16_400, "wasted_credit_micros": 1200, "last_call_ms": NOW_MS - 5_000,
             "last_purchase_ms": null}
        ]})
    }

    /// The canned `/v1/sellers/audit`.
    pub fn seller_audit_doc() -> Value {
        json!({"since_ms": NOW_MS - 7 * 86_400_000, "sellers_checked": 2, "drift_limit_ppm": 200_000, "flagged": [
            {"seller_id": "s-bad", "kind": "times_100", "message": "settles about 100× the estimate",
             "median_ratio_ppm": 100_000_000, "median_drift_ppm": 99_000_000, "settled_calls": 3, "evidence_calls": 3,
             "calls": [{"call_id": "0190-c", "started_at_ms": NOW_MS - 60_000, "model": "deepseek-chat",
                        "settled_usd_micros": 10_000, "estimated_usd_micros": 100, "drift_ppm": 99_000_000}]}
        ]})
    }

    /// The canned `/v1/credit`.
    pub fn credit_doc() -> Value {
        let seller = |id: &str, bought: i64, spent: i64| {
            json!({"seller_id": id, "purchases": 2, "failed_purchases": if id == "s-bad" { 1 } else { 0 },
                   "credit_bought_micros": bought, "usd_paid_micros": bought, "credit_spent_micros": spent,
                   "credit_remaining_micros": bought - spent, "credit_wasted_micros": 0})
        };
        json!({
            "sellers": [seller("s-good", 1_000_000, 2541), seller("s-bad", 500_000, 0)],
            "totals": {"purchases": 4, "failed_purchases": 1, "credit_bought_micros": 1_500_000, "usd_paid_micros": 1_500_000,
                       "credit_spent_micros": 2541, "credit_remaining_micros": 1_497_459, "credit_wasted_micros": 0},
            "budget_usd_micros": 5_000_000, "budget_left_usd_micros": 3_500_000
        })
    }

    /// The canned `/v1/purchases/pending`.
    pub fn pending_doc() -> Value {
        json!({"payments": [{
            "purchase_id": "p-1", "seller_id": "s-claw", "model": "deepseek-chat",
            "payment_method": "clawtip", "quote_id": "q-1", "credit_micros": 1_000_000,
            "price_usd_micros": 1_000_000, "created_at_ms": NOW_MS, "expires_at_ms": NOW_MS + 600_000,
            "pay_url": "http://127.0.0.1:9/pay/q-1", "qr_payload": "http://127.0.0.1:9/pay/q-1",
            "qr_svg": "<svg xmlns=\"http://www.w3.org/2000/svg\"></svg>",
            "qr_modules": ["101", "010", "101"], "recharge_qr_url": null
        }], "recharges": [{
            "seller_id": "s-claw", "payment_method": "clawtip", "balance_micros": 150_000,
            "credit_micros": 1_000_000, "recharge_url": "http://127.0.0.1:9/recharge",
            "qr_svg": "<svg xmlns=\"http://www.w3.org/2000/svg\"></svg>", "qr_modules": ["11", "01"]
        }]})
    }

    /// The canned `/v1/doctor`.
    pub fn doctor_doc() -> Value {
        json!({"ok": false, "checks": [
            {"name": "config", "verdict": "pass", "detail": "config valid", "hint": ""},
            {"name": "registry", "verdict": "warn", "detail": "registry answered 2 s ago", "hint": ""},
            {"name": "upstream s-bad", "verdict": "fail", "detail": "circuit open after 5 failures", "hint": "check the seller's status page"}
        ]})
    }

    /// The canned metrics text.
    pub fn trust_doc() -> Value {
        json!({"expiry_secs": 604800, "overcount_threshold": 25, "entries": [{
            "upstream_id": "cheap", "model": "gpt-4o", "probed_at_ms": 1_700_000_000_000_i64,
            "expired": false, "demoted_for_tools": "tool call failed",
            "demoted_for_all": "prompt tokens +30 %",
            "checks": [
                {"check": "tool_call", "verdict": "fail", "measured": null},
                {"check": "prompt_tokens", "verdict": "fail", "measured": 30},
            ],
        }]})
    }

    pub fn metrics_text() -> String {
        "# HELP tb_requests_total Requests.\n# TYPE tb_requests_total counter\ntb_requests_total{endpoint=\"chat\",model=\"deepseek-chat\",outcome=\"ok\"} 7\n".to_string()
    }

    fn install_doc(&self) -> InstallStatus {
        let st = self.lock();
        typed(json!({
            "clients": st.clients.iter().map(|(id, name, detected, configured)| json!({
                "id": id, "name": name, "detected": detected, "configured": configured,
                "paths": [format!("/home/user/.{id}/config")]
            })).collect::<Vec<_>>(),
            "instructions": [{"client": "cursor", "name": "Cursor", "text": "Set the base URL to http://127.0.0.1:7878/v1"}]
        }))
    }

    /// Applies (`configured = true`) or undoes an install for the listed
    /// clients (all detected ones when `clients` is absent).
    fn set_configured(
        &self,
        method: &'static str,
        body: Value,
        clients: Vec<String>,
        configured: bool,
    ) -> Result<InstallChanged, ApiError> {
        let mut st = self.lock();
        st.seen.bodies.push((method, body));
        let wanted = (!clients.is_empty()).then_some(clients);
        if let Some(ids) = &wanted
            && let Some(unknown) = ids
                .iter()
                .find(|id| !st.clients.iter().any(|c| &c.0 == *id))
        {
            return Err(ApiError::new(
                404,
                "unknown_client",
                format!("no client {unknown:?}"),
            ));
        }
        let mut changed = Vec::new();
        for c in st.clients.iter_mut() {
            let selected = wanted.as_ref().map_or(c.2, |ids| ids.contains(&c.0));
            if selected && c.3 != configured {
                c.3 = configured;
                changed.push(json!({"client": c.0, "path": format!("/home/user/.{}/config", c.0),
                    "description": if configured { "added provider tokenbuddy" } else { "restored the pristine copy" },
                    "action": if configured { "updated" } else { "deleted" }}));
            }
        }
        Ok(typed(json!({"changed": changed})))
    }
}

impl ControlApi for FakeApi {
    fn status(&self) -> Fut<'_, Status> {
        Box::pin(async { typed(FakeApi::status_doc()) })
    }

    fn upstreams(&self) -> Upstreams {
        typed(FakeApi::upstreams_doc())
    }

    fn prewarm(&self) -> Prewarm {
        if self.manual_mode {
            return None;
        }
        typed(json!({
            "now_ms": NOW_MS,
            "focus": ["deepseek-chat"],
            "entries": [{"key": {"model": "deepseek-chat", "protocol": "chat_completions", "payment": "mock"},
                         "entry": {"state": "warm", "candidates": [{"upstream_id": "s-good", "latency_ms": 80, "ok": true}],
                                   "warmed_at_ms": NOW_MS - 5_000, "ttl_ms": 300_000, "consecutive_warming_failures": 0,
                                   "next_attempt_at_ms": null, "warming_started_at_ms": null}}],
            "stats": {"sweeps_run": 3, "lazy_warmups_run": 0, "probes_sent": 6, "probes_failed": 1, "last_sweep_at_ms": NOW_MS - 5_000},
            "pool": {"upstreams": 3, "sellers": 2, "closed": 2, "open": 1, "half_open": 0, "capacity_blocked": 0},
            "credit": FakeApi::credit_doc()
        }))
    }

    fn credit(&self) -> Credit {
        if self.manual_mode {
            return None;
        }
        typed(FakeApi::credit_doc())
    }

    fn pending_purchases(&self) -> PendingPurchases {
        if self.manual_mode {
            return PendingPurchases {
                payments: vec![],
                recharges: vec![],
            };
        }
        typed(FakeApi::pending_doc())
    }

    fn calls(
        &self,
        limit: u32,
        before: Option<String>,
        filter: CallFilter,
    ) -> Fut<'_, Result<Calls, ApiError>> {
        Box::pin(async move {
            self.lock().seen.calls.push((limit, before.clone()));
            self.lock().seen.call_filters.push(filter.clone());
            let all: Vec<Value> = FakeApi::all_calls()
                .into_iter()
                .filter(|c| {
                    let r: CallRecord = typed(c.clone());
                    filter.matches(
                        &r.model,
                        r.winner.as_deref(),
                        r.protocol,
                        r.outcome,
                        r.member.as_deref(),
                    )
                })
                .collect();
            let start = match &before {
                None => 0,
                Some(cursor) => match all.iter().position(|c| {
                    format!(
                        "{}:{}",
                        c["started_at_ms"],
                        c["id"].as_str().unwrap_or_default()
                    ) == *cursor
                }) {
                    Some(i) => i + 1,
                    None => return Err(ApiError::bad_request("unknown cursor")),
                },
            };
            let page: Vec<Value> = all
                .iter()
                .skip(start)
                .take(limit as usize)
                .cloned()
                .collect();
            let next_before = (start + page.len() < all.len())
                .then(|| {
                    page.last().map(|c| {
                        format!(
                            "{}:{}",
                            c["started_at_ms"],
                            c["id"].as_str().unwrap_or_default()
                        )
                    })
                })
                .flatten();
            Ok(typed(json!({"calls": page, "next_before": next_before})))
        })
    }

    fn call(&self, id: String) -> Fut<'_, Result<CallRecord, ApiError>> {
        Box::pin(async move {
            FakeApi::all_calls()
                .into_iter()
                .find(|c| c["id"] == id.as_str())
                .map(typed)
                .ok_or_else(|| ApiError::new(404, "call_not_found", format!("no call {id}")))
        })
    }

    fn series(&self, request: SeriesRequest) -> Fut<'_, Result<Series, ApiError>> {
        Box::pin(async move {
            self.lock().seen.series.push(request.clone());
            if request.since == "never" {
                return Err(ApiError::bad_request(
                    "since: expected 30m, 12h, 7d or an RFC 3339 time",
                ));
            }
            Ok(typed(FakeApi::series_doc(request.bucket.as_str())))
        })
    }

    fn usage(&self, since: String, by: UsageBy) -> Fut<'_, Result<Usage, ApiError>> {
        Box::pin(async move {
            self.lock().seen.usage.push((since.clone(), by));
            if since == "never" {
                return Err(ApiError::bad_request(
                    "since: expected 30m, 12h, 7d or an RFC 3339 time",
                ));
            }
            Ok(typed(FakeApi::usage_doc(by.as_str())))
        })
    }

    fn sellers(&self, since: String) -> Fut<'_, Result<Sellers, ApiError>> {
        Box::pin(async move {
            self.lock().seen.sellers.push(since.clone());
            Ok(typed(FakeApi::sellers_doc()))
        })
    }

    fn seller_audit(&self, since: String) -> Fut<'_, Result<SellerAudit, ApiError>> {
        Box::pin(async move {
            self.lock().seen.sellers.push(since.clone());
            Ok(typed(FakeApi::seller_audit_doc()))
        })
    }

    fn provider_mode(&self) -> ProviderMode {
        self.lock().mode.clone()
    }

    fn set_provider_mode(
        &self,
        body: ProviderModeUpdate,
    ) -> Fut<'_, Result<ProviderMode, ApiError>> {
        Box::pin(async move {
            let mut st = self.lock();
            st.seen.bodies.push(("set_provider_mode", json!(body)));
            st.mode.mode = body.mode;
            Ok(st.mode.clone())
        })
    }

    fn install_status(&self) -> Fut<'_, Result<InstallStatus, ApiError>> {
        Box::pin(async move { Ok(self.install_doc()) })
    }

    fn install_preview(&self, body: InstallRequest) -> Fut<'_, Result<InstallPreview, ApiError>> {
        Box::pin(async move {
            self.lock()
                .seen
                .bodies
                .push(("install_preview", json!(body)));
            Ok(typed(
                json!({"changes": [{"client": "codex", "path": "/home/user/.codex/config.toml", "description": "add provider tokenbuddy"}],
                      "diff": "+model_provider = \"tokenbuddy\"\n+experimental_bearer_token = \"<redacted>\"\n"}),
            ))
        })
    }

    fn install_apply(&self, body: InstallRequest) -> Fut<'_, Result<InstallChanged, ApiError>> {
        Box::pin(
            async move { self.set_configured("install_apply", json!(body), body.clients, true) },
        )
    }

    fn install_undo(&self, body: UndoRequest) -> Fut<'_, Result<InstallChanged, ApiError>> {
        Box::pin(
            async move { self.set_configured("install_undo", json!(body), body.clients, false) },
        )
    }

    fn doctor(&self) -> Fut<'_, DoctorReport> {
        Box::pin(async move {
            if !self.doctor_delay.is_zero() {
                tokio::time::sleep(self.doctor_delay).await;
            }
            self.lock().seen.doctor_runs += 1;
            typed(FakeApi::doctor_doc())
        })
    }

    fn trust(&self) -> Trust {
        typed(FakeApi::trust_doc())
    }

    fn reload_probes(&self) -> Fut<'_, Result<ProbeReload, ApiError>> {
        Box::pin(async move {
            self.lock().seen.bodies.push(("reload_probes", json!({})));
            Ok(ProbeReload { entries: 1 })
        })
    }

    fn metrics(&self) -> String {
        FakeApi::metrics_text()
    }

    fn authorized(&self, headers: &HeaderMap) -> bool {
        let bearer = headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        let key = headers.get("x-api-key").and_then(|v| v.to_str().ok());
        bearer.or(key) == Some(self.token.as_str())
    }
}
