"""The storage base: an engine, read connections, and write transactions that retry.

Write transactions on PostgreSQL can meet a deadlock or serialization failure when several
server processes touch the same rows; the whole transaction is then retried, which is safe
because it either committed entirely or not at all.

SQLite has one writer at a time. Within a process, writers queue on an asyncio lock and get
the database the moment it is free; only writers of different processes meet SQLite's own
lock, whose busy handler polls with sleeps of up to 100 ms.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TypeVar

import asyncpg  # type: ignore[import-untyped]
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from server._db import AUTOCOMMIT, SNAPSHOT_PG, WRITE

T = TypeVar("T")
_RETRYABLE_SQLSTATES = {"40001", "40P01"}  # serialization failure, deadlock detected
_ATTEMPTS = 6
#: asyncpg's errors for a database gone (lost connection, shutdown, restart).
_DRIVER_UNAVAILABLE = (asyncpg.PostgresConnectionError, asyncpg.InterfaceError,
                       asyncpg.exceptions.OperatorInterventionError)


def now_ms() -> int:
    return time.time_ns() // 1_000_000


class StoreBase:
    """Holds the engine; the ``*Ops`` mixins add the operations."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.backend = engine.dialect.name  # "sqlite" or "postgresql"
        self._one_writer = asyncio.Lock() if self.backend == "sqlite" else None

    @property
    def is_postgres(self) -> bool:
        return self.backend == "postgresql"

    @asynccontextmanager
    async def read(self, *, snapshot: bool = False) -> AsyncIterator[AsyncConnection]:
        """A connection for reading; with ``snapshot``, every statement sees one state of
        the database. (SQLite reads always run in one deferred transaction: in WAL mode
        that is a snapshot, and autocommit would cost as many thread hops.)"""
        async with self.engine.connect() as conn:
            if self.is_postgres:
                # Without a snapshot, no BEGIN/ROLLBACK round trips.
                await conn.execution_options(**(SNAPSHOT_PG if snapshot else AUTOCOMMIT))
            yield conn

    async def write(self, work: Callable[[AsyncConnection], Awaitable[T]]) -> T:
        """Run ``work`` in one write transaction, retrying it on deadlock or lock timeout."""
        for attempt in range(_ATTEMPTS):
            try:
                if self._one_writer is None:
                    return await self._transaction(work)
                async with self._one_writer:
                    return await self._transaction(work)
            except Exception as exc:  # DBAPIError, or asyncpg's own (statements sent to it)
                if attempt == _ATTEMPTS - 1 or not _retryable(exc):
                    if unavailable(exc) and not isinstance(exc, OperationalError):
                        raise OperationalError(None, None, exc) from exc  # (a 503)
                    raise
            await asyncio.sleep(random.uniform(0.005, 0.02) * 2**attempt)
        raise AssertionError("unreachable")

    async def _transaction(self, work: Callable[[AsyncConnection], Awaitable[T]]) -> T:
        async with self.engine.connect() as conn:
            await conn.execution_options(**WRITE)
            async with conn.begin():
                return await work(conn)

    async def close(self) -> None:
        await self.engine.dispose()


#: PostgreSQL's SQLSTATEs (or their classes) for "the database cannot serve now": a lost
#: or refused connection (08), too many connections or no room (53), a shutdown, a restart
#: or a database dropped (57P), a database that does not exist (any more: 3D000).
_UNAVAILABLE_SQLSTATES = ("08", "53", "57P", "3D000")


def unavailable(exc: BaseException) -> bool:
    """Whether a driver error says the database cannot be reached or used now (a 503 to
    retry), rather than that a statement was wrong."""
    for error in (exc, getattr(exc, "orig", None), getattr(exc, "__cause__", None),
                  getattr(getattr(exc, "orig", None), "__cause__", None)):
        if isinstance(error, _DRIVER_UNAVAILABLE):
            return True
        code = getattr(error, "sqlstate", None) or getattr(error, "pgcode", None)
        if isinstance(code, str) and code.startswith(_UNAVAILABLE_SQLSTATES):
            return True
    return False


def _retryable(exc: Exception) -> bool:
    if isinstance(exc, DBAPIError):
        orig: object = exc.orig
    elif hasattr(exc, "sqlstate"):  # asyncpg.PostgresError
        orig = exc
    else:
        return False
    codes = {getattr(orig, "sqlstate", None), getattr(orig, "pgcode", None),
             getattr(getattr(orig, "__cause__", None), "sqlstate", None)}
    if codes & _RETRYABLE_SQLSTATES:
        return True
    return "database is locked" in str(orig)
