//! The request path, top to bottom: receive → authenticate → read and probe
//! the body → resolve the model → plan routes → attempt loop → stream back.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use futures_util::FutureExt as _;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use tb_domain::{ApiFamily, Protocol, ProviderKind};
use tb_http::error_chain;
use tracing::Instrument;

use crate::body::{BodyEdits, edit_body, full, probe, read_limited};
use crate::call::{CallStart, CallTracker, unix_ms_now};
use crate::error::{ErrorCode, ProxyError};
use crate::headers::{client_response_headers, upstream_request_headers};
use crate::hold::{Buffered, Held as HeldStream, buffer_json, hold_stream};
use crate::plan::Route;
use crate::stream::{Ending, Finish, OnBreak, PassThrough, Tap};
use crate::tap::ResponseTap;
use crate::upstream::Upstream;
use crate::{ProxyBody, ProxyState};
use tb_billing::record::{Attempt, CallOutcome};
use tb_billing::settlement::{self, SETTLEMENT_HEADER, Settlement};
use tb_billing::usage::RequestFacts;
use tb_billing::usage::{self, UsageReport};
use tb_routing::{Action, AttemptState, BodyHint, FinalChoice, Outcome, TransportFailure};
use tb_seller::{CreditBroker, Lease, SellerRef, is_insufficient_funds};

const REQUEST_ID: HeaderName = HeaderName::from_static("x-tokenbuddy-request-id");
const UPSTREAM: HeaderName = HeaderName::from_static("x-tokenbuddy-upstream");
const ATTEMPTS: HeaderName = HeaderName::from_static("x-tokenbuddy-attempts");
const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");
const ANTHROPIC_VERSION: HeaderName = HeaderName::from_static("anthropic-version");
const DEADLINE_MS: HeaderName = HeaderName::from_static("x-tokenbuddy-deadline-ms");
const OVERHEAD: HeaderName = HeaderName::from_static("x-tokenbuddy-overhead-us");

/// Entry point for every request on the proxy plane. Never fails: every
/// error becomes a protocol-shaped response.
pub(crate) async fn handle(state: Arc<ProxyState>, req: Request<Incoming>) -> Response<ProxyBody> {
    let started = Instant::now();
    let started_at_ms = unix_ms_now();
    let request_id = request_id(req.headers());
    let span = tracing::info_span!("request", request_id = %request_id, method = %req.method(), path = %req.uri().path());
    let family = ApiFamily::for_path(req.uri().path());
    async move {
        // A bug must cost one request, not the connection or the daemon:
        // the panic is caught, logged and answered with a 500.
        let outcome = AssertUnwindSafe(dispatch(&state, req, family, &request_id, (started, started_at_ms)))
            .catch_unwind()
            .await;
        let mut resp = outcome.unwrap_or_else(|panic| {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a non-string panic".to_owned());
            tracing::error!(target: "proxy.panic", panic = %what, "a bug in tokenbuddy aborted this request; the daemon keeps serving");
            ProxyError::new(
                ErrorCode::Internal,
                format!("tokenbuddy hit an internal error and did not complete request {request_id}; retry it, and if it persists report the `proxy.panic` entry of the daemon log"),
            )
            .response(family)
        });
        if let Ok(v) = HeaderValue::from_str(&request_id) {
            resp.headers_mut().insert(REQUEST_ID, v);
        }
        tracing::info!(
            target: "request.completed",
            status = resp.status().as_u16(),
            upstream = resp.headers().get(UPSTREAM).and_then(|v| v.to_str().ok()).unwrap_or("-"),
            head_ms = started.elapsed().as_millis() as u64,
            "request answered"
        );
        resp
    }
    .instrument(span)
    .await
}

/// Test-only fault injection, compiled into debug builds only and armed
/// only when the daemon starts with `TB_TEST_FAULTS=1`: the model
/// `tokenbuddy-test-panic` panics inside the request, so the end-to-end
/// suite can prove a panic costs one request, not the daemon.
fn fault_hook(model: &str) {
    #[cfg(debug_assertions)]
    {
        static ARMED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        if model == "tokenbuddy-test-panic"
            && *ARMED.get_or_init(|| std::env::var_os("TB_TEST_FAULTS").is_some_and(|v| v == "1"))
        {
            panic!("injected fault: tokenbuddy-test-panic");
        }
    }
    #[cfg(not(debug_assertions))]
    let _ = model;
}

/// The client's `X-Request-Id` when it is sane, else a new UUIDv7.
fn request_id(headers: &HeaderMap) -> String {
    headers
        .get(X_REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_string)
        .unwrap_or_else(|| uuid::Uuid::now_v7().to_string())
}

