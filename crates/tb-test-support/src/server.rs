//! The mock upstream server itself.

use std::collections::VecDeque;
use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tb_domain::{ApiFamily, Protocol};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::task::{JoinHandle, JoinSet};

use crate::tls::{ServerTls, loopback_server_tls};
use crate::{Chunk, RecordedRequest, Reply, ReplyBody, StreamEnd};

/// The model named in default replies when the request names none.
const DEFAULT_MODEL: &str = "mock-model";

/// A fake OpenAI/Anthropic-compatible upstream on an ephemeral loopback
/// port.
///
/// Each request is recorded, then answered with the next scripted
/// [`Reply`] (see [`push_reply`](MockUpstream::push_reply)) or, when none is
/// queued, with a default reply chosen by path:
///
/// | path | default reply |
/// | --- | --- |
/// | `POST /v1/chat/completions`, `/v1/responses`, `/v1/messages`, `/v1/images/generations` | [`canned`](crate::canned) body for the body's `model`; SSE if `"stream": true` |
/// | `GET /healthz` | `200 ok` |
/// | `GET /v1/models` | the ids given to [`serve_models`](MockUpstream::serve_models), OpenAI list shape; else `404` |
/// | any other path | `404`, OpenAI-shaped error |
/// | a protocol path with a body that is not JSON | `400`, error shaped for the protocol's family |
///
/// [`start`](MockUpstream::start) serves plain HTTP;
/// [`start_tls`](MockUpstream::start_tls) serves the very same mock over
/// HTTPS with a certificate from a throwaway private CA, whose certificate
/// [`ca_pem`](MockUpstream::ca_pem) returns for the client to trust.
///
/// Dropping the value shuts the server down and closes its connections.
#[derive(Debug)]
pub struct MockUpstream {
    addr: SocketAddr,
    /// The CA certificate (PEM) when serving HTTPS.
    ca_pem: Option<String>,
    shared: Arc<Shared>,
    stream_ends: tokio::sync::Mutex<mpsc::UnboundedReceiver<StreamEnd>>,
    task: JoinHandle<()>,
}

#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    /// The number of recorded requests, for `wait_for_requests`.
    count: watch::Sender<usize>,
    /// Where streamed bodies report how they ended.
    stream_ends: mpsc::UnboundedSender<StreamEnd>,
}

