"""Server-sent events, split incrementally: bytes in, whole events (with their raw bytes) out.

The proxy forwards streams event by event, so it must know where each event ends however the
network cut the bytes. Lines end in ``\\n``, ``\\r\\n`` or ``\\r`` (the SSE spec allows all
three); an event ends at an empty line. A ``\\r`` at the very end of what has arrived may be
the first half of ``\\r\\n``, so it is only taken as a line end once the next byte is known.
"""

from __future__ import annotations

import re
from typing import NamedTuple

_LINE_END = re.compile(rb"\r\n|\r|\n")


class Event(NamedTuple):
    """One event: its ``event:`` name (empty if none), its data lines joined, its raw bytes."""

    name: str
    data: str
    raw: bytes


class SSESplitter:
    """Feed bytes as they arrive; get back every event that is now complete."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._scan = 0  # where the next line starts, inside _buffer
        self._event_start = 0
        self._name = ""
        self._data: list[str] = []

    def feed(self, chunk: bytes) -> list[Event]:
        if self._event_start == len(self._buffer) and chunk.endswith(b"\n\n") \
                and b"\r" not in chunk and not chunk.startswith(b"\n") \
                and b"\n\n\n" not in chunk:
            if self._buffer:  # all of it consumed: nothing of an event is pending
                self._buffer.clear()
                self._scan = self._event_start = 0
            return self._whole(chunk)
        self._buffer += chunk
        return self._split(final=False)

    def _whole(self, chunk: bytes) -> list[Event]:
        """The common case, without a buffer: nothing pending, and the chunk is whole events
        (each ends at its first empty line, lines end in ``\\n``). The same events as
        ``_split`` gives, found with two ``bytes.split`` calls instead of a regular
        expression per line."""
        events = []
        for block in chunk[:-2].split(b"\n\n"):
            if block.startswith(b"data: ") and b"\n" not in block:
                # One data line, as every OpenAI chunk: no field to parse but that one.
                events.append(Event("", block[6:].decode("utf-8", "replace"),
                                    block + b"\n\n"))
                continue
            if block.startswith(b"event: ") and block.count(b"\n") == 1:
                # A name and one data line, as every Anthropic and Responses event.
                first, second = block.split(b"\n")
                if second.startswith(b"data: "):
                    events.append(Event(first[7:].decode("utf-8", "replace"),
                                        second[6:].decode("utf-8", "replace"),
                                        block + b"\n\n"))
                    continue
            for line in block.split(b"\n"):
                self._field(line)
            events.append(Event(self._name, "\n".join(self._data), block + b"\n\n"))
            self._name, self._data = "", []
        return events

    def finish(self) -> tuple[list[Event], bytes]:
        """Events completed by the end of the stream, and any trailing bytes of an event
        that never got its closing empty line (kept so they can still be forwarded)."""
        events = self._split(final=True)
        rest = bytes(self._buffer[self._event_start:])
        self._buffer.clear()
        self._scan = self._event_start = 0
        return events, rest

    def _split(self, *, final: bool) -> list[Event]:
        events: list[Event] = []
        buffer = self._buffer
        while True:
            match = _LINE_END.search(buffer, self._scan)
            if match is None:
                break
            if match.group() == b"\r" and match.end() == len(buffer) and not final:
                break  # maybe the first half of \r\n: wait for the next byte
            line = bytes(buffer[self._scan:match.start()])
            self._scan = match.end()
            if line:
                self._field(line)
                continue
            raw = bytes(buffer[self._event_start:self._scan])
            self._event_start = self._scan
            events.append(Event(self._name, "\n".join(self._data), raw))
            self._name, self._data = "", []
        if self._event_start > 65_536:  # drop consumed bytes now and then, not every chunk
            del buffer[:self._event_start]
            self._scan -= self._event_start
            self._event_start = 0
        return events

    def _field(self, line: bytes) -> None:
        if line.startswith(b":"):
            return  # a comment (keep-alive)
        name, _, value = line.partition(b":")
        if value.startswith(b" "):
            value = value[1:]
        if name == b"data":
            self._data.append(value.decode("utf-8", "replace"))
        elif name == b"event":
            self._name = value.decode("utf-8", "replace")