async fn dispatch(
    state: &ProxyState,
    req: Request<Incoming>,
    family: ApiFamily,
    request_id: &str,
    started: (Instant, i64),
) -> Response<ProxyBody> {
    let path = req.uri().path().to_string();
    let method = req.method().clone();
    let not_allowed = |allow: &'static str| {
        let mut r = ProxyError::new(
            ErrorCode::MethodNotAllowed,
            format!("{method} is not allowed on {path}; use {allow}"),
        )
        .response(family);
        r.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static(allow));
        r
    };

    match path.as_str() {
        "/healthz" if method == Method::GET => return text(StatusCode::OK, "ok"),
        "/managed-settings" if method == Method::GET => {
            return json_response(Bytes::from_static(b"{}"));
        }
        "/healthz" | "/managed-settings" | "/v1/models" if method != Method::GET => {
            return not_allowed("GET");
        }
        _ => {}
    }
    let protocol = Protocol::from_path(&path);
    if protocol.is_some() && method != Method::POST {
        return not_allowed("POST");
    }
    if protocol.is_none() && path != "/v1/models" {
        return ProxyError::new(
            ErrorCode::UnknownRoute,
            format!("no endpoint {method} {path}; tokenbuddy serves POST /v1/chat/completions, /v1/responses, /v1/messages, /v1/images/generations and GET /v1/models"),
        )
        .response(family);
    }
    if !state.authorized(req.headers()) {
        return ProxyError::new(
            ErrorCode::InvalidAccessToken,
            format!(
                "missing or wrong access token: send the token stored in {} as `Authorization: Bearer <token>` or `x-api-key: <token>`",
                state.token_path.display()
            ),
        )
        .response(family);
    }
    match protocol {
        None => json_response(state.table.load().models_body.clone()),
        Some(protocol) => match proxy_call(state, req, protocol, request_id, started).await {
            Ok(resp) => resp,
            Err(err) => err.response(family),
        },
    }
}

