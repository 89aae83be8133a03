//! The call record: one per proxied request (billing.md, "Call record").
//! Keys are snake_case everywhere (JSON output, ledger columns).

use serde::{Deserialize, Serialize};
use tb_domain::{Outcome, Protocol, TraceParent};

mod canonical;

/// The price tier of [`CallRecord::price_tier`] (re-exported: the ledger
/// reads it back without depending on `tb-prices`).
pub use tb_prices::BilledTier;

/// How a request ended, from the client's point of view.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CallOutcome {
    /// The client got a successful answer.
    Ok,
    /// No upstream produced a successful answer.
    Failed,
    /// The client went away first.
    Cancelled,
    /// The stream broke after content had been forwarded.
    FailedMidStream,
    /// The daemon refused the request itself (malformed body) before any
    /// upstream saw it: no attempts, no cost, no upstream statistics.
    Rejected,
}

impl CallOutcome {
    /// The ledger/JSON name.
    pub fn as_str(self) -> &'static str {
        match self {
            CallOutcome::Ok => "ok",
            CallOutcome::Failed => "failed",
            CallOutcome::Cancelled => "cancelled",
            CallOutcome::FailedMidStream => "failed_mid_stream",
            CallOutcome::Rejected => "rejected",
        }
    }

    /// Parses the ledger/JSON name.
    pub fn parse(s: &str) -> Option<CallOutcome> {
        Some(match s {
            "ok" => CallOutcome::Ok,
            "failed" => CallOutcome::Failed,
            "cancelled" => CallOutcome::Cancelled,
            "failed_mid_stream" => CallOutcome::FailedMidStream,
            "rejected" => CallOutcome::Rejected,
            _ => return None,
        })
    }
}

/// Where the cost figure came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BalanceSource {
    /// A seller's settlement.
    SellerAuthoritative,
    /// A manual provider paid with the user's key (our estimate, or the
    /// provider's own reported cost).
    SelfFundedProvider,
    /// Neither: an estimate.
    Estimated,
}

impl BalanceSource {
    /// The ledger/JSON name.
    pub fn as_str(self) -> &'static str {
        match self {
            BalanceSource::SellerAuthoritative => "seller_authoritative",
            BalanceSource::SelfFundedProvider => "self_funded_provider",
            BalanceSource::Estimated => "estimated",
        }
    }

    /// Parses the ledger/JSON name.
    pub fn parse(s: &str) -> Option<BalanceSource> {
        Some(match s {
            "seller_authoritative" => BalanceSource::SellerAuthoritative,
            "self_funded_provider" => BalanceSource::SelfFundedProvider,
            "estimated" => BalanceSource::Estimated,
            _ => return None,
        })
    }
}

/// What the savings baseline is (billing.md, "Savings baseline").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BaselineKind {
    /// The first-party list price.
    Official,
    /// The last priced route of the planned chain.
    LastLeg,
    /// The priciest route of the planned chain, when the model has no
    /// first-party list price.
    PriciestRoute,
}

impl BaselineKind {
    /// The ledger/JSON name.
    pub fn as_str(self) -> &'static str {
        match self {
            BaselineKind::Official => "official",
            BaselineKind::LastLeg => "last_leg",
            BaselineKind::PriciestRoute => "priciest_route",
        }
    }

    /// Parses the ledger/JSON name.
    pub fn parse(s: &str) -> Option<BaselineKind> {
        Some(match s {
            "official" => BaselineKind::Official,
            "last_leg" => BaselineKind::LastLeg,
            "priciest_route" => BaselineKind::PriciestRoute,
            _ => return None,
        })
    }
}

/// What the call is billed in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BillingUnit {
    /// Tokens (chat, responses, messages).
    Tokens,
    /// Images (images_generations).
    Images,
    /// Seconds of video (videos).
    Seconds,
}

impl BillingUnit {
    /// The ledger/JSON name.
    pub fn as_str(self) -> &'static str {
        match self {
            BillingUnit::Tokens => "tokens",
            BillingUnit::Images => "images",
            BillingUnit::Seconds => "seconds",
        }
    }

    /// Parses the ledger/JSON name.
    pub fn parse(s: &str) -> Option<BillingUnit> {
        Some(match s {
            "tokens" => BillingUnit::Tokens,
            "images" => BillingUnit::Images,
            "seconds" => BillingUnit::Seconds,
            _ => return None,
        })
    }
}

