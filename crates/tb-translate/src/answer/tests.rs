#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::Value;
use tb_domain::Protocol::{self, ChatCompletions as Chat, Messages, Responses};

use super::*;
use crate::test_route;

/// Translates an upstream answer and compares it with `expected` as JSON.
fn check_with(
    ctx: &AnswerContext,
    client: Protocol,
    upstream: Protocol,
    input: &str,
    expected: &str,
) {
    let got = translate_answer_with(&test_route(client, upstream), ctx, input.as_bytes())
        .unwrap_or_else(|e| panic!("{e}\n{input}"));
    let got: Value = serde_json::from_slice(&got).unwrap();
    let expected: Value = serde_json::from_str(expected).unwrap();
    assert_eq!(got, expected, "\n{upstream}→{client}\n{input}\ngot: {got}");
}

fn check(client: Protocol, upstream: Protocol, input: &str, expected: &str) {
    let ctx = AnswerContext {
        created: 1_700_000_000,
        ..AnswerContext::default()
    };
    check_with(&ctx, client, upstream, input, expected);
}

const MESSAGES_TOOL_ANSWER: &str = r#"{"id":"msg_01A","type":"message","role":"assistant","model":"claude-x","content":[{"type":"thinking","thinking":"Need the file.","signature":"EqQB"},{"type":"text","text":"Reading it."},{"type":"tool_use","id":"toolu_1","name":"Read","input":{"path":"a.rs"}},{"type":"tool_use","id":"toolu_2","name":"Ls","input":{}}],"stop_reason":"tool_use","stop_sequence":null,"usage":{"input_tokens":12,"cache_creation_input_tokens":100,"cache_read_input_tokens":2000,"output_tokens":40}}"#;

#[test]
fn messages_answers_to_chat_and_responses() {
    check(
        Chat,
        Messages,
        MESSAGES_TOOL_ANSWER,
        r#"{"id":"chatcmpl-msg_01A","object":"chat.completion","created":1700000000,"model":"claude-x","choices":[{"index":0,"message":{"role":"assistant","content":"Reading it.","reasoning_content":"Need the file.","refusal":null,"tool_calls":[{"id":"toolu_1","type":"function","function":{"name":"Read","arguments":"{\"path\":\"a.rs\"}"}},{"id":"toolu_2","type":"function","function":{"name":"Ls","arguments":"{}"}}]},"logprobs":null,"finish_reason":"tool_calls"}],"usage":{"prompt_tokens":2112,"completion_tokens":40,"total_tokens":2152,"prompt_tokens_details":{"cached_tokens":2000,"cache_write_tokens":100},"completion_tokens_details":{"reasoning_tokens":0}}}"#,
    );
    check(
        Responses,
        Messages,
        MESSAGES_TOOL_ANSWER,
        r#"{"id":"resp_msg_01A","object":"response","created_at":1700000000,"status":"completed","error":null,"incomplete_details":null,"instructions":null,"max_output_tokens":null,"model":"claude-x","output":[{"type":"reasoning","id":"rs_msg_01A_0","summary":[{"type":"summary_text","text":"Need the file."}]},{"type":"message","id":"msg_msg_01A_1","status":"completed","role":"assistant","content":[{"type":"output_text","text":"Reading it.","annotations":[],"logprobs":[]}]},{"type":"function_call","id":"fc_msg_01A_2","status":"completed","call_id":"toolu_1","name":"Read","arguments":"{\"path\":\"a.rs\"}"},{"type":"function_call","id":"fc_msg_01A_3","status":"completed","call_id":"toolu_2","name":"Ls","arguments":"{}"}],"parallel_tool_calls":true,"previous_response_id":null,"reasoning":{"effort":null,"summary":null},"store":false,"temperature":null,"text":{"format":{"type":"text"}},"tool_choice":"auto","tools":[],"top_p":null,"truncation":"disabled","usage":{"input_tokens":2112,"input_tokens_details":{"cached_tokens":2000,"cache_write_tokens":100},"output_tokens":40,"output_tokens_details":{"reasoning_tokens":0},"total_tokens":2152},"metadata":{}}"#,
    );
}

