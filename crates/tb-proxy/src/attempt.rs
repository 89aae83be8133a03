//! The attempt loop: one request's walk over its [`RoutePlan`], as an
//! explicit state machine (routing.md, "Failover"; proxy.md, "Errors").
//!
//! ```text
//!          ┌──────────── retry same / next route ─────────────┐
//!          ▼                                                  │
//!   prepare ──▶ send ──▶ classify ──▶ answer held ──▶ Winner  │
//!      │ no credit         │ failed                            │
//!      └───────────────────┴──▶ Failure ──▶ settle ──▶ decide ┘
//!                                                       └──▶ Exhausted
//! ```
//!
//! Each stage is one method with one job. What an attempt teaches is fed
//! from exactly one place: pool health and capacity blocks, and the seller
//! token's fate (dropped, dry), in [`AttemptLoop::settle`]; stickiness and
//! success metrics belong to the commit ([`crate::commit`]), settlement to
//! the end of the committed body. The upstream is reached through
//! [`Transport`] and credit through [`Credit`], so the loop is unit-tested
//! without sockets against a scripted upstream (see the tests below).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, header};
use http_body_util::{BodyExt, Either, Full};
use tb_billing::record::Attempt;
use tb_billing::usage::{self, RequestFacts, UsageReport};
use tb_domain::{Outcome, Protocol, ProviderKind};
use tb_router::{Route, RoutePlan, Router, Upstream};
use tb_routing::{Action, AttemptState, BodyHint, TransportFailure};
use tb_seller::{Lease, is_insufficient_funds};

use crate::headers::ANTHROPIC_VERSION;
use crate::hold::{Buffered, Held as HeldStream, buffer_json, hold_stream};
use crate::tap::ResponseTap;

const DEADLINE_MS: HeaderName = HeaderName::from_static("x-tokenbuddy-deadline-ms");

/// A boxed future, for the object-safe [`Credit`].
pub(crate) type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Why a request never got a response head.
#[derive(Debug, Clone)]
pub(crate) struct SendError {
    /// The connection could not be made (refused, DNS, TLS), as opposed to
    /// one that broke after it was made.
    pub connect: bool,
    /// The error and its causes.
    pub detail: String,
}

/// How the loop reaches upstreams: the pooled HTTP client in the daemon, a
/// scripted upstream in tests.
pub(crate) trait Transport: Send + Sync {
    /// The answer's body.
    type Body: http_body::Body<Data = Bytes, Error: std::fmt::Display + Into<crate::BoxError>>
        + Send
        + Unpin
        + 'static;

    /// Sends one request and waits for the response head.
    fn send(
        &self,
        req: Request<Full<Bytes>>,
    ) -> impl Future<Output = Result<Response<Self::Body>, SendError>> + Send;
}

impl Transport for crate::UpstreamClient {
    type Body = hyper::body::Incoming;

    async fn send(&self, req: Request<Full<Bytes>>) -> Result<Response<Self::Body>, SendError> {
        self.request(req).await.map_err(|e| SendError {
            connect: e.is_connect(),
            detail: tb_http::error_chain(&e),
        })
    }
}

/// Why an attempt got no seller token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NoCredit {
    /// The attempt's detail (never the token).
    pub detail: String,
    /// The user must pay first (a wallet purchase waits for payment):
    /// `detail` says where, and the request is answered `402`.
    pub payment_due: bool,
}

impl From<String> for NoCredit {
    fn from(detail: String) -> NoCredit {
        NoCredit {
            detail,
            payment_due: false,
        }
    }
}

