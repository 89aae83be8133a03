//! The simulated seller: purchases, tokens, inference and settlement.

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::SystemTime;

use base64::Engine as _;
use bytes::Bytes;
use http::{Method, Request, Response};
use http_body_util::BodyExt as _;
use hyper::body::Incoming;
use serde_json::{Value, json};
use tb_domain::{PaymentMethod, Protocol};
use tokio::sync::watch;

use super::bodies::{empty_events, empty_json, sse_event, stream_steps};
use super::net::{self, Served, SimBody, Step};
use super::spec::{ScriptedFailure, SellerSpec, SettlementMode};
use crate::{RecordedRequest, canned};

/// The response header carrying a non-streamed settlement (base64url of
/// the settlement JSON, no padding).
pub const SETTLEMENT_HEADER: &str = "x-tokenbuddy-settlement";

/// The SSE event name of a streamed settlement.
pub const SETTLEMENT_EVENT: &str = "tokenbuddy.settlement";

/// Header naming the seller on every inference answer (an `x-tokenbuddy-*`
/// header that must never reach the daemon's client).
pub const SELLER_ID_HEADER: &str = "x-tokenbuddy-seller-id";

/// Header with the token's balance after the call, in credit micros, on
/// inference answers that got past authentication.
pub const BALANCE_HEADER: &str = "x-tokenbuddy-balance-micros";

/// Header with the seller's own id for the call, on every inference answer.
pub const SELLER_REQUEST_ID_HEADER: &str = "x-tokenbuddy-seller-request-id";

/// What a purchase asks for when the quote request names no amount (the
/// daemon's `purchase.amount_credit_micros` default).
pub const DEFAULT_PURCHASE_CREDIT_MICROS: u64 = 1_000_000;

/// A token a seller issued, as it stands now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedToken {
    /// The bearer token.
    pub token: String,
    /// The payment method of its purchase.
    pub payment_method: PaymentMethod,
    /// Credit granted by the purchase.
    pub credit_micros: u64,
    /// Credit left.
    pub balance_micros: u64,
    /// When it expires.
    pub expires_at: SystemTime,
    /// Successful (charged) inference calls made with it.
    pub successful_calls: u64,
}

/// A snapshot of a seller's counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SellerCounters {
    /// `GET /healthz` calls.
    pub healthz: u64,
    /// `GET /manifest` calls (answered or `404`).
    pub manifest: u64,
    /// `POST /purchase/quote` calls (accepted or not).
    pub quotes: u64,
    /// `POST /purchase/complete` calls (accepted or not).
    pub purchases: u64,
    /// Tokens issued.
    pub tokens_issued: u64,
    /// Inference calls (any status).
    pub inference: u64,
    /// Inference calls by answered status.
    pub inference_by_status: BTreeMap<u16, u64>,
}

/// A seller on an ephemeral loopback port, speaking the `marketplace.md`
/// seller protocol: health, manifest, purchases (`mock` completes at once;
/// `clawtip` stays "payment pending"), and inference on the four protocol
/// paths with bearer tokens, credit, canned answers and settlement.
///
/// Inference answers, in order of checks:
///
/// 1. not a protocol path → `404`; not `POST` → `405`;
/// 2. a [scripted failure](SellerSpec::scripted_failures), then the
///    [failure rate](SellerSpec::fail_every) → that status;
/// 3. no `Authorization: Bearer <issued token>` or an unknown one → `401`;
///    an expired one → `401`;
/// 4. body not JSON or no `model` → `400`; model not sold or protocol not
///    served → `404`;
/// 5. zero balance, or [`insufficient_after`](SellerSpec::insufficient_after)
///    reached → `402`, message "insufficient balance";
/// 6. `200` with [`canned`] JSON or SSE (`"stream": true`) for the
///    request's model, the cost deducted from the token and the settlement
///    reported per [`SettlementMode`].
///
/// Every error body is OpenAI-shaped (`{"error": {"message", "type",
/// "param", "code"}}`), whatever the protocol, as a seller in front of
/// many models would answer. Every inference answer carries
/// [`SELLER_ID_HEADER`] and [`SELLER_REQUEST_ID_HEADER`]; those past
/// authentication also [`BALANCE_HEADER`].
///
/// Dropping the value shuts the server down.
#[derive(Debug)]
pub struct SellerServer {
    served: Served,
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    /// The listening address, set right after binding (for payment URLs).
    addr: OnceLock<SocketAddr>,
    healthz: AtomicU64,
    manifest: AtomicU64,
    quotes: AtomicU64,
    tokens_issued: AtomicU64,
    /// `purchase/complete` calls.
    purchases: watch::Sender<u64>,
    /// Recorded inference requests.
    inference: watch::Sender<usize>,
}

