"""Importers: the usage that tools already record in their own local logs.

Claude Code writes one JSONL file a session under ``~/.claude/projects`` (and
``~/.config/claude/projects``, and each folder of ``CLAUDE_CONFIG_DIR``); Codex CLI writes
session JSONL files under ``${CODEX_HOME:-~/.codex}/sessions``. Both are read incrementally:
a cursor per file (its identity and the byte offset of the last complete line read) is
saved in the same transaction as the calls it produced, so a crash never imports a line
twice or skips one, and a rewritten or truncated file is read again from the start (event
ids are deterministic, so re-reading stores nothing twice).

Parsing is pure (``parse_claude_code``, ``parse_codex``): lines in, calls out.
Paths, prompts and code stay on this machine: a call carries only counts, the model, and
the hash of the session's working directory.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from agent._events import Call, workspace_hash
from agent._pricing import price_call

#: Deterministic ids for imported calls: the same log line always makes the same event id.
_NAMESPACE = uuid.UUID("6b1f6f8e-58a4-4c1e-9d0b-6d65746572c1")
#: A file written to this recently may still be growing the last response it holds.
SETTLE_SECONDS = 30.0
#: At most this much of a file is read per transaction.
CHUNK_BYTES = 8 * 2**20


def _event_id(*parts: str) -> str:
    return str(uuid.uuid5(_NAMESPACE, ":".join(parts)))


def _ts(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _count(obj: Any, key: str) -> int:
    value = obj.get(key) if isinstance(obj, dict) else None
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


# -- Claude Code ----------------------------------------------------------------------------

def claude_code_roots() -> list[Path]:
    """Every folder Claude Code may keep session logs in (existing or not)."""
    roots = [Path.home() / ".claude" / "projects", Path.home() / ".config" / "claude" / "projects"]
    for entry in os.environ.get("CLAUDE_CONFIG_DIR", "").split(","):
        if entry.strip():
            roots.append(Path(entry.strip()).expanduser() / "projects")
    return list(dict.fromkeys(roots))


def parse_claude_code(lines: Iterable[bytes]) -> list[Call]:
    """Calls from Claude Code log lines.

    One response is written as several lines (one per content block) sharing ``message.id``
    and ``requestId``; the one with the largest total counts. Synthetic messages (Claude
    Code's own, not a model's) are skipped.
    """
    best: dict[tuple[str, str], tuple[int, Call]] = {}
    for raw in lines:
        try:
            entry = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            continue
        if not isinstance(entry, dict) or entry.get("type") != "assistant":
            continue
        message = entry.get("message")
        if not isinstance(message, dict) or not isinstance(message.get("usage"), dict):
            continue
        model = message.get("model")
        moment = _ts(entry.get("timestamp"))
        if not isinstance(model, str) or model == "<synthetic>" or moment is None:
            continue
        usage = message["usage"]
        message_id = str(message.get("id") or "")
        request_id = str(entry.get("requestId") or "")
        if not (message_id or request_id):
            continue
        cache_write = _count(usage, "cache_creation_input_tokens")
        call = Call(
            id=_event_id("claude-code", message_id, request_id),
            ts=moment, tool="claude-code", source="import:claude-code", provider="anthropic",
            model=model, kind="agent",
            input_tokens=_count(usage, "input_tokens"),
            output_tokens=_count(usage, "output_tokens"),
            cache_read_tokens=_count(usage, "cache_read_input_tokens"),
            cache_write_tokens=cache_write,
            cache_write_1h_tokens=min(cache_write, _count(usage.get("cache_creation"),
                                                          "ephemeral_1h_input_tokens")),
            workspace=workspace_hash(entry["cwd"]) if isinstance(entry.get("cwd"), str) else None,
            request_id=request_id or message_id,
        )
        key = (message_id, request_id)
        if key not in best or call.total_tokens > best[key][0]:
            best[key] = (call.total_tokens, call)
    return [call for _, call in best.values()]


def claude_code_split(lines: list[bytes]) -> int:
    """How many leading lines hold only complete responses: the lines of the last response
    may still be growing, so a fresh file is read up to where that response starts."""
    last_key = None
    start = len(lines)
    for index in range(len(lines) - 1, -1, -1):
        try:
            entry = json.loads(lines[index])
        except (ValueError, UnicodeDecodeError):
            continue
        if not isinstance(entry, dict) or entry.get("type") != "assistant":
            break
        message = entry.get("message") or {}
        key = (message.get("id") if isinstance(message, dict) else None, entry.get("requestId"))
        if last_key is not None and key != last_key:
            break
        last_key = key
        start = index
    return start


# -- Codex CLI ------------------------------------------------------------------------------

def codex_roots() -> list[Path]:
    base = os.environ.get("CODEX_HOME")
    return [(Path(base).expanduser() if base else Path.home() / ".codex") / "sessions"]


@dataclass
class CodexState:
    """What a Codex session file said before the current chunk (kept with the cursor)."""

    session: str = ""
    model: str = ""
    workspace: str | None = None
    last_total: int = 0
    quota: list[dict[str, Any]] = field(default_factory=list)


def parse_codex(lines: Iterable[bytes], state: CodexState) -> list[Call]:
    """Calls from Codex CLI session lines; ``state`` carries model and totals across chunks.

    Each ``token_count`` event whose running total grew is one call, with the usage of its
    last request. Codex counts cached tokens inside input and reasoning inside output.
    """
    calls = []
    for raw in lines:
        try:
            entry = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            continue
        if not isinstance(entry, dict):
            continue
        payload = entry.get("payload")
        if not isinstance(payload, dict):
            continue
        kind = entry.get("type")
        if kind == "session_meta":
            state.session = str(payload.get("id") or state.session)
            if isinstance(payload.get("cwd"), str):
                state.workspace = workspace_hash(payload["cwd"])
        elif kind == "turn_context" and isinstance(payload.get("model"), str):
            state.model = payload["model"]
        elif kind == "event_msg" and payload.get("type") == "token_count":
            quota = _codex_quota(payload.get("rate_limits"), _ts(entry.get("timestamp")))
            if quota:
                state.quota = quota
            info = payload.get("info")
            moment = _ts(entry.get("timestamp"))
            if not isinstance(info, dict) or moment is None:
                continue
            total = _count(info.get("total_token_usage"), "total_tokens")
            last = info.get("last_token_usage")
            if total <= state.last_total or not isinstance(last, dict):
                continue
            state.last_total = total
            cached = _count(last, "cached_input_tokens")
            output = _count(last, "output_tokens")
            calls.append(Call(
                id=_event_id("codex", state.session, str(total)),
                ts=moment, tool="codex", source="import:codex", provider="openai",
                model=state.model or "unknown", kind="agent",
                input_tokens=max(0, _count(last, "input_tokens") - cached),
                cache_read_tokens=cached, output_tokens=output,
                reasoning_tokens=min(output, _count(last, "reasoning_output_tokens")),
                workspace=state.workspace,
            ))
    return calls


def _codex_quota(limits: Any, moment: datetime | None) -> list[dict[str, Any]]:
    """Codex's own view of the plan's windows (``primary`` 5 h, ``secondary`` weekly)."""
    if not isinstance(limits, dict):
        return []
    quotas = []
    for name in ("primary", "secondary"):
        window = limits.get(name)
        if not isinstance(window, dict) or not isinstance(window.get("used_percent"),
                                                          int | float):
            continue
        resets = None
        if isinstance(window.get("resets_at"), int | float):
            resets = int(window["resets_at"] * 1000)
        elif isinstance(window.get("resets_in_seconds"), int | float) and moment is not None:
            resets = int((moment.timestamp() + window["resets_in_seconds"]) * 1000)
        label = _window_label(window.get("window_minutes"), name)
        quotas.append({"name": label, "used_percent": float(window["used_percent"]),
                       "resets_at_ms": resets})
    return quotas


def _window_label(minutes: Any, fallback: str) -> str:
    """``300`` → ``5h``, ``10080`` → ``7d``: how the plan's windows are spoken of."""
    if not isinstance(minutes, int) or minutes <= 0:
        return fallback
    if minutes % 1440 == 0:
        return f"{minutes // 1440}d"
    return f"{minutes // 60}h" if minutes % 60 == 0 else f"{minutes}m"


