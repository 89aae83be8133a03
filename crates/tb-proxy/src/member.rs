//! Member keys: per-person credentials of a team gateway (issue 19). A
//! member key authenticates like the access token (`Authorization: Bearer`
//! or `x-api-key`) and names the member every call record carries.
//!
//! Only the SHA-256 of a key is ever stored or compared: a key is 32 random
//! bytes, so a fast hash is as strong as a slow one (nothing to brute
//! force) and checking a request costs one hash, not a password-hashing
//! round. The proxy never reads the database on the request path: it asks
//! a [`MemberKeys`] directory, which the daemon keeps as an in-memory
//! snapshot refreshed from the ledger.

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};

use tb_billing::cost::RoutePrice;
use tb_billing::record::usd;
use tb_billing::usage::Usage;

use crate::TokenError;
use crate::error::{ErrorCode, ProxyError};

/// Every member key starts with this, so a key in a config file or a log
/// line is recognisable (and never mistaken for the access token).
pub const MEMBER_KEY_PREFIX: &str = "tbm_";

/// A freshly generated member key. `Debug` never prints it.
pub struct MemberKey(String);

impl std::fmt::Debug for MemberKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MemberKey(********)")
    }
}

impl MemberKey {
    /// `tbm_` and 32 random bytes as unpadded base64url.
    ///
    /// # Errors
    ///
    /// [`TokenError::Random`] when the OS random source fails.
    pub fn generate() -> Result<MemberKey, TokenError> {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).map_err(|e| TokenError::Random(e.to_string()))?;
        Ok(MemberKey(format!(
            "{MEMBER_KEY_PREFIX}{}",
            URL_SAFE_NO_PAD.encode(bytes)
        )))
    }

    /// The key text, shown once to the person creating it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// What is stored: [`key_hash`] of the key.
    pub fn hash(&self) -> String {
        key_hash(self.0.as_bytes())
    }
}

/// SHA-256 of a presented credential, lower-case hex.
pub fn key_hash(presented: &[u8]) -> String {
    const_hex::encode(Sha256::digest(presented))
}

/// A member as the proxy needs it: the name recorded on every call, the
/// models the key may use and its limits.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Member {
    /// The member's name (`keys create --member`).
    pub name: String,
    /// The models the key may use; `None`: every model.
    pub models: Option<Vec<String>>,
    /// Budget and rate limits of the key.
    pub limits: MemberLimits,
}

/// A key's limits, each `None` when unlimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MemberLimits {
    /// Total spend of the member, USD micros.
    pub budget_usd_micros: Option<i64>,
    /// Requests per minute window.
    pub rpm: Option<u64>,
    /// Tokens (input + output) per minute window.
    pub tpm: Option<u64>,
}

impl MemberLimits {
    /// Whether any limit is set (else nothing needs counting).
    pub fn any(&self) -> bool {
        self.budget_usd_micros.is_some() || self.rpm.is_some() || self.tpm.is_some()
    }
}

/// What the shared counters say about a member after an admission: the
/// new values when it was admitted, the values it was refused on
/// otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MemberUsage {
    /// Whether the request was admitted (its reservation made).
    pub admitted: bool,
    /// Admitted requests in the current minute window.
    pub requests: u64,
    /// Tokens in the window: recorded calls plus calls in flight.
    pub tokens: u64,
    /// The member's recorded spend, USD micros.
    pub spent_usd_micros: i64,
    /// What the member's calls in flight have reserved, USD micros.
    pub reserved_usd_micros: i64,
    /// Seconds until the current window ends (≥ 1).
    pub retry_after_secs: u64,
}

/// What one call reserves at admission until its record replaces it
/// with the actual cost and tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reservation {
    /// The reservation's id: the id the call's record will have.
    pub id: String,
    /// The call's estimated worst cost, USD micros.
    pub cost_usd_micros: u64,
    /// The call's estimated tokens, input + output.
    pub tokens: u64,
    /// What kind of request reserves: how much of the budget must be left
    /// and how long the reservation holds without a record.
    pub kind: ReservationKind,
}

