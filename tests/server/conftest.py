"""Fixtures for the team server: the same tests on SQLite and on the real PostgreSQL.

``db_url`` is parametrized over both backends. SQLite: a fresh copy of a migrated file per
test. PostgreSQL: one database per test run (``meterline_t_<random>``, dropped at the end),
migrated once and emptied before each test. With METERLINE_TEST_PG_URL unset the
PostgreSQL cases skip (through the shared ``pg_url`` fixture); with it set, an unreachable
database fails them.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from server_factory import Org, make_org
from server_support import BACKENDS, PgDatabases, empty, migrate

from server._app import create_app
from server._db import create_engine
from server._settings import Settings, database_url
from server._store import Store


@pytest.fixture(scope="session")
def pg_databases() -> Iterator[PgDatabases]:
    databases = PgDatabases()
    yield databases
    databases.drop_all()


@pytest.fixture
def pg_test_url(pg_url: str, pg_databases: PgDatabases) -> str:
    """This run's migrated PostgreSQL database, emptied for this test."""
    if pg_databases.shared is None:
        pg_databases.shared = pg_databases.create(pg_url)
    asyncio.run(empty(pg_databases.shared))
    return pg_databases.shared


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sqlite-template") / "server.db"
    asyncio.run(migrate(f"sqlite+aiosqlite:///{path}"))
    return path


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A migrated, empty database on each backend."""
    if request.param == "sqlite":
        path = tmp_path / "server.db"
        shutil.copyfile(request.getfixturevalue("sqlite_template"), path)
        return f"sqlite+aiosqlite:///{path}"
    url: str = request.getfixturevalue("pg_test_url")
    return url


@pytest.fixture
async def store(db_url: str) -> AsyncIterator[Store]:
    opened = Store(create_engine(database_url(db_url)))
    yield opened
    await opened.close()


@pytest.fixture
def settings(db_url: str) -> Settings:
    return Settings(db_url=database_url(db_url))


@pytest.fixture
async def client(store: Store, settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The app in-process (ASGITransport): an unexpected exception fails the test."""
    app = create_app(settings, store_=store)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://server") as http:
        yield http


@pytest.fixture
async def org(store: Store) -> Org:
    return await make_org(store)
