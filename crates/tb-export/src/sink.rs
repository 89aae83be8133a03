//! One sink: where it POSTs, how it encodes a batch, and the worker that
//! delivers its queue — batches of what is waiting, retried with
//! exponential backoff on a network error, a timeout, 408, 429 or 5xx
//! (the batch stays at the head of the queue meanwhile), given up on
//! another 4xx (the receiver will never take it; counted as rejected).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, StatusCode, Uri, header};
use http_body_util::{BodyExt, Full};
use tb_billing::record::CallRecord;
use tb_http::HttpClient;

use crate::queue::Queue;
use crate::status::{SinkState, SinkStatus};

/// How long one POST may take.
const POST_TIMEOUT: Duration = Duration::from_secs(10);
/// The first retry delay; doubled per failure up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(200);
/// The longest retry delay.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// How a sink turns a batch into a request body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    /// `{"calls": [...]}` of [`crate::ExportedCall`].
    Json,
    /// OTLP `ExportTraceServiceRequest`, protobuf.
    OtlpProtobuf,
}

impl Format {
    fn content_type(self) -> &'static str {
        match self {
            Format::Json => "application/json",
            Format::OtlpProtobuf => "application/x-protobuf",
        }
    }

    fn encode(self, batch: &[Arc<CallRecord>]) -> Result<Bytes, String> {
        match self {
            Format::Json => {
                let body = crate::exported::Batch {
                    calls: batch.iter().map(|r| crate::ExportedCall::of(r)).collect(),
                };
                serde_json::to_vec(&body)
                    .map(Bytes::from)
                    .map_err(|e| format!("encoding the batch: {e}"))
            }
            Format::OtlpProtobuf => {
                use prost::Message as _;
                let req = crate::otlp::trace_request(batch.iter().map(|r| &**r));
                Ok(Bytes::from(req.encode_to_vec()))
            }
        }
    }
}

/// What the worker, the status and the request path share.
pub(crate) struct Shared {
    pub name: &'static str,
    /// Where it POSTs (never shown: it may hold a query secret).
    pub uri: Uri,
    /// The target as shown (scheme, host, port and path only).
    pub target: String,
    /// Extra headers, marked sensitive.
    pub headers: HeaderMap,
    pub format: Format,
    pub batch_size: usize,
    pub queue: Queue,
    sent: AtomicU64,
    failed_posts: AtomicU64,
    rejected: AtomicU64,
    health: Mutex<Health>,
}

#[derive(Default)]
struct Health {
    last_success_at_ms: Option<i64>,
    last_error: Option<String>,
    /// Whether the latest POST failed.
    failing: bool,
    /// Whether any POST was made.
    tried: bool,
}

/// How a POST failed.
enum Failure {
    /// Worth retrying: the batch stays queued.
    Retry(String),
    /// The receiver refused it for good: the batch is given up.
    Refused(String),
}

impl Shared {
    pub(crate) fn new(
        name: &'static str,
        uri: Uri,
        headers: HeaderMap,
        format: Format,
        batch_size: usize,
        queue_capacity: usize,
    ) -> Shared {
        let target = shown_target(&uri);
        Shared {
            name,
            uri,
            target,
            headers,
            format,
            batch_size: batch_size.max(1),
            queue: Queue::new(queue_capacity),
            sent: AtomicU64::new(0),
            failed_posts: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            health: Mutex::new(Health::default()),
        }
    }

    fn health(&self) -> std::sync::MutexGuard<'_, Health> {
        self.health.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The sink's state now.
    pub(crate) fn status(&self) -> SinkStatus {
        let h = self.health();
        let depth = self.queue.depth();
        let capacity = self.queue.capacity();
        let state = if depth >= capacity {
            SinkState::Dropping
        } else if h.failing {
            SinkState::Failing
        } else if h.tried {
            SinkState::Healthy
        } else {
            SinkState::Idle
        };
        SinkStatus {
            sink: self.name,
            target: self.target.clone(),
            state,
            queue_depth: depth as u64,
            queue_capacity: capacity as u64,
            sent: self.sent.load(Ordering::Relaxed),
            failed_posts: self.failed_posts.load(Ordering::Relaxed),
            dropped: self.queue.dropped.load(Ordering::Relaxed),
            rejected: self.rejected.load(Ordering::Relaxed),
            last_success_at_ms: h.last_success_at_ms,
            last_error: h.last_error.clone(),
        }
    }

