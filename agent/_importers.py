"""Importers: the usage that tools already record in their own local logs.

Claude Code writes one JSONL file a session under ``~/.claude/projects`` (and
``~/.config/claude/projects``, and each folder of ``CLAUDE_CONFIG_DIR``); Codex CLI writes
session JSONL files under ``${CODEX_HOME:-~/.codex}/sessions``. Both are read incrementally:
a cursor per file (its identity and the byte offset of the last complete line read) is
saved in the same transaction as the calls it produced, so a crash never imports a line
twice or skips one, and a rewritten or truncated file is read again from the start (event
ids are deterministic, so re-reading stores nothing twice).

Parsing is pure (``parse_claude_code``, ``parse_codex``): lines in, calls out. A call
goes through the checks ``meterline record`` applies (``agent._events.parse_calls``: at most
100M tokens a field, no timestamp more than a day ahead, ...); one that fails them is
skipped and counted as such.

The same call may reach the store twice: through the metering proxy and in the log.
Claude Code's log names the provider's request id, so the store's unique ``request_id``
keeps one. Codex's log names none: a Codex call is taken for one the proxy stored when a
proxy call of Codex with the same model and exactly the same token figures was stored
within ``MATCH_WINDOW_MS`` of it and no other log call was taken for it
(``match_proxy_calls``; the pair is kept in ``import_matches``).

One Claude Code response is several lines, the last the largest: a response is never
split between two reads, and if a later read finds a larger copy of a response already
stored, the stored call is brought up to it unless it was synced to the team server
already (``grow_imported``).

Paths, prompts and code stay on this machine: a call carries only counts, the model, and
the hash of the session's working directory.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
import logging
import os
import re
import sqlite3
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec

from agent._errors import InputError
from agent._events import MAX_COST_MICRO_USD, Call, parse_calls, workspace_hash
from agent._pricing import price_call
from agent._schema import roll_in, roll_out, rolled_up

log = logging.getLogger("meterline.import")

#: Deterministic ids for imported calls: the same log line always makes the same event id.
_NAMESPACE = uuid.UUID("6b1f6f8e-58a4-4c1e-9d0b-6d65746572c1")
#: A file written to this recently may still be growing the last response it holds.
SETTLE_SECONDS = 30.0
#: At most this much of a file is read per transaction (more only to finish a line).
CHUNK_BYTES = 8 * 2**20
#: A longer line is not read (it would be held whole in memory).
MAX_LINE_BYTES = 256 * 2**20
#: A Codex log call and a proxy call stored at most this far apart may be the same request
#: (the proxy stores its call as the response ends; Codex writes its line just after).
MATCH_WINDOW_MS = 5 * 60 * 1000


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


def within_bounds(calls: Iterable[Call]) -> tuple[list[Call], list[str]]:
    """The calls that pass the checks ``meterline record`` applies (at most 100M tokens a
    field, no timestamp more than a day ahead, ...), and what was wrong with the others."""
    kept: list[Call] = []
    problems: list[str] = []
    for call in calls:
        try:
            parse_calls(msgspec.structs.asdict(call))
        except InputError as exc:
            problems.append(str(exc))
        else:
            kept.append(call)
    return kept, problems


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


_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.I)


def codex_file_session(path: Path, root: Path | None = None) -> str:
    """The session of a Codex file until a ``session_meta`` line names it: the uuid in the
    file's name (``rollout-<time>-<uuid>.jsonl``: Codex names the file after the session),
    else a hash of the file's path under the sessions folder. Never empty: calls' ids are
    made from (session, running total), which two sessions may share."""
    found = _UUID.findall(path.stem)
    if found:
        return str(found[-1]).lower()
    name = path.as_posix()
    if root is not None and path.is_relative_to(root):
        name = path.relative_to(root).as_posix()
    return "file:" + hashlib.sha256(name.encode()).hexdigest()[:16]


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
    #: Calls left out: they failed ``meterline record``'s checks (``within_bounds``).
    skipped: int = 0


def jsonl_files(roots: Iterable[Path]) -> Iterator[Path]:
    for root in roots:
        if root.is_dir():
            yield from sorted(root.rglob("*.jsonl"))


def read_chunk(tool: str, path: Path, cursor: Cursor | None, now: float,
               root: Path | None = None) -> Chunk | None:
    """Read complete lines after ``cursor``; None when there is nothing new.

    ``root`` is the folder ``path`` was found in (a Codex file without ``session_meta`` is
    told apart by its path under it)."""
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
        if b"\n" not in data and len(data) == CHUNK_BYTES:
            data = _rest_of_line(handle, data)
    end = data.rfind(b"\n") + 1
    if end == 0:
        if len(data) >= MAX_LINE_BYTES:
            log.warning("%s: a line of over %d MiB at byte %d of %s: not read", tool,
                        MAX_LINE_BYTES >> 20, cursor.offset, path)
        return None
    lines = data[:end].splitlines()
    # The read stopped at CHUNK_BYTES, not at the end of the file: more lines follow.
    more = cursor.offset + len(data) < info.st_size
    fresh = now - info.st_mtime < SETTLE_SECONDS and not more
    if tool == "claude-code":
        if fresh or more:
            # The last response's lines may go on after what was read: in the next chunk
            # (read together with them), or not written yet (read once the file settles).
            keep = claude_code_split(lines)
            if keep == 0 and more:
                keep = len(lines)  # one response longer than a chunk: no way but forward
            end = sum(len(line) + 1 for line in lines[:keep])
            lines = lines[:keep]
        calls, problems = within_bounds(parse_claude_code(lines))
        offset = cursor.offset + end
        _log_skipped(tool, path, problems)
        return Chunk(calls, cursor.offset,
                     Cursor(str(path), file_id, offset, {"tail": _tail_of(path, offset)}),
                     skipped=len(problems))
    saved = {k: v for k, v in cursor.state.items() if k != "tail"}
    state = CodexState(**saved) if saved else CodexState()
    state.session = state.session or codex_file_session(path, root)
    calls, problems = within_bounds(parse_codex(lines, state))
    offset = cursor.offset + end
    new_state = {"session": state.session, "model": state.model, "workspace": state.workspace,
                 "last_total": state.last_total, "tail": _tail_of(path, offset)}
    _log_skipped(tool, path, problems)
    return Chunk(calls, cursor.offset, Cursor(str(path), file_id, offset, new_state),
                 state.quota, skipped=len(problems))


def _rest_of_line(handle: Any, start: bytes) -> bytes:
    """``start`` and what follows it up to its line's end: a line longer than a read (a
    tool's output of many MiB in a Claude Code log) is read whole, up to MAX_LINE_BYTES,
    rather than stop the file there for good."""
    pieces, size = [start], len(start)
    while size < MAX_LINE_BYTES:
        piece = handle.read(CHUNK_BYTES)
        if not piece:
            break
        pieces.append(piece)
        size += len(piece)
        if b"\n" in piece:
            break
    return b"".join(pieces)


def _log_skipped(tool: str, path: Path, problems: list[str]) -> None:
    if problems:
        reasons = list(dict.fromkeys(problems))
        log.warning("%s: skipped %d call(s) in %s that meterline record would refuse: %s",
                    tool, len(problems), path, "; ".join(reasons[:3])
                    + ("; ..." if len(reasons) > 3 else ""))


def _tail(handle: Any, offset: int) -> str:
    """A fingerprint of the bytes just before ``offset``: if they changed, so did the file."""
    start = max(0, offset - 256)
    handle.seek(start)
    return hashlib.sha1(handle.read(offset - start)).hexdigest()[:16]


def _tail_of(path: Path, offset: int) -> str:
    with path.open("rb") as handle:
        return _tail(handle, offset)


# -- calls already stored -------------------------------------------------------------------
# These run in the import's write transaction (``Store.add_imported(reconcile=...)``), so
# what they read cannot change before the calls they let through are stored.

def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


#: A dated snapshot's suffix: OpenAI answers ``gpt-5-2025-08-07`` to a request for ``gpt-5``.
_SNAPSHOT = re.compile(r"-\d{4}-\d{2}-\d{2}")


def _same_model(stored: str, logged: str) -> bool:
    """The proxy stores the model the response names, the log the one the tool asked for."""
    return stored == logged or (stored.startswith(logged)
                                and _SNAPSHOT.fullmatch(stored[len(logged):]) is not None)


_PROXY_TWINS = """
    SELECT id, model FROM calls
    WHERE ts BETWEEN ? AND ? AND total_tokens = ? AND source = 'proxy' AND tool = ?
      AND estimated = 0 AND input_tokens = ? AND cache_read_tokens = ?
      AND cache_write_tokens = ? AND output_tokens = ? AND reasoning_tokens = ?
      AND NOT EXISTS (SELECT 1 FROM import_matches m WHERE m.call_id = calls.id)
    ORDER BY abs(ts - ?), seq"""


def match_proxy_calls(db: sqlite3.Connection, calls: Sequence[Call]) -> list[Call]:
    """The calls of ``calls`` (from a log with no request ids: Codex's) still to store.

    A log call is one the proxy stored when a proxy call of the same tool and model (or its
    dated snapshot) with exactly the same token figures, not estimated, was stored within
    ``MATCH_WINDOW_MS`` of it, and no other log call was taken for it: one to one, the
    nearest in time first, so two identical real calls stay two. Such a call is not stored;
    ``import_matches`` remembers the pair (so a file read again finds it taken). A loose
    match (a figure off by one, another model, too far apart) is never taken.
    """
    todo: list[Call] = []
    for call in calls:
        if db.execute("SELECT 1 FROM import_matches WHERE imported_id = ?",
                      (call.id,)).fetchone():
            continue  # taken for a proxy call when the file was read before
        if db.execute("SELECT 1 FROM calls WHERE id = ?", (call.id,)).fetchone():
            todo.append(call)  # stored before: the insert counts it as a duplicate
            continue
        at = _ms(call.ts)
        twins = db.execute(_PROXY_TWINS, (
            at - MATCH_WINDOW_MS, at + MATCH_WINDOW_MS, call.total_tokens, call.tool,
            call.input_tokens, call.cache_read_tokens, call.cache_write_tokens,
            call.output_tokens, call.reasoning_tokens, at)).fetchall()
        twin = next((twin_id for twin_id, model in twins if _same_model(model, call.model)),
                    None)
        if twin is None:
            todo.append(call)
            continue
        db.execute("INSERT INTO import_matches (call_id, imported_id, ts) VALUES (?,?,?)",
                   (twin, call.id, at))
    return todo


@dataclass
class Grown:
    """What ``grow_imported`` did in one transaction."""

    updated: int = 0


def grow_imported(db: sqlite3.Connection, calls: Sequence[Call], grown: Grown) -> list[Call]:
    """The calls of ``calls`` still to store, after bringing stored ones up to a larger copy.

    A Claude Code response read again with more tokens (its last line was written after an
    import had read the first) replaces the figures and cost of the call stored for it if
    that call has not been synced to the team server yet (its ``seq`` is above the outbox
    cursor), and the rollups it was folded into follow. Once synced, the server holds the
    smaller copy for good (its ingest keeps the first copy of an id): the call is left as
    it is, and a warning says so.
    """
    synced = db.execute("SELECT last_seq FROM sync_state WHERE stream = 'calls'").fetchone()
    synced_seq = int(synced[0]) if synced else 0
    todo: list[Call] = []
    for call in calls:
        row = db.execute("SELECT seq, total_tokens FROM calls WHERE id = ?",
                         (call.id,)).fetchone()
        if row is None or call.total_tokens <= row[1]:
            todo.append(call)  # new, or no larger than the copy stored (a duplicate)
            continue
        seq = row[0]
        if seq <= synced_seq:
            log.warning("%s: call %s was synced with %d tokens before its response's last "
                        "line (%d tokens) was read; the team server keeps the first copy",
                        call.tool, call.id, row[1], call.total_tokens)
            todo.append(call)
            continue
        folded = rolled_up(db, seq)
        if folded:  # out of the rollups with its old figures, back in with the new
            roll_out(db, seq)
        db.execute(
            "UPDATE calls SET input_tokens = ?, output_tokens = ?, cache_read_tokens = ?, "
            "cache_write_tokens = ?, cache_write_1h_tokens = ?, reasoning_tokens = ?, "
            "cost_micro_usd = ?, total_tokens = ? WHERE seq = ?",
            (call.input_tokens, call.output_tokens, call.cache_read_tokens,
             call.cache_write_tokens, call.cache_write_1h_tokens, call.reasoning_tokens,
             call.cost_micro_usd, call.total_tokens, seq))
        if folded:
            roll_in(db, seq)
        grown.updated += 1
    return todo


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
        # inserted: new calls; duplicates: already stored (by id, request id, or as a proxy
        # call); updated: stored calls brought up to a larger copy; skipped: calls
        # ``meterline record`` would refuse (out of bounds), never stored.
        counts = summary.setdefault(tool, {"files": 0, "inserted": 0, "duplicates": 0,
                                           "updated": 0, "skipped": 0})
        folders = (roots or {}).get(tool) or SOURCES[tool]()
        for root, path in await asyncio.to_thread(_list_files, folders):
            cursor = cursors.get(str(path))
            while True:
                chunk = await asyncio.to_thread(read_chunk, tool, path, cursor, time.time(),
                                                root)
                if chunk is None or chunk.cursor.offset == chunk.start:
                    break
                calls = []
                for call in chunk.calls:
                    call.cost_micro_usd = price_call(call, prices)
                    if (call.cost_micro_usd or 0) > MAX_COST_MICRO_USD:
                        log.warning("%s: skipped call %s: it would cost more than $1M",
                                    tool, call.id)
                        chunk.skipped += 1
                    else:
                        calls.append(call)
                grown = Grown()
                reconcile = (functools.partial(grow_imported, grown=grown)
                             if tool == "claude-code" else match_proxy_calls)
                result = await store.add_imported(calls, chunk.cursor, reconcile=reconcile)
                if chunk.quota:
                    await store.set_vendor_quota("openai", chunk.quota)
                counts["inserted"] += result.inserted
                counts["duplicates"] += result.duplicates - grown.updated
                counts["updated"] += grown.updated
                counts["skipped"] += chunk.skipped
                cursor = chunk.cursor
            counts["files"] += 1
    return summary


def _list_files(roots: list[Path]) -> list[tuple[Path, Path]]:
    """(root, file) for every log file under ``roots``."""
    return [(root, path) for root in roots for path in jsonl_files([root])]


def _load_cursors(db: Any) -> dict[str, Cursor]:
    rows = db.execute("SELECT path, file_id, offset, state FROM import_cursors")
    return {path: Cursor(path, file_id, offset, json.loads(state) if state else {})
            for path, file_id, offset, state in rows}
