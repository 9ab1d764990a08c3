"""``BreakdownTable``: where the period's spend went, by model or by tool."""

from __future__ import annotations

from collections.abc import Sequence

from textual.app import RenderResult
from textual.content import Content
from textual.geometry import Size
from textual.widget import Widget

from agent import Breakdown
from tui._format import money, percent, tokens

#: Rows shown before the rest are summed up as "others".
TOP = 5
#: From these widths on, the tokens and the calls columns are shown (names come first).
WIDE_ENOUGH_FOR_TOKENS = 46
WIDE_ENOUGH_FOR_CALLS = 38


def top_rows(rows: Sequence[Breakdown], top: int = TOP) -> list[Breakdown]:
    """The ``top`` biggest rows (as the store orders them), the rest folded into one."""
    if len(rows) <= top:
        return list(rows)
    rest = rows[top - 1:]
    folded = Breakdown(f"{len(rest)} others", sum(r.calls for r in rest),
                       sum(r.tokens for r in rest), sum(r.cost_micro for r in rest),
                       sum(r.unknown_cost_calls for r in rest))
    return [*rows[:top - 1], folded]


def table_lines(title: str, rows: Sequence[Breakdown], width: int) -> list[Content]:
    """The table as lines of ``width`` cells: name, (calls, tokens,) cost, share of cost."""
    show_tokens = width >= WIDE_ENOUGH_FOR_TOKENS
    show_calls = width >= WIDE_ENOUGH_FOR_CALLS
    numbers = 9 + 5 + (6 if show_calls else 0) + (8 if show_tokens else 0)
    name_width = max(6, width - numbers)

    def line(name: str, calls: str, toks: str, cost: str, share: str) -> str:
        middle = (f"{calls:>6}" if show_calls else "") + (f" {toks:>7}" if show_tokens else "")
        return f"{name:<{name_width}}{middle} {cost:>8} {share:>4}"

    lines = [Content.styled(line(title, "calls", "tokens", "cost", "%"), "bold $text-muted")]
    if not rows:
        lines.append(Content.styled("nothing this period", "$text-muted"))
    total = sum(r.cost_micro for r in rows)
    for row in top_rows(rows):
        name = row.key if len(row.key) < name_width else row.key[:name_width - 2] + "…"
        cost = money(row.cost_micro / 1e6) + ("+?" if row.unknown_cost_calls else "")
        share = percent(row.cost_micro / total) if total else "–"
        lines.append(Content(line(name, str(row.calls), tokens(row.tokens), cost, share)))
    return lines


class BreakdownTable(Widget):
    """Calls, tokens, cost and share of cost per model (or per tool), biggest first."""

    DEFAULT_CSS = """
    BreakdownTable {
        height: auto;
        width: 1fr;
    }
    """

    def __init__(self, title: str, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.title = title
        self.rows: list[Breakdown] = []

    def show(self, rows: Sequence[Breakdown]) -> None:
        changed = len(top_rows(rows)) != len(top_rows(self.rows))
        self.rows = list(rows)
        self.refresh(layout=changed)

    def get_content_height(self, container: Size, viewport: Size, width: int) -> int:
        # One line a row: known without rendering (render would see the old width).
        return 1 + max(1, len(top_rows(self.rows)))

    def render(self) -> RenderResult:
        return Content("\n").join(table_lines(self.title, self.rows,
                                              max(20, self.content_size.width)))
