//! Encryption at rest for seller tokens: XChaCha20-Poly1305 with a key in
//! `<data_dir>/token-key` (32 random bytes, mode 0600).
//!
//! The ledger (a SQLite file or a shared PostgreSQL database) only ever
//! holds ciphertext, a random 24-byte nonce and a fingerprint, so a copied
//! ledger without the key file reveals no token.

use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};

use chacha20poly1305::aead::Aead;
use chacha20poly1305::{Key, KeyInit, XChaCha20Poly1305, XNonce};

use crate::SellerSecret;

/// The key file's name inside the data directory.
pub const KEY_FILE: &str = "token-key";
/// Key length, bytes.
pub const KEY_LEN: usize = 32;
/// Nonce length, bytes (XChaCha20's 192-bit nonce: random nonces never
/// realistically repeat).
pub const NONCE_LEN: usize = 24;

/// Why the token key could not be loaded or a token not be
/// encrypted/decrypted. Messages never contain key material or tokens.
#[derive(Debug, thiserror::Error)]
pub enum CipherError {
    /// The key file (or its directory) could not be read or written.
    #[error("token key {path}: cannot {action}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What was being done (`read`, `create`, …).
        action: &'static str,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The key file exists but is not 32 bytes.
    #[error(
        "token key {path} is {len} bytes, not {KEY_LEN}: it is damaged or not a tokenbuddy key. \
         Restore it from a backup; or delete it to start a new key (stored seller tokens are \
         then unreadable and will be bought again)"
    )]
    WrongSize {
        /// The file.
        path: PathBuf,
        /// Its size.
        len: usize,
    },
    /// The operating system's random source failed.
    #[error("cannot get random bytes for the token key or a nonce: {0}")]
    Random(String),
    /// Encryption failed (not expected with a valid key).
    #[error("token encryption failed")]
    Encrypt,
    /// The ciphertext does not open with this key: another key file, or
    /// damaged data.
    #[error(
        "stored token does not decrypt with this token key (the key file changed, or the \
         ledger row is damaged)"
    )]
    Decrypt,
}

/// Encrypts and decrypts seller tokens with the daemon's token key.
#[derive(Clone)]
pub struct TokenCipher {
    aead: XChaCha20Poly1305,
}

impl fmt::Debug for TokenCipher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenCipher(<key hidden>)")
    }
}

impl TokenCipher {
    /// Reads `<data_dir>/token-key`, or creates it (32 random bytes, mode
    /// 0600, the directory too if missing) when absent.
    ///
    /// Creation is atomic: the key is written to a private temporary file
    /// and hard-linked into place, so two processes starting at once end
    /// up with the same key and a reader never sees a half-written file.
    /// An existing key readable by others is used, with a warning.
    ///
    /// # Errors
    ///
    /// [`CipherError::WrongSize`] when the file is not 32 bytes;
    /// [`CipherError::Io`] when it cannot be read or created.
    pub fn load_or_create(data_dir: &Path) -> Result<TokenCipher, CipherError> {
        let path = data_dir.join(KEY_FILE);
        // Two rounds: if another process creates the key between our read
        // and our link, the second read finds it.
        for _ in 0..2 {
            match std::fs::read(&path) {
                Ok(bytes) => return TokenCipher::from_file_bytes(&path, &bytes),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => {
                    return Err(CipherError::Io {
                        path,
                        action: "read",
                        source,
                    });
                }
            }
            if let Some(key) = create_key_file(data_dir, &path)? {
                return Ok(TokenCipher::from_key_bytes(key));
            }
        }
        let bytes = std::fs::read(&path).map_err(|source| CipherError::Io {
            path: path.clone(),
            action: "read",
            source,
        })?;
        TokenCipher::from_file_bytes(&path, &bytes)
    }

    /// A cipher with a given key (tests and tools).
    pub fn from_key_bytes(key: [u8; KEY_LEN]) -> TokenCipher {
        TokenCipher {
            aead: XChaCha20Poly1305::new(Key::from_slice(&key)),
        }
    }

    /// A cipher for a team's shared tokens: the key is the SHA-256 of a
    /// domain label and the team key (`TB_TEAM_KEY` or `[team] key_file`),
    /// so every daemon given the same team key opens the same tokens, and
    /// the team key itself is never stored.
    pub fn from_team_key(team_key: &str) -> TokenCipher {
        use sha2::Digest;
        let mut hash = sha2::Sha256::new();
        hash.update(b"tokenbuddy team token key v1\0");
        hash.update(team_key.as_bytes());
        TokenCipher::from_key_bytes(hash.finalize().into())
    }

    fn from_file_bytes(path: &Path, bytes: &[u8]) -> Result<TokenCipher, CipherError> {
        let key: [u8; KEY_LEN] = bytes.try_into().map_err(|_| CipherError::WrongSize {
            path: path.to_path_buf(),
            len: bytes.len(),
        })?;
        warn_if_shared(path);
        Ok(TokenCipher::from_key_bytes(key))
    }

