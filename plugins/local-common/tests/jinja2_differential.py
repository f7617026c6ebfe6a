#!/usr/bin/env python3
"""Differential check: `clemhost template render` against jinja2 set up as
transformers sets it up, over the corpus templates and conversations that
cases.json does not have.

Needs Python 3 with jinja2 (transformers pins 3.1.x) and a built clemhost:

    python3 plugins/local-common/tests/jinja2_differential.py \
        --clemhost target/debug/clemhost [--tools] [--shared ../shared]

Prints the first differences and a closing "N passed, N failed" line; exits 1
when any rendering differs. With --tools, a tool schema is passed as `tools`
(through `--kwargs`) and a conversation with a tool call is added.
"""

import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile

import jinja2
from jinja2.ext import loopcontrols
from jinja2.sandbox import ImmutableSandboxedEnvironment

NOW = datetime.datetime(2025, 3, 14, 9, 26, 53)


def transformers_env():
    """The environment transformers' render_jinja_template compiles with."""

    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(
            x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys
        )

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = NOW.strftime
    return env


def user(c):
    return {"role": "user", "content": c}


def assistant(c):
    return {"role": "assistant", "content": c}


def system(c):
    return {"role": "system", "content": c}


CONVERSATIONS = {
    "jinja_text": [user("Show {{ messages }} and {% if x %}y{% endif %} literally")],
    "eos_inside": [user("hi"), assistant("sure</s><|im_end|><|eot_id|><end_of_turn>"), user("again")],
    "quotes_backslash": [user("He said \"hi\" and 'bye' \\n \\\\ path C:\\temp")],
    "unicode": [system("Sei kurz. 日本語"), user("héllo 😀 — ñ"), assistant("ok ✓"), user("ß")],
    "whitespace": [user("  lead and trail  \n\n"), assistant("\n answer \n"), user("\tq\t")],
    "empty_content": [user(""), assistant(""), user("x")],
    "user_user": [user("first"), user("second")],
    "assistant_first": [assistant("I start"), user("ok")],
    "system_only": [system("only system")],
    "long": [system("sys"), user("u1"), assistant("a1"), user("u2"), assistant("a2"), user("u3"), assistant("a3"), user("u4")],
    "extra_keys": [{"role": "user", "content": "hi", "name": "bob"}, {"role": "assistant", "content": "yo", "name": None}],
    "reasoning": [user("q"), assistant("<think>\nhmm\n</think>\n\nanswer"), user("q2")],
}

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Weather <now> & 'later' — ok?",
            "parameters": {
                "type": "object",
                "properties": {
                    "city": {"type": "string", "description": "City, e.g. \"Paris\"\n"},
                    "days": {"type": "integer", "default": 3, "minimum": 0.5, "maximum": 1e20},
                    "metric": {"type": "boolean", "default": True},
                    "opt": {"type": ["string", "null"], "default": None},
                },
                "required": ["city"],
            },
        },
    }
]

TOOL_CALL = [
    user("weather?"),
    {
        "role": "assistant",
        "content": "",
        "tool_calls": [{"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris", "days": 2}}}],
    },
    {"role": "tool", "content": "{\"t\": 21.5}"},
    user("thanks"),
]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clemhost", required=True, help="the clemhost binary")
    ap.add_argument("--shared", default=os.environ.get("CLEMHOST_SHARED", "../shared"))
    ap.add_argument("--tools", action="store_true", help="pass a tool schema as `tools`")
    args = ap.parse_args()

    corpus = os.path.join(args.shared, "chat-templates")
    special = json.load(open(os.path.join(corpus, "special_tokens.json"), encoding="utf-8"))
    conversations = dict(CONVERSATIONS)
    if args.tools:
        conversations["tool_call"] = TOOL_CALL
    env = transformers_env()
    tmp = tempfile.mkdtemp()
    kwargs_file = os.path.join(tmp, "kwargs.json")
    json.dump({"tools": TOOLS}, open(kwargs_file, "w", encoding="utf-8"))

    passed = failed = 0
    for name in sorted(os.listdir(os.path.join(corpus, "templates"))):
        path = os.path.join(corpus, "templates", name)
        template = env.from_string(open(path, encoding="utf-8").read())
        tokens = {k: v for k, v in special.get(name, {}).items() if k in ("bos_token", "eos_token") and v is not None}
        for conv_name, messages in conversations.items():
            # transformers drops keys whose value is None before rendering.
            normalized = [{k: v for k, v in m.items() if v is not None} for m in messages]
            messages_file = os.path.join(tmp, "messages.json")
            json.dump(messages, open(messages_file, "w", encoding="utf-8"))
            for generation_prompt in (True, False):
                variables = dict(
                    messages=normalized,
                    tools=TOOLS if args.tools else None,
                    documents=None,
                    add_generation_prompt=generation_prompt,
                    **tokens,
                )
                try:
                    want = ("ok", template.render(**variables))
                except jinja2.exceptions.TemplateError as e:
                    raised = type(e) is jinja2.exceptions.TemplateError
                    want = ("raised" if raised else "error", str(e))
                except Exception as e:  # TypeError and friends inside jinja2
                    want = ("error", str(e))

                cmd = [args.clemhost, "--quiet", "template", "render", "--template", path,
                       "--messages", messages_file, "--now", NOW.isoformat()]
                if args.tools:
                    cmd += ["--kwargs", kwargs_file]
                if not generation_prompt:
                    cmd.append("--no-generation-prompt")
                cmd += [f"--{k.replace('_', '-')}={v}" for k, v in tokens.items()]
                run = subprocess.run(cmd, capture_output=True)
                out, err = run.stdout.decode(), run.stderr.decode()
                if run.returncode == 0:
                    ok = want == ("ok", out)
                elif run.returncode == 3:
                    # raise_exception: the same message; engine errors: any error.
                    ok = want == ("raised", err.removesuffix("\n")) or want[0] == "error"
                else:
                    ok = False
                if ok:
                    passed += 1
                    continue
                failed += 1
                if failed <= 5:
                    a, b = want[1], out or err
                    i = next((k for k in range(min(len(a), len(b))) if a[k] != b[k]), min(len(a), len(b)))
                    print(f"{name} / {conv_name} / add_generation_prompt={generation_prompt}: "
                          f"first difference at {i}\n  jinja2   {a[max(0, i - 60):i + 80]!r}\n"
                          f"  clemhost {b[max(0, i - 60):i + 80]!r} (exit {run.returncode})")
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
