//! Video generation jobs through the gateway (OpenAI's video API, issue 18
//! part 3): `POST /v1/videos` submits a job, `GET /v1/videos/{id}` polls
//! it, `GET /v1/videos/{id}/content` downloads it.
//!
//! A job is not one request: it is accepted by one upstream and lives
//! there for minutes, so the forward path's attempt loop does not fit. The
//! submit fails over (connect error, 5xx, 429, an upstream's own 401/403/404
//! → next upstream, cheapest 8-second clip first); a client's 4xx is
//! answered as is. The accepted job's id (the upstream's own) is mapped to
//! the upstream in the ledger ([`VideoJobs`]), so polls and downloads reach
//! it across restarts. The call record is written once, by the poll that
//! first sees the job `completed` or `failed`, billed on the produced
//! seconds (tb-billing's `video`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::future::BoxFuture;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use serde::Deserialize;
use serde_json::value::RawValue;
use tb_billing::cost::Costing;
use tb_billing::record::{Attempt, BalanceSource, BillingUnit, CallOutcome, CallRecord};
use tb_billing::video::{JobStatus, JobView, PerSecond, VideoBill, billed_seconds, cost_video};
use tb_domain::{Outcome, Protocol};
use tb_router::Upstream;

use crate::body::{BodyEdits, edit_body, full, read_request_body};
use crate::call::unix_ms_now;
use crate::commit::UPSTREAM;
use crate::error::{ErrorCode, ProxyError};
use crate::form::Form;
use crate::member::{Member, Reservation, ReservationKind};
use crate::{ProxyBody, ProxyState};

/// One accepted video job, as the ledger keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VideoJobRow {
    /// The upstream's job id (also the client's).
    pub job_id: String,
    /// The upstream that accepted it.
    pub upstream_id: String,
    /// The submit's request id.
    pub request_id: String,
    /// The model the client asked for.
    pub requested_model: String,
    /// The model sent upstream.
    pub model: String,
    /// The client's `seconds`, when given.
    pub requested_seconds: Option<u32>,
    /// When the submit started, unix ms.
    pub submitted_at_ms: i64,
    /// The member whose key submitted the job (`None`: the access token);
    /// its record carries the member whoever polls the terminal state.
    pub member: Option<String>,
    /// The submit's attempts on routes that refused it before the
    /// accepting one: the head of the record's attempt chain.
    pub submit_attempts: Vec<Attempt>,
    /// The id of the job's call record, chosen at submit: a member's
    /// reservation of the job's worst cost has this id, so the record
    /// swaps it for the real cost whoever writes it. `None` for jobs
    /// stored before it was kept (the record gets a fresh id).
    pub record_id: Option<String>,
}

/// Where video jobs are kept (the ledger, in the daemon). Errors are
/// messages without secrets.
pub trait VideoJobs: Send + Sync + 'static {
    /// Stores an accepted job; `false` when the id is already mapped.
    fn save(&self, job: VideoJobRow) -> BoxFuture<'_, Result<bool, String>>;
    /// The job with this id.
    fn find(&self, job_id: String) -> BoxFuture<'_, Result<Option<VideoJobRow>, String>>;
    /// `true` for the first claim of the job's record only.
    fn claim_record(&self, job_id: String, at_ms: i64) -> BoxFuture<'_, Result<bool, String>>;
}

/// What a request under `/v1/videos` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum VideoCall<'a> {
    Submit,
    Poll(&'a str),
    Content(&'a str),
}

/// Classifies a request under `/v1/videos` (pure).
fn classify<'a>(method: &Method, path: &'a str) -> Result<VideoCall<'a>, ProxyError> {
    let rest = path.strip_prefix("/v1/videos").unwrap_or(path);
    let (call, allow) = match rest.trim_start_matches('/').split('/').collect::<Vec<_>>()[..] {
        [""] => (VideoCall::Submit, "POST"),
        [id] => (VideoCall::Poll(id), "GET"),
        [id, "content"] => (VideoCall::Content(id), "GET"),
        _ => {
            return Err(ProxyError::new(
                ErrorCode::UnknownRoute,
                format!(
                    "no endpoint {method} {path}; the video API is POST /v1/videos, GET /v1/videos/{{id}} and GET /v1/videos/{{id}}/content"
                ),
            ));
        }
    };
    if method.as_str() != allow {
        return Err(ProxyError::new(
            ErrorCode::MethodNotAllowed,
            format!("{method} is not allowed on {path}; use {allow}"),
        ));
    }
    if let VideoCall::Poll(id) | VideoCall::Content(id) = call
        && !valid_id(id)
    {
        return Err(ProxyError::new(
            ErrorCode::VideoNotFound,
            format!("{id:?} is not a video job id (ids are letters, digits, `_` and `-`)"),
        ));
    }
    Ok(call)
}

fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// The members of a submit body the gateway reads; the rest is forwarded
/// untouched.
#[derive(Deserialize)]
struct SubmitWire<'a> {
    #[serde(default, borrow)]
    model: Option<&'a RawValue>,
    #[serde(default, borrow)]
    prompt: Option<&'a RawValue>,
    #[serde(default, borrow)]
    seconds: Option<&'a RawValue>,
    #[serde(default, borrow)]
    size: Option<&'a RawValue>,
}

/// A valid submit: what routing and billing need.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Submit {
    model: String,
    seconds: Option<u32>,
}

fn invalid(message: String) -> ProxyError {
    ProxyError::new(ErrorCode::InvalidField, message)
}

