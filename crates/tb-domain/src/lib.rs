//! The shared vocabulary of tokenbuddy.
//!
//! Every other crate speaks in these types: which API a request uses
//! ([`Protocol`]), which wire family its errors take ([`ApiFamily`]), how an
//! upstream authenticates ([`ProviderKind`]) and what it is called
//! ([`UpstreamId`]). The crate does no I/O and has no dependencies beyond
//! `serde`, so it can sit at the bottom of the dependency graph.
//!
//! ```
//! use tb_domain::{Protocol, ApiFamily};
//!
//! let p = Protocol::from_path("/v1/messages").unwrap();
//! assert_eq!(p, Protocol::Messages);
//! assert_eq!(p.family(), ApiFamily::Anthropic);
//! assert_eq!(p.upstream_suffix(), "/messages");
//! ```

use std::fmt;

use serde::{Deserialize, Serialize};

mod count;
mod trace;
pub use count::TokenCount;
pub use trace::TraceParent;

/// One of the five LLM APIs the proxy plane speaks.
///
/// The three text protocols ([`Protocol::TRANSLATABLE`]) are translated
/// between (tb-translate); images and embeddings only go to upstreams that
/// list their protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    /// OpenAI Chat Completions (`POST /v1/chat/completions`).
    ChatCompletions,
    /// OpenAI Responses (`POST /v1/responses`).
    Responses,
    /// Anthropic Messages (`POST /v1/messages`, also `/messages`).
    Messages,
    /// OpenAI Images (`POST /v1/images/generations`).
    ImagesGenerations,
    /// OpenAI Embeddings (`POST /v1/embeddings`).
    Embeddings,
    /// OpenAI image edits (`POST /v1/images/edits`): a `multipart/form-data`
    /// request (image files, `mask`, `prompt`, `model`, …) or a JSON one,
    /// forwarded as sent; not in [`Protocol::ALL`], whose requests are JSON.
    ImagesEdits,
    /// OpenAI video generation (`POST /v1/videos`, `GET /v1/videos/{id}`,
    /// `GET /v1/videos/{id}/content`): an asynchronous job API, served by
    /// the gateway's video module rather than the one-request forward path,
    /// so it is not in [`Protocol::ALL`].
    Videos,
}

impl Protocol {
    /// Every JSON protocol of the one-request forward path, in a stable
    /// order ([`Protocol::ImagesEdits`], multipart, and [`Protocol::Videos`],
    /// a job API, are not here; see [`Protocol::parse`] for every name).
    pub const ALL: [Protocol; 5] = [
        Protocol::ChatCompletions,
        Protocol::Responses,
        Protocol::Messages,
        Protocol::ImagesGenerations,
        Protocol::Embeddings,
    ];

    /// The text protocols requests are translated between (translation.md).
    pub const TRANSLATABLE: [Protocol; 3] = [
        Protocol::ChatCompletions,
        Protocol::Responses,
        Protocol::Messages,
    ];

    /// The protocol with this config/ledger name, [`Protocol::ImagesEdits`]
    /// and [`Protocol::Videos`] included.
    pub fn parse(name: &str) -> Option<Protocol> {
        Protocol::ALL
            .into_iter()
            .chain([Protocol::ImagesEdits, Protocol::Videos])
            .find(|p| p.as_str() == name)
    }

    /// Whether the protocol's requests are images (billed per image).
    pub fn is_images(self) -> bool {
        matches!(self, Protocol::ImagesGenerations | Protocol::ImagesEdits)
    }

    /// Whether requests in this protocol can be translated to another.
    pub fn is_translatable(self) -> bool {
        Protocol::TRANSLATABLE.contains(&self)
    }

