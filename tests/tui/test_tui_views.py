"""Views (what ``p`` cycles through), their windows, and the plot's slot width."""

from __future__ import annotations

from zoneinfo import ZoneInfo

import pytest
from tuidata import NOW_MS

from tui._format import iso, parse_iso
from tui._views import (
    BUCKET_MS,
    View,
    Window,
    budget_window,
    choose_view,
    next_view,
    period_status,
    period_window,
    plot_step,
    view_status,
    views_of,
)

UTC = ZoneInfo("UTC")
DAY = 86_400_000


def status_with(*budgets: dict[str, object], binding: str | None = None) -> dict[str, object]:
    return {"budget": binding, "budgets": list(budgets), "vendorQuota": [{"provider": "x"}],
            "generatedAt": iso(NOW_MS), "burnRateUsdPerHour": 0.5,
            "burnRateTokensPerHour": 1000}


def test_without_budgets_p_cycles_day_week_month() -> None:
    views = views_of(status_with())
    assert [v.key for v in views] == ["day", "week", "month"]
    assert next_view(views, "day").key == "week"
    assert next_view(views, "month").key == "day"
    assert next_view(views, None).key == "day"
    assert views[1].label == "this week"


def test_with_budgets_p_cycles_the_budgets_and_starts_on_the_binding_one() -> None:
    status = status_with({"budget": "daily", "period": "day"},
                         {"budget": "weekly", "period": "week"}, binding="weekly")
    views = views_of(status)
    assert [v.budget for v in views] == ["daily", "weekly"]
    assert choose_view(views, None, status).budget == "weekly"
    assert choose_view(views, "budget:daily", status).budget == "daily"
    # A view that no longer exists (budget removed) falls back to the binding budget.
    assert choose_view(views, "budget:gone", status).budget == "weekly"
    assert next_view(views, "budget:weekly").budget == "daily"
    assert views[0].label == "daily (day)"


@pytest.mark.parametrize(("period", "start", "end"), [
    ("day", "2026-06-17T00:00:00Z", "2026-06-18T00:00:00Z"),
    ("week", "2026-06-15T00:00:00Z", "2026-06-22T00:00:00Z"),  # NOW is a Wednesday
    ("month", "2026-06-01T00:00:00Z", "2026-07-01T00:00:00Z"),
])
def test_calendar_windows_in_utc(period: str, start: str, end: str) -> None:
    window = period_window(period, UTC, NOW_MS)
    assert (iso(window.start_ms), iso(window.end_ms)) == (start, end)


def test_calendar_windows_follow_the_zone_and_the_week_start() -> None:
    berlin = period_window("day", ZoneInfo("Europe/Berlin"), NOW_MS)
    assert iso(berlin.start_ms) == "2026-06-16T22:00:00Z"  # CEST midnight
    sunday_weeks = period_window("week", UTC, NOW_MS, week_starts=6)
    assert iso(sunday_weeks.start_ms) == "2026-06-14T00:00:00Z"
    december = period_window("month", UTC, parse_iso("2026-12-15T10:00:00Z") or 0)
    assert iso(december.end_ms) == "2027-01-01T00:00:00Z"
    with pytest.raises(ValueError, match="calendar period"):
        period_window("fortnight", UTC, NOW_MS)


def test_a_budget_window_comes_from_its_status_entry_and_a_rolling_one_ends_now() -> None:
    calendar = budget_window({"period": "day", "periodStart": "2026-06-17T00:00:00Z",
                              "resetsAt": "2026-06-18T00:00:00Z"}, NOW_MS)
    assert calendar == Window(NOW_MS - 14 * 3_600_000 - 5 * 60_000,
                              NOW_MS - 14 * 3_600_000 - 5 * 60_000 + DAY, False)
    rolling = budget_window({"period": "5h", "periodStart": iso(NOW_MS - 5 * 3_600_000),
                             "resetsAt": iso(NOW_MS + 600_000)}, NOW_MS)
    assert rolling == Window(NOW_MS - 5 * 3_600_000, NOW_MS + 1, True)


def test_a_plain_period_gets_a_status_entry_of_its_own() -> None:
    window = period_window("week", UTC, NOW_MS)
    entry = period_status(status_with(), "week", window, (2_500_000, 40_000, 12, 1))
    assert entry["usedUsd"] == 2.5
    assert entry["usedTokens"] == 40_000
    assert entry["calls"] == 12
    assert entry["unknownCostCalls"] == 1
    assert entry["limitUsd"] is None
    assert entry["state"] == "ok"
    assert entry["periodStart"] == "2026-06-15T00:00:00Z"
    assert entry["burnRateUsdPerHour"] == 0.5  # the last hour's, from the status object
    assert entry["periodBurnRateUsdPerHour"] == pytest.approx(2.5 / (2 * 24 + 14 + 5 / 60),
                                                              rel=1e-3)
    assert entry["vendorQuota"] == [{"provider": "x"}]


def test_view_status_of_a_budget_carries_the_vendor_quota_and_the_other_budgets() -> None:
    status = status_with({"budget": "daily", "period": "day", "state": "warn"},
                         {"budget": "weekly", "period": "week", "state": "ok"})
    view = View("budget:daily", "daily", "day")
    entry = view_status(status, view, Window(0, 1, False), None)
    assert entry["state"] == "warn"
    assert [b["budget"] for b in entry["budgets"]] == ["daily", "weekly"]
    assert entry["vendorQuota"] == [{"provider": "x"}]


def test_plot_slots_are_whole_rollup_buckets_near_the_wanted_count() -> None:
    day = period_window("day", UTC, NOW_MS)
    assert plot_step(day, NOW_MS, 120) == BUCKET_MS  # 14 h in 57 slots of 15 min
    assert plot_step(day, NOW_MS, 20) == 3 * BUCKET_MS
    month = period_window("month", UTC, NOW_MS)
    step = plot_step(month, NOW_MS, 100)
    assert step % BUCKET_MS == 0
    assert step >= BUCKET_MS
    assert (NOW_MS - month.start_ms) / step <= 100
