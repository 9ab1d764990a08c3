"""The life of a suggestion, on a manual clock: offered, accepted, retained, rejected."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from lsprotocol import types

from agent import InputError, SuggestionEvent
from lsp._suggestions import Suggestion, Suggestions
from lsp._sync import OpenDocuments

URI = "file:///p/a.py"


class Clock:
    """A scheduler the test advances by hand."""

    def __init__(self) -> None:
        self.now = 0.0
        self.timers: list[Timer] = []

    def schedule(self, delay: float, callback: Callable[[], None]) -> Timer:
        timer = Timer(self.now + delay, callback)
        self.timers.append(timer)
        return timer

    def advance(self, seconds: float) -> None:
        end = self.now + seconds
        while True:
            due = sorted((t for t in self.timers if not t.cancelled and t.at <= end),
                         key=lambda t: t.at)
            if not due:
                break
            timer = due[0]
            self.timers.remove(timer)
            self.now = timer.at
            timer.callback()
        self.now = end


class Timer:
    def __init__(self, at: float, callback: Callable[[], None]) -> None:
        self.at = at
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


@pytest.fixture
def world() -> tuple[OpenDocuments, Suggestions, list[SuggestionEvent], Clock]:
    documents = OpenDocuments()
    documents.open(types.TextDocumentItem(uri=URI, language_id="python", version=1,
                                          text="x = \n"))
    events: list[SuggestionEvent] = []
    clock = Clock()
    suggestions = Suggestions(documents, events.append, checkpoints=(30, 120),
                              replaced_grace_s=5, unanswered_s=60, schedule=clock.schedule)
    return documents, suggestions, events, clock


def kinds(events: list[SuggestionEvent]) -> list[tuple[str, str, int, int, int | None]]:
    return [(e.suggestion_id, e.type, e.chars, e.lines, e.checkpoint_s) for e in events]


def insert(documents: OpenDocuments, at: tuple[int, int], text: str) -> None:
    documents.change(URI, 2, [types.TextDocumentContentChangePartial(
        range=types.Range(start=types.Position(*at), end=types.Position(*at)), text=text)])


def test_accepted_then_retained_at_each_checkpoint(world: tuple) -> None:
    documents, suggestions, events, clock = world
    suggestions.offer(Suggestion(id="a", text="42", uri=URI), (0, 4))
    insert(documents, (0, 4), "42")
    assert suggestions.accept("a") == "accepted"
    clock.advance(30)
    insert(documents, (0, 5), "0")  # typed inside: "402"
    clock.advance(90)
    assert kinds(events) == [("a", "offered", 2, 1, None), ("a", "accepted", 2, 1, None),
                             ("a", "retained", 2, 1, 30), ("a", "retained", 2, 1, 120)]
    assert "a" not in suggestions.items  # done after the last checkpoint
    assert URI not in documents.trackers  # nothing left to follow


def test_a_replaced_suggestion_is_rejected_after_the_grace_period(world: tuple) -> None:
    _, suggestions, events, clock = world
    suggestions.offer(Suggestion(id="a", text="1", uri=URI), (0, 4))
    suggestions.offer(Suggestion(id="b", text="2", uri=URI), (0, 4))
    clock.advance(4.9)
    assert [e.type for e in events] == ["offered", "offered"]
    clock.advance(0.2)
    assert kinds(events)[-1] == ("a", "rejected", 1, 1, None)
    assert suggestions.accept("a") == "already rejected"  # too late: nothing recorded
    assert len(events) == 3


def test_accepting_within_the_grace_period_counts(world: tuple) -> None:
    documents, suggestions, events, clock = world
    suggestions.offer(Suggestion(id="a", text="1", uri=URI), (0, 4))
    suggestions.offer(Suggestion(id="b", text="2", uri=URI), (0, 4))
    insert(documents, (0, 4), "1")
    assert suggestions.accept("a") == "accepted"
    clock.advance(61)
    assert [(e.suggestion_id, e.type) for e in events] == [
        ("a", "offered"), ("b", "offered"), ("a", "accepted"), ("a", "retained"),
        ("b", "rejected")]  # b was never answered


def test_a_closed_document_rejects_offers_and_freezes_retention(world: tuple) -> None:
    documents, suggestions, events, clock = world
    suggestions.offer(Suggestion(id="a", text="42", uri=URI), (0, 4))
    insert(documents, (0, 4), "42")
    suggestions.accept("a")
    suggestions.offer(Suggestion(id="b", text="7", uri=URI), (0, 6))
    closed = documents.close(URI)
    assert closed is not None
    suggestions.document_closed(URI, closed)
    clock.advance(200)
    assert kinds(events)[2:] == [("b", "offered", 1, 1, None), ("b", "rejected", 1, 1, None),
                                 ("a", "retained", 2, 1, 30), ("a", "retained", 2, 1, 120)]


def test_not_measured_when_the_document_is_not_open_here(world: tuple) -> None:
    _, suggestions, events, clock = world
    suggestions.offer(Suggestion(id="a", text="42", uri="file:///elsewhere.py"))
    suggestions.accept("a", accepted_text="4")
    clock.advance(200)
    assert kinds(events) == [("a", "offered", 2, 1, None), ("a", "accepted", 1, 1, None)]


def test_the_accepted_text_arriving_after_the_command_is_still_found(world: tuple) -> None:
    documents, suggestions, events, clock = world
    suggestions.offer(Suggestion(id="a", text="42", uri=URI), (0, 4))
    suggestions.accept("a")  # the command came before the didChange
    insert(documents, (0, 4), "42")
    suggestions.document_changed(URI)
    clock.advance(30)
    assert kinds(events)[-1] == ("a", "retained", 2, 1, 30)


def test_unknown_ids_are_bad_input_and_settled_ones_answer_what_happened(world: tuple) -> None:
    _, suggestions, _, _ = world
    with pytest.raises(InputError, match="suggestionId"):
        suggestions.accept("nope")
    suggestions.offer(Suggestion(id="a", text="1", uri=URI))
    assert suggestions.reject("a") == "rejected"
    assert suggestions.reject("a") == "already rejected"
    assert suggestions.shown("a") == "already rejected"
    assert not suggestions.offer(Suggestion(id="a", text="1", uri=URI))  # no second offer


def test_shutdown_rejects_what_is_still_offered(world: tuple) -> None:
    _, suggestions, events, clock = world
    suggestions.offer(Suggestion(id="a", text="1", uri=URI))
    suggestions.close()
    clock.advance(100)
    assert [e.type for e in events] == ["offered", "rejected"]
