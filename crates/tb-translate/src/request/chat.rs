//! Chat Completions requests: the reader (a Chat client's body) and the
//! writer (the body for a Chat upstream).

use std::borrow::Cow;

use serde::Serialize;
use serde_json::value::RawValue;
use tb_domain::Protocol;

use super::openai::{self, FormatOut, FunctionOut, SchemaOut, TextOr, ToolChoiceOut};
use super::{Ctx, ERROR_PREFIX, effort, join, openai_format, schema_format, to_body};
use crate::Refusal;
use crate::ir::{
    Args, Format, Image, Part, Reasoning, Request, ResultPart, Role, Tool, ToolChoice, Turn,
};
use crate::shape::ChatToolCallOut;
use crate::wire::{self, Str, StrOr, wire};

wire! {
    struct ChatRequest {
        model: Str<'a> = "model",
        messages: Vec<ChatMessage<'a>> = "messages",
        tools: Vec<ChatTool<'a>> = "tools",
        tool_choice: StrOr<'a, ChatToolChoice<'a>> = "tool_choice",
        parallel_tool_calls: bool = "parallel_tool_calls",
        max_tokens: u64 = "max_tokens",
        max_completion_tokens: u64 = "max_completion_tokens",
        temperature: f64 = "temperature",
        top_p: f64 = "top_p",
        top_k: u64 = "top_k",
        stop: StrOr<'a, Vec<Str<'a>>> = "stop",
        user: Str<'a> = "user",
        safety_identifier: Str<'a> = "safety_identifier",
        reasoning_effort: Str<'a> = "reasoning_effort",
        reasoning: ChatReasoning<'a> = "reasoning",
        thinking: super::messages::Thinking<'a> = "thinking",
        enable_thinking: bool = "enable_thinking",
        response_format: ChatFormat<'a> = "response_format",
        verbosity: Str<'a> = "verbosity",
        stream: bool = "stream",
        stream_options: StreamOptions<'a> = "stream_options",
        n: u64 = "n",
        frequency_penalty: f64 = "frequency_penalty",
        presence_penalty: f64 = "presence_penalty",
        modalities: Vec<Str<'a>> = "modalities",
    }
}

/// Top-level Chat fields dropped on a translated route (docs/translation.md).
const ADVISORY: &[&str] = &[
    "store",
    "metadata",
    "service_tier",
    "prompt_cache_key",
    "prompt_cache_retention",
    "seed",
    "prediction",
];

wire! {
    struct StreamOptions {
        include_usage: bool = "include_usage",
    }
}

wire! {
    /// OpenRouter's reasoning object, which Hermes and others send.
    struct ChatReasoning {
        effort: Str<'a> = "effort",
        max_tokens: u64 = "max_tokens",
        enabled: bool = "enabled",
        exclude: bool = "exclude",
    }
}

wire! {
    struct ChatMessage {
        role: Str<'a> = "role",
        content: StrOr<'a, Vec<ChatPart<'a>>> = "content",
        tool_calls: Vec<ChatToolCall<'a>> = "tool_calls",
        tool_call_id: Str<'a> = "tool_call_id",
        reasoning_content: Str<'a> = "reasoning_content",
        reasoning: Str<'a> = "reasoning",
        refusal: Str<'a> = "refusal",
    }
}

/// Message fields dropped: a participant `name`, answer `annotations`,
/// cache hints, and OpenRouter's `reasoning_details` (provider-private).
const MESSAGE_ADVISORY: &[&str] = &["name", "annotations", "cache_control", "reasoning_details"];

wire! {
    struct ChatPart {
        kind: Str<'a> = "type",
        text: Str<'a> = "text",
        image_url: StrOr<'a, ChatImageUrl<'a>> = "image_url",
        refusal: Str<'a> = "refusal",
    }
}

wire! {
    struct ChatImageUrl {
        url: Str<'a> = "url",
        detail: Str<'a> = "detail",
    }
}

