"""``meterline status``: kept free of click, msgspec and the async stack, for start-up speed."""

from __future__ import annotations

import os
import sqlite3
import sys

from agent import _paths
from agent._errors import MeterlineError
from agent._status import current_status, status_line


def tool_input() -> bytes:
    """What a status-line host piped in (Claude Code sends its session JSON); nothing when
    stdin is a terminal or stays silent for a moment (a prompt, tmux)."""
    try:
        if sys.stdin is None or sys.stdin.isatty():
            return b""
        import select

        ready, _, _ = select.select([sys.stdin], [], [], 0.05)
        return sys.stdin.buffer.read(1 << 20) if ready else b""
    except (OSError, ValueError):
        return b""


def claude_code_quota(data: bytes) -> list[dict[str, object]]:
    """Claude Code's own view of a subscription's windows: ``rate_limits.five_hour`` and
    ``seven_day`` with ``used_percentage`` and ``resets_at``."""
    if b"rate_limits" not in data:
        return []
    import json

    try:
        limits = json.loads(data).get("rate_limits")
    except (ValueError, AttributeError):
        return []
    quotas: list[dict[str, object]] = []
    for key, name in (("five_hour", "5h"), ("seven_day", "7d")):
        window = limits.get(key) if isinstance(limits, dict) else None
        if not isinstance(window, dict):
            continue
        used = window.get("used_percentage")
        if isinstance(used, int | float) and not isinstance(used, bool):
            quotas.append({"name": name, "used_percent": float(used),
                           "resets_at_ms": _epoch_ms(window.get("resets_at"))})
    return quotas


def _epoch_ms(value: object) -> int | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return int(value * 1000) if value < 1e11 else int(value)
    if isinstance(value, str):
        from datetime import datetime

        try:
            return int(datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp() * 1000)
        except ValueError:
            return None
    return None


def run_status(*, json_output: bool) -> int:
    """Print the status (one line, or the JSON object); return the exit code."""
    db_path = _paths.db_path()
    try:
        quota = claude_code_quota(tool_input())
        report = current_status(db_path, _paths.config_path(),
                                vendor=("anthropic", quota) if quota else None)
    except MeterlineError as exc:
        print(f"meterline: {exc}", file=sys.stderr)
        return exc.exit_code
    except (sqlite3.Error, OSError) as exc:
        print(f"meterline: cannot read the store at {db_path}: {exc}", file=sys.stderr)
        return 1
    text = status_line(report)
    if json_output:
        import json

        text = json.dumps(report.to_json())
    try:
        print(text, flush=True)
    except BrokenPipeError:  # the reader went away (`meterline status --json | head -c 99`)
        # Python would print an error at exit flushing stdout again: point it at nothing.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0
