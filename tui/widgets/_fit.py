"""One line in a given width: the first of several wordings that fits."""

from __future__ import annotations

from collections.abc import Sequence

from textual.content import Content


def first_fitting(wordings: Sequence[Content], width: int) -> Content:
    """The first of ``wordings`` (each shorter than the one before) that fits in ``width``
    cells; the last one cut with "…" when none does. A width not known yet (0) fits all."""
    for wording in wordings:
        if width <= 0 or wording.cell_length <= width:
            return wording
    return wordings[-1].truncate(width, ellipsis=True)
