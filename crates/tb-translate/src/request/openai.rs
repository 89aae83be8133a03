//! What the two OpenAI writers (Chat Completions and Responses) write
//! alike: a function tool's definition, the tool-choice words, the
//! output formats, and content that is a string or an array of parts. Where each protocol places them differs (Chat nests a
//! tool under `function` and a schema under `json_schema`, Responses
//! writes their members beside `type`), so each writer wraps these in its
//! own shape.

use std::borrow::Cow;

use serde::Serialize;
use serde_json::value::RawValue;

use crate::ir::{Format, Tool, ToolChoice};

/// Chat message `content` and Responses tool `output`: a string, or an
/// array of parts in the protocol's shape `P`.
#[derive(Serialize)]
#[serde(untagged)]
pub(super) enum TextOr<'r, P> {
    Text(Cow<'r, str>),
    Parts(Vec<P>),
}

/// A function tool's definition.
#[derive(Serialize)]
pub(super) struct FunctionOut<'r> {
    name: &'r str,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<&'r str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    parameters: Option<&'r RawValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    strict: Option<bool>,
}

impl<'r> FunctionOut<'r> {
    pub(super) fn of(tool: &'r Tool<'r>) -> Self {
        FunctionOut {
            name: &tool.name,
            description: tool.description.as_deref(),
            parameters: tool.parameters.as_deref(),
            strict: tool.strict,
        }
    }
}

/// `tool_choice`: a word, or the tool the model must call in the shape
/// `T` the protocol gives it.
#[derive(Serialize)]
#[serde(untagged)]
pub(super) enum ToolChoiceOut<T> {
    Word(&'static str),
    Tool(T),
}

pub(super) fn tool_choice_out<'r, T>(
    choice: &'r ToolChoice<'r>,
    forced: impl FnOnce(&'r str) -> T,
) -> ToolChoiceOut<T> {
    match choice {
        ToolChoice::None => ToolChoiceOut::Word("none"),
        ToolChoice::Auto => ToolChoiceOut::Word("auto"),
        ToolChoice::Required => ToolChoiceOut::Word("required"),
        ToolChoice::Tool(name) => ToolChoiceOut::Tool(forced(name)),
    }
}

/// An output format; `S` places the JSON schema's members.
#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(super) enum FormatOut<S> {
    Text,
    JsonObject,
    JsonSchema(S),
}

/// A JSON-schema output format's members; OpenAI requires a `name`
/// (`response` when the client gave none).
#[derive(Serialize)]
pub(super) struct SchemaOut<'r> {
    name: &'r str,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<&'r str>,
    schema: &'r RawValue,
    #[serde(skip_serializing_if = "Option::is_none")]
    strict: Option<bool>,
}

pub(super) fn format_out<'r, S>(
    format: &'r Format<'r>,
    place: impl FnOnce(SchemaOut<'r>) -> S,
) -> FormatOut<S> {
    match format {
        Format::Text => FormatOut::Text,
        Format::JsonObject => FormatOut::JsonObject,
        Format::JsonSchema {
            name,
            description,
            schema,
            strict,
        } => FormatOut::JsonSchema(place(SchemaOut {
            name: name.as_deref().unwrap_or("response"),
            description: description.as_deref(),
            schema,
            strict: *strict,
        })),
    }
}
