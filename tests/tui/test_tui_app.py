"""The dashboard driven by Textual's Pilot over a real store in the temp home.

Each test opens the app on the SQLite file in ``$METERLINE_HOME``, filled through the store's
own writer, with "now" frozen (except where a real clock matters: live refresh).
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from textual.pilot import Pilot
from textual.widget import Widget
from tuidata import (
    NOW,
    VENDOR,
    budget_toml,
    call,
    env_for,
    fill,
    frozen,
    outcome_events,
    typical_day,
    write_config,
)

from agent import Call, Store
from tui import BudgetWidget, DashboardApp
from tui._alerts import Alert
from tui._format import money, percent
from tui.widgets.alerts import AlertBar
from tui.widgets.funnel import FunnelView
from tui.widgets.help import HelpScreen
from tui.widgets.recent import RecentCalls
from tui.widgets.sync import SyncLine
from tui.widgets.title import TitleBar
from tui.widgets.usage import UsagePlot
from tui.widgets.welcome import Welcome

UTC = ZoneInfo("UTC")
#: Generous against a loaded CI machine; a dashboard that never reloads fails on it.
WAIT = 15.0


def text(widget: Widget) -> str:
    """What a widget shows, as plain text (the words a user without colour reads)."""
    rendered = widget.render()
    return str(getattr(rendered, "plain", rendered))


@asynccontextmanager
async def dashboard(size: tuple[int, int] = (80, 24), **options: Any
                    ) -> AsyncIterator[tuple[DashboardApp, Pilot[None]]]:
    """The app on the home's store, after its first reload has been drawn."""
    options.setdefault("clock", frozen)
    app = DashboardApp(zone=UTC, **options)
    async with app.run_test(size=size) as pilot:
        await asyncio.wait_for(app.wait_for_reload(1), WAIT)
        await pilot.pause()
        yield app, pilot


async def reload(app: DashboardApp, pilot: Pilot[None], key: str) -> None:
    """Press ``key`` and wait until the reload it asked for has been drawn."""
    target = app.reload_count + 1
    await pilot.press(key)
    await asyncio.wait_for(app.wait_for_reload(target), WAIT)
    await pilot.pause()


async def test_an_empty_store_says_what_to_do_first() -> None:
    async with dashboard() as (app, _pilot):
        welcome = app.query_one(Welcome)
        assert welcome.has_class("-active")
        assert welcome.display
        hint = text(welcome)
        assert "No calls recorded yet" in hint
        assert "meterline up" in hint
        assert "127.0.0.1:8790" in hint
        assert "meterline record" in hint
        assert "meterline budget set --name daily --period day --usd 10" in hint
        assert "this day · no budget set" in text(app.query_one(BudgetWidget))
        assert "$0.00 used · 0 tokens · 0 calls" in text(app.query_one(BudgetWidget))
        assert app.query_one(RecentCalls).row_count == 0
        assert not app.query_one(AlertBar).display
        assert "no suggestion outcomes" in text(app.query_one(FunnelView))
        assert app._error is None


async def test_a_first_run_with_a_budget_but_no_calls_skips_the_budget_hint(
        meterline_home: Path) -> None:
    write_config(meterline_home, budget_toml("daily", usd=5)
                 + "[proxy]\nport = 9911\n")
    async with dashboard() as (app, _pilot):
        hint = text(app.query_one(Welcome))
        assert "127.0.0.1:9911" in hint
        assert "budget set" not in hint
        assert "● OK 0%" in text(app.query_one(BudgetWidget))


async def test_the_welcome_goes_once_a_call_is_stored(meterline_home: Path) -> None:
    async with dashboard(poll_interval=0.05) as (app, pilot):
        assert app.query_one(Welcome).display
        await fill(meterline_home, [call(2)])
        await asyncio.wait_for(app.wait_for_reload(), WAIT)
        await pilot.pause()
        assert not app.query_one(Welcome).display
        assert app.query_one(RecentCalls).row_count == 1


async def test_warn_state_reads_without_colour(meterline_home: Path) -> None:
    write_config(meterline_home, budget_toml("daily", usd=10))
    await fill(meterline_home, [call(30 + i, index=i, cost_micro=850_000) for i in range(10)])
    async with dashboard() as (app, _pilot):
        widget = app.query_one(BudgetWidget)
        shown = text(widget)
        assert widget.state == "warn"
        assert widget.has_class("-warn")
        assert "daily · day · enforce" in shown
        assert "▲ WARN 85%" in shown
        assert "$1.50 left of $10.00" in shown
        assert "resets 00:00 (in 9h 55m)" in shown
        alerts = app.query_one(AlertBar)
        assert alerts.display
        assert "Budget 'daily' is at 85%" in text(alerts)


