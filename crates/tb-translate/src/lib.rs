//! Translation between the three text protocols tokenbuddy serves:
//! OpenAI Chat Completions (`chat_completions`), OpenAI Responses
//! (`responses`) and Anthropic Messages (`messages`), in all six
//! directions.
//!
//! Why it exists: a model is often reachable only over a protocol the
//! client does not speak (Claude Code speaks Messages, Codex speaks
//! Responses, opencode and Hermes speak Chat Completions, while a cheap
//! provider may serve only one of them). The proxy sends a native route
//! first and, when it runs out of those, a translated one: the client's
//! body is translated into the upstream's protocol just before the attempt
//! ([`translate_request`]), and the upstream's answer — a whole JSON body
//! ([`translate_answer`]), an SSE stream ([`StreamTranslator`]) or an error
//! ([`translate_error`]) — is translated back into the client's protocol.
//!
//! What it guarantees:
//! - **Nothing silently dropped.** A field the upstream's protocol cannot
//!   express is a [`Refusal`] naming the field, the upstream and the
//!   reason (the proxy answers 400). Only purely advisory fields (cache
//!   hints, storage flags, metadata…) are dropped, and the hosted tools a
//!   Responses client declares without forcing them (Codex declares
//!   `web_search` on every request; the model, not seeing it, does not
//!   call it); `docs/translation.md` lists each one and why.
//! - **Tool names the client can route.** Tools inside a Responses
//!   `namespace` go upstream under a flat, valid name
//!   ([`NamespacedTool`]), and their calls come back with the tool's own
//!   `name` and its `namespace`.
//! - **Provider-private state never leaves its provider.** Anthropic
//!   thinking signatures, `redacted_thinking` and Responses
//!   `encrypted_content` are dropped from a translated request (visible
//!   reasoning text is kept only where the target accepts it), so a
//!   foreign upstream never sees a signature it cannot verify.
//! - **Usage keeps its meaning.** Anthropic's `input_tokens` excludes cache
//!   reads and writes, OpenAI's includes them; each client sees its own
//!   protocol's meaning.
//! - **Streams stay streams.** [`StreamTranslator`] reads the upstream's
//!   SSE with `tb-sse` over any chunking and writes the client's event
//!   sequence as it goes, keeping per open block or tool call only what the
//!   client protocol's events must repeat.
//! - **Pure.** No I/O, no clock, no async, no panics on any input.
//!
//! ```
//! use tb_domain::Protocol;
//! use tb_translate::{Route, StreamTranslator, translate_request};
//!
//! let route = Route {
//!     client: Protocol::Messages,
//!     upstream: Protocol::ChatCompletions,
//!     upstream_name: "deepseek",
//! };
//! let body = br#"{"model":"deepseek-chat","max_tokens":512,"stream":true,
//!     "system":"Be brief.","messages":[{"role":"user","content":"Hi"}]}"#;
//! let upstream = translate_request(&route, body).unwrap();
//! assert_eq!(
//!     String::from_utf8(upstream.body).unwrap(),
//!     r#"{"model":"deepseek-chat","messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"Hi"}],"max_tokens":512,"stream":true,"stream_options":{"include_usage":true}}"#
//! );
//!
//! // The upstream's chat stream, in whatever chunks the network delivers…
//! let mut stream = StreamTranslator::with_context(&route, &upstream.model, &upstream.context);
//! let mut out = Vec::new();
//! stream.push(b"data: {\"id\":\"c1\",\"model\":\"deepseek-chat\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hel", &mut out);
//! stream.push(b"lo\"}}]}\n\ndata: {\"id\":\"c1\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\ndata: [DONE]\n\n", &mut out);
//! stream.finish(&mut out);
//! // …becomes the Messages event sequence Claude Code expects.
//! let text = String::from_utf8(out).unwrap();
//! assert!(text.starts_with("event: message_start\n"));
//! assert!(text.contains(r#""delta":{"type":"text_delta","text":"Hello"}"#));
//! assert!(text.ends_with("event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n"));
//! ```

#![forbid(unsafe_code)]

mod answer;
mod error_body;
mod ids;
mod ir;
mod request;
mod shape;
mod stream;
mod usage;
mod wire;

use tb_domain::Protocol;

pub use answer::{AnswerError, translate_answer, translate_answer_with};
pub use error_body::translate_error;
pub use ids::is_minted_item_id;
pub use request::{DEFAULT_MAX_TOKENS, RequestOptions, translate_request, translate_request_with};
pub use stream::StreamTranslator;

/// Which protocol the client speaks and which the upstream serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route<'a> {
    /// The client's protocol (the endpoint it called).
    pub client: Protocol,
    /// The upstream's protocol for this attempt.
    pub upstream: Protocol,
    /// The upstream's name, for refusal messages.
    pub upstream_name: &'a str,
}

impl Route<'_> {
    /// Both sides speak the same protocol: everything passes through.
    pub fn is_native(&self) -> bool {
        self.client == self.upstream
    }
}

