"""The sidecar's own document copy: line splitting, encodings, incremental and whole edits."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from lsp._documents import Document, split_lines, to_client_units, to_code_points


def offset(text: str, line: int, column: int) -> int:
    """Reference: the string index of (line, column) by scanning (what the sidecar avoids)."""
    lines = split_lines(text)
    return sum(len(part) for part in lines[:line]) + column


def test_lines_break_only_on_lsp_line_breaks() -> None:
    assert split_lines("") == [""]
    assert split_lines("a\nb") == ["a\n", "b"]
    assert split_lines("a\r\nb\rc\n") == ["a\r\n", "b\r", "c\n", ""]
    # Form feeds and Unicode separators are not line breaks in LSP.
    assert split_lines("a\fb\u2028c") == ["a\fb\u2028c"]


def test_columns_convert_between_utf16_utf8_and_code_points() -> None:
    text = "a😀é="
    assert to_code_points(text, 3, "utf-16") == 2  # the emoji is two UTF-16 units
    assert to_code_points(text, 5, "utf-8") == 2  # and four UTF-8 bytes
    assert to_code_points(text, 2, "utf-32") == 2
    assert to_client_units(text, 3, "utf-16") == 4
    assert to_client_units(text, 3, "utf-8") == 7
    assert to_code_points(text, 99, "utf-16") == len(text)


def test_positions_beyond_the_end_mean_the_end() -> None:
    document = Document("u", "ab\ncd")
    assert document.position(7, 3) == (1, 2)
    assert document.position(0, 99) == (0, 2)


def test_an_edit_touches_only_its_lines() -> None:
    document = Document("u", "one\ntwo\nthree\n")
    edit = document.replace((1, 1), (2, 2), "W\nX")
    assert document.full_text() == "one\ntW\nXree\n"
    assert edit.removed == "wo\nth"
    assert edit.inserted_end == (2, 1)
    assert edit.shift((2, 4)) == (2, 3)


@st.composite
def documents_and_edits(draw: st.DrawFn) -> tuple[str, list[tuple[int, int, int, int, str]]]:
    alphabet = st.sampled_from(["a", "b", " ", "\n", "\r\n", "\r", "é", "😀"])
    text = "".join(draw(st.lists(alphabet, max_size=40)))
    edits = []
    for _ in range(draw(st.integers(1, 8))):
        edits.append((draw(st.integers(0, 6)), draw(st.integers(0, 8)),
                      draw(st.integers(0, 6)), draw(st.integers(0, 8)),
                      "".join(draw(st.lists(alphabet, max_size=6)))))
    return text, edits


@settings(max_examples=300, deadline=None)
@given(documents_and_edits())
def test_incremental_edits_match_a_whole_text_splice(
        case: tuple[str, list[tuple[int, int, int, int, str]]]) -> None:
    text, edits = case
    document = Document("u", text, encoding="utf-32")
    for l1, c1, l2, c2, new in edits:
        start, end = document.position(l1, c1), document.position(l2, c2)
        start, end = min(start, end), max(start, end)
        a, b = offset(text, *start), offset(text, *end)
        expected = text[:a] + new + text[b:]
        edit = document.replace(start, end, new)
        assert edit.removed == text[a:b]
        assert document.lines == split_lines(expected)
        text = document.full_text()


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet="ab \n", max_size=40), st.text(alphabet="ab \n", max_size=40))
def test_a_whole_document_change_becomes_the_smallest_edit(old: str, new: str) -> None:
    document = Document("u", old)
    edit = document.replace_all(new)
    assert document.full_text() == new
    a, b = offset(old, *edit.start), offset(old, *edit.end)
    assert old[:a] + edit.text + old[b:] == new
    # Minimal: the edit neither starts nor ends with a character the texts share there.
    assert not (edit.removed and edit.text and edit.removed[0] == edit.text[0])
    assert not (edit.removed and edit.text and edit.removed[-1] == edit.text[-1])


def test_the_window_around_the_cursor_reads_only_nearby_lines() -> None:
    document = Document("u", "".join(f"line {n}\n" for n in range(100_000)))
    pos = document.position(50_000, 3)
    assert document.before(pos, 20) == "49998\nline 49999\nlin"
    assert document.after(pos, 12) == "e 50000\nline"
    assert len(document.before(pos, 4000)) == 4000


def test_changes_arrive_in_the_clients_utf16_columns() -> None:
    from lsprotocol import types

    from lsp._sync import OpenDocuments

    documents = OpenDocuments(encoding="utf-16")
    documents.open(types.TextDocumentItem(uri="u", language_id="python", version=1,
                                          text='s = "😀😀"\n'))
    # UTF-16 column 7 is after the first emoji (two units each): code point 6.
    assert documents.change("u", 2, [types.TextDocumentContentChangePartial(
        range=types.Range(start=types.Position(0, 7), end=types.Position(0, 9)), text="!")])
    document = documents.get("u")
    assert document is not None
    assert document.full_text() == 's = "😀!"\n'
    assert document.client_position((0, 7)) == (0, 8)
    assert not documents.change("nope", 2, [])
