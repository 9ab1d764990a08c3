"""Alerts as pure functions of the status object: blocked and warning budgets, runaway usage,
low vendor quota, unpriced calls, failing sync."""

from __future__ import annotations

from typing import Any
from zoneinfo import ZoneInfo

from tuidata import NOW_MS

from tui._alerts import Thresholds, alerts, runaway
from tui._format import iso

UTC = ZoneInfo("UTC")
HOUR = 3_600_000


def entry(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "budget": "daily", "period": "day", "state": "ok", "exceeded": False,
        "percentUsed": 20.0, "usedUsd": 2.0, "usedTokens": 100_000,
        "periodStart": iso(NOW_MS - 10 * HOUR), "resetsAt": iso(NOW_MS + 10 * HOUR),
        "burnRateUsdPerHour": 0.2, "burnRateTokensPerHour": 10_000,
        "projectedExhaustionAt": None, "unknownCostCalls": 0}
    base.update(fields)
    return base


def status(*entries: dict[str, Any], **fields: Any) -> dict[str, Any]:
    top = dict(entries[0]) if entries else entry(budget=None)
    top.update({"budgets": list(entries), "vendorQuota": [], **fields})
    return top


def kinds(found: list[Any]) -> list[str]:
    return [alert.kind for alert in found]


def test_a_quiet_day_raises_nothing() -> None:
    assert alerts(status(entry()), NOW_MS, UTC) == []


def test_steady_spending_is_not_a_runaway() -> None:
    # $2 over 10 hours is $0.20/h on average; the last hour spent $0.50: 2.5x, under 3x.
    assert runaway(entry(burnRateUsdPerHour=0.5), NOW_MS, UTC) is None


def test_last_hour_at_three_times_the_average_is_a_runaway() -> None:
    # $10 in 10 hours = $1/h; the last hour spent $4: 4x.
    found = runaway(entry(usedUsd=10.0, burnRateUsdPerHour=4.0), NOW_MS, UTC)
    assert found is not None
    assert found.level == "warn"
    assert "$4.00 in the last hour" in found.text
    assert "4.0×" in found.text


def test_a_runaway_in_cents_is_not_worth_an_alarm() -> None:
    assert runaway(entry(usedUsd=0.1, burnRateUsdPerHour=0.09), NOW_MS, UTC) is None
    relaxed = Thresholds(min_usd_per_hour=0.05)
    assert runaway(entry(usedUsd=0.1, burnRateUsdPerHour=0.09), NOW_MS, UTC, relaxed)


def test_early_in_the_period_the_last_hour_is_the_period_so_no_ratio_alarm() -> None:
    young = entry(periodStart=iso(NOW_MS - HOUR), usedUsd=5.0, burnRateUsdPerHour=5.0)
    assert runaway(young, NOW_MS, UTC) is None


def test_running_out_within_the_hour_is_a_runaway_whatever_the_average() -> None:
    soon = entry(projectedExhaustionAt=iso(NOW_MS + 40 * 60_000), burnRateUsdPerHour=3.0)
    found = runaway(soon, NOW_MS, UTC)
    assert found is not None
    assert found.level == "error"
    assert "runs out in 40m (14:45)" in found.text
    assert "$3.00/h" in found.text
    later = entry(projectedExhaustionAt=iso(NOW_MS + 3 * HOUR))
    assert runaway(later, NOW_MS, UTC) is None


def test_a_token_only_runaway_is_measured_in_tokens() -> None:
    found = runaway(entry(usedUsd=0, burnRateUsdPerHour=0, usedTokens=10_000_000,
                          burnRateTokensPerHour=5_000_000), NOW_MS, UTC)
    assert found is not None
    assert "5M tokens in the last hour" in found.text


def test_blocked_warn_and_over_budgets_each_say_so_most_serious_first() -> None:
    found = alerts(status(entry(budget="weekly", state="warn", percentUsed=85.0),
                          entry(budget="daily", state="blocked", percentUsed=104.0,
                                exceeded=True),
                          entry(budget="soft", state="warn", percentUsed=120.0, exceeded=True,
                                mode="warn")), NOW_MS, UTC)
    assert kinds(found) == ["blocked", "warn", "over"]
    assert found[0].text == "BLOCKED: budget 'daily' is used up; calls are refused until 00:05"
    assert found[1].text == "Budget 'weekly' is at 85%"
    assert "Over budget 'soft' (120% used; warn only" in found[2].text


def test_low_vendor_quota_unpriced_calls_and_failing_sync() -> None:
    quota = [{"provider": "anthropic", "name": "tokens", "limit": 100_000, "remaining": 5_000,
              "resetsAt": iso(NOW_MS + 30 * 60_000)},
             {"provider": "openai", "name": "requests", "usedPercent": 50.0}]
    sync = {"pending": 42, "lastSuccessMs": NOW_MS - HOUR, "lastError": "connection refused",
            "lastErrorMs": NOW_MS - 5 * 60_000}
    found = alerts(status(entry(unknownCostCalls=2), vendorQuota=quota), NOW_MS, UTC,
                   sync=sync)
    assert kinds(found) == ["vendor", "sync", "unpriced"]
    assert found[0].text == "anthropic says 5% of its tokens quota is left, resets 14:35"
    assert found[1].text == ("Sync failing since 5m ago: connection refused "
                             "(42 events waiting)")
    assert found[2].text.startswith("2 calls of unknown cost")


def test_a_vendor_quota_that_reset_or_is_old_says_nothing_any_more() -> None:
    low = {"provider": "anthropic", "name": "requests", "limit": 1000, "remaining": 50}
    reset = {**low, "resetsAt": iso(NOW_MS - 3 * 60_000), "observedAt": iso(NOW_MS - HOUR)}
    old = {**low, "name": "tokens", "observedAt": iso(NOW_MS - 7 * HOUR)}
    current = {**low, "name": "input", "resetsAt": iso(NOW_MS + 60_000),
               "observedAt": iso(NOW_MS - 60_000)}
    found = alerts(status(entry(), vendorQuota=[reset, old, current]), NOW_MS, UTC)
    assert [a.text.split(" quota")[0] for a in found if a.kind == "vendor"] == [
        "anthropic says 5% of its input"]


def test_a_sync_error_followed_by_a_success_is_over() -> None:
    sync = {"pending": 0, "lastSuccessMs": NOW_MS - 60_000, "lastError": "timeout",
            "lastErrorMs": NOW_MS - HOUR}
    assert alerts(status(entry()), NOW_MS, UTC, sync=sync) == []


def test_without_budgets_the_runaway_test_uses_the_period_on_screen() -> None:
    week = entry(budget=None, period="week", usedUsd=20.0, burnRateUsdPerHour=6.0,
                 periodStart=iso(NOW_MS - 20 * HOUR))
    found = alerts(status(), NOW_MS, UTC, view=week)
    assert kinds(found) == ["runaway"]
    assert "average of this week" in found[0].text
