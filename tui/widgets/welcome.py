"""``Welcome``: what to do first, shown while the store holds no calls."""

from __future__ import annotations

from textual.content import Content
from textual.widgets import Static


def first_steps(proxy_port: int, has_budgets: bool) -> Content:
    steps = [
        Content.styled("No calls recorded yet. To start metering:", "bold"),
        Content.assemble(
            "1. Run ", ("meterline up", "bold $accent"),
            f" and point your tool's base URL at its proxy on 127.0.0.1:{proxy_port}"
            " (/anthropic or /openai)."),
        Content.assemble("2. Or record a call by hand: pipe its JSON into ",
                         ("meterline record", "bold $accent"), " (",
                         ("meterline record --help", "bold"), " shows one)."),
    ]
    if not has_budgets:
        steps.append(Content.assemble(
            "3. Set a budget: ",
            ("meterline budget set --name daily --period day --usd 10", "bold $accent")))
    steps.append(Content.styled("This screen updates by itself as calls arrive.",
                                "$text-muted"))
    return Content("\n").join(steps)


class Welcome(Static):
    DEFAULT_CSS = """
    Welcome {
        height: auto;
        padding: 0 1;
        border: round $accent;
        border-title-color: $accent;
        display: none;
    }
    Welcome.-active {
        display: block;
    }
    """

    def on_mount(self) -> None:
        self.border_title = "Welcome to meterline"

    def show(self, has_calls: bool, has_budgets: bool, proxy_port: int) -> None:
        self.set_class(not has_calls, "-active")
        if not has_calls:
            self.update(first_steps(proxy_port, has_budgets))
