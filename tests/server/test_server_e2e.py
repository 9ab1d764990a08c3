"""``meterline server run`` as real processes on loopback: one with workers on SQLite, and
two processes on one PostgreSQL ingesting overlapping batches at once."""

from __future__ import annotations

import asyncio
import os
import random
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from server_factory import call, expected_totals, random_events, suggestion, unique_events
from server_support import ServerProcess, meterline_command, plain_pg


def meterline(*args: str, db: str | None = None) -> str:
    """Run the CLI as a user would; returns stdout (raises on failure)."""
    env = {k: v for k, v in os.environ.items() if k != "METERLINE_SERVER_DB"}
    if db is not None:
        env["METERLINE_SERVER_DB"] = db
    done = subprocess.run([*meterline_command(), "server", *args], capture_output=True,
                          text=True, timeout=60, env=env, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout


def token_from(output: str) -> str:
    return output.strip().splitlines()[-1]


def metric(text: str, name: str, **labels: str) -> float:
    wanted = ",".join(f'{k}="{v}"' for k, v in labels.items())
    match = re.search(rf"^{name}\{{{re.escape(wanted)}\}} (\S+)$", text, re.MULTILINE)
    assert match, f"{name}{{{wanted}}} not in metrics"
    return float(match.group(1))


def test_sqlite_default_with_two_workers(meterline_home: Path) -> None:
    admin = token_from(meterline("init"))  # no --db: server.db in $METERLINE_HOME
    assert (meterline_home / "server.db").exists()
    alice = token_from(meterline("member", "create", "alice"))
    server = ServerProcess(f"sqlite:///{meterline_home / 'server.db'}", workers=2)
    with server, httpx.Client(base_url=server.url, timeout=30) as http:
        auth = {"Authorization": f"Bearer {alice}"}
        for i in range(10):
            sent = http.post("/api/v1/events", headers=auth, json={"events": [
                call(input_tokens=i, output_tokens=0, cache_read_tokens=0,
                     cache_write_tokens=0, reasoning_tokens=0),
                suggestion("offered", f"s{i}")]})
            assert sent.json() == {"inserted": 2, "duplicates": 0}
        report = http.get("/api/v1/reports/outcomes", params={"group_by": "developer"},
                          headers={"Authorization": f"Bearer {admin}"}).json()
        assert report["total"]["tokens"]["input"] == sum(range(10))
        assert report["total"]["funnel"]["offered"]["events"] == 10
        metrics = http.get("/metrics").text  # summed over both workers
    assert metric(metrics, "meterline_http_requests_total", method="POST",
                  route="/api/v1/events", status="200") == 10
    assert metric(metrics, "meterline_events_total", result="inserted") == 20


async def _send_all(urls: list[str], token: str, batches: list[list[dict[str, Any]]]
                    ) -> list[dict[str, int]]:
    """Every batch to every server, all at once."""
    limits = httpx.Limits(max_connections=16)
    async with httpx.AsyncClient(timeout=60, limits=limits) as http:
        async def send(url: str, batch: list[dict[str, Any]]) -> dict[str, int]:
            response = await http.post(f"{url}/api/v1/events", json={"events": batch},
                                       headers={"Authorization": f"Bearer {token}"})
            assert response.status_code == 200, response.text
            result: dict[str, int] = response.json()
            return result

        jobs = [send(url, batch) for batch in batches for url in urls]
        random.Random(7).shuffle(jobs)
        return await asyncio.gather(*jobs)


async def _raw_counts(url: str) -> tuple[int, int, int]:
    conn = await asyncpg.connect(plain_pg(url))
    try:
        row = await conn.fetchrow(
            "SELECT (SELECT count(*) FROM calls), (SELECT count(*) FROM suggestion_events), "
            "(SELECT coalesce(sum(input_tokens), 0) FROM usage_daily WHERE grain = 'all')")
        assert row is not None
        return int(row[0]), int(row[1]), int(row[2])
    finally:
        await conn.close()


@pytest.mark.postgres
@pytest.mark.slow
def test_two_servers_on_one_postgres_count_overlapping_batches_once(pg_test_url: str) -> None:
    admin = token_from(meterline("init", db=pg_test_url))
    tokens = {name: token_from(meterline("member", "create", name, db=pg_test_url))
              for name in ("alice", "bob")}
    servers = [ServerProcess(pg_test_url, wait=False) for _ in range(2)]
    try:
        for server in servers:
            server.wait_healthy()
        rng = random.Random(2026)
        results: list[dict[str, int]] = []
        expected = {}
        for name, token in tokens.items():
            events = random_events(rng, 3000)
            expected[name] = expected_totals(events)
            batches = []
            for _ in range(6):  # overlapping windows, each sent to both servers at once
                start = rng.randrange(len(events))
                batches.append([events[(start + k) % len(events)] for k in range(1000)])
            batches += [events[i:i + 1000] for i in range(0, len(events), 1000)]
            results += asyncio.run(_send_all([s.url for s in servers], token, batches))
        want = expected["alice"] + expected["bob"]
        assert sum(r["inserted"] for r in results) == unique_events(want)
        assert sum(r["inserted"] + r["duplicates"] for r in results) == 2 * 2 * (6 + 3) * 1000

        report = httpx.get(f"{servers[0].url}/api/v1/reports/outcomes",
                           params={"group_by": "developer", "from": "2020-01-01"},
                           headers={"Authorization": f"Bearer {admin}"}, timeout=30).json()
        total = report["total"]
        assert total["calls"] == want["calls"]
        assert total["tokens"]["input"] == want["input_tokens"]
        assert total["tokens"]["cache_read"] == want["cache_read_tokens"]
        assert round(total["cost_usd"] * 1_000_000) == want["cost_micro_usd"]
        assert total["unknown_cost_calls"] == want["unknown_cost_calls"]
        for stage in ("offered", "accepted", "rejected", "committed"):
            assert total["funnel"][stage]["lines"] == want[f"{stage}_lines"], stage
        retained = {r["checkpoint_s"]: r["chars"] for r in total["retention"]}
        assert retained[900] == want["retained_900_chars"]
        per_developer = {r["group"]["developer"]: r["calls"] for r in report["rows"]}
        assert per_developer == {"alice": expected["alice"]["calls"],
                                 "bob": expected["bob"]["calls"]}
        calls, suggestions, input_tokens = asyncio.run(_raw_counts(pg_test_url))
        assert calls == want["calls"]
        assert suggestions == unique_events(want) - want["calls"]
        assert input_tokens == want["input_tokens"]
    finally:
        for server in servers:
            server.stop()


def test_a_server_process_keeps_what_it_loaded_out_of_the_collectors_way(
        meterline_home: Path) -> None:
    """The app's own start (the path ``meterline server run``'s workers take) freezes what
    it loaded and widens the young generation; an app handed a store (tests) does not."""
    script = (
        "import asyncio, gc, sys\n"
        "from server._app import create_app\n"
        "from server._settings import Settings\n"
        "async def main():\n"
        "    app = create_app(Settings(db_url=sys.argv[1]))\n"
        "    async with app.router.lifespan_context(app):\n"
        "        print(gc.get_freeze_count(), gc.get_threshold()[0])\n"
        "asyncio.run(main())\n")
    url = f"sqlite+aiosqlite:///{meterline_home / 'server.db'}"
    done = subprocess.run([sys.executable, "-c", script, url], capture_output=True, text=True,
                          timeout=120, check=True)
    frozen, young = (int(part) for part in done.stdout.split())
    assert frozen > 10_000
    assert young == 50_000