wire! {
    struct ChatToolCall {
        id: Str<'a> = "id",
        kind: Str<'a> = "type",
        function: ChatFunctionCall<'a> = "function",
    }
}

wire! {
    struct ChatFunctionCall {
        name: Str<'a> = "name",
        arguments: Str<'a> = "arguments",
    }
}

wire! {
    struct ChatTool {
        kind: Str<'a> = "type",
        function: ChatFunction<'a> = "function",
    }
}

wire! {
    struct ChatFunction {
        name: Str<'a> = "name",
        description: Str<'a> = "description",
        parameters: &'a RawValue = "parameters",
        strict: bool = "strict",
    }
}

wire! {
    struct ChatToolChoice {
        kind: Str<'a> = "type",
        function: ChatFunctionCall<'a> = "function",
    }
}

wire! {
    struct ChatFormat {
        kind: Str<'a> = "type",
        json_schema: ChatJsonSchema<'a> = "json_schema",
    }
}

wire! {
    struct ChatJsonSchema {
        name: Str<'a> = "name",
        description: Str<'a> = "description",
        schema: &'a RawValue = "schema",
        strict: bool = "strict",
    }
}

/// Reads a Chat client's body.
pub(crate) fn read<'a>(ctx: &Ctx<'_>, body: &'a [u8]) -> Result<Request<'a>, Refusal> {
    let req: ChatRequest<'a> = wire::parse(body).map_err(|e| ctx.malformed(&e))?;
    ctx.check_extra(&req.extra, "", ADVISORY)?;
    refuse_unexpressible(ctx, &req)?;
    let mut out = Request {
        model: req.model.unwrap_or_default(),
        stream: req.stream.unwrap_or(false),
        include_usage: req
            .stream_options
            .as_ref()
            .and_then(|o| o.include_usage)
            .unwrap_or(false),
        max_tokens: req.max_completion_tokens.or(req.max_tokens),
        temperature: req.temperature,
        top_p: req.top_p,
        top_k: req.top_k,
        user: req.user.or(req.safety_identifier),
        parallel_tool_calls: req.parallel_tool_calls,
        verbosity: req.verbosity,
        ..Request::default()
    };
    if let Some(options) = &req.stream_options {
        ctx.check_extra(&options.extra, "stream_options", &["include_obfuscation"])?;
    }
    out.stop = match req.stop {
        Some(StrOr::Str(s)) => vec![s],
        Some(StrOr::Other(list)) => list,
        None => Vec::new(),
    };
    out.reasoning = read_reasoning(ctx, req.reasoning_effort, req.reasoning, req.thinking)?;
    if let Some(on) = req.enable_thinking {
        out.reasoning.off |= !on;
    }
    out.format = req
        .response_format
        .map(|f| read_format(ctx, f))
        .transpose()?;
    read_messages(ctx, req.messages.unwrap_or_default(), &mut out)?;
    out.tools = read_tools(ctx, req.tools.unwrap_or_default())?;
    out.tool_choice = req
        .tool_choice
        .map(|c| read_tool_choice(ctx, c))
        .transpose()?;
    Ok(out)
}

/// Fields that are known but mean something no other protocol can do.
fn refuse_unexpressible(ctx: &Ctx<'_>, req: &ChatRequest<'_>) -> Result<(), Refusal> {
    if req.n.is_some_and(|n| n > 1) {
        return Err(ctx.refuse("n", "only one choice per request can be translated"));
    }
    for (field, value) in [
        ("frequency_penalty", req.frequency_penalty),
        ("presence_penalty", req.presence_penalty),
    ] {
        if value.is_some_and(|v| v != 0.0) {
            return Err(ctx.refuse(
                field,
                format!("{} has no penalty parameters", ctx.target_name()),
            ));
        }
    }
    if let Some(modalities) = &req.modalities
        && modalities.iter().any(|m| &**m != "text")
    {
        return Err(ctx.refuse("modalities", "only text output is translated"));
    }
    if req.top_k.is_some() && ctx.target != Protocol::Messages {
        return Err(ctx.refuse("top_k", format!("{} has no top_k", ctx.target_name())));
    }
    Ok(())
}

