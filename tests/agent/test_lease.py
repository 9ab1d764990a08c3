"""Budget leases (``Store.reserve(lease=True)``) on real SQLite files: one row for many calls,
what other processes see of it, and the same refusals as one reservation per call."""

from __future__ import annotations

import asyncio
import random
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest

from agent import BudgetBlocked, Call, Store
from agent import _lease as lease_module
from agent._budget import Budget
from agent._queries import usage_between


def enforced(limit_usd: float, **more: object) -> list[Budget]:
    return [Budget("daily", "day", limit_usd=limit_usd, mode="enforce", timezone="UTC",
                   **more)]  # type: ignore[arg-type]


def spent(cost_micro: int, tokens: int = 10) -> Call:
    return Call(tool="test", provider="anthropic", model="claude-sonnet-4-5",
                input_tokens=tokens, output_tokens=0, cost_micro_usd=cost_micro,
                ts=datetime.now(UTC))


def rows(path: Path) -> list[tuple[int, int]]:
    with sqlite3.connect(path) as db:
        return [(int(c), int(t)) for c, t in db.execute(
            "SELECT cost_micro_usd, tokens FROM reservations ORDER BY created_ms")]


async def test_many_calls_share_one_row_and_each_settle_takes_its_piece_off(
        tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    budgets = enforced(100.0)  # far from the limit: a lease of 32 calls' estimates
    async with await Store.open(path) as store:
        pieces = [await store.reserve(budgets, cost_micro=1_000, tokens=50, lease=True)
                  for _ in range(10)]
        assert {p.id for p in pieces} == {pieces[0].id}
        assert all(p.lease for p in pieces)
        assert rows(path) == [(32_000, 1_600)]  # the lease: written once
        for piece in pieces[:4]:
            await store.settle(piece, [spent(900)])
        assert rows(path) == [(28_000, 1_400)]
        await store.release(pieces[4])  # never called: back into the lease, no write
        assert rows(path) == [(28_000, 1_400)]
        for piece in pieces[5:]:
            await store.settle(piece, [spent(900)])
    assert rows(path) == []  # closing gives the room that was not handed out back
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT COUNT(*), SUM(cost_micro_usd) FROM calls").fetchone() == (
            9, 8_100)


