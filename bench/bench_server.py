"""Benchmark the team server: ingest rate, and report latency over millions of events.

    .venv/bin/python bench/bench_server.py                       # both backends
    .venv/bin/python bench/bench_server.py --backend sqlite --report-events 1000000

Everything runs for real on this machine: ``meterline server run`` as a subprocess on a
loopback port, a temporary SQLite file, and a fresh PostgreSQL database
(``meterline_bench_<random>``, dropped afterwards) on ``--pg-url`` (default
$METERLINE_TEST_PG_URL, else postgresql://postgres@127.0.0.1:5432/test).

1. Ingest: pre-serialised batches of 1,000 events (60% calls, 40% suggestion events, UUIDv7
   ids, every tenth batch resent, so duplicates are on the path) POSTed to /api/v1/events by
   several concurrent clients. Prints events/s over the whole run and per-request latency.
   Also the storage layer alone (Store.ingest in-process, no HTTP), to show the split.
2. Reports: the database is filled with ``--report-events`` raw events (200 developers in
   10 teams, 90 days, 3 tools, 4 models, 6 languages) by SQL, and the daily rollups and the
   summaries are built from them by SQL aggregation (the same sums ingest maintains). Then
   GET /api/v1/reports/outcomes is timed for admins, leads and developers over several
   groupings and ranges; with ``--all-shapes``, also every ``group_by`` an admin may ask
   for (one to three of the six dimensions) over 90 days.

This is a script that prints figures, not a timed test: the machine is shared and noisy, so
it prints medians and tails, and how many events each figure covers.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx
import msgspec
import uuid_utils

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from server._db import create_engine, upgrade  # noqa: E402
from server._settings import database_url  # noqa: E402
from server._store import Store  # noqa: E402
from server._summaries import rebuild_statements  # noqa: E402
from server._tables import GRAIN_DETAIL  # noqa: E402
from server._wire import EventBatch  # noqa: E402

DEVELOPERS = 200
TEAMS = 10
DAYS = 90
TOOLS = ("claude-code", "copilot", "cursor")
MODELS = ("claude-sonnet-4-5", "gpt-5", "claude-haiku-4-5", "gemini-2.5-pro")
LANGUAGES = ("python", "typescript", "go", "rust", "java", "sql")
CHECKPOINTS = (30, 120, 300, 600, 900)


# ----------------------------------------------------------------------------- helpers


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


def describe_ms(values: list[float]) -> str:
    ms = [v * 1000 for v in values]
    return (f"median {statistics.median(ms):7.1f} ms   p95 {percentile(ms, 95):7.1f} ms   "
            f"p99 {percentile(ms, 99):7.1f} ms   (n={len(ms)})")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def meterline(home: Path, db: str, *args: str) -> str:
    script = Path(sys.executable).parent / "meterline"
    done = subprocess.run([str(script), "server", "--db", db, *args], capture_output=True,
                          text=True, env={**os.environ, "METERLINE_HOME": str(home)},
                          check=False, timeout=600)
    if done.returncode != 0:
        raise SystemExit(f"meterline server {' '.join(args)} failed: {done.stderr}")
    return done.stdout.strip().splitlines()[-1]


@contextmanager
def server_process(home: Path, db: str, workers: int) -> Iterator[str]:
    port = free_port()
    script = Path(sys.executable).parent / "meterline"
    log = (home / f"server-{port}.log").open("wb")
    process = subprocess.Popen(
        [str(script), "server", "--db", db, "run", "--port", str(port), "--workers",
         str(workers), "--no-access-log", "--log-level", "warning"],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        env={**os.environ, "METERLINE_HOME": str(home)})
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"server did not start: {(home / log.name).read_text()}")
            time.sleep(0.2)
        yield url
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
        log.close()


@contextmanager
def database(backend: str, pg_url: str, home: Path) -> Iterator[str]:
    """A fresh, migrated database on ``backend``; removed afterwards."""
    if backend == "sqlite":
        yield f"sqlite:///{home / 'bench.db'}"
        return
    name = f"meterline_bench_{secrets.token_hex(4)}"
    asyncio.run(_pg_admin(pg_url, f'CREATE DATABASE "{name}"'))
    parts = urlsplit(pg_url)
    try:
        yield urlunsplit((parts.scheme, parts.netloc, "/" + name, "", ""))
    finally:
        asyncio.run(_pg_admin(pg_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


async def _pg_admin(url: str, sql: str) -> None:
    conn = await asyncpg.connect("postgresql://" + url.split("://", 1)[1])
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


# ------------------------------------------------------------------------------ ingest


def make_batches(count: int, size: int) -> list[bytes]:
    """``count`` batches of ``size`` new events, as the agent's sync would send them."""
    now = datetime.now(UTC)
    batches = []
    n = 0
    for _ in range(count):
        events: list[dict[str, Any]] = []
        for _ in range(size):
            n += 1
            ts = (now - timedelta(seconds=n % 86_400)).isoformat()
            common = {"id": str(uuid_utils.uuid7()), "ts": ts, "device_id": "laptop-1",
                      "language": LANGUAGES[n % 6], "workspace": "ws-5f2b9c0e7a1d3b84"}
            if n % 5 < 3:
                events.append({
                    "type": "call", **common, "tool": TOOLS[n % 3], "source": "proxy",
                    "provider": "anthropic", "model": MODELS[n % 4], "kind": "chat",
                    "input_tokens": 200 + n % 3000, "output_tokens": 50 + n % 800,
                    "cache_read_tokens": n % 20_000, "cache_write_tokens": n % 2000,
                    "cache_write_1h_tokens": 0, "reasoning_tokens": n % 50,
                    "cost_micro_usd": 3 * (200 + n % 3000) + 15 * (50 + n % 800),
                    "estimated": False, "latency_ms": 800 + n % 2000, "status": "ok",
                    "request_id": f"req_{uuid_utils.uuid4().hex}"})
            else:
                stage = ("offered", "accepted", "retained", "committed")[n % 4]
                events.append({
                    "type": f"suggestion.{stage}", **common, "suggestion_id": f"s-{n // 4}",
                    "call_id": None, "chars": 40 + n % 400, "lines": 1 + n % 12,
                    "checkpoint_s": CHECKPOINTS[n % 5] if stage == "retained" else None,
                    "commit": f"{n:040x}" if stage == "committed" else None,
                    "environment": None, "tool": TOOLS[n % 3], "model": MODELS[n % 4]})
        batches.append(msgspec.json.encode({"events": events}))
    return batches


