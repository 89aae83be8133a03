#!/usr/bin/env python3
"""Edit an image through tokenbuddy with the official `openai` SDK.

Run by crates/tokenbuddyd/tests/sdk.rs against the real daemon in front of
tb-test-support's MockUpstream (openai==3.54.0): `client.images.edit(...)`
sends a multipart/form-data request (two image files, a mask, the text
fields), whole and streamed; an unknown model raises NotFoundError and a
form without `model` BadRequestError.

Environment: OPENAI_BASE_URL (…/v1), OPENAI_API_KEY, IMAGE_MODEL.
"""

import base64
import os
import sys

import openai

IMAGE_MODEL = os.environ["IMAGE_MODEL"]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
# The request's image: a PNG header and bytes a text parser would trip on.
IMAGE = PNG_MAGIC + b"tokenbuddy-edit-image\r\n--not-a-boundary\r\n\x00\xff" * 64

client = openai.OpenAI(max_retries=0)


def check(cond, what):
    if not cond:
        print(f"FAIL: {what}")
        sys.exit(1)


def main():
    img = client.images.edit(
        model=IMAGE_MODEL,
        image=[("a.png", IMAGE, "image/png"), ("b.png", IMAGE, "image/png")],
        mask=("mask.png", IMAGE, "image/png"),
        prompt="put a hat on it",
        n=1,
        size="1024x1024",
    )
    check(base64.b64decode(img.data[0].b64_json).startswith(PNG_MAGIC), "png")
    check(img.usage.total_tokens > 0, "usage")
    print("ok images.edit")

    kinds = []
    for ev in client.images.edit(
        model=IMAGE_MODEL,
        image=("a.png", IMAGE, "image/png"),
        prompt="put a hat on it",
        stream=True,
        partial_images=1,
    ):
        kinds.append(ev.type)
    check(kinds == ["image_edit.partial_image", "image_edit.completed"], f"{kinds}")
    print("ok images.edit(stream=True)")

    try:
        client.images.edit(model="no-such-image-model", image=("a.png", IMAGE, "image/png"), prompt="p")
        check(False, "unknown model accepted")
    except openai.NotFoundError as e:
        print(f"ok NotFoundError {e.status_code}")

    try:
        client.images.edit(model="", image=("a.png", IMAGE, "image/png"), prompt="p")
        check(False, "empty model accepted")
    except openai.BadRequestError as e:
        check("model" in str(e), f"{e}")
        print(f"ok BadRequestError {e.status_code}")


main()
