//! OpenAI Responses requests: the reader (a Responses client's body, as
//! Codex sends it) and the writer (the body for a Responses upstream).

use std::borrow::Cow;
use std::collections::HashSet;

use serde::Serialize;
use serde_json::value::RawValue;
use tb_domain::Protocol;

use super::chat::{arguments_text, joined, simple_choice};
use super::namespace::{flat_name, unique_flat_name};
use super::openai::{self, FormatOut, FunctionOut, SchemaOut, TextOr, ToolChoiceOut};
use super::{Ctx, ERROR_PREFIX, effort, join, openai_format, schema_format, to_body};
use crate::ir::{
    Args, Format, Image, Part, Reasoning, Request, ResultPart, Role, Tool, ToolCall, ToolChoice,
    ToolResult, Turn, paragraphs,
};
use crate::wire::{self, Str, StrOr, json_string, wire};
use crate::{NamespacedTool, Refusal};

wire! {
    struct ResponsesRequest {
        model: Str<'a> = "model",
        input: StrOr<'a, Vec<Item<'a>>> = "input",
        instructions: Str<'a> = "instructions",
        tools: Vec<ResponsesTool<'a>> = "tools",
        tool_choice: StrOr<'a, ResponsesToolChoice<'a>> = "tool_choice",
        parallel_tool_calls: bool = "parallel_tool_calls",
        max_output_tokens: u64 = "max_output_tokens",
        temperature: f64 = "temperature",
        top_p: f64 = "top_p",
        reasoning: ResponsesReasoning<'a> = "reasoning",
        text: TextConfig<'a> = "text",
        stream: bool = "stream",
        user: Str<'a> = "user",
        safety_identifier: Str<'a> = "safety_identifier",
        previous_response_id: Str<'a> = "previous_response_id",
        conversation: &'a RawValue = "conversation",
        background: bool = "background",
    }
}

/// Top-level Responses fields dropped on a translated route: Codex sends
/// `store: false`, `include: ["reasoning.encrypted_content"]`,
/// `prompt_cache_key` and `client_metadata` on every request
/// (docs/translation.md).
const ADVISORY: &[&str] = &[
    "store",
    "include",
    "prompt_cache_key",
    "prompt_cache_retention",
    "service_tier",
    "stream_options",
    "metadata",
    "client_metadata",
    "truncation",
];

wire! {
    struct ResponsesReasoning {
        effort: Str<'a> = "effort",
        summary: Str<'a> = "summary",
        generate_summary: Str<'a> = "generate_summary",
    }
}

wire! {
    struct TextConfig {
        format: FormatConfig<'a> = "format",
        verbosity: Str<'a> = "verbosity",
    }
}

wire! {
    struct FormatConfig {
        kind: Str<'a> = "type",
        name: Str<'a> = "name",
        description: Str<'a> = "description",
        schema: &'a RawValue = "schema",
        strict: bool = "strict",
    }
}

wire! {
    /// An input item: every kind's members in one struct, told apart by
    /// `type` (a tagged enum would buffer each item).
    struct Item {
        kind: Str<'a> = "type",
        role: Str<'a> = "role",
        content: StrOr<'a, Vec<ItemPart<'a>>> = "content",
        call_id: Str<'a> = "call_id",
        name: Str<'a> = "name",
        arguments: Str<'a> = "arguments",
        output: StrOr<'a, Vec<ItemPart<'a>>> = "output",
        input: Str<'a> = "input",
        summary: Vec<ItemPart<'a>> = "summary",
        encrypted_content: Str<'a> = "encrypted_content",
        namespace: Str<'a> = "namespace",
        tools: Vec<ResponsesTool<'a>> = "tools",
    }
}

/// Item members that only identify or describe an earlier item.
const ITEM_ADVISORY: &[&str] = &["id", "status"];

wire! {
    struct ItemPart {
        kind: Str<'a> = "type",
        text: Str<'a> = "text",
        image_url: Str<'a> = "image_url",
        refusal: Str<'a> = "refusal",
    }
}

