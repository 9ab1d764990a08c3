"""The embedding example in docs/tui.md runs as written."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

from textual.app import App
from tuidata import budget_toml, fill, write_config

from agent import Call
from tui import BudgetWidget

DOC = Path(__file__).resolve().parents[2] / "docs" / "tui.md"


def example(heading: str) -> str:
    section = DOC.read_text().split(heading, 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match is not None
    return match.group(1)


async def test_the_budget_widget_example_shows_the_live_status(meterline_home: Path) -> None:
    write_config(meterline_home, budget_toml("daily", usd=1))
    await fill(meterline_home, [])
    namespace: dict[str, Any] = {"__name__": "docs_example"}
    exec(compile(example("## Embedding the budget gauge"), str(DOC), "exec"), namespace)
    app: App[None] = namespace["Editor"]()
    async with app.run_test(size=(80, 12)) as pilot:
        widget = app.query_one(BudgetWidget)
        for _ in range(100):
            await pilot.pause(0.05)
            if widget.status is not None:
                break
        assert "daily · day · enforce" in str(widget.render())
        assert widget.has_class("-ok")
        # A call stored meanwhile (now, by the real clock) shows at the next interval.
        await fill(meterline_home, [Call(tool="t", provider="anthropic", model="m",
                                         cost_micro_usd=1_200_000)])
        for _ in range(60):
            await asyncio.sleep(0.05)
            if widget.has_class("-blocked"):
                break
        assert widget.has_class("-blocked")
        assert "■ BLOCKED" in str(widget.render())
