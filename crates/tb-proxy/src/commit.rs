//! After the attempt loop: the one path that turns what it ended with into
//! the client's response. A committed answer (stream or whole body) and a
//! kept error answer both go through [`respond`]: held prefix first, then
//! the rest through the tap, the call recorded when the body ends. When
//! nothing can be committed, [`give_up`] applies proxy.md's final-answer
//! rule.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Response, header};
use http_body_util::{BodyExt, Either, Full};
use tb_billing::record::CallOutcome;
use tb_billing::settlement::{self, SETTLEMENT_HEADER, Settlement};
use tb_billing::usage::UsageReport;
use tb_domain::{Outcome, Protocol};
use tb_router::{RoutePlan, Router, Upstream};
use tb_routing::FinalChoice;
use tb_seller::Lease;

use crate::attempt::{
    AttemptRecord, Credit, Held, KeptAnswer, Rest, Walk, Winner, attempts_header, is_event_stream,
};
use crate::call::{CallTracker, unix_ms_now};
use crate::error::{ErrorCode, ProxyError};
use crate::headers::client_response_headers;
use crate::stream::{Ending, Finish, OnBreak, PassThrough, Tap};
use crate::tap::ResponseTap;
use crate::{ProxyBody, ProxyState};

pub(crate) const UPSTREAM: HeaderName = HeaderName::from_static("x-tokenbuddy-upstream");
const ATTEMPTS: HeaderName = HeaderName::from_static("x-tokenbuddy-attempts");
const OVERHEAD: HeaderName = HeaderName::from_static("x-tokenbuddy-overhead-us");

/// What the response stage needs to know about the request.
pub(crate) struct Answering<'a> {
    pub state: &'a ProxyState,
    pub protocol: Protocol,
    pub plan: &'a RoutePlan,
    pub requested_model: &'a str,
    pub started: Instant,
    pub credit: Option<&'a Arc<dyn Credit>>,
}

/// An answer on its way to the client.
struct Outgoing<B> {
    head: http::response::Parts,
    held: Held,
    rest: Rest<B>,
    upstream: Arc<Upstream>,
    settle: Option<(Lease, Arc<dyn Credit>)>,
    feedback: Option<Feedback>,
}

/// Commits to the loop's winner: records the attempt, makes the model stick
/// to a failover's upstream, streams the answer back.
pub(crate) fn commit<B>(
    a: &Answering<'_>,
    winner: Winner<B>,
    mut walk: Walk,
    mut call: CallTracker,
) -> Response<ProxyBody>
where
    B: http_body::Body<Data = Bytes, Error: Into<crate::BoxError>> + Unpin + Send + 'static,
{
    let Some(route) = a.plan.routes.get(winner.route) else {
        return give_up(a, walk, call);
    };
    let upstream = Arc::clone(&route.upstream);
    let translated_to = (route.protocol != a.protocol).then_some(route.protocol);
    let status = winner.head.status.as_u16();
    let record = AttemptRecord {
        upstream: upstream.id.to_string(),
        location: upstream.base_url().to_string(),
        status: Some(status),
        outcome: Outcome::Ok,
        detail: format!("HTTP {status}"),
        latency_ms: winner.head_ms,
    };
    call.attempt(record.to_attempt());
    walk.attempts.push(record);
    call.set_winner(Arc::clone(&upstream), translated_to);
    if winner.route != 0 {
        a.state.routing.router().served_after_failover(
            &a.plan.model,
            upstream.id.as_str(),
            unix_ms_now(),
        );
    }
    tracing::info!(target: "upstream.response", upstream = %upstream.id, status, head_ms = winner.head_ms, "upstream answered");
    let feedback = Feedback {
        router: Arc::clone(a.state.routing.router()),
        upstream: Arc::clone(&upstream),
        head_ms: winner.head_ms,
        request_started: a.started,
    };
    let overhead = a.started.elapsed().saturating_sub(walk.upstream_wait);
    let out = Outgoing {
        head: winner.head,
        held: winner.held,
        rest: winner.rest,
        upstream,
        settle: winner.lease.zip(a.credit.cloned()),
        feedback: Some(feedback),
    };
    let resp = respond(a, out, &walk.attempts, call);
    stamp_overhead(a.state, resp, overhead)
}

