"""The storage seam: one ``Store`` per process, the same on SQLite and PostgreSQL."""

from __future__ import annotations

import sqlalchemy as sa

from server._admin import AdminOps
from server._db import create_engine, upgrade
from server._ingest import IngestOps
from server._report_queries import ReportOps
from server._settings import Settings


class Store(IngestOps, AdminOps, ReportOps):
    """Everything the routes and the CLI read and write, behind one interface."""

    async def ping(self) -> bool:
        """True when the database answers."""
        try:
            async with self.read() as conn:
                await conn.execute(sa.text("SELECT 1"))
        except (sa.exc.SQLAlchemyError, OSError):
            return False
        return True


async def open_store(settings: Settings, *, migrate: bool = True) -> Store:
    """A store on ``settings.db_url``, its schema brought up to date first (by default)."""
    engine = create_engine(settings.db_url)
    if migrate:
        try:
            await upgrade(engine)
        except BaseException:
            await engine.dispose()
            raise
    return Store(engine)
