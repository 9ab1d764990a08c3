"""Builders for the server's tests: events in the wire schema, and a small organisation."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from server._access import SYSTEM
from server._store import Store
from server._wire import MemberIn


def now_iso(days_ago: int = 0) -> str:
    return (datetime.now(UTC) - timedelta(days=days_ago)).isoformat()


def call(**fields: Any) -> dict[str, Any]:
    """A call event with every wire field, overridable."""
    event = {"type": "call", "id": str(uuid.uuid4()), "ts": now_iso(), "device_id": "laptop",
             "tool": "claude-code", "source": "proxy", "provider": "anthropic",
             "model": "claude-sonnet-4-5", "kind": "chat", "input_tokens": 100,
             "output_tokens": 50, "cache_read_tokens": 1000, "cache_write_tokens": 200,
             "cache_write_1h_tokens": 0, "reasoning_tokens": 10, "cost_micro_usd": 2500,
             "estimated": False, "latency_ms": 900, "status": "ok", "language": "python",
             "workspace": "ws-0123456789abcdef", "request_id": None}
    event.update(fields)
    return event


def suggestion(stage: str, suggestion_id: str = "s-1", **fields: Any) -> dict[str, Any]:
    """A ``suggestion.<stage>`` event, overridable."""
    event = {"type": f"suggestion.{stage}", "id": str(uuid.uuid4()), "ts": now_iso(),
             "device_id": "laptop", "suggestion_id": suggestion_id, "call_id": None,
             "chars": 120, "lines": 6, "checkpoint_s": None, "commit": None,
             "environment": None, "tool": "claude-code", "model": "claude-sonnet-4-5",
             "language": "python", "workspace": "ws-0123456789abcdef"}
    event.update(fields)
    return event


@dataclass
class Org:
    """admin; teams core (lead lena, developers alice and bob) and web (carol); CI for core."""

    tokens: dict[str, str] = field(default_factory=dict)

    def auth(self, name: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[name]}"}


async def make_org(store: Store) -> Org:
    org = Org()
    org.tokens["admin"] = (await store.create_first_admin("admin")).token.token
    for team in ("core", "web"):
        await store.create_team(SYSTEM, team)
    for name, role, teams in (("lena", "lead", ["core"]), ("alice", "developer", ["core"]),
                              ("bob", "developer", ["core"]),
                              ("carol", "developer", ["web"])):
        created = await store.create_member(SYSTEM, MemberIn(name=name, role=role,  # type: ignore[arg-type]
                                                             teams=teams))
        org.tokens[name] = created.token.token
    org.tokens["ci"] = (await store.create_ci_token(SYSTEM, "core", "deploy")).token
    return org
