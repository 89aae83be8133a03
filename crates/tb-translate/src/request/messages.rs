//! Anthropic Messages requests: the reader (a Messages client's body, as
//! Claude Code sends it) and the writer (the body for a Messages upstream).

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use tb_domain::Protocol;

use super::{Ctx, anthropic_id, effort, join, schema_format, to_body};
use crate::Refusal;
use crate::ir::{
    Args, Format, Image, Part, Reasoning, Request, ResultPart, Role, Tool, ToolCall, ToolChoice,
    ToolResult, Turn,
};
use crate::wire::{self, Str, StrOr, wire};

wire! {
    struct MessagesRequest {
        model: Str<'a> = "model",
        messages: Vec<Message<'a>> = "messages",
        system: StrOr<'a, Vec<Block<'a>>> = "system",
        max_tokens: u64 = "max_tokens",
        metadata: Metadata<'a> = "metadata",
        stop_sequences: Vec<Str<'a>> = "stop_sequences",
        stream: bool = "stream",
        temperature: f64 = "temperature",
        top_p: f64 = "top_p",
        top_k: u64 = "top_k",
        tools: Vec<MessagesTool<'a>> = "tools",
        tool_choice: MessagesToolChoice<'a> = "tool_choice",
        thinking: Thinking<'a> = "thinking",
        output_config: OutputConfig<'a> = "output_config",
        output_format: JsonFormat<'a> = "output_format",
    }
}

/// Top-level Messages fields dropped on a translated route: Claude Code
/// sends `context_management` (server-side pruning of old thinking and
/// tool results) on every request; `cache_control` and `service_tier`
/// are hints (docs/translation.md).
const ADVISORY: &[&str] = &["context_management", "service_tier", "cache_control"];

/// Blocks: cache hints and citations of earlier answers are advisory.
const BLOCK_ADVISORY: &[&str] = &["cache_control", "citations"];

/// Claude Code's first system block: a per-request billing nonce with no
/// meaning to a model, which would defeat every prefix cache upstream.
const BILLING_HEADER: &str = "x-anthropic-billing-header:";

wire! {
    struct Metadata {
        user_id: Str<'a> = "user_id",
    }
}

wire! {
    /// `thinking` (also accepted on Chat requests, where GLM-style
    /// providers take the same shape).
    struct Thinking {
        kind: Str<'a> = "type",
        budget_tokens: u64 = "budget_tokens",
    }
}

wire! {
    struct OutputConfig {
        effort: Str<'a> = "effort",
        format: JsonFormat<'a> = "format",
    }
}

wire! {
    struct JsonFormat {
        kind: Str<'a> = "type",
        schema: &'a RawValue = "schema",
    }
}

wire! {
    struct Message {
        role: Str<'a> = "role",
        content: StrOr<'a, Vec<Block<'a>>> = "content",
    }
}

wire! {
    struct Block {
        kind: Str<'a> = "type",
        text: Str<'a> = "text",
        source: Source<'a> = "source",
        id: Str<'a> = "id",
        name: Str<'a> = "name",
        input: &'a RawValue = "input",
        tool_use_id: Str<'a> = "tool_use_id",
        content: StrOr<'a, Vec<Block<'a>>> = "content",
        is_error: bool = "is_error",
        thinking: Str<'a> = "thinking",
        signature: Str<'a> = "signature",
        data: Str<'a> = "data",
    }
}

wire! {
    struct Source {
        kind: Str<'a> = "type",
        media_type: Str<'a> = "media_type",
        data: Str<'a> = "data",
        url: Str<'a> = "url",
    }
}

wire! {
    struct MessagesTool {
        kind: Str<'a> = "type",
        name: Str<'a> = "name",
        description: Str<'a> = "description",
        input_schema: &'a RawValue = "input_schema",
        strict: bool = "strict",
    }
}

wire! {
    struct MessagesToolChoice {
        kind: Str<'a> = "type",
        name: Str<'a> = "name",
        disable_parallel_tool_use: bool = "disable_parallel_tool_use",
    }
}