fn non_empty_string(raw: Option<&RawValue>) -> Option<String> {
    let s: String = serde_json::from_str(raw?.get()).ok()?;
    (!s.trim().is_empty()).then_some(s)
}

/// Validates a submit body (pure): a JSON object with a string `model` and
/// `prompt`, `seconds` a whole number (`"8"` or `8`), `size` a string.
fn parse_submit(body: &[u8]) -> Result<Submit, ProxyError> {
    let not_object = |why: String| {
        ProxyError::new(
            ErrorCode::InvalidJson,
            format!(
                "the video request body is not a JSON object: {why}; send {{\"model\": \"sora-2\", \"prompt\": \"...\", \"seconds\": \"8\"}}"
            ),
        )
    };
    // serde would read a struct from an array too: only an object is one.
    if body.trim_ascii_start().first() != Some(&b'{') {
        return Err(not_object("it does not start with `{`".into()));
    }
    let wire: SubmitWire<'_> =
        serde_json::from_slice(body).map_err(|e| not_object(e.to_string()))?;
    let Some(model) = non_empty_string(wire.model) else {
        return Err(ProxyError::new(
            ErrorCode::MissingModel,
            "the video request needs `model`, a non-empty string (e.g. \"sora-2\")".to_string(),
        ));
    };
    if non_empty_string(wire.prompt).is_none() {
        return Err(invalid(
            "the video request needs `prompt`, a non-empty string describing the video".into(),
        ));
    }
    let seconds = match wire.seconds {
        None => None,
        Some(raw) => match tb_billing::video::seconds_of(raw) {
            Some(s) if s > 0 => Some(s),
            _ => {
                return Err(invalid(format!(
                    "`seconds` must be a whole number of seconds above 0, as \"8\" or 8; got {}",
                    raw.get()
                )));
            }
        },
    };
    if let Some(raw) = wire.size
        && serde_json::from_str::<String>(raw.get()).is_err()
    {
        return Err(invalid(format!(
            "`size` must be a string such as \"720x1280\"; got {}",
            raw.get()
        )));
    }
    Ok(Submit { model, seconds })
}

/// Validates a multipart submit's fields (OpenAI's `input_reference` file
/// and the same text fields as the JSON body): `model` (already required by
/// the form reader), a non-empty `prompt`, `seconds` a whole number above 0.
fn parse_form_submit(form: &Form) -> Result<Submit, ProxyError> {
    let model = form.model().unwrap_or_default().to_string();
    if form.get("prompt").is_none_or(|p| p.trim().is_empty()) {
        return Err(invalid(
            "the video request needs `prompt`, a non-empty form field describing the video".into(),
        ));
    }
    let seconds = match form.get("seconds") {
        None => None,
        Some(text) => match text.trim().parse::<u32>() {
            Ok(s) if s > 0 => Some(s),
            _ => {
                return Err(invalid(format!(
                    "`seconds` must be a whole number of seconds above 0, as 8; got {text:?}"
                )));
            }
        },
    };
    Ok(Submit { model, seconds })
}

/// The length a job is reserved for when its submit names none: the
/// longest clip OpenAI's video API makes (`seconds` is 4, 8 or 12; 4 when
/// left out). Reserving the longest keeps the budget safe whatever the
/// upstream's default is; the record then spends what was produced.
const UNNAMED_JOB_SECONDS: u32 = 12;

/// How long a video job's member reservation holds without a record: the
/// job's own deadline. Jobs take minutes; one not polled to its end
/// within the hour gives its reservation back (a terminal poll after that
/// still records and spends it).
const VIDEO_RESERVATION_HOLD_MS: u64 = 60 * 60_000;

/// A job's worst cost, what a member's submit reserves (pure).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct JobEstimate {
    /// The seconds asked for, else [`UNNAMED_JOB_SECONDS`].
    seconds: u32,
    /// The priciest of the routes' per-second prices and the price
    /// table's; `None` when nothing is priced (the job reserves nothing:
    /// its record will spend nothing known either, unless the upstream
    /// bills it).
    per_second: Option<PerSecond>,
}

impl JobEstimate {
    /// The estimate of a job of `asked` seconds on routes priced
    /// `routes`, with the price table's `official` price.
    fn of(
        asked: Option<u32>,
        routes: impl IntoIterator<Item = Option<PerSecond>>,
        official: Option<PerSecond>,
    ) -> JobEstimate {
        let per_second = routes
            .into_iter()
            .chain([official])
            .flatten()
            .max_by_key(|p| p.0);
        JobEstimate {
            seconds: asked.filter(|s| *s > 0).unwrap_or(UNNAMED_JOB_SECONDS),
            per_second,
        }
    }

    /// The worst cost, USD micros.
    fn cost(self) -> u64 {
        self.per_second.map_or(0, |p| p.cost(self.seconds))
    }
}

/// What the submit loop does with an upstream's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    /// 2xx: the job is accepted.
    Accepted,
    /// The client's fault: answered as is, the next upstream would refuse too.
    ClientError,
    /// The upstream's problem (5xx, 429, its own key refused, the model
    /// unknown there): try the next one.
    Next(Outcome),
}

/// Classifies a submit answer's status (pure).
fn verdict(status: StatusCode) -> Verdict {
    match status.as_u16() {
        200..=299 => Verdict::Accepted,
        429 => Verdict::Next(Outcome::RateLimited),
        401 | 403 => Verdict::Next(Outcome::AuthInvalid),
        404 => Verdict::Next(Outcome::ClientError),
        400..=499 => Verdict::ClientError,
        _ => Verdict::Next(Outcome::ServerError),
    }
}

