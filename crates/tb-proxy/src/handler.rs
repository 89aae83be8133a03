//! The request path, top to bottom: receive → authenticate → read and probe
//! the body → resolve the model → plan routes → attempt loop → stream back.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use futures_util::FutureExt as _;
use http::{HeaderMap, HeaderName, HeaderValue, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use tb_billing::usage::RequestFacts;
use tb_domain::{ApiFamily, Protocol, TraceParent};
use tb_router::RoutePlan;
use tracing::Instrument;

use crate::attempt::{AttemptLoop, Ctx, End, Env, Transport};
use crate::body::{BodyEdits, edit_body, probe, read_limited, read_request_body};
use crate::call::{CallStart, CallTracker, unix_ms_now};
use crate::commit::{self, Answering, UPSTREAM};
use crate::error::{ErrorCode, ProxyError};
use crate::foreign::{has_foreign_items, has_unsigned_thinking};
use crate::gateway::{self, Endpoint};
use crate::headers::upstream_request_headers;
use crate::member::{CallEstimate, Caller, Member, Reservation, ReservationKind, refusal};
use crate::readiness;
use crate::translation::Translations;
use crate::validate::RequestProbe as Probe;
use crate::{ProxyBody, ProxyState, UpstreamClient};

const REQUEST_ID: HeaderName = HeaderName::from_static("x-tokenbuddy-request-id");
const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");
/// W3C Trace Context: the client's trace, carried into exported spans.
const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");

/// Entry point for every request on the proxy plane. Never fails: every
/// error becomes a protocol-shaped response.
pub(crate) async fn handle(
    state: Arc<ProxyState>,
    client: &UpstreamClient,
    req: Request<Incoming>,
) -> Response<ProxyBody> {
    let started = Instant::now();
    let started_at_ms = unix_ms_now();
    let request_id = request_id(req.headers());
    let span = tracing::info_span!("request", request_id = %request_id, method = %req.method(), path = %req.uri().path());
    let family = ApiFamily::for_path(req.uri().path());
    async move {
        // A bug must cost one request, not the connection or the daemon:
        // the panic is caught, logged and answered with a 500.
        let outcome = AssertUnwindSafe(dispatch(&state, client, req, family, &request_id, (started, started_at_ms)))
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
    client: &UpstreamClient,
    req: Request<Incoming>,
    family: ApiFamily,
    request_id: &str,
    started: (Instant, i64),
) -> Response<ProxyBody> {
    let path = req.uri().path().to_string();
    let method = req.method().clone();
    let endpoint = Endpoint::of(&method, &path, req.headers());
    let caller = state.caller(req.headers());
    let Some(caller) = caller.or((!endpoint.needs_token()).then_some(Caller::Local)) else {
        let message = if state.settings.members_only {
            "missing or unknown member key: this gateway listens on the network and accepts only member keys (`tokenbuddyd keys create --member NAME`), as `Authorization: Bearer <key>` or `x-api-key: <key>`; the daemon's local access token is not accepted here".to_owned()
        } else {
            format!(
                "missing or wrong access token: send the token stored in {} as `Authorization: Bearer <token>` or `x-api-key: <token>`",
                state.token_path.display()
            )
        };
        return ProxyError::new(ErrorCode::InvalidAccessToken, message).response(family);
    };
    let answer = match endpoint {
        Endpoint::Hello => return gateway::hello(&method),
        Endpoint::Health => return gateway::text(StatusCode::OK, "ok"),
        Endpoint::Live => return readiness::live(),
        Endpoint::Ready => {
            let draining = state.draining.load(std::sync::atomic::Ordering::Relaxed);
            let check = if draining {
                Ok(())
            } else {
                readiness::bounded(state.readiness.get().map(|r| &**r)).await
            };
            return readiness::ready_response(readiness::ready_answer(draining, &check));
        }
        Endpoint::ManagedSettings => {
            return gateway::json_response(Bytes::from_static(b"{}"));
        }
        Endpoint::Models => {
            let anthropic = gateway::is_anthropic_caller(req.headers());
            let models = state
                .routing
                .models_for(gateway::caller_protocols(anthropic));
            return gateway::json_response(gateway::models_body(&models, anthropic));
        }
        Endpoint::WebSocket => {
            let protocol = Protocol::from_path(&path).unwrap_or(Protocol::Responses);
            return gateway::websocket_refused(&path, protocol);
        }
        Endpoint::NotAllowed(allow) => {
            let mut r = ProxyError::new(
                ErrorCode::MethodNotAllowed,
                format!("{method} is not allowed on {path}; use {allow}"),
            )
            .response(family);
            r.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static(allow));
            return r;
        }
        Endpoint::Unknown => Err(ProxyError::new(
            ErrorCode::UnknownRoute,
            format!(
                "no endpoint {method} {path}; tokenbuddy serves POST /v1/chat/completions, /v1/responses, /v1/messages, /v1/messages/count_tokens, /v1/images/generations, /v1/images/edits, /v1/embeddings, /v1/videos and GET /v1/models"
            ),
        )),
        Endpoint::CountTokens => count_tokens(state, req).await,
        Endpoint::Videos => {
            crate::video::handle(state, req, request_id, started, caller.member()).await
        }
        Endpoint::Forward(protocol) => {
            let member = caller.member();
            forward(state, client, req, protocol, request_id, started, member).await
        }
    };
    answer.unwrap_or_else(|err| err.response(family))
}

/// `POST /v1/messages/count_tokens`: asked of a manual provider that
/// serves the model over Messages, else counted locally (on a blocking
/// thread: a long conversation takes milliseconds to tokenize).
async fn count_tokens(
    state: &ProxyState,
    req: Request<Incoming>,
) -> Result<Response<ProxyBody>, ProxyError> {
    let (parts, body) = req.into_parts();
    let bytes = read_limited(body, None, state.settings.max_body_bytes).await?;
    let probe = probe(&bytes, Protocol::Messages).map_err(|e| e.to_proxy_error())?;
    let plan = state.plan(&probe.model, Protocol::Messages, false);
    let edits = native_edits(Protocol::Messages, &bytes, false);
    let body = outbound_body(&bytes, &probe.model, &plan.model, edits)?;
    let native = plan
        .routes
        .iter()
        .filter(|r| r.protocol == Protocol::Messages && r.upstream.seller_url().is_none());
    for route in native {
        let asked = gateway::upstream_count(
            &state.client,
            &route.upstream,
            &parts.headers,
            parts.uri.query(),
            body.clone(),
            state.settings.request_deadline,
        );
        if let Some(resp) = asked.await {
            return Ok(resp);
        }
    }
    tokio::task::spawn_blocking(move || gateway::local_count(body))
        .await
        .unwrap_or_else(|_| {
            Err(ProxyError::new(
                ErrorCode::Internal,
                "counting the tokens failed; retry the request".to_string(),
            ))
        })
}

/// The proxy stages before the attempt loop: read the body within the
/// limit, validate it (a malformed one is the client's problem only: it
/// is recorded as rejected and never reaches an upstream), then hand it to
/// [`forward_with`] over the pooled client.
async fn forward(
    state: &ProxyState,
    client: &UpstreamClient,
    req: Request<Incoming>,
    protocol: Protocol,
    request_id: &str,
    started: (Instant, i64),
    member: Option<&Member>,
) -> Result<Response<ProxyBody>, ProxyError> {
    let (parts, body) = req.into_parts();
    let bytes = read_request_body(&parts, body, state.settings.max_body_bytes).await?;
    let incoming = ReadRequest {
        protocol,
        headers: &parts.headers,
        query: parts.uri.query(),
        bytes,
        request_id,
        started,
        member,
    };
    forward_with(state, client, incoming).await
}

/// A request whose body has been read.
pub(crate) struct ReadRequest<'a> {
    pub protocol: Protocol,
    pub headers: &'a HeaderMap,
    pub query: Option<&'a str>,
    pub bytes: Bytes,
    pub request_id: &'a str,
    pub started: (Instant, i64),
    /// The member whose key authenticated the request.
    pub member: Option<&'a Member>,
}