/// What a [`Reservation`] is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReservationKind {
    /// A call: admitted while anything of the budget is left; its
    /// reservation lapses 15 minutes after admission if no record
    /// replaces it (its daemon died mid-call).
    Call,
    /// A video job: its worst cost must fit whole in what is left of the
    /// budget (a job costs dollars, a call cents); its reservation holds
    /// for `hold_ms` after the submit, the job's own deadline, since the
    /// record comes only at the terminal poll, minutes later and maybe
    /// from another daemon.
    VideoJob {
        /// How long the reservation holds without a record, ms.
        hold_ms: u64,
    },
}

/// Output tokens a request is assumed to ask for when it sets no
/// `max_tokens` (`max_completion_tokens`, `max_output_tokens`).
pub const DEFAULT_OUTPUT_TOKENS: u64 = 4_096;

/// A call's estimated size, from its body alone: no tokenizer on the
/// request path. Input is one token per 3 body bytes (text runs about 4
/// bytes a token in `o200k_base`, and the JSON around it adds more, so
/// this over-counts in practice); output is the request's own cap, else
/// [`DEFAULT_OUTPUT_TOKENS`] (none for embeddings).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallEstimate {
    /// Estimated input tokens.
    pub input_tokens: u64,
    /// The most output tokens the call may produce.
    pub output_tokens: u64,
}

#[derive(serde::Deserialize)]
struct OutputCap {
    max_tokens: Option<u64>,
    max_completion_tokens: Option<u64>,
    max_output_tokens: Option<u64>,
}

impl CallEstimate {
    /// The estimate of a request body of `protocol`.
    pub fn of_request(protocol: tb_domain::Protocol, body: &[u8]) -> CallEstimate {
        let input_tokens = (body.len() as u64).div_ceil(3);
        let cap = serde_json::from_slice::<OutputCap>(body)
            .ok()
            .and_then(|c| {
                c.max_completion_tokens
                    .or(c.max_output_tokens)
                    .or(c.max_tokens)
            });
        let output_tokens = match protocol {
            tb_domain::Protocol::Embeddings => 0,
            _ => cap.unwrap_or(DEFAULT_OUTPUT_TOKENS),
        };
        CallEstimate {
            input_tokens,
            output_tokens,
        }
    }

    /// Input + output.
    pub fn tokens(&self) -> u64 {
        self.input_tokens.saturating_add(self.output_tokens)
    }

    /// The worst cost over `prices` (the routes the call may take), USD
    /// micros; an unpriced route costs nothing known (its record's cost is
    /// unknown too, so it spends nothing).
    pub fn worst_cost(&self, prices: impl IntoIterator<Item = RoutePrice>) -> u64 {
        let usage = Usage {
            input_tokens: Some(self.input_tokens),
            output_tokens: Some(self.output_tokens),
            ..Usage::default()
        };
        prices
            .into_iter()
            .filter_map(|p| p.cost(&usage))
            .max()
            .unwrap_or(0)
    }
}

/// Why a member's request is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitRefusal {
    /// Over the requests-per-minute limit.
    Rpm {
        /// The limit.
        limit: u64,
        /// When to retry.
        retry_after_secs: u64,
    },
    /// Over the tokens-per-minute limit.
    Tpm {
        /// The limit.
        limit: u64,
        /// Tokens used (and reserved) in the window.
        used: u64,
        /// When to retry.
        retry_after_secs: u64,
    },
    /// The budget is spent (or reserved by calls in flight).
    Budget {
        /// The budget, USD micros.
        limit: i64,
        /// Spent so far, USD micros.
        spent: i64,
        /// Reserved by the member's calls in flight, USD micros.
        reserved: i64,
    },
}

/// The limit decision, pure, on the counters as they were before the
/// request (what the store's admission checked): the budget first
/// (waiting does not help), then requests, then tokens. A request is
/// admitted while spend plus reservations is under the budget and the
/// window's requests and tokens are under their limits.
///
/// # Errors
///
/// The first limit the member has reached.
pub fn check_limits(limits: &MemberLimits, usage: &MemberUsage) -> Result<(), LimitRefusal> {
    if let Some(limit) = limits.budget_usd_micros
        && usage
            .spent_usd_micros
            .saturating_add(usage.reserved_usd_micros)
            >= limit
    {
        return Err(LimitRefusal::Budget {
            limit,
            spent: usage.spent_usd_micros,
            reserved: usage.reserved_usd_micros,
        });
    }
    let retry_after_secs = usage.retry_after_secs.max(1);
    if let Some(limit) = limits.rpm
        && usage.requests >= limit
    {
        return Err(LimitRefusal::Rpm {
            limit,
            retry_after_secs,
        });
    }
    if let Some(limit) = limits.tpm
        && usage.tokens >= limit
    {
        return Err(LimitRefusal::Tpm {
            limit,
            used: usage.tokens,
            retry_after_secs,
        });
    }
    Ok(())
}