    /// The config/ledger name (`chat_completions`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::ChatCompletions => "chat_completions",
            Protocol::Responses => "responses",
            Protocol::Messages => "messages",
            Protocol::ImagesGenerations => "images_generations",
            Protocol::Embeddings => "embeddings",
            Protocol::ImagesEdits => "images_edits",
            Protocol::Videos => "videos",
        }
    }

    /// The protocol served at a client-facing path (query string excluded).
    pub fn from_path(path: &str) -> Option<Protocol> {
        match path {
            "/v1/chat/completions" => Some(Protocol::ChatCompletions),
            "/v1/responses" => Some(Protocol::Responses),
            "/v1/messages" | "/messages" => Some(Protocol::Messages),
            "/v1/images/generations" => Some(Protocol::ImagesGenerations),
            "/v1/embeddings" => Some(Protocol::Embeddings),
            "/v1/images/edits" => Some(Protocol::ImagesEdits),
            _ => None,
        }
    }

    /// The client-facing path of the protocol (`/v1/...`).
    pub fn client_path(self) -> &'static str {
        match self {
            Protocol::ChatCompletions => "/v1/chat/completions",
            Protocol::Responses => "/v1/responses",
            Protocol::Messages => "/v1/messages",
            Protocol::ImagesGenerations => "/v1/images/generations",
            Protocol::Embeddings => "/v1/embeddings",
            Protocol::ImagesEdits => "/v1/images/edits",
            Protocol::Videos => "/v1/videos",
        }
    }

    /// The path appended to an upstream's `base_url`: the protocol path
    /// minus its leading `/v1` (base URLs conventionally end in `/v1`).
    pub fn upstream_suffix(self) -> &'static str {
        match self {
            Protocol::ChatCompletions => "/chat/completions",
            Protocol::Responses => "/responses",
            Protocol::Messages => "/messages",
            Protocol::ImagesGenerations => "/images/generations",
            Protocol::Embeddings => "/embeddings",
            Protocol::ImagesEdits => "/images/edits",
            Protocol::Videos => "/videos",
        }
    }

    /// Which wire family (error shape, auth habits) the protocol belongs to.
    pub fn family(self) -> ApiFamily {
        match self {
            Protocol::Messages => ApiFamily::Anthropic,
            _ => ApiFamily::OpenAi,
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The wire family of an endpoint: decides the error body shape so SDKs
/// raise their usual exception types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ApiFamily {
    /// `{"error": {"message", "type", "code", "param"}}`
    OpenAi,
    /// `{"type": "error", "error": {"type", "message"}}`
    Anthropic,
}

impl ApiFamily {
    /// The family a client-facing path belongs to, also for paths that are
    /// not endpoints (so a 404 on `/v1/messages/x` still looks Anthropic).
    pub fn for_path(path: &str) -> ApiFamily {
        if path == "/messages"
            || path.starts_with("/messages/")
            || path == "/v1/messages"
            || path.starts_with("/v1/messages/")
        {
            ApiFamily::Anthropic
        } else {
            ApiFamily::OpenAi
        }
    }
}

/// How a manual provider authenticates. The kind only chooses the auth
/// header; it never changes the protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProviderKind {
    /// `Authorization: Bearer <key>`.
    Openai,
    /// `x-api-key: <key>` plus `anthropic-version` when the client sent none.
    Anthropic,
}

impl ProviderKind {
    /// The protocols a provider of this kind serves when its config lists none.
    pub fn default_protocols(self) -> Vec<Protocol> {
        match self {
            ProviderKind::Openai => vec![
                Protocol::ChatCompletions,
                Protocol::Responses,
                Protocol::ImagesGenerations,
                Protocol::Embeddings,
                Protocol::ImagesEdits,
            ],
            ProviderKind::Anthropic => vec![Protocol::Messages],
        }
    }
}

/// How a route is paid for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PaymentMethod {
    /// A manual provider, paid with the user's own key.
    ProviderKey,
    /// Test marketplaces: purchases complete at once.
    Mock,
    /// A wallet; purchases need user action.
    Clawtip,
}

impl PaymentMethod {
    /// The wire/config name.
    pub fn as_str(self) -> &'static str {
        match self {
            PaymentMethod::ProviderKey => "provider_key",
            PaymentMethod::Mock => "mock",
            PaymentMethod::Clawtip => "clawtip",
        }
    }

    /// Parses a wire/config name; unknown methods are `None` (ignored by readers).
    pub fn parse(s: &str) -> Option<PaymentMethod> {
        Some(match s {
            "provider_key" => PaymentMethod::ProviderKey,
            "mock" => PaymentMethod::Mock,
            "clawtip" => PaymentMethod::Clawtip,
            _ => return None,
        })
    }
}

impl fmt::Display for PaymentMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The name of one upstream (a manual provider id or, later, a seller id).
/// It is shown to users (`x-tokenbuddy-upstream`, ledger, metrics labels),
/// so it only ever comes from config or the registry, never from a client.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct UpstreamId(String);

