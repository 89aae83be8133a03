//! Fetching the registry document: the I/O edge of the crate.

use std::time::Duration;

use bytes::Bytes;
use http::header::{ACCEPT, CONTENT_LENGTH, USER_AGENT};
use http::{Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use tb_http::error_chain;

use crate::doc::{RegistryDoc, parse_registry};

/// The pooled HTTP(S) client the daemon already has
/// ([`tb_http::build_client`]): pass a clone of it.
pub use tb_http::HttpClient;

/// The header a registry sets (to `1`) on an answer that means "the
/// document is too large for you".
pub const TOO_LARGE_HEADER: &str = "x-tokenbuddy-registry-too-large";

/// How long a fetch (connect, head and body) may take by default.
pub const DEFAULT_FETCH_TIMEOUT: Duration = Duration::from_secs(10);

/// Documents larger than this are parsed on Tokio's blocking pool rather
/// than on a runtime worker.
const PARSE_INLINE_MAX: usize = 64 * 1024;

/// Why a fetch gave no document.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FetchError {
    /// Larger than `registry.max_bytes` (also: `413`, or the
    /// `X-TokenBuddy-Registry-Too-Large: 1` header).
    #[error("the registry document is larger than registry.max_bytes")]
    TooLarge,
    /// A status other than 2xx.
    #[error("the registry answered HTTP {0}")]
    Status(u16),
    /// Connecting, sending or reading failed.
    #[error("could not reach the registry: {0}")]
    Network(String),
    /// No complete answer within the fetch timeout.
    #[error("the registry did not answer in time")]
    Timeout,
    /// The body is not a usable registry document.
    #[error("the registry sent an unusable document: {0}")]
    Invalid(String),
}

/// A fetched and validated document.
#[derive(Debug, Clone)]
pub struct Fetched {
    /// The validated document.
    pub doc: RegistryDoc,
    /// The body as received (what gets persisted).
    pub raw: Bytes,
    /// Validation warnings (dropped sellers, ignored values).
    pub warnings: Vec<String>,
}

/// Fetches the registry document from one URL.
#[derive(Debug, Clone)]
pub struct RegistryFetcher {
    url: String,
    max_bytes: u64,
    timeout: Duration,
    client: HttpClient,
}

impl RegistryFetcher {
    /// A fetcher for `url` (`registry.url`) that accepts at most
    /// `max_bytes` (`registry.max_bytes`) and gives up after
    /// [`DEFAULT_FETCH_TIMEOUT`].
    pub fn new(url: impl Into<String>, max_bytes: u64, client: HttpClient) -> RegistryFetcher {
        RegistryFetcher {
            url: url.into(),
            max_bytes,
            timeout: DEFAULT_FETCH_TIMEOUT,
            client,
        }
    }

    /// Replaces the fetch timeout (connect, head and whole body).
    #[must_use]
    pub fn with_timeout(mut self, timeout: Duration) -> RegistryFetcher {
        self.timeout = timeout;
        self
    }

    /// The registry URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The largest document accepted, in bytes.
    pub fn max_bytes(&self) -> u64 {
        self.max_bytes
    }

    /// GETs the document and validates it. Never buffers more than
    /// `max_bytes` of body: reading stops (and the connection is dropped)
    /// as soon as the cap would be passed.
    ///
    /// # Errors
    ///
    /// See [`FetchError`].
    pub async fn fetch(&self) -> Result<Fetched, FetchError> {
        let raw = match tokio::time::timeout(self.timeout, self.download()).await {
            Ok(result) => result?,
            Err(_) => return Err(FetchError::Timeout),
        };
        let parsed = if raw.len() <= PARSE_INLINE_MAX {
            parse_registry(&raw)
        } else {
            let bytes = raw.clone();
            tokio::task::spawn_blocking(move || parse_registry(&bytes))
                .await
                .map_err(|e| FetchError::Invalid(format!("the parser failed: {e}")))?
        };
        let parsed = parsed.map_err(|e| FetchError::Invalid(e.to_string()))?;
        Ok(Fetched {
            doc: parsed.doc,
            raw,
            warnings: parsed.warnings,
        })
    }

    async fn download(&self) -> Result<Bytes, FetchError> {
        let uri: Uri = self.url.parse().map_err(|e| {
            FetchError::Network(format!(
                "registry.url {:?} is not a valid URL: {e}",
                self.url
            ))
        })?;
        let request = Request::get(uri)
            .header(ACCEPT, "application/json")
            .header(USER_AGENT, tb_http::USER_AGENT)
            .body(Full::new(Bytes::new()))
            .map_err(|e| FetchError::Network(e.to_string()))?;
        let response = self
            .client
            .request(request)
            .await
            .map_err(|e| FetchError::Network(error_chain(&e)))?;

        let status = response.status();
        let too_large_header = response
            .headers()
            .get(TOO_LARGE_HEADER)
            .is_some_and(|v| v.as_bytes().trim_ascii() == b"1");
        if status == StatusCode::PAYLOAD_TOO_LARGE || too_large_header {
            return Err(FetchError::TooLarge);
        }
        if !status.is_success() {
            return Err(FetchError::Status(status.as_u16()));
        }
        let declared = response
            .headers()
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        if declared.is_some_and(|n| n > self.max_bytes) {
            return Err(FetchError::TooLarge);
        }

        let cap = usize::try_from(self.max_bytes).unwrap_or(usize::MAX);
        let initial = declared
            .and_then(|n| usize::try_from(n).ok())
            .unwrap_or(16 * 1024)
            .min(cap);
        let mut buf: Vec<u8> = Vec::with_capacity(initial);
        let mut body = response.into_body();
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| FetchError::Network(error_chain(&e)))?;
            let Ok(data) = frame.into_data() else {
                continue;
            };
            let needed = buf.len().saturating_add(data.len());
            if needed > cap {
                // Dropping the body closes the connection: nothing more is read.
                return Err(FetchError::TooLarge);
            }
            if needed > buf.capacity() {
                // Grow by doubling, but never past the cap.
                let target = needed.max(buf.capacity().saturating_mul(2)).min(cap);
                buf.reserve_exact(target - buf.len());
            }
            buf.extend_from_slice(&data);
        }
        Ok(Bytes::from(buf))
    }
}
