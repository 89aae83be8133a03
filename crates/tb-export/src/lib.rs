//! Shipping call records elsewhere, off the request path: an HTTP sink
//! that POSTs the records' public fields as JSON batches
//! (`[export.http]`), and OpenTelemetry traces over OTLP/HTTP protobuf
//! (`[export.otlp]`) — one span per request, a child per upstream attempt,
//! joined to the client's `traceparent`.
//!
//! Why a crate of its own: exporting is the daemon's outside, like the
//! control plane. The proxy hands each finished record to the ledger's
//! sink; the daemon also [`Exporters::offer`]s it here, which only queues
//! it (a short lock, never a wait). Each sink has its own bounded queue
//! and worker: batches of whatever is waiting (up to its batch size),
//! retried with exponential backoff while the receiver is down, dropped
//! and counted only past the queue's bound. Everything goes out through
//! the one outbound client (`tb-http`), so `[network]` proxies and
//! `tls.extra_ca_file` apply.
//!
//! What never leaves: prompts, bodies, the prompt hash, keys and the
//! configured header values (sent as sensitive headers, never logged or
//! shown). The JSON form is the explicit [`ExportedCall`].

mod exported;
#[cfg(test)]
mod fixture;
mod otlp;
mod queue;
mod sink;
mod status;

use std::sync::Arc;
use std::time::Duration;

use http::{HeaderMap, HeaderName, HeaderValue, Uri};
use tb_billing::record::CallRecord;
use tb_config::{ExportConfig, OtlpProtocol};
use tb_http::HttpClient;

pub use exported::{ExportedAttempt, ExportedCall};
pub use otlp::{spans_of, trace_request};
pub use status::{SinkState, SinkStatus};

use sink::{Format, Shared};

/// Records in one OTLP request (`[export.otlp]` has no batch key).
const OTLP_BATCH_SIZE: usize = 100;
/// Records the OTLP queue holds before dropping.
const OTLP_QUEUE_CAPACITY: usize = 10_000;

/// A sink that could not be set up (the config passed validation, so this
/// is a URL or header the HTTP types still refuse).
#[derive(Debug, thiserror::Error)]
pub enum ExportSetupError {
    /// The URL does not parse.
    #[error("{key}: {url_shown:?} is not a valid URL: {reason}")]
    BadUrl {
        /// The config key.
        key: &'static str,
        /// The URL without its query string.
        url_shown: String,
        /// Why.
        reason: String,
    },
    /// A header name or value is refused.
    #[error("export.http.headers: {name:?} {reason}")]
    BadHeader {
        /// The header's name (its value is a secret, never shown).
        name: String,
        /// Why.
        reason: &'static str,
    },
    /// `export.otlp.protocol = "grpc"`.
    #[error("export.otlp.protocol: \"grpc\" is not supported; use \"http/protobuf\"")]
    GrpcUnsupported,
}

/// The running sinks.
pub struct Exporters {
    sinks: Vec<Arc<Shared>>,
    /// The workers, taken by [`Exporters::shutdown`].
    workers: std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

impl Exporters {
    /// Starts the configured sinks (each a worker task on the current
    /// runtime); `None` when neither is configured.
    pub fn start(
        config: &ExportConfig,
        client: &HttpClient,
    ) -> Result<Option<Exporters>, ExportSetupError> {
        let mut shared = Vec::new();
        if let Some(url) = &config.http.url {
            shared.push(Shared::new(
                "http",
                parse_uri("export.http.url", url)?,
                headers(&config.http.headers)?,
                Format::Json,
                config.http.batch_size,
                config.http.queue_capacity,
            ));
        }
        if let Some(endpoint) = &config.otlp.endpoint {
            if config.otlp.protocol == OtlpProtocol::Grpc {
                return Err(ExportSetupError::GrpcUnsupported);
            }
            let url = format!("{}/v1/traces", endpoint.trim_end_matches('/'));
            shared.push(Shared::new(
                "otlp",
                parse_uri("export.otlp.endpoint", &url)?,
                HeaderMap::new(),
                Format::OtlpProtobuf,
                OTLP_BATCH_SIZE,
                OTLP_QUEUE_CAPACITY,
            ));
        }
        if shared.is_empty() {
            return Ok(None);
        }
        let sinks: Vec<Arc<Shared>> = shared.into_iter().map(Arc::new).collect();
        let workers = sinks
            .iter()
            .map(|s| {
                tracing::info!(target: "export.started", sink = s.name, target_url = %s.target, "exporting call records");
                tokio::spawn(sink::run(Arc::clone(s), client.clone()))
            })
            .collect();
        Ok(Some(Exporters {
            sinks,
            workers: std::sync::Mutex::new(workers),
        }))
    }

    /// Queues a copy of `record` for every sink; never waits. A full
    /// queue drops it (counted in that sink's `dropped`).
    pub fn offer(&self, record: &CallRecord) {
        let shared = Arc::new(record.clone());
        for sink in &self.sinks {
            if !sink.queue.offer(Arc::clone(&shared)) {
                tracing::debug!(target: "export.dropped", sink = sink.name, request_id = %record.request_id, "export queue full, record dropped");
            }
        }
    }

    /// Every sink's state, in config order (`http`, then `otlp`).
    pub fn statuses(&self) -> Vec<SinkStatus> {
        self.sinks.iter().map(|s| s.status()).collect()
    }

    /// Stops taking records and gives the workers up to `limit` to deliver
    /// what waits (one try each once stopping). Returns how many records
    /// were left undelivered.
    pub async fn shutdown(&self, limit: Duration) -> u64 {
        for s in &self.sinks {
            s.queue.close();
        }
        let workers = std::mem::take(
            &mut *self
                .workers
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        let deadline = tokio::time::Instant::now() + limit;
        for worker in workers {
            let abort = worker.abort_handle();
            if tokio::time::timeout_at(deadline, worker).await.is_err() {
                abort.abort();
            }
        }
        self.sinks.iter().map(|s| s.queue.depth() as u64).sum()
    }
}

fn parse_uri(key: &'static str, url: &str) -> Result<Uri, ExportSetupError> {
    url.parse::<Uri>().map_err(|e| ExportSetupError::BadUrl {
        key,
        url_shown: url.split('?').next().unwrap_or("").to_owned(),
        reason: e.to_string(),
    })
}

/// The configured headers, values marked sensitive (never logged by hyper
/// or shown in `Debug`).
fn headers(
    configured: &std::collections::BTreeMap<String, tb_config::Secret>,
) -> Result<HeaderMap, ExportSetupError> {
    let mut map = HeaderMap::new();
    for (name, value) in configured {
        let bad = |reason| ExportSetupError::BadHeader {
            name: name.clone(),
            reason,
        };
        let header = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| bad("is not a valid header name"))?;
        let mut value = HeaderValue::from_str(value.expose())
            .map_err(|_| bad("has a value that is not a valid header value"))?;
        value.set_sensitive(true);
        map.insert(header, value);
    }
    Ok(map)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_values_are_sensitive_and_never_in_errors() {
        let mut configured = std::collections::BTreeMap::new();
        configured.insert(
            "authorization".to_owned(),
            tb_config::Secret::new("Bearer s3cret"),
        );
        let map = headers(&configured).unwrap();
        assert!(map["authorization"].is_sensitive());
        assert!(!format!("{map:?}").contains("s3cret"));
        configured.insert("x-bad".to_owned(), tb_config::Secret::new("s3cret\u{1}"));
        let err = headers(&configured).unwrap_err().to_string();
        assert!(err.contains("x-bad") && !err.contains("s3cret"), "{err}");
    }
}
