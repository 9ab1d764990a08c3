"""Open documents, kept in sync by incremental edits at a cost proportional to the edit.

pygls keeps its own copy of each document, but it re-splits and re-joins the whole text on
every change (O(document) per keystroke), so the sidecar keeps its own: a list of lines,
each with its line break (the last line has none). An edit splices the lines it touches and
nothing else: its cost is the length of the edit plus the length of the one or two lines it
starts and ends on (and a memmove of the list's pointers when the line count changes).

Positions inside the sidecar are ``(line, column)`` tuples in code points (Python string
indexes), which compare in document order. The client speaks UTF-16 code units unless it
negotiated UTF-8 or UTF-32; conversion happens here, on the touched lines only.

Only ``\\n``, ``\\r\\n`` and ``\\r`` break lines (as in the LSP specification; Python's
``splitlines`` would also break on form feeds and Unicode separators).
"""

from __future__ import annotations

import re
from typing import NamedTuple

Pos = tuple[int, int]
"""``(line, column)`` in code points."""

_BREAK = re.compile(r"\r\n|\r|\n")


def split_lines(text: str) -> list[str]:
    """``"a\\nb"`` → ``["a\\n", "b"]``: lines with their breaks; always one more than breaks."""
    if "\r" not in text:
        parts = text.split("\n")
        last = parts.pop()
        lines = [part + "\n" for part in parts]
        lines.append(last)
        return lines
    lines = []
    start = 0
    for match in _BREAK.finditer(text):
        lines.append(text[start:match.end()])
        start = match.end()
    lines.append(text[start:])
    return lines


def break_length(line: str) -> int:
    """Length of the line break ending ``line`` (0 for the last line of a document)."""
    if line.endswith("\n"):
        return 2 if line.endswith("\r\n") else 1
    return 1 if line.endswith("\r") else 0


def content(line: str) -> str:
    """The line without its line break."""
    cut = break_length(line)
    return line[:-cut] if cut else line


def count_breaks(text: str) -> int:
    if "\r" not in text:
        return text.count("\n")
    return len(_BREAK.findall(text))


def tail_length(text: str) -> int:
    """Characters after the last line break of ``text`` (all of them if it has none)."""
    cut = max(text.rfind("\n"), text.rfind("\r"))
    return len(text) - cut - 1


def _unit_width(char: str, encoding: str) -> int:
    code = ord(char)
    if encoding == "utf-16":
        return 2 if code > 0xFFFF else 1
    return 1 if code < 0x80 else 2 if code < 0x800 else 3 if code < 0x10000 else 4


def to_code_points(text: str, column: int, encoding: str) -> int:
    """A client column (in ``encoding`` units) as an index into ``text``, clamped to its end."""
    if column <= 0:
        return 0
    if encoding == "utf-32" or text.isascii():
        return min(column, len(text))
    units = 0
    for index, char in enumerate(text):
        if units >= column:
            return index
        units += _unit_width(char, encoding)
    return len(text)


def to_client_units(text: str, index: int, encoding: str) -> int:
    """An index into ``text`` as a client column in ``encoding`` units."""
    if encoding == "utf-32" or text.isascii():
        return index
    return sum(_unit_width(char, encoding) for char in text[:index])


class Edit(NamedTuple):
    """One change in code points: ``[start, end)`` replaced by ``text`` (``removed`` was there).

    After the edit, a position at or after ``end`` moves by ``shift``; the new text occupies
    ``[start, inserted_end)``.
    """

    start: Pos
    end: Pos
    text: str
    removed: str
    breaks: int
    tail: int

    @property
    def line_delta(self) -> int:
        return self.breaks - (self.end[0] - self.start[0])

    @property
    def inserted_end(self) -> Pos:
        if self.breaks == 0:
            return self.start[0], self.start[1] + self.tail
        return self.start[0] + self.breaks, self.tail

    def shift(self, pos: Pos) -> Pos:
        """Where a position at or after ``end`` is once the edit is applied."""
        line, column = pos
        if line == self.end[0]:
            new_line, new_column = self.inserted_end
            return new_line, new_column + column - self.end[1]
        return line + self.line_delta, column


def make_edit(start: Pos, end: Pos, text: str, removed: str) -> Edit:
    return Edit(start, end, text, removed, count_breaks(text), tail_length(text))


