"""The local store: one SQLite file that the proxy, the sidecar, the CLI and the TUI share.

``Store`` owns the one long-lived writer connection (aiosqlite) of a process. Writes are
queued and committed together (group commit): under load a hundred events share one
transaction, alone an event waits for nobody. Each write resolves once it is committed, so
``await store.add_calls(...)`` returning means the calls survive a killed process.

A small write that finds the writer idle (no batch in flight, nothing queued) is committed
at once on the event loop's thread, on the same connection, without waiting for the lock
(``busy_timeout`` 0): that spares the proxy two thread hand-offs on every request (about a
third of a millisecond under load, and a wake-up of a second thread). If another process
holds the write lock, the write goes to the writer's thread as usual, which may wait for it.

Reads for status and dashboards go through a separate plain ``sqlite3`` connection in a
worker thread (``Store.read``), so they never queue behind writes.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import sqlite3
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import aiosqlite

from agent import _paths
from agent import _queries as q
from agent._budget import Usage, admits, from_ms
from agent._errors import BudgetBlocked, StoreError
from agent._events import Call, SuggestionEvent
from agent._ids import new_id
from agent._lease import Lease, Reservation, lease_size, lease_until
from agent._schema import BUSY_TIMEOUT_MS, connect, migrate, pragma_statements, roll_up
from agent._status import (
    StatusReport,
    compute,
    iso,
    now_ms,
    plan_statuses,
    read_budgets,
    record_vendor_quota,
    run_plan,
)

if TYPE_CHECKING:
    from agent._budget import Budget, BudgetStatus

T = TypeVar("T")

log = logging.getLogger("meterline.store")

#: A reservation not settled within this time (its caller crashed) stops holding budget.
RESERVATION_TTL_MS = 10 * 60 * 1000
#: Calls stored are folded into the rollups at most this long after (``_roll_up_later``).
ROLL_UP_AFTER_S = 0.2

_CALL_INSERT = (
    "INSERT INTO calls (id, device_id, ts, tool, source, provider, model, kind, input_tokens, "
    "output_tokens, cache_read_tokens, cache_write_tokens, cache_write_1h_tokens, "
    "reasoning_tokens, cost_micro_usd, estimated, latency_ms, status, language, workspace, "
    "request_id, total_tokens) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?) "
    "ON CONFLICT DO NOTHING")
_SUGGESTION_INSERT = (
    "INSERT INTO suggestion_events (id, device_id, ts, suggestion_id, call_id, type, chars, "
    "lines, checkpoint_s, commit_id, environment, tool, model, language, workspace) "
    "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?) ON CONFLICT DO NOTHING")


@dataclass(frozen=True)
class InsertResult:
    """How many events were new and how many were already stored (by id or request id)."""

    inserted: int
    duplicates: int

    def __add__(self, other: InsertResult) -> InsertResult:
        return InsertResult(self.inserted + other.inserted, self.duplicates + other.duplicates)


def _ms(call: Call | SuggestionEvent) -> int:
    return int(call.ts.timestamp() * 1000)


def _call_row(call: Call, device_id: str) -> tuple[Any, ...]:
    return (call.id, call.device_id or device_id, _ms(call), call.tool, call.source,
            call.provider, call.model, call.kind, call.input_tokens, call.output_tokens,
            call.cache_read_tokens, call.cache_write_tokens, call.cache_write_1h_tokens,
            call.reasoning_tokens, call.cost_micro_usd, int(call.estimated), call.latency_ms,
            call.status, call.language, call.workspace, call.request_id, call.total_tokens)


def _suggestion_row(event: SuggestionEvent, device_id: str) -> tuple[Any, ...]:
    return (event.id, event.device_id or device_id, _ms(event), event.suggestion_id,
            event.call_id, event.type, event.chars, event.lines, event.checkpoint_s,
            event.commit, event.environment, event.tool, event.model, event.language,
            event.workspace)


#: A unit of work for the writer: a plain function run on the writer's sqlite3 connection
#: inside the batch's transaction, in the connection's own thread.
Op = Callable[[sqlite3.Connection], Any]


def blocked_message(status: BudgetStatus, zone: str | None) -> str:
    """Words for a refusal: the budget, what was used against what limit, when it resets."""
    from agent._budget import resolve_zone
    from agent._status import money, tokens

    parts = []
    if status.limit_micro is not None:
        parts.append(f"{money(status.used.cost_micro)} of {money(status.limit_micro)}")
    if status.limit_tokens is not None:
        parts.append(f"{tokens(status.used.tokens)} of {tokens(status.limit_tokens)} tokens")
    used = " and ".join(parts)
    reset = ""
    if status.window.resets_at_ms is not None:
        when = from_ms(status.window.resets_at_ms).astimezone(resolve_zone(zone))
        reset = f"; it resets at {when:%Y-%m-%d %H:%M %Z}"
    return (f"meterline budget '{status.name}' ({status.period}) is used up: {used} used"
            f"{reset}. Raise it with `meterline budget set --name {status.name} ...`.")


class Store:
    """The process's handle on ``meterline.db``. Use ``async with await Store.open():``."""

    def __init__(self, path: Path, conn: aiosqlite.Connection, device_id: str,
                 config_path: Path | None = None, *,
                 busy_timeout_ms: int = BUSY_TIMEOUT_MS) -> None:
        self.path = path
        self.config_path = config_path or Path(_paths.config_path())
        self.device_id = device_id
        self._conn = conn
        self._queue: asyncio.Queue[tuple[Op, asyncio.Future[Any]]] = asyncio.Queue()
        self._busy_timeout_ms = busy_timeout_ms
        #: Reservations asked for in this turn of the loop and the next, decided together.
        self._wanted: list[_Wanted] = []
        #: The budget lease this process hands pieces of (``reserve(lease=True)``), and the
        #: grant of the next one while it is being decided.
        self._lease: Lease | None = None
        self._granting: asyncio.Future[None] | None = None
        #: The successor of a lease running low is to be granted (``_renew``).
        self._renewing = False
        #: Leases replaced whose unused room has not been given back yet: the next write of
        #: this process gives it back, in its transaction (see ``_submit``).
        self._retired: list[Lease] = []
        self._closing = False
        #: A batch is running in the writer's thread: the connection is not ours to use.
        self._writing = False
        self._writer = asyncio.create_task(self._write_loop(), name="meterline-store-writer")
        self._dirty = False
        self._checkpointer = asyncio.create_task(self._checkpoint_loop(),
                                                 name="meterline-store-checkpointer")
        self._reader: sqlite3.Connection | None = None
        self._reader_lock = asyncio.Lock()
        self._closed = False
        #: A roll-up is due (calls were stored, or may have been by a process that died).
        self._roll_up_timer: asyncio.TimerHandle | None = None
        self._roll_up_later()

    # -- life cycle ------------------------------------------------------------------------

    @classmethod
    async def open(cls, path: str | Path | None = None, *, busy_timeout_ms: int = BUSY_TIMEOUT_MS,
                   config_path: str | Path | None = None) -> Store:
        """Open (creating and migrating as needed) the store at ``path`` (default: home).

        ``config_path`` is the config.toml whose budgets apply (default: home's).
        """
        path = Path(path or _paths.db_path())
        try:
            await asyncio.to_thread(migrate, path)
            # check_same_thread off: small writes also run on the loop's thread, never at the
            # same time as the writer's thread (see _write_now).
            conn = await aiosqlite.connect(path, isolation_level=None,
                                           timeout=busy_timeout_ms / 1000,
                                           check_same_thread=False)
            for statement in pragma_statements(busy_timeout_ms):
                await conn.execute(statement)
            # Checkpoints (the only fsyncs in WAL mode with synchronous=NORMAL) run in the
            # background on another connection, never inside a commit someone awaits.
            await conn.execute("PRAGMA wal_autocheckpoint = 0")
            device_id = await _device_id(conn)
            # Only a batch in the writer's thread waits for the lock (_transaction sets the
            # timeout for it); a write on the loop's thread must not (_write_now).
            await conn.execute("PRAGMA busy_timeout = 0")
        except (sqlite3.Error, OSError) as exc:
            raise StoreError(f"cannot open the store at {path}: {exc}") from exc
        return cls(path, conn, device_id, Path(config_path) if config_path else None,
                   busy_timeout_ms=busy_timeout_ms)

    async def close(self) -> None:
        """Finish every queued write, then close."""
        if self._closed:
            return
        self._closing = True
        while self._granting is not None:  # a lease being granted is given back too
            await asyncio.shield(self._granting)
        if self._lease is not None or self._retired:  # their unused room stops holding
            leases = (self._lease,) if self._lease is not None else ()  # budget now
            with contextlib.suppress(StoreError, sqlite3.Error):
                await self._submit(functools.partial(_return_leases, leases=leases))
            self._lease = None
        if self._roll_up_timer is not None:  # what this process stored is rolled up now
            self._roll_up_timer.cancel()
            self._roll_up_timer = None
            with contextlib.suppress(StoreError, sqlite3.Error):
                await self._submit(roll_up)
        self._closed = True
        await self._queue.join()
        for task in (self._writer, self._checkpointer):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._conn.close()
        async with self._reader_lock:  # not while a read's thread still uses it
            if self._reader is not None:
                self._reader.close()
                self._reader = None

    async def __aenter__(self) -> Store:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- writing ---------------------------------------------------------------------------

    async def _submit(self, op: Op, *, small: bool = False) -> Any:
        """Commit ``op``; ``small``: a few rows by key, cheap enough for the loop's thread.

        Leases retired since the last write give their unused room back in the same
        transaction (put back for the next write if it fails)."""
        if self._closed:
            raise StoreError("the store is closed")
        retired = self._retired
        if retired:
            self._retired = []
            op = functools.partial(_after_returning, op=op, leases=tuple(retired))
        if small and not self._writing and self._queue.empty():
            try:
                done, result = self._write_now(op)
            except BaseException:
                self._retired += retired  # rolled back: still to be given back
                raise
            if done:
                return result
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if retired:
            future.add_done_callback(functools.partial(self._unless_committed, retired))
        self._queue.put_nowait((op, future))
        # Shielded: a caller cancelled mid-write (an LSP $/cancelRequest, a client that went
        # away) must not undo a write that is already queued; the call was still made.
        return await asyncio.shield(future)

    def _roll_up_later(self) -> None:
        """Fold the calls stored into the rollups soon, in the writer's thread: not in the
        transaction that stores a call (three more pages to write on a response's path).
        Until then readers add those calls themselves (``agent._queries``)."""
        if self._roll_up_timer is None and not self._closing:
            self._roll_up_timer = asyncio.get_running_loop().call_later(
                ROLL_UP_AFTER_S, self._roll_up)

    def _roll_up(self) -> None:
        self._roll_up_timer = None
        if self._closed:
            return
        asyncio.ensure_future(self._submit(roll_up)).add_done_callback(_roll_up_done)

    def _unless_committed(self, retired: list[Lease], future: asyncio.Future[Any]) -> None:
        if future.cancelled() or future.exception() is not None:
            self._retired += retired

    def _write_now(self, op: Op) -> tuple[bool, Any]:
        """Run ``op`` in its own transaction here and now, if the write lock is free at once.

        Returns (False, None) when another connection holds the lock (nothing was done: the
        caller queues the op). The writer's thread is idle (the caller checked), so the
        connection is not in use; the loop's thread never waits on a lock.
        """
        db = self._conn._conn  # see _run_batch; its busy_timeout is 0 between batches
        try:
            try:
                db.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError:
                return False, None  # locked by another process: the writer's thread waits
            try:
                result = op(db)
                db.execute("COMMIT")
            except BaseException:
                with contextlib.suppress(sqlite3.Error):
                    db.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            raise StoreError(f"cannot write to the store at {self.path}: {exc}") from exc
        self._dirty = True
        return True, result

    async def _write_loop(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while not self._queue.empty():
                batch.append(self._queue.get_nowait())
            self._writing = True
            try:
                results = await self._run_batch([op for op, _ in batch])
            except Exception as exc:  # every waiter must hear of it
                error = exc if isinstance(exc, StoreError) else StoreError(
                    f"cannot write to the store at {self.path}: {exc}")
                for _, future in batch:
                    if not future.done():
                        future.set_exception(error)
            else:
                self._dirty = True
                for (_, future), result in zip(batch, results, strict=True):
                    if not future.done():
                        future.set_result(result)
            finally:
                self._writing = False
                for _ in batch:
                    self._queue.task_done()

    async def _checkpoint_loop(self, interval_s: float = 1.0) -> None:
        """Copy the WAL back into the database once a second after writes (PASSIVE: never
        waits for, nor blocks, writers and readers)."""
        while True:
            await asyncio.sleep(interval_s)
            if self._dirty:
                self._dirty = False
                with contextlib.suppress(sqlite3.Error):
                    await self.read(_checkpoint)

    async def _run_batch(self, ops: list[Op]) -> list[Any]:
        # The whole transaction goes to aiosqlite's connection thread as one function: one
        # hand-off per batch instead of one per statement, which is most of a write's latency.
        # (Connection._execute is how every aiosqlite method reaches that thread.)
        raw = self._conn._conn  # the sqlite3 connection aiosqlite owns (used only in its thread)
        return await self._conn._execute(  # type: ignore[no-any-return, no-untyped-call]
            _transaction, raw, ops, self._busy_timeout_ms)

    async def add_calls(self, calls: Sequence[Call]) -> InsertResult:
        """Store calls (all or none); an id or request id already stored counts as duplicate."""
        rows = [_call_row(call, self.device_id) for call in calls]

        def op(db: sqlite3.Connection) -> InsertResult:
            return _insert(db, _CALL_INSERT, rows)

        if not rows:
            return InsertResult(0, 0)
        result: InsertResult = await self._submit(op)
        self._roll_up_later()
        return result

    async def add_suggestion_events(self, events: Sequence[SuggestionEvent],
                                    *, claims: Sequence[tuple[str, str, str]] = ()
                                    ) -> InsertResult:
        """Store suggestion events; an accepted event's ``line_hashes`` go to the local-only
        ``accepted_lines``. ``claims`` are (suggestion id, line hash, commit) marking lines a
        commit has claimed, in the same transaction (see ``agent._commits``)."""
        rows = [_suggestion_row(event, self.device_id) for event in events]
        lines = [(event.suggestion_id, line_hash, _ms(event))
                 for event in events if event.type == "accepted" and event.line_hashes
                 for line_hash in event.line_hashes]
        marks = [(commit, suggestion_id, line_hash) for suggestion_id, line_hash, commit in claims]

        def op(db: sqlite3.Connection) -> InsertResult:
            result = _insert(db, _SUGGESTION_INSERT, rows)
            if lines:
                db.executemany("INSERT INTO accepted_lines (suggestion_id, line_hash, ts) "
                               "VALUES (?,?,?) ON CONFLICT DO NOTHING", lines)
            if marks:
                db.executemany("UPDATE accepted_lines SET commit_id = ? WHERE suggestion_id = ? "
                               "AND line_hash = ? AND commit_id IS NULL", marks)
            return result

        return await self._submit(op) if rows or marks else InsertResult(0, 0)

    async def add_imported(self, calls: Sequence[Call], cursor: Any, *,
                           reconcile: Callable[[sqlite3.Connection, Sequence[Call]],
                                               Sequence[Call]] | None = None
                           ) -> InsertResult:
        """Store calls read from a tool's log together with how far the log was read (an
        ``agent._importers.Cursor``), in one transaction: never a line twice, never one lost.

        ``reconcile`` runs first in the same transaction and returns the calls still to
        store; those it leaves out (already stored another way) count as duplicates."""
        state = json.dumps(cursor.state) if cursor.state else None

        def op(db: sqlite3.Connection) -> InsertResult:
            todo = calls if reconcile is None else reconcile(db, calls)
            result = _insert(db, _CALL_INSERT, [_call_row(call, self.device_id)
                                                for call in todo])
            db.execute(
                "INSERT INTO import_cursors VALUES (?,?,?,?,?) ON CONFLICT(path) DO UPDATE SET "
                "file_id = excluded.file_id, offset = excluded.offset, state = excluded.state, "
                "updated_ms = excluded.updated_ms",
                (cursor.path, cursor.file_id, cursor.offset, state, now_ms()))
            return InsertResult(result.inserted, len(calls) - result.inserted)

        inserted: InsertResult = await self._submit(op)
        if calls:
            self._roll_up_later()
        return inserted

    async def set_vendor_quota(self, provider: str, quotas: Iterable[dict[str, Any]]) -> None:
        """Remember what a provider said of its own quota (``name``, ``limit``, ``remaining``,
        ``used_percent``, ``resets_at_ms``), replacing what it said before."""
        rows = list(quotas)
        if rows:
            await self._submit(functools.partial(record_vendor_quota, provider=provider,
                                                 quotas=rows), small=True)

    # -- sync ------------------------------------------------------------------------------

    async def advance_sync(self, stream: str, expected: int, last_seq: int) -> None:
        """Move a stream's outbox cursor from ``expected`` to ``last_seq`` (sent and accepted).

        Compare-and-set: two sync loops racing cannot move the cursor backwards."""

        def op(db: sqlite3.Connection) -> None:
            db.execute("UPDATE sync_state SET last_seq = ?, last_success_ms = ? "
                       "WHERE stream = ? AND last_seq = ?", (last_seq, now_ms(), stream, expected))

        await self._submit(op)

    async def record_sync_outcome(self, error: str | None) -> None:
        """Remember the last sync's success or its error, for the dashboard."""

        def op(db: sqlite3.Connection) -> None:
            if error is None:
                db.execute("UPDATE sync_state SET last_success_ms = ?, last_error = NULL",
                           (now_ms(),))
            else:
                db.execute("UPDATE sync_state SET last_error = ?, last_error_ms = ?",
                           (error, now_ms()))

        await self._submit(op)

    async def replace_server_budgets(self, budgets: Sequence[Budget]) -> None:
        """Put the budgets pulled from the team server in force (replacing earlier ones)."""
        from agent._budget import local_zone_name

        local = local_zone_name() if any(b.timezone is None for b in budgets) else None
        rows = [(b.name, b.period, b.limit_usd, b.limit_tokens, b.warn_at, b.mode,
                 b.timezone or local, b.week_starts, b.scope, "server", position)
                for position, b in enumerate(budgets)]

        def op(db: sqlite3.Connection) -> None:
            db.execute("DELETE FROM budgets WHERE source = 'server'")
            db.executemany(
                "INSERT INTO budgets (name, period, limit_usd, limit_tokens, warn_at, mode, "
                "timezone, week_starts, scope, source, position) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                rows)

        await self._submit(op)

    # -- budget reservations ---------------------------------------------------------------

    async def reserve(self, budgets: Sequence[Budget], *, cost_micro: int, tokens: int,
                      ttl_ms: int = RESERVATION_TTL_MS, lease: bool = False) -> Reservation:
        """Hold an estimate against every enforced budget before a call starts.

        Raises BudgetBlocked when settled use plus what calls in flight hold has reached an
        enforced limit. Runs under the database's write lock, so callers in other processes
        (the proxy and the sidecar) are serialised with this one.

        Reservations asked for within two turns of the event loop (a burst of requests) are
        decided together in one transaction, in the order asked, each seeing what the ones
        before it hold: the answers one transaction each would give, for one reading of the
        budget windows (which are summed from the rollups: 40 µs for a day budget, 115 µs
        for four budgets over 100k calls a month, small enough for the loop's thread).

        ``lease``: take the reservation from this process's budget lease (see
        ``agent._lease``), granting a new lease when it has no room: most calls then
        reserve in memory, without a commit of their own.
        """
        if self._closed:
            raise StoreError("the store is closed")
        if lease:
            while True:
                if self._lease is not None:
                    at = now_ms()
                    piece = self._lease.take(budgets, cost_micro, tokens, at)
                    if piece is not None:
                        if not self._renewing and self._granting is None and \
                                self._lease.running_low(cost_micro, tokens, at):
                            self._renewing = True
                            asyncio.get_running_loop().call_soon(
                                self._renew, self._lease, tuple(budgets),
                                Usage(cost_micro, tokens), ttl_ms)
                        return piece
                if self._granting is None:
                    break
                await asyncio.shield(self._granting)  # the lease being granted may have room
        loop = asyncio.get_running_loop()
        wanted = _Wanted(tuple(budgets), cost_micro, tokens, ttl_ms, loop.create_future(),
                         lease)
        self._wanted.append(wanted)
        if len(self._wanted) == 1:
            # Two turns of the loop: requests whose bytes arrived in the one between (a
            # burst whose requests did not all arrive at once) join this batch.
            loop.call_soon(loop.call_soon, self._reserve_wanted)
        # Shielded like every write: a caller that goes away leaves its reservation to
        # expire (or be settled) rather than half-done.
        result = await asyncio.shield(wanted.future)
        if isinstance(result, BudgetBlocked):
            raise result
        return result

    def _renew(self, low: Lease, budgets: tuple[Budget, ...], piece: Usage, ttl_ms: int
               ) -> None:
        """Grant the successor of ``low``, the lease running low, before a request finds it
        empty and has to wait for a grant (with the requests of its burst).

        The grant is a write like any other, in the writer's thread: the event loop goes on
        serving requests meanwhile (the request whose piece found the lease low goes on to
        its upstream, and the grant is made while it waits for the answer), which go on
        taking pieces of the lease in hand; one that finds it empty waits for the successor
        (``_granting``). Once the successor is in hand, the old lease is retired: it gives
        no more pieces, and the next write gives its unused room back (``_submit``). Near a
        limit no successor is granted: the lease in hand is used up, then each call has its
        own reservation, as without renewal."""
        self._renewing = False
        frozen = self._lease
        if (frozen is not low or self._closing or self._granting is not None
                or self._wanted):
            return
        granting = self._granting = asyncio.get_running_loop().create_future()
        grant = asyncio.ensure_future(self._submit(functools.partial(
            _renew_lease, budgets=budgets, piece=piece, ttl_ms=ttl_ms)))
        grant.add_done_callback(functools.partial(self._renewed, frozen, granting))

    def _renewed(self, frozen: Lease, granting: asyncio.Future[None],
                 grant: asyncio.Future[Lease | None]) -> None:
        successor: Lease | None = None
        if grant.cancelled():
            log.warning("could not renew the budget lease: cancelled")
        elif grant.exception() is not None:
            log.warning("could not renew the budget lease: %s", grant.exception())
        elif (successor := grant.result()) is None:
            # Near a limit: the pieces left, then one row per call (and not asked again
            # for each piece of this lease).
            frozen.successor_refused = True
        if successor is not None:
            if self._lease is frozen and not self._closing:
                self._lease = successor
                self._retired.append(frozen)
            else:  # closing, or a grant replaced the lease meanwhile: not needed
                self._retired.append(successor)
        self._granting = None
        granting.set_result(None)

    def _reserve_wanted(self) -> None:
        batch, self._wanted = self._wanted, []
        frozen: Lease | None = None
        granting: asyncio.Future[None] | None = None
        if any(wanted.lease for wanted in batch):
            # The lease in hand is replaced: its unused room is given back in the same
            # transaction; only one grant is decided at a time.
            frozen, self._lease = self._lease, None
            granting = self._granting = asyncio.get_running_loop().create_future()
        op = functools.partial(_reserve_all, batch=batch, frozen=frozen)

        def answer(results: _Answer | BaseException) -> None:
            outcomes: list[Reservation | BaseException]
            if isinstance(results, Lease):
                self._lease = results
                outcomes = [results.take(wanted.budgets, wanted.cost_micro, wanted.tokens, 0)
                            or StoreError("the lease has no room for its own calls")
                            for wanted in batch]
            elif isinstance(results, list):
                outcomes = list(results)
            else:
                if frozen is not None:
                    self._lease = self._lease or frozen  # its room was not given back
                outcomes = [results] * len(batch)
            if granting is not None:
                self._granting = None
                granting.set_result(None)
            for wanted, result in zip(batch, outcomes, strict=True):
                if wanted.future.done():
                    continue
                if isinstance(result, BaseException) and not isinstance(result, BudgetBlocked):
                    wanted.future.set_exception(result)
                else:
                    wanted.future.set_result(result)

        if not self._closed and not self._writing and self._queue.empty():
            try:
                done, results = self._write_now(op)
            except Exception as exc:  # every caller must hear of it
                answer(exc)
                return
            if done:
                answer(results)
                return

        def finished(task: asyncio.Task[Any]) -> None:
            if task.cancelled():
                answer(StoreError("the reservation was cancelled"))
            elif task.exception() is not None:
                answer(task.exception())  # type: ignore[arg-type]
            else:
                answer(task.result())

        asyncio.ensure_future(self._submit(op)).add_done_callback(finished)

    async def settle(self, reservation: Reservation | None, calls: Sequence[Call]
                     ) -> InsertResult:
        """Replace a reservation by the real call(s), in one transaction (a piece of a
        lease is taken off the lease's row)."""
        rows = [_call_row(call, self.device_id) for call in calls]

        def op(db: sqlite3.Connection) -> InsertResult:
            if reservation is not None and reservation.lease:
                db.execute("UPDATE reservations SET cost_micro_usd = cost_micro_usd - ?, "
                           "tokens = tokens - ? WHERE id = ?",
                           (reservation.cost_micro, reservation.tokens, reservation.id))
            elif reservation is not None:
                db.execute("DELETE FROM reservations WHERE id = ?", (reservation.id,))
            return _insert(db, _CALL_INSERT, rows)

        result: InsertResult = await self._submit(op, small=True)
        if rows:
            self._roll_up_later()
        if reservation is not None and reservation.lease and self._lease is not None:
            cost = tokens = unknown = 0
            for call in calls:  # (one, from the proxy: no generator per sum on its path)
                cost += call.cost_micro_usd or 0
                tokens += call.total_tokens
                unknown += call.cost_micro_usd is None
            self._lease.note_settled(reservation, Usage(cost, tokens, len(calls), unknown))
            # The statuses with this spend, which the next piece carries, made after this
            # response's last bytes (this task's next step sends them), not on the next
            # request's way in (26 µs there, at one client).
            asyncio.get_running_loop().call_soon(self._lease.current_statuses)
        return result

    async def release(self, reservation: Reservation) -> None:
        """Give back a reservation whose call never happened."""
        if reservation.lease and self._lease is not None and self._lease.give_back(reservation):
            return  # back in the lease's room: its row already holds it
        await self.settle(reservation, [])

    # -- reading ---------------------------------------------------------------------------

    async def budgets(self) -> list[Budget]:
        """The budgets in force (config.toml re-read if it changed, plus the server's)."""
        budgets, _zone = await self.read(lambda db: read_budgets(db, str(self.config_path)))
        return budgets

    async def status(self, at_ms: int | None = None) -> StatusReport:
        """The status object, as `meterline status` computes it."""

        def run(db: sqlite3.Connection) -> StatusReport:
            budgets, zone = read_budgets(db, str(self.config_path))
            return compute(db, budgets, zone, at_ms)

        return await self.read(run)

    async def read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn(connection)`` on the read connection in a worker thread."""
        async with self._reader_lock:
            if self._reader is None:
                self._reader = await asyncio.to_thread(connect, self.path)
            reader = self._reader
            work = asyncio.ensure_future(asyncio.to_thread(fn, reader))
            try:
                return await asyncio.shield(work)
            except asyncio.CancelledError:
                # The thread goes on using the connection: hold the lock until it is done,
                # or another read (or close) would use the connection beside it.
                with contextlib.suppress(Exception, asyncio.CancelledError):
                    await work
                raise


async def _device_id(conn: aiosqlite.Connection) -> str:
    """This machine's id, made once and kept in the store."""
    candidate = new_id()
    await conn.execute("INSERT INTO meta VALUES ('device_id', ?) ON CONFLICT DO NOTHING",
                       (candidate,))
    async with conn.execute("SELECT value FROM meta WHERE key = 'device_id'") as cursor:
        row = await cursor.fetchone()
    assert row is not None
    return str(row[0])


def _transaction(db: sqlite3.Connection, ops: list[Op], busy_timeout_ms: int) -> list[Any]:
    """Run a batch of ops in one write transaction on the writer's connection thread, which
    may wait up to ``busy_timeout_ms`` for the write lock (the loop's thread never waits)."""
    db.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
    try:
        db.execute("BEGIN IMMEDIATE")
    finally:
        db.execute("PRAGMA busy_timeout = 0")
    try:
        results = [op(db) for op in ops]
        db.execute("COMMIT")
    except BaseException:
        with contextlib.suppress(sqlite3.Error):
            db.execute("ROLLBACK")
        raise
    return results


@dataclass
class _Wanted:
    """A reservation asked for, waiting for its turn (see ``Store.reserve``)."""

    budgets: tuple[Budget, ...]
    cost_micro: int
    tokens: int
    ttl_ms: int
    future: asyncio.Future[Reservation | BudgetBlocked]
    lease: bool = False


_Answer = list[Reservation | BudgetBlocked] | Lease


def _return_leases(db: sqlite3.Connection, leases: Sequence[Lease]) -> None:
    for lease in leases:
        _return_lease(db, lease)


def _after_returning(db: sqlite3.Connection, op: Op, leases: Sequence[Lease]) -> Any:
    """Give retired leases' unused room back, then run ``op``: one transaction."""
    _return_leases(db, leases)
    return op(db)


def _return_lease(db: sqlite3.Connection, lease: Lease) -> None:
    """Give back the room of a lease that no piece will be taken from any more."""
    unheld = lease.unheld()
    db.execute("UPDATE reservations SET cost_micro_usd = cost_micro_usd - ?, "
               "tokens = tokens - ? WHERE id = ?", (unheld.cost_micro, unheld.tokens, lease.id))
    db.execute("DELETE FROM reservations WHERE id = ? AND cost_micro_usd <= 0 AND tokens <= 0",
               (lease.id,))


def _reserve_all(db: sqlite3.Connection, batch: list[_Wanted], frozen: Lease | None
                 ) -> _Answer:
    """Decide reservations in order, in the caller's transaction: each admitted one holds
    its estimate against the ones after it, exactly as if each had its own transaction.

    When every caller wants a lease for the same budgets and there is room enough, one
    lease row is written instead and returned (its pieces are handed out by the caller);
    ``frozen``, the lease it replaces, gives back the room it did not hand out."""
    at = now_ms()
    db.execute("DELETE FROM reservations WHERE expires_ms <= ?", (at,))
    if frozen is not None:
        _return_lease(db, frozen)
    held = q.reserved(db, at)
    statuses_for: dict[tuple[Budget, ...], list[BudgetStatus]] = {}
    budgets = batch[0].budgets
    if all(wanted.lease and wanted.budgets == budgets for wanted in batch):
        granted = statuses_for[budgets] = run_plan(plan_statuses(list(budgets), at), db)
        lease = _grant_lease(db, budgets, [Usage(w.cost_micro, w.tokens) for w in batch],
                             max(wanted.ttl_ms for wanted in batch), granted, held, at)
        if lease is not None:
            return lease
    results: list[Reservation | BudgetBlocked] = []
    for wanted in batch:
        statuses = statuses_for.get(wanted.budgets)
        if statuses is None:
            statuses = statuses_for[wanted.budgets] = run_plan(
                plan_statuses(list(wanted.budgets), at), db)
        refusal = next((_refusal(spec, status, held) for spec, status
                        in zip(wanted.budgets, statuses, strict=True)
                        if not admits(status, held)), None)
        if refusal is not None:
            results.append(refusal)
            continue
        reservation_id = new_id()
        db.execute("INSERT INTO reservations VALUES (?,?,?,?,?)",
                   (reservation_id, wanted.cost_micro, wanted.tokens, at, at + wanted.ttl_ms))
        held = held.plus(Usage(wanted.cost_micro, wanted.tokens, 1))
        results.append(Reservation(reservation_id, wanted.cost_micro, wanted.tokens,
                                   tuple(statuses)))
    return results


def _grant_lease(db: sqlite3.Connection, budgets: tuple[Budget, ...], pieces: list[Usage],
                 ttl_ms: int, statuses: list[BudgetStatus], held: Usage, at: int
                 ) -> Lease | None:
    """Write a lease row for calls like ``pieces``, if one is small beside the room left."""
    size = lease_size(statuses, held, pieces)
    if size is None:
        return None
    until = lease_until(statuses, at)
    lease = Lease(new_id(), budgets, tuple(statuses), until, size.cost_micro,
                  size.tokens,
                  ends_at_reset=any(s.window.resets_at_ms == until for s in statuses))
    db.execute("INSERT INTO reservations VALUES (?,?,?,?,?)",
               (lease.id, size.cost_micro, size.tokens, at, until + ttl_ms))
    return lease


def _renew_lease(db: sqlite3.Connection, budgets: tuple[Budget, ...], piece: Usage,
                 ttl_ms: int) -> Lease | None:
    """A successor, for calls like ``piece``, to the lease in hand, which goes on giving
    pieces meanwhile: its whole row counts as held. None when none would be granted now."""
    at = now_ms()
    db.execute("DELETE FROM reservations WHERE expires_ms <= ?", (at,))
    statuses = run_plan(plan_statuses(list(budgets), at), db)
    return _grant_lease(db, budgets, [piece], ttl_ms, statuses, q.reserved(db, at), at)


def _refusal(spec: Budget, status: BudgetStatus, held: Usage) -> BudgetBlocked:
    return BudgetBlocked(
        blocked_message(status, spec.timezone), budget=status.name,
        resets_at=iso(status.window.resets_at_ms),
        details={"usedUsd": status.used.cost_micro / 1e6,
                 "limitUsd": None if status.limit_micro is None
                 else status.limit_micro / 1e6,
                 "usedTokens": status.used.tokens,
                 "limitTokens": status.limit_tokens,
                 "inFlightCalls": held.calls})


def _roll_up_done(task: asyncio.Future[Any]) -> None:
    """A roll-up that failed leaves the calls to the next one (readers count them anyway)."""
    if not task.cancelled() and task.exception() is not None:
        log.warning("could not fold the calls into the rollups: %s", task.exception())


def _checkpoint(db: sqlite3.Connection) -> None:
    db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()


def _insert(db: sqlite3.Connection, sql: str, rows: list[tuple[Any, ...]]) -> InsertResult:
    if not rows:
        return InsertResult(0, 0)
    inserted = db.executemany(sql, rows).rowcount
    return InsertResult(inserted, len(rows) - inserted)


__all__ = ["InsertResult", "Reservation", "Store", "blocked_message"]
