#!/usr/bin/env python3
"""The official SDKs' stream helpers over TRANSLATED streams.

Run by crates/tokenbuddyd/tests/sdk.rs (openai==3.54.0, anthropic==2.12.0)
against two real daemons in front of tb-test-support's AgentUpstream, a
scripted upstream that answers in whatever protocol it is asked in: a tool
call when the request declares a file-reading tool, then the final text once
the conversation carries the tool result, always with usage.

- anthropic `messages.stream()` through a daemon whose only upstream speaks
  chat completions;
- openai `chat.completions.stream()` and `responses.stream()` through a
  daemon whose only upstream speaks Messages;

each a two-turn tool task (tool call, then text after the tool result), and
one answer of text followed by a tool call from tb-test-support's
TextAndCallUpstream (model MIXED_MODEL on the same daemons). The accumulated
final message / completion / response must equal what the same SDK helper
accumulates from the upstream's native answer (the SDK pointed at the
upstream directly), and both must hold the scripted values exactly.

Environment (all required):
  UPSTREAM_URL          the AgentUpstream root, http://127.0.0.1:PORT
  VIA_CHAT_URL          daemon with a chat-only upstream, http://127.0.0.1:PORT
  VIA_CHAT_TOKEN        its access token
  VIA_MESSAGES_URL      daemon with a Messages-only upstream
  VIA_MESSAGES_TOKEN    its access token
  MODEL                 the model both daemons serve
  TASK_FILE             the file the upstream asks to read
  SECRET                the marked word the tool result carries
  INPUT_TOKENS, OUTPUT_TOKENS   the usage every scripted answer reports
  MIXED_UPSTREAM_URL    the TextAndCallUpstream root
  MIXED_MODEL           the model it serves behind both daemons
  MIXED_TEXT, MIXED_TOOL, MIXED_ARGUMENTS (JSON text)   what it answers
  MIXED_INPUT_TOKENS, MIXED_OUTPUT_TOKENS               with this usage
"""

import json
import os
import sys

import anthropic
import openai

UPSTREAM_URL = os.environ["UPSTREAM_URL"]
MODEL = os.environ["MODEL"]
TASK_FILE = os.environ["TASK_FILE"]
SECRET = os.environ["SECRET"]
INPUT_TOKENS = int(os.environ["INPUT_TOKENS"])
OUTPUT_TOKENS = int(os.environ["OUTPUT_TOKENS"])
FINAL_TEXT = f"The secret in the file is {SECRET}."
TOOL_RESULT = f"     1\t{SECRET}\n"
PROMPT = "Read the file and tell me the secret."

passed = []


def check(cond, what):
    if not cond:
        raise AssertionError(what)


def same(translated, native, what):
    check(translated == native, f"{what}: translated {translated!r} != native {native!r}")


def ok(name):
    passed.append(name)
    print(f"ok  {name}")


def anthropic_client(base_url, key):
    return anthropic.Anthropic(base_url=base_url, api_key=key, max_retries=0, timeout=30)


def openai_client(base_url, key):
    return openai.OpenAI(base_url=base_url, api_key=key, max_retries=0, timeout=30)


# -------------------------------------------------------- messages ------
READ_TOOL = {
    "name": "Read",
    "description": "Reads a file from the local filesystem.",
    "input_schema": {
        "type": "object",
        "properties": {"file_path": {"type": "string"}},
        "required": ["file_path"],
    },
}


def messages_summary(message):
    blocks = []
    for block in message.content:
        if block.type == "text":
            blocks.append(("text", block.text))
        elif block.type == "tool_use":
            blocks.append(("tool_use", block.name, block.input))
        else:
            blocks.append((block.type,))
    return {
        "role": message.role,
        "model": message.model,
        "blocks": blocks,
        "stop_reason": message.stop_reason,
        "usage": (message.usage.input_tokens, message.usage.output_tokens),
    }