/// Validate → plan → attempt loop → commit, over any [`Transport`] (the
/// unit tests script one).
pub(crate) async fn forward_with<T: Transport>(
    state: &ProxyState,
    transport: &T,
    req: ReadRequest<'_>,
) -> Result<Response<ProxyBody>, ProxyError> {
    let ReadRequest {
        protocol,
        request_id,
        started,
        ..
    } = req;
    // An image edit's multipart form is read for its text fields; every
    // other body is JSON, validated in one pass.
    let form = crate::form::of_request(protocol, req.headers, &req.bytes)
        .await
        .map_err(|e| {
            let error = e.to_proxy_error();
            crate::call::reject_as(&state.recorder, &e, error, protocol, (request_id, started))
        })?;
    let probe = match &form {
        Some(form) => form.probe(),
        None => probe(&req.bytes, protocol)
            .map_err(|e| crate::call::reject(&state.recorder, e, protocol, request_id, started))?,
    };
    fault_hook(&probe.model);
    if let Some(member) = req.member {
        allow_model(member, &probe.model)?;
    }
    let mut plan = plan_routes(state, &probe, protocol)?;
    // Translated routes need the client's body with only `model` resolved;
    // a native-only plan (the usual case) never builds it.
    let translations = if plan.routes.iter().any(|r| r.protocol != protocol) {
        let resolved = outbound_body(&req.bytes, &probe.model, &plan.model, BodyEdits::default())?;
        let created = u64::try_from(started.1 / 1000).unwrap_or(0);
        Translations::prepare(&mut plan, protocol, &resolved, created)?
    } else {
        Translations::default()
    };
    // Chat streams carry usage only when asked: ask for it, and strip the
    // extra chunk again on the way back (billing.md).
    let add_usage = protocol == Protocol::ChatCompletions && probe.stream && !probe.usage_requested;
    let edits = native_edits(protocol, &req.bytes, add_usage);
    let body = match &form {
        Some(form) => form.outbound(&req.bytes, &probe.model, &plan.model)?,
        None => outbound_body(&req.bytes, &probe.model, &plan.model, edits)?,
    };
    // The record's id is the member's reservation id: the record, when
    // written, replaces the reservation with what the call cost.
    let call_id = uuid::Uuid::now_v7().to_string();
    if let Some(member) = req.member {
        let reservation = reservation(protocol, &req.bytes, &plan, &call_id);
        admit_member(state, member, &reservation).await?;
    }
    let call = track_call(state, &req, &probe, &plan, call_id);
    let facts = form.as_ref().map_or_else(
        || RequestFacts::from_request_json(protocol, &req.bytes),
        crate::form::Form::facts,
    );
    let ctx = Ctx {
        protocol,
        plan: &plan,
        body,
        translations: &translations,
        base_headers: base_headers(req.headers, request_id),
        query: req.query,
        facts: &facts,
        add_usage,
        request_id,
        started: started.0,
        head_deadline: if probe.stream {
            state.settings.stream_head_deadline
        } else {
            state.settings.request_deadline
        },
        idle_timeout: state.settings.stream_idle_timeout,
        max_response_bytes: state.settings.max_response_bytes,
    };
    Ok(walk(state, transport, &ctx, &probe.model, call).await)
}

