#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::Value;
use tb_domain::Protocol::{self, ChatCompletions as Chat, Messages, Responses};

use serde_json::json;

use crate::{test_route, translate_request};

/// Translates `input` from `client` to `upstream` and compares the body
/// with `expected` as JSON values (member order aside).
fn check(client: Protocol, upstream: Protocol, input: &str, expected: &str) {
    let got = translate_request(&test_route(client, upstream), input.as_bytes())
        .unwrap_or_else(|r| panic!("refused: {r}\n{input}"));
    let got: Value = serde_json::from_slice(&got.body).unwrap();
    let expected: Value = serde_json::from_str(expected).unwrap();
    assert_eq!(got, expected, "\n{client}→{upstream}\n{input}\ngot: {got}");
}

/// The request is refused naming `field`.
fn check_refused(client: Protocol, upstream: Protocol, input: &str, field: &str) {
    match translate_request(&test_route(client, upstream), input.as_bytes()) {
        Ok(t) => panic!(
            "not refused: {input}\n→ {}",
            String::from_utf8_lossy(&t.body)
        ),
        Err(r) => {
            assert_eq!(r.field, field, "{r}\n{input}");
            assert_eq!(r.upstream, "up");
        }
    }
}

#[test]
fn system_prompts() {
    check(
        Messages,
        Chat,
        r#"{"model":"m","max_tokens":10,"system":[{"type":"text","text":"x-anthropic-billing-header: cc_version=2.1.3; cch=1f2e3;"},{"type":"text","text":"You are Claude Code.","cache_control":{"type":"ephemeral"}},{"type":"text","text":"Be brief."}],"messages":[{"role":"user","content":"hi"}]}"#,
        r#"{"model":"m","max_tokens":10,"messages":[{"role":"system","content":"You are Claude Code.\n\nBe brief."},{"role":"user","content":"hi"}]}"#,
    );
    check(
        Chat,
        Messages,
        r#"{"model":"m","messages":[{"role":"system","content":"A"},{"role":"developer","content":[{"type":"text","text":"B"}]},{"role":"user","content":"hi"},{"role":"system","content":"C"},{"role":"user","content":"again"}]}"#,
        r#"{"model":"m","max_tokens":32000,"system":[{"type":"text","text":"A"},{"type":"text","text":"B"},{"type":"text","text":"C"}],"messages":[{"role":"user","content":[{"type":"text","text":"hi"},{"type":"text","text":"again"}]}]}"#,
    );
    check(
        Responses,
        Chat,
        r#"{"model":"m","instructions":"I","input":[{"type":"message","role":"developer","content":[{"type":"input_text","text":"D"}]},{"role":"user","content":"hi"}]}"#,
        r#"{"model":"m","messages":[{"role":"system","content":"I\n\nD"},{"role":"user","content":"hi"}]}"#,
    );
    check(
        Chat,
        Responses,
        r#"{"model":"m","messages":[{"role":"system","content":"S"},{"role":"user","content":"hi"},{"role":"developer","content":"later rule"}]}"#,
        r#"{"model":"m","instructions":"S","input":[{"type":"message","role":"user","content":[{"type":"input_text","text":"hi"}]},{"type":"message","role":"system","content":[{"type":"input_text","text":"later rule"}]}],"store":false}"#,
    );
}

#[test]
fn images_in_all_three_shapes() {
    check(
        Chat,
        Messages,
        r#"{"model":"m","max_tokens":5,"messages":[{"role":"user","content":[{"type":"text","text":"what?"},{"type":"image_url","image_url":{"url":"data:image/png;base64,AAAA","detail":"high"}},{"type":"image_url","image_url":{"url":"https://x/a.jpg"}}]}]}"#,
        r#"{"model":"m","max_tokens":5,"messages":[{"role":"user","content":[{"type":"text","text":"what?"},{"type":"image","source":{"type":"base64","media_type":"image/png","data":"AAAA"}},{"type":"image","source":{"type":"url","url":"https://x/a.jpg"}}]}]}"#,
    );
    check(
        Messages,
        Responses,
        r#"{"model":"m","max_tokens":5,"messages":[{"role":"user","content":[{"type":"image","source":{"type":"base64","media_type":"image/webp","data":"BBBB"}},{"type":"image","source":{"type":"url","url":"https://x/b.png"}}]}]}"#,
        r#"{"model":"m","max_output_tokens":5,"store":false,"input":[{"type":"message","role":"user","content":[{"type":"input_image","image_url":"data:image/webp;base64,BBBB"},{"type":"input_image","image_url":"https://x/b.png"}]}]}"#,
    );
    check(
        Responses,
        Chat,
        r#"{"model":"m","input":[{"role":"user","content":[{"type":"input_image","image_url":"data:image/gif;base64,CCCC","detail":"auto"}]}]}"#,
        r#"{"model":"m","messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"data:image/gif;base64,CCCC"}}]}]}"#,
    );
    check_refused(
        Chat,
        Messages,
        r#"{"model":"m","messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"data:image/bmp;base64,AAAA"}}]}]}"#,
        "image",
    );
}

