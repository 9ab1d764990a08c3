"""The report's reads: sums from the daily rollups, never from raw events.

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
            usage = list(await conn.execute(_query(t.usage_daily, t.USAGE_SUMS, dims,
                                                   scope, days, grain)))
            retention = list(await conn.execute(_query(
                t.retention_daily, t.RETENTION_SUMS, dims, scope, days, grain,
                by_checkpoint=True)))
            total_usage = (await conn.execute(_query(t.usage_daily, t.USAGE_SUMS, (), scope,
                                                     days, "developer"))).one()
            total_retention = list(await conn.execute(_query(
                t.retention_daily, t.RETENTION_SUMS, (), scope, days, "developer",
                by_checkpoint=True)))
            names = await _names(conn, dims, [*usage, *retention])
        width = len(dims)
        groups: dict[GroupKey, Sums] = {}
        for row in usage:
            key = _key(row[:width], dims, names)
            groups[key] = Sums(usage=[int(v or 0) for v in row[width + 1:]],
                               developers=int(row[width]))
        for row in retention:
            key = _key(row[:width], dims, names)
            sums = groups.get(key)
            if sums is None:  # retained code whose acceptance fell outside this group
                sums = groups[key] = Sums(developers=int(row[width + 1]))
            sums.retained[int(row[width])] = [int(v or 0) for v in row[width + 2:]]
        total = Sums(usage=[int(v or 0) for v in total_usage[1:]],
                     developers=int(total_usage[0] or 0))
        for row in total_retention:
            total.retained[int(row[0])] = [int(v or 0) for v in row[2:]]
        return groups, total, names.get("shares", frozenset())


def _query(table: sa.Table, sums: Sequence[str], dims: Sequence[str], scope: ReportScope,
           days: tuple[int, int], grain: str, *, by_checkpoint: bool = False
           ) -> sa.Select[Any]:
    source: sa.FromClause = table
    groups: list[sa.ColumnElement[Any]] = []
    where: list[sa.ColumnElement[bool]] = [table.c.grain == grain, table.c.day >= days[0],
                                           table.c.day <= days[1]]
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
    if "developer" in dims or grain == "developer":
        # One developer per row, or few rows (developers x days): one level suffices.
        developers = (sa.literal(1) if "developer" in dims
                      else sa.func.count(sa.distinct(table.c.developer_id)))
        query = (sa.select(*groups, developers,
                           *(sa.func.sum(table.c[name]) for name in sums))
                 .select_from(source).where(*where))
        return query.group_by(*groups) if groups else query
    # Finer grains have many rows: sum per group and developer first, then per group,
    # counting developers as rows. COUNT(DISTINCT ...) would sort every rollup row.
    labels = [f"g{i}" for i in range(len(groups))]
    per_developer = (
        sa.select(*(group.label(label) for group, label in zip(groups, labels, strict=True)),
                  table.c.developer_id,
                  *(sa.func.sum(table.c[name]).label(name) for name in sums))
        .select_from(source).where(*where)
        .group_by(*groups, table.c.developer_id)
        .subquery("per_developer"))
    outer_groups = [per_developer.c[label] for label in labels]
    query = sa.select(*outer_groups, sa.func.count(),
                      *(sa.func.sum(per_developer.c[name]) for name in sums))
    return query.group_by(*outer_groups) if outer_groups else query


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


def _key(values: Sequence[Any], dims: Sequence[str], names: dict[str, Any]) -> GroupKey:
    key: list[str | None] = []
    for dim, value in zip(dims, values, strict=True):
        if dim in ("developer", "team"):
            key.append(names[dim].get(value, f"#{value}"))
        elif dim == "day":
            key.append(day_text(int(value)))
        else:
            key.append(value or None)
    return tuple(key)