def messages_task(client):
    """Both turns with `messages.stream()`; the two final messages."""
    user = {"role": "user", "content": PROMPT}
    with client.messages.stream(model=MODEL, max_tokens=256, messages=[user], tools=[READ_TOOL]) as s:
        for _ in s:
            pass
        first = s.get_final_message()
    calls = [b for b in first.content if b.type == "tool_use"]
    check(len(calls) == 1, f"one tool_use block: {first.content!r}")
    call = calls[0]
    history = [
        user,
        {"role": "assistant", "content": [{"type": "tool_use", "id": call.id, "name": call.name, "input": call.input}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id, "content": TOOL_RESULT}]},
    ]
    with client.messages.stream(model=MODEL, max_tokens=256, messages=history, tools=[READ_TOOL]) as s:
        streamed = "".join(s.text_stream)
        second = s.get_final_message()
    check(streamed == second.content[0].text, f"text_stream {streamed!r} vs final {second.content!r}")
    return first, second


def messages_through_chat():
    key = os.environ["VIA_CHAT_TOKEN"]
    native = [messages_summary(m) for m in messages_task(anthropic_client(UPSTREAM_URL, "x"))]
    translated_msgs = messages_task(anthropic_client(os.environ["VIA_CHAT_URL"], key))
    translated = [messages_summary(m) for m in translated_msgs]
    usage = (INPUT_TOKENS, OUTPUT_TOKENS)
    expected = [
        {"role": "assistant", "model": MODEL, "blocks": [("tool_use", "Read", {"file_path": TASK_FILE})],
         "stop_reason": "tool_use", "usage": usage},
        {"role": "assistant", "model": MODEL, "blocks": [("text", FINAL_TEXT)],
         "stop_reason": "end_turn", "usage": usage},
    ]
    print(f"    messages native:     {native}")
    print(f"    messages translated: {translated}")
    same(native, expected, "native messages vs the script")
    same(translated, native, "messages.stream() final messages")
    # The id of a translated call is a valid Anthropic tool_use id.
    call_id = translated_msgs[0].content[0].id
    check(call_id and all(c.isalnum() or c in "_-" for c in call_id), f"tool_use id {call_id!r}")
    ok("anthropic messages.stream().get_final_message() through a chat-only upstream")


# ------------------------------------------------------------ chat ------
READ_FUNCTION = {
    "name": "read_file",
    "description": "Reads a file.",
    "parameters": {
        "type": "object",
        "properties": {"path": {"type": "string"}},
        "required": ["path"],
    },
}


def chat_summary(completion):
    choice = completion.choices[0]
    message = choice.message
    calls = [(c.type, c.function.name, json.loads(c.function.arguments)) for c in message.tool_calls or []]
    usage = completion.usage
    return {
        "model": completion.model,
        "role": message.role,
        "content": message.content or None,
        "tool_calls": calls,
        "finish_reason": choice.finish_reason,
        "usage": None if usage is None else (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens),
    }


def chat_task(client):
    user = {"role": "user", "content": PROMPT}
    tools = [{"type": "function", "function": READ_FUNCTION}]
    kwargs = {"model": MODEL, "tools": tools, "stream_options": {"include_usage": True}}
    with client.chat.completions.stream(messages=[user], **kwargs) as s:
        for _ in s:
            pass
        first = s.get_final_completion()
    calls = first.choices[0].message.tool_calls or []
    check(len(calls) == 1, f"one tool call: {first.choices[0].message!r}")
    call = calls[0]
    history = [
        user,
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": call.id, "type": "function", "function": {"name": call.function.name, "arguments": call.function.arguments}}
        ]},
        {"role": "tool", "tool_call_id": call.id, "content": TOOL_RESULT},
    ]
    with client.chat.completions.stream(messages=history, **kwargs) as s:
        for _ in s:
            pass
        second = s.get_final_completion()
    return first, second


