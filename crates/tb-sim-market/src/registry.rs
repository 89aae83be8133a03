//! The simulated registry: serves the registry document, or misbehaves on
//! request.

use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::SystemTime;

use bytes::Bytes;
use http::{Method, Request, Response};
use hyper::body::Incoming;
use serde_json::{Map, Value, json};
use tb_domain::{PaymentMethod, Protocol};
use tokio::sync::watch;

use super::SellerServer;
use super::net::{self, Served, SimBody, Step};

/// The path the registry serves its document at.
pub const REGISTRY_PATH: &str = "/registry.json";

/// The response header of a `413` from a registry whose document is too
/// large.
pub const TOO_LARGE_HEADER: &str = "x-tokenbuddy-registry-too-large";

/// The size of each chunk of an [`Oversized`](RegistryBehaviour::Oversized)
/// body.
const OVERSIZED_CHUNK: usize = 64 * 1024;

/// How a [`RegistryServer`] answers `GET /registry.json`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RegistryBehaviour {
    /// `200` with the document (`content-type: application/json`, with
    /// `content-length`).
    #[default]
    Serve,
    /// `413` with header `X-TokenBuddy-Registry-Too-Large: 1` and a small
    /// JSON error body.
    TooLarge,
    /// This status with a small JSON error body (`{"error": "..."}`).
    Status(u16),
    /// `200`, `content-type: application/json`, and a body that is not
    /// JSON (nor UTF-8).
    Garbage,
    /// `200` with a JSON body of exactly this many bytes, sent chunked
    /// (64 KiB chunks, no `content-length`, so only counting what arrives
    /// tells the size): the current document as an object with an extra
    /// `"padding": "xxx…"` member. A client that parses a truncated prefix
    /// gets invalid JSON. When the document alone is already at least this
    /// long it is sent as is (so the body is longer than asked).
    Oversized(usize),
    /// Reads the request, then never answers (the connection stays open
    /// until the client gives up or the server is dropped).
    Hang,
}

/// A registry server on an ephemeral loopback port, serving one document
/// at [`url`](RegistryServer::url) (`http://127.0.0.1:PORT/registry.json`),
/// or misbehaving as told by
/// [`set_behaviour`](RegistryServer::set_behaviour). Other paths answer
/// `404` and are not counted.
///
/// Dropping the value shuts the server down.
#[derive(Debug)]
pub struct RegistryServer {
    served: Served,
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    /// Requests for the document so far.
    count: watch::Sender<usize>,
}

#[derive(Debug)]
struct State {
    document: Value,
    behaviour: RegistryBehaviour,
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl RegistryServer {
    /// Starts serving `doc` with [`RegistryBehaviour::Serve`].
    ///
    /// # Errors
    ///
    /// If the listener cannot be bound.
    pub async fn start(doc: Value) -> io::Result<RegistryServer> {
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                document: doc,
                behaviour: RegistryBehaviour::Serve,
            }),
            count: watch::Sender::new(0),
        });
        let handler_shared = Arc::clone(&shared);
        let served = net::serve(move |req| handle(Arc::clone(&handler_shared), req)).await?;
        Ok(RegistryServer { served, shared })
    }

    /// The address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.served.addr
    }

    /// The document URL, `http://127.0.0.1:PORT/registry.json` (what
    /// `registry.url` should be set to).
    pub fn url(&self) -> String {
        format!("http://{}{REGISTRY_PATH}", self.served.addr)
    }

    /// Replaces the document served from the next request on.
    pub fn set_document(&self, doc: Value) {
        self.shared.state().document = doc;
    }

    /// The current document.
    pub fn document(&self) -> Value {
        self.shared.state().document.clone()
    }

    /// Changes how the next requests are answered.
    pub fn set_behaviour(&self, behaviour: RegistryBehaviour) {
        self.shared.state().behaviour = behaviour;
    }

    /// How requests are currently answered.
    pub fn behaviour(&self) -> RegistryBehaviour {
        self.shared.state().behaviour
    }

    /// How many requests for the document have arrived (counted when the
    /// request head and body have been read, before answering, whatever
    /// the behaviour).
    pub fn request_count(&self) -> usize {
        *self.shared.count.borrow()
    }

    /// Waits until at least `n` requests for the document have arrived;
    /// returns the count then (possibly more than `n`).
    pub async fn wait_for_requests(&self, n: usize) -> usize {
        let mut count = self.shared.count.subscribe();
        // The sender lives in `self.shared`, so this cannot fail.
        let result = count.wait_for(|&c| c >= n).await.map(|c| *c);
        result.unwrap_or(n)
    }
}

