"""Header logic, pure: which tool sent a request, what the provider said of its own quota,
which headers belong to one hop only, and the provider's request id.

Header lists are ASGI-style: ``[(lower-case name bytes, value bytes), ...]``.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable
from datetime import datetime
from typing import Any

Headers = list[tuple[bytes, bytes]]

#: Headers that describe one connection, never forwarded (RFC 9110 §7.6.1), plus ``host``
#: (the upstream's own is set by the client library) and our own attribution header.
HOP_BY_HOP = frozenset({
    b"connection", b"keep-alive", b"proxy-authenticate", b"proxy-authorization", b"te",
    b"trailer", b"transfer-encoding", b"upgrade", b"host", b"x-meterline-tool",
})

# (pattern on the User-Agent, tool name), first match wins. Tools that embed an SDK are
# listed before the SDK, so "claude-cli/… (external, sdk-py)" is Claude Code, not the SDK.
_USER_AGENTS: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"^claude-(cli|code)/", re.I), "claude-code"),
    (re.compile(r"^codex|codex_cli", re.I), "codex"),
    (re.compile(r"aider", re.I), "aider"),
    (re.compile(r"\bcline\b", re.I), "cline"),
    (re.compile(r"\bcontinue\b", re.I), "continue"),
    (re.compile(r"\blitellm\b", re.I), "litellm"),
    (re.compile(r"^(Async)?Anthropic/", re.I), "anthropic-sdk"),
    (re.compile(r"^(Async)?(Azure)?OpenAI/", re.I), "openai-sdk"),
    (re.compile(r"^curl/", re.I), "curl"),
]

#: Tools that run an agent loop (plan, call tools, edit files) rather than answer a chat;
#: Aider asks for edits to files in a chat, which is what ``edit`` means.
_KINDS = {"claude-code": "agent", "codex": "agent", "cline": "agent", "aider": "edit"}

_TOOL_NAME = re.compile(r"[^A-Za-z0-9._@+-]+")


def header(headers: Iterable[tuple[bytes, bytes]], name: bytes) -> str | None:
    for key, value in headers:
        if key == name:
            return value.decode("latin-1")
    return None


def tool_of(headers: Headers) -> str:
    """``x-meterline-tool`` if the client names itself, else a guess from the User-Agent
    (and ``x-title``, which Cline sends), else ``unknown``."""
    named = agent = title = None
    for name, value in headers:  # one pass for the three (the first of each counts)
        if name == b"user-agent":
            agent = value if agent is None else agent
        elif name == b"x-meterline-tool":
            named = value if named is None else named
        elif name == b"x-title":
            title = value if title is None else title
    key = (named, agent, title)
    tool = _TOOLS_SEEN.get(key)
    if tool is None:
        # A tool sends the same headers on every request: the patterns run once per tool.
        if len(_TOOLS_SEEN) >= 256:
            _TOOLS_SEEN.clear()
        tool = _TOOLS_SEEN[key] = _tool_from(*(None if v is None else v.decode("latin-1")
                                               for v in key))
    return tool


_TOOLS_SEEN: dict[tuple[bytes | None, bytes | None, bytes | None], str] = {}


def _tool_from(named: str | None, agent: str | None, title: str | None) -> str:
    if named and named.strip():
        return _TOOL_NAME.sub("-", named.strip())[:64].strip("-") or "unknown"
    for pattern, tool in _USER_AGENTS:
        if pattern.search(agent or "") or (title and pattern.search(title)):
            return tool
    return "unknown"


def kind_of(tool: str) -> str:
    return _KINDS.get(tool, "chat")


def request_id_of(headers: Headers) -> str | None:
    """The provider's id for this request: Anthropic ``request-id``, OpenAI ``x-request-id``."""
    value = header(headers, b"request-id") or header(headers, b"x-request-id")
    return value.strip()[:200] if value and value.strip() else None


# -- the provider's own quota ---------------------------------------------------------------

QUOTA_PREFIXES = (b"anthropic-ratelimit-", b"x-ratelimit-")
_ANTHROPIC = re.compile(r"^anthropic-ratelimit-(.+)-(limit|remaining|reset|utilization)$")
_OPENAI = re.compile(r"^x-ratelimit-(limit|remaining|reset)-(.+)$")
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_DURATION_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}


def vendor_quotas(headers: Headers, now_ms: int | None = None) -> list[dict[str, Any]]:
    """Quota windows the provider reported (``name, limit, remaining, used_percent,
    resets_at_ms``), from ``anthropic-ratelimit-*`` or ``x-ratelimit-*`` headers."""
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    windows: dict[str, dict[str, Any]] = {}
    for raw_key, raw_value in headers:
        if not raw_key.startswith(QUOTA_PREFIXES):
            continue  # most headers: skip before any decoding or regex
        key = raw_key.decode("latin-1").lower()
        value = raw_value.decode("latin-1").strip()
        match = _ANTHROPIC.match(key)
        if match:
            name, part = match.groups()
        else:
            match = _OPENAI.match(key)
            if not match:
                continue
            part, name = match.groups()
        window = windows.setdefault(name, {"name": name})
        if part in ("limit", "remaining"):
            number = _number(value)
            if number is not None:
                window[part] = int(number)
        elif part == "utilization":
            number = _number(value)
            if number is not None:
                window["used_percent"] = round(number * 100, 2) if number <= 1.0 else number
        else:
            reset = _reset_ms(value, now_ms)
            if reset is not None:
                window["resets_at_ms"] = reset
    quotas = []
    for window in windows.values():
        if "used_percent" not in window and window.get("limit"):
            used = window["limit"] - window.get("remaining", window["limit"])
            window["used_percent"] = round(100 * used / window["limit"], 2)
        if len(window) > 1:
            quotas.append(window)
    return quotas


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def _reset_ms(text: str, now_ms: int) -> int | None:
    """Anthropic: RFC 3339 or epoch seconds; OpenAI: a duration such as ``6m0s`` or ``20ms``."""
    number = _number(text)
    if number is not None:
        return int(number * 1000) if number > 1e9 else now_ms + int(number * 1000)
    try:
        return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000)
    except ValueError:
        pass
    parts = _DURATION.findall(text)
    if parts and "".join(n + u for n, u in parts) == text:
        return now_ms + int(sum(float(n) * _DURATION_MS[u] for n, u in parts))
    return None
