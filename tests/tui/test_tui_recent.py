"""The recent calls table fits its width: every column shows, the figures are never cut,
and tool and model are shortened with "…" only as much as the width needs.

The dashboard runs with Pilot on a real store in the temp home (as in ``test_tui_app``), and
the tests read the table's rendered lines: what a user sees, not what the cells hold.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from rich.cells import cell_len
from textual.pilot import Pilot
from tuidata import call, fill, frozen

from tui import DashboardApp
from tui.widgets.recent import COLUMNS, NAME_MIN, NARROW_COLUMNS, RecentCalls, fit, share

UTC = ZoneInfo("UTC")
WAIT = 15.0

LONG_TOOL = "continue-vscode-extension"
LONG_MODEL = "us.anthropic.claude-sonnet-4-5-20250929-v1:0"
#: The acceptance tester's two calls, with figures of several widths. (tool, model, the
#: row's figures as shown: in, cached, out, cost, ms, status.)
ROWS = {
    "a": (LONG_TOOL, "gpt-5-codex",
          {"in": "1.5k", "cached": "1k", "out": "200", "cost": "$1.23", "ms": "12345",
           "status": "error"}),
    "b": ("claude-code", LONG_MODEL,
          {"in": "1M", "cached": "0", "out": "2.4k", "cost": "$0.012~", "ms": "400",
           "status": "ok"}),
}


async def fill_long_names(home: Path) -> None:
    await fill(home, [
        call(2, tool=LONG_TOOL, model="gpt-5-codex", input_tokens=1500,
             cache_read_tokens=1000, output_tokens=200, cost_micro=1_234_567,
             latency_ms=12345, status="error"),
        call(1, tool="claude-code", model=LONG_MODEL, input_tokens=1_000_000,
             cache_read_tokens=0, output_tokens=2400, cost_micro=12_345, estimated=True,
             latency_ms=400, status="ok"),
    ])


@asynccontextmanager
async def dashboard(size: tuple[int, int]) -> AsyncIterator[tuple[DashboardApp, Pilot[None]]]:
    app = DashboardApp(zone=UTC, clock=frozen)
    async with app.run_test(size=size) as pilot:
        await asyncio.wait_for(app.wait_for_reload(1), WAIT)
        await pilot.pause()
        yield app, pilot


def rendered(table: RecentCalls) -> list[str]:
    """The header and one line per row, as drawn."""
    return [table.render_line(y).text for y in range(1 + table.row_count)]


def check_rows(table: RecentCalls) -> dict[str, tuple[str, str]]:
    """Assert every column shows, with every figure whole, on every line that fits in the
    table's width; give each row's (tool, model) as shown."""
    width = table.content_size.width
    lines = rendered(table)
    columns = COLUMNS if table.narrow is False else NARROW_COLUMNS
    assert table.narrow == (width < 100)
    assert lines[0].split() == list(columns), lines
    shown = {}
    for line in lines[1:]:
        assert cell_len(line) <= width
        words = line.split()
        assert len(words) == len(columns), (line, lines)
        cells = dict(zip(columns, words, strict=True))
        key = "a" if cells["status"] == "error" else "b"
        tool, model, figures = ROWS[key]
        assert cells["time"] == ("14:03:00" if key == "a" else "14:04:00")
        for name in columns[3:]:
            assert cells[name] == figures[name], (name, line)
        for name, full in (("tool", tool), ("model", model)):
            # In full, or its start and "…", never cut without saying so.
            assert cells[name] == full or (cells[name].endswith("…")
                                           and full.startswith(cells[name][:-1])), line
        shown[key] = (cells["tool"], cells["model"])
    assert set(shown) == {"a", "b"}
    return shown


async def test_wide_at_104_columns_keeps_cost_ms_and_status_and_shortens_long_names(
        meterline_home: Path) -> None:
    await fill_long_names(meterline_home)
    async with dashboard((104, 40)) as (app, _pilot):
        table = app.query_one(RecentCalls)
        assert table.narrow is False
        shown = check_rows(table)
        # Both names are too long for the room: both shortened, neither to nothing.
        assert shown["a"][0].endswith("…")
        assert shown["b"][1].endswith("…")
        assert len(shown["a"][0]) >= NAME_MIN
        assert len(shown["b"][1]) >= NAME_MIN
        # The short ones stay whole.
        assert shown["a"][1] == "gpt-5-codex"
        assert shown["b"][0] == "claude-code"
        # And the room is used: the last column ends at the table's edge, not before it.
        assert max(len(line.rstrip()) for line in rendered(table)) >= table.size.width - 2


async def test_narrow_at_80_columns_shortens_only_as_much_as_needed(
        meterline_home: Path) -> None:
    await fill_long_names(meterline_home)
    async with dashboard((80, 24)) as (app, _pilot):
        table = app.query_one(RecentCalls)
        assert table.narrow is True
        shown = check_rows(table)
        assert shown["b"][1].endswith("…")
        # Longer than the old fixed cut (16 cells for a model), since the room is there.
        assert len(shown["b"][1]) > 16
        assert shown["b"][0] == "claude-code"
        assert shown["a"][1] == "gpt-5-codex"
        assert max(len(line.rstrip()) for line in rendered(table)) >= table.size.width - 2


async def test_names_show_in_full_when_there_is_room(meterline_home: Path) -> None:
    # Longer than the old narrow cut (12 for a tool, 16 for a model), short enough for 80.
    await fill(meterline_home, [call(1, tool="aider-desktop", model="claude-opus-4-1-latest")])
    async with dashboard((80, 24)) as (app, _pilot):
        table = app.query_one(RecentCalls)
        assert table.narrow is True
        row = rendered(table)[1]
        assert "aider-desktop" in row.split()
        assert "claude-opus-4-1-latest" in row.split()
        assert "…" not in row


async def test_wide_enough_shows_everything_in_full(meterline_home: Path) -> None:
    await fill_long_names(meterline_home)
    async with dashboard((160, 40)) as (app, _pilot):
        table = app.query_one(RecentCalls)
        shown = check_rows(table)
        assert shown == {"a": (LONG_TOOL, "gpt-5-codex"), "b": ("claude-code", LONG_MODEL)}
        assert not any("…" in line for line in rendered(table))


async def test_a_resize_refits_the_names(meterline_home: Path) -> None:
    await fill_long_names(meterline_home)
    async with dashboard((80, 24)) as (app, pilot):
        table = app.query_one(RecentCalls)
        before = check_rows(table)
        # Still narrow (no change of columns), but wider: the names get the new room.
        await pilot.resize_terminal(96, 24)
        await pilot.pause()
        assert table.narrow is True
        after = check_rows(table)
        assert len(after["b"][1]) > len(before["b"][1])
        assert len(after["a"][0]) > len(before["a"][0])
        # Wide, and room for all: every name whole.
        await pilot.resize_terminal(160, 40)
        await pilot.pause()
        assert check_rows(table) == {"a": (LONG_TOOL, "gpt-5-codex"),
                                     "b": ("claude-code", LONG_MODEL)}
        # And back: shortened again, every column still there.
        await pilot.resize_terminal(104, 40)
        await pilot.pause()
        assert check_rows(table)["b"][1].endswith("…")


@pytest.mark.parametrize("width", range(50, 131))
def test_fit_keeps_figures_whole_and_stays_in_the_width(width: int) -> None:
    narrow = width < 100
    names = NARROW_COLUMNS if narrow else COLUMNS
    rows = [tuple({"time": "14:03:00", "tool": LONG_TOOL, "model": LONG_MODEL, "in": "1.5k",
                   "cached": "12k", "out": "200", "cost": "$1.23", "ms": "12345",
                   "status": "upstream_error"}[c] for c in names)]
    widths, fitted = fit(names, rows, width)
    assert sum(widths) + 2 * len(names) <= width
    for name, full, cell, cell_width in zip(names, rows[0], fitted[0], widths, strict=True):
        assert cell_len(cell) <= cell_width
        if name in ("tool", "model"):
            assert cell == full or (cell.endswith("…") and full.startswith(cell[:-1]))
            if width >= 64:  # room for the figures and the floor of both names
                assert cell_width >= min(NAME_MIN, len(full))
            assert cell_width >= 1
        else:
            assert cell == full


def test_share_gives_each_a_floor_then_splits_by_need() -> None:
    assert share([11, 20], 40) == [11, 20]  # room for both
    assert share([25, 44], 43) == [17, 26]  # 8 each, then 27 split 17:36
    assert share([4, 44], 20) == [4, 16]  # a short name keeps all it has
    assert sum(share([30, 30], 41)) == 41
    assert share([30, 30], 10) == [5, 5]  # below the floor: split evenly
    assert share([30, 30], -3) == [1, 1]  # never nothing