async def post_all(url: str, token: str, batches: list[bytes], concurrency: int
                   ) -> tuple[float, list[float], int, int]:
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    for batch in batches:
        queue.put_nowait(batch)
    latencies: list[float] = []
    counts = [0, 0]
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}

    async def client() -> None:
        async with httpx.AsyncClient(base_url=url, timeout=120) as http:
            while not queue.empty():
                body = queue.get_nowait()
                started = time.perf_counter()
                response = await http.post("/api/v1/events", content=body, headers=headers)
                latencies.append(time.perf_counter() - started)
                if response.status_code != 200:
                    raise SystemExit(f"ingest failed: {response.status_code} {response.text}")
                result = response.json()
                counts[0] += result["inserted"]
                counts[1] += result["duplicates"]

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    return time.perf_counter() - started, latencies, counts[0], counts[1]


async def storage_only(db: str, batches: list[bytes], developer: str) -> tuple[float, int]:
    """The same batches through Store.ingest in-process: decode and store, no HTTP."""
    store = Store(create_engine(database_url(db)))
    try:
        member_id, _, _ = await store.member_for_report(developer)
        decoded = [msgspec.json.decode(b, type=EventBatch) for b in batches]
        started = time.perf_counter()
        inserted = 0
        for batch in decoded:
            inserted += (await store.ingest(member_id, batch)).inserted
        return time.perf_counter() - started, inserted
    finally:
        await store.close()