# -- reading files incrementally ------------------------------------------------------------

@dataclass
class Cursor:
    path: str
    file_id: str
    offset: int
    state: dict[str, Any] = field(default_factory=dict)


@dataclass
class Chunk:
    """What one read of one file produced: calls, the new cursor, vendor quota if any."""

    calls: list[Call]
    start: int
    cursor: Cursor
    quota: list[dict[str, Any]] = field(default_factory=list)


def jsonl_files(roots: Iterable[Path]) -> Iterator[Path]:
    for root in roots:
        if root.is_dir():
            yield from sorted(root.rglob("*.jsonl"))


def read_chunk(tool: str, path: Path, cursor: Cursor | None, now: float) -> Chunk | None:
    """Read complete lines after ``cursor``; None when there is nothing new."""
    try:
        info = path.stat()
        with path.open("rb") as handle:
            head = handle.read(4096).split(b"\n", 1)[0]
    except OSError:
        return None
    # A file is the same file while its inode and first line are: logs only grow, and a
    # rewritten file that reuses the inode has a different first line.
    file_id = f"{info.st_dev}:{info.st_ino}:{hashlib.sha1(head).hexdigest()[:16]}"
    with path.open("rb") as handle:
        if (cursor is None or cursor.file_id != file_id or info.st_size < cursor.offset
                or cursor.state.get("tail") != _tail(handle, cursor.offset)):
            cursor = Cursor(str(path), file_id, 0)  # new, replaced or rewritten: start over
        if info.st_size == cursor.offset:
            return None
        handle.seek(cursor.offset)
        data = handle.read(CHUNK_BYTES)
    end = data.rfind(b"\n") + 1
    if end == 0:
        return None
    lines = data[:end].splitlines()
    fresh = now - info.st_mtime < SETTLE_SECONDS and cursor.offset + end == info.st_size
    if tool == "claude-code":
        if fresh:
            keep = claude_code_split(lines)
            end = sum(len(line) + 1 for line in lines[:keep])
            lines = lines[:keep]
        calls = parse_claude_code(lines)
        offset = cursor.offset + end
        return Chunk(calls, cursor.offset,
                     Cursor(str(path), file_id, offset, {"tail": _tail_of(path, offset)}))
    saved = {k: v for k, v in cursor.state.items() if k != "tail"}
    state = CodexState(**saved) if saved else CodexState()
    calls = parse_codex(lines, state)
    offset = cursor.offset + end
    new_state = {"session": state.session, "model": state.model, "workspace": state.workspace,
                 "last_total": state.last_total, "tail": _tail_of(path, offset)}
    return Chunk(calls, cursor.offset, Cursor(str(path), file_id, offset, new_state),
                 state.quota)


