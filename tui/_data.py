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
    breakdown,
    funnel,
    recent_calls,
    sync_state,
    usage_between,
    usage_series,
)
from tui._alerts import Alert, alerts
from tui._funnel import FunnelSummary, summarize
from tui._views import (
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


def collect(db: sqlite3.Connection, window: Window, now_ms: int, step_ms: int,
            need_usage: bool, recent_limit: int = RECENT_LIMIT) -> Collected:
    """Read the view's plot, breakdowns and funnel, the recent calls and the sync state."""
    end = min(window.end_ms, now_ms + 1)
    series = usage_series(db, window.start_ms, end, step_ms)
    return Collected(
        series=[(u.cost_micro, u.tokens, u.calls) for u in series],
        by_model=breakdown(db, window.start_ms, end, "model"),
        by_tool=breakdown(db, window.start_ms, end, "tool"),
        funnel=funnel(db, window.start_ms, end),
        recent=recent_calls(db, recent_limit),
        sync=sync_state(db),
        used=tuple(usage_between(db, window.start_ms, end)) if need_usage else None,  # type: ignore[arg-type]
    )


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
               points: int = PLOT_POINTS) -> Snapshot:
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
    rows = await store.read(partial(collect, window=window, now_ms=now_ms, step_ms=step,
                                    need_usage=entry is None))
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