async def test_blocked_state(meterline_home: Path) -> None:
    write_config(meterline_home, budget_toml("daily", usd=10, tokens=1_000_000))
    await fill(meterline_home, [call(30 + i, index=i, cost_micro=1_050_000) for i in range(10)])
    async with dashboard() as (app, _pilot):
        widget = app.query_one(BudgetWidget)
        shown = text(widget)
        assert widget.state == "blocked"
        assert widget.has_class("-blocked")
        assert "■ BLOCKED 105%" in shown
        assert "0 left of $10.00 ($0.50 over)" in shown
        assert "tokens" in shown
        assert "left of 1M" in shown
        assert ("BLOCKED: budget 'daily' is used up; calls are refused until 00:00"
                in text(app.query_one(AlertBar)))


async def test_runaway_usage_raises_an_alert(meterline_home: Path) -> None:
    # A quiet morning (10 cents an hour), then $6 in the last hour.
    quiet = [call(120 + 60 * h, index=h, cost_micro=100_000) for h in range(12)]
    burst = [call(1 + i, index=i, cost_micro=600_000) for i in range(10)]
    await fill(meterline_home, quiet + burst)
    async with dashboard() as (app, _pilot):
        shown = text(app.query_one(AlertBar))
        assert "Runaway: $6.00 in the last hour" in shown
        assert "this day" in shown


async def test_p_cycles_budgets(meterline_home: Path) -> None:
    write_config(meterline_home, budget_toml("daily", usd=10)
                 + budget_toml("weekly", period="week", usd=60, mode="warn"))
    await fill(meterline_home, typical_day())
    async with dashboard() as (app, pilot):
        assert app.view_key == "budget:daily"
        assert "daily (day) 1/2" in text(app.query_one(TitleBar))
        await reload(app, pilot, "p")
        assert app.view_key == "budget:weekly"
        assert "weekly (week) 2/2" in text(app.query_one(TitleBar))
        assert "weekly · week · warn" in text(app.query_one(BudgetWidget))
        assert "also daily ▲ WARN 81%" in text(app.query_one(BudgetWidget))
        await reload(app, pilot, "p")
        assert app.view_key == "budget:daily"


async def test_p_without_budgets_cycles_day_week_and_month(meterline_home: Path) -> None:
    today = [call(10 + i, index=i) for i in range(2)]
    monday = [call(2 * 24 * 60 + i, index=i) for i in range(3)]  # this week, not today
    june_3rd = [call(14 * 24 * 60 + i, index=i) for i in range(4)]  # this month only
    await fill(meterline_home, today + monday + june_3rd)
    async with dashboard() as (app, pilot):
        plot = app.query_one(UsagePlot)
        seen = []
        for _ in range(4):
            seen.append((app.view_key, text(plot.query_one(".summary")).split(" · ")[1]))
            await reload(app, pilot, "p")
        assert seen == [("day", "2 calls"), ("week", "5 calls"), ("month", "9 calls"),
                        ("day", "2 calls")]


async def test_recent_calls_columns_fit_their_calls_from_the_first_frame() -> None:
    """The widths come with the rows, not from the table's measuring on its next idle
    (a frame drawn before that one, on a busy machine, once showed "claude-code" as "clau"
    for good). Wide enough for the long names in full (narrower, they are cut to fit:
    test_tui_recent)."""
    async with dashboard(size=(130, 40)) as (app, _pilot):
        table = app.query_one(RecentCalls)
        wide = {"id": 99, "ts": int(NOW.timestamp() * 1000) - 86_400_000 * 2,
                "tool": "claude-code-with-a-long-name", "model": "claude-sonnet-4-5-20990101",
                "input_tokens": 1_234_567, "output_tokens": 20, "cost_micro_usd": 12_345_678,
                "latency_ms": 123_456, "status": "upstream_error"}
        table.show([wide], UTC, int(NOW.timestamp() * 1000))
        # No pause: nothing has been idle since the rows were added.
        cells = table.get_row_at(0)
        widths = [column.get_render_width(table) - 2 * table.cell_padding
                  for column in table.ordered_columns]
        assert all(len(str(cell)) <= width
                   for cell, width in zip(cells, widths, strict=True)), (cells, widths)
        assert "claude-code-with-a-long-name" in cells


async def test_the_usage_total_of_a_rolling_budget_counts_its_window_only(
        meterline_home: Path) -> None:
    # A 5 h window from 09:05 (NOW is 14:05); its first 15-minute slot starts at 09:00, and
    # holds a $6 call from 09:02, before the window.
    write_config(meterline_home, budget_toml("five", period="5h", usd=10))
    await fill(meterline_home, [call(303, cost_micro=6_000_000),
                                call(30, cost_micro=300_000, index=1)])
    async with dashboard(size=(120, 40)) as (app, _pilot):
        summary = text(app.query_one(UsagePlot).query_one(".summary"))
        assert summary.startswith("$0.30 spent · 1 call"), summary
        assert "$9.70 left" in text(app.query_one(BudgetWidget))


