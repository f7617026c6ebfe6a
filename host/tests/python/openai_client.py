"""The official `openai` package against `clemhost serve` (run by host/tests/cli/serve.rs).

Usage: python openai_client.py BASE_URL KEYED_BASE_URL
  BASE_URL serves echo-1 and echo-2 without an API key; KEYED_BASE_URL serves
  echo-1 and wants the key in the environment variable SERVE_KEY.
"""

import os
import sys

import openai
from openai import OpenAI


def check(cond: bool, what: str) -> None:
    if not cond:
        raise AssertionError(what)


def main(base_url: str, keyed_url: str) -> None:
    client = OpenAI(base_url=base_url, api_key="unused", max_retries=0)

    ids = sorted(m.id for m in client.models.list())
    check(ids == ["echo-1", "echo-2"], f"models.list(): {ids}")

    plain = client.chat.completions.create(
        model="echo-2",
        messages=[{"role": "user", "content": "hello from python"}],
        temperature=0.0,
        max_tokens=20,
    )
    choice = plain.choices[0]
    check(choice.message.content == "hello from python", f"content: {choice.message.content!r}")
    check(choice.finish_reason == "stop", f"finish_reason: {choice.finish_reason}")
    check(plain.usage is not None and plain.usage.completion_tokens == 3, f"usage: {plain.usage}")
    extension = (plain.model_extra or {}).get("clemhost")
    check(isinstance(extension, dict) and "prompt" in extension, f"clemhost extension: {extension}")

    stream = client.chat.completions.create(
        model="echo-1",
        messages=[{"role": "user", "content": "hi"}],
        stream=True,
    )
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    check(text == "GREET: Hello, welcome!", f"streamed: {text!r}")

    try:
        client.chat.completions.create(model="echo-3", messages=[{"role": "user", "content": "x"}])
        raise AssertionError("an unknown model was accepted")
    except openai.NotFoundError as e:
        check("echo-1" in str(e), f"NotFoundError names the closest models: {e}")

    try:
        client.chat.completions.create(model="echo-1", messages=[])
        raise AssertionError("an empty conversation was accepted")
    except openai.BadRequestError as e:
        check(e.status_code == 400, f"BadRequestError: {e}")

    key = os.environ["SERVE_KEY"]
    try:
        OpenAI(base_url=keyed_url, api_key=key + "x", max_retries=0).models.list()
        raise AssertionError("a wrong key was accepted")
    except openai.AuthenticationError as e:
        check(e.status_code == 401 and key not in str(e), f"AuthenticationError: {e}")
    keyed = OpenAI(base_url=keyed_url, api_key=key, max_retries=0)
    check([m.id for m in keyed.models.list()] == ["echo-1"], "the right key is accepted")

    print("openai client: all checks passed")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
