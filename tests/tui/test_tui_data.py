"""What one refresh reads, on a real store: the reuse of a window's past is invisible."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from zoneinfo import ZoneInfo

from tuidata import NOW_MS, call, fill, typical_day

from agent import Store
from tui._data import Collected, Collector, change_key, collect
from tui._views import Window, period_window, plot_step

UTC = ZoneInfo("UTC")
DAY_MIN = 24 * 60


def same(a: Collected, b: Collected) -> None:
    assert sorted(a.by_model) == sorted(b.by_model)
    assert sorted(a.by_tool) == sorted(b.by_tool)
    assert a.series == b.series
    assert a.used == b.used


def month() -> tuple[Window, int]:
    window = period_window("month", UTC, NOW_MS)
    return window, plot_step(window, NOW_MS, 160)


async def a_month_of_calls(home: Path) -> None:
    older = [call(d * DAY_MIN + 30 * i, index=i, cost_micro=1000 * (d + i))
             for d in range(1, 16) for i in range(6)]
    await fill(home, typical_day() + older)


def hourly_queries(db: sqlite3.Connection) -> list[str]:
    seen: list[str] = []
    db.set_trace_callback(lambda sql: seen.append(sql) if "usage_hourly" in sql else None)
    return seen


async def test_reused_past_reads_the_same_as_a_fresh_read(meterline_home: Path) -> None:
    await a_month_of_calls(meterline_home)
    window, step = month()
    collector = Collector()
    async with await Store.open(meterline_home / "meterline.db") as store:
        def read_both(db: sqlite3.Connection) -> tuple[Collected, Collected, Collected, int]:
            traced = hourly_queries(db)
            first = collector(db, window, NOW_MS, step, True)
            misses = len(traced)
            again = collector(db, window, NOW_MS, step, True)
            hits = len(traced) - misses
            db.set_trace_callback(None)
            assert (misses, hits) == (4, 2)  # the second read only asks for this hour
            return first, again, collect(db, window, NOW_MS, step, True), hits

        first, again, fresh, _ = await store.read(read_both)
    same(first, fresh)
    same(again, fresh)
    assert len(fresh.series) > 100
    assert sum(row.calls for row in fresh.by_model) == 120 + 90


async def test_a_late_event_in_the_past_is_seen_and_so_is_one_in_this_hour(
        meterline_home: Path) -> None:
    await a_month_of_calls(meterline_home)
    window, step = month()
    collector = Collector()
    async with await Store.open(meterline_home / "meterline.db") as store:
        before = await store.read(lambda db: collector(db, window, NOW_MS, step, True))
        # An importer catching up: a call from ten days ago arrives now.
        await store.add_calls([call(10 * DAY_MIN, tool="importer", cost_micro=777)])
        late = await store.read(lambda db: collector(db, window, NOW_MS, step, True))
        fresh = await store.read(lambda db: collect(db, window, NOW_MS, step, True))
        same(late, fresh)
        assert "importer" in {row.key for row in late.by_tool}
        assert "importer" not in {row.key for row in before.by_tool}
        await store.add_calls([call(1, tool="just-now", cost_micro=5)])
        now = await store.read(lambda db: collector(db, window, NOW_MS, step, True))
        assert "just-now" in {row.key for row in now.by_tool}
        same(now, await store.read(lambda db: collect(db, window, NOW_MS, step, True)))


async def test_a_rolling_window_off_the_bucket_grid_reads_whole(meterline_home: Path) -> None:
    await a_month_of_calls(meterline_home)
    window = Window(NOW_MS - 5 * 3_600_000 - 7 * 60_000, NOW_MS + 1, rolling=True)
    step = plot_step(window, NOW_MS, 160)
    async with await Store.open(meterline_home / "meterline.db") as store:
        got = await store.read(lambda db: Collector()(db, window, NOW_MS, step, True))
        fresh = await store.read(lambda db: collect(db, window, NOW_MS, step, True))
    same(got, fresh)


async def test_the_change_key_moves_on_a_write_from_another_connection_and_on_config(
        meterline_home: Path) -> None:
    await fill(meterline_home, [call(3)])
    config = meterline_home / "config.toml"
    async with await Store.open(meterline_home / "meterline.db") as store:
        first = await store.read(lambda db: change_key(db, str(config)))
        assert await store.read(lambda db: change_key(db, str(config))) == first
        await store.add_calls([call(2, index=1)])  # the writer is another connection
        second = await store.read(lambda db: change_key(db, str(config)))
        assert second[0] != first[0]
        config.write_text("# budgets to come\n")
        third = await store.read(lambda db: change_key(db, str(config)))
        assert third[0] == second[0]
        assert third[1] != second[1]
