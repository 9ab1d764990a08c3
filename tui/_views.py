"""What the dashboard is looking at: one budget, or (with none set) a day, week or month.

``p`` cycles through the views. Each view has a window ``[start_ms, end_ms)`` that the
usage plot, the breakdowns and the funnel cover, and a status object of its own for the
budget gauge: the budget's entry in the status object, or for a plain period one built
from the usage summed over that period. Pure functions; the store is queried elsewhere.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta, tzinfo
from typing import Any, NamedTuple

from tui._format import iso, parse_iso, to_ms

PERIODS = ("day", "week", "month")
#: Width of the store's finest rollup: plot slots are whole multiples of it.
BUCKET_MS = 900_000


class View(NamedTuple):
    """One thing ``p`` can show: a budget by name, or a calendar period without a budget."""

    key: str
    budget: str | None
    period: str

    @property
    def label(self) -> str:
        return f"{self.budget} ({self.period})" if self.budget else f"this {self.period}"


class Window(NamedTuple):
    start_ms: int
    end_ms: int
    rolling: bool


def views_of(status: dict[str, Any] | None) -> list[View]:
    """Every budget in the status object, in its order; without budgets, day/week/month."""
    budgets = (status or {}).get("budgets") or []
    if budgets:
        return [View(f"budget:{b['budget']}", b["budget"], str(b["period"])) for b in budgets]
    return [View(period, None, period) for period in PERIODS]


def choose_view(views: list[View], current: str | None, status: dict[str, Any] | None
                ) -> View:
    """Keep the current view while it exists; otherwise the budget that binds, or the day."""
    for view in views:
        if view.key == current:
            return view
    binding = (status or {}).get("budget")
    for view in views:
        if binding is not None and view.budget == binding:
            return view
    return views[0]


def next_view(views: list[View], current: str | None) -> View:
    keys = [view.key for view in views]
    index = keys.index(current) if current in keys else -1
    return views[(index + 1) % len(views)]


def _midnight(day: date, zone: tzinfo) -> int:
    return to_ms(datetime.combine(day, time(0), tzinfo=zone))


def period_window(period: str, zone: tzinfo, now_ms: int, week_starts: int = 0) -> Window:
    """The calendar day, week (starting on ``week_starts``, 0 = Monday) or month holding
    ``now_ms`` in ``zone``."""
    today = datetime.fromtimestamp(now_ms / 1000, zone).date()
    if period == "day":
        first, after = today, today + timedelta(days=1)
    elif period == "week":
        first = today - timedelta(days=(today.weekday() - week_starts) % 7)
        after = first + timedelta(days=7)
    elif period == "month":
        first = today.replace(day=1)
        after = (first + timedelta(days=32)).replace(day=1)
    else:
        raise ValueError(f"not a calendar period: {period!r}")
    return Window(_midnight(first, zone), _midnight(after, zone), rolling=False)


def budget_entry(status: dict[str, Any] | None, name: str | None) -> dict[str, Any] | None:
    """The named budget's own status object (same keys as the top level), or None."""
    for entry in (status or {}).get("budgets") or []:
        if entry.get("budget") == name:
            return dict(entry)
    return None


def budget_window(entry: dict[str, Any], now_ms: int) -> Window:
    """The window a budget counts, from its status entry. A rolling window ends now."""
    rolling = entry.get("period") not in PERIODS
    start = parse_iso(entry.get("periodStart"))
    end = parse_iso(entry.get("resetsAt"))
    if start is None:
        start = now_ms - 86_400_000
    if rolling or end is None:
        end = now_ms + 1
    return Window(start, end, rolling)


def period_status(status: dict[str, Any], period: str, window: Window,
                  used: tuple[int, int, int, int]) -> dict[str, Any]:
    """A status object for a calendar period without a budget, from the usage summed over it
    (``used`` = cost micro-dollars, tokens, calls, calls of unknown cost). Burn rates are the
    last hour's, as in the top-level status object."""
    cost_micro, used_tokens, calls, unknown = used
    elapsed_h = max(min(parse_iso(status.get("generatedAt")) or window.end_ms, window.end_ms)
                    - window.start_ms, 60_000) / 3_600_000
    return {
        "state": "ok", "budget": None, "period": period, "mode": None, "scope": None,
        "exceeded": False, "usedUsd": round(cost_micro / 1e6, 6), "usedTokens": used_tokens,
        "limitUsd": None, "limitTokens": None, "remainingUsd": None, "remainingTokens": None,
        "percentUsed": None, "periodStart": iso(window.start_ms),
        "resetsAt": iso(window.end_ms),
        "burnRateUsdPerHour": status.get("burnRateUsdPerHour"),
        "burnRateTokensPerHour": status.get("burnRateTokensPerHour"),
        "periodBurnRateUsdPerHour": round(cost_micro / 1e6 / elapsed_h, 6),
        "projectedExhaustionAt": None, "calls": calls, "unknownCostCalls": unknown,
        "budgets": [], "vendorQuota": status.get("vendorQuota") or [],
        "generatedAt": status.get("generatedAt"),
    }


def view_status(status: dict[str, Any], view: View, window: Window,
                used: tuple[int, int, int, int] | None) -> dict[str, Any]:
    """The status object the gauge shows for ``view``: the budget's entry with the vendor
    quotas alongside, or a plain period's own."""
    if view.budget is not None:
        entry = budget_entry(status, view.budget)
        if entry is not None:
            entry["budgets"] = status.get("budgets") or []
            entry["vendorQuota"] = status.get("vendorQuota") or []
            entry["generatedAt"] = status.get("generatedAt")
            return entry
    return period_status(status, view.period, window, used or (0, 0, 0, 0))


def plot_step(window: Window, now_ms: int, points: int) -> int:
    """A slot width (whole 15-minute buckets) that draws the window up to now in about
    ``points`` slots."""
    span = max(min(now_ms + 1, window.end_ms) - window.start_ms, BUCKET_MS)
    per_point = -(-span // max(1, points))
    return max(BUCKET_MS, -(-per_point // BUCKET_MS) * BUCKET_MS)
