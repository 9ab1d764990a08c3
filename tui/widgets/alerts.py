"""``AlertBar``: the alerts, the most serious first, above everything else."""

from __future__ import annotations

from collections.abc import Sequence

from textual.content import Content
from textual.widgets import Static

from tui._alerts import Alert

MARK = {"error": "!!", "warn": " !", "info": " i"}
STYLE = {"error": "bold $error", "warn": "$warning", "info": "$text-muted"}
#: More alerts than this fold into "+N more" (all of them are listed in the help, ``?``).
SHOWN = 3


class AlertBar(Static):
    """One line per alert (at most three), hidden when all is well."""

    alerts: list[Alert] = []  # noqa: RUF012 (replaced, never changed in place)

    DEFAULT_CSS = """
    AlertBar {
        height: auto;
        padding: 0 1;
        background: $boost;
        display: none;
    }
    AlertBar.-active {
        display: block;
    }
    """

    def show(self, alerts: Sequence[Alert]) -> None:
        self.alerts = list(alerts)
        self.set_class(bool(alerts), "-active")
        lines = [Content.assemble((f"{MARK[a.level]} ", STYLE[a.level]), (a.text, STYLE[a.level]))
                 for a in alerts[:SHOWN]]
        if len(alerts) > SHOWN:
            lines.append(Content.styled(f"   +{len(alerts) - SHOWN} more (? lists them all)",
                                        "$text-muted"))
        self.update(Content("\n").join(lines))