/// Reads a Messages client's body.
pub(crate) fn read<'a>(ctx: &Ctx<'_>, body: &'a [u8]) -> Result<Request<'a>, Refusal> {
    let req: MessagesRequest<'a> = wire::parse(body).map_err(|e| ctx.malformed(&e))?;
    ctx.check_extra(&req.extra, "", ADVISORY)?;
    let mut out = Request {
        model: req.model.unwrap_or_default(),
        stream: req.stream.unwrap_or(false),
        max_tokens: req.max_tokens,
        temperature: req.temperature,
        top_p: req.top_p,
        top_k: req.top_k,
        ..Request::default()
    };
    if req.top_k.is_some() {
        return Err(ctx.refuse("top_k", format!("{} has no top_k", ctx.target_name())));
    }
    out.stop = req.stop_sequences.unwrap_or_default();
    if !out.stop.is_empty() && ctx.target == Protocol::Responses {
        return Err(ctx.refuse("stop_sequences", "responses has no stop sequences"));
    }
    if let Some(metadata) = req.metadata {
        out.user = metadata.user_id;
    }
    if let Some(system) = req.system {
        out.system = read_system(ctx, system)?;
    }
    out.reasoning = match req.thinking {
        Some(thinking) => read_thinking(ctx, "thinking", thinking)?,
        None => Reasoning::default(),
    };
    if let Some(config) = req.output_config {
        ctx.check_extra(&config.extra, "output_config", &[])?;
        if let Some(word) = &config.effort {
            effort(ctx, "output_config.effort", word, &mut out.reasoning)?;
        }
        out.format = config
            .format
            .map(|f| read_format(ctx, "output_config.format", f))
            .transpose()?;
    }
    if let Some(format) = req.output_format {
        out.format = Some(read_format(ctx, "output_format", format)?);
    }
    read_messages(ctx, req.messages.unwrap_or_default(), &mut out)?;
    out.tools = read_tools(ctx, req.tools.unwrap_or_default())?;
    if let Some(choice) = req.tool_choice {
        ctx.check_extra(&choice.extra, "tool_choice", &[])?;
        out.parallel_tool_calls = choice.disable_parallel_tool_use.map(|d| !d);
        out.tool_choice = Some(read_tool_choice(ctx, choice)?);
    }
    Ok(out)
}

fn read_system<'a>(
    ctx: &Ctx<'_>,
    system: StrOr<'a, Vec<Block<'a>>>,
) -> Result<Vec<Str<'a>>, Refusal> {
    let blocks = match system {
        StrOr::Str(text) => return Ok(without_billing_header(text).into_iter().collect()),
        StrOr::Other(blocks) => blocks,
    };
    let mut out = Vec::with_capacity(blocks.len());
    for (i, block) in blocks.into_iter().enumerate() {
        let path = format!("system[{i}]");
        ctx.check_extra(&block.extra, &path, BLOCK_ADVISORY)?;
        if block.kind.as_deref() != Some("text") {
            return Err(ctx.refuse(join(&path, "type"), "system blocks hold text only"));
        }
        out.extend(without_billing_header(block.text.unwrap_or_default()));
    }
    Ok(out)
}

/// Drops Claude Code's billing line (and the block when nothing else is
/// left); empty text is dropped too.
fn without_billing_header(text: Str<'_>) -> Option<Str<'_>> {
    if !text.starts_with(BILLING_HEADER) {
        return (!text.is_empty()).then_some(text);
    }
    let rest = text.split_once('\n').map(|(_, rest)| rest).unwrap_or("");
    let rest = rest.strip_prefix('\n').unwrap_or(rest);
    if rest.trim().is_empty() {
        return None;
    }
    Some(Str::owned(rest.to_owned()))
}

/// `thinking`: `enabled` with a budget, `adaptive`, or `disabled`.
pub(super) fn read_thinking(
    ctx: &Ctx<'_>,
    field: &str,
    thinking: Thinking<'_>,
) -> Result<Reasoning, Refusal> {
    ctx.check_extra(&thinking.extra, field, &["display"])?;
    let mut out = Reasoning::default();
    match thinking.kind.as_deref() {
        Some("enabled") => {
            out.budget = thinking.budget_tokens;
            out.visible = true;
        }
        Some("adaptive" | "auto") => out.visible = true,
        Some("disabled") => out.off = true,
        other => {
            return Err(ctx.refuse(
                join(field, "type"),
                format!("unknown thinking type {other:?}"),
            ));
        }
    }
    Ok(out)
}

fn read_format<'a>(
    ctx: &Ctx<'_>,
    field: &str,
    format: JsonFormat<'a>,
) -> Result<Format<'a>, Refusal> {
    ctx.check_extra(&format.extra, field, &[])?;
    if format.kind.as_deref() != Some("json_schema") {
        return Err(ctx.refuse(join(field, "type"), "only json_schema is known"));
    }
    schema_format(ctx, field, format.schema, None, None, Some(true))
}

