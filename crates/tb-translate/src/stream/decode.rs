//! Reading each upstream protocol's stream events into [`Ev`]s.
//!
//! A decoder keeps only what later events need to be understood: which
//! block or item index is which tool call, whether a tool call's arguments
//! have been seen, the usage so far.

use serde_json::value::RawValue;
use tb_domain::Protocol;

use super::Ev;
use crate::ir::Finish;
use crate::usage::{MessagesCounts, WireUsage};
use crate::wire::{self, First, Str, wire};

#[derive(Debug)]
pub(super) enum Decoder {
    Chat(ChatDecoder),
    Messages(MessagesDecoder),
    Responses(ResponsesDecoder),
    None,
}

impl Decoder {
    pub(super) fn new(upstream: Protocol) -> Decoder {
        match upstream {
            Protocol::ChatCompletions => Decoder::Chat(ChatDecoder::default()),
            Protocol::Messages => Decoder::Messages(MessagesDecoder::default()),
            Protocol::Responses => Decoder::Responses(ResponsesDecoder::default()),
            Protocol::ImagesGenerations
            | Protocol::ImagesEdits
            | Protocol::Embeddings
            | Protocol::Videos => Decoder::None,
        }
    }

    /// Decodes one event; an event whose data does not parse is skipped.
    pub(super) fn decode(&mut self, event: Option<&str>, data: &str, emit: &mut dyn FnMut(Ev<'_>)) {
        match self {
            Decoder::Chat(d) => d.decode(data, emit),
            Decoder::Messages(d) => d.decode(event, data, emit),
            Decoder::Responses(d) => d.decode(event, data, emit),
            Decoder::None => {}
        }
    }
}

/// A tool call being streamed: the upstream's handle for it and ours.
#[derive(Debug)]
struct Call {
    /// Chat: the `tool_calls[].index`; Messages: the block index;
    /// Responses: the output index.
    upstream: u64,
    id: String,
    key: u32,
    args_seen: bool,
}

/// The tool calls a stream has opened, and the key the next one gets.
#[derive(Debug, Default)]
struct Calls {
    open: Vec<Call>,
    next_key: u32,
}

impl Calls {
    /// Opens a call under the upstream's handle; `id` is given the key
    /// (for a call the upstream gave no id).
    fn open(&mut self, upstream: u64, id: impl FnOnce(u32) -> String, args_seen: bool) -> &Call {
        let key = self.next_key;
        self.next_key = self.next_key.saturating_add(1);
        let id = id(key);
        self.open.push_mut(Call {
            upstream,
            id,
            key,
            args_seen,
        })
    }

    /// The latest call under the upstream's handle.
    fn find(&mut self, upstream: u64) -> Option<&mut Call> {
        self.open.iter_mut().rev().find(|c| c.upstream == upstream)
    }
}

// ------------------------------------------------------------------ chat

wire! {
    lenient struct ChatChunk {
        id: Str<'a> = "id",
        model: Str<'a> = "model",
        created: u64 = "created",
        choices: First<ChunkChoice<'a>> = "choices",
        usage: WireUsage = "usage",
        error: StreamError<'a> = "error",
    }
}

wire! {
    lenient struct ChunkChoice {
        delta: ChunkDelta<'a> = "delta",
        finish_reason: Str<'a> = "finish_reason",
    }
}

wire! {
    lenient struct ChunkDelta {
        content: Str<'a> = "content",
        reasoning_content: Str<'a> = "reasoning_content",
        reasoning: Str<'a> = "reasoning",
        refusal: Str<'a> = "refusal",
        tool_calls: Vec<ChunkCall<'a>> = "tool_calls",
    }
}

wire! {
    lenient struct ChunkCall {
        index: u64 = "index",
        id: Str<'a> = "id",
        function: ChunkFunction<'a> = "function",
    }
}

wire! {
    lenient struct ChunkFunction {
        name: Str<'a> = "name",
        arguments: Str<'a> = "arguments",
    }
}

wire! {
    lenient struct StreamError {
        kind: Str<'a> = "type",
        code: &'a RawValue = "code",
        message: Str<'a> = "message",
    }
}

#[derive(Debug, Default)]
pub(super) struct ChatDecoder {
    started: bool,
    calls: Calls,
}

impl ChatDecoder {
    fn decode(&mut self, data: &str, emit: &mut dyn FnMut(Ev<'_>)) {
        if data.trim() == "[DONE]" {
            return emit(Ev::Done);
        }
        let Ok(chunk) = wire::parse::<ChatChunk<'_>>(data.as_bytes()) else {
            return;
        };
        if let Some(err) = &chunk.error {
            return emit(Ev::Error {
                kind: err.kind.as_deref().unwrap_or("api_error"),
                message: err.message.as_deref().unwrap_or("upstream error"),
            });
        }
        if !self.started {
            self.started = true;
            emit(Ev::Start {
                id: chunk.id.as_deref().unwrap_or(""),
                model: chunk.model.as_deref().unwrap_or(""),
                created: chunk.created,
            });
        }
        if let Some(choice) = chunk.choices.as_ref().and_then(|c| c.0.as_ref()) {
            self.choice(choice, emit);
        }
        if let Some(usage) = chunk
            .usage
            .as_ref()
            .and_then(|u| u.read(Protocol::ChatCompletions))
        {
            emit(Ev::Usage(usage));
        }
    }

