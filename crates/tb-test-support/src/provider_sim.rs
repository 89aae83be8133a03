//! A simulated chat completions provider, honest or not, for the tests of
//! `tokenbuddyd probe`: the mock answers `POST /v1/chat/completions` from
//! the request instead of with a canned body, so a probe's checks see real
//! behaviour — `max_tokens` honoured or ignored, prompt tokens counted
//! like the probe counts them (or over-counted), tool calls made (or not).
//! Set one per mock with [`MockUpstream::simulate`](crate::MockUpstream::simulate).

use serde_json::{Value, json};

use crate::{Chunk, Reply};

/// How the simulated provider behaves. [`ProviderSim::honest`] passes
/// every probe check; each field breaks one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProviderSim {
    /// Cut the answer at `max_tokens` (`finish_reason: "length"`); when
    /// false, the whole long answer comes back, `finish_reason: "stop"`.
    pub honours_max_tokens: bool,
    /// Reported prompt tokens as a percentage of the true count
    /// (`tb_tokens::chat_prompt_tokens` of the messages): 100 is honest,
    /// 130 over-counts by 30 %.
    pub prompt_tokens_pct: u64,
    /// Answer a request with tools by calling the first tool; when false,
    /// with text that calls nothing.
    pub calls_tools: bool,
}

/// Words of the long answer, one completion token each.
const LONG_ANSWER_WORDS: usize = 200;

impl ProviderSim {
    /// Honours `max_tokens`, counts prompt tokens truly, calls tools.
    pub fn honest() -> ProviderSim {
        ProviderSim {
            honours_max_tokens: true,
            prompt_tokens_pct: 100,
            calls_tools: true,
        }
    }

    /// The answer to a chat completions request body.
    pub fn answer(&self, body: &Value) -> Reply {
        let model = body
            .get("model")
            .and_then(Value::as_str)
            .unwrap_or("mock-model");
        let texts: Vec<&str> = body
            .get("messages")
            .and_then(Value::as_array)
            .map(|ms| {
                ms.iter()
                    .map(|m| m.get("content").and_then(Value::as_str).unwrap_or(""))
                    .collect()
            })
            .unwrap_or_default();
        let prompt_tokens = tb_tokens::chat_prompt_tokens(&texts) * self.prompt_tokens_pct / 100;
        let after_tool = body
            .get("messages")
            .and_then(Value::as_array)
            .and_then(|ms| ms.last())
            .and_then(|m| m.get("role"))
            .and_then(Value::as_str)
            == Some("tool");
        let tool = body
            .get("tools")
            .and_then(Value::as_array)
            .and_then(|t| t.first())
            .and_then(|t| t.pointer("/function/name"))
            .and_then(Value::as_str);
        let message = match tool {
            Some(name) if self.calls_tools && !after_tool => json!({
                "role": "assistant",
                "content": null,
                "tool_calls": [{
                    "id": "call_sim_1",
                    "type": "function",
                    "function": {"name": name, "arguments": "{\"city\":\"Paris\"}"},
                }],
            }),
            Some(_) if after_tool => {
                json!({"role": "assistant", "content": "It is sunny in Paris."})
            }
            Some(_) => json!({"role": "assistant", "content": "I would rather not call tools."}),
            None => json!({"role": "assistant", "content": null}),
        };
        let (message, finish, completion_tokens) =
            if message["content"].is_null() && message.get("tool_calls").is_none() {
                let limit = body
                    .get("max_completion_tokens")
                    .or_else(|| body.get("max_tokens"))
                    .and_then(Value::as_u64)
                    .filter(|_| self.honours_max_tokens);
                let words = match limit {
                    Some(n) => LONG_ANSWER_WORDS.min(usize::try_from(n).unwrap_or(usize::MAX)),
                    None => LONG_ANSWER_WORDS,
                };
                let finish = if words < LONG_ANSWER_WORDS {
                    "length"
                } else {
                    "stop"
                };
                let text = vec!["word"; words].join(" ");
                (
                    json!({"role": "assistant", "content": text}),
                    finish,
                    words as u64,
                )
            } else if message.get("tool_calls").is_some() {
                (message, "tool_calls", 12)
            } else {
                (message, "stop", 8)
            };
        let usage = json!({
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        });
        if body.get("stream").and_then(Value::as_bool) == Some(true) {
            let include_usage = body.pointer("/stream_options/include_usage") == Some(&json!(true));
            return stream(model, &message, finish, include_usage.then_some(usage));
        }
        Reply::json(
            200,
            json!({
                "id": "chatcmpl-sim",
                "object": "chat.completion",
                "created": 1_700_000_000,
                "model": model,
                "choices": [{"index": 0, "message": message, "finish_reason": finish}],
                "usage": usage,
            })
            .to_string(),
        )
    }
}

/// The answer as an SSE stream: role, content, finish, usage (if asked), `[DONE]`.
fn stream(model: &str, message: &Value, finish: &str, usage: Option<Value>) -> Reply {
    let chunk = |delta: Value, finish: Value| {
        json!({
            "id": "chatcmpl-sim",
            "object": "chat.completion.chunk",
            "created": 1_700_000_000,
            "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        })
    };
    let mut events = vec![
        chunk(json!({"role": "assistant", "content": ""}), Value::Null),
        chunk(json!({"content": message["content"]}), Value::Null),
        chunk(json!({}), json!(finish)),
    ];
    if let Some(usage) = usage {
        events.push(json!({
            "id": "chatcmpl-sim",
            "object": "chat.completion.chunk",
            "created": 1_700_000_000,
            "model": model,
            "choices": [],
            "usage": usage,
        }));
    }
    let mut chunks: Vec<Chunk> = events
        .iter()
        .map(|e| Chunk::Data(format!("data: {e}\n\n").into()))
        .collect();
    chunks.push(Chunk::Data("data: [DONE]\n\n".into()));
    Reply::sse(chunks)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(reply: &Reply) -> Value {
        match &reply.body {
            crate::ReplyBody::Bytes(b) => serde_json::from_slice(b).unwrap_or(Value::Null),
            _ => Value::Null,
        }
    }

    #[test]
    fn honest_and_dishonest_answers() {
        let req = json!({"model": "m", "max_tokens": 16, "messages": [{"role": "user", "content": "Write a long essay."}]});
        let honest = body(&ProviderSim::honest().answer(&req));
        assert_eq!(honest["usage"]["completion_tokens"], 16);
        assert_eq!(honest["choices"][0]["finish_reason"], "length");
        let truth = tb_tokens::chat_prompt_tokens(&["Write a long essay."]);
        assert_eq!(honest["usage"]["prompt_tokens"], truth);
        let liar = ProviderSim {
            honours_max_tokens: false,
            prompt_tokens_pct: 130,
            calls_tools: false,
        };
        let bad = body(&liar.answer(&req));
        assert_eq!(bad["usage"]["completion_tokens"], 200);
        assert_eq!(bad["choices"][0]["finish_reason"], "stop");
        assert_eq!(bad["usage"]["prompt_tokens"], truth * 130 / 100);
        let tools = json!({"model": "m", "messages": [{"role": "user", "content": "Weather?"}],
            "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": {}}}]});
        let call = body(&ProviderSim::honest().answer(&tools));
        assert_eq!(
            call["choices"][0]["message"]["tool_calls"][0]["function"]["name"],
            "get_weather"
        );
        let refused = body(&liar.answer(&tools));
        assert!(refused["choices"][0]["message"].get("tool_calls").is_none());
    }
}
