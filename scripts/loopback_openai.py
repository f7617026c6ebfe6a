#!/usr/bin/env python3
"""A deterministic OpenAI-compatible chat server on 127.0.0.1, for differential tests.

The answer is a function of the conversation alone (a SHA-256 of the
messages picks among answers shaped for clembench's text games), so two
harnesses that send the same conversations get the same answers. Standard
library only; prints the port it listens on as its first line.

    python3 scripts/loopback_openai.py [--port 0] [--latency-ms 0] [--max-seconds 900]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Dict, List

WORDS = ["winter", "season", "apple", "house", "cold", "crane", "slate", "world", "green", "river"]


def answer(messages: List[Dict[str, Any]]) -> str:
    digest = hashlib.sha256(json.dumps(messages, sort_keys=True).encode("utf-8")).digest()
    word = WORDS[digest[0] % len(WORDS)]
    last = str(messages[-1].get("content", "")) if messages else ""
    if "CLUE:" in last and "GUESS:" not in last.split("CLUE:")[0][-200:]:
        return f"CLUE: something like {word}"
    if "GUESS:" in last:
        return f"GUESS: {word}"
    if "guess:" in last.lower():
        five = [w for w in WORDS if len(w) == 5]
        return f"guess: {five[digest[1] % len(five)]}\nexplanation: picked by hash"
    return ["Answer: first", "Answer: second", word][digest[2] % 3]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--latency-ms", type=float, default=0.0)
    p.add_argument("--max-seconds", type=float, default=900.0)
    args = p.parse_args()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *_: Any) -> None:
            pass

        def _send(self, code: int, obj: Dict[str, Any]) -> None:
            body = json.dumps(obj).encode("utf-8")
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            self._send(200, {"object": "list", "data": [{"id": "loopback", "object": "model"}]})

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            request = json.loads(self.rfile.read(length) or b"{}")
            if args.latency_ms:
                time.sleep(args.latency_ms / 1000)
            text = answer(request.get("messages", []))
            self._send(200, {
                "id": "chatcmpl-loopback", "object": "chat.completion", "created": 0,
                "model": request.get("model", "loopback"),
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
            })

    class Server(ThreadingHTTPServer):
        daemon_threads = True

        def server_bind(self) -> None:
            import socket

            self.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            super().server_bind()

    server = Server(("127.0.0.1", args.port), Handler)
    print(server.server_address[1], flush=True)
    threading.Timer(args.max_seconds, server.shutdown).start()
    server.serve_forever()


if __name__ == "__main__":
    main()