fn read_reasoning(
    ctx: &Ctx<'_>,
    effort_word: Option<Str<'_>>,
    openrouter: Option<ChatReasoning<'_>>,
    thinking: Option<super::messages::Thinking<'_>>,
) -> Result<Reasoning, Refusal> {
    let mut out = Reasoning::default();
    if let Some(thinking) = thinking {
        out = super::messages::read_thinking(ctx, "thinking", thinking)?;
    }
    if let Some(r) = openrouter {
        ctx.check_extra(&r.extra, "reasoning", &[])?;
        if let Some(word) = &r.effort {
            effort(ctx, "reasoning.effort", word, &mut out)?;
        }
        out.budget = r.max_tokens.or(out.budget);
        out.off |= r.enabled == Some(false);
        out.hidden = r.exclude.unwrap_or(false);
    }
    if let Some(word) = &effort_word {
        effort(ctx, "reasoning_effort", word, &mut out)?;
    }
    Ok(out)
}

pub(super) fn read_format<'a>(ctx: &Ctx<'_>, f: ChatFormat<'a>) -> Result<Format<'a>, Refusal> {
    ctx.check_extra(&f.extra, "response_format", &[])?;
    openai_format(ctx, "response_format", f.kind.as_deref(), || {
        let Some(s) = f.json_schema else {
            return Err(ctx.refuse("response_format.json_schema", "missing"));
        };
        ctx.check_extra(&s.extra, "response_format.json_schema", &[])?;
        schema_format(
            ctx,
            "response_format.json_schema",
            s.schema,
            s.name,
            s.description,
            s.strict,
        )
    })
}

fn read_messages<'a>(
    ctx: &Ctx<'_>,
    messages: Vec<ChatMessage<'a>>,
    out: &mut Request<'a>,
) -> Result<(), Refusal> {
    for (i, message) in messages.into_iter().enumerate() {
        let path = format!("messages[{i}]");
        ctx.check_extra(&message.extra, &path, MESSAGE_ADVISORY)?;
        match message.role.as_deref() {
            Some("system" | "developer") => read_system(ctx, &path, message, out)?,
            Some("user") => {
                let parts = read_content(ctx, &path, message.content)?;
                for part in parts {
                    out.push(Role::User, part);
                }
            }
            Some("assistant") => read_assistant(ctx, &path, message, out)?,
            Some("tool") => read_tool_result(ctx, &path, message, out)?,
            Some(role) => {
                return Err(ctx.refuse(
                    join(&path, "role"),
                    format!("role `{role}` is not translated (use tools and tool messages)"),
                ));
            }
            None => return Err(ctx.refuse(join(&path, "role"), "missing")),
        }
    }
    Ok(())
}

/// System and developer messages before the first other message are the
/// top-level instructions; later ones stay in place.
fn read_system<'a>(
    ctx: &Ctx<'_>,
    path: &str,
    message: ChatMessage<'a>,
    out: &mut Request<'a>,
) -> Result<(), Refusal> {
    let leading = out.turns.is_empty();
    for part in read_content(ctx, path, message.content)? {
        match part {
            Part::Text(text) if leading => out.system.push(text),
            Part::Text(text) => out.push(Role::System, Part::Text(text)),
            _ => return Err(ctx.refuse(join(path, "content"), "a system message holds text only")),
        }
    }
    Ok(())
}