/// Serves a request under `/v1/videos`.
pub(crate) async fn handle(
    state: &ProxyState,
    req: Request<Incoming>,
    request_id: &str,
    started: (Instant, i64),
    member: Option<&Member>,
) -> Result<Response<ProxyBody>, ProxyError> {
    let path = req.uri().path().to_string();
    let call = classify(req.method(), &path)?;
    let Some(jobs) = state.video_jobs.get() else {
        return Err(ProxyError::new(
            ErrorCode::NoRoute,
            "video jobs need the ledger to remember which upstream accepted them; this daemon runs without one".to_string(),
        ));
    };
    match call {
        VideoCall::Submit => {
            let submitter = Submitter {
                request_id,
                started,
                member,
            };
            submit(state, jobs.as_ref(), req, submitter).await
        }
        VideoCall::Poll(id) => poll(state, jobs.as_ref(), id).await,
        VideoCall::Content(id) => {
            let query = req.uri().query().map(str::to_string);
            content(state, jobs.as_ref(), id, query.as_deref()).await
        }
    }
}

/// The request to `upstream` with its credentials.
fn upstream_request(
    upstream: &Upstream,
    method: Method,
    (suffix, query): (&str, Option<&str>),
    body: Bytes,
    content_type: Option<&HeaderValue>,
) -> Result<Request<Full<Bytes>>, ProxyError> {
    let mut url = format!(
        "{}{}{suffix}",
        upstream.base_url(),
        Protocol::Videos.upstream_suffix()
    );
    if let Some(q) = query {
        url.push('?');
        url.push_str(q);
    }
    let mut req = Request::builder().method(method).uri(url);
    if let Some(headers) = req.headers_mut() {
        fill_headers(headers, upstream, content_type);
    }
    req.body(Full::new(body)).map_err(|e| {
        ProxyError::new(
            ErrorCode::Internal,
            format!(
                "the request to upstream {} could not be built: {e}",
                upstream.id
            ),
        )
    })
}

fn fill_headers(headers: &mut HeaderMap, upstream: &Upstream, content_type: Option<&HeaderValue>) {
    if let Some(ct) = content_type {
        headers.insert(header::CONTENT_TYPE, ct.clone());
    }
    if let Some((name, value)) = upstream.auth_header() {
        headers.insert(name.clone(), value.clone());
    }
    for (name, value) in upstream.extra_headers() {
        headers.insert(name.clone(), value.clone());
    }
}

/// Sends with the request deadline; `Err` is the attempt's failure.
async fn send(
    state: &ProxyState,
    req: Request<Full<Bytes>>,
) -> Result<Response<Incoming>, (Outcome, String)> {
    let deadline = state.settings.request_deadline;
    match tokio::time::timeout(deadline, state.client.request(req)).await {
        Ok(Ok(resp)) => Ok(resp),
        Ok(Err(e)) => Err((Outcome::ConnectFailed, tb_http::error_chain(&e))),
        Err(_) => Err((
            Outcome::Deadline,
            format!("no answer within {} ms", deadline.as_millis()),
        )),
    }
}

/// Reads an upstream's (small, JSON) answer within the response limit.
async fn read_answer(state: &ProxyState, body: Incoming) -> Result<Bytes, ProxyError> {
    let limit = usize::try_from(state.settings.max_response_bytes).unwrap_or(usize::MAX);
    match Limited::new(body, limit).collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e) => Err(ProxyError::new(
            ErrorCode::UpstreamUnreachable,
            format!("reading the upstream's video job answer failed: {e}"),
        )),
    }
}

fn json_answer(status: StatusCode, body: Bytes, upstream: &Upstream) -> Response<ProxyBody> {
    let mut r = Response::new(full(body));
    *r.status_mut() = status;
    let headers = r.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Ok(v) = HeaderValue::from_str(upstream.id.as_str()) {
        headers.insert(UPSTREAM, v);
    }
    r
}

/// A submit ready to send: what was asked, the model sent upstream, the
/// routes cheapest clip first, and the body with `model` resolved.
struct Prepared {
    asked: Submit,
    model: String,
    routes: Vec<Arc<Upstream>>,
    body: Bytes,
    /// `application/json`, or the client's multipart type (its boundary).
    content_type: HeaderValue,
}

