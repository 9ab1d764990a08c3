"""Sync: drain the store's outbox to the team server, pull the budgets leads set there.

Events above each stream's ``sync_state.last_seq`` are posted in batches to
``POST {server}/api/v1/events``; the cursor advances only after the server answered 2xx,
in the same transaction that records the success, so a crash resends at worst one batch,
which the server's idempotent ingest absorbs. What is sent is the wire schema only: counts,
model, tool, language, hashes; never a prompt, code or a path (the store holds none).
Budgets from ``GET {server}/api/v1/me/budget`` replace the store's ``source = 'server'``
budgets, beside config.toml's.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import httpx

from agent._schema import HOUR_MS

if TYPE_CHECKING:
    from agent._store import Store

#: Events per POST: well under the server's limit of 5,000 and 4 MiB.
BATCH = 1000

_STREAMS = {
    "calls": ("calls", (
        "seq", "id", "ts", "device_id", "tool", "source", "provider", "model", "kind",
        "input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens",
        "cache_write_1h_tokens", "reasoning_tokens", "cost_micro_usd", "estimated",
        "latency_ms", "status", "language", "workspace", "request_id")),
    "suggestion_events": ("suggestion_events", (
        "seq", "id", "ts", "device_id", "suggestion_id", "call_id", "type", "chars", "lines",
        "checkpoint_s", "commit_id", "environment", "tool", "model", "language", "workspace")),
}


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds").replace(
        "+00:00", "Z")


def wire_event(stream: str, row: dict[str, Any]) -> dict[str, Any]:
    """A stored row as the server's wire schema wants it (pure)."""
    event = {k: v for k, v in row.items() if k != "seq"}
    event["ts"] = _iso(row["ts"])
    if stream == "calls":
        event["type"] = "call"
        event["estimated"] = bool(row["estimated"])
    else:
        event["type"] = f"suggestion.{row['type']}"
        event["commit"] = event.pop("commit_id")
    return event


def pending_batch(db: sqlite3.Connection, stream: str, limit: int = BATCH
                  ) -> tuple[int, int, list[dict[str, Any]]]:
    """(cursor, last seq in batch, events) for the next batch of ``stream``."""
    table, columns = _STREAMS[stream]
    cursor = db.execute("SELECT last_seq FROM sync_state WHERE stream = ?", (stream,)).fetchone()
    after = int(cursor[0]) if cursor else 0
    rows = db.execute(f"SELECT {', '.join(columns)} FROM {table} WHERE seq > ? ORDER BY seq "
                      "LIMIT ?", (after, limit)).fetchall()
    events = [wire_event(stream, dict(zip(columns, row, strict=True))) for row in rows]
    return after, (rows[-1][0] if rows else after), events


@dataclass
class SyncResult:
    sent: int = 0
    inserted: int = 0
    duplicates: int = 0
    budgets: int | None = None
    error: str | None = None


class SyncError(Exception):
    """The server could not be reached or refused a batch (the message is safe to show)."""


def _describe(response: httpx.Response) -> str:
    try:
        body = response.json()
        detail = body.get("error", body.get("detail", body)) if isinstance(body, dict) else body
    except ValueError:
        detail = response.text[:200]
    return f"server answered {response.status_code}: {detail}"


async def push(store: Store, client: httpx.AsyncClient, server_url: str, token: str,
               result: SyncResult) -> None:
    """Send every pending event, batch by batch; stop at the first failure."""
    headers = {"Authorization": f"Bearer {token}"}
    for stream in _STREAMS:
        while True:
            after, last, events = await store.read(functools.partial(pending_batch,
                                                                     stream=stream))
            if not events:
                break
            try:
                response = await client.post(f"{server_url}/api/v1/events",
                                             json={"events": events}, headers=headers)
            except httpx.HTTPError as exc:
                raise SyncError(f"cannot reach {server_url}: {type(exc).__name__}") from None
            if response.status_code >= 300:
                raise SyncError(_describe(response))
            body = response.json()
            await store.advance_sync(stream, after, last)
            result.sent += len(events)
            result.inserted += int(body.get("inserted", 0))
            result.duplicates += int(body.get("duplicates", 0))