/// The route the unit tests translate over (upstream `up`).
#[cfg(test)]
pub(crate) fn test_route(client: Protocol, upstream: Protocol) -> Route<'static> {
    Route {
        client,
        upstream,
        upstream_name: "up",
    }
}

/// What a request declaring an MCP server's `namespace` `mcp__x` (a
/// function `js` and a custom `patch`) tells the answer's translation.
#[cfg(test)]
pub(crate) fn test_namespaced_tools() -> Vec<NamespacedTool> {
    vec![
        NamespacedTool {
            flat: "mcp__x__js".to_owned(),
            namespace: "mcp__x".to_owned(),
            name: "js".to_owned(),
            custom: false,
        },
        NamespacedTool {
            flat: "mcp__x__patch".to_owned(),
            namespace: "mcp__x".to_owned(),
            name: "patch".to_owned(),
            custom: true,
        },
    ]
}

/// A client request field the upstream's protocol cannot express (the
/// proxy answers 400 with this message).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field} cannot be sent to upstream {upstream}: {reason}")]
pub struct Refusal {
    /// The field, as a path in the client's body (`tools[2].type`).
    pub field: String,
    /// Why the upstream's protocol cannot express it.
    pub reason: String,
    /// The upstream's name.
    pub upstream: String,
}

/// A client body translated for the upstream.
#[derive(Debug, Clone, PartialEq)]
pub struct TranslatedRequest {
    /// The upstream body (JSON).
    pub body: Vec<u8>,
    /// The client asked for a stream.
    pub stream: bool,
    /// The model named in the body.
    pub model: String,
    /// What the answer translation needs to know about the request.
    pub context: AnswerContext,
}

/// What translating the answer needs to know about the request it
/// answers: hand it to [`translate_answer_with`] and
/// [`StreamTranslator::with_context`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnswerContext {
    /// A Chat client asked for the usage chunk (`stream_options.include_usage`).
    pub include_usage: bool,
    /// Responses `custom` tools sent upstream as function tools: their
    /// calls go back to the client as `custom_tool_call` items.
    pub custom_tools: Vec<String>,
    /// Tools of Responses `namespace`s sent upstream as top-level tools
    /// under a flat name: their calls go back to the client with the
    /// tool's own `name` and its `namespace`.
    pub namespaced_tools: Vec<NamespacedTool>,
    /// Structured output sent to a Messages upstream as a forced tool: its
    /// call goes back to the client as the answer's text.
    pub json_tool: Option<String>,
    /// The client asked not to get reasoning text back.
    pub hide_reasoning: bool,
    /// Unix seconds for Chat `created` and Responses `created_at` when the
    /// upstream does not say (the crate has no clock; 0 when unset).
    pub created: u64,
}

impl Default for AnswerContext {
    fn default() -> Self {
        AnswerContext {
            include_usage: true,
            custom_tools: Vec::new(),
            namespaced_tools: Vec::new(),
            json_tool: None,
            hide_reasoning: false,
            created: 0,
        }
    }
}

/// A tool declared inside a Responses `namespace` (Codex groups each MCP
/// server's tools, and some of its own, that way), sent to a Chat or
/// Messages upstream as a top-level tool named [`flat`](Self::flat).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamespacedTool {
    /// The name the upstream knows the tool by: `<namespace>__<name>`, or a
    /// shortened name when that is not a valid tool name there.
    pub flat: String,
    /// The namespace's `name`.
    pub namespace: String,
    /// The tool's own `name` inside the namespace.
    pub name: String,
    /// A `custom` tool: its calls go back as `custom_tool_call` items.
    pub custom: bool,
}

/// How a tool call named by the upstream goes back to a Responses client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CallName<'c> {
    pub(crate) name: &'c str,
    pub(crate) namespace: Option<&'c str>,
    pub(crate) custom: bool,
}

impl AnswerContext {
    /// The client's name, namespace and kind for a call of the upstream
    /// tool `upstream_name`.
    pub(crate) fn call_name<'c>(&'c self, upstream_name: &'c str) -> CallName<'c> {
        CallName::of(&self.custom_tools, &self.namespaced_tools, upstream_name)
    }
}

impl<'c> CallName<'c> {
    /// The client's name for a call of the upstream tool `upstream_name`,
    /// given the request's custom and namespaced tools.
    pub(crate) fn of(
        custom_tools: &'c [String],
        namespaced_tools: &'c [NamespacedTool],
        upstream_name: &'c str,
    ) -> CallName<'c> {
        match namespaced_tools.iter().find(|t| t.flat == upstream_name) {
            Some(tool) => CallName {
                name: &tool.name,
                namespace: Some(&tool.namespace),
                custom: tool.custom,
            },
            None => CallName {
                name: upstream_name,
                namespace: None,
                custom: custom_tools.iter().any(|c| c == upstream_name),
            },
        }
    }
}
