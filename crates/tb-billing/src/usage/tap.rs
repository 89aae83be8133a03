//! Usage of a stream, read event by event as it is forwarded.

use std::borrow::Cow;

use serde_json::value::RawValue;
use tb_domain::Protocol;

use super::fields::UsageObject;
use super::wire::{self, Counts, Envelope};
use super::{ImageUsage, RequestFacts, UsageReport, build_usage};

/// What one stream event is, for the proxy's purposes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventClass {
    /// Content the client sees (routing.md, "Streaming failover"): once one
    /// is forwarded, the request can no longer fail over.
    Content,
    /// A Chat Completions chunk that only carries `usage` (see
    /// [`is_usage_only_chunk`]).
    UsageOnly,
    /// `data: [DONE]`. Never content.
    Done,
    /// An error event (`event: error`, `response.failed`, a chat chunk with
    /// a top-level `error`).
    Error,
    /// Anything else: preamble, pings, stops, usage carried by a non-content
    /// event, events of other parties.
    Other,
}

/// Watches the events of one streamed answer and keeps what usage
/// extraction needs: the usage counts (merged as the stream updates them),
/// the reported cost, image facts, whether content, `[DONE]` or an error
/// went by. It never holds an event after [`on_event`](Self::on_event)
/// returns.
///
/// - chat: the chunk carrying `usage` (usually the last, `choices: []`);
/// - responses: `response.completed` / `response.incomplete` /
///   `response.failed` → `response.usage`;
/// - messages: `message_start.message.usage`, then every
///   `message_delta.usage` (its `output_tokens` is cumulative, the last one
///   wins; input and cache fields it repeats replace the earlier ones);
/// - images: each `image_generation.completed` adds an image, its usage
///   (summed over images) and, from the first, size, quality and format.
#[derive(Debug, Clone)]
pub struct UsageTap {
    protocol: Protocol,
    request: RequestFacts,
    counts: Counts,
    cost: Option<u64>,
    images_completed: u32,
    image_size: Option<String>,
    image_quality: Option<String>,
    image_format: Option<String>,
    saw_content: bool,
    saw_done: bool,
    saw_error: bool,
}

impl UsageTap {
    /// A tap for a stream of `protocol`, answering `request`.
    pub fn new(protocol: Protocol, request: &RequestFacts) -> UsageTap {
        UsageTap {
            protocol,
            request: request.clone(),
            counts: Counts::default(),
            cost: None,
            images_completed: 0,
            image_size: None,
            image_quality: None,
            image_format: None,
            saw_content: false,
            saw_done: false,
            saw_error: false,
        }
    }

    /// Feeds one parsed SSE event.
    pub fn on_sse_event(&mut self, event: &tb_sse::SseEvent<'_>) -> EventClass {
        self.on_event(event.event, event.data)
    }

    /// Feeds one event: its `event:` name (if any) and its data.
    pub fn on_event(&mut self, event: Option<&str>, data: &str) -> EventClass {
        if data.trim() == "[DONE]" {
            self.saw_done = true;
            return EventClass::Done;
        }
        let env = Envelope::of(data.as_bytes());
        let class = match self.protocol {
            Protocol::ChatCompletions => self.chat(event, &env),
            Protocol::Responses => self.responses(&event_name(event, &env), &env),
            Protocol::Messages => self.messages(&event_name(event, &env), &env),
            Protocol::ImagesGenerations | Protocol::ImagesEdits => {
                self.images(&event_name(event, &env), &env)
            }
            // Neither streams; read like chat if an upstream does.
            Protocol::Embeddings | Protocol::Videos => self.chat(event, &env),
        };
        match class {
            EventClass::Content => self.saw_content = true,
            EventClass::Error => self.saw_error = true,
            _ => {}
        }
        class
    }

    /// A content event went by.
    pub fn saw_content(&self) -> bool {
        self.saw_content
    }

    /// `data: [DONE]` went by.
    pub fn saw_done(&self) -> bool {
        self.saw_done
    }

    /// An error event went by.
    pub fn saw_error(&self) -> bool {
        self.saw_error
    }

    /// The usage of the stream so far (call it at the end).
    pub fn finish(&self) -> UsageReport {
        let image = self.protocol.is_images().then(|| ImageUsage {
            count: (self.images_completed > 0).then_some(self.images_completed),
            size: self
                .image_size
                .clone()
                .or_else(|| self.request.size.clone()),
            quality: self
                .image_quality
                .clone()
                .or_else(|| self.request.quality.clone()),
            output_format: self
                .image_format
                .clone()
                .or_else(|| self.request.output_format.clone()),
            ..ImageUsage::default()
        });
        UsageReport::new(
            build_usage(self.protocol, &self.counts, image),
            self.saw_content,
            self.cost,
        )
    }

