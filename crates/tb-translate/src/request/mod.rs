//! Request translation: the client's body is read into the neutral
//! [`Request`](crate::ir::Request) by the client protocol's reader, which
//! refuses what the upstream protocol cannot express, then written by the
//! upstream protocol's writer.

mod chat;
mod messages;
mod namespace;
mod openai;
mod responses;

use serde::Deserialize;
use tb_domain::Protocol;

use crate::wire::{Extra, Str};
use crate::{AnswerContext, Refusal, Route, TranslatedRequest};

/// `max_tokens` sent to a Messages upstream when the client set no limit
/// (Messages requires one): 32,000, the largest output every current
/// Claude model accepts and Claude Code's own default.
pub const DEFAULT_MAX_TOKENS: u64 = 32_000;

/// Choices the proxy may make per upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestOptions {
    /// `max_tokens` for a Messages upstream when the client set none.
    pub default_max_tokens: u64,
    /// Write a Chat upstream's limit as `max_completion_tokens` instead of
    /// `max_tokens` (OpenAI's reasoning models refuse `max_tokens`; most
    /// other Chat servers know only `max_tokens`, the default).
    pub max_completion_tokens: bool,
}

impl Default for RequestOptions {
    fn default() -> Self {
        RequestOptions {
            default_max_tokens: DEFAULT_MAX_TOKENS,
            max_completion_tokens: false,
        }
    }
}

/// Translates a client body into the upstream's protocol, or refuses it
/// naming the field the upstream cannot express.
pub fn translate_request(route: &Route<'_>, body: &[u8]) -> Result<TranslatedRequest, Refusal> {
    translate_request_with(route, body, &RequestOptions::default())
}

/// [`translate_request`] with per-upstream [`RequestOptions`].
pub fn translate_request_with(
    route: &Route<'_>,
    body: &[u8],
    options: &RequestOptions,
) -> Result<TranslatedRequest, Refusal> {
    let ctx = Ctx {
        target: route.upstream,
        upstream: route.upstream_name,
        default_max_tokens: options.default_max_tokens,
        max_completion_tokens: options.max_completion_tokens,
    };
    if route.is_native() {
        return pass_through(&ctx, body);
    }
    let request = match route.client {
        Protocol::ChatCompletions => chat::read(&ctx, body)?,
        Protocol::Responses => responses::read(&ctx, body)?,
        Protocol::Messages => messages::read(&ctx, body)?,
        Protocol::ImagesGenerations
        | Protocol::ImagesEdits
        | Protocol::Embeddings
        | Protocol::Videos => {
            return Err(ctx.not_text("endpoint"));
        }
    };
    let (body, json_tool) = match route.upstream {
        Protocol::ChatCompletions => (chat::write(&ctx, &request)?, None),
        Protocol::Responses => (responses::write(&ctx, &request)?, None),
        Protocol::Messages => messages::write(&ctx, &request)?,
        Protocol::ImagesGenerations
        | Protocol::ImagesEdits
        | Protocol::Embeddings
        | Protocol::Videos => {
            return Err(ctx.not_text("model"));
        }
    };
    Ok(TranslatedRequest {
        body,
        stream: request.stream,
        model: request.model.to_string(),
        context: AnswerContext {
            include_usage: request.include_usage,
            custom_tools: request.custom_tools,
            namespaced_tools: request.namespaced_tools,
            json_tool,
            hide_reasoning: request.reasoning.hidden,
            ..AnswerContext::default()
        },
    })
}

/// Same protocol on both sides: the body goes as it is; only `model` and
/// `stream` are read.
fn pass_through(ctx: &Ctx<'_>, body: &[u8]) -> Result<TranslatedRequest, Refusal> {
    #[derive(Deserialize)]
    struct Head<'a> {
        #[serde(borrow)]
        model: Option<Str<'a>>,
        stream: Option<bool>,
    }
    let head: Head<'_> = serde_json::from_slice(body).map_err(|e| ctx.malformed(&e))?;
    Ok(TranslatedRequest {
        body: body.to_vec(),
        stream: head.stream.unwrap_or(false),
        model: head.model.map(|m| m.to_string()).unwrap_or_default(),
        context: AnswerContext::default(),
    })
}

