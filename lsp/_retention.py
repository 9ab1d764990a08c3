"""Retention: how much of an accepted suggestion is still in the document, edit after edit.

Pure arithmetic on positions; nothing here does I/O. docs/lsp.md states the rules; in short:

* An accepted text is tracked as *pieces*: runs of surviving accepted characters on one
  document line (a piece may end with that line's break). Each piece remembers which line
  of the accepted text it came from.
* **chars** retained: accepted characters still present: not deleted, not replaced. Text
  typed inside the accepted region splits a piece; the typed characters are not accepted
  characters, the ones around them still are. A CRLF counts as one character, as ``\\n``
  does in the accepted text.
* **lines** retained: lines of the accepted text that still hold at least one accepted
  non-whitespace character (an accepted line whose code was deleted but whose indentation
  survives is not a retained line).
* Moving text away (cut, then paste elsewhere) counts as deletion: a paste is new text,
  indistinguishable from typing it, and an editor must not be able to raise retention by
  re-inserting text.
* Undo is tracked: an edit that exactly reverses an earlier deletion (same place, same text,
  as an editor's undo sends it) restores the accepted pieces that deletion removed. Only
  the last ``MAX_UNDO`` deletions per document are remembered.

Costs: an edit looks at each accepted region of its document once: a region wholly
before the edit is left alone, one wholly on later lines moves by a line offset kept for
the region (O(1), its pieces are not touched); only a region on the lines the edit spans
is visited piece by piece, and only the pieces the edit overlaps are split. Nothing here
reads the document.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from lsp._documents import Document, Edit, Pos, advance, break_length, content, split_lines

#: Deletions per document remembered so that an undo can restore what they removed.
MAX_UNDO = 32
#: A deletion larger than this is not remembered for undo (memory stays bounded).
MAX_UNDO_CHARS = 256 * 1024
#: How many lines around the expected place an accepted text is looked for.
SEARCH_LINES = 3


@dataclass(slots=True)
class Piece:
    """Surviving accepted characters on one line, from line ``source_line`` of the text."""

    line: int
    column: int
    text: str
    source_line: int
    ends_line: bool = field(init=False)

    def __post_init__(self) -> None:
        self.ends_line = break_length(self.text) > 0

    @property
    def start(self) -> Pos:
        return self.line, self.column

    @property
    def end(self) -> Pos:
        if self.ends_line:
            return self.line + 1, 0
        return self.line, self.column + len(self.text)


_NOWHERE = 1 << 62


@dataclass(slots=True)
class Region:
    """The pieces of one accepted text. ``offset`` is added to every piece's line: moving
    the whole region down or up is one addition, whatever its size."""

    pieces: list[Piece]
    offset: int = 0
    first: int = _NOWHERE
    last: int = -1

    def __post_init__(self) -> None:
        self.measure()

    def settle(self) -> list[Piece]:
        """The pieces with their true lines (the offset applied to each)."""
        if self.offset:
            for piece in self.pieces:
                piece.line += self.offset
            self.offset = 0
        return self.pieces

    def measure(self) -> None:
        """The first and last line any piece is on (pieces must be settled)."""
        if self.pieces:
            self.first = min(piece.line for piece in self.pieces)
            self.last = max(piece.line for piece in self.pieces)
        else:
            self.first, self.last = _NOWHERE, -1


@dataclass(slots=True)
class Removed:
    """Accepted characters an edit removed, kept so that its undo can put them back."""

    suggestion_id: str
    offset: int  # where they started in the edit's removed text
    text: str
    source_line: int


@dataclass(slots=True)
class Tombstone:
    """A deletion of accepted text: ``removed`` was replaced by what is now [start, end)."""

    start: Pos
    end: Pos
    removed: str
    parts: list[Removed]


def text_counts(text: str) -> tuple[int, int]:
    """(chars, lines) of a text: characters (a CRLF is one) and lines with non-blank content."""
    chars = len(text) - text.count("\r\n")
    lines = sum(1 for line in split_lines(text) if line.strip())
    return chars, lines


def piece_counts(pieces: list[Piece]) -> tuple[int, int]:
    """(chars, lines) still present: the definitions in the module docstring."""
    chars = 0
    lines: set[int] = set()
    for piece in pieces:
        chars += len(piece.text) - piece.text.endswith("\r\n")
        if not piece.text.isspace():
            lines.add(piece.source_line)
    return chars, len(lines)


class Tracker:
    """Everything tracked in one document: accepted regions, offer anchors, recent deletions.

    ``anchors`` are where offered (not yet accepted) suggestions would be inserted; they
    stick to the text before them, so the insertion of the suggestion itself leaves its
    anchor at the start of the inserted text.
    """

    __slots__ = ("anchors", "regions", "tombstones")

    def __init__(self) -> None:
        self.regions: dict[str, Region] = {}
        self.anchors: dict[str, Pos] = {}
        self.tombstones: deque[Tombstone] = deque(maxlen=MAX_UNDO)

    def __bool__(self) -> bool:
        return bool(self.regions or self.anchors)

    def track(self, suggestion_id: str, pieces: list[Piece]) -> None:
        self.regions[suggestion_id] = Region(pieces)

    def pieces(self, suggestion_id: str) -> list[Piece]:
        """The region's pieces with their true lines."""
        region = self.regions.get(suggestion_id)
        return region.settle() if region is not None else []

    def forget(self, suggestion_id: str) -> None:
        self.regions.pop(suggestion_id, None)
        self.anchors.pop(suggestion_id, None)
        if not self.regions:
            self.tombstones.clear()

    def counts(self, suggestion_id: str) -> tuple[int, int]:
        region = self.regions.get(suggestion_id)
        return piece_counts(region.pieces) if region is not None else (0, 0)

    # -- following an edit -----------------------------------------------------------------

    def apply(self, edit: Edit) -> None:
        undone = self._take_undo(edit) if self.tombstones else None
        if self.tombstones:
            self._shift_tombstones(edit)
        if self.regions:
            self._shift_pieces(edit)
        if self.anchors:
            self._shift_anchors(edit)
        if undone is not None:
            self._restore(undone, edit)

    def _take_undo(self, edit: Edit) -> Tombstone | None:
        for tombstone in reversed(self.tombstones):
            if (tombstone.start == edit.start and tombstone.end == edit.end
                    and tombstone.removed == edit.text):
                self.tombstones.remove(tombstone)
                return tombstone
        return None

    def _restore(self, tombstone: Tombstone, edit: Edit) -> None:
        for part in tombstone.parts:
            region = self.regions.get(part.suggestion_id)
            if region is None:
                continue
            line, column = advance(edit.start, edit.text[:part.offset])
            region.settle().append(Piece(line, column, part.text, part.source_line))
            region.measure()

    def _shift_tombstones(self, edit: Edit) -> None:
        start, end = edit.start, edit.end
        kept = []
        for tombstone in self.tombstones:
            if end <= tombstone.start and not (start == end == tombstone.start):
                tombstone.start = edit.shift(tombstone.start)
                tombstone.end = edit.shift(tombstone.end)
            elif start < tombstone.end or (start == end == tombstone.start != tombstone.end):
                continue  # the edit overlaps what the undo would replace: no undo any more
            kept.append(tombstone)
        if len(kept) != len(self.tombstones):
            self.tombstones = deque(kept, maxlen=MAX_UNDO)

    def _shift_anchors(self, edit: Edit) -> None:
        start, end = edit.start, edit.end
        for suggestion_id, pos in self.anchors.items():
            if pos <= start:
                continue
            self.anchors[suggestion_id] = edit.shift(pos) if pos >= end else start

    def _shift_pieces(self, edit: Edit) -> None:
        start, end = edit.start, edit.end
        first_line, last_line = start[0], end[0]
        delta = edit.line_delta
        insertion = start == end
        removed: list[Removed] = []
        for suggestion_id, region in self.regions.items():
            offset = region.offset
            if region.first + offset > last_line:
                # Wholly on later lines: one addition moves it.
                region.offset += delta
                continue
            if region.last + offset < first_line:
                # Wholly on earlier lines: its last piece ends at (last + 1, 0) at the
                # latest, which is not after the edit's start.
                continue
            pieces = region.settle()
            index = 0
            while index < len(pieces):
                piece = pieces[index]
                if piece.line > last_line:
                    if delta:
                        piece.line += delta
                    index += 1
                    continue
                piece_end = piece.end
                if piece_end <= start:
                    index += 1
                    continue
                piece_start = piece.line, piece.column
                if piece_start >= end:
                    piece.line, piece.column = edit.shift(piece_start)
                    index += 1
                    continue
                parts = self._split(piece, piece_start, piece_end, edit, insertion)
                if not insertion:
                    cut_from = start[1] - piece.column if start > piece_start else 0
                    cut_to = end[1] - piece.column if end < piece_end else len(piece.text)
                    removed.append(Removed(suggestion_id, _offset_in(edit, piece_start),
                                           piece.text[cut_from:cut_to], piece.source_line))
                pieces[index:index + 1] = parts
                index += len(parts)
            region.measure()
        if removed and len(edit.removed) <= MAX_UNDO_CHARS:
            self.tombstones.append(Tombstone(start, edit.inserted_end, edit.removed, removed))

    @staticmethod
    def _split(piece: Piece, piece_start: Pos, piece_end: Pos, edit: Edit,
               insertion: bool) -> list[Piece]:
        """What is left of ``piece`` around an edit that overlaps it (on its line)."""
        start, end = edit.start, edit.end
        text, column, source = piece.text, piece.column, piece.source_line
        moved_line, moved_column = edit.inserted_end
        if insertion:
            cut = start[1] - column
            return [Piece(piece.line, column, text[:cut], source),
                    Piece(moved_line, moved_column, text[cut:], source)]
        parts = []
        if start > piece_start:
            parts.append(Piece(piece.line, column, text[:start[1] - column], source))
        if end < piece_end:
            parts.append(Piece(moved_line, moved_column, text[end[1] - column:], source))
        return parts


