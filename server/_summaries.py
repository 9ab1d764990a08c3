"""Summaries across developers, as pure functions of the rollup deltas (see ``_tables``).

Ingest hands over the ``usage_daily`` and ``retention_daily`` deltas of a batch (only rows
the database actually inserted reach them, so a duplicate adds nothing here either) and
upserts what these functions return, in the same transaction and in sorted key order:

- ``usage_summary`` / ``retention_summary``: the finest ("all") grain, developer summed away;
- ``team_usage_summary`` / ``team_retention_summary``: the same for each team of the batch's
  developers (membership changes move a member's rollups in or out: see
  ``member_move_statements``);
- ``active_days`` candidates: every (developer, day) active in a group of each presence
  grain; the database keeps the new ones (``ON CONFLICT DO NOTHING RETURNING``), and
- ``active_daily`` / ``active_spans``: what those new rows add to the distinct-developer
  counts, per day and as bitmasks of days per 32-day span.

``rebuild_statements`` is the same arithmetic in SQL, from the rollups: the benchmark uses it
after writing rollups by SQL, and a test checks both agree.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from server._rollup import add_sums
from server._tables import (
    BLOCK_KEY,
    BLOCK_SIZES,
    PRESENCE_GRAINS,
    RETENTION_SUMS,
    SPAN_DAYS,
    USAGE_SUMS,
)

#: (day, tool, model, language)
SummaryKey = tuple[int, str, str, str]
#: (kind, grain, day, developer_id, tool, model, language)
PresenceKey = tuple[str, str, int, int, str, str, str]
_DETAIL = ("tool", "model", "language")
#: PostgreSQL advisory lock class (with the member id as second key) that orders a member's
#: ingest (shared) against changes of the member's teams (exclusive).
MEMBERSHIP_LOCK = 0x6D6C_6D62  # "mlmb"
_ALL_DAYS = (1 << SPAN_DAYS) - 1


def summary_deltas(deltas: Sequence[tuple[tuple[Any, ...], list[int]]]
                   ) -> list[tuple[tuple[Any, ...], list[int]]]:
    """``usage_summary`` (or, with a checkpoint in the key, ``retention_summary``)
    additions: the "all"-grain rollup deltas with the developer summed away, at every
    presence grain, sorted."""
    out: dict[tuple[Any, ...], list[int]] = {}
    for key, values in deltas:
        if key[0] != "all":
            continue
        _, day, _, tool, model, language = key[:6]
        rest = key[6:]  # checkpoint_s
        for dims, grain in PRESENCE_GRAINS.items():
            add_sums(out, (grain, day, tool if "tool" in dims else "",
                           model if "model" in dims else "",
                           language if "language" in dims else "", *rest), values)
    return sorted(out.items())


def team_summary_deltas(deltas: Sequence[tuple[tuple[Any, ...], list[int]]],
                        teams_of: dict[int, list[int]]
                        ) -> list[tuple[tuple[Any, ...], list[int]]]:
    """``team_usage_summary`` (or ``team_retention_summary``) additions: the rollup deltas
    at every grain, per team of their developer (``teams_of``: developer id → team ids),
    sorted."""
    out: dict[tuple[Any, ...], list[int]] = {}
    for key, values in deltas:
        for team_id in teams_of.get(key[2], ()):
            team_key = (team_id, key[0], key[1], *key[3:])
            add_sums(out, team_key, values)
    return sorted(out.items())


def developers_in(*deltas: Sequence[tuple[tuple[Any, ...], list[int]]]) -> list[int]:
    """The developer ids of "all"-grain rollup deltas, sorted."""
    return sorted({key[2] for batch in deltas for key, _ in batch if key[0] == "all"})


def member_move_statements(subtract: bool) -> list[str]:
    """SQL (parameters ``:team``, ``:member``) adding a member's rollups to a team's
    summaries, or subtracting them and dropping the rows left with nothing."""
    sign = "-" if subtract else ""
    statements = []
    for table, source, sums, key in (
            ("team_usage_summary", "usage_daily", USAGE_SUMS,
             "grain, day, tool, model, language"),
            ("team_retention_summary", "retention_daily", RETENTION_SUMS,
             "grain, day, tool, model, language, checkpoint_s")):
        names = ", ".join(sums)
        statements.append(
            f"INSERT INTO {table} (team_id, {key}, {names}) "
            f"SELECT :team, {key}, {', '.join(f'{sign}{name}' for name in sums)} "
            f"FROM {source} WHERE developer_id = :member "
            f"ON CONFLICT (team_id, {key}) DO UPDATE SET "
            + ", ".join(f"{name} = {table}.{name} + excluded.{name}" for name in sums))
        if subtract:  # a rollup row counts at least one call or event: zero means none
            statements.append(f"DELETE FROM {table} WHERE team_id = :team AND "
                              + " AND ".join(f"{name} = 0" for name in sums))
    # Each of the member's active_days rows is one developer present in its group.
    key = "kind, grain, day, tool, model, language"
    statements.append(
        f"INSERT INTO team_active_daily (team_id, {key}, developers) "
        f"SELECT :team, {key}, {sign}count(*) FROM active_days WHERE developer_id = :member "
        f"GROUP BY {key} ON CONFLICT (team_id, {key}) DO UPDATE SET "
        "developers = team_active_daily.developers + excluded.developers")
    if subtract:
        statements.append("DELETE FROM team_active_daily WHERE team_id = :team AND "
                          "developers = 0")
    return statements


def team_activity_deltas(new: Sequence[Sequence[Any]], teams_of: dict[int, list[int]]
                         ) -> list[tuple[tuple[Any, ...], list[int]]]:
    """What newly stored ``active_days`` rows add to ``team_active_daily``: one developer
    per row, for each team of the row's developer, sorted."""
    out: dict[tuple[Any, ...], list[int]] = {}
    for kind, grain, day, developer_id, tool, model, language in new:
        for team_id in teams_of.get(developer_id, ()):
            add_sums(out, (team_id, kind, grain, day, tool, model, language), [1])
    return sorted(out.items())


