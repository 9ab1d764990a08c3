"""Summaries across developers and rollups over blocks of days: kept at ingest, equal to a
rebuild from the rollups, and reports read from them equal to reports read from the
per-developer daily rollups (both backends).
"""

from __future__ import annotations

import asyncio
import itertools
import random
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import pytest
import sqlalchemy as sa
from server_factory import Org, call, now_iso, suggestion

from server import _report_queries
from server import _tables as t
from server._access import SYSTEM, report_scope
from server._db import downgrade, upgrade
from server._report_queries import covering
from server._reports import day_number
from server._store import Store
from server._summaries import rebuild_statements, span_masks
from server._wire import EventBatch

SUMMARY_TABLES = (t.usage_summary, t.retention_summary, t.active_days, t.active_daily,
                  t.active_spans, t.team_usage_summary, t.team_retention_summary,
                  t.usage_blocks, t.retention_blocks, t.team_active_daily)
DEVELOPERS = ("alice", "bob", "carol", "lena")


def as_batch(events: list[dict[str, Any]]) -> EventBatch:
    return msgspec.json.decode(msgspec.json.encode({"events": events}), type=EventBatch)


def spread_events(rng: random.Random, n: int) -> list[dict[str, Any]]:
    """Events over 70 days (three 32-day spans), two tools, models and languages."""
    events: list[dict[str, Any]] = []
    for i in range(n):
        common = {"ts": now_iso(rng.randrange(70)), "model": rng.choice(["m1", "m2"]),
                  "tool": rng.choice(["t1", "t2"]), "language": rng.choice([None, "go"])}
        if rng.random() < 0.6:
            events.append(call(**common, input_tokens=rng.randrange(1000),
                               cost_micro_usd=rng.choice([None, rng.randrange(10_000)]),
                               request_id=None))
        else:
            stage = rng.choice(["offered", "accepted", "rejected", "committed", "retained"])
            events.append(suggestion(stage, f"s{i}", **common, chars=rng.randrange(500),
                                     lines=rng.randrange(30),
                                     commit=f"{i:040x}" if stage == "committed" else None,
                                     checkpoint_s=900 if stage == "retained" else None))
    return events


async def ingest_spread(store: Store, seed: int = 3) -> None:
    rng = random.Random(seed)
    async with store.read() as conn:
        ids = dict(list(await conn.execute(sa.select(t.members.c.name, t.members.c.id))))
    for name in DEVELOPERS:
        events = spread_events(rng, 300)
        for start in range(0, 300, 70):  # overlapping batches: duplicates on the path
            await store.ingest(ids[name], as_batch(events[max(0, start - 20):start + 70]))
    committed = [f"{i:040x}" for i in range(0, 300, 3)]
    await store.record_deployment(environment="prod", commits=committed,
                                  ts_ms=int(datetime.now(UTC).timestamp() * 1000),
                                  team_id=None, token_id=None)


async def snapshot(store: Store) -> dict[str, list[tuple[Any, ...]]]:
    async with store.read() as conn:
        return {table.name: sorted(tuple(row) for row in await conn.execute(sa.select(table)))
                for table in SUMMARY_TABLES}


async def rebuilt(store: Store) -> dict[str, list[tuple[Any, ...]]]:
    """The summaries as ``rebuild_statements`` makes them from the rollups."""
    async with store.engine.begin() as conn:
        for table in SUMMARY_TABLES:
            await conn.execute(sa.delete(table))
        for statement in rebuild_statements(store.backend):
            await conn.execute(sa.text(statement))
    return await snapshot(store)


async def test_summaries_kept_at_ingest_equal_a_rebuild_from_the_rollups(
        store: Store, org: Org) -> None:
    await ingest_spread(store)
    kept = await snapshot(store)
    assert all(kept.values())
    assert await rebuilt(store) == kept


async def test_team_summaries_follow_membership_changes(store: Store, org: Org) -> None:
    await ingest_spread(store)
    await store.add_to_team(SYSTEM, "web", "bob")  # bob in two teams
    await store.remove_from_team(SYSTEM, "core", "alice")  # alice in none
    await store.remove_from_team(SYSTEM, "core", "alice")  # (again: nothing to move)
    await store.add_to_team(SYSTEM, "core", "carol")
    kept = await snapshot(store)
    assert {row[0] for row in kept["team_usage_summary"]} == {
        await team_id(store, "core"), await team_id(store, "web")}
    assert await rebuilt(store) == kept
    await store.delete_team(SYSTEM, "web")
    kept = await snapshot(store)
    assert {row[0] for row in kept["team_usage_summary"]} == {await team_id(store, "core")}
    assert await rebuilt(store) == kept


