"""``RecentCalls``: the newest calls, one a row, as many as fit."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import tzinfo
from typing import Any

from rich.cells import cell_len, set_cell_size
from textual import events
from textual.widgets import DataTable

from tui._format import from_ms, money, tokens

COLUMNS = ("time", "tool", "model", "in", "cached", "out", "cost", "ms", "status")
#: Below this width the table drops the cache and latency columns.
WIDE = 100
NARROW_COLUMNS = ("time", "tool", "model", "in", "out", "cost", "status")
#: The columns cut with "…" when the table is too narrow; every other column is a figure
#: (or the time, or the status), always shown in full.
NAMES = ("tool", "model")
#: Each name keeps at least this many cells (when its text is that long) before the other
#: gets more than it; the rest of the room goes in proportion to what each needs beyond it.
NAME_MIN = 8


def _cut(text: str, width: int) -> str:
    """``text`` in at most ``width`` cells, ending in "…" when it had to be shortened."""
    if cell_len(text) <= width:
        return text
    if width <= 1:
        return "…"[:width]
    return set_cell_size(text, width - 1).rstrip() + "…"


def share(needs: Sequence[int], room: int, floor: int = NAME_MIN) -> list[int]:
    """Widths for columns wanting ``needs`` cells in ``room`` cells in all.

    All in full when they fit. Otherwise each first gets up to ``floor`` (all get the same
    when even that does not fit, and never less than 1), and what is left is split in
    proportion to what each still lacks, so no width is ever above its need.
    """
    if sum(needs) <= room:
        return list(needs)
    floor = max(1, min(floor, room // max(1, len(needs))))
    widths = [min(need, floor) for need in needs]
    spare = room - sum(widths)
    lacks = [need - width for need, width in zip(needs, widths, strict=True)]
    total = sum(lacks)
    if spare <= 0 or total == 0:
        return widths
    # Largest remainder: whole cells in proportion, the odd ones to the biggest fractions.
    exact = [spare * lack / total for lack in lacks]
    given = [int(part) for part in exact]
    order = sorted(range(len(needs)), key=lambda i: exact[i] - given[i], reverse=True)
    for i in order[:spare - sum(given)]:
        given[i] += 1
    return [width + extra for width, extra in zip(widths, given, strict=True)]


def call_row(call: dict[str, Any], zone: tzinfo, now_ms: int, *, narrow: bool = False
             ) -> tuple[str, ...]:
    """A call (agent's ``recent_calls`` dict) as table cells, in full (``fit`` cuts names)."""
    when = from_ms(int(call["ts"])).astimezone(zone)
    today = from_ms(now_ms).astimezone(zone).date()
    stamp = f"{when:%H:%M:%S}" if when.date() == today else f"{when:%d %b %H:%M}"
    cost = call.get("cost_micro_usd")
    cost_text = "?" if cost is None else money(cost / 1e6)
    if call.get("estimated"):
        cost_text += "~"
    latency = call.get("latency_ms")
    cells = {
        "time": stamp, "tool": str(call.get("tool")), "model": str(call.get("model")),
        "in": tokens(call.get("input_tokens") or 0),
        "cached": tokens((call.get("cache_read_tokens") or 0)
                         + (call.get("cache_write_tokens") or 0)),
        "out": tokens(call.get("output_tokens") or 0), "cost": cost_text,
        "ms": "" if latency is None else str(latency), "status": str(call.get("status")),
    }
    return tuple(cells[c] for c in (NARROW_COLUMNS if narrow else COLUMNS))


def fit(names: Sequence[str], rows: Sequence[Sequence[str]], width: int, padding: int = 1
        ) -> tuple[list[int], list[tuple[str, ...]]]:
    """Column widths (without padding) for ``rows`` under headers ``names`` in a table
    ``width`` cells wide, each cell padded by ``padding`` on both sides, and the rows with
    the names shortened to those widths.

    Every other column gets the width of its widest cell or header; the tool and model
    columns share what is left (``share``), or get all they need when it is enough.
    """
    needs = [max([cell_len(name), *(cell_len(row[i]) for row in rows)])
             for i, name in enumerate(names)]
    cut = [i for i, name in enumerate(names) if name in NAMES]
    fixed = sum(need for i, need in enumerate(needs) if i not in cut)
    room = width - 2 * padding * len(names) - fixed
    widths = list(needs)
    for i, shared in zip(cut, share([needs[i] for i in cut], room), strict=True):
        widths[i] = shared
    fitted = [tuple(_cut(cell, widths[i]) if i in cut else cell
                    for i, cell in enumerate(row)) for row in rows]
    return widths, fitted


class RecentCalls(DataTable[str]):
    """The newest calls first; cost ``~`` when estimated, ``?`` when the model is unpriced."""

    DEFAULT_CSS = """
    RecentCalls {
        height: auto;
        max-height: 11;
        overflow: hidden hidden;
    }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, cursor_type="row", zebra_stripes=True, show_cursor=False)
        # The page scrolls, not the table: arrow keys and PgUp/PgDn always move the page,
        # and the table shows as many of the newest calls as fit.
        self.can_focus = False
        self.narrow: bool | None = None
        self._width = 0
        self._calls: list[dict[str, Any]] = []
        self._shown: tuple[object, ...] | None = None
        self._zone: tzinfo | None = None
        self._now_ms = 0

    def on_resize(self, event: events.Resize) -> None:
        # Every change of width re-fits the names, not only a change of column set.
        self._width = self.content_size.width
        self.narrow = self._width < WIDE
        self._redraw()

    def show(self, calls: list[dict[str, Any]], zone: tzinfo, now_ms: int) -> None:
        self._calls, self._zone, self._now_ms = calls, zone, now_ms
        self._redraw()

    def _redraw(self) -> None:
        if self.narrow is None or self._zone is None:
            return
        shown = (self._width, self._now_ms // 86_400_000,
                 *(str(call["id"]) for call in self._calls))
        if shown == self._shown:
            return  # nothing new: leave the table as it is
        self._shown = shown
        names = NARROW_COLUMNS if self.narrow else COLUMNS
        rows = [call_row(call, self._zone, self._now_ms, narrow=self.narrow)
                for call in self._calls]
        # Each column's width is set here, from what it will hold and the table's width,
        # rather than left to the table's own measuring: that runs later, when the table
        # is next idle, and a frame drawn before it (a busy machine) kept the headers'
        # widths, cutting "claude-code" to "clau" until the next change of calls. Only
        # tool and model are shortened, and only as much as the width needs: the figures
        # are never cut.
        widths, fitted = fit(names, rows, self._width, self.cell_padding)
        self.clear(columns=True)
        for name, width in zip(names, widths, strict=True):
            self.add_column(name, width=width)
        for call, row in zip(self._calls, fitted, strict=True):
            self.add_row(*row, key=str(call["id"]))