async fn handle(shared: Arc<Shared>, req: Request<Incoming>) -> Response<SimBody> {
    use http_body_util::BodyExt as _;

    let (parts, body) = req.into_parts();
    // Read (and ignore) the body, so the request is complete when counted.
    let _ = body.collect().await;
    if parts.uri.path() != REGISTRY_PATH
        || (parts.method != Method::GET && parts.method != Method::HEAD)
    {
        return net::json_response(404, &json!({ "error": "not found" }));
    }
    let (document, behaviour) = {
        let state = shared.state();
        let document = match state.behaviour {
            RegistryBehaviour::Serve | RegistryBehaviour::Oversized(_) => {
                Some(state.document.clone())
            }
            _ => None,
        };
        (document, state.behaviour)
    };
    shared.count.send_modify(|c| *c += 1);
    match behaviour {
        RegistryBehaviour::Serve => {
            net::json_response(200, document.as_ref().unwrap_or(&Value::Null))
        }
        RegistryBehaviour::TooLarge => net::response(
            413,
            &[
                ("content-type".into(), "application/json".into()),
                (TOO_LARGE_HEADER.into(), "1".into()),
            ],
            SimBody::full(r#"{"error":"registry document too large"}"#),
        ),
        RegistryBehaviour::Status(status) => net::json_response(
            status,
            &json!({ "error": format!("simulated registry failure ({status})") }),
        ),
        RegistryBehaviour::Garbage => net::response(
            200,
            &[("content-type".into(), "application/json".into())],
            SimBody::full(Bytes::from_static(
                b"<html>\xff\xfe not json {\"sellers\": [\x00\x01 oops",
            )),
        ),
        RegistryBehaviour::Oversized(len) => {
            let body = oversized_body(document.unwrap_or(Value::Null), len);
            let steps = body
                .chunks(OVERSIZED_CHUNK)
                .map(|c| Step::Data(Bytes::copy_from_slice(c)))
                .collect();
            net::response(
                200,
                &[("content-type".into(), "application/json".into())],
                net::stream(steps),
            )
        }
        RegistryBehaviour::Hang => std::future::pending().await,
    }
}

/// `document` (as an object) plus a `padding` member making the JSON
/// exactly `len` bytes when possible.
fn oversized_body(document: Value, len: usize) -> Vec<u8> {
    let mut object = match document {
        Value::Object(map) => map,
        other => {
            let mut map = Map::new();
            map.insert("document".into(), other);
            map
        }
    };
    object.insert("padding".into(), Value::String(String::new()));
    let base = net::to_vec(&Value::Object(object.clone())).len();
    if len > base {
        // `x` needs no escaping: each adds exactly one byte.
        object.insert("padding".into(), Value::String("x".repeat(len - base)));
    }
    net::to_vec(&Value::Object(object))
}

/// The registry document (`marketplace.md`, camelCase) listing `sellers`
/// in order, each as its [`registry_entry`](SellerServer::registry_entry)
/// (current spec, `status: "active"`), with `version` = now (RFC 3339) and
/// `defaultSeller` when given.
pub fn registry_doc(sellers: &[&SellerServer], default_seller: Option<&str>) -> Value {
    let mut doc = json!({
        "version": net::rfc3339(SystemTime::now()),
        "sellers": sellers.iter().map(|s| s.registry_entry()).collect::<Vec<_>>(),
    });
    if let Some(default) = default_seller {
        doc["defaultSeller"] = json!(default);
    }
    doc
}

/// A large, valid registry document for scale tests: `n` active sellers
/// `s-00000`, `s-00001`, … at fake URLs (`https://s-00000.sellers.invalid`,
/// never contacted), each selling `models_per_seller` models taken in turn
/// from a pool of `max(10 × models_per_seller, 1)` names (`model-0000`, …,
/// so many sellers share each model), over `chat_completions` and
/// `messages` (plus `responses` for every other seller), paid with `mock`
/// (plus `clawtip` for every third), with discounts varying from 0 to 0.29.
/// The default seller is the first. 10,000 sellers × 5 models is about
/// 3 MB of JSON; × 50 models about 8.8 MB.
pub fn registry_doc_with_n_sellers(n: usize, models_per_seller: usize) -> Value {
    let pool = (models_per_seller * 10).max(1);
    let sellers: Vec<Value> = (0..n)
        .map(|i| {
            let id = format!("s-{i:05}");
            let models: Vec<String> = (0..models_per_seller)
                .map(|j| format!("model-{:04}", (i * 7 + j) % pool))
                .collect();
            let mut protocols = vec![
                Protocol::ChatCompletions.as_str(),
                Protocol::Messages.as_str(),
            ];
            if i % 2 == 0 {
                protocols.push(Protocol::Responses.as_str());
            }
            let mut payment = vec![PaymentMethod::Mock.as_str()];
            if i % 3 == 0 {
                payment.push(PaymentMethod::Clawtip.as_str());
            }
            json!({
                "id": id,
                "name": format!("Seller {i}"),
                "url": format!("https://{id}.sellers.invalid"),
                "models": models,
                "protocols": protocols,
                "paymentMethods": payment,
                "discountRatio": (i % 30) as f64 / 100.0,
                "serviceFeeRatio": 0.02,
                "status": "active",
            })
        })
        .collect();
    let mut doc = json!({
        "version": "2026-11-21T10:00:00Z",
        "sellers": sellers,
    });
    if n > 0 {
        doc["defaultSeller"] = json!("s-00000");
    }
    doc
}