    /// Encrypts `secret` under a fresh random nonce: `(ciphertext, nonce)`.
    /// The ciphertext is the token plus a 16-byte authentication tag.
    ///
    /// # Errors
    ///
    /// When the random source fails.
    pub fn encrypt(
        &self,
        secret: &SellerSecret,
    ) -> Result<(Vec<u8>, [u8; NONCE_LEN]), CipherError> {
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut nonce).map_err(|e| CipherError::Random(e.to_string()))?;
        let ciphertext = self
            .aead
            .encrypt(XNonce::from_slice(&nonce), secret.expose().as_bytes())
            .map_err(|_| CipherError::Encrypt)?;
        Ok((ciphertext, nonce))
    }

    /// Decrypts what [`encrypt`](TokenCipher::encrypt) produced.
    ///
    /// # Errors
    ///
    /// [`CipherError::Decrypt`] for another key, a damaged ciphertext or a
    /// nonce that is not 24 bytes.
    pub fn decrypt(&self, ciphertext: &[u8], nonce: &[u8]) -> Result<SellerSecret, CipherError> {
        if nonce.len() != NONCE_LEN {
            return Err(CipherError::Decrypt);
        }
        let clear = self
            .aead
            .decrypt(XNonce::from_slice(nonce), ciphertext)
            .map_err(|_| CipherError::Decrypt)?;
        String::from_utf8(clear)
            .map(SellerSecret::new)
            .map_err(|_| CipherError::Decrypt)
    }
}

/// Creates the key file; `Ok(None)` when another process created it first.
fn create_key_file(dir: &Path, path: &Path) -> Result<Option<[u8; KEY_LEN]>, CipherError> {
    std::fs::create_dir_all(dir).map_err(|source| CipherError::Io {
        path: dir.to_path_buf(),
        action: "create the data directory",
        source,
    })?;
    let mut key = [0u8; KEY_LEN];
    getrandom::fill(&mut key).map_err(|e| CipherError::Random(e.to_string()))?;
    let mut suffix = [0u8; 8];
    getrandom::fill(&mut suffix).map_err(|e| CipherError::Random(e.to_string()))?;
    let tmp = dir.join(format!(
        ".{KEY_FILE}.{}.{}.tmp",
        std::process::id(),
        crate::secret::fingerprint_of(&suffix)
    ));
    write_private(&tmp, &key)?;
    let linked = std::fs::hard_link(&tmp, path);
    let _ = std::fs::remove_file(&tmp);
    match linked {
        Ok(()) => Ok(Some(key)),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(None),
        // A file system without hard links: create the file in place
        // (still exclusive, just not atomic for concurrent readers).
        Err(_) => match write_private(path, &key) {
            Ok(()) => Ok(Some(key)),
            Err(CipherError::Io { source, .. })
                if source.kind() == std::io::ErrorKind::AlreadyExists =>
            {
                Ok(None)
            }
            Err(e) => Err(e),
        },
    }
}

/// Writes `bytes` to a new file (`create_new`) readable by the owner only.
fn write_private(path: &Path, bytes: &[u8]) -> Result<(), CipherError> {
    let io = |source| CipherError::Io {
        path: path.to_path_buf(),
        action: "create",
        source,
    };
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path).map_err(io)?;
    file.write_all(bytes).map_err(io)?;
    file.sync_all().map_err(io)?;
    Ok(())
}

fn warn_if_shared(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = std::fs::metadata(path) {
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                tracing::warn!(
                    target: "seller.token_key",
                    path = %path.display(),
                    mode = format!("{mode:o}"),
                    "the token key is readable by other users; run `chmod 600` on it"
                );
            }
        }
    }
    #[cfg(not(unix))]
    let _ = path;
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn round_trip_with_fresh_nonces() {
        let c = TokenCipher::from_key_bytes([7; KEY_LEN]);
        let s = SellerSecret::new("tok-abc");
        let (ct1, n1) = c.encrypt(&s).unwrap();
        let (ct2, n2) = c.encrypt(&s).unwrap();
        assert_ne!(n1, n2);
        assert_ne!(ct1, ct2);
        assert_eq!(ct1.len(), "tok-abc".len() + 16);
        assert_eq!(c.decrypt(&ct1, &n1).unwrap(), s);
        assert_eq!(c.decrypt(&ct2, &n2).unwrap(), s);
        assert!(matches!(c.decrypt(&ct1, &n2), Err(CipherError::Decrypt)));
        assert!(matches!(
            c.decrypt(&ct1, &n1[..12]),
            Err(CipherError::Decrypt)
        ));
        let mut bad = ct1.clone();
        bad[0] ^= 1;
        assert!(matches!(c.decrypt(&bad, &n1), Err(CipherError::Decrypt)));
        let other = TokenCipher::from_key_bytes([8; KEY_LEN]);
        assert!(matches!(
            other.decrypt(&ct1, &n1),
            Err(CipherError::Decrypt)
        ));
        assert!(!format!("{c:?}").contains('7'));
    }

    #[test]
    fn a_team_key_gives_every_daemon_the_same_cipher() {
        let s = SellerSecret::new("tok-team");
        let a = TokenCipher::from_team_key("correct horse battery staple 0123456789");
        let b = TokenCipher::from_team_key("correct horse battery staple 0123456789");
        let other = TokenCipher::from_team_key("correct horse battery staple 012345678X");
        let (ct, nonce) = a.encrypt(&s).unwrap();
        assert_eq!(b.decrypt(&ct, &nonce).unwrap(), s);
        assert!(matches!(
            other.decrypt(&ct, &nonce),
            Err(CipherError::Decrypt)
        ));
    }
}