async def pull_budgets(store: Store, client: httpx.AsyncClient, server_url: str, token: str
                       ) -> int:
    try:
        response = await client.get(f"{server_url}/api/v1/me/budget",
                                    headers={"Authorization": f"Bearer {token}"})
    except httpx.HTTPError as exc:
        raise SyncError(f"cannot reach {server_url}: {type(exc).__name__}") from None
    if response.status_code >= 300:
        raise SyncError(_describe(response))
    budgets = server_budgets(response.json())
    await store.replace_server_budgets(budgets)
    return len(budgets)


def server_budgets(body: Any) -> list[Any]:
    """The server's budget list as the store's budgets; bad entries are refused whole."""
    import msgspec

    from agent._config import BudgetSpec, check_budget
    from agent._errors import ConfigError

    items = body.get("budgets") if isinstance(body, dict) else None
    if not isinstance(items, list):
        raise SyncError("server sent no budget list")
    budgets = []
    for index, item in enumerate(items):
        fields = {k: v for k, v in item.items() if k in BudgetSpec.__struct_fields__} \
            if isinstance(item, dict) else item
        try:
            spec = msgspec.convert(fields, BudgetSpec)
            check_budget(spec, f"server budget {index}")
        except (msgspec.ValidationError, ConfigError) as exc:
            raise SyncError(f"server budget {index} is invalid: {exc}") from None
        budgets.append(spec.to_budget(source="server"))
    return budgets


async def check_login(server_url: str, token: str) -> int:
    """Check a token against the server; return how many budgets it has for the caller."""
    from agent._errors import InputError

    async with httpx.AsyncClient(timeout=httpx.Timeout(15.0, connect=5.0)) as client:
        try:
            response = await client.get(f"{server_url}/api/v1/me/budget",
                                        headers={"Authorization": f"Bearer {token}"})
        except httpx.HTTPError as exc:
            raise InputError(f"cannot reach {server_url}: {type(exc).__name__}") from None
    if response.status_code in (401, 403):
        raise InputError(f"{server_url} refused this token ({response.status_code}); "
                         "nothing was stored")
    if response.status_code >= 300:
        raise InputError(_describe(response))
    try:
        return len(server_budgets(response.json()))
    except (ValueError, SyncError) as exc:
        raise InputError(f"{server_url} does not look like a meterline server: {exc}") from None


async def sync_once(store: Store, server_url: str, token: str,
                    client: httpx.AsyncClient | None = None) -> SyncResult:
    """One round: push pending events, then pull budgets. Records success or the error."""
    result = SyncResult()
    server_url = server_url.rstrip("/")
    own = client is None
    client = client or httpx.AsyncClient(timeout=httpx.Timeout(30.0, connect=5.0))
    try:
        await push(store, client, server_url, token, result)
        result.budgets = await pull_budgets(store, client, server_url, token)
    except SyncError as exc:
        result.error = str(exc)
    finally:
        if own:
            await client.aclose()
    await store.record_sync_outcome(result.error)
    return result


async def sync_forever(store: Store, server_url: str, token: str, interval_s: float,
                       stop: asyncio.Event) -> None:
    """Sync every ``interval_s``; after failures wait longer (up to an hour), never give up."""
    delay = interval_s
    async with httpx.AsyncClient(timeout=httpx.Timeout(30.0, connect=5.0)) as client:
        while not stop.is_set():
            result = await sync_once(store, server_url, token, client)
            delay = interval_s if result.error is None else min(delay * 2, HOUR_MS / 1000)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)


__all__ = ["SyncError", "SyncResult", "check_login", "pending_batch", "server_budgets",
           "sync_forever", "sync_once", "wire_event"]