/// One upstream attempt of a call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attempt {
    /// Upstream id.
    pub upstream: String,
    /// HTTP status, when the upstream answered.
    pub status: Option<u16>,
    /// How the attempt ended (routing.md's outcome table).
    pub outcome: Outcome,
    /// The outcome again for failures, else `None` (kept for readers of
    /// stored records, where it has always been a separate field).
    pub error_class: Option<Outcome>,
    /// Time from sending to the response head (or the failure).
    pub latency_ms: u64,
}

/// One call record. `None` means unknown, never zero.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CallRecord {
    /// UUIDv7 of the record.
    pub id: String,
    /// The request id (`x-tokenbuddy-request-id`).
    pub request_id: String,
    /// Unix milliseconds UTC when the request arrived.
    pub started_at_ms: i64,
    /// Endpoint label: `chat`, `responses`, `messages`, `images`.
    pub endpoint: String,
    /// Protocol the client spoke.
    pub protocol: Protocol,
    /// Protocol the winning upstream was spoken to in, when it differs from
    /// the client's (a translated route); `None` on a native route.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream_protocol: Option<Protocol>,
    /// The model the client asked for.
    pub requested_model: String,
    /// The model id sent upstream (after alias/prefix resolution).
    pub model: String,
    /// Whether the client asked for a stream.
    pub stream: bool,
    /// `outcome == ok`.
    pub ok: bool,
    /// How the call ended.
    pub outcome: CallOutcome,
    /// The upstream that produced the answer.
    pub winner: Option<String>,
    /// More than one upstream was tried.
    pub failed_over: bool,
    /// Every attempt, in order.
    pub attempts: Vec<Attempt>,
    /// Total time until the last byte went to the client.
    pub latency_ms: u64,
    /// Time to the first content byte; `None` for non-streaming calls.
    pub ttft_ms: Option<u64>,
    /// Total input tokens (fresh + cache reads + cache writes).
    pub input_tokens: Option<u64>,
    /// Cache-read input tokens.
    pub cached_input_tokens: Option<u64>,
    /// Cache-write input tokens.
    pub cache_write_tokens: Option<u64>,
    /// Of `cache_write_tokens`, those written for 1 hour (Anthropic).
    #[serde(default)]
    pub cache_write_1h_tokens: Option<u64>,
    /// Output tokens (reasoning included).
    pub output_tokens: Option<u64>,
    /// Reasoning tokens, when reported.
    pub reasoning_tokens: Option<u64>,
    /// `output × 1000 / (latency − ttft)` for streams.
    pub tokens_per_second: Option<f64>,
    /// What the call cost, in USD micros.
    pub cost_usd_micros: Option<i64>,
    /// Our estimate (usage × effective price of the route).
    pub est_cost_usd_micros: Option<i64>,
    /// What the same usage would have cost without tokenbuddy.
    pub baseline_usd_micros: Option<i64>,
    /// Which baseline.
    pub baseline_kind: Option<BaselineKind>,
    /// `max(0, baseline − cost)`; `None` when either is unknown.
    pub saved_usd_micros: Option<i64>,
    /// The provider's own prompt-cache discount (never a routing saving).
    pub cached_saving_usd_micros: Option<i64>,
    /// Credit a seller settled, in credit micros.
    pub settled_credit_micros: Option<i64>,
    /// Where the cost figure came from.
    pub balance_source: BalanceSource,
    /// A seller token's remaining credit after the call.
    pub remaining_credit_micros: Option<i64>,
    /// Tokens or images.
    pub billing_unit: BillingUnit,
    /// Images generated.
    pub image_count: Option<u32>,
    /// Image size (`1024x1024`).
    pub image_size: Option<String>,
    /// Image quality.
    pub image_quality: Option<String>,
    /// Image output format.
    pub image_format: Option<String>,
    /// What one image cost: `ceil(cost ÷ image_count)`.
    #[serde(default)]
    pub image_cost_per_image_usd_micros: Option<i64>,
    /// Image output tokens (the seller's breakdown, else the answer's usage).
    #[serde(default)]
    pub image_output_tokens: Option<u64>,
    /// What the image output tokens cost (the seller's breakdown, else the
    /// route's image-token output price).
    #[serde(default)]
    pub image_output_cost_usd_micros: Option<i64>,
    /// A successful answer carried no usage.
    pub usage_missing: bool,
    /// Input > 0, output = 0 and no content.
    pub empty_completion: bool,
    /// No price was found for the model.
    pub unpriced: bool,
    /// The price tier the estimate was billed at, from what the answer
    /// reported (`standard`, `priority`, `flex`, `above_200k`,
    /// `cache_write_1h`, or parts joined by `+`); `None` when the route's
    /// price is not the bundled table's (explicit or manifest prices), for
    /// images and when nothing was priced.
    #[serde(default, with = "price_tier_text")]
    pub price_tier: Option<BilledTier>,
    /// `|cost / est − 1|` in parts per million, when both are known.
    pub price_drift_ppm: Option<i64>,
    /// SHA-256 (hex) of the compact JSON of the prompt.
    pub prompt_hash: Option<String>,
    /// The client's W3C `traceparent`, so exported spans join the client's
    /// trace. Neither stored in the ledger nor serialised: only the
    /// exporters read it, while the record is fresh.
    #[serde(skip)]
    pub trace_parent: Option<TraceParent>,
    /// The team member whose key authenticated the call (`tokenbuddyd keys
    /// create --member`); `None` for the daemon's own access token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub member: Option<String>,
}

