"""``HelpScreen``: the keys and what each panel means (``?``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.content import Content
from textual.screen import ModalScreen
from textual.widgets import Static

from tui._alerts import Alert
from tui.widgets.alerts import MARK, STYLE

KEYS = (
    ("q", "quit"),
    ("r", "refresh now (it also refreshes by itself when calls arrive)"),
    ("p", "next budget (or, with no budget set, next period: day, week, month)"),
    ("?", "this help (escape closes it)"),
)

PANELS = (
    ("Budget", "what is left in dollars and tokens, the state (OK / WARN / BLOCKED and the "
               "% used), when it resets, the burn rate of the last hour, when it runs out at "
               "that rate, and the vendor's own quota where the provider reports it"),
    ("Usage", "spend per slot from the start of the period to now"),
    ("By model / By tool", "calls, tokens and cost over the period (whole hours)"),
    ("Outcomes", "lines offered, accepted, still there at the checkpoint, committed; "
                 "what a retained line cost"),
    ("Recent calls", "newest first; cost ~ estimated, ? unpriced"),
    ("Sync", "events waiting for the team server, last success, last error"),
    ("Alerts", "blocked or warning budgets, runaway usage (last hour ≥ 3× the period's "
               "average, or running out within the hour), low vendor quota, sync failing"),
)


def help_text(alerts: Sequence[Alert] = ()) -> Content:
    lines: list[Content] = []
    if alerts:  # every one, not only the bar's first three
        lines.append(Content.styled("Alerts now", "bold $accent"))
        lines += [Content.assemble((f"  {MARK[a.level]} ", STYLE[a.level]), a.text)
                  for a in alerts]
        lines.append(Content(""))
    lines.append(Content.styled("Keys", "bold $accent"))
    lines += [Content.assemble((f"  {key:<3}", "bold"), text) for key, text in KEYS]
    lines.append(Content(""))
    lines.append(Content.styled("Panels", "bold $accent"))
    lines += [Content.assemble((f"  {name}: ", "bold"), text) for name, text in PANELS]
    return Content("\n").join(lines)


class HelpScreen(ModalScreen[None]):
    DEFAULT_CSS = """
    HelpScreen {
        align: center middle;
    }
    HelpScreen > VerticalScroll {
        width: 90%;
        max-width: 100;
        height: auto;
        max-height: 90%;
        border: round $accent;
        border-title-color: $accent;
        background: $surface;
        padding: 0 1;
    }
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "close", "Close"),
        Binding("question_mark", "close", "Close", show=False),
    ]

    def __init__(self, alerts: Sequence[Alert] = ()) -> None:
        super().__init__()
        self.alerts = list(alerts)

    def compose(self) -> ComposeResult:
        with VerticalScroll() as box:
            box.border_title = "meterline help"
            yield Static(help_text(self.alerts), id="help-text")

    def action_close(self) -> None:
        self.dismiss(None)
