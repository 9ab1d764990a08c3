"""Screenshots of the main screen at 80×24 and 120×36, compared with the committed SVGs.

"Now" is frozen and every event has a fixed timestamp, so the pictures only change when the
dashboard does. After a deliberate change, review the new pictures and update them with
``pytest tests/tui/test_tui_snapshots.py --snapshot-update``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from zoneinfo import ZoneInfo

from textual.pilot import Pilot
from tuidata import frozen, populate_typical

from tui import DashboardApp

SnapCompare = Callable[..., bool]


async def first_reload_drawn(pilot: Pilot[None]) -> None:
    app = pilot.app
    assert isinstance(app, DashboardApp)
    await app.wait_for_reload(1)
    await pilot.pause()


def dashboard() -> DashboardApp:
    return DashboardApp(clock=frozen, zone=ZoneInfo("UTC"))


def test_main_screen_80x24(meterline_home: Path, snap_compare: SnapCompare) -> None:
    populate_typical(meterline_home)
    assert snap_compare(dashboard(), terminal_size=(80, 24), run_before=first_reload_drawn)


def test_main_screen_120x36(meterline_home: Path, snap_compare: SnapCompare) -> None:
    populate_typical(meterline_home)
    assert snap_compare(dashboard(), terminal_size=(120, 36), run_before=first_reload_drawn)


def test_first_run_80x24(snap_compare: SnapCompare) -> None:
    assert snap_compare(dashboard(), terminal_size=(80, 24), run_before=first_reload_drawn)