#[derive(Debug)]
struct State {
    spec: SellerSpec,
    tokens: HashMap<String, TokenState>,
    quotes: HashMap<String, QuoteState>,
    requests: Vec<RecordedRequest>,
    settlements: Vec<Value>,
    statuses: BTreeMap<u16, u64>,
    /// Calls counted for `fail_every`.
    fail_counter: u64,
}

#[derive(Debug, Clone)]
struct TokenState {
    payment_method: PaymentMethod,
    credit: u64,
    balance: u64,
    expires_at: SystemTime,
    ok_calls: u64,
}

#[derive(Debug, Clone)]
struct QuoteState {
    payment_method: PaymentMethod,
    credit: u64,
    expires_at: SystemTime,
    /// The `complete` answer once completed (completing again repeats it).
    completed: Option<Value>,
    /// A wallet (clawtip) quote the user paid ([`SellerServer::confirm_payment`]).
    paid: bool,
    /// A wallet quote the user cancelled.
    cancelled: bool,
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn url(&self) -> String {
        self.addr
            .get()
            .map_or_else(String::new, |addr| format!("http://{addr}"))
    }
}

impl SellerServer {
    /// Starts a seller doing what `spec` says.
    ///
    /// # Errors
    ///
    /// If the listener cannot be bound.
    pub async fn start(spec: SellerSpec) -> io::Result<SellerServer> {
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                spec,
                tokens: HashMap::new(),
                quotes: HashMap::new(),
                requests: Vec::new(),
                settlements: Vec::new(),
                statuses: BTreeMap::new(),
                fail_counter: 0,
            }),
            addr: OnceLock::new(),
            healthz: AtomicU64::new(0),
            manifest: AtomicU64::new(0),
            quotes: AtomicU64::new(0),
            tokens_issued: AtomicU64::new(0),
            purchases: watch::Sender::new(0),
            inference: watch::Sender::new(0),
        });
        let handler_shared = Arc::clone(&shared);
        let served = net::serve(move |req| handle(Arc::clone(&handler_shared), req)).await?;
        let _ = shared.addr.set(served.addr);
        Ok(SellerServer { served, shared })
    }

    /// The address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.served.addr
    }

    /// The base URL, `http://127.0.0.1:PORT` (no trailing slash): the
    /// registry `url`.
    pub fn url(&self) -> String {
        format!("http://{}", self.served.addr)
    }

    /// The seller id (from the current spec).
    pub fn id(&self) -> String {
        self.shared.state().spec.id.clone()
    }

    /// A copy of the current spec (scripted failures not yet used
    /// included).
    pub fn spec(&self) -> SellerSpec {
        self.shared.state().spec.clone()
    }

    /// Replaces the spec from the next request on. Tokens, quotes and
    /// counters are kept.
    pub fn set_spec(&self, spec: SellerSpec) {
        self.shared.state().spec = spec;
    }

    /// Changes the spec in place: `seller.update(|s| s.latency = ms(50))`.
    pub fn update(&self, change: impl FnOnce(&mut SellerSpec)) {
        change(&mut self.shared.state().spec);
    }

    /// Queues failing answers for the next inference calls (see
    /// [`SellerSpec::fail_next`]).
    pub fn fail_next(&self, failures: impl IntoIterator<Item = impl Into<ScriptedFailure>>) {
        self.shared
            .state()
            .spec
            .scripted_failures
            .extend(failures.into_iter().map(Into::into));
    }

    /// Pays the clawtip quote `quote_id` as the user's wallet would (the
    /// next `complete` issues the token). `false` if there is no such
    /// unexpired, uncancelled clawtip quote.
    pub fn confirm_payment(&self, quote_id: &str) -> bool {
        self.shared.pay(quote_id, false).is_ok()
    }

    /// Cancels the clawtip quote `quote_id` as the user would in the
    /// wallet (`complete` then answers `409`).
    pub fn cancel_payment(&self, quote_id: &str) -> bool {
        self.shared.pay(quote_id, true).is_ok()
    }

    /// Ids of the clawtip quotes neither paid, cancelled nor expired.
    pub fn unpaid_quotes(&self) -> Vec<String> {
        let now = SystemTime::now();
        let mut ids: Vec<String> = self
            .shared
            .state()
            .quotes
            .iter()
            .filter(|(_, q)| {
                q.payment_method == PaymentMethod::Clawtip
                    && !q.paid
                    && !q.cancelled
                    && now < q.expires_at
            })
            .map(|(id, _)| id.clone())
            .collect();
        ids.sort();
        ids
    }

    /// Queues one `401` for the next inference call.
    pub fn unauthorized_next(&self) {
        self.fail_next([401]);
    }

    /// This seller's registry entry (current spec, at [`url`](Self::url)).
    pub fn registry_entry(&self) -> Value {
        self.shared.state().spec.registry_entry(&self.url())
    }

    /// `GET /healthz` calls so far.
    pub fn healthz_count(&self) -> u64 {
        self.shared.healthz.load(Ordering::SeqCst)
    }

    /// `GET /manifest` calls so far.
    pub fn manifest_count(&self) -> u64 {
        self.shared.manifest.load(Ordering::SeqCst)
    }

    /// `POST /purchase/quote` calls so far.
    pub fn quote_count(&self) -> u64 {
        self.shared.quotes.load(Ordering::SeqCst)
    }

    /// `POST /purchase/complete` calls so far (accepted or not).
    pub fn purchase_count(&self) -> u64 {
        *self.shared.purchases.borrow()
    }

    /// Tokens issued so far.
    pub fn tokens_issued(&self) -> u64 {
        self.shared.tokens_issued.load(Ordering::SeqCst)
    }

    /// Inference calls so far (any status).
    pub fn inference_count(&self) -> u64 {
        *self.shared.inference.borrow() as u64
    }

    /// Inference calls answered with `status` so far.
    pub fn inference_status_count(&self, status: u16) -> u64 {
        self.shared
            .state()
            .statuses
            .get(&status)
            .copied()
            .unwrap_or(0)
    }

    /// Inference calls so far by answered status.
    pub fn inference_statuses(&self) -> BTreeMap<u16, u64> {
        self.shared.state().statuses.clone()
    }

    /// Every counter at once.
    pub fn counters(&self) -> SellerCounters {
        let state = self.shared.state();
        SellerCounters {
            healthz: self.healthz_count(),
            manifest: self.manifest_count(),
            quotes: self.quote_count(),
            purchases: self.purchase_count(),
            tokens_issued: self.tokens_issued(),
            inference: state.requests.len() as u64,
            inference_by_status: state.statuses.clone(),
        }
    }

    /// The current balance of `token`, in credit micros.
    pub fn balance(&self, token: &str) -> Option<u64> {
        self.shared.state().tokens.get(token).map(|t| t.balance)
    }

    /// Sets the balance of `token` (e.g. to 0 to provoke a `402`); `false`
    /// if no such token was issued.
    pub fn set_balance(&self, token: &str, balance_micros: u64) -> bool {
        match self.shared.state().tokens.get_mut(token) {
            Some(t) => {
                t.balance = balance_micros;
                true
            }
            None => false,
        }
    }

    /// Forgets every issued token: from now on they answer `401`.
    pub fn revoke_tokens(&self) {
        self.shared.state().tokens.clear();
    }

    /// Every issued (and not revoked) token, in no particular order.
    pub fn tokens(&self) -> Vec<IssuedToken> {
        self.shared
            .state()
            .tokens
            .iter()
            .map(|(token, t)| IssuedToken {
                token: token.clone(),
                payment_method: t.payment_method,
                credit_micros: t.credit,
                balance_micros: t.balance,
                expires_at: t.expires_at,
                successful_calls: t.ok_calls,
            })
            .collect()
    }

    /// Every inference request so far, in arrival order.
    pub fn inference_requests(&self) -> Vec<RecordedRequest> {
        self.shared.state().requests.clone()
    }

    /// The last inference request.
    pub fn last_inference(&self) -> Option<RecordedRequest> {
        self.shared.state().requests.last().cloned()
    }

    /// Every settlement computed so far (successful, non-dropped calls),
    /// as the JSON the seller reported (or would have, with
    /// `SettlementMode::None`/`Custom`/`Raw`).
    pub fn settlements(&self) -> Vec<Value> {
        self.shared.state().settlements.clone()
    }

    /// Waits until at least `n` inference requests have arrived (counted,
    /// with their status decided, before the answer is sent), then returns
    /// all of them.
    pub async fn wait_for_inference(&self, n: usize) -> Vec<RecordedRequest> {
        let mut count = self.shared.inference.subscribe();
        // The sender lives in `self.shared`, so this cannot fail.
        let _ = count.wait_for(|&c| c >= n).await;
        self.inference_requests()
    }

    /// Waits until at least `n` `purchase/complete` calls have been
    /// answered (or are about to be); returns the count then.
    pub async fn wait_for_purchases(&self, n: u64) -> u64 {
        let mut count = self.shared.purchases.subscribe();
        let result = count.wait_for(|&c| c >= n).await.map(|c| *c);
        result.unwrap_or(n)
    }
}

