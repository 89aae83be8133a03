//! Local input-token estimates for `POST /v1/messages/count_tokens`.
//!
//! Claude Code asks the gateway how many tokens its next request will take
//! and compacts the conversation when the answer nears the context window.
//! When the model is served by an upstream that speaks Messages, the proxy
//! forwards the question; when it is served only over chat completions or
//! Responses, nobody upstream can answer, and answering 404 (or too few
//! tokens) means the agent never compacts and the conversation eventually
//! fails with a context overflow. So the daemon counts locally.
//!
//! Anthropic's tokenizer is not public. The estimate tokenizes every piece
//! of text the request carries — system prompt, messages, tool calls and
//! results, thinking, tool definitions — with OpenAI's `o200k_base` (a real
//! BPE, through `tiktoken-rs`), adds a small per-message and per-tool
//! framing cost, counts each image at a fixed 1,600 tokens (Anthropic's
//! figure for a ~1.15 megapixel image, the largest it keeps unscaled) and
//! then rounds **up** by 10 %: an over-count makes the agent compact a
//! little early, an under-count makes it overflow. [`METHOD`] says all of
//! this in one line, for the response header.
//!
//! Pure apart from the tokenizer's one-time load (~0.5 s, so call
//! [`warm_up`] off the request path at start-up); counting a 200 KB request
//! takes tens of milliseconds, so callers run it on a blocking thread.
//!
//! ```
//! let body = br#"{"model":"claude-sonnet-4-5","messages":[{"role":"user","content":"Hello, Claude"}]}"#;
//! let estimate = tb_tokens::count_messages_request(body).unwrap();
//! assert!(estimate.input_tokens >= 4);
//! ```

#![forbid(unsafe_code)]

mod request;

use tiktoken_rs::CoreBPE;

pub use request::count_messages_request;

/// How the estimate is made, for the `x-tokenbuddy-token-count` header.
pub const METHOD: &str = "estimate; tokenizer=o200k_base; images=1600; rounded up 10%";

/// Tokens one image counts for.
pub const IMAGE_TOKENS: u64 = 1_600;

/// A local count of a request's input tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Estimate {
    /// What Anthropic's `count_tokens` calls `input_tokens`.
    pub input_tokens: u64,
}

/// Why a body could not be counted.
#[derive(Debug, thiserror::Error)]
pub enum CountError {
    /// Not a Messages request body.
    #[error("not a Messages count_tokens body: {0}; send {{\"model\": …, \"messages\": [...]}}")]
    Body(#[from] serde_json::Error),
}

/// Loads the tokenizer's vocabulary now instead of on the first count.
pub fn warm_up() {
    let _ = bpe();
}

fn bpe() -> &'static CoreBPE {
    tiktoken_rs::o200k_base_singleton()
}

/// Tokens in one piece of text.
pub(crate) fn text_tokens(text: &str) -> u64 {
    if text.is_empty() {
        return 0;
    }
    bpe().encode_ordinary(text).len() as u64
}

/// Tokens a chat completions prompt of `messages` (their text contents)
/// takes, as OpenAI documents its framing: 3 tokens per message plus 3
/// that prime the reply, on top of the text's `o200k_base` tokens. No
/// padding: `tokenbuddyd probe` compares an upstream's reported prompt
/// tokens with this, so an honest OpenAI-tokenizer provider matches it
/// closely and an over-count (or a hidden system prompt) stands out.
///
/// ```
/// let n = tb_tokens::chat_prompt_tokens(&["Say hello."]);
/// assert!((7..12).contains(&n)); // a few text tokens + 6 of framing
/// ```
pub fn chat_prompt_tokens(messages: &[&str]) -> u64 {
    let framing = 3 * messages.len() as u64 + 3;
    messages.iter().map(|m| text_tokens(m)).sum::<u64>() + framing
}

/// The reported figure: the raw count rounded up by 10 %.
pub(crate) fn padded(raw: u64) -> u64 {
    raw.saturating_mul(11).div_ceil(10)
}