def chat_through_messages(client):
    native = [chat_summary(c) for c in chat_task(openai_client(f"{UPSTREAM_URL}/v1", "x"))]
    translated = [chat_summary(c) for c in chat_task(client)]
    usage = (INPUT_TOKENS, OUTPUT_TOKENS, INPUT_TOKENS + OUTPUT_TOKENS)
    expected = [
        {"model": MODEL, "role": "assistant", "content": None,
         "tool_calls": [("function", "read_file", {"path": TASK_FILE})], "finish_reason": "tool_calls", "usage": usage},
        {"model": MODEL, "role": "assistant", "content": FINAL_TEXT, "tool_calls": [],
         "finish_reason": "stop", "usage": usage},
    ]
    print(f"    chat native:     {native}")
    print(f"    chat translated: {translated}")
    same(native, expected, "native chat vs the script")
    same(translated, native, "chat.completions.stream() final completions")
    ok("openai chat.completions.stream().get_final_completion() through a Messages-only upstream")


# ------------------------------------------------------- responses ------
def responses_summary(response):
    items = []
    for item in response.output:
        if item.type == "function_call":
            items.append(("function_call", item.name, json.loads(item.arguments), item.status))
        elif item.type == "message":
            items.append(("message", item.role, [(p.type, p.text) for p in item.content], item.status))
        else:
            items.append((item.type,))
    usage = response.usage
    return {
        "model": response.model,
        "status": response.status,
        "output": items,
        "output_text": response.output_text,
        "usage": None if usage is None else (usage.input_tokens, usage.output_tokens, usage.total_tokens),
    }


def responses_task(client):
    tool = {"type": "function", "strict": False, **READ_FUNCTION}
    with client.responses.stream(model=MODEL, input=PROMPT, tools=[tool]) as s:
        for _ in s:
            pass
        first = s.get_final_response()
    calls = [i for i in first.output if i.type == "function_call"]
    check(len(calls) == 1, f"one function call: {first.output!r}")
    call = calls[0]
    history = [
        {"role": "user", "content": PROMPT},
        {"type": "function_call", "call_id": call.call_id, "name": call.name, "arguments": call.arguments},
        {"type": "function_call_output", "call_id": call.call_id, "output": TOOL_RESULT},
    ]
    with client.responses.stream(model=MODEL, input=history, tools=[tool]) as s:
        for _ in s:
            pass
        second = s.get_final_response()
    return first, second


def responses_through_messages(client):
    native = [responses_summary(r) for r in responses_task(openai_client(f"{UPSTREAM_URL}/v1", "x"))]
    translated = [responses_summary(r) for r in responses_task(client)]
    usage = (INPUT_TOKENS, OUTPUT_TOKENS, INPUT_TOKENS + OUTPUT_TOKENS)
    expected = [
        {"model": MODEL, "status": "completed",
         "output": [("function_call", "read_file", {"path": TASK_FILE}, "completed")],
         "output_text": "", "usage": usage},
        {"model": MODEL, "status": "completed",
         "output": [("message", "assistant", [("output_text", FINAL_TEXT)], "completed")],
         "output_text": FINAL_TEXT, "usage": usage},
    ]
    print(f"    responses native:     {native}")
    print(f"    responses translated: {translated}")
    same(native, expected, "native responses vs the script")
    same(translated, native, "responses.stream() final responses")
    ok("openai responses.stream().get_final_response() through a Messages-only upstream")