/// What a reader or writer needs to know about the route.
pub(crate) struct Ctx<'r> {
    pub(crate) target: Protocol,
    pub(crate) upstream: &'r str,
    pub(crate) default_max_tokens: u64,
    pub(crate) max_completion_tokens: bool,
}

impl Ctx<'_> {
    pub(crate) fn refuse(&self, field: impl Into<String>, reason: impl Into<String>) -> Refusal {
        Refusal {
            field: field.into(),
            reason: reason.into(),
            upstream: self.upstream.to_owned(),
        }
    }

    /// The body does not match the client protocol's types.
    pub(crate) fn malformed(&self, err: &serde_json::Error) -> Refusal {
        self.refuse("body", format!("not a valid request: {err}"))
    }

    fn not_text(&self, field: &str) -> Refusal {
        self.refuse(
            field,
            "only chat_completions, responses and messages are translated",
        )
    }

    /// The target's protocol name, for reasons.
    pub(crate) fn target_name(&self) -> &'static str {
        self.target.as_str()
    }

    /// Refuses the first meaningful unknown member of an object unless it
    /// is on the advisory list (dropped on purpose, docs/translation.md).
    pub(crate) fn check_extra(
        &self,
        extra: &Extra<'_>,
        path: &str,
        advisory: &[&str],
    ) -> Result<(), Refusal> {
        for (key, _) in extra.meaningful() {
            if !advisory.contains(&key) {
                return Err(self.refuse(
                    join(path, key),
                    format!(
                        "not a field tokenbuddy translates to {}; it has no equivalent there",
                        self.target_name()
                    ),
                ));
            }
        }
        Ok(())
    }
}

pub(crate) use crate::ids::anthropic_id;

/// `path.key`, or `key` at the top level.
pub(crate) fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

/// Reads an effort word, refusing unknown ones.
pub(crate) fn effort(
    ctx: &Ctx<'_>,
    field: &str,
    word: &str,
    reasoning: &mut crate::ir::Reasoning,
) -> Result<(), Refusal> {
    match crate::ir::Effort::parse(word) {
        Ok(Some(effort)) => reasoning.effort = Some(effort),
        Ok(None) => reasoning.off = true,
        Err(()) => {
            return Err(ctx.refuse(field, format!("unknown reasoning effort `{word}`")));
        }
    }
    Ok(())
}

/// Reads an OpenAI output format's `type` (Chat's `response_format`,
/// Responses' `text.format`, both at `field`): `text` (the default),
/// `json_object`, or `json_schema`, whose members each protocol places
/// differently (`schema` reads them).
pub(crate) fn openai_format<'a>(
    ctx: &Ctx<'_>,
    field: &str,
    kind: Option<&str>,
    schema: impl FnOnce() -> Result<crate::ir::Format<'a>, Refusal>,
) -> Result<crate::ir::Format<'a>, Refusal> {
    match kind {
        Some("text") | None => Ok(crate::ir::Format::Text),
        Some("json_object") => Ok(crate::ir::Format::JsonObject),
        Some("json_schema") => schema(),
        Some(other) => Err(ctx.refuse(join(field, "type"), format!("unknown format `{other}`"))),
    }
}

/// A JSON-schema output format whose members stand at `field`; the
/// schema itself is required.
pub(crate) fn schema_format<'a>(
    ctx: &Ctx<'_>,
    field: &str,
    schema: Option<&'a serde_json::value::RawValue>,
    name: Option<Str<'a>>,
    description: Option<Str<'a>>,
    strict: Option<bool>,
) -> Result<crate::ir::Format<'a>, Refusal> {
    match schema {
        Some(schema) => Ok(crate::ir::Format::JsonSchema {
            name,
            description,
            schema: std::borrow::Cow::Borrowed(schema),
            strict,
        }),
        None => Err(ctx.refuse(join(field, "schema"), "missing")),
    }
}

/// Text of an error tool result on a target without `is_error`.
pub(crate) const ERROR_PREFIX: &str = "Error: ";

/// Serialises a writer's output; serde_json cannot fail on these types
/// except on non-finite floats, which are refused instead of panicking.
pub(crate) fn to_body<T: serde::Serialize>(ctx: &Ctx<'_>, value: &T) -> Result<Vec<u8>, Refusal> {
    serde_json::to_vec(value).map_err(|e| ctx.refuse("body", format!("cannot be written: {e}")))
}

#[cfg(test)]
mod tests;
