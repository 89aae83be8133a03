//! Usage and finish reasons: read from any protocol, written with the
//! client protocol's meaning.
//!
//! OpenAI counts the whole prompt in `prompt_tokens` / `input_tokens`
//! (cache reads included); Anthropic's `input_tokens` is only the part that
//! was neither read from nor written to the cache. The neutral
//! [`Usage`](crate::ir::Usage) holds OpenAI's meaning plus the cache split,
//! so both directions are exact.

use serde::{Deserialize as DeriveDeserialize, Serialize};
use tb_domain::Protocol;

use crate::ir::{Finish, Usage};

/// A token count: a non-negative integer, anything else reads as absent
/// (billing.md: counts that are not non-negative integers are ignored).
pub(crate) use tb_domain::TokenCount as Count;

/// A usage object of any of the three protocols (their field names do not
/// clash), plus the aliases billing.md accepts.
#[derive(Debug, Default, DeriveDeserialize)]
#[serde(default)]
pub(crate) struct WireUsage {
    prompt_tokens: Count,
    completion_tokens: Count,
    input_tokens: Count,
    output_tokens: Count,
    cache_read_input_tokens: Count,
    cache_creation_input_tokens: Count,
    /// DeepSeek's name for cache reads.
    prompt_cache_hit_tokens: Count,
    prompt_tokens_details: Option<Details>,
    input_tokens_details: Option<Details>,
    completion_tokens_details: Option<Details>,
    output_tokens_details: Option<Details>,
}

#[derive(Debug, Default, DeriveDeserialize)]
#[serde(default)]
struct Details {
    cached_tokens: Count,
    /// OpenRouter's name for cache writes.
    cache_write_tokens: Count,
    reasoning_tokens: Count,
}

impl WireUsage {
    /// The usage with OpenAI's meaning; `None` when it reports neither
    /// input nor output.
    pub(crate) fn read(&self, protocol: Protocol) -> Option<Usage> {
        let details =
            |d: &Option<Details>, f: fn(&Details) -> Count| d.as_ref().and_then(|d| f(d).0);
        let input = self.prompt_tokens.0.or(self.input_tokens.0);
        let output = self.completion_tokens.0.or(self.output_tokens.0);
        if input.is_none() && output.is_none() {
            return None;
        }
        let cached = details(&self.prompt_tokens_details, |d| d.cached_tokens)
            .or(details(&self.input_tokens_details, |d| d.cached_tokens))
            .or(self.cache_read_input_tokens.0)
            .or(self.prompt_cache_hit_tokens.0)
            .unwrap_or(0);
        let cache_write = details(&self.prompt_tokens_details, |d| d.cache_write_tokens)
            .or(details(&self.input_tokens_details, |d| {
                d.cache_write_tokens
            }))
            .or(self.cache_creation_input_tokens.0)
            .unwrap_or(0);
        let mut input = input.unwrap_or(0);
        if protocol == Protocol::Messages {
            input = input.saturating_add(cached).saturating_add(cache_write);
        }
        Some(Usage {
            input,
            cached,
            cache_write,
            output: output.unwrap_or(0),
            reasoning: details(&self.completion_tokens_details, |d| d.reasoning_tokens)
                .or(details(&self.output_tokens_details, |d| d.reasoning_tokens)),
        })
    }
}

/// A Messages stream's counts so far: `message_start` says the input
/// side, `message_delta` the (cumulative) output and sometimes the input
/// again; each field keeps its latest value.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct MessagesCounts {
    fresh: Option<u64>,
    cache_read: Option<u64>,
    cache_write: Option<u64>,
    output: Option<u64>,
}

