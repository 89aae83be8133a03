//! Writing a Responses client's stream, as the official SDKs and Codex
//! read it: `response.created`, `response.in_progress`, then per output
//! item `response.output_item.added`, its content events and
//! `response.output_item.done`, then `response.completed` (or
//! `response.incomplete`) with the output and usage. Every event has a
//! `sequence_number`; items have ids and `output_index`es.
//!
//! The `*.done` events and `response.completed` repeat what the deltas
//! said, so the text of the item being written and the finished items are
//! kept (one copy of the answer; see the stream module).

use serde::Serialize;
use serde_json::value::RawValue;

use super::encode::{Encode, Head};
use super::{Ev, write_event};
use crate::ids;
use crate::ir::{Finish, Usage};
use crate::shape::{
    ContentOut, ErrorObject, IncompleteOut, ItemOut, ResponseObject, SummaryOut, custom_input,
};
use crate::usage::ResponsesUsageOut;
use crate::{AnswerContext, CallName, NamespacedTool};

#[derive(Debug)]
pub(crate) struct ResponsesEncoder {
    head: Head,
    custom_tools: Vec<String>,
    namespaced_tools: Vec<NamespacedTool>,
    seq: u64,
    /// Finished output items, serialised, for `response.completed`.
    items: Vec<Box<RawValue>>,
    /// Output indexes handed out so far.
    next_output: usize,
    message: Option<OpenMessage>,
    reasoning: Option<OpenText>,
    calls: Vec<OpenCall>,
    any_call: bool,
    finish: Option<Finish>,
    usage: Option<Usage>,
}

#[derive(Debug)]
struct OpenText {
    item_id: String,
    output_index: usize,
    text: String,
}

/// A message item: its parts (output text or refusal) in order; the last
/// one is open.
#[derive(Debug)]
struct OpenMessage {
    item_id: String,
    output_index: usize,
    parts: Vec<(PartKind, String)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PartKind {
    Text,
    Refusal,
}

#[derive(Debug)]
struct OpenCall {
    key: u32,
    item_id: String,
    output_index: usize,
    call_id: String,
    /// The client's name for the tool, and its namespace if any.
    name: String,
    namespace: Option<String>,
    arguments: String,
    custom: bool,
}

/// One Responses stream event; members that an event type does not have
/// are left out.
#[derive(Serialize, Default)]
struct Event<'r> {
    #[serde(rename = "type")]
    kind: &'static str,
    sequence_number: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    response: Option<ResponseObject<'r>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    output_index: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    item_id: Option<&'r str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    content_index: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    summary_index: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    item: Option<ItemOut<'r>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    part: Option<PartOut<'r>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    delta: Option<&'r str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    text: Option<&'r str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    refusal: Option<&'r str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    arguments: Option<&'r str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    input: Option<&'r str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'r str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    logprobs: Option<[(); 0]>,
}

