"""The store on real SQLite files: migrations, idempotence, rollups, reservations."""

from __future__ import annotations

import asyncio
import random
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent import BudgetBlocked, Call, Store, SuggestionEvent, _store
from agent._budget import Budget
from agent._queries import breakdown, usage_between, usage_series
from agent._schema import BUCKET_MS, HOUR_MS, MIGRATIONS, applied, connect, migrate, roll_up

T0 = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


def call(**fields: object) -> Call:
    base: dict[str, object] = {"tool": "test", "provider": "anthropic",
                               "model": "claude-sonnet-4-5", "input_tokens": 10,
                               "output_tokens": 5, "cost_micro_usd": 100, "ts": T0}
    return Call(**{**base, **fields})  # type: ignore[arg-type]


def test_migrations_from_blank_and_rerun(tmp_path: Path) -> None:
    db_file = tmp_path / "m.db"
    assert migrate(db_file) == [name for name, _ in MIGRATIONS]
    assert migrate(db_file) == []
    assert applied(db_file) == [name for name, _ in MIGRATIONS]
    db = connect(db_file)
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
    tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"calls", "suggestion_events", "usage_15m", "usage_hourly", "reservations",
            "sync_state", "budgets", "vendor_quota", "_migrations"} <= tables


def test_a_failing_migration_leaves_nothing_behind(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(db: sqlite3.Connection) -> None:
        db.execute("CREATE TABLE half_done (x)")
        raise RuntimeError("boom")

    monkeypatch.setattr("agent._schema.MIGRATIONS", [*MIGRATIONS, ("9999_broken", broken)])
    db_file = tmp_path / "m.db"
    with pytest.raises(RuntimeError):
        migrate(db_file)
    db = connect(db_file)
    names = {row[0] for row in db.execute("SELECT name FROM sqlite_master")}
    assert "half_done" not in names
    assert [r[0] for r in db.execute("SELECT name FROM _migrations")] == [
        name for name, _ in MIGRATIONS]


async def test_the_same_event_twice_counts_once(tmp_path: Path) -> None:
    async with await Store.open(tmp_path / "s.db") as store:
        first = call()
        assert (await store.add_calls([first])).inserted == 1
        again = await store.add_calls([first, call(id=first.id, input_tokens=999)])
        assert (again.inserted, again.duplicates) == (0, 2)
        total = await store.read(lambda db: usage_between(db, 0, 2**62))
    assert total.calls == 1
    assert total.tokens == 15


async def test_a_request_id_seen_by_another_path_counts_once(tmp_path: Path) -> None:
    async with await Store.open(tmp_path / "s.db") as store:
        proxy = call(source="proxy", request_id="req_abc")
        importer = call(source="import:claude-code", request_id="req_abc")
        other = call(source="proxy", request_id="req_other")
        result = await store.add_calls([proxy, importer, other])
        assert (result.inserted, result.duplicates) == (2, 1)
        sources = await store.read(lambda db: [r[0] for r in db.execute(
            "SELECT source FROM calls ORDER BY seq")])
    assert sources == ["proxy", "proxy"]


async def test_device_id_is_stable_and_stamped(tmp_path: Path) -> None:
    async with await Store.open(tmp_path / "s.db") as store:
        device = store.device_id
        await store.add_calls([call()])
    async with await Store.open(tmp_path / "s.db") as store:
        assert store.device_id == device
        stored = await store.read(lambda db: db.execute("SELECT device_id FROM calls").fetchone())
    assert stored[0] == device


async def test_suggestion_events_are_idempotent_and_rolled_up(tmp_path: Path) -> None:
    async with await Store.open(tmp_path / "s.db") as store:
        offered = SuggestionEvent(suggestion_id="s1", type="offered", chars=40, lines=2, ts=T0)
        accepted = SuggestionEvent(suggestion_id="s1", type="accepted", chars=40, lines=2, ts=T0)
        retained = SuggestionEvent(suggestion_id="s1", type="retained", chars=30, lines=2,
                                   checkpoint_s=30, ts=T0)
        await store.add_suggestion_events([offered, accepted, retained])
        result = await store.add_suggestion_events([accepted])
        assert result.duplicates == 1
        rows = await store.read(lambda db: db.execute(
            "SELECT type, checkpoint_s, events, chars, lines FROM outcomes_hourly "
            "ORDER BY type").fetchall())
    assert rows == [("accepted", 0, 1, 40, 2), ("offered", 0, 1, 40, 2),
                    ("retained", 30, 1, 30, 2)]


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    offsets=st.lists(st.integers(min_value=0, max_value=3 * 86_400_000), max_size=60),
    start=st.integers(min_value=0, max_value=3 * 86_400_000),
    length=st.integers(min_value=0, max_value=3 * 86_400_000),
)
def test_rollup_sums_equal_a_scan_for_any_window(tmp_path_factory: pytest.TempPathFactory,
                                                 offsets: list[int], start: int,
                                                 length: int) -> None:
    db_file = tmp_path_factory.mktemp("roll") / "r.db"
    migrate(db_file)
    db = connect(db_file)
    base = int(T0.timestamp() * 1000)
    rng = random.Random(len(offsets))
    rows = [(f"00000000-0000-7000-8000-{i:012d}", "d", base + off, "t", "s", "p",
             rng.choice(["m1", "m2"]), "chat", rng.randint(0, 99), rng.randint(0, 99), 0, 0, 0,
             0, rng.choice([None, rng.randint(0, 1000)]), 0, None, "ok", None, None, None)
            for i, off in enumerate(offsets)]
    rows = [(*row, row[8] + row[9]) for row in rows]
    # Some calls folded into the rollups, the rest stored after the last roll-up: the sums
    # are the same either way.
    cut = rng.randint(0, len(rows))
    for rolled, part in ((True, rows[:cut]), (False, rows[cut:])):
        db.executemany("INSERT INTO calls (id, device_id, ts, tool, source, provider, model, "
                       "kind, input_tokens, output_tokens, cache_read_tokens, "
                       "cache_write_tokens, cache_write_1h_tokens, reasoning_tokens, "
                       "cost_micro_usd, estimated, latency_ms, status, language, workspace, "
                       "request_id, total_tokens) VALUES "
                       "(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)", part)
        if rolled:
            db.execute("BEGIN IMMEDIATE")
            roll_up(db)
            db.execute("COMMIT")
    lo, hi = base + start, base + start + length
    inside = [r for r in rows if lo <= r[2] < hi]
    got = usage_between(db, lo, hi)
    assert got.calls == len(inside)
    assert got.tokens == sum(r[8] + r[9] for r in inside)
    assert got.cost_micro == sum(r[14] or 0 for r in inside)
    assert got.unknown_cost_calls == sum(r[14] is None for r in inside)
    # The breakdown and the series count whole hours and 15-minute buckets.
    hour_lo = lo - lo % HOUR_MS
    by_model = {b.key: (b.calls, b.tokens, b.cost_micro, b.unknown_cost_calls)
                for b in breakdown(db, lo, hi, "model")}
    hours = [r for r in rows if r[2] >= hour_lo and r[2] - r[2] % HOUR_MS < hi]
    assert by_model == {model: (len(mine), sum(r[8] + r[9] for r in mine),
                                sum(r[14] or 0 for r in mine), sum(r[14] is None for r in mine))
                        for model in {r[6] for r in hours}
                        for mine in [[r for r in hours if r[6] == model]]}
    bucket_lo = lo - lo % BUCKET_MS
    series = usage_series(db, lo, hi, BUCKET_MS)
    buckets = [r for r in rows if r[2] >= bucket_lo and r[2] - r[2] % BUCKET_MS < hi]
    assert sum(u.calls for u in series) == len(buckets)
    assert sum(u.cost_micro for u in series) == sum(r[14] or 0 for r in buckets)
    db.close()