#[test]
fn tools_and_tool_choice() {
    check(
        Messages,
        Chat,
        r#"{"model":"m","max_tokens":5,"messages":[{"role":"user","content":"go"}],"tools":[{"name":"Read","description":"Reads","input_schema":{"type":"object","properties":{"p":{"type":"string"}},"required":["p"]},"cache_control":{"type":"ephemeral"}}],"tool_choice":{"type":"any","disable_parallel_tool_use":true}}"#,
        r#"{"model":"m","max_tokens":5,"messages":[{"role":"user","content":"go"}],"tools":[{"type":"function","function":{"name":"Read","description":"Reads","parameters":{"type":"object","properties":{"p":{"type":"string"}},"required":["p"]}}}],"tool_choice":"required","parallel_tool_calls":false}"#,
    );
    check(
        Chat,
        Messages,
        r#"{"model":"m","messages":[{"role":"user","content":"go"}],"tools":[{"type":"function","function":{"name":"noargs"}}],"tool_choice":{"type":"function","function":{"name":"noargs"}},"parallel_tool_calls":false}"#,
        r#"{"model":"m","max_tokens":32000,"messages":[{"role":"user","content":"go"}],"tools":[{"name":"noargs","input_schema":{"type":"object","properties":{}}}],"tool_choice":{"type":"tool","name":"noargs","disable_parallel_tool_use":true}}"#,
    );
    check(
        Chat,
        Responses,
        r#"{"model":"m","messages":[{"role":"user","content":"go"}],"tools":[{"type":"function","function":{"name":"f","parameters":{"type":"object"},"strict":true}}],"tool_choice":"none"}"#,
        r#"{"model":"m","input":[{"type":"message","role":"user","content":[{"type":"input_text","text":"go"}]}],"tools":[{"type":"function","name":"f","parameters":{"type":"object"},"strict":true}],"tool_choice":"none","store":false}"#,
    );
    check(
        Responses,
        Messages,
        r#"{"model":"m","input":"go","tools":[{"type":"function","name":"f","description":"d","parameters":{"type":"object"}}],"tool_choice":{"type":"function","name":"f"}}"#,
        r#"{"model":"m","max_tokens":32000,"messages":[{"role":"user","content":"go"}],"tools":[{"name":"f","description":"d","input_schema":{"type":"object"}}],"tool_choice":{"type":"tool","name":"f"}}"#,
    );
}

#[test]
fn tool_calls_and_results() {
    check(
        Chat,
        Messages,
        r#"{"model":"m","max_tokens":9,"messages":[{"role":"user","content":"go"},{"role":"assistant","content":"Looking.","tool_calls":[{"id":"functions.read:0","type":"function","function":{"name":"read","arguments":"{\"p\":\"a\"}"}},{"id":"call_2","type":"function","function":{"name":"ls","arguments":""}}]},{"role":"tool","tool_call_id":"functions.read:0","content":"A"},{"role":"tool","tool_call_id":"call_2","content":[{"type":"text","text":"x"},{"type":"text","text":"y"}]},{"role":"user","content":"and?"}]}"#,
        r#"{"model":"m","max_tokens":9,"messages":[{"role":"user","content":"go"},{"role":"assistant","content":[{"type":"text","text":"Looking."},{"type":"tool_use","id":"functions_read_0","name":"read","input":{"p":"a"}},{"type":"tool_use","id":"call_2","name":"ls","input":{}}]},{"role":"user","content":[{"type":"tool_result","tool_use_id":"functions_read_0","content":"A"},{"type":"tool_result","tool_use_id":"call_2","content":[{"type":"text","text":"x"},{"type":"text","text":"y"}]},{"type":"text","text":"and?"}]}]}"#,
    );
    check(
        Messages,
        Chat,
        r#"{"model":"m","max_tokens":9,"messages":[{"role":"user","content":"go"},{"role":"assistant","content":[{"type":"text","text":"A"},{"type":"tool_use","id":"toolu_1","name":"Bash","input":{"command":"ls"}}]},{"role":"user","content":[{"type":"tool_result","tool_use_id":"toolu_1","content":"<tool_use_error>no</tool_use_error>","is_error":true,"cache_control":{"type":"ephemeral"}},{"type":"text","text":"fix it"}]}]}"#,
        r#"{"model":"m","max_tokens":9,"messages":[{"role":"user","content":"go"},{"role":"assistant","content":"A","tool_calls":[{"id":"toolu_1","type":"function","function":{"name":"Bash","arguments":"{\"command\":\"ls\"}"}}]},{"role":"tool","tool_call_id":"toolu_1","content":"Error: <tool_use_error>no</tool_use_error>"},{"role":"user","content":"fix it"}]}"#,
    );
    check(
        Messages,
        Responses,
        r#"{"model":"m","max_tokens":9,"messages":[{"role":"assistant","content":[{"type":"tool_use","id":"toolu_1","name":"Read","input":{"p":"x.png"}}]},{"role":"user","content":[{"type":"tool_result","tool_use_id":"toolu_1","content":[{"type":"image","source":{"type":"base64","media_type":"image/png","data":"QQ"}}]}]}]}"#,
        r#"{"model":"m","max_output_tokens":9,"store":false,"input":[{"type":"function_call","call_id":"toolu_1","name":"Read","arguments":"{\"p\":\"x.png\"}"},{"type":"function_call_output","call_id":"toolu_1","output":[{"type":"input_image","image_url":"data:image/png;base64,QQ"}]}]}"#,
    );
    check(
        Responses,
        Messages,
        r#"{"model":"m","input":[{"type":"function_call","id":"fc_1","call_id":"call_1","name":"f","arguments":"{\"a\":1}","status":"completed"},{"type":"function_call_output","call_id":"call_1","output":[{"type":"input_text","text":"done"},{"type":"input_image","image_url":"data:image/jpeg;base64,ZZ"}]}]}"#,
        r#"{"model":"m","max_tokens":32000,"messages":[{"role":"assistant","content":[{"type":"tool_use","id":"call_1","name":"f","input":{"a":1}}]},{"role":"user","content":[{"type":"tool_result","tool_use_id":"call_1","content":[{"type":"text","text":"done"},{"type":"image","source":{"type":"base64","media_type":"image/jpeg","data":"ZZ"}}]}]}]}"#,
    );
    check_refused(
        Messages,
        Chat,
        r#"{"model":"m","max_tokens":9,"messages":[{"role":"user","content":[{"type":"tool_result","tool_use_id":"t","content":[{"type":"image","source":{"type":"base64","media_type":"image/png","data":"QQ"}}]}]}]}"#,
        "messages[0].content[0].content[0].type",
    );
    check_refused(
        Chat,
        Messages,
        r#"{"model":"m","messages":[{"role":"assistant","tool_calls":[{"id":"c","type":"function","function":{"name":"f","arguments":"[1"}}]}]}"#,
        "tool call c arguments",
    );
}