fn read_messages<'a>(
    ctx: &Ctx<'_>,
    messages: Vec<Message<'a>>,
    out: &mut Request<'a>,
) -> Result<(), Refusal> {
    for (i, message) in messages.into_iter().enumerate() {
        let path = format!("messages[{i}]");
        ctx.check_extra(&message.extra, &path, &[])?;
        let role = match message.role.as_deref() {
            Some("user") => Role::User,
            Some("assistant") => Role::Assistant,
            other => return Err(ctx.refuse(join(&path, "role"), format!("unknown role {other:?}"))),
        };
        match message.content {
            Some(StrOr::Str(text)) if !text.is_empty() => out.push(role, Part::Text(text)),
            Some(StrOr::Str(_)) | None => {}
            Some(StrOr::Other(blocks)) => {
                for (j, block) in blocks.into_iter().enumerate() {
                    let block_path = format!("{path}.content[{j}]");
                    if let Some(part) = read_block(ctx, &block_path, role, block)? {
                        out.push(role, part);
                    }
                }
            }
        }
    }
    Ok(())
}

/// One content block; `None` for what is dropped on purpose (empty text,
/// provider-private thinking).
fn read_block<'a>(
    ctx: &Ctx<'_>,
    path: &str,
    role: Role,
    block: Block<'a>,
) -> Result<Option<Part<'a>>, Refusal> {
    let kind = block.kind.clone().unwrap_or_default();
    let known = matches!(
        (&*kind, role),
        ("text", _)
            | ("image" | "tool_result", Role::User)
            | (
                "tool_use" | "thinking" | "redacted_thinking",
                Role::Assistant
            )
    );
    if known {
        ctx.check_extra(&block.extra, path, BLOCK_ADVISORY)?;
    }
    Ok(match (&*kind, role) {
        ("text", _) => block.text.filter(|t| !t.is_empty()).map(Part::Text),
        ("image", Role::User) => Some(Part::Image(read_image(ctx, path, block.source)?)),
        ("tool_result", Role::User) => Some(Part::ToolResult(read_tool_result(ctx, path, block)?)),
        ("tool_use", Role::Assistant) => Some(Part::ToolCall(ToolCall {
            id: block.id.unwrap_or_default(),
            name: block.name.unwrap_or_default(),
            arguments: match block.input {
                Some(input) => Args::Json(input),
                None => Args::Text(Str::borrowed("{}")),
            },
        })),
        // A signature is Anthropic's proof over the thinking text: only
        // Anthropic can check it, so signed thinking never leaves
        // (docs/translation.md, "Provider-private state"). Unsigned
        // thinking came from a translated route: its text is kept.
        ("thinking", Role::Assistant) => match block.signature {
            Some(sig) if !sig.is_empty() => None,
            _ => block
                .thinking
                .filter(|t| !t.is_empty())
                .map(Part::Reasoning),
        },
        ("redacted_thinking", Role::Assistant) => None,
        ("document", _) => {
            return Err(ctx.refuse(
                join(path, "type"),
                "document (PDF) blocks are not translated",
            ));
        }
        _ => {
            return Err(ctx.refuse(
                join(path, "type"),
                format!(
                    "a `{}` block in a {} message cannot be translated to {}",
                    &*kind,
                    if role == Role::User {
                        "user"
                    } else {
                        "assistant"
                    },
                    ctx.target_name()
                ),
            ));
        }
    })
}

