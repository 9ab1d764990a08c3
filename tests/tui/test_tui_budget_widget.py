"""``BudgetWidget`` embedded in another Textual app, fed only the status object."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from textual.app import App, ComposeResult
from tuidata import NOW_MS, VENDOR, budget_toml, call, fill, write_config

from agent import Store
from tui import BudgetWidget
from tui._format import iso

UTC = ZoneInfo("UTC")


class Host(App[None]):
    """Some other app that shows meterline's budget, say in a corner."""

    def compose(self) -> ComposeResult:
        yield BudgetWidget(zone=UTC, id="meter")


def plain(widget: BudgetWidget) -> list[str]:
    return str(widget.render().plain).splitlines()  # type: ignore[union-attr]


async def test_embedded_widget_shows_a_real_status_object_and_follows_updates(
        meterline_home: Path) -> None:
    write_config(meterline_home, budget_toml("daily", usd=10)
                 + budget_toml("weekly", period="week", usd=60, mode="warn"))
    await fill(meterline_home, [call(20 + i, index=i, cost_micro=300_000) for i in range(10)],
               vendor=VENDOR)
    async with await Store.open(meterline_home / "meterline.db") as store:
        first = (await store.status(at_ms=NOW_MS)).to_json()
        await store.add_calls([call(5 + i, index=i, cost_micro=600_000) for i in range(10)])
        second = (await store.status(at_ms=NOW_MS)).to_json()
    app = Host()
    async with app.run_test(size=(70, 10)) as pilot:
        widget = app.query_one(BudgetWidget)
        assert plain(widget) == ["waiting for the status…"]
        widget.status = first
        await pilot.pause()
        lines = plain(widget)
        assert lines[0].startswith("daily · day · enforce")
        assert lines[0].endswith("● OK 30%")
        assert lines[1].startswith("$ ")
        assert lines[1].endswith("$7.00 left of $10.00")
        assert lines[2].startswith("anthropic")
        assert "90k left of 400k" in lines[2]
        assert lines[3].startswith("resets 00:00 (in 9h 55m) · burn $3.00/h")
        assert lines[4] == "also weekly ● OK 5%"
        assert widget.has_class("-ok")
        assert widget.size.height == 5  # as tall as its lines: height auto

        widget.show(second)
        await pilot.pause()
        assert plain(widget)[0].endswith("▲ WARN 90%")
        # $9 used, $9 in the last hour: the last dollar goes in 1/9 h.
        assert plain(widget)[3] == ("resets 00:00 (in 9h 55m) · burn $9.00/h · "
                                    "runs out 14:11 (in 6m)")
        assert widget.has_class("-warn")
        assert not widget.has_class("-ok")

        widget.show(second, budget="weekly")
        await pilot.pause()
        assert plain(widget)[0].startswith("weekly · week · warn")
        assert plain(widget)[-1] == "also daily ▲ WARN 90%"


def status_without_budgets(**fields: Any) -> dict[str, Any]:
    return {"state": "ok", "budget": None, "period": "day", "usedUsd": 1.25,
            "usedTokens": 52_000, "calls": 1, "limitUsd": None, "limitTokens": None,
            "periodStart": iso(NOW_MS - 3_600_000), "resetsAt": iso(NOW_MS + 3_600_000),
            "burnRateUsdPerHour": 0, "burnRateTokensPerHour": 0, "budgets": [],
            "vendorQuota": [], "generatedAt": iso(NOW_MS), **fields}


async def test_without_budgets_it_shows_usage_and_on_a_narrow_screen_words_win() -> None:
    app = Host()
    async with app.run_test(size=(40, 8)) as pilot:
        widget = app.query_one(BudgetWidget)
        widget.status = status_without_budgets()
        await pilot.pause()
        assert plain(widget) == ["this day · no budget set            ● OK",
                                 "$1.25 used · 52k tokens · 1 call",
                                 "resets 15:05 · no calls in the last hour"]
        # A budget: bars while there is room for them beside the words...
        budget = {"budget": "monthly", "period": "month", "mode": "warn", "limitUsd": 1000.0,
                  "remainingUsd": 998.75, "percentUsed": 0.125}
        widget.status = status_without_budgets(**budget)
        await pilot.pause()
        assert plain(widget)[1] == "$         ░░░░░░░ $998.75 left of $1,000"
        # ...and when a vendor quota's words need the room, the words win and the bars go.
        widget.status = status_without_budgets(**budget, vendorQuota=[
            {"provider": "anthropic", "name": "five_hour_window", "usedPercent": 88.0}])
        await pilot.pause()
        lines = plain(widget)
        assert lines[1] == "$         $998.75 left of $1,000"
        assert lines[2] == "anthropic five_hour_window: 12% left"


async def test_a_vendor_quota_past_its_reset_is_not_drawn_and_an_overrun_does_not_last(
        ) -> None:
    app = Host()
    async with app.run_test(size=(80, 10)) as pilot:
        widget = app.query_one(BudgetWidget)
        over = {"budget": "five", "period": "5h", "mode": "warn", "limitUsd": 3.0,
                "remainingUsd": -0.6, "percentUsed": 120.0, "usedUsd": 3.6,
                "state": "warn", "exceeded": True, "burnRateUsdPerHour": 1.84}
        widget.status = status_without_budgets(**over, vendorQuota=[
            {"provider": "anthropic", "name": "requests", "limit": 1000, "remaining": 50,
             "resetsAt": iso(NOW_MS - 3 * 60_000), "observedAt": iso(NOW_MS - 60 * 60_000)}])
        await pilot.pause()
        shown = "\n".join(plain(widget))
        assert "anthropic" not in shown
        assert "lasts the period" not in shown
        assert "burn $1.84/h" in shown


async def test_when_it_runs_out_is_the_last_thing_a_narrow_line_gives_up() -> None:
    app = Host()
    async with app.run_test(size=(44, 8)) as pilot:
        widget = app.query_one(BudgetWidget)
        running_out = {"budget": "daily", "period": "day", "mode": "enforce",
                       "limitUsd": 10.0, "remainingUsd": 1.0, "percentUsed": 90.0,
                       "usedUsd": 9.0, "state": "warn", "burnRateUsdPerHour": 9.0,
                       "projectedExhaustionAt": iso(NOW_MS + 6 * 60_000)}
        widget.status = status_without_budgets(**running_out)
        await pilot.pause()
        # The reset's "(in 1h)" and then the burn rate go; the run-out stays whole.
        assert plain(widget)[-1] == "resets 15:05 · runs out 14:11 (in 6m)"