/// A member's request names a model its key allows, or is refused
/// before any upstream sees it.
pub(crate) fn allow_model(member: &Member, model: &str) -> Result<(), ProxyError> {
    if member.allows(model) {
        return Ok(());
    }
    Err(ProxyError::new(
        ErrorCode::ModelNotAllowed,
        format!(
            "member {:?} may not use model {model:?}; the key allows {}; ask the team admin to create a key with `tokenbuddyd keys create --member {} --models ...`",
            member.name,
            member.models.as_deref().unwrap_or_default().join(", "),
            member.name
        ),
    ))
}

/// What a member's call reserves: its estimated tokens, and its cost on
/// the priciest route of the plan.
fn reservation(protocol: Protocol, bytes: &[u8], plan: &RoutePlan, id: &str) -> Reservation {
    let estimate = CallEstimate::of_request(protocol, bytes);
    let prices = plan.routes.iter().map(|r| r.upstream.price_of(&plan.model));
    Reservation {
        id: id.to_string(),
        cost_usd_micros: estimate.worst_cost(prices),
        tokens: estimate.tokens(),
        kind: ReservationKind::Call,
    }
}

/// A member's request passes its key's limits, reserving `reservation`
/// in the shared counters, or is refused before any upstream sees it.
pub(crate) async fn admit_member(
    state: &ProxyState,
    member: &Member,
    reservation: &Reservation,
) -> Result<(), ProxyError> {
    let Some(members) = state.members.get().filter(|_| member.limits.any()) else {
        return Ok(());
    };
    let usage = members.admit(member, reservation).await.map_err(|e| {
        ProxyError::new(
            ErrorCode::NoRoute,
            format!(
                "the limits of member {:?} could not be checked ({e}); retry shortly",
                member.name
            ),
        )
    })?;
    if usage.admitted {
        return Ok(());
    }
    Err(refusal(&member.limits, &usage).to_proxy_error(&member.name))
}

/// Runs the attempt loop and answers with what it ended with.
async fn walk<T: Transport>(
    state: &ProxyState,
    transport: &T,
    ctx: &Ctx<'_>,
    requested_model: &str,
    mut call: CallTracker,
) -> Response<ProxyBody> {
    let env = Env {
        transport,
        router: state.routing.router(),
        credit: state.credit.as_ref(),
    };
    let end = AttemptLoop::new(ctx, env)
        .run(|attempt| call.attempt(attempt.to_attempt()))
        .await;
    let answering = Answering {
        state,
        protocol: ctx.protocol,
        plan: ctx.plan,
        requested_model,
        started: ctx.started,
        credit: state.credit.as_ref(),
    };
    match end {
        End::Commit(winner, walk) => commit::commit(&answering, winner, walk, call),
        End::Exhausted(walk) => commit::give_up(&answering, walk, call),
    }
}

