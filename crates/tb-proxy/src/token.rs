//! The local access token: what proves a request comes from a client the
//! user configured (the installer writes it into client configs).

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use subtle::ConstantTimeEq;

/// File name of the token inside the data directory.
pub const ACCESS_TOKEN_FILE: &str = "access-token";

/// Length of the token text: 32 random bytes as unpadded base64url.
const TOKEN_LEN: usize = 43;

/// The daemon's access token. `Debug` never prints it.
#[derive(Clone)]
pub struct AccessToken(String);

impl std::fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AccessToken(********)")
    }
}

/// Why the token could not be loaded or created.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// File system trouble, with the path.
    #[error("access token file {path}: {source}")]
    Io {
        /// The token file or data directory.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// The file exists but does not hold a token.
    #[error(
        "access token file {path} does not hold a valid token (43 base64url characters); delete it and restart to create a new one (clients must then be re-installed)"
    )]
    Malformed {
        /// The token file.
        path: PathBuf,
    },
    /// The OS random source failed.
    #[error("could not get random bytes for the access token: {0}")]
    Random(String),
}

impl AccessToken {
    /// Reads `<data_dir>/access-token`, creating it (mode 0600, 32 random
    /// bytes as base64url) when it does not exist yet. Returns the path too.
    pub fn load_or_create(data_dir: &Path) -> Result<(AccessToken, PathBuf), TokenError> {
        let path = data_dir.join(ACCESS_TOKEN_FILE);
        let io_err = |source| TokenError::Io {
            path: path.clone(),
            source,
        };
        fs::create_dir_all(data_dir).map_err(|source| TokenError::Io {
            path: data_dir.to_path_buf(),
            source,
        })?;

        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).map_err(|e| TokenError::Random(e.to_string()))?;
        let fresh = URL_SAFE_NO_PAD.encode(bytes);
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
        {
            Ok(mut file) => {
                file.write_all(fresh.as_bytes()).map_err(io_err)?;
                file.sync_all().map_err(io_err)?;
                Ok((AccessToken(fresh), path))
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                let text = fs::read_to_string(&path).map_err(io_err)?;
                // An existing file with a wider mode is tightened, not trusted as is.
                let mode = fs::metadata(&path).map_err(io_err)?.permissions().mode();
                if mode & 0o077 != 0 {
                    fs::set_permissions(&path, fs::Permissions::from_mode(0o600))
                        .map_err(io_err)?;
                    tracing::warn!(target: "token.permissions_tightened", path = %path.display(), "access token file was readable by others; mode set to 0600");
                }
                let token = text.trim();
                if !AccessToken::well_formed(token) {
                    return Err(TokenError::Malformed { path });
                }
                Ok((AccessToken(token.to_string()), path))
            }
            Err(e) => Err(io_err(e)),
        }
    }

    /// Wraps a known token (tests, team setups).
    pub fn from_string(token: String) -> Option<AccessToken> {
        AccessToken::well_formed(&token).then_some(AccessToken(token))
    }

    fn well_formed(token: &str) -> bool {
        token.len() == TOKEN_LEN
            && token
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    }

    /// Compares a presented credential in constant time.
    pub fn matches(&self, presented: &[u8]) -> bool {
        self.0.as_bytes().ct_eq(presented).into()
    }

    /// Whether a request's headers carry this token, as
    /// `Authorization: Bearer <token>` (any case of "bearer") or
    /// `x-api-key: <token>`, surrounding whitespace ignored. The one check
    /// both planes use.
    pub fn authorizes(&self, headers: &http::HeaderMap) -> bool {
        presented(headers).any(|t| self.matches(t))
    }

    /// The token text, for the installer and tests.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

/// The credentials a request presents: `Authorization: Bearer <key>` (any
/// case of "bearer") and `x-api-key: <key>`, surrounding whitespace
/// ignored. Read the same way for the access token and member keys.
pub(crate) fn presented(headers: &http::HeaderMap) -> impl Iterator<Item = &[u8]> {
    let bearer = headers
        .get(http::header::AUTHORIZATION)
        .map(http::HeaderValue::as_bytes)
        .and_then(|v| {
            let (scheme, rest) = v.split_at_checked(7)?;
            scheme.eq_ignore_ascii_case(b"bearer ").then_some(rest)
        })
        .map(<[u8]>::trim_ascii);
    let api_key = headers.get("x-api-key").map(|v| v.as_bytes().trim_ascii());
    bearer.into_iter().chain(api_key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_once_with_0600_then_reused() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let (a, path) = AccessToken::load_or_create(&data).unwrap();
        assert_eq!(a.expose().len(), 43);
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let (b, _) = AccessToken::load_or_create(&data).unwrap();
        assert_eq!(a.expose(), b.expose());
        assert!(a.matches(b.expose().as_bytes()));
        assert!(!a.matches(b"wrong"));
        assert!(!format!("{a:?}").contains(a.expose()));
    }

    #[test]
    fn authorizes_bearer_in_any_case_and_x_api_key() {
        let token = AccessToken::from_string("a".repeat(43)).unwrap();
        let t = token.expose().to_string();
        let check = |name: &str, value: &str| {
            let mut h = http::HeaderMap::new();
            h.insert(
                http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                http::HeaderValue::from_str(value).unwrap(),
            );
            token.authorizes(&h)
        };
        for ok in [
            format!("Bearer {t}"),
            format!("bearer {t}"),
            format!("BEARER  {t} "),
        ] {
            assert!(check("authorization", &ok), "{ok}");
        }
        assert!(check("x-api-key", &format!(" {t}")));
        for bad in [
            t.clone(),
            format!("Basic {t}"),
            "Bearer ".to_string(),
            format!("Bearer {t}x"),
        ] {
            assert!(!check("authorization", &bad), "{bad}");
        }
        assert!(!check("x-api-key", "nope"));
        assert!(!token.authorizes(&http::HeaderMap::new()));
    }

    #[test]
    fn malformed_file_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(ACCESS_TOKEN_FILE), "short").unwrap();
        let err = AccessToken::load_or_create(dir.path())
            .unwrap_err()
            .to_string();
        assert!(err.contains("delete it"), "{err}");
    }

    #[test]
    fn wide_permissions_are_tightened() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(ACCESS_TOKEN_FILE);
        fs::write(&path, "a".repeat(43)).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        AccessToken::load_or_create(dir.path()).unwrap();
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
}
