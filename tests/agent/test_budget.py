"""Budget arithmetic: windows at their edges, states, burn rate and projection (pure)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from agent._budget import (
    HOUR_MS,
    Budget,
    BudgetStatus,
    Calendar,
    Rolling,
    Usage,
    admits,
    budget_window,
    evaluate,
    headline,
    parse_period,
    to_ms,
)


def ms(text: str, zone: str = "UTC") -> int:
    return to_ms(datetime.fromisoformat(text).replace(tzinfo=ZoneInfo(zone)))


def utc(ms_value: int) -> str:
    return datetime.fromtimestamp(ms_value / 1000, UTC).strftime("%Y-%m-%d %H:%M")


@pytest.mark.parametrize(("text", "expected"), [
    ("day", Calendar("day")), ("week", Calendar("week")), ("month", Calendar("month")),
    ("5h", Rolling(5 * 3600)), ("90m", Rolling(5400)), ("1h30m", Rolling(5400)),
    ("rolling:7d", Rolling(7 * 86400)),
])
def test_periods_parse(text: str, expected: object) -> None:
    assert parse_period(text) == expected


@pytest.mark.parametrize("text", ["fortnight", "", "5x", "0h", "30s", "h5", "400d", "5h banana"])
def test_bad_periods_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match=r"day, week, month|rolling window"):
        parse_period(text)


def test_day_in_berlin_starts_at_local_midnight() -> None:
    spec = Budget("d", "day", limit_usd=1, timezone="Europe/Berlin")
    # 23:30 UTC on 31 Jan is already 1 Feb in Berlin (UTC+1).
    window = budget_window(spec, ms("2026-01-31T23:30:00"))
    assert utc(window.start_ms) == "2026-01-31 23:00"
    assert utc(window.end_ms) == "2026-02-01 23:00"
    # One minute before local midnight belongs to the previous day.
    before = budget_window(spec, ms("2026-01-31T22:59:00"))
    assert utc(before.end_ms) == "2026-01-31 23:00"


def test_dst_days_are_23_and_25_hours_long() -> None:
    spec = Budget("d", "day", limit_usd=1, timezone="Europe/Berlin")
    spring = budget_window(spec, ms("2026-03-29T12:00:00", "Europe/Berlin"))
    autumn = budget_window(spec, ms("2026-10-25T12:00:00", "Europe/Berlin"))
    assert (spring.end_ms - spring.start_ms) == 23 * HOUR_MS
    assert (autumn.end_ms - autumn.start_ms) == 25 * HOUR_MS
    assert utc(spring.start_ms) == "2026-03-28 23:00"
    assert utc(autumn.end_ms) == "2026-10-25 23:00"


def test_midnight_skipped_by_dst_starts_the_day_at_the_jump() -> None:
    # Chile springs forward at 24:00 -> 01:00: local midnight of 6 Sep 2026 never happens.
    spec = Budget("d", "day", limit_usd=1, timezone="America/Santiago")
    window = budget_window(spec, ms("2026-09-06T12:00:00", "America/Santiago"))
    start = datetime.fromtimestamp(window.start_ms / 1000, ZoneInfo("America/Santiago"))
    assert start.date().isoformat() == "2026-09-06"
    assert (start.hour, start.minute) == (1, 0)
    assert window.end_ms - window.start_ms == 23 * HOUR_MS


def test_week_and_month_boundaries_in_a_zone() -> None:
    week = Budget("w", "week", limit_usd=1, timezone="America/New_York", week_starts="sunday")
    window = budget_window(week, ms("2026-11-04T12:00:00", "America/New_York"))  # a Wednesday
    start = datetime.fromtimestamp(window.start_ms / 1000, ZoneInfo("America/New_York"))
    assert start.strftime("%A %Y-%m-%d %H:%M") == "Sunday 2026-11-01 00:00"
    # That week contains the end of DST: 7 days and one hour.
    assert window.end_ms - window.start_ms == (7 * 24 + 1) * HOUR_MS
    month = Budget("m", "month", limit_usd=1, timezone="Asia/Kolkata")
    window = budget_window(month, ms("2026-12-31T23:59:00", "Asia/Kolkata"))
    assert utc(window.start_ms) == "2026-11-30 18:30"
    assert utc(window.end_ms) == "2026-12-31 18:30"


def test_rolling_window_ends_now_and_frees_up_when_the_oldest_call_falls_out() -> None:
    spec = Budget("r", "5h", limit_usd=1)
    now = ms("2026-06-01T12:00:00")
    window = budget_window(spec, now, oldest_in_window_ms=now - 4 * HOUR_MS)
    assert window.start_ms == now - 5 * HOUR_MS
    assert window.end_ms > now  # calls stamped a little ahead (clock skew) count at once
    assert window.resets_at_ms == now + HOUR_MS
    assert budget_window(spec, now).resets_at_ms is None


def status_of(used: Usage, last_hour: Usage | None = None, **spec: object) -> BudgetStatus:
    last_hour = last_hour or Usage()
    budget = Budget(**{"name": "b", "period": "day", "timezone": "UTC", **spec})  # type: ignore[arg-type]
    now = ms("2026-06-01T12:00:00")
    return evaluate(budget, budget_window(budget, now), used, last_hour, now)


def test_states_follow_the_thresholds() -> None:
    assert status_of(Usage(cost_micro=7_999_999), limit_usd=10).state == "ok"
    assert status_of(Usage(cost_micro=8_000_000), limit_usd=10).state == "warn"
    warn_only = status_of(Usage(cost_micro=12_000_000), limit_usd=10)
    assert (warn_only.state, warn_only.exceeded) == ("warn", True)
    enforced = status_of(Usage(cost_micro=10_000_000), limit_usd=10, mode="enforce")
    assert (enforced.state, enforced.exceeded) == ("blocked", True)
    # The token limit binds when it is the tighter one.
    both = status_of(Usage(cost_micro=1, tokens=950), limit_usd=10, limit_tokens=1000, warn_at=0.9)
    assert both.state == "warn"
    assert both.fraction == pytest.approx(0.95)


def test_burn_rate_and_projection() -> None:
    status = status_of(Usage(cost_micro=6_000_000), Usage(cost_micro=1_000_000), limit_usd=10)
    # 12:00 UTC: half a day gone, $6 spent -> $0.5/h over the period; $1 in the last hour.
    assert status.burn_micro_per_hour == 1_000_000
    assert status.period_burn_micro_per_hour == pytest.approx(500_000)
    # $4 left at $1/h: exhausted at 16:00, before the reset at midnight.
    assert status.projected_exhaustion_ms == ms("2026-06-01T16:00:00")
    slow = status_of(Usage(cost_micro=6_000_000), Usage(cost_micro=100_000), limit_usd=10)
    assert slow.projected_exhaustion_ms is None  # 40 h away: after the reset
    idle = status_of(Usage(cost_micro=6_000_000), Usage(), limit_usd=10)
    assert idle.projected_exhaustion_ms is None


def test_a_rolling_window_is_projected_to_run_out_only_if_its_rate_can_fill_it() -> None:
    # 20M tokens over 5 h: 2k tokens an hour never holds more than 10k in the window.
    slow = status_of(Usage(tokens=2000), Usage(tokens=2000), period="5h",
                     limit_tokens=20_000_000)
    assert slow.projected_exhaustion_ms is None
    # 5M an hour fills 20M within the window: 18M left at 5M/h, 3.6 h from now.
    fast = status_of(Usage(tokens=2_000_000), Usage(tokens=5_000_000), period="5h",
                     limit_tokens=20_000_000)
    assert fast.projected_exhaustion_ms == ms("2026-06-01T15:36:00")


def test_projection_takes_the_earlier_of_dollars_and_tokens() -> None:
    status = status_of(Usage(cost_micro=0, tokens=500), Usage(cost_micro=1, tokens=250),
                       limit_usd=10, limit_tokens=1000)
    assert status.projected_exhaustion_ms == ms("2026-06-01T14:00:00")


def test_admission_counts_calls_in_flight() -> None:
    status = status_of(Usage(cost_micro=9_000_000), limit_usd=10, mode="enforce")
    assert admits(status, Usage())
    assert admits(status, Usage(cost_micro=999_999))
    assert not admits(status, Usage(cost_micro=1_000_000))
    warn_only = status_of(Usage(cost_micro=50_000_000), limit_usd=10)
    assert admits(warn_only, Usage(cost_micro=10**9))


def test_headline_is_the_worst_then_the_fullest() -> None:
    a = status_of(Usage(cost_micro=5_000_000), limit_usd=10, name="a")
    b = status_of(Usage(cost_micro=9_000_000), limit_usd=10, name="b")
    c = status_of(Usage(cost_micro=10_000_000), limit_usd=100, name="c", mode="enforce")
    assert headline([a, b, c]).name == "b"  # type: ignore[union-attr]
    d = status_of(Usage(cost_micro=10_000_000), limit_usd=10, name="d", mode="enforce")
    assert headline([a, b, d]).name == "d"  # type: ignore[union-attr]
    assert headline([]) is None


def test_a_minute_after_the_reset_the_window_is_new() -> None:
    spec = Budget("d", "day", limit_usd=1, timezone="UTC")
    before = budget_window(spec, ms("2026-06-01T23:59:59"))
    after = budget_window(spec, ms("2026-06-02T00:00:00"))
    assert before.end_ms == after.start_ms
    assert after.start_ms == to_ms(datetime(2026, 6, 2, tzinfo=UTC))
    assert after.end_ms - after.start_ms == timedelta(days=1) // timedelta(milliseconds=1)