async def test_near_the_limit_each_call_is_decided_alone(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    budgets = enforced(0.01)  # $0.01 = 10,000 micro
    async with await Store.open(path) as store:
        first = await store.reserve(budgets, cost_micro=3_000, tokens=0, lease=True)
        assert not first.lease  # 4 x 3,000 is more than the room: a row of its own
        second = await store.reserve(budgets, cost_micro=3_000, tokens=0, lease=True)
        assert rows(path) == [(3_000, 0), (3_000, 0)]
        await store.settle(first, [spent(6_000)])
        await store.settle(second, [spent(3_000)])
        # 9,000 used and nothing held: one more is admitted, as with the per-call rule ...
        third = await store.reserve(budgets, cost_micro=3_000, tokens=0, lease=True)
        await store.settle(third, [spent(3_000)])
        with pytest.raises(BudgetBlocked) as refused:  # ... and then none
            await store.reserve(budgets, cost_micro=3_000, tokens=0, lease=True)
    assert refused.value.budget == "daily"


async def test_a_call_dearer_than_its_estimate_shrinks_the_lease(tmp_path: Path) -> None:
    budgets = enforced(1.0)
    path = tmp_path / "s.db"
    async with await Store.open(path) as store:
        piece = await store.reserve(budgets, cost_micro=1_000, tokens=0, lease=True)
        assert piece.lease
        # The estimate was far too low: the call used up the whole budget.
        await store.settle(piece, [spent(1_200_000)])
        with pytest.raises(BudgetBlocked):
            await store.reserve(budgets, cost_micro=1_000, tokens=0, lease=True)
        # The replaced lease gave all its room back: it holds nothing now.
        assert sum(cost for cost, _ in rows(path)) == 0


async def test_another_process_sees_the_lease_as_held(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    budgets = enforced(0.2)  # 200,000 micro
    async with await Store.open(path) as proxy, await Store.open(path) as sidecar:
        piece = await proxy.reserve(budgets, cost_micro=1_000, tokens=0, lease=True)
        assert rows(path) == [(32_000, 0)]
        # The sidecar's estimate fits beside the lease, not inside it.
        other = await sidecar.reserve(budgets, cost_micro=150_000, tokens=0)
        await sidecar.settle(other, [spent(168_000)])  # 168,000 + 32,000 held = the limit
        with pytest.raises(BudgetBlocked) as refused:
            await sidecar.reserve(budgets, cost_micro=1, tokens=0)
        assert refused.value.details["inFlightCalls"] == 1
        await proxy.settle(piece, [spent(1_000)])


async def test_a_new_lease_for_new_budgets_gives_the_old_room_back(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    async with await Store.open(path) as store:
        old = await store.reserve(enforced(100.0), cost_micro=1_000, tokens=0, lease=True)
        edited = enforced(50.0)  # config.toml changed: the old lease is not used again
        new = await store.reserve(edited, cost_micro=1_000, tokens=0, lease=True)
        assert new.id != old.id
        assert sorted(rows(path)) == [(1_000, 0), (32_000, 0)]  # old: only its piece
        await store.settle(old, [spent(1_000)])
        assert sorted(rows(path)) == [(0, 0), (32_000, 0)]  # the old one holds nothing
        await store.settle(new, [spent(1_000)])


async def test_a_lease_is_not_used_after_its_life(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lease_module, "LEASE_LIFE_MS", 50)
    budgets = enforced(100.0)
    async with await Store.open(tmp_path / "s.db") as store:
        first = await store.reserve(budgets, cost_micro=1_000, tokens=0, lease=True)
        await asyncio.sleep(0.08)
        second = await store.reserve(budgets, cost_micro=1_000, tokens=0, lease=True)
        assert second.id != first.id


async def test_warnings_count_what_was_settled_under_the_lease(tmp_path: Path) -> None:
    budgets = enforced(1.0, warn_at=0.5)
    async with await Store.open(tmp_path / "s.db") as store:
        piece = await store.reserve(budgets, cost_micro=1_000, tokens=0, lease=True)
        assert piece.lease
        assert not piece.warnings
        await store.settle(piece, [spent(600_000)])  # estimate low: the lease shrinks too
        after = await store.reserve(budgets, cost_micro=1_000, tokens=0, lease=True)
        assert [w.name for w in after.warnings] == ["daily"]
        assert after.warnings[0].used.cost_micro == 600_000


async def test_concurrent_callers_with_leases_stay_within_the_per_call_rule(
        tmp_path: Path) -> None:
    budgets = enforced(1.0)
    estimate, actual = 10_000, 9_000
    async with await Store.open(tmp_path / "s.db") as store:
        async def caller() -> bool:
            try:
                piece = await store.reserve(budgets, cost_micro=estimate, tokens=0, lease=True)
            except BudgetBlocked:
                return False
            await asyncio.sleep(random.uniform(0, 0.005))
            await store.settle(piece, [spent(actual)])
            return True

        admitted = 0
        for _ in range(8):  # bursts until the budget is gone
            admitted += sum(await asyncio.gather(*(caller() for _ in range(40))))
        used = await store.read(lambda db: usage_between(db, 0, 2**62))
    assert used.cost_micro == admitted * actual
    assert 1_000_000 - actual <= used.cost_micro < 1_000_000 + estimate
    assert rows(tmp_path / "s.db") == []


async def test_a_lease_granted_while_the_store_closes_is_given_back(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    store = await Store.open(path)
    # A big write keeps the writer's thread busy: the grant waits in its queue.
    calls = [spent(1) for _ in range(20_000)]
    writing = asyncio.create_task(store.add_calls(calls))
    await asyncio.sleep(0)
    asking = asyncio.create_task(
        store.reserve(enforced(100.0), cost_micro=1_000, tokens=10, lease=True))
    for _ in range(100):
        if store._granting is not None:
            break
        await asyncio.sleep(0)
    assert store._granting is not None
    await store.close()
    await writing
    piece = await asking
    assert piece.lease
    assert rows(path) == [(1_000, 10)]  # only the piece in flight still holds budget


def handed_out_at_once(store: Store, budgets: list[Budget], cost: int, tokens: int
                       ) -> lease_module.Reservation:
    """A piece the store hands out without suspending (no grant waited for): the coroutine
    finishes at its first step."""
    coroutine = store.reserve(budgets, cost_micro=cost, tokens=tokens, lease=True)
    try:
        coroutine.send(None)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
    coroutine.close()
    raise AssertionError("the reservation waited")


async def pieces_of_one_lease(store: Store, budgets: list[Budget], count: int,
                              tokens: int = 10) -> list[lease_module.Reservation]:
    """The first piece (granting the lease), then ``count - 1`` more handed out at once."""
    first = await store.reserve(budgets, cost_micro=1_000, tokens=tokens, lease=True)
    return [first] + [handed_out_at_once(store, budgets, 1_000, tokens)
                      for _ in range(count - 1)]


async def renewal_done(store: Store) -> None:
    """Let a renewal scheduled by the last piece run (in the writer's thread) to its end."""
    await asyncio.sleep(0)
    while store._granting is not None:
        await asyncio.shield(store._granting)


async def test_a_lease_running_low_is_replaced_before_anyone_waits_for_a_grant(
        tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    budgets = enforced(100.0)
    async with await Store.open(path) as store:
        old = await pieces_of_one_lease(store, budgets, 16)
        first = old[0]
        await renewal_done(store)
        assert rows(path) == [(32_000, 320)]  # 16 of 32 left: not low yet
        old.append(handed_out_at_once(store, budgets, 1_000, 10))  # 15 left: low
        await asyncio.sleep(0)
        assert store._granting is not None  # the successor is granted in the writer's thread
        # while the lease in hand goes on giving pieces, without waiting.
        old += [handed_out_at_once(store, budgets, 1_000, 10) for _ in range(3)]
        await renewal_done(store)
        assert store._lease is not None
        assert store._lease.id != first.id
        # Both rows hold their room until this process's next write gives the old one's
        # unused room back: never less held than handed out.
        assert rows(path) == [(32_000, 320), (32_000, 320)]
        # A burst now takes pieces of the new lease, none of them waiting for a grant.
        burst = [handed_out_at_once(store, budgets, 1_000, 10) for _ in range(10)]
        assert {piece.id for piece in burst} != {first.id}
        assert len({piece.id for piece in burst}) == 1
        await store.settle(old[0], [spent(1_000)])
        # The old lease keeps only its 19 pieces still in flight.
        assert rows(path) == [(19_000, 190), (32_000, 320)]
        for piece in old[1:] + burst:
            await store.settle(piece, [spent(1_000)])
        assert sorted(rows(path)) == [(0, 0), (22_000, 220)]
    assert rows(path) == [(0, 0)]  # the new lease's room went back at close


async def test_a_piece_that_finds_the_lease_empty_waits_for_the_renewal(
        tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    budgets = enforced(100.0)
    async with await Store.open(path) as store:
        pieces = await pieces_of_one_lease(store, budgets, 32)
        first = pieces[0]
        assert {piece.id for piece in pieces} == {first.id}  # the lease is empty now
        assert store._granting is None
        await asyncio.sleep(0)  # the renewal (asked for by the 17th piece) starts
        assert store._granting is not None
        waiting = asyncio.ensure_future(
            store.reserve(budgets, cost_micro=1_000, tokens=10, lease=True))
        piece = await waiting  # from the successor: no grant of its own
        assert piece.id != first.id
        assert piece.lease
        assert len(rows(path)) == 2
        for each in [*pieces, piece]:
            await store.settle(each, [spent(1_000)])
        assert sorted(rows(path)) == [(0, 0), (31_000, 310)]


async def test_no_successor_near_the_limit_keeps_the_lease_in_hand(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    budgets = enforced(0.2)  # 200,000 micro
    async with await Store.open(path) as proxy, await Store.open(path) as sidecar:
        pieces = [await proxy.reserve(budgets, cost_micro=1_000, tokens=0, lease=True)]
        await sidecar.settle(None, [spent(185_000)])  # the room left is now too small
        pieces += [handed_out_at_once(proxy, budgets, 1_000, 0) for _ in range(16)]
        await renewal_done(proxy)  # the renewal finds no room for a successor
        assert rows(path) == [(32_000, 0)]
        more = handed_out_at_once(proxy, budgets, 1_000, 0)
        assert more.id == pieces[0].id  # still the lease in hand ...
        assert proxy._lease is not None
        assert proxy._lease.successor_refused  # ... which is not offered a successor again
        assert not proxy._renewing
        for piece in [*pieces, more]:
            await proxy.settle(piece, [spent(1_000)])


async def test_a_renewal_due_when_the_store_closes_is_not_made(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    store = await Store.open(path)
    budgets = enforced(100.0)
    first = await store.reserve(budgets, cost_micro=1_000, tokens=0, lease=True)
    pieces = [first] + [handed_out_at_once(store, budgets, 1_000, 0) for _ in range(16)]
    await store.close()  # the renewal was scheduled: it must not grant a lease now
    assert rows(path) == [(17_000, 0)]  # only the pieces in flight hold budget
    assert all(piece.id == first.id for piece in pieces)


def test_when_a_lease_runs_low() -> None:
    budgets = tuple(enforced(100.0))
    lease = lease_module.Lease("x", budgets, (), until_ms=100_000, free_cost=16_000,
                               free_tokens=1_000)
    assert not lease.running_low(1_000, 10, at_ms=0)
    assert lease.running_low(1_001, 10, at_ms=0)  # by cost
    assert lease.running_low(1_000, 63, at_ms=0)  # by tokens
    assert lease.running_low(1_000, 10, at_ms=98_001)  # by its life
    lease.ends_at_reset = True  # its successor would end at the same reset: not renewed
    assert not lease.running_low(1_000, 10, at_ms=98_001)
