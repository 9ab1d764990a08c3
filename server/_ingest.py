"""Ingest: store a batch of events and fold the new ones into the daily rollups.

One transaction per batch. Raw rows go in with ``INSERT ... ON CONFLICT DO NOTHING
RETURNING``, so the database itself says which rows are new, also when several server
processes ingest overlapping batches at once; only those rows reach the rollups. On
PostgreSQL a batch is one statement over one parameter, an array of the table's own row
type (``unnest($1::calls[])``), sent straight to asyncpg, which encodes it in the binary
protocol: half the server time of parsing the same rows from JSON. On SQLite, multi-row
VALUES.

Deployments: CI reports commits (``POST /deployments``); the committed lines of those commits
count as deployed. A commit may also arrive after its deployment (the developer's machine
synced late): ingest then matches it against the deployments already known. Both paths
insert into ``deployed_lines`` (one row per suggestion, commit and environment), ordered by
one advisory lock (exclusive for a deployment report, shared among ingests), so each
deployed suggestion counts exactly once.

Contention: every batch of a developer adds to the same rollup rows, and every batch of a
team to the same summaries. On PostgreSQL those upserts are one statement at the end of the
transaction (``_add_to_rollups``), so their row locks are held only from there to the
commit.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import msgspec
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from server import _tables as t
from server._rollup import (
    DAY_MS,
    CallRow,
    DeployedRow,
    SuggestionRow,
    block_deltas,
    day_of,
    deployed_from_commit,
    deployed_from_event,
    deployed_key,
    retention_deltas,
    usage_deltas,
)
from server._summaries import (
    MEMBERSHIP_LOCK,
    activity_deltas,
    developers_in,
    presence,
    summary_deltas,
    team_activity_deltas,
    team_summary_deltas,
)
from server._txn import StoreBase
from server._wire import CallEvent, DeploymentResult, EventBatch, IngestResult, stage_of

#: PostgreSQL advisory lock that orders deployment matching across processes: a CI report
#: of deployments takes it exclusively, an ingest of committed events shared (see
#: ``_lock_deployments``).
_DEPLOY_LOCK = 0x6D6C_6470  # "mldp"
_SQLITE_MAX_VARIABLES = 32_000


class IngestOps(StoreBase):
    """Batches of events in, deployments in; rollups kept in step."""

    async def ingest(self, developer_id: int, batch: EventBatch) -> IngestResult:
        """Store ``batch`` for ``developer_id``; returns how many events were new."""
        calls, suggestions = self._rows(developer_id, batch)

        async def work(conn: AsyncConnection) -> int:
            return await self._ingest_rows(conn, developer_id, calls, suggestions)

        inserted = await self.write(work) if calls or suggestions else 0
        return IngestResult(inserted=inserted, duplicates=len(batch.events) - inserted)

    def _rows(self, developer_id: int, batch: EventBatch
              ) -> tuple[list[CallRow], list[SuggestionRow]]:
        """Rows in column order, without in-batch duplicates, sorted by id (lock order)."""
        seen: set[int] = set()
        request_ids: set[str] = set()
        calls: list[CallRow] = []
        suggestions: list[SuggestionRow] = []
        hex_ids = not self.is_postgres
        for event in batch.events:
            number = event.id.int
            if number in seen:
                continue
            seen.add(number)
            key = event.id.hex if hex_ids else event.id
            ts_ms = int(event.ts.timestamp() * 1000)
            if type(event) is CallEvent:
                if event.request_id is not None:
                    if event.request_id in request_ids:
                        continue
                    request_ids.add(event.request_id)
                calls.append(CallRow(
                    key, developer_id, ts_ms, ts_ms // DAY_MS, event.device_id, event.tool,
                    event.source, event.provider, event.model, event.kind,
                    event.input_tokens, event.output_tokens, event.cache_read_tokens,
                    event.cache_write_tokens, event.cache_write_1h_tokens,
                    event.reasoning_tokens, event.cost_micro_usd, event.estimated,
                    event.latency_ms, event.status, event.language, event.workspace,
                    event.request_id))
            else:
                assert not isinstance(event, CallEvent)
                stage = stage_of(event)
                suggestions.append(SuggestionRow(
                    key, developer_id, ts_ms, ts_ms // DAY_MS, stage,
                    event.suggestion_id, event.call_id, event.chars, event.lines,
                    event.checkpoint_s if stage == "retained" else None,
                    event.commit.lower() if event.commit else None, event.environment,
                    event.device_id, event.tool, event.model, event.language,
                    event.workspace))
        calls.sort(key=_by_id)
        suggestions.sort(key=_by_id)
        return calls, suggestions

    async def _ingest_rows(self, conn: AsyncConnection, developer_id: int,
                           calls: list[CallRow], suggestions: list[SuggestionRow]) -> int:
        new_calls: list[CallRow] = []
        new_suggestions: list[SuggestionRow] = []
        if calls:
            fresh = await self._fresh_ids(conn, t.calls, calls)
            new_calls = [row for row in calls if _by_id(row) in fresh]
        if suggestions:
            fresh = await self._fresh_ids(conn, t.suggestion_events, suggestions)
            new_suggestions = [row for row in suggestions if _by_id(row) in fresh]
        deployed = [deployed_from_event(row) for row in new_suggestions
                    if row.type == "deployed"]
        committed = [row for row in new_suggestions if row.type == "committed" and row.commit_sha]
        if committed:
            await self._lock_deployments(conn, shared=True)
            deployed += await self._match_known_deployments(conn, developer_id, committed)
        counted = await self._count_deployed(conn, deployed)
        await self._add_to_rollups(conn, usage_deltas(new_calls, new_suggestions, counted),
                                   retention_deltas(new_suggestions))
        return len(new_calls) + len(new_suggestions)

    async def record_deployment(self, *, environment: str, commits: Sequence[str],
                                ts_ms: int, team_id: int | None,
                                token_id: str | None) -> DeploymentResult:
        """CI says ``commits`` reached ``environment``: count their committed lines."""
        wanted = sorted({commit.lower() for commit in commits})
        day = day_of(ts_ms)

        async def work(conn: AsyncConnection) -> list[DeployedRow]:
            await self._lock_deployments(conn)
            await conn.execute(sa.insert(t.deployments), [
                {"team_id": team_id, "environment": environment, "commit_sha": commit,
                 "ts_ms": ts_ms, "day": day, "token_id": token_id} for commit in wanted])
            query = (sa.select(t.suggestion_events)
                     .where(t.suggestion_events.c.type == "committed",
                            t.suggestion_events.c.commit_sha.in_(wanted)))
            if team_id is not None:
                query = query.where(t.suggestion_events.c.developer_id.in_(
                    sa.select(t.team_members.c.member_id)
                    .where(t.team_members.c.team_id == team_id)))
            rows = [SuggestionRow(*row) for row in await conn.execute(query)]  # id unused
            counted = await self._count_deployed(
                conn, [deployed_from_commit(row, environment, day) for row in rows])
            await self._add_to_rollups(conn, usage_deltas((), (), counted), [])
            return counted

        counted = await self.write(work)
        return DeploymentResult(environment=environment, commits=len(wanted),
                                suggestions=len(counted),
                                lines=sum(row.lines for row in counted))

    async def _lock_deployments(self, conn: AsyncConnection, *, shared: bool = False
                                ) -> None:
        """Order deployment matching (SQLite: its one writer at a time already does).

        A deployment report and an ingest of committed events each look for the other's
        rows: run at once, neither would see the other's uncommitted rows and the deployed
        lines would never be counted. So a deployment report takes the lock exclusively and
        an ingest of committed events ``shared``: ingests never wait for each other here
        (their deployed lines are counted once by ``deployed_lines``' key), only for a
        deployment report, and it for them."""
        if self.is_postgres:
            function = "pg_advisory_xact_lock_shared" if shared else "pg_advisory_xact_lock"
            await (await _driver(conn)).execute(f"SELECT {function}($1)", _DEPLOY_LOCK)

    async def _match_known_deployments(self, conn: AsyncConnection, developer_id: int,
                                       committed: list[SuggestionRow]) -> list[DeployedRow]:
        """Committed rows whose commit CI already reported (for the developer's teams)."""
        d = t.deployments
        teams = sa.select(t.team_members.c.team_id).where(
            t.team_members.c.member_id == developer_id)
        commits = sorted({row.commit_sha for row in committed if row.commit_sha})
        known: dict[str, list[tuple[str, int]]] = {}
        if self.is_postgres:  # one array parameter, no SQLAlchemy on the ingest path
            for commit, environment, day in await (await _driver(conn)).fetch(
                    "SELECT commit_sha, environment, min(day) FROM deployments "
                    "WHERE commit_sha = ANY($1::text[]) AND (team_id IS NULL OR team_id IN "
                    "(SELECT team_id FROM team_members WHERE member_id = $2)) "
                    "GROUP BY commit_sha, environment", commits, developer_id):
                known.setdefault(commit, []).append((environment, day))
            return [deployed_from_commit(row, environment, day) for row in committed
                    for environment, day in known.get(row.commit_sha or "", [])]
        query = (sa.select(d.c.commit_sha, d.c.environment, sa.func.min(d.c.day))
                 .where(d.c.commit_sha.in_(commits),
                        sa.or_(d.c.team_id.is_(None), d.c.team_id.in_(teams)))
                 .group_by(d.c.commit_sha, d.c.environment))
        for commit, environment, day in await conn.execute(query):
            known.setdefault(commit, []).append((environment, day))
        return [deployed_from_commit(row, environment, day)
                for row in committed for environment, day in known.get(row.commit_sha or "", [])]

    async def _count_deployed(self, conn: AsyncConnection,
                              deployed: list[DeployedRow]) -> list[DeployedRow]:
        """Insert into ``deployed_lines``; returns the rows that were not counted before."""
        unique = sorted({deployed_key(row): row for row in reversed(deployed)}.values())
        if not unique:
            return []
        fresh = {tuple(row) for row in await self._insert(
            conn, t.deployed_lines, unique,
            returning="developer_id, suggestion_id, commit_sha, environment")}
        return [row for row in unique if deployed_key(row) in fresh]

    async def _add_to_rollups(self, conn: AsyncConnection,
                              usage: list[tuple[tuple[Any, ...], list[int]]],
                              retention: list[tuple[tuple[Any, ...], list[int]]]) -> None:
        """The rollup deltas into the rollups, and into the summaries across developers.

        Those rows are shared by every batch of a developer (and the summaries by every
        batch of the team): their row locks are the point where concurrent ingests queue.
        So everything else comes first (the developers' teams, the new ``active_days``
        rows) and, on PostgreSQL, all the upserts go as one statement: the locks are held
        from that statement to the commit, not across a dozen round trips and whatever the
        process's event loop runs between them."""
        developers = developers_in(usage, retention)
        teams_of = await self._teams_of(conn, developers) if developers else {}
        candidates = sorted(presence("usage", usage) + presence("retention", retention))
        new = await self._insert(conn, t.active_days, candidates,
                                 returning=", ".join(t.PRESENCE_KEY)) if candidates else []
        daily, spans = activity_deltas(new)
        upserts = [
            _Upsert(t.usage_daily, t.ROLLUP_KEY, t.USAGE_SUMS, usage),
            _Upsert(t.retention_daily, t.RETENTION_KEY, t.RETENTION_SUMS, retention),
            _Upsert(t.usage_blocks, t.BLOCK_KEY, t.USAGE_SUMS, block_deltas(usage)),
            _Upsert(t.retention_blocks, (*t.BLOCK_KEY, "checkpoint_s"), t.RETENTION_SUMS,
                    block_deltas(retention)),
            _Upsert(t.usage_summary, ("grain", *t.DETAIL_KEY), t.USAGE_SUMS,
                    summary_deltas(usage)),
            _Upsert(t.retention_summary, ("grain", *t.DETAIL_KEY, "checkpoint_s"),
                    t.RETENTION_SUMS, summary_deltas(retention)),
            _Upsert(t.team_usage_summary, ("team_id", "grain", *t.DETAIL_KEY), t.USAGE_SUMS,
                    team_summary_deltas(usage, teams_of)),
            _Upsert(t.team_retention_summary,
                    ("team_id", "grain", *t.DETAIL_KEY, "checkpoint_s"), t.RETENTION_SUMS,
                    team_summary_deltas(retention, teams_of)),
            _Upsert(t.active_daily, t.ACTIVE_DAILY_KEY, ("developers",), daily),
            _Upsert(t.team_active_daily, t.TEAM_ACTIVE_KEY, ("developers",),
                    team_activity_deltas(new, teams_of)),
            _Upsert(t.active_spans, t.ACTIVE_SPANS_KEY, ("days",), spans, combine="|"),
        ]
        upserts = [upsert for upsert in upserts if upsert.deltas]
        if not self.is_postgres:
            for upsert in upserts:
                await self._insert(conn, upsert.table, upsert.rows(),
                                   on_conflict=upsert.on_conflict())
            return
        # One statement of data-modifying CTEs, each table's rows one array parameter of
        # the table's row type; every batch's statement lists the tables in the same order
        # and each table's rows sorted, so concurrent ones lock rows in the same order.
        parts = [f"u{i} AS (INSERT INTO {upsert.table.name} SELECT (r).* FROM "
                 f"unnest(${i + 1}::{upsert.table.name}[]) r {upsert.on_conflict()})"
                 for i, upsert in enumerate(upserts)]
        if parts:
            await (await _driver(conn)).execute(
                f"WITH {', '.join(parts)} SELECT 1", *(upsert.rows() for upsert in upserts))

    async def _teams_of(self, conn: AsyncConnection, developers: list[int]
                        ) -> dict[int, list[int]]:
        """The developers' teams (developer id → team ids), read once their membership
        locks are held (PostgreSQL; SQLite has one writer): a concurrent change of their
        teams then moves this batch's sums either entirely or not at all."""
        if self.is_postgres:
            driver = await _driver(conn)
            await driver.execute("SELECT pg_advisory_xact_lock_shared($1, id) "
                                 "FROM unnest($2::int4[]) AS id", MEMBERSHIP_LOCK, developers)
            rows = await driver.fetch("SELECT member_id, team_id FROM team_members "
                                      "WHERE member_id = ANY($1::int4[])", developers)
        else:
            rows = list(await conn.execute(
                sa.select(t.team_members.c.member_id, t.team_members.c.team_id)
                .where(t.team_members.c.member_id.in_(developers))))
        teams_of: dict[int, list[int]] = {}
        for member_id, team_id in rows:
            teams_of.setdefault(member_id, []).append(team_id)
        return teams_of

    async def _fresh_ids(self, conn: AsyncConnection, table: sa.Table,
                         rows: Sequence[CallRow | SuggestionRow]) -> set[Any]:
        """Insert; the ids of the rows that were new, as ``_by_id`` spells them."""
        inserted = await self._insert(conn, table, rows, returning="id")
        if self.is_postgres:
            return {row[0].int for row in inserted}
        return {row[0] for row in inserted}

    async def _insert(self, conn: AsyncConnection, table: sa.Table,
                      rows: Sequence[msgspec.Struct | tuple[Any, ...]], *,
                      returning: str | None = None,
                      on_conflict: str = "ON CONFLICT DO NOTHING") -> list[Sequence[Any]]:
        """Insert ``rows`` (Structs or tuples, fields in the table's column order);
        the RETURNING rows, if asked for. Rows go in in the given order (lock order)."""
        columns = [column.name for column in table.columns]
        tail = f" {on_conflict}" + (f" RETURNING {returning}" if returning else "")
        if self.is_postgres:
            driver = await _driver(conn)
            sql = f"INSERT INTO {table.name} SELECT (r).* FROM unnest($1::{table.name}[]) r{tail}"
            records = [row if isinstance(row, tuple) else msgspec.structs.astuple(row)
                       for row in rows]
            if returning:
                return [tuple(record) for record in await driver.fetch(sql, records)]
            await driver.execute(sql, records)
            return []
        head = f"INSERT INTO {table.name} ({', '.join(columns)}) "
        one = "(" + ", ".join("?" * len(columns)) + ")"
        step = max(1, _SQLITE_MAX_VARIABLES // len(columns))
        out: list[Sequence[Any]] = []
        for start in range(0, len(rows), step):
            chunk = rows[start:start + step]
            values: list[Any] = []
            for row in chunk:
                values += row if isinstance(row, tuple) else msgspec.structs.astuple(row)
            result = await conn.exec_driver_sql(
                f"{head}VALUES {', '.join([one] * len(chunk))}{tail}", tuple(values))
            if returning:
                out.extend(tuple(record) for record in result.fetchall())
        return out


@dataclass(frozen=True, slots=True)
class _Upsert:
    """Deltas (key, values; sorted by key) to add to ``table``'s rows."""

    table: sa.Table
    key: Sequence[str]
    sums: Sequence[str]
    deltas: list[tuple[tuple[Any, ...], list[int]]]
    #: How a delta joins the stored value: ``+`` (sums) or ``|`` (day bits).
    combine: str = "+"

    def rows(self) -> list[tuple[Any, ...]]:
        return [(*key, *values) for key, values in self.deltas]

    def on_conflict(self) -> str:
        additions = ", ".join(f"{name} = {self.table.name}.{name} {self.combine} "
                              f"excluded.{name}" for name in self.sums)
        return f"ON CONFLICT ({', '.join(self.key)}) DO UPDATE SET {additions}"


def _by_id(row: CallRow | SuggestionRow) -> str | int:
    """The id as a sort and set key: hex digits on SQLite, the UUID's integer on PostgreSQL
    (both order like the database's own index; uuid.UUID's comparisons run in Python)."""
    key = row.id
    return key if isinstance(key, str) else key.int


async def _driver(conn: AsyncConnection) -> Any:
    """The asyncpg connection under ``conn``, inside the transaction ``conn`` began.

    SQLAlchemy sends BEGIN lazily, with its first statement: send one if none went yet, so
    that what goes straight to the driver is part of the transaction.
    """
    raw = await conn.get_raw_connection()
    driver = raw.driver_connection
    assert driver is not None
    if not driver.is_in_transaction():
        # SQLAlchemy's asyncpg adapter begins on its first statement; ask it to begin now
        # (saves a round trip), or else send one.
        begin = getattr(raw.dbapi_connection, "_start_transaction", None)
        if begin is not None:
            await begin()
        if not driver.is_in_transaction():
            await conn.exec_driver_sql("SELECT 1")
    assert driver.is_in_transaction()
    return driver