fn read_assistant<'a>(
    ctx: &Ctx<'_>,
    path: &str,
    message: ChatMessage<'a>,
    out: &mut Request<'a>,
) -> Result<(), Refusal> {
    if let Some(reasoning) = message.reasoning_content.or(message.reasoning) {
        out.push(Role::Assistant, Part::Reasoning(reasoning));
    }
    for part in read_content(ctx, path, message.content)? {
        out.push(Role::Assistant, part);
    }
    if let Some(refusal) = message.refusal {
        out.push(Role::Assistant, Part::Text(refusal));
    }
    for (j, call) in message
        .tool_calls
        .unwrap_or_default()
        .into_iter()
        .enumerate()
    {
        let call_path = format!("{path}.tool_calls[{j}]");
        ctx.check_extra(&call.extra, &call_path, &[])?;
        if call.kind.as_deref().is_some_and(|k| k != "function") {
            return Err(ctx.refuse(
                join(&call_path, "type"),
                "only function tool calls are translated",
            ));
        }
        let function = call.function.unwrap_or_default();
        ctx.check_extra(&function.extra, &join(&call_path, "function"), &[])?;
        out.push(
            Role::Assistant,
            Part::ToolCall(crate::ir::ToolCall {
                id: call.id.unwrap_or_default(),
                name: function.name.unwrap_or_default(),
                arguments: Args::Text(function.arguments.unwrap_or_default()),
            }),
        );
    }
    Ok(())
}

fn read_tool_result<'a>(
    ctx: &Ctx<'_>,
    path: &str,
    message: ChatMessage<'a>,
    out: &mut Request<'a>,
) -> Result<(), Refusal> {
    let mut content = Vec::new();
    for part in read_content(ctx, path, message.content)? {
        match part {
            Part::Text(text) => content.push(ResultPart::Text(text)),
            Part::Image(image) => content.push(ResultPart::Image(image)),
            _ => return Err(ctx.refuse(join(path, "content"), "a tool message holds text")),
        }
    }
    let result = crate::ir::ToolResult {
        call_id: message.tool_call_id.unwrap_or_default(),
        content,
        is_error: false,
    };
    out.push(Role::User, Part::ToolResult(result));
    Ok(())
}

/// `content`: a string or text / image parts.
fn read_content<'a>(
    ctx: &Ctx<'_>,
    path: &str,
    content: Option<StrOr<'a, Vec<ChatPart<'a>>>>,
) -> Result<Vec<Part<'a>>, Refusal> {
    let parts = match content {
        None => return Ok(Vec::new()),
        Some(StrOr::Str(text)) => return Ok(non_empty_text(text).into_iter().collect()),
        Some(StrOr::Other(parts)) => parts,
    };
    let mut out = Vec::with_capacity(parts.len());
    for (j, part) in parts.into_iter().enumerate() {
        let part_path = format!("{path}.content[{j}]");
        if matches!(part.kind.as_deref(), Some("text" | "refusal" | "image_url")) {
            ctx.check_extra(&part.extra, &part_path, &["cache_control"])?;
        }
        match part.kind.as_deref() {
            Some("text") => out.extend(non_empty_text(part.text.unwrap_or_default())),
            Some("refusal") => out.extend(non_empty_text(part.refusal.unwrap_or_default())),
            Some("image_url") => {
                out.push(Part::Image(read_image(ctx, &part_path, part.image_url)?))
            }
            Some(other) => {
                return Err(ctx.refuse(
                    join(&part_path, "type"),
                    format!("`{other}` content is not translated (text and images are)"),
                ));
            }
            None => return Err(ctx.refuse(join(&part_path, "type"), "missing")),
        }
    }
    Ok(out)
}

/// Empty text carries nothing, and Anthropic refuses empty text blocks.
fn non_empty_text(text: Str<'_>) -> Option<Part<'_>> {
    (!text.is_empty()).then_some(Part::Text(text))
}

fn read_image<'a>(
    ctx: &Ctx<'_>,
    path: &str,
    image: Option<StrOr<'a, ChatImageUrl<'a>>>,
) -> Result<Image<'a>, Refusal> {
    let url = match image {
        Some(StrOr::Str(url)) => url,
        Some(StrOr::Other(image)) => {
            // `detail` is a resolution hint: advisory (docs/translation.md).
            ctx.check_extra(&image.extra, &join(path, "image_url"), &[])?;
            image.url.unwrap_or_default()
        }
        None => return Err(ctx.refuse(join(path, "image_url"), "missing")),
    };
    Ok(Image::from_url(url))
}

