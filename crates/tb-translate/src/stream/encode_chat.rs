//! Writing a Chat client's stream: `chat.completion.chunk` objects with
//! `delta.content`, `delta.reasoning_content`, `delta.refusal` and
//! `delta.tool_calls`, a chunk with the `finish_reason`, the usage chunk
//! (when the client asked for it), then `data: [DONE]`.

use serde::Serialize;

use super::encode::{Encode, Head};
use super::{Ev, write_event};
use crate::AnswerContext;
use crate::ir::{Finish, Usage};
use crate::usage::ChatUsageOut;

#[derive(Debug)]
pub(crate) struct ChatEncoder {
    head: Head,
    include_usage: bool,
    /// Per tool call: our key, its `tool_calls[].index`, and whether any
    /// argument text was written (a call without any gets `{}`).
    calls: Vec<(u32, u32, bool)>,
    finish: Option<Finish>,
    finish_sent: bool,
    usage: Option<Usage>,
}

#[derive(Serialize)]
struct Chunk<'r> {
    id: &'r str,
    object: &'static str,
    created: u64,
    model: &'r str,
    choices: &'r [Choice<'r>],
    #[serde(skip_serializing_if = "Option::is_none")]
    usage: Option<ChatUsageOut>,
}

#[derive(Serialize)]
struct Choice<'r> {
    index: u32,
    delta: Delta<'r>,
    finish_reason: Option<&'static str>,
}

#[derive(Serialize, Default)]
struct Delta<'r> {
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    content: Option<&'r str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reasoning_content: Option<&'r str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    refusal: Option<&'r str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_calls: Option<[ToolDelta<'r>; 1]>,
}

#[derive(Serialize)]
struct ToolDelta<'r> {
    index: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'r str>,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    kind: Option<&'static str>,
    function: FunctionDelta<'r>,
}

#[derive(Serialize)]
struct FunctionDelta<'r> {
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'r str>,
    arguments: &'r str,
}

#[derive(Serialize)]
struct ErrorChunk<'r> {
    error: ErrorBody<'r>,
}

#[derive(Serialize)]
struct ErrorBody<'r> {
    message: &'r str,
    #[serde(rename = "type")]
    kind: &'r str,
    code: Option<&'r str>,
}

impl ChatEncoder {
    pub(crate) fn new(model: &str, ctx: &AnswerContext) -> ChatEncoder {
        ChatEncoder {
            head: Head::new(model, ctx.created),
            include_usage: ctx.include_usage,
            calls: Vec::new(),
            finish: None,
            finish_sent: false,
            usage: None,
        }
    }
}

impl Encode for ChatEncoder {
    const BROKEN_KIND: &'static str = "server_error";

    fn head(&self) -> &Head {
        &self.head
    }

    fn event(&mut self, ev: Ev<'_>, out: &mut Vec<u8>) {
        match ev {
            Ev::Text(text) => self.delta(
                Delta {
                    content: Some(text),
                    ..Delta::default()
                },
                out,
            ),
            Ev::Reasoning(text) => self.delta(
                Delta {
                    reasoning_content: Some(text),
                    ..Delta::default()
                },
                out,
            ),
            Ev::Refusal(text) => self.delta(
                Delta {
                    refusal: Some(text),
                    ..Delta::default()
                },
                out,
            ),
            Ev::ToolStart { key, id, name } => self.tool_start(key, id, name, out),
            Ev::ToolArgs { key, delta } => self.tool_args(key, delta, out),
            Ev::ToolEnd { key } => self.tool_end(key, out),
            Ev::Usage(usage) => self.usage = Some(usage),
            Ev::Finish(finish, _) => {
                self.finish = Some(finish);
                self.send_finish(out);
            }
            // Written by `Encode::emit`.
            Ev::Start { .. } | Ev::Done | Ev::Error { .. } => {}
        }
    }

    fn start(&mut self, id: &str, model: &str, created: Option<u64>, out: &mut Vec<u8>) {
        if !self.head.begin("chatcmpl-", id, model, created) {
            return;
        }
        let first = Delta {
            role: Some("assistant"),
            content: Some(""),
            ..Delta::default()
        };
        self.write_chunk(first, None, None, out);
    }

