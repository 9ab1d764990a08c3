"""``RecentCalls``: the newest calls, one a row, as many as fit."""

from __future__ import annotations

from datetime import tzinfo
from typing import Any

from rich.cells import cell_len
from textual import events
from textual.widgets import DataTable

from tui._format import from_ms, money, tokens

COLUMNS = ("time", "tool", "model", "in", "cached", "out", "cost", "ms", "status")
#: Below this width the table drops the cache and latency columns and shortens names.
WIDE = 100
NARROW_COLUMNS = ("time", "tool", "model", "in", "out", "cost", "status")
NARROW_NAME = {"tool": 12, "model": 16}


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[:width - 1] + "…"


def call_row(call: dict[str, Any], zone: tzinfo, now_ms: int, *, narrow: bool = False
             ) -> tuple[str, ...]:
    """A call (agent's ``recent_calls`` dict) as table cells."""
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
    if narrow:
        return tuple(_cut(cells[c], NARROW_NAME.get(c, 99)) for c in NARROW_COLUMNS)
    return tuple(cells[c] for c in COLUMNS)


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
        self._calls: list[dict[str, Any]] = []
        self._shown: tuple[object, ...] | None = None
        self._zone: tzinfo | None = None
        self._now_ms = 0

    def on_resize(self, event: events.Resize) -> None:
        narrow = event.size.width < WIDE
        if narrow != self.narrow:
            self.narrow = narrow
            self._redraw()

    def show(self, calls: list[dict[str, Any]], zone: tzinfo, now_ms: int) -> None:
        self._calls, self._zone, self._now_ms = calls, zone, now_ms
        self._redraw()

    def _redraw(self) -> None:
        if self.narrow is None or self._zone is None:
            return
        shown = (self.narrow, self._now_ms // 86_400_000,
                 *(str(call["id"]) for call in self._calls))
        if shown == self._shown:
            return  # nothing new: leave the table as it is
        self._shown = shown
        names = NARROW_COLUMNS if self.narrow else COLUMNS
        rows = [call_row(call, self._zone, self._now_ms, narrow=self.narrow)
                for call in self._calls]
        # Each column's width is set here, from what it will hold, rather than left to
        # the table's own measuring: that runs later, when the table is next idle, and a
        # frame drawn before it (a busy machine) kept the headers' widths, cutting
        # "claude-code" to "clau" until the next change of calls.
        self.clear(columns=True)
        for index, name in enumerate(names):
            self.add_column(name, width=max([cell_len(name),
                                             *(cell_len(row[index]) for row in rows)]))
        for call, row in zip(self._calls, rows, strict=True):
            self.add_row(*row, key=str(call["id"]))