/// Part members that change nothing about the content sent.
const PART_ADVISORY: &[&str] = &["detail", "annotations", "logprobs"];

wire! {
    struct ResponsesTool {
        kind: Str<'a> = "type",
        name: Str<'a> = "name",
        description: Str<'a> = "description",
        parameters: &'a RawValue = "parameters",
        strict: bool = "strict",
        format: CustomFormat<'a> = "format",
        tools: Vec<ResponsesTool<'a>> = "tools",
    }
}

/// Function tool members dropped: `defer_loading` asks OpenAI to load the
/// tool's definition only when a tool search finds it; a translated
/// request sends every declared tool whole.
const TOOL_ADVISORY: &[&str] = &["defer_loading"];

wire! {
    struct CustomFormat {
        kind: Str<'a> = "type",
        syntax: Str<'a> = "syntax",
        definition: Str<'a> = "definition",
    }
}

wire! {
    struct ResponsesToolChoice {
        kind: Str<'a> = "type",
        name: Str<'a> = "name",
        namespace: Str<'a> = "namespace",
    }
}

/// Reads a Responses client's body.
pub(crate) fn read<'a>(ctx: &Ctx<'_>, body: &'a [u8]) -> Result<Request<'a>, Refusal> {
    let req: ResponsesRequest<'a> = wire::parse(body).map_err(|e| ctx.malformed(&e))?;
    ctx.check_extra(&req.extra, "", ADVISORY)?;
    refuse_server_state(ctx, &req)?;
    let mut out = Request {
        model: req.model.unwrap_or_default(),
        stream: req.stream.unwrap_or(false),
        include_usage: true,
        max_tokens: req.max_output_tokens,
        temperature: req.temperature,
        top_p: req.top_p,
        user: req.user.or(req.safety_identifier),
        parallel_tool_calls: req.parallel_tool_calls,
        ..Request::default()
    };
    out.system
        .extend(req.instructions.filter(|i| !i.is_empty()));
    if let Some(reasoning) = req.reasoning {
        out.reasoning = read_reasoning(ctx, reasoning)?;
    }
    if let Some(text) = req.text {
        ctx.check_extra(&text.extra, "text", &[])?;
        out.verbosity = text.verbosity;
        out.format = text.format.map(|f| read_format(ctx, f)).transpose()?;
    }
    read_tools(ctx, "tools", req.tools.unwrap_or_default(), &mut out)?;
    match req.input {
        Some(StrOr::Str(text)) if !text.is_empty() => out.push(Role::User, Part::Text(text)),
        Some(StrOr::Other(items)) => read_items(ctx, items, &mut out)?,
        _ => {}
    }
    out.tool_choice = req
        .tool_choice
        .map(|c| read_tool_choice(ctx, c, &out))
        .transpose()?;
    Ok(out)
}

/// State kept on OpenAI's servers cannot be reached from another upstream.
fn refuse_server_state(ctx: &Ctx<'_>, req: &ResponsesRequest<'_>) -> Result<(), Refusal> {
    let server_side = "refers to conversation state stored by OpenAI, which another upstream cannot read; send the whole conversation in `input`";
    if req.previous_response_id.is_some() {
        return Err(ctx.refuse("previous_response_id", server_side));
    }
    if req.conversation.is_some_and(|c| !wire::is_unset(c)) {
        return Err(ctx.refuse("conversation", server_side));
    }
    if req.background == Some(true) {
        return Err(ctx.refuse("background", "background responses are stored by OpenAI"));
    }
    Ok(())
}

fn read_reasoning(ctx: &Ctx<'_>, r: ResponsesReasoning<'_>) -> Result<Reasoning, Refusal> {
    ctx.check_extra(&r.extra, "reasoning", &[])?;
    let mut out = Reasoning {
        visible: r.summary.is_some() || r.generate_summary.is_some(),
        ..Reasoning::default()
    };
    if let Some(word) = &r.effort {
        effort(ctx, "reasoning.effort", word, &mut out)?;
    }
    Ok(out)
}

