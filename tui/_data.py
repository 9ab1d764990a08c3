"""One refresh's worth of data, read from the store off the UI thread.

``load`` asks the store for the status object, picks the view's window, then runs
``collect`` on the store's read connection (in a worker thread, via ``Store.read``). Every
query reads a rollup or an index (agent's query functions guarantee it), so a refresh costs
the same with a thousand stored calls or a million.

``change_key`` is what the live loop polls: SQLite's ``data_version`` moves whenever another
connection (another process, or this process's writer) commits, and the config stamp moves
when config.toml is edited. Both are O(1).
"""

from __future__ import annotations

import os
import sqlite3
from datetime import tzinfo
from functools import partial
from typing import TYPE_CHECKING, Any, NamedTuple

from agent import (
    Breakdown,
    Usage,
    breakdown,
    funnel,
    recent_calls,
    sync_state,
    usage_between,
    usage_series,
)
from tui._alerts import Alert, alerts
from tui._format import HOUR_MS
from tui._funnel import FunnelSummary, summarize
from tui._views import (
    BUCKET_MS,
    View,
    Window,
    budget_entry,
    budget_window,
    choose_view,
    period_window,
    plot_step,
    view_status,
    views_of,
)

if TYPE_CHECKING:
    from agent import Store

#: How many recent calls a refresh reads: more than any screen shows, never "all".
RECENT_LIMIT = 50
#: About how many slots the usage plot reads, whatever the screen: the sparkline squeezes
#: them into its width (keeping each bar's peak), and the same data draws the same picture.
PLOT_POINTS = 160


class Collected(NamedTuple):
    """What ``collect`` reads in one go on the read connection."""

    series: list[tuple[int, int, int]]
    by_model: list[Breakdown]
    by_tool: list[Breakdown]
    funnel: dict[str, dict[int, tuple[int, int, int]]]
    recent: list[dict[str, Any]]
    sync: dict[str, Any]
    used: tuple[int, int, int, int] | None


class Snapshot(NamedTuple):
    """Everything one refresh shows."""

    now_ms: int
    status: dict[str, Any]
    views: list[View]
    view: View
    window: Window
    entry: dict[str, Any]
    #: Spend per plot slot, in dollars (or tokens when the budget counts only tokens).
    series: list[float]
    series_unit: str
    step_ms: int
    by_model: list[Breakdown]
    by_tool: list[Breakdown]
    funnel: FunnelSummary
    recent: list[dict[str, Any]]
    sync: dict[str, Any]
    alerts: list[Alert]

    @property
    def has_calls(self) -> bool:
        return bool(self.recent)


class _Past(NamedTuple):
    key: tuple[int, int, int]
    token: tuple[int, ...]
    by_model: list[Breakdown]
    by_tool: list[Breakdown]
    series: list[Usage]


def merge(*parts: list[Breakdown]) -> list[Breakdown]:
    """Breakdowns of adjacent spans as one, biggest cost first (as agent orders them)."""
    totals: dict[str, list[int]] = {}
    for rows in parts:
        for row in rows:
            total = totals.setdefault(row.key, [0, 0, 0, 0])
            total[0] += row.calls
            total[1] += row.tokens
            total[2] += row.cost_micro
            total[3] += row.unknown_cost_calls
    merged = [Breakdown(key, *values) for key, values in totals.items()]
    return sorted(merged, key=lambda row: (-row.cost_micro, -row.calls, row.key))


