#![allow(clippy::unwrap_used, clippy::expect_used)]

use tb_domain::Protocol::{self, ChatCompletions as Chat, Messages, Responses};

use super::*;
use crate::test_route;

/// Translates a whole upstream stream in one push.
fn run(client: Protocol, upstream: Protocol, ctx: &AnswerContext, input: &str) -> String {
    let mut t = StreamTranslator::with_context(&test_route(client, upstream), "req-model", ctx);
    let mut out = Vec::new();
    t.push(input.as_bytes(), &mut out);
    t.finish(&mut out);
    String::from_utf8(out).unwrap()
}

/// The output as one line per event: the event name (or `data`), a
/// space, the data.
fn lines(output: &str) -> Vec<String> {
    output
        .split("\n\n")
        .filter(|e| !e.is_empty())
        .map(|event| {
            let mut name = "data";
            let mut data = "";
            for line in event.lines() {
                if let Some(n) = line.strip_prefix("event: ") {
                    name = n;
                } else if let Some(d) = line.strip_prefix("data: ") {
                    data = d;
                }
            }
            format!("{name} {data}")
        })
        .collect()
}

/// Checks the client stream's events against `expected`: each expected
/// line must be a prefix of the actual line (so long echo members can be
/// left out).
fn check(
    client: Protocol,
    upstream: Protocol,
    ctx: &AnswerContext,
    input: &str,
    expected: &[&str],
) {
    let got = lines(&run(client, upstream, ctx, input));
    let same =
        got.len() == expected.len() && got.iter().zip(expected).all(|(g, e)| g.starts_with(e));
    assert!(
        same,
        "\n{upstream}→{client}\ngot:\n{}\nexpected:\n{}",
        got.join("\n"),
        expected.join("\n")
    );
}

fn ctx() -> AnswerContext {
    AnswerContext::default()
}

fn chat_chunk(delta: &str, finish: &str) -> String {
    format!(
        "data: {{\"id\":\"c\",\"model\":\"m\",\"choices\":[{{\"index\":0,\"delta\":{delta},\"finish_reason\":{finish}}}]}}\n\n"
    )
}

