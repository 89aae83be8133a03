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

use tb_billing::record::usd;

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
    format!("{:x}", Sha256::digest(presented))
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

/// What the shared counters say about a member, this request included.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MemberUsage {
    /// Requests in the current minute window, this one counted.
    pub requests: u64,
    /// Tokens of the member's calls recorded in the current window.
    pub tokens: u64,
    /// The member's recorded spend, USD micros.
    pub spent_usd_micros: i64,
    /// Seconds until the current window ends (≥ 1).
    pub retry_after_secs: u64,
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
        /// Tokens used in the window.
        used: u64,
        /// When to retry.
        retry_after_secs: u64,
    },
    /// The budget is spent.
    Budget {
        /// The budget, USD micros.
        limit: i64,
        /// Spent so far, USD micros.
        spent: i64,
    },
}

/// The limit decision: pure, from the limits and the counters. The budget
/// is checked first (waiting does not help), then requests, then tokens.
///
/// # Errors
///
/// The first limit the member is over.
pub fn check_limits(limits: &MemberLimits, usage: &MemberUsage) -> Result<(), LimitRefusal> {
    if let Some(limit) = limits.budget_usd_micros
        && usage.spent_usd_micros >= limit
    {
        return Err(LimitRefusal::Budget {
            limit,
            spent: usage.spent_usd_micros,
        });
    }
    let retry_after_secs = usage.retry_after_secs.max(1);
    if let Some(limit) = limits.rpm
        && usage.requests > limit
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

/// What [`MemberKeys::count_request`] returns.
pub type UsageFuture<'a> =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<MemberUsage, String>> + Send + 'a>>;

/// The member keys currently valid. Looked up on every request, so an
/// implementation answers from memory.
pub trait MemberKeys: Send + Sync {
    /// The member whose key hashes to `hash` ([`key_hash`]), if the key
    /// exists and is not revoked.
    fn member_for(&self, hash: &str) -> Option<Arc<Member>>;

    /// Counts this request against the member's shared counters and
    /// returns them (asked only of a member with limits). An error (the
    /// counters are unreachable) is said in words; the request is refused.
    fn count_request<'a>(&'a self, member: &'a Member) -> UsageFuture<'a>;
}

impl LimitRefusal {
    /// The protocol-shaped error, with `Retry-After` for rate limits.
    pub(crate) fn to_proxy_error(self, member: &str) -> ProxyError {
        match self {
            LimitRefusal::Budget { limit, spent } => ProxyError::new(
                ErrorCode::MemberBudgetSpent,
                format!(
                    "member {member:?} has spent {} of a {} budget; ask the team admin for a new key with a larger --budget-usd",
                    usd(spent),
                    usd(limit)
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
        let usage = |requests, tokens, spent| MemberUsage {
            requests,
            tokens,
            spent_usd_micros: spent,
            retry_after_secs: 0,
        };
        assert_eq!(check_limits(&limits, &usage(2, 99, 999)), Ok(()));
        assert_eq!(
            check_limits(&limits, &usage(3, 100, 1_000)),
            Err(LimitRefusal::Budget {
                limit: 1_000,
                spent: 1_000
            })
        );
        assert_eq!(
            check_limits(&limits, &usage(3, 100, 0)),
            Err(LimitRefusal::Rpm {
                limit: 2,
                retry_after_secs: 1
            })
        );
        assert_eq!(
            check_limits(&limits, &usage(1, 100, 0)),
            Err(LimitRefusal::Tpm {
                limit: 100,
                used: 100,
                retry_after_secs: 1
            })
        );
        assert_eq!(
            check_limits(
                &MemberLimits::default(),
                &usage(u64::MAX, u64::MAX, i64::MAX)
            ),
            Ok(())
        );
        assert!(!MemberLimits::default().any() && limits.any());
    }
}
