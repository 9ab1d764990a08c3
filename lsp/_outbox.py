"""The sidecar's link to the store: handlers never wait on a write, and no event is dropped.

Everything the sidecar records goes into an in-memory queue (``put`` returns at once); one
background task writes it through the store's group commit and keeps an item until the
store has committed it. When the store is locked by another process (a long transaction,
a backup), writes fail after a short busy timeout and are retried with backoff; reads
(status) keep working, since the store is in WAL mode. If the editor quits while the store
is still unavailable, what is left is written to a spill file in the meterline home and
picked up by the next sidecar that starts.

Budget reservations and status reads are bounded in time: a handler gets ``None`` (store
unavailable) rather than waiting behind a lock.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import msgspec

from agent import (
    BudgetBlocked,
    Call,
    MeterlineError,
    Reservation,
    Store,
    StoreError,
    SuggestionEvent,
)

if TYPE_CHECKING:
    from agent import Budget, StatusReport

log = logging.getLogger("meterline.lsp")
T = TypeVar("T")

#: The writer's busy timeout: short, so that a lock held elsewhere delays no handler long;
#: the outbox retries instead of waiting.
BUSY_TIMEOUT_MS = 250
#: Items written per transaction at most.
MAX_BATCH = 500
#: How long the writer lets items gather before a transaction: a burst of completions
#: then shares one commit instead of paying one each (and stealing time from requests).
BATCH_WINDOW_S = 0.02
FIRST_RETRY_S = 0.05
LAST_RETRY_S = 2.0
SPILL_PREFIX = "lsp-outbox-"


class Settle(msgspec.Struct, frozen=True):
    """Replace a budget reservation by the call it was made for."""

    reservation_id: str
    call: Call


class Release(msgspec.Struct, frozen=True):
    """Give back a reservation whose call never happened (or was given up on)."""

    reservation_id: str


Item = Call | SuggestionEvent | Settle | Release


class Spill(msgspec.Struct):
    """What a sidecar could not store before it quit."""

    calls: list[Call] = []
    events: list[SuggestionEvent] = []
    settles: list[Settle] = []
    releases: list[Release] = []


def reservation_of(reservation_id: str) -> Reservation:
    return Reservation(reservation_id, 0, 0)


class StoreLink:
    """Owns the process's ``Store`` (opened in the background, retried) and the outbox."""

    def __init__(self, *, db_path: str | Path | None = None, home: str | Path | None = None,
                 busy_timeout_ms: int = BUSY_TIMEOUT_MS) -> None:
        from agent import home_dir

        self.home = Path(home or (Path(db_path).parent if db_path else home_dir()))
        self.db_path = Path(db_path) if db_path else self.home / "meterline.db"
        self.busy_timeout_ms = busy_timeout_ms
        self.store: Store | None = None
        self.on_commit: Callable[[], None] | None = None
        #: Gives a call without a cost its price, just before it is written.
        self.pricer: Callable[[Call], int | None] | None = None
        self._pending: list[Item] = []
        self._claimed: list[Path] = []
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._tasks: list[asyncio.Task[None]] = []
        self._opened = asyncio.Event()
        self._failing_since: float | None = None
        self._closed = False

    # -- life cycle ------------------------------------------------------------------------

    async def start(self, wait_s: float = 2.0) -> None:
        """Start opening the store and the writer; wait up to ``wait_s`` for the store."""
        self._load_spills()
        self._tasks = [asyncio.create_task(self._open_loop(), name="meterline-store-open"),
                       asyncio.create_task(self._write_loop(), name="meterline-outbox")]
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._opened.wait(), wait_s)

    async def _open_loop(self) -> None:
        delay = FIRST_RETRY_S
        while self.store is None:
            try:
                self.home.mkdir(parents=True, exist_ok=True)
                self.store = await Store.open(self.db_path,
                                              busy_timeout_ms=self.busy_timeout_ms)
            except (StoreError, OSError) as exc:
                self._note_failure(f"cannot open the store yet ({exc}); retrying")
                await asyncio.sleep(delay)
                delay = min(delay * 2, LAST_RETRY_S)
        self._opened.set()
        self._wake.set()

    async def flush(self, timeout_s: float) -> bool:
        """Wait until everything queued is stored; False if that did not happen in time."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout_s)
        except TimeoutError:
            return False
        return True

    async def close(self, timeout_s: float = 3.0) -> None:
        """Flush (bounded), stop the background tasks and close the store."""
        if self._closed:
            return
        await self.flush(timeout_s)
        self._closed = True
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self.store is not None:
            store, self.store = self.store, None
            with contextlib.suppress(Exception):
                await asyncio.wait_for(store.close(), timeout_s)

    @property
    def pending(self) -> int:
        return len(self._pending)

    # -- writing ---------------------------------------------------------------------------

    def put(self, *items: Item) -> None:
        """Queue items for the store; returns at once."""
        if not items:
            return
        self._pending.extend(items)
        self._idle.clear()
        self._wake.set()

    async def _write_loop(self) -> None:
        delay = FIRST_RETRY_S
        while True:
            await self._wake.wait()
            self._wake.clear()
            store = self.store
            if store is None or not self._pending:
                continue
            await asyncio.sleep(BATCH_WINDOW_S)
            batch = self._pending[:MAX_BATCH]
            written, error = await self._write(store, batch)
            if written:
                done = {id(item) for item in written}
                self._pending = [item for item in self._pending if id(item) not in done]
                if self.on_commit is not None:
                    self.on_commit()
            if error is not None:
                self._note_failure(f"cannot write to the store ({error}); "
                                   f"{len(self._pending)} item(s) kept, retrying")
                await asyncio.sleep(delay)
                delay = min(delay * 2, LAST_RETRY_S)
                self._wake.set()
                continue
            delay = FIRST_RETRY_S
            self._note_recovery()
            if self._pending:
                self._wake.set()
            else:
                self._idle.set()
                self._drop_claimed_spills()

    def _price(self, batch: Sequence[Item]) -> None:
        if self.pricer is None:
            return
        for item in batch:
            call = item.call if isinstance(item, Settle) else item
            if isinstance(call, Call) and call.cost_micro_usd is None:
                call.cost_micro_usd = self.pricer(call)

    async def _write(self, store: Store, batch: Sequence[Item]
                     ) -> tuple[list[Item], Exception | None]:
        """Submit the batch as a few store operations (one group commit); say which held."""
        self._price(batch)
        groups: list[tuple[list[Item], Any]] = []
        calls = [item for item in batch if isinstance(item, Call)]
        events = [item for item in batch if isinstance(item, SuggestionEvent)]
        if calls:
            groups.append((list(calls), store.add_calls(calls)))
        if events:
            groups.append((list(events), store.add_suggestion_events(events)))
        for item in batch:
            if isinstance(item, Settle):
                groups.append(([item], store.settle(reservation_of(item.reservation_id),
                                                    [item.call])))
            elif isinstance(item, Release):
                groups.append(([item], store.release(reservation_of(item.reservation_id))))
        results = await asyncio.gather(*(op for _, op in groups), return_exceptions=True)
        written: list[Item] = []
        error: Exception | None = None
        for (items, _), result in zip(groups, results, strict=True):
            if isinstance(result, BaseException):
                if not isinstance(result, Exception):
                    raise result
                error = result
            else:
                written.extend(items)
        return written, error

    def _note_failure(self, message: str) -> None:
        # Said once per outage: a lock held for a minute must not flood the log.
        if self._failing_since is None:
            self._failing_since = time.monotonic()
            log.warning("meterline: %s", message)

    def _note_recovery(self) -> None:
        if self._failing_since is not None:
            log.warning("meterline: the store is writable again after %.1f s",
                        time.monotonic() - self._failing_since)
            self._failing_since = None

    # -- bounded reads and reservations ----------------------------------------------------

    async def _opened_store(self, timeout_s: float) -> Store | None:
        """The store, waiting up to ``timeout_s`` for it to open (a slow start, a lock)."""
        if self.store is None and not self._closed:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._opened.wait()), timeout_s)
        return self.store

    async def budgets(self, timeout_s: float) -> list[Budget] | None:
        """The budgets in force, or None when the store does not answer in time."""
        started = time.monotonic()
        store = await self._opened_store(timeout_s)
        if store is None:
            return None
        return await _bounded(store.budgets(), timeout_s - (time.monotonic() - started))

    async def status(self, timeout_s: float) -> StatusReport | None:
        """The status report, or None when the store does not answer in time."""
        started = time.monotonic()
        store = await self._opened_store(timeout_s)
        if store is None:
            return None
        return await _bounded(store.status(), timeout_s - (time.monotonic() - started))

    async def reserve(self, budgets: Sequence[Budget], *, cost_micro: int, tokens: int,
                      timeout_s: float) -> Reservation | None:
        """Hold budget for a call (raises BudgetBlocked), or None if the store cannot say.

        A reservation that arrives after we stopped waiting (or after the caller was
        cancelled) is released at once, so that it does not hold budget until it expires.
        """
        store = self.store
        if store is None:
            return None
        task = asyncio.ensure_future(store.reserve(list(budgets), cost_micro=cost_micro,
                                                   tokens=tokens))
        try:
            done, _ = await asyncio.wait({task}, timeout=timeout_s)
        except asyncio.CancelledError:
            task.add_done_callback(self._release_late)
            raise
        if not done:
            task.add_done_callback(self._release_late)
            return None
        try:
            return task.result()
        except BudgetBlocked:
            raise
        except Exception as exc:
            self._note_failure(f"cannot reserve budget ({exc})")
            return None

    def _release_late(self, task: asyncio.Future[Reservation]) -> None:
        if not task.cancelled() and task.exception() is None:
            self.put(Release(task.result().id))

    # -- spill files -----------------------------------------------------------------------

    def spill(self) -> Path | None:
        """Write what is still queued to a file in the home folder (synchronously)."""
        if not self._pending:
            self._drop_claimed_spills()
            return None
        spill = Spill(
            calls=[item for item in self._pending if isinstance(item, Call)],
            events=[item for item in self._pending if isinstance(item, SuggestionEvent)],
            settles=[item for item in self._pending if isinstance(item, Settle)],
            releases=[item for item in self._pending if isinstance(item, Release)])
        path = self.home / f"{SPILL_PREFIX}{os.getpid()}-{uuid.uuid4().hex[:8]}.json"
        self.home.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(msgspec.json.encode(spill))
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
        self._drop_claimed_spills()
        log.warning("meterline: the store was not writable; %d item(s) kept in %s for the "
                    "next start", len(self._pending), path)
        self._pending = []
        return path

    def _load_spills(self) -> None:
        """Claim spill files left by earlier sidecars (rename first: one claimant wins)."""
        try:
            candidates = sorted(self.home.glob(f"{SPILL_PREFIX}*.json"))
        except OSError:
            return
        for path in candidates:
            claimed = path.with_name(f"{path.name}.claimed-{os.getpid()}")
            try:
                os.rename(path, claimed)
                spill = msgspec.json.decode(claimed.read_bytes(), type=Spill)
            except FileNotFoundError:
                continue  # another sidecar took it
            except (OSError, msgspec.DecodeError, msgspec.ValidationError) as exc:
                log.warning("meterline: cannot read the spill file %s: %s", claimed, exc)
                continue
            self._claimed.append(claimed)
            self.put(*spill.calls, *spill.events, *spill.settles, *spill.releases)

    def _drop_claimed_spills(self) -> None:
        for path in self._claimed:
            with contextlib.suppress(OSError):
                path.unlink()
        self._claimed = []


async def _bounded(awaitable: Awaitable[T], timeout_s: float) -> T | None:
    """The awaitable's result, or None if the store is unavailable or slower than ``timeout_s``.

    The work itself is shielded: a read stuck behind a lock finishes in its thread later.
    Our own errors other than StoreError (an invalid config.toml, a blocked budget) are the
    caller's to report, so they propagate.
    """
    task = asyncio.ensure_future(awaitable)
    try:
        done, _ = await asyncio.wait({task}, timeout=timeout_s)
    except asyncio.CancelledError:
        task.add_done_callback(_swallow)
        raise
    if not done:
        task.add_done_callback(_swallow)
        return None
    exc = task.exception()
    if exc is None:
        return task.result()
    if isinstance(exc, MeterlineError) and not isinstance(exc, StoreError):
        raise exc
    log.warning("meterline: the store did not answer: %s", exc)
    return None


def _swallow(task: asyncio.Future[Any]) -> None:
    if not task.cancelled():
        task.exception()