/// What a handler decided; turned into a response after the latency.
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: AnswerBody,
}

enum AnswerBody {
    Full(Bytes),
    Steps(Vec<Step>),
}

impl Answer {
    fn json(status: u16, value: &Value) -> Answer {
        Answer {
            status,
            headers: vec![("content-type".into(), "application/json".into())],
            body: AnswerBody::Full(net::to_vec(value).into()),
        }
    }

    fn error(status: u16, error_type: &str, code: &str, message: &str) -> Answer {
        Answer {
            status,
            headers: vec![("content-type".into(), "application/json".into())],
            body: AnswerBody::Full(canned::openai_error(error_type, code, message).into()),
        }
    }

    fn header(mut self, name: &str, value: impl Into<String>) -> Answer {
        self.headers.push((name.into(), value.into()));
        self
    }

    fn into_response(self) -> Response<SimBody> {
        let body = match self.body {
            AnswerBody::Full(bytes) => SimBody::full(bytes),
            AnswerBody::Steps(steps) => net::stream(steps),
        };
        net::response(self.status, &self.headers, body)
    }
}

async fn handle(shared: Arc<Shared>, req: Request<Incoming>) -> Response<SimBody> {
    let (parts, body) = req.into_parts();
    let body = match body.collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(err) => {
            tracing::debug!(%err, "simulated seller: reading the request body failed");
            return Answer::error(400, "invalid_request_error", "bad_body", "unreadable body")
                .into_response();
        }
    };
    let latency = shared.state().spec.latency;
    let path = parts.uri.path().to_owned();
    let answer = match (&parts.method, path.as_str()) {
        (&Method::GET | &Method::HEAD, "/healthz") => {
            shared.healthz.fetch_add(1, Ordering::SeqCst);
            Answer {
                status: 200,
                headers: vec![("content-type".into(), "text/plain; charset=utf-8".into())],
                body: AnswerBody::Full(Bytes::from_static(b"ok")),
            }
        }
        (&Method::GET, "/manifest") => {
            shared.manifest.fetch_add(1, Ordering::SeqCst);
            match shared.state().spec.manifest.clone() {
                Some(manifest) => Answer::json(200, &manifest),
                None => Answer::error(404, "not_found", "no_manifest", "no manifest here"),
            }
        }
        (&Method::POST, "/purchase/quote") => {
            shared.quotes.fetch_add(1, Ordering::SeqCst);
            quote(&shared, &body)
        }
        (&Method::POST, "/purchase/complete") => {
            let answer = complete(&shared, &body);
            shared.purchases.send_modify(|c| *c += 1);
            answer
        }
        (&Method::POST, _) if path.starts_with("/pay/") => wallet(&shared, &path),
        (&Method::GET, _) if path.starts_with("/pay/") => pay_page(&shared, &path),
        _ if path.starts_with("/v1/") || Protocol::from_path(&path).is_some() => {
            inference(&shared, parts, body)
        }
        _ => Answer::error(
            404,
            "invalid_request_error",
            "unknown_url",
            &format!("simulated seller: no route for {} {path}", parts.method),
        ),
    };
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    answer.into_response()
}

