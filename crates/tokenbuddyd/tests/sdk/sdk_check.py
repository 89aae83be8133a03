#!/usr/bin/env python3
"""Drive an OpenAI/Anthropic-compatible endpoint with the official SDKs.

Run by crates/tokenbuddyd/tests/sdk.rs against the real tokenbuddy daemon in
front of tb-test-support's MockUpstream (openai==3.54.0, anthropic==2.12.0).
Every call must parse without errors and return the canned text and usage,
and every daemon error must raise the SDK's usual exception type.

Environment:
  OPENAI_BASE_URL     e.g. http://127.0.0.1:PORT/v1   (required)
  ANTHROPIC_BASE_URL  e.g. http://127.0.0.1:PORT      (required; the SDK adds /v1/messages)
  OPENAI_API_KEY, ANTHROPIC_API_KEY   (default "x")
  SMOKE_EXPECT_TEXT   the expected assistant text (default: the mock's canned text)

Besides the SDK calls, the raw bodies are validated strictly against the SDK's
pydantic models (the SDKs themselves build models leniently), so missing
required fields are caught too.

By hand: cargo run -p tb-test-support --example serve   (prints the two URLs)
         OPENAI_BASE_URL=... ANTHROPIC_BASE_URL=... python sdk_check.py
(errors() needs the daemon in front: the mock alone does not check keys.)
"""

import base64
import json
import os
import sys
import urllib.request

import anthropic
import openai
import pydantic
from anthropic.types import Message, RawMessageStreamEvent
from openai.types import ImageGenStreamEvent, ImagesResponse
from openai.types.chat import ChatCompletion, ChatCompletionChunk
from openai.types.responses import Response, ResponseStreamEvent

OPENAI_BASE_URL = os.environ["OPENAI_BASE_URL"]
ANTHROPIC_BASE_URL = os.environ["ANTHROPIC_BASE_URL"]
OPENAI_API_KEY = os.environ.get("OPENAI_API_KEY", "x")
ANTHROPIC_API_KEY = os.environ.get("ANTHROPIC_API_KEY", "x")
TEXT = os.environ.get("SMOKE_EXPECT_TEXT", "Héllo wörld — ünïcode 🚀")
CHAT_MODEL = "gpt-4o-mini"
CLAUDE_MODEL = "claude-haiku-4-5"
IMAGE_MODEL = "gpt-image-1"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

oa = openai.OpenAI(base_url=OPENAI_BASE_URL, api_key=OPENAI_API_KEY, max_retries=0, timeout=30)
an = anthropic.Anthropic(base_url=ANTHROPIC_BASE_URL, api_key=ANTHROPIC_API_KEY, max_retries=0, timeout=30)

passed = []


def check(cond, what):
    if not cond:
        raise AssertionError(what)


def ok(name):
    passed.append(name)
    print(f"ok  {name}")


def strict(model_type, value):
    """Validates strictly (the SDKs construct models without validation)."""
    return pydantic.TypeAdapter(model_type).validate_python(value)


def post(url, body, headers):
    req = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        headers={"content-type": "application/json", **headers},
        method="POST",
    )
    resp = urllib.request.urlopen(req, timeout=30)  # raises on non-2xx
    check(resp.status == 200, f"{url}: status {resp.status}")
    return resp


def raw_sse(url, body, headers):
    """POSTs and returns the SSE events as (event name, parsed data) pairs."""
    events = []
    with post(url, body, headers) as resp:
        check(resp.headers["content-type"].startswith("text/event-stream"), "content-type")
        name, data = None, []
        for raw in resp:
            line = raw.decode("utf-8").rstrip("\r\n")
            if line == "":
                if data:
                    joined = "\n".join(data)
                    events.append((name, None if joined == "[DONE]" else json.loads(joined)))
                name, data = None, []
            elif line.startswith("event:"):
                name = line[len("event:"):].strip()
            elif line.startswith("data:"):
                data.append(line[len("data:"):].lstrip(" "))
    return events


def raw_json(url, body, headers):
    with post(url, body, headers) as resp:
        check(resp.headers["content-type"].startswith("application/json"), "content-type")
        return json.loads(resp.read())


OA_HEADERS = {"authorization": f"Bearer {OPENAI_API_KEY}"}
AN_HEADERS = {"x-api-key": ANTHROPIC_API_KEY, "anthropic-version": "2023-06-01"}


