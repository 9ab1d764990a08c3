"""What the proxy needs to know about a request before forwarding it, and the one change it
makes to a body: asking OpenAI for streamed usage the client did not ask for.

Pure functions on bytes; the request body is otherwise forwarded exactly as it came.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgspec

from agent._estimate import estimate_tokens
from agent._proxy._usage import Api

#: Output a call may produce when the request sets no limit: enough to hold a budget's
#: estimate at a typical long answer, not the model's maximum.
DEFAULT_MAX_OUTPUT = 4096

_decode = msgspec.json.Decoder().decode
_encode = msgspec.json.Encoder().encode


class _Fields(msgspec.Struct):
    """The only fields of a request body the proxy reads. Decoding into this skips the
    rest (the messages: most of a 200 KB Claude Code request) without making Python objects
    of it: 0.23 instead of 0.40 ms for 240 KB."""

    model: Any = None
    stream: Any = None
    max_tokens: Any = None
    max_completion_tokens: Any = None
    max_output_tokens: Any = None
    stream_options: Any = msgspec.UNSET


_decode_fields = msgspec.json.Decoder(_Fields).decode
_LIMITS = ("max_tokens", "max_completion_tokens", "max_output_tokens")


@dataclass(frozen=True)
class RequestInfo:
    """The parts of a request body that metering needs."""

    model: str
    stream: bool
    max_output: int
    input_estimate: int
    #: The client asked for streamed usage itself (so the usage chunk is theirs to see).
    wants_stream_usage: bool
    valid_json: bool
    #: The body has a ``stream_options`` key (whatever its value).
    has_stream_options: bool = False


def read_request(api: Api, body: bytes) -> RequestInfo:
    """Model, streaming, output limit and an input estimate from a request body."""
    try:
        data = _decode_fields(body)
    except (msgspec.DecodeError, UnicodeDecodeError):  # (not JSON, or not an object)
        return RequestInfo("unknown", False, DEFAULT_MAX_OUTPUT, estimate_tokens(body),
                           False, valid_json=False)
    model = data.model
    limit: Any = None
    for key in _LIMITS:
        if type(getattr(data, key)) is int:  # (not a bool)
            limit = getattr(data, key)
            break
    options = data.stream_options
    wants_usage = isinstance(options, dict) and options.get("include_usage") is True
    return RequestInfo(
        model=model if isinstance(model, str) and model else "unknown",
        stream=data.stream is True,
        max_output=limit if isinstance(limit, int) and limit > 0 else DEFAULT_MAX_OUTPUT,
        input_estimate=estimate_tokens(body),
        wants_stream_usage=wants_usage,
        valid_json=True,
        has_stream_options=options is not msgspec.UNSET,
    )


#: The APIs whose streams report usage only when asked.
INJECTABLE: frozenset[Api] = frozenset({"openai-chat", "openai-completions"})


def needs_usage_injection(api: Api, info: RequestInfo) -> bool:
    """OpenAI streams report usage only when asked: ask on the client's behalf."""
    return (api in INJECTABLE and info.stream
            and not info.wants_stream_usage)


def inject_stream_usage(body: bytes, info: RequestInfo | None = None) -> bytes:
    """The body with ``stream_options.include_usage`` set to true, other fields untouched.

    Without a ``stream_options`` key the new key is spliced in after the opening brace, so
    the rest of the body goes upstream byte for byte; otherwise the object is re-encoded.
    ``info``: the body's ``read_request``, when the caller has it (the body is then not
    decoded a second time: 0.14 ms for 250 KB, on the request's way upstream).
    """
    given = info.has_stream_options if info is not None else \
        _decode_fields(body).stream_options is not msgspec.UNSET
    if not given:
        start = body.index(b"{") + 1
        rest = body[start:].lstrip()
        separator = b"" if rest.startswith(b"}") else b","
        return body[:start] + b'"stream_options":{"include_usage":true}' + separator + \
            body[start:]
    data = _decode(body)
    options = data.get("stream_options")
    data["stream_options"] = {**(options if isinstance(options, dict) else {}),
                              "include_usage": True}
    return _encode(data)
