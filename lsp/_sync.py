"""Document synchronisation: open, change (incremental or whole), close.

Every open document has its text (``Document``) and, once something in it is tracked, a
``Tracker`` that follows the same edits. A change costs the edit plus the tracked pieces of
that one document; documents with nothing tracked pay only for the text.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from lsprotocol import types

from lsp._documents import Document
from lsp._retention import Tracker


class Closed(NamedTuple):
    document: Document
    tracker: Tracker | None


class OpenDocuments:
    """The documents the editor has open, by URI."""

    def __init__(self, encoding: str = "utf-16") -> None:
        self.encoding = encoding
        self.documents: dict[str, Document] = {}
        self.trackers: dict[str, Tracker] = {}

    def get(self, uri: str) -> Document | None:
        return self.documents.get(uri)

    def tracker(self, uri: str) -> Tracker:
        """The document's tracker, created on first use."""
        tracker = self.trackers.get(uri)
        if tracker is None:
            tracker = self.trackers[uri] = Tracker()
        return tracker

    def prune(self, uri: str) -> None:
        """Drop a tracker with nothing left to follow (edits then skip it entirely)."""
        tracker = self.trackers.get(uri)
        if tracker is not None and not tracker:
            del self.trackers[uri]

    def open(self, item: types.TextDocumentItem) -> Document:
        known = self.documents.get(item.uri)
        if known is not None:
            # Opened again without a close: take the new text as a change, so that what
            # is tracked in it follows instead of pointing into the old text.
            edit = known.replace_all(item.text)
            tracker = self.trackers.get(item.uri)
            if tracker:
                tracker.apply(edit)
            known.version = item.version
            known.language_id = str(item.language_id)
            return known
        document = Document(item.uri, item.text, language_id=str(item.language_id),
                            version=item.version, encoding=self.encoding)
        self.documents[item.uri] = document
        return document

    def change(self, uri: str, version: int,
               changes: Sequence[types.TextDocumentContentChangeEvent]) -> bool:
        """Apply the changes in order; False when the document is not open."""
        document = self.documents.get(uri)
        if document is None:
            return False
        tracker = self.trackers.get(uri)
        for change in changes:
            if isinstance(change, types.TextDocumentContentChangePartial):
                start = document.position(change.range.start.line, change.range.start.character)
                end = document.position(change.range.end.line, change.range.end.character)
                if end < start:
                    start, end = end, start
                edit = document.replace(start, end, change.text)
            else:
                edit = document.replace_all(change.text)
            if tracker:
                tracker.apply(edit)
        document.version = version
        return True

    def close(self, uri: str) -> Closed | None:
        document = self.documents.pop(uri, None)
        if document is None:
            return None
        return Closed(document, self.trackers.pop(uri, None))