# ------------------------------------------------------------ chat ------
def chat():
    msgs = [{"role": "user", "content": "hi"}]
    c = oa.chat.completions.create(model=CHAT_MODEL, messages=msgs)
    check(c.choices[0].message.content == TEXT, f"chat text {c.choices[0].message.content!r}")
    check(c.choices[0].finish_reason == "stop", "finish_reason")
    check(c.usage.prompt_tokens > 0 and c.usage.completion_tokens > 0, "chat usage")
    check(c.usage.total_tokens == c.usage.prompt_tokens + c.usage.completion_tokens, "total")
    check(c.usage.prompt_tokens_details.cached_tokens is not None, "cached_tokens")
    ok("chat.completions.create")

    stream = oa.chat.completions.create(
        model=CHAT_MODEL, messages=msgs, stream=True, stream_options={"include_usage": True}
    )
    text, usage, finish = "", None, None
    for chunk in stream:
        for choice in chunk.choices:
            text += choice.delta.content or ""
            finish = choice.finish_reason or finish
        usage = chunk.usage or usage
    check(text == TEXT, f"chat stream text {text!r}")
    check(finish == "stop", "stream finish_reason")
    check(usage is not None and usage.completion_tokens > 0, "stream usage")
    ok("chat.completions.create(stream=True)")

    with oa.chat.completions.stream(model=CHAT_MODEL, messages=msgs) as s:
        for _ in s:
            pass
        final = s.get_final_completion()
    check(final.choices[0].message.content == TEXT, "chat.completions.stream final")
    ok("chat.completions.stream().get_final_completion()")

    url = f"{OPENAI_BASE_URL}/chat/completions"
    strict(ChatCompletion, raw_json(url, {"model": CHAT_MODEL, "messages": msgs}, OA_HEADERS))
    events = raw_sse(url, {"model": CHAT_MODEL, "messages": msgs, "stream": True}, OA_HEADERS)
    check(events[-1] == (None, None), "chat stream ends with [DONE]")
    for _, data in events[:-1]:
        strict(ChatCompletionChunk, data)
    ok("chat raw bodies validate strictly")


# ------------------------------------------------------- responses ------
def responses():
    r = oa.responses.create(model=CHAT_MODEL, input="hi")
    check(r.output_text == TEXT, f"responses text {r.output_text!r}")
    check(r.status == "completed", "status")
    check(r.usage.input_tokens > 0 and r.usage.output_tokens > 0, "responses usage")
    ok("responses.create")

    text, completed, types = "", None, []
    for ev in oa.responses.create(model=CHAT_MODEL, input="hi", stream=True):
        types.append(ev.type)
        if ev.type == "response.output_text.delta":
            text += ev.delta
        elif ev.type == "response.completed":
            completed = ev.response
    check(text == TEXT, f"responses stream text {text!r}")
    check(completed is not None and completed.output_text == TEXT, "completed event")
    check(completed.usage.total_tokens > 0, "completed usage")
    check(types[0] == "response.created" and types[-1] == "response.completed", f"{types}")
    ok("responses.create(stream=True)")

    with oa.responses.stream(model=CHAT_MODEL, input="hi") as s:
        for _ in s:
            pass
        final = s.get_final_response()
    check(final.output_text == TEXT, f"responses.stream final {final.output_text!r}")
    check(final.usage.output_tokens > 0, "final usage")
    ok("responses.stream().get_final_response()")

    url = f"{OPENAI_BASE_URL}/responses"
    strict(Response, raw_json(url, {"model": CHAT_MODEL, "input": "hi"}, OA_HEADERS))
    for name, data in raw_sse(url, {"model": CHAT_MODEL, "input": "hi", "stream": True}, OA_HEADERS):
        check(name == data["type"], f"event name {name} vs type {data['type']}")
        strict(ResponseStreamEvent, data)
    ok("responses raw bodies validate strictly")


# ---------------------------------------------------------- images ------
def images():
    img = oa.images.generate(model=IMAGE_MODEL, prompt="a dot")
    check(base64.b64decode(img.data[0].b64_json).startswith(PNG_MAGIC), "png")
    check(img.usage.total_tokens > 0, "images usage")
    ok("images.generate")

    kinds, completed = [], None
    for ev in oa.images.generate(model=IMAGE_MODEL, prompt="a dot", stream=True, partial_images=1):
        kinds.append(ev.type)
        if ev.type == "image_generation.completed":
            completed = ev
    check(kinds == ["image_generation.partial_image", "image_generation.completed"], f"{kinds}")
    check(base64.b64decode(completed.b64_json).startswith(PNG_MAGIC), "streamed png")
    check(completed.usage.total_tokens > 0, "streamed images usage")
    ok("images.generate(stream=True)")

    url = f"{OPENAI_BASE_URL}/images/generations"
    strict(ImagesResponse, raw_json(url, {"model": IMAGE_MODEL, "prompt": "a dot"}, OA_HEADERS))
    body = {"model": IMAGE_MODEL, "prompt": "a dot", "stream": True, "partial_images": 1}
    for name, data in raw_sse(url, body, OA_HEADERS):
        check(name == data["type"], "image event name")
        strict(ImageGenStreamEvent, data)
    ok("images raw bodies validate strictly")


