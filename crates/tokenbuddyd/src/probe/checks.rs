//! The probe's requests and how their answers are judged: pure functions
//! from what an upstream answered (bytes, or why there was no answer) to a
//! verdict with its number. The wire types are read here and nowhere else.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tb_domain::{ProbeCheck, Verdict};

/// `max_tokens` of the "long answer" request: an honest upstream stops
/// there with `finish_reason: "length"`.
pub(crate) const MAX_TOKENS_LIMIT: u64 = 16;

/// The tool the tool-call round trip offers.
pub(crate) const TOOL_NAME: &str = "get_weather";

/// The plain request's text: long enough (a few hundred tokens) that the
/// per-message framing is small next to it, so a prompt over-count or a
/// hidden system prompt shows as a clear percentage.
pub(crate) fn plain_prompt() -> String {
    let paragraph = "Bread is one of the oldest prepared foods. Evidence from thirty thousand \
        years ago in Europe shows starch residue on rocks used for pounding plants. Around ten \
        thousand years ago, with the dawn of the Neolithic age and the spread of agriculture, \
        grains became the mainstay of making bread. Yeast spores occur everywhere, including on \
        the surface of cereal grains, so any dough left to rest will become naturally leavened. ";
    format!("{}Reply with the single word OK.", paragraph.repeat(4))
}

/// One request of the probe, with what the cost estimate needs.
#[derive(Debug, Clone)]
pub(crate) struct ProbeCall {
    /// The chat completions body.
    pub(crate) body: Value,
    /// Input tokens expected (the local count; tools add a little).
    pub(crate) input_tokens: u64,
    /// The most output tokens it may produce (its `max_tokens`).
    pub(crate) max_output_tokens: u64,
}

fn user(text: &str) -> Value {
    json!({"role": "user", "content": text})
}

fn tools() -> Value {
    json!([{
        "type": "function",
        "function": {
            "name": TOOL_NAME,
            "description": "The current weather in a city.",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            },
        },
    }])
}

/// Tokens a tool definition adds to a prompt, roughly (for the estimate).
const TOOL_TOKENS: u64 = 60;

const STREAM_TEXT: &str = "Count from one to five.";
const TOOL_TEXT: &str = "What is the weather in Paris? Use the tool.";
const LONG_TEXT: &str = "Write a five hundred word essay about the history of bread.";
const TOOL_RESULT: &str = r#"{"temperature_c": 21, "sky": "sunny"}"#;

fn call(body: Value, texts: &[&str], extra: u64, max_output_tokens: u64) -> ProbeCall {
    ProbeCall {
        body,
        input_tokens: tb_tokens::chat_prompt_tokens(texts) + extra,
        max_output_tokens,
    }
}

/// The plain request (also measures prompt tokens and the model id).
pub(crate) fn plain_call(model: &str) -> ProbeCall {
    let prompt = plain_prompt();
    call(
        json!({"model": model, "messages": [user(&prompt)], "max_tokens": 32}),
        &[&prompt],
        0,
        32,
    )
}

/// The streamed request, asking for the usage chunk.
pub(crate) fn stream_call(model: &str) -> ProbeCall {
    call(
        json!({"model": model, "messages": [user(STREAM_TEXT)], "max_tokens": 32,
               "stream": true, "stream_options": {"include_usage": true}}),
        &[STREAM_TEXT],
        0,
        32,
    )
}

/// The first half of the tool round trip: the tool must be called.
pub(crate) fn tool_call(model: &str) -> ProbeCall {
    call(
        json!({"model": model, "messages": [user(TOOL_TEXT)], "tools": tools(),
               "tool_choice": "required", "max_tokens": 64}),
        &[TOOL_TEXT],
        TOOL_TOKENS,
        64,
    )
}

