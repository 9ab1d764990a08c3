"""``UsagePlot``: spend over the period as a sparkline, with its time axis and totals."""

from __future__ import annotations

from datetime import tzinfo
from typing import Any

from textual.app import ComposeResult, RenderResult
from textual.containers import Vertical
from textual.content import Content
from textual.widget import Widget
from textual.widgets import Sparkline, Static

from tui._format import duration, moment, money, tokens
from tui.widgets._fit import first_fitting


class Axis(Widget):
    """The plot's time axis: the period's start on the left, now on the right."""

    DEFAULT_CSS = """
    Axis {
        height: 1;
        color: $text-muted;
    }
    """

    def __init__(self) -> None:
        super().__init__()
        self.left = ""
        self.right = ""

    def render(self) -> RenderResult:
        gap = max(1, self.content_size.width - len(self.left) - len(self.right))
        return Content(self.left + " " * gap + self.right)


class Summary(Static):
    """One line that says as much as its width allows: the first of its wordings that
    fits (each shorter than the one before), never one cut in the middle of a figure."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.wordings: list[Content] = []

    def say(self, *wordings: Content) -> None:
        self.wordings = list(wordings)
        self.refresh()

    def render(self) -> RenderResult:
        if not self.wordings:
            return super().render()
        return first_fitting(self.wordings, self.content_size.width)


class UsagePlot(Vertical):
    """Spend per slot from the period's start to now; taller when the screen allows."""

    DEFAULT_CSS = """
    UsagePlot {
        height: auto;
    }
    UsagePlot > Sparkline {
        height: 2;
    }
    UsagePlot > Sparkline > .sparkline--max-color {
        color: $accent;
    }
    UsagePlot > Sparkline > .sparkline--min-color {
        color: $accent 40%;
    }
    UsagePlot > .summary {
        height: 1;
    }
    """

    def compose(self) -> ComposeResult:
        yield Sparkline([], id="spark")
        yield Axis()
        yield Summary("waiting for data…", classes="summary")

    def show(self, series: list[float], unit: str, start_ms: int, step_ms: int, now_ms: int,
             zone: tzinfo, calls: int, total: float | None = None) -> None:
        """Draw ``series`` (spend per ``step_ms`` slot from ``start_ms``, in ``unit``);
        ``total``: the period's own (a rolling window starts inside its first slot, whose
        earlier calls the series counts), else the series' sum."""
        self.query_one(Sparkline).data = series or [0.0]
        axis = self.query_one(Axis)
        axis.left = moment(start_ms, zone, now_ms)
        axis.right = f"now {moment(now_ms, zone, now_ms)}"
        axis.refresh()
        fmt = money if unit == "usd" else tokens
        total = sum(series) if total is None else total
        peak = max(series, default=0.0)
        noun = "call" if calls == 1 else "calls"
        spent = f" {'spent' if unit == 'usd' else 'tokens'} · "
        slot = duration(step_ms)
        self.query_one(Summary).say(
            Content.assemble((fmt(total), "bold"), f"{spent}{calls} {noun}",
                             (" · peak ", "$text-muted"), (fmt(peak), "bold"),
                             (f" per {slot}", "$text-muted")),
            Content.assemble((fmt(total), "bold"), f"{spent}{tokens(calls)} {noun}",
                             (" · peak ", "$text-muted"), (fmt(peak), "bold"),
                             (f"/{slot}", "$text-muted")),
            Content.assemble((fmt(total), "bold"), f"{spent}{tokens(calls)} {noun}"))
