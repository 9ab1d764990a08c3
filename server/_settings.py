"""The server's settings: every field documented, read from the environment and CLI flags.

This is the one module that knows the environment variables and the default paths.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from server._errors import InputError

ENV_DB = "METERLINE_SERVER_DB"
ENV_MIN_GROUP = "METERLINE_SERVER_MIN_GROUP_SIZE"
ENV_HOME = "METERLINE_HOME"
DEFAULT_CHECKPOINTS = (30, 120, 300, 600, 900)


@dataclass(frozen=True, slots=True)
class Settings:
    """How one server process runs. Every worker behind a load balancer shares these."""

    #: SQLAlchemy URL of the database, normalised to an async driver (see ``database_url``).
    db_url: str
    #: A lead sees per-developer rows only when a report covers at least this many
    #: developers; developers who opted in are always shown.
    min_group_size: int = 5
    #: Most events one ``POST /api/v1/events`` may carry (more: 413).
    max_batch_events: int = 5_000
    #: Most bytes one request body may carry (more: 413).
    max_body_bytes: int = 4 * 2**20
    #: Retention checkpoints (seconds after acceptance) a report always lists.
    checkpoints: tuple[int, ...] = field(default=DEFAULT_CHECKPOINTS)
    #: The checkpoint whose retained lines are "retained lines" in per-line figures (15 min).
    headline_checkpoint_s: int = 900

    @classmethod
    def from_env(cls, db_url: str | None = None, min_group_size: int | None = None) -> Settings:
        """Settings from flags where given, else the environment, else the defaults."""
        url = database_url(db_url or os.environ.get(ENV_DB) or default_sqlite_url())
        if min_group_size is None:
            raw = os.environ.get(ENV_MIN_GROUP, "5")
            try:
                min_group_size = int(raw)
            except ValueError:
                raise InputError(f"not a number: {raw!r}", field=ENV_MIN_GROUP) from None
        if min_group_size < 1:
            raise InputError("must be at least 1", field=ENV_MIN_GROUP)
        return cls(db_url=url, min_group_size=min_group_size)


def home() -> str:
    """``$METERLINE_HOME``, else the platform's user data folder (same rule as the agent)."""
    configured = os.environ.get(ENV_HOME)
    if configured:
        return os.path.abspath(os.path.expanduser(configured))
    from platformdirs import user_data_dir

    return user_data_dir("meterline", appauthor=False)


def default_sqlite_url() -> str:
    return "sqlite+aiosqlite:///" + os.path.join(home(), "server.db")


def database_url(raw: str) -> str:
    """Any accepted spelling of a database → the SQLAlchemy async URL we run on.

    ``postgresql://`` and ``postgres://`` map to asyncpg, ``sqlite:///`` to aiosqlite, and a
    bare file path means a SQLite file there.
    """
    url = raw.strip()
    if "://" not in url:
        return "sqlite+aiosqlite:///" + os.path.abspath(os.path.expanduser(url))
    scheme, rest = url.split("://", 1)
    scheme = scheme.lower()
    if scheme in ("postgresql", "postgres", "postgresql+asyncpg", "postgresql+psycopg",
                  "postgresql+psycopg2"):
        return "postgresql+asyncpg://" + rest
    if scheme in ("sqlite", "sqlite+aiosqlite", "sqlite+pysqlite"):
        return "sqlite+aiosqlite://" + rest
    raise InputError(f"unsupported database {scheme!r}: use sqlite+aiosqlite:///path or "
                     "postgresql://user@host/db", field=ENV_DB)


def backend_of(url: str) -> str:
    """``sqlite`` or ``postgresql``."""
    return "postgresql" if url.startswith("postgresql") else "sqlite"