#[test]
fn chat_answers_to_messages_and_responses() {
    let chat = r#"{"id":"chatcmpl-9","object":"chat.completion","created":1711,"model":"deepseek-chat","choices":[{"index":0,"message":{"role":"assistant","content":null,"reasoning_content":"think","tool_calls":[{"id":"functions.read:0","type":"function","function":{"name":"read","arguments":""}}]},"finish_reason":"tool_calls"}],"usage":{"prompt_tokens":100,"completion_tokens":20,"total_tokens":120,"prompt_tokens_details":{"cached_tokens":64},"completion_tokens_details":{"reasoning_tokens":5}}}"#;
    check(
        Messages,
        Chat,
        chat,
        r#"{"id":"msg_chatcmpl-9","type":"message","role":"assistant","model":"deepseek-chat","content":[{"type":"thinking","thinking":"think","signature":""},{"type":"tool_use","id":"functions_read_0","name":"read","input":{}}],"stop_reason":"tool_use","stop_sequence":null,"usage":{"input_tokens":36,"cache_creation_input_tokens":0,"cache_read_input_tokens":64,"output_tokens":20}}"#,
    );
    check(
        Responses,
        Chat,
        r#"{"id":"c2","created":5,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"partial"},"finish_reason":"length"}]}"#,
        r#"{"id":"resp_c2","object":"response","created_at":5,"status":"incomplete","error":null,"incomplete_details":{"reason":"max_output_tokens"},"instructions":null,"max_output_tokens":null,"model":"m","output":[{"type":"message","id":"msg_c2_0","status":"completed","role":"assistant","content":[{"type":"output_text","text":"partial","annotations":[],"logprobs":[]}]}],"parallel_tool_calls":true,"previous_response_id":null,"reasoning":{"effort":null,"summary":null},"store":false,"temperature":null,"text":{"format":{"type":"text"}},"tool_choice":"auto","tools":[],"top_p":null,"truncation":"disabled","usage":null,"metadata":{}}"#,
    );
}

#[test]
fn responses_answers_to_chat_and_messages() {
    let responses = r#"{"id":"resp_7","object":"response","created_at":99,"status":"completed","model":"gpt-x","output":[{"type":"reasoning","id":"rs_1","summary":[{"type":"summary_text","text":"plan"}],"encrypted_content":"gAAA"},{"type":"message","id":"msg_1","role":"assistant","status":"completed","content":[{"type":"output_text","text":"Hi","annotations":[]}]},{"type":"function_call","id":"fc_1","call_id":"call_1","name":"f","arguments":"{\"a\":1}","status":"completed"}],"usage":{"input_tokens":30,"input_tokens_details":{"cached_tokens":10},"output_tokens":9,"output_tokens_details":{"reasoning_tokens":4},"total_tokens":39}}"#;
    check(
        Chat,
        Responses,
        responses,
        r#"{"id":"chatcmpl-resp_7","object":"chat.completion","created":99,"model":"gpt-x","choices":[{"index":0,"message":{"role":"assistant","content":"Hi","reasoning_content":"plan","refusal":null,"tool_calls":[{"id":"call_1","type":"function","function":{"name":"f","arguments":"{\"a\":1}"}}]},"logprobs":null,"finish_reason":"tool_calls"}],"usage":{"prompt_tokens":30,"completion_tokens":9,"total_tokens":39,"prompt_tokens_details":{"cached_tokens":10},"completion_tokens_details":{"reasoning_tokens":4}}}"#,
    );
    check(
        Messages,
        Responses,
        responses,
        r#"{"id":"msg_resp_7","type":"message","role":"assistant","model":"gpt-x","content":[{"type":"thinking","thinking":"plan","signature":""},{"type":"text","text":"Hi"},{"type":"tool_use","id":"call_1","name":"f","input":{"a":1}}],"stop_reason":"tool_use","stop_sequence":null,"usage":{"input_tokens":20,"cache_creation_input_tokens":0,"cache_read_input_tokens":10,"output_tokens":9}}"#,
    );
}