fn read_tools<'a>(ctx: &Ctx<'_>, tools: Vec<ChatTool<'a>>) -> Result<Vec<Tool<'a>>, Refusal> {
    let mut out = Vec::with_capacity(tools.len());
    for (i, tool) in tools.into_iter().enumerate() {
        let path = format!("tools[{i}]");
        match tool.kind.as_deref() {
            Some("function") | None => {}
            Some(other) => {
                return Err(ctx.refuse(
                    join(&path, "type"),
                    format!("`{other}` tools cannot be translated; only function tools can"),
                ));
            }
        }
        ctx.check_extra(&tool.extra, &path, &["cache_control"])?;
        let f = tool.function.unwrap_or_default();
        ctx.check_extra(&f.extra, &join(&path, "function"), &[])?;
        out.push(Tool {
            name: f.name.unwrap_or_default(),
            description: f.description,
            parameters: f.parameters.map(Cow::Borrowed),
            strict: f.strict,
        });
    }
    Ok(out)
}

fn read_tool_choice<'a>(
    ctx: &Ctx<'_>,
    choice: StrOr<'a, ChatToolChoice<'a>>,
) -> Result<ToolChoice<'a>, Refusal> {
    match choice {
        StrOr::Str(word) => simple_choice(ctx, "tool_choice", &word),
        StrOr::Other(c) => {
            ctx.check_extra(&c.extra, "tool_choice", &[])?;
            if c.kind.as_deref() != Some("function") {
                return Err(ctx.refuse("tool_choice.type", "only a function can be forced"));
            }
            let name = c.function.and_then(|f| f.name).unwrap_or_default();
            Ok(ToolChoice::Tool(name))
        }
    }
}

/// `none` / `auto` / `required` (shared with Responses).
pub(super) fn simple_choice<'a>(
    ctx: &Ctx<'_>,
    field: &str,
    word: &str,
) -> Result<ToolChoice<'a>, Refusal> {
    match word {
        "none" => Ok(ToolChoice::None),
        "auto" => Ok(ToolChoice::Auto),
        "required" => Ok(ToolChoice::Required),
        other => Err(ctx.refuse(field, format!("unknown tool choice `{other}`"))),
    }
}

// ---------------------------------------------------------------- writer

#[derive(Serialize)]
struct ChatOut<'r> {
    model: &'r str,
    messages: Vec<MessageOut<'r>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tools: Vec<ToolOut<'r>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_choice: Option<ToolChoiceOut<ForcedOut<'r>>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    parallel_tool_calls: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_tokens: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_completion_tokens: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_p: Option<f64>,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    stop: &'r [Str<'r>],
    #[serde(skip_serializing_if = "Option::is_none")]
    user: Option<&'r str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reasoning_effort: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    response_format: Option<FormatOut<JsonSchemaOut<'r>>>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    stream: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    stream_options: Option<IncludeUsage>,
}

#[derive(Serialize)]
struct IncludeUsage {
    include_usage: bool,
}

#[derive(Serialize)]
struct MessageOut<'r> {
    role: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    content: Option<ContentOut<'r>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reasoning_content: Option<Cow<'r, str>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tool_calls: Vec<ChatToolCallOut<'r>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_call_id: Option<Cow<'r, str>>,
}

impl<'r> MessageOut<'r> {
    fn new(role: &'static str, content: Option<ContentOut<'r>>) -> MessageOut<'r> {
        MessageOut {
            role,
            content,
            reasoning_content: None,
            tool_calls: Vec::new(),
            tool_call_id: None,
        }
    }
}

type ContentOut<'r> = TextOr<'r, PartOut<'r>>;

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum PartOut<'r> {
    Text { text: &'r str },
    ImageUrl { image_url: UrlOut<'r> },
}

#[derive(Serialize)]
struct UrlOut<'r> {
    url: Cow<'r, str>,
}