/// Why the store refused a request: the limit [`check_limits`] finds on
/// the counters it was refused on (the budget when none is found, which
/// only a key whose limits changed between reloads can cause).
pub fn refusal(limits: &MemberLimits, usage: &MemberUsage) -> LimitRefusal {
    check_limits(limits, usage)
        .err()
        .unwrap_or(LimitRefusal::Budget {
            limit: limits.budget_usd_micros.unwrap_or(0),
            spent: usage.spent_usd_micros,
            reserved: usage.reserved_usd_micros,
        })
}

impl Member {
    /// Whether the key may use `model` (the model as the client asked for
    /// it, before alias resolution, since that is what the member was
    /// granted).
    pub fn allows(&self, model: &str) -> bool {
        self.models
            .as_ref()
            .is_none_or(|list| list.iter().any(|m| m == model))
    }
}

/// What [`MemberKeys::admit`] returns.
pub type UsageFuture<'a> =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<MemberUsage, String>> + Send + 'a>>;

/// The member keys currently valid. Looked up on every request, so an
/// implementation answers from memory.
pub trait MemberKeys: Send + Sync {
    /// The member whose key hashes to `hash` ([`key_hash`]), if the key
    /// exists and is not revoked.
    fn member_for(&self, hash: &str) -> Option<Arc<Member>>;

    /// Admits this request against the member's shared counters (asked
    /// only of a member with limits), reserving `reservation` when it is
    /// admitted, and returns the counters. An error (the counters are
    /// unreachable) is said in words; the request is refused.
    fn admit<'a>(&'a self, member: &'a Member, reservation: &'a Reservation) -> UsageFuture<'a>;
}

impl LimitRefusal {
    /// The protocol-shaped error, with `Retry-After` for rate limits.
    pub(crate) fn to_proxy_error(self, member: &str) -> ProxyError {
        match self {
            LimitRefusal::Budget {
                limit,
                spent,
                reserved,
            } => ProxyError::new(
                ErrorCode::MemberBudgetSpent,
                format!(
                    "member {member:?} has spent {} of a {} budget ({} more reserved by calls in flight); ask the team admin for a new key with a larger --budget-usd",
                    usd(spent),
                    usd(limit),
                    usd(reserved)
                ),
            ),
            LimitRefusal::Rpm {
                limit,
                retry_after_secs,
            } => ProxyError::new(
                ErrorCode::MemberRateLimited,
                format!(
                    "member {member:?} is over its limit of {limit} requests per minute; retry in {retry_after_secs} s"
                ),
            )
            .retry_after(retry_after_secs),
            LimitRefusal::Tpm {
                limit,
                used,
                retry_after_secs,
            } => ProxyError::new(
                ErrorCode::MemberRateLimited,
                format!(
                    "member {member:?} has used {used} of its {limit} tokens per minute; retry in {retry_after_secs} s"
                ),
            )
            .retry_after(retry_after_secs),
        }
    }
}

/// Who a request authenticated as.
#[derive(Debug, Clone)]
pub(crate) enum Caller {
    /// The daemon's access token (or no authentication required).
    Local,
    /// A member key.
    Member(Arc<Member>),
}