@pytest.mark.parametrize(("size", "expected"), [
    ((200, 60), "$17,725 spent · 707746 calls · peak $115.59 per 15m"),
    ((120, 36), "$17,725 spent · 707.7k calls"),  # two panels a row: 44 columns
    ((80, 24), "$17,725 spent · 707746 calls · peak $115.59 per 15m"),  # one a row
])
async def test_the_usage_summary_says_what_fits_and_cuts_no_figure(
        size: tuple[int, int], expected: str) -> None:
    async with dashboard(size=size) as (app, pilot):
        plot = app.query_one(UsagePlot)
        start = int(NOW.timestamp() * 1000) - 3_600_000
        plot.show([1.0, 115.59, 3.0], "usd", start, 900_000, start + 3_600_000, UTC,
                  707_746, 17_725.0)
        await pilot.pause()
        assert text(plot.query_one(".summary")) == expected


async def test_r_reloads_on_demand(meterline_home: Path) -> None:
    await fill(meterline_home, [call(5)])
    # Polling and ticking off: only the key can bring the new call in.
    async with dashboard(poll_interval=600, tick_interval=600) as (app, pilot):
        table = app.query_one(RecentCalls)
        assert table.row_count == 1
        late = call(1, index=1)
        await fill(meterline_home, [late])
        await pilot.pause(0.3)
        assert table.row_count == 1
        await reload(app, pilot, "r")
        assert table.row_count == 2
        assert late.id in table.rows


async def test_alerts_beyond_the_bars_three_are_all_in_the_help() -> None:
    many = [Alert("warn", f"kind{i}", f"alert number {i}") for i in range(5)]
    async with dashboard() as (app, pilot):
        bar = app.query_one(AlertBar)
        bar.show(many)
        await pilot.pause()
        shown = text(bar)
        assert "alert number 2" in shown
        assert "alert number 3" not in shown
        assert "+2 more (? lists them all)" in shown
        await pilot.press("question_mark")
        await pilot.pause()
        assert isinstance(app.screen, HelpScreen)
        listed = text(app.screen.query_one("#help-text"))
        assert all(f"alert number {i}" in listed for i in range(5)), listed


async def test_question_mark_opens_help_and_escape_closes_it() -> None:
    async with dashboard() as (app, pilot):
        await pilot.press("question_mark")
        await pilot.pause()
        assert isinstance(app.screen, HelpScreen)
        help_text = text(app.screen.query_one("#help-text"))
        assert "quit" in help_text
        assert "next budget" in help_text
        assert "Runaway" not in help_text
        assert "runaway usage" in help_text
        await pilot.press("escape")
        await pilot.pause()
        assert not isinstance(app.screen, HelpScreen)


@pytest.mark.parametrize("key", ["q", "ctrl+c"])
async def test_q_quits_and_closes_the_store_it_opened(key: str) -> None:
    async with dashboard() as (app, pilot):
        store = app.store
        assert store is not None
        await pilot.press(key)
        await pilot.pause()
        assert not app.is_running
    assert app.return_code == 0
    with pytest.raises(Exception, match="closed"):
        await store.add_calls([call(1)])


async def test_with_the_callers_store_it_stays_open_and_extra_status_shows(
        meterline_home: Path) -> None:
    await fill(meterline_home, [call(3)])
    states = iter(["proxy on 127.0.0.1:8790 · 0 in flight"] * 3
                  + ["proxy on 127.0.0.1:8790 · 2 in flight"] * 1000)
    async with await Store.open(meterline_home / "meterline.db") as store:
        app = DashboardApp(store, clock=frozen, zone=UTC, poll_interval=0.05,
                           extra_status=lambda: next(states))
        async with app.run_test(size=(120, 36)) as pilot:
            await asyncio.wait_for(app.wait_for_reload(1), WAIT)
            sync = app.query_one(SyncLine)
            for _ in range(100):
                await pilot.pause(0.05)
                if "2 in flight" in text(sync):
                    break
            assert "2 in flight" in text(sync)
            await pilot.press("q")
        # The store is the caller's: still open and usable after the dashboard quit.
        assert (await store.add_calls([call(1, index=1)])).inserted == 1