/// Seller credit as the loop needs it: a token per attempt, and what to do
/// with it when the seller refuses it or when the answer settles.
pub(crate) trait Credit: Send + Sync {
    /// A token for `upstream` (a seller at `seller_url`): the cached one,
    /// or a new purchase when `force_new` or none is usable. The error is
    /// the attempt's detail (never the token).
    fn acquire<'a>(
        &'a self,
        upstream: &'a Upstream,
        seller_url: &'a str,
        model: &'a str,
        force_new: bool,
    ) -> BoxFuture<'a, Result<Lease, NoCredit>>;
    /// The seller refused the token (`auth_invalid`): never use it again.
    fn drop_lease(&self, lease: &Lease);
    /// The token's credit ran out (`insufficient_funds`).
    fn mark_dry(&self, lease: &Lease);
    /// The seller's settlement of a committed answer.
    fn settle(&self, lease: &Lease, settled_micros: Option<u64>, remaining_micros: Option<u64>);
    /// The walk fails over away from the seller the token is for: credit
    /// bought within the fresh-purchase window counts as wasted.
    fn abandon(&self, lease: &Lease);
}

/// What every attempt of one request shares: the plan, the body and the
/// limits. Immutable for the whole walk.
pub(crate) struct Ctx<'a> {
    pub protocol: Protocol,
    pub plan: &'a RoutePlan,
    /// The body sent upstream on a native route (model rewritten, usage
    /// asked for).
    pub body: Bytes,
    /// The bodies for translated routes, and what their answers need.
    pub translations: &'a crate::translation::Translations,
    /// The client's headers as forwarded (hop-by-hop and auth removed).
    pub base_headers: HeaderMap,
    pub query: Option<&'a str>,
    pub facts: &'a RequestFacts,
    /// The daemon asked a chat stream for usage (strip it on the way back).
    pub add_usage: bool,
    pub request_id: &'a str,
    pub started: Instant,
    pub head_deadline: Duration,
    pub idle_timeout: Duration,
    pub max_response_bytes: u64,
}

/// The loop's collaborators.
pub(crate) struct Env<'a, T> {
    pub transport: &'a T,
    pub router: &'a Router,
    pub credit: Option<&'a Arc<dyn Credit>>,
}

/// How one attempt ended, for `x-tokenbuddy-attempts`, the call record and
/// the final error message.
#[derive(Debug, Clone)]
pub(crate) struct AttemptRecord {
    pub upstream: String,
    /// The upstream's base URL, for error messages (holds no secret).
    pub location: String,
    pub status: Option<u16>,
    pub outcome: Outcome,
    pub detail: String,
    pub latency_ms: u64,
}

impl AttemptRecord {
    /// The ledger's form of the attempt.
    pub(crate) fn to_attempt(&self) -> Attempt {
        Attempt {
            upstream: self.upstream.clone(),
            status: self.status,
            outcome: self.outcome,
            error_class: (self.outcome != Outcome::Ok).then_some(self.outcome),
            latency_ms: self.latency_ms,
        }
    }

    fn write_header_part(&self, out: &mut String) {
        use std::fmt::Write as _;
        // Writing into a `String` cannot fail.
        let _ = match self.status {
            Some(s) => write!(out, "{}:{s}|{}", self.upstream, self.outcome),
            None => write!(out, "{}:-|{}", self.upstream, self.outcome),
        };
    }
}

/// The `x-tokenbuddy-attempts` value: `upstream:status|outcome,…`. Built
/// in one buffer: it goes on every response.
pub(crate) fn attempts_header(attempts: &[AttemptRecord]) -> String {
    let mut out = String::with_capacity(attempts.len() * 32);
    for (i, attempt) in attempts.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        attempt.write_header_part(&mut out);
    }
    out
}

/// An error answer kept in case it becomes the final response.
pub(crate) struct KeptAnswer {
    pub head: http::response::Parts,
    pub body: Bytes,
}

/// What was read of an answer before committing to it.
pub(crate) struct Held {
    pub tap: ResponseTap,
    pub prefix: Bytes,
    pub ttft: Option<Duration>,
}

/// The rest of a committed answer after its held prefix: the upstream's
/// body still streaming, or bytes already in hand.
pub(crate) type Rest<B> = Either<B, Full<Bytes>>;

/// The answer the loop committed to.
pub(crate) struct Winner<B> {
    /// Index of its route in the plan.
    pub route: usize,
    pub head: http::response::Parts,
    pub held: Held,
    pub rest: Rest<B>,
    /// Time to the response head.
    pub head_ms: u64,
    /// The seller token it was paid with.
    pub lease: Option<Lease>,
}