/// A field by its camelCase or snake_case name.
fn field<'a>(value: &'a Value, camel: &str, snake: &str) -> Option<&'a Value> {
    value.get(camel).or_else(|| value.get(snake))
}

fn quote(shared: &Shared, body: &[u8]) -> Answer {
    let Ok(req) = serde_json::from_slice::<Value>(body) else {
        return Answer::error(400, "invalid_request_error", "bad_json", "body is not JSON");
    };
    let mut state = shared.state();
    let spec = &state.spec;
    let Some(model) = field(&req, "modelId", "model_id").and_then(Value::as_str) else {
        return Answer::error(
            400,
            "invalid_request_error",
            "missing_model",
            "modelId is required",
        );
    };
    if !spec.models.iter().any(|m| m == model) {
        return Answer::error(
            400,
            "invalid_request_error",
            "unknown_model",
            &format!("model {model} is not sold here"),
        );
    }
    let method_name = field(&req, "paymentMethod", "payment_method")
        .and_then(Value::as_str)
        .unwrap_or("");
    let Some(method) =
        PaymentMethod::parse(method_name).filter(|m| spec.payment_methods.contains(m))
    else {
        return Answer::error(
            400,
            "invalid_request_error",
            "unsupported_payment_method",
            &format!("payment method {method_name:?} is not accepted here"),
        );
    };
    let requested = match field(&req, "creditMicros", "credit_micros") {
        None => DEFAULT_PURCHASE_CREDIT_MICROS,
        Some(v) => match v.as_u64().filter(|&c| c > 0) {
            Some(c) => c,
            None => {
                return Answer::error(
                    400,
                    "invalid_request_error",
                    "bad_credit",
                    "creditMicros must be a positive integer",
                );
            }
        },
    };
    let credit = spec.credit_per_purchase.unwrap_or(requested);
    let price = spec.price_usd_micros.unwrap_or_else(|| {
        (credit as f64 * spec.usd_per_credit.max(0.0))
            .round()
            .min(u64::MAX as f64) as u64
    });
    let expires_at = SystemTime::now() + spec.quote_ttl;
    let quote_id = format!("q-{}", net::random_hex(12));
    let mut answer = json!({
        "quoteId": quote_id,
        "modelId": model,
        "paymentMethod": method.as_str(),
        "creditMicros": credit,
        "priceUsdMicros": price,
        "expiresAt": net::rfc3339(expires_at),
    });
    if method == PaymentMethod::Clawtip {
        let url = format!("{}/pay/{quote_id}", shared.url());
        answer["payment"] = json!({
            "payUrl": url,
            "qrPayload": url,
            "rechargeQrUrl": format!("{}/recharge", shared.url()),
        });
    }
    state.quotes.insert(
        quote_id,
        QuoteState {
            payment_method: method,
            credit,
            expires_at,
            completed: None,
            paid: false,
            cancelled: false,
        },
    );
    Answer::json(200, &answer)
}

