//! The neutral model every protocol is read into and written from.
//!
//! Six ordered protocol pairs would need six translators per direction;
//! reading each protocol into one model and writing each protocol out of it
//! needs three readers and three writers, and a behaviour (say, how a tool
//! result with an image is handled) is decided once. The model borrows
//! from the client's body wherever it can: tool schemas and tool inputs
//! stay raw JSON and are never re-parsed.

use serde_json::value::RawValue;

use crate::wire::{Raw, Str};

/// A request in no protocol's shape.
#[derive(Debug, Default)]
pub(crate) struct Request<'a> {
    pub(crate) model: Str<'a>,
    /// Top-level instructions, in order (Messages `system`, Responses
    /// `instructions`, leading Chat system/developer messages).
    pub(crate) system: Vec<Str<'a>>,
    /// The conversation; consecutive parts of the same role share a turn.
    pub(crate) turns: Vec<Turn<'a>>,
    pub(crate) tools: Vec<Tool<'a>>,
    pub(crate) tool_choice: Option<ToolChoice<'a>>,
    pub(crate) parallel_tool_calls: Option<bool>,
    pub(crate) max_tokens: Option<u64>,
    pub(crate) temperature: Option<f64>,
    pub(crate) top_p: Option<f64>,
    /// Only Messages can express it; readers refuse it for other targets.
    pub(crate) top_k: Option<u64>,
    pub(crate) stop: Vec<Str<'a>>,
    pub(crate) user: Option<Str<'a>>,
    pub(crate) reasoning: Reasoning,
    pub(crate) format: Option<Format<'a>>,
    /// Responses `text.verbosity` / Chat `verbosity`: kept for a Responses
    /// upstream only (a style hint most Chat servers do not take).
    pub(crate) verbosity: Option<Str<'a>>,
    pub(crate) stream: bool,
    /// The client wants the usage chunk (Chat `stream_options`).
    pub(crate) include_usage: bool,
    /// Responses `custom` tools turned into function tools (their names).
    pub(crate) custom_tools: Vec<String>,
    /// Tools of Responses `namespace`s sent as top-level tools.
    pub(crate) namespaced_tools: Vec<crate::NamespacedTool>,
}