    /// Takes the usage of `raw`: overlaid on what was seen (a stream
    /// repeats and updates its usage).
    fn take_usage(&mut self, usage: Option<&UsageObject<'_>>) {
        let (counts, cost) = wire::read_usage(self.protocol, usage);
        self.counts.overlay(counts);
        if cost.is_some() {
            self.cost = cost;
        }
    }

    fn chat(&mut self, event: Option<&str>, env: &Envelope<'_>) -> EventClass {
        // A chunk without a usage object overlays nothing.
        self.take_usage(env.usage_object());
        // Every chunk carries the answer's `service_tier`.
        self.counts.take_service_tier(env.service_tier);
        if env.choices.is_some_and(|c| c.delta_content) {
            EventClass::Content
        } else if usage_only(env) {
            EventClass::UsageOnly
        } else if env.error.is_some() || event == Some("error") {
            EventClass::Error
        } else {
            EventClass::Other
        }
    }

    fn responses(&mut self, name: &str, env: &Envelope<'_>) -> EventClass {
        match name {
            "response.completed" | "response.incomplete" | "response.failed" => {
                let response = Envelope::of_raw(env.response);
                self.take_usage(response.usage_object());
                self.counts.take_service_tier(response.service_tier);
                if name == "response.failed" {
                    EventClass::Error
                } else {
                    EventClass::Other
                }
            }
            "error" => EventClass::Error,
            "response.output_text.delta"
            | "response.refusal.delta"
            | "response.function_call_arguments.delta"
            | "response.custom_tool_call_input.delta" => EventClass::Content,
            _ if name.starts_with("response.reasoning") && name.ends_with(".delta") => {
                EventClass::Content
            }
            "response.output_item.added" => {
                let item = env.item.and_then(wire::RawObject::parse);
                match item.and_then(|i| i.text("type")).as_deref() {
                    Some("function_call" | "custom_tool_call") => EventClass::Content,
                    _ => EventClass::Other,
                }
            }
            _ => EventClass::Other,
        }
    }

    fn messages(&mut self, name: &str, env: &Envelope<'_>) -> EventClass {
        match name {
            "message_start" => {
                self.take_usage(Envelope::of_raw(env.message).usage_object());
                EventClass::Other
            }
            "message_delta" => {
                self.take_usage(env.usage_object());
                EventClass::Other
            }
            "content_block_delta" => EventClass::Content,
            "content_block_start" => {
                let block = wire::raw_value(env.content_block);
                // tool_use, server_tool_use, mcp_tool_use.
                if block["type"]
                    .as_str()
                    .is_some_and(|t| t.ends_with("tool_use"))
                {
                    EventClass::Content
                } else {
                    EventClass::Other
                }
            }
            "error" => EventClass::Error,
            _ => EventClass::Other,
        }
    }

    fn images(&mut self, name: &str, env: &Envelope<'_>) -> EventClass {
        match name {
            "image_generation.partial_image" | "image_edit.partial_image" => EventClass::Content,
            "image_generation.completed" | "image_edit.completed" => {
                self.images_completed = self.images_completed.saturating_add(1);
                let (counts, cost) = wire::read_usage(self.protocol, env.usage_object());
                self.counts.add(counts);
                if let Some(cost) = cost {
                    self.cost = Some(self.cost.unwrap_or(0).saturating_add(cost));
                }
                fill(&mut self.image_size, env.size);
                fill(&mut self.image_quality, env.quality);
                fill(&mut self.image_format, env.output_format);
                EventClass::Content
            }
            "error" => EventClass::Error,
            _ => EventClass::Other,
        }
    }
}

fn fill(slot: &mut Option<String>, raw: Option<&RawValue>) {
    if slot.is_none() {
        *slot = wire::display_str(raw);
    }
}

/// The SSE event name, else the data's `type` (some upstreams omit the
/// `event:` line).
fn event_name<'a>(event: Option<&'a str>, env: &Envelope<'_>) -> Cow<'a, str> {
    match event {
        Some(name) => Cow::Borrowed(name),
        None => Cow::Owned(wire::raw_str(env.kind).unwrap_or_default()),
    }
}

/// `usage` is an object and `choices` is empty or absent.
fn usage_only(env: &Envelope<'_>) -> bool {
    env.usage_object().is_some() && env.choices.is_none_or(|c| c.empty_array)
}

/// Whether a Chat Completions chunk only carries usage: `choices` is empty
/// (`[]`, or absent) and `usage` is an object. When the daemon set
/// `stream_options.include_usage` itself, it removes this chunk so the
/// client sees exactly the stream it asked for.
pub fn is_usage_only_chunk(data: &str) -> bool {
    usage_only(&Envelope::of(data.as_bytes()))
}