#[derive(Debug, Default)]
struct State {
    requests: Vec<RecordedRequest>,
    replies: VecDeque<Reply>,
    /// What `GET /v1/models` lists, once set.
    models: Option<Vec<String>>,
    /// The provider key every request must carry, once set.
    key: Option<String>,
    /// Answers chat completions from the request (probe tests).
    sim: Option<crate::ProviderSim>,
    /// Answers `/v1/videos…` (video tests), with the jobs it accepted.
    video: Option<crate::VideoSim>,
    video_jobs: crate::video_sim::SimJobs,
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl MockUpstream {
    /// Binds `127.0.0.1:0` and starts serving HTTP/1.1 (keep-alive, any
    /// number of connections) on the current Tokio runtime.
    ///
    /// # Errors
    ///
    /// If the listener cannot be bound.
    pub async fn start() -> std::io::Result<MockUpstream> {
        MockUpstream::start_with(None).await
    }

    /// Like [`start`](MockUpstream::start), but serves HTTPS (TLS 1.2 or
    /// 1.3, HTTP/1.1 via ALPN) with a certificate for `127.0.0.1` (IP SAN)
    /// and `localhost` signed by a CA generated for this server alone. A
    /// client must trust [`ca_pem`](MockUpstream::ca_pem) to connect;
    /// [`base_url`](MockUpstream::base_url) is
    /// `https://127.0.0.1:PORT/v1`.
    ///
    /// A connection whose TLS handshake fails (e.g. the client does not
    /// trust the CA) is closed without recording anything.
    ///
    /// # Errors
    ///
    /// If the listener cannot be bound or the certificates cannot be
    /// generated.
    pub async fn start_tls() -> std::io::Result<MockUpstream> {
        MockUpstream::start_with(Some(loopback_server_tls()?)).await
    }

    async fn start_with(tls: Option<ServerTls>) -> std::io::Result<MockUpstream> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let addr = listener.local_addr()?;
        let (ends_tx, ends_rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            count: watch::Sender::new(0),
            stream_ends: ends_tx,
        });
        let (acceptor, ca_pem) = match tls {
            Some(ServerTls { acceptor, ca_pem }) => (Some(acceptor), Some(ca_pem)),
            None => (None, None),
        };
        let task = tokio::spawn(accept_loop(listener, acceptor, Arc::clone(&shared)));
        Ok(MockUpstream {
            addr,
            ca_pem,
            shared,
            stream_ends: tokio::sync::Mutex::new(ends_rx),
            task,
        })
    }

    /// The address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The OpenAI-style base URL, `http://127.0.0.1:PORT/v1` (`https://`
    /// for a [TLS](MockUpstream::start_tls) mock). (Anthropic SDKs want the
    /// root, `http://127.0.0.1:PORT`: see
    /// [`root_url`](MockUpstream::root_url).)
    pub fn base_url(&self) -> String {
        format!("{}/v1", self.root_url())
    }

    /// The root URL, `http://127.0.0.1:PORT` (`https://` for a
    /// [TLS](MockUpstream::start_tls) mock).
    pub fn root_url(&self) -> String {
        let scheme = if self.ca_pem.is_some() {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://{}", self.addr)
    }

    /// For a [TLS](MockUpstream::start_tls) mock, the PEM of the CA
    /// certificate that signed the server's certificate (one
    /// `BEGIN CERTIFICATE` block), e.g. to write to a file for
    /// `tls.extra_ca_file`. `None` for a plain-HTTP mock.
    pub fn ca_pem(&self) -> Option<&str> {
        self.ca_pem.as_deref()
    }

    /// Queues a scripted reply. Each request takes the oldest queued reply;
    /// when the queue is empty the default reply is used.
    pub fn push_reply(&self, reply: Reply) {
        self.shared.state().replies.push_back(reply);
    }

    /// Queues several scripted replies, in order.
    pub fn push_replies(&self, replies: impl IntoIterator<Item = Reply>) {
        self.shared.state().replies.extend(replies);
    }

    /// Makes `GET /v1/models` answer `{"object":"list","data":[{"id":…}]}`
    /// with these ids (the shape OpenAI and Anthropic share).
    pub fn serve_models(&self, ids: &[&str]) {
        self.shared.state().models = Some(ids.iter().map(|m| (*m).to_owned()).collect());
    }

    /// Makes every request without this key (`Authorization: Bearer KEY`
    /// or `x-api-key: KEY`) answer `401`, as a real provider does. The
    /// request is still recorded; a queued reply is not used up.
    pub fn require_key(&self, key: &str) {
        self.shared.state().key = Some(key.to_owned());
    }

    /// Answers `POST /v1/chat/completions` (when no scripted reply is
    /// queued) as `sim` behaves: from the request, instead of canned.
    pub fn simulate(&self, sim: crate::ProviderSim) {
        self.shared.state().sim = Some(sim);
    }

    /// From now on, requests on `/v1/videos…` with no scripted reply
    /// queued are answered as `sim` behaves (submit, poll, content).
    pub fn simulate_video(&self, sim: crate::VideoSim) {
        self.shared.state().video = Some(sim);
    }

    /// Requests the mock received whose path starts with `prefix`.
    pub fn requests_under(&self, prefix: &str) -> Vec<RecordedRequest> {
        let state = self.shared.state();
        let under = state
            .requests
            .iter()
            .filter(|r| r.path().starts_with(prefix));
        under.cloned().collect()
    }

    /// How many scripted replies are still queued.
    pub fn pending_replies(&self) -> usize {
        self.shared.state().replies.len()
    }

    /// Every request received so far, in arrival order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared.state().requests.clone()
    }

    /// How many requests have been received so far.
    pub fn request_count(&self) -> usize {
        self.shared.state().requests.len()
    }

    /// Waits until at least `n` requests have been recorded, then returns
    /// all of them (possibly more than `n`).
    pub async fn wait_for_requests(&self, n: usize) -> Vec<RecordedRequest> {
        let mut count = self.shared.count.subscribe();
        // The sender lives in `self.shared`, so this cannot fail.
        let _ = count.wait_for(|&c| c >= n).await;
        self.requests()
    }

    /// Waits for the next streamed ([`ReplyBody::Chunks`]) reply to end and
    /// says how. Ends are reported in the order they happen, each once.
    pub async fn next_stream_end(&self) -> StreamEnd {
        match self.stream_ends.lock().await.recv().await {
            Some(end) => end,
            // Unreachable: `self.shared` holds a sender.
            None => std::future::pending().await,
        }
    }

    /// The next stream end if one has already been reported, without
    /// waiting.
    pub fn try_next_stream_end(&self) -> Option<StreamEnd> {
        self.stream_ends.try_lock().ok()?.try_recv().ok()
    }
}