/// [`CallRecord::price_tier`] as its text (`priority+above_200k`).
mod price_tier_text {
    use serde::{Deserialize, Deserializer, Serializer, de::Error as _};
    use tb_prices::BilledTier;

    #[allow(clippy::ref_option)] // serde's `with` passes `&Option<T>`
    pub(super) fn serialize<S: Serializer>(
        tier: &Option<BilledTier>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match tier {
            Some(t) => s.collect_str(t),
            None => s.serialize_none(),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<BilledTier>, D::Error> {
        Option::<String>::deserialize(d)?
            .map(|text| text.parse().map_err(D::Error::custom))
            .transpose()
    }
}

/// The endpoint label of a protocol, as used in the one-line form.
pub fn endpoint_label(protocol: Protocol) -> &'static str {
    match protocol {
        Protocol::ChatCompletions => "chat",
        Protocol::Responses => "responses",
        Protocol::Messages => "messages",
        Protocol::ImagesGenerations => "images",
        Protocol::ImagesEdits => "image_edits",
        Protocol::Embeddings => "embeddings",
        Protocol::Videos => "videos",
    }
}

/// SHA-256 (hex) of the compact JSON of the prompt: `messages` (chat),
/// `[system, messages]` (messages), `input` (responses, embeddings),
/// `prompt` (images, videos).
/// Identifies repeated prompts without storing them. `None` when the body
/// has no such field.
pub fn prompt_hash(protocol: Protocol, request_body: &[u8]) -> Option<String> {
    use serde_json::value::RawValue;
    use sha2::{Digest, Sha256};

    /// Only the prompt fields are parsed into values; the rest of the body
    /// (parameters, tools) is skipped without building anything.
    #[derive(Deserialize)]
    struct PromptFields<'a> {
        #[serde(borrow, default)]
        messages: Option<&'a RawValue>,
        #[serde(borrow, default)]
        system: Option<&'a RawValue>,
        #[serde(borrow, default)]
        input: Option<&'a RawValue>,
        #[serde(borrow, default)]
        prompt: Option<&'a RawValue>,
    }
    let fields: PromptFields<'_> = serde_json::from_slice(request_body).ok()?;
    // Hashed in its canonical compact form (keys sorted, whitespace and
    // escapes normalised), as billing.md says: what `serde_json::Value`
    // would write, written without building one (`canonical`).
    let mut text = Vec::with_capacity(request_body.len());
    let canonical = |raw: Option<&RawValue>, text: &mut Vec<u8>| {
        canonical::write_canonical(raw?.get(), text).ok()
    };
    match protocol {
        Protocol::ChatCompletions => canonical(fields.messages, &mut text)?,
        Protocol::Messages => {
            // `[system, messages]`, `null` for a missing system prompt.
            text.push(b'[');
            match fields.system {
                Some(raw) => canonical(Some(raw), &mut text)?,
                None => text.extend_from_slice(b"null"),
            }
            text.push(b',');
            canonical(fields.messages, &mut text)?;
            text.push(b']');
        }
        Protocol::Responses | Protocol::Embeddings => canonical(fields.input, &mut text)?,
        Protocol::ImagesGenerations | Protocol::ImagesEdits | Protocol::Videos => {
            canonical(fields.prompt, &mut text)?
        }
    }
    let hasher = Sha256::new_with_prefix(&text);
    Some(const_hex::encode(hasher.finalize()))
}

