//! The seller wire protocol (marketplace.md, "Seller endpoints"): request
//! bodies, strict readers for the answers, and the HTTP client.
//!
//! A seller is not trusted. Every answer is capped at [`MAX_BODY_BYTES`]
//! and the whole call (connect, head and body) at the client's timeout;
//! required fields must be present and valid, money is an integer from 0 to
//! [`MAX_MICROS`], times are RFC 3339 or epoch milliseconds. Anything else
//! is a [`SellerError`] that names the call, the seller and the field, and
//! never contains the access token.

use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{ACCEPT, CONTENT_LENGTH, CONTENT_TYPE, USER_AGENT};
use http::{Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};
use tb_domain::{PaymentMethod, Protocol};
use tb_http::{duration_ms, error_chain};
use tb_prices::{Ppm, TokenPrices};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::SellerSecret;

/// The HTTP client the seller calls go through: the daemon's one client
/// ([`tb_http::build_client`]), so it shares one connection pool and one
/// TLS setup.
pub use tb_http::HttpClient;

/// The largest seller answer read (64 KiB); a longer one is refused.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// The largest money amount or epoch-millisecond time accepted from a
/// seller (10^15).
pub const MAX_MICROS: u64 = 1_000_000_000_000_000;

/// The longest `quoteId` / `paymentReference` accepted (bytes).
const MAX_ID_BYTES: usize = 512;
/// The longest access token accepted (bytes).
const MAX_TOKEN_BYTES: usize = 4096;
/// The most models / prices read from a manifest.
const MAX_MANIFEST_ENTRIES: usize = 10_000;
/// The longest model id read from a manifest.
const MAX_MODEL_BYTES: usize = 256;
/// How much of an error body goes into [`SellerError::Status`].
const STATUS_SNIPPET_CHARS: usize = 200;

const HEALTHZ: Call = Call("GET /healthz");
const MANIFEST: Call = Call("GET /manifest");
const QUOTE: Call = Call("POST /purchase/quote");
const COMPLETE: Call = Call("POST /purchase/complete");

/// Which seller call an error is about (`POST /purchase/quote`, …).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Call(&'static str);

impl Call {
    /// Method and path, e.g. `POST /purchase/quote`.
    pub fn as_str(self) -> &'static str {
        self.0
    }

    fn method(self) -> Method {
        if self.0.starts_with("POST") {
            Method::POST
        } else {
            Method::GET
        }
    }

    fn path(self) -> &'static str {
        self.0.split_once(' ').map_or(self.0, |(_, path)| path)
    }
}

impl fmt::Display for Call {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

/// Why a seller call failed. The message says which call to which seller
/// went wrong and how; it never contains an access token.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SellerError {
    /// The seller URL cannot be called.
    #[error(
        "{call} for seller {url:?}: unusable seller URL: {detail} (expected http(s)://host[:port])"
    )]
    InvalidUrl {
        /// The call.
        call: Call,
        /// The seller URL as given (credentials removed).
        url: String,
        /// What is wrong with it.
        detail: String,
    },
    /// Connecting, sending or reading failed.
    #[error("{call} {url}: request failed: {detail}")]
    Request {
        /// The call.
        call: Call,
        /// The seller URL (credentials removed).
        url: String,
        /// The transport error, with its causes.
        detail: String,
    },
    /// No complete answer (head and body) within the client's timeout.
    #[error("{call} {url}: no complete answer within {timeout_ms} ms")]
    Timeout {
        /// The call.
        call: Call,
        /// The seller URL (credentials removed).
        url: String,
        /// The timeout.
        timeout_ms: u64,
    },
    /// The seller answered with a non-success status.
    #[error("{call} {url}: HTTP {status}; body starts {body:?}")]
    Status {
        /// The call.
        call: Call,
        /// The seller URL (credentials removed).
        url: String,
        /// The HTTP status.
        status: u16,
        /// The first 200 characters of the body, control characters
        /// replaced.
        body: String,
    },
    /// The answer is longer than [`MAX_BODY_BYTES`].
    #[error("{call} {url}: answer larger than {limit} bytes; refused")]
    TooLarge {
        /// The call.
        call: Call,
        /// The seller URL (credentials removed).
        url: String,
        /// The cap.
        limit: usize,
    },
    /// The answer is not JSON.
    #[error("{call} {url}: answer is not JSON ({detail})")]
    NotJson {
        /// The call.
        call: Call,
        /// The seller URL (credentials removed).
        url: String,
        /// The parser's complaint (position only, no content).
        detail: String,
    },
    /// The answer is JSON but a field is missing or invalid.
    #[error("{call} {url}: {problem}")]
    Invalid {
        /// The call.
        call: Call,
        /// The seller URL (credentials removed).
        url: String,
        /// Which field and what is wrong with it.
        problem: String,
    },
}