impl<'a> Request<'a> {
    /// Appends a part to the last turn when it has the same role, else
    /// opens a new turn: every writer then sees one turn per role change.
    pub(crate) fn push(&mut self, role: Role, part: Part<'a>) {
        match self.turns.last_mut() {
            Some(turn) if turn.role == role => turn.parts.push(part),
            _ => self.turns.push(Turn {
                role,
                parts: vec![part],
            }),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    /// A system or developer message inside the conversation.
    System,
    User,
    Assistant,
}

#[derive(Debug)]
pub(crate) struct Turn<'a> {
    pub(crate) role: Role,
    pub(crate) parts: Vec<Part<'a>>,
}

#[derive(Debug)]
pub(crate) enum Part<'a> {
    Text(Str<'a>),
    Image(Image<'a>),
    ToolCall(ToolCall<'a>),
    ToolResult(ToolResult<'a>),
    /// Visible reasoning that carries no provider-private state (signed
    /// or encrypted reasoning is dropped when it is read).
    Reasoning(Str<'a>),
}

#[derive(Debug)]
pub(crate) enum Image<'a> {
    /// An `https:` URL (a `data:` URL is read as [`Image::Base64`]).
    Url(Str<'a>),
    Base64 {
        media_type: Str<'a>,
        data: Str<'a>,
    },
}

impl<'a> Image<'a> {
    /// Reads a Chat/Responses image URL: `data:<type>;base64,<data>`
    /// becomes [`Image::Base64`], anything else stays a URL.
    pub(crate) fn from_url(url: Str<'a>) -> Image<'a> {
        let parsed = url.strip_prefix("data:").and_then(|rest| {
            let (meta, data) = rest.split_once(',')?;
            let media_type = meta.strip_suffix(";base64")?;
            Some((media_type.len(), data.len()))
        });
        match (parsed, url.0) {
            (Some((type_len, data_len)), std::borrow::Cow::Borrowed(s)) => {
                let media_type = &s[5..5 + type_len];
                let data = &s[s.len() - data_len..];
                Image::Base64 {
                    media_type: Str::borrowed(media_type),
                    data: Str::borrowed(data),
                }
            }
            (Some((type_len, data_len)), std::borrow::Cow::Owned(s)) => Image::Base64 {
                media_type: Str::owned(s[5..5 + type_len].to_owned()),
                data: Str::owned(s[s.len() - data_len..].to_owned()),
            },
            (None, url) => Image::Url(Str(url)),
        }
    }

    /// The image as a Chat/Responses URL (a `data:` URL for base64).
    pub(crate) fn to_url(&self) -> std::borrow::Cow<'_, str> {
        match self {
            Image::Url(url) => std::borrow::Cow::Borrowed(&**url),
            Image::Base64 { media_type, data } => {
                std::borrow::Cow::Owned(format!("data:{};base64,{}", &**media_type, &**data))
            }
        }
    }
}

#[derive(Debug)]
pub(crate) struct ToolCall<'a> {
    pub(crate) id: Str<'a>,
    pub(crate) name: Str<'a>,
    pub(crate) arguments: Args<'a>,
}

/// Tool-call arguments as each protocol carries them.
#[derive(Debug)]
pub(crate) enum Args<'a> {
    /// A JSON object (Messages `input`).
    Json(&'a RawValue),
    /// JSON text inside a string (Chat `arguments`, Responses `arguments`).
    Text(Str<'a>),
}

#[derive(Debug)]
pub(crate) struct ToolResult<'a> {
    pub(crate) call_id: Str<'a>,
    pub(crate) content: Vec<ResultPart<'a>>,
    pub(crate) is_error: bool,
}

#[derive(Debug)]
pub(crate) enum ResultPart<'a> {
    Text(Str<'a>),
    Image(Image<'a>),
}

#[derive(Debug)]
pub(crate) struct Tool<'a> {
    pub(crate) name: Str<'a>,
    pub(crate) description: Option<Str<'a>>,
    /// The JSON Schema of the arguments, raw.
    pub(crate) parameters: Option<Raw<'a>>,
    pub(crate) strict: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ToolChoice<'a> {
    None,
    Auto,
    /// Chat/Responses `required`, Messages `any`.
    Required,
    Tool(Str<'a>),
}

/// What the client asked of reasoning.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Reasoning {
    pub(crate) effort: Option<Effort>,
    /// Messages `thinking.budget_tokens` (or OpenRouter `reasoning.max_tokens`).
    pub(crate) budget: Option<u64>,
    /// Explicitly off (`thinking.type = disabled`, effort `none`).
    pub(crate) off: bool,
    /// The client does not want reasoning text back (OpenRouter
    /// `reasoning.exclude`).
    pub(crate) hidden: bool,
    /// The client shows reasoning as its own item (Messages thinking
    /// enabled or adaptive, Responses `reasoning.summary`): a Responses
    /// upstream is asked for summaries.
    pub(crate) visible: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Effort {
    Minimal,
    Low,
    Medium,
    High,
    XHigh,
    Max,
}

impl Effort {
    /// Reads an effort word; `none` is `Ok(None)`, an unknown word `Err`.
    pub(crate) fn parse(word: &str) -> Result<Option<Effort>, ()> {
        Ok(Some(match word {
            "none" => return Ok(None),
            "minimal" => Effort::Minimal,
            "low" => Effort::Low,
            "medium" => Effort::Medium,
            "high" => Effort::High,
            "xhigh" => Effort::XHigh,
            "max" => Effort::Max,
            _ => return Err(()),
        }))
    }

    /// The OpenAI word. `max` (Anthropic's top level) becomes `high`, the
    /// highest level every OpenAI reasoning model accepts; `xhigh` stays
    /// `xhigh` because the client chose an OpenAI-only level itself.
    pub(crate) fn openai(self) -> &'static str {
        match self {
            Effort::Minimal => "minimal",
            Effort::Low => "low",
            Effort::Medium => "medium",
            Effort::High | Effort::Max => "high",
            Effort::XHigh => "xhigh",
        }
    }

    /// Thinking budget for an effort (docs/translation.md, "Reasoning").
    pub(crate) fn budget(self) -> u64 {
        match self {
            Effort::Minimal => 1_024,
            Effort::Low => 4_000,
            Effort::Medium => 10_000,
            Effort::High => 20_000,
            Effort::XHigh | Effort::Max => 31_999,
        }
    }

    /// The effort a thinking budget stands for: at most 4,000 is `low`,
    /// at most 10,000 `medium`, more is `high` (the three levels every
    /// OpenAI reasoning model accepts).
    pub(crate) fn from_budget(budget: u64) -> Effort {
        match budget {
            0..=4_000 => Effort::Low,
            4_001..=10_000 => Effort::Medium,
            _ => Effort::High,
        }
    }
}

impl Reasoning {
    /// The OpenAI effort to send, if any.
    pub(crate) fn openai_effort(&self) -> Option<Effort> {
        if self.off {
            return None;
        }
        self.effort.or(self.budget.map(Effort::from_budget))
    }
}

/// Structured output.
#[derive(Debug)]
pub(crate) enum Format<'a> {
    Text,
    JsonObject,
    JsonSchema {
        name: Option<Str<'a>>,
        description: Option<Str<'a>>,
        schema: Raw<'a>,
        strict: Option<bool>,
    },
}

/// Token usage with OpenAI's meaning: `input` is the whole prompt, cache
/// reads and cache writes included.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Usage {
    pub(crate) input: u64,
    pub(crate) cached: u64,
    pub(crate) cache_write: u64,
    pub(crate) output: u64,
    pub(crate) reasoning: Option<u64>,
}

impl Usage {
    /// Anthropic's `input_tokens`: the prompt minus cache reads and writes.
    pub(crate) fn fresh_input(&self) -> u64 {
        self.input
            .saturating_sub(self.cached)
            .saturating_sub(self.cache_write)
    }
}

/// Why the model stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Finish {
    Stop,
    StopSequence,
    Length,
    ToolCalls,
    ContentFilter,
    Refusal,
}

/// An answer in no protocol's shape.
#[derive(Debug, Default)]
pub(crate) struct Answer<'a> {
    pub(crate) id: Str<'a>,
    pub(crate) model: Str<'a>,
    /// Unix seconds, when the upstream says.
    pub(crate) created: Option<u64>,
    pub(crate) parts: Vec<OutPart<'a>>,
    pub(crate) finish: Option<Finish>,
    pub(crate) stop_sequence: Option<Str<'a>>,
    pub(crate) usage: Option<Usage>,
}

