"""Budget reservations kept ready ahead of the next completion, on a real SQLite store."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from agent import Budget, BudgetBlocked, Call
from lsp import _reservations
from lsp._outbox import Release, StoreLink
from lsp._reservations import Reservations

ROOMY = [Budget(name="roomy", limit_usd=100.0, mode="enforce")]
TIGHT = [Budget(name="tight", limit_usd=0.01, mode="enforce")]


def held(db: Path) -> int:
    connection = sqlite3.connect(db)
    try:
        return int(connection.execute("SELECT COUNT(*) FROM reservations").fetchone()[0])
    finally:
        connection.close()


async def settled(link: StoreLink) -> None:
    assert await link.flush(5)


async def started(tmp_path: Path) -> tuple[StoreLink, Reservations, Path]:
    db = tmp_path / "meterline.db"
    link = StoreLink(db_path=db)
    await link.start(5)
    reservations = Reservations(link, cost_micro=1_000, tokens=100, wait_s=2,
                                release=lambda r: link.put(Release(r.id)))
    return link, reservations, db


async def test_the_next_reservation_is_made_ahead(tmp_path: Path) -> None:
    link, reservations, db = await started(tmp_path)
    first = await reservations.take(ROOMY)
    assert first is not None
    assert not reservations._refills  # not while the request is still running ...
    reservations.prepare_next()
    await asyncio.sleep(0)
    await asyncio.sleep(0)  # ... but once its response is out
    assert len(reservations._refills) == _reservations.READY
    await asyncio.wait(reservations._refills)
    assert reservations.ready == _reservations.READY
    assert held(db) == 1 + _reservations.READY  # the one in use and the ready ones
    ready = reservations._ready[0][0]
    second = await reservations.take(ROOMY)
    assert second is ready  # no store round trip on the way
    await reservations.aclose()  # the ready ones go back
    await settled(link)
    assert held(db) == 2  # first and second are still held by their (unsettled) calls
    await link.close()


async def test_a_refusal_is_never_cached(tmp_path: Path) -> None:
    link, reservations, _ = await started(tmp_path)
    assert link.store is not None
    await link.store.add_calls([Call(tool="t", provider="openai", model="m",
                                     cost_micro_usd=20_000)])  # $0.02 > $0.01
    with pytest.raises(BudgetBlocked):
        await reservations.take(TIGHT)
    reservations.prepare_next()  # nothing to prepare after a refusal
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert reservations.ready == 0
    assert not reservations._refills
    assert await reservations.take(ROOMY) is not None  # the store is asked again
    await reservations.aclose()
    await link.close()


async def test_an_unused_ready_reservation_is_given_back(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch
                                                         ) -> None:
    monkeypatch.setattr(_reservations, "IDLE_S", 0.2)
    link, reservations, db = await started(tmp_path)
    await reservations.take(ROOMY)
    reservations.prepare_next()
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    await asyncio.wait(reservations._refills)
    assert held(db) == 1 + _reservations.READY
    await asyncio.sleep(0.4)
    await settled(link)
    assert held(db) == 1  # only the one a call took
    assert reservations.ready == 0
    await link.close()
