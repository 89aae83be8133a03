//! Usage extraction: what a call used, read from the upstream's answer
//! (billing.md, "Usage extraction").
//!
//! The four protocols report usage in different places and with different
//! arithmetic (OpenAI's `prompt_tokens` already includes cached tokens,
//! Anthropic's `input_tokens` does not), providers rename fields
//! (`prompt_tokens`/`input_tokens`, `cached_tokens`/`cache_read_input_tokens`
//! …) and sometimes send junk (`"12"`, `-1`, `3.5`). This module turns all of
//! that into one [`Usage`], where `input_tokens` is always the total input,
//! and says whether usage was missing, whether the answer was an empty
//! completion (routing fails over on it) and whether the upstream reported
//! its own cost.
//!
//! - [`from_json`] reads a whole (non-streamed) answer.
//! - [`UsageTap`] watches a stream's events as they are forwarded and keeps
//!   only the few numbers it needs, never the stream; it also classifies
//!   each event ([`EventClass`]) so the proxy knows when the first content
//!   event went by.
//! - [`is_usage_only_chunk`] recognises the Chat Completions chunk the
//!   daemon removes when it asked for `include_usage` itself.
//!
//! Junk never fails anything: a count that is not a non-negative integer is
//! ignored (the next alias is tried), an unparsable body gives
//! `usage_missing`.
//!
//! ```
//! use tb_billing::usage::{self, RequestFacts, UsageTap};
//! use tb_domain::Protocol;
//!
//! let body = br#"{"content":[{"type":"text","text":"hi"}],
//!     "usage":{"input_tokens":10,"cache_read_input_tokens":90,"output_tokens":5}}"#;
//! let report = usage::from_json(Protocol::Messages, body, &RequestFacts::default());
//! let used = report.usage.unwrap();
//! assert_eq!(used.input_tokens, Some(100)); // 10 fresh + 90 cache reads
//! assert_eq!(used.cached_input_tokens, Some(90));
//! assert!(!report.usage_missing && !report.empty_completion);
//!
//! let mut tap = UsageTap::new(Protocol::ChatCompletions, &RequestFacts::default());
//! tap.on_event(None, r#"{"choices":[{"delta":{"content":"Hi"}}]}"#);
//! tap.on_event(None, r#"{"choices":[],"usage":{"prompt_tokens":7,"completion_tokens":1,"cost":0.0000425}}"#);
//! tap.on_event(None, "[DONE]");
//! let report = tap.finish();
//! assert_eq!(report.usage.unwrap().output_tokens, Some(1));
//! assert_eq!(report.reported_cost_usd_micros, Some(43)); // 42.5 micros, rounded half up
//! assert!(report.saw_content && tap.saw_done());
//! ```

mod fields;
mod json;
mod tap;
pub(crate) mod wire;

#[cfg(test)]
mod tests;

use tb_domain::Protocol;
use tb_prices::ServiceTier;

pub use json::from_json;
pub use tap::{EventClass, UsageTap, is_usage_only_chunk};

/// What a call used. `None` means "not reported", never zero.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Usage {
    /// Total input tokens: fresh + cache reads + cache writes.
    pub input_tokens: Option<u64>,
    /// Input tokens read from the provider's prompt cache.
    pub cached_input_tokens: Option<u64>,
    /// Input tokens written to the provider's prompt cache.
    pub cache_write_tokens: Option<u64>,
    /// Of `cache_write_tokens`, those written for 1 hour (Anthropic's
    /// `usage.cache_creation.ephemeral_1h_input_tokens`).
    pub cache_write_1h_tokens: Option<u64>,
    /// The service tier the answer says it was served at (OpenAI's
    /// `service_tier`, Anthropic's `usage.service_tier`); `None` when not
    /// reported (billed standard).
    pub service_tier: Option<ServiceTier>,
    /// Output tokens (reasoning included).
    pub output_tokens: Option<u64>,
    /// Reasoning tokens, when reported.
    pub reasoning_tokens: Option<u64>,
    /// Image fields, for `images_generations` only.
    pub image: Option<ImageUsage>,
}