#[derive(Serialize)]
struct ToolOut<'r> {
    #[serde(rename = "type")]
    kind: &'static str,
    function: FunctionOut<'r>,
}

/// The tool a Chat `tool_choice` forces.
#[derive(Serialize)]
struct ForcedOut<'r> {
    #[serde(rename = "type")]
    kind: &'static str,
    function: NameOut<'r>,
}

#[derive(Serialize)]
struct NameOut<'r> {
    name: &'r str,
}

/// Chat nests a JSON schema format's members under `json_schema`.
#[derive(Serialize)]
struct JsonSchemaOut<'r> {
    json_schema: SchemaOut<'r>,
}

/// Writes the body for a Chat upstream.
pub(crate) fn write(ctx: &Ctx<'_>, req: &Request<'_>) -> Result<Vec<u8>, Refusal> {
    let mut messages = Vec::with_capacity(req.turns.len() + 1);
    if !req.system.is_empty() {
        messages.push(MessageOut::new(
            "system",
            Some(ContentOut::Text(joined(&req.system))),
        ));
    }
    for turn in &req.turns {
        write_turn(ctx, turn, &mut messages)?;
    }
    let has_tools = !req.tools.is_empty();
    let out = ChatOut {
        model: &req.model,
        messages,
        tools: req.tools.iter().map(tool_out).collect(),
        tool_choice: req
            .tool_choice
            .as_ref()
            .filter(|_| has_tools)
            .map(tool_choice_out),
        parallel_tool_calls: req.parallel_tool_calls.filter(|_| has_tools),
        max_tokens: req.max_tokens.filter(|_| !ctx.max_completion_tokens),
        max_completion_tokens: req.max_tokens.filter(|_| ctx.max_completion_tokens),
        temperature: req.temperature,
        top_p: req.top_p,
        stop: &req.stop,
        user: req.user.as_deref(),
        reasoning_effort: req.reasoning.openai_effort().map(|e| e.openai()),
        response_format: req.format.as_ref().map(format_out),
        stream: req.stream,
        stream_options: req.stream.then_some(IncludeUsage {
            include_usage: true,
        }),
    };
    to_body(ctx, &out)
}

/// Instructions joined into one system message: several system messages
/// are not accepted everywhere, and a blank line keeps them apart.
pub(super) fn joined<'r>(texts: &'r [Str<'r>]) -> Cow<'r, str> {
    match texts {
        [one] => Cow::Borrowed(&**one),
        many => Cow::Owned(
            many.iter()
                .map(|t| &**t)
                .collect::<Vec<&str>>()
                .join("\n\n"),
        ),
    }
}

fn write_turn<'r>(
    ctx: &Ctx<'_>,
    turn: &'r Turn<'r>,
    out: &mut Vec<MessageOut<'r>>,
) -> Result<(), Refusal> {
    match turn.role {
        Role::System => {
            let texts: Vec<&str> = turn.parts.iter().filter_map(text_of).collect();
            out.push(MessageOut::new(
                "system",
                Some(ContentOut::Text(Cow::Owned(texts.join("\n\n")))),
            ));
        }
        Role::User => write_user(ctx, turn, out)?,
        Role::Assistant => out.push(write_assistant(turn)),
    }
    Ok(())
}

fn text_of<'r>(part: &'r Part<'r>) -> Option<&'r str> {
    match part {
        Part::Text(text) => Some(text),
        _ => None,
    }
}