/// USD micros as dollars with 6 decimals (`$0.000300`). Integer-only.
pub fn usd(micros: i64) -> String {
    let sign = if micros < 0 { "-" } else { "" };
    let abs = micros.unsigned_abs();
    format!("{sign}${}.{:06}", abs / 1_000_000, abs % 1_000_000)
}

impl CallRecord {
    /// The one-line form for logs and `tokenbuddyd calls`:
    /// `✓ chat deepseek-chat  alpha  412ms (ttft 120ms)  $0.000300  (saved $0.000100)`;
    /// a call billed above the base tier shows it after the cost:
    /// `$0.032750 [priority]`.
    pub fn one_line(&self) -> String {
        let mark = if !self.ok {
            "✗"
        } else if self.failed_over {
            "⚠"
        } else {
            "✓"
        };
        let chain: Vec<&str> = self.attempts.iter().map(|a| a.upstream.as_str()).collect();
        let chain = if chain.is_empty() {
            "-".to_string()
        } else {
            chain.join("→")
        };
        let mut line = match self.upstream_protocol {
            Some(up) => format!(
                "{mark} {}→{} {}  {chain}  {}ms",
                self.endpoint,
                endpoint_label(up),
                self.model,
                self.latency_ms
            ),
            None => format!(
                "{mark} {} {}  {chain}  {}ms",
                self.endpoint, self.model, self.latency_ms
            ),
        };
        if let Some(ttft) = self.ttft_ms {
            line.push_str(&format!(" (ttft {ttft}ms)"));
        }
        line.push_str("  ");
        match self.outcome {
            CallOutcome::Ok => match self.cost_usd_micros {
                Some(c) => line.push_str(&usd(c)),
                None => line.push_str("$?"),
            },
            CallOutcome::Cancelled => line.push_str("CANCELLED"),
            CallOutcome::Rejected => line.push_str("REJECTED"),
            CallOutcome::Failed | CallOutcome::FailedMidStream => line.push_str("FAILED"),
        }
        // Why a call cost more (or less) than the base price.
        if let Some(tier) = self.price_tier.filter(|t| *t != BilledTier::STANDARD)
            && self.ok
        {
            line.push_str(&format!(" [{tier}]"));
        }
        if let Some(saved) = self.saved_usd_micros.filter(|s| *s > 0) {
            line.push_str(&format!("  (saved {})", usd(saved)));
        }
        for (flag, on) in [
            ("⚠no-usage", self.usage_missing),
            ("⚠empty", self.empty_completion),
            ("⚠unpriced", self.unpriced && self.ok),
        ] {
            if on {
                line.push_str("  ");
                line.push_str(flag);
            }
        }
        let failed: Vec<String> = self
            .attempts
            .iter()
            .filter(|a| a.outcome != Outcome::Ok)
            .map(|a| match (a.status, &a.error_class) {
                (Some(s), _) => format!("{} {s}", a.upstream),
                (None, Some(class)) => format!("{} {class}", a.upstream),
                (None, None) => format!("{} {}", a.upstream, a.outcome),
            })
            .collect();
        if !failed.is_empty() {
            line.push_str("  ⤷ ");
            line.push_str(&failed.join(", "));
        }
        line
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// One attempt on `upstream` that ended as `outcome` after 5 ms.
    pub(crate) fn attempt(upstream: &str, outcome: Outcome) -> Attempt {
        Attempt {
            upstream: upstream.into(),
            status: None,
            outcome,
            error_class: (outcome != Outcome::Ok).then_some(outcome),
            latency_ms: 5,
        }
    }

    pub(crate) fn sample() -> CallRecord {
        CallRecord {
            id: "0190-a".into(),
            request_id: "r1".into(),
            started_at_ms: 1_700_000_000_000,
            endpoint: "chat".into(),
            protocol: Protocol::ChatCompletions,
            upstream_protocol: None,
            requested_model: "deepseek-chat".into(),
            model: "deepseek-chat".into(),
            stream: true,
            ok: true,
            outcome: CallOutcome::Ok,
            winner: Some("alpha".into()),
            failed_over: false,
            attempts: vec![Attempt {
                upstream: "alpha".into(),
                status: Some(200),
                outcome: Outcome::Ok,
                error_class: None,
                latency_ms: 100,
            }],
            latency_ms: 412,
            ttft_ms: Some(120),
            input_tokens: Some(10),
            cached_input_tokens: Some(0),
            cache_write_tokens: Some(0),
            cache_write_1h_tokens: None,
            output_tokens: Some(5),
            reasoning_tokens: None,
            tokens_per_second: Some(17.1),
            cost_usd_micros: Some(300),
            est_cost_usd_micros: Some(300),
            baseline_usd_micros: Some(400),
            baseline_kind: Some(BaselineKind::Official),
            saved_usd_micros: Some(100),
            cached_saving_usd_micros: Some(0),
            settled_credit_micros: None,
            balance_source: BalanceSource::SelfFundedProvider,
            remaining_credit_micros: None,
            billing_unit: BillingUnit::Tokens,
            image_count: None,
            image_size: None,
            image_quality: None,
            image_format: None,
            image_cost_per_image_usd_micros: None,
            image_output_tokens: None,
            image_output_cost_usd_micros: None,
            usage_missing: false,
            empty_completion: false,
            unpriced: false,
            price_tier: Some(BilledTier::STANDARD),
            price_drift_ppm: None,
            prompt_hash: None,
            trace_parent: None,
            member: None,
        }
    }

    #[test]
    fn one_line_forms_from_the_spec() {
        let r = sample();
        assert_eq!(
            r.one_line(),
            "✓ chat deepseek-chat  alpha  412ms (ttft 120ms)  $0.000300  (saved $0.000100)"
        );

        let mut r = sample();
        r.upstream_protocol = Some(Protocol::Messages);
        assert_eq!(
            r.one_line(),
            "✓ chat→messages deepseek-chat  alpha  412ms (ttft 120ms)  $0.000300  (saved $0.000100)"
        );

        let mut r = sample();
        r.ttft_ms = None;
        r.latency_ms = 910;
        r.cost_usd_micros = Some(400);
        r.saved_usd_micros = None;
        r.failed_over = true;
        r.attempts.insert(
            0,
            Attempt {
                upstream: "alpha".into(),
                status: Some(502),
                outcome: Outcome::ServerError,
                error_class: Some(Outcome::ServerError),
                latency_ms: 5,
            },
        );
        r.attempts[1].upstream = "beta".into();
        assert_eq!(
            r.one_line(),
            "⚠ chat deepseek-chat  alpha→beta  910ms  $0.000400  ⤷ alpha 502"
        );

        let mut r = sample();
        r.endpoint = "messages".into();
        r.model = "claude-sonnet-4-5".into();
        r.ok = false;
        r.outcome = CallOutcome::Failed;
        r.ttft_ms = None;
        r.latency_ms = 1240;
        r.saved_usd_micros = None;
        r.attempts = ["alpha:401", "beta:502", "gamma:429"]
            .iter()
            .map(|s| {
                let (u, st) = s.split_once(':').unwrap();
                Attempt {
                    upstream: u.into(),
                    status: st.parse().ok(),
                    outcome: Outcome::ServerError,
                    error_class: None,
                    latency_ms: 1,
                }
            })
            .collect();
        assert_eq!(
            r.one_line(),
            "✗ messages claude-sonnet-4-5  alpha→beta→gamma  1240ms  FAILED  ⤷ alpha 401, beta 502, gamma 429"
        );

        let mut r = sample();
        r.cost_usd_micros = None;
        r.saved_usd_micros = None;
        r.unpriced = true;
        r.usage_missing = true;
        assert!(
            r.one_line().ends_with("$?  ⚠no-usage  ⚠unpriced"),
            "{}",
            r.one_line()
        );
        r.attempts[0].status = None;
        r.attempts[0].outcome = Outcome::ConnectFailed;
        r.attempts[0].error_class = Some(Outcome::ConnectFailed);
        r.ok = false;
        r.outcome = CallOutcome::Cancelled;
        assert!(
            r.one_line().contains("CANCELLED") && r.one_line().ends_with("⤷ alpha connect_failed"),
            "{}",
            r.one_line()
        );
    }

    #[test]
    fn the_price_tier_shows_in_the_line_and_the_json() {
        use tb_prices::{ServiceTier, Threshold};
        let mut r = sample();
        r.price_tier = Some(BilledTier {
            service: ServiceTier::Priority,
            above: Some(Threshold::Over(200_000)),
            cache_write_1h: false,
        });
        assert_eq!(
            r.one_line(),
            "✓ chat deepseek-chat  alpha  412ms (ttft 120ms)  $0.000300 [priority+above_200k]  (saved $0.000100)"
        );
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["price_tier"], "priority+above_200k");
        let back: CallRecord = serde_json::from_value(json.clone()).unwrap();
        assert_eq!(back, r);
        // Standard is not shown; unknown is null; a record without the
        // field (older JSON) reads as unknown; junk is an error.
        r.price_tier = None;
        assert!(!r.one_line().contains('['));
        assert_eq!(
            serde_json::to_value(&r).unwrap()["price_tier"],
            serde_json::Value::Null
        );
        let mut old = json.clone();
        old.as_object_mut().unwrap().remove("price_tier");
        old.as_object_mut().unwrap().remove("cache_write_1h_tokens");
        let back: CallRecord = serde_json::from_value(old).unwrap();
        assert_eq!((back.price_tier, back.cache_write_1h_tokens), (None, None));
        let mut junk = json;
        junk["price_tier"] = "turbo".into();
        assert!(serde_json::from_value::<CallRecord>(junk).is_err());
    }

