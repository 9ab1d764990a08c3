"""Alembic environment: runs on the connection (and in the transaction) the caller opened.

Use ``meterline server migrate`` (or ``server._db.upgrade``), which holds the lock that lets
several server processes start at once.
"""

from __future__ import annotations

from alembic import context

from server._tables import metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through `meterline server migrate`")

context.configure(connection=connection, target_metadata=metadata, render_as_batch=True,
                  compare_server_default=True)
with context.begin_transaction():
    context.run_migrations()