impl UpstreamId {
    /// Wraps an id taken from config or the registry.
    pub fn new(id: impl Into<String>) -> UpstreamId {
        UpstreamId(id.into())
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for UpstreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// How one attempt at one upstream ended: the one vocabulary from
/// classification (tb-routing) through pool feedback to the call record
/// (routing.md, "Failover"). Serialised snake_case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// A usable answer.
    Ok,
    /// The client went away (set by the caller, never by [`classify`]).
    Cancelled,
    /// `402`, or an error answer with billing wording: the credit ran out.
    InsufficientFunds,
    /// `401` / `403` without billing wording.
    AuthInvalid,
    /// `429`.
    RateLimited,
    /// `400`, `404`, `413`, `422` (and any other 4xx the table does not
    /// name): the request itself was refused.
    ClientError,
    /// `5xx`, `408`, `409`, `498`, a connection reset or dropped before a
    /// complete answer, or a status the proxy cannot use (1xx, 3xx).
    ServerError,
    /// The connection could not be made (refused, DNS, TLS handshake): a
    /// transient "connect failure" (proxy.md) that is not worth retrying on
    /// the same upstream. Not in routing.md's table; see [`decide`].
    ConnectFailed,
    /// No response head in time, a connect timeout, or the stream went idle
    /// before content.
    Deadline,
    /// Buying credit failed or the session budget is spent (set by the
    /// caller).
    PurchaseFailed,
    /// Success with input > 0, output = 0 and no content (set by the
    /// caller, which has the usage).
    EmptyCompletion,
}

impl Outcome {
    /// Every outcome.
    pub const ALL: [Outcome; 11] = [
        Outcome::Ok,
        Outcome::Cancelled,
        Outcome::InsufficientFunds,
        Outcome::AuthInvalid,
        Outcome::RateLimited,
        Outcome::ClientError,
        Outcome::ServerError,
        Outcome::ConnectFailed,
        Outcome::Deadline,
        Outcome::PurchaseFailed,
        Outcome::EmptyCompletion,
    ];

    /// The snake_case name (call records, `x-tokenbuddy-attempts`, metric
    /// labels).
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Cancelled => "cancelled",
            Outcome::InsufficientFunds => "insufficient_funds",
            Outcome::AuthInvalid => "auth_invalid",
            Outcome::RateLimited => "rate_limited",
            Outcome::ClientError => "client_error",
            Outcome::ServerError => "server_error",
            Outcome::ConnectFailed => "connect_failed",
            Outcome::Deadline => "deadline",
            Outcome::PurchaseFailed => "purchase_failed",
            Outcome::EmptyCompletion => "empty_completion",
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One check of `tokenbuddyd probe` (docs/probe.md): what a provider is
/// vetted on before its discount is trusted. Shared by the probe, the
/// ledger (`probe_results`) and routing's trust rules. Serialised snake_case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProbeCheck {
    /// A plain (whole JSON) answer with text.
    Plain,
    /// A stream with content and a usage chunk.
    StreamUsage,
    /// A tool call round trip: the call, then an answer to its result.
    ToolCall,
    /// `max_tokens` honoured: a long answer cut at the limit.
    MaxTokens,
    /// Prompt tokens reported vs counted locally (over-count, hidden prompt).
    PromptTokens,
    /// The answered model id is the requested one.
    ModelId,
}

impl ProbeCheck {
    /// Every check, in the order the probe runs and shows them.
    pub const ALL: [ProbeCheck; 6] = [
        ProbeCheck::Plain,
        ProbeCheck::StreamUsage,
        ProbeCheck::ToolCall,
        ProbeCheck::MaxTokens,
        ProbeCheck::PromptTokens,
        ProbeCheck::ModelId,
    ];

    /// The snake_case name (ledger, JSON, the matrix's header).
    pub fn as_str(self) -> &'static str {
        match self {
            ProbeCheck::Plain => "plain",
            ProbeCheck::StreamUsage => "stream_usage",
            ProbeCheck::ToolCall => "tool_call",
            ProbeCheck::MaxTokens => "max_tokens",
            ProbeCheck::PromptTokens => "prompt_tokens",
            ProbeCheck::ModelId => "model_id",
        }
    }