#[test]
fn codex_custom_tools_become_function_tools() {
    check(
        Responses,
        Chat,
        r#"{"model":"m","input":[{"type":"custom_tool_call","call_id":"c1","name":"apply_patch","input":"*** Begin Patch\n*** End Patch"},{"type":"custom_tool_call_output","call_id":"c1","output":"Done!"}],"tools":[{"type":"custom","name":"apply_patch","description":"Edit files.","format":{"type":"grammar","syntax":"lark","definition":"start: x"}}],"tool_choice":"auto","parallel_tool_calls":false}"#,
        r#"{"model":"m","messages":[{"role":"assistant","tool_calls":[{"id":"c1","type":"function","function":{"name":"apply_patch","arguments":"{\"input\":\"*** Begin Patch\\n*** End Patch\"}"}}]},{"role":"tool","tool_call_id":"c1","content":"Done!"}],"tools":[{"type":"function","function":{"name":"apply_patch","description":"Edit files.","parameters":{"type":"object","properties":{"input":{"type":"string","description":"The tool's input, as free-form text. It must follow this lark grammar:\nstart: x"}},"required":["input"],"additionalProperties":false}}}],"tool_choice":"auto","parallel_tool_calls":false}"#,
    );
    let t = translate_request(
        &test_route(Responses, Messages),
        br#"{"model":"m","input":"hi","tools":[{"type":"custom","name":"apply_patch"},{"type":"function","name":"shell","parameters":{"type":"object"}}]}"#,
    )
    .unwrap();
    assert_eq!(t.context.custom_tools, ["apply_patch"]);
}

#[test]
fn reasoning_effort_and_budget() {
    check(
        Messages,
        Chat,
        r#"{"model":"m","max_tokens":32000,"thinking":{"type":"enabled","budget_tokens":31999},"messages":[{"role":"user","content":"hi"}]}"#,
        r#"{"model":"m","max_tokens":32000,"reasoning_effort":"high","messages":[{"role":"user","content":"hi"}]}"#,
    );
    check(
        Messages,
        Responses,
        r#"{"model":"m","max_tokens":100,"thinking":{"type":"adaptive"},"output_config":{"effort":"max"},"messages":[{"role":"user","content":"hi"}]}"#,
        r#"{"model":"m","max_output_tokens":100,"reasoning":{"effort":"high","summary":"auto"},"store":false,"input":[{"type":"message","role":"user","content":[{"type":"input_text","text":"hi"}]}]}"#,
    );
    check(
        Chat,
        Messages,
        r#"{"model":"m","reasoning_effort":"medium","messages":[{"role":"user","content":"hi"}]}"#,
        r#"{"model":"m","max_tokens":32000,"thinking":{"type":"enabled","budget_tokens":10000},"messages":[{"role":"user","content":"hi"}]}"#,
    );
    check(
        Responses,
        Messages,
        r#"{"model":"m","max_output_tokens":5000,"reasoning":{"effort":"high","summary":"auto"},"input":"hi"}"#,
        r#"{"model":"m","max_tokens":5000,"thinking":{"type":"enabled","budget_tokens":4999},"messages":[{"role":"user","content":"hi"}]}"#,
    );
    check(
        Chat,
        Messages,
        r#"{"model":"m","reasoning_effort":"none","messages":[{"role":"user","content":"hi"}]}"#,
        r#"{"model":"m","max_tokens":32000,"messages":[{"role":"user","content":"hi"}]}"#,
    );
    check(
        Chat,
        Responses,
        r#"{"model":"m","reasoning":{"max_tokens":2000},"messages":[{"role":"user","content":"hi"}]}"#,
        r#"{"model":"m","reasoning":{"effort":"low"},"store":false,"input":[{"type":"message","role":"user","content":[{"type":"input_text","text":"hi"}]}]}"#,
    );
    // Continuing a tool loop: Anthropic would want a signed thinking block
    // first, which a translated history cannot have.
    check(
        Chat,
        Messages,
        r#"{"model":"m","reasoning_effort":"high","messages":[{"role":"user","content":"go"},{"role":"assistant","tool_calls":[{"id":"c","type":"function","function":{"name":"f","arguments":"{}"}}]},{"role":"tool","tool_call_id":"c","content":"ok"}]}"#,
        r#"{"model":"m","max_tokens":32000,"messages":[{"role":"user","content":"go"},{"role":"assistant","content":[{"type":"tool_use","id":"c","name":"f","input":{}}]},{"role":"user","content":[{"type":"tool_result","tool_use_id":"c","content":"ok"}]}]}"#,
    );
    check_refused(
        Chat,
        Messages,
        r#"{"model":"m","reasoning_effort":"high","temperature":0.2,"messages":[{"role":"user","content":"hi"}]}"#,
        "temperature",
    );
    check_refused(
        Chat,
        Messages,
        r#"{"model":"m","reasoning_effort":"turbo","messages":[]}"#,
        "reasoning_effort",
    );
}

