"""How amounts, durations and moments read."""

from __future__ import annotations

from zoneinfo import ZoneInfo

import pytest
from tuidata import NOW_MS

from tui._format import ago, bar, duration, iso, moment, money, parse_iso, percent, tokens, until

UTC = ZoneInfo("UTC")
MIN = 60_000


@pytest.mark.parametrize(("usd", "text"), [
    (None, "?"), (0, "$0.00"), (0.0042, "$0.0042"), (0.00001, "$0.00"), (0.042, "$0.042"),
    (0.63, "$0.63"), (12.345, "$12.35"), (1234.5, "$1,234"), (-2.5, "$-2.50"),
])
def test_money(usd: float | None, text: str) -> None:
    assert money(usd) == text


@pytest.mark.parametrize(("count", "text"), [
    (None, "?"), (0, "0"), (950, "950"), (1000, "1k"), (1250, "1.2k"), (2_600_000, "2.6M"),
    (3_000_000_000, "3B"),
])
def test_tokens(count: int | None, text: str) -> None:
    assert tokens(count) == text


@pytest.mark.parametrize(("fraction", "text"), [
    (None, "–"), (0, "0%"), (0.025, "2.5%"), (0.0831, "8.3%"), (0.85, "85%"), (1.2, "120%"),
])
def test_percent(fraction: float | None, text: str) -> None:
    assert percent(fraction) == text


@pytest.mark.parametrize(("ms", "text"), [
    (-5, "0s"), (45_000, "45s"), (12 * MIN, "12m"), (192 * MIN, "3h 12m"), (120 * MIN, "2h"),
    (52 * 60 * MIN, "2d 4h"), (48 * 60 * MIN, "2d"),
])
def test_duration(ms: int, text: str) -> None:
    assert duration(ms) == text


def test_moments_near_now_read_as_clock_times_and_farther_ones_with_a_day() -> None:
    assert moment(NOW_MS + 30 * MIN, UTC, NOW_MS) == "14:35"
    assert moment(NOW_MS + (9 * 60 + 55) * MIN, UTC, NOW_MS) == "00:00"  # tomorrow, < 12 h
    assert moment(NOW_MS + 3 * 24 * 60 * MIN, UTC, NOW_MS) == "Sat 14:05"
    assert moment(NOW_MS - 2 * 24 * 60 * MIN, UTC, NOW_MS) == "Mon 14:05"
    assert moment(NOW_MS + 10 * 24 * 60 * MIN, UTC, NOW_MS) == "27 Jun 14:05"
    assert moment(NOW_MS, ZoneInfo("Asia/Kolkata"), NOW_MS) == "19:35"
    assert until(NOW_MS + 75 * MIN, NOW_MS) == "in 1h 15m"
    assert until(NOW_MS - 1, NOW_MS) == "now"
    assert ago(NOW_MS - 2_000, NOW_MS) == "just now"
    assert ago(NOW_MS - 3 * MIN, NOW_MS) == "3m ago"


def test_iso_round_trips_and_bad_text_is_none() -> None:
    assert parse_iso(iso(NOW_MS)) == NOW_MS
    assert iso(NOW_MS) == "2026-06-17T14:05:00Z"
    assert parse_iso("2026-06-17T14:05:00+02:00") == NOW_MS - 120 * MIN
    assert parse_iso(None) is None
    assert parse_iso("yesterday") is None


def test_bar_fills_by_eighths_and_keeps_its_width() -> None:
    assert bar(0, 10) == ("", "░" * 10)
    assert bar(1, 10) == ("█" * 10, "")
    assert bar(2.5, 10) == ("█" * 10, "")  # over the limit: full, never longer
    assert bar(0.5, 10) == ("█" * 5, "░" * 5)
    filled, empty = bar(0.53, 10)
    assert filled == "█████▎"
    assert len(filled) + len(empty) == 10
    assert bar(None, 4) == ("", "░░░░")