impl Drop for MockUpstream {
    fn drop(&mut self) {
        // The accept task owns the connection tasks (a `JoinSet`), so
        // aborting it closes every connection too.
        self.task.abort();
    }
}

async fn accept_loop(
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    shared: Arc<Shared>,
) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => {
                    let shared = Arc::clone(&shared);
                    match &tls {
                        None => connections.spawn(serve_connection(stream, shared)),
                        Some(tls) => {
                            connections.spawn(serve_tls_connection(tls.clone(), stream, shared))
                        }
                    };
                }
                Err(err) => {
                    // E.g. out of file descriptors: back off a little
                    // rather than spin.
                    tracing::warn!(%err, "mock upstream: accept failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

/// Completes the TLS handshake (in the connection's own task, so a slow
/// or failing client never holds up the accept loop), then serves HTTP.
async fn serve_tls_connection(
    acceptor: tokio_rustls::TlsAcceptor,
    stream: TcpStream,
    shared: Arc<Shared>,
) {
    match acceptor.accept(stream).await {
        Ok(stream) => serve_connection(stream, shared).await,
        Err(err) => tracing::debug!(%err, "mock upstream: TLS handshake failed"),
    }
}

/// Serves HTTP/1.1 on one connection, plain or TLS.
async fn serve_connection<S>(stream: S, shared: Arc<Shared>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |req| handle(Arc::clone(&shared), req));
    let result = hyper::server::conn::http1::Builder::new()
        .keep_alive(true)
        .serve_connection(TokioIo::new(stream), service)
        .await;
    if let Err(err) = result {
        tracing::debug!(%err, "mock upstream: connection ended with an error");
    }
}

/// Returned by the service to make hyper close the connection without a
/// response ([`ReplyBody::Reset`]).
#[derive(Debug)]
struct ResetConnection;

impl std::fmt::Display for ResetConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("scripted reset: closing without a response")
    }
}

impl std::error::Error for ResetConnection {}

async fn handle(
    shared: Arc<Shared>,
    req: Request<Incoming>,
) -> Result<Response<MockBody>, ResetConnection> {
    let (parts, body) = req.into_parts();
    let body = match body.collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(err) => {
            tracing::debug!(%err, "mock upstream: reading the request body failed");
            let reply = Reply::openai_error(
                400,
                "invalid_request_error",
                "bad_body",
                "could not read the body",
            );
            return Ok(respond(reply, &shared));
        }
    };
    let recorded = RecordedRequest {
        path_and_query: parts
            .uri
            .path_and_query()
            .map_or_else(|| parts.uri.path().to_owned(), |pq| pq.as_str().to_owned()),
        method: parts.method,
        headers: parts.headers,
        body,
    };

    let reply = {
        let mut state = shared.state();
        state.requests.push(recorded.clone());
        shared.count.send_replace(state.requests.len());
        if state
            .key
            .as_deref()
            .is_some_and(|k| !carries_key(&recorded, k))
        {
            Reply::openai_error(
                401,
                "invalid_request_error",
                "invalid_api_key",
                "mock upstream: incorrect API key provided",
            )
        } else if let Some(ids) = state.models.as_ref().filter(|_| is_models_list(&recorded)) {
            models_reply(ids)
        } else {
            let sim = state.sim;
            let state = &mut *state;
            let scripted = state.replies.pop_front();
            let video = || {
                let v = state.video.as_ref()?;
                v.answer(&recorded, &mut state.video_jobs)
            };
            scripted
                .or_else(video)
                .unwrap_or_else(|| default_reply(&recorded, sim))
        }
    };

    let head_delay = reply.head_delay;
    if matches!(reply.body, ReplyBody::Reset) {
        if let Some(delay) = head_delay {
            tokio::time::sleep(delay).await;
        }
        return Err(ResetConnection);
    }
    // The body exists (and will report a stream end if dropped) before the
    // head delay, so a client that gives up during the delay is reported
    // as gone rather than never.
    let response = respond(reply, &shared);
    if let Some(delay) = head_delay {
        tokio::time::sleep(delay).await;
    }
    Ok(response)
}