async def test_membership_changes_racing_ingest_move_each_batch_once(store: Store, org: Org
                                                                    ) -> None:
    rng = random.Random(8)
    async with store.read() as conn:
        ids = dict(list(await conn.execute(sa.select(t.members.c.name, t.members.c.id))))
    jobs = []
    for name in ("alice", "bob"):
        events = spread_events(rng, 400)
        jobs += [store.ingest(ids[name], as_batch(events[start:start + 50]))
                 for start in range(0, 400, 50)]
    jobs += [store.add_to_team(SYSTEM, "web", "alice"), store.add_to_team(SYSTEM, "web", "bob"),
             store.remove_from_team(SYSTEM, "core", "bob")]
    rng.shuffle(jobs)
    await asyncio.gather(*jobs)
    kept = await snapshot(store)
    assert await rebuilt(store) == kept


async def team_id(store: Store, name: str) -> int:
    async with store.read() as conn:
        return int(await conn.scalar(sa.select(t.teams.c.id).where(t.teams.c.name == name)))


async def test_the_migration_fills_the_summaries_from_existing_rollups(
        store: Store, org: Org) -> None:
    await ingest_spread(store, seed=4)
    kept = await snapshot(store)
    await downgrade(store.engine, "0001")
    await upgrade(store.engine)
    assert await snapshot(store) == kept



async def test_the_migration_fills_the_pair_and_summary_grains_from_existing_rollups(
        store: Store, org: Org) -> None:
    await ingest_spread(store, seed=5)
    tables = (t.usage_daily, t.retention_daily, *SUMMARY_TABLES)

    async def everything() -> dict[str, list[tuple[Any, ...]]]:
        async with store.read() as conn:
            return {table.name: sorted(tuple(row) for row in await conn.execute(
                sa.select(table))) for table in tables}

    kept = await everything()
    pairs = {"tool+model", "tool+lang", "model+lang"}
    assert all(pairs <= {row[0] for row in kept[table.name]} for table in (
        t.usage_daily, t.retention_daily, t.usage_blocks, t.retention_blocks))
    await downgrade(store.engine, "0003")
    async with store.read() as conn:
        for table in (t.usage_daily, t.retention_daily, t.usage_blocks, t.retention_blocks,
                      t.team_usage_summary, t.team_retention_summary):
            assert not await conn.scalar(sa.text(
                f"SELECT count(*) FROM {table.name} WHERE grain IN "
                "('tool+model', 'tool+lang', 'model+lang')")), table.name
        # The summaries across developers as they were: the finest grain only.
        assert await conn.scalar(sa.text("SELECT count(*) FROM usage_summary")) == len(
            [row for row in kept["usage_summary"] if row[0] == "all"])
    await upgrade(store.engine)
    assert await everything() == kept


SHAPES = [*(dims for n in (1, 2, 3)
            for dims in itertools.combinations(("team", "day", "tool", "model", "language"), n)),
          ("language", "team"), ("day", "model", "team"), ("model", "day")]


@pytest.mark.parametrize("days_back", [(69, 0), (40, 31), (33, 30), (5, 5)])
async def test_reports_from_summaries_equal_reports_from_per_developer_rollups(
        store: Store, org: Org, monkeypatch: pytest.MonkeyPatch,
        days_back: tuple[int, int]) -> None:
    await assert_fast_path_equals_day_by_day(store, monkeypatch, days_back, SHAPES,
                                             "reads_summaries")


async def assert_fast_path_equals_day_by_day(
        store: Store, monkeypatch: pytest.MonkeyPatch, days_back: tuple[int, int],
        shapes: list[tuple[str, ...]], switch: str) -> None:
    """Every shape, read by the fast path ``_report_queries.<switch>`` chooses, gives the
    same sums as with that path switched off (teams overlap, ranges as given)."""
    await ingest_spread(store)
    today = datetime.now(UTC).date()
    days = (day_number(today - timedelta(days=days_back[0])),
            day_number(today - timedelta(days=days_back[1])))
    scope = report_scope(SYSTEM)
    await store.add_to_team(SYSTEM, "web", "bob")  # teams that overlap
    for dims in shapes:
        assert getattr(_report_queries, switch)(dims, scope)
        fast = await store.outcome_sums(dims, scope, days)
        with monkeypatch.context() as patch:
            patch.setattr(_report_queries, switch, lambda *_: False)
            slow = await store.outcome_sums(dims, scope, days)
        assert fast == slow, dims
        assert fast[1].developers == slow[1].developers > 0


def test_span_masks() -> None:
    assert span_masks(64, 64) == (2, 2, 1, 1)
    assert span_masks(33, 95) == (1, 2, 0xFFFF_FFFE, 0xFFFF_FFFF)
    assert span_masks(31, 32) == (0, 1, 1 << 31, 1)
    first, last, head, tail = span_masks(20_000, 20_089)
    covered = [day for span in range(first, last + 1) for day in range(32 * span, 32 * span + 32)
               if (head if span == first else tail if span == last else 0xFFFF_FFFF)
               >> (day % 32) & 1]
    assert covered == list(range(20_000, 20_090))