fn read_image<'a>(
    ctx: &Ctx<'_>,
    path: &str,
    source: Option<Source<'a>>,
) -> Result<Image<'a>, Refusal> {
    let Some(source) = source else {
        return Err(ctx.refuse(join(path, "source"), "missing"));
    };
    ctx.check_extra(&source.extra, &join(path, "source"), &[])?;
    match source.kind.as_deref() {
        Some("base64") => Ok(Image::Base64 {
            media_type: source.media_type.unwrap_or_default(),
            data: source.data.unwrap_or_default(),
        }),
        Some("url") => Ok(Image::Url(source.url.unwrap_or_default())),
        other => Err(ctx.refuse(
            join(path, "source.type"),
            format!("image source {other:?} is not translated (base64 and url are)"),
        )),
    }
}

fn read_tool_result<'a>(
    ctx: &Ctx<'_>,
    path: &str,
    block: Block<'a>,
) -> Result<ToolResult<'a>, Refusal> {
    let mut content = Vec::new();
    match block.content {
        Some(StrOr::Str(text)) => content.push(ResultPart::Text(text)),
        Some(StrOr::Other(blocks)) => {
            for (k, inner) in blocks.into_iter().enumerate() {
                let inner_path = format!("{path}.content[{k}]");
                content.extend(read_result_block(ctx, &inner_path, inner)?);
            }
        }
        None => {}
    }
    Ok(ToolResult {
        call_id: block.tool_use_id.unwrap_or_default(),
        content,
        is_error: block.is_error.unwrap_or(false),
    })
}

fn read_result_block<'a>(
    ctx: &Ctx<'_>,
    path: &str,
    block: Block<'a>,
) -> Result<Option<ResultPart<'a>>, Refusal> {
    ctx.check_extra(&block.extra, path, BLOCK_ADVISORY)?;
    match block.kind.as_deref() {
        Some("text") => Ok(block.text.filter(|t| !t.is_empty()).map(ResultPart::Text)),
        Some("image") if ctx.target == Protocol::ChatCompletions => Err(ctx.refuse(
            join(path, "type"),
            "chat_completions tool results hold text only, not images",
        )),
        Some("image") => Ok(Some(ResultPart::Image(read_image(
            ctx,
            path,
            block.source,
        )?))),
        other => Err(ctx.refuse(
            join(path, "type"),
            format!("{other:?} blocks in a tool result are not translated"),
        )),
    }
}

fn read_tools<'a>(ctx: &Ctx<'_>, tools: Vec<MessagesTool<'a>>) -> Result<Vec<Tool<'a>>, Refusal> {
    let mut out = Vec::with_capacity(tools.len());
    for (i, tool) in tools.into_iter().enumerate() {
        let path = format!("tools[{i}]");
        if let Some(kind) = tool.kind.as_deref().filter(|k| *k != "custom") {
            return Err(ctx.refuse(
                join(&path, "type"),
                format!(
                    "`{kind}` is an Anthropic-defined tool ({}); {} cannot run it",
                    tool.name.as_deref().unwrap_or("unnamed"),
                    ctx.target_name()
                ),
            ));
        }
        ctx.check_extra(&tool.extra, &path, &["cache_control"])?;
        out.push(Tool {
            name: tool.name.unwrap_or_default(),
            description: tool.description,
            parameters: tool.input_schema.map(Cow::Borrowed),
            strict: tool.strict,
        });
    }
    Ok(out)
}

fn read_tool_choice<'a>(
    ctx: &Ctx<'_>,
    choice: MessagesToolChoice<'a>,
) -> Result<ToolChoice<'a>, Refusal> {
    match choice.kind.as_deref() {
        Some("auto") => Ok(ToolChoice::Auto),
        Some("any") => Ok(ToolChoice::Required),
        Some("none") => Ok(ToolChoice::None),
        Some("tool") => Ok(ToolChoice::Tool(choice.name.unwrap_or_default())),
        other => Err(ctx.refuse("tool_choice.type", format!("unknown tool choice {other:?}"))),
    }
}