/// The second half: the tool's result, to be answered in words.
pub(crate) fn tool_result_call(model: &str, call_id: &str, arguments: &str) -> ProbeCall {
    let assistant = json!({"role": "assistant", "content": null, "tool_calls": [{
        "id": call_id, "type": "function",
        "function": {"name": TOOL_NAME, "arguments": arguments},
    }]});
    let result = json!({"role": "tool", "tool_call_id": call_id, "content": TOOL_RESULT});
    call(
        json!({"model": model, "messages": [user(TOOL_TEXT), assistant, result],
               "tools": tools(), "max_tokens": 64}),
        &[TOOL_TEXT, arguments, TOOL_RESULT],
        TOOL_TOKENS,
        64,
    )
}

/// The long answer cut by `max_tokens`.
pub(crate) fn max_tokens_call(model: &str) -> ProbeCall {
    call(
        json!({"model": model, "messages": [user(LONG_TEXT)], "max_tokens": MAX_TOKENS_LIMIT}),
        &[LONG_TEXT],
        0,
        MAX_TOKENS_LIMIT,
    )
}

/// Every call a full probe of `model` makes (the tool result call with a
/// made-up id, for the estimate).
pub(crate) fn all_calls(model: &str) -> Vec<ProbeCall> {
    vec![
        plain_call(model),
        stream_call(model),
        tool_call(model),
        tool_result_call(model, "call_1", r#"{"city":"Paris"}"#),
        max_tokens_call(model),
    ]
}

/// What one call got: the answer's body, or why there was none.
pub(crate) type Answer = Result<bytes::Bytes, String>;

/// One check's result (also its `--json` form).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Judged {
    pub(crate) check: ProbeCheck,
    pub(crate) verdict: Verdict,
    pub(crate) measured: Option<i64>,
    pub(crate) detail: String,
}

impl Judged {
    fn new(check: ProbeCheck, verdict: Verdict, measured: Option<i64>, detail: String) -> Judged {
        Judged {
            check,
            verdict,
            measured,
            detail,
        }
    }

    fn unknown(check: ProbeCheck, why: impl Into<String>) -> Judged {
        Judged::new(check, Verdict::Unknown, None, why.into())
    }

    /// The matrix cell: the mark and, where it says something, the number.
    pub(crate) fn cell(&self) -> String {
        let mark = self.verdict.mark();
        match (self.check, self.measured) {
            (ProbeCheck::PromptTokens, Some(pct)) => format!("{mark} {pct:+} %"),
            (ProbeCheck::MaxTokens, Some(n)) => format!("{mark} {n} tokens"),
            _ => mark.to_string(),
        }
    }
}

#[derive(Debug, Deserialize)]
struct ChatAnswer {
    model: Option<String>,
    #[serde(default)]
    choices: Vec<Choice>,
    usage: Option<WireUsage>,
}