    fn choice(&mut self, choice: &ChunkChoice<'_>, emit: &mut dyn FnMut(Ev<'_>)) {
        if let Some(delta) = &choice.delta {
            let reasoning = delta
                .reasoning_content
                .as_ref()
                .or(delta.reasoning.as_ref());
            if let Some(text) = reasoning.filter(|t| !t.is_empty()) {
                emit(Ev::Reasoning(text));
            }
            if let Some(text) = delta.content.as_ref().filter(|t| !t.is_empty()) {
                emit(Ev::Text(text));
            }
            if let Some(text) = delta.refusal.as_ref().filter(|t| !t.is_empty()) {
                emit(Ev::Refusal(text));
            }
            for call in delta.tool_calls.iter().flatten() {
                self.tool_call(call, emit);
            }
        }
        if let Some(reason) = &choice.finish_reason {
            emit(Ev::Finish(Finish::from_chat(reason), None));
        }
    }

    /// Tool calls are told apart by `index`; a delta that brings a new id
    /// for an index already seen starts another call (some servers give
    /// every call index 0).
    fn tool_call(&mut self, call: &ChunkCall<'_>, emit: &mut dyn FnMut(Ev<'_>)) {
        let index = call.index.unwrap_or(0);
        let function = call.function.as_ref();
        let new_id = call.id.as_deref().filter(|id| !id.is_empty());
        let known = self
            .calls
            .find(index)
            .filter(|c| new_id.is_none_or(|id| id == c.id));
        let key = match known {
            Some(c) => c.key,
            None => {
                let id = |key| new_id.map_or_else(|| format!("call_{key}"), str::to_owned);
                let call = self.calls.open(index, id, false);
                let name = function.and_then(|f| f.name.as_deref()).unwrap_or("");
                emit(Ev::ToolStart {
                    key: call.key,
                    id: &call.id,
                    name,
                });
                call.key
            }
        };
        if let Some(args) = function
            .and_then(|f| f.arguments.as_deref())
            .filter(|a| !a.is_empty())
        {
            emit(Ev::ToolArgs { key, delta: args });
        }
    }
}

// -------------------------------------------------------------- messages

wire! {
    lenient struct MessagesEvent {
        kind: Str<'a> = "type",
        message: StartMessage<'a> = "message",
        index: u64 = "index",
        content_block: BlockStart<'a> = "content_block",
        delta: Delta<'a> = "delta",
        usage: WireUsage = "usage",
        error: StreamError<'a> = "error",
    }
}

wire! {
    lenient struct StartMessage {
        id: Str<'a> = "id",
        model: Str<'a> = "model",
        usage: WireUsage = "usage",
    }
}

wire! {
    lenient struct BlockStart {
        kind: Str<'a> = "type",
        text: Str<'a> = "text",
        thinking: Str<'a> = "thinking",
        id: Str<'a> = "id",
        name: Str<'a> = "name",
        input: &'a RawValue = "input",
    }
}

wire! {
    lenient struct Delta {
        kind: Str<'a> = "type",
        text: Str<'a> = "text",
        thinking: Str<'a> = "thinking",
        partial_json: Str<'a> = "partial_json",
        stop_reason: Str<'a> = "stop_reason",
        stop_sequence: Str<'a> = "stop_sequence",
    }
}

#[derive(Debug, Default)]
pub(super) struct MessagesDecoder {
    calls: Calls,
    counts: MessagesCounts,
}