// ---------------------------------------------------------------- writer

#[derive(Serialize)]
struct MessagesOut<'r> {
    model: &'r str,
    #[serde(skip_serializing_if = "Option::is_none")]
    system: Option<ContentOut<'r>>,
    messages: Vec<MessageOut<'r>>,
    max_tokens: u64,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tools: Vec<ToolOut<'r>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_choice: Option<ToolChoiceOut<'r>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    thinking: Option<ThinkingOut>,
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_p: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_k: Option<u64>,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    stop_sequences: &'r [Str<'r>],
    #[serde(skip_serializing_if = "Option::is_none")]
    metadata: Option<MetadataOut<'r>>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    stream: bool,
}

#[derive(Serialize)]
struct MessageOut<'r> {
    role: &'static str,
    content: ContentOut<'r>,
}

#[derive(Serialize)]
#[serde(untagged)]
enum ContentOut<'r> {
    Text(Cow<'r, str>),
    Blocks(Vec<BlockOut<'r>>),
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum BlockOut<'r> {
    Text {
        text: Cow<'r, str>,
    },
    Image {
        source: SourceOut<'r>,
    },
    ToolUse {
        id: Cow<'r, str>,
        name: &'r str,
        input: Cow<'r, RawValue>,
    },
    ToolResult {
        tool_use_id: Cow<'r, str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        content: Option<ContentOut<'r>>,
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        is_error: bool,
    },
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum SourceOut<'r> {
    Base64 { media_type: &'r str, data: &'r str },
    Url { url: &'r str },
}

#[derive(Serialize)]
struct ToolOut<'r> {
    name: &'r str,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<&'r str>,
    input_schema: &'r RawValue,
}

#[derive(Serialize)]
struct ToolChoiceOut<'r> {
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'r str>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    disable_parallel_tool_use: bool,
}

#[derive(Serialize)]
struct ThinkingOut {
    #[serde(rename = "type")]
    kind: &'static str,
    budget_tokens: u64,
}

#[derive(Serialize)]
struct MetadataOut<'r> {
    user_id: &'r str,
}

/// The image types Anthropic accepts in base64 sources.
const IMAGE_TYPES: &[&str] = &["image/jpeg", "image/png", "image/gif", "image/webp"];

/// The smallest thinking budget Anthropic accepts.
const MIN_BUDGET: u64 = 1_024;

/// `{"type":"object","properties":{}}`: the schema of a tool without one
/// (Messages requires `input_schema`).
const NO_PARAMETERS: &str = r#"{"type":"object","properties":{}}"#;

/// Writes the body for a Messages upstream; the second value is the name
/// of the tool that carries structured output, if one was added.
pub(crate) fn write(
    ctx: &Ctx<'_>,
    req: &Request<'_>,
) -> Result<(Vec<u8>, Option<String>), Refusal> {
    if req.temperature.is_some_and(|t| t > 1.0) {
        return Err(ctx.refuse("temperature", "messages accepts 0 to 1"));
    }
    let no_parameters = wire::raw_owned(NO_PARAMETERS.to_owned());
    let max_tokens = req.max_tokens.unwrap_or(ctx.default_max_tokens);
    let thinking = thinking_out(ctx, req, max_tokens)?;
    let json_tool = json_tool(ctx, req, thinking.is_some())?;
    let mut messages: Vec<MessageOut<'_>> = Vec::with_capacity(req.turns.len());
    for turn in &req.turns {
        write_turn(ctx, turn, &mut messages)?;
    }
    let mut tools: Vec<ToolOut<'_>> = req
        .tools
        .iter()
        .map(|t| tool_out(t, &no_parameters))
        .collect();
    let mut tool_choice = tool_choice_out(req);
    if let Some((name, schema)) = &json_tool {
        tools.push(ToolOut {
            name,
            description: Some("Give the answer as this tool's input."),
            input_schema: schema,
        });
        tool_choice = Some(ToolChoiceOut {
            kind: "tool",
            name: Some(name),
            disable_parallel_tool_use: true,
        });
    }
    let out = MessagesOut {
        model: &req.model,
        system: system_out(req),
        messages,
        max_tokens,
        tools,
        tool_choice,
        thinking,
        temperature: req.temperature,
        top_p: req.top_p,
        top_k: req.top_k,
        stop_sequences: &req.stop,
        metadata: req.user.as_deref().map(|user_id| MetadataOut { user_id }),
        stream: req.stream,
    };
    let body = to_body(ctx, &out)?;
    Ok((body, json_tool.map(|(name, _)| name)))
}