fn complete(shared: &Shared, body: &[u8]) -> Answer {
    let Ok(req) = serde_json::from_slice::<Value>(body) else {
        return Answer::error(400, "invalid_request_error", "bad_json", "body is not JSON");
    };
    let Some(quote_id) = field(&req, "quoteId", "quote_id").and_then(Value::as_str) else {
        return Answer::error(
            400,
            "invalid_request_error",
            "missing_quote",
            "quoteId is required",
        );
    };
    let method_name = field(&req, "paymentMethod", "payment_method")
        .and_then(Value::as_str)
        .unwrap_or("");
    let reference = field(&req, "paymentReference", "payment_reference")
        .and_then(Value::as_str)
        .map(str::to_owned);
    let mut state = shared.state();
    let token_ttl = state.spec.token_ttl;
    let Some(quote) = state.quotes.get(quote_id).cloned() else {
        return Answer::error(
            404,
            "invalid_request_error",
            "unknown_quote",
            &format!("no quote {quote_id}"),
        );
    };
    if PaymentMethod::parse(method_name) != Some(quote.payment_method) {
        return Answer::error(
            400,
            "invalid_request_error",
            "payment_method_mismatch",
            &format!(
                "quote {quote_id} is for {}, not {method_name:?}",
                quote.payment_method
            ),
        );
    }
    if let Some(done) = quote.completed {
        return Answer::json(200, &done);
    }
    let now = SystemTime::now();
    if quote.payment_method == PaymentMethod::Clawtip {
        if quote.cancelled {
            return Answer::json(409, &json!({ "status": "cancelled" }));
        }
        if now >= quote.expires_at {
            return Answer::json(410, &json!({ "status": "expired" }));
        }
        if !quote.paid {
            return Answer::json(202, &json!({ "status": "pending" }));
        }
    } else if now >= quote.expires_at {
        return Answer::error(
            400,
            "invalid_request_error",
            "quote_expired",
            &format!("quote {quote_id} has expired"),
        );
    }
    let token = format!("tbsim_{}", net::random_hex(24));
    let expires_at = now + token_ttl;
    let answer = json!({
        "accessToken": token,
        "creditMicros": quote.credit,
        "balanceMicros": quote.credit,
        "expiresAt": net::rfc3339(expires_at),
        "paymentReference": reference.unwrap_or_else(|| format!("mock-{}", net::random_hex(8))),
    });
    state.tokens.insert(
        token,
        TokenState {
            payment_method: quote.payment_method,
            credit: quote.credit,
            balance: quote.credit,
            expires_at,
            ok_calls: 0,
        },
    );
    if let Some(q) = state.quotes.get_mut(quote_id) {
        q.completed = Some(answer.clone());
    }
    shared.tokens_issued.fetch_add(1, Ordering::SeqCst);
    Answer::json(200, &answer)
}

