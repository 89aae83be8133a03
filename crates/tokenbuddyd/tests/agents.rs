//! End-to-end with real coding agents: Claude Code, Codex, opencode,
//! Hermes and OpenClaw, at pinned versions (installed on first run into a
//! cache under the target dir; see `agents/support.rs`), each configured by
//! `tokenbuddyd install` in a temporary home, complete a two-turn tool task
//! through the real daemon. A scripted upstream asks the agent to read a
//! file holding a random nonce with the agent's own file-reading tool, then
//! answers with final text quoting the nonce it found in the tool result.
//! Each test checks that (a) the agent printed that text, (b) the second
//! upstream call carried the nonce in a tool result, and (c) the ledger
//! holds the two calls with their usage.
//!
//! The native tests use an upstream speaking the agent's own protocol; the
//! translated ones an upstream that speaks only another protocol, which
//! needs the daemon to translate.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
#[path = "agents/support.rs"]
mod support;

use support::{Agent, two_turn_tool_task};
use tb_domain::Protocol;

#[tokio::test]
async fn claude_code_reads_a_file_through_a_messages_upstream() {
    two_turn_tool_task(Agent::ClaudeCode, Protocol::Messages).await;
}

#[tokio::test]
async fn codex_reads_a_file_through_a_responses_upstream() {
    two_turn_tool_task(Agent::Codex, Protocol::Responses).await;
}

#[tokio::test]
async fn opencode_reads_a_file_through_a_chat_upstream() {
    two_turn_tool_task(Agent::Opencode, Protocol::ChatCompletions).await;
}

#[tokio::test]
async fn hermes_reads_a_file_through_a_chat_upstream() {
    two_turn_tool_task(Agent::Hermes, Protocol::ChatCompletions).await;
}

#[tokio::test]
async fn openclaw_reads_a_file_through_a_chat_upstream() {
    two_turn_tool_task(Agent::OpenClaw, Protocol::ChatCompletions).await;
}

#[tokio::test]
async fn claude_code_reads_a_file_through_a_chat_only_upstream() {
    two_turn_tool_task(Agent::ClaudeCode, Protocol::ChatCompletions).await;
}

#[tokio::test]
async fn codex_reads_a_file_through_a_chat_only_upstream() {
    two_turn_tool_task(Agent::Codex, Protocol::ChatCompletions).await;
}

#[tokio::test]
async fn opencode_reads_a_file_through_a_messages_only_upstream() {
    two_turn_tool_task(Agent::Opencode, Protocol::Messages).await;
}

#[tokio::test]
async fn hermes_reads_a_file_through_a_messages_only_upstream() {
    two_turn_tool_task(Agent::Hermes, Protocol::Messages).await;
}

#[tokio::test]
async fn openclaw_reads_a_file_through_a_messages_only_upstream() {
    two_turn_tool_task(Agent::OpenClaw, Protocol::Messages).await;
}