fn read_format<'a>(ctx: &Ctx<'_>, f: FormatConfig<'a>) -> Result<Format<'a>, Refusal> {
    ctx.check_extra(&f.extra, "text.format", &[])?;
    openai_format(ctx, "text.format", f.kind.as_deref(), || {
        schema_format(
            ctx,
            "text.format",
            f.schema,
            f.name,
            f.description,
            f.strict,
        )
    })
}

fn read_items<'a>(
    ctx: &Ctx<'_>,
    mut items: Vec<Item<'a>>,
    out: &mut Request<'a>,
) -> Result<(), Refusal> {
    // Tools declared in `additional_tools` items (Codex's Responses Lite)
    // first: the history's calls may name them.
    for (i, item) in items.iter_mut().enumerate() {
        if item.kind.as_deref() == Some("additional_tools") {
            let tools = item.tools.take().unwrap_or_default();
            read_tools(ctx, &format!("input[{i}].tools"), tools, out)?;
        }
    }
    for (i, item) in items.into_iter().enumerate() {
        let path = format!("input[{i}]");
        ctx.check_extra(&item.extra, &path, ITEM_ADVISORY)?;
        let kind = item.kind.clone();
        match kind.as_deref() {
            Some("message") | None => read_message(ctx, &path, item, out)?,
            Some("additional_tools") => {}
            Some(call @ ("function_call" | "custom_tool_call")) => {
                let arguments = if call == "function_call" {
                    item.arguments.unwrap_or_default()
                } else {
                    Str::owned(custom_arguments(item.input.as_deref().unwrap_or("")))
                };
                let name = call_name(out, item.namespace, item.name);
                out.push(
                    Role::Assistant,
                    Part::ToolCall(ToolCall {
                        id: item.call_id.unwrap_or_default(),
                        name,
                        arguments: Args::Text(arguments),
                    }),
                );
            }
            Some("function_call_output" | "custom_tool_call_output") => {
                let result = read_output(ctx, &path, item)?;
                out.push(Role::User, Part::ToolResult(result));
            }
            Some("reasoning") => {
                if let Some(text) = visible_reasoning(item) {
                    out.push(Role::Assistant, Part::Reasoning(text));
                }
            }
            Some(other) => return Err(refuse_item(ctx, &path, other)),
        }
    }
    Ok(())
}

fn refuse_item(ctx: &Ctx<'_>, path: &str, kind: &str) -> Refusal {
    let reason = match kind {
        "item_reference" => {
            "refers to an item stored by OpenAI, which another upstream cannot read".to_owned()
        }
        "compaction" | "compaction_summary" => {
            "an encrypted compaction summary can only be read by OpenAI".to_owned()
        }
        _ => format!(
            "`{kind}` items belong to a built-in tool that {} cannot run",
            ctx.target_name()
        ),
    };
    ctx.refuse(join(path, "type"), reason)
}

/// A custom tool's free-form input as the arguments of the function tool
/// it is sent as: `{"input": "<text>"}`.
fn custom_arguments(input: &str) -> String {
    format!("{{\"input\":{}}}", json_string(input))
}

/// Reasoning with `encrypted_content` belongs to OpenAI and is dropped
/// whole; reasoning without it came from a translated route and its
/// summary or text is kept.
fn visible_reasoning<'a>(item: Item<'a>) -> Option<Str<'a>> {
    if item
        .encrypted_content
        .as_deref()
        .is_some_and(|e| !e.is_empty())
    {
        return None;
    }
    let mut texts: Vec<Str<'a>> = item
        .summary
        .unwrap_or_default()
        .into_iter()
        .filter_map(|p| p.text)
        .collect();
    if let Some(StrOr::Other(parts)) = item.content {
        texts.extend(parts.into_iter().filter_map(|p| p.text));
    }
    paragraphs(texts)
}