/// The top-level instructions and every system message of the
/// conversation, in order (Messages has one system prompt).
fn system_out<'r>(req: &'r Request<'r>) -> Option<ContentOut<'r>> {
    let mut texts: Vec<&'r str> = req.system.iter().map(|s| &**s).collect();
    for turn in req.turns.iter().filter(|t| t.role == Role::System) {
        texts.extend(turn.parts.iter().filter_map(|p| match p {
            Part::Text(text) => Some(&**text),
            _ => None,
        }));
    }
    match texts.as_slice() {
        [] => None,
        [one] => Some(ContentOut::Text(Cow::Borrowed(one))),
        many => Some(ContentOut::Blocks(
            many.iter()
                .map(|t| BlockOut::Text {
                    text: Cow::Borrowed(t),
                })
                .collect(),
        )),
    }
}

fn write_turn<'r>(
    ctx: &Ctx<'_>,
    turn: &'r Turn<'r>,
    out: &mut Vec<MessageOut<'r>>,
) -> Result<(), Refusal> {
    let role = match turn.role {
        Role::System => return Ok(()),
        Role::User => "user",
        Role::Assistant => "assistant",
    };
    let mut blocks = Vec::with_capacity(turn.parts.len());
    // Anthropic wants tool results first in their user message.
    for part in turn
        .parts
        .iter()
        .filter(|p| matches!(p, Part::ToolResult(_)))
    {
        blocks.extend(block_out(ctx, part)?);
    }
    for part in turn
        .parts
        .iter()
        .filter(|p| !matches!(p, Part::ToolResult(_)))
    {
        blocks.extend(block_out(ctx, part)?);
    }
    if blocks.is_empty() {
        return Ok(());
    }
    // Hoisting system messages can leave two user turns side by side.
    if let Some(last) = out.last_mut().filter(|m| m.role == role) {
        let previous = std::mem::replace(&mut last.content, ContentOut::Blocks(Vec::new()));
        let mut merged = into_blocks(previous);
        merged.extend(blocks);
        last.content = ContentOut::Blocks(merged);
        return Ok(());
    }
    let content = match blocks.as_slice() {
        [BlockOut::Text { .. }] => match blocks.pop() {
            Some(BlockOut::Text { text }) => ContentOut::Text(text),
            _ => ContentOut::Blocks(blocks),
        },
        _ => ContentOut::Blocks(blocks),
    };
    out.push(MessageOut { role, content });
    Ok(())
}

fn into_blocks(content: ContentOut<'_>) -> Vec<BlockOut<'_>> {
    match content {
        ContentOut::Text(text) => vec![BlockOut::Text { text }],
        ContentOut::Blocks(blocks) => blocks,
    }
}

/// One block; visible reasoning is not sent (Anthropic accepts only
/// thinking it signed itself).
fn block_out<'r>(ctx: &Ctx<'_>, part: &'r Part<'r>) -> Result<Option<BlockOut<'r>>, Refusal> {
    Ok(Some(match part {
        Part::Text(text) => BlockOut::Text {
            text: Cow::Borrowed(text),
        },
        Part::Image(image) => BlockOut::Image {
            source: source_out(ctx, image)?,
        },
        Part::ToolCall(call) => BlockOut::ToolUse {
            id: anthropic_id(&call.id),
            name: &call.name,
            input: tool_input(ctx, call)?,
        },
        Part::ToolResult(result) => tool_result_out(ctx, result)?,
        Part::Reasoning(_) => return Ok(None),
    }))
}

