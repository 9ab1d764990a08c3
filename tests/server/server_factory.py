"""Builders for the server's tests: events in the wire schema, and a small organisation."""

from __future__ import annotations

import random
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from server._access import SYSTEM
from server._store import Store
from server._wire import MemberIn

CALL_TOKENS = ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens",
               "cache_write_1h_tokens", "reasoning_tokens")


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


def random_events(rng: random.Random, n: int) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    for i in range(n):
        day = rng.randrange(3)
        common = {"ts": now_iso(day), "model": rng.choice(["m1", "m2"]),
                  "tool": rng.choice(["t1", "t2"]), "language": rng.choice([None, "go"])}
        earlier = [e for e in events[-20:] if e["type"] == "call" and e["request_id"]]
        if earlier and rng.random() < 0.15:
            # The same provider call reaching the server by a second path (proxy and a log
            # importer): a new event id, the same request_id and usage.
            events.append({**rng.choice(earlier), "id": str(uuid.uuid4()),
                           "source": "import:claude-code"})
        elif rng.random() < 0.6:
            tokens = {name: rng.randrange(1000) for name in CALL_TOKENS[:4]}
            events.append(call(**common, **tokens, cache_write_1h_tokens=0,
                               reasoning_tokens=0,
                               cost_micro_usd=rng.choice([None, rng.randrange(10_000)]),
                               status=rng.choice(["ok", "error"]),
                               request_id=rng.choice([None, f"req_{i}"])))
        else:
            stage = rng.choice(["offered", "accepted", "rejected", "retained", "committed"])
            events.append(suggestion(stage, f"s{i}", **common, chars=rng.randrange(500),
                                     lines=rng.randrange(30),
                                     checkpoint_s=rng.choice([30, 900])
                                     if stage == "retained" else None))
    return events


def expected_totals(events: list[dict[str, Any]]) -> Counter[str]:
    """What the rollups must say: each event id once, each call request_id once."""
    seen: set[str] = set()
    requests: set[str] = set()
    totals: Counter[str] = Counter()
    for event in events:
        if event["id"] in seen:
            continue
        seen.add(event["id"])
        if event["type"] == "call":
            if event["request_id"] is not None:
                if event["request_id"] in requests:
                    continue
                requests.add(event["request_id"])
            totals["calls"] += 1
            for name in CALL_TOKENS:
                totals[name] += event[name]
            totals["cost_micro_usd"] += event["cost_micro_usd"] or 0
            totals["unknown_cost_calls"] += event["cost_micro_usd"] is None
            totals["error_calls"] += event["status"] == "error"
        else:
            stage = event["type"].removeprefix("suggestion.")
            key = f"retained_{event['checkpoint_s']}" if stage == "retained" else stage
            totals[f"{key}_events"] += 1
            totals[f"{key}_chars"] += event["chars"]
            totals[f"{key}_lines"] += event["lines"]
    return totals


def unique_events(totals: Counter[str]) -> int:
    """How many events of ``expected_totals`` the server should call new."""
    return totals["calls"] + sum(v for k, v in totals.items() if k.endswith("_events"))
