"""The report's reads: sums from the daily rollups or summaries, never from raw events.

Reports over every developer, grouped by team, day, tool, model or language, read the
summaries across developers (``_summaries``): a few rows per day and group whatever the
headcount.
The others read the per-developer rollups, as follows.

Four aggregate queries over the day range (usage and retention, per group and in total),
narrowed to the caller's scope, each on the coarsest rollup grain that answers it (the
total always on the per-developer grain); then names for the ids that came back.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from server import _tables as t
from server._access import ReportScope
from server._reports import GroupKey, Sums, day_text, grain_for
from server._summaries import presence_grain, span_masks
from server._tables import BLOCK_SIZES, DETAIL_DIMS, GRAIN_DETAIL, SPAN_DAYS
from server._txn import StoreBase


class ReportOps(StoreBase):
    """Rollup sums for reports."""

    async def outcome_sums(self, dims: Sequence[str], scope: ReportScope, days: tuple[int, int]
                           ) -> tuple[dict[GroupKey, Sums], Sums, frozenset[str]]:
        """Per-group sums, the total, and the names of developers who opted in."""
        grain = grain_for(dims)
        async with self.read(snapshot=True) as conn:
            if self.is_postgres:
                # Aggregates of a few hundred thousand rollup rows: hash them in memory, and
                # skip JIT compilation, which costs more than it saves on queries this size.
                await conn.execute(sa.text("SET LOCAL work_mem = '64MB'"))
                await conn.execute(sa.text("SET LOCAL jit = off"))
            if reads_summaries(dims, scope):
                return (*await _summary_sums(conn, dims, days), frozenset())
            blocks = reads_blocks(dims, scope)
            usage = list(await conn.execute(_query(
                t.usage_daily, t.USAGE_SUMS, dims, scope, days, grain,
                blocks=t.usage_blocks if blocks else None)))
            retention = list(await conn.execute(_query(
                t.retention_daily, t.RETENTION_SUMS, dims, scope, days, grain,
                by_checkpoint=True, blocks=t.retention_blocks if blocks else None)))
            total_usage = (await conn.execute(_query(
                t.usage_daily, t.USAGE_SUMS, (), scope, days, "developer",
                blocks=t.usage_blocks if blocks else None))).one()
            total_retention = list(await conn.execute(_query(
                t.retention_daily, t.RETENTION_SUMS, (), scope, days, "developer",
                by_checkpoint=True, blocks=t.retention_blocks if blocks else None)))
            names = await _names(conn, dims, [*usage, *retention])
        width = len(dims)
        keys = _Keys(dims, names)
        groups: dict[GroupKey, Sums] = {}
        # Rows of a GROUP BY: their sums are never NULL, and BIGINTs (``_sum``) already.
        for row in usage:
            key = keys(row[:width])
            groups[key] = Sums(usage=list(row[width + 1:]),
                               developers=int(row[width]))
        for row in retention:
            key = keys(row[:width])
            sums = groups.get(key)
            if sums is None:  # retained code whose acceptance fell outside this group
                sums = groups[key] = Sums(developers=int(row[width + 1]))
            sums.retained[row[width]] = list(row[width + 2:])
        total = Sums(usage=[int(v or 0) for v in total_usage[1:]],
                     developers=int(total_usage[0] or 0))
        for row in total_retention:
            total.retained[int(row[0])] = [int(v or 0) for v in row[2:]]
        return groups, total, names.get("shares", frozenset())


def reads_summaries(dims: Sequence[str], scope: ReportScope) -> bool:
    """Whether the summaries across developers answer this report: every developer in
    scope, and no grouping by developer (which needs per-developer rows)."""
    return (scope.developer_ids is None and scope.team_ids is None
            and set(dims) <= _SUMMARY_DIMS)


_SUMMARY_DIMS = {"team", "day", "tool", "model", "language"}


def reads_blocks(dims: Sequence[str], scope: ReportScope) -> bool:
    """Whether the per-developer rollups are read over blocks of days (``usage_blocks``,
    ``retention_blocks``) rather than day by day: every developer in scope (a lead's or
    developer's few developers read the daily rows through their index), not by day."""
    return scope.developer_ids is None and scope.team_ids is None and "day" not in dims


def covering(first: int, last: int
             ) -> tuple[list[tuple[int, int, int]], list[tuple[int, int]]]:
    """Blocks and days that cover ``first..last`` exactly once: the whole blocks of the
    largest size inside the range, then of the next size inside what is left at either
    edge, then single days. Returns (size, first day of the first block, of the last
    block) triples and (first, last) day ranges."""
    blocks: list[tuple[int, int, int]] = []
    days: list[tuple[int, int]] = []

    def split(low: int, high: int, sizes: Sequence[int]) -> None:
        if low > high:
            return
        if not sizes:
            days.append((low, high))
            return
        size = sizes[0]
        start = -(-low // size) * size  # the first block that starts in the range
        end = (high + 1) // size * size  # just past the last block that ends in it
        if start >= end:
            split(low, high, sizes[1:])
            return
        blocks.append((size, start, end - size))
        split(low, start - 1, sizes[1:])
        split(end, high, sizes[1:])

    split(first, last, BLOCK_SIZES)
    return blocks, days


async def _summary_sums(conn: AsyncConnection, dims: Sequence[str], days: tuple[int, int]
                        ) -> tuple[dict[GroupKey, Sums], Sums]:
    """Per-group sums and the total from the summaries: a few rows per day and group."""
    by_team = "team" in dims
    usage_table = t.team_usage_summary if by_team else t.usage_summary
    retention_table = t.team_retention_summary if by_team else t.retention_summary
    width = len(dims)

    def in_range(table: sa.Table, grain: str) -> list[sa.ColumnElement[bool]]:
        return [table.c.grain == grain, table.c.day >= days[0], table.c.day <= days[1]]

    # The team summaries are kept at the rollups' grains, the others at presence grains:
    # either way, the coarsest grain that answers.
    grain = grain_for(dims) if by_team else presence_grain(dims)

    def summed(table: sa.Table, names: Sequence[str]) -> list[sa.ColumnElement[Any]]:
        return [_sum(table.c[name]) for name in names]

    def columns(table: sa.Table) -> list[sa.ColumnElement[Any]]:
        return [table.c.team_id if dim == "team" else table.c[dim] for dim in dims]

    def read(table: sa.Table, groups: list[sa.ColumnElement[Any]], names: Sequence[str]
             ) -> sa.Select[Any]:
        where = in_range(table, grain)
        if "day" in dims:  # at this grain, one row per group: nothing to add up
            return sa.select(*groups, *(table.c[name] for name in names)).where(*where)
        return sa.select(*groups, *summed(table, names)).where(*where).group_by(*groups)

    usage = (await conn.execute(read(usage_table, columns(usage_table), t.USAGE_SUMS))).all()
    retention = (await conn.execute(read(
        retention_table, [*columns(retention_table), retention_table.c.checkpoint_s],
        t.RETENTION_SUMS))).all()
    keys = _Keys(dims, await _names(conn, dims, [*usage, *retention]))

    async def developers(kind: str) -> dict[tuple[Any, ...], int]:
        """Distinct developers per group, by the database's values."""
        rows = await conn.execute(_developers_query(dims, days, kind))
        return {row[:width]: int(row[width]) for row in rows.all()}

    active = await developers("usage")
    groups: dict[GroupKey, Sums] = {}
    #: the groups by the database's values (thousands of retention rows look them up)
    found: dict[tuple[Any, ...], Sums] = {}
    for row in usage:
        raw = row[:width]
        groups[keys(raw)] = found[raw] = Sums(usage=list(row[width:]),
                                              developers=active.get(raw, 0))
    retained_only: dict[tuple[Any, ...], int] | None = None
    for row in retention:
        raw = row[:width]
        sums = found.get(raw)
        if sums is None:  # retained code whose acceptance fell outside this group
            if retained_only is None:
                retained_only = await developers("retention")
            sums = groups[keys(raw)] = found[raw] = Sums(developers=retained_only.get(raw, 0))
        sums.retained[row[width]] = list(row[width + 1:])
    total = Sums(developers=int(await conn.scalar(_developers_query((), days, "usage")) or 0))
    if by_team:  # teams overlap (and leave developers out): the total is summed apart
        everyone = presence_grain(())
        row = (await conn.execute(sa.select(*summed(t.usage_summary, t.USAGE_SUMS))
                                  .where(*in_range(t.usage_summary, everyone)))).one()
        total.usage = [int(v or 0) for v in row]
        for row in await conn.execute(
                sa.select(t.retention_summary.c.checkpoint_s,
                          *summed(t.retention_summary, t.RETENTION_SUMS))
                .where(*in_range(t.retention_summary, everyone))
                .group_by(t.retention_summary.c.checkpoint_s)):
            total.retained[int(row[0])] = [int(v or 0) for v in row[1:]]
        return groups, total
    # Otherwise the groups split the summary rows between them: the total is their sum
    # (but not their developers, who may be in several groups).
    if groups:
        total.usage = [sum(column)
                       for column in zip(*(s.usage for s in groups.values()), strict=True)]
    for sums in groups.values():
        for checkpoint, values in sums.retained.items():
            mine = total.retained.setdefault(checkpoint, [0, 0, 0])
            mine[0] += values[0]
            mine[1] += values[1]
            mine[2] += values[2]
    return groups, total


def _developers_query(dims: Sequence[str], days: tuple[int, int], kind: str
                      ) -> sa.Select[Any]:
    """Distinct developers of ``kind`` per group: when grouped by day, from ``active_daily``
    (or, by team, ``team_active_daily``); else from the
    ``active_spans`` rows whose day bits meet the range. Without ``dims``, one count."""
    grain = presence_grain(dims)
    members = t.team_members
    if "day" in dims and "team" not in dims:
        daily = t.active_daily
        return (sa.select(*(daily.c[dim] for dim in dims), daily.c.developers)
                .where(daily.c.kind == kind, daily.c.grain == grain, daily.c.day >= days[0],
                       daily.c.day <= days[1]))
    groups: list[sa.ColumnElement[Any]]
    if "day" in dims:  # by team: the counts kept per team
        team_daily = t.team_active_daily
        return (sa.select(*(team_daily.c[dim if dim != "team" else "team_id"] for dim in dims),
                          team_daily.c.developers)
                .where(team_daily.c.kind == kind, team_daily.c.grain == grain,
                       team_daily.c.day >= days[0], team_daily.c.day <= days[1]))
    spans = t.active_spans
    first_span, last_span, head, tail = span_masks(*days)
    mask = sa.case((spans.c.span == first_span, sa.literal(head, sa.BigInteger)),
                   (spans.c.span == last_span, sa.literal(tail, sa.BigInteger)),
                   else_=sa.literal((1 << SPAN_DAYS) - 1, sa.BigInteger))
    detail = [dim for dim in dims if dim != "team"]
    who = (sa.select(spans.c.developer_id, *(spans.c[dim] for dim in detail))
           .where(spans.c.kind == kind, spans.c.grain == grain,
                  spans.c.span >= first_span, spans.c.span <= last_span,
                  spans.c.days.op("&")(mask) != 0)
           .distinct().subquery("who"))
    if not dims:
        return sa.select(sa.func.count()).select_from(who)
    if "team" not in dims:
        groups = [who.c[dim] for dim in dims]
        return sa.select(*groups, sa.func.count()).group_by(*groups)
    groups = [members.c.team_id if dim == "team" else who.c[dim] for dim in dims]
    return (sa.select(*groups, sa.func.count())
            .select_from(who.join(members, members.c.member_id == who.c.developer_id))
            .group_by(*groups))


def _query(daily: sa.Table, sums: Sequence[str], dims: Sequence[str], scope: ReportScope,
           days: tuple[int, int], grain: str, *, by_checkpoint: bool = False,
           blocks: sa.Table | None = None) -> sa.Select[Any]:
    table: sa.Table | sa.Subquery = daily
    where: list[sa.ColumnElement[bool]] = [daily.c.grain == grain, daily.c.day >= days[0],
                                           daily.c.day <= days[1]]
    if blocks is not None:  # the range's rows: whole blocks, and days at the edges
        table, where = _in_blocks(daily, blocks, sums, days, grain, by_checkpoint), []
    source: sa.FromClause = table
    groups: list[sa.ColumnElement[Any]] = []
    for dim in dims:
        if dim == "team":
            membership = t.team_members
            source = source.join(membership, membership.c.member_id == table.c.developer_id)
            groups.append(membership.c.team_id)
            if scope.team_ids is not None:
                where.append(membership.c.team_id.in_(sorted(scope.team_ids)))
        elif dim == "developer":
            groups.append(table.c.developer_id)
        else:
            groups.append(table.c[dim])
    if by_checkpoint:
        groups.append(table.c.checkpoint_s)
    if scope.developer_ids is not None:
        where.append(table.c.developer_id.in_(sorted(scope.developer_ids)))
    if scope.team_ids is not None:
        where.append(table.c.developer_id.in_(
            sa.select(t.team_members.c.member_id)
            .where(t.team_members.c.team_id.in_(sorted(scope.team_ids)))))
    if ("developer" in dims and "day" in dims and blocks is None
            and GRAIN_DETAIL[grain] == DETAIL_DIMS.intersection(dims)):
        # Each rollup row of this grain is one group (a developer's day, per team joined):
        # nothing to add up. The largest reports (a row per developer and day) read so.
        return (sa.select(*groups, sa.literal(1), *(table.c[name] for name in sums))
                .select_from(source).where(*where))
    if "developer" in dims or grain == "developer":
        # One developer per row, or few rows (developers x days): one level suffices.
        developers = (sa.literal(1) if "developer" in dims
                      else sa.func.count(sa.distinct(table.c.developer_id)))
        query = (sa.select(*groups, developers,
                           *(_sum(table.c[name]) for name in sums))
                 .select_from(source).where(*where))
        return query.group_by(*groups) if groups else query
    # Finer grains have many rows: sum per group and developer first, then per group,
    # counting developers as rows. COUNT(DISTINCT ...) would sort every rollup row.
    labels = [f"g{i}" for i in range(len(groups))]
    per_developer = (
        sa.select(*(group.label(label) for group, label in zip(groups, labels, strict=True)),
                  table.c.developer_id,
                  *(_sum(table.c[name]).label(name) for name in sums))
        .select_from(source).where(*where)
        .group_by(*groups, table.c.developer_id)
        .subquery("per_developer"))
    outer_groups = [per_developer.c[label] for label in labels]
    query = sa.select(*outer_groups, sa.func.count(),
                      *(_sum(per_developer.c[name]) for name in sums))
    return query.group_by(*outer_groups) if outer_groups else query


def _in_blocks(daily: sa.Table, blocks: sa.Table, sums: Sequence[str], days: tuple[int, int],
               grain: str, by_checkpoint: bool) -> sa.Subquery:
    """The rows of ``grain`` that cover ``days`` once, from ``blocks`` and ``daily``."""
    names = ["developer_id", "tool", "model", "language",
             *(["checkpoint_s"] if by_checkpoint else []), *sums]
    whole, single = covering(*days)
    parts = [sa.select(*(blocks.c[name] for name in names))
             .where(blocks.c.grain == grain, blocks.c.size == size,
                    blocks.c.first_day >= low, blocks.c.first_day <= high)
             for size, low, high in whole]
    parts += [sa.select(*(daily.c[name] for name in names))
              .where(daily.c.grain == grain, daily.c.day >= low, daily.c.day <= high)
              for low, high in single]
    if len(parts) == 1:
        return parts[0].subquery("in_range")
    return sa.union_all(*parts).subquery("in_range")


async def _names(conn: AsyncConnection, dims: Sequence[str], rows: list[Any]
                 ) -> dict[str, Any]:
    """Developer and team names for the ids in ``rows``; who among them opted in."""
    out: dict[str, Any] = {}
    if "developer" in dims:
        at = dims.index("developer")
        ids = sorted({row[at] for row in rows})
        found = list(await conn.execute(
            sa.select(t.members.c.id, t.members.c.name, t.members.c.share_individual)
            .where(t.members.c.id.in_(ids))))
        out["developer"] = {row.id: row.name for row in found}
        out["shares"] = frozenset(row.name for row in found if row.share_individual)
    if "team" in dims:
        at = dims.index("team")
        ids = sorted({row[at] for row in rows})
        out["team"] = {row.id: row.name for row in await conn.execute(
            sa.select(t.teams.c.id, t.teams.c.name).where(t.teams.c.id.in_(ids)))}
    return out


def _sum(column: sa.ColumnElement[Any]) -> sa.ColumnElement[Any]:
    """SUM as a BIGINT: PostgreSQL sums BIGINTs as NUMERIC, which asyncpg decodes into
    Decimals, slowly (the sums fit: they add up BIGINT columns of bounded rollups)."""
    return sa.cast(sa.func.sum(column), sa.BigInteger)


class _Keys:
    """Group keys from the database's values, each spelled once: the retention rows repeat
    a group's values for every checkpoint, and day numbers take a while to print (a report
    by day and something else repeats each day for every group)."""

    def __init__(self, dims: Sequence[str], names: dict[str, Any]) -> None:
        self.dims = dims
        self.names = names
        self.memo: dict[tuple[Any, ...], GroupKey] = {}
        self.days: dict[int, str] = {}

    def __call__(self, values: Sequence[Any]) -> GroupKey:
        raw = tuple(values)
        key = self.memo.get(raw)
        if key is None:
            key = self.memo[raw] = self._spell(raw)
        return key

    def _spell(self, values: Sequence[Any]) -> GroupKey:
        key: list[str | None] = []
        for dim, value in zip(self.dims, values, strict=True):
            if dim in ("developer", "team"):
                key.append(self.names[dim].get(value, f"#{value}"))
            elif dim == "day":
                text = self.days.get(value)
                if text is None:
                    text = self.days[value] = day_text(int(value))
                key.append(text)
            else:
                key.append(value or None)
        return tuple(key)