fn read_message<'a>(
    ctx: &Ctx<'_>,
    path: &str,
    item: Item<'a>,
    out: &mut Request<'a>,
) -> Result<(), Refusal> {
    let role = match item.role.as_deref() {
        Some("user") => Role::User,
        Some("assistant") => Role::Assistant,
        Some("system" | "developer") => Role::System,
        other => return Err(ctx.refuse(join(path, "role"), format!("unknown role {other:?}"))),
    };
    let parts = read_parts(ctx, path, "content", item.content)?;
    for part in parts {
        match (role, part) {
            (Role::System, Part::Text(text)) if out.turns.is_empty() => out.system.push(text),
            (Role::System, Part::Image(_)) => {
                return Err(ctx.refuse(join(path, "content"), "a system message holds text only"));
            }
            (role, part) => out.push(role, part),
        }
    }
    Ok(())
}

fn read_parts<'a>(
    ctx: &Ctx<'_>,
    path: &str,
    member: &str,
    content: Option<StrOr<'a, Vec<ItemPart<'a>>>>,
) -> Result<Vec<Part<'a>>, Refusal> {
    let parts = match content {
        None => return Ok(Vec::new()),
        Some(StrOr::Str(text)) => {
            return Ok((!text.is_empty())
                .then_some(Part::Text(text))
                .into_iter()
                .collect());
        }
        Some(StrOr::Other(parts)) => parts,
    };
    let mut out = Vec::with_capacity(parts.len());
    for (j, part) in parts.into_iter().enumerate() {
        let part_path = format!("{path}.{member}[{j}]");
        let known = [
            "input_text",
            "output_text",
            "text",
            "refusal",
            "input_image",
        ];
        if part.kind.as_deref().is_some_and(|k| known.contains(&k)) {
            ctx.check_extra(&part.extra, &part_path, PART_ADVISORY)?;
        }
        match part.kind.as_deref() {
            Some("input_text" | "output_text" | "text") => {
                out.extend(part.text.filter(|t| !t.is_empty()).map(Part::Text));
            }
            Some("refusal") => out.extend(part.refusal.filter(|t| !t.is_empty()).map(Part::Text)),
            Some("input_image") => match part.image_url {
                Some(url) => out.push(Part::Image(Image::from_url(url))),
                None => {
                    return Err(ctx.refuse(
                        join(&part_path, "file_id"),
                        "images stored by OpenAI (file_id) cannot be read by another upstream",
                    ));
                }
            },
            other => {
                return Err(ctx.refuse(
                    join(&part_path, "type"),
                    format!("{other:?} content is not translated (text and images are)"),
                ));
            }
        }
    }
    Ok(out)
}

fn read_output<'a>(ctx: &Ctx<'_>, path: &str, item: Item<'a>) -> Result<ToolResult<'a>, Refusal> {
    let mut content = Vec::new();
    for part in read_parts(ctx, path, "output", item.output)? {
        match part {
            Part::Text(text) => content.push(ResultPart::Text(text)),
            Part::Image(_) if ctx.target == Protocol::ChatCompletions => {
                return Err(ctx.refuse(
                    join(path, "output"),
                    "chat_completions tool results hold text only, not images",
                ));
            }
            Part::Image(image) => content.push(ResultPart::Image(image)),
            _ => {}
        }
    }
    Ok(ToolResult {
        call_id: item.call_id.unwrap_or_default(),
        content,
        is_error: false,
    })
}

