"""Answers the proxy gives itself, in the provider's own error format, so that every tool
shows them the way it shows the provider's errors.

Anthropic: ``{"type": "error", "error": {"type": ..., "message": ...}}``.
OpenAI: ``{"error": {"message": ..., "type": ..., "param": null, "code": ...}}``.
"""

from __future__ import annotations

import json

from agent._proxy._headers import Headers

#: (Anthropic error type, OpenAI error type, OpenAI code) for each reason we answer ourselves.
_KINDS = {
    "budget": ("rate_limit_error", "insufficient_quota", "meterline_budget_exceeded"),
    "no_key": ("authentication_error", "invalid_request_error", "meterline_no_key"),
    "upstream": ("api_error", "server_error", "meterline_upstream_unreachable"),
    "not_found": ("not_found_error", "invalid_request_error", "meterline_unknown_route"),
}


def error_body(provider: str, reason: str, message: str) -> bytes:
    anthropic_type, openai_type, code = _KINDS[reason]
    if provider == "anthropic":
        payload: dict[str, object] = {"type": "error",
                                      "error": {"type": anthropic_type, "message": message}}
    else:
        payload = {"error": {"message": message, "type": openai_type, "param": None,
                             "code": code}}
    return json.dumps(payload).encode()


def error_headers(body: bytes, extra: Headers = ()) -> Headers:  # type: ignore[assignment]
    return [(b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()), *extra]