# ------------------------------------------- text, then a tool call ------
MIXED_MODEL = os.environ["MIXED_MODEL"]
MIXED_TEXT = os.environ["MIXED_TEXT"]
MIXED_TOOL = os.environ["MIXED_TOOL"]
MIXED_ARGUMENTS = json.loads(os.environ["MIXED_ARGUMENTS"])
MIXED_USAGE = (int(os.environ["MIXED_INPUT_TOKENS"]), int(os.environ["MIXED_OUTPUT_TOKENS"]))
MIXED_TOOL_SCHEMA = {"type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]}


def mixed_messages(via_chat):
    def run(client):
        user = {"role": "user", "content": "Read the notes."}
        tool = {"name": MIXED_TOOL, "input_schema": MIXED_TOOL_SCHEMA}
        with client.messages.stream(model=MIXED_MODEL, max_tokens=256, messages=[user], tools=[tool]) as s:
            streamed = "".join(s.text_stream)
            final = s.get_final_message()
        check(streamed == MIXED_TEXT, f"text_stream {streamed!r}")
        return messages_summary(final)

    native = run(anthropic_client(os.environ["MIXED_UPSTREAM_URL"], "x"))
    translated = run(via_chat)
    expected = {"role": "assistant", "model": MIXED_MODEL,
                "blocks": [("text", MIXED_TEXT), ("tool_use", MIXED_TOOL, MIXED_ARGUMENTS)],
                "stop_reason": "tool_use", "usage": MIXED_USAGE}
    print(f"    mixed messages native:     {native}")
    print(f"    mixed messages translated: {translated}")
    same(native, expected, "native mixed message vs the script")
    same(translated, native, "messages.stream() final message with text and a call")
    ok("anthropic messages.stream(): text then a tool call, through a chat-only upstream")


def mixed_chat(via_messages):
    def run(client):
        tool = {"type": "function", "function": {"name": MIXED_TOOL, "parameters": MIXED_TOOL_SCHEMA}}
        with client.chat.completions.stream(
            model=MIXED_MODEL, messages=[{"role": "user", "content": "Read the notes."}], tools=[tool],
            stream_options={"include_usage": True},
        ) as s:
            for _ in s:
                pass
            return chat_summary(s.get_final_completion())

    native = run(openai_client(f"{os.environ['MIXED_UPSTREAM_URL']}/v1", "x"))
    translated = run(via_messages)
    usage = (*MIXED_USAGE, sum(MIXED_USAGE))
    expected = {"model": MIXED_MODEL, "role": "assistant", "content": MIXED_TEXT,
                "tool_calls": [("function", MIXED_TOOL, MIXED_ARGUMENTS)], "finish_reason": "tool_calls",
                "usage": usage}
    print(f"    mixed chat native:     {native}")
    print(f"    mixed chat translated: {translated}")
    same(native, expected, "native mixed completion vs the script")
    same(translated, native, "chat.completions.stream() final completion with text and a call")
    ok("openai chat.completions.stream(): text then a tool call, through a Messages-only upstream")


def mixed_responses(via_messages):
    def run(client):
        tool = {"type": "function", "name": MIXED_TOOL, "parameters": MIXED_TOOL_SCHEMA, "strict": False}
        with client.responses.stream(model=MIXED_MODEL, input="Read the notes.", tools=[tool]) as s:
            for _ in s:
                pass
            return responses_summary(s.get_final_response())

    native = run(openai_client(f"{os.environ['MIXED_UPSTREAM_URL']}/v1", "x"))
    translated = run(via_messages)
    usage = (*MIXED_USAGE, sum(MIXED_USAGE))
    expected = {"model": MIXED_MODEL, "status": "completed",
                "output": [("message", "assistant", [("output_text", MIXED_TEXT)], "completed"),
                           ("function_call", MIXED_TOOL, MIXED_ARGUMENTS, "completed")],
                "output_text": MIXED_TEXT, "usage": usage}
    print(f"    mixed responses native:     {native}")
    print(f"    mixed responses translated: {translated}")
    same(native, expected, "native mixed response vs the script")
    same(translated, native, "responses.stream() final response with text and a call")
    ok("openai responses.stream(): text then a tool call, through a Messages-only upstream")


def main():
    via_messages = openai_client(f"{os.environ['VIA_MESSAGES_URL']}/v1", os.environ["VIA_MESSAGES_TOKEN"])
    via_chat = anthropic_client(os.environ["VIA_CHAT_URL"], os.environ["VIA_CHAT_TOKEN"])
    checks = [
        ("messages", messages_through_chat),
        ("chat", lambda: chat_through_messages(via_messages)),
        ("responses", lambda: responses_through_messages(via_messages)),
        ("mixed messages", lambda: mixed_messages(via_chat)),
        ("mixed chat", lambda: mixed_chat(via_messages)),
        ("mixed responses", lambda: mixed_responses(via_messages)),
    ]
    failed = []
    for name, fn in checks:
        try:
            fn()
        except Exception as err:  # report every helper, not just the first failure
            failed.append(name)
            print(f"FAIL {name}: {type(err).__name__}: {err}")
    print(f"{len(passed)} checks passed" + (f"; failed: {', '.join(failed)}" if failed else ""))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
