"""A stand-in for a remote OpenAI-compatible judge, for the SLURM test: it answers chat
completions with a logprob distribution over scores (deterministic per prompt), and
records the address every request came from. Served on the test cluster's
`remote_address`, which only the serial node's jobs reach: the workflow passes when
every judging request leaves from the serial partition, and a judging job placed on the
GPU node finds no route to it."""

from __future__ import annotations

import hashlib
import json
import math
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MODEL = "remote-judge"
API_KEY = "test-key"


def completion(prompt: str) -> dict:
    """A chat completion whose first token puts 0.9 on one score and 0.1 on another."""
    digest = int(hashlib.sha256(prompt.encode()).hexdigest(), 16)
    first, second = digest % 101, (digest // 101) % 101
    top = [
        {"token": str(first), "logprob": math.log(0.9), "bytes": None},
        {"token": str(second) if second != first else "x", "logprob": math.log(0.1), "bytes": None},
    ]
    return {
        "id": f"chatcmpl-{digest % 10**12}",
        "object": "chat.completion",
        "created": 0,
        "model": MODEL,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": str(first)},
                "logprobs": {"content": [{"token": str(first), "logprob": math.log(0.9), "bytes": None, "top_logprobs": top}]},
                "finish_reason": "length",
            }
        ],
        "usage": {"prompt_tokens": len(prompt.split()), "completion_tokens": 1, "total_tokens": len(prompt.split()) + 1},
    }


class RemoteJudge:
    """`start()` serves on (host, port 0); `requests_from` counts requests per client
    address; `stop()` ends it."""

    def __init__(self, host: str) -> None:
        self.host = host
        self.requests_from: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    @property
    def base_url(self) -> str:
        assert self._server is not None
        return f"http://{self.host}:{self._server.server_address[1]}/v1"

    def start(self) -> str:
        judge = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # quiet
                pass

            def _send(self, status: int, payload: dict) -> None:
                body = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                self._send(200, {"object": "list", "data": [{"id": MODEL, "object": "model"}]})

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with judge._lock:
                    judge.requests_from[self.client_address[0]] += 1
                if self.headers.get("Authorization") != f"Bearer {API_KEY}":
                    self._send(401, {"error": {"message": "bad key"}})
                    return
                messages = json.loads(body)["messages"]
                self._send(200, completion(messages[-1]["content"]))

        self._server = ThreadingHTTPServer((self.host, 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self.base_url

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
