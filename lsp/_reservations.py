"""Budget reservations for inline completions, a few kept ready ahead of the requests.

With an enforced budget, every completion reserves an estimate in the store before it
calls the upstream, and settles it with the real call afterwards (DESIGN, Budgets). A
reservation is a write transaction of a dozen statements; made on the request path it
would double what the sidecar adds to a completion. So the sidecar reserves for the next
completions in the background (up to ``READY`` at a time), and a request that finds one
ready uses it at once; one that arrives while a reservation is being made waits for that
one rather than starting another.

What this keeps and what it costs:

* The estimate is an upper bound for any request (the prompt window is bounded), and a
  ready reservation is held in the store like any call in flight: other processes see it,
  so a burst still overshoots a limit by at most the calls in flight (ours counted).
* A refusal is never cached: without a ready reservation, the request reserves itself and
  gets the store's answer (BudgetBlocked) there and then.
* A ready reservation unused for ``IDLE_S`` is given back; so are those left at shutdown.
* The next reservation is made once the response to the current request has gone out
  (``prepare_next``), not while its upstream call is running: on a two-core laptop the
  reservation's database work would otherwise slow the very request it follows.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from agent import BudgetBlocked

if TYPE_CHECKING:
    from agent import Budget, Reservation
    from lsp._outbox import StoreLink

#: Reservations kept ready: two let a refill take as long as two requests apart.
READY = 2
#: A ready reservation unused this long is released (it holds budget meanwhile).
IDLE_S = 30.0


class Reservations:
    """Takes a reservation for each completion, keeping the next ones ready."""

    def __init__(self, link: StoreLink, *, cost_micro: int, tokens: int,
                 release: Callable[[Reservation], None], wait_s: float) -> None:
        self.link = link
        self.cost_micro = cost_micro
        self.tokens = tokens
        self.release = release
        self.wait_s = wait_s
        self._ready: deque[tuple[Reservation, float]] = deque()
        self._refills: set[asyncio.Task[None]] = set()
        self._budgets: list[Budget] | None = None

    @property
    def ready(self) -> int:
        return len(self._ready)

    async def take(self, budgets: Sequence[Budget]) -> Reservation | None:
        """A reservation for one call (raises BudgetBlocked); None if the store cannot say."""
        self._expire()
        if not self._ready and self._refills:
            # One is on its way and started earlier than a new one would: wait for it.
            await asyncio.wait(set(self._refills), return_when=asyncio.FIRST_COMPLETED)
            self._expire()
        reservation: Reservation | None
        if self._ready:
            reservation = self._ready.popleft()[0]
        else:
            reservation = await self.link.reserve(budgets, cost_micro=self.cost_micro,
                                                  tokens=self.tokens, timeout_s=self.wait_s)
        self._budgets = list(budgets)
        return reservation

    def prepare_next(self) -> None:
        """Reserve for the next completions once the current response is out.

        Called as a request handler returns: its response is written by a callback that
        asyncio runs in the next round of the loop, so the refill starts a round later.
        """
        budgets, self._budgets = self._budgets, None
        if budgets is not None:
            loop = asyncio.get_running_loop()
            loop.call_soon(loop.call_soon, self._start_refills, budgets)

    def drop(self) -> None:
        """No enforced budget any more, or shutting down: give the ready ones back."""
        self._budgets = None
        for task in self._refills:
            task.cancel()
        self._refills.clear()
        while self._ready:
            self.release(self._ready.popleft()[0])

    async def aclose(self) -> None:
        if self._refills:
            await asyncio.wait(set(self._refills))
        self.drop()

    def _start_refills(self, budgets: list[Budget]) -> None:
        for _ in range(READY - len(self._ready) - len(self._refills)):
            task = asyncio.create_task(self._fill(budgets))
            self._refills.add(task)
            task.add_done_callback(self._refills.discard)

    async def _fill(self, budgets: list[Budget]) -> None:
        try:
            reservation = await self.link.reserve(budgets, cost_micro=self.cost_micro,
                                                  tokens=self.tokens, timeout_s=self.wait_s)
        except BudgetBlocked:
            return  # the next request asks the store itself, and hears why
        if reservation is None:
            return
        if len(self._ready) >= READY:
            self.release(reservation)
            return
        self._ready.append((reservation, time.monotonic()))
        asyncio.get_running_loop().call_later(IDLE_S, self._expire)

    def _expire(self) -> None:
        now = time.monotonic()
        while self._ready and now - self._ready[0][1] >= IDLE_S:
            self.release(self._ready.popleft()[0])