#[test]
fn provider_private_reasoning_never_leaves() {
    // Signed thinking and redacted thinking are dropped whole; unsigned
    // thinking (produced by a translated route) is kept as text where
    // the target accepts it.
    check(
        Messages,
        Chat,
        r#"{"model":"m","max_tokens":9,"messages":[{"role":"user","content":"q"},{"role":"assistant","content":[{"type":"thinking","thinking":"secret plan","signature":"EqQBCkYIBxgCKkD"},{"type":"redacted_thinking","data":"EmwKAhgBEgy"},{"type":"text","text":"A1"}]},{"role":"user","content":"q2"},{"role":"assistant","content":[{"type":"thinking","thinking":"open plan","signature":""},{"type":"text","text":"A2"}]},{"role":"user","content":"q3"}]}"#,
        r#"{"model":"m","max_tokens":9,"messages":[{"role":"user","content":"q"},{"role":"assistant","content":"A1"},{"role":"user","content":"q2"},{"role":"assistant","content":"A2","reasoning_content":"open plan"},{"role":"user","content":"q3"}]}"#,
    );
    check(
        Responses,
        Chat,
        r#"{"model":"m","include":["reasoning.encrypted_content"],"input":[{"role":"user","content":"q"},{"type":"reasoning","id":"rs_1","summary":[{"type":"summary_text","text":"hidden"}],"encrypted_content":"gAAAAB"},{"type":"message","role":"assistant","content":[{"type":"output_text","text":"A"}]},{"type":"reasoning","summary":[{"type":"summary_text","text":"seen"}],"encrypted_content":null},{"type":"function_call","call_id":"c","name":"f","arguments":"{}"}]}"#,
        r#"{"model":"m","messages":[{"role":"user","content":"q"},{"role":"assistant","content":"A","reasoning_content":"seen","tool_calls":[{"id":"c","type":"function","function":{"name":"f","arguments":"{}"}}]}]}"#,
    );
    // Never to Anthropic, never to OpenAI Responses.
    for upstream in [Messages, Responses] {
        let t = translate_request(
            &test_route(Chat, upstream),
            br#"{"model":"m","messages":[{"role":"user","content":"q"},{"role":"assistant","content":"A","reasoning_content":"plan"},{"role":"user","content":"q2"}]}"#,
        )
        .unwrap();
        let body = String::from_utf8(t.body).unwrap();
        assert!(!body.contains("plan"), "{upstream}: {body}");
    }
}

#[test]
fn structured_output() {
    check(
        Chat,
        Responses,
        r#"{"model":"m","messages":[{"role":"user","content":"q"}],"response_format":{"type":"json_schema","json_schema":{"name":"ans","schema":{"type":"object"},"strict":true}}}"#,
        r#"{"model":"m","input":[{"type":"message","role":"user","content":[{"type":"input_text","text":"q"}]}],"text":{"format":{"type":"json_schema","name":"ans","schema":{"type":"object"},"strict":true}},"store":false}"#,
    );
    check(
        Responses,
        Chat,
        r#"{"model":"m","input":"q","text":{"format":{"type":"json_object"},"verbosity":"low"}}"#,
        r#"{"model":"m","messages":[{"role":"user","content":"q"}],"response_format":{"type":"json_object"}}"#,
    );
    check(
        Chat,
        Messages,
        r#"{"model":"m","messages":[{"role":"user","content":"q"}],"response_format":{"type":"json_schema","json_schema":{"name":"ans","schema":{"type":"object","properties":{"a":{"type":"string"}}}}}}"#,
        r#"{"model":"m","max_tokens":32000,"messages":[{"role":"user","content":"q"}],"tools":[{"name":"ans","description":"Give the answer as this tool's input.","input_schema":{"type":"object","properties":{"a":{"type":"string"}}}}],"tool_choice":{"type":"tool","name":"ans","disable_parallel_tool_use":true}}"#,
    );
    check(
        Messages,
        Chat,
        r#"{"model":"m","max_tokens":9,"messages":[{"role":"user","content":"q"}],"output_config":{"format":{"type":"json_schema","schema":{"type":"object"}}}}"#,
        r#"{"model":"m","max_tokens":9,"messages":[{"role":"user","content":"q"}],"response_format":{"type":"json_schema","json_schema":{"name":"response","schema":{"type":"object"},"strict":true}}}"#,
    );
    check_refused(
        Chat,
        Messages,
        r#"{"model":"m","messages":[],"tools":[{"type":"function","function":{"name":"f"}}],"response_format":{"type":"json_object"}}"#,
        "structured output",
    );
    check_refused(
        Chat,
        Messages,
        r#"{"model":"m","messages":[],"response_format":{"type":"json_schema","json_schema":{"name":"a","schema":{"type":"array"}}}}"#,
        "structured output",
    );
}

