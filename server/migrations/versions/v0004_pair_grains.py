"""Rollups at three more grains (per developer and two of tool, model and language), and
the summaries across developers at every grain.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-28

``tool+model``, ``tool+lang`` and ``model+lang`` rows beside the existing grains in the
daily rollups, the 8-day blocks and the team summaries, filled from their ``all`` rows (the
finest grain: the pairs are its sums with the third dimension summed away). A report that
groups by two of the three reads these instead of the ``all`` rows, a third to a sixth as
many.

``usage_summary`` and ``retention_summary`` (the sums across developers) get a ``grain``
column, first in their key, and rows at each presence grain (any subset of tool, model and
language, named as ``active_days``' grains): a report over every developer reads exactly
its groups' rows. They are made again from the daily rollups' ``all`` rows.

``team_active_daily``: distinct developers per team, day and group of each presence grain
(the ``active_days`` of the team's current members, counted), for reports by team and day.

Frozen like every migration: the grains and the backfill are spelled out here.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
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
#: grain → the dimensions it keeps ('' in the others)
_PAIRS = {"tool+model": ("tool", "model"), "tool+lang": ("tool", "language"),
          "model+lang": ("model", "language")}
#: table → the key columns besides grain, tool, model and language, and its sums
_TABLES = {
    "usage_daily": (("day", "developer_id"), _USAGE_SUMS),
    "retention_daily": (("day", "developer_id", "checkpoint_s"), _RETENTION_SUMS),
    "usage_blocks": (("size", "first_day", "developer_id"), _USAGE_SUMS),
    "retention_blocks": (("size", "first_day", "developer_id", "checkpoint_s"),
                         _RETENTION_SUMS),
    "team_usage_summary": (("team_id", "day"), _USAGE_SUMS),
    "team_retention_summary": (("team_id", "day", "checkpoint_s"), _RETENTION_SUMS),
}


#: presence grain → the dimensions it keeps
_PRESENCE = {"developer": (), "tool": ("tool",), "model": ("model",),
             "language": ("language",), "tool+model": ("tool", "model"),
             "tool+language": ("tool", "language"), "model+language": ("model", "language"),
             "all": ("tool", "model", "language")}
_DETAIL = ("tool", "model", "language")


def _summary_tables(grain: bool) -> None:
    """Create ``usage_summary`` and ``retention_summary``, with or without ``grain``."""
    for name, sums, extra in (("usage_summary", _USAGE_SUMS, ()),
                              ("retention_summary", _RETENTION_SUMS, ("checkpoint_s",))):
        key = [*(["grain"] if grain else []), "day", *_DETAIL, *extra]
        op.create_table(
            name,
            *([sa.Column("grain", sa.String(16), nullable=False)] if grain else []),
            sa.Column("day", sa.Integer, nullable=False),
            sa.Column("tool", sa.String(200), nullable=False),
            sa.Column("model", sa.String(200), nullable=False),
            sa.Column("language", sa.String(64), nullable=False),
            *(sa.Column(column, sa.Integer, nullable=False) for column in extra),
            *(sa.Column(column, sa.BigInteger, server_default="0", nullable=False)
              for column in sums),
            sa.PrimaryKeyConstraint(*key, name=f"pk_{name}"),
            # SQLite: the rows stored in key order, so a range of days at one grain is read
            # in one pass (with a rowid, each row is a second lookup away from the index).
            sqlite_with_rowid=not grain,
        )


def _fill_summaries(grains: dict[str, tuple[str, ...]] | None) -> None:
    """The summaries from the daily rollups' ``all`` rows: at each of ``grains``, or
    (None) without a grain column, at the finest."""
    for name, source, sums, extra in (
            ("usage_summary", "usage_daily", _USAGE_SUMS, ()),
            ("retention_summary", "retention_daily", _RETENTION_SUMS, ("checkpoint_s",))):
        for grain, kept in (grains or {"": _DETAIL}).items():
            detail = [column if column in kept else "''" for column in _DETAIL]
            group = ["day", *(column for column in _DETAIL if column in kept), *extra]
            op.execute(
                f"INSERT INTO {name} ({'grain, ' if grains else ''}day, tool, model, "
                f"language, {', '.join((*extra, *sums))}) SELECT "
                f"{repr(grain) + ', ' if grains else ''}day, {', '.join(detail)}, "
                f"{', '.join((*extra, *(f'sum({column})' for column in sums)))} "
                f"FROM {source} WHERE grain = 'all' GROUP BY {', '.join(group)}")


def upgrade() -> None:
    op.create_table(
        "team_active_daily",
        sa.Column("team_id", sa.Integer, nullable=False),
        sa.Column("kind", sa.String(9), nullable=False),
        sa.Column("grain", sa.String(16), nullable=False),
        sa.Column("day", sa.Integer, nullable=False),
        sa.Column("tool", sa.String(200), nullable=False),
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("language", sa.String(64), nullable=False),
        sa.Column("developers", sa.BigInteger, server_default="0", nullable=False),
        sa.ForeignKeyConstraint(["team_id"], ["teams.id"], ondelete="CASCADE",
                                name="fk_team_active_daily_team_id_teams"),
        sa.PrimaryKeyConstraint("team_id", "kind", "grain", "day", "tool", "model",
                                "language", name="pk_team_active_daily"),
    )
    op.execute(
        "INSERT INTO team_active_daily (team_id, kind, grain, day, tool, model, language, "
        "developers) SELECT m.team_id, kind, grain, day, tool, model, language, count(*) "
        "FROM active_days JOIN team_members m ON m.member_id = developer_id "
        "GROUP BY m.team_id, kind, grain, day, tool, model, language")
    for table in ("retention_summary", "usage_summary"):
        op.drop_table(table)
    _summary_tables(grain=True)
    _fill_summaries(_PRESENCE)
    for table, (key, sums) in _TABLES.items():
        for grain, kept in _PAIRS.items():
            detail = [name if name in kept else "''" for name in ("tool", "model", "language")]
            op.execute(
                f"INSERT INTO {table} (grain, {', '.join(key)}, tool, model, language, "
                f"{', '.join(sums)}) SELECT '{grain}', {', '.join(key)}, {', '.join(detail)}, "
                f"{', '.join(f'sum({name})' for name in sums)} FROM {table} "
                f"WHERE grain = 'all' GROUP BY {', '.join(key)}, "
                f"{', '.join(name for name in ('tool', 'model', 'language') if name in kept)}")


def downgrade() -> None:
    op.drop_table("team_active_daily")
    for table in ("retention_summary", "usage_summary"):
        op.drop_table(table)
    _summary_tables(grain=False)
    _fill_summaries(None)
    for table in _TABLES:
        op.execute(f"DELETE FROM {table} WHERE grain IN "
                   f"({', '.join(repr(grain) for grain in _PAIRS)})")