/// Reads and validates the body (a malformed one reaches no upstream),
/// plans the routes and orders them by the cost of the reference clip.
async fn prepare_submit(
    state: &ProxyState,
    req: Request<Incoming>,
) -> Result<Prepared, ProxyError> {
    let (parts, body) = req.into_parts();
    let bytes = read_request_body(&parts, body, state.settings.max_body_bytes).await?;
    let form = crate::form::of_request(Protocol::Videos, &parts.headers, &bytes)
        .await
        .map_err(|e| e.to_proxy_error())?;
    let asked = match &form {
        Some(form) => parse_form_submit(form)?,
        None => parse_submit(&bytes)?,
    };
    if let Err(why) = state.routing.can_route() {
        return Err(ProxyError::new(ErrorCode::NoRoute, why.to_string()));
    }
    let plan = state.plan(&asked.model, Protocol::Videos, false);
    if plan.routes.is_empty() {
        return Err(ProxyError::new(
            ErrorCode::ModelNotFound,
            plan.not_found_message(&asked.model, Protocol::Videos),
        ));
    }
    let mut routes: Vec<Arc<Upstream>> = plan
        .routes
        .iter()
        .map(|r| Arc::clone(&r.upstream))
        .collect();
    tb_billing::video::order_by_clip_cost(&mut routes, |u| {
        u.video_price_of(&plan.model).map(PerSecond)
    });
    // Benched upstreams (open breaker, 429 capacity block) go last, as the
    // planner puts them for every other call; the sort is stable, so the
    // price order holds within each group.
    let now = unix_ms_now();
    let views = state.routing.router().views(now);
    routes.sort_by_key(|u| {
        views.get(u.id.as_str()).is_some_and(|v| {
            v.circuit == tb_pool::CircuitState::Open
                || v.capacity_blocked_until_ms.is_some_and(|until| until > now)
        })
    });
    let content_type = match (&form, parts.headers.get(header::CONTENT_TYPE)) {
        (Some(_), Some(ct)) => ct.clone(),
        _ => HeaderValue::from_static("application/json"),
    };
    let body = if let Some(form) = &form {
        form.outbound(&bytes, &asked.model, &plan.model)?
    } else if plan.model == asked.model {
        bytes
    } else {
        let edits = BodyEdits {
            model: Some(&plan.model),
            ..BodyEdits::default()
        };
        edit_body(&bytes, edits).map_err(|e| {
            ProxyError::new(
                ErrorCode::InvalidJson,
                format!("the request body is not valid JSON: {e}"),
            )
        })?
    };
    Ok(Prepared {
        asked,
        model: plan.model,
        routes,
        body,
        content_type,
    })
}

/// The submit: each route in order until one accepts (or the client's
/// own mistake comes back). Every attempt feeds the upstream's pool health
/// like a forward-path attempt and joins the call's attempt chain; a
/// submit no route accepted is recorded at once.
async fn submit(
    state: &ProxyState,
    jobs: &dyn VideoJobs,
    req: Request<Incoming>,
    submitter: Submitter<'_>,
) -> Result<Response<ProxyBody>, ProxyError> {
    let Submitter {
        request_id,
        started,
        member,
    } = submitter;
    let prepared = prepare_submit(state, req).await?;
    // The record's id, chosen now: a member's reservation has it, so the
    // record (a refusal's now, a job's at its terminal poll) settles it.
    let record_id = uuid::Uuid::now_v7().to_string();
    if let Some(member) = member {
        admit_job(state, member, &prepared, &record_id).await?;
    }
    let mut attempts: Vec<Attempt> = Vec::new();
    let mut tried: Vec<String> = Vec::new();
    let refused = |attempts: Vec<Attempt>| Refused {
        prepared: &prepared,
        record_id: &record_id,
        request_id,
        started,
        attempts,
        member,
    };
    for upstream in &prepared.routes {
        let (attempt, resp) = match attempt_submit(state, upstream, &prepared, request_id).await {
            Ok(sent) => sent,
            Err(e) => {
                // Nothing was sent: the reservation is given back.
                state.recorder.submit(refused(attempts).record());
                return Err(e);
            }
        };
        attempts.push(attempt);
        let resp = match resp {
            Ok(resp) => resp,
            Err(detail) => {
                tried.push(format!("{}: {detail}", upstream.id));
                continue;
            }
        };
        match verdict(resp.status()) {
            Verdict::Next(_) => {
                tried.push(format!("{}: HTTP {}", upstream.id, resp.status().as_u16()));
            }
            Verdict::ClientError => {
                let status = resp.status();
                // Recorded first: the reservation is given back even when
                // the answer cannot be read.
                state.recorder.submit(refused(attempts).record());
                let answer = read_answer(state, resp.into_body()).await?;
                return Ok(json_answer(status, answer, upstream));
            }
            Verdict::Accepted => {
                let status = resp.status();
                let answer = read_answer(state, resp.into_body()).await?;
                attempts.pop();
                let accepted = Accepted {
                    upstream,
                    record_id: &record_id,
                    request_id,
                    submitted_at_ms: started.1,
                    member,
                    before: attempts,
                };
                remember(jobs, &prepared, accepted, &answer).await?;
                return Ok(json_answer(status, answer, upstream));
            }
        }
    }
    state.recorder.submit(refused(attempts).record());
    Err(ProxyError::new(
        ErrorCode::UpstreamUnreachable,
        format!(
            "no upstream accepted the video job for {}: {}",
            prepared.asked.model,
            tried.join("; ")
        ),
    ))
}

/// Who submits a job: the request and the member whose key it carries.
struct Submitter<'a> {
    request_id: &'a str,
    started: (Instant, i64),
    member: Option<&'a Member>,
}

/// A member's submit: the key allows the model, the job's worst cost fits
/// whole in what is left of the member's budget and it is within its
/// requests per minute (counted like any call). The worst cost is
/// reserved under the record's id until the job's record replaces it (or
/// a refused submit's record gives it back).
async fn admit_job(
    state: &ProxyState,
    member: &Member,
    prepared: &Prepared,
    record_id: &str,
) -> Result<(), ProxyError> {
    crate::handler::allow_model(member, &prepared.asked.model)?;
    let estimate = JobEstimate::of(
        prepared.asked.seconds,
        prepared
            .routes
            .iter()
            .map(|u| u.video_price_of(&prepared.model).map(PerSecond)),
        tb_billing::video::official_per_second(&prepared.model),
    );
    let reservation = Reservation {
        id: record_id.to_string(),
        cost_usd_micros: estimate.cost(),
        tokens: 0,
        kind: ReservationKind::VideoJob {
            hold_ms: VIDEO_RESERVATION_HOLD_MS,
        },
    };
    crate::handler::admit_member(state, member, &reservation)
        .await
        .map_err(|mut e| {
            if e.code == ErrorCode::MemberBudgetSpent
                && let Some(per_second) = estimate.per_second
            {
                e.message = format!(
                    "this video job may cost up to {} ({} s at {}/s), more than is left of the budget: {}",
                    usd_text(estimate.cost()),
                    estimate.seconds,
                    usd_text(per_second.0),
                    e.message
                );
            }
            e
        })
}