/// No answer to commit to: the first non-transient error answer, else the
/// last answer, else the daemon's own error (proxy.md, "Errors"). When
/// every attempt failed for lack of credit, the daemon's own `503 no_route`
/// says why; a seller's "insufficient balance" would not.
pub(crate) fn give_up(a: &Answering<'_>, mut walk: Walk, call: CallTracker) -> Response<ProxyBody> {
    // Only a kept answer can be passed through (proxy.md's rule reads the
    // status as "an answer is there").
    let outcomes: Vec<(Outcome, Option<u16>)> = walk
        .attempts
        .iter()
        .zip(&walk.answers)
        .map(|(r, kept)| (r.outcome, r.status.filter(|_| kept.is_some())))
        .collect();
    let credit_problem = walk.attempts.iter().all(|r| {
        matches!(
            r.outcome,
            Outcome::PurchaseFailed | Outcome::InsufficientFunds
        )
    });
    let choice = tb_routing::final_response_choice(&outcomes);
    let kept = match choice {
        _ if credit_problem => None,
        FinalChoice::FirstNonTransientAnswer(k) | FinalChoice::LastAnswer(k) => walk
            .answers
            .get_mut(k)
            .and_then(Option::take)
            .zip(walk.attempts.get(k).map(|r| r.upstream.clone())),
        FinalChoice::NoAnswer { .. } => None,
    };
    let route = kept
        .as_ref()
        .and_then(|(_, id)| a.plan.routes.iter().find(|r| r.upstream.id.as_str() == id));
    match (kept, route) {
        (Some((answer, _)), Some(route)) => {
            let translated_to = (route.protocol != a.protocol).then_some(route.protocol);
            let winner = (Arc::clone(&route.upstream), translated_to);
            pass_error_answer(a, answer, winner, &walk, call)
        }
        _ => daemon_error(a, &walk, choice, credit_problem, call),
    }
}

/// An upstream's error answer, passed on as it is.
fn pass_error_answer(
    a: &Answering<'_>,
    answer: KeptAnswer,
    (upstream, translated_to): (Arc<Upstream>, Option<Protocol>),
    walk: &Walk,
    mut call: CallTracker,
) -> Response<ProxyBody> {
    call.set_winner(Arc::clone(&upstream), translated_to);
    let overhead = a.started.elapsed().saturating_sub(walk.upstream_wait);
    let out: Outgoing<Full<Bytes>> = Outgoing {
        head: answer.head,
        held: Held {
            tap: ResponseTap::opaque(),
            prefix: Bytes::new(),
            ttft: None,
        },
        rest: Either::Right(Full::new(answer.body)),
        upstream,
        settle: None,
        feedback: None,
    };
    let resp = respond(a, out, &walk.attempts, call);
    stamp_overhead(a.state, resp, overhead)
}

/// The daemon's own error when no upstream answer can be passed on.
fn daemon_error(
    a: &Answering<'_>,
    walk: &Walk,
    choice: FinalChoice,
    credit_problem: bool,
    call: CallTracker,
) -> Response<ProxyBody> {
    call.finish(CallOutcome::Failed, None, None, None);
    // routing.md's rule picks the status (504 when every attempt was a
    // deadline, else 502); the credit case is the daemon's own 503, or 402
    // when a seller only waits for the user's wallet payment.
    let payment_due = credit_problem && !walk.payments_due.is_empty();
    let code = match choice.daemon_status() {
        _ if payment_due => ErrorCode::PaymentRequired,
        _ if credit_problem => ErrorCode::NoRoute,
        Some(504) => ErrorCode::UpstreamTimeout,
        _ => ErrorCode::UpstreamUnreachable,
    };
    let tried: Vec<String> = walk
        .attempts
        .iter()
        .map(|r| format!("{} ({}): {}", r.upstream, r.location, r.detail))
        .collect();
    let message = if payment_due {
        format!(
            "model {:?} needs seller credit that waits for your payment: {}",
            a.requested_model,
            walk.payments_due.join("; ")
        )
    } else {
        format!(
            "no upstream answered for model {:?} over {}; tried {}",
            a.requested_model,
            a.protocol,
            tried.join("; ")
        )
    };
    let mut resp = ProxyError::new(code, message).response(a.protocol.family());
    if let Ok(v) = HeaderValue::from_str(&attempts_header(&walk.attempts)) {
        resp.headers_mut().insert(ATTEMPTS, v);
    }
    if let Some(last) = walk.attempts.last()
        && let Ok(v) = HeaderValue::from_str(&last.upstream)
    {
        resp.headers_mut().insert(UPSTREAM, v);
    }
    resp
}