/// Reads a list of tool declarations (`tools`, or an `additional_tools`
/// item's) into `out`: function and custom tools, the tools of each
/// namespace under a flat name, hosted tools the model may simply not
/// call dropped, other tools refused.
fn read_tools<'a>(
    ctx: &Ctx<'_>,
    path: &str,
    tools: Vec<ResponsesTool<'a>>,
    out: &mut Request<'a>,
) -> Result<(), Refusal> {
    // Names a flattened tool must not take: every other top-level tool's.
    let mut taken: HashSet<String> = HashSet::new();
    if tools.iter().any(|t| t.kind.as_deref() == Some("namespace")) {
        taken.extend(out.tools.iter().map(|t| t.name.to_string()));
        taken.extend(
            tools
                .iter()
                .filter(|t| matches!(t.kind.as_deref(), Some("function" | "custom")))
                .filter_map(|t| t.name.as_deref().map(str::to_owned)),
        );
    }
    out.tools.reserve(tools.len());
    for (i, tool) in tools.into_iter().enumerate() {
        let path = format!("{path}[{i}]");
        match tool.kind.as_deref() {
            Some("function") => {
                ctx.check_extra(&tool.extra, &path, TOOL_ADVISORY)?;
                refuse_nested(ctx, &path, &tool)?;
                out.tools.push(Tool {
                    name: tool.name.unwrap_or_default(),
                    description: tool.description,
                    parameters: tool.parameters.map(Cow::Borrowed),
                    strict: tool.strict,
                });
            }
            Some("custom") => {
                ctx.check_extra(&tool.extra, &path, &[])?;
                refuse_nested(ctx, &path, &tool)?;
                let name = tool.name.unwrap_or_default();
                out.custom_tools.push(name.to_string());
                out.tools.push(custom_tool(
                    ctx,
                    &path,
                    name,
                    tool.description,
                    tool.format,
                )?);
            }
            Some("namespace") => read_namespace(ctx, &path, tool, &mut taken, out)?,
            Some(kind) if dropped_tool(kind) => {}
            other => return Err(refuse_tool(ctx, &path, other.unwrap_or(""))),
        }
    }
    Ok(())
}

/// A function or custom tool has no `tools` of its own.
fn refuse_nested(ctx: &Ctx<'_>, path: &str, tool: &ResponsesTool<'_>) -> Result<(), Refusal> {
    match &tool.tools {
        Some(tools) if !tools.is_empty() => {
            Err(ctx.refuse(join(path, "tools"), "only a namespace holds tools"))
        }
        _ => Ok(()),
    }
}

/// The tools of a `namespace`, each sent as a top-level tool under its
/// flat name (`request/namespace.rs`), its description followed by the
/// namespace's; the mapping goes into the answer context.
fn read_namespace<'a>(
    ctx: &Ctx<'_>,
    path: &str,
    namespace: ResponsesTool<'a>,
    taken: &mut HashSet<String>,
    out: &mut Request<'a>,
) -> Result<(), Refusal> {
    ctx.check_extra(&namespace.extra, path, &[])?;
    let ns = namespace.name.unwrap_or_default();
    if ns.is_empty() {
        return Err(ctx.refuse(join(path, "name"), "a namespace needs a name"));
    }
    for (j, tool) in namespace.tools.unwrap_or_default().into_iter().enumerate() {
        let path = format!("{path}.tools[{j}]");
        let custom = match tool.kind.as_deref() {
            Some("function") => false,
            Some("custom") => true,
            other => {
                return Err(ctx.refuse(
                    join(&path, "type"),
                    format!(
                        "{other:?} tools inside a namespace are not translated (function and custom tools are)"
                    ),
                ));
            }
        };
        ctx.check_extra(&tool.extra, &path, if custom { &[] } else { TOOL_ADVISORY })?;
        refuse_nested(ctx, &path, &tool)?;
        let name = tool.name.unwrap_or_default();
        if name.is_empty() {
            return Err(ctx.refuse(join(&path, "name"), "a tool needs a name"));
        }
        let flat = unique_flat_name(&ns, &name, taken);
        taken.insert(flat.clone());
        let description = combined(tool.description, namespace.description.as_deref());
        out.tools.push(if custom {
            custom_tool(
                ctx,
                &path,
                Str::owned(flat.clone()),
                description,
                tool.format,
            )?
        } else {
            Tool {
                name: Str::owned(flat.clone()),
                description,
                parameters: tool.parameters.map(Cow::Borrowed),
                strict: tool.strict,
            }
        });
        out.namespaced_tools.push(NamespacedTool {
            flat,
            namespace: ns.to_string(),
            name: name.to_string(),
            custom,
        });
    }
    Ok(())
}