impl MessagesDecoder {
    fn decode(&mut self, event: Option<&str>, data: &str, emit: &mut dyn FnMut(Ev<'_>)) {
        let Ok(ev) = wire::parse::<MessagesEvent<'_>>(data.as_bytes()) else {
            return;
        };
        let kind = ev.kind.as_deref().or(event).unwrap_or("");
        match kind {
            "message_start" => self.start(ev.message, emit),
            "content_block_start" => {
                self.block_start(ev.index.unwrap_or(0), ev.content_block, emit)
            }
            "content_block_delta" => self.block_delta(ev.index.unwrap_or(0), ev.delta, emit),
            "content_block_stop" => {
                let index = ev.index.unwrap_or(0);
                if let Some(call) = self.calls.find(index) {
                    call.upstream = u64::MAX;
                    emit(Ev::ToolEnd { key: call.key });
                }
            }
            "message_delta" => {
                if let Some(usage) = &ev.usage {
                    self.counts.update(usage);
                }
                if let Some(usage) = self.counts.usage() {
                    emit(Ev::Usage(usage));
                }
                if let Some(delta) = &ev.delta
                    && let Some(reason) = &delta.stop_reason
                {
                    emit(Ev::Finish(
                        Finish::from_messages(reason),
                        delta.stop_sequence.as_deref(),
                    ));
                }
            }
            "message_stop" => emit(Ev::Done),
            "error" => {
                let err = ev.error.unwrap_or_default();
                emit(Ev::Error {
                    kind: err.kind.as_deref().unwrap_or("api_error"),
                    message: err.message.as_deref().unwrap_or("upstream error"),
                });
            }
            _ => {}
        }
    }

    fn start(&mut self, message: Option<StartMessage<'_>>, emit: &mut dyn FnMut(Ev<'_>)) {
        let message = message.unwrap_or_default();
        emit(Ev::Start {
            id: message.id.as_deref().unwrap_or(""),
            model: message.model.as_deref().unwrap_or(""),
            created: None,
        });
        if let Some(usage) = &message.usage {
            self.counts.update(usage);
            if let Some(usage) = self.counts.usage() {
                emit(Ev::Usage(usage));
            }
        }
    }

    fn block_start(
        &mut self,
        index: u64,
        block: Option<BlockStart<'_>>,
        emit: &mut dyn FnMut(Ev<'_>),
    ) {
        let block = block.unwrap_or_default();
        match block.kind.as_deref() {
            Some("text") => {
                if let Some(text) = block.text.as_deref().filter(|t| !t.is_empty()) {
                    emit(Ev::Text(text));
                }
            }
            Some("thinking") => {
                if let Some(text) = block.thinking.as_deref().filter(|t| !t.is_empty()) {
                    emit(Ev::Reasoning(text));
                }
            }
            Some("tool_use") => {
                // Real Anthropic streams start with `input: {}` and send
                // the arguments as deltas; some compatible servers put the
                // whole input here instead.
                let input = block.input.map(RawValue::get).filter(|i| i.trim() != "{}");
                let id = block.id.as_deref().unwrap_or("");
                let call = self.calls.open(index, |_| id.to_owned(), input.is_some());
                emit(Ev::ToolStart {
                    key: call.key,
                    id,
                    name: block.name.as_deref().unwrap_or(""),
                });
                if let Some(input) = input {
                    emit(Ev::ToolArgs {
                        key: call.key,
                        delta: input,
                    });
                }
            }
            _ => {}
        }
    }

    fn block_delta(&mut self, index: u64, delta: Option<Delta<'_>>, emit: &mut dyn FnMut(Ev<'_>)) {
        let delta = delta.unwrap_or_default();
        match delta.kind.as_deref() {
            Some("text_delta") => {
                if let Some(text) = delta.text.as_deref().filter(|t| !t.is_empty()) {
                    emit(Ev::Text(text));
                }
            }
            Some("thinking_delta") => {
                if let Some(text) = delta.thinking.as_deref().filter(|t| !t.is_empty()) {
                    emit(Ev::Reasoning(text));
                }
            }
            Some("input_json_delta") => {
                let Some(call) = self.calls.find(index) else {
                    return;
                };
                let json = delta.partial_json.as_deref().unwrap_or("");
                // Arguments already given whole at the block start are not
                // repeated.
                if !json.is_empty() && !call.args_seen {
                    emit(Ev::ToolArgs {
                        key: call.key,
                        delta: json,
                    });
                }
            }
            // signature_delta: Anthropic's proof, never forwarded.
            _ => {}
        }
    }
}

// ------------------------------------------------------------- responses

wire! {
    lenient struct ResponsesEvent {
        kind: Str<'a> = "type",
        response: ResponseIn<'a> = "response",
        item: ItemIn<'a> = "item",
        output_index: u64 = "output_index",
        summary_index: u64 = "summary_index",
        delta: Str<'a> = "delta",
        code: Str<'a> = "code",
        message: Str<'a> = "message",
    }
}

wire! {
    lenient struct ResponseIn {
        id: Str<'a> = "id",
        model: Str<'a> = "model",
        created_at: u64 = "created_at",
        status: Str<'a> = "status",
        incomplete_details: Reason<'a> = "incomplete_details",
        usage: WireUsage = "usage",
        error: StreamError<'a> = "error",
    }
}

wire! {
    lenient struct Reason {
        reason: Str<'a> = "reason",
    }
}

wire! {
    lenient struct ItemIn {
        kind: Str<'a> = "type",
        call_id: Str<'a> = "call_id",
        name: Str<'a> = "name",
        arguments: Str<'a> = "arguments",
    }
}