async def test_calls_are_folded_into_the_rollups_after_their_commit(tmp_path: Path) -> None:
    path = tmp_path / "s.db"

    def rolled(db_file: Path) -> int:
        with sqlite3.connect(db_file) as db:
            return int(db.execute("SELECT COALESCE(SUM(calls), 0) FROM usage_15m").fetchone()[0])

    async with await Store.open(path) as store:
        await store.settle(None, [call(ts=datetime.now(UTC))])
        await store.add_calls([call(ts=datetime.now(UTC)) for _ in range(3)])
        # Stored: counted by every reader at once, not yet in the rollups themselves ...
        assert rolled(path) == 0
        assert (await store.read(lambda db: usage_between(db, 0, 2**62))).calls == 4
        await asyncio.sleep(_store.ROLL_UP_AFTER_S * 3)
        assert rolled(path) == 4  # ... folded in the background ...
        assert (await store.read(lambda db: usage_between(db, 0, 2**62))).calls == 4
        await store.add_calls([call(ts=datetime.now(UTC))])
    assert rolled(path) == 5  # ... and at the latest when the store closes.


async def test_calls_a_killed_process_left_unrolled_are_folded_by_the_next(
        tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    migrate(path)
    with sqlite3.connect(path) as db:  # as a process killed before its roll-up leaves them
        db.execute("INSERT INTO calls (id, device_id, ts, tool, source, provider, model, kind, "
                   "input_tokens, output_tokens, cache_read_tokens, cache_write_tokens, "
                   "cache_write_1h_tokens, reasoning_tokens, cost_micro_usd, estimated, status, "
                   "total_tokens) VALUES ('a', 'd', 1, 't', 's', 'p', 'm', 'chat', 5, 5, 0, 0, "
                   "0, 0, 7, 0, 'ok', 10)")
    async with await Store.open(path) as store:
        await asyncio.sleep(_store.ROLL_UP_AFTER_S * 3)
        assert await store.read(lambda db: db.execute(
            "SELECT calls, tokens, cost_micro_usd FROM usage_15m").fetchall()) == [(1, 10, 7)]
        assert (await store.read(lambda db: usage_between(db, 0, 2**62))).calls == 1


def test_the_migration_keeps_what_the_trigger_rolled_up(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    db = connect(path)
    db.execute("PRAGMA journal_mode = WAL")
    for _name, step in MIGRATIONS[:3]:  # a store as the trigger kept it
        step(db)
    db.execute("INSERT INTO calls (id, device_id, ts, tool, source, provider, model, kind, "
               "input_tokens, output_tokens, cache_read_tokens, cache_write_tokens, "
               "cache_write_1h_tokens, reasoning_tokens, cost_micro_usd, estimated, status, "
               "total_tokens) VALUES ('a', 'd', 1, 't', 's', 'p', 'm', 'chat', 5, 5, 0, 0, 0, 0, "
               "7, 0, 'ok', 10)")
    db.execute("CREATE TABLE _migrations (name TEXT PRIMARY KEY, applied_at_ms INTEGER NOT NULL)")
    db.executemany("INSERT INTO _migrations VALUES (?, 0)", [(n,) for n, _ in MIGRATIONS[:3]])
    db.execute("PRAGMA user_version = 3")
    db.close()
    assert migrate(path) == [name for name, _ in MIGRATIONS[3:]]  # 0004 and any after it
    db = connect(path)
    assert usage_between(db, 0, 2**62).calls == 1  # not counted twice
    assert db.execute("SELECT calls FROM usage_1d").fetchall() == [(1,)]
    db.close()


def enforced(limit_usd: float) -> list[Budget]:
    return [Budget("daily", "day", limit_usd=limit_usd, mode="enforce", timezone="UTC")]


async def test_fifty_concurrent_callers_overshoot_by_at_most_what_was_in_flight(
        tmp_path: Path) -> None:
    budgets = enforced(1.0)  # $1 = 1,000,000 micro-dollars
    estimate, actual = 30_000, 25_000
    in_flight = 0
    most_in_flight = 0

    async with await Store.open(tmp_path / "s.db") as store:
        async def caller() -> bool:
            nonlocal in_flight, most_in_flight
            try:
                reservation = await store.reserve(budgets, cost_micro=estimate, tokens=0)
            except BudgetBlocked:
                return False
            in_flight += 1
            most_in_flight = max(most_in_flight, in_flight)
            await asyncio.sleep(random.uniform(0, 0.01))
            await store.settle(reservation, [call(cost_micro_usd=actual, ts=datetime.now(UTC))])
            in_flight -= 1
            return True

        for _ in range(3):  # three bursts of 50: later bursts meet settled spend
            await asyncio.gather(*(caller() for _ in range(50)))
        used = await store.read(lambda db: usage_between(db, 0, 2**62))
        held = await store.read(lambda db: db.execute(
            "SELECT COUNT(*) FROM reservations").fetchone()[0])
    limit = 1_000_000
    assert held == 0
    # Admission stops once settled + held reaches the limit: with estimates above the
    # actual cost, the overshoot is below one estimate.
    assert limit <= used.cost_micro + actual * 2
    assert used.cost_micro < limit + estimate
    with pytest.raises(BudgetBlocked):
        async with await Store.open(tmp_path / "s.db") as store:
            await store.reserve(budgets, cost_micro=1, tokens=0)


async def test_a_blocked_reservation_names_the_budget_and_reset(tmp_path: Path) -> None:
    async with await Store.open(tmp_path / "s.db") as store:
        await store.add_calls([call(cost_micro_usd=2_000_000, ts=datetime.now(UTC))])
        with pytest.raises(BudgetBlocked) as caught:
            await store.reserve(enforced(1.0), cost_micro=1000, tokens=10)
    error = caught.value
    assert error.budget == "daily"
    assert "$2.00 of $1.00" in str(error)
    assert "resets at" in str(error)
    assert error.resets_at is not None
    assert error.resets_at.endswith("T00:00:00Z")


async def test_expired_reservations_stop_holding_budget(tmp_path: Path) -> None:
    async with await Store.open(tmp_path / "s.db") as store:
        await store.reserve(enforced(1.0), cost_micro=1_000_000, tokens=0, ttl_ms=50)
        with pytest.raises(BudgetBlocked):
            await store.reserve(enforced(1.0), cost_micro=1, tokens=0)
        await asyncio.sleep(0.1)
        await store.reserve(enforced(1.0), cost_micro=1, tokens=0)


async def test_a_cancelled_caller_still_gets_its_call_written(tmp_path: Path) -> None:
    async with await Store.open(tmp_path / "s.db") as store:
        task = asyncio.create_task(store.add_calls([call(request_id="req_cancelled")]))
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    db = connect(tmp_path / "s.db")
    assert db.execute("SELECT COUNT(*) FROM calls").fetchone()[0] == 1


async def test_writes_from_two_processes_share_the_store(tmp_path: Path) -> None:
    """A second process writing at the same time: both sets land, nothing is lost."""
    import sys

    db_file = tmp_path / "s.db"
    migrate(db_file)
    script = (
        "import asyncio, sys\n"
        "from datetime import datetime, UTC\n"
        "from agent import Store, Call\n"
        "async def main():\n"
        "    async with await Store.open(sys.argv[1]) as s:\n"
        "        for i in range(200):\n"
        "            await s.add_calls([Call(tool='other', provider='p', model='m',\n"
        "                                    input_tokens=1, cost_micro_usd=1)])\n"
        "asyncio.run(main())\n")
    proc = await asyncio.create_subprocess_exec(sys.executable, "-c", script, str(db_file))
    async with await Store.open(db_file) as store:
        for _ in range(200):
            await store.add_calls([call(ts=datetime.now(UTC) - timedelta(seconds=1))])
    assert await proc.wait() == 0
    db = connect(db_file)
    assert db.execute("SELECT COUNT(*) FROM calls").fetchone()[0] == 400
    assert db.execute("SELECT SUM(calls) FROM usage_15m").fetchone()[0] == 400


def size(path: Path) -> int:
    return path.stat().st_size


async def test_the_wal_is_checkpointed_in_the_background(tmp_path: Path) -> None:
    """Commits never pay for checkpoints; a background task copies the WAL back instead."""
    db_file = tmp_path / "s.db"
    async with await Store.open(db_file) as store:
        before = size(db_file)
        for _ in range(20):
            await store.add_calls([call(ts=datetime.now(UTC)) for _ in range(200)])
        assert size(tmp_path / "s.db-wal") > 1_000_000
        assert size(db_file) == before  # nothing copied back inside a commit
        deadline = asyncio.get_running_loop().time() + 5
        while size(db_file) == before:
            assert asyncio.get_running_loop().time() < deadline, "no background checkpoint"
            await asyncio.sleep(0.1)


async def test_a_settle_commits_on_the_loop_or_waits_for_the_lock_in_the_thread(
        tmp_path: Path) -> None:
    """A settle that finds the writer idle is committed before it returns (visible to
    another connection); one that finds another process holding the write lock goes to
    the writer's thread and waits there, while the event loop keeps running."""
    db_file = tmp_path / "s.db"
    other = connect(db_file)
    async with await Store.open(db_file) as store:
        reservation = await store.reserve([], cost_micro=5, tokens=5)
        await store.settle(reservation, [call(request_id="req_inline")])
        assert other.execute("SELECT request_id FROM calls").fetchall() == [("req_inline",)]
        assert other.execute("SELECT COUNT(*) FROM reservations").fetchone()[0] == 0

        other.execute("BEGIN IMMEDIATE")  # another process holds the write lock
        settling = asyncio.create_task(store.settle(None, [call(request_id="req_waited")]))
        ticks = 0
        for _ in range(10):
            await asyncio.sleep(0.01)  # the loop is not blocked by the waiting write
            ticks += 1
        assert ticks == 10
        assert not settling.done()
        other.execute("COMMIT")
        await asyncio.wait_for(settling, 5)
    assert {row[0] for row in other.execute("SELECT request_id FROM calls")} == {
        "req_inline", "req_waited"}


async def test_a_burst_of_reservations_is_decided_in_order_as_one_at_a_time(
        tmp_path: Path) -> None:
    """Reservations asked for together share one transaction; each still sees what the
    ones before it hold (and another list of budgets gets its own reading)."""
    db_file = tmp_path / "s.db"
    other = connect(db_file)
    async with await Store.open(db_file) as store:
        outcomes = await asyncio.gather(
            *(store.reserve(enforced(1.0), cost_micro=300_000, tokens=0) for _ in range(5)),
            store.reserve(enforced(100.0), cost_micro=300_000, tokens=0),
            return_exceptions=True)
        # $0.9 held after three: a fourth may still start, a fifth may not.
        assert [isinstance(o, BudgetBlocked) for o in outcomes] == [
            False, False, False, False, True, False]
        blocked = outcomes[4]
        assert isinstance(blocked, BudgetBlocked)
        assert blocked.details["inFlightCalls"] == 4
        assert other.execute("SELECT COUNT(*) FROM reservations").fetchone()[0] == 5

        other.execute("BEGIN IMMEDIATE")  # held elsewhere: the burst waits in the thread
        waiting = asyncio.gather(*(store.reserve(enforced(100.0), cost_micro=1, tokens=0)
                                   for _ in range(3)))
        await asyncio.sleep(0.05)
        assert not waiting.done()
        other.execute("COMMIT")
        assert len(await asyncio.wait_for(waiting, 5)) == 3
    assert other.execute("SELECT COUNT(*) FROM reservations").fetchone()[0] == 8


async def test_a_cancelled_read_keeps_the_connection_until_its_thread_is_done(
        tmp_path: Path) -> None:
    """A read whose awaiting task is cancelled (the checkpointer at close, a request that went
    away) still runs in its thread: closing the store must wait for it, not close the
    connection under it (that crashed the sidecar at shutdown)."""
    import time

    store = await Store.open(tmp_path / "m.db")
    order: list[str] = []
    started = asyncio.Event()
    loop = asyncio.get_running_loop()

    def slow(db: sqlite3.Connection) -> int:
        loop.call_soon_threadsafe(started.set)
        time.sleep(0.3)
        value = int(db.execute("SELECT count(*) FROM calls").fetchone()[0])
        order.append("read done")
        return value

    task = asyncio.create_task(store.read(slow))
    await started.wait()
    task.cancel()
    await store.close()
    order.append("closed")
    assert order == ["read done", "closed"]
    with pytest.raises(asyncio.CancelledError):
        await task