def bench_ingest(backend: str, pg_url: str, batches: int, concurrency: int, workers: int
                 ) -> None:
    with tempfile.TemporaryDirectory(prefix="meterline-bench-") as folder:
        home = Path(folder)
        with database(backend, pg_url, home) as db:
            meterline(home, db, "init")
            # In a team, as developers are: their batches also add to the team's summaries.
            meterline(home, db, "team", "create", "bench")
            token = meterline(home, db, "member", "create", "dev-bench", "--team", "bench")
            meterline(home, db, "member", "create", "dev-storage", "--team", "bench")
            payload = make_batches(batches, 1000)
            # Every tenth batch goes twice: duplicates take the same path as new events.
            sent = payload + payload[::10]
            with server_process(home, db, workers) as url:
                asyncio.run(post_all(url, token, make_batches(5, 1000), concurrency))  # warm
                elapsed, latencies, inserted, duplicates = asyncio.run(
                    post_all(url, token, sent, concurrency))
            events = inserted + duplicates
            print(f"  HTTP ingest, {workers} worker(s), {concurrency} concurrent clients: "
                  f"{events:,} events in {len(sent)} batches of 1,000 "
                  f"({inserted:,} new, {duplicates:,} duplicates)")
            print(f"    {events / elapsed:>10,.0f} events/s   per batch: {describe_ms(latencies)}")
            fresh = make_batches(max(20, batches // 4), 1000)
            elapsed, inserted = asyncio.run(storage_only(db, fresh, "dev-storage"))
            print(f"  storage only (Store.ingest in-process, one batch at a time): "
                  f"{inserted / elapsed:>10,.0f} events/s ({inserted:,} events)")


# ----------------------------------------------------------------------------- reports


def _case(index: str, values: tuple[object, ...]) -> str:
    """SQL picking ``values[index % len(values)]`` (portable: no arrays in SQLite)."""
    whens = " ".join(f"WHEN {i} THEN {value!r}" for i, value in enumerate(values))
    return f"(CASE ({index}) % {len(values)} {whens} END)"


def fill_sql(backend: str, calls: int, suggestions: int, first_day: int, dev_base: int
             ) -> list[str]:
    """SQL that writes ``calls`` + ``suggestions`` raw events, then the rollups from them."""
    day_ms = 86_400_000
    if backend == "postgresql":
        series = "generate_series(1, {n}) AS g(i)"
        new_id = "gen_random_uuid()"
        commit = "substr(md5(i::text), 1, 40)"
        div = "/"
    else:
        series = ("(WITH RECURSIVE r(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM r "
                  "WHERE i < {n}) SELECT i FROM r) AS g")
        new_id = "lower(hex(randomblob(16)))"
        commit = "lower(hex(randomblob(20)))"
        div = "/"
    dev = f"(i % {DEVELOPERS})"
    day = f"({first_day} + (i {div} {DEVELOPERS}) % {DAYS})"
    tool = _case(f"{dev} + (i {div} 7) % 2", TOOLS)
    model = _case(f"{dev} * 3 + (i {div} 11) % 2", MODELS)
    language = _case(f"{dev} * 5 + (i {div} 13) % 3", LANGUAGES)
    input_tokens = "(200 + (i * 37) % 3000)"
    output_tokens = "(50 + (i * 53) % 800)"
    cache_read = "((i * 101) % 20000)"
    cache_write = "((i * 7) % 2000)"
    statements = [
        f"""INSERT INTO calls (id, developer_id, ts_ms, day, device_id, tool, source, provider,
            model, kind, input_tokens, output_tokens, cache_read_tokens, cache_write_tokens,
            cache_write_1h_tokens, reasoning_tokens, cost_micro_usd, estimated, latency_ms,
            status, language, workspace, request_id)
        SELECT {new_id}, {dev_base} + {dev}, CAST({day} AS BIGINT) * {day_ms} + i % 86400, {day},
            'laptop', {tool}, 'proxy', 'anthropic', {model}, 'chat', {input_tokens},
            {output_tokens}, {cache_read}, {cache_write}, 0, 0,
            CASE WHEN i % 50 = 0 THEN NULL ELSE 3 * {input_tokens} + 15 * {output_tokens}
                 + 3 * {cache_read} / 10 + 375 * {cache_write} / 100 END,
            {'false' if backend == 'postgresql' else '0'}, 900,
            CASE WHEN i % 97 = 0 THEN 'error' ELSE 'ok' END, {language}, 'ws-bench',
            'req_' || i
        FROM {series.format(n=calls)}""",
        f"""INSERT INTO suggestion_events (id, developer_id, ts_ms, day, type, suggestion_id,
            call_id, chars, lines, checkpoint_s, commit_sha, environment, device_id, tool,
            model, language, workspace)
        SELECT {new_id}, {dev_base} + {dev}, CAST({day} AS BIGINT) * {day_ms}, {day},
            {_case("i % 10", ("offered",) * 4 + ("accepted",) * 2 + ("rejected",)
                   + ("retained",) * 2 + ("committed",))},
            's' || (i {div} 10), NULL, 40 + (i * 17) % 400, 1 + ((i * 17) % 400) {div} 40,
            CASE WHEN i % 10 IN (7, 8) THEN
                 {_case(f"i {div} 10", CHECKPOINTS)}
                 END,
            CASE WHEN i % 10 = 9 THEN {commit} END, NULL, 'laptop', {tool}, {model},
            {language}, 'ws-bench'
        FROM {series.format(n=suggestions)}""",
    ]
    call_sums = ("count(*), sum(input_tokens), sum(output_tokens), sum(cache_read_tokens), "
                 "sum(cache_write_tokens), sum(cache_write_1h_tokens), sum(reasoning_tokens), "
                 "coalesce(sum(cost_micro_usd), 0), "
                 "sum(CASE WHEN cost_micro_usd IS NULL THEN 1 ELSE 0 END), "
                 "sum(CASE WHEN status = 'error' THEN 1 ELSE 0 END), "
                 "sum(CASE WHEN estimated THEN 1 ELSE 0 END)")
    stage_sums = ", ".join(
        f"sum(CASE WHEN type = '{stage}' THEN {measure} ELSE 0 END)"
        for stage in ("offered", "accepted", "rejected", "committed", "deployed")
        for measure in ("1", "chars", "lines"))
    stage_columns = ", ".join(f"{stage}_{measure}" for stage in
                              ("offered", "accepted", "rejected", "committed", "deployed")
                              for measure in ("events", "chars", "lines"))
    usage_columns = ("grain, day, developer_id, tool, model, language, calls, input_tokens, "
                     "output_tokens, cache_read_tokens, cache_write_tokens, "
                     "cache_write_1h_tokens, reasoning_tokens, cost_micro_usd, "
                     "unknown_cost_calls, error_calls, estimated_calls")
    additions = ", ".join(f"{c} = usage_daily.{c} + excluded.{c}"
                          for c in stage_columns.split(", "))
    for grain, kept in GRAIN_DETAIL.items():
        # The same sums ingest keeps: each grain keeps its dimensions, '' for the others.
        keys = ", ".join(f"coalesce({d}, '')" if d in kept else "''"
                         for d in ("tool", "model", "language"))
        group = ", ".join(["day", "developer_id",
                           *(f"coalesce({d}, '')" for d in ("tool", "model", "language")
                             if d in kept)])
        statements += [
            f"""INSERT INTO usage_daily ({usage_columns})
            SELECT '{grain}', day, developer_id, {keys}, {call_sums}
            FROM calls GROUP BY {group}""",
            f"""INSERT INTO usage_daily (grain, day, developer_id, tool, model, language,
                {stage_columns})
            SELECT '{grain}', day, developer_id, {keys}, {stage_sums}
            FROM suggestion_events WHERE type NOT IN ('retained', 'deployed')
            GROUP BY {group}
            ON CONFLICT (grain, day, developer_id, tool, model, language) DO UPDATE SET
            {additions}""",
            f"""INSERT INTO retention_daily (grain, day, developer_id, tool, model, language,
                checkpoint_s, events, chars, lines)
            SELECT '{grain}', day, developer_id, {keys}, checkpoint_s, count(*), sum(chars),
                   sum(lines)
            FROM suggestion_events WHERE type = 'retained'
            GROUP BY {group}, checkpoint_s""",
        ]
    return statements


def people_sql(backend: str) -> tuple[str, str]:
    false = "false" if backend == "postgresql" else "0"
    members = ", ".join(f"('dev-{i:03d}', 'developer', {false}, {false}, 0)"
                        for i in range(DEVELOPERS))
    teams = ", ".join(f"('team-{t:02d}', 0)" for t in range(TEAMS))
    return (f"INSERT INTO members (name, role, share_individual, disabled, created_ms) "
            f"VALUES {members}", f"INSERT INTO teams (name, created_ms) VALUES {teams}")


async def fill(db: str, events: int) -> tuple[int, int, float]:
    """Raw events and rollups for ``events`` events; returns (calls, suggestions, seconds)."""
    import sqlalchemy as sa

    engine = create_engine(database_url(db))
    backend = engine.dialect.name
    await upgrade(engine)
    calls = events * 11 // 20
    suggestions = events - calls
    first_day = (datetime.now(UTC).date() - datetime(1970, 1, 1).date()).days - DAYS + 1
    started = time.perf_counter()
    async with engine.begin() as conn:
        for statement in people_sql(backend):
            await conn.execute(sa.text(statement))
        dev_base = int(await conn.scalar(sa.text(
            "SELECT min(id) FROM members WHERE name LIKE 'dev-%'")))
        await conn.execute(sa.text(
            "INSERT INTO team_members (team_id, member_id) "
            f"SELECT t.id, m.id FROM teams t JOIN members m ON m.id - {dev_base} >= 0 "
            f"AND (m.id - {dev_base}) % {TEAMS} = CAST(substr(t.name, 6) AS INTEGER) "
            "WHERE m.name LIKE 'dev-%'"))
    for statement in fill_sql(backend, calls, suggestions, first_day, dev_base):
        async with engine.begin() as conn:
            await conn.execute(sa.text(statement))
    # The summaries across developers, from the rollups: the same arithmetic ingest does.
    async with engine.begin() as conn:
        for statement in rebuild_statements(backend):
            await conn.execute(sa.text(statement))
    async with engine.connect() as conn:
        if backend == "postgresql":
            await conn.execution_options(isolation_level="AUTOCOMMIT")
            await conn.execute(sa.text("VACUUM ANALYZE"))
        else:
            await conn.execute(sa.text("ANALYZE"))
            await conn.commit()
    elapsed = time.perf_counter() - started
    await engine.dispose()
    return calls, suggestions, elapsed


def bench_reports(backend: str, pg_url: str, events: int, repeats: int, workers: int,
                  all_shapes: int) -> None:
    with tempfile.TemporaryDirectory(prefix="meterline-bench-") as folder:
        home = Path(folder)
        with database(backend, pg_url, home) as db:
            calls, suggestions, seconds = asyncio.run(fill(db, events))
            rows = asyncio.run(_rollup_rows(db))
            print(f"  filled {calls + suggestions:,} raw events ({calls:,} calls, "
                  f"{suggestions:,} suggestion events; {DEVELOPERS} developers, {TEAMS} "
                  f"teams, {DAYS} days) in {seconds:.0f} s; rollups: {rows[0]:,} usage rows, "
                  f"{rows[1]:,} retention rows")
            admin = meterline(home, db, "init")
            lead = meterline(home, db, "member", "create", "lead-00", "--role", "lead",
                             "--team", "team-00")
            developer = meterline(home, db, "member", "token", "dev-010")
            today = datetime.now(UTC).date()
            last_30 = {"from": (today - timedelta(days=29)).isoformat()}
            last_90 = {"from": (today - timedelta(days=89)).isoformat()}
            scenarios = [
                ("admin   by day, 30 days", admin, {"group_by": "day", **last_30}),
                ("admin   by model, 30 days", admin, {"group_by": "model", **last_30}),
                ("admin   by team, 90 days", admin, {"group_by": "team", **last_90}),
                ("admin   by developer, 30 days", admin, {"group_by": "developer", **last_30}),
                ("admin   by tool+language, 90 days", admin,
                 {"group_by": "tool,language", **last_90}),
                ("admin   by model+tool, 90 days", admin,
                 {"group_by": "model,tool", **last_90}),
                ("admin   by model+language+day, 90 days", admin,
                 {"group_by": "model,language,day", **last_90}),
                ("admin   by team+model, 90 days", admin,
                 {"group_by": "team,model", **last_90}),
                ("lead    by developer, 30 days", lead, {"group_by": "developer", **last_30}),
                ("lead    by day, 90 days", lead, {"group_by": "day", **last_90}),
                ("developer by day, 90 days", developer, {"group_by": "day", **last_90}),
            ]
            with server_process(home, db, workers) as url:
                every: list[float] = []
                with httpx.Client(base_url=url, timeout=120) as http:
                    for label, token, params in scenarios:
                        headers = {"Authorization": f"Bearer {token}"}
                        first = http.get("/api/v1/reports/outcomes", params=params,
                                         headers=headers)
                        if first.status_code != 200:
                            raise SystemExit(f"report failed: {first.text}")
                        covered = first.json()["total"]["calls"]
                        timings = []
                        for _ in range(repeats):
                            started = time.perf_counter()
                            response = http.get("/api/v1/reports/outcomes", params=params,
                                                headers=headers)
                            timings.append(time.perf_counter() - started)
                            assert response.status_code == 200
                        every += timings
                        print(f"    {label:<40} {describe_ms(timings)}  "
                              f"[{covered:,} calls in range]")
                    print(f"    {'all report requests':<40} {describe_ms(every)}")
                    if all_shapes:
                        print(f"  every group_by for an admin, 90 days "
                              f"({all_shapes} requests each, after one untimed):")
                        dims = ("developer", "team", "model", "tool", "language", "day")
                        headers = {"Authorization": f"Bearer {admin}"}
                        for n in (1, 2, 3):
                            for shape in itertools.combinations(dims, n):
                                params = {"group_by": ",".join(shape), **last_90}
                                # One untimed request first, as in the scenarios above: the
                                # first request of a shape pays for cold pages and caches.
                                warm = http.get("/api/v1/reports/outcomes", params=params,
                                                headers=headers)
                                assert warm.status_code == 200
                                timings = []
                                for _ in range(all_shapes):
                                    started = time.perf_counter()
                                    response = http.get("/api/v1/reports/outcomes",
                                                        params=params, headers=headers)
                                    timings.append(time.perf_counter() - started)
                                    assert response.status_code == 200
                                rows = len(response.json()["rows"])
                                print(f"    {params['group_by']:<40} {describe_ms(timings)}  "
                                      f"[{rows:,} rows, {len(response.content) / 1e6:.1f} MB]")


async def _rollup_rows(db: str) -> tuple[int, int]:
    import sqlalchemy as sa

    engine = create_engine(database_url(db))
    async with engine.connect() as conn:
        usage = int(await conn.scalar(sa.text("SELECT count(*) FROM usage_daily")))
        retention = int(await conn.scalar(sa.text("SELECT count(*) FROM retention_daily")))
    await engine.dispose()
    return usage, retention


# -------------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--pg-url", default=os.environ.get(
        "METERLINE_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test"))
    parser.add_argument("--ingest-batches", type=int, default=200,
                        help="Batches of 1,000 new events to send (default 200).")
    parser.add_argument("--concurrency", type=int, default=4,
                        help="Concurrent HTTP clients (default 4).")
    parser.add_argument("--workers", type=int, default=2, help="Server worker processes.")
    parser.add_argument("--report-events", type=int, default=10_000_000,
                        help="Raw events behind the report benchmark (default 10,000,000).")
    parser.add_argument("--report-repeats", type=int, default=40)
    parser.add_argument("--all-shapes", type=int, default=0, metavar="N",
                        help="Also time every group_by for an admin, N requests each.")
    parser.add_argument("--skip-ingest", action="store_true")
    parser.add_argument("--skip-reports", action="store_true")
    args = parser.parse_args()
    if shutil.which("nproc"):
        cores = subprocess.run(["nproc"], capture_output=True, text=True, check=False)
        print(f"machine: {cores.stdout.strip()} cores, load average "
              f"{os.getloadavg()[0]:.2f} at start")
    backends = ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]
    for backend in backends:
        if not args.skip_ingest:
            print(f"\n[{backend}] ingest")
            bench_ingest(backend, args.pg_url, args.ingest_batches, args.concurrency,
                         args.workers)
        if not args.skip_reports:
            print(f"\n[{backend}] reports over {args.report_events:,} events")
            bench_reports(backend, args.pg_url, args.report_events, args.report_repeats,
                          args.workers, args.all_shapes)


if __name__ == "__main__":
    main()