/// Whether `req` carries `key` as a bearer token or `x-api-key`.
fn carries_key(req: &RecordedRequest, key: &str) -> bool {
    let header = |name: &str| req.headers.get(name).and_then(|v| v.to_str().ok());
    header("authorization").and_then(|v| v.strip_prefix("Bearer ")) == Some(key)
        || header("x-api-key") == Some(key)
}

fn is_models_list(req: &RecordedRequest) -> bool {
    req.method == Method::GET && req.path() == "/v1/models"
}

/// `GET /v1/models`: the list shape OpenAI and Anthropic share.
fn models_reply(ids: &[String]) -> Reply {
    let data: Vec<serde_json::Value> = ids
        .iter()
        .map(|id| serde_json::json!({"id": id, "object": "model", "owned_by": "mock"}))
        .collect();
    Reply::json(
        200,
        serde_json::json!({"object": "list", "data": data}).to_string(),
    )
}

/// The reply the mock gives when no scripted reply is queued.
fn default_reply(req: &RecordedRequest, sim: Option<crate::ProviderSim>) -> Reply {
    let path = req.path();
    if path == "/healthz" && (req.method == Method::GET || req.method == Method::HEAD) {
        return Reply::text(200, "ok");
    }
    let Some(protocol) = Protocol::from_path(path) else {
        return Reply::openai_error(
            404,
            "invalid_request_error",
            "unknown_url",
            &format!("mock upstream: no route for {} {path}", req.method),
        );
    };
    if req.method != Method::POST {
        return error_for(
            protocol,
            405,
            &format!("mock upstream: {} not allowed on {path}", req.method),
        );
    }
    if protocol == Protocol::ImagesEdits && is_multipart(req) {
        // An image edit form: answered like an images request, for the
        // form's `model`; a form without one is refused as OpenAI does.
        let Some(model) = form_text(&req.body, "model") else {
            return error_for(protocol, 400, "mock upstream: the form has no `model`");
        };
        let stream = form_text(&req.body, "stream").is_some_and(|s| s == "true");
        return Reply::canned(protocol, &model, stream);
    }
    let Ok(json) = serde_json::from_slice::<serde_json::Value>(&req.body) else {
        return error_for(
            protocol,
            400,
            "mock upstream: the request body is not valid JSON",
        );
    };
    if let (Some(sim), Protocol::ChatCompletions) = (sim, protocol) {
        return sim.answer(&json);
    }
    let model = json
        .get("model")
        .and_then(serde_json::Value::as_str)
        .unwrap_or(DEFAULT_MODEL);
    let stream = json
        .get("stream")
        .and_then(serde_json::Value::as_bool)
        .unwrap_or(false);
    Reply::canned(protocol, model, stream)
}

fn is_multipart(req: &RecordedRequest) -> bool {
    req.header("content-type")
        .is_some_and(|ct| ct.starts_with("multipart/form-data"))
}

/// The value of the text field `name` of a multipart form (a plain search:
/// the mock only reads the fields its tests send).
pub fn form_text(body: &[u8], name: &str) -> Option<String> {
    let text = String::from_utf8_lossy(body);
    let at = text.find(&format!("name=\"{name}\"\r\n"))?;
    let rest = &text[at..];
    let start = rest.find("\r\n\r\n")? + 4;
    let len = rest[start..].find("\r\n--")?;
    Some(rest[start..start + len].to_string())
}