    fn delivered(&self, n: usize) {
        self.queue.remove_front(n);
        self.sent.fetch_add(n as u64, Ordering::Relaxed);
        let mut h = self.health();
        h.tried = true;
        h.failing = false;
        h.last_success_at_ms = Some(unix_ms());
    }

    fn failed(&self, error: &str) {
        self.failed_posts.fetch_add(1, Ordering::Relaxed);
        let mut h = self.health();
        h.tried = true;
        h.failing = true;
        h.last_error = Some(error.to_owned());
    }

    /// POSTs one batch.
    async fn post(&self, client: &HttpClient, batch: &[Arc<CallRecord>]) -> Result<(), Failure> {
        let body = self.format.encode(batch).map_err(Failure::Refused)?;
        let mut req = Request::new(Full::new(body));
        *req.method_mut() = http::Method::POST;
        *req.uri_mut() = self.uri.clone();
        let headers = req.headers_mut();
        headers.clone_from(&self.headers);
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(self.format.content_type()),
        );
        headers.insert(
            header::USER_AGENT,
            HeaderValue::from_static(concat!("tokenbuddyd/", env!("CARGO_PKG_VERSION"))),
        );
        let sent = async {
            let resp = client.request(req).await.map_err(|e| {
                Failure::Retry(format!(
                    "cannot reach {}: {}",
                    self.target,
                    tb_http::error_chain(&e)
                ))
            })?;
            let status = resp.status();
            // Read the answer so the connection can be reused; its content
            // is never shown (a receiver might echo what it got).
            let _ = resp.into_body().collect().await;
            Ok::<StatusCode, Failure>(status)
        };
        let status = tokio::time::timeout(POST_TIMEOUT, sent)
            .await
            .map_err(|_| {
                Failure::Retry(format!(
                    "{} did not answer within {} s",
                    self.target,
                    POST_TIMEOUT.as_secs()
                ))
            })??;
        let what = || format!("{} answered HTTP {status}", self.target);
        match status.as_u16() {
            200..=299 => Ok(()),
            408 | 429 | 500..=599 => Err(Failure::Retry(what())),
            _ => Err(Failure::Refused(what())),
        }
    }
}

/// Delivers the queue until it is closed and empty (or, once closed, a
/// POST fails: shutdown does not wait out a backoff).
pub(crate) async fn run(shared: Arc<Shared>, client: HttpClient) {
    let mut backoff = FIRST_BACKOFF;
    while let Some(batch) = shared.queue.next_batch(shared.batch_size).await {
        match shared.post(&client, &batch).await {
            Ok(()) => {
                shared.delivered(batch.len());
                backoff = FIRST_BACKOFF;
            }
            Err(Failure::Refused(error)) => {
                shared.failed(&error);
                shared.queue.remove_front(batch.len());
                shared
                    .rejected
                    .fetch_add(batch.len() as u64, Ordering::Relaxed);
                tracing::warn!(target: "export.rejected", sink = shared.name, records = batch.len(), error = %error, "the receiver refused a batch of call records; they are not sent again");
            }
            Err(Failure::Retry(error)) => {
                shared.failed(&error);
                tracing::warn!(target: "export.failed", sink = shared.name, records = batch.len(), retry_in_ms = backoff.as_millis() as u64, error = %error, "call records not exported yet; retrying");
                if shared.queue.is_closed() {
                    return;
                }
                wait_out(&shared.queue, backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

/// Sleeps `backoff`, cut short only by shutdown (then one last try is
/// made); new records arriving meanwhile do not hurry a failing receiver.
async fn wait_out(queue: &Queue, backoff: Duration) {
    let until = tokio::time::Instant::now() + backoff;
    loop {
        tokio::select! {
            () = tokio::time::sleep_until(until) => return,
            () = queue.woken() => if queue.is_closed() { return },
        }
    }
}

/// `scheme://host[:port]/path`: no credentials, no query.
fn shown_target(uri: &Uri) -> String {
    let scheme = uri.scheme_str().unwrap_or("http");
    let host = uri.host().unwrap_or("");
    match uri.port_u16() {
        Some(port) => format!("{scheme}://{host}:{port}{}", uri.path()),
        None => format!("{scheme}://{host}{}", uri.path()),
    }
}

fn unix_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shown_target_has_no_query_or_credentials() {
        let uri: Uri = "https://collect.example:8443/in?token=s3cret"
            .parse()
            .unwrap();
        assert_eq!(shown_target(&uri), "https://collect.example:8443/in");
        let uri: Uri = "http://h/v1/traces".parse().unwrap();
        assert_eq!(shown_target(&uri), "http://h/v1/traces");
    }
}