/// One failed attempt: its outcome and what to keep of it.
struct Failure {
    outcome: Outcome,
    status: Option<u16>,
    detail: String,
    kept: Option<KeptAnswer>,
    /// A 429's `Retry-After`.
    retry_after: Option<String>,
}

impl Failure {
    fn new(outcome: Outcome, detail: impl Into<String>) -> Failure {
        Failure {
            outcome,
            status: None,
            detail: detail.into(),
            kept: None,
            retry_after: None,
        }
    }
}

/// How one attempt went.
enum Step<B> {
    Answered(Winner<B>),
    Failed(Failure, Option<Lease>, u64),
}

/// Where the walk stands: the route being tried, the one-shot retries used
/// on it, and every attempt so far.
pub(crate) struct Walk {
    /// Index of the route being tried.
    next: usize,
    retried_same: bool,
    bought_after_dry: bool,
    /// Buy a new token before the next attempt (after a dry one).
    force_new: bool,
    pub attempts: Vec<AttemptRecord>,
    /// Error answers, one slot per attempt (proxy.md's final-answer rule).
    pub answers: Vec<Option<KeptAnswer>>,
    /// Time spent waiting on upstreams and purchases: what remains of the
    /// request's time is the daemon's own overhead.
    pub upstream_wait: Duration,
    /// Wallet payments the user must make before a seller can serve (one
    /// message each, naming where to pay).
    pub payments_due: Vec<String>,
}

impl Walk {
    fn new(routes: usize) -> Walk {
        Walk {
            next: 0,
            retried_same: false,
            bought_after_dry: false,
            force_new: false,
            attempts: Vec::with_capacity(routes),
            answers: Vec::with_capacity(routes),
            upstream_wait: Duration::ZERO,
            payments_due: Vec::new(),
        }
    }

    fn next_route(&mut self) {
        self.next += 1;
        self.retried_same = false;
        self.bought_after_dry = false;
        self.force_new = false;
    }
}

/// How the walk ended. Returned once per request and moved straight into
/// the response stage: boxing the big variant would only add an allocation.
#[allow(clippy::large_enum_variant)]
pub(crate) enum End<B> {
    /// An answer to stream back.
    Commit(Winner<B>, Walk),
    /// Every route was tried (or one failed fast): answer per proxy.md.
    Exhausted(Walk),
}

/// The attempt loop for one request.
pub(crate) struct AttemptLoop<'a, T> {
    ctx: &'a Ctx<'a>,
    env: Env<'a, T>,
}

impl<'a, T: Transport> AttemptLoop<'a, T> {
    pub(crate) fn new(ctx: &'a Ctx<'a>, env: Env<'a, T>) -> Self {
        AttemptLoop { ctx, env }
    }

    /// Walks the plan until an answer is committed or the routes run out.
    /// `on_attempt` sees every failed attempt as it is recorded.
    pub(crate) async fn run(self, mut on_attempt: impl FnMut(&AttemptRecord)) -> End<T::Body> {
        let mut walk = Walk::new(self.ctx.plan.routes.len());
        while let Some(route) = self.ctx.plan.routes.get(walk.next) {
            match self.attempt(route, &mut walk).await {
                Step::Answered(winner) => return End::Commit(winner, walk),
                Step::Failed(failure, lease, latency_ms) => {
                    let action = self.decide(&failure, &walk, lease.is_some());
                    // Before `settle`, which may drop a refused token: the
                    // credit left on it is what the failover wastes. Giving
                    // up after the last route is no failover.
                    let routes_left = self.ctx.plan.routes.len() - walk.next - 1;
                    if let (Action::FailoverNext, Some(lease), Some(credit), 1..) =
                        (action, lease.as_ref(), self.env.credit, routes_left)
                    {
                        credit.abandon(lease);
                    }
                    self.settle(route, &failure, lease.as_ref());
                    let record = AttemptRecord {
                        upstream: route.upstream.id.to_string(),
                        location: route.upstream.base_url().to_string(),
                        status: failure.status,
                        outcome: failure.outcome,
                        detail: failure.detail,
                        latency_ms,
                    };
                    on_attempt(&record);
                    walk.attempts.push(record);
                    walk.answers.push(failure.kept);
                    if !self.advance(action, &mut walk, route).await {
                        break;
                    }
                }
            }
        }
        End::Exhausted(walk)
    }

