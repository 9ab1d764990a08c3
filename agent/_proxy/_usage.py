"""Usage, read from every shape of response the providers send: pure and incremental.

Each meter is fed the response body as it arrives (``feed``), then told it ended
(``finish``); it keeps a ``Tally`` of what the provider reported. Streams are split into
server-sent events by ``SSESplitter``; a meter sees every event, and answers whether the
event must be held back (the stream's last event, released only once the call is stored)
or dropped (the usage-only chunk the proxy asked OpenAI for on the client's behalf).

Token convention (the event model's): ``input_tokens`` is fresh input, cache reads and
writes are apart from it, ``reasoning_tokens`` is inside ``output_tokens``.

What the providers send (see NOTES.md):

* Anthropic JSON: ``usage.{input_tokens, output_tokens, cache_creation_input_tokens,
  cache_read_input_tokens, cache_creation.ephemeral_1h_input_tokens}``.
* Anthropic SSE: ``message_start.message.usage`` then ``message_delta.usage`` with running
  totals, so a later figure REPLACES an earlier one; a zero never replaces a figure already
  known (some gateways send ``input_tokens: 0`` at the start or the end).
* OpenAI Chat and Completions: ``usage.{prompt_tokens, completion_tokens,
  prompt_tokens_details.cached_tokens, completion_tokens_details.reasoning_tokens}``; in a
  stream only with ``stream_options.include_usage``, in a last chunk with ``choices: []`` (a
  final chunk carrying both choices and usage is kept whole).
* OpenAI Responses: ``usage.{input_tokens, input_tokens_details.cached_tokens,
  output_tokens, output_tokens_details.reasoning_tokens}``; in a stream inside the
  ``response.completed`` (or ``.incomplete`` / ``.failed``) event.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import msgspec

from agent._proxy._sse import Event, SSESplitter

Api = Literal["anthropic", "openai-chat", "openai-completions", "openai-responses"]

#: A JSON body larger than this is forwarded but not parsed (no real response is this big).
MAX_PARSED_BODY = 64 * 2**20

_decode = msgspec.json.Decoder().decode


@dataclass
class Tally:
    """What a response said about its own usage, and how far it got."""

    input_tokens: int | None = None
    output_tokens: int | None = None
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    cache_write_1h_tokens: int = 0
    reasoning_tokens: int = 0
    model: str | None = None
    response_id: str | None = None
    #: The provider said the response is whole: a full JSON body, or the stream's last event.
    complete: bool = False
    #: The provider reported an error inside a successful HTTP response (a stream ``error``
    #: event, ``response.failed``).
    error: bool = False
    #: Characters of generated text and tool arguments seen: the basis of an estimate when a
    #: stream is cut before its usage arrives.
    output_chars: int = 0
    body_bytes: int = 0

    @property
    def reported(self) -> bool:
        return self.input_tokens is not None and self.output_tokens is not None


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 \
        else None


def _set(tally: Tally, field: str, value: Any) -> None:
    """A running total replaces what was known, except that a zero never replaces a figure."""
    number = _int(value)
    if number is None:
        return
    current = getattr(tally, field)
    if number == 0 and current:
        return
    setattr(tally, field, number)


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def apply_anthropic_usage(tally: Tally, usage: Any) -> None:
    usage = _dict(usage)
    _set(tally, "input_tokens", usage.get("input_tokens"))
    _set(tally, "output_tokens", usage.get("output_tokens"))
    _set(tally, "cache_read_tokens", usage.get("cache_read_input_tokens"))
    _set(tally, "cache_write_tokens", usage.get("cache_creation_input_tokens"))
    creation = _dict(usage.get("cache_creation"))
    _set(tally, "cache_write_1h_tokens", creation.get("ephemeral_1h_input_tokens"))
    if tally.cache_write_tokens == 0 and creation:
        # Only the breakdown was sent: the writes are its sum.
        total = sum(_int(v) or 0 for v in creation.values())
        _set(tally, "cache_write_tokens", total)


def apply_openai_usage(tally: Tally, usage: Any) -> None:
    """Chat/Completions (``prompt_tokens``) and Responses (``input_tokens``) alike; OpenAI's
    input includes the cached part, ours does not."""
    usage = _dict(usage)
    if not usage:
        return
    if "prompt_tokens" in usage:
        prompt, output = _int(usage.get("prompt_tokens")), _int(usage.get("completion_tokens"))
        in_details = _dict(usage.get("prompt_tokens_details"))
        out_details = _dict(usage.get("completion_tokens_details"))
    else:
        prompt, output = _int(usage.get("input_tokens")), _int(usage.get("output_tokens"))
        in_details = _dict(usage.get("input_tokens_details"))
        out_details = _dict(usage.get("output_tokens_details"))
    cached = _int(in_details.get("cached_tokens")) or 0
    if prompt is not None:
        cached = min(cached, prompt)
        tally.input_tokens = prompt - cached
        tally.cache_read_tokens = cached
    if output is not None:
        tally.output_tokens = output
        reasoning = _int(out_details.get("reasoning_tokens")) or 0
        tally.reasoning_tokens = min(reasoning, output)


# -- streams --------------------------------------------------------------------------------

class Verdict:
    """What to do with one event of a stream."""

    FORWARD = 0
    HOLD = 1  # the stream's last event: sent only after the call is stored
    DROP = 2  # the usage-only chunk the client never asked for


class StreamMeter:
    """Base of the SSE meters: split, judge each event, keep the tally."""

    def __init__(self) -> None:
        self.tally = Tally()
        self._splitter = SSESplitter()
        self._held: list[bytes] = []

    def feed(self, chunk: bytes) -> bytes:
        """Take bytes from upstream; return the bytes to forward to the client now."""
        self.tally.body_bytes += len(chunk)
        return self._judge(self._splitter.feed(chunk))

    def finish(self) -> bytes:
        """The stream ended: return everything still to forward (held events included)."""
        events, rest = self._splitter.finish()
        out = self._judge(events)
        return out + b"".join(self._held) + rest

    def _judge(self, events: list[Event]) -> bytes:
        out = []
        for event in events:
            verdict = self.event(event)
            if verdict == Verdict.DROP:
                continue
            if verdict == Verdict.HOLD or self._held:
                self._held.append(event.raw)  # nothing overtakes a held event
            else:
                out.append(event.raw)
        return b"".join(out)

    def event(self, event: Event) -> int:
        raise NotImplementedError


class AnthropicStream(StreamMeter):
    def event(self, event: Event) -> int:
        kind = event.name
        if not event.data:
            return Verdict.FORWARD
        if kind == "content_block_delta":
            delta = _dict(_loads(event.data).get("delta"))
            for key in ("text", "partial_json", "thinking"):
                value = delta.get(key)
                if isinstance(value, str):
                    self.tally.output_chars += len(value)
            return Verdict.FORWARD
        if kind in ("ping", "content_block_start", "content_block_stop"):
            return Verdict.FORWARD
        data = _loads(event.data)
        kind = kind or str(data.get("type", ""))
        if kind == "message_start":
            message = _dict(data.get("message"))
            self.tally.response_id = _str(message.get("id")) or self.tally.response_id
            self.tally.model = _str(message.get("model")) or self.tally.model
            apply_anthropic_usage(self.tally, message.get("usage"))
        elif kind == "message_delta":
            apply_anthropic_usage(self.tally, data.get("usage"))
        elif kind == "message_stop":
            self.tally.complete = True
            return Verdict.HOLD
        elif kind == "error":
            self.tally.error = True
        return Verdict.FORWARD


class OpenAIChatStream(StreamMeter):
    """Chat Completions and legacy Completions streams (``data: {...}`` … ``data: [DONE]``)."""

    def __init__(self, *, strip_usage_chunk: bool) -> None:
        super().__init__()
        self.strip_usage_chunk = strip_usage_chunk

    def event(self, event: Event) -> int:
        data = event.data
        if not data:
            return Verdict.FORWARD
        if data == "[DONE]" or (len(data) < 32 and data.strip() == "[DONE]"):
            self.tally.complete = True
            return Verdict.HOLD
        chunk = _loads(data)
        if not chunk:
            return Verdict.FORWARD
        self.tally.response_id = self.tally.response_id or _str(chunk.get("id"))
        self.tally.model = self.tally.model or _str(chunk.get("model"))
        if "error" in chunk and "choices" not in chunk:
            self.tally.error = True
        choices = chunk.get("choices")
        if isinstance(choices, list):
            for choice in choices:
                self.tally.output_chars += _choice_chars(_dict(choice))
        usage = chunk.get("usage")
        if isinstance(usage, dict):
            apply_openai_usage(self.tally, usage)
            if self.strip_usage_chunk and choices == []:
                return Verdict.DROP
        return Verdict.FORWARD


def _choice_chars(choice: dict[str, Any]) -> int:
    count = 0
    text = choice.get("text")  # legacy completions
    if isinstance(text, str):
        count += len(text)
    delta = _dict(choice.get("delta"))
    for key in ("content", "reasoning_content", "reasoning", "refusal"):
        value = delta.get(key)
        if isinstance(value, str):
            count += len(value)
    calls = delta.get("tool_calls")
    if isinstance(calls, list):
        for call in calls:
            arguments = _dict(_dict(call).get("function")).get("arguments")
            if isinstance(arguments, str):
                count += len(arguments)
    return count


_RESPONSES_FINAL = {"response.completed", "response.incomplete", "response.failed"}


class OpenAIResponsesStream(StreamMeter):
    def event(self, event: Event) -> int:
        if not event.data:
            return Verdict.FORWARD
        kind = event.name
        if kind.endswith(".delta"):
            delta = _loads(event.data).get("delta")
            if isinstance(delta, str):
                self.tally.output_chars += len(delta)
            return Verdict.FORWARD
        data = _loads(event.data)
        kind = kind or str(data.get("type", ""))
        response = _dict(data.get("response"))
        if response:
            self.tally.response_id = _str(response.get("id")) or self.tally.response_id
            self.tally.model = _str(response.get("model")) or self.tally.model
        if kind in _RESPONSES_FINAL:
            apply_openai_usage(self.tally, response.get("usage"))
            self.tally.complete = True
            self.tally.error = kind == "response.failed"
            return Verdict.HOLD
        if kind == "error":
            self.tally.error = True
        return Verdict.FORWARD


# -- whole bodies ---------------------------------------------------------------------------

class JSONMeter:
    """A non-streaming response: forwarded one chunk behind, so that the last chunk is sent
    only after the call is stored; parsed whole at the end."""

    def __init__(self, api: Api) -> None:
        self.api = api
        self.tally = Tally()
        self._parts: list[bytes] = []
        self._pending = b""

    def feed(self, chunk: bytes) -> bytes:
        self.tally.body_bytes += len(chunk)
        if self.tally.body_bytes <= MAX_PARSED_BODY:
            self._parts.append(chunk)
        out, self._pending = self._pending, chunk
        return out

    def finish(self) -> bytes:
        if self.tally.body_bytes <= MAX_PARSED_BODY:
            parse_body(self.api, b"".join(self._parts), self.tally)
        self._parts = []
        out, self._pending = self._pending, b""
        return out


def parse_body(api: Api, body: bytes, tally: Tally) -> None:
    """Read usage, id and model from a whole JSON response (or an error body)."""
    data = _loads(body)
    if not data:
        return
    if api == "anthropic":
        apply_anthropic_usage(tally, data.get("usage"))
        tally.error = data.get("type") == "error"
    else:
        apply_openai_usage(tally, data.get("usage"))
        tally.error = "error" in data and data.get("error") is not None
        if api == "openai-responses" and data.get("status") == "failed":
            tally.error = True
        for choice in data.get("choices") or []:
            message = _dict(_dict(choice).get("message"))
            content = message.get("content")
            tally.output_chars += len(content) if isinstance(content, str) else 0
            text = _dict(choice).get("text")
            tally.output_chars += len(text) if isinstance(text, str) else 0
    tally.response_id = _str(data.get("id"))
    tally.model = _str(data.get("model"))
    tally.complete = True  # the whole body arrived and parsed


Meter = StreamMeter | JSONMeter


def meter_for(api: Api, *, streaming: bool, strip_usage_chunk: bool = False) -> Meter:
    """The meter for a response of ``api``: SSE when the upstream answered with a stream."""
    if not streaming:
        return JSONMeter(api)
    if api == "anthropic":
        return AnthropicStream()
    if api == "openai-responses":
        return OpenAIResponsesStream()
    return OpenAIChatStream(strip_usage_chunk=strip_usage_chunk)


def _loads(text: str | bytes) -> dict[str, Any]:
    try:
        value = _decode(text)
    except (msgspec.DecodeError, UnicodeDecodeError):
        return {}
    return value if isinstance(value, dict) else {}


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None