/// One piece of an answer, in order.
#[derive(Debug)]
pub(crate) enum OutPart<'a> {
    /// Visible reasoning (a signature or encrypted state is never kept).
    Reasoning(Str<'a>),
    Text(Str<'a>),
    /// The model declined (OpenAI `refusal`).
    Refusal(Str<'a>),
    ToolCall {
        id: Str<'a>,
        name: Str<'a>,
        /// JSON text.
        arguments: std::borrow::Cow<'a, str>,
    },
}

/// Reasoning given in paragraphs (a Responses reasoning item's summary
/// and content parts) as one text, the paragraphs apart by a blank line
/// (as a stream separates them); empty ones are dropped, and one is kept
/// as it is.
pub(crate) fn paragraphs<'a>(mut texts: Vec<Str<'a>>) -> Option<Str<'a>> {
    texts.retain(|t| !t.is_empty());
    match texts.len() {
        0 => None,
        1 => texts.pop(),
        _ => Some(Str::owned(
            texts.iter().map(|t| &**t).collect::<Vec<_>>().join("\n\n"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use super::*;

    fn check_image(url: &str, expected: &str) {
        let image = Image::from_url(Str::borrowed(url));
        assert_eq!(format!("{image:?}"), expected, "{url}");
        assert_eq!(image.to_url(), url);
    }

    #[test]
    fn data_urls_become_base64_and_back() {
        check_image(
            "data:image/png;base64,iVBORw0KGgo=",
            r#"Base64 { media_type: "image/png", data: "iVBORw0KGgo=" }"#,
        );
        check_image(
            "https://example.com/a.png",
            r#"Url("https://example.com/a.png")"#,
        );
        check_image(
            "data:image/png,rawbytes",
            r#"Url("data:image/png,rawbytes")"#,
        );
    }

    #[test]
    fn effort_and_budget_map_both_ways() {
        for (effort, budget, back) in [
            (Effort::Minimal, 1_024, Effort::Low),
            (Effort::Low, 4_000, Effort::Low),
            (Effort::Medium, 10_000, Effort::Medium),
            (Effort::High, 20_000, Effort::High),
            (Effort::XHigh, 31_999, Effort::High),
            (Effort::Max, 31_999, Effort::High),
        ] {
            assert_eq!(effort.budget(), budget, "{effort:?}");
            assert_eq!(Effort::from_budget(budget), back, "{effort:?}");
        }
    }

    #[test]
    fn paragraphs_join_with_a_blank_line() {
        let texts = |list: &[&'static str]| list.iter().map(|t| Str::borrowed(t)).collect();
        assert_eq!(paragraphs(texts(&[])), None);
        assert_eq!(paragraphs(texts(&["", ""])), None);
        let one = paragraphs(texts(&["", "one", ""]));
        assert!(matches!(one, Some(Str(Cow::Borrowed("one")))), "{one:?}");
        assert_eq!(
            paragraphs(texts(&["a", "", "b", "c"])).as_deref(),
            Some("a\n\nb\n\nc")
        );
    }

    #[test]
    fn fresh_input_never_underflows() {
        let usage = Usage {
            input: 10,
            cached: 8,
            cache_write: 5,
            ..Usage::default()
        };
        assert_eq!(usage.fresh_input(), 0);
    }
}
