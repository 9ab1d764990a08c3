"""Engines and migrations: the only module that knows how each backend is set up.

SQLite runs in WAL mode with ``synchronous=NORMAL`` and a busy timeout, so several worker
processes can share one file; write transactions start with ``BEGIN IMMEDIATE`` so that two
writers queue for the lock instead of failing half-way. PostgreSQL runs as configured.

Migrations are Alembic scripts in ``server/migrations``, applied by ``upgrade`` under a lock
(an advisory lock on PostgreSQL, the write lock on SQLite), so that several server processes
starting at once apply each migration exactly once.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from server._settings import backend_of

#: Execution option: this connection writes (SQLite: take the write lock at BEGIN).
WRITE = {"meterline_write": True}
#: Execution option (PostgreSQL) for reads of one statement each: no BEGIN, no ROLLBACK.
AUTOCOMMIT = {"isolation_level": "AUTOCOMMIT"}
#: Execution option for reads of several statements that must agree (one snapshot).
SNAPSHOT_PG = {"isolation_level": "REPEATABLE READ", "postgresql_readonly": True}
_MIGRATION_LOCK = 0x6D6C_6D69  # "mlmi": any constant shared by every server process
MIGRATIONS = Path(__file__).parent / "migrations"


def create_engine(url: str, **kwargs: Any) -> AsyncEngine:
    """An async engine for ``url`` (already normalised by ``_settings.database_url``)."""
    if backend_of(url) == "postgresql":
        return create_async_engine(url, pool_size=kwargs.pop("pool_size", 10),
                                   max_overflow=kwargs.pop("max_overflow", 10), **kwargs)
    path = url.split(":///", 1)[1] if ":///" in url else ""
    if path and path != ":memory:":
        os.makedirs(os.path.dirname(os.path.abspath(path)) or ".", exist_ok=True)
    engine = create_async_engine(url, **kwargs)
    event.listen(engine.sync_engine, "connect", _sqlite_on_connect)
    event.listen(engine.sync_engine, "begin", _sqlite_on_begin)
    return engine


def _sqlite_on_connect(dbapi_connection: Any, _record: Any) -> None:
    # We emit BEGIN ourselves (below); the driver's implicit transactions can't be IMMEDIATE.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    for pragma in ("journal_mode=WAL", "synchronous=NORMAL", "busy_timeout=30000",
                   "foreign_keys=ON"):
        cursor.execute(f"PRAGMA {pragma}")
    cursor.close()


def _sqlite_on_begin(connection: sa.Connection) -> None:
    write = connection.get_execution_options().get("meterline_write", False)
    connection.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


def is_postgres(engine: AsyncEngine | AsyncConnection) -> bool:
    return engine.dialect.name == "postgresql"


async def upgrade(engine: AsyncEngine) -> None:
    """Bring the schema to the newest migration; safe to run from several processes."""
    async with engine.connect() as conn:
        await conn.execution_options(**WRITE)
        async with conn.begin():
            if is_postgres(conn):
                await conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"),
                                   {"key": _MIGRATION_LOCK})
            await conn.run_sync(_run_alembic, "upgrade", "head")


async def downgrade(engine: AsyncEngine, revision: str) -> None:
    async with engine.connect() as conn:
        await conn.execution_options(**WRITE)
        async with conn.begin():
            await conn.run_sync(_run_alembic, "downgrade", revision)


async def current_revision(engine: AsyncEngine) -> str | None:
    """The applied migration, or None for a blank database."""
    from alembic.runtime.migration import MigrationContext

    async with engine.connect() as conn:
        return await conn.run_sync(
            lambda sync: MigrationContext.configure(sync).get_current_revision())


def head_revision() -> str | None:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(_alembic_config()).get_current_head()


def _alembic_config(connection: sa.Connection | None = None) -> Any:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def _run_alembic(connection: sa.Connection, action: str, revision: str) -> None:
    from alembic import command

    config = _alembic_config(connection)
    if action == "upgrade":
        command.upgrade(config, revision)
    else:
        command.downgrade(config, revision)
