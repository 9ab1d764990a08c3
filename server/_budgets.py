"""Budget rules as pure functions: which periods and zones are valid, and what applies.

The agent enforces budgets; the server only stores them and hands each developer the ones
that apply (their own and their teams'), in the shape the agent's sync expects.
"""

from __future__ import annotations

import re
from zoneinfo import ZoneInfo

from server._errors import InputError

_DURATION = re.compile(r"(\d{1,6})([smhdw])")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}


def normalize_period(text: str) -> str:
    """``day``/``week``/``month``, or a rolling window (``5h``, ``90m``, ``1h30m``, ``7d``)."""
    value = text.strip().lower().removeprefix("rolling:").replace(" ", "")
    if value in ("day", "week", "month"):
        return value
    parts = _DURATION.findall(value)
    if not parts or "".join(n + u for n, u in parts) != value:
        raise InputError(f"{text!r} is not day, week, month or a window such as 5h",
                         field="period")
    seconds = sum(int(n) * _UNIT_S[u] for n, u in parts)
    if not 60 <= seconds <= 366 * 86_400:
        raise InputError("a rolling window must be between 1 minute and 366 days",
                         field="period")
    return value


def check_timezone(name: str | None) -> str | None:
    """An IANA zone name, or None (the developer's local zone)."""
    if name is None:
        return None
    try:
        ZoneInfo(name)
    except (ValueError, KeyError, OSError):
        raise InputError(f"not an IANA time zone: {name!r}", field="timezone") from None
    return name


def check_limits(limit_usd: float | None, limit_tokens: int | None) -> int | None:
    """At least one limit; returns the dollar limit in integer micro-dollars."""
    if limit_usd is None and limit_tokens is None:
        raise InputError("set limit_usd, limit_tokens or both", field="limit_usd")
    return None if limit_usd is None else round(limit_usd * 1_000_000)