def presence(kind: str, deltas: Sequence[tuple[tuple[Any, ...], list[int]]]
             ) -> list[PresenceKey]:
    """The ``active_days`` rows these rollup deltas show, at every presence grain, sorted."""
    keys: set[PresenceKey] = set()
    for key, _ in deltas:
        if key[0] != "all":
            continue
        _, day, developer_id, tool, model, language = key[:6]
        for dims, grain in PRESENCE_GRAINS.items():
            keys.add((kind, grain, day, developer_id,
                      tool if "tool" in dims else "", model if "model" in dims else "",
                      language if "language" in dims else ""))
    return sorted(keys)


def activity_deltas(new: Sequence[Sequence[Any]]
                    ) -> tuple[list[tuple[tuple[Any, ...], list[int]]],
                               list[tuple[tuple[Any, ...], list[int]]]]:
    """What newly stored ``active_days`` rows add: developers per (kind, grain, day, group)
    for ``active_daily``, and day bits per (kind, grain, span, developer, group) for
    ``active_spans`` (to be OR-ed in)."""
    daily: dict[tuple[Any, ...], list[int]] = {}
    spans: dict[tuple[Any, ...], list[int]] = {}
    for kind, grain, day, developer_id, tool, model, language in new:
        count = daily.setdefault((kind, grain, day, tool, model, language), [0])
        count[0] += 1
        bits = spans.setdefault(
            (kind, grain, day // SPAN_DAYS, developer_id, tool, model, language), [0])
        bits[0] |= 1 << (day % SPAN_DAYS)
    return sorted(daily.items()), sorted(spans.items())


def span_masks(first: int, last: int) -> tuple[int, int, int, int]:
    """For days ``first..last``: the first and last span, and the day bits of the range
    within each (a span in between is covered whole)."""
    first_span, last_span = first // SPAN_DAYS, last // SPAN_DAYS
    head = _ALL_DAYS & ~((1 << (first % SPAN_DAYS)) - 1)
    tail = (1 << (last % SPAN_DAYS + 1)) - 1
    if first_span == last_span:
        head = tail = head & tail
    return first_span, last_span, head, tail


def presence_grain(dims: Sequence[str]) -> str:
    """The presence grain that tells these dimensions' groups apart."""
    return PRESENCE_GRAINS[tuple(dim for dim in _DETAIL if dim in dims)]


def rebuild_statements(backend: str) -> list[str]:
    """SQL that fills the (empty) summary and block tables from ``usage_daily`` and
    ``retention_daily``."""
    one = "CAST(1 AS BIGINT)" if backend == "postgresql" else "1"
    usage = ", ".join(USAGE_SUMS)
    retention = ", ".join(RETENTION_SUMS)
    statements = []
    for dims, grain in PRESENCE_GRAINS.items():
        kept = ", ".join(dim if dim in dims else "''" for dim in _DETAIL)
        group = ", ".join(["day", *(dim for dim in _DETAIL if dim in dims)])
        statements += [
            f"INSERT INTO usage_summary (grain, day, tool, model, language, {usage}) "
            f"SELECT '{grain}', day, {kept}, {_sums(USAGE_SUMS)} FROM usage_daily "
            f"WHERE grain = 'all' GROUP BY {group}",
            f"INSERT INTO retention_summary (grain, day, tool, model, language, "
            f"checkpoint_s, {retention}) SELECT '{grain}', day, {kept}, checkpoint_s, "
            f"{_sums(RETENTION_SUMS)} FROM retention_daily WHERE grain = 'all' "
            f"GROUP BY {group}, checkpoint_s",
        ]
    statements += [
        f"INSERT INTO team_usage_summary (team_id, grain, day, tool, model, language, "
        f"{usage}) SELECT m.team_id, grain, day, tool, model, language, "
        f"{_sums(USAGE_SUMS)} FROM usage_daily "
        "JOIN team_members m ON m.member_id = developer_id "
        "GROUP BY m.team_id, grain, day, tool, model, language",
        f"INSERT INTO team_retention_summary (team_id, grain, day, tool, model, language, "
        f"checkpoint_s, {retention}) SELECT m.team_id, grain, day, tool, model, language, "
        f"checkpoint_s, {_sums(RETENTION_SUMS)} FROM retention_daily "
        "JOIN team_members m ON m.member_id = developer_id "
        "GROUP BY m.team_id, grain, day, tool, model, language, checkpoint_s",
    ]
    for table, source, sums, extra in (
            ("usage_blocks", "usage_daily", USAGE_SUMS, ""),
            ("retention_blocks", "retention_daily", RETENTION_SUMS, ", checkpoint_s")):
        for size in BLOCK_SIZES:
            statements.append(
                f"INSERT INTO {table} ({', '.join(BLOCK_KEY)}{extra}, {', '.join(sums)}) "
                f"SELECT grain, {size}, (day / {size}) * {size}, developer_id, tool, model, "
                f"language{extra}, {_sums(sums)} FROM {source} "
                f"GROUP BY grain, day / {size}, developer_id, tool, model, language{extra}")
    for kind, table in (("usage", "usage_daily"), ("retention", "retention_daily")):
        for dims, grain in PRESENCE_GRAINS.items():
            kept = ", ".join(dim if dim in dims else "''" for dim in _DETAIL)
            statements.append(
                "INSERT INTO active_days (kind, grain, day, developer_id, tool, model, "
                f"language) SELECT DISTINCT '{kind}', '{grain}', day, developer_id, {kept} "
                f"FROM {table} WHERE grain = 'all'")
    statements += [
        "INSERT INTO team_active_daily (team_id, kind, grain, day, tool, model, language, "
        "developers) SELECT m.team_id, kind, grain, day, tool, model, language, count(*) "
        "FROM active_days JOIN team_members m ON m.member_id = developer_id "
        "GROUP BY m.team_id, kind, grain, day, tool, model, language",
        "INSERT INTO active_daily (kind, grain, day, tool, model, language, developers) "
        "SELECT kind, grain, day, tool, model, language, count(*) FROM active_days "
        "GROUP BY kind, grain, day, tool, model, language",
        "INSERT INTO active_spans (kind, grain, span, developer_id, tool, model, language, "
        f"days) SELECT kind, grain, day / {SPAN_DAYS}, developer_id, tool, model, language, "
        f"sum({one} << (day % {SPAN_DAYS})) FROM active_days "
        f"GROUP BY kind, grain, day / {SPAN_DAYS}, developer_id, tool, model, language",
    ]
    return statements


def _sums(names: Sequence[str]) -> str:
    return ", ".join(f"sum({name})" for name in names)