#[test]
fn chat_stream_to_messages_events() {
    let input = [
        chat_chunk(r#"{"role":"assistant","content":""}"#, "null"),
        chat_chunk(r#"{"content":"Hi"}"#, "null"),
        chat_chunk("{}", r#""stop""#),
        "data: {\"id\":\"c\",\"choices\":[],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":2}}\n\n".to_owned(),
        "data: [DONE]\n\n".to_owned(),
    ]
    .concat();
    check(
        Messages,
        Chat,
        &ctx(),
        &input,
        &[
            r#"message_start {"type":"message_start","message":{"id":"msg_c","type":"message","role":"assistant","model":"m","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":0,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"output_tokens":0}}}"#,
            r#"content_block_start {"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}"#,
            r#"content_block_delta {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hi"}}"#,
            r#"content_block_stop {"type":"content_block_stop","index":0}"#,
            r#"message_delta {"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"input_tokens":9,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"output_tokens":2}}"#,
            r#"message_stop {"type":"message_stop"}"#,
        ],
    );
}

#[test]
fn usage_chunk_only_when_the_chat_client_asked() {
    let input = concat!(
        "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"model\":\"c\",\"usage\":{\"input_tokens\":5,\"output_tokens\":1}}}\n\n",
        "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"stop_sequence\",\"stop_sequence\":\"END\"},\"usage\":{\"output_tokens\":3}}\n\n",
        "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
    );
    let without = AnswerContext {
        include_usage: false,
        ..ctx()
    };
    check(
        Chat,
        Messages,
        &without,
        input,
        &[
            r#"data {"id":"chatcmpl-msg_1","object":"chat.completion.chunk","created":0,"model":"c","choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}"#,
            r#"data {"id":"chatcmpl-msg_1","object":"chat.completion.chunk","created":0,"model":"c","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}"#,
            "data [DONE]",
        ],
    );
    check(
        Chat,
        Messages,
        &ctx(),
        input,
        &[
            "data {",
            r#"data {"id":"chatcmpl-msg_1","object":"chat.completion.chunk","created":0,"model":"c","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}"#,
            r#"data {"id":"chatcmpl-msg_1","object":"chat.completion.chunk","created":0,"model":"c","choices":[],"usage":{"prompt_tokens":5,"completion_tokens":3,"total_tokens":8,"#,
            "data [DONE]",
        ],
    );
}

#[test]
fn a_broken_upstream_stream_ends_with_an_error_in_each_protocol() {
    let cut = [
        chat_chunk(r#"{"content":"Hel"}"#, "null"),
        chat_chunk(
            r#"{"tool_calls":[{"index":0,"id":"t","function":{"name":"f","arguments":"{\"a"}}]}"#,
            "null",
        ),
    ]
    .concat();
    check(
        Messages,
        Chat,
        &ctx(),
        &cut,
        &[
            "message_start ",
            "content_block_start ",
            "content_block_delta ",
            "content_block_stop ",
            r#"content_block_start {"type":"content_block_start","index":1,"content_block":{"type":"tool_use","id":"t","name":"f","input":{}}}"#,
            r#"content_block_delta {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{\"a"}}"#,
            r#"error {"type":"error","error":{"type":"api_error","message":"the upstream's stream ended before the answer was complete"}}"#,
        ],
    );
    check(
        Chat,
        Messages,
        &ctx(),
        "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"m\"}}\n\n",
        &[
            "data {",
            r#"data {"error":{"message":"the upstream's stream ended before the answer was complete","type":"server_error","code":"server_error"}}"#,
        ],
    );
    check(
        Responses,
        Chat,
        &ctx(),
        "",
        &[
            "response.created ",
            "response.in_progress ",
            r#"response.failed {"type":"response.failed","sequence_number":2,"response":{"id":"resp_","object":"response","created_at":0,"status":"failed","error":{"code":"server_error","message":"the upstream's stream ended before the answer was complete"}"#,
        ],
    );
}

#[test]
fn a_finish_without_the_terminal_event_still_completes() {
    // The upstream said how the answer finished; only `[DONE]` is missing.
    let input = chat_chunk(r#"{"content":"ok"}"#, r#""length""#);
    check(
        Responses,
        Chat,
        &ctx(),
        &input,
        &[
            "response.created ",
            "response.in_progress ",
            "response.output_item.added ",
            "response.content_part.added ",
            "response.output_text.delta ",
            "response.output_text.done ",
            "response.content_part.done ",
            "response.output_item.done ",
            r#"response.incomplete {"type":"response.incomplete","sequence_number":8,"response":{"id":"resp_c","object":"response","created_at":0,"status":"incomplete","error":null,"incomplete_details":{"reason":"max_output_tokens"}"#,
        ],
    );
}

#[test]
fn upstream_error_events_become_client_errors() {
    let input = concat!(
        "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"m\"}}\n\n",
        "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n",
    );
    check(
        Responses,
        Messages,
        &ctx(),
        input,
        &[
            "response.created ",
            "response.in_progress ",
            r#"response.failed {"type":"response.failed","sequence_number":2,"response":{"id":"resp_m","object":"response","created_at":0,"status":"failed","error":{"code":"overloaded_error","message":"Overloaded"}"#,
        ],
    );
    check(
        Messages,
        Chat,
        &ctx(),
        "data: {\"error\":{\"message\":\"Rate limit\",\"type\":\"rate_limit_exceeded\"}}\n\n",
        &[r#"error {"type":"error","error":{"type":"rate_limit_error","message":"Rate limit"}}"#],
    );
    check(
        Chat,
        Responses,
        &ctx(),
        "event: response.failed\ndata: {\"type\":\"response.failed\",\"response\":{\"id\":\"r\",\"status\":\"failed\",\"error\":{\"code\":\"server_error\",\"message\":\"boom\"}}}\n\n",
        &[r#"data {"error":{"message":"boom","type":"server_error","code":"server_error"}}"#],
    );
}

#[test]
fn malformed_events_are_skipped() {
    let input = [
        chat_chunk(r#"{"content":"a"}"#, "null"),
        "data: {not json\n\n".to_owned(),
        chat_chunk(r#"{"content":"b"}"#, r#""stop""#),
        "data: [DONE]\n\n".to_owned(),
    ]
    .concat();
    check(
        Chat,
        Chat,
        &ctx(),
        &input,
        &["data {", "data {not json", "data {", "data [DONE]"],
    );
    let out = run(Messages, Chat, &ctx(), &input);
    assert!(
        out.contains(r#""text":"a""#) && out.contains(r#""text":"b""#),
        "{out}"
    );
    assert!(out.ends_with("event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n"));
}

#[test]
fn structured_output_tool_streams_as_text() {
    let input = concat!(
        "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"m\",\"model\":\"c\"}}\n\n",
        "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"tool_use\",\"id\":\"t\",\"name\":\"json_answer\",\"input\":{}}}\n\n",
        "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"{\\\"a\\\":\"}}\n\n",
        "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"1}\"}}\n\n",
        "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n",
        "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"tool_use\"},\"usage\":{\"output_tokens\":4}}\n\n",
        "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
    );
    let json = AnswerContext {
        json_tool: Some("json_answer".to_owned()),
        include_usage: false,
        ..ctx()
    };
    check(
        Chat,
        Messages,
        &json,
        input,
        &[
            "data {",
            r#"data {"id":"chatcmpl-m","object":"chat.completion.chunk","created":0,"model":"c","choices":[{"index":0,"delta":{"content":"{\"a\":"},"finish_reason":null}]}"#,
            r#"data {"id":"chatcmpl-m","object":"chat.completion.chunk","created":0,"model":"c","choices":[{"index":0,"delta":{"content":"1}"},"finish_reason":null}]}"#,
            r#"data {"id":"chatcmpl-m","object":"chat.completion.chunk","created":0,"model":"c","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}"#,
            "data [DONE]",
        ],
    );
}

#[test]
fn custom_tools_stream_as_custom_tool_calls() {
    let input = [
        chat_chunk(
            r#"{"tool_calls":[{"index":0,"id":"call_p","type":"function","function":{"name":"apply_patch","arguments":"{\"input\":\"*** Begin"}}]}"#,
            "null",
        ),
        chat_chunk(r#"{"tool_calls":[{"index":0,"function":{"arguments":" Patch\\n\"}"}}]}"#, "null"),
        chat_chunk("{}", r#""tool_calls""#),
        "data: [DONE]\n\n".to_owned(),
    ]
    .concat();
    let custom = AnswerContext {
        custom_tools: vec!["apply_patch".to_owned()],
        ..ctx()
    };
    check(
        Responses,
        Chat,
        &custom,
        &input,
        &[
            "response.created ",
            "response.in_progress ",
            r#"response.output_item.added {"type":"response.output_item.added","sequence_number":2,"output_index":0,"item":{"type":"custom_tool_call","id":"ctc_c_0","status":"in_progress","call_id":"call_p","name":"apply_patch","input":""}}"#,
            r#"response.custom_tool_call_input.delta {"type":"response.custom_tool_call_input.delta","sequence_number":3,"output_index":0,"item_id":"ctc_c_0","delta":"*** Begin Patch\n"}"#,
            r#"response.custom_tool_call_input.done {"type":"response.custom_tool_call_input.done","sequence_number":4,"output_index":0,"item_id":"ctc_c_0","input":"*** Begin Patch\n"}"#,
            r#"response.output_item.done {"type":"response.output_item.done","sequence_number":5,"output_index":0,"item":{"type":"custom_tool_call","id":"ctc_c_0","status":"completed","call_id":"call_p","name":"apply_patch","input":"*** Begin Patch\n"}}"#,
            r#"response.completed {"type":"response.completed","sequence_number":6,"response":{"id":"resp_c","object":"response","created_at":0,"status":"completed""#,
        ],
    );
}

#[test]
fn chat_tool_calls_are_told_apart_by_index_and_id() {
    // Every call at index 0 (some servers do this): a new id is a new call.
    let input = [
        chat_chunk(
            r#"{"tool_calls":[{"index":0,"id":"a","function":{"name":"f","arguments":"{}"}}]}"#,
            "null",
        ),
        chat_chunk(
            r#"{"tool_calls":[{"index":0,"id":"b","function":{"name":"g","arguments":"{}"}}]}"#,
            "null",
        ),
        chat_chunk("{}", r#""tool_calls""#),
        "data: [DONE]\n\n".to_owned(),
    ]
    .concat();
    let out = run(Messages, Chat, &ctx(), &input);
    assert_eq!(out.matches(r#""type":"tool_use""#).count(), 2, "{out}");
}

#[test]
fn interleaved_parallel_arguments() {
    let input = [
        chat_chunk(r#"{"tool_calls":[{"index":0,"id":"a","function":{"name":"f","arguments":"{\"x\":"}}]}"#, "null"),
        chat_chunk(r#"{"tool_calls":[{"index":1,"id":"b","function":{"name":"g","arguments":"{\"y\":"}}]}"#, "null"),
        chat_chunk(r#"{"tool_calls":[{"index":0,"function":{"arguments":"1}"}}]}"#, "null"),
        chat_chunk(r#"{"tool_calls":[{"index":1,"function":{"arguments":"2}"}}]}"#, "null"),
        chat_chunk("{}", r#""tool_calls""#),
        "data: [DONE]\n\n".to_owned(),
    ]
    .concat();
    // Responses items can be interleaved: both calls come out whole.
    let out = run(Responses, Chat, &ctx(), &input);
    assert!(
        out.contains(r#""call_id":"a","name":"f","arguments":"{\"x\":1}""#),
        "{out}"
    );
    assert!(
        out.contains(r#""call_id":"b","name":"g","arguments":"{\"y\":2}""#),
        "{out}"
    );
    // Messages blocks cannot: the client gets an error, not a corrupt call.
    let out = run(Messages, Chat, &ctx(), &input);
    assert!(out.contains("event: error\n"), "{out}");
    assert!(!out.contains("message_stop"), "{out}");
}

#[test]
fn responses_arguments_given_only_in_the_finished_item() {
    let input = concat!(
        "data: {\"type\":\"response.created\",\"response\":{\"id\":\"r\",\"model\":\"g\"}}\n\n",
        "data: {\"type\":\"response.output_item.added\",\"output_index\":0,\"item\":{\"type\":\"function_call\",\"call_id\":\"c\",\"name\":\"f\",\"arguments\":\"\"}}\n\n",
        "data: {\"type\":\"response.output_item.done\",\"output_index\":0,\"item\":{\"type\":\"function_call\",\"call_id\":\"c\",\"name\":\"f\",\"arguments\":\"{\\\"k\\\":2}\"}}\n\n",
        "data: {\"type\":\"response.completed\",\"response\":{\"id\":\"r\",\"status\":\"completed\"}}\n\n",
    );
    let out = run(Chat, Responses, &ctx(), input);
    assert!(
        out.contains(r#""function":{"arguments":"{\"k\":2}"}"#),
        "{out}"
    );
    assert!(out.contains(r#""finish_reason":"tool_calls""#), "{out}");
}

#[test]
fn same_protocol_passes_bytes_through() {
    let input = "data: {\"x\":1}\n\ndata: [DONE]\n\n";
    let mut t = StreamTranslator::new(&test_route(Chat, Chat), "m");
    let mut out = Vec::new();
    t.push(&input.as_bytes()[..7], &mut out);
    t.push(&input.as_bytes()[7..], &mut out);
    t.finish(&mut out);
    assert_eq!(out, input.as_bytes());
}

#[test]
fn namespaced_tool_calls_stream_with_name_and_namespace() {
    let ctx = AnswerContext {
        namespaced_tools: crate::test_namespaced_tools(),
        ..ctx()
    };
    let chat = [
        chat_chunk(
            r#"{"tool_calls":[{"index":0,"id":"call_1","type":"function","function":{"name":"mcp__x__js","arguments":"{\"code\":"}}]}"#,
            "null",
        ),
        chat_chunk(r#"{"tool_calls":[{"index":0,"function":{"arguments":"\"1\"}"}}]}"#, "null"),
        chat_chunk(
            r#"{"tool_calls":[{"index":1,"id":"call_2","type":"function","function":{"name":"mcp__x__patch","arguments":"{\"input\":\"P\"}"}}]}"#,
            "null",
        ),
        chat_chunk("{}", r#""tool_calls""#),
        "data: [DONE]\n\n".to_owned(),
    ]
    .concat();
    let messages = [
        r#"{"type":"message_start","message":{"id":"c","model":"m","usage":{"input_tokens":1,"output_tokens":0}}}"#,
        r#"{"type":"content_block_start","index":0,"content_block":{"type":"tool_use","id":"call_1","name":"mcp__x__js","input":{}}}"#,
        r#"{"type":"content_block_delta","index":0,"delta":{"type":"input_json_delta","partial_json":"{\"code\":"}}"#,
        r#"{"type":"content_block_delta","index":0,"delta":{"type":"input_json_delta","partial_json":"\"1\"}"}}"#,
        r#"{"type":"content_block_stop","index":0}"#,
        r#"{"type":"content_block_start","index":1,"content_block":{"type":"tool_use","id":"call_2","name":"mcp__x__patch","input":{}}}"#,
        r#"{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{\"input\":\"P\"}"}}"#,
        r#"{"type":"content_block_stop","index":1}"#,
        r#"{"type":"message_delta","delta":{"stop_reason":"tool_use"},"usage":{"output_tokens":5}}"#,
        r#"{"type":"message_stop"}"#,
    ]
    .map(|data| format!("data: {data}\n\n"))
    .concat();
    // Chat ends parallel calls only at the finish: the second call opens
    // before the first is done.
    let chat_expected = [
        "response.created ",
        "response.in_progress ",
        r#"response.output_item.added {"type":"response.output_item.added","sequence_number":2,"output_index":0,"item":{"type":"function_call","id":"fc_c_0","status":"in_progress","call_id":"call_1","name":"js","namespace":"mcp__x","arguments":""}}"#,
        r#"response.function_call_arguments.delta {"type":"response.function_call_arguments.delta","sequence_number":3,"output_index":0,"item_id":"fc_c_0","delta":"{\"code\":"}"#,
        r#"response.function_call_arguments.delta {"type":"response.function_call_arguments.delta","sequence_number":4,"output_index":0,"item_id":"fc_c_0","delta":"\"1\"}"}"#,
        r#"response.output_item.added {"type":"response.output_item.added","sequence_number":5,"output_index":1,"item":{"type":"custom_tool_call","id":"ctc_c_1","status":"in_progress","call_id":"call_2","name":"patch","namespace":"mcp__x","input":""}}"#,
        r#"response.function_call_arguments.done {"type":"response.function_call_arguments.done","sequence_number":6,"output_index":0,"item_id":"fc_c_0","arguments":"{\"code\":\"1\"}","name":"js"}"#,
        r#"response.output_item.done {"type":"response.output_item.done","sequence_number":7,"output_index":0,"item":{"type":"function_call","id":"fc_c_0","status":"completed","call_id":"call_1","name":"js","namespace":"mcp__x","arguments":"{\"code\":\"1\"}"}}"#,
        r#"response.custom_tool_call_input.delta {"type":"response.custom_tool_call_input.delta","sequence_number":8,"output_index":1,"item_id":"ctc_c_1","delta":"P"}"#,
        r#"response.custom_tool_call_input.done {"type":"response.custom_tool_call_input.done","sequence_number":9,"output_index":1,"item_id":"ctc_c_1","input":"P"}"#,
        r#"response.output_item.done {"type":"response.output_item.done","sequence_number":10,"output_index":1,"item":{"type":"custom_tool_call","id":"ctc_c_1","status":"completed","call_id":"call_2","name":"patch","namespace":"mcp__x","input":"P"}}"#,
        r#"response.completed {"type":"response.completed","sequence_number":11,"response":{"id":"resp_c","object":"response","created_at":0,"status":"completed","error":null,"incomplete_details":null,"instructions":null,"max_output_tokens":null,"model":"m","output":[{"type":"function_call","id":"fc_c_0","status":"completed","call_id":"call_1","name":"js","namespace":"mcp__x","arguments":"{\"code\":\"1\"}"},{"type":"custom_tool_call","id":"ctc_c_1","status":"completed","call_id":"call_2","name":"patch","namespace":"mcp__x","input":"P"}]"#,
    ];
    let messages_expected = [
        "response.created ",
        "response.in_progress ",
        r#"response.output_item.added {"type":"response.output_item.added","sequence_number":2,"output_index":0,"item":{"type":"function_call","id":"fc_c_0","status":"in_progress","call_id":"call_1","name":"js","namespace":"mcp__x","arguments":""}}"#,
        r#"response.function_call_arguments.delta {"type":"response.function_call_arguments.delta","sequence_number":3,"output_index":0,"item_id":"fc_c_0","delta":"{\"code\":"}"#,
        r#"response.function_call_arguments.delta {"type":"response.function_call_arguments.delta","sequence_number":4,"output_index":0,"item_id":"fc_c_0","delta":"\"1\"}"}"#,
        r#"response.function_call_arguments.done {"type":"response.function_call_arguments.done","sequence_number":5,"output_index":0,"item_id":"fc_c_0","arguments":"{\"code\":\"1\"}","name":"js"}"#,
        r#"response.output_item.done {"type":"response.output_item.done","sequence_number":6,"output_index":0,"item":{"type":"function_call","id":"fc_c_0","status":"completed","call_id":"call_1","name":"js","namespace":"mcp__x","arguments":"{\"code\":\"1\"}"}}"#,
        r#"response.output_item.added {"type":"response.output_item.added","sequence_number":7,"output_index":1,"item":{"type":"custom_tool_call","id":"ctc_c_1","status":"in_progress","call_id":"call_2","name":"patch","namespace":"mcp__x","input":""}}"#,
        r#"response.custom_tool_call_input.delta {"type":"response.custom_tool_call_input.delta","sequence_number":8,"output_index":1,"item_id":"ctc_c_1","delta":"P"}"#,
        r#"response.custom_tool_call_input.done {"type":"response.custom_tool_call_input.done","sequence_number":9,"output_index":1,"item_id":"ctc_c_1","input":"P"}"#,
        r#"response.output_item.done {"type":"response.output_item.done","sequence_number":10,"output_index":1,"item":{"type":"custom_tool_call","id":"ctc_c_1","status":"completed","call_id":"call_2","name":"patch","namespace":"mcp__x","input":"P"}}"#,
        r#"response.completed {"type":"response.completed","sequence_number":11,"response":{"id":"resp_c","object":"response","created_at":0,"status":"completed","error":null,"incomplete_details":null,"instructions":null,"max_output_tokens":null,"model":"m","output":[{"type":"function_call","id":"fc_c_0","status":"completed","call_id":"call_1","name":"js","namespace":"mcp__x","arguments":"{\"code\":\"1\"}"},{"type":"custom_tool_call","id":"ctc_c_1","status":"completed","call_id":"call_2","name":"patch","namespace":"mcp__x","input":"P"}]"#,
    ];
    for (upstream, input, expected) in [
        (Chat, chat, chat_expected),
        (Messages, messages, messages_expected),
    ] {
        check(Responses, upstream, &ctx, &input, &expected);
    }
}