/// Sends an answer: the held prefix, then the rest through the tap; records
/// the call, settles the seller and tells the pool when the body ends.
fn respond<B>(
    a: &Answering<'_>,
    out: Outgoing<B>,
    attempts: &[AttemptRecord],
    call: CallTracker,
) -> Response<ProxyBody>
where
    B: http_body::Body<Data = Bytes, Error: Into<crate::BoxError>> + Unpin + Send + 'static,
{
    let Outgoing {
        head,
        held,
        rest,
        upstream,
        settle,
        feedback,
    } = out;
    let is_sse = is_event_stream(&head.headers);
    let on_break = if is_sse {
        OnBreak::ErrorEvent(a.protocol)
    } else {
        OnBreak::Abort
    };
    let mut headers = client_response_headers(&head.headers);
    if is_sse || !held.prefix.is_empty() {
        // Events may be stripped or an error event appended, and a held
        // answer is re-framed: a fixed length would be a lie.
        headers.remove(header::CONTENT_LENGTH);
    }
    if let Ok(v) = HeaderValue::from_str(upstream.id.as_str()) {
        headers.insert(UPSTREAM, v);
    }
    if let Ok(v) = HeaderValue::from_str(&attempts_header(attempts)) {
        headers.insert(ATTEMPTS, v);
    }
    let settlement_header = head
        .headers
        .get(SETTLEMENT_HEADER)
        .map(|v| v.as_bytes().to_vec());
    let success = head.status.is_success();
    let finish: Finish<ResponseTap> = Box::new(move |ending, ttft, tap| {
        let report = tap.report();
        let settlement = read_settlement(tap.settlement(), settlement_header.as_deref());
        if let (Some((lease, credit)), Some(s)) = (&settle, &settlement) {
            credit.settle(lease, s.settled_micros, s.remaining_credit_micros);
        }
        if let Some(f) = &feedback {
            f.report(ending, ttft, report.as_ref());
        }
        let outcome = call_outcome(ending, success, tap.saw_content());
        call.finish(outcome, report, ttft, settlement);
    });
    let body = PassThrough::new(
        rest,
        held.tap,
        a.state.settings.stream_idle_timeout,
        on_break,
        upstream.id.to_string(),
        tokio::time::Instant::now(),
        finish,
    )
    .with_prefix(held.prefix, held.ttft);
    let mut resp = Response::new(body.boxed_unsync());
    *resp.status_mut() = head.status;
    *resp.headers_mut() = headers;
    resp
}

/// The call's outcome from how its body ended.
fn call_outcome(ending: Ending, success: bool, saw_content: bool) -> CallOutcome {
    match ending {
        Ending::ClientGone => CallOutcome::Cancelled,
        Ending::Complete if success => CallOutcome::Ok,
        Ending::Complete => CallOutcome::Failed,
        Ending::UpstreamError | Ending::IdleTimeout if saw_content => CallOutcome::FailedMidStream,
        Ending::UpstreamError | Ending::IdleTimeout => CallOutcome::Failed,
    }
}

/// Adds `x-tokenbuddy-overhead-us` (time in the daemon, excluding upstream
/// time) and observes it in `tb_proxy_overhead_seconds`.
fn stamp_overhead(
    state: &ProxyState,
    mut resp: Response<ProxyBody>,
    overhead: Duration,
) -> Response<ProxyBody> {
    state.metrics.overhead.observe(overhead.as_secs_f64());
    resp.headers_mut().insert(
        OVERHEAD,
        HeaderValue::from(u64::try_from(overhead.as_micros()).unwrap_or(u64::MAX)),
    );
    resp
}

/// Tells the pool how a committed answer went, when its body ends: the one
/// place successes (and breaks after the commit) reach the pool.
struct Feedback {
    router: Arc<Router>,
    /// Shared, not copied: the id is only read when the body ends.
    upstream: Arc<Upstream>,
    head_ms: u64,
    request_started: Instant,
}

impl Feedback {
    fn report(&self, ending: Ending, ttft: Option<Duration>, usage: Option<&UsageReport>) {
        let now = unix_ms_now();
        let id = self.upstream.id.as_str();
        match ending {
            Ending::Complete => {
                let metrics = self.metrics(ttft, usage);
                self.router.success(id, now, metrics);
            }
            Ending::UpstreamError => self.router.failure(id, now, Outcome::ServerError),
            Ending::IdleTimeout => self.router.failure(id, now, Outcome::Deadline),
            // The client went away: says nothing about the upstream.
            Ending::ClientGone => self.router.neutral(id),
        }
    }

    fn metrics(&self, ttft: Option<Duration>, usage: Option<&UsageReport>) -> tb_pool::CallMetrics {
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        let ttft_ms = ttft.map(ms);
        let output = usage
            .and_then(|r| r.usage.as_ref())
            .and_then(|u| u.output_tokens);
        let total_ms = ms(self.request_started.elapsed());
        let inference_ms = ttft_ms.map(|t| total_ms.saturating_sub(t));
        let tokens_per_second = match (output, inference_ms) {
            (Some(out), Some(ms)) if ms > 0 => Some(out as f64 * 1000.0 / ms as f64),
            _ => None,
        };
        tb_pool::CallMetrics {
            latency_ms: self.head_ms,
            ttft_ms,
            inference_ms,
            tokens_per_second,
        }
    }
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
