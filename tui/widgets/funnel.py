"""``FunnelView``: what the tokens bought: offered → accepted → retained → committed."""

from __future__ import annotations

from textual.app import RenderResult
from textual.content import Content
from textual.geometry import Size
from textual.widget import Widget

from tui._format import bar, money, percent, tokens
from tui._funnel import FunnelSummary, checkpoint_label

EMPTY = "no suggestion outcomes this period (the editor sidecar reports them)"


def funnel_lines(summary: FunnelSummary | None, width: int) -> list[Content]:
    """Lines per stage with a bar relative to the lines offered, then the cost per line."""
    if summary is None or summary.empty:
        return [Content.styled(EMPTY, "$text-muted").truncate(width, ellipsis=True)]
    base = summary.offered.lines or max(stage.lines for stage in summary.stages) or 1
    labels = {"offered": "offered", "accepted": "accepted",
              "retained": f"kept {checkpoint_label(summary.checkpoint_s)}",
              "committed": "committed"}
    bar_width = max(4, width - 10 - 13 - 6)
    lines = []
    for stage in summary.stages:
        filled, empty = bar(stage.lines / base, bar_width)
        lines.append(Content.assemble(
            f"{labels[stage.name]:<10}", f"{tokens(stage.lines):>6} lines ",
            (filled, "$accent"), (empty, "$text-disabled"),
            f" {percent(stage.lines / base):>5}"))
    per_line = summary.usd_per_retained_line
    parts = [Content.assemble((money(per_line) if per_line is not None else "–", "bold"),
                              " per retained line")]
    if summary.tokens_per_retained_line is not None:
        parts.append(Content(f"{tokens(summary.tokens_per_retained_line)} tok/line"))
    if summary.acceptance_rate is not None:
        parts.append(Content(f"{percent(summary.acceptance_rate)} accepted"))
    # The figures in order of importance, as many as fit on the line.
    line = parts[0]
    for part in parts[1:]:
        if line.cell_length + 3 + part.cell_length <= width:
            line = Content(" · ").join([line, part])
    lines.append(line if line.cell_length <= width else line.truncate(width, ellipsis=True))
    return lines


class FunnelView(Widget):
    """Lines at each stage of a suggestion's life, and the cost of a line that stayed."""

    DEFAULT_CSS = """
    FunnelView {
        height: auto;
    }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.summary: FunnelSummary | None = None

    def show(self, summary: FunnelSummary) -> None:
        changed = (self.summary is None or summary.empty != self.summary.empty)
        self.summary = summary
        self.refresh(layout=changed)

    def get_content_height(self, container: Size, viewport: Size, width: int) -> int:
        return len(funnel_lines(self.summary, width))

    def render(self) -> RenderResult:
        return Content("\n").join(funnel_lines(self.summary, max(30, self.content_size.width)))
