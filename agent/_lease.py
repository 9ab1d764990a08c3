"""Budget leases: one reservation row that covers many calls of one process.

A metering proxy in front of a busy agent reserves budget before every call and settles it
after. With one reservation row per call that is two commits per call, and the first one is
on the path of the call's first byte. A lease is one row, written once, that holds room for
a few dozen calls like the one that asked for it; the calls take their pieces of it in
memory, and each settle takes its piece off the row in the same transaction that stores the
call. Other processes see the row, so what they may spend leaves the lease's room alone,
and what this process spends under a lease stays inside room that was free when it was
granted: the budget is never passed by more than the per-call rule would let it be (see
``admits``), and usually by less.

A lease is granted only when it is small beside the room left (at most a quarter of it
under every enforced limit); near a limit every call gets its own reservation, decided
exactly as before. A lease is used for at most ``LEASE_LIFE_MS`` and never across a budget
window's reset, so settled spend of other processes, a budget edit or a new window is taken
into account at the next grant.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from agent._budget import Usage, state_of, used_fraction

if TYPE_CHECKING:
    from agent._budget import Budget, BudgetStatus

#: A lease is used for at most this long after it was granted.
LEASE_LIFE_MS = 30_000
#: A lease holds room for at most this many calls like the largest that asked for it ...
LEASE_CALLS = 32
#: ... and at most this share of the room left under the tightest enforced limit.
LEASE_SHARE = 4
#: A lease with room left for fewer calls like the latest than this, or less life than
#: ``RENEW_BEFORE_MS``, is replaced in the background (``Store`` does it) before it runs out:
#: a burst of requests never waits for a grant while the lease in hand still has room.
RENEW_AT_CALLS = LEASE_CALLS // 2
RENEW_BEFORE_MS = 2_000


@dataclass(frozen=True)
class Reservation:
    """Budget held for a call in flight; settle it with the real call, or release it.

    ``lease``: a piece of a lease (``id`` is the lease's row), not a row of its own."""

    id: str
    cost_micro: int
    tokens: int
    statuses: tuple[BudgetStatus, ...] = ()
    lease: bool = False

    @property
    def warnings(self) -> list[BudgetStatus]:
        return [s for s in self.statuses if s.state == "warn"]


@dataclass
class Lease:
    """The room of one lease row that this process has not handed out yet."""

    id: str
    budgets: tuple[Budget, ...]
    #: The budgets' statuses when the lease was granted.
    statuses: tuple[BudgetStatus, ...]
    #: No piece is taken at or after this moment (epoch ms).
    until_ms: int
    free_cost: int
    free_tokens: int
    #: What the calls settled under this lease really cost: their statuses include it.
    settled: Usage = field(default_factory=Usage)
    #: What settled calls cost beyond their pieces: taken off the free room, but still in
    #: the row (which each settle lowers by the piece), so given back with the free room.
    over_cost: int = 0
    over_tokens: int = 0
    #: The lease ends at a budget window's reset, not at the end of its life.
    ends_at_reset: bool = False
    #: A successor was refused (too near a limit): this lease is used up, not renewed.
    successor_refused: bool = False
    #: The last budgets list found equal to ``budgets`` (callers hand the same list over
    #: while their budgets are unchanged: no comparison per call), and ``current_statuses``
    #: as of the last settle.
    _same: object = field(default=None, repr=False, compare=False)
    _statuses_now: tuple[BudgetStatus, ...] | None = field(default=None, repr=False,
                                                            compare=False)

    def take(self, budgets: Sequence[Budget], cost_micro: int, tokens: int, at_ms: int
             ) -> Reservation | None:
        """A piece for one call, or None when this lease cannot give it."""
        if at_ms >= self.until_ms or cost_micro > self.free_cost or tokens > self.free_tokens:
            return None
        if budgets is not self._same and budgets is not self.budgets:
            if tuple(budgets) != self.budgets:
                return None
            self._same = budgets
        self.free_cost -= cost_micro
        self.free_tokens -= tokens
        return Reservation(self.id, cost_micro, tokens, self.current_statuses(), lease=True)

    def running_low(self, cost_micro: int, tokens: int, at_ms: int) -> bool:
        """Whether it is time to grant the next lease (see ``RENEW_AT_CALLS``)."""
        if self.successor_refused:
            return False
        return (self.free_cost < RENEW_AT_CALLS * cost_micro
                or self.free_tokens < RENEW_AT_CALLS * tokens
                # (A lease that ends at a window's reset is not renewed early: its successor
                # would end there too.)
                or (not self.ends_at_reset and self.until_ms - at_ms < RENEW_BEFORE_MS))

    def give_back(self, piece: Reservation) -> bool:
        """A piece whose call never happened returns to the lease (True), if it is this
        lease's; otherwise its row must be written."""
        if piece.id != self.id:
            return False
        self.free_cost += piece.cost_micro
        self.free_tokens += piece.tokens
        return True

    def note_settled(self, piece: Reservation, actual: Usage) -> None:
        """A piece's call was stored. A call that cost more than its piece (its estimate
        was low) takes the difference from the room left: what the process spent under the
        lease never passes the room the lease was granted."""
        if piece.id != self.id:
            return
        self.settled = self.settled.plus(actual)
        self._statuses_now = None
        over_cost = max(0, actual.cost_micro - piece.cost_micro)
        over_tokens = max(0, actual.tokens - piece.tokens)
        self.free_cost -= over_cost
        self.free_tokens -= over_tokens
        self.over_cost += over_cost
        self.over_tokens += over_tokens

    def unheld(self) -> Usage:
        """What the row holds beyond the pieces in flight: given back when the lease is
        replaced or the store closes."""
        return Usage(self.free_cost + self.over_cost, self.free_tokens + self.over_tokens)

    def current_statuses(self) -> tuple[BudgetStatus, ...]:
        """The statuses at the grant, with what was settled under the lease since added."""
        if not self.settled.calls:
            return self.statuses
        if self._statuses_now is not None:
            return self._statuses_now
        out = []
        for spec, status in zip(self.budgets, self.statuses, strict=True):
            used = status.used.plus(self.settled)
            fraction = used_fraction(used, status.limit_micro, status.limit_tokens)
            state, exceeded = state_of(fraction, spec.warn_at, spec.mode)
            out.append(status._replace(used=used, fraction=fraction, state=state,
                                       exceeded=exceeded))
        self._statuses_now = tuple(out)
        return self._statuses_now


def lease_size(statuses: Sequence[BudgetStatus], held: Usage, pieces: Sequence[Usage]
               ) -> Usage | None:
    """The room (cost, tokens) to lease for ``pieces``, the calls asking now; None when a
    lease would not be small beside the room left (then each call is decided alone).

    Per dimension: room for ``LEASE_CALLS`` calls like the largest asking, at most
    ``1/LEASE_SHARE`` of what is left under the tightest enforced limit, and never less
    than the calls asking need."""
    need = Usage(sum(p.cost_micro for p in pieces), sum(p.tokens for p in pieces))
    cost = LEASE_CALLS * max(p.cost_micro for p in pieces)
    tokens = LEASE_CALLS * max(p.tokens for p in pieces)
    for status in statuses:
        if status.mode != "enforce":
            continue
        if status.limit_micro is not None:
            room = status.limit_micro - status.used.cost_micro - held.cost_micro
            if room <= 0 or need.cost_micro * LEASE_SHARE > room:
                return None
            cost = min(cost, room // LEASE_SHARE)
        if status.limit_tokens is not None:
            room = status.limit_tokens - status.used.tokens - held.tokens
            if room <= 0 or need.tokens * LEASE_SHARE > room:
                return None
            tokens = min(tokens, room // LEASE_SHARE)
    return Usage(max(cost, need.cost_micro), max(tokens, need.tokens))


def lease_until(statuses: Sequence[BudgetStatus], at_ms: int) -> int:
    """When a lease granted at ``at_ms`` stops giving pieces: its life, or the first reset."""
    resets = [s.window.resets_at_ms for s in statuses if s.window.resets_at_ms is not None]
    return min([at_ms + LEASE_LIFE_MS, *resets])