#[derive(Debug, Default)]
pub(super) struct ResponsesDecoder {
    calls: Calls,
    any_call: bool,
}

impl ResponsesDecoder {
    fn decode(&mut self, event: Option<&str>, data: &str, emit: &mut dyn FnMut(Ev<'_>)) {
        let Ok(ev) = wire::parse::<ResponsesEvent<'_>>(data.as_bytes()) else {
            return;
        };
        let kind = ev.kind.as_deref().or(event).unwrap_or("");
        let index = ev.output_index.unwrap_or(0);
        let delta = ev.delta.as_deref().filter(|d| !d.is_empty());
        match kind {
            "response.created" => {
                let r = ev.response.unwrap_or_default();
                emit(Ev::Start {
                    id: r.id.as_deref().unwrap_or(""),
                    model: r.model.as_deref().unwrap_or(""),
                    created: r.created_at,
                });
            }
            "response.output_item.added" => self.item_added(index, ev.item, emit),
            "response.output_item.done" => self.item_done(index, ev.item, emit),
            "response.output_text.delta" => delta.into_iter().for_each(|d| emit(Ev::Text(d))),
            "response.refusal.delta" => delta.into_iter().for_each(|d| emit(Ev::Refusal(d))),
            "response.reasoning_summary_text.delta" | "response.reasoning_text.delta" => {
                delta.into_iter().for_each(|d| emit(Ev::Reasoning(d)));
            }
            // Summary parts of one item are paragraphs of one reasoning text.
            "response.reasoning_summary_part.added" if ev.summary_index.unwrap_or(0) > 0 => {
                emit(Ev::Reasoning("\n\n"));
            }
            "response.function_call_arguments.delta" => {
                if let (Some(call), Some(d)) = (self.calls.find(index), delta) {
                    call.args_seen = true;
                    emit(Ev::ToolArgs {
                        key: call.key,
                        delta: d,
                    });
                }
            }
            "response.completed" | "response.incomplete" => self.completed(ev.response, emit),
            "response.failed" => {
                let err = ev.response.and_then(|r| r.error).unwrap_or_default();
                emit(Ev::Error {
                    kind: err.code_or_kind(),
                    message: err
                        .message
                        .as_deref()
                        .unwrap_or("the upstream's response failed"),
                });
            }
            "error" => emit(Ev::Error {
                kind: ev.code.as_deref().unwrap_or("api_error"),
                message: ev.message.as_deref().unwrap_or("upstream error"),
            }),
            _ => {}
        }
    }

    fn item_added(&mut self, index: u64, item: Option<ItemIn<'_>>, emit: &mut dyn FnMut(Ev<'_>)) {
        let item = item.unwrap_or_default();
        if item.kind.as_deref() != Some("function_call") {
            return;
        }
        self.any_call = true;
        let id = item.call_id.as_deref().unwrap_or("");
        let call = self.calls.open(index, |_| id.to_owned(), false);
        emit(Ev::ToolStart {
            key: call.key,
            id,
            name: item.name.as_deref().unwrap_or(""),
        });
    }

    /// A call's arguments that were never streamed as deltas are taken
    /// from the finished item.
    fn item_done(&mut self, index: u64, item: Option<ItemIn<'_>>, emit: &mut dyn FnMut(Ev<'_>)) {
        let Some(call) = self.calls.find(index) else {
            return;
        };
        if !call.args_seen
            && let Some(args) = item
                .as_ref()
                .and_then(|i| i.arguments.as_deref())
                .filter(|a| !a.is_empty())
        {
            emit(Ev::ToolArgs {
                key: call.key,
                delta: args,
            });
        }
        call.upstream = u64::MAX;
        emit(Ev::ToolEnd { key: call.key });
    }

    fn completed(&mut self, response: Option<ResponseIn<'_>>, emit: &mut dyn FnMut(Ev<'_>)) {
        let r = response.unwrap_or_default();
        if let Some(usage) = r.usage.as_ref().and_then(|u| u.read(Protocol::Responses)) {
            emit(Ev::Usage(usage));
        }
        let reason = r
            .incomplete_details
            .as_ref()
            .and_then(|d| d.reason.as_deref());
        let status = r.status.as_deref().unwrap_or("completed");
        emit(Ev::Finish(
            Finish::from_responses(status, reason, self.any_call),
            None,
        ));
        emit(Ev::Done);
    }
}

impl StreamError<'_> {
    fn code_or_kind(&self) -> &str {
        let code = self
            .code
            .map(RawValue::get)
            .and_then(|c| c.strip_prefix('"')?.strip_suffix('"'));
        code.or(self.kind.as_deref()).unwrap_or("api_error")
    }
}
