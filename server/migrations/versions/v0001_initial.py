"""The initial schema: teams, members, tokens, budgets, raw events, deployments, rollups.

Revision ID: 0001
Revises:
Create Date: 2026-11-28

A migration is a frozen snapshot: it spells out its columns rather than importing them
from ``server._tables``, which moves on.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

_ROLLUP_SUMS = (
    "calls", "input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens",
    "cache_write_1h_tokens", "reasoning_tokens", "cost_micro_usd", "unknown_cost_calls",
    "error_calls", "estimated_calls",
    "offered_events", "offered_chars", "offered_lines",
    "accepted_events", "accepted_chars", "accepted_lines",
    "rejected_events", "rejected_chars", "rejected_lines",
    "committed_events", "committed_chars", "committed_lines",
    "deployed_events", "deployed_chars", "deployed_lines",
)


def _where(condition: str) -> dict[str, Any]:
    return {"sqlite_where": sa.text(condition), "postgresql_where": sa.text(condition)}


def _rollup_key() -> list[sa.Column[object]]:
    return [sa.Column("grain", sa.String(12), nullable=False),
            sa.Column("day", sa.Integer, nullable=False),
            sa.Column("developer_id", sa.Integer, nullable=False),
            sa.Column("tool", sa.String(200), nullable=False),
            sa.Column("model", sa.String(200), nullable=False),
            sa.Column("language", sa.String(64), nullable=False)]


def _sum(name: str) -> sa.Column[object]:
    return sa.Column(name, sa.BigInteger, server_default="0", nullable=False)


def upgrade() -> None:
    op.create_table(
        "teams",
        sa.Column("id", sa.Integer, autoincrement=True, nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("created_ms", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_teams"),
        sa.UniqueConstraint("name", name="uq_teams_name"),
    )
    op.create_table(
        "members",
        sa.Column("id", sa.Integer, autoincrement=True, nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("share_individual", sa.Boolean, server_default=sa.false(), nullable=False),
        sa.Column("disabled", sa.Boolean, server_default=sa.false(), nullable=False),
        sa.Column("created_ms", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_members"),
        sa.UniqueConstraint("name", name="uq_members_name"),
    )
    op.create_table(
        "team_members",
        sa.Column("team_id", sa.Integer, nullable=False),
        sa.Column("member_id", sa.Integer, nullable=False),
        sa.ForeignKeyConstraint(["team_id"], ["teams.id"], ondelete="CASCADE",
                                name="fk_team_members_team_id_teams"),
        sa.ForeignKeyConstraint(["member_id"], ["members.id"], ondelete="CASCADE",
                                name="fk_team_members_member_id_members"),
        sa.PrimaryKeyConstraint("team_id", "member_id", name="pk_team_members"),
    )
    op.create_index("ix_team_members_member_id", "team_members", ["member_id"])
    op.create_table(
        "tokens",
        sa.Column("id", sa.String(16), nullable=False),
        sa.Column("secret_sha256", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("member_id", sa.Integer, nullable=True),
        sa.Column("team_id", sa.Integer, nullable=True),
        sa.Column("label", sa.String(100), nullable=False),
        sa.Column("created_ms", sa.BigInteger, nullable=False),
        sa.Column("revoked_ms", sa.BigInteger, nullable=True),
        sa.ForeignKeyConstraint(["member_id"], ["members.id"], ondelete="CASCADE",
                                name="fk_tokens_member_id_members"),
        sa.ForeignKeyConstraint(["team_id"], ["teams.id"], ondelete="CASCADE",
                                name="fk_tokens_team_id_teams"),
        sa.PrimaryKeyConstraint("id", name="pk_tokens"),
    )
    op.create_table(
        "budgets",
        sa.Column("id", sa.Integer, autoincrement=True, nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("scope", sa.String(16), nullable=False),
        sa.Column("member_id", sa.Integer, nullable=True),
        sa.Column("team_id", sa.Integer, nullable=True),
        sa.Column("period", sa.String(32), nullable=False),
        sa.Column("timezone", sa.String(64), nullable=True),
        sa.Column("week_starts", sa.String(16), nullable=False),
        sa.Column("limit_micro_usd", sa.BigInteger, nullable=True),
        sa.Column("limit_tokens", sa.BigInteger, nullable=True),
        sa.Column("warn_at", sa.Float, nullable=False),
        sa.Column("mode", sa.String(8), nullable=False),
        sa.Column("updated_ms", sa.BigInteger, nullable=False),
        sa.ForeignKeyConstraint(["member_id"], ["members.id"], ondelete="CASCADE",
                                name="fk_budgets_member_id_members"),
        sa.ForeignKeyConstraint(["team_id"], ["teams.id"], ondelete="CASCADE",
                                name="fk_budgets_team_id_teams"),
        sa.PrimaryKeyConstraint("id", name="pk_budgets"),
    )
    op.create_index("uq_budgets_developer_name", "budgets", ["member_id", "name"],
                    unique=True, **_where("scope = 'developer'"))
    op.create_index("uq_budgets_team_name", "budgets", ["team_id", "name"],
                    unique=True, **_where("scope = 'team'"))

    op.create_table(
        "calls",
        sa.Column("id", sa.Uuid, nullable=False),
        sa.Column("developer_id", sa.Integer, nullable=False),
        sa.Column("ts_ms", sa.BigInteger, nullable=False),
        sa.Column("day", sa.Integer, nullable=False),
        sa.Column("device_id", sa.String(200), nullable=True),
        sa.Column("tool", sa.String(200), nullable=False),
        sa.Column("source", sa.String(200), nullable=False),
        sa.Column("provider", sa.String(200), nullable=False),
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("input_tokens", sa.Integer, nullable=False),
        sa.Column("output_tokens", sa.Integer, nullable=False),
        sa.Column("cache_read_tokens", sa.Integer, nullable=False),
        sa.Column("cache_write_tokens", sa.Integer, nullable=False),
        sa.Column("cache_write_1h_tokens", sa.Integer, nullable=False),
        sa.Column("reasoning_tokens", sa.Integer, nullable=False),
        sa.Column("cost_micro_usd", sa.BigInteger, nullable=True),
        sa.Column("estimated", sa.Boolean, nullable=False),
        sa.Column("latency_ms", sa.Integer, nullable=True),
        sa.Column("status", sa.String(8), nullable=False),
        sa.Column("language", sa.String(64), nullable=True),
        sa.Column("workspace", sa.String(200), nullable=True),
        sa.Column("request_id", sa.String(200), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_calls"),
    )
    op.create_index("uq_calls_developer_request", "calls", ["developer_id", "request_id"],
                    unique=True, **_where("request_id IS NOT NULL"))
    op.create_table(
        "suggestion_events",
        sa.Column("id", sa.Uuid, nullable=False),
        sa.Column("developer_id", sa.Integer, nullable=False),
        sa.Column("ts_ms", sa.BigInteger, nullable=False),
        sa.Column("day", sa.Integer, nullable=False),
        sa.Column("type", sa.String(16), nullable=False),
        sa.Column("suggestion_id", sa.String(200), nullable=False),
        sa.Column("call_id", sa.String(200), nullable=True),
        sa.Column("chars", sa.Integer, nullable=False),
        sa.Column("lines", sa.Integer, nullable=False),
        sa.Column("checkpoint_s", sa.Integer, nullable=True),
        sa.Column("commit_sha", sa.String(64), nullable=True),
        sa.Column("environment", sa.String(64), nullable=True),
        sa.Column("device_id", sa.String(200), nullable=True),
        sa.Column("tool", sa.String(200), nullable=True),
        sa.Column("model", sa.String(200), nullable=True),
        sa.Column("language", sa.String(64), nullable=True),
        sa.Column("workspace", sa.String(200), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_suggestion_events"),
    )
    op.create_index("ix_suggestion_events_committed", "suggestion_events", ["commit_sha"],
                    **_where("type = 'committed'"))
    op.create_table(
        "deployments",
        sa.Column("id", sa.Integer, autoincrement=True, nullable=False),
        sa.Column("team_id", sa.Integer, nullable=True),
        sa.Column("environment", sa.String(64), nullable=False),
        sa.Column("commit_sha", sa.String(64), nullable=False),
        sa.Column("ts_ms", sa.BigInteger, nullable=False),
        sa.Column("day", sa.Integer, nullable=False),
        sa.Column("token_id", sa.String(16), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_deployments"),
    )
    op.create_index("ix_deployments_commit_sha", "deployments", ["commit_sha"])
    op.create_table(
        "deployed_lines",
        sa.Column("developer_id", sa.Integer, nullable=False),
        sa.Column("suggestion_id", sa.String(200), nullable=False),
        sa.Column("commit_sha", sa.String(64), nullable=False),
        sa.Column("environment", sa.String(64), nullable=False),
        sa.Column("day", sa.Integer, nullable=False),
        sa.Column("chars", sa.Integer, nullable=False),
        sa.Column("lines", sa.Integer, nullable=False),
        sa.Column("tool", sa.String(200), nullable=False),
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("language", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("developer_id", "suggestion_id", "commit_sha", "environment",
                                name="pk_deployed_lines"),
    )

    op.create_table(
        "usage_daily",
        *_rollup_key(),
        *(_sum(name) for name in _ROLLUP_SUMS),
        sa.PrimaryKeyConstraint("grain", "day", "developer_id", "tool", "model", "language",
                                name="pk_usage_daily"),
    )
    op.create_index("ix_usage_daily_grain_developer_id_day", "usage_daily",
                    ["grain", "developer_id", "day"])
    op.create_table(
        "retention_daily",
        *_rollup_key(),
        sa.Column("checkpoint_s", sa.Integer, nullable=False),
        *(_sum(name) for name in ("events", "chars", "lines")),
        sa.PrimaryKeyConstraint("grain", "day", "developer_id", "tool", "model", "language",
                                "checkpoint_s", name="pk_retention_daily"),
    )
    op.create_index("ix_retention_daily_grain_developer_id_day", "retention_daily",
                    ["grain", "developer_id", "day"])


def downgrade() -> None:
    for table in ("retention_daily", "usage_daily", "deployed_lines", "deployments",
                  "suggestion_events", "calls", "budgets", "tokens", "team_members",
                  "members", "teams"):
        op.drop_table(table)
