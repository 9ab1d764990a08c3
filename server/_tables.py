"""The schema, in SQLAlchemy Core: one definition for SQLite and PostgreSQL.

Times are integer milliseconds since the Unix epoch (UTC); ``day`` is whole days since
1970-01-01 UTC. Money is integer micro-dollars. Event ids are UUIDs (native on PostgreSQL,
32 hex characters on SQLite). Rollup keys use ``''`` rather than NULL for an unknown
language, tool or model, so that the key is unique on both backends.

The migrations in ``server/migrations`` create exactly this; a test compares the two.
"""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData(naming_convention={
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
})

NAME_LEN = 64
LABEL_LEN = 200

teams = sa.Table(
    "teams", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(NAME_LEN), nullable=False, unique=True),
    sa.Column("created_ms", sa.BigInteger, nullable=False),
)

members = sa.Table(
    "members", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    # The developer id on the wire: the optional "developer" of an event must equal it.
    sa.Column("name", sa.String(NAME_LEN), nullable=False, unique=True),
    sa.Column("role", sa.String(16), nullable=False),
    # Opted in to per-developer rows in leads' reports whatever the group size.
    sa.Column("share_individual", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("disabled", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("created_ms", sa.BigInteger, nullable=False),
)

team_members = sa.Table(
    "team_members", metadata,
    sa.Column("team_id", sa.Integer, sa.ForeignKey("teams.id", ondelete="CASCADE"),
              primary_key=True),
    sa.Column("member_id", sa.Integer, sa.ForeignKey("members.id", ondelete="CASCADE"),
              primary_key=True),
    sa.Index(None, "member_id"),
)

tokens = sa.Table(
    "tokens", metadata,
    # The public part of a token (``mlt_<id>_<secret>``): lets us find the row and revoke
    # it by id without ever storing or logging the secret.
    sa.Column("id", sa.String(16), primary_key=True),
    sa.Column("secret_sha256", sa.String(64), nullable=False),
    sa.Column("kind", sa.String(8), nullable=False),  # member | ci
    sa.Column("member_id", sa.Integer, sa.ForeignKey("members.id", ondelete="CASCADE"),
              nullable=True),
    sa.Column("team_id", sa.Integer, sa.ForeignKey("teams.id", ondelete="CASCADE"),
              nullable=True),
    sa.Column("label", sa.String(100), nullable=False),
    sa.Column("created_ms", sa.BigInteger, nullable=False),
    sa.Column("revoked_ms", sa.BigInteger, nullable=True),
)

budgets = sa.Table(
    "budgets", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(NAME_LEN), nullable=False),
    sa.Column("scope", sa.String(16), nullable=False),  # developer | team
    sa.Column("member_id", sa.Integer, sa.ForeignKey("members.id", ondelete="CASCADE"),
              nullable=True),
    sa.Column("team_id", sa.Integer, sa.ForeignKey("teams.id", ondelete="CASCADE"),
              nullable=True),
    sa.Column("period", sa.String(32), nullable=False),
    sa.Column("timezone", sa.String(64), nullable=True),
    sa.Column("week_starts", sa.String(16), nullable=False),
    sa.Column("limit_micro_usd", sa.BigInteger, nullable=True),
    sa.Column("limit_tokens", sa.BigInteger, nullable=True),
    sa.Column("warn_at", sa.Float, nullable=False),
    sa.Column("mode", sa.String(8), nullable=False),
    sa.Column("updated_ms", sa.BigInteger, nullable=False),
    sa.Index("uq_budgets_developer_name", "member_id", "name", unique=True,
             sqlite_where=sa.text("scope = 'developer'"),
             postgresql_where=sa.text("scope = 'developer'")),
    sa.Index("uq_budgets_team_name", "team_id", "name", unique=True,
             sqlite_where=sa.text("scope = 'team'"),
             postgresql_where=sa.text("scope = 'team'")),
)

# --- raw events: append-only, the idempotency keys, and the source the rollups came from ---

calls = sa.Table(
    "calls", metadata,
    sa.Column("id", sa.Uuid, primary_key=True),
    sa.Column("developer_id", sa.Integer, nullable=False),
    sa.Column("ts_ms", sa.BigInteger, nullable=False),
    sa.Column("day", sa.Integer, nullable=False),
    sa.Column("device_id", sa.String(LABEL_LEN), nullable=True),
    sa.Column("tool", sa.String(LABEL_LEN), nullable=False),
    sa.Column("source", sa.String(LABEL_LEN), nullable=False),
    sa.Column("provider", sa.String(LABEL_LEN), nullable=False),
    sa.Column("model", sa.String(LABEL_LEN), nullable=False),
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
    sa.Column("workspace", sa.String(LABEL_LEN), nullable=True),
    sa.Column("request_id", sa.String(LABEL_LEN), nullable=True),
    # The same provider call reaching us by two paths (proxy and a log importer) counts once.
    sa.Index("uq_calls_developer_request", "developer_id", "request_id", unique=True,
             sqlite_where=sa.text("request_id IS NOT NULL"),
             postgresql_where=sa.text("request_id IS NOT NULL")),
)

suggestion_events = sa.Table(
    "suggestion_events", metadata,
    sa.Column("id", sa.Uuid, primary_key=True),
    sa.Column("developer_id", sa.Integer, nullable=False),
    sa.Column("ts_ms", sa.BigInteger, nullable=False),
    sa.Column("day", sa.Integer, nullable=False),
    sa.Column("type", sa.String(16), nullable=False),  # offered, accepted, ... deployed
    sa.Column("suggestion_id", sa.String(LABEL_LEN), nullable=False),
    sa.Column("call_id", sa.String(LABEL_LEN), nullable=True),
    sa.Column("chars", sa.Integer, nullable=False),
    sa.Column("lines", sa.Integer, nullable=False),
    sa.Column("checkpoint_s", sa.Integer, nullable=True),
    sa.Column("commit_sha", sa.String(64), nullable=True),
    sa.Column("environment", sa.String(64), nullable=True),
    sa.Column("device_id", sa.String(LABEL_LEN), nullable=True),
    sa.Column("tool", sa.String(LABEL_LEN), nullable=True),
    sa.Column("model", sa.String(LABEL_LEN), nullable=True),
    sa.Column("language", sa.String(64), nullable=True),
    sa.Column("workspace", sa.String(LABEL_LEN), nullable=True),
    # CI reports commits: find the committed lines of a commit without a scan.
    sa.Index("ix_suggestion_events_committed", "commit_sha",
             sqlite_where=sa.text("type = 'committed'"),
             postgresql_where=sa.text("type = 'committed'")),
)

deployments = sa.Table(
    "deployments", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    # The CI token's team: only that team's developers' commits match (NULL: every team).
    sa.Column("team_id", sa.Integer, nullable=True),
    sa.Column("environment", sa.String(64), nullable=False),
    sa.Column("commit_sha", sa.String(64), nullable=False),
    sa.Column("ts_ms", sa.BigInteger, nullable=False),
    sa.Column("day", sa.Integer, nullable=False),
    sa.Column("token_id", sa.String(16), nullable=True),
    sa.Index(None, "commit_sha"),
)

# One row per suggestion deployed (per commit and environment), whichever path reported it
# first (CI through POST /deployments, or a suggestion.deployed event): counted once.
deployed_lines = sa.Table(
    "deployed_lines", metadata,
    sa.Column("developer_id", sa.Integer, primary_key=True),
    sa.Column("suggestion_id", sa.String(LABEL_LEN), primary_key=True),
    sa.Column("commit_sha", sa.String(64), primary_key=True),
    sa.Column("environment", sa.String(64), primary_key=True),
    sa.Column("day", sa.Integer, nullable=False),
    sa.Column("chars", sa.Integer, nullable=False),
    sa.Column("lines", sa.Integer, nullable=False),
    # The rollup dimensions of the committed lines ('' when unknown).
    sa.Column("tool", sa.String(LABEL_LEN), nullable=False),
    sa.Column("model", sa.String(LABEL_LEN), nullable=False),
    sa.Column("language", sa.String(64), nullable=False),
)

# --- daily rollups: maintained at ingest, in the same transaction, for new rows only ---
#
# Each day's sums are kept at several grains (grouping sets), so that a report reads the
# fewest rows: per developer only; per developer and one of model, tool or language; per
# developer and two of them (migration 0004: "tool+model", "tool+lang", "model+lang"); or per
# developer, tool, model and language ("all"). Columns a grain leaves out hold ''.

#: The dimensions below a developer's day: what the grains keep or leave out.
DETAIL_DIMS = frozenset(("tool", "model", "language"))
#: Each grain and the detail dimensions it keeps (the others hold '').
GRAIN_DETAIL: dict[str, frozenset[str]] = {
    "developer": frozenset(), "model": frozenset({"model"}), "tool": frozenset({"tool"}),
    "language": frozenset({"language"}), "tool+model": frozenset({"tool", "model"}),
    "tool+lang": frozenset({"tool", "language"}), "model+lang": frozenset({"model", "language"}),
    "all": DETAIL_DIMS,
}
GRAINS = tuple(GRAIN_DETAIL)
ROLLUP_KEY = ("grain", "day", "developer_id", "tool", "model", "language")
CALL_SUMS = ("calls", "input_tokens", "output_tokens", "cache_read_tokens",
             "cache_write_tokens", "cache_write_1h_tokens", "reasoning_tokens",
             "cost_micro_usd", "unknown_cost_calls", "error_calls", "estimated_calls")
STAGES = ("offered", "accepted", "rejected", "committed", "deployed")
STAGE_SUMS = tuple(f"{stage}_{measure}" for stage in STAGES
                   for measure in ("events", "chars", "lines"))
USAGE_SUMS = CALL_SUMS + STAGE_SUMS
RETENTION_KEY = (*ROLLUP_KEY, "checkpoint_s")
RETENTION_SUMS = ("events", "chars", "lines")


def _sums(names: tuple[str, ...]) -> list[sa.Column[object]]:
    """Summed columns: BIGINT, never NULL, 0 to start from."""
    return [sa.Column(name, sa.BigInteger, nullable=False, server_default="0")
            for name in names]


def _detail_columns() -> list[sa.Column[object]]:
    return [sa.Column("tool", sa.String(LABEL_LEN), primary_key=True),
            sa.Column("model", sa.String(LABEL_LEN), primary_key=True),
            sa.Column("language", sa.String(64), primary_key=True)]


def _rollup_key(*period: sa.Column[object]) -> list[sa.Column[object]]:
    """A rollup's key: grain, the ``period`` columns, developer, tool, model, language."""
    return [sa.Column("grain", sa.String(12), primary_key=True), *period,
            sa.Column("developer_id", sa.Integer, primary_key=True), *_detail_columns()]


def _key_columns() -> list[sa.Column[object]]:
    return _rollup_key(sa.Column("day", sa.Integer, primary_key=True))


usage_daily = sa.Table(
    "usage_daily", metadata,
    *_key_columns(),
    *_sums(USAGE_SUMS),
    sa.Index(None, "grain", "developer_id", "day"),  # a lead's or a developer's report
)

retention_daily = sa.Table(
    "retention_daily", metadata,
    *_key_columns(),
    sa.Column("checkpoint_s", sa.Integer, primary_key=True),
    *_sums(RETENTION_SUMS),
    sa.Index(None, "grain", "developer_id", "day"),
)

# --- the same rollups over blocks of days (migration 0003): fewer rows for long ranges ---
#
# ``usage_blocks`` and ``retention_blocks`` hold the daily rollups' sums, at the same grains
# and keys, over aligned blocks of 8 days (``size``; ``first_day`` a multiple of it). A
# report over a range not grouped by day reads the whole blocks inside it, then single days
# at either edge from the daily rollups: 90 days in 13 to 20 rows per developer and group
# instead of 90. Kept at ingest from the same deltas. (``covering`` takes several sizes,
# largest first: 32 and 4 read fewer rows on average, 10 to 20, but ingest writes twice the
# block rows: with them, ingest on PostgreSQL measured about 5% slower than without blocks.)

BLOCK_SIZES = (8,)
BLOCK_KEY = ("grain", "size", "first_day", "developer_id", "tool", "model", "language")


def _block_key_columns() -> list[sa.Column[object]]:
    return _rollup_key(sa.Column("size", sa.SmallInteger, primary_key=True),
                       sa.Column("first_day", sa.Integer, primary_key=True))


usage_blocks = sa.Table(
    "usage_blocks", metadata,
    *_block_key_columns(),
    *_sums(USAGE_SUMS),
)

retention_blocks = sa.Table(
    "retention_blocks", metadata,
    *_block_key_columns(),
    sa.Column("checkpoint_s", sa.Integer, primary_key=True),
    *_sums(RETENTION_SUMS),
)

# --- summaries across developers: maintained at ingest from the rollup deltas ---
#
# An admin's report over every developer would otherwise sum developers x days x
# combinations rollup rows. ``usage_summary`` and ``retention_summary`` hold each day's sums
# with the developer summed away, at every presence grain (below; migration 0004): a report
# reads exactly its groups' rows. Their ``developers`` figure
# (distinct developers) cannot be summed, so ``active_days`` records each (developer, day)
# active in a group of a presence grain (any subset of tool, model and language), once;
# ingest counts the new ones into ``active_daily`` (developers per day and group) and into
# ``active_spans`` (per developer and group, a bitmask of the active days of each 32-day
# span): the distinct developers of a range are the rows whose mask meets the range.
# ``kind`` tells activity in ``usage_daily`` ("usage") from ``retention_daily`` ("retention").

PRESENCE_GRAINS = {
    (): "developer", ("tool",): "tool", ("model",): "model", ("language",): "language",
    ("tool", "model"): "tool+model", ("tool", "language"): "tool+language",
    ("model", "language"): "model+language", ("tool", "model", "language"): "all",
}
SPAN_DAYS = 32
DETAIL_KEY = ("day", "tool", "model", "language")
PRESENCE_KEY = ("kind", "grain", "day", "developer_id", "tool", "model", "language")
ACTIVE_DAILY_KEY = ("kind", "grain", "day", "tool", "model", "language")
ACTIVE_SPANS_KEY = ("kind", "grain", "span", "developer_id", "tool", "model", "language")


usage_summary = sa.Table(
    "usage_summary", metadata,
    sa.Column("grain", sa.String(16), primary_key=True),  # a presence grain (migration 0004)
    sa.Column("day", sa.Integer, primary_key=True),
    *_detail_columns(),
    *_sums(USAGE_SUMS),
    sqlite_with_rowid=False,  # read in key order (migration 0004)
)

retention_summary = sa.Table(
    "retention_summary", metadata,
    sa.Column("grain", sa.String(16), primary_key=True),
    sa.Column("day", sa.Integer, primary_key=True),
    *_detail_columns(),
    sa.Column("checkpoint_s", sa.Integer, primary_key=True),
    *_sums(RETENTION_SUMS),
    sqlite_with_rowid=False,  # read in key order (migration 0004)
)

active_days = sa.Table(
    "active_days", metadata,
    sa.Column("kind", sa.String(9), primary_key=True),
    sa.Column("grain", sa.String(16), primary_key=True),
    sa.Column("day", sa.Integer, primary_key=True),
    sa.Column("developer_id", sa.Integer, primary_key=True),
    *_detail_columns(),
)

active_daily = sa.Table(
    "active_daily", metadata,
    sa.Column("kind", sa.String(9), primary_key=True),
    sa.Column("grain", sa.String(16), primary_key=True),
    sa.Column("day", sa.Integer, primary_key=True),
    *_detail_columns(),
    *_sums(("developers",)),
)

active_spans = sa.Table(
    "active_spans", metadata,
    sa.Column("kind", sa.String(9), primary_key=True),
    sa.Column("grain", sa.String(16), primary_key=True),
    sa.Column("span", sa.Integer, primary_key=True),  # day // SPAN_DAYS
    sa.Column("developer_id", sa.Integer, primary_key=True),
    *_detail_columns(),
    # bit i: active on day span * SPAN_DAYS + i
    sa.Column("days", sa.BigInteger, nullable=False, server_default="0"),
)

# The same per team (the current members' sums), at the grains of the rollups: ingest adds
# a batch to its developer's teams; adding a member to a team adds their rollups, removing
# subtracts them.


def _team_column() -> sa.Column[object]:
    return sa.Column("team_id", sa.Integer, sa.ForeignKey("teams.id", ondelete="CASCADE"),
                     primary_key=True)


#: Distinct developers per team, day and group of a presence grain (migration 0004): the
#: ``active_days`` of the team's current members, counted (kept like the team summaries).
team_active_daily = sa.Table(
    "team_active_daily", metadata,
    _team_column(),
    sa.Column("kind", sa.String(9), primary_key=True),
    sa.Column("grain", sa.String(16), primary_key=True),
    sa.Column("day", sa.Integer, primary_key=True),
    *_detail_columns(),
    *_sums(("developers",)),
)
TEAM_ACTIVE_KEY = ("team_id", *ACTIVE_DAILY_KEY)


team_usage_summary = sa.Table(
    "team_usage_summary", metadata,
    _team_column(),
    sa.Column("grain", sa.String(12), primary_key=True),  # as usage_daily's
    sa.Column("day", sa.Integer, primary_key=True),
    *_detail_columns(),
    *_sums(USAGE_SUMS),
)

team_retention_summary = sa.Table(
    "team_retention_summary", metadata,
    _team_column(),
    sa.Column("grain", sa.String(12), primary_key=True),
    sa.Column("day", sa.Integer, primary_key=True),
    *_detail_columns(),
    sa.Column("checkpoint_s", sa.Integer, primary_key=True),
    *_sums(RETENTION_SUMS),
)