class Document:
    """One open document: its lines, language and version, in the client's encoding."""

    __slots__ = ("encoding", "language_id", "lines", "uri", "version")

    def __init__(self, uri: str, text: str, *, language_id: str = "", version: int = 0,
                 encoding: str = "utf-16") -> None:
        self.uri = uri
        self.language_id = language_id
        self.version = version
        self.encoding = encoding
        self.lines = split_lines(text)

    # -- positions -------------------------------------------------------------------------

    def position(self, line: int, column: int) -> Pos:
        """A client position as a position in code points; beyond the end means the end."""
        if line < 0:
            return 0, 0
        if line >= len(self.lines):
            last = len(self.lines) - 1
            return last, len(content(self.lines[last]))
        text = content(self.lines[line])
        return line, to_code_points(text, column, self.encoding)

    def client_position(self, pos: Pos) -> tuple[int, int]:
        line, column = pos
        return line, to_client_units(content(self.lines[line]), column, self.encoding)

    @property
    def end(self) -> Pos:
        last = len(self.lines) - 1
        return last, len(self.lines[last])

    # -- reading ---------------------------------------------------------------------------

    def text_between(self, start: Pos, end: Pos) -> str:
        """The text in ``[start, end)``: cost proportional to its length."""
        (l1, c1), (l2, c2) = start, end
        if l1 == l2:
            return self.lines[l1][c1:c2]
        parts = [self.lines[l1][c1:], *self.lines[l1 + 1:l2], self.lines[l2][:c2]]
        return "".join(parts)

    def before(self, pos: Pos, limit: int) -> str:
        """Up to ``limit`` characters before ``pos``, reading only the lines needed."""
        line, column = pos
        parts = [self.lines[line][:column]]
        size = len(parts[0])
        while size < limit and line > 0:
            line -= 1
            parts.append(self.lines[line])
            size += len(self.lines[line])
        text = "".join(reversed(parts))
        return text[-limit:] if limit else ""

    def after(self, pos: Pos, limit: int) -> str:
        """Up to ``limit`` characters from ``pos`` on, reading only the lines needed."""
        line, column = pos
        parts = [self.lines[line][column:]]
        size = len(parts[0])
        while size < limit and line + 1 < len(self.lines):
            line += 1
            parts.append(self.lines[line])
            size += len(self.lines[line])
        return "".join(parts)[:limit]

    def full_text(self) -> str:
        return "".join(self.lines)

    # -- changing --------------------------------------------------------------------------

    def replace(self, start: Pos, end: Pos, text: str) -> Edit:
        """Replace ``[start, end)`` (code points, in order) by ``text``; say what changed."""
        (l1, c1), (l2, c2) = start, end
        removed = self.text_between(start, end)
        first, last = self.lines[l1], self.lines[l2]
        block = first[:c1] + text + last[c2:]
        if c1 == 0 and l1 > 0 and block.startswith("\n") and self.lines[l1 - 1].endswith(
                ("\r",)):
            # A lone \r before and a \n now after it make one line break (mixed line
            # endings only): splice the line before too, so that lines stay as the client
            # sees them.
            l1 -= 1
            block = self.lines[l1] + block
        new_lines = split_lines(block)
        if break_length(last):
            # ``last`` keeps its line break, so the split ends with an empty piece that is
            # really the start of the (untouched) next line.
            new_lines.pop()
        self.lines[l1:l2 + 1] = new_lines
        return make_edit(start, end, text, removed)

    def replace_all(self, text: str) -> Edit:
        """A whole-document change, turned into the smallest equivalent single edit.

        Costs O(document) (the client sent all of it anyway); the result lets outcome
        tracking follow clients that only do full synchronisation.
        """
        old, new = self.lines, split_lines(text)
        # The shorter text's last line stays in the compared block, so that the edit
        # starts on a line that exists.
        shorter = min(len(old), len(new)) - 1
        head = 0
        while head < shorter and old[head] == new[head]:
            head += 1
        tail = 0
        while tail < shorter - head and old[-1 - tail] == new[-1 - tail]:
            tail += 1
        old_block = "".join(old[head:len(old) - tail])
        new_block = "".join(new[head:len(new) - tail])
        same = _common_prefix(old_block, new_block)
        back = _common_prefix(old_block[same:][::-1], new_block[same:][::-1])
        start = advance((head, 0), old_block[:same])
        end = advance((head, 0), old_block[:len(old_block) - back])
        return self.replace(start, end, new_block[same:len(new_block) - back])


def _common_prefix(a: str, b: str) -> int:
    """Length of the common prefix, by binary search over slice comparisons (C speed)."""
    low, high = 0, min(len(a), len(b))
    while low < high:
        middle = (low + high + 1) // 2
        if a[:middle] == b[:middle]:
            low = middle
        else:
            high = middle - 1
    return low


def advance(pos: Pos, text: str) -> Pos:
    """The position reached by reading ``text`` from ``pos``."""
    breaks = count_breaks(text)
    if breaks == 0:
        return pos[0], pos[1] + len(text)
    return pos[0] + breaks, tail_length(text)