fn usd_text(micros: u64) -> String {
    tb_billing::record::usd(i64::try_from(micros).unwrap_or(i64::MAX))
}

/// Who accepted a job, for which request.
/// One submit attempt on `upstream`: sent, logged, settled in the pool;
/// the attempt for the chain and the answer (or why there is none).
async fn attempt_submit(
    state: &ProxyState,
    upstream: &Upstream,
    prepared: &Prepared,
    request_id: &str,
) -> Result<(Attempt, Result<Response<Incoming>, String>), ProxyError> {
    let attempt_started = Instant::now();
    let req = upstream_request(
        upstream,
        Method::POST,
        ("", None),
        prepared.body.clone(),
        Some(&prepared.content_type),
    )?;
    let router = state.routing.router();
    // The planner put benched upstreams last; a half-open one gets its
    // single trial here.
    let _admission = router.admit(upstream.id.as_str(), unix_ms_now());
    let (status, outcome, resp) = match send(state, req).await {
        Ok(resp) => {
            let status = resp.status();
            let outcome = match verdict(status) {
                Verdict::Next(outcome) => outcome,
                Verdict::Accepted => Outcome::Ok,
                Verdict::ClientError => Outcome::ClientError,
            };
            (Some(status), outcome, Ok(resp))
        }
        Err((outcome, detail)) => (None, outcome, Err(detail)),
    };
    let detail = resp.as_ref().err().map_or("", String::as_str);
    log_attempt(
        request_id,
        upstream,
        status,
        outcome,
        attempt_started,
        detail,
    );
    let latency_ms = u64::try_from(attempt_started.elapsed().as_millis()).unwrap_or(u64::MAX);
    let retry_after = resp
        .as_ref()
        .ok()
        .and_then(|r| r.headers().get(header::RETRY_AFTER))
        .and_then(|v| v.to_str().ok());
    settle(
        router,
        upstream.id.as_str(),
        outcome,
        retry_after,
        latency_ms,
    );
    let attempt = Attempt {
        upstream: upstream.id.to_string(),
        status: status.map(|s| s.as_u16()),
        outcome,
        error_class: (outcome != Outcome::Ok).then_some(outcome),
        latency_ms,
    };
    Ok((attempt, resp))
}

/// What one submit attempt teaches the pool, as the attempt loop's
/// `settle` does: a 429 benches the upstream until `Retry-After`, the
/// upstream's own failures (5xx, connect error, deadline, its key refused)
/// count against its breaker, and a client's mistake (or the model not
/// being there) only releases a half-open trial.
fn settle(
    router: &tb_router::Router,
    id: &str,
    outcome: Outcome,
    retry_after: Option<&str>,
    latency_ms: u64,
) {
    let now = unix_ms_now();
    if outcome == Outcome::Ok {
        router.success(id, now, tb_pool::CallMetrics::latency(latency_ms));
        return;
    }
    if outcome == Outcome::RateLimited {
        router.rate_limited(id, now, retry_after);
    }
    if tb_routing::counts_as_pool_failure(outcome) {
        router.failure(id, now, outcome);
    } else {
        router.neutral(id);
    }
}

/// A submit no route accepted (or the client's own mistake): recorded at
/// once with its attempts, no cost.
struct Refused<'a> {
    prepared: &'a Prepared,
    record_id: &'a str,
    request_id: &'a str,
    started: (Instant, i64),
    attempts: Vec<Attempt>,
    member: Option<&'a Member>,
}

impl Refused<'_> {
    fn record(self) -> CallRecord {
        let latency_ms = u64::try_from(self.started.0.elapsed().as_millis()).unwrap_or(u64::MAX);
        video_record(
            VideoCallFacts {
                id: self.record_id.to_string(),
                request_id: self.request_id,
                started_at_ms: self.started.1,
                requested_model: &self.prepared.asked.model,
                model: &self.prepared.model,
                latency_ms,
                member: self.member.map(|m| m.name.as_str()),
            },
            None,
            self.attempts,
            &Costing::default(),
        )
    }
}

/// Who accepted a job, for which request, after which refusals.
struct Accepted<'a> {
    upstream: &'a Upstream,
    record_id: &'a str,
    request_id: &'a str,
    submitted_at_ms: i64,
    member: Option<&'a Member>,
    before: Vec<Attempt>,
}

