"""A stand-in for the model providers: a real HTTP server on 127.0.0.1 speaking the Anthropic
Messages API and the OpenAI Chat Completions, Completions and Responses APIs, streaming and
not, with the usage figures each really sends.

Each request may steer the answer with an ``x-fake`` header (the proxy forwards it), a
comma-separated list of:

``delay=S``           wait S seconds before answering
``gap=S``             wait S seconds between streamed events
``steady``            with ``gap``: event N is due S·N seconds after the first (a provider's
                      own pace), so a late wake-up of this process is not added to every
                      gap after it
``status=N``          answer status N with the provider's error body
``cut=N``             send N events (or N bytes of a JSON body) and drop the connection
``end=N``             send N events, then end the body cleanly (no final event)
``no_usage``          leave every usage figure out
``zero_start``        Anthropic: ``input_tokens: 0`` in message_start, the real figure later
``usage_in_last``     OpenAI chat: the last chunk carries choices *and* usage
``hold_usage=S``      wait S seconds before the usage-carrying event
``words=N``           how many words of text to generate (default 12)
``gzip``              compress a JSON body even though identity was asked for

Every request is remembered (method, path, headers, body) for tests to look at.
Usage figures are fixed per scenario (see ``USAGE``) so tests can assert exact values.
"""

from __future__ import annotations

import asyncio
import gzip as gzip_module
import json
import logging
import socket
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any

import uvicorn

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Send = Callable[[Message], Awaitable[None]]

#: What the fake reports: fresh input, cache reads, cache writes (of which 1h), output,
#: reasoning (OpenAI).
USAGE = {"input": 1200, "cache_read": 5000, "cache_write": 800, "cache_write_1h": 300,
         "output": 345, "reasoning": 45}


class Dropped(Exception):
    """Raised inside the app to make uvicorn drop the connection mid-response."""


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def _options(headers: dict[str, str]) -> dict[str, str]:
    options = {}
    for part in headers.get("x-fake", "").split(","):
        key, _, value = part.strip().partition("=")
        if key:
            options[key] = value
    return options


def words(n: int) -> list[str]:
    vocabulary = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta"]
    return [vocabulary[i % len(vocabulary)] + " " for i in range(n)]


