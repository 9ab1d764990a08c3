"""Budget in the editor: ``meterline/budget`` on change (at most once a second), and one
message when the state turns warn and one when it turns blocked.

The status comes from the store (the same object as `meterline status --json`), so calls
recorded by other processes (the proxy, importers) move it too: the watcher reads it once a
second, and as soon as the second is up after the sidecar stored something itself. It
keeps the budgets in force too, so that a completion needs no read of its own to know
whether an enforced budget exists (a change of config.toml is seen within a second).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from agent import MeterlineError, status_line

if TYPE_CHECKING:
    from agent import Budget, StatusReport
    from lsp._outbox import StoreLink

log = logging.getLogger("meterline.lsp")

#: ``meterline/budget`` goes out at most this often.
MIN_GAP_S = 1.0
#: What a change means: these fields moving (not the clock, not burn rates sliding).
CHANGE_KEYS = ("state", "budget", "period", "mode", "exceeded", "usedUsd", "usedTokens",
               "limitUsd", "limitTokens", "remainingUsd", "remainingTokens", "resetsAt",
               "calls", "unknownCostCalls")
_QUOTA_KEYS_IGNORED = ("observedAt",)


def fingerprint(status: dict[str, Any]) -> tuple[Any, ...]:
    """The parts of a status object whose change is worth telling the editor."""
    budgets = tuple(tuple(b.get(key) for key in CHANGE_KEYS) for b in status.get("budgets", []))
    quotas = tuple(tuple(sorted((k, repr(v)) for k, v in quota.items()
                                if k not in _QUOTA_KEYS_IGNORED))
                   for quota in status.get("vendorQuota", []))
    return (*(status.get(key) for key in CHANGE_KEYS), budgets, quotas)


def state_notice(previous: str | None, report: StatusReport) -> tuple[str, str] | None:
    """``(level, text)`` to show when the state has just turned warn or blocked, else None."""
    binding = report.binding
    state = binding.state if binding is not None else "ok"
    if state == previous or state == "ok" or binding is None:
        return None
    line = status_line(report)
    if state == "warn":
        return "warn", f"meterline: budget '{binding.name}' is nearly used up: {line}"
    return "blocked", (f"meterline: budget '{binding.name}' is used up; inline completions "
                       f"are paused until it resets: {line}")


class BudgetWatch:
    """Polls the status, sends ``meterline/budget`` on change and the state messages."""

    def __init__(self, link: StoreLink, *, send: Callable[[dict[str, Any]], None],
                 show: Callable[[str, str], None], interval_s: float = 1.0,
                 min_gap_s: float = MIN_GAP_S) -> None:
        self.link = link
        self.send = send
        self.show = show
        self.interval_s = interval_s
        self.min_gap_s = min_gap_s
        self.report: StatusReport | None = None
        self.budgets: list[Budget] | None = None
        self.state: str | None = None
        self.blocked_said = False
        self._sent: tuple[Any, ...] | None = None
        self._sent_at = float("-inf")
        self._read_at = float("-inf")
        self._poke = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._config_error: str | None = None

    @property
    def blocked(self) -> bool:
        """Whether the last status seen says an enforced budget is used up."""
        return self.state == "blocked"

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="meterline-budget-watch")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def poke(self) -> None:
        """Look again soon (something was just stored)."""
        self._poke.set()

    def say_blocked(self, message: str) -> None:
        """Say why completions stop, once per blocked spell (a refusal by the store)."""
        if not self.blocked_said:
            self.blocked_said = True
            self.show("blocked", message)

    async def _run(self) -> None:
        while True:
            self._poke.clear()
            self._read_at = time.monotonic()
            await self.refresh()
            wait = self.interval_s
            if self._unsent_change():
                wait = max(0.0, self._sent_at + self.min_gap_s - time.monotonic())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._poke.wait(), wait)
            # A poke means "look again", but not more than once per gap: what we would
            # tell could not go out sooner anyway.
            await asyncio.sleep(max(0.0, self._read_at + self.min_gap_s - time.monotonic()))

    async def refresh(self) -> None:
        """Read the budgets and the status from the store, and act on the status."""
        timeout = max(self.interval_s, 1.0)
        try:
            budgets = await self.link.budgets(timeout_s=timeout)
            report = await self.link.status(timeout_s=timeout)
        except MeterlineError as exc:  # config.toml became invalid: say so once
            if str(exc) != self._config_error:
                self._config_error = str(exc)
                log.warning("meterline: %s", exc)
            return
        self._config_error = None
        if budgets is not None:
            self.budgets = budgets
        if report is not None:
            self.observe(report)

    def _unsent_change(self) -> bool:
        return self.report is not None and fingerprint(self.report.to_json()) != self._sent

    def observe(self, report: StatusReport) -> None:
        """Take in a fresh status: messages on state changes, the notification if due."""
        self.report = report
        binding = report.binding
        state = binding.state if binding is not None else "ok"
        if state != self.state:
            notice = state_notice(self.state, report)
            if state != "blocked":
                self.blocked_said = False
            if notice is not None:
                level, text = notice
                if level == "warn":
                    self.show(level, text)
                else:
                    self.say_blocked(text)
            self.state = state
        body = report.to_json()
        mark = fingerprint(body)
        now = time.monotonic()
        if mark != self._sent and now - self._sent_at >= self.min_gap_s:
            self._sent = mark
            self._sent_at = now
            self.send(body)
