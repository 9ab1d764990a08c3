"""Budget reservations for inline completions, one kept ready ahead of the next request.

With an enforced budget, every completion reserves an estimate in the store before it
calls the upstream, and settles it with the real call afterwards (DESIGN, Budgets). A
reservation is a write transaction of a dozen statements; made on the request path it
would double what the sidecar adds to a completion. So the sidecar reserves for the next
completion right after the previous one took its reservation, in the background, and a
request that finds one ready uses it at once.

What this keeps and what it costs:

* The estimate is an upper bound for any request (the prompt window is bounded), and a
  ready reservation is held in the store like any call in flight: other processes see it,
  so a burst still overshoots a limit by at most the calls in flight (ours counted).
* A refusal is never cached: without a ready reservation, the request reserves itself and
  gets the store's answer (BudgetBlocked) there and then.
* A ready reservation unused for ``IDLE_S`` is given back; so is one left at shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from agent import BudgetBlocked

if TYPE_CHECKING:
    from agent import Budget, Reservation
    from lsp._outbox import StoreLink

#: A ready reservation unused this long is released (it holds budget meanwhile).
IDLE_S = 30.0


class Reservations:
    """Takes a reservation for each completion, keeping the next one ready."""

    def __init__(self, link: StoreLink, *, cost_micro: int, tokens: int,
                 release: Callable[[Reservation], None], wait_s: float) -> None:
        self.link = link
        self.cost_micro = cost_micro
        self.tokens = tokens
        self.release = release
        self.wait_s = wait_s
        self._ready: Reservation | None = None
        self._ready_at = 0.0
        self._refill: asyncio.Task[None] | None = None
        self._idle: asyncio.TimerHandle | None = None

    async def take(self, budgets: Sequence[Budget]) -> Reservation | None:
        """A reservation for one call (raises BudgetBlocked); None if the store cannot say."""
        refill = self._refill
        if self._ready is None and refill is not None and not refill.done():
            # One is on its way and started earlier than a new one would: wait for it.
            with contextlib.suppress(Exception):
                await asyncio.shield(refill)
        reservation, self._ready = self._ready, None
        if self._idle is not None:
            self._idle.cancel()
        if reservation is None or time.monotonic() - self._ready_at > IDLE_S:
            if reservation is not None:
                self.release(reservation)
            reservation = await self.link.reserve(budgets, cost_micro=self.cost_micro,
                                                  tokens=self.tokens, timeout_s=self.wait_s)
        self._start_refill(budgets)
        return reservation

    def drop(self) -> None:
        """No enforced budget any more, or shutting down: give the ready one back."""
        if self._refill is not None:
            self._refill.cancel()
            self._refill = None
        if self._idle is not None:
            self._idle.cancel()
        if self._ready is not None:
            self.release(self._ready)
            self._ready = None

    async def aclose(self) -> None:
        refill = self._refill
        if refill is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await refill
        self.drop()

    def _start_refill(self, budgets: Sequence[Budget]) -> None:
        if self._refill is None or self._refill.done():
            self._refill = asyncio.create_task(self._fill(list(budgets)))

    async def _fill(self, budgets: list[Budget]) -> None:
        try:
            reservation = await self.link.reserve(budgets, cost_micro=self.cost_micro,
                                                  tokens=self.tokens, timeout_s=self.wait_s)
        except BudgetBlocked:
            return  # the next request asks the store itself, and hears why
        if reservation is None:
            return
        if self._ready is not None:  # filled meanwhile: keep one only
            self.release(reservation)
            return
        self._ready = reservation
        self._ready_at = time.monotonic()
        self._idle = asyncio.get_running_loop().call_later(IDLE_S, self._expire)

    def _expire(self) -> None:
        if self._ready is not None and time.monotonic() - self._ready_at >= IDLE_S:
            self.release(self._ready)
            self._ready = None