# -------------------------------------------------------- messages ------
def messages():
    msgs = [{"role": "user", "content": "hi"}]
    m = an.messages.create(model=CLAUDE_MODEL, max_tokens=64, messages=msgs)
    check(m.content[0].text == TEXT, f"messages text {m.content[0].text!r}")
    check(m.stop_reason == "end_turn", "stop_reason")
    check(m.usage.input_tokens > 0 and m.usage.output_tokens > 0, "messages usage")
    ok("messages.create")

    text, stop, out_tokens, types = "", None, None, []
    for ev in an.messages.create(model=CLAUDE_MODEL, max_tokens=64, messages=msgs, stream=True):
        types.append(ev.type)
        if ev.type == "content_block_delta":
            text += ev.delta.text
        elif ev.type == "message_delta":
            stop, out_tokens = ev.delta.stop_reason, ev.usage.output_tokens
    check(text == TEXT, f"messages stream text {text!r}")
    check(stop == "end_turn" and out_tokens > 0, "message_delta")
    check(types[0] == "message_start" and types[-1] == "message_stop", f"{types}")
    ok("messages.create(stream=True)")

    with an.messages.stream(model=CLAUDE_MODEL, max_tokens=64, messages=msgs) as s:
        streamed = "".join(s.text_stream)
        final = s.get_final_message()
    check(streamed == TEXT, f"text_stream {streamed!r}")
    check(final.content[0].text == TEXT, "final message text")
    check(final.stop_reason == "end_turn", "final stop_reason")
    check(final.usage.input_tokens > 0 and final.usage.output_tokens > 0, "final usage")
    ok("messages.stream().get_final_message()")

    url = f"{ANTHROPIC_BASE_URL}/v1/messages"
    body = {"model": CLAUDE_MODEL, "max_tokens": 64, "messages": msgs}
    strict(Message, raw_json(url, body, AN_HEADERS))
    for name, data in raw_sse(url, {**body, "stream": True}, AN_HEADERS):
        check(name == data["type"], "anthropic event name")
        if name != "ping":  # the SDK skips pings; they are in no event union
            strict(RawMessageStreamEvent, data)
    ok("messages raw bodies validate strictly")


# ---------------------------------------------------------- errors ------
def expect(exc_type, call, what):
    try:
        call()
    except exc_type as err:
        return err
    except Exception as err:  # the wrong exception type is the failure we look for
        raise AssertionError(f"{what}: raised {type(err).__name__}: {err}, not {exc_type.__name__}")
    raise AssertionError(f"{what}: no exception, expected {exc_type.__name__}")


def errors():
    msgs = [{"role": "user", "content": "hi"}]
    wrong_oa = openai.OpenAI(base_url=OPENAI_BASE_URL, api_key="wrong-token", max_retries=0, timeout=30)
    wrong_an = anthropic.Anthropic(base_url=ANTHROPIC_BASE_URL, api_key="wrong-token", max_retries=0, timeout=30)

    err = expect(openai.AuthenticationError, lambda: wrong_oa.chat.completions.create(model=CHAT_MODEL, messages=msgs), "openai wrong token")
    check(err.status_code == 401 and err.code == "invalid_access_token", f"openai 401 body: {err}")
    err = expect(anthropic.AuthenticationError, lambda: wrong_an.messages.create(model=CLAUDE_MODEL, max_tokens=8, messages=msgs), "anthropic wrong token")
    check(err.status_code == 401, f"anthropic 401: {err}")
    ok("wrong token -> AuthenticationError (openai, anthropic)")

    err = expect(openai.NotFoundError, lambda: oa.chat.completions.create(model="no-such-model", messages=msgs), "openai unknown model")
    check(err.code == "model_not_found" and "no-such-model" in str(err), f"openai 404: {err}")
    expect(openai.NotFoundError, lambda: oa.responses.create(model="no-such-model", input="hi"), "responses unknown model")
    expect(openai.NotFoundError, lambda: oa.images.generate(model="no-such-model", prompt="a dot"), "images unknown model")
    err = expect(anthropic.NotFoundError, lambda: an.messages.create(model="no-such-model", max_tokens=8, messages=msgs), "anthropic unknown model")
    check("no-such-model" in str(err), f"anthropic 404: {err}")
    ok("unknown model -> NotFoundError (chat, responses, images, messages)")

    err = expect(openai.BadRequestError, lambda: oa.chat.completions.create(model="", messages=msgs), "openai empty model")
    check(err.code == "missing_model", f"openai 400: {err}")
    expect(anthropic.BadRequestError, lambda: an.messages.create(model="", max_tokens=8, messages=msgs), "anthropic empty model")
    ok("bad request -> BadRequestError (openai, anthropic)")


def main():
    failed = []
    for fn in (chat, responses, images, messages, errors):
        try:
            fn()
        except Exception as err:  # report every family, not just the first failure
            failed.append(fn.__name__)
            print(f"FAIL {fn.__name__}: {type(err).__name__}: {err}")
    print(f"{len(passed)} checks passed" + (f"; failed: {', '.join(failed)}" if failed else ""))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