impl MessagesCounts {
    /// Takes the fields `u` reports. An input count of 0 after a non-zero
    /// one is ignored: some compatible servers repeat the input side as
    /// zeros in `message_delta`.
    pub(crate) fn update(&mut self, u: &WireUsage) {
        let keep = |old: Option<u64>, new: Option<u64>| match (old, new) {
            (Some(o), Some(0)) if o > 0 => Some(o),
            (old, new) => new.or(old),
        };
        self.fresh = keep(self.fresh, u.input_tokens.0.or(u.prompt_tokens.0));
        self.cache_read = keep(self.cache_read, u.cache_read_input_tokens.0);
        self.cache_write = keep(self.cache_write, u.cache_creation_input_tokens.0);
        self.output = u.output_tokens.0.or(u.completion_tokens.0).or(self.output);
    }

    /// The usage with OpenAI's meaning, once anything was reported.
    pub(crate) fn usage(&self) -> Option<Usage> {
        if self.fresh.is_none() && self.output.is_none() {
            return None;
        }
        let cached = self.cache_read.unwrap_or(0);
        let cache_write = self.cache_write.unwrap_or(0);
        Some(Usage {
            input: self
                .fresh
                .unwrap_or(0)
                .saturating_add(cached)
                .saturating_add(cache_write),
            cached,
            cache_write,
            output: self.output.unwrap_or(0),
            reasoning: None,
        })
    }
}

/// Chat Completions `usage`.
#[derive(Debug, Serialize)]
pub(crate) struct ChatUsageOut {
    prompt_tokens: u64,
    completion_tokens: u64,
    total_tokens: u64,
    prompt_tokens_details: PromptDetailsOut,
    completion_tokens_details: ReasoningDetailsOut,
}

#[derive(Debug, Serialize)]
struct PromptDetailsOut {
    cached_tokens: u64,
    /// OpenRouter's field; written only when there were cache writes.
    #[serde(skip_serializing_if = "is_zero")]
    cache_write_tokens: u64,
}

#[derive(Debug, Serialize)]
struct ReasoningDetailsOut {
    reasoning_tokens: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl From<Usage> for ChatUsageOut {
    fn from(u: Usage) -> Self {
        ChatUsageOut {
            prompt_tokens: u.input,
            completion_tokens: u.output,
            total_tokens: u.input.saturating_add(u.output),
            prompt_tokens_details: PromptDetailsOut {
                cached_tokens: u.cached,
                cache_write_tokens: u.cache_write,
            },
            completion_tokens_details: ReasoningDetailsOut {
                reasoning_tokens: u.reasoning.unwrap_or(0),
            },
        }
    }
}

/// Responses `usage` (the SDK requires both details objects).
#[derive(Debug, Serialize)]
pub(crate) struct ResponsesUsageOut {
    input_tokens: u64,
    input_tokens_details: PromptDetailsOut,
    output_tokens: u64,
    output_tokens_details: ReasoningDetailsOut,
    total_tokens: u64,
}

impl From<Usage> for ResponsesUsageOut {
    fn from(u: Usage) -> Self {
        ResponsesUsageOut {
            input_tokens: u.input,
            input_tokens_details: PromptDetailsOut {
                cached_tokens: u.cached,
                cache_write_tokens: u.cache_write,
            },
            output_tokens: u.output,
            output_tokens_details: ReasoningDetailsOut {
                reasoning_tokens: u.reasoning.unwrap_or(0),
            },
            total_tokens: u.input.saturating_add(u.output),
        }
    }
}

/// Messages `usage`: fresh input, cache writes, cache reads, output, the
/// four fields Claude Code reads.
#[derive(Debug, Serialize)]
pub(crate) struct MessagesUsageOut {
    input_tokens: u64,
    cache_creation_input_tokens: u64,
    cache_read_input_tokens: u64,
    output_tokens: u64,
}

impl From<Usage> for MessagesUsageOut {
    fn from(u: Usage) -> Self {
        MessagesUsageOut {
            input_tokens: u.fresh_input(),
            cache_creation_input_tokens: u.cache_write,
            cache_read_input_tokens: u.cached,
            output_tokens: u.output,
        }
    }
}

impl Finish {
    /// Chat `finish_reason`; unknown words read as a normal stop.
    pub(crate) fn from_chat(word: &str) -> Finish {
        match word {
            "length" => Finish::Length,
            "tool_calls" | "function_call" => Finish::ToolCalls,
            "content_filter" => Finish::ContentFilter,
            _ => Finish::Stop,
        }
    }