/// `POST /pay/{quoteId}` pays a clawtip quote (what the user's wallet
/// does); `POST /pay/{quoteId}/cancel` cancels it.
fn wallet(shared: &Shared, path: &str) -> Answer {
    let rest = path.trim_start_matches("/pay/");
    let (quote_id, cancel) = match rest.strip_suffix("/cancel") {
        Some(id) => (id, true),
        None => (rest, false),
    };
    match shared.pay(quote_id, cancel) {
        Ok(status) => Answer::json(200, &json!({ "quoteId": quote_id, "status": status })),
        Err((status, why)) => Answer::error(status, "invalid_request_error", "cannot_pay", &why),
    }
}

/// `GET /pay/{quoteId}`: what a wallet would show before paying.
fn pay_page(shared: &Shared, path: &str) -> Answer {
    let quote_id = path.trim_start_matches("/pay/");
    let state = shared.state();
    let Some(quote) = state.quotes.get(quote_id) else {
        return Answer::error(
            404,
            "invalid_request_error",
            "unknown_quote",
            "no such quote",
        );
    };
    let text = format!(
        "simulated clawtip wallet\nquote {quote_id}: {} micros of credit\npaid: {}\nPOST this \
         URL to pay, or POST {path}/cancel to cancel.\n",
        quote.credit, quote.paid
    );
    Answer {
        status: 200,
        headers: vec![("content-type".into(), "text/plain; charset=utf-8".into())],
        body: AnswerBody::Full(Bytes::from(text)),
    }
}