/// Maps the accepted job's id to its upstream in the ledger.
async fn remember(
    jobs: &dyn VideoJobs,
    prepared: &Prepared,
    accepted: Accepted<'_>,
    answer: &[u8],
) -> Result<(), ProxyError> {
    let upstream = accepted.upstream;
    let view = JobView::parse(answer).map_err(|e| {
        ProxyError::new(
            ErrorCode::UpstreamUnreachable,
            format!("upstream {} accepted the video job but its answer is unusable ({e}); the job may exist there", upstream.id),
        )
    })?;
    let row = VideoJobRow {
        job_id: view.id.clone(),
        upstream_id: upstream.id.to_string(),
        request_id: accepted.request_id.to_string(),
        requested_model: prepared.asked.model.clone(),
        model: prepared.model.clone(),
        requested_seconds: prepared.asked.seconds,
        submitted_at_ms: accepted.submitted_at_ms,
        member: accepted.member.map(|m| m.name.clone()),
        submit_attempts: accepted.before,
        record_id: Some(accepted.record_id.to_string()),
    };
    if let Err(e) = jobs.save(row).await {
        tracing::error!(target: "video.job_unsaved", request_id = %accepted.request_id, job = %view.id, upstream = %upstream.id, error = %e, "the video job was accepted but not stored; polls through tokenbuddy will not find it");
    }
    Ok(())
}

fn log_attempt(
    request_id: &str,
    upstream: &Upstream,
    status: Option<StatusCode>,
    outcome: Outcome,
    started: Instant,
    detail: &str,
) {
    tracing::info!(
        target: "video.submit",
        request_id = %request_id,
        upstream = %upstream.id,
        status = status.map_or(0, |s| s.as_u16()),
        outcome = outcome.as_str(),
        ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        detail = %detail,
        "video submit attempt"
    );
}

/// The job and the upstream that accepted it.
async fn locate(
    state: &ProxyState,
    jobs: &dyn VideoJobs,
    id: &str,
) -> Result<(VideoJobRow, Arc<Upstream>), ProxyError> {
    let job = jobs.find(id.to_string()).await.map_err(|e| {
        ProxyError::new(
            ErrorCode::Internal,
            format!("looking up video job {id} in the ledger failed: {e}"),
        )
    })?;
    let Some(job) = job else {
        return Err(ProxyError::new(
            ErrorCode::VideoNotFound,
            format!(
                "no video job {id} was submitted through tokenbuddy; submit it with POST /v1/videos"
            ),
        ));
    };
    let table = state.routing.table();
    let upstream = table
        .upstreams()
        .iter()
        .find(|u| u.id.as_str() == job.upstream_id)
        .cloned();
    let Some(upstream) = upstream else {
        return Err(ProxyError::new(
            ErrorCode::UpstreamUnreachable,
            format!(
                "video job {id} was accepted by upstream {}, which is no longer configured; restore it in the config to reach the job",
                job.upstream_id
            ),
        ));
    };
    Ok((job, upstream))
}

/// `GET` on the upstream that holds job `id`.
async fn ask_holder(
    state: &ProxyState,
    upstream: &Upstream,
    id: &str,
    suffix: &str,
    query: Option<&str>,
) -> Result<Response<Incoming>, ProxyError> {
    let req = upstream_request(upstream, Method::GET, (suffix, query), Bytes::new(), None)?;
    send(state, req).await.map_err(|(_, detail)| {
        ProxyError::new(
            ErrorCode::UpstreamUnreachable,
            format!(
                "upstream {} (which holds video job {id}) could not be reached: {detail}",
                upstream.id
            ),
        )
    })
}

async fn poll(
    state: &ProxyState,
    jobs: &dyn VideoJobs,
    id: &str,
) -> Result<Response<ProxyBody>, ProxyError> {
    let (job, upstream) = locate(state, jobs, id).await?;
    let resp = ask_holder(state, &upstream, id, &format!("/{id}"), None).await?;
    let status = resp.status();
    let answer = read_answer(state, resp.into_body()).await?;
    if status.is_success()
        && let Ok(view) = JobView::parse(&answer)
        && view.status.is_terminal()
    {
        record_terminal(state, jobs, &job, &upstream, &view).await;
    }
    Ok(json_answer(status, answer, &upstream))
}

/// Writes the job's one call record, if this poll is the first to see it
/// finished.
async fn record_terminal(
    state: &ProxyState,
    jobs: &dyn VideoJobs,
    job: &VideoJobRow,
    upstream: &Upstream,
    view: &JobView,
) {
    let now = unix_ms_now();
    match jobs.claim_record(job.job_id.clone(), now).await {
        Ok(true) => {}
        Ok(false) => return,
        Err(e) => {
            tracing::error!(target: "video.record_unclaimed", job = %job.job_id, error = %e, "could not mark the video job recorded; not recording it now so it is never recorded twice");
            return;
        }
    }
    let plan = state.plan(&job.requested_model, Protocol::Videos, false);
    let plan_prices: Vec<PerSecond> = plan
        .routes
        .iter()
        .filter_map(|r| r.upstream.video_price_of(&job.model).map(PerSecond))
        .collect();
    let record = terminal_record(job, upstream, view, &plan_prices, now);
    state.recorder.submit(record);
}

