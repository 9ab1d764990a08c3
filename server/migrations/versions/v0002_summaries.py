"""Summaries across developers, and the distinct-developer bookkeeping for them.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28

``usage_summary`` and ``retention_summary`` (each day's sums per tool, model and language,
developer summed away), the same per team (``team_usage_summary``,
``team_retention_summary``: the team's current members), ``active_days``, ``active_daily``
and ``active_spans`` (see ``server/_tables.py``), filled from the existing rollups. Frozen
like every migration: the columns and the backfill are spelled out here.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
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
_GRAINS = {
    (): "developer", ("tool",): "tool", ("model",): "model", ("language",): "language",
    ("tool", "model"): "tool+model", ("tool", "language"): "tool+language",
    ("model", "language"): "model+language", ("tool", "model", "language"): "all",
}
_SPAN_DAYS = 32


def _detail() -> list[sa.Column[object]]:
    return [sa.Column("tool", sa.String(200), nullable=False),
            sa.Column("model", sa.String(200), nullable=False),
            sa.Column("language", sa.String(64), nullable=False)]


def _sum(name: str) -> sa.Column[object]:
    return sa.Column(name, sa.BigInteger, server_default="0", nullable=False)


def upgrade() -> None:
    op.create_table(
        "usage_summary",
        sa.Column("day", sa.Integer, nullable=False),
        *_detail(),
        *(_sum(name) for name in _USAGE_SUMS),
        sa.PrimaryKeyConstraint("day", "tool", "model", "language", name="pk_usage_summary"),
    )
    op.create_table(
        "retention_summary",
        sa.Column("day", sa.Integer, nullable=False),
        *_detail(),
        sa.Column("checkpoint_s", sa.Integer, nullable=False),
        *(_sum(name) for name in _RETENTION_SUMS),
        sa.PrimaryKeyConstraint("day", "tool", "model", "language", "checkpoint_s",
                                name="pk_retention_summary"),
    )
    op.create_table(
        "active_days",
        sa.Column("kind", sa.String(9), nullable=False),
        sa.Column("grain", sa.String(16), nullable=False),
        sa.Column("day", sa.Integer, nullable=False),
        sa.Column("developer_id", sa.Integer, nullable=False),
        *_detail(),
        sa.PrimaryKeyConstraint("kind", "grain", "day", "developer_id", "tool", "model",
                                "language", name="pk_active_days"),
    )
    op.create_table(
        "active_daily",
        sa.Column("kind", sa.String(9), nullable=False),
        sa.Column("grain", sa.String(16), nullable=False),
        sa.Column("day", sa.Integer, nullable=False),
        *_detail(),
        _sum("developers"),
        sa.PrimaryKeyConstraint("kind", "grain", "day", "tool", "model", "language",
                                name="pk_active_daily"),
    )
    op.create_table(
        "active_spans",
        sa.Column("kind", sa.String(9), nullable=False),
        sa.Column("grain", sa.String(16), nullable=False),
        sa.Column("span", sa.Integer, nullable=False),
        sa.Column("developer_id", sa.Integer, nullable=False),
        *_detail(),
        _sum("days"),
        sa.PrimaryKeyConstraint("kind", "grain", "span", "developer_id", "tool", "model",
                                "language", name="pk_active_spans"),
    )
    for name in ("team_usage_summary", "team_retention_summary"):
        op.create_table(
            name,
            sa.Column("team_id", sa.Integer, nullable=False),
            sa.Column("grain", sa.String(12), nullable=False),
            sa.Column("day", sa.Integer, nullable=False),
            *_detail(),
            *([sa.Column("checkpoint_s", sa.Integer, nullable=False)]
              if name == "team_retention_summary" else []),
            *(_sum(n) for n in (_USAGE_SUMS if name == "team_usage_summary"
                                else _RETENTION_SUMS)),
            sa.ForeignKeyConstraint(["team_id"], ["teams.id"], ondelete="CASCADE",
                                    name=f"fk_{name}_team_id_teams"),
            sa.PrimaryKeyConstraint(
                "team_id", "grain", "day", "tool", "model", "language",
                *(["checkpoint_s"] if name == "team_retention_summary" else []),
                name=f"pk_{name}"),
        )
    for statement in _backfill(op.get_bind().dialect.name):
        op.execute(statement)


def _backfill(backend: str) -> list[str]:
    one = "CAST(1 AS BIGINT)" if backend == "postgresql" else "1"
    detail = ("tool", "model", "language")
    usage = ", ".join(_USAGE_SUMS)
    retention = ", ".join(_RETENTION_SUMS)
    statements = [
        f"INSERT INTO usage_summary (day, tool, model, language, {usage}) "
        f"SELECT day, tool, model, language, {', '.join(f'sum({n})' for n in _USAGE_SUMS)} "
        "FROM usage_daily WHERE grain = 'all' GROUP BY day, tool, model, language",
        f"INSERT INTO retention_summary (day, tool, model, language, checkpoint_s, "
        f"{retention}) SELECT day, tool, model, language, checkpoint_s, "
        f"{', '.join(f'sum({n})' for n in _RETENTION_SUMS)} FROM retention_daily "
        "WHERE grain = 'all' GROUP BY day, tool, model, language, checkpoint_s",
        f"INSERT INTO team_usage_summary (team_id, grain, day, tool, model, language, "
        f"{usage}) SELECT m.team_id, grain, day, tool, model, language, "
        f"{', '.join(f'sum({n})' for n in _USAGE_SUMS)} FROM usage_daily "
        "JOIN team_members m ON m.member_id = developer_id "
        "GROUP BY m.team_id, grain, day, tool, model, language",
        f"INSERT INTO team_retention_summary (team_id, grain, day, tool, model, language, "
        f"checkpoint_s, {retention}) SELECT m.team_id, grain, day, tool, model, language, "
        f"checkpoint_s, {', '.join(f'sum({n})' for n in _RETENTION_SUMS)} "
        "FROM retention_daily JOIN team_members m ON m.member_id = developer_id "
        "GROUP BY m.team_id, grain, day, tool, model, language, checkpoint_s",
    ]
    for kind, table in (("usage", "usage_daily"), ("retention", "retention_daily")):
        for dims, grain in _GRAINS.items():
            kept = ", ".join(dim if dim in dims else "''" for dim in detail)
            statements.append(
                "INSERT INTO active_days (kind, grain, day, developer_id, tool, model, "
                f"language) SELECT DISTINCT '{kind}', '{grain}', day, developer_id, {kept} "
                f"FROM {table} WHERE grain = 'all'")
    statements += [
        "INSERT INTO active_daily (kind, grain, day, tool, model, language, developers) "
        "SELECT kind, grain, day, tool, model, language, count(*) FROM active_days "
        "GROUP BY kind, grain, day, tool, model, language",
        "INSERT INTO active_spans (kind, grain, span, developer_id, tool, model, language, "
        f"days) SELECT kind, grain, day / {_SPAN_DAYS}, developer_id, tool, model, language, "
        f"sum({one} << (day % {_SPAN_DAYS})) FROM active_days "
        f"GROUP BY kind, grain, day / {_SPAN_DAYS}, developer_id, tool, model, language",
    ]
    return statements


def downgrade() -> None:
    for table in ("team_retention_summary", "team_usage_summary", "active_spans",
                  "active_daily", "active_days", "retention_summary", "usage_summary"):
        op.drop_table(table)
