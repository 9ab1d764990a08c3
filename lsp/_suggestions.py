"""The life of a suggestion: offered, then accepted (and retained at checkpoints) or rejected.

Each suggestion reaches exactly one of ``accepted`` and ``rejected``; a later contrary
signal is answered with what already happened and changes nothing. A suggestion is
rejected when the client says so, when a newer suggestion replaces it in the same
document and it is not accepted within ``replaced_grace_s``, when nobody answers within
``unanswered_s``, when its document closes, or when the sidecar shuts down.

An accepted suggestion's text is found in its document (``lsp._retention.locate``) and
followed edit by edit; at each checkpoint a ``retained`` event records what is left. If
the document closes first, the counts at closing stand for the later checkpoints; if the
suggestion's document was never open here, nothing can be measured and no ``retained``
event is written (absent, not zero).
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal, Protocol

from agent import InputError, SuggestionEvent, line_fingerprints
from lsp._documents import Pos
from lsp._retention import locate, text_counts
from lsp._sync import Closed, OpenDocuments

log = logging.getLogger("meterline.lsp")

#: Seconds after acceptance at which retention is measured: 30 s, 2, 5, 10 and 15 minutes.
DEFAULT_CHECKPOINTS = (30, 120, 300, 600, 900)
#: A replaced suggestion still accepted within this time counts as accepted.
REPLACED_GRACE_S = 5.0
#: A suggestion nobody accepts or rejects within this time is rejected.
UNANSWERED_S = 60.0
#: Document changes after acceptance during which the accepted text is looked for again
#: (a client may execute the accept command before its didChange arrives).
LOOK_AGAIN_CHANGES = 5
_RESOLVED_KEPT = 4096


class Cancellable(Protocol):
    def cancel(self) -> None: ...


Schedule = Callable[[float, Callable[[], None]], Cancellable]
State = Literal["offered", "accepted", "rejected"]
Kind = Literal["offered", "accepted", "rejected", "retained"]


def loop_schedule(delay: float, callback: Callable[[], None]) -> Cancellable:
    return asyncio.get_running_loop().call_later(delay, callback)


@dataclass(slots=True)
class Suggestion:
    """A piece of text offered to the developer, and what became of it."""

    id: str
    text: str
    uri: str | None = None
    #: Where it would be inserted, in the client's units, for a document opened later.
    client_start: tuple[int, int] | None = None
    call_id: str | None = None
    tool: str | None = None
    model: str | None = None
    language: str | None = None
    workspace: str | None = None
    state: State = "offered"
    replaced: bool = False
    measured: bool = False
    frozen: tuple[int, int] | None = None
    look_again: int = 0
    timers: list[Cancellable] = field(default_factory=list)

    def cancel_timers(self) -> None:
        for timer in self.timers:
            timer.cancel()
        self.timers.clear()


class Suggestions:
    """Every live suggestion of this sidecar, and the rules of their outcomes."""

    def __init__(self, documents: OpenDocuments, emit: Callable[[SuggestionEvent], None], *,
                 checkpoints: tuple[int, ...] = DEFAULT_CHECKPOINTS,
                 replaced_grace_s: float = REPLACED_GRACE_S,
                 unanswered_s: float = UNANSWERED_S,
                 schedule: Schedule = loop_schedule) -> None:
        self.documents = documents
        self.emit = emit
        self.checkpoints = checkpoints
        self.replaced_grace_s = replaced_grace_s
        self.unanswered_s = unanswered_s
        self.schedule = schedule
        self.items: dict[str, Suggestion] = {}
        self.by_uri: dict[str, set[str]] = {}
        #: The one offer per document not replaced yet: a newer offer replaces it.
        self.current: dict[str, str] = {}
        #: Accepted texts not found in their document yet, looked for on its next changes.
        self.looking: dict[str, set[str]] = {}
        self.resolved: OrderedDict[str, State] = OrderedDict()

    # -- events ----------------------------------------------------------------------------

    def _event(self, suggestion: Suggestion, kind: Kind, counts: tuple[int, int] = (0, 0),
               checkpoint_s: int | None = None, line_hashes: list[str] | None = None) -> None:
        chars, lines = counts
        self.emit(SuggestionEvent(
            suggestion_id=suggestion.id, type=kind, chars=chars, lines=lines,
            checkpoint_s=checkpoint_s, call_id=suggestion.call_id,
            tool=suggestion.tool, model=suggestion.model, language=suggestion.language,
            workspace=suggestion.workspace, line_hashes=line_hashes))

    # -- offered ---------------------------------------------------------------------------

    def offer(self, suggestion: Suggestion, anchor: Pos | None = None) -> bool:
        """Record an offer; False (and nothing recorded) if that id is already known."""
        if suggestion.id in self.items or suggestion.id in self.resolved:
            return False
        self.items[suggestion.id] = suggestion
        self._event(suggestion, "offered", text_counts(suggestion.text))
        if suggestion.uri is not None:
            self.by_uri.setdefault(suggestion.uri, set()).add(suggestion.id)
            self._replace_older(suggestion)
            if anchor is not None and self.documents.get(suggestion.uri) is not None:
                self.documents.tracker(suggestion.uri).anchors[suggestion.id] = anchor
        self._time_out(suggestion)
        return True

    def shown(self, suggestion_id: str) -> str:
        """The client displayed it: it replaces what was shown before in that document."""
        suggestion = self._known(suggestion_id)
        if suggestion is None:
            return f"already {self.resolved[suggestion_id]}"
        if suggestion.state != "offered":
            return f"already {suggestion.state}"
        self._replace_older(suggestion)
        suggestion.replaced = False
        suggestion.cancel_timers()
        self._time_out(suggestion)
        return "shown"

    def _time_out(self, suggestion: Suggestion) -> None:
        suggestion.timers.append(self.schedule(
            self.unanswered_s, functools.partial(self._reject_quietly, suggestion.id)))

    def _replace_older(self, newer: Suggestion) -> None:
        if newer.uri is None:
            return
        other_id = self.current.get(newer.uri)
        self.current[newer.uri] = newer.id
        other = self.items.get(other_id) if other_id is not None else None
        if other is None or other is newer or other.state != "offered" or other.replaced:
            return
        other.replaced = True
        other.timers.append(self.schedule(
            self.replaced_grace_s, functools.partial(self._reject_quietly, other.id)))

    # -- rejected --------------------------------------------------------------------------

    def reject(self, suggestion_id: str) -> str:
        suggestion = self._known(suggestion_id)
        if suggestion is None:
            return f"already {self.resolved[suggestion_id]}"
        if suggestion.state != "offered":
            return f"already {suggestion.state}"
        suggestion.state = "rejected"
        suggestion.cancel_timers()
        self._event(suggestion, "rejected", text_counts(suggestion.text))
        self._drop(suggestion)
        return "rejected"

    def _reject_quietly(self, suggestion_id: str) -> None:
        if suggestion_id in self.items:
            self.reject(suggestion_id)

    # -- accepted --------------------------------------------------------------------------

    def accept(self, suggestion_id: str, accepted_text: str | None = None) -> str:
        """Record acceptance (all of it, or ``accepted_text``) and start following the text."""
        suggestion = self._known(suggestion_id)
        if suggestion is None:
            return f"already {self.resolved[suggestion_id]}"
        if suggestion.state != "offered":
            return f"already {suggestion.state}"
        text = suggestion.text if accepted_text is None else accepted_text
        suggestion.state = "accepted"
        suggestion.cancel_timers()
        # Fingerprints of the accepted lines stay on this machine, to recognise them in a
        # later git commit (`meterline commits scan`).
        self._event(suggestion, "accepted", text_counts(text), line_hashes=line_fingerprints(text))
        suggestion.text = text
        self._start_tracking(suggestion)
        last = len(self.checkpoints) - 1
        for index, seconds in enumerate(self.checkpoints):
            suggestion.timers.append(self.schedule(seconds, functools.partial(
                self._checkpoint, suggestion_id, seconds, index == last)))
        return "accepted"

    def _start_tracking(self, suggestion: Suggestion) -> None:
        uri = suggestion.uri
        document = self.documents.get(uri) if uri is not None else None
        if uri is None or document is None:
            log.info("meterline: suggestion %s accepted in a document that is not open "
                     "here; its retention is not measured", suggestion.id)
            return
        tracker = self.documents.tracker(uri)
        anchor = tracker.anchors.get(suggestion.id)
        if anchor is None and suggestion.client_start is not None:
            anchor = document.position(*suggestion.client_start)
            tracker.anchors[suggestion.id] = anchor
        suggestion.measured = True
        pieces = locate(document, anchor, suggestion.text) if anchor is not None else None
        tracker.track(suggestion.id, pieces or [])
        if pieces is None and anchor is not None and suggestion.text:
            suggestion.look_again = LOOK_AGAIN_CHANGES
            self.looking.setdefault(uri, set()).add(suggestion.id)
        else:
            tracker.anchors.pop(suggestion.id, None)

    def document_changed(self, uri: str) -> None:
        """Look again for accepted texts not found yet (their didChange came late)."""
        ids = self.looking.get(uri)
        if not ids:
            return
        for suggestion_id in list(ids):
            self._look_again(self.items[suggestion_id], uri)

    def _look_again(self, suggestion: Suggestion, uri: str) -> None:
        document = self.documents.get(uri)
        anchor = self.documents.tracker(uri).anchors.get(suggestion.id)
        if document is None or anchor is None:
            self._stop_looking(suggestion)
            return
        pieces = locate(document, anchor, suggestion.text)
        suggestion.look_again -= 1
        if pieces is not None:
            self.documents.tracker(uri).track(suggestion.id, pieces)
            suggestion.look_again = 0
        if suggestion.look_again <= 0:
            self._stop_looking(suggestion)

    def _stop_looking(self, suggestion: Suggestion) -> None:
        suggestion.look_again = 0
        uri = suggestion.uri
        if uri is None or uri not in self.looking:
            return
        ids = self.looking[uri]
        ids.discard(suggestion.id)
        if not ids:
            del self.looking[uri]
        tracker = self.documents.trackers.get(uri)
        if tracker is not None:
            tracker.anchors.pop(suggestion.id, None)

    def _checkpoint(self, suggestion_id: str, seconds: int, last: bool) -> None:
        suggestion = self.items.get(suggestion_id)
        if suggestion is None:
            return
        self._stop_looking(suggestion)
        counts = self.counts(suggestion)
        if counts is not None:
            self._event(suggestion, "retained", counts, checkpoint_s=seconds)
        if last:
            self._drop(suggestion)

    def counts(self, suggestion: Suggestion) -> tuple[int, int] | None:
        """(chars, lines) of the accepted text still present, or None if not measured."""
        if suggestion.frozen is not None:
            return suggestion.frozen
        if not suggestion.measured or suggestion.uri is None:
            return None
        tracker = self.documents.trackers.get(suggestion.uri)
        return tracker.counts(suggestion.id) if tracker is not None else (0, 0)

    # -- documents closing, shutting down --------------------------------------------------

    def document_closed(self, uri: str, closed: Closed) -> None:
        """Offers in it are rejected; accepted texts keep the counts they had at closing."""
        for suggestion_id in list(self.by_uri.get(uri, ())):
            suggestion = self.items[suggestion_id]
            if suggestion.state == "offered":
                self.reject(suggestion_id)
            elif suggestion.measured and suggestion.frozen is None:
                self._stop_looking(suggestion)
                suggestion.frozen = (closed.tracker.counts(suggestion_id)
                                     if closed.tracker is not None else (0, 0))

    def close(self) -> None:
        """Shutting down: offers still open were not accepted; stop every timer."""
        for suggestion_id, suggestion in list(self.items.items()):
            if suggestion.state == "offered":
                self.reject(suggestion_id)
            suggestion.cancel_timers()

    # -- bookkeeping -----------------------------------------------------------------------

    def _known(self, suggestion_id: str) -> Suggestion | None:
        """The live suggestion, None if it is already settled; InputError if never seen."""
        suggestion = self.items.get(suggestion_id)
        if suggestion is None and suggestion_id not in self.resolved:
            raise InputError(f"suggestionId: no suggestion {suggestion_id!r} is known to "
                             "this sidecar")
        return suggestion

    def _drop(self, suggestion: Suggestion) -> None:
        suggestion.cancel_timers()
        self._stop_looking(suggestion)
        self.items.pop(suggestion.id, None)
        self.resolved[suggestion.id] = suggestion.state
        while len(self.resolved) > _RESOLVED_KEPT:
            self.resolved.popitem(last=False)
        uri = suggestion.uri
        if uri is not None:
            if self.current.get(uri) == suggestion.id:
                del self.current[uri]
            ids = self.by_uri.get(uri)
            if ids is not None:
                ids.discard(suggestion.id)
                if not ids:
                    del self.by_uri[uri]
            tracker = self.documents.trackers.get(uri)
            if tracker is not None:
                tracker.forget(suggestion.id)
                self.documents.prune(uri)