impl SellerError {
    /// The seller's HTTP status, for [`SellerError::Status`].
    pub fn status(&self) -> Option<u16> {
        match self {
            SellerError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// A price quote (`POST /purchase/quote`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quote {
    /// The id to complete the purchase with.
    pub quote_id: String,
    /// The credit the purchase buys, micros.
    pub credit_micros: u64,
    /// What it costs; this is what counts against the session budget.
    pub price_usd_micros: u64,
    /// When the quote lapses, unix ms.
    pub expires_at_ms: i64,
    /// What the user must pay, for a wallet payment method (`clawtip`):
    /// the quote's `payment` object, when present and valid.
    pub payment: Option<PaymentRequest>,
}

/// A wallet payment the user makes outside the daemon (the `payment`
/// object of a `clawtip` quote, marketplace.md). Not a secret: it is what
/// the user is shown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentRequest {
    /// Where the user pays (`payUrl`): an `http(s)` URL.
    pub pay_url: String,
    /// The text to encode as a QR code (`qrPayload`; `payUrl` when the
    /// seller sent none).
    pub qr_payload: String,
    /// Where the wallet is recharged (`rechargeQrUrl`), when the seller
    /// sent one.
    pub recharge_qr_url: Option<String>,
}

/// What `POST /purchase/complete` said about a quote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Completion {
    /// `200`: paid; the token.
    Paid(Purchased),
    /// `202 {"status": "pending"}`: the user has not paid yet.
    Pending,
    /// `410 {"status": "expired"}`: the quote lapsed unpaid.
    Expired,
    /// `409 {"status": "cancelled"}`: the user cancelled it in the wallet.
    Cancelled,
}

/// A completed purchase (`POST /purchase/complete`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Purchased {
    /// The token to send as `Authorization: Bearer …` (masked in `Debug`).
    pub access_token: SellerSecret,
    /// The credit bought, micros.
    pub credit_micros: u64,
    /// The token's balance now, micros.
    pub balance_micros: u64,
    /// When the token expires, unix ms.
    pub expires_at_ms: i64,
    /// The payment reference the seller recorded, when it sent a valid one.
    pub payment_reference: Option<String>,
}

/// A seller's optional self-description (`GET /manifest`). Each field is
/// `None` / empty when the seller did not send a usable value; present
/// fields override the registry entry.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Manifest {
    /// Model ids served.
    pub models: Option<Vec<String>>,
    /// Protocols served (unknown ones ignored).
    pub protocols: Option<Vec<Protocol>>,
    /// Payment methods accepted (unknown ones ignored).
    pub payment_methods: Option<Vec<PaymentMethod>>,
    /// `selection.discountRatio`, when in 0..=1.
    pub discount_ratio: Option<Ppm>,
    /// `selection.serviceFeeRatio`.
    pub service_fee_ratio: Option<Ppm>,
    /// Per-model prices in USD micros per 1M tokens (`cache_write` is
    /// always `None`).
    pub prices: BTreeMap<String, TokenPrices>,
}

/// Calls one seller's endpoints. Cheap to clone (the HTTP client is a
/// shared pool).
#[derive(Clone)]
pub struct SellerClient {
    client: HttpClient,
    timeout: Duration,
}