    #[test]
    fn money_prints_with_six_decimals() {
        assert_eq!(usd(0), "$0.000000");
        assert_eq!(usd(3_960_000), "$3.960000");
        assert_eq!(usd(1), "$0.000001");
        assert_eq!(usd(-250), "-$0.000250");
    }

    #[test]
    fn prompt_hash_covers_the_prompt_fields() {
        let chat = prompt_hash(
            Protocol::ChatCompletions,
            br#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#,
        )
        .unwrap();
        let same = prompt_hash(
            Protocol::ChatCompletions,
            br#"{"messages": [ {"role": "user", "content": "hi"} ], "model":"other"}"#,
        )
        .unwrap();
        assert_eq!(chat, same, "formatting and other fields do not matter");
        assert_eq!(chat.len(), 64);
        let sys = prompt_hash(
            Protocol::Messages,
            br#"{"system":"be brief","messages":[]}"#,
        )
        .unwrap();
        let nosys = prompt_hash(Protocol::Messages, br#"{"messages":[]}"#).unwrap();
        assert_ne!(sys, nosys);
        assert!(prompt_hash(Protocol::Responses, br#"{"input":"hi"}"#).is_some());
        assert!(prompt_hash(Protocol::ImagesGenerations, br#"{"prompt":"a dot"}"#).is_some());
        assert!(prompt_hash(Protocol::ChatCompletions, b"not json").is_none());
        // Pinned: SHA-256 of the compact JSON the spec names (stable across
        // releases, so ledgers stay comparable).
        // sha256(`[{"content":"hi","role":"user"}]`): keys sorted, compact.
        assert_eq!(
            chat,
            "4e79873118cd9be7a1f0308b9cd772950c5410c74ca3fe1ba2626cba009a9237"
        );
        assert_eq!(
            sys,
            "ca820df5a7b4a6f969f1c90866772597e7b7b8b89bc75199723b74c17ca339b9"
        );
        assert_eq!(
            nosys,
            "97294f05c3603881a6466e787eb8726dde04588d242bea02914b0f0a8e12bdb2"
        );
        assert_eq!(
            prompt_hash(
                Protocol::Responses,
                br#"{"input":[{"role":"user","content":"x"}]}"#
            )
            .unwrap(),
            "7c5139ff349b5009ca51b90118aa039f0c9e60fa9bfb4010bc15a58439c7759f"
        );
        // sha256(`"a dot"`).
        assert_eq!(
            prompt_hash(Protocol::ImagesGenerations, br#"{"prompt":"a dot"}"#).unwrap(),
            "14a2e2b6acd9cbe1268fffd2641d2762b892b4d8b3a286926dd84d407b02c51c"
        );
    }

    #[test]
    fn enum_names_round_trip() {
        for o in [
            CallOutcome::Ok,
            CallOutcome::Failed,
            CallOutcome::Cancelled,
            CallOutcome::FailedMidStream,
            CallOutcome::Rejected,
        ] {
            assert_eq!(CallOutcome::parse(o.as_str()), Some(o));
            assert_eq!(serde_json::to_value(o).unwrap(), o.as_str());
        }
        for b in [
            BalanceSource::SellerAuthoritative,
            BalanceSource::SelfFundedProvider,
            BalanceSource::Estimated,
        ] {
            assert_eq!(BalanceSource::parse(b.as_str()), Some(b));
        }
        for k in [
            BaselineKind::Official,
            BaselineKind::LastLeg,
            BaselineKind::PriciestRoute,
        ] {
            assert_eq!(BaselineKind::parse(k.as_str()), Some(k));
        }
        for u in [BillingUnit::Tokens, BillingUnit::Images] {
            assert_eq!(BillingUnit::parse(u.as_str()), Some(u));
        }
    }
}