    /// Messages `stop_reason`; `pause_turn` (a server tool paused) and
    /// unknown words read as a normal stop.
    pub(crate) fn from_messages(word: &str) -> Finish {
        match word {
            "stop_sequence" => Finish::StopSequence,
            "max_tokens" | "model_context_window_exceeded" => Finish::Length,
            "tool_use" => Finish::ToolCalls,
            "refusal" => Finish::Refusal,
            _ => Finish::Stop,
        }
    }

    /// Responses `status` and `incomplete_details.reason`; `tool_calls`
    /// says whether the output holds a call.
    pub(crate) fn from_responses(status: &str, reason: Option<&str>, tool_calls: bool) -> Finish {
        match (status, reason) {
            ("incomplete", Some("content_filter")) => Finish::ContentFilter,
            ("incomplete", _) => Finish::Length,
            _ if tool_calls => Finish::ToolCalls,
            _ => Finish::Stop,
        }
    }

    pub(crate) fn chat(self) -> &'static str {
        match self {
            Finish::Stop | Finish::StopSequence => "stop",
            Finish::Length => "length",
            Finish::ToolCalls => "tool_calls",
            Finish::ContentFilter | Finish::Refusal => "content_filter",
        }
    }

    pub(crate) fn messages(self) -> &'static str {
        match self {
            Finish::Stop => "end_turn",
            Finish::StopSequence => "stop_sequence",
            Finish::Length => "max_tokens",
            Finish::ToolCalls => "tool_use",
            Finish::ContentFilter | Finish::Refusal => "refusal",
        }
    }

    /// Responses `status` and the `incomplete_details.reason`, if any.
    pub(crate) fn responses(self) -> (&'static str, Option<&'static str>) {
        match self {
            Finish::Stop | Finish::StopSequence | Finish::ToolCalls => ("completed", None),
            Finish::Length => ("incomplete", Some("max_output_tokens")),
            Finish::ContentFilter | Finish::Refusal => ("incomplete", Some("content_filter")),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// Reads `usage` as `protocol` and writes it in all three shapes.
    fn check(protocol: Protocol, usage: &str, expected: [&str; 3]) {
        let wire: WireUsage = serde_json::from_str(usage).unwrap();
        let u = wire.read(protocol).unwrap();
        let got = [
            serde_json::to_string(&ChatUsageOut::from(u)).unwrap(),
            serde_json::to_string(&ResponsesUsageOut::from(u)).unwrap(),
            serde_json::to_string(&MessagesUsageOut::from(u)).unwrap(),
        ];
        assert_eq!(got, expected, "{usage}");
    }

    #[test]
    fn usage_keeps_each_protocols_meaning() {
        check(
            Protocol::Messages,
            r#"{"input_tokens":10,"cache_creation_input_tokens":200,"cache_read_input_tokens":3000,"output_tokens":50}"#,
            [
                r#"{"prompt_tokens":3210,"completion_tokens":50,"total_tokens":3260,"prompt_tokens_details":{"cached_tokens":3000,"cache_write_tokens":200},"completion_tokens_details":{"reasoning_tokens":0}}"#,
                r#"{"input_tokens":3210,"input_tokens_details":{"cached_tokens":3000,"cache_write_tokens":200},"output_tokens":50,"output_tokens_details":{"reasoning_tokens":0},"total_tokens":3260}"#,
                r#"{"input_tokens":10,"cache_creation_input_tokens":200,"cache_read_input_tokens":3000,"output_tokens":50}"#,
            ],
        );
        check(
            Protocol::ChatCompletions,
            r#"{"prompt_tokens":1000,"completion_tokens":300,"total_tokens":1300,"prompt_tokens_details":{"cached_tokens":800},"completion_tokens_details":{"reasoning_tokens":120}}"#,
            [
                r#"{"prompt_tokens":1000,"completion_tokens":300,"total_tokens":1300,"prompt_tokens_details":{"cached_tokens":800},"completion_tokens_details":{"reasoning_tokens":120}}"#,
                r#"{"input_tokens":1000,"input_tokens_details":{"cached_tokens":800},"output_tokens":300,"output_tokens_details":{"reasoning_tokens":120},"total_tokens":1300}"#,
                r#"{"input_tokens":200,"cache_creation_input_tokens":0,"cache_read_input_tokens":800,"output_tokens":300}"#,
            ],
        );
        check(
            Protocol::Responses,
            r#"{"input_tokens":50,"input_tokens_details":{"cached_tokens":null},"output_tokens":7,"output_tokens_details":{"reasoning_tokens":5},"total_tokens":57}"#,
            [
                r#"{"prompt_tokens":50,"completion_tokens":7,"total_tokens":57,"prompt_tokens_details":{"cached_tokens":0},"completion_tokens_details":{"reasoning_tokens":5}}"#,
                r#"{"input_tokens":50,"input_tokens_details":{"cached_tokens":0},"output_tokens":7,"output_tokens_details":{"reasoning_tokens":5},"total_tokens":57}"#,
                r#"{"input_tokens":50,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"output_tokens":7}"#,
            ],
        );
        // DeepSeek reports cache reads as prompt_cache_hit_tokens; bad counts are ignored.
        check(
            Protocol::ChatCompletions,
            r#"{"prompt_tokens":100,"completion_tokens":-3,"prompt_cache_hit_tokens":64,"prompt_cache_miss_tokens":36}"#,
            [
                r#"{"prompt_tokens":100,"completion_tokens":0,"total_tokens":100,"prompt_tokens_details":{"cached_tokens":64},"completion_tokens_details":{"reasoning_tokens":0}}"#,
                r#"{"input_tokens":100,"input_tokens_details":{"cached_tokens":64},"output_tokens":0,"output_tokens_details":{"reasoning_tokens":0},"total_tokens":100}"#,
                r#"{"input_tokens":36,"cache_creation_input_tokens":0,"cache_read_input_tokens":64,"output_tokens":0}"#,
            ],
        );
    }

    #[test]
    fn no_counts_is_no_usage() {
        let wire: WireUsage = serde_json::from_str(r#"{"total_tokens":"x"}"#).unwrap();
        assert_eq!(wire.read(Protocol::ChatCompletions), None);
    }

    #[test]
    fn finish_reasons_map_across_protocols() {
        for (chat, messages, responses, finish) in [
            ("stop", "end_turn", ("completed", None), Finish::Stop),
            (
                "stop",
                "stop_sequence",
                ("completed", None),
                Finish::StopSequence,
            ),
            (
                "length",
                "max_tokens",
                ("incomplete", Some("max_output_tokens")),
                Finish::Length,
            ),
            (
                "tool_calls",
                "tool_use",
                ("completed", None),
                Finish::ToolCalls,
            ),
            (
                "content_filter",
                "refusal",
                ("incomplete", Some("content_filter")),
                Finish::ContentFilter,
            ),
            (
                "content_filter",
                "refusal",
                ("incomplete", Some("content_filter")),
                Finish::Refusal,
            ),
        ] {
            assert_eq!(
                (finish.chat(), finish.messages(), finish.responses()),
                (chat, messages, responses)
            );
        }
        assert_eq!(Finish::from_messages("stop_sequence"), Finish::StopSequence);
        assert_eq!(
            Finish::from_messages("model_context_window_exceeded"),
            Finish::Length
        );
        assert_eq!(Finish::from_messages("pause_turn"), Finish::Stop);
        assert_eq!(Finish::from_chat("function_call"), Finish::ToolCalls);
        assert_eq!(
            Finish::from_responses("completed", None, true),
            Finish::ToolCalls
        );
        assert_eq!(
            Finish::from_responses("incomplete", Some("max_output_tokens"), false),
            Finish::Length
        );
        assert_eq!(
            Finish::from_responses("incomplete", Some("content_filter"), false),
            Finish::ContentFilter
        );
    }
}