    /// One attempt: prepare (admission, credit, request), send, classify.
    async fn attempt(&self, route: &Route, walk: &mut Walk) -> Step<T::Body> {
        let upstream = &route.upstream;
        let now = crate::call::unix_ms_now();
        // The planner put benched upstreams last; a half-open one gets its
        // single trial here.
        let _admission = self.env.router.admit(upstream.id.as_str(), now);
        let buying = Instant::now();
        let lease = self.credit_for(upstream, walk.force_new).await;
        walk.upstream_wait += buying.elapsed();
        walk.force_new = false;
        let lease = match lease {
            Ok(lease) => lease,
            Err(NoCredit {
                detail,
                payment_due,
            }) => {
                if payment_due {
                    walk.payments_due.push(detail.clone());
                }
                tracing::warn!(target: "route.attempt_failed", upstream = %upstream.id, class = "purchase_failed", error = %detail, "no seller token");
                return Step::Failed(Failure::new(Outcome::PurchaseFailed, detail), None, 0);
            }
        };
        let req = match self.request(route, lease.as_ref()) {
            Ok(req) => req,
            Err(detail) => {
                return Step::Failed(Failure::new(Outcome::ConnectFailed, detail), lease, 0);
            }
        };
        let sent = Instant::now();
        let step = self.send_and_classify(req, walk.next, lease).await;
        walk.upstream_wait += sent.elapsed();
        match step {
            Step::Failed(failure, lease, _) => {
                let latency_ms = millis(sent.elapsed());
                tracing::warn!(target: "route.attempt_failed", upstream = %upstream.id, class = %failure.outcome, status = ?failure.status, error = %failure.detail, "upstream attempt failed");
                Step::Failed(failure, lease, latency_ms)
            }
            answered => answered,
        }
    }

    /// The seller token for this attempt (`None` for a manual provider).
    async fn credit_for(
        &self,
        upstream: &Upstream,
        force_new: bool,
    ) -> Result<Option<Lease>, NoCredit> {
        let Some(seller_url) = upstream.seller_url() else {
            return Ok(None);
        };
        let Some(credit) = self.env.credit else {
            return Err(NoCredit::from(
                "marketplace routing is not configured".to_owned(),
            ));
        };
        credit
            .acquire(upstream, seller_url, &self.ctx.plan.model, force_new)
            .await
            .map(Some)
    }

    /// The upstream request: the client's headers, this upstream's auth
    /// (or the seller token), its extra headers.
    fn request(
        &self,
        route: &Route,
        lease: Option<&Lease>,
    ) -> Result<Request<Full<Bytes>>, String> {
        let upstream = &route.upstream;
        let translated = self.ctx.translations.body(route.protocol);
        // A query string means something only to the protocol it was
        // written for (`?beta=true`).
        let query = self.ctx.query.filter(|_| translated.is_none());
        let uri = upstream
            .url(route.protocol, query)
            .map_err(|e| format!("cannot build the upstream URL: {e}"))?;
        let mut headers = self.ctx.base_headers.clone();
        crate::headers::anthropic_headers(&mut headers, upstream, translated.is_some());
        if let Some((name, value)) = upstream.auth_header() {
            headers.insert(name.clone(), value.clone());
        }
        if let Some(lease) = lease {
            if let Ok(mut v) = HeaderValue::from_str(&format!("Bearer {}", lease.token.expose())) {
                v.set_sensitive(true);
                headers.insert(header::AUTHORIZATION, v);
            }
            headers.insert(
                DEADLINE_MS,
                HeaderValue::from(millis(self.ctx.head_deadline)),
            );
        }
        let speaks_messages =
            upstream.kind == ProviderKind::Anthropic || route.protocol == Protocol::Messages;
        if speaks_messages && !headers.contains_key(ANTHROPIC_VERSION) {
            headers.insert(ANTHROPIC_VERSION, HeaderValue::from_static("2023-06-01"));
        }
        for (k, v) in upstream.extra_headers() {
            headers.insert(k.clone(), v.clone());
        }
        let body = translated.unwrap_or(&self.ctx.body).clone();
        let mut req = Request::new(Full::new(body));
        *req.method_mut() = Method::POST;
        *req.uri_mut() = uri;
        *req.headers_mut() = headers;
        Ok(req)
    }