/// What an image generation produced.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageUsage {
    /// Images generated: `len(data)`, else the request's `n` (JSON); the
    /// number of completed images (stream).
    pub count: Option<u32>,
    /// Size, e.g. `1024x1024`.
    pub size: Option<String>,
    /// Quality, e.g. `low`, `high`.
    pub quality: Option<String>,
    /// Output format, e.g. `png`.
    pub output_format: Option<String>,
    /// `usage.input_tokens_details.text_tokens`, when reported.
    pub input_text_tokens: Option<u64>,
    /// `usage.input_tokens_details.image_tokens`, when reported.
    pub input_image_tokens: Option<u64>,
    /// `usage.output_tokens_details.image_tokens`, when reported (else all
    /// of `output_tokens` are image tokens).
    pub output_image_tokens: Option<u64>,
    /// `usage.output_tokens_details.text_tokens`, when reported.
    pub output_text_tokens: Option<u64>,
}

/// The outcome of usage extraction for one answer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UsageReport {
    /// What was used; `None` when the answer carried no usage at all.
    pub usage: Option<Usage>,
    /// No usage on a successful answer: the cost is unknown, not zero.
    pub usage_missing: bool,
    /// Input > 0, output = 0 (or not reported) and no content.
    pub empty_completion: bool,
    /// The answer carried content (text, reasoning, tool calls, images).
    pub saw_content: bool,
    /// The cost the upstream reported itself (OpenRouter `usage.cost`, else
    /// `usage.cost_details.upstream_inference_cost`), in USD micros.
    pub reported_cost_usd_micros: Option<u64>,
}

impl UsageReport {
    fn new(usage: Option<Usage>, saw_content: bool, cost: Option<u64>) -> UsageReport {
        let empty_completion = usage.as_ref().is_some_and(|u| {
            u.input_tokens.is_some_and(|i| i > 0) && u.output_tokens.unwrap_or(0) == 0
        }) && !saw_content;
        UsageReport {
            usage_missing: usage.is_none(),
            usage,
            empty_completion,
            saw_content,
            reported_cost_usd_micros: cost,
        }
    }
}

/// What the client's request said that usage extraction may fall back on
/// (today: the image fields).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestFacts {
    /// Images requested (`n`).
    pub n: Option<u32>,
    /// Requested image size.
    pub size: Option<String>,
    /// Requested image quality.
    pub quality: Option<String>,
    /// Requested image output format.
    pub output_format: Option<String>,
}

impl RequestFacts {
    /// Reads the facts from a request body. Only `images_generations`
    /// requests carry any; anything unreadable is simply absent.
    pub fn from_request_json(protocol: Protocol, body: &[u8]) -> RequestFacts {
        if !protocol.is_images() {
            return RequestFacts::default();
        }
        let env = wire::Envelope::of(body);
        RequestFacts {
            n: wire::raw_value(env.n)
                .as_u64()
                .and_then(|n| u32::try_from(n).ok()),
            size: wire::display_str(env.size),
            quality: wire::display_str(env.quality),
            output_format: wire::display_str(env.output_format),
        }
    }
}

/// Builds the [`Usage`] from counts and image facts; `None` when nothing at
/// all is known.
fn build_usage(
    protocol: Protocol,
    counts: &wire::Counts,
    image: Option<ImageUsage>,
) -> Option<Usage> {
    let image = image.map(|mut image| {
        image.input_text_tokens = counts.input_text;
        image.input_image_tokens = counts.input_image;
        image.output_image_tokens = counts.output_image;
        image.output_text_tokens = counts.output_text;
        image
    });
    let image_known = image.as_ref().is_some_and(|i| i.count.is_some());
    if counts.is_empty() && !image_known {
        return None;
    }
    Some(Usage {
        input_tokens: counts.total_input(protocol),
        cached_input_tokens: counts.cache_read,
        cache_write_tokens: counts.cache_write,
        cache_write_1h_tokens: counts.cache_write_1h,
        service_tier: counts.service_tier,
        output_tokens: counts.output,
        reasoning_tokens: counts.reasoning,
        image,
    })
}