impl fmt::Debug for SellerClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SellerClient")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl SellerClient {
    /// A client whose every call (connect, head and body) must finish
    /// within `timeout`.
    pub fn new(client: HttpClient, timeout: Duration) -> SellerClient {
        SellerClient { client, timeout }
    }

    /// `GET <url>/healthz`: the time until the answer's head arrived, when
    /// the seller answers 2xx.
    pub async fn healthz(&self, url: &str) -> Result<Duration, SellerError> {
        let answer = self.send(HEALTHZ, url, None).await?;
        answer.success()?;
        Ok(answer.latency)
    }

    /// `GET <url>/manifest`: `None` when the seller has none (404).
    pub async fn manifest(&self, url: &str) -> Result<Option<Manifest>, SellerError> {
        let answer = self.send(MANIFEST, url, None).await?;
        if answer.status == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let wire: ManifestAnswer = answer.read()?;
        Ok(Some(read_manifest(wire)))
    }

    /// `POST <url>/purchase/quote` for `credit_micros` of credit usable
    /// with `model_id`.
    pub async fn quote(
        &self,
        url: &str,
        model_id: &str,
        payment: PaymentMethod,
        credit_micros: u64,
    ) -> Result<Quote, SellerError> {
        let body = serde_json::json!({
            "modelId": model_id,
            "paymentMethod": payment.as_str(),
            "creditMicros": credit_micros,
        });
        let answer = self.send(QUOTE, url, Some(body)).await?;
        let wire: QuoteAnswer = answer.read()?;
        Ok(Quote {
            quote_id: answer.required("quoteId", wire.quote_id, id_value)?,
            credit_micros: answer.required("creditMicros", wire.credit_micros, micros_value)?,
            price_usd_micros: answer.required(
                "priceUsdMicros",
                wire.price_usd_micros,
                micros_value,
            )?,
            expires_at_ms: answer.required("expiresAt", wire.expires_at, time_value)?,
            payment: wire.payment.and_then(|p| answer.payment_request(p)),
        })
    }

    /// `POST <url>/purchase/complete` for a wallet (`clawtip`) quote:
    /// `202` is [`Completion::Pending`], `410` [`Completion::Expired`],
    /// `409` [`Completion::Cancelled`], a `200` the token.
    pub async fn poll_complete(
        &self,
        url: &str,
        quote_id: &str,
        payment: PaymentMethod,
    ) -> Result<Completion, SellerError> {
        let body = serde_json::json!({
            "quoteId": quote_id,
            "paymentMethod": payment.as_str(),
        });
        let answer = self.send(COMPLETE, url, Some(body)).await?;
        match answer.status {
            StatusCode::ACCEPTED => Ok(Completion::Pending),
            StatusCode::GONE => Ok(Completion::Expired),
            StatusCode::CONFLICT => Ok(Completion::Cancelled),
            _ => answer.purchased().map(Completion::Paid),
        }
    }

    /// `POST <url>/purchase/complete` for a quote.
    pub async fn complete(
        &self,
        url: &str,
        quote_id: &str,
        payment: PaymentMethod,
        payment_reference: Option<&str>,
    ) -> Result<Purchased, SellerError> {
        let mut body = serde_json::json!({
            "quoteId": quote_id,
            "paymentMethod": payment.as_str(),
        });
        if let (Some(reference), Some(obj)) = (payment_reference, body.as_object_mut()) {
            obj.insert("paymentReference".into(), Value::from(reference));
        }
        let answer = self.send(COMPLETE, url, Some(body)).await?;
        answer.purchased()
    }

    /// Sends one call and reads the whole (capped) answer, all within the
    /// timeout.
    async fn send(
        &self,
        call: Call,
        url: &str,
        json: Option<Value>,
    ) -> Result<Answer, SellerError> {
        let shown = display_url(url);
        let uri = request_uri(url, call.path()).map_err(|detail| SellerError::InvalidUrl {
            call,
            url: shown.clone(),
            detail,
        })?;
        let mut request = Request::builder()
            .method(call.method())
            .uri(uri)
            .header(ACCEPT, "application/json")
            .header(USER_AGENT, tb_http::USER_AGENT);
        let body = match json {
            Some(value) => {
                request = request.header(CONTENT_TYPE, "application/json");
                Bytes::from(value.to_string())
            }
            None => Bytes::new(),
        };
        let request = request
            .body(Full::new(body))
            .map_err(|e| SellerError::InvalidUrl {
                call,
                url: shown.clone(),
                detail: e.to_string(),
            })?;
        let started = Instant::now();
        let exchange = async {
            let response =
                self.client
                    .request(request)
                    .await
                    .map_err(|e| SellerError::Request {
                        call,
                        url: shown.clone(),
                        detail: error_chain(&e),
                    })?;
            let latency = started.elapsed();
            let status = response.status();
            let too_large = || SellerError::TooLarge {
                call,
                url: shown.clone(),
                limit: MAX_BODY_BYTES,
            };
            let declared = response
                .headers()
                .get(CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok());
            if declared.is_some_and(|n| n > MAX_BODY_BYTES as u64) {
                return Err(too_large());
            }
            let body = Limited::new(response.into_body(), MAX_BODY_BYTES)
                .collect()
                .await
                .map_err(|e| {
                    if e.is::<LengthLimitError>() {
                        too_large()
                    } else {
                        SellerError::Request {
                            call,
                            url: shown.clone(),
                            detail: format!("reading the answer: {}", error_chain(&*e)),
                        }
                    }
                })?
                .to_bytes();
            Ok(Answer {
                call,
                url: shown.clone(),
                status,
                body,
                latency,
            })
        };
        match tokio::time::timeout(self.timeout, exchange).await {
            Ok(result) => result,
            Err(_) => Err(SellerError::Timeout {
                call,
                url: shown,
                timeout_ms: duration_ms(self.timeout),
            }),
        }
    }
}

/// One seller answer, read whole.
struct Answer {
    call: Call,
    url: String,
    status: StatusCode,
    body: Bytes,
    latency: Duration,
}

impl Answer {
    fn success(&self) -> Result<(), SellerError> {
        if self.status.is_success() {
            Ok(())
        } else {
            Err(SellerError::Status {
                call: self.call,
                url: self.url.clone(),
                status: self.status.as_u16(),
                body: snippet(&self.body),
            })
        }
    }

    /// The body of a 2xx answer as a JSON object.
    fn json_object(&self) -> Result<Map<String, Value>, SellerError> {
        self.success()?;
        let value: Value =
            serde_json::from_slice(&self.body).map_err(|e| SellerError::NotJson {
                call: self.call,
                url: self.url.clone(),
                // The category and position only: serde_json's messages
                // can quote the offending value.
                detail: format!(
                    "{:?} error at line {} column {}",
                    e.classify(),
                    e.line(),
                    e.column()
                )
                .to_lowercase(),
            })?;
        match value {
            Value::Object(map) => Ok(map),
            other => Err(SellerError::Invalid {
                call: self.call,
                url: self.url.clone(),
                problem: format!(
                    "the answer is a JSON {}, expected an object",
                    json_type(&other)
                ),
            }),
        }
    }

