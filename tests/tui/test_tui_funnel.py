"""The outcome funnel's arithmetic: which checkpoint counts as retained, cost per line."""

from __future__ import annotations

import pytest

from tui._funnel import checkpoint_label, retained_checkpoint, summarize

ROWS = {
    "offered": {0: (30, 7200, 240)},
    "accepted": {0: (10, 1800, 60)},
    "retained": {30: (10, 1700, 60), 120: (10, 1650, 55), 900: (10, 1500, 50)},
    "committed": {0: (5, 600, 20)},
    "rejected": {0: (20, 4800, 160)},
}


def test_retained_is_read_at_fifteen_minutes_when_measured_there() -> None:
    summary = summarize(ROWS, cost_usd=2.5, used_tokens=100_000)
    assert summary.checkpoint_s == 900
    assert [s.lines for s in summary.stages] == [240, 60, 50, 20]
    assert summary.usd_per_retained_line == pytest.approx(0.05)
    assert summary.tokens_per_retained_line == pytest.approx(2000)
    assert summary.acceptance_rate == pytest.approx(1 / 3)
    assert not summary.empty


def test_without_a_fifteen_minute_count_the_latest_checkpoint_is_used() -> None:
    assert retained_checkpoint({30: (1, 1, 1), 300: (1, 1, 1)}) == 300
    assert retained_checkpoint({}) is None
    rows = {**ROWS, "retained": {30: (10, 1700, 60), 600: (10, 1600, 52)}}
    assert summarize(rows, 2.6, None).retained.lines == 52
    assert summarize(rows, 2.6, None).usd_per_retained_line == pytest.approx(0.05)


def test_no_retained_lines_means_no_cost_per_line_rather_than_a_division_by_zero() -> None:
    summary = summarize({"offered": {0: (3, 30, 3)}}, cost_usd=1.0, used_tokens=10)
    assert summary.usd_per_retained_line is None
    assert summary.tokens_per_retained_line is None
    assert summary.checkpoint_s is None
    assert summarize({}, None, None).empty
    assert summarize({}, None, None).acceptance_rate is None


@pytest.mark.parametrize(("seconds", "label"), [(None, "15m"), (30, "30s"), (120, "2m"),
                                                (900, "15m"), (7200, "2h"), (90, "90s")])
def test_checkpoint_labels(seconds: int | None, label: str) -> None:
    assert checkpoint_label(seconds) == label
