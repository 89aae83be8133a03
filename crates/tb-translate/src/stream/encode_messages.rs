//! Writing a Messages client's stream: `message_start`, one content block
//! at a time (`content_block_start` / `_delta` / `_stop`), then
//! `message_delta` with the stop reason and usage, then `message_stop`.
//!
//! Claude Code's rules, each the subject of a regression test: the
//! `message_start` usage has every count as a number; one tool call is
//! exactly one `tool_use` block however many chunks its arguments take,
//! and parallel calls are separate blocks with their own indices; a delta
//! is never empty and is always of its block's kind.

use std::borrow::Cow;

use serde::Serialize;

use super::encode::{Encode, Head};
use super::{Ev, write_event};
use crate::ids;
use crate::ir::{Finish, Usage};
use crate::shape::Empty;
use crate::usage::MessagesUsageOut;

#[derive(Debug)]
pub(crate) struct MessagesEncoder {
    head: Head,
    next_index: u32,
    open: Option<Open>,
    /// The highest tool key opened so far: arguments for a lower key after
    /// it closed cannot be expressed (blocks are sequential).
    last_tool: Option<u32>,
    any_tool: bool,
    finish: Option<(Finish, Option<String>)>,
    usage: Usage,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Open {
    Text(u32),
    Thinking(u32),
    Tool { index: u32, key: u32 },
}

impl Open {
    fn index(self) -> u32 {
        match self {
            Open::Text(i) | Open::Thinking(i) | Open::Tool { index: i, .. } => i,
        }
    }
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Event<'r> {
    MessageStart {
        message: StartBody<'r>,
    },
    ContentBlockStart {
        index: u32,
        content_block: BlockStart<'r>,
    },
    ContentBlockDelta {
        index: u32,
        delta: Delta<'r>,
    },
    ContentBlockStop {
        index: u32,
    },
    MessageDelta {
        delta: StopDelta<'r>,
        usage: MessagesUsageOut,
    },
    MessageStop,
    Error {
        error: ErrorBody<'r>,
    },
}

impl Event<'_> {
    fn name(&self) -> &'static str {
        match self {
            Event::MessageStart { .. } => "message_start",
            Event::ContentBlockStart { .. } => "content_block_start",
            Event::ContentBlockDelta { .. } => "content_block_delta",
            Event::ContentBlockStop { .. } => "content_block_stop",
            Event::MessageDelta { .. } => "message_delta",
            Event::MessageStop => "message_stop",
            Event::Error { .. } => "error",
        }
    }
}

#[derive(Serialize)]
struct StartBody<'r> {
    id: &'r str,
    #[serde(rename = "type")]
    kind: &'static str,
    role: &'static str,
    model: &'r str,
    content: [(); 0],
    stop_reason: Option<()>,
    stop_sequence: Option<()>,
    usage: MessagesUsageOut,
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum BlockStart<'r> {
    Text {
        text: &'static str,
    },
    Thinking {
        thinking: &'static str,
        signature: &'static str,
    },
    ToolUse {
        id: Cow<'r, str>,
        name: &'r str,
        input: Empty,
    },
}

#[derive(Serialize)]
#[serde(tag = "type")]
enum Delta<'r> {
    #[serde(rename = "text_delta")]
    Text { text: &'r str },
    #[serde(rename = "thinking_delta")]
    Thinking { thinking: &'r str },
    #[serde(rename = "input_json_delta")]
    InputJson { partial_json: &'r str },
}

#[derive(Serialize)]
struct StopDelta<'r> {
    stop_reason: &'static str,
    stop_sequence: Option<&'r str>,
}

#[derive(Serialize)]
struct ErrorBody<'r> {
    #[serde(rename = "type")]
    kind: &'r str,
    message: &'r str,
}

impl MessagesEncoder {
    pub(crate) fn new(model: &str) -> MessagesEncoder {
        MessagesEncoder {
            head: Head::new(model, 0),
            next_index: 0,
            open: None,
            last_tool: None,
            any_tool: false,
            finish: None,
            usage: Usage::default(),
        }
    }
}

impl Encode for MessagesEncoder {
    const BROKEN_KIND: &'static str = "api_error";

    fn head(&self) -> &Head {
        &self.head
    }

    fn event(&mut self, ev: Ev<'_>, out: &mut Vec<u8>) {
        match ev {
            Ev::Text(text) | Ev::Refusal(text) => self.text(text, out),
            Ev::Reasoning(text) => self.thinking(text, out),
            Ev::ToolStart { key, id, name } => self.tool_start(key, id, name, out),
            Ev::ToolArgs { key, delta } => self.tool_args(key, delta, out),
            Ev::ToolEnd { key } => {
                if let Some(open @ Open::Tool { key: k, .. }) = self.open
                    && k == key
                {
                    self.stop_block(open, out);
                }
            }
            Ev::Usage(usage) => self.usage = usage,
            Ev::Finish(finish, seq) => self.finish = Some((finish, seq.map(str::to_owned))),
            // Written by `Encode::emit`.
            Ev::Start { .. } | Ev::Done | Ev::Error { .. } => {}
        }
    }