#[derive(Debug, Deserialize)]
struct Choice {
    message: Option<Message>,
    finish_reason: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Message {
    content: Option<String>,
    tool_calls: Option<Vec<ToolCall>>,
}

#[derive(Debug, Deserialize)]
struct ToolCall {
    id: Option<String>,
    function: Option<FunctionCall>,
}

#[derive(Debug, Deserialize)]
struct FunctionCall {
    name: Option<String>,
    arguments: Option<String>,
}

#[derive(Debug, Clone, Copy, Deserialize)]
struct WireUsage {
    prompt_tokens: Option<u64>,
    completion_tokens: Option<u64>,
}

#[derive(Debug, Deserialize)]
struct StreamChunk {
    #[serde(default)]
    choices: Vec<StreamChoice>,
    usage: Option<WireUsage>,
}

#[derive(Debug, Deserialize)]
struct StreamChoice {
    delta: Option<Delta>,
}

#[derive(Debug, Deserialize)]
struct Delta {
    content: Option<String>,
}

/// The answer as a chat completion, or why it is not one.
fn parse(answer: &Answer) -> Result<ChatAnswer, String> {
    let body = answer.as_ref().map_err(Clone::clone)?;
    serde_json::from_slice(body).map_err(|e| format!("not a chat completion: {e}"))
}

fn first_message(a: &ChatAnswer) -> Option<&Message> {
    a.choices.first().and_then(|c| c.message.as_ref())
}

fn text_of(a: &ChatAnswer) -> Option<&str> {
    first_message(a)
        .and_then(|m| m.content.as_deref())
        .filter(|t| !t.trim().is_empty())
}

/// Plain answer: a choice with text.
pub(crate) fn judge_plain(answer: &Answer, latency_ms: u64) -> Judged {
    let check = ProbeCheck::Plain;
    let a = match parse(answer) {
        Ok(a) => a,
        Err(why) => return Judged::new(check, Verdict::Fail, None, why),
    };
    let ms = i64::try_from(latency_ms).ok();
    match text_of(&a) {
        Some(t) => Judged::new(
            check,
            Verdict::Pass,
            ms,
            format!("{} characters in {latency_ms} ms", t.chars().count()),
        ),
        None => Judged::new(check, Verdict::Fail, ms, "an answer without text".into()),
    }
}

/// Stream with usage: content deltas and a usage chunk.
pub(crate) fn judge_stream(answer: &Answer) -> Judged {
    let check = ProbeCheck::StreamUsage;
    let body = match answer {
        Ok(b) => b,
        Err(why) => return Judged::new(check, Verdict::Fail, None, why.clone()),
    };
    let text = String::from_utf8_lossy(body);
    let (mut content, mut usage, mut events) = (false, None, 0);
    for data in text.lines().filter_map(|l| l.strip_prefix("data:")) {
        let data = data.trim();
        if data == "[DONE]" {
            continue;
        }
        let Ok(chunk) = serde_json::from_str::<StreamChunk>(data) else {
            continue;
        };
        events += 1;
        content |= chunk.choices.iter().any(|c| {
            c.delta
                .as_ref()
                .and_then(|d| d.content.as_deref())
                .is_some_and(|t| !t.is_empty())
        });
        usage = usage.or(chunk.usage);
    }
    let completion = usage
        .and_then(|u| u.completion_tokens)
        .and_then(|n| i64::try_from(n).ok());
    match (events, content, usage) {
        (0, _, _) => Judged::new(
            check,
            Verdict::Fail,
            None,
            "not an SSE stream of chat chunks".into(),
        ),
        (_, false, _) => Judged::new(
            check,
            Verdict::Fail,
            completion,
            "a stream without content".into(),
        ),
        (_, true, None) => Judged::new(
            check,
            Verdict::Fail,
            None,
            "no usage chunk although stream_options.include_usage was set".into(),
        ),
        (_, true, Some(_)) => Judged::new(
            check,
            Verdict::Pass,
            completion,
            format!("{events} chunks with usage"),
        ),
    }
}

/// The tool call the first answer made, when it made the right one:
/// `(id, arguments)`.
pub(crate) fn tool_call_made(answer: &Answer) -> Result<(String, String), String> {
    let a = parse(answer)?;
    let call = first_message(&a)
        .and_then(|m| m.tool_calls.as_ref())
        .and_then(|c| c.first())
        .ok_or("answered without calling the tool")?;
    let f = call
        .function
        .as_ref()
        .ok_or("a tool call without a function")?;
    if f.name.as_deref() != Some(TOOL_NAME) {
        return Err(format!(
            "called {:?} instead of {TOOL_NAME}",
            f.name.as_deref().unwrap_or("")
        ));
    }
    let arguments = f.arguments.clone().unwrap_or_default();
    match serde_json::from_str::<Value>(&arguments) {
        Ok(Value::Object(_)) => {}
        _ => return Err("the tool call's arguments are not a JSON object".into()),
    }
    Ok((
        call.id.clone().unwrap_or_else(|| "call_1".into()),
        arguments,
    ))
}

/// The tool round trip: the call (already checked by [`tool_call_made`]),
/// then a text answer to its result.
pub(crate) fn judge_tool(
    first: Result<(String, String), String>,
    second: Option<&Answer>,
) -> Judged {
    let check = ProbeCheck::ToolCall;
    if let Err(why) = first {
        return Judged::new(check, Verdict::Fail, None, why);
    }
    let Some(second) = second else {
        return Judged::unknown(check, "the tool result was not sent");
    };
    match parse(second) {
        Ok(a) if text_of(&a).is_some() => Judged::new(
            check,
            Verdict::Pass,
            None,
            "called the tool and answered its result".into(),
        ),
        Ok(_) => Judged::new(
            check,
            Verdict::Fail,
            None,
            "no answer to the tool's result".into(),
        ),
        Err(why) => Judged::new(
            check,
            Verdict::Fail,
            None,
            format!("the tool result was refused: {why}"),
        ),
    }
}

/// `max_tokens` honoured: at most the limit, finish reason `length`.
pub(crate) fn judge_max_tokens(answer: &Answer) -> Judged {
    let check = ProbeCheck::MaxTokens;
    let a = match parse(answer) {
        Ok(a) => a,
        Err(why) => return Judged::unknown(check, why),
    };
    let finish = a.choices.first().and_then(|c| c.finish_reason.clone());
    let Some(n) = a.usage.and_then(|u| u.completion_tokens) else {
        return Judged::unknown(check, "no completion_tokens in the usage");
    };
    let measured = i64::try_from(n).ok();
    let finish_text = finish.as_deref().unwrap_or("none");
    if n <= MAX_TOKENS_LIMIT && finish.as_deref() == Some("length") {
        Judged::new(
            check,
            Verdict::Pass,
            measured,
            format!("{n} completion tokens, finish reason length"),
        )
    } else {
        Judged::new(
            check,
            Verdict::Fail,
            measured,
            format!(
                "{n} completion tokens for max_tokens = {MAX_TOKENS_LIMIT}, finish reason {finish_text}"
            ),
        )
    }
}

/// Prompt tokens reported vs counted locally: the over-count in percent,
/// a failure above `threshold_pct`.
pub(crate) fn judge_prompt_tokens(answer: &Answer, local: u64, threshold_pct: u32) -> Judged {
    let check = ProbeCheck::PromptTokens;
    let a = match parse(answer) {
        Ok(a) => a,
        Err(why) => return Judged::unknown(check, why),
    };
    let Some(reported) = a.usage.and_then(|u| u.prompt_tokens) else {
        return Judged::unknown(check, "no prompt_tokens in the usage");
    };
    let pct = over_count_pct(reported, local);
    let verdict = if pct > i64::from(threshold_pct) {
        Verdict::Fail
    } else {
        Verdict::Pass
    };
    Judged::new(
        check,
        verdict,
        Some(pct),
        format!(
            "reported {reported}, counted {local} locally ({pct:+} %, threshold {threshold_pct} %)"
        ),
    )
}

/// `(reported − local) / local` in whole percent, rounded to nearest.
fn over_count_pct(reported: u64, local: u64) -> i64 {
    let local = i128::from(local.max(1));
    let diff = i128::from(reported) - local;
    let pct = (diff * 200 + local * diff.signum()) / (2 * local);
    i64::try_from(pct).unwrap_or(if diff > 0 { i64::MAX } else { i64::MIN })
}

/// The answered model id is the requested one, or a dated snapshot of it
/// (`gpt-4o` → `gpt-4o-2024-08-06`: a `-` then a digit); `gpt-4o-mini` for
/// `gpt-4o` is another (cheaper) model and fails.
pub(crate) fn judge_model_id(answer: &Answer, requested: &str) -> Judged {
    let check = ProbeCheck::ModelId;
    let a = match parse(answer) {
        Ok(a) => a,
        Err(why) => return Judged::unknown(check, why),
    };
    let Some(answered) = a.model else {
        return Judged::unknown(check, "the answer names no model");
    };
    let same = answered == requested
        || answered
            .strip_prefix(requested)
            .and_then(|rest| rest.strip_prefix('-'))
            .is_some_and(|date| date.starts_with(|c: char| c.is_ascii_digit()));
    let verdict = if same { Verdict::Pass } else { Verdict::Fail };
    Judged::new(check, verdict, None, format!("answered as {answered:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(v: Value) -> Answer {
        Ok(v.to_string().into())
    }

    fn chat(
        model: &str,
        content: Option<&str>,
        finish: &str,
        prompt: u64,
        completion: u64,
    ) -> Answer {
        ok(
            json!({"model": model, "choices": [{"message": {"role": "assistant", "content": content},
            "finish_reason": finish}], "usage": {"prompt_tokens": prompt, "completion_tokens": completion}}),
        )
    }

    #[test]
    fn plain_needs_text() {
        let j = judge_plain(&chat("m", Some("OK"), "stop", 1, 1), 42);
        assert_eq!((j.verdict, j.measured), (Verdict::Pass, Some(42)));
        assert_eq!(
            judge_plain(&chat("m", Some("  "), "stop", 1, 1), 1).verdict,
            Verdict::Fail
        );
        assert_eq!(
            judge_plain(&chat("m", None, "stop", 1, 1), 1).verdict,
            Verdict::Fail
        );
        let down = judge_plain(&Err("HTTP 503".into()), 1);
        assert_eq!(
            (down.verdict, down.detail.as_str()),
            (Verdict::Fail, "HTTP 503")
        );
        assert_eq!(judge_plain(&Ok("<html>".into()), 1).verdict, Verdict::Fail);
    }

    #[test]
    fn stream_needs_content_and_usage() {
        let sse = |events: &[Value]| -> Answer {
            let mut s: String = events.iter().map(|e| format!("data: {e}\n\n")).collect();
            s.push_str("data: [DONE]\n\n");
            Ok(s.into())
        };
        let content = json!({"choices": [{"delta": {"content": "1 2 3"}}]});
        let usage = json!({"choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 7}});
        let j = judge_stream(&sse(&[content.clone(), usage.clone()]));
        assert_eq!((j.verdict, j.measured), (Verdict::Pass, Some(7)));
        let j = judge_stream(&sse(std::slice::from_ref(&content)));
        assert_eq!(j.verdict, Verdict::Fail);
        assert!(j.detail.contains("no usage chunk"), "{}", j.detail);
        assert_eq!(
            judge_stream(&sse(std::slice::from_ref(&usage))).verdict,
            Verdict::Fail
        );
        assert_eq!(judge_stream(&Ok("{}".into())).verdict, Verdict::Fail);
        assert_eq!(judge_stream(&Err("timeout".into())).verdict, Verdict::Fail);
    }

    #[test]
    fn tool_round_trip() {
        let called = |name: &str, args: &str| {
            ok(
                json!({"choices": [{"message": {"content": null, "tool_calls": [{"id": "c9",
                "type": "function", "function": {"name": name, "arguments": args}}]}}]}),
            )
        };
        let made = tool_call_made(&called(TOOL_NAME, r#"{"city":"Paris"}"#));
        assert_eq!(
            made,
            Ok(("c9".to_string(), r#"{"city":"Paris"}"#.to_string()))
        );
        assert!(tool_call_made(&called("other", "{}")).is_err());
        assert!(tool_call_made(&called(TOOL_NAME, "Paris")).is_err());
        assert!(tool_call_made(&chat("m", Some("no"), "stop", 1, 1)).is_err());
        let answered = chat("m", Some("Sunny."), "stop", 1, 1);
        assert_eq!(
            judge_tool(made.clone(), Some(&answered)).verdict,
            Verdict::Pass
        );
        let silent = chat("m", None, "stop", 1, 0);
        assert_eq!(
            judge_tool(made.clone(), Some(&silent)).verdict,
            Verdict::Fail
        );
        assert_eq!(judge_tool(made, None).verdict, Verdict::Unknown);
        let refused = judge_tool(Err("answered without calling the tool".into()), None);
        assert_eq!(refused.verdict, Verdict::Fail);
        assert_eq!(refused.cell(), "✗");
    }

    #[test]
    fn max_tokens_needs_the_limit_and_length() {
        let j = judge_max_tokens(&chat("m", Some("w"), "length", 1, 16));
        assert_eq!(
            (j.verdict, j.cell().as_str()),
            (Verdict::Pass, "✓ 16 tokens")
        );
        let j = judge_max_tokens(&chat("m", Some("w"), "stop", 1, 200));
        assert_eq!(
            (j.verdict, j.cell().as_str()),
            (Verdict::Fail, "✗ 200 tokens")
        );
        assert!(
            j.detail
                .contains("200 completion tokens for max_tokens = 16"),
            "{}",
            j.detail
        );
        // Under the limit but not cut: it did not stop because of the limit.
        assert_eq!(
            judge_max_tokens(&chat("m", Some("w"), "stop", 1, 3)).verdict,
            Verdict::Fail
        );
        let no_usage =
            ok(json!({"choices": [{"message": {"content": "w"}, "finish_reason": "length"}]}));
        assert_eq!(judge_max_tokens(&no_usage).verdict, Verdict::Unknown);
    }

    #[test]
    fn prompt_tokens_against_the_threshold() {
        let j = |reported, local, threshold| {
            judge_prompt_tokens(
                &chat("m", Some("OK"), "stop", reported, 1),
                local,
                threshold,
            )
        };
        let over = j(130, 100, 25);
        assert_eq!((over.verdict, over.measured), (Verdict::Fail, Some(30)));
        assert_eq!(over.cell(), "✗ +30 %");
        assert_eq!(j(130, 100, 30).verdict, Verdict::Pass);
        let honest = j(100, 100, 25);
        assert_eq!(
            (honest.verdict, honest.cell().as_str()),
            (Verdict::Pass, "✓ +0 %")
        );
        assert_eq!(j(90, 100, 25).measured, Some(-10));
        assert_eq!(over_count_pct(1, 3), -67);
        assert_eq!(over_count_pct(5, 3), 67);
        assert_eq!(over_count_pct(5, 0), 400);
        let none = ok(json!({"choices": [{"message": {"content": "OK"}}]}));
        assert_eq!(
            judge_prompt_tokens(&none, 100, 25).verdict,
            Verdict::Unknown
        );
    }

    #[test]
    fn model_id_allows_dated_snapshots() {
        let j = |answered: &str, requested: &str| {
            judge_model_id(&chat(answered, Some("OK"), "stop", 1, 1), requested).verdict
        };
        assert_eq!(j("gpt-4o", "gpt-4o"), Verdict::Pass);
        assert_eq!(j("gpt-4o-2024-08-06", "gpt-4o"), Verdict::Pass);
        assert_eq!(j("gpt-4o-mini", "gpt-4o-mini"), Verdict::Pass);
        assert_eq!(j("gpt-4o-mini", "gpt-4o"), Verdict::Fail, "a cheaper model");
        assert_eq!(
            j("claude-sonnet-4-5-20250929", "claude-sonnet-4-5"),
            Verdict::Pass
        );
        assert_eq!(j("gpt-3.5-turbo", "gpt-4o"), Verdict::Fail);
        assert_eq!(j("gpt-4", "gpt-4o"), Verdict::Fail);
        let anonymous = ok(json!({"choices": []}));
        assert_eq!(judge_model_id(&anonymous, "m").verdict, Verdict::Unknown);
    }

    #[test]
    fn the_plain_prompt_is_long_enough_to_measure() {
        let local = plain_call("m").input_tokens;
        assert!(local > 250, "{local}");
    }
}