/// A namespaced tool's description: its own, then the namespace's (which
/// says what the group is for), a blank line apart.
fn combined<'a>(tool: Option<Str<'a>>, namespace: Option<&str>) -> Option<Str<'a>> {
    match (
        tool.filter(|t| !t.is_empty()),
        namespace.filter(|n| !n.is_empty()),
    ) {
        (Some(tool), Some(namespace)) => Some(Str::owned(format!("{}\n\n{namespace}", &*tool))),
        (Some(tool), None) => Some(tool),
        (None, Some(namespace)) => Some(Str::owned(namespace.to_owned())),
        (None, None) => None,
    }
}

/// The upstream's name for a call in the history: a call carrying a
/// `namespace` names its tool's flat name, as the tools list does.
fn call_name<'a>(out: &Request<'a>, namespace: Option<Str<'a>>, name: Option<Str<'a>>) -> Str<'a> {
    let name = name.unwrap_or_default();
    match namespace.filter(|n| !n.is_empty()) {
        None => name,
        Some(ns) => Str::owned(flat_for(out, &ns, &name)),
    }
}

/// The flat name of `namespace`'s tool `name`: the one its declaration got,
/// or the same rule for a tool this request does not declare.
fn flat_for(out: &Request<'_>, namespace: &str, name: &str) -> String {
    out.namespaced_tools
        .iter()
        .find(|t| t.namespace == namespace && t.name == name)
        .map(|t| t.flat.clone())
        .unwrap_or_else(|| flat_name(namespace, name))
}

/// Hosted tools dropped rather than refused when the client declares them
/// without forcing them (docs/translation.md, "Tools"): Codex declares
/// `web_search` on every request (and `image_generation`, `tool_search`
/// when the model supports them). The upstream cannot run them and the
/// model, not seeing them, simply does not call them; refusing would make
/// the whole agent unusable over a translated route. A `tool_choice` that
/// forces one is still refused.
fn dropped_tool(kind: &str) -> bool {
    kind.starts_with("web_search") || matches!(kind, "image_generation" | "tool_search")
}

fn refuse_tool(ctx: &Ctx<'_>, path: &str, kind: &str) -> Refusal {
    let reason = match kind {
        "local_shell" => format!(
            "`local_shell` is the shell tool OpenAI's codex models call natively; {} has no equivalent (Codex sends a function `shell` tool for other models)",
            ctx.target_name()
        ),
        "" => "a tool needs a type".to_owned(),
        _ => format!(
            "`{kind}` is one of OpenAI's built-in tools; {} cannot run it and has no equivalent (declare a function tool instead)",
            ctx.target_name()
        ),
    };
    ctx.refuse(join(path, "type"), reason)
}

/// A `custom` tool (free-form text input, as Codex's `apply_patch`) as a
/// function tool with one string parameter, `input`; its grammar goes
/// into the parameter's description so the model still knows the format.
fn custom_tool<'a>(
    ctx: &Ctx<'_>,
    path: &str,
    name: Str<'a>,
    description: Option<Str<'a>>,
    format: Option<CustomFormat<'a>>,
) -> Result<Tool<'a>, Refusal> {
    let mut about = String::from("The tool's input, as free-form text.");
    if let Some(format) = format {
        ctx.check_extra(&format.extra, &join(path, "format"), &[])?;
        if let Some(definition) = format.definition {
            let syntax = format.syntax.as_deref().unwrap_or("grammar");
            about.push_str(&format!(
                " It must follow this {syntax} grammar:\n{}",
                &*definition
            ));
        }
    }
    let schema = format!(
        r#"{{"type":"object","properties":{{"input":{{"type":"string","description":{}}}}},"required":["input"],"additionalProperties":false}}"#,
        json_string(&about)
    );
    Ok(Tool {
        name,
        description,
        parameters: Some(wire::raw_owned(schema)),
        strict: None,
    })
}