/// The ordered routes for the model, or why there are none. A cold or
/// stale marketplace key is warmed in the background; this request never
/// waits for it.
fn plan_routes(
    state: &ProxyState,
    probe: &Probe,
    protocol: Protocol,
) -> Result<RoutePlan, ProxyError> {
    if let Err(why) = state.routing.can_route() {
        return Err(ProxyError::new(ErrorCode::NoRoute, why.to_string()));
    }
    let plan = state.plan(&probe.model, protocol, probe.has_tools);
    log_decision(state, probe, protocol, &plan);
    state.routing.warm_up(&plan, protocol);
    if plan.routes.is_empty() {
        return Err(ProxyError::new(
            ErrorCode::ModelNotFound,
            plan.not_found_message(&probe.model, protocol),
        ));
    }
    Ok(plan)
}

/// The edits a native route's body needs: usage asked for when the daemon
/// needs it; what translated turns made up (unsigned thinking, minted
/// Responses items) left out of the history (see `foreign`).
fn native_edits(protocol: Protocol, bytes: &[u8], add_usage: bool) -> BodyEdits<'static> {
    BodyEdits {
        include_usage: add_usage,
        drop_unsigned_thinking: protocol == Protocol::Messages && has_unsigned_thinking(bytes),
        drop_foreign_items: protocol == Protocol::Responses && has_foreign_items(bytes),
        model: None,
    }
}

/// The `route.decision` event (operations.md): the mode, the chosen
/// upstream, every candidate in order, the translated ones, and why.
/// Built only when the event is enabled.
fn log_decision(state: &ProxyState, probe: &Probe, protocol: Protocol, plan: &RoutePlan) {
    if !tracing::enabled!(target: "route.decision", tracing::Level::INFO) {
        return;
    }
    let ids = |translated: bool| -> Vec<&str> {
        let routes = plan.routes.iter();
        let routes = routes.filter(|r| (r.protocol != protocol) == translated);
        routes.map(|r| r.upstream.id.as_str()).collect()
    };
    tracing::info!(
        target: "route.decision",
        mode = state.routing.mode().as_str(),
        model = %probe.model,
        upstream_model = %plan.model,
        protocol = %protocol,
        stream = probe.stream,
        tools = probe.has_tools,
        chosen = plan.routes.first().map_or("none", |r| r.upstream.id.as_str()),
        candidates = ?ids(false),
        translated = ?ids(true),
        reason = %plan.reason(),
        "planned"
    );
}

/// The body sent upstream: the client's bytes, with `model` rewritten only
/// if resolution changed it, and `edits`' other changes (usage asked for
/// when the daemon needs it, foreign thinking left out of a native
/// Messages request).
fn outbound_body(
    bytes: &Bytes,
    requested: &str,
    resolved: &str,
    edits: BodyEdits<'_>,
) -> Result<Bytes, ProxyError> {
    let edits = BodyEdits {
        model: (resolved != requested).then_some(resolved),
        ..edits
    };
    if edits.is_empty() {
        return Ok(bytes.clone());
    }
    edit_body(bytes, edits).map_err(|e| {
        ProxyError::new(
            ErrorCode::InvalidJson,
            format!("the request body is not valid JSON: {e}"),
        )
    })
}

/// Starts the call's record (finished when the answer's body ends, or as
/// cancelled when the client goes away first).
fn track_call(
    state: &ProxyState,
    req: &ReadRequest<'_>,
    probe: &Probe,
    plan: &RoutePlan,
    id: String,
) -> CallTracker {
    CallTracker::new(
        Arc::clone(&state.recorder),
        CallStart {
            id,
            request_id: req.request_id.to_string(),
            started: req.started.0,
            started_at_ms: req.started.1,
            protocol: req.protocol,
            requested_model: probe.model.clone(),
            model: plan.model.clone(),
            stream: probe.stream,
            request_body: req.bytes.clone(),
            plan: plan
                .routes
                .iter()
                .map(|r| Arc::clone(&r.upstream))
                .collect(),
            trace_parent: req
                .headers
                .get(TRACEPARENT)
                .and_then(|v| v.to_str().ok())
                .and_then(TraceParent::parse),
            member: req.member.map(|m| m.name.clone()),
        },
    )
}

/// The client's headers as every attempt forwards them, with the request
/// id and a default `Idempotency-Key`.
fn base_headers(client: &HeaderMap, request_id: &str) -> HeaderMap {
    let mut headers = upstream_request_headers(client);
    if let Ok(v) = HeaderValue::from_str(request_id) {
        headers.insert(X_REQUEST_ID, v);
    }
    if !headers.contains_key(IDEMPOTENCY_KEY)
        && let Ok(v) = HeaderValue::from_str(&format!("tb-{request_id}"))
    {
        headers.insert(IDEMPOTENCY_KEY, v);
    }
    headers
}