    /// The body of a 2xx answer, its fields looked up by serde (camelCase,
    /// snake_case accepted). Field values stay raw JSON, checked by
    /// [`required`](Self::required), so each error names its field.
    fn read<T: DeserializeOwned>(&self) -> Result<T, SellerError> {
        let obj = self.json_object()?;
        // Only an ambiguous object fails here (both spellings of a field);
        // serde names the field, never a value.
        T::deserialize(Value::Object(obj))
            .map_err(|e| self.invalid(format!("the answer is ambiguous: {e}")))
    }

    fn invalid(&self, problem: String) -> SellerError {
        SellerError::Invalid {
            call: self.call,
            url: self.url.clone(),
            problem,
        }
    }

    /// A required field (`null` counts as missing), checked by `check`.
    fn required<T>(
        &self,
        name: &'static str,
        value: Option<Value>,
        check: fn(&Value) -> Result<T, String>,
    ) -> Result<T, SellerError> {
        let value =
            value.ok_or_else(|| self.invalid(format!("required field {name} is missing")))?;
        check(&value).map_err(|why| self.invalid(format!("field {name} {why}")))
    }

    /// A `complete` answer's token and credit.
    fn purchased(&self) -> Result<Purchased, SellerError> {
        let wire: CompleteAnswer = self.read()?;
        Ok(Purchased {
            access_token: self.required("accessToken", wire.access_token, token_value)?,
            credit_micros: self.required("creditMicros", wire.credit_micros, micros_value)?,
            balance_micros: self.required("balanceMicros", wire.balance_micros, micros_value)?,
            expires_at_ms: self.required("expiresAt", wire.expires_at, time_value)?,
            payment_reference: self.optional_id("paymentReference", wire.payment_reference),
        })
    }

    /// A quote's `payment` object; an unusable one is ignored (and logged):
    /// the purchase then fails for want of a way to pay.
    fn payment_request(&self, value: Value) -> Option<PaymentRequest> {
        match payment_request(value) {
            Ok(p) => Some(p),
            Err(why) => {
                tracing::debug!(
                    target: "seller.wire",
                    call = %self.call,
                    seller = %self.url,
                    "ignoring field payment: {why}"
                );
                None
            }
        }
    }

    /// An optional id: an invalid one is ignored (and logged).
    fn optional_id(&self, name: &'static str, value: Option<Value>) -> Option<String> {
        match id_value(&value?) {
            Ok(id) => Some(id),
            Err(why) => {
                tracing::debug!(
                    target: "seller.wire",
                    call = %self.call,
                    seller = %self.url,
                    "ignoring optional field {name}: {why}"
                );
                None
            }
        }
    }
}

/// The fields of a `POST /purchase/quote` answer. Values stay raw JSON:
/// each is checked on its own, so the error says which field is wrong.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct QuoteAnswer {
    #[serde(alias = "quote_id")]
    quote_id: Option<Value>,
    #[serde(alias = "credit_micros")]
    credit_micros: Option<Value>,
    #[serde(alias = "price_usd_micros")]
    price_usd_micros: Option<Value>,
    #[serde(alias = "expires_at")]
    expires_at: Option<Value>,
    payment: Option<Value>,
}

/// A quote's `payment` object.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PaymentAnswer {
    #[serde(alias = "pay_url")]
    pay_url: Option<Value>,
    #[serde(alias = "qr_payload")]
    qr_payload: Option<Value>,
    #[serde(alias = "recharge_qr_url")]
    recharge_qr_url: Option<Value>,
}

/// The longest `payUrl` / `qrPayload` accepted (bytes; a QR code holds
/// under 3 KB).
const MAX_PAYMENT_TEXT_BYTES: usize = 2048;

/// Reads a quote's `payment` object: `payUrl` an `http(s)` URL with a host,
/// `qrPayload` 1–2048 bytes without control characters (defaults to
/// `payUrl`), `rechargeQrUrl` an optional URL (dropped when unusable).
fn payment_request(value: Value) -> Result<PaymentRequest, String> {
    let wire = PaymentAnswer::deserialize(value).map_err(|e| format!("is not an object: {e}"))?;
    let pay_url = wire
        .pay_url
        .ok_or_else(|| "has no payUrl".to_owned())
        .and_then(|v| pay_url_value(&v).map_err(|why| format!("payUrl {why}")))?;
    let qr_payload = match wire.qr_payload {
        None | Some(Value::Null) => pay_url.clone(),
        Some(v) => payment_text(&v).map_err(|why| format!("qrPayload {why}"))?,
    };
    let recharge_qr_url = wire.recharge_qr_url.and_then(|v| pay_url_value(&v).ok());
    Ok(PaymentRequest {
        pay_url,
        qr_payload,
        recharge_qr_url,
    })
}