fn read_tool_choice<'a>(
    ctx: &Ctx<'_>,
    choice: StrOr<'a, ResponsesToolChoice<'a>>,
    out: &Request<'a>,
) -> Result<ToolChoice<'a>, Refusal> {
    match choice {
        StrOr::Str(word) => simple_choice(ctx, "tool_choice", &word),
        StrOr::Other(c) => {
            ctx.check_extra(&c.extra, "tool_choice", &[])?;
            match c.kind.as_deref() {
                Some("function" | "custom") => Ok(ToolChoice::Tool(call_name(out, c.namespace, c.name))),
                Some(kind) if dropped_tool(kind) => Err(ctx.refuse(
                    "tool_choice.type",
                    format!(
                        "`{kind}` is one of OpenAI's built-in tools, which {} cannot run, so it cannot be forced",
                        ctx.target_name()
                    ),
                )),
                other => Err(ctx.refuse(
                    "tool_choice.type",
                    format!("{other:?} cannot be translated (only a function or custom tool can be forced)"),
                )),
            }
        }
    }
}

// ---------------------------------------------------------------- writer

#[derive(Serialize)]
struct ResponsesOut<'r> {
    model: &'r str,
    #[serde(skip_serializing_if = "Option::is_none")]
    instructions: Option<Cow<'r, str>>,
    input: Vec<ItemOut<'r>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tools: Vec<ToolOut<'r>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_choice: Option<ToolChoiceOut<ForcedOut<'r>>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    parallel_tool_calls: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_output_tokens: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_p: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reasoning: Option<ReasoningOut>,
    #[serde(skip_serializing_if = "Option::is_none")]
    text: Option<TextOut<'r>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    user: Option<&'r str>,
    store: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    stream: bool,
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum ItemOut<'r> {
    Message {
        role: &'static str,
        content: Vec<PartOut<'r>>,
    },
    FunctionCall {
        call_id: &'r str,
        name: &'r str,
        arguments: Cow<'r, str>,
    },
    FunctionCallOutput {
        call_id: &'r str,
        output: OutputOut<'r>,
    },
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum PartOut<'r> {
    InputText { text: Cow<'r, str> },
    OutputText { text: &'r str },
    InputImage { image_url: Cow<'r, str> },
}

type OutputOut<'r> = TextOr<'r, PartOut<'r>>;

/// Responses writes a function's members beside `type`.
#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum ToolOut<'r> {
    Function(FunctionOut<'r>),
}

/// The tool a Responses `tool_choice` forces.
#[derive(Serialize)]
struct ForcedOut<'r> {
    #[serde(rename = "type")]
    kind: &'static str,
    name: &'r str,
}

#[derive(Serialize)]
struct ReasoningOut {
    effort: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    summary: Option<&'static str>,
}

#[derive(Serialize)]
struct TextOut<'r> {
    #[serde(skip_serializing_if = "Option::is_none")]
    format: Option<FormatOut<SchemaOut<'r>>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    verbosity: Option<&'r str>,
}

/// Writes the body for a Responses upstream. `store` is always false:
/// the other protocols keep nothing on the server, and a translated
/// conversation is sent whole every time.
pub(crate) fn write(ctx: &Ctx<'_>, req: &Request<'_>) -> Result<Vec<u8>, Refusal> {
    if !req.stop.is_empty() {
        return Err(ctx.refuse("stop", "responses has no stop sequences"));
    }
    let mut input = Vec::with_capacity(req.turns.len());
    for turn in &req.turns {
        write_turn(turn, &mut input);
    }
    let has_tools = !req.tools.is_empty();
    let out = ResponsesOut {
        model: &req.model,
        instructions: (!req.system.is_empty()).then(|| joined(&req.system)),
        input,
        tools: req.tools.iter().map(tool_out).collect(),
        tool_choice: req.tool_choice.as_ref().map(tool_choice_out),
        parallel_tool_calls: req.parallel_tool_calls.filter(|_| has_tools),
        max_output_tokens: req.max_tokens,
        temperature: req.temperature,
        top_p: req.top_p,
        reasoning: req.reasoning.openai_effort().map(|effort| ReasoningOut {
            effort: effort.openai(),
            summary: req.reasoning.visible.then_some("auto"),
        }),
        text: text_out(req),
        user: req.user.as_deref(),
        store: false,
        stream: req.stream,
    };
    to_body(ctx, &out)
}