fn text(status: StatusCode, body: &'static str) -> Response<ProxyBody> {
    let mut r = Response::new(full(Bytes::from_static(body.as_bytes())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

fn json_response(body: Bytes) -> Response<ProxyBody> {
    let mut r = Response::new(full(body));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

/// How one attempt ended, for the `x-tokenbuddy-attempts` header and the
/// final error message.
struct AttemptRecord {
    upstream: String,
    /// The upstream's base URL, for error messages (holds no secret).
    location: String,
    status: Option<u16>,
    outcome: Outcome,
    detail: String,
    latency_ms: u64,
}

impl AttemptRecord {
    fn answered(
        upstream: &Upstream,
        status: u16,
        outcome: Outcome,
        latency_ms: u64,
    ) -> AttemptRecord {
        AttemptRecord {
            upstream: upstream.id.to_string(),
            location: upstream.base_url().to_string(),
            status: Some(status),
            outcome,
            detail: format!("HTTP {status}"),
            latency_ms,
        }
    }

    fn failed(
        upstream: &Upstream,
        outcome: Outcome,
        detail: String,
        latency_ms: u64,
    ) -> AttemptRecord {
        AttemptRecord {
            upstream: upstream.id.to_string(),
            location: upstream.base_url().to_string(),
            status: None,
            outcome,
            detail,
            latency_ms,
        }
    }

    /// The ledger's form of the attempt.
    fn to_attempt(&self) -> Attempt {
        Attempt {
            upstream: self.upstream.clone(),
            status: self.status,
            outcome: self.outcome.as_str().to_string(),
            error_class: (self.outcome != Outcome::Ok).then(|| self.outcome.as_str().to_string()),
            latency_ms: self.latency_ms,
        }
    }

    fn header_part(&self) -> String {
        match self.status {
            Some(s) => format!("{}:{s}|{}", self.upstream, self.outcome.as_str()),
            None => format!("{}:-|{}", self.upstream, self.outcome.as_str()),
        }
    }
}

async fn proxy_call(
    state: &ProxyState,
    req: Request<Incoming>,
    protocol: Protocol,
    request_id: &str,
    started: (Instant, i64),
) -> Result<Response<ProxyBody>, ProxyError> {
    let (parts, body) = req.into_parts();
    let content_length = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let bytes = read_limited(body, content_length, state.settings.max_body_bytes).await?;
    let probe = probe(&bytes, protocol)
        .map_err(|e| crate::call::reject(&state.recorder, e, protocol, request_id, started))?;
    fault_hook(&probe.model);
    if let Some(problem) = state.auto_mode_problem() {
        return Err(ProxyError::new(ErrorCode::NoRoute, problem));
    }

    let plan = state.plan(&probe.model, protocol);
    tracing::info!(
        target: "route.decision",
        model = %probe.model,
        upstream_model = %plan.model,
        protocol = %protocol,
        stream = probe.stream,
        candidates = ?plan.routes.iter().map(|r| r.upstream.id.as_str()).collect::<Vec<_>>(),
        "planned"
    );
    // A cold or stale marketplace key is warmed in the background; this
    // request never waits for it.
    if let (Some(prewarm), Some(key)) = (
        state.prewarm.get(),
        crate::warm::key_for(state, &plan.model, protocol),
    ) && plan
        .routes
        .iter()
        .any(|r| r.upstream.seller_url().is_some())
    {
        prewarm.request_warmup(key);
    }
    if plan.routes.is_empty() {
        return Err(ProxyError::new(
            ErrorCode::ModelNotFound,
            plan.not_found_message(&probe.model, protocol),
        ));
    }
    // Chat streams carry usage only when asked: ask for it, and strip the
    // extra chunk again on the way back (billing.md).
    let add_usage = protocol == Protocol::ChatCompletions && probe.stream && !probe.usage_requested;
    let edits = BodyEdits {
        model: (plan.model != probe.model).then_some(plan.model.as_str()),
        include_usage: add_usage,
    };
    let body = if edits.is_empty() {
        bytes.clone()
    } else {
        edit_body(&bytes, edits).map_err(|e| {
            ProxyError::new(
                ErrorCode::InvalidJson,
                format!("the request body is not valid JSON: {e}"),
            )
        })?
    };

    let mut call = CallTracker::new(
        Arc::clone(&state.recorder),
        CallStart {
            request_id: request_id.to_string(),
            started: started.0,
            started_at_ms: started.1,
            protocol,
            requested_model: probe.model.clone(),
            model: plan.model.clone(),
            stream: probe.stream,
            request_body: bytes.clone(),
            plan: plan
                .routes
                .iter()
                .map(|r| Arc::clone(&r.upstream))
                .collect(),
        },
    );
    let facts = RequestFacts::from_request_json(protocol, &bytes);

    let mut base_headers = upstream_request_headers(&parts.headers);
    if let Ok(v) = HeaderValue::from_str(request_id) {
        base_headers.insert(X_REQUEST_ID, v);
    }
    if !base_headers.contains_key(IDEMPOTENCY_KEY)
        && let Ok(v) = HeaderValue::from_str(&format!("tb-{request_id}"))
    {
        base_headers.insert(IDEMPOTENCY_KEY, v);
    }
    let head_deadline = if probe.stream {
        state.settings.stream_head_deadline
    } else {
        state.settings.request_deadline
    };

    let mut attempts: Vec<AttemptRecord> = Vec::with_capacity(plan.routes.len());
    // Error answers kept for the final response rule (proxy.md, "Errors").
    let mut answers: Vec<Option<KeptAnswer>> = Vec::with_capacity(plan.routes.len());
    let mut i = 0;
    let mut retried_same = false;
    let mut bought_after_dry = false;
    let mut force_new = false;
    let first_route = plan.routes.first().map(|r| r.upstream.id.to_string());
    // Time spent waiting on upstreams (and sellers' purchase endpoints):
    // what remains of the request's time is the daemon's own overhead.
    let mut upstream_wait = std::time::Duration::ZERO;
    while let Some(route) = plan.routes.get(i) {
        let upstream = &route.upstream;
        let id = upstream.id.as_str();
        let routes_left = plan.routes.len() - i - 1;
        let now = unix_ms_now();
        // The planner put benched upstreams last; a half-open one gets its
        // single trial here.
        let _admission = state.router.admit(id, now);
        let buying = Instant::now();
        let bought = match upstream.seller_url() {
            None => Ok(None),
            Some(seller_url) => buy_or_reuse(state, upstream, seller_url, &plan.model, force_new)
                .await
                .map(Some),
        };
        upstream_wait += buying.elapsed();
        let lease = match bought {
            Ok(lease) => lease,
            Err(detail) => {
                tracing::warn!(target: "route.attempt_failed", upstream = %upstream.id, class = "purchase_failed", error = %detail, "no seller token");
                let record = AttemptRecord::failed(upstream, Outcome::PurchaseFailed, detail, 0);
                call.attempt(record.to_attempt());
                attempts.push(record);
                answers.push(None);
                // No credit says nothing about the upstream.
                state.router.neutral(id);
                i += 1;
                retried_same = false;
                bought_after_dry = false;
                force_new = false;
                continue;
            }
        };
        force_new = false;
        let uri = upstream.url(protocol, parts.uri.query()).map_err(|e| {
            ProxyError::new(
                ErrorCode::UpstreamUnreachable,
                format!("upstream {}: cannot build the URL: {e}", upstream.id),
            )
        })?;
        let mut headers = base_headers.clone();
        if let Some((auth_name, auth_value)) = upstream.auth_header() {
            headers.insert(auth_name.clone(), auth_value.clone());
        }
        if let Some(lease) = &lease {
            if let Ok(mut v) = HeaderValue::from_str(&format!("Bearer {}", lease.token.expose())) {
                v.set_sensitive(true);
                headers.insert(header::AUTHORIZATION, v);
            }
            headers.insert(
                DEADLINE_MS,
                HeaderValue::from(u64::try_from(head_deadline.as_millis()).unwrap_or(u64::MAX)),
            );
        }
        if upstream.kind == ProviderKind::Anthropic && !headers.contains_key(ANTHROPIC_VERSION) {
            headers.insert(ANTHROPIC_VERSION, HeaderValue::from_static("2023-06-01"));
        }
        for (k, v) in upstream.extra_headers() {
            headers.insert(k.clone(), v.clone());
        }
        let mut upstream_req = Request::new(Full::new(body.clone()));
        *upstream_req.method_mut() = Method::POST;
        *upstream_req.uri_mut() = uri;
        *upstream_req.headers_mut() = headers;

        let sent = Instant::now();
        let outcome = tokio::time::timeout(head_deadline, state.client.request(upstream_req)).await;
        let overhead_now = |waited: std::time::Duration| {
            started.0.elapsed().saturating_sub(waited + sent.elapsed())
        };
        let latency_ms = u64::try_from(sent.elapsed().as_millis()).unwrap_or(u64::MAX);

        // Every way this attempt can fail ends in (outcome, status, detail,
        // the error answer if there was one); success returns from here.
        let (failure, status, detail, kept) = match outcome {
            Err(_) => (
                Outcome::Deadline,
                None,
                format!("no response head within {} ms", head_deadline.as_millis()),
                None,
            ),
            Ok(Err(e)) => {
                let transport = if e.is_connect() {
                    TransportFailure::Connect
                } else {
                    TransportFailure::Reset
                };
                (
                    tb_routing::classify(None, Some(transport), BodyHint::default()),
                    None,
                    error_chain(&e),
                    None,
                )
            }
            Ok(Ok(resp)) if !resp.status().is_success() => {
                let status = resp.status().as_u16();
                let (mut head, upstream_body) = resp.into_parts();
                let mut error_body = read_error_body(upstream_body, head_deadline).await;
                if let Some(clean) = redact_secrets(&error_body, upstream, lease.as_ref()) {
                    // The length changed: hyper sets it from the new body.
                    head.headers.remove(header::CONTENT_LENGTH);
                    error_body = clean;
                }
                let hint = BodyHint {
                    billing_wording: is_insufficient_funds(status, &error_body),
                };
                let class = tb_routing::classify(Some(status), None, hint);
                if class == Outcome::RateLimited {
                    let retry_after = head
                        .headers
                        .get(header::RETRY_AFTER)
                        .and_then(|v| v.to_str().ok());
                    state.router.rate_limited(id, now, retry_after);
                }
                if let (Some(lease), Some(market)) = (&lease, &state.market) {
                    match class {
                        Outcome::AuthInvalid => market.broker.drop_lease(lease),
                        Outcome::InsufficientFunds => market.broker.mark_lease_dry(lease),
                        _ => {}
                    }
                }
                (
                    class,
                    Some(status),
                    format!("HTTP {status}"),
                    Some(KeptAnswer {
                        head,
                        body: error_body,
                    }),
                )
            }
            Ok(Ok(resp)) => {
                let status = resp.status().as_u16();
                let (head, upstream_body) = resp.into_parts();
                // Hold the answer until it is safe to commit: a stream until
                // its first content event, a JSON answer until it is whole.
                let committed = if is_event_stream(&head.headers) {
                    let mut tap = ResponseTap::sse(protocol, &facts, add_usage);
                    match hold_stream(
                        upstream_body,
                        &mut tap,
                        state.settings.stream_idle_timeout,
                        started.0,
                    )
                    .await
                    {
                        HeldStream::Commit { prefix, rest, ttft } => {
                            Commit::Stream(rest, Held { tap, prefix, ttft })
                        }
                        HeldStream::Empty { whole } if routes_left == 0 => Commit::Whole(
                            whole,
                            Held {
                                tap,
                                prefix: Bytes::new(),
                                ttft: None,
                            },
                        ),
                        HeldStream::Empty { .. } => Commit::Retry(
                            Outcome::EmptyCompletion,
                            "the stream ended without content".into(),
                        ),
                        HeldStream::Broke { class, detail } => {
                            let o = if class == "deadline" {
                                Outcome::Deadline
                            } else {
                                Outcome::ServerError
                            };
                            Commit::Retry(o, detail)
                        }
                    }
                } else {
                    match buffer_json(
                        upstream_body,
                        state.settings.max_response_bytes,
                        state.settings.stream_idle_timeout,
                    )
                    .await
                    {
                        Buffered::Whole(bytes) => {
                            let report = usage::from_json(protocol, &bytes, &facts);
                            if report.empty_completion && routes_left > 0 {
                                Commit::Retry(
                                    Outcome::EmptyCompletion,
                                    "the answer had no content".into(),
                                )
                            } else {
                                let tap = ResponseTap::Ready(Box::new(report));
                                Commit::Whole(
                                    bytes,
                                    Held {
                                        tap,
                                        prefix: Bytes::new(),
                                        ttft: None,
                                    },
                                )
                            }
                        }
                        Buffered::TooLarge { prefix, rest } => {
                            let missing = UsageReport {
                                usage_missing: true,
                                ..UsageReport::default()
                            };
                            Commit::Stream(
                                rest,
                                Held {
                                    tap: ResponseTap::Ready(Box::new(missing)),
                                    prefix,
                                    ttft: None,
                                },
                            )
                        }
                        Buffered::Broke { class, detail } => Commit::Retry(class, detail),
                    }
                };
                let settle = lease
                    .clone()
                    .zip(state.market.as_ref().map(|m| m.broker.clone()));
                match committed {
                    Commit::Retry(o, detail) => (o, Some(status), detail, None),
                    Commit::Stream(rest, held) => {
                        let record =
                            AttemptRecord::answered(upstream, status, Outcome::Ok, latency_ms);
                        call.attempt(record.to_attempt());
                        attempts.push(record);
                        call.set_winner(Arc::clone(upstream));
                        on_commit(state, id, &plan.model, now, first_route.as_deref());
                        tracing::info!(target: "upstream.response", upstream = %upstream.id, status, head_ms = latency_ms, "upstream answered");
                        let feedback = Feedback {
                            router: Arc::clone(&state.router),
                            id: id.to_string(),
                            head_ms: latency_ms,
                            request_started: started.0,
                        };
                        let overhead = overhead_now(upstream_wait);
                        let resp = respond(
                            state,
                            head,
                            rest,
                            held,
                            route,
                            protocol,
                            &attempts,
                            call,
                            settle,
                            Some(feedback),
                        );
                        return Ok(stamp_overhead(state, resp, overhead));
                    }
                    Commit::Whole(bytes, held) => {
                        let record =
                            AttemptRecord::answered(upstream, status, Outcome::Ok, latency_ms);
                        call.attempt(record.to_attempt());
                        attempts.push(record);
                        call.set_winner(Arc::clone(upstream));
                        on_commit(state, id, &plan.model, now, first_route.as_deref());
                        tracing::info!(target: "upstream.response", upstream = %upstream.id, status, head_ms = latency_ms, "upstream answered");
                        let held = Held {
                            prefix: bytes,
                            ..held
                        };
                        let empty = http_body_util::Empty::<Bytes>::new();
                        let feedback = Feedback {
                            router: Arc::clone(&state.router),
                            id: id.to_string(),
                            head_ms: latency_ms,
                            request_started: started.0,
                        };
                        let overhead = overhead_now(upstream_wait);
                        let resp = respond(
                            state,
                            head,
                            empty,
                            held,
                            route,
                            protocol,
                            &attempts,
                            call,
                            settle,
                            Some(feedback),
                        );
                        return Ok(stamp_overhead(state, resp, overhead));
                    }
                }
            }
        };

        upstream_wait += sent.elapsed();
        tracing::warn!(target: "route.attempt_failed", upstream = %upstream.id, class = failure.as_str(), status = ?status, error = %detail, "upstream attempt failed");
        if tb_routing::counts_as_pool_failure(failure) {
            state.router.failure(id, unix_ms_now(), failure.as_str());
        } else {
            state.router.neutral(id);
        }
        let mut record = match status {
            Some(s) => AttemptRecord::answered(upstream, s, failure, latency_ms),
            None => AttemptRecord::failed(upstream, failure, detail.clone(), latency_ms),
        };
        record.detail = detail;
        call.attempt(record.to_attempt());
        attempts.push(record);
        answers.push(kept);

        let attempt_state = AttemptState {
            attempt_no: u32::try_from(attempts.len()).unwrap_or(u32::MAX),
            retried_same,
            routes_left,
            is_seller: lease.is_some(),
            bought_after_dry,
            jitter_seed: seed_of(request_id, attempts.len()),
        };
        match tb_routing::decide(failure, attempt_state, state.router.failover) {
            Action::RetrySame {
                backoff_ms,
                buy_credit,
            } => {
                if buy_credit {
                    bought_after_dry = true;
                    force_new = true;
                    tracing::info!(target: "purchase.rebuy", upstream = %upstream.id, "seller credit ran dry; buying once and retrying");
                } else {
                    retried_same = true;
                }
                let pause = std::time::Duration::from_millis(backoff_ms);
                tokio::time::sleep(pause).await;
                upstream_wait += pause;
            }
            Action::FailoverNext => {
                i += 1;
                retried_same = false;
                bought_after_dry = false;
            }
            Action::FailFast | Action::Done | Action::Abort => break,
        }
    }

    // No answer to commit to: the first non-transient error answer, else
    // the last answer, else the daemon's own error (proxy.md, "Errors").
    let outcomes: Vec<(Outcome, Option<u16>)> =
        attempts.iter().map(|a| (a.outcome, a.status)).collect();
    // When every attempt failed for lack of credit (budget spent, purchase
    // failed, dry after one rebuy), the daemon's own 503 says why; a
    // seller's "insufficient balance" would not.
    let credit_problem = attempts.iter().all(|a| {
        matches!(
            a.outcome,
            Outcome::PurchaseFailed | Outcome::InsufficientFunds
        )
    });
    let chosen = match tb_routing::final_response_choice(&outcomes) {
        _ if credit_problem => None,
        FinalChoice::FirstNonTransientAnswer(k) | FinalChoice::LastAnswer(k) => {
            answers.get_mut(k).and_then(Option::take).zip(Some(k))
        }
        FinalChoice::NoAnswer { .. } => None,
    };
    if let Some((answer, k)) = chosen
        && let Some(route) = plan
            .routes
            .iter()
            .find(|r| r.upstream.id.as_str() == attempts[k].upstream)
    {
        call.set_winner(Arc::clone(&route.upstream));
        let resp = Response::from_parts(answer.head, Full::new(answer.body));
        let overhead = started.0.elapsed().saturating_sub(upstream_wait);
        let resp = client_response(state, resp, route, protocol, &attempts, call);
        return Ok(stamp_overhead(state, resp, overhead));
    }

    call.finish(CallOutcome::Failed, None, None, None);
    let credit_problem = attempts.iter().all(|a| {
        matches!(
            a.outcome,
            Outcome::PurchaseFailed | Outcome::InsufficientFunds
        )
    });
    let code = if credit_problem {
        ErrorCode::NoRoute
    } else if attempts.iter().all(|a| a.outcome == Outcome::Deadline) {
        ErrorCode::UpstreamTimeout
    } else {
        ErrorCode::UpstreamUnreachable
    };
    let tried: Vec<String> = attempts
        .iter()
        .map(|a| format!("{} ({}): {}", a.upstream, a.location, a.detail))
        .collect();
    let message = format!(
        "no upstream answered for model {:?} over {protocol}; tried {}",
        probe.model,
        tried.join("; ")
    );
    let mut resp = ProxyError::new(code, message).response(protocol.family());
    if let Ok(v) = HeaderValue::from_str(&attempts_header(&attempts)) {
        resp.headers_mut().insert(ATTEMPTS, v);
    }
    if let Some(last) = attempts.last()
        && let Ok(v) = HeaderValue::from_str(&last.upstream)
    {
        resp.headers_mut().insert(UPSTREAM, v);
    }
    Ok(resp)
}

/// Adds `x-tokenbuddy-overhead-us` (time in the daemon, excluding upstream
/// time) and observes it in `tb_proxy_overhead_seconds`.
fn stamp_overhead(
    state: &ProxyState,
    mut resp: Response<ProxyBody>,
    overhead: std::time::Duration,
) -> Response<ProxyBody> {
    state.metrics.overhead.observe(overhead.as_secs_f64());
    resp.headers_mut().insert(
        OVERHEAD,
        HeaderValue::from(u64::try_from(overhead.as_micros()).unwrap_or(u64::MAX)),
    );
    resp
}

/// An error answer kept in case it becomes the final response.
struct KeptAnswer {
    head: http::response::Parts,
    body: Bytes,
}

/// After committing to an upstream: a failover that served here makes the
/// model stick to it for a while. (The pool learns how it went when the
/// body ends.)
fn on_commit(state: &ProxyState, id: &str, model: &str, now: i64, first: Option<&str>) {
    if first != Some(id) {
        state.router.served_after_failover(model, id, now);
    }
}

/// A per-attempt seed for the retry jitter (no clock, no RNG needed).
fn seed_of(request_id: &str, attempt: usize) -> u64 {
    request_id.bytes().fold(attempt as u64, |h, b| {
        h.wrapping_mul(31).wrapping_add(u64::from(b))
    })
}

/// What to do with an answer once it has been held.
enum Commit<B> {
    /// Send the held prefix, then stream the rest.
    Stream(B, Held),
    /// Send these bytes; the answer is complete.
    Whole(Bytes, Held),
    /// Fail over: (outcome, detail).
    Retry(Outcome, String),
}

/// A token for a seller route: the cached one or a new purchase. The error
/// is the attempt's detail (no token in it).
async fn buy_or_reuse(
    state: &ProxyState,
    upstream: &Upstream,
    seller_url: &str,
    model: &str,
    force_new: bool,
) -> Result<Lease, String> {
    let Some(market) = &state.market else {
        return Err("marketplace routing is not configured".into());
    };
    let seller = SellerRef::new(upstream.id.as_str(), seller_url);
    let acquired = market
        .broker
        .acquire(&seller, model, market.payment, force_new)
        .await;
    let result = match &acquired {
        Ok(l) if l.bought => Some("ok"),
        Ok(_) => None,
        Err(tb_seller::AcquireError::BudgetSpent { .. }) => Some("budget_spent"),
        Err(tb_seller::AcquireError::NeedsUserAction { .. }) => Some("needs_user_action"),
        Err(tb_seller::AcquireError::PurchaseFailed(_)) => Some("failed"),
    };
    if let Some(result) = result {
        state
            .metrics
            .purchases
            .with_label_values(&[upstream.id.as_str(), result])
            .inc();
    }
    let lease = acquired.map_err(|e| e.to_string())?;
    if lease.bought {
        tracing::info!(target: "purchase.completed", upstream = %upstream.id, token = %lease.fingerprint, "bought seller credit");
    }
    Ok(lease)
}

/// Reads an upstream error body, at most 64 KiB, within `deadline`; what
/// cannot be read is left out (the status still stands).
/// The error body without the credentials this attempt sent (the
/// provider key, the seller token), or `None` when it quotes neither.
fn redact_secrets(body: &[u8], upstream: &Upstream, lease: Option<&Lease>) -> Option<Bytes> {
    let token = lease.map(|l| l.token.expose().as_bytes());
    let secrets: Vec<&[u8]> = upstream.credential().into_iter().chain(token).collect();
    crate::body::redact(body, &secrets)
}

async fn read_error_body(body: Incoming, deadline: std::time::Duration) -> Bytes {
    let limited = http_body_util::Limited::new(body, 64 * 1024);
    match tokio::time::timeout(deadline, limited.collect()).await {
        Ok(Ok(collected)) => collected.to_bytes(),
        _ => Bytes::new(),
    }
}

fn attempts_header(attempts: &[AttemptRecord]) -> String {
    attempts
        .iter()
        .map(AttemptRecord::header_part)
        .collect::<Vec<_>>()
        .join(",")
}

/// The seller's settlement, from the SSE event or else the header,
/// sanitised; a settlement that cannot be read is logged and ignored (the
/// call is then priced from the table).
fn read_settlement(event: Option<&str>, header: Option<&[u8]>) -> Option<Settlement> {
    let parsed = match (event, header) {
        (Some(data), _) => settlement::from_json(data.as_bytes()),
        (None, Some(h)) => settlement::from_header(h),
        (None, None) => return None,
    };
    match parsed {
        Ok((s, dropped)) => {
            if !dropped.is_empty() {
                tracing::warn!(target: "billing.settlement_sanitised", dropped = ?dropped, "settlement fields dropped");
            }
            Some(s)
        }
        Err(e) => {
            tracing::warn!(target: "billing.settlement_invalid", error = %e, "settlement ignored; the call is priced from the table");
            None
        }
    }
}

/// Whether a response is an event stream.
fn is_event_stream(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.trim_start()
                .to_ascii_lowercase()
                .starts_with("text/event-stream")
        })
}

/// An upstream error answer passed on to the client as it is.
fn client_response<B>(
    state: &ProxyState,
    resp: Response<B>,
    route: &Route,
    protocol: Protocol,
    attempts: &[AttemptRecord],
    call: CallTracker,
) -> Response<ProxyBody>
where
    B: http_body::Body<Data = Bytes> + Unpin + Send + 'static,
    B::Error: std::fmt::Display,
{
    let (parts, body) = resp.into_parts();
    let held = Held {
        tap: ResponseTap::opaque(),
        prefix: Bytes::new(),
        ttft: None,
    };
    respond(
        state, parts, body, held, route, protocol, attempts, call, None, None,
    )
}

/// Tells the pool how a committed answer went, when its body ends.
struct Feedback {
    router: Arc<crate::route::Router>,
    id: String,
    head_ms: u64,
    request_started: Instant,
}

impl Feedback {
    fn report(
        &self,
        ending: Ending,
        ttft: Option<std::time::Duration>,
        usage: Option<&UsageReport>,
    ) {
        let now = unix_ms_now();
        match ending {
            Ending::Complete => {
                let ttft_ms = ttft.map(|t| u64::try_from(t.as_millis()).unwrap_or(u64::MAX));
                let output = usage
                    .and_then(|r| r.usage.as_ref())
                    .and_then(|u| u.output_tokens);
                let total_ms =
                    u64::try_from(self.request_started.elapsed().as_millis()).unwrap_or(u64::MAX);
                let inference_ms = ttft_ms.map(|t| total_ms.saturating_sub(t));
                let tokens_per_second = match (output, inference_ms) {
                    (Some(out), Some(ms)) if ms > 0 => Some(out as f64 * 1000.0 / ms as f64),
                    _ => None,
                };
                let metrics = tb_pool::CallMetrics {
                    latency_ms: self.head_ms,
                    ttft_ms,
                    inference_ms,
                    tokens_per_second,
                };
                self.router.success(&self.id, now, metrics);
            }
            Ending::UpstreamError => self.router.failure(&self.id, now, "server_error"),
            Ending::IdleTimeout => self.router.failure(&self.id, now, "deadline"),
            // The client went away: says nothing about the upstream.
            Ending::ClientGone => self.router.neutral(&self.id),
        }
    }
}

/// What was read before committing to an answer.
struct Held {
    tap: ResponseTap,
    prefix: Bytes,
    ttft: Option<std::time::Duration>,
}

/// Sends an answer: the held prefix, then the rest of `body` through the
/// tap; records the call when the body ends.
#[allow(clippy::too_many_arguments)]
fn respond<B>(
    state: &ProxyState,
    parts: http::response::Parts,
    body: B,
    held: Held,
    route: &Route,
    protocol: Protocol,
    attempts: &[AttemptRecord],
    call: CallTracker,
    settle: Option<(Lease, CreditBroker)>,
    feedback: Option<Feedback>,
) -> Response<ProxyBody>
where
    B: http_body::Body<Data = Bytes> + Unpin + Send + 'static,
    B::Error: std::fmt::Display,
{
    let is_sse = is_event_stream(&parts.headers);
    let on_break = if is_sse {
        OnBreak::ErrorEvent(protocol)
    } else {
        OnBreak::Abort
    };
    let success = parts.status.is_success();
    let mut headers = client_response_headers(&parts.headers);
    if is_sse || !held.prefix.is_empty() {
        // Events may be stripped or an error event appended, and a held
        // answer is re-framed: a fixed length would be a lie.
        headers.remove(header::CONTENT_LENGTH);
    }
    if let Ok(v) = HeaderValue::from_str(route.upstream.id.as_str()) {
        headers.insert(UPSTREAM, v);
    }
    if let Ok(v) = HeaderValue::from_str(&attempts_header(attempts)) {
        headers.insert(ATTEMPTS, v);
    }
    let settlement_header = parts
        .headers
        .get(SETTLEMENT_HEADER)
        .map(|v| v.as_bytes().to_vec());
    let finish: Finish<ResponseTap> = Box::new(move |ending, ttft, tap| {
        let report = tap.report();
        let saw_content = tap.saw_content();
        let settlement = read_settlement(tap.settlement(), settlement_header.as_deref());
        if let (Some((lease, broker)), Some(s)) = (&settle, &settlement) {
            broker.settle_lease(lease, s.settled_micros, s.remaining_credit_micros);
        }
        let outcome = match ending {
            Ending::ClientGone => CallOutcome::Cancelled,
            Ending::Complete if success => CallOutcome::Ok,
            Ending::Complete => CallOutcome::Failed,
            Ending::UpstreamError | Ending::IdleTimeout if saw_content => {
                CallOutcome::FailedMidStream
            }
            Ending::UpstreamError | Ending::IdleTimeout => CallOutcome::Failed,
        };
        if let Some(f) = &feedback {
            f.report(ending, ttft, report.as_ref());
        }
        call.finish(outcome, report, ttft, settlement);
    });
    let body = PassThrough::new(
        body,
        held.tap,
        state.settings.stream_idle_timeout,
        on_break,
        route.upstream.id.to_string(),
        tokio::time::Instant::now(),
        finish,
    )
    .with_prefix(held.prefix, held.ttft);
    let mut out = Response::new(body.boxed_unsync());
    *out.status_mut() = parts.status;
    *out.headers_mut() = headers;
    out
}