/// The call record of a finished job (pure but for the id): the submit's
/// refused attempts, then the accepting upstream's.
fn terminal_record(
    job: &VideoJobRow,
    upstream: &Upstream,
    view: &JobView,
    plan_prices: &[PerSecond],
    now_ms: i64,
) -> CallRecord {
    let (seconds, basis) = billed_seconds(view.seconds, job.requested_seconds);
    let costing = cost_video(&VideoBill {
        seconds,
        winner: upstream.video_price_of(&job.model).map(PerSecond),
        official: tb_billing::video::official_per_second(&job.model),
        plan: plan_prices,
        reported_usd_micros: view.reported_cost_usd_micros,
    });
    crate::call::warn_if_outlier(&job.request_id, &costing);
    tracing::info!(target: "video.recorded", job = %job.job_id, seconds, basis = basis.as_str(), "video job billed");
    let ok = view.status == JobStatus::Completed;
    let latency_ms = u64::try_from(now_ms.saturating_sub(job.submitted_at_ms)).unwrap_or(0);
    let mut attempts = job.submit_attempts.clone();
    attempts.push(Attempt {
        upstream: upstream.id.to_string(),
        status: Some(200),
        outcome: if ok {
            Outcome::Ok
        } else {
            Outcome::ServerError
        },
        error_class: (!ok).then_some(Outcome::ServerError),
        latency_ms,
    });
    video_record(
        VideoCallFacts {
            id: job
                .record_id
                .clone()
                .unwrap_or_else(|| uuid::Uuid::now_v7().to_string()),
            request_id: &job.request_id,
            started_at_ms: job.submitted_at_ms,
            requested_model: &job.requested_model,
            model: &job.model,
            latency_ms,
            member: job.member.as_deref(),
        },
        Some((upstream, ok)),
        attempts,
        &costing,
    )
}

/// What every video call record says about the call itself.
struct VideoCallFacts<'a> {
    /// The record's id (a member's reservation has the same).
    id: String,
    request_id: &'a str,
    started_at_ms: i64,
    requested_model: &'a str,
    model: &'a str,
    latency_ms: u64,
    /// The submitter (stored with the job): whoever polls the terminal
    /// state, the record is the submitter's.
    member: Option<&'a str>,
}

/// A video call record: `winner` is the accepting upstream and whether
/// its job completed, `None` when no route accepted the submit.
fn video_record(
    call: VideoCallFacts<'_>,
    winner: Option<(&Upstream, bool)>,
    attempts: Vec<Attempt>,
    costing: &Costing,
) -> CallRecord {
    let ok = winner.is_some_and(|(_, ok)| ok);
    let signed = |v: Option<u64>| v.map(|v| i64::try_from(v).unwrap_or(i64::MAX));
    CallRecord {
        id: call.id,
        request_id: call.request_id.to_string(),
        started_at_ms: call.started_at_ms,
        endpoint: tb_billing::record::endpoint_label(Protocol::Videos).to_string(),
        protocol: Protocol::Videos,
        upstream_protocol: None,
        requested_model: call.requested_model.to_string(),
        model: call.model.to_string(),
        stream: false,
        ok,
        outcome: if ok {
            CallOutcome::Ok
        } else {
            CallOutcome::Failed
        },
        winner: winner.map(|(u, _)| u.id.to_string()),
        failed_over: attempts.len() > 1,
        attempts,
        latency_ms: call.latency_ms,
        ttft_ms: None,
        input_tokens: None,
        cached_input_tokens: None,
        cache_write_tokens: None,
        cache_write_1h_tokens: None,
        output_tokens: None,
        reasoning_tokens: None,
        tokens_per_second: None,
        cost_usd_micros: signed(costing.cost_usd_micros),
        est_cost_usd_micros: signed(costing.est_cost_usd_micros),
        baseline_usd_micros: signed(costing.baseline_usd_micros),
        baseline_kind: costing.baseline_kind,
        saved_usd_micros: signed(costing.saved_usd_micros),
        cached_saving_usd_micros: None,
        settled_credit_micros: None,
        balance_source: BalanceSource::SelfFundedProvider,
        remaining_credit_micros: None,
        billing_unit: BillingUnit::Seconds,
        image_count: None,
        image_size: None,
        image_quality: None,
        image_format: None,
        image_cost_per_image_usd_micros: None,
        image_output_tokens: None,
        image_output_cost_usd_micros: None,
        usage_missing: false,
        empty_completion: false,
        unpriced: costing.unpriced,
        price_tier: None,
        price_drift_ppm: signed(costing.price_drift_ppm),
        prompt_hash: None,
        trace_parent: None,
        member: call.member.map(str::to_owned),
    }
}

async fn content(
    state: &ProxyState,
    jobs: &dyn VideoJobs,
    id: &str,
    query: Option<&str>,
) -> Result<Response<ProxyBody>, ProxyError> {
    let (_, upstream) = locate(state, jobs, id).await?;
    let suffix = format!("/{id}/content");
    let resp = ask_holder(state, &upstream, id, &suffix, query).await?;
    let (parts, body) = resp.into_parts();
    // Streamed through chunk by chunk: a video is never held whole.
    let idle = state.settings.stream_idle_timeout;
    let body = body
        .map_err(|e| Box::new(e) as crate::BoxError)
        .boxed_unsync();
    let mut out = Response::new(with_idle_timeout(body, idle));
    *out.status_mut() = parts.status;
    for name in [
        header::CONTENT_TYPE,
        header::CONTENT_LENGTH,
        header::CONTENT_DISPOSITION,
    ] {
        if let Some(v) = parts.headers.get(&name) {
            out.headers_mut().insert(name, v.clone());
        }
    }
    if let Ok(v) = HeaderValue::from_str(upstream.id.as_str()) {
        out.headers_mut().insert(UPSTREAM, v);
    }
    Ok(out)
}