    /// The check named `s`, if it is one.
    pub fn parse(s: &str) -> Option<ProbeCheck> {
        ProbeCheck::ALL.into_iter().find(|c| c.as_str() == s)
    }
}

impl fmt::Display for ProbeCheck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How one probe check came out: passed (✓), failed (✗) or could not be
/// judged (?, e.g. the call itself failed or the answer lacked the number).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// ✓
    Pass,
    /// ✗
    Fail,
    /// ?
    Unknown,
}

impl Verdict {
    /// The snake_case name (ledger, JSON).
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::Fail => "fail",
            Verdict::Unknown => "unknown",
        }
    }

    /// The verdict named `s`, if it is one.
    pub fn parse(s: &str) -> Option<Verdict> {
        [Verdict::Pass, Verdict::Fail, Verdict::Unknown]
            .into_iter()
            .find(|v| v.as_str() == s)
    }

    /// The matrix's mark: `✓`, `✗` or `?`.
    pub fn mark(self) -> &'static str {
        match self {
            Verdict::Pass => "✓",
            Verdict::Fail => "✗",
            Verdict::Unknown => "?",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_names_round_trip() {
        for c in ProbeCheck::ALL {
            assert_eq!(ProbeCheck::parse(c.as_str()), Some(c));
            assert_eq!(serde_json::to_value(c).unwrap(), c.as_str());
        }
        for v in [Verdict::Pass, Verdict::Fail, Verdict::Unknown] {
            assert_eq!(Verdict::parse(v.as_str()), Some(v));
            assert_eq!(serde_json::to_value(v).unwrap(), v.as_str());
        }
        assert_eq!(ProbeCheck::parse("nope"), None);
    }

    #[test]
    fn paths_map_to_protocols() {
        let cases = [
            ("/v1/chat/completions", Some(Protocol::ChatCompletions)),
            ("/v1/responses", Some(Protocol::Responses)),
            ("/v1/messages", Some(Protocol::Messages)),
            ("/messages", Some(Protocol::Messages)),
            ("/v1/images/generations", Some(Protocol::ImagesGenerations)),
            ("/v1/images/edits", Some(Protocol::ImagesEdits)),
            ("/v1/models", None),
            ("/v1/chat/completions/", None),
            ("/chat/completions", None),
        ];
        for (path, want) in cases {
            assert_eq!(Protocol::from_path(path), want, "{path}");
        }
        for p in Protocol::ALL {
            assert_eq!(Protocol::from_path(p.client_path()), Some(p));
            assert_eq!(p.client_path(), format!("/v1{}", p.upstream_suffix()));
        }
    }

    #[test]
    fn names_round_trip_through_serde() {
        for p in Protocol::ALL {
            let json = serde_json::to_string(&p).unwrap();
            assert_eq!(json, format!("\"{}\"", p.as_str()));
            let back: Protocol = serde_json::from_str(&json).unwrap();
            assert_eq!(back, p);
        }
    }

    #[test]
    fn payment_methods_round_trip() {
        for m in [
            PaymentMethod::ProviderKey,
            PaymentMethod::Mock,
            PaymentMethod::Clawtip,
        ] {
            assert_eq!(PaymentMethod::parse(m.as_str()), Some(m));
            assert_eq!(serde_json::to_value(m).unwrap(), m.as_str());
        }
        assert_eq!(PaymentMethod::parse("bitcoin"), None);
    }

    #[test]
    fn families() {
        assert_eq!(ApiFamily::for_path("/v1/messages"), ApiFamily::Anthropic);
        assert_eq!(
            ApiFamily::for_path("/messages/count_tokens"),
            ApiFamily::Anthropic
        );
        assert_eq!(ApiFamily::for_path("/v1/messagesx"), ApiFamily::OpenAi);
        assert_eq!(ApiFamily::for_path("/nope"), ApiFamily::OpenAi);
        assert_eq!(Protocol::Messages.family(), ApiFamily::Anthropic);
        assert_eq!(Protocol::Responses.family(), ApiFamily::OpenAi);
    }

    #[test]
    fn default_protocols_by_kind() {
        assert_eq!(
            ProviderKind::Anthropic.default_protocols(),
            vec![Protocol::Messages]
        );
        assert!(
            !ProviderKind::Openai
                .default_protocols()
                .contains(&Protocol::Messages)
        );
    }
}