#[test]
fn stop_sequences_refusals_and_content_filter() {
    check(
        Chat,
        Messages,
        r#"{"id":"m","model":"c","content":[{"type":"text","text":"a"}],"stop_reason":"stop_sequence","stop_sequence":"END","usage":{"input_tokens":1,"output_tokens":1}}"#,
        r#"{"id":"chatcmpl-m","object":"chat.completion","created":1700000000,"model":"c","choices":[{"index":0,"message":{"role":"assistant","content":"a","refusal":null},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2,"prompt_tokens_details":{"cached_tokens":0},"completion_tokens_details":{"reasoning_tokens":0}}}"#,
    );
    check(
        Messages,
        Chat,
        r#"{"id":"x","model":"c","choices":[{"index":0,"message":{"role":"assistant","content":null,"refusal":"I can't help with that."},"finish_reason":"content_filter"}]}"#,
        r#"{"id":"msg_x","type":"message","role":"assistant","model":"c","content":[{"type":"text","text":"I can't help with that."}],"stop_reason":"refusal","stop_sequence":null,"usage":{"input_tokens":0,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"output_tokens":0}}"#,
    );
}

#[test]
fn structured_output_tool_becomes_text() {
    let ctx = AnswerContext {
        json_tool: Some("ans".to_owned()),
        ..AnswerContext::default()
    };
    check_with(
        &ctx,
        Chat,
        Messages,
        r#"{"id":"m","model":"c","content":[{"type":"tool_use","id":"t","name":"ans","input":{"a":"b"}}],"stop_reason":"tool_use","usage":{"input_tokens":1,"output_tokens":1}}"#,
        r#"{"id":"chatcmpl-m","object":"chat.completion","created":0,"model":"c","choices":[{"index":0,"message":{"role":"assistant","content":"{\"a\":\"b\"}","refusal":null},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2,"prompt_tokens_details":{"cached_tokens":0},"completion_tokens_details":{"reasoning_tokens":0}}}"#,
    );
}

#[test]
fn custom_tool_calls_go_back_as_custom_items() {
    let ctx = AnswerContext {
        custom_tools: vec!["apply_patch".to_owned()],
        hide_reasoning: true,
        ..AnswerContext::default()
    };
    check_with(
        &ctx,
        Responses,
        Chat,
        r#"{"id":"c","model":"m","choices":[{"index":0,"message":{"role":"assistant","reasoning_content":"hidden","tool_calls":[{"id":"call_9","type":"function","function":{"name":"apply_patch","arguments":"{\"input\":\"*** Begin Patch\\n*** End Patch\"}"}}]},"finish_reason":"tool_calls"}]}"#,
        r#"{"id":"resp_c","object":"response","created_at":0,"status":"completed","error":null,"incomplete_details":null,"instructions":null,"max_output_tokens":null,"model":"m","output":[{"type":"custom_tool_call","id":"ctc_c_0","status":"completed","call_id":"call_9","name":"apply_patch","input":"*** Begin Patch\n*** End Patch"}],"parallel_tool_calls":true,"previous_response_id":null,"reasoning":{"effort":null,"summary":null},"store":false,"temperature":null,"text":{"format":{"type":"text"}},"tool_choice":"auto","tools":[],"top_p":null,"truncation":"disabled","usage":null,"metadata":{}}"#,
    );
}