fn source_out<'r>(ctx: &Ctx<'_>, image: &'r Image<'r>) -> Result<SourceOut<'r>, Refusal> {
    match image {
        Image::Url(url) => Ok(SourceOut::Url { url }),
        Image::Base64 { media_type, data } => {
            if !IMAGE_TYPES.contains(&&**media_type) {
                return Err(ctx.refuse(
                    "image",
                    format!(
                        "messages accepts jpeg, png, gif and webp images, not `{}`",
                        &**media_type
                    ),
                ));
            }
            Ok(SourceOut::Base64 { media_type, data })
        }
    }
}

/// Tool-call arguments as the `input` object Anthropic requires: empty
/// arguments are `{}`; text that is not a JSON object is refused.
fn tool_input<'r>(ctx: &Ctx<'_>, call: &'r ToolCall<'r>) -> Result<Cow<'r, RawValue>, Refusal> {
    let text = match &call.arguments {
        Args::Json(raw) => return Ok(Cow::Borrowed(raw)),
        Args::Text(text) => text,
    };
    if text.trim().is_empty() {
        return Ok(Cow::Owned(wire::empty_object()));
    }
    let is_object = text.trim_start().starts_with('{');
    match serde_json::from_str::<&RawValue>(text) {
        Ok(_) if is_object => Ok(Cow::Owned(
            RawValue::from_string(text.trim().to_owned())
                .map_err(|e| ctx.refuse("tool call arguments", e.to_string()))?,
        )),
        _ => Err(ctx.refuse(
            format!("tool call {} arguments", &*call.id),
            "messages needs the arguments as a JSON object",
        )),
    }
}

fn tool_result_out<'r>(ctx: &Ctx<'_>, result: &'r ToolResult<'r>) -> Result<BlockOut<'r>, Refusal> {
    let mut blocks = Vec::with_capacity(result.content.len());
    for part in &result.content {
        blocks.push(match part {
            ResultPart::Text(text) => BlockOut::Text {
                text: Cow::Borrowed(text),
            },
            ResultPart::Image(image) => BlockOut::Image {
                source: source_out(ctx, image)?,
            },
        });
    }
    let content = match blocks.as_slice() {
        [] => None,
        [BlockOut::Text { .. }] => match blocks.pop() {
            Some(BlockOut::Text { text }) => Some(ContentOut::Text(text)),
            _ => None,
        },
        _ => Some(ContentOut::Blocks(blocks)),
    };
    Ok(BlockOut::ToolResult {
        tool_use_id: anthropic_id(&result.call_id),
        content,
        is_error: result.is_error,
    })
}

fn tool_out<'r>(tool: &'r Tool<'r>, no_parameters: &'r RawValue) -> ToolOut<'r> {
    ToolOut {
        name: &tool.name,
        description: tool.description.as_deref(),
        // `strict` is not sent: Anthropic takes it only behind a beta
        // header (docs/translation.md, advisory fields).
        input_schema: tool.parameters.as_deref().unwrap_or(no_parameters),
    }
}

fn tool_choice_out<'r>(req: &'r Request<'r>) -> Option<ToolChoiceOut<'r>> {
    if req.tools.is_empty() {
        return None;
    }
    let serial = req.parallel_tool_calls == Some(false);
    let (kind, name) = match &req.tool_choice {
        Some(ToolChoice::None) => ("none", None),
        Some(ToolChoice::Auto) => ("auto", None),
        Some(ToolChoice::Required) => ("any", None),
        Some(ToolChoice::Tool(name)) => ("tool", Some(&**name)),
        None if serial => ("auto", None),
        None => return None,
    };
    Some(ToolChoiceOut {
        kind,
        name,
        disable_parallel_tool_use: serial && kind != "none",
    })
}

