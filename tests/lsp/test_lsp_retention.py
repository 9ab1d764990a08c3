"""Retention arithmetic: accepted pieces followed through edits, against a brute-force model."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from lsp._documents import Document, Pos, split_lines
from lsp._retention import Tracker, locate, text_counts

ACCEPTED = "result = 0\n    for item in items:\n        result += item\n    return result"
BEFORE = "def total(items):\n    "
AFTER = "\n\nprint(total([1]))\n"


def accepted_document() -> tuple[Document, Tracker]:
    """A document in which ACCEPTED was just inserted at (1, 4), and its tracker."""
    document = Document("u", BEFORE + AFTER)
    tracker = Tracker()
    tracker.apply(document.replace((1, 4), (1, 4), ACCEPTED))
    pieces = locate(document, (1, 4), ACCEPTED)
    assert pieces is not None
    tracker.track("s", pieces)
    return document, tracker


def edit(document: Document, tracker: Tracker, start: Pos, end: Pos, text: str) -> None:
    tracker.apply(document.replace(start, end, text))


def test_counts_of_a_text() -> None:
    assert text_counts(ACCEPTED) == (len(ACCEPTED), 4)
    assert text_counts("x = 1\n\n   \ny\n") == (13, 2)  # blank lines are not lines of code
    assert text_counts("a\r\nb") == (3, 2)  # a CRLF is one character


def test_regions_far_from_an_edit_move_without_visiting_their_pieces() -> None:
    document, tracker = accepted_document()
    region = tracker.regions["s"]
    edit(document, tracker, (0, 0), (0, 0), "import os\n\n")
    assert region.offset == 2  # moved by one addition
    edit(document, tracker, (9, 0), (9, 0), "x")  # after it: nothing to do
    assert region.offset == 2
    assert [p.line + region.offset for p in region.pieces] == [3, 4, 5, 6]
    edit(document, tracker, (4, 8), (4, 8), "y")  # on its lines: settled, then split
    assert region.offset == 0
    assert [p.line for p in region.pieces] == [3, 4, 4, 5, 6]


def test_untouched_text_is_all_retained() -> None:
    document, tracker = accepted_document()
    assert tracker.counts("s") == text_counts(ACCEPTED)
    edit(document, tracker, (0, 0), (0, 0), "import os\n\n")  # edits elsewhere move it
    edit(document, tracker, (9, 0), (9, 0), "# end\n")
    assert tracker.counts("s") == text_counts(ACCEPTED)


def test_typing_inside_keeps_the_accepted_characters_around_it() -> None:
    document, tracker = accepted_document()
    edit(document, tracker, (2, 22), (2, 22), "  # every item")  # end of "for ...:" line
    edit(document, tracker, (3, 14), (3, 14), "_sum")  # inside "result"
    assert "result_sum += item" in document.full_text()
    assert tracker.counts("s") == text_counts(ACCEPTED)


def test_deleting_part_removes_exactly_those_characters() -> None:
    document, tracker = accepted_document()
    edit(document, tracker, (4, 4), (4, 17), "")  # "return result" (indentation stays)
    chars, lines = text_counts(ACCEPTED)
    assert tracker.counts("s") == (chars - 13, lines - 1)
    edit(document, tracker, (1, 4), (1, 10), "total")  # "result" → "total": replaced
    assert tracker.counts("s") == (chars - 13 - 6, lines - 1)


def test_moving_lines_away_counts_as_deletion() -> None:
    document, tracker = accepted_document()
    line = "        result += item\n"
    edit(document, tracker, (3, 0), (4, 0), "")  # cut
    edit(document, tracker, (0, 0), (0, 0), line)  # paste at the top
    chars, lines = text_counts(ACCEPTED)
    assert tracker.counts("s") == (chars - len(line), lines - 1)


def test_undo_restores_what_a_deletion_removed() -> None:
    document, tracker = accepted_document()
    original = document.full_text()
    removed = document.text_between((2, 0), (4, 0))
    edit(document, tracker, (2, 0), (4, 0), "")
    assert tracker.counts("s")[1] == 2
    edit(document, tracker, (0, 0), (0, 0), "# typed meanwhile\n")  # shifts the deletion
    edit(document, tracker, (0, 0), (1, 0), "")  # ... and its undo
    edit(document, tracker, (2, 0), (2, 0), removed)  # undo of the deletion
    assert document.full_text() == original
    assert tracker.counts("s") == text_counts(ACCEPTED)


def test_retyping_the_text_elsewhere_is_not_an_undo() -> None:
    document, tracker = accepted_document()
    removed = document.text_between((4, 0), (4, 17))
    edit(document, tracker, (4, 0), (4, 17), "")
    edit(document, tracker, (5, 0), (5, 0), removed)
    assert tracker.counts("s") == (len(ACCEPTED) - 17, 3)


def test_an_edit_over_the_undo_range_forgets_the_undo() -> None:
    document, tracker = accepted_document()
    edit(document, tracker, (4, 4), (4, 17), "")
    edit(document, tracker, (4, 2), (4, 4), "")  # deletes across where the text was
    edit(document, tracker, (4, 2), (4, 2), "  return result")
    assert tracker.counts("s") == (len(ACCEPTED) - 13 - 2, 3)


def test_a_crlf_document_and_a_partial_acceptance() -> None:
    document = Document("u", "x = (\r\n\r\n)\r\n")
    tracker = Tracker()
    tracker.apply(document.replace((1, 0), (1, 0), "1,\r\n2,"))
    pieces = locate(document, (1, 0), "1,\n2,")  # the suggestion used \n
    assert pieces is not None
    tracker.track("s", pieces)
    assert tracker.counts("s") == (5, 2)
    edit(document, tracker, (1, 2), (2, 0), "")  # join the lines: the break goes
    assert tracker.counts("s") == (4, 2)


def test_locate_finds_the_text_near_its_anchor_or_says_it_is_absent() -> None:
    document = Document("u", "a = 1\nb = call()\n")
    assert locate(document, (1, 4), "call()") is not None
    pieces = locate(document, (0, 0), "call()")  # one line off: still found
    assert pieces is not None
    assert (pieces[0].line, pieces[0].column) == (1, 4)
    assert locate(document, (1, 4), "other()") is None
    assert locate(document, (1, 4), "call()\nmore") is None


def test_anchors_stay_before_text_inserted_at_them() -> None:
    document = Document("u", "ab\ncd\n")
    tracker = Tracker()
    tracker.anchors["s"] = (1, 1)
    edit(document, tracker, (1, 1), (1, 1), "XYZ")
    assert tracker.anchors["s"] == (1, 1)
    edit(document, tracker, (0, 0), (0, 0), "\n")
    assert tracker.anchors["s"] == (2, 1)


# -- the model: every character tagged with the accepted line it came from ------------------

Tagged = list[tuple[str, int | None]]


def model_counts(chars: Tagged) -> tuple[int, int]:
    accepted = [(char, source) for char, source in chars if source is not None]
    lines = {source for char, source in accepted if not char.isspace()}
    return len(accepted), len(lines)


def model_offset(chars: Tagged, pos: Pos) -> int:
    text = "".join(char for char, _ in chars)
    return sum(len(line) for line in split_lines(text)[:pos[0]]) + pos[1]


@st.composite
def sessions(draw: st.DrawFn) -> tuple[str, str, int, list[Any]]:
    alphabet = st.sampled_from("ab \n")
    before = "".join(draw(st.lists(alphabet, max_size=20)))
    accepted = "".join(draw(st.lists(alphabet, min_size=1, max_size=20)))
    at = draw(st.integers(0, len(before)))
    ops = draw(st.lists(st.one_of(
        st.tuples(st.just("edit"), st.integers(0, 60), st.integers(0, 8),
                  st.text(alphabet="xy \n", max_size=5)),
        st.just(("undo",))), max_size=12))
    return before, accepted, at, ops


@settings(max_examples=400, deadline=None)
@given(sessions())
def test_retention_matches_a_character_by_character_model(
        case: tuple[str, str, int, list[Any]]) -> None:
    before, accepted, at, ops = case
    document = Document("u", before)
    tracker = Tracker()
    anchor = _pos_of(document, at)
    tracker.apply(document.replace(anchor, anchor, accepted))
    pieces = locate(document, anchor, accepted)
    assert pieces is not None
    tracker.track("s", pieces)
    line_of = []
    row = 0
    for char in accepted:
        line_of.append(row)
        row += char == "\n"
    model: Tagged = ([(c, None) for c in before[:at]] + list(zip(accepted, line_of, strict=True))
                     + [(c, None) for c in before[at:]])
    last_deletion: tuple[Pos, str, Tagged] | None = None
    for op in ops:
        if op[0] == "undo":
            if last_deletion is None:
                continue
            pos, removed, tags = last_deletion
            index = model_offset(model, pos)
            model[index:index] = tags
            tracker.apply(document.replace(pos, pos, removed))
            last_deletion = None
        else:
            _, start_at, length, text = op
            size = len(model)
            a = min(start_at, size)
            b = min(a + length, size)
            start, end = _pos_of(document, a), _pos_of(document, b)
            removed_tags = model[a:b]
            model[a:b] = [(c, None) for c in text]
            tracker.apply(document.replace(start, end, text))
            # The only undo the model knows: the very next op re-inserting a pure deletion.
            last_deletion = (start, "".join(c for c, _ in removed_tags), removed_tags) \
                if not text and b > a else None
        assert document.full_text() == "".join(c for c, _ in model)
        assert tracker.counts("s") == model_counts(model)
        region = tracker.regions["s"]  # read without settling the lazy line offset
        for piece in region.pieces:
            line = piece.line + region.offset
            end = (line + 1, 0) if piece.ends_line else (line, piece.column + len(piece.text))
            assert document.text_between((line, piece.column), end) == piece.text


def _pos_of(document: Document, index: int) -> Pos:
    for row, line in enumerate(document.lines):
        if index <= len(line) - (1 if line.endswith("\n") else 0) or row == len(
                document.lines) - 1:
            return row, min(index, len(line))
        index -= len(line)
    raise AssertionError("unreachable")