impl Shared {
    /// Pays (or cancels) a pending clawtip quote: the new status, or the
    /// HTTP status and why it cannot be done.
    fn pay(&self, quote_id: &str, cancel: bool) -> Result<&'static str, (u16, String)> {
        let mut state = self.state();
        let Some(quote) = state.quotes.get_mut(quote_id) else {
            return Err((404, format!("no quote {quote_id}")));
        };
        if quote.payment_method != PaymentMethod::Clawtip {
            return Err((400, format!("quote {quote_id} is not a clawtip quote")));
        }
        if quote.completed.is_some() || quote.paid {
            return if cancel {
                Err((409, format!("quote {quote_id} is already paid")))
            } else {
                Ok("paid")
            };
        }
        if SystemTime::now() >= quote.expires_at {
            return Err((410, format!("quote {quote_id} has expired")));
        }
        if cancel {
            quote.cancelled = true;
            return Ok("cancelled");
        }
        if quote.cancelled {
            return Err((409, format!("quote {quote_id} was cancelled")));
        }
        quote.paid = true;
        Ok("paid")
    }
}

fn inference(shared: &Shared, parts: http::request::Parts, body: Bytes) -> Answer {
    let recorded = RecordedRequest {
        path_and_query: parts
            .uri
            .path_and_query()
            .map_or_else(|| parts.uri.path().to_owned(), |pq| pq.as_str().to_owned()),
        method: parts.method,
        headers: parts.headers,
        body,
    };
    let (answer, count) = {
        let mut state = shared.state();
        state.requests.push(recorded);
        let count = state.requests.len();
        let answer = match state.requests.last().cloned() {
            Some(req) => decide(&mut state, &req),
            None => Answer::error(500, "server_error", "internal", "lost the request"),
        };
        *state.statuses.entry(answer.status).or_default() += 1;
        let seller_id = state.spec.id.clone();
        let answer = answer.header(SELLER_ID_HEADER, seller_id).header(
            SELLER_REQUEST_ID_HEADER,
            format!("sreq-{}", net::random_hex(8)),
        );
        (answer, count)
    };
    shared.inference.send_replace(count);
    answer
}

fn insufficient(balance: u64) -> Answer {
    Answer::error(
        402,
        "insufficient_quota",
        "insufficient_balance",
        "insufficient balance: this access token has no credit left; buy more",
    )
    .header(BALANCE_HEADER, balance.to_string())
}