    /// Sends within the head deadline and sorts what came back.
    async fn send_and_classify(
        &self,
        req: Request<Full<Bytes>>,
        at: usize,
        lease: Option<Lease>,
    ) -> Step<T::Body> {
        let routes = &self.ctx.plan.routes;
        let Some(route) = routes.get(at) else {
            return Step::Failed(Failure::new(Outcome::ServerError, "no route"), lease, 0);
        };
        let routes_left = routes.len() - at - 1;
        let sent = Instant::now();
        let deadline = self.ctx.head_deadline;
        let resp = match tokio::time::timeout(deadline, self.env.transport.send(req)).await {
            Err(_) => {
                let detail = format!("no response head within {} ms", deadline.as_millis());
                return Step::Failed(Failure::new(Outcome::Deadline, detail), lease, 0);
            }
            Ok(Err(e)) => {
                let transport = if e.connect {
                    TransportFailure::Connect
                } else {
                    TransportFailure::Reset
                };
                let outcome = tb_routing::classify(None, Some(transport), BodyHint::default());
                return Step::Failed(Failure::new(outcome, e.detail), lease, 0);
            }
            Ok(Ok(resp)) => resp,
        };
        let head_ms = millis(sent.elapsed());
        if !resp.status().is_success() {
            let failure = self.error_answer(resp, route, lease.as_ref()).await;
            return Step::Failed(failure, lease, 0);
        }
        let status = resp.status().as_u16();
        match self.hold(resp, route, routes_left).await {
            Ok((head, held, rest)) => Step::Answered(Winner {
                route: at,
                head,
                held,
                rest,
                head_ms,
                lease,
            }),
            Err(mut failure) => {
                failure.status = Some(status);
                Step::Failed(failure, lease, 0)
            }
        }
    }