BLOCK_SHAPES = [dims for n in (1, 2, 3)
                for dims in itertools.permutations(("developer", "team", "tool", "model",
                                                    "language"), n)
                if "developer" in dims and list(dims[1:]) == sorted(dims[1:])]


@pytest.mark.parametrize("days_back", [(69, 0), (63, 2), (40, 31), (33, 30), (5, 5)])
async def test_reports_over_blocks_equal_reports_day_by_day(
        store: Store, org: Org, monkeypatch: pytest.MonkeyPatch,
        days_back: tuple[int, int]) -> None:
    await assert_fast_path_equals_day_by_day(store, monkeypatch, days_back, BLOCK_SHAPES,
                                             "reads_blocks")
    assert not _report_queries.reads_blocks(("developer", "day"), report_scope(SYSTEM))


def test_blocks_and_days_cover_a_range_once() -> None:
    for first in range(70):
        for last in range(first, 140):
            whole, single = covering(first, last)
            covered = [day for size, low, high in whole
                       for start in range(low, high + 1, size)
                       for day in range(start, start + size)]
            covered += [day for low, high in single for day in range(low, high + 1)]
            assert sorted(covered) == list(range(first, last + 1))
            assert all(low % size == 0 == high % size for size, low, high in whole)
    assert covering(20_401, 20_489) == ([(8, 20_408, 20_480)],
                                        [(20_401, 20_407), (20_488, 20_489)])


PAIR_SHAPES = [(*extra, *pair) for pair in itertools.combinations(("tool", "model",
                                                                   "language"), 2)
               for extra in ((), ("developer",), ("team",), ("day",), ("developer", "day"))]


async def test_reports_by_two_of_tool_model_language_read_their_pair_grain(
        store: Store, org: Org, monkeypatch: pytest.MonkeyPatch) -> None:
    """Rollups, blocks and team summaries at the pair grains give the same sums as at the
    finest grain, for an admin (blocks, summaries), a team and one developer (daily rows)."""
    await ingest_spread(store, seed=6)
    await store.add_to_team(SYSTEM, "web", "bob")
    today = datetime.now(UTC).date()
    days = (day_number(today - timedelta(days=45)), day_number(today))
    async with store.read() as conn:
        alice = int(await conn.scalar(sa.select(t.members.c.id)
                                      .where(t.members.c.name == "alice")))
        core = int(await conn.scalar(sa.select(t.teams.c.id).where(t.teams.c.name == "core")))
    scopes = [report_scope(SYSTEM), report_scope(SYSTEM, team_id=core),
              report_scope(SYSTEM, developer_id=alice)]
    finest = _report_queries.grain_for
    for dims in PAIR_SHAPES:
        assert finest(dims) in {"tool+model", "tool+lang", "model+lang"}
        for scope in scopes:
            paired = await store.outcome_sums(dims, scope, days)
            with monkeypatch.context() as patch:
                patch.setattr(_report_queries, "grain_for", lambda *_: "all")
                from_all = await store.outcome_sums(dims, scope, days)
            assert paired == from_all, (dims, scope)
            assert paired[0]


async def test_reports_by_developer_and_day_read_rows_as_groups(
        store: Store, org: Org, monkeypatch: pytest.MonkeyPatch) -> None:
    """At the grain a report reads, a rollup row of a developer's day is one group: the
    rows read as they are equal the rows added up, for every scope."""
    from server._rollup import grain_keys
    from server._tables import GRAIN_DETAIL

    # Ingest's rows of a grain keep exactly the dimensions the reports expect of it.
    for grain, *_, tool, model, language in grain_keys(1, 2, "t", "m", "l"):
        kept = {dim for dim, value in (("tool", tool), ("model", model),
                                       ("language", language)) if value}
        assert kept == GRAIN_DETAIL[grain], grain
    assert {key[0] for key in grain_keys(1, 2, "t", "m", "l")} == set(t.GRAINS)
    await ingest_spread(store, seed=7)
    await store.add_to_team(SYSTEM, "web", "bob")
    today = datetime.now(UTC).date()
    days = (day_number(today - timedelta(days=30)), day_number(today))
    async with store.read() as conn:
        core = int(await conn.scalar(sa.select(t.teams.c.id).where(t.teams.c.name == "core")))
    for dims in [("developer", "day"), ("developer", "team", "day"),
                 ("developer", "model", "day"), ("developer", "tool", "day"),
                 ("day", "developer", "language")]:
        for scope in (report_scope(SYSTEM), report_scope(SYSTEM, team_id=core)):
            read = await store.outcome_sums(dims, scope, days)
            with monkeypatch.context() as patch:
                patch.setattr(_report_queries, "GRAIN_DETAIL",
                              dict.fromkeys(GRAIN_DETAIL, frozenset({"nothing"})))
                added = await store.outcome_sums(dims, scope, days)
            assert read == added, (dims, scope)
            assert read[0]