fn decide(state: &mut State, req: &RecordedRequest) -> Answer {
    let Some(protocol) = Protocol::from_path(req.path()) else {
        return Answer::error(
            404,
            "invalid_request_error",
            "unknown_url",
            &format!(
                "simulated seller: no route for {} {}",
                req.method,
                req.path()
            ),
        );
    };
    if req.method != Method::POST {
        return Answer::error(
            405,
            "invalid_request_error",
            "method_not_allowed",
            &format!("{} not allowed on {}", req.method, req.path()),
        );
    }
    let State {
        spec,
        tokens,
        settlements,
        fail_counter,
        ..
    } = state;

    // 2. Failure knobs.
    let failure = spec.scripted_failures.pop_front().or_else(|| {
        let rate = spec.fail_every?;
        *fail_counter += 1;
        (rate.every > 0 && *fail_counter % rate.every == 0)
            .then_some(ScriptedFailure::new(rate.status))
    });
    if let Some(failure) = failure {
        let answer = match failure.status {
            401 => Answer::error(
                401,
                "authentication_error",
                "invalid_api_key",
                "simulated seller: access token rejected",
            ),
            402 => insufficient(0),
            429 => Answer::error(
                429,
                "rate_limit_error",
                "rate_limited",
                "simulated seller: rate limited",
            ),
            status => Answer::error(
                status,
                "server_error",
                "simulated_failure",
                &format!("simulated seller: scripted failure {status}"),
            ),
        };
        return match failure.retry_after_secs {
            Some(secs) => answer.header("retry-after", secs.to_string()),
            None => answer,
        };
    }

    // 3. Authentication.
    let bearer = req
        .header("authorization")
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim);
    let Some(token) = bearer.and_then(|b| tokens.get_mut(b)) else {
        return Answer::error(
            401,
            "authentication_error",
            "invalid_api_key",
            "missing or unknown access token",
        );
    };
    if SystemTime::now() >= token.expires_at {
        return Answer::error(
            401,
            "authentication_error",
            "token_expired",
            "access token expired",
        );
    }

    // 4. The request itself.
    let Ok(json) = serde_json::from_slice::<Value>(&req.body) else {
        return Answer::error(
            400,
            "invalid_request_error",
            "bad_json",
            "the request body is not valid JSON",
        );
    };
    let Some(model) = json.get("model").and_then(Value::as_str) else {
        return Answer::error(
            400,
            "invalid_request_error",
            "missing_model",
            "model is required",
        );
    };
    if !spec.models.iter().any(|m| m == model) {
        return Answer::error(
            404,
            "invalid_request_error",
            "model_not_found",
            &format!("the model {model} does not exist here"),
        );
    }
    if !spec.protocols.contains(&protocol) {
        return Answer::error(
            404,
            "invalid_request_error",
            "protocol_not_served",
            &format!("{protocol} is not served here"),
        );
    }

    // 5. Credit.
    if token.balance == 0 {
        return insufficient(0);
    }
    if spec.insufficient_after.is_some_and(|n| token.ok_calls >= n) {
        return insufficient(token.balance);
    }

    // 6. Success.
    let stream = json.get("stream").and_then(Value::as_bool) == Some(true);
    let dropping = spec.mid_stream_drop.is_some();
    let cost = spec.call_cost(protocol, model);
    if !dropping {
        token.balance = token.balance.saturating_sub(cost.settled_micros);
        token.ok_calls += 1;
    }
    let remaining = token.balance;
    let request_id = req
        .header("x-request-id")
        .map_or_else(|| format!("sim-{}", net::random_hex(8)), str::to_owned);
    let settlement = cost.settlement_json(&request_id, remaining);

    let (mut in_header, mut in_event) = match spec.settlement {
        SettlementMode::Auto | SettlementMode::Custom(_) | SettlementMode::Raw(_) => {
            (!stream, stream)
        }
        SettlementMode::Header => (true, false),
        SettlementMode::SseEvent => (false, stream),
        SettlementMode::Both => (true, stream),
        SettlementMode::None => (false, false),
    };
    if dropping {
        (in_header, in_event) = (false, false);
    } else {
        settlements.push(settlement.clone());
    }
    let (header_value, event_data) = match &spec.settlement {
        SettlementMode::Raw(raw) => (raw.clone(), raw.clone()),
        SettlementMode::Custom(custom) => {
            let text = custom.to_string();
            (base64url(text.as_bytes()), text)
        }
        _ => {
            let text = settlement.to_string();
            (base64url(text.as_bytes()), text)
        }
    };

    let mut answer = if stream {
        let mut events = if spec.empty_completion {
            empty_events(protocol, model)
        } else {
            canned::sse_events(protocol, model)
        };
        if in_event {
            let event = sse_event(Some(SETTLEMENT_EVENT), &event_data);
            if protocol == Protocol::ChatCompletions && !events.is_empty() {
                // Before `data: [DONE]`.
                events.insert(events.len() - 1, event);
            } else {
                events.push(event);
            }
        }
        if let Some(n) = spec.mid_stream_drop {
            events.truncate(n.min(events.len().saturating_sub(1)));
        }
        Answer {
            status: 200,
            headers: vec![
                ("content-type".into(), "text/event-stream".into()),
                ("cache-control".into(), "no-cache".into()),
            ],
            body: AnswerBody::Steps(stream_steps(events, spec, dropping)),
        }
    } else {
        let body = if spec.empty_completion {
            empty_json(protocol, model)
        } else {
            canned::json(protocol, model)
        };
        let body = if dropping {
            let half = (body.len() / 2).max(1).min(body.len());
            AnswerBody::Steps(vec![
                Step::Data(Bytes::copy_from_slice(&body[..half])),
                Step::Drop,
            ])
        } else {
            AnswerBody::Full(body.into())
        };
        Answer {
            status: 200,
            headers: vec![("content-type".into(), "application/json".into())],
            body,
        }
    };
    if in_header {
        answer = answer.header(SETTLEMENT_HEADER, header_value);
    }
    answer.header(BALANCE_HEADER, remaining.to_string())
}

fn base64url(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}