#[derive(Serialize)]
#[serde(untagged)]
enum PartOut<'r> {
    Content(ContentOut<'r>),
    Summary(SummaryOut<'r>),
}

impl ResponsesEncoder {
    pub(crate) fn new(model: &str, ctx: &AnswerContext) -> ResponsesEncoder {
        ResponsesEncoder {
            head: Head::new(model, ctx.created),
            custom_tools: ctx.custom_tools.clone(),
            namespaced_tools: ctx.namespaced_tools.clone(),
            seq: 0,
            items: Vec::new(),
            next_output: 0,
            message: None,
            reasoning: None,
            calls: Vec::new(),
            any_call: false,
            finish: None,
            usage: None,
        }
    }
}

impl Encode for ResponsesEncoder {
    const BROKEN_KIND: &'static str = "server_error";

    fn head(&self) -> &Head {
        &self.head
    }

    fn event(&mut self, ev: Ev<'_>, out: &mut Vec<u8>) {
        match ev {
            Ev::Text(text) => self.message_delta(PartKind::Text, text, out),
            Ev::Refusal(text) => self.message_delta(PartKind::Refusal, text, out),
            Ev::Reasoning(text) => self.reasoning_delta(text, out),
            Ev::ToolStart { key, id, name } => self.call_start(key, id, name, out),
            Ev::ToolArgs { key, delta } => self.call_args(key, delta, out),
            Ev::ToolEnd { key } => self.call_end(key, out),
            Ev::Usage(usage) => self.usage = Some(usage),
            Ev::Finish(finish, _) => self.finish = Some(finish),
            // Written by `Encode::emit`.
            Ev::Start { .. } | Ev::Done | Ev::Error { .. } => {}
        }
    }

    fn start(&mut self, id: &str, model: &str, created: Option<u64>, out: &mut Vec<u8>) {
        if !self.head.begin("resp_", id, model, created) {
            return;
        }
        for kind in ["response.created", "response.in_progress"] {
            let response = ResponseObject::new(&self.head.id, &self.head.model, self.head.created);
            let event = Event {
                kind,
                response: Some(response),
                ..Event::default()
            };
            send(&mut self.seq, event, out);
        }
    }

    fn finished(&self) -> bool {
        self.finish.is_some()
    }

    fn complete(&mut self, out: &mut Vec<u8>) {
        self.ensure_started(out);
        self.close_all(out);
        let implied = if self.any_call {
            Finish::ToolCalls
        } else {
            Finish::Stop
        };
        let (status, reason) = self.finish.unwrap_or(implied).responses();
        let mut response = ResponseObject::new(&self.head.id, &self.head.model, self.head.created);
        response.status = status;
        response.incomplete_details = reason.map(|reason| IncompleteOut { reason });
        response.output = &self.items;
        response.usage = self.usage.map(ResponsesUsageOut::from);
        let kind = if status == "completed" {
            "response.completed"
        } else {
            "response.incomplete"
        };
        let event = Event {
            kind,
            response: Some(response),
            ..Event::default()
        };
        send(&mut self.seq, event, out);
        self.head.closed = true;
    }

    /// `response.failed`: Codex and the SDKs end the turn with the error.
    fn fail(&mut self, code: &str, message: &str, out: &mut Vec<u8>) {
        self.ensure_started(out);
        let mut response = ResponseObject::new(&self.head.id, &self.head.model, self.head.created);
        response.status = "failed";
        response.error = Some(ErrorObject { code, message });
        let event = Event {
            kind: "response.failed",
            response: Some(response),
            ..Event::default()
        };
        send(&mut self.seq, event, out);
        self.head.closed = true;
    }
}

impl ResponsesEncoder {
    fn next_output_index(&mut self) -> usize {
        let index = self.next_output;
        self.next_output = self.next_output.saturating_add(1);
        index
    }

    fn message_delta(&mut self, kind: PartKind, text: &str, out: &mut Vec<u8>) {
        if text.is_empty() {
            return;
        }
        self.ensure_started(out);
        self.close_reasoning(out);
        if self.message.is_none() {
            self.open_message(out);
        }
        let needs_part = self
            .message
            .as_ref()
            .is_some_and(|m| m.parts.last().is_none_or(|p| p.0 != kind));
        if needs_part {
            self.close_part(out);
            self.open_part(kind, out);
        }
        let Some(m) = self.message.as_mut() else {
            return;
        };
        let content_index = m.parts.len().saturating_sub(1);
        if let Some(part) = m.parts.last_mut() {
            part.1.push_str(text);
        }
        let event = Event {
            kind: match kind {
                PartKind::Text => "response.output_text.delta",
                PartKind::Refusal => "response.refusal.delta",
            },
            item_id: Some(&m.item_id),
            output_index: Some(m.output_index),
            content_index: Some(content_index),
            delta: Some(text),
            logprobs: (kind == PartKind::Text).then_some([]),
            ..Event::default()
        };
        send(&mut self.seq, event, out);
    }

    fn open_message(&mut self, out: &mut Vec<u8>) {
        let output_index = self.next_output_index();
        let item_id = ids::item("msg", &self.head.id, output_index);
        let item = ItemOut::Message {
            id: &item_id,
            status: "in_progress",
            role: "assistant",
            content: Vec::new(),
        };
        item_added(&mut self.seq, output_index, item, out);
        self.message = Some(OpenMessage {
            item_id,
            output_index,
            parts: Vec::new(),
        });
    }

    fn open_part(&mut self, kind: PartKind, out: &mut Vec<u8>) {
        let Some(m) = self.message.as_mut() else {
            return;
        };
        m.parts.push((kind, String::new()));
        let event = Event {
            kind: "response.content_part.added",
            item_id: Some(&m.item_id),
            output_index: Some(m.output_index),
            content_index: Some(m.parts.len() - 1),
            part: Some(PartOut::Content(content(kind, ""))),
            ..Event::default()
        };
        send(&mut self.seq, event, out);
    }

    /// `*.done` and `content_part.done` for the message's last part.
    fn close_part(&mut self, out: &mut Vec<u8>) {
        let Some(m) = self.message.take() else { return };
        if let Some((kind, text)) = m.parts.last() {
            let content_index = m.parts.len() - 1;
            let done = Event {
                kind: match kind {
                    PartKind::Text => "response.output_text.done",
                    PartKind::Refusal => "response.refusal.done",
                },
                item_id: Some(&m.item_id),
                output_index: Some(m.output_index),
                content_index: Some(content_index),
                text: (*kind == PartKind::Text).then_some(text.as_str()),
                refusal: (*kind == PartKind::Refusal).then_some(text.as_str()),
                logprobs: (*kind == PartKind::Text).then_some([]),
                ..Event::default()
            };
            send(&mut self.seq, done, out);
            let part_done = Event {
                kind: "response.content_part.done",
                item_id: Some(&m.item_id),
                output_index: Some(m.output_index),
                content_index: Some(content_index),
                part: Some(PartOut::Content(content(*kind, text))),
                ..Event::default()
            };
            send(&mut self.seq, part_done, out);
        }
        self.message = Some(m);
    }

    fn close_message(&mut self, out: &mut Vec<u8>) {
        self.close_part(out);
        let Some(m) = self.message.take() else { return };
        let item = ItemOut::Message {
            id: &m.item_id,
            status: "completed",
            role: "assistant",
            content: m
                .parts
                .iter()
                .map(|(kind, text)| content(*kind, text))
                .collect(),
        };
        self.item_done(m.output_index, item, out);
    }

    /// `response.output_item.done`, and the item kept for the end.
    fn item_done(&mut self, output_index: usize, item: ItemOut<'_>, out: &mut Vec<u8>) {
        if let Ok(raw) = serde_json::value::to_raw_value(&item) {
            self.items.push(raw);
        }
        let event = Event {
            kind: "response.output_item.done",
            output_index: Some(output_index),
            item: Some(item),
            ..Event::default()
        };
        send(&mut self.seq, event, out);
    }

    fn reasoning_delta(&mut self, text: &str, out: &mut Vec<u8>) {
        if text.is_empty() {
            return;
        }
        self.ensure_started(out);
        self.close_message(out);
        if self.reasoning.is_none() {
            self.open_reasoning(out);
        }
        let Some(r) = self.reasoning.as_mut() else {
            return;
        };
        r.text.push_str(text);
        let event = Event {
            kind: "response.reasoning_summary_text.delta",
            item_id: Some(&r.item_id),
            output_index: Some(r.output_index),
            summary_index: Some(0),
            delta: Some(text),
            ..Event::default()
        };
        send(&mut self.seq, event, out);
    }

    fn open_reasoning(&mut self, out: &mut Vec<u8>) {
        let output_index = self.next_output_index();
        let item_id = ids::item("rs", &self.head.id, output_index);
        let item = ItemOut::Reasoning {
            id: &item_id,
            summary: Vec::new(),
        };
        item_added(&mut self.seq, output_index, item, out);
        let part = Event {
            kind: "response.reasoning_summary_part.added",
            item_id: Some(&item_id),
            output_index: Some(output_index),
            summary_index: Some(0),
            part: Some(PartOut::Summary(SummaryOut::new(""))),
            ..Event::default()
        };
        send(&mut self.seq, part, out);
        self.reasoning = Some(OpenText {
            item_id,
            output_index,
            text: String::new(),
        });
    }

    fn close_reasoning(&mut self, out: &mut Vec<u8>) {
        let Some(r) = self.reasoning.take() else {
            return;
        };
        let base = Event {
            item_id: Some(&r.item_id),
            output_index: Some(r.output_index),
            summary_index: Some(0),
            ..Event::default()
        };
        send(
            &mut self.seq,
            Event {
                kind: "response.reasoning_summary_text.done",
                text: Some(&r.text),
                ..base
            },
            out,
        );
        send(
            &mut self.seq,
            Event {
                kind: "response.reasoning_summary_part.done",
                item_id: Some(&r.item_id),
                output_index: Some(r.output_index),
                summary_index: Some(0),
                part: Some(PartOut::Summary(SummaryOut::new(&r.text))),
                ..Event::default()
            },
            out,
        );
        let item = ItemOut::Reasoning {
            id: &r.item_id,
            summary: vec![SummaryOut::new(&r.text)],
        };
        self.item_done(r.output_index, item, out);
    }

    fn call_start(&mut self, key: u32, id: &str, name: &str, out: &mut Vec<u8>) {
        self.ensure_started(out);
        self.close_message(out);
        self.close_reasoning(out);
        let output_index = self.next_output_index();
        let call = CallName::of(&self.custom_tools, &self.namespaced_tools, name);
        let custom = call.custom;
        self.any_call = true;
        let item_id = ids::item(
            if custom { "ctc" } else { "fc" },
            &self.head.id,
            output_index,
        );
        let item = if custom {
            ItemOut::CustomToolCall {
                id: &item_id,
                status: "in_progress",
                call_id: id,
                name: call.name,
                namespace: call.namespace,
                input: "",
            }
        } else {
            ItemOut::FunctionCall {
                id: &item_id,
                status: "in_progress",
                call_id: id,
                name: call.name,
                namespace: call.namespace,
                arguments: "",
            }
        };
        item_added(&mut self.seq, output_index, item, out);
        self.calls.push(OpenCall {
            key,
            item_id,
            output_index,
            call_id: id.to_owned(),
            name: call.name.to_owned(),
            namespace: call.namespace.map(str::to_owned),
            arguments: String::new(),
            custom,
        });
    }

    /// Function arguments stream as deltas; a custom tool's input is only
    /// known whole (it is the `input` member of the arguments), so it is
    /// sent when the call ends.
    fn call_args(&mut self, key: u32, delta: &str, out: &mut Vec<u8>) {
        let Some(call) = self.calls.iter_mut().find(|c| c.key == key) else {
            return;
        };
        call.arguments.push_str(delta);
        if call.custom || delta.is_empty() {
            return;
        }
        let event = Event {
            kind: "response.function_call_arguments.delta",
            item_id: Some(&call.item_id),
            output_index: Some(call.output_index),
            delta: Some(delta),
            ..Event::default()
        };
        send(&mut self.seq, event, out);
    }

    fn call_end(&mut self, key: u32, out: &mut Vec<u8>) {
        let Some(pos) = self.calls.iter().position(|c| c.key == key) else {
            return;
        };
        let call = self.calls.remove(pos);
        if call.custom {
            return self.custom_end(&call, out);
        }
        let arguments = if call.arguments.trim().is_empty() {
            "{}"
        } else {
            call.arguments.as_str()
        };
        let done = Event {
            kind: "response.function_call_arguments.done",
            item_id: Some(&call.item_id),
            output_index: Some(call.output_index),
            arguments: Some(arguments),
            name: Some(&call.name),
            ..Event::default()
        };
        send(&mut self.seq, done, out);
        let item = ItemOut::FunctionCall {
            id: &call.item_id,
            status: "completed",
            call_id: &call.call_id,
            name: &call.name,
            namespace: call.namespace.as_deref(),
            arguments,
        };
        self.item_done(call.output_index, item, out);
    }

    fn custom_end(&mut self, call: &OpenCall, out: &mut Vec<u8>) {
        let input = custom_input(&call.arguments);
        if !input.is_empty() {
            let delta = Event {
                kind: "response.custom_tool_call_input.delta",
                item_id: Some(&call.item_id),
                output_index: Some(call.output_index),
                delta: Some(&input),
                ..Event::default()
            };
            send(&mut self.seq, delta, out);
        }
        let done = Event {
            kind: "response.custom_tool_call_input.done",
            item_id: Some(&call.item_id),
            output_index: Some(call.output_index),
            input: Some(&input),
            ..Event::default()
        };
        send(&mut self.seq, done, out);
        let item = ItemOut::CustomToolCall {
            id: &call.item_id,
            status: "completed",
            call_id: &call.call_id,
            name: &call.name,
            namespace: call.namespace.as_deref(),
            input: &input,
        };
        self.item_done(call.output_index, item, out);
    }

    fn close_all(&mut self, out: &mut Vec<u8>) {
        self.close_message(out);
        self.close_reasoning(out);
        while let Some(key) = self.calls.first().map(|c| c.key) {
            self.call_end(key, out);
        }
    }
}

/// `response.output_item.added`: an item begins.
fn item_added(seq: &mut u64, output_index: usize, item: ItemOut<'_>, out: &mut Vec<u8>) {
    let event = Event {
        kind: "response.output_item.added",
        output_index: Some(output_index),
        item: Some(item),
        ..Event::default()
    };
    send(seq, event, out);
}

/// Writes an event with the next sequence number.
fn send(seq: &mut u64, mut event: Event<'_>, out: &mut Vec<u8>) {
    event.sequence_number = *seq;
    *seq = seq.saturating_add(1);
    write_event(out, Some(event.kind), &event);
}

fn content(kind: PartKind, text: &str) -> ContentOut<'_> {
    match kind {
        PartKind::Text => ContentOut::text(text),
        PartKind::Refusal => ContentOut::Refusal { refusal: text },
    }
}