    /// An error answer: read (64 KiB at most), redacted of this attempt's
    /// credentials, classified, and kept for the final-answer rule.
    async fn error_answer(
        &self,
        resp: Response<T::Body>,
        route: &Route,
        lease: Option<&Lease>,
    ) -> Failure {
        let upstream = &route.upstream;
        let status = resp.status().as_u16();
        let (mut head, body) = resp.into_parts();
        let mut error_body = read_error_body(body, self.ctx.head_deadline).await;
        if let Some(clean) = redact_secrets(&error_body, upstream, lease) {
            // The length changed: hyper sets it from the new body.
            head.headers.remove(header::CONTENT_LENGTH);
            error_body = clean;
        }
        let hint = BodyHint {
            billing_wording: is_insufficient_funds(status, &error_body),
        };
        let outcome = tb_routing::classify(Some(status), None, hint);
        if self.ctx.translations.answer(route.protocol).is_some() {
            // Kept in the client's shape, in case it becomes the answer.
            let troute = crate::translation::route_of(self.ctx.protocol, route);
            error_body = Bytes::from(tb_translate::translate_error(&troute, status, &error_body));
            head.headers.remove(header::CONTENT_LENGTH);
            head.headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
        }
        let retry_after = head
            .headers
            .get(header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        Failure {
            outcome,
            status: Some(status),
            detail: format!("HTTP {status}"),
            kept: Some(KeptAnswer {
                head,
                body: error_body,
            }),
            retry_after,
        }
    }

    /// Holds a 2xx answer until it is safe to commit: a stream until its
    /// first content event, a JSON answer until it is whole. An answer with
    /// nothing in it fails over while routes are left.
    async fn hold(
        &self,
        resp: Response<T::Body>,
        route: &Route,
        routes_left: usize,
    ) -> Result<(http::response::Parts, Held, Rest<T::Body>), Failure> {
        let (head, body) = resp.into_parts();
        let (held, rest) = if is_event_stream(&head.headers) {
            self.hold_stream(body, route, routes_left).await?
        } else {
            self.hold_json(body, route, routes_left).await?
        };
        Ok((head, held, rest))
    }

    async fn hold_stream(
        &self,
        body: T::Body,
        route: &Route,
        routes_left: usize,
    ) -> Result<(Held, Rest<T::Body>), Failure> {
        let ctx = self.ctx;
        // The taps read the upstream's own stream (usage, settlement,
        // content); the translator then writes the client's.
        let mut tap = match ctx.translations.answer(route.protocol) {
            None => ResponseTap::sse(ctx.protocol, ctx.facts, ctx.add_usage),
            Some(answer) => {
                let troute = crate::translation::route_of(ctx.protocol, route);
                let translator =
                    tb_translate::StreamTranslator::with_context(&troute, &ctx.plan.model, answer);
                ResponseTap::sse(route.protocol, ctx.facts, false).translated(translator)
            }
        };
        match hold_stream(body, &mut tap, ctx.idle_timeout, ctx.started).await {
            HeldStream::Commit { prefix, rest, ttft } => {
                Ok((Held { tap, prefix, ttft }, Either::Left(rest)))
            }
            HeldStream::Empty { whole } if routes_left == 0 => Ok((
                held_whole(tap, whole),
                Either::Right(Full::new(Bytes::new())),
            )),
            HeldStream::Empty { .. } => Err(Failure::new(
                Outcome::EmptyCompletion,
                "the stream ended without content",
            )),
            HeldStream::Broke { outcome, detail } => Err(Failure::new(outcome, detail)),
        }
    }

    async fn hold_json(
        &self,
        body: T::Body,
        route: &Route,
        routes_left: usize,
    ) -> Result<(Held, Rest<T::Body>), Failure> {
        let ctx = self.ctx;
        match buffer_json(body, ctx.max_response_bytes, ctx.idle_timeout).await {
            Buffered::Whole(bytes) => {
                let report = usage::from_json(route.protocol, &bytes, ctx.facts);
                let bytes = self
                    .translate_answer(route, bytes)
                    .map_err(|detail| Failure::new(Outcome::ServerError, detail))?;
                if report.empty_completion && routes_left > 0 {
                    return Err(Failure::new(
                        Outcome::EmptyCompletion,
                        "the answer had no content",
                    ));
                }
                let tap = ResponseTap::Ready(Box::new(report));
                Ok((
                    held_whole(tap, bytes),
                    Either::Right(Full::new(Bytes::new())),
                ))
            }
            Buffered::TooLarge { prefix, rest } => {
                let missing = UsageReport {
                    usage_missing: true,
                    ..UsageReport::default()
                };
                let tap = ResponseTap::Ready(Box::new(missing));
                let held = Held {
                    tap,
                    prefix,
                    ttft: None,
                };
                Ok((held, Either::Left(rest)))
            }
            Buffered::Broke { class, detail } => Err(Failure::new(class, detail)),
        }
    }

    /// A whole answer in the client's protocol (as it is on a native route).
    fn translate_answer(&self, route: &Route, bytes: Bytes) -> Result<Bytes, String> {
        let Some(answer) = self.ctx.translations.answer(route.protocol) else {
            return Ok(bytes);
        };
        let troute = crate::translation::route_of(self.ctx.protocol, route);
        tb_translate::translate_answer_with(&troute, answer, &bytes)
            .map(Bytes::from)
            .map_err(|e| {
                format!(
                    "the upstream's {} answer could not be read: {e}",
                    route.protocol
                )
            })
    }

    /// What the attempt teaches, fed from this one place: pool health (a
    /// failure counts only when routing.md says so, else the half-open
    /// trial is released), the capacity block of a 429, and the seller
    /// token's fate.
    fn settle(&self, route: &Route, failure: &Failure, lease: Option<&Lease>) {
        let id = route.upstream.id.as_str();
        let now = crate::call::unix_ms_now();
        if failure.outcome == Outcome::RateLimited {
            self.env
                .router
                .rate_limited(id, now, failure.retry_after.as_deref());
        }
        if tb_routing::counts_as_pool_failure(failure.outcome) {
            self.env.router.failure(id, now, failure.outcome);
        } else {
            self.env.router.neutral(id);
        }
        if let (Some(lease), Some(credit)) = (lease, self.env.credit) {
            match failure.outcome {
                Outcome::AuthInvalid => credit.drop_lease(lease),
                Outcome::InsufficientFunds => credit.mark_dry(lease),
                _ => {}
            }
        }
    }

    /// routing.md's decision for this failure.
    fn decide(&self, failure: &Failure, walk: &Walk, is_seller: bool) -> Action {
        let state = AttemptState {
            attempt_no: u32::try_from(walk.attempts.len() + 1).unwrap_or(u32::MAX),
            retried_same: walk.retried_same,
            routes_left: self.ctx.plan.routes.len() - walk.next - 1,
            is_seller,
            bought_after_dry: walk.bought_after_dry,
            jitter_seed: seed_of(self.ctx.request_id, walk.attempts.len() + 1),
        };
        tb_routing::decide(failure.outcome, state, self.env.router.failover())
    }

    /// Moves the walk on; `false` when it stops here.
    async fn advance(&self, action: Action, walk: &mut Walk, route: &Route) -> bool {
        match action {
            Action::RetrySame {
                backoff_ms,
                buy_credit,
            } => {
                if buy_credit {
                    walk.bought_after_dry = true;
                    walk.force_new = true;
                    tracing::info!(target: "purchase.rebuy", upstream = %route.upstream.id, "seller credit ran dry; buying once and retrying");
                } else {
                    walk.retried_same = true;
                }
                let pause = Duration::from_millis(backoff_ms);
                tokio::time::sleep(pause).await;
                walk.upstream_wait += pause;
                true
            }
            Action::FailoverNext => {
                walk.next_route();
                true
            }
            Action::FailFast | Action::Done | Action::Abort => false,
        }
    }
}

fn held_whole(tap: ResponseTap, bytes: Bytes) -> Held {
    Held {
        tap,
        prefix: bytes,
        ttft: None,
    }
}

/// Whether a response is an event stream.
pub(crate) fn is_event_stream(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.trim_start()
                .to_ascii_lowercase()
                .starts_with("text/event-stream")
        })
}