/// The body, ended with an error when no chunk comes for `idle` (a stalled
/// download must not hold the client forever).
fn with_idle_timeout(body: ProxyBody, idle: Duration) -> ProxyBody {
    let stream = futures_util::stream::unfold(body, move |mut body| async move {
        match tokio::time::timeout(idle, body.frame()).await {
            Ok(Some(frame)) => Some((frame, body)),
            Ok(None) => None,
            Err(_) => Some((
                Err(format!("the upstream sent nothing for {} ms", idle.as_millis()).into()),
                body,
            )),
        }
    });
    http_body_util::StreamBody::new(stream).boxed_unsync()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_and_methods_are_classified() {
        let get = Method::GET;
        let post = Method::POST;
        assert_eq!(classify(&post, "/v1/videos").unwrap(), VideoCall::Submit);
        assert_eq!(
            classify(&get, "/v1/videos/video_1").unwrap(),
            VideoCall::Poll("video_1")
        );
        assert_eq!(
            classify(&get, "/v1/videos/video_1/content").unwrap(),
            VideoCall::Content("video_1")
        );
        assert_eq!(
            classify(&get, "/v1/videos").unwrap_err().code,
            ErrorCode::MethodNotAllowed
        );
        assert_eq!(
            classify(&post, "/v1/videos/v").unwrap_err().code,
            ErrorCode::MethodNotAllowed
        );
        assert_eq!(
            classify(&get, "/v1/videos/a/b/c").unwrap_err().code,
            ErrorCode::UnknownRoute
        );
        assert_eq!(
            classify(&get, "/v1/videos/a%2Fb").unwrap_err().code,
            ErrorCode::VideoNotFound
        );
    }

    #[test]
    fn submit_bodies_are_validated_with_precise_messages() {
        let ok =
            parse_submit(br#"{"model":"sora-2","prompt":"a cat","seconds":"8","size":"720x1280"}"#)
                .unwrap();
        assert_eq!(
            ok,
            Submit {
                model: "sora-2".into(),
                seconds: Some(8)
            }
        );
        let n = parse_submit(br#"{"model":"sora-2","prompt":"a cat","seconds":4}"#).unwrap();
        assert_eq!(n.seconds, Some(4));
        let cases: &[(&[u8], ErrorCode, &str)] = &[
            (b"not json", ErrorCode::InvalidJson, "not a JSON object"),
            (br#"[1]"#, ErrorCode::InvalidJson, "not a JSON object"),
            (br#"{"prompt":"p"}"#, ErrorCode::MissingModel, "`model`"),
            (
                br#"{"model":7,"prompt":"p"}"#,
                ErrorCode::MissingModel,
                "`model`",
            ),
            (br#"{"model":"m"}"#, ErrorCode::InvalidField, "`prompt`"),
            (
                br#"{"model":"m","prompt":" "}"#,
                ErrorCode::InvalidField,
                "`prompt`",
            ),
            (
                br#"{"model":"m","prompt":"p","seconds":"eight"}"#,
                ErrorCode::InvalidField,
                "\"eight\"",
            ),
            (
                br#"{"model":"m","prompt":"p","seconds":0}"#,
                ErrorCode::InvalidField,
                "`seconds`",
            ),
            (
                br#"{"model":"m","prompt":"p","size":[1]}"#,
                ErrorCode::InvalidField,
                "`size`",
            ),
        ];
        for (body, code, needle) in cases {
            let e = parse_submit(body).unwrap_err();
            assert_eq!(e.code, *code, "{}", String::from_utf8_lossy(body));
            assert!(e.message.contains(needle), "{}", e.message);
        }
    }

    #[test]
    fn a_job_reserves_its_asked_seconds_at_the_priciest_price() {
        let p = |micros| Some(PerSecond(micros));
        // 8 s at the dearest of $0.05/s, $0.10/s (routes) and $0.07/s (table).
        let e = JobEstimate::of(Some(8), [p(50_000), None, p(100_000)], p(70_000));
        assert_eq!((e.seconds, e.per_second), (8, p(100_000)));
        assert_eq!(e.cost(), 800_000);
        // The table's price counts when it is the dearest (an upstream
        // that bills the list price through an unpriced route).
        let e = JobEstimate::of(Some(4), [None, p(50_000)], p(300_000));
        assert_eq!(e.cost(), 1_200_000);
        // No `seconds`: the longest clip the API makes.
        let e = JobEstimate::of(None, [p(100_000)], None);
        assert_eq!(e.seconds, UNNAMED_JOB_SECONDS);
        assert_eq!(e.cost(), 1_200_000);
        // Nothing priced: nothing to reserve.
        let e = JobEstimate::of(Some(8), [None, None], None);
        assert_eq!((e.per_second, e.cost()), (None, 0));
        // A huge length saturates instead of wrapping.
        assert_eq!(
            JobEstimate::of(Some(u32::MAX), [p(u64::MAX)], None).cost(),
            u64::MAX
        );
    }

    #[test]
    fn submit_answers_decide_failover() {
        assert_eq!(verdict(StatusCode::OK), Verdict::Accepted);
        assert_eq!(verdict(StatusCode::BAD_REQUEST), Verdict::ClientError);
        assert_eq!(
            verdict(StatusCode::UNPROCESSABLE_ENTITY),
            Verdict::ClientError
        );
        assert_eq!(
            verdict(StatusCode::TOO_MANY_REQUESTS),
            Verdict::Next(Outcome::RateLimited)
        );
        assert_eq!(
            verdict(StatusCode::UNAUTHORIZED),
            Verdict::Next(Outcome::AuthInvalid)
        );
        assert_eq!(
            verdict(StatusCode::SERVICE_UNAVAILABLE),
            Verdict::Next(Outcome::ServerError)
        );
    }
}