def _tail(handle: Any, offset: int) -> str:
    """A fingerprint of the bytes just before ``offset``: if they changed, so did the file."""
    start = max(0, offset - 256)
    handle.seek(start)
    return hashlib.sha1(handle.read(offset - start)).hexdigest()[:16]


def _tail_of(path: Path, offset: int) -> str:
    with path.open("rb") as handle:
        return _tail(handle, offset)


SOURCES = {"claude-code": claude_code_roots, "codex": codex_roots}


async def import_logs(store: Any, tools: Iterable[str] = tuple(SOURCES),
                      prices: dict[str, Any] | None = None,
                      roots: dict[str, list[Path]] | None = None) -> dict[str, dict[str, int]]:
    """Import what is new in every log of ``tools``; return counts per tool.

    ``store`` is an open ``agent.Store``; ``roots`` overrides where each tool's logs are.
    """
    import time

    cursors = await store.read(_load_cursors)
    summary: dict[str, dict[str, int]] = {}
    for tool in tools:
        counts = summary.setdefault(tool, {"files": 0, "inserted": 0, "duplicates": 0})
        folders = (roots or {}).get(tool) or SOURCES[tool]()
        for path in await asyncio.to_thread(_list_files, folders):
            cursor = cursors.get(str(path))
            while True:
                chunk = await asyncio.to_thread(read_chunk, tool, path, cursor, time.time())
                if chunk is None or chunk.cursor.offset == chunk.start:
                    break
                for call in chunk.calls:
                    call.cost_micro_usd = price_call(call, prices)
                result = await store.add_imported(chunk.calls, chunk.cursor)
                if chunk.quota:
                    await store.set_vendor_quota("openai", chunk.quota)
                counts["inserted"] += result.inserted
                counts["duplicates"] += result.duplicates
                cursor = chunk.cursor
            counts["files"] += 1
    return summary


def _list_files(roots: list[Path]) -> list[Path]:
    return list(jsonl_files(roots))


def _load_cursors(db: Any) -> dict[str, Cursor]:
    rows = db.execute("SELECT path, file_id, offset, state FROM import_cursors")
    return {path: Cursor(path, file_id, offset, json.loads(state) if state else {})
            for path, file_id, offset, state in rows}