class FakeUpstream:
    """The ASGI app. ``requests`` lists what it received, newest last; ``receiving``, the
    paths of requests whose body had begun to arrive (before it was whole); ``dropped``,
    those whose client left before the body was whole (not answered)."""

    def __init__(self) -> None:
        self.requests: list[Seen] = []
        self.receiving: list[str] = []
        self.dropped: list[str] = []
        self.lock = threading.Lock()

    async def __call__(self, scope: Scope, receive: Callable[[], Awaitable[Message]],
                       send: Send) -> None:
        if scope["type"] != "http":
            return
        parts: list[bytes] = []
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                with self.lock:
                    self.dropped.append(scope["path"])
                return
            parts.append(message.get("body", b""))
            if not message.get("more_body"):
                break
            if len(parts) == 1 and parts[0]:
                with self.lock:
                    self.receiving.append(scope["path"])
        body = b"".join(parts)
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        seen = Seen(scope["method"], scope["path"], headers, body)
        with self.lock:
            self.requests.append(seen)
        options = _options(headers)
        if "delay" in options:
            await asyncio.sleep(float(options["delay"]))
        path = scope["path"]
        if "status" in options:
            await self._error(send, path, int(options["status"]))
            return
        data = json.loads(body) if body else {}
        if path == "/v1/messages/count_tokens":
            await _json(send, 200, {"input_tokens": 42})
        elif path == "/v1/models":
            await _json(send, 200, {"object": "list",
                                    "data": [{"id": "gpt-4o", "object": "model"}]})
        elif path == "/v1/messages":
            await self._anthropic(send, data, options)
        elif path in ("/v1/chat/completions", "/v1/completions"):
            await self._openai_chat(send, data, options, legacy=path == "/v1/completions")
        elif path == "/v1/responses":
            await self._responses(send, data, options)
        else:
            await _json(send, 404, {"error": {"message": f"no {path}", "type": "not_found"}})

    async def _error(self, send: Send, path: str, status: int) -> None:
        if path.startswith("/v1/messages"):
            kind = {400: "invalid_request_error", 401: "authentication_error",
                    429: "rate_limit_error", 529: "overloaded_error"}.get(status, "api_error")
            body: dict[str, Any] = {"type": "error", "error": {"type": kind,
                                                               "message": f"fake {status}"}}
        else:
            body = {"error": {"message": f"fake {status}", "type": "server_error"
                              if status >= 500 else "invalid_request_error", "code": None}}
        await _json(send, status, body, extra=[(b"request-id", _rid().encode()),
                                               (b"x-request-id", _rid().encode())])

    # -- Anthropic ----------------------------------------------------------------------------

    def _anthropic_usage(self, options: dict[str, str]) -> dict[str, Any]:
        if "no_usage" in options:
            return {}
        return {"input_tokens": USAGE["input"], "output_tokens": USAGE["output"],
                "cache_read_input_tokens": USAGE["cache_read"],
                "cache_creation_input_tokens": USAGE["cache_write"],
                "cache_creation": {
                    "ephemeral_5m_input_tokens": USAGE["cache_write"] - USAGE["cache_write_1h"],
                    "ephemeral_1h_input_tokens": USAGE["cache_write_1h"]}}

    async def _anthropic(self, send: Send, data: dict[str, Any], options: dict[str, str]
                         ) -> None:
        model = data.get("model", "claude-sonnet-4-5")
        text = words(int(options.get("words", 12)))
        message_id = "msg_" + uuid.uuid4().hex
        usage = self._anthropic_usage(options)
        headers = [(b"request-id", _rid().encode()),
                   (b"anthropic-ratelimit-requests-limit", b"4000"),
                   (b"anthropic-ratelimit-requests-remaining", b"3999"),
                   (b"anthropic-ratelimit-requests-reset", b"2030-01-01T00:00:00Z"),
                   (b"anthropic-ratelimit-tokens-limit", b"400000"),
                   (b"anthropic-ratelimit-tokens-remaining", b"390000")]
        if not data.get("stream"):
            body = {"id": message_id, "type": "message", "role": "assistant", "model": model,
                    "content": [{"type": "text", "text": "".join(text)}],
                    "stop_reason": "end_turn", "stop_sequence": None}
            if usage:
                body["usage"] = usage
            await _json(send, 200, body, extra=headers, options=options)
            return
        start_usage = dict(usage)
        if usage:
            start_usage["output_tokens"] = 1
            if "zero_start" in options:
                start_usage["input_tokens"] = 0
        events: list[tuple[str, dict[str, Any]]] = [
            ("message_start", {"type": "message_start", "message": {
                "id": message_id, "type": "message", "role": "assistant", "model": model,
                "content": [], "stop_reason": None, "stop_sequence": None,
                **({"usage": start_usage} if usage else {})}}),
            ("content_block_start", {"type": "content_block_start", "index": 0,
                                     "content_block": {"type": "text", "text": ""}}),
            ("ping", {"type": "ping"}),
        ]
        events += [("content_block_delta", {"type": "content_block_delta", "index": 0,
                                            "delta": {"type": "text_delta", "text": w}})
                   for w in text]
        events.append(("content_block_stop", {"type": "content_block_stop", "index": 0}))
        delta_usage: dict[str, Any] = {}
        if usage:
            # Running totals: the final output figure, and (as some gateways do) input again.
            delta_usage = {"output_tokens": USAGE["output"]}
            if "zero_start" in options:
                delta_usage["input_tokens"] = USAGE["input"]
        events.append(("message_delta", {"type": "message_delta", "delta": {
            "stop_reason": "end_turn", "stop_sequence": None},
            **({"usage": delta_usage} if usage else {})}))
        events.append(("message_stop", {"type": "message_stop"}))
        frames = [(f"event: {name}\ndata: {json.dumps(payload)}\n\n".encode(),
                   name == "message_delta") for name, payload in events]
        await _stream(send, frames, headers, options)

    # -- OpenAI chat and completions ---------------------------------------------------------

    def _openai_usage(self, options: dict[str, str]) -> dict[str, Any] | None:
        if "no_usage" in options:
            return None
        prompt = USAGE["input"] + USAGE["cache_read"]
        return {"prompt_tokens": prompt, "completion_tokens": USAGE["output"],
                "total_tokens": prompt + USAGE["output"],
                "prompt_tokens_details": {"cached_tokens": USAGE["cache_read"]},
                "completion_tokens_details": {"reasoning_tokens": USAGE["reasoning"]}}

    async def _openai_chat(self, send: Send, data: dict[str, Any], options: dict[str, str],
                           *, legacy: bool) -> None:
        model = data.get("model", "gpt-4o")
        text = words(int(options.get("words", 12)))
        chunk_id = ("cmpl-" if legacy else "chatcmpl-") + uuid.uuid4().hex
        obj = "text_completion" if legacy else "chat.completion"
        usage = self._openai_usage(options)
        headers = [(b"x-request-id", _rid().encode()),
                   (b"x-ratelimit-limit-requests", b"10000"),
                   (b"x-ratelimit-remaining-requests", b"9999"),
                   (b"x-ratelimit-reset-requests", b"6ms"),
                   (b"x-ratelimit-limit-tokens", b"2000000"),
                   (b"x-ratelimit-remaining-tokens", b"1999000"),
                   (b"x-ratelimit-reset-tokens", b"1m30s")]
        if not data.get("stream"):
            choice: dict[str, Any] = (
                {"index": 0, "text": "".join(text), "finish_reason": "stop", "logprobs": None}
                if legacy else
                {"index": 0, "message": {"role": "assistant", "content": "".join(text)},
                 "finish_reason": "stop"})
            body = {"id": chunk_id, "object": obj, "created": int(time.time()),
                    "model": model, "choices": [choice]}
            if usage:
                body["usage"] = usage
            await _json(send, 200, body, extra=headers, options=options)
            return
        include = (data.get("stream_options") or {}).get("include_usage") is True
        base = {"id": chunk_id, "object": obj + ("" if legacy else ".chunk"),
                "created": int(time.time()), "model": model}

        def chunk(piece: str | None, finish: str | None = None) -> dict[str, Any]:
            if legacy:
                choice = {"index": 0, "text": piece or "", "finish_reason": finish,
                          "logprobs": None}
            else:
                delta = {"content": piece} if piece is not None else {}
                choice = {"index": 0, "delta": delta, "finish_reason": finish}
            return {**base, "choices": [choice]}

        payloads: list[tuple[dict[str, Any], bool]] = []
        if not legacy:
            payloads.append(({**base, "choices": [{"index": 0, "delta": {
                "role": "assistant", "content": ""}, "finish_reason": None}]}, False))
        payloads += [(chunk(w), False) for w in text]
        last = chunk(None, "stop")
        if include and usage and "usage_in_last" in options:
            payloads.append(({**last, "usage": usage}, True))
        else:
            payloads.append((last, False))
            if include and usage:
                payloads.append(({**base, "choices": [], "usage": usage}, True))
        frames = [(f"data: {json.dumps(p)}\n\n".encode(), carries) for p, carries in payloads]
        frames.append((b"data: [DONE]\n\n", False))
        await _stream(send, frames, headers, options)

    # -- OpenAI Responses ----------------------------------------------------------------------

    async def _responses(self, send: Send, data: dict[str, Any], options: dict[str, str]
                         ) -> None:
        model = data.get("model", "gpt-4o")
        text = words(int(options.get("words", 12)))
        response_id = "resp_" + uuid.uuid4().hex
        usage = None
        if "no_usage" not in options:
            prompt = USAGE["input"] + USAGE["cache_read"]
            usage = {"input_tokens": prompt,
                     "input_tokens_details": {"cached_tokens": USAGE["cache_read"]},
                     "output_tokens": USAGE["output"],
                     "output_tokens_details": {"reasoning_tokens": USAGE["reasoning"]},
                     "total_tokens": prompt + USAGE["output"]}
        message = {"id": "msg_" + uuid.uuid4().hex, "type": "message", "status": "completed",
                   "role": "assistant", "content": [
                       {"type": "output_text", "text": "".join(text), "annotations": []}]}
        response = {"id": response_id, "object": "response", "created_at": int(time.time()),
                    "status": "completed", "model": model, "output": [message],
                    "parallel_tool_calls": True, "tool_choice": "auto", "tools": [],
                    "usage": usage}
        headers = [(b"x-request-id", _rid().encode())]
        if not data.get("stream"):
            await _json(send, 200, response, extra=headers, options=options)
            return
        in_progress = {**response, "status": "in_progress", "output": [], "usage": None}
        events: list[tuple[str, dict[str, Any], bool]] = [
            ("response.created", {"type": "response.created", "sequence_number": 0,
                                  "response": in_progress}, False)]
        seq = 1
        for w in text:
            events.append(("response.output_text.delta", {
                "type": "response.output_text.delta", "sequence_number": seq,
                "item_id": message["id"], "output_index": 0, "content_index": 0, "delta": w,
                "logprobs": []}, False))
            seq += 1
        events.append(("response.completed", {"type": "response.completed",
                                              "sequence_number": seq, "response": response},
                       True))
        frames = [(f"event: {n}\ndata: {json.dumps(p)}\n\n".encode(), c) for n, p, c in events]
        await _stream(send, frames, headers, options)


