//! The seller access token as a value that cannot leak through logs.

use std::fmt;

use sha2::{Digest, Sha256};

/// A seller access token (`accessToken` from `POST /purchase/complete`).
///
/// `Debug` and `Display` print a mask with the [fingerprint]
/// (`SellerSecret(sha256:0123456789ab…)`), never the token, so a token in a
/// struct that is logged or formatted into an error does not leak. Only
/// [`expose`](SellerSecret::expose) gives the clear text (for the
/// `Authorization` header and for encryption).
///
/// [fingerprint]: SellerSecret::fingerprint
#[derive(Clone, PartialEq, Eq)]
pub struct SellerSecret(String);

impl SellerSecret {
    /// Wraps a token.
    pub fn new(token: impl Into<String>) -> SellerSecret {
        SellerSecret(token.into())
    }

    /// The clear token. Use it only to build the `Authorization` header or
    /// to encrypt it; never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The first 12 hex characters of the token's SHA-256: enough to tell
    /// tokens apart in logs and the ledger, useless to an attacker.
    pub fn fingerprint(&self) -> String {
        fingerprint_of(self.0.as_bytes())
    }
}

/// The first 12 lowercase hex characters of SHA-256 of `bytes`.
pub(crate) fn fingerprint_of(bytes: &[u8]) -> String {
    const_hex::encode(&Sha256::digest(bytes)[..6])
}

impl fmt::Debug for SellerSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SellerSecret(sha256:{}…)", self.fingerprint())
    }
}

impl fmt::Display for SellerSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<seller token sha256:{}…>", self.fingerprint())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_prints_the_token() {
        let s = SellerSecret::new("tok-very-secret-123");
        let shown = format!("{s} {s:?} {:?}", Some(&s));
        assert!(!shown.contains("tok-very-secret-123"), "{shown}");
        assert!(shown.contains(&s.fingerprint()));
        assert_eq!(s.expose(), "tok-very-secret-123");
    }

    #[test]
    fn fingerprint_is_sha256_prefix() {
        // SHA-256("abc") = ba7816bf8f01cfea414140de5dae2223…
        assert_eq!(SellerSecret::new("abc").fingerprint(), "ba7816bf8f01");
        assert_eq!(SellerSecret::new("abc").fingerprint().len(), 12);
    }
}