#[test]
fn limits_sampling_stop_and_user() {
    check(
        Chat,
        Messages,
        r#"{"model":"m","max_completion_tokens":700,"max_tokens":5,"temperature":0.5,"top_p":0.9,"top_k":40,"stop":"END","user":"u1","messages":[]}"#,
        r#"{"model":"m","max_tokens":700,"temperature":0.5,"top_p":0.9,"top_k":40,"stop_sequences":["END"],"metadata":{"user_id":"u1"},"messages":[]}"#,
    );
    check(
        Messages,
        Chat,
        r#"{"model":"m","max_tokens":64,"stop_sequences":["a","b"],"metadata":{"user_id":"user_x_session_y"},"messages":[],"stream":true}"#,
        r#"{"model":"m","max_tokens":64,"stop":["a","b"],"user":"user_x_session_y","messages":[],"stream":true,"stream_options":{"include_usage":true}}"#,
    );
    check(
        Responses,
        Chat,
        r#"{"model":"m","max_output_tokens":64,"safety_identifier":"s","input":[],"stream":true,"store":false,"prompt_cache_key":"k","service_tier":"auto","client_metadata":{"a":"b"}}"#,
        r#"{"model":"m","max_tokens":64,"user":"s","messages":[],"stream":true,"stream_options":{"include_usage":true}}"#,
    );
    check_refused(
        Chat,
        Messages,
        r#"{"model":"m","temperature":1.5,"messages":[]}"#,
        "temperature",
    );
    check_refused(
        Chat,
        Responses,
        r#"{"model":"m","stop":["x"],"messages":[]}"#,
        "stop",
    );
    check_refused(
        Messages,
        Responses,
        r#"{"model":"m","max_tokens":1,"stop_sequences":["x"],"messages":[]}"#,
        "stop_sequences",
    );
    check_refused(
        Chat,
        Responses,
        r#"{"model":"m","top_k":3,"messages":[]}"#,
        "top_k",
    );
}