fn error_for(protocol: Protocol, status: u16, message: &str) -> Reply {
    match protocol.family() {
        ApiFamily::Anthropic => Reply::anthropic_error(status, "invalid_request_error", message),
        _ => Reply::openai_error(status, "invalid_request_error", "invalid_request", message),
    }
}

/// Builds the response for `reply`.
fn respond(reply: Reply, shared: &Shared) -> Response<MockBody> {
    let body = match reply.body {
        ReplyBody::Bytes(bytes) => MockBody::Full(Some(bytes).filter(|b| !b.is_empty())),
        // Handled before a response is built; an empty body if it gets here.
        ReplyBody::Reset => MockBody::Full(None),
        ReplyBody::Chunks(chunks) => MockBody::Script(ScriptBody {
            chunks: chunks.into_iter(),
            waiting: None,
            stream_ends: Some(shared.stream_ends.clone()),
        }),
    };
    let mut response = Response::new(body);
    *response.status_mut() =
        StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let headers = response.headers_mut();
    for (name, value) in &reply.headers {
        match (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            (Ok(name), Ok(value)) => {
                headers.append(name, value);
            }
            _ => tracing::warn!(%name, %value, "mock upstream: skipping an invalid header"),
        }
    }
    response
}

/// The response body: whole, or driven by a chunk script.
#[derive(Debug)]
enum MockBody {
    Full(Option<Bytes>),
    Script(ScriptBody),
}

type Waiting = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Plays a [`Chunk`] script as body frames, and reports how it ended: when
/// polled past the last chunk, [`StreamEnd::Completed`]; when dropped
/// before that (hyper drops the body when the peer goes away or a write
/// fails), [`StreamEnd::ClientGone`].
struct ScriptBody {
    chunks: std::vec::IntoIter<Chunk>,
    waiting: Option<Waiting>,
    /// Taken when the end is reported, so it is reported once.
    stream_ends: Option<mpsc::UnboundedSender<StreamEnd>>,
}

impl std::fmt::Debug for ScriptBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScriptBody")
            .field("chunks_left", &self.chunks.len())
            .field("waiting", &self.waiting.is_some())
            .finish()
    }
}

impl ScriptBody {
    fn report(&mut self, end: StreamEnd) {
        if let Some(tx) = self.stream_ends.take() {
            // The receiver is gone only if the `MockUpstream` is.
            let _ = tx.send(end);
        }
    }

    fn poll_script(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Bytes, std::io::Error>>> {
        loop {
            if let Some(waiting) = self.waiting.as_mut() {
                ready!(waiting.as_mut().poll(cx));
                self.waiting = None;
            }
            match self.chunks.next() {
                None => {
                    self.report(StreamEnd::Completed);
                    return Poll::Ready(None);
                }
                Some(Chunk::Data(data)) if data.is_empty() => {}
                Some(Chunk::Data(data)) => return Poll::Ready(Some(Ok(data))),
                Some(Chunk::Abort) => {
                    self.report(StreamEnd::Completed);
                    return Poll::Ready(Some(Err(std::io::Error::other("scripted abort"))));
                }
                Some(Chunk::Delay(delay)) => {
                    self.waiting = Some(Box::pin(tokio::time::sleep(delay)))
                }
                Some(Chunk::WaitFor(notify)) => {
                    self.waiting = Some(Box::pin(async move { notify.notified().await }));
                }
                Some(Chunk::Hang) => self.waiting = Some(Box::pin(std::future::pending())),
            }
        }
    }
}

impl Drop for ScriptBody {
    fn drop(&mut self) {
        self.report(StreamEnd::ClientGone);
    }
}

impl Body for MockBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        match self.get_mut() {
            MockBody::Full(data) => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
            MockBody::Script(script) => script
                .poll_script(cx)
                .map(|d| d.map(|d| d.map(Frame::data))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            MockBody::Full(data) => data.is_none(),
            MockBody::Script(script) => script.stream_ends.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            MockBody::Full(data) => {
                SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64))
            }
            MockBody::Script(_) => SizeHint::default(),
        }
    }
}