/// Thinking for the requested reasoning (docs/translation.md,
/// "Reasoning"): the budget is capped below `max_tokens`, as Anthropic
/// requires; what Anthropic cannot combine with thinking is refused.
fn thinking_out(
    ctx: &Ctx<'_>,
    req: &Request<'_>,
    max_tokens: u64,
) -> Result<Option<ThinkingOut>, Refusal> {
    let r = &req.reasoning;
    let wanted = match (r.off, r.budget, r.effort) {
        (true, _, _) => return Ok(None),
        (false, Some(budget), _) => budget,
        (false, None, Some(effort)) => effort.budget(),
        (false, None, None) => return Ok(None),
    };
    if continues_tool_loop(req) {
        // Anthropic requires the assistant turn being continued to start
        // with a thinking block it signed; a translated history has none,
        // so this turn runs without thinking (docs/translation.md).
        return Ok(None);
    }
    if max_tokens <= MIN_BUDGET {
        return Err(ctx.refuse(
            "max tokens",
            format!("reasoning on messages needs more than {MIN_BUDGET} max tokens"),
        ));
    }
    refuse_with_thinking(ctx, req)?;
    Ok(Some(ThinkingOut {
        kind: "enabled",
        budget_tokens: wanted.clamp(MIN_BUDGET, max_tokens - 1),
    }))
}

/// The last turn hands tool results back to an assistant tool call.
fn continues_tool_loop(req: &Request<'_>) -> bool {
    req.turns
        .iter()
        .rev()
        .find(|t| t.role != Role::System)
        .is_some_and(|t| {
            t.role == Role::User && t.parts.iter().any(|p| matches!(p, Part::ToolResult(_)))
        })
}

fn refuse_with_thinking(ctx: &Ctx<'_>, req: &Request<'_>) -> Result<(), Refusal> {
    if matches!(
        req.tool_choice,
        Some(ToolChoice::Required | ToolChoice::Tool(_))
    ) {
        return Err(ctx.refuse(
            "tool_choice",
            "messages cannot force a tool while reasoning is on",
        ));
    }
    if req.temperature.is_some_and(|t| t != 1.0) {
        return Err(ctx.refuse(
            "temperature",
            "messages accepts only temperature 1 while reasoning is on",
        ));
    }
    if req.top_p.is_some_and(|p| p < 0.95) {
        return Err(ctx.refuse(
            "top_p",
            "messages accepts top_p of 0.95 or more while reasoning is on",
        ));
    }
    Ok(())
}

/// Structured output as a forced tool (docs/translation.md, "Structured
/// output"): its input schema is the requested schema.
fn json_tool(
    ctx: &Ctx<'_>,
    req: &Request<'_>,
    thinking: bool,
) -> Result<Option<(String, Box<RawValue>)>, Refusal> {
    let (name, schema) = match &req.format {
        None | Some(Format::Text) => return Ok(None),
        Some(Format::JsonObject) => (None, r#"{"type":"object"}"#.to_owned()),
        Some(Format::JsonSchema { name, schema, .. }) => (name.as_deref(), schema.get().to_owned()),
    };
    if !req.tools.is_empty() {
        return Err(ctx.refuse(
            "structured output",
            "messages gets structured output through a forced tool, which cannot be combined with the request's own tools",
        ));
    }
    if thinking {
        return Err(ctx.refuse(
            "structured output",
            "messages gets structured output through a forced tool, which cannot be combined with reasoning",
        ));
    }
    if !schema_is_object(&schema) {
        return Err(ctx.refuse(
            "structured output",
            "messages needs an object schema (a tool input is an object)",
        ));
    }
    let raw = RawValue::from_string(schema)
        .map_err(|e| ctx.refuse("structured output", e.to_string()))?;
    let name = name
        .map(|n| anthropic_id(n).into_owned())
        .unwrap_or_else(|| "json_answer".to_owned());
    Ok(Some((name, raw)))
}

fn schema_is_object(schema: &str) -> bool {
    #[derive(Deserialize)]
    struct Root<'a> {
        #[serde(rename = "type", borrow)]
        kind: Option<Str<'a>>,
    }
    serde_json::from_str::<Root<'_>>(schema).is_ok_and(|r| r.kind.as_deref() == Some("object"))
}