/// Text shown to the user: 1–2048 bytes without control characters.
fn payment_text(value: &Value) -> Result<String, String> {
    let Value::String(s) = value else {
        return Err(format!("is a JSON {}, expected a string", json_type(value)));
    };
    if s.is_empty() || s.len() > MAX_PAYMENT_TEXT_BYTES || s.chars().any(char::is_control) {
        return Err(format!(
            "is not usable ({} bytes; 1–{MAX_PAYMENT_TEXT_BYTES} without control characters)",
            s.len()
        ));
    }
    Ok(s.clone())
}

/// A URL the user opens: [`payment_text`] that is `http(s)://` with a
/// host and no spaces.
fn pay_url_value(value: &Value) -> Result<String, String> {
    let text = payment_text(value)?;
    let rest = text
        .strip_prefix("https://")
        .or_else(|| text.strip_prefix("http://"));
    match rest {
        Some(rest) if !rest.is_empty() && !rest.starts_with('/') && !text.contains(' ') => Ok(text),
        _ => Err(format!(
            "{:?} is not an http(s) URL with a host",
            text.chars().take(64).collect::<String>()
        )),
    }
}

/// The fields of a `POST /purchase/complete` answer.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CompleteAnswer {
    #[serde(alias = "access_token")]
    access_token: Option<Value>,
    #[serde(alias = "credit_micros")]
    credit_micros: Option<Value>,
    #[serde(alias = "balance_micros")]
    balance_micros: Option<Value>,
    #[serde(alias = "expires_at")]
    expires_at: Option<Value>,
    #[serde(alias = "payment_reference")]
    payment_reference: Option<Value>,
}

/// The fields of a `GET /manifest` answer. Every one is optional and read
/// leniently by [`read_manifest`].
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct ManifestAnswer {
    models: Option<Value>,
    protocols: Option<Value>,
    #[serde(alias = "payment_methods")]
    payment_methods: Option<Value>,
    selection: Option<Value>,
    prices: Option<Value>,
}

/// A manifest's `selection` object.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SelectionAnswer {
    #[serde(alias = "discount_ratio")]
    discount_ratio: Option<Value>,
    #[serde(alias = "service_fee_ratio")]
    service_fee_ratio: Option<Value>,
}

/// One model's entry in a manifest's `prices`, USD per 1M tokens.
#[derive(Deserialize)]
struct PriceAnswer {
    #[serde(rename = "inputUsdPer1m", alias = "input_usd_per_1m")]
    input: Option<Value>,
    #[serde(rename = "outputUsdPer1m", alias = "output_usd_per_1m")]
    output: Option<Value>,
    #[serde(rename = "cacheReadUsdPer1m", alias = "cache_read_usd_per_1m")]
    cache_read: Option<Value>,
}

/// The access token: 1–4096 visible ASCII characters (it goes into an
/// `Authorization` header). The error never shows the value.
fn token_value(value: &Value) -> Result<SellerSecret, String> {
    let Value::String(token) = value else {
        return Err(format!("is a JSON {}, expected a string", json_type(value)));
    };
    let visible = token.bytes().all(|b| (0x21..=0x7e).contains(&b));
    if token.is_empty() || token.len() > MAX_TOKEN_BYTES || !visible {
        return Err(format!(
            "is not a usable token ({} bytes; a token is 1–{MAX_TOKEN_BYTES} visible ASCII \
             characters without spaces)",
            token.len()
        ));
    }
    Ok(SellerSecret::new(token.clone()))
}

/// A money amount: a JSON integer from 0 to [`MAX_MICROS`] (an integral
/// float such as `1000.0` is accepted).
fn micros_value(value: &Value) -> Result<u64, String> {
    let Value::Number(n) = value else {
        return Err(format!(
            "is a JSON {}, expected an integer from 0 to 10^15",
            json_type(value)
        ));
    };
    let out_of_range = || format!("is {n}; it must be an integer from 0 to 10^15");
    if let Some(v) = n.as_u64() {
        return if v <= MAX_MICROS {
            Ok(v)
        } else {
            Err(out_of_range())
        };
    }
    if n.is_i64() {
        return Err(out_of_range());
    }
    match n.as_f64() {
        Some(f) if f.is_finite() && f.fract() == 0.0 && (0.0..=1e15).contains(&f) => {
            // In range and integral, so the conversion is exact.
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            Ok(f as u64)
        }
        _ => Err(out_of_range()),
    }
}

/// A time: an RFC 3339 string (`Z` or a numeric offset) or epoch
/// milliseconds (0 to 10^15).
fn time_value(value: &Value) -> Result<i64, String> {
    match value {
        Value::Number(_) => micros_value(value)
            .map(|ms| i64::try_from(ms).unwrap_or(i64::MAX))
            .map_err(|_| "is not epoch milliseconds from 0 to 10^15".to_owned()),
        Value::String(s) => parse_rfc3339_ms(s).ok_or_else(|| {
            let shown: String = s.chars().take(64).collect();
            format!("{shown:?} is not an RFC 3339 time (e.g. 2026-01-31T12:00:00Z) or epoch ms")
        }),
        other => Err(format!(
            "is a JSON {}, expected an RFC 3339 time or epoch milliseconds",
            json_type(other)
        )),
    }
}