/// Tool results become `tool` messages (first, as Chat wants them right
/// after the assistant's calls); the rest is one user message.
fn write_user<'r>(
    ctx: &Ctx<'_>,
    turn: &'r Turn<'r>,
    out: &mut Vec<MessageOut<'r>>,
) -> Result<(), Refusal> {
    let mut parts = Vec::new();
    for part in &turn.parts {
        match part {
            Part::ToolResult(result) => out.push(tool_message(ctx, result)?),
            Part::Text(text) => parts.push(PartOut::Text { text }),
            Part::Image(image) => parts.push(PartOut::ImageUrl {
                image_url: UrlOut {
                    url: image.to_url(),
                },
            }),
            Part::ToolCall(_) | Part::Reasoning(_) => {}
        }
    }
    let content = match parts.as_slice() {
        [] => return Ok(()),
        [PartOut::Text { text }] => ContentOut::Text(Cow::Borrowed(text)),
        _ => ContentOut::Parts(parts),
    };
    out.push(MessageOut::new("user", Some(content)));
    Ok(())
}

fn tool_message<'r>(
    ctx: &Ctx<'_>,
    result: &'r crate::ir::ToolResult<'r>,
) -> Result<MessageOut<'r>, Refusal> {
    let mut texts: Vec<&str> = Vec::with_capacity(result.content.len());
    for part in &result.content {
        match part {
            ResultPart::Text(text) => texts.push(text),
            ResultPart::Image(_) => {
                return Err(ctx.refuse(
                    "tool result image",
                    "chat_completions tool messages hold text only",
                ));
            }
        }
    }
    let text = join_strs(&texts, "\n");
    let text = if result.is_error {
        Cow::Owned(format!("{ERROR_PREFIX}{text}"))
    } else {
        text
    };
    let mut message = MessageOut::new("tool", Some(ContentOut::Text(text)));
    message.tool_call_id = Some(Cow::Borrowed(&result.call_id));
    Ok(message)
}

/// One assistant message: reasoning as `reasoning_content`, the texts
/// joined, then the tool calls.
fn write_assistant<'r>(turn: &'r Turn<'r>) -> MessageOut<'r> {
    let mut texts: Vec<&str> = Vec::new();
    let mut reasoning: Vec<&str> = Vec::new();
    let mut calls = Vec::new();
    for part in &turn.parts {
        match part {
            Part::Text(text) => texts.push(text),
            Part::Reasoning(text) => reasoning.push(text),
            Part::ToolCall(call) => calls.push(ChatToolCallOut::function(
                &call.id,
                &call.name,
                arguments_text(&call.arguments),
            )),
            Part::Image(_) | Part::ToolResult(_) => {}
        }
    }
    let content = (!texts.is_empty()).then(|| ContentOut::Text(join_strs(&texts, "\n\n")));
    let mut message = MessageOut::new("assistant", content);
    message.reasoning_content = (!reasoning.is_empty()).then(|| join_strs(&reasoning, "\n\n"));
    message.tool_calls = calls;
    message
}

fn join_strs<'r>(texts: &[&'r str], sep: &str) -> Cow<'r, str> {
    match texts {
        [one] => Cow::Borrowed(one),
        many => Cow::Owned(many.join(sep)),
    }
}

/// Arguments as JSON text (Messages `input` objects are written out).
/// Empty arguments are written `{}`: the other side parses them as JSON.
pub(super) fn arguments_text<'r>(args: &'r Args<'r>) -> Cow<'r, str> {
    match args {
        Args::Text(text) if text.trim().is_empty() => Cow::Borrowed("{}"),
        Args::Text(text) => Cow::Borrowed(text),
        Args::Json(raw) => Cow::Borrowed(raw.get()),
    }
}

fn tool_out<'r>(tool: &'r Tool<'r>) -> ToolOut<'r> {
    ToolOut {
        kind: "function",
        function: FunctionOut::of(tool),
    }
}

fn tool_choice_out<'r>(choice: &'r ToolChoice<'r>) -> ToolChoiceOut<ForcedOut<'r>> {
    openai::tool_choice_out(choice, |name| ForcedOut {
        kind: "function",
        function: NameOut { name },
    })
}

fn format_out<'r>(format: &'r Format<'r>) -> FormatOut<JsonSchemaOut<'r>> {
    openai::format_out(format, |json_schema| JsonSchemaOut { json_schema })
}
