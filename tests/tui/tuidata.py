"""Data for the dashboard's tests: a real store in the temp home, filled with fixed data.

"Now" is frozen at ``NOW`` (the app takes a clock) and every event has a fixed timestamp, so
what the dashboard shows is the same on every run and every machine.
"""

from __future__ import annotations

import asyncio
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from agent import Call, Store, SuggestionEvent

#: A Wednesday afternoon, in the past (stored events may not lie in the future): its day,
#: week (from Monday 15th) and month (from the 1st) all start on different days.
NOW = datetime(2026, 6, 17, 14, 5, tzinfo=UTC)
NOW_MS = int(NOW.timestamp() * 1000)

MODELS = (("anthropic", "claude-sonnet-4-5"), ("openai", "gpt-4.1-mini"),
          ("anthropic", "claude-haiku-4-5"), ("openai", "o3"))
TOOLS = ("claude-code", "copilot", "aider", "meterline-lsp")


def frozen() -> datetime:
    return NOW


def write_config(home: Path, text: str) -> Path:
    path = home / "config.toml"
    path.write_text(text)
    return path


def budget_toml(name: str, *, period: str = "day", usd: float | None = None,
                tokens: int | None = None, mode: str = "enforce") -> str:
    lines = ["[[budgets]]", f'name = "{name}"', f'period = "{period}"', f'mode = "{mode}"',
             'timezone = "UTC"']
    if usd is not None:
        lines.append(f"limit_usd = {usd}")
    if tokens is not None:
        lines.append(f"limit_tokens = {tokens}")
    return "\n".join(lines) + "\n\n"


def call(minutes_ago: float, *, cost_micro: int | None = 10_000, index: int = 0,
         **fields: Any) -> Call:
    """A call ``minutes_ago`` before NOW; tool and model rotate with ``index``."""
    provider, model = MODELS[index % len(MODELS)]
    base: dict[str, Any] = {
        "ts": NOW - timedelta(minutes=minutes_ago), "tool": TOOLS[index % len(TOOLS)],
        "provider": provider, "model": model, "input_tokens": 1000 + 37 * index,
        "output_tokens": 200 + 11 * index, "cache_read_tokens": 500 * (index % 3),
        "cost_micro_usd": cost_micro, "latency_ms": 400 + index, "status": "ok"}
    base.update(fields)
    return Call(**base)


def outcome_events(count: int) -> list[SuggestionEvent]:
    """``count`` suggestions offered; a third accepted; of those, retained and committed."""
    events = []
    for i in range(count):
        at = NOW - timedelta(minutes=30 + 7 * i)
        sid = f"sug-{i}"
        events.append(SuggestionEvent(ts=at, suggestion_id=sid, type="offered", chars=240,
                                      lines=8))
        if i % 3 == 0:
            events.append(SuggestionEvent(ts=at + timedelta(seconds=4), suggestion_id=sid,
                                          type="accepted", chars=180, lines=6))
            events.append(SuggestionEvent(ts=at + timedelta(seconds=30), suggestion_id=sid,
                                          type="retained", chars=170, lines=6, checkpoint_s=30))
            events.append(SuggestionEvent(ts=at + timedelta(minutes=15), suggestion_id=sid,
                                          type="retained", chars=150, lines=5, checkpoint_s=900))
            if i % 2 == 0:
                events.append(SuggestionEvent(ts=at + timedelta(minutes=16), suggestion_id=sid,
                                              type="committed", chars=120, lines=4))
    return events


async def fill(home: Path, calls: list[Call], events: list[SuggestionEvent] | None = None,
               vendor: dict[str, list[dict[str, Any]]] | None = None) -> None:
    """Store calls, outcomes and vendor quotas through the real store in ``home``."""
    async with await Store.open(home / "meterline.db") as store:
        await store.add_calls(calls)
        if events:
            await store.add_suggestion_events(events)
        for provider, quotas in (vendor or {}).items():
            await store.set_vendor_quota(provider, quotas)


def typical_day() -> list[Call]:
    """A working day up to NOW: a busy morning, a lunch break, a quieter afternoon, with
    costs that vary from call to call; ten calls in the last hour."""
    calls = []
    for i in range(110):
        minutes_ago = 60 + 4 * i + (90 if i > 40 else 0)  # lunch: 11:15 to 12:45
        calls.append(call(minutes_ago, index=i, cost_micro=20_000 + (i * 7919) % 110_000))
    calls += [call(3 + 5 * i, index=i, cost_micro=5_500) for i in range(10)]
    return calls


VENDOR = {"anthropic": [{"name": "tokens", "limit": 400_000, "remaining": 90_000,
                         "used_percent": None, "resets_at_ms": NOW_MS + 25 * 60_000}]}


def populate_typical(home: Path) -> None:
    """The store and config the screenshots and most app tests use (sync, for plain tests)."""
    write_config(home, budget_toml("daily", usd=10, tokens=2_000_000)
                 + budget_toml("weekly", period="week", usd=60, mode="warn"))
    asyncio.run(fill(home, typical_day(), outcome_events(30), VENDOR))


def env_for(home: Path) -> dict[str, str]:
    return {**os.environ, "METERLINE_HOME": str(home)}
