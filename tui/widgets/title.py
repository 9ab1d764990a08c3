"""``TitleBar``: the app, the view on show (and how many there are), the time."""

from __future__ import annotations

from datetime import tzinfo

from textual.app import RenderResult
from textual.content import Content
from textual.widget import Widget

from tui._format import from_ms
from tui._views import View


class TitleBar(Widget):
    DEFAULT_CSS = """
    TitleBar {
        dock: top;
        height: 1;
        background: $panel;
        color: $foreground;
        padding: 0 1;
    }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.view_label = "…"
        self.position = ""
        self.clock = ""

    def show(self, view: View, views: list[View], now_ms: int, zone: tzinfo) -> None:
        keys = [v.key for v in views]
        index = keys.index(view.key) + 1 if view.key in keys else 1
        self.view_label = view.label
        self.position = f"{index}/{len(views)}"
        self.clock = f"{from_ms(now_ms).astimezone(zone):%a %d %b %H:%M %Z}"
        self.refresh()

    def render(self) -> RenderResult:
        hint = f" {self.position} (p: next)" if self.position not in ("", "1/1") else ""
        left = Content.assemble(("meterline", "bold $accent"), " · ", (self.view_label, "bold"),
                                (hint, "$text-muted"))
        gap = self.content_size.width - left.cell_length - len(self.clock)
        if gap < 1:
            return left
        return Content.assemble(left, " " * gap, (self.clock, "$text-muted"))
