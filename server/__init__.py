"""meterline's team server: ingest, auth, budgets and outcome-per-token reports.

Run it with ``meterline server run``; see docs/server.md. The public surface::

    create_app(settings)   the ASGI app (FastAPI)
    Settings               how a server process runs (from the environment and flags)
    open_store(settings)   the storage seam, the same on SQLite and PostgreSQL
    ServerError            the root of the server's exceptions (see ``_errors``)

Names are imported on first use, so that ``meterline server --help`` stays fast. The
server shares only the wire schema with the agent: it imports none of ``agent``, ``lsp``
or ``tui``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from server._app import create_app
    from server._errors import ServerError
    from server._settings import Settings
    from server._store import Store, open_store

__all__ = ["ServerError", "Settings", "Store", "create_app", "open_store"]
_HOMES = {"create_app": "server._app", "ServerError": "server._errors",
          "Settings": "server._settings", "Store": "server._store",
          "open_store": "server._store"}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'server' has no attribute {name!r}")
    return getattr(importlib.import_module(home), name)