/// Reads an upstream error body, at most 64 KiB, within `deadline`; what
/// cannot be read is left out (the status still stands).
async fn read_error_body<B>(body: B, deadline: Duration) -> Bytes
where
    B: http_body::Body<Data = Bytes, Error: Into<crate::BoxError>> + Send,
{
    let limited = http_body_util::Limited::new(body, 64 * 1024);
    match tokio::time::timeout(deadline, limited.collect()).await {
        Ok(Ok(collected)) => collected.to_bytes(),
        _ => Bytes::new(),
    }
}

/// The error body without the credentials this attempt sent (the provider
/// key, the seller token), or `None` when it quotes neither.
fn redact_secrets(body: &[u8], upstream: &Upstream, lease: Option<&Lease>) -> Option<Bytes> {
    let token = lease.map(|l| l.token.expose().as_bytes());
    let secrets: Vec<&[u8]> = upstream.credential().into_iter().chain(token).collect();
    crate::body::redact(body, &secrets)
}

/// A per-attempt seed for the retry jitter (no clock, no RNG needed).
fn seed_of(request_id: &str, attempt: usize) -> u64 {
    request_id.bytes().fold(attempt as u64, |h, b| {
        h.wrapping_mul(31).wrapping_add(u64::from(b))
    })
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests;
