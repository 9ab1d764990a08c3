"""A stand-in for the model providers: a real HTTP server on 127.0.0.1 speaking their APIs.

* OpenAI: ``POST /v1/chat/completions`` and ``/v1/completions`` (base URL ``{url}/v1``)
* Anthropic: ``POST /v1/messages`` (base URL ``{url}``)
* Ollama: ``POST /api/generate`` and ``/api/chat`` (base URL ``{url}``)

Replies are scripted per request (``Upstream.script``), with controllable text, usage,
status, delay, and a gate that holds the answer until the test opens it. Every request
is kept (path, headers, JSON body) for assertions.

Also runnable on its own (``python tests/lsp/upstream.py``) for the benchmark: it prints
its port and serves until killed.
"""

from __future__ import annotations

import json
import socket
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Reply:
    """How the next request is answered."""

    text: str = "return 42"
    input_tokens: int = 50
    output_tokens: int = 7
    cached_tokens: int = 0
    usage: bool = True
    """False: the response carries no usage at all."""
    status: int = 200
    delay: float = 0.0
    gate: threading.Event | None = None
    """When set, the answer waits until the test sets this event."""
    raw: bytes | None = None
    """Exactly these bytes as the body (e.g. something that is not JSON)."""


@dataclass
class Request:
    path: str
    headers: dict[str, str]
    body: Any


@dataclass
class Upstream:
    replies: deque[Reply] = field(default_factory=deque)
    default: Reply = field(default_factory=Reply)
    requests: list[Request] = field(default_factory=list)
    answered: int = 0
    _received: threading.Condition = field(default_factory=threading.Condition)
    _server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def script(self, *replies: Reply) -> None:
        self.replies.extend(replies)

    def wait_for_requests(self, count: int, timeout: float = 10.0) -> bool:
        """Block (a thread) until ``count`` requests have arrived."""
        with self._received:
            return self._received.wait_for(lambda: len(self.requests) >= count, timeout)

    def start(self) -> Upstream:
        upstream = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                super().setup()
                # Headers and body go out in two writes: without this, Nagle and delayed
                # ACKs add ~40 ms to every answer.
                self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", 0))
                data = self.rfile.read(length)
                try:
                    body = json.loads(data)
                except ValueError:
                    body = None
                reply = upstream.replies.popleft() if upstream.replies else upstream.default
                with upstream._received:
                    upstream.requests.append(Request(
                        self.path, {k.lower(): v for k, v in self.headers.items()}, body))
                    upstream._received.notify_all()
                if reply.gate is not None:
                    reply.gate.wait(30)
                if reply.delay:
                    time.sleep(reply.delay)
                status, headers, payload = answer(self.path, body, reply,
                                                  len(upstream.requests))
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("content-length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
                upstream.answered += 1

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()


def answer(path: str, body: Any, reply: Reply, serial: int
           ) -> tuple[int, dict[str, str], bytes]:
    """Status, headers and body as the provider behind ``path`` would send them."""
    model = body.get("model", "unknown") if isinstance(body, dict) else "unknown"
    headers = {"content-type": "application/json"}
    if path.startswith("/v1/messages"):
        headers["request-id"] = f"req_{serial:06d}"
        if reply.status >= 400:
            payload: dict[str, Any] = {"type": "error", "error": {
                "type": "api_error", "message": "Internal server error"}}
        else:
            payload = {"id": f"msg_{serial:06d}", "type": "message", "role": "assistant",
                       "model": model, "content": [{"type": "text", "text": reply.text}],
                       "stop_reason": "end_turn"}
            if reply.usage:
                payload["usage"] = {"input_tokens": reply.input_tokens,
                                    "output_tokens": reply.output_tokens,
                                    "cache_read_input_tokens": reply.cached_tokens,
                                    "cache_creation_input_tokens": 0}
    elif path.startswith("/api/"):
        if reply.status >= 400:
            payload = {"error": "model runner has unexpectedly stopped"}
        else:
            payload = {"model": model, "done": True}
            if path.startswith("/api/chat"):
                payload["message"] = {"role": "assistant", "content": reply.text}
            else:
                payload["response"] = reply.text
            if reply.usage:
                payload["prompt_eval_count"] = reply.input_tokens
                payload["eval_count"] = reply.output_tokens
    else:
        headers["x-request-id"] = f"req-{serial:06d}"
        if reply.status >= 400:
            payload = {"error": {"message": "The server had an error while processing "
                                            "your request.", "type": "server_error"}}
        else:
            choice: dict[str, Any] = {"index": 0, "finish_reason": "stop"}
            if path.startswith("/v1/chat/completions"):
                choice["message"] = {"role": "assistant", "content": reply.text}
            else:
                choice["text"] = reply.text
            payload = {"id": f"chatcmpl-{serial:06d}", "object": "chat.completion",
                       "model": model, "choices": [choice]}
            if reply.usage:
                payload["usage"] = {
                    "prompt_tokens": reply.input_tokens + reply.cached_tokens,
                    "completion_tokens": reply.output_tokens,
                    "total_tokens": reply.input_tokens + reply.cached_tokens
                    + reply.output_tokens,
                    "prompt_tokens_details": {"cached_tokens": reply.cached_tokens}}
    data = reply.raw if reply.raw is not None else json.dumps(payload).encode()
    return reply.status, headers, data


if __name__ == "__main__":
    server = Upstream().start()
    print(server.url.rsplit(":", 1)[1], flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        sys.exit(0)
