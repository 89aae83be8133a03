//! The parts of a Messages request that take input tokens.
//!
//! Typed where the shape is known; a block of a type this crate does not
//! know yet is counted by its JSON text, which over-counts rather than
//! ignores it.

use serde::Deserialize;
use serde_json::Value;
use serde_json::value::RawValue;

use crate::{CountError, Estimate, IMAGE_TOKENS, padded, text_tokens};

/// Framing around each message (role, separators).
const PER_MESSAGE: u64 = 4;
/// Framing around each tool definition.
const PER_TOOL: u64 = 8;
/// The request's own framing.
const PER_REQUEST: u64 = 3;

#[derive(Deserialize)]
struct CountBody<'a> {
    #[serde(default)]
    system: Option<Content>,
    messages: Vec<Message>,
    #[serde(default, borrow)]
    tools: Vec<&'a RawValue>,
}

#[derive(Deserialize)]
struct Message {
    content: Content,
}

/// A string, or a list of blocks.
#[derive(Deserialize)]
#[serde(untagged)]
enum Content {
    Text(String),
    Blocks(Vec<Block>),
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Block {
    Text {
        text: String,
    },
    Thinking {
        thinking: String,
    },
    RedactedThinking {},
    Image {},
    ToolUse {
        name: String,
        input: Value,
    },
    ToolResult {
        #[serde(default)]
        content: Option<Content>,
    },
    #[serde(untagged)]
    Other(Value),
}

/// Estimates the input tokens of a Messages (or count_tokens) body.
pub fn count_messages_request(body: &[u8]) -> Result<Estimate, CountError> {
    let body: CountBody<'_> = serde_json::from_slice(body)?;
    let mut raw = PER_REQUEST;
    if let Some(system) = &body.system {
        raw += content_tokens(system);
    }
    for message in &body.messages {
        raw += PER_MESSAGE + content_tokens(&message.content);
    }
    for tool in &body.tools {
        raw += PER_TOOL + text_tokens(tool.get());
    }
    Ok(Estimate {
        input_tokens: padded(raw),
    })
}

fn content_tokens(content: &Content) -> u64 {
    match content {
        Content::Text(text) => text_tokens(text),
        Content::Blocks(blocks) => blocks.iter().map(block_tokens).sum(),
    }
}

fn block_tokens(block: &Block) -> u64 {
    match block {
        Block::Text { text } => text_tokens(text),
        Block::Thinking { thinking } => text_tokens(thinking),
        // Earlier turns' thinking is not counted by Anthropic either when
        // it is redacted: it is opaque state, not prompt text.
        Block::RedactedThinking {} => 0,
        Block::Image {} => IMAGE_TOKENS,
        Block::ToolUse { name, input } => text_tokens(name) + json_tokens(input),
        Block::ToolResult { content } => content.as_ref().map_or(0, content_tokens),
        Block::Other(raw) => json_tokens(raw),
    }
}

/// A JSON value counted by its compact text.
fn json_tokens(value: &Value) -> u64 {
    text_tokens(&value.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(body: &str) -> u64 {
        count_messages_request(body.as_bytes())
            .map(|e| e.input_tokens)
            .unwrap_or_else(|e| panic!("{body}: {e}"))
    }

    #[test]
    fn text_grows_the_count_and_rounds_up() {
        let short = count(r#"{"model":"m","messages":[{"role":"user","content":"Hi"}]}"#);
        let long = count(
            r#"{"model":"m","messages":[{"role":"user","content":"Hi there, please summarise the attached file in three short bullet points."}]}"#,
        );
        assert!(long > short + 10, "{short} {long}");
        // 3 + 4 + 1 ("Hi") = 8, +10 % rounded up = 9.
        assert_eq!(short, 9);
    }

    #[test]
    fn every_part_of_a_claude_code_request_counts() {
        let base =
            r#"{"model":"m","messages":[{"role":"user","content":[{"type":"text","text":"go"}]}]}"#;
        let parts = [
            r#"{"model":"m","system":[{"type":"text","text":"You are a careful coding agent.","cache_control":{"type":"ephemeral"}}],"messages":[{"role":"user","content":[{"type":"text","text":"go"}]}]}"#,
            r#"{"model":"m","messages":[{"role":"user","content":[{"type":"text","text":"go"}]},{"role":"assistant","content":[{"type":"tool_use","id":"toolu_1","name":"Read","input":{"file_path":"/src/main.rs"}}]}]}"#,
            r#"{"model":"m","messages":[{"role":"user","content":[{"type":"text","text":"go"},{"type":"tool_result","tool_use_id":"toolu_1","content":"fn main() { println!(\"hello\"); }"}]}]}"#,
            r#"{"model":"m","messages":[{"role":"user","content":[{"type":"text","text":"go"}]},{"role":"assistant","content":[{"type":"thinking","thinking":"The user wants me to go.","signature":"abc"}]}]}"#,
            r#"{"model":"m","tools":[{"name":"Read","description":"Reads a file","input_schema":{"type":"object","properties":{"file_path":{"type":"string"}}}}],"messages":[{"role":"user","content":[{"type":"text","text":"go"}]}]}"#,
            r#"{"model":"m","messages":[{"role":"user","content":[{"type":"text","text":"go"},{"type":"image","source":{"type":"base64","media_type":"image/png","data":"iVBORw0KGgo="}}]}]}"#,
            r#"{"model":"m","messages":[{"role":"user","content":[{"type":"text","text":"go"},{"type":"search_result","source":"https://example.com","title":"A page","content":[]}]}]}"#,
        ];
        let base = count(base);
        for part in parts {
            assert!(count(part) > base, "{part}");
        }
    }

    #[test]
    fn an_image_counts_its_fixed_cost() {
        let with = count(
            r#"{"model":"m","messages":[{"role":"user","content":[{"type":"image","source":{"type":"url","url":"https://x/y.png"}}]}]}"#,
        );
        assert_eq!(with, padded(PER_REQUEST + PER_MESSAGE + IMAGE_TOKENS));
    }

    #[test]
    fn a_body_that_is_not_a_messages_request_is_an_error() {
        for body in [
            "",
            "[]",
            r#"{"messages":"x"}"#,
            r#"{"messages":[{"role":"user"}]}"#,
        ] {
            let err = count_messages_request(body.as_bytes()).unwrap_err();
            assert!(err.to_string().contains("count_tokens"), "{err}");
        }
    }
}