    fn finished(&self) -> bool {
        self.finish.is_some()
    }

    fn complete(&mut self, out: &mut Vec<u8>) {
        self.send_finish(out);
        if self.include_usage
            && let Some(usage) = self.usage
        {
            self.write_chunk(Delta::default(), None, Some(ChatUsageOut::from(usage)), out);
        }
        out.extend_from_slice(b"data: [DONE]\n\n");
        self.head.closed = true;
    }

    fn fail(&mut self, kind: &str, message: &str, out: &mut Vec<u8>) {
        let (kind, code) = match kind {
            "rate_limit_error" | "rate_limit_exceeded" => ("rate_limit_error", Some(kind)),
            "invalid_request_error" => ("invalid_request_error", None),
            other => ("server_error", Some(other)),
        };
        let chunk = ErrorChunk {
            error: ErrorBody {
                message,
                kind,
                code,
            },
        };
        write_event(out, None, &chunk);
        self.head.closed = true;
    }
}

impl ChatEncoder {
    fn delta(&mut self, delta: Delta<'_>, out: &mut Vec<u8>) {
        self.ensure_started(out);
        self.write_chunk(delta, None, None, out);
    }

    fn write_chunk(
        &self,
        delta: Delta<'_>,
        finish: Option<&'static str>,
        usage: Option<ChatUsageOut>,
        out: &mut Vec<u8>,
    ) {
        let choices = [Choice {
            index: 0,
            delta,
            finish_reason: finish,
        }];
        let chunk = Chunk {
            id: &self.head.id,
            object: "chat.completion.chunk",
            created: self.head.created,
            model: &self.head.model,
            choices: if usage.is_some() { &[] } else { &choices },
            usage,
        };
        write_event(out, None, &chunk);
    }

    fn tool_start(&mut self, key: u32, id: &str, name: &str, out: &mut Vec<u8>) {
        let index = u32::try_from(self.calls.len()).unwrap_or(u32::MAX);
        self.calls.push((key, index, false));
        let call = ToolDelta {
            index,
            id: Some(id),
            kind: Some("function"),
            function: FunctionDelta {
                name: Some(name),
                arguments: "",
            },
        };
        self.delta(
            Delta {
                tool_calls: Some([call]),
                ..Delta::default()
            },
            out,
        );
    }

    fn tool_args(&mut self, key: u32, args: &str, out: &mut Vec<u8>) {
        let Some(call) = self.calls.iter_mut().find(|c| c.0 == key) else {
            return;
        };
        if args.is_empty() {
            return;
        }
        call.2 = true;
        let index = call.1;
        self.write_args(index, args, out);
    }

    fn write_args(&mut self, index: u32, args: &str, out: &mut Vec<u8>) {
        let call = ToolDelta {
            index,
            id: None,
            kind: None,
            function: FunctionDelta {
                name: None,
                arguments: args,
            },
        };
        self.delta(
            Delta {
                tool_calls: Some([call]),
                ..Delta::default()
            },
            out,
        );
    }

    /// A call that ends without any argument text gets `{}`: clients
    /// parse `arguments` as JSON, and `""` is not JSON.
    fn tool_end(&mut self, key: u32, out: &mut Vec<u8>) {
        if let Some(call) = self.calls.iter_mut().find(|c| c.0 == key && !c.2) {
            call.2 = true;
            let index = call.1;
            self.write_args(index, "{}", out);
        }
    }

    fn send_finish(&mut self, out: &mut Vec<u8>) {
        if self.finish_sent {
            return;
        }
        let pending: Vec<u32> = self.calls.iter().filter(|c| !c.2).map(|c| c.0).collect();
        for key in pending {
            self.tool_end(key, out);
        }
        let finish = match self.finish {
            Some(f) => f,
            None if self.calls.is_empty() => Finish::Stop,
            None => Finish::ToolCalls,
        };
        self.ensure_started(out);
        self.write_chunk(Delta::default(), Some(finish.chat()), None, out);
        self.finish_sent = true;
    }
}