async def test_a_fault_in_drawing_is_shown_and_the_next_reload_draws(
        meterline_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    await fill(meterline_home, [call(3)])
    async with dashboard() as (app, pilot):
        shown = RecentCalls.show

        def broken(self: RecentCalls, *args: Any) -> None:
            raise RuntimeError("a widget that cannot draw")

        monkeypatch.setattr(RecentCalls, "show", broken)
        await pilot.press("r")
        for _ in range(200):
            await pilot.pause(0.05)
            if app._error:
                break
        assert app._error == "a widget that cannot draw"
        assert "Cannot refresh: a widget that cannot draw" in text(app.query_one(AlertBar))
        monkeypatch.setattr(RecentCalls, "show", shown)
        await fill(meterline_home, [call(1, index=1)])
        await reload(app, pilot, "r")  # the refreshing goes on
        assert app._error is None
        assert app.query_one(RecentCalls).row_count == 2


async def test_a_broken_config_is_notified_and_the_dashboard_keeps_going(
        meterline_home: Path) -> None:
    await fill(meterline_home, [call(3)])
    async with dashboard(poll_interval=0.05) as (app, pilot):
        assert app._error is None
        write_config(meterline_home, "[[budgets]]\nname = 'x'\nlimit_usd = -1\n")
        for _ in range(200):
            await pilot.pause(0.05)
            if app._error:
                break
        assert app._error is not None
        assert "limit_usd" in app._error
        assert any("limit_usd" in n.message for n in app._notifications)
        assert "Cannot refresh" in text(app.query_one(AlertBar))
        assert app.query_one(RecentCalls).row_count == 1  # what it showed stays
        write_config(meterline_home, budget_toml("fixed", usd=10))
        for _ in range(200):
            await pilot.pause(0.05)
            if "fixed" in text(app.query_one(BudgetWidget)):
                break
        assert "fixed · day · enforce" in text(app.query_one(BudgetWidget))
        assert app._error is None


async def test_a_call_written_by_another_process_shows_within_a_second(
        meterline_home: Path) -> None:
    async with dashboard(clock=None) as (app, pilot):
        table = app.query_one(RecentCalls)
        assert table.row_count == 0
        record = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "agent", "record", "--json",
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, env=env_for(meterline_home))
        out, err = await asyncio.wait_for(record.communicate(json.dumps({
            "tool": "elsewhere", "provider": "anthropic", "model": "claude-sonnet-4-5",
            "input_tokens": 1200, "output_tokens": 300}).encode()), 60)
        assert record.returncode == 0, err.decode()
        written = time.monotonic()  # the call is committed once the process has answered
        call_id = json.loads(out)["ids"][0]
        while call_id not in table.rows and time.monotonic() - written < 5:
            await pilot.pause(0.02)
        shown_after = time.monotonic() - written
        assert call_id in table.rows
        assert shown_after < 1.0, f"the call showed after {shown_after:.2f} s"
        assert "elsewhere" in " ".join(table.get_row(call_id))


async def test_vendor_quota_and_outcomes_and_breakdown_show(meterline_home: Path) -> None:
    write_config(meterline_home, budget_toml("daily", usd=10))
    await fill(meterline_home, typical_day(), outcome_events(30), VENDOR)
    async with dashboard(size=(120, 36)) as (app, _pilot):
        budget = text(app.query_one(BudgetWidget))
        assert "anthropic" in budget
        assert "tokens: 90k left of 400k" in budget
        funnel = text(app.query_one(FunnelView))
        # 30 offered x 8 lines; 10 accepted x 6; 10 kept at 15 min x 5; 5 committed x 4.
        assert "offered      240 lines" in funnel
        assert "accepted      60 lines" in funnel
        assert "kept 15m      50 lines" in funnel
        assert "committed     20 lines" in funnel
        assert "$0.16 per retained line" in funnel  # $8.15 / 50 lines
        # The breakdown, summed here from the same calls, biggest first.
        spent: dict[str, int] = {}
        for each in typical_day():
            spent[each.model] = spent.get(each.model, 0) + (each.cost_micro_usd or 0)
        top = max(spent, key=lambda model: spent[model])
        by_model = text(app.query_one("#by-model")).splitlines()
        assert by_model[0].split() == ["model", "cost", "%"]  # narrow table: names first
        assert by_model[1].split() == [top, money(spent[top] / 1e6),
                                       percent(spent[top] / sum(spent.values()))]
        by_tool = text(app.query_one("#by-tool")).splitlines()
        assert {line.split()[0] for line in by_tool[1:]} == {
            "claude-code", "copilot", "aider", "meterline-lsp"}


def test_stored_data_is_what_the_tests_think_it_is() -> None:
    # Guards the arithmetic the assertions above rely on.
    calls = typical_day()
    assert sum(c.cost_micro_usd or 0 for c in calls) == 8_149_405
    assert sum(1 for c in calls if NOW - c.ts < timedelta(hours=1)) == 10
    assert isinstance(calls[0], Call)
