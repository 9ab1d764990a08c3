"""Helpers for the server's tests: databases on both backends and real server processes.

Kept out of conftest.py so test modules import them by a name of their own (several
folders' conftest.py files would all be called ``conftest``).
"""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx
import pytest

from server._db import create_engine, upgrade
from server._settings import database_url

BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
DATA_TABLES = ("teams", "members", "team_members", "tokens", "budgets", "calls",
               "suggestion_events", "deployments", "deployed_lines", "usage_daily",
               "retention_daily", "usage_summary", "retention_summary",
               "active_days", "active_daily", "active_spans", "usage_blocks",
               "retention_blocks")

async def migrate(url: str) -> None:
    engine = create_engine(database_url(url))
    try:
        await upgrade(engine)
    finally:
        await engine.dispose()


def with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, parts.fragment))


def plain_pg(url: str) -> str:
    """asyncpg wants ``postgresql://``, not SQLAlchemy's ``postgresql+asyncpg://``."""
    return "postgresql://" + url.split("://", 1)[1]


class PgDatabases:
    """Databases this test run created on the PostgreSQL server; all dropped at the end."""

    def __init__(self) -> None:
        self.created: list[tuple[str, str]] = []
        self.shared: str | None = None

    def create(self, base_url: str, *, migrated: bool = True) -> str:
        name = f"meterline_t_{secrets.token_hex(6)}"
        asyncio.run(self._admin(base_url, f'CREATE DATABASE "{name}"'))
        self.created.append((base_url, name))
        url = with_database(base_url, name)
        if migrated:
            asyncio.run(migrate(url))
        return url

    def drop_all(self) -> None:
        for base_url, name in self.created:
            asyncio.run(self._admin(base_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))

    @staticmethod
    async def _admin(base_url: str, sql: str) -> None:
        conn = await asyncpg.connect(plain_pg(base_url), timeout=10)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()


async def empty(url: str) -> None:
    """Remove every row (the schema stays), between tests on the shared database."""
    conn = await asyncpg.connect(plain_pg(url), timeout=10)
    try:
        await conn.execute(f"TRUNCATE {', '.join(DATA_TABLES)} RESTART IDENTITY CASCADE")
    finally:
        await conn.close()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def meterline_command() -> list[str]:
    """The installed console script, next to this interpreter."""
    script = Path(sys.executable).parent / "meterline"
    assert script.exists(), f"{script} missing: install the project (pip install -e .)"
    return [str(script)]


class ServerProcess:
    """``meterline server run`` as a subprocess on a loopback port."""

    def __init__(self, db: str, *, workers: int = 1, env: dict[str, str] | None = None,
                 extra: tuple[str, ...] = (), wait: bool = True) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = Path(os.environ["METERLINE_HOME"]) / f"server-{self.port}.log"
        command = [*meterline_command(), "server", "--db", db, "run", "--port",
                   str(self.port), "--workers", str(workers), "--graceful-timeout", "2",
                   "--no-access-log", "--log-level", "warning", *extra]
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                                            env={**os.environ, **(env or {})},
                                            start_new_session=True)
        if wait:
            self.wait_healthy()

    def wait_healthy(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited: {self.log.read_text()[-2000:]}")
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"server not healthy in {timeout}s: {self.log.read_text()[-2000:]}")

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)  # its own session: it and its workers
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=5)

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()