def _offset_in(edit: Edit, pos: Pos) -> int:
    """Where ``pos`` (inside or before the removed range) falls in ``edit.removed``."""
    if pos <= edit.start:
        return 0
    if pos[0] == edit.start[0]:
        return pos[1] - edit.start[1]
    lines = split_lines(edit.removed)
    return sum(len(line) for line in lines[:pos[0] - edit.start[0]]) + pos[1]


# -- finding an accepted text in the document ---------------------------------------------

def match_at(document: Document, pos: Pos, text: str) -> list[Piece] | None:
    """The pieces of ``text`` if the document holds it at ``pos`` (any line-break style)."""
    line, column = pos
    pieces = []
    for index, expected in enumerate(split_lines(text)):
        if not expected:
            break  # the empty remainder after a final line break
        row = line + index
        if row >= len(document.lines):
            return None
        actual = document.lines[row]
        begin = column if index == 0 else 0
        wanted = content(expected)
        if break_length(expected):
            if content(actual)[begin:] != wanted or not break_length(actual):
                return None
            pieces.append(Piece(row, begin, actual[begin:], index))
        else:
            if not actual.startswith(wanted, begin) or begin + len(wanted) > len(
                    content(actual)):
                return None
            if wanted:
                pieces.append(Piece(row, begin, wanted, index))
    return pieces


def locate(document: Document, anchor: Pos, text: str) -> list[Piece] | None:
    """Where the accepted ``text`` is: at ``anchor``, or failing that the nearest place
    within ``SEARCH_LINES`` lines (a client may have replaced a typed prefix, or the
    developer typed between offer and acceptance). None when it is not there."""
    if not text:
        return None
    found = match_at(document, anchor, text)
    if found is not None:
        return found
    first = content(split_lines(text)[0])
    if not first:
        return None
    rows = sorted(range(max(0, anchor[0] - SEARCH_LINES),
                        min(len(document.lines), anchor[0] + SEARCH_LINES + 1)),
                  key=lambda row: abs(row - anchor[0]))
    for row in rows:
        line = content(document.lines[row])
        columns = []
        at = line.find(first)
        while at != -1:
            columns.append(at)
            at = line.find(first, at + 1)
        for column in sorted(columns, key=lambda c: abs(c - anchor[1])):
            found = match_at(document, (row, column), text)
            if found is not None:
                return found
    return None


__all__ = ["Piece", "Region", "Tracker", "locate", "match_at", "piece_counts", "text_counts"]