/// Parses RFC 3339 (`2026-01-31T12:00:00Z`, fractional seconds, `+08:00`
/// offsets, `t`/`z` in either case) into unix ms. `None` for anything else
/// or before 1970.
pub(crate) fn parse_rfc3339_ms(text: &str) -> Option<i64> {
    let text = text.trim();
    // `time` takes any date/time separator (RFC 3339 allows a space "for
    // readability"); sellers must send `T`, as they always have.
    if !matches!(text.as_bytes().get(10), Some(b'T' | b't')) {
        return None;
    }
    let nanos = OffsetDateTime::parse(text, &Rfc3339)
        .ok()?
        .unix_timestamp_nanos();
    if nanos < 0 {
        return None;
    }
    i64::try_from(nanos / 1_000_000).ok()
}

/// An id (`quoteId`, `paymentReference`): 1–512 bytes of text without
/// control characters.
fn id_value(value: &Value) -> Result<String, String> {
    let Value::String(s) = value else {
        return Err(format!("is a JSON {}, expected a string", json_type(value)));
    };
    if s.is_empty() || s.len() > MAX_ID_BYTES || s.chars().any(char::is_control) {
        return Err(format!(
            "is not a valid id ({} bytes; 1–{MAX_ID_BYTES} without control characters)",
            s.len()
        ));
    }
    Ok(s.clone())
}

/// A manifest from its fields: unusable values are dropped one by one
/// (the manifest only refines the registry entry).
fn read_manifest(wire: ManifestAnswer) -> Manifest {
    let protocols = wire.protocols.as_ref().and_then(strings).map(|names| {
        names
            .iter()
            .filter_map(|n| Protocol::ALL.into_iter().find(|p| p.as_str() == n))
            .collect()
    });
    let payment_methods = wire
        .payment_methods
        .as_ref()
        .and_then(strings)
        .map(|names| {
            names
                .iter()
                .filter_map(|n| PaymentMethod::parse(n))
                .collect()
        });
    let selection = wire
        .selection
        .and_then(|v| SelectionAnswer::deserialize(v).ok());
    let ratio = |v: Option<&Value>| match v? {
        Value::Number(n) => Ppm::from_decimal_str(&n.to_string()).ok(),
        _ => None,
    };
    let (discount_ratio, service_fee_ratio) = match &selection {
        Some(sel) => (
            ratio(sel.discount_ratio.as_ref()).filter(|r| *r <= Ppm::ONE),
            ratio(sel.service_fee_ratio.as_ref()),
        ),
        None => (None, None),
    };
    Manifest {
        models: wire.models.as_ref().and_then(strings),
        protocols,
        payment_methods,
        discount_ratio,
        service_fee_ratio,
        prices: wire.prices.map(read_prices).unwrap_or_default(),
    }
}

/// The usable strings of a JSON array (trimmed, non-empty, at most
/// [`MAX_MODEL_BYTES`], no control characters, at most
/// [`MAX_MANIFEST_ENTRIES`]); `None` when it is not an array.
fn strings(v: &Value) -> Option<Vec<String>> {
    Some(
        v.as_array()?
            .iter()
            .filter_map(Value::as_str)
            .map(str::trim)
            .filter(|s| !s.is_empty() && s.len() <= MAX_MODEL_BYTES)
            .filter(|s| !s.chars().any(char::is_control))
            .take(MAX_MANIFEST_ENTRIES)
            .map(str::to_owned)
            .collect(),
    )
}

/// A manifest's `prices` object; entries that are not objects, or have no
/// usable price, are dropped.
fn read_prices(table: Value) -> BTreeMap<String, TokenPrices> {
    let Value::Object(table) = table else {
        return BTreeMap::new();
    };
    let usd = |v: Option<Value>| usd_to_micros(v?.as_f64()?);
    let mut prices = BTreeMap::new();
    for (model, entry) in table.into_iter().take(MAX_MANIFEST_ENTRIES) {
        if model.is_empty() || model.len() > MAX_MODEL_BYTES {
            continue;
        }
        let Ok(entry) = PriceAnswer::deserialize(entry) else {
            continue;
        };
        let p = TokenPrices {
            input: usd(entry.input),
            output: usd(entry.output),
            cache_read: usd(entry.cache_read),
            cache_write: None,
            cache_write_1h: None,
        };
        if !p.is_none() {
            prices.insert(model, p);
        }
    }
    prices
}

/// USD (a JSON number) to micros, rounded; `None` unless finite and within
/// 0..=10^15 micros.
fn usd_to_micros(usd: f64) -> Option<u64> {
    let micros = (usd * 1_000_000.0).round();
    if micros.is_finite() && (0.0..=1e15).contains(&micros) {
        // In range and integral.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        Some(micros as u64)
    } else {
        None
    }
}

fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// `<url without trailing slashes><path>` as a request URI; http(s) with a
/// host only.
fn request_uri(url: &str, path: &str) -> Result<Uri, String> {
    let base = url.trim().trim_end_matches('/');
    let uri: Uri = format!("{base}{path}")
        .parse()
        .map_err(|e: http::uri::InvalidUri| e.to_string())?;
    match uri.scheme_str() {
        Some("http" | "https") => {}
        Some(other) => return Err(format!("scheme {other:?} is not http or https")),
        None => return Err("no scheme".into()),
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err("no host".into());
    }
    Ok(uri)
}

/// The URL for messages: user credentials removed.
fn display_url(url: &str) -> String {
    let url = url.trim();
    let Some(start) = url.find("://").map(|i| i + 3) else {
        return url.chars().take(200).collect();
    };
    let rest = &url[start..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let shown = match rest[..authority_end].rfind('@') {
        Some(at) => format!("{}***@{}", &url[..start], &rest[at + 1..]),
        None => url.to_owned(),
    };
    shown.chars().take(200).collect()
}

/// The start of an error body, lossily decoded, control characters
/// replaced.
fn snippet(body: &[u8]) -> String {
    String::from_utf8_lossy(&body[..body.len().min(STATUS_SNIPPET_CHARS * 4)])
        .chars()
        .take(STATUS_SNIPPET_CHARS)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use serde_json::json;

    #[test]
    fn payment_requests() {
        let ok = payment_request(serde_json::json!({
            "payUrl": "https://pay.example/q-1", "qrPayload": "clawtip://pay?q=1",
            "rechargeQrUrl": "not a url"
        }))
        .unwrap();
        assert_eq!(ok.pay_url, "https://pay.example/q-1");
        assert_eq!(ok.qr_payload, "clawtip://pay?q=1");
        assert_eq!(ok.recharge_qr_url, None);
        let snake = payment_request(serde_json::json!({
            "pay_url": "http://127.0.0.1:9/pay/q", "recharge_qr_url": "https://w.example/r"
        }))
        .unwrap();
        assert_eq!(snake.qr_payload, "http://127.0.0.1:9/pay/q");
        assert_eq!(
            snake.recharge_qr_url.as_deref(),
            Some("https://w.example/r")
        );
        for bad in [
            serde_json::json!({}),
            serde_json::json!({"payUrl": "ftp://x"}),
            serde_json::json!({"payUrl": "https://"}),
            serde_json::json!({"payUrl": "https://a b"}),
            serde_json::json!({"payUrl": 7}),
            serde_json::json!({"payUrl": "https://x", "qrPayload": ""}),
            serde_json::json!({"payUrl": "https://x", "qrPayload": "a\nb"}),
            serde_json::json!({"payUrl": format!("https://{}", "x".repeat(3000))}),
            serde_json::json!("https://x"),
        ] {
            assert!(payment_request(bad.clone()).is_err(), "{bad}");
        }
    }

    #[test]
    fn micros_bounds() {
        assert_eq!(micros_value(&json!(0)), Ok(0));
        assert_eq!(
            micros_value(&json!(1_000_000_000_000_000u64)),
            Ok(MAX_MICROS)
        );
        assert_eq!(micros_value(&json!(1000.0)), Ok(1000));
        for bad in [
            json!(-1),
            json!(1_000_000_000_000_001u64),
            json!(u64::MAX),
            json!(1.5),
            json!(-0.5),
            json!(1e16),
            json!("5"),
            json!(true),
            json!([]),
        ] {
            assert!(micros_value(&bad).is_err(), "{bad}");
        }
        assert!(micros_value(&json!(-5)).unwrap_err().contains("-5"));
    }

    #[test]
    fn rfc3339_forms() {
        let z = parse_rfc3339_ms("2026-01-31T12:00:00Z").unwrap();
        assert_eq!(z, 1_769_860_800_000);
        assert_eq!(parse_rfc3339_ms("2026-01-31T12:00:00.250Z"), Some(z + 250));
        assert_eq!(parse_rfc3339_ms("2026-01-31t12:00:00z"), Some(z));
        assert_eq!(parse_rfc3339_ms("2026-01-31T20:00:00+08:00"), Some(z));
        assert_eq!(parse_rfc3339_ms("2026-01-31T07:30:00-04:30"), Some(z));
        assert_eq!(parse_rfc3339_ms("2026-01-31T12:00:00+00:00"), Some(z));
        assert_eq!(parse_rfc3339_ms("  2026-01-31T12:00:00Z\n"), Some(z));
        assert_eq!(
            parse_rfc3339_ms("2026-01-31T12:00:00.123456789Z"),
            Some(z + 123)
        );
        assert_eq!(parse_rfc3339_ms("1970-01-01T08:00:00+08:00"), Some(0));
        for bad in [
            "",
            "tomorrow",
            "2026-01-31",
            "2026-01-31T12:00:00",
            "2026-13-31T12:00:00Z",
            "2026-01-31T12:00:00+8:00",
            "2026-01-31T12:00:00+24:00",
            "2026-01-31T12:00:00+05:60",
            "2026-01-31T12:00:00+0800",
            "2026-01-31T12:00Z",
            "2026-01-31 12:00:00Z",
            "2026-01-31X12:00:00Z",
            "2026-01-31T24:00:00Z",
            "2026-02-30T12:00:00Z",
            "2026-01-31T12:00:00Z trailing",
            "1969-12-31T23:59:59Z",
            "1969-12-31T23:59:59.9995Z",
            "1970-01-01T00:00:00+00:01",
            "２０２６-01-31T12:00:00Z",
        ] {
            assert_eq!(parse_rfc3339_ms(bad), None, "{bad}");
        }
    }

    #[test]
    fn times_accept_epoch_ms() {
        assert_eq!(
            time_value(&json!(1_769_860_800_000i64)),
            Ok(1_769_860_800_000)
        );
        assert!(time_value(&json!(-1)).is_err());
        assert!(time_value(&json!(null)).is_err());
        assert!(time_value(&json!("soon")).unwrap_err().contains("soon"));
    }

    #[test]
    fn uris() {
        assert_eq!(
            request_uri("http://127.0.0.1:9/", "/healthz")
                .unwrap()
                .to_string(),
            "http://127.0.0.1:9/healthz"
        );
        assert_eq!(
            request_uri("https://s.example/api", "/manifest")
                .unwrap()
                .to_string(),
            "https://s.example/api/manifest"
        );
        assert!(request_uri("ftp://x", "/healthz").is_err());
        assert!(request_uri("127.0.0.1:9", "/healthz").is_err());
        assert!(request_uri("http://", "/healthz").is_err());
        assert!(request_uri("http://a b", "/healthz").is_err());
    }

    #[test]
    fn urls_in_messages_hide_credentials() {
        assert_eq!(
            display_url("https://user:pw@s.example/x"),
            "https://***@s.example/x"
        );
        assert_eq!(
            display_url("https://s.example/a@b"),
            "https://s.example/a@b"
        );
    }

    #[test]
    fn manifest_is_lenient() {
        let obj = json!({
            "models": ["m1", "", 7, "m2"],
            "protocols": ["messages", "telepathy"],
            "payment_methods": ["mock", "bitcoin"],
            "selection": {"discountRatio": 0.2, "serviceFeeRatio": 0.02},
            "prices": {
                "m1": {"inputUsdPer1m": 2.4, "outputUsdPer1m": 12, "cacheReadUsdPer1m": -1},
                "m2": {"inputUsdPer1m": "x"},
                "m3": 5
            }
        });
        let m = read_manifest(serde_json::from_value(obj).unwrap());
        assert_eq!(m.models, Some(vec!["m1".to_owned(), "m2".to_owned()]));
        assert_eq!(m.protocols, Some(vec![Protocol::Messages]));
        assert_eq!(m.payment_methods, Some(vec![PaymentMethod::Mock]));
        assert_eq!(m.discount_ratio, Some(Ppm::new(200_000)));
        assert_eq!(m.service_fee_ratio, Some(Ppm::new(20_000)));
        assert_eq!(
            m.prices.get("m1"),
            Some(&TokenPrices {
                input: Some(2_400_000),
                output: Some(12_000_000),
                cache_read: None,
                cache_write: None,
                cache_write_1h: None,
            })
        );
        assert_eq!(m.prices.len(), 1);
        let empty = read_manifest(
            serde_json::from_value(json!({"selection": {"discountRatio": 1.5}})).unwrap(),
        );
        assert_eq!(empty, Manifest::default());
        // Wrong shapes are dropped, not errors; snake_case works nested too.
        let odd = read_manifest(
            serde_json::from_value(json!({
                "models": "m1", "selection": [1], "prices": ["m1"],
                "protocols": null
            }))
            .unwrap(),
        );
        assert_eq!(odd, Manifest::default());
        let snake = read_manifest(
            serde_json::from_value(json!({
                "selection": {"discount_ratio": 0.5, "service_fee_ratio": 0.01},
                "prices": {"m": {"output_usd_per_1m": 1}, "x": {"input_usd_per_1m": 1, "inputUsdPer1m": 2}}
            }))
            .unwrap(),
        );
        assert_eq!(snake.discount_ratio, Some(Ppm::new(500_000)));
        assert_eq!(snake.service_fee_ratio, Some(Ppm::new(10_000)));
        // "x" names one price twice: ambiguous, so that entry is dropped.
        assert_eq!(snake.prices.keys().collect::<Vec<_>>(), ["m"]);
    }

    #[test]
    fn snippets_are_short_and_clean() {
        let body = format!("line1\nline2\u{7}{}", "x".repeat(1000));
        let s = snippet(body.as_bytes());
        assert_eq!(s.chars().count(), STATUS_SNIPPET_CHARS);
        assert!(!s.chars().any(char::is_control));
    }
}