fn write_turn<'r>(turn: &'r Turn<'r>, out: &mut Vec<ItemOut<'r>>) {
    let role = match turn.role {
        Role::System => "system",
        Role::User => "user",
        Role::Assistant => "assistant",
    };
    let mut content: Vec<PartOut<'r>> = Vec::new();
    for part in &turn.parts {
        match part {
            Part::Text(text) if turn.role == Role::Assistant => {
                content.push(PartOut::OutputText { text })
            }
            Part::Text(text) => content.push(PartOut::InputText {
                text: Cow::Borrowed(text),
            }),
            Part::Image(image) => content.push(PartOut::InputImage {
                image_url: image.to_url(),
            }),
            Part::ToolCall(call) => {
                flush_message(role, &mut content, out);
                out.push(ItemOut::FunctionCall {
                    call_id: &call.id,
                    name: &call.name,
                    arguments: arguments_text(&call.arguments),
                });
            }
            Part::ToolResult(result) => {
                flush_message(role, &mut content, out);
                out.push(output_item(result));
            }
            // OpenAI accepts only the reasoning items it encrypted itself.
            Part::Reasoning(_) => {}
        }
    }
    flush_message(role, &mut content, out);
}

fn flush_message<'r>(
    role: &'static str,
    content: &mut Vec<PartOut<'r>>,
    out: &mut Vec<ItemOut<'r>>,
) {
    if !content.is_empty() {
        out.push(ItemOut::Message {
            role,
            content: std::mem::take(content),
        });
    }
}

fn output_item<'r>(result: &'r ToolResult<'r>) -> ItemOut<'r> {
    let prefix = result.is_error.then_some(ERROR_PREFIX);
    let output = match result.content.as_slice() {
        [] => OutputOut::Text(Cow::Borrowed(prefix.unwrap_or(""))),
        [ResultPart::Text(text)] => OutputOut::Text(match prefix {
            Some(p) => Cow::Owned(format!("{p}{}", &**text)),
            None => Cow::Borrowed(text),
        }),
        parts => {
            let mut out: Vec<PartOut<'r>> = prefix
                .map(|p| PartOut::InputText {
                    text: Cow::Borrowed(p),
                })
                .into_iter()
                .collect();
            out.extend(parts.iter().map(|p| match p {
                ResultPart::Text(text) => PartOut::InputText {
                    text: Cow::Borrowed(text),
                },
                ResultPart::Image(image) => PartOut::InputImage {
                    image_url: image.to_url(),
                },
            }));
            OutputOut::Parts(out)
        }
    };
    ItemOut::FunctionCallOutput {
        call_id: &result.call_id,
        output,
    }
}

fn tool_out<'r>(tool: &'r Tool<'r>) -> ToolOut<'r> {
    ToolOut::Function(FunctionOut::of(tool))
}

fn tool_choice_out<'r>(choice: &'r ToolChoice<'r>) -> ToolChoiceOut<ForcedOut<'r>> {
    openai::tool_choice_out(choice, |name| ForcedOut {
        kind: "function",
        name,
    })
}

fn text_out<'r>(req: &'r Request<'r>) -> Option<TextOut<'r>> {
    let format = req
        .format
        .as_ref()
        .map(|f| openai::format_out(f, |schema| schema));
    let verbosity = req.verbosity.as_deref();
    (format.is_some() || verbosity.is_some()).then_some(TextOut { format, verbosity })
}