#[test]
fn bad_answers_are_errors_not_panics() {
    for (client, upstream, body) in [
        (Chat, Messages, "not json"),
        (Messages, Chat, r#"{"choices":"x"}"#),
        (
            Responses,
            Messages,
            r#"{"content":[{"type":"text","text":5}]}"#,
        ),
        (Chat, Responses, r#"[1,2]"#),
    ] {
        let err = translate_answer(&test_route(client, upstream), body.as_bytes()).unwrap_err();
        assert!(matches!(err, AnswerError::Malformed { .. }), "{err}");
    }
    let err = translate_answer(
        &test_route(Messages, Chat),
        br#"{"id":"x","choices":[{"message":{"tool_calls":[{"id":"c","function":{"name":"f","arguments":"{\"a\":"}}]}}]}"#,
    )
    .unwrap_err();
    assert_eq!(err, AnswerError::Arguments { id: "c".to_owned() });
}

#[test]
fn same_protocol_passes_through() {
    let body = br#"{"anything":1}"#;
    assert_eq!(
        translate_answer(&test_route(Chat, Chat), body).unwrap(),
        body
    );
}

/// What a request declaring an MCP server's `namespace` (a function `js`
/// and a custom `patch`) says about its tools.
fn namespaced_ctx() -> AnswerContext {
    AnswerContext {
        namespaced_tools: crate::test_namespaced_tools(),
        ..AnswerContext::default()
    }
}

#[test]
fn namespaced_tool_calls_go_back_with_name_and_namespace() {
    let output = r#"[{"type":"function_call","id":"fc_a_0","status":"completed","call_id":"call_1","name":"js","namespace":"mcp__x","arguments":"{\"code\":\"1\"}"},{"type":"custom_tool_call","id":"ctc_a_1","status":"completed","call_id":"call_2","name":"patch","namespace":"mcp__x","input":"P"},{"type":"function_call","id":"fc_a_2","status":"completed","call_id":"call_3","name":"exec_command","arguments":"{}"}]"#;
    for (upstream, answer) in [
        (
            Chat,
            r#"{"id":"a","model":"m","choices":[{"index":0,"message":{"role":"assistant","tool_calls":[{"id":"call_1","type":"function","function":{"name":"mcp__x__js","arguments":"{\"code\":\"1\"}"}},{"id":"call_2","type":"function","function":{"name":"mcp__x__patch","arguments":"{\"input\":\"P\"}"}},{"id":"call_3","type":"function","function":{"name":"exec_command","arguments":"{}"}}]},"finish_reason":"tool_calls"}]}"#,
        ),
        (
            Messages,
            r#"{"id":"a","type":"message","role":"assistant","model":"m","content":[{"type":"tool_use","id":"call_1","name":"mcp__x__js","input":{"code":"1"}},{"type":"tool_use","id":"call_2","name":"mcp__x__patch","input":{"input":"P"}},{"type":"tool_use","id":"call_3","name":"exec_command","input":{}}],"stop_reason":"tool_use","usage":{"input_tokens":1,"output_tokens":1}}"#,
        ),
    ] {
        let got = translate_answer_with(
            &test_route(Responses, upstream),
            &namespaced_ctx(),
            answer.as_bytes(),
        )
        .unwrap();
        let got: Value = serde_json::from_slice(&got).unwrap();
        let expected: Value = serde_json::from_str(output).unwrap();
        assert_eq!(got["output"], expected, "{upstream}: {got}");
    }
    // Other clients know no namespaces: they get the upstream's name.
    let got = translate_answer_with(
        &test_route(Chat, Messages),
        &namespaced_ctx(),
        br#"{"id":"a","type":"message","role":"assistant","model":"m","content":[{"type":"tool_use","id":"t","name":"mcp__x__js","input":{}}],"stop_reason":"tool_use","usage":{"input_tokens":1,"output_tokens":1}}"#,
    )
    .unwrap();
    assert!(
        String::from_utf8(got)
            .unwrap()
            .contains(r#""name":"mcp__x__js""#)
    );
}