def _rid() -> str:
    return "req_" + uuid.uuid4().hex


async def _json(send: Send, status: int, payload: Any, *, extra: list[tuple[bytes, bytes]]
                | None = None, options: dict[str, str] | None = None) -> None:
    options = options or {}
    body = json.dumps(payload).encode()
    headers = [(b"content-type", b"application/json"), *(extra or [])]
    if "gzip" in options:
        body = gzip_module.compress(body)
        headers.append((b"content-encoding", b"gzip"))
    headers.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    if "cut" in options:
        await send({"type": "http.response.body", "body": body[:int(options["cut"])],
                    "more_body": True})
        raise Dropped("cut")
    await send({"type": "http.response.body", "body": body, "more_body": False})


async def _stream(send: Send, frames: list[tuple[bytes, bool]],
                  headers: list[tuple[bytes, bytes]], options: dict[str, str]) -> None:
    """Send SSE frames; ``carries`` marks the frame that holds the usage."""
    await send({"type": "http.response.start", "status": 200, "headers": [
        (b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache"), *headers]})
    gap = float(options.get("gap", 0))
    cut = int(options["cut"]) if "cut" in options else None
    end = int(options["end"]) if "end" in options else None
    loop = asyncio.get_running_loop()
    due = loop.time()  # ``steady``: when the next event is due
    for index, (frame, carries) in enumerate(frames):
        if cut is not None and index >= cut:
            raise Dropped("cut")
        if end is not None and index >= end:
            break
        if carries and "hold_usage" in options:
            await asyncio.sleep(float(options["hold_usage"]))
            due = loop.time()
        elif gap and index and "steady" in options:
            due += gap
            await asyncio.sleep(max(0.0, due - loop.time()))
        elif gap and index:
            await asyncio.sleep(gap)
        await send({"type": "http.response.body", "body": frame, "more_body": True})
    await send({"type": "http.response.body", "body": b"", "more_body": False})


class _Quiet(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], Dropped))


class _ThreadServer(uvicorn.Server):
    def install_signal_handlers(self) -> None:  # older uvicorn
        pass


def start(port: int = 0) -> tuple[FakeUpstream, str, Callable[[], None]]:
    """Run a fake upstream in a thread; return it, its origin URL, and a stop function."""
    app = FakeUpstream()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(256)
    logging.getLogger("uvicorn.error").addFilter(_Quiet())
    config = uvicorn.Config(app, lifespan="off", access_log=False, log_level="warning",
                            ws="none", timeout_graceful_shutdown=1)
    server = _ThreadServer(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.01)

    def stop() -> None:
        server.should_exit = True
        thread.join(5)

    return app, f"http://127.0.0.1:{sock.getsockname()[1]}", stop


if __name__ == "__main__":  # a stand-alone fake for the benchmark and manual tries
    import sys

    _, origin, _stop = start(int(sys.argv[1]) if len(sys.argv) > 1 else 0)
    print(origin, flush=True)
    threading.Event().wait()
