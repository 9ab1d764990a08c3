"""The daily rollups summed over aligned blocks of 8 days.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28

``usage_blocks`` and ``retention_blocks`` (see ``server/_tables.py``), filled from the
existing daily rollups. Frozen like every migration: the columns and the backfill are
spelled out here.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_USAGE_SUMS = (
    "calls", "input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens",
    "cache_write_1h_tokens", "reasoning_tokens", "cost_micro_usd", "unknown_cost_calls",
    "error_calls", "estimated_calls",
    "offered_events", "offered_chars", "offered_lines",
    "accepted_events", "accepted_chars", "accepted_lines",
    "rejected_events", "rejected_chars", "rejected_lines",
    "committed_events", "committed_chars", "committed_lines",
    "deployed_events", "deployed_chars", "deployed_lines",
)
_RETENTION_SUMS = ("events", "chars", "lines")
_BLOCK_SIZES = (8,)
_KEY = ("grain", "size", "first_day", "developer_id", "tool", "model", "language")


def _key() -> list[sa.Column[object]]:
    return [sa.Column("grain", sa.String(12), nullable=False),
            sa.Column("size", sa.SmallInteger, nullable=False),
            sa.Column("first_day", sa.Integer, nullable=False),
            sa.Column("developer_id", sa.Integer, nullable=False),
            sa.Column("tool", sa.String(200), nullable=False),
            sa.Column("model", sa.String(200), nullable=False),
            sa.Column("language", sa.String(64), nullable=False)]


def _sum(name: str) -> sa.Column[object]:
    return sa.Column(name, sa.BigInteger, server_default="0", nullable=False)


def upgrade() -> None:
    op.create_table(
        "usage_blocks",
        *_key(),
        *(_sum(name) for name in _USAGE_SUMS),
        sa.PrimaryKeyConstraint(*_KEY, name="pk_usage_blocks"),
    )
    op.create_table(
        "retention_blocks",
        *_key(),
        sa.Column("checkpoint_s", sa.Integer, nullable=False),
        *(_sum(name) for name in _RETENTION_SUMS),
        sa.PrimaryKeyConstraint(*_KEY, "checkpoint_s", name="pk_retention_blocks"),
    )
    for statement in _backfill():
        op.execute(statement)


def _backfill() -> list[str]:
    statements = []
    for table, source, sums, extra in (
            ("usage_blocks", "usage_daily", _USAGE_SUMS, ""),
            ("retention_blocks", "retention_daily", _RETENTION_SUMS, ", checkpoint_s")):
        for size in _BLOCK_SIZES:
            statements.append(
                f"INSERT INTO {table} ({', '.join(_KEY)}{extra}, {', '.join(sums)}) "
                f"SELECT grain, {size}, (day / {size}) * {size}, developer_id, tool, model, "
                f"language{extra}, {', '.join(f'sum({n})' for n in sums)} FROM {source} "
                f"GROUP BY grain, day / {size}, developer_id, tool, model, language{extra}")
    return statements


def downgrade() -> None:
    for table in ("retention_blocks", "usage_blocks"):
        op.drop_table(table)
