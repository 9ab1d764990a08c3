"""Rollups at three more grains: per developer and two of tool, model and language.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-28

``tool+model``, ``tool+lang`` and ``model+lang`` rows beside the existing grains in the
daily rollups, the 8-day blocks and the team summaries, filled from their ``all`` rows (the
finest grain: the pairs are its sums with the third dimension summed away). A report that
groups by two of the three reads these instead of the ``all`` rows, a third to a sixth as
many. Frozen like every migration: the grains and the backfill are spelled out here.
"""

from __future__ import annotations

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


def upgrade() -> None:
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
    for table in _TABLES:
        op.execute(f"DELETE FROM {table} WHERE grain IN "
                   f"({', '.join(repr(grain) for grain in _PAIRS)})")