#[test]
fn fields_without_equivalent_are_refused_by_name() {
    for (client, upstream, body, field) in [
        (Chat, Messages, r#"{"model":"m","messages":[],"n":2}"#, "n"),
        (
            Chat,
            Messages,
            r#"{"model":"m","messages":[],"logprobs":true}"#,
            "logprobs",
        ),
        (
            Chat,
            Responses,
            r#"{"model":"m","messages":[],"top_logprobs":2}"#,
            "top_logprobs",
        ),
        (
            Chat,
            Messages,
            r#"{"model":"m","messages":[],"audio":{"voice":"x"}}"#,
            "audio",
        ),
        (
            Chat,
            Messages,
            r#"{"model":"m","messages":[],"modalities":["text","audio"]}"#,
            "modalities",
        ),
        (
            Chat,
            Messages,
            r#"{"model":"m","messages":[],"frequency_penalty":0.5}"#,
            "frequency_penalty",
        ),
        (
            Chat,
            Messages,
            r#"{"model":"m","messages":[],"logit_bias":{"1":2}}"#,
            "logit_bias",
        ),
        (
            Chat,
            Messages,
            r#"{"model":"m","messages":[],"web_search_options":{"a":1}}"#,
            "web_search_options",
        ),
        (
            Chat,
            Messages,
            r#"{"model":"m","messages":[],"functions":[{"name":"f"}]}"#,
            "functions",
        ),
        (
            Chat,
            Messages,
            r#"{"model":"m","messages":[{"role":"user","content":[{"type":"input_audio","input_audio":{}}]}]}"#,
            "messages[0].content[0].type",
        ),
        (
            Chat,
            Messages,
            r#"{"model":"m","messages":[{"role":"function","name":"f","content":"x"}]}"#,
            "messages[0].role",
        ),
        (
            Chat,
            Messages,
            r#"{"model":"m","messages":[],"tools":[{"type":"custom","custom":{"name":"x"}}]}"#,
            "tools[0].type",
        ),
        (
            Responses,
            Chat,
            r#"{"model":"m","input":"x","previous_response_id":"resp_1"}"#,
            "previous_response_id",
        ),
        (
            Responses,
            Chat,
            r#"{"model":"m","input":"x","conversation":"conv_1"}"#,
            "conversation",
        ),
        (
            Responses,
            Chat,
            r#"{"model":"m","input":"x","background":true}"#,
            "background",
        ),
        (
            Responses,
            Chat,
            r#"{"model":"m","input":"x","prompt":{"id":"p"}}"#,
            "prompt",
        ),
        (
            Responses,
            Chat,
            r#"{"model":"m","input":"x","max_tool_calls":3}"#,
            "max_tool_calls",
        ),
        (
            Responses,
            Messages,
            r#"{"model":"m","input":"x","tools":[{"type":"web_search"}],"tool_choice":{"type":"web_search"}}"#,
            "tool_choice.type",
        ),
        (
            Responses,
            Chat,
            r#"{"model":"m","input":"x","tools":[{"type":"mcp","server_label":"s","server_url":"https://x"}]}"#,
            "tools[0].type",
        ),
        (
            Responses,
            Chat,
            r#"{"model":"m","input":"x","tools":[{"type":"namespace","name":"n","tools":[{"type":"web_search"}]}]}"#,
            "tools[0].tools[0].type",
        ),
        (
            Responses,
            Chat,
            r#"{"model":"m","input":"x","tools":[{"type":"namespace","tools":[{"type":"function","name":"f"}]}]}"#,
            "tools[0].name",
        ),
        (
            Responses,
            Chat,
            r#"{"model":"m","input":"x","tools":[{"type":"namespace","name":"n","tools":[{"type":"function","name":"f","brand_new":1}]}]}"#,
            "tools[0].tools[0].brand_new",
        ),
        (
            Responses,
            Messages,
            r#"{"model":"m","input":"x","tools":[{"type":"local_shell"}]}"#,
            "tools[0].type",
        ),
        (
            Responses,
            Messages,
            r#"{"model":"m","input":"x","tools":[{"type":"file_search","vector_store_ids":[]}]}"#,
            "tools[0].type",
        ),
        (
            Responses,
            Messages,
            r#"{"model":"m","input":"x","tools":[{"type":"computer_use_preview"}]}"#,
            "tools[0].type",
        ),
        (
            Responses,
            Messages,
            r#"{"model":"m","input":[{"type":"item_reference","id":"msg_1"}]}"#,
            "input[0].type",
        ),
        (
            Responses,
            Messages,
            r#"{"model":"m","input":[{"type":"compaction","encrypted_content":"x"}]}"#,
            "input[0].type",
        ),
        (
            Responses,
            Messages,
            r#"{"model":"m","input":[{"type":"local_shell_call","call_id":"c","action":{}}]}"#,
            "input[0].type",
        ),
        (
            Responses,
            Messages,
            r#"{"model":"m","input":[{"role":"user","content":[{"type":"input_file","file_id":"f"}]}]}"#,
            "input[0].content[0].type",
        ),
        (
            Responses,
            Messages,
            r#"{"model":"m","input":[{"role":"user","content":[{"type":"input_image","file_id":"f"}]}]}"#,
            "input[0].content[0].file_id",
        ),
        (
            Responses,
            Chat,
            r#"{"model":"m","input":"x","tool_choice":{"type":"allowed_tools","tools":[]}}"#,
            "tool_choice.type",
        ),
        (
            Messages,
            Chat,
            r#"{"model":"m","max_tokens":1,"messages":[],"tools":[{"type":"web_search_20250305","name":"web_search"}]}"#,
            "tools[0].type",
        ),
        (
            Messages,
            Chat,
            r#"{"model":"m","max_tokens":1,"messages":[],"tools":[{"type":"bash_20250124","name":"bash"}]}"#,
            "tools[0].type",
        ),
        (
            Messages,
            Chat,
            r#"{"model":"m","max_tokens":1,"messages":[],"mcp_servers":[{"url":"x"}]}"#,
            "mcp_servers",
        ),
        (
            Messages,
            Chat,
            r#"{"model":"m","max_tokens":1,"messages":[],"container":"c"}"#,
            "container",
        ),
        (
            Messages,
            Chat,
            r#"{"model":"m","max_tokens":1,"messages":[],"top_k":5}"#,
            "top_k",
        ),
        (
            Messages,
            Chat,
            r#"{"model":"m","max_tokens":1,"messages":[{"role":"user","content":[{"type":"document","source":{}}]}]}"#,
            "messages[0].content[0].type",
        ),
        (
            Messages,
            Chat,
            r#"{"model":"m","max_tokens":1,"messages":[{"role":"assistant","content":[{"type":"server_tool_use","id":"s","name":"web_search","input":{}}]}]}"#,
            "messages[0].content[0].type",
        ),
        (
            Messages,
            Chat,
            r#"{"model":"m","max_tokens":1,"messages":[],"brand_new_field":1}"#,
            "brand_new_field",
        ),
        (
            Messages,
            Chat,
            r#"{"model":"m","max_tokens":1,"messages":[{"role":"user","content":[{"type":"text","text":"x","brand_new":1}]}]}"#,
            "messages[0].content[0].brand_new",
        ),
    ] {
        check_refused(client, upstream, body, field);
    }
}

#[test]
fn advisory_fields_are_dropped() {
    check(
        Messages,
        Chat,
        r#"{"model":"m","max_tokens":9,"messages":[{"role":"user","content":[{"type":"text","text":"hi","cache_control":{"type":"ephemeral","ttl":"1h"}}]}],"context_management":{"edits":[{"type":"clear_thinking_20251015","keep":"all"}]},"service_tier":"auto","metadata":{"user_id":"u"}}"#,
        r#"{"model":"m","max_tokens":9,"user":"u","messages":[{"role":"user","content":"hi"}]}"#,
    );
    check(
        Chat,
        Messages,
        r#"{"model":"m","messages":[{"role":"user","name":"bob","content":"hi"}],"store":true,"metadata":{"a":"b"},"seed":1,"service_tier":"default","prompt_cache_key":"k","stream_options":{"include_usage":true},"n":1,"logprobs":false}"#,
        r#"{"model":"m","max_tokens":32000,"messages":[{"role":"user","content":"hi"}]}"#,
    );
}

#[test]
fn malformed_bodies_are_refused_with_the_place() {
    let err = translate_request(
        &test_route(Chat, Messages),
        br#"{"model":"m","messages":[{"role":7}]}"#,
    )
    .unwrap_err();
    assert_eq!(err.field, "body");
    assert!(err.reason.contains("messages: role: invalid type"), "{err}");
}

#[test]
fn same_protocol_passes_through() {
    let body = br#"{"model":"x","stream":true,"whatever":[1]}"#;
    let t = translate_request(&test_route(Chat, Chat), body).unwrap();
    assert_eq!(t.body, body);
    assert!(t.stream);
    assert_eq!(t.model, "x");
}

#[test]
fn answer_context_says_what_the_answer_needs() {
    let t = translate_request(
        &test_route(Chat, Messages),
        br#"{"model":"m","stream":true,"stream_options":{"include_usage":true},"reasoning":{"effort":"low","exclude":true},"messages":[]}"#,
    )
    .unwrap();
    assert!(t.stream);
    assert!(t.context.include_usage);
    assert!(t.context.hide_reasoning);
    let t = translate_request(
        &test_route(Chat, Messages),
        br#"{"model":"m","messages":[],"response_format":{"type":"json_object"}}"#,
    )
    .unwrap();
    assert_eq!(t.context.json_tool.as_deref(), Some("json_answer"));
    assert!(!t.context.include_usage);
}

#[test]
fn chat_limit_field_is_a_per_upstream_choice() {
    let options = crate::RequestOptions {
        max_completion_tokens: true,
        ..crate::RequestOptions::default()
    };
    let t = crate::translate_request_with(
        &test_route(Messages, Chat),
        br#"{"model":"m","max_tokens":64,"messages":[]}"#,
        &options,
    )
    .unwrap();
    assert_eq!(
        String::from_utf8(t.body).unwrap(),
        r#"{"model":"m","messages":[],"max_completion_tokens":64}"#
    );
}

/// A Codex request: a plain function tool, an MCP server's `namespace`
/// holding a function and a custom tool, `web_search` (declared on every
/// Codex request), a choice forcing a namespaced tool, and history calls
/// that carry their `namespace`.
const CODEX_NAMESPACES: &str = r#"{"model":"m","input":[{"role":"user","content":"run js"},{"type":"function_call","call_id":"c1","namespace":"mcp__x","name":"js","arguments":"{\"code\":\"1\"}"},{"type":"function_call_output","call_id":"c1","output":[{"type":"input_text","text":"1"}]},{"type":"custom_tool_call","call_id":"c2","namespace":"mcp__x","name":"patch","input":"P"},{"type":"custom_tool_call_output","call_id":"c2","output":"ok"}],"tools":[{"type":"function","name":"exec_command","parameters":{"type":"object"},"strict":false},{"type":"namespace","name":"mcp__x","description":"The x server.","tools":[{"type":"function","name":"js","description":"Runs JS.","strict":false,"defer_loading":true,"parameters":{"type":"object","properties":{"code":{"type":"string"}}}},{"type":"custom","name":"patch","description":"Patches.","format":{"type":"grammar","syntax":"lark","definition":"start: x"}}]},{"type":"web_search","external_web_access":true}],"tool_choice":{"type":"function","namespace":"mcp__x","name":"js"}}"#;

#[test]
fn codex_namespaces_become_top_level_tools() {
    let patch_schema = r#"{"type":"object","properties":{"input":{"type":"string","description":"The tool's input, as free-form text. It must follow this lark grammar:\nstart: x"}},"required":["input"],"additionalProperties":false}"#;
    for (upstream, expected) in [
        (
            Chat,
            format!(
                r#"{{"model":"m","messages":[{{"role":"user","content":"run js"}},{{"role":"assistant","tool_calls":[{{"id":"c1","type":"function","function":{{"name":"mcp__x__js","arguments":"{{\"code\":\"1\"}}"}}}}]}},{{"role":"tool","tool_call_id":"c1","content":"1"}},{{"role":"assistant","tool_calls":[{{"id":"c2","type":"function","function":{{"name":"mcp__x__patch","arguments":"{{\"input\":\"P\"}}"}}}}]}},{{"role":"tool","tool_call_id":"c2","content":"ok"}}],"tools":[{{"type":"function","function":{{"name":"exec_command","parameters":{{"type":"object"}},"strict":false}}}},{{"type":"function","function":{{"name":"mcp__x__js","description":"Runs JS.\n\nThe x server.","parameters":{{"type":"object","properties":{{"code":{{"type":"string"}}}}}},"strict":false}}}},{{"type":"function","function":{{"name":"mcp__x__patch","description":"Patches.\n\nThe x server.","parameters":{patch_schema}}}}}],"tool_choice":{{"type":"function","function":{{"name":"mcp__x__js"}}}}}}"#
            ),
        ),
        (
            Messages,
            format!(
                r#"{{"model":"m","max_tokens":32000,"messages":[{{"role":"user","content":"run js"}},{{"role":"assistant","content":[{{"type":"tool_use","id":"c1","name":"mcp__x__js","input":{{"code":"1"}}}}]}},{{"role":"user","content":[{{"type":"tool_result","tool_use_id":"c1","content":"1"}}]}},{{"role":"assistant","content":[{{"type":"tool_use","id":"c2","name":"mcp__x__patch","input":{{"input":"P"}}}}]}},{{"role":"user","content":[{{"type":"tool_result","tool_use_id":"c2","content":"ok"}}]}}],"tools":[{{"name":"exec_command","input_schema":{{"type":"object"}}}},{{"name":"mcp__x__js","description":"Runs JS.\n\nThe x server.","input_schema":{{"type":"object","properties":{{"code":{{"type":"string"}}}}}}}},{{"name":"mcp__x__patch","description":"Patches.\n\nThe x server.","input_schema":{patch_schema}}}],"tool_choice":{{"type":"tool","name":"mcp__x__js"}}}}"#
            ),
        ),
    ] {
        check(Responses, upstream, CODEX_NAMESPACES, &expected);
        let t = translate_request(
            &test_route(Responses, upstream),
            CODEX_NAMESPACES.as_bytes(),
        )
        .unwrap();
        // What the answer and stream tests give the translation back.
        assert_eq!(t.context.namespaced_tools, crate::test_namespaced_tools());
        assert!(t.context.custom_tools.is_empty());
    }
}

#[test]
fn namespaced_tool_names_are_made_valid_for_the_target() {
    // (namespace, tool name, the flat name sent upstream)
    for (namespace, name, flat) in [
        // Codex's reserved namespace for plain functions: names stay.
        ("functions", "exec", "exec"),
        ("mcp__srv__", "read", "mcp__srv__read"),
        ("mcp__my.server", "read file", "mcp__my_server__read_file"),
        // Over 64 characters: 55 kept, then `_` and a hash.
        (
            "mcp__a_very_long_server_name_that_someone_configured",
            "fetch_every_issue_comment",
            "mcp__a_very_long_server_name_that_someone_configured__f_49719a0f",
        ),
        // Taken by a top-level tool: a hash suffix.
        ("mcp__x", "js", "mcp__x__js_e91b01e7"),
    ] {
        let body = format!(
            r#"{{"model":"m","input":[{{"type":"function_call","call_id":"c","namespace":"{namespace}","name":"{name}","arguments":"{{}}"}},{{"type":"function_call_output","call_id":"c","output":"done"}}],"tools":[{{"type":"function","name":"mcp__x__js"}},{{"type":"namespace","name":"{namespace}","description":"","tools":[{{"type":"function","name":"{name}"}}]}}],"tool_choice":{{"type":"function","namespace":"{namespace}","name":"{name}"}}}}"#
        );
        for upstream in [Chat, Messages] {
            let t = translate_request(&test_route(Responses, upstream), body.as_bytes())
                .unwrap_or_else(|r| panic!("{r}"));
            let got: Value = serde_json::from_slice(&t.body).unwrap();
            let (tool, call, choice) = match upstream {
                Chat => (
                    &got["tools"][1]["function"]["name"],
                    &got["messages"][0]["tool_calls"][0]["function"]["name"],
                    &got["tool_choice"]["function"]["name"],
                ),
                _ => (
                    &got["tools"][1]["name"],
                    &got["messages"][0]["content"][0]["name"],
                    &got["tool_choice"]["name"],
                ),
            };
            assert_eq!(
                (tool, call, choice),
                (&json!(flat), &json!(flat), &json!(flat)),
                "{upstream}: {got}"
            );
            assert!(flat.len() <= 64);
            assert_eq!(t.context.namespaced_tools[0].flat, flat);
            assert_eq!(t.context.namespaced_tools[0].namespace, namespace);
            assert_eq!(t.context.namespaced_tools[0].name, name);
        }
    }
}

#[test]
fn responses_lite_additional_tools_are_declarations() {
    check(
        Responses,
        Chat,
        r#"{"model":"m","input":[{"type":"additional_tools","id":"at_1","role":"developer","tools":[{"type":"namespace","name":"functions","description":"","tools":[{"type":"custom","name":"exec","description":"Runs."},{"type":"function","name":"wait","parameters":{"type":"object"}}]}]},{"role":"user","content":"hi"},{"type":"custom_tool_call","call_id":"c","namespace":"functions","name":"exec","input":"ls"},{"type":"custom_tool_call_output","call_id":"c","output":"a.txt"}],"tools":[{"type":"image_generation","output_format":"png"},{"type":"tool_search","execution":"client","description":"Find tools.","parameters":{"type":"object"}}]}"#,
        r#"{"model":"m","messages":[{"role":"user","content":"hi"},{"role":"assistant","tool_calls":[{"id":"c","type":"function","function":{"name":"exec","arguments":"{\"input\":\"ls\"}"}}]},{"role":"tool","tool_call_id":"c","content":"a.txt"}],"tools":[{"type":"function","function":{"name":"exec","description":"Runs.","parameters":{"type":"object","properties":{"input":{"type":"string","description":"The tool's input, as free-form text."}},"required":["input"],"additionalProperties":false}}},{"type":"function","function":{"name":"wait","parameters":{"type":"object"}}}]}"#,
    );
    // Only hosted tools, all dropped: no tools, so no tool choice either.
    check(
        Responses,
        Chat,
        r#"{"model":"m","input":"hi","tools":[{"type":"web_search_preview"}],"tool_choice":"auto","parallel_tool_calls":true}"#,
        r#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#,
    );
}