impl Caller {
    /// The member, for records and limits.
    pub(crate) fn member(&self) -> Option<&Member> {
        match self {
            Caller::Local => None,
            Caller::Member(m) => Some(m),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_are_prefixed_distinct_and_hash_stably() {
        let a = MemberKey::generate().unwrap();
        let b = MemberKey::generate().unwrap();
        assert!(a.expose().starts_with(MEMBER_KEY_PREFIX));
        assert_eq!(a.expose().len(), MEMBER_KEY_PREFIX.len() + 43);
        assert_ne!(a.expose(), b.expose());
        assert_eq!(a.hash(), key_hash(a.expose().as_bytes()));
        assert_eq!(a.hash().len(), 64);
        assert!(!format!("{a:?}").contains(a.expose()));
        // Pinned: stored hashes are SHA-256 in lower-case hex, so keys
        // issued by any release keep working.
        assert_eq!(
            key_hash(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn an_allow_list_limits_the_models() {
        let open = Member {
            name: "ana".into(),
            ..Member::default()
        };
        assert!(open.allows("anything"));
        let narrow = Member {
            name: "bo".into(),
            models: Some(vec!["gpt-4o-mini".into()]),
            ..Member::default()
        };
        assert!(narrow.allows("gpt-4o-mini"));
        assert!(!narrow.allows("gpt-4o"));
    }

    #[test]
    fn limits_refuse_budget_first_then_requests_then_tokens() {
        let limits = MemberLimits {
            budget_usd_micros: Some(1_000),
            rpm: Some(2),
            tpm: Some(100),
        };
        let usage = |requests, tokens, spent, reserved| MemberUsage {
            requests,
            tokens,
            spent_usd_micros: spent,
            reserved_usd_micros: reserved,
            ..MemberUsage::default()
        };
        assert_eq!(check_limits(&limits, &usage(1, 99, 500, 499)), Ok(()));
        let budget = Err(LimitRefusal::Budget {
            limit: 1_000,
            spent: 500,
            reserved: 500,
        });
        assert_eq!(check_limits(&limits, &usage(2, 100, 500, 500)), budget);
        assert_eq!(
            check_limits(&limits, &usage(2, 100, 0, 0)),
            Err(LimitRefusal::Rpm {
                limit: 2,
                retry_after_secs: 1
            })
        );
        assert_eq!(
            check_limits(&limits, &usage(1, 100, 0, 0)),
            Err(LimitRefusal::Tpm {
                limit: 100,
                used: 100,
                retry_after_secs: 1
            })
        );
        assert_eq!(
            check_limits(
                &MemberLimits::default(),
                &usage(u64::MAX, u64::MAX, i64::MAX, i64::MAX)
            ),
            Ok(())
        );
        assert!(!MemberLimits::default().any() && limits.any());
        assert_eq!(
            refusal(&limits, &usage(0, 0, 0, 0)),
            LimitRefusal::Budget {
                limit: 1_000,
                spent: 0,
                reserved: 0
            },
            "a refusal the counters do not explain is named the budget"
        );
    }

    #[test]
    fn estimates_take_the_request_cap_and_the_priciest_route() {
        use tb_domain::Protocol;
        let body = br#"{"model":"m","max_tokens":100,"messages":[{"role":"user","content":"hi"}]}"#;
        let e = CallEstimate::of_request(Protocol::Messages, body);
        assert_eq!(e.output_tokens, 100);
        assert_eq!(e.input_tokens, (body.len() as u64).div_ceil(3));
        assert_eq!(e.tokens(), e.input_tokens + 100);
        let chat = br#"{"model":"m","max_completion_tokens":7,"max_tokens":9}"#;
        assert_eq!(
            CallEstimate::of_request(Protocol::ChatCompletions, chat).output_tokens,
            7
        );
        let open = br#"{"model":"m","input":"x"}"#;
        assert_eq!(
            CallEstimate::of_request(Protocol::Responses, open).output_tokens,
            DEFAULT_OUTPUT_TOKENS
        );
        assert_eq!(
            CallEstimate::of_request(Protocol::Embeddings, open).output_tokens,
            0
        );
        let price = |input, output| {
            RoutePrice::Explicit(tb_prices::TokenPrices {
                input: Some(input),
                output: Some(output),
                ..tb_prices::TokenPrices::NONE
            })
        };
        let e = CallEstimate {
            input_tokens: 1_000,
            output_tokens: 2_000,
        };
        // $1 + $2 per 1M tokens: 1,000 + 4,000 micros; $3 + $4: 3,000 +
        // 8,000. The priciest route wins; an unpriced one counts nothing.
        let cheap = price(1_000_000, 2_000_000);
        let dear = price(3_000_000, 4_000_000);
        assert_eq!(e.worst_cost([cheap, RoutePrice::Unpriced]), 5_000);
        assert_eq!(e.worst_cost([cheap, dear]), 11_000);
        assert_eq!(e.worst_cost([RoutePrice::Unpriced]), 0);
    }
}
