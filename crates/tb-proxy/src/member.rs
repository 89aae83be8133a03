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

use crate::TokenError;

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

/// A member as the proxy needs it: the name recorded on every call and
/// the models the key may use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// The member's name (`keys create --member`).
    pub name: String,
    /// The models the key may use; `None`: every model.
    pub models: Option<Vec<String>>,
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

/// The member keys currently valid. Looked up on every request, so an
/// implementation answers from memory.
pub trait MemberKeys: Send + Sync {
    /// The member whose key hashes to `hash` ([`key_hash`]), if the key
    /// exists and is not revoked.
    fn member_for(&self, hash: &str) -> Option<Arc<Member>>;
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
            models: None,
        };
        assert!(open.allows("anything"));
        let narrow = Member {
            name: "bo".into(),
            models: Some(vec!["gpt-4o-mini".into()]),
        };
        assert!(narrow.allows("gpt-4o-mini"));
        assert!(!narrow.allows("gpt-4o"));
    }
}