    fn start(&mut self, id: &str, model: &str, created: Option<u64>, out: &mut Vec<u8>) {
        if !self.head.begin("msg_", id, model, created) {
            return;
        }
        let start = Event::MessageStart {
            message: StartBody {
                id: &self.head.id,
                kind: "message",
                role: "assistant",
                model: &self.head.model,
                content: [],
                stop_reason: None,
                stop_sequence: None,
                // Claude Code wants every count as a number here; the
                // input is the upstream's when it already said it.
                usage: MessagesUsageOut::from(Usage {
                    output: 0,
                    reasoning: None,
                    ..self.usage
                }),
            },
        };
        write(out, &start);
    }

    fn finished(&self) -> bool {
        self.finish.is_some()
    }

    fn complete(&mut self, out: &mut Vec<u8>) {
        self.ensure_started(out);
        if let Some(open) = self.open {
            self.stop_block(open, out);
        }
        let (finish, seq) = match &self.finish {
            Some((f, seq)) => (*f, seq.as_deref()),
            None if self.any_tool => (Finish::ToolCalls, None),
            None => (Finish::Stop, None),
        };
        let delta = Event::MessageDelta {
            delta: StopDelta {
                stop_reason: finish.messages(),
                stop_sequence: seq,
            },
            usage: MessagesUsageOut::from(self.usage),
        };
        write(out, &delta);
        write(out, &Event::MessageStop);
        self.head.closed = true;
    }

    fn fail(&mut self, kind: &str, message: &str, out: &mut Vec<u8>) {
        let kind = match kind {
            k if k.ends_with("_error") => k,
            "rate_limit_exceeded" | "insufficient_quota" => "rate_limit_error",
            _ => "api_error",
        };
        write(
            out,
            &Event::Error {
                error: ErrorBody { kind, message },
            },
        );
        self.head.closed = true;
    }
}

impl MessagesEncoder {
    fn text(&mut self, text: &str, out: &mut Vec<u8>) {
        if text.is_empty() {
            return;
        }
        let index = match self.open {
            Some(Open::Text(i)) => i,
            _ => self.open_block(Open::Text, BlockStart::Text { text: "" }, out),
        };
        write(
            out,
            &Event::ContentBlockDelta {
                index,
                delta: Delta::Text { text },
            },
        );
    }

    fn thinking(&mut self, text: &str, out: &mut Vec<u8>) {
        if text.is_empty() {
            return;
        }
        let index = match self.open {
            Some(Open::Thinking(i)) => i,
            _ => self.open_block(
                Open::Thinking,
                BlockStart::Thinking {
                    thinking: "",
                    signature: "",
                },
                out,
            ),
        };
        write(
            out,
            &Event::ContentBlockDelta {
                index,
                delta: Delta::Thinking { thinking: text },
            },
        );
    }

    /// Closes the open block, opens the next one and returns its index.
    fn open_block(
        &mut self,
        open: impl FnOnce(u32) -> Open,
        start: BlockStart<'_>,
        out: &mut Vec<u8>,
    ) -> u32 {
        self.ensure_started(out);
        if let Some(previous) = self.open {
            self.stop_block(previous, out);
        }
        let index = self.next_index;
        self.next_index = self.next_index.saturating_add(1);
        write(
            out,
            &Event::ContentBlockStart {
                index,
                content_block: start,
            },
        );
        self.open = Some(open(index));
        index
    }

    fn stop_block(&mut self, open: Open, out: &mut Vec<u8>) {
        write(
            out,
            &Event::ContentBlockStop {
                index: open.index(),
            },
        );
        self.open = None;
    }

    fn tool_start(&mut self, key: u32, id: &str, name: &str, out: &mut Vec<u8>) {
        let id = ids::anthropic_id(id);
        self.open_block(
            |index| Open::Tool { index, key },
            BlockStart::ToolUse {
                id,
                name,
                input: Empty {},
            },
            out,
        );
        self.last_tool = Some(key);
        self.any_tool = true;
    }

    fn tool_args(&mut self, key: u32, json: &str, out: &mut Vec<u8>) {
        if json.is_empty() {
            return;
        }
        match self.open {
            Some(Open::Tool { index, key: k }) if k == key => {
                write(out, &Event::ContentBlockDelta {
                    index,
                    delta: Delta::InputJson { partial_json: json },
                });
            }
            _ if self.last_tool.is_some_and(|last| key <= last) => self.fail(
                "api_error",
                "the upstream interleaved the arguments of parallel tool calls, which a messages stream cannot express",
                out,
            ),
            // Arguments before their call started: nothing to attach them to.
            _ => {}
        }
    }
}

fn write(out: &mut Vec<u8>, event: &Event<'_>) {
    write_event(out, Some(event.name()), event);
}
