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
    assert reservations._refill is not None
    await reservations._refill
    assert held(db) == 2  # the one in use and the one ready
    ready = reservations._ready
    second = await reservations.take(ROOMY)
    assert second is ready  # no store round trip on the way
    await reservations.aclose()  # the ready one goes back
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
    assert reservations._ready is None  # nothing made ahead after a refusal
    assert await reservations.take(ROOMY) is not None  # the store is asked again
    assert reservations._refill is not None
    await reservations._refill
    assert reservations._ready is not None
    await reservations.aclose()
    await link.close()


async def test_an_unused_ready_reservation_is_given_back(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch
                                                         ) -> None:
    monkeypatch.setattr(_reservations, "IDLE_S", 0.2)
    link, reservations, db = await started(tmp_path)
    await reservations.take(ROOMY)
    assert reservations._refill is not None
    await reservations._refill
    assert held(db) == 2
    await asyncio.sleep(0.4)
    await settled(link)
    assert held(db) == 1  # only the one a call took
    assert reservations._ready is None
    await link.close()