class Collector:
    """Reads a view's data on the store's read connection (``Store.read`` runs it).

    The part of the window before the current hour is read once and reused while it is
    unchanged: the store only ever adds events, so the past is unchanged exactly when its
    total (one rollup sum, ~0.5 ms) is. A late event in the past (an importer catching up)
    changes the total and the past is read again. Without this a month view reads ~35,000
    hourly rollup rows twice on every refresh; with it, one hour's worth.
    """

    #: Views whose past is kept: ``p`` cycles through a few, each keeps its own.
    KEEP = 8

    def __init__(self) -> None:
        self._past: dict[tuple[int, int], _Past] = {}

    def __call__(self, db: sqlite3.Connection, window: Window, now_ms: int, step_ms: int,
                 need_usage: bool, recent_limit: int = RECENT_LIMIT) -> Collected:
        start = window.start_ms
        end = min(window.end_ms, now_ms + 1)
        by_model, by_tool, series = self._usage(db, start, end, now_ms, step_ms)
        return Collected(
            series=[(u.cost_micro, u.tokens, u.calls) for u in series],
            by_model=by_model,
            by_tool=by_tool,
            funnel=funnel(db, start, end),
            recent=recent_calls(db, recent_limit),
            sync=sync_state(db),
            used=tuple(usage_between(db, start, end)) if need_usage else None,  # type: ignore[arg-type]
        )

    def _usage(self, db: sqlite3.Connection, start: int, end: int, now_ms: int, step: int
               ) -> tuple[list[Breakdown], list[Breakdown], list[Usage]]:
        def whole() -> tuple[list[Breakdown], list[Breakdown], list[Usage]]:
            return (breakdown(db, start, end, "model"), breakdown(db, start, end, "tool"),
                    usage_series(db, start, end, step))

        # Plot slots start on the rollup's buckets; the past ends at a slot boundary no
        # later than the start of the current hour, which is where the breakdowns cut.
        step = max(BUCKET_MS, step - step % BUCKET_MS)
        base = start - start % BUCKET_MS
        cut = now_ms - now_ms % HOUR_MS
        slots_before_cut = (cut - base) // step
        if slots_before_cut < 1 or cut >= end:
            return whole()
        cut_slot = base + slots_before_cut * step
        key = (start, cut, step)
        token = tuple(usage_between(db, start - start % HOUR_MS, cut))
        past = self._past.get((start, step))
        if past is None or past.key != key or past.token != token:
            past = _Past(key, token, breakdown(db, start, cut, "model"),
                         breakdown(db, start, cut, "tool"),
                         usage_series(db, start, cut_slot, step))
            self._past.pop((start, step), None)
            self._past[(start, step)] = past
            while len(self._past) > self.KEEP:
                del self._past[next(iter(self._past))]
        recent_series = usage_series(db, cut_slot, end, step)
        if len(past.series) + len(recent_series) != max(1, -(-(end - start) // step)):
            return whole()  # a window not on bucket boundaries (rolling): no shortcut
        return (merge(past.by_model, breakdown(db, cut, end, "model")),
                merge(past.by_tool, breakdown(db, cut, end, "tool")),
                past.series + recent_series)


def collect(db: sqlite3.Connection, window: Window, now_ms: int, step_ms: int,
            need_usage: bool, recent_limit: int = RECENT_LIMIT) -> Collected:
    """Read the view's plot, breakdowns and funnel, the recent calls and the sync state
    (without reusing anything: see ``Collector``)."""
    return Collector()(db, window, now_ms, step_ms, need_usage, recent_limit)


def change_key(db: sqlite3.Connection, config_path: str) -> tuple[int, str]:
    """Moves when anything was committed to the store, or config.toml changed."""
    version = int(db.execute("PRAGMA data_version").fetchone()[0])
    try:
        info = os.stat(config_path)
        stamp = f"{info.st_mtime_ns}:{info.st_size}"
    except OSError:
        stamp = "absent"
    return version, stamp


async def load(store: Store, view_key: str | None, now_ms: int, zone: tzinfo,
               points: int = PLOT_POINTS, collector: Collector | None = None) -> Snapshot:
    """Read one refresh: the status object first (it says which budgets exist and their
    windows), then everything the chosen view covers."""
    report = await store.status(at_ms=now_ms)
    status = report.to_json()
    views = views_of(status)
    view = choose_view(views, view_key, status)
    entry = budget_entry(status, view.budget) if view.budget else None
    window = (budget_window(entry, now_ms) if entry is not None
              else period_window(view.period, zone, now_ms))
    step = plot_step(window, now_ms, points)
    rows = await store.read(partial(collector or Collector(), window=window, now_ms=now_ms,
                                    step_ms=step, need_usage=entry is None))
    shown = view_status(status, view, window, rows.used)
    by_tokens = shown.get("limitUsd") is None and shown.get("limitTokens") is not None
    series = [float(t) if by_tokens else c / 1e6 for c, t, _ in rows.series]
    return Snapshot(
        now_ms=now_ms, status=status, views=views, view=view, window=window, entry=shown,
        series=series, series_unit="tokens" if by_tokens else "usd", step_ms=step,
        by_model=rows.by_model, by_tool=rows.by_tool,
        funnel=summarize(rows.funnel, shown.get("usedUsd"), shown.get("usedTokens")),
        recent=rows.recent, sync=rows.sync,
        alerts=alerts(status, now_ms, zone, view=shown, sync=rows.sync),
    )
