"""What the panels write, as pure functions of their data (no app, no store)."""

from __future__ import annotations

from zoneinfo import ZoneInfo

from tuidata import NOW_MS

from agent import Breakdown
from tui._funnel import summarize
from tui.widgets.breakdown import table_lines, top_rows
from tui.widgets.funnel import funnel_lines
from tui.widgets.recent import call_row
from tui.widgets.sync import sync_text

UTC = ZoneInfo("UTC")
MIN = 60_000


def test_sync_line_says_pending_last_success_and_a_current_error() -> None:
    never = sync_text({"pending": 1234, "lastSuccessMs": None, "lastError": None,
                       "lastErrorMs": None}, NOW_MS, UTC).plain
    assert never == "1,234 events waiting · never synced (no team server, or not yet)"
    failing = sync_text({"pending": 3, "lastSuccessMs": NOW_MS - 60 * MIN,
                         "lastError": "HTTP 503", "lastErrorMs": NOW_MS - 2 * MIN},
                        NOW_MS, UTC).plain
    assert failing == ("3 events waiting · last sync 13:05 (1h ago) · "
                       "last error HTTP 503 (2m ago)")
    recovered = sync_text({"pending": 0, "lastSuccessMs": NOW_MS - MIN,
                           "lastError": "HTTP 503", "lastErrorMs": NOW_MS - 2 * MIN},
                          NOW_MS, UTC).plain
    assert "earlier error HTTP 503" in recovered


def test_a_call_row_marks_estimated_and_unpriced_costs() -> None:
    row = {"id": "x", "ts": NOW_MS - MIN, "tool": "aider", "model": "claude-sonnet-4-5",
           "input_tokens": 1200, "cache_read_tokens": 30_000, "cache_write_tokens": 2000,
           "output_tokens": 450, "cost_micro_usd": 12_345, "estimated": 1,
           "latency_ms": 850, "status": "ok"}
    assert call_row(row, UTC, NOW_MS) == ("14:04:00", "aider", "claude-sonnet-4-5", "1.2k",
                                          "32k", "450", "$0.012~", "850", "ok")
    unpriced = {**row, "cost_micro_usd": None, "estimated": 0, "ts": NOW_MS - 3 * 86_400_000,
                "tool": "a-very-long-tool-name", "status": "error"}
    assert call_row(unpriced, UTC, NOW_MS, narrow=True) == (
        "14 Jun 14:05", "a-very-long-tool-name", "claude-sonnet-4-5", "1.2k", "450", "?",
        "error")  # in full: the table cuts names to its width (test_tui_recent)


def test_breakdown_folds_the_tail_and_drops_columns_to_keep_names() -> None:
    rows = [Breakdown(f"model-{i}", 10 - i, 1000 * i, 100_000 * (10 - i), 0) for i in range(8)]
    folded = top_rows(rows)
    assert [r.key for r in folded] == ["model-0", "model-1", "model-2", "model-3", "4 others"]
    assert folded[-1].cost_micro == sum(100_000 * (10 - i) for i in range(4, 8))
    wide = table_lines("model", rows, 60)
    assert wide[0].plain.split() == ["model", "calls", "tokens", "cost", "%"]
    assert wide[1].plain.split() == ["model-0", "10", "0", "$1.00", "19%"]
    narrow = table_lines("model", rows, 30)
    assert narrow[0].plain.split() == ["model", "cost", "%"]
    assert all(len(line.plain) <= 30 for line in narrow)
    unknown = table_lines("tool", [Breakdown("x", 2, 10, 0, 2)], 40)
    assert unknown[1].plain.split() == ["x", "2", "$0.00+?", "–"]
    assert table_lines("tool", [], 40)[1].plain == "nothing this period"


def test_funnel_lines_keep_the_cost_per_line_and_drop_what_does_not_fit() -> None:
    summary = summarize({"offered": {0: (30, 7200, 240)}, "accepted": {0: (10, 1800, 60)},
                         "retained": {900: (10, 1500, 50)}, "committed": {0: (5, 600, 20)}},
                        cost_usd=8.0, used_tokens=500_000)
    lines = [line.plain for line in funnel_lines(summary, 70)]
    assert lines[2].startswith("kept 15m      50 lines")
    assert lines[2].endswith("21%")
    assert lines[-1] == "$0.16 per retained line · 10k tok/line · 33% accepted"
    assert funnel_lines(summary, 40)[-1].plain == "$0.16 per retained line · 10k tok/line"
    assert funnel_lines(None, 40)[0].plain.startswith("no suggestion outcomes")
