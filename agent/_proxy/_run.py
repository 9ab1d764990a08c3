"""Logging for the proxy: one line per request on stderr (paths and figures only)."""

from __future__ import annotations

import asyncio
import logging
import sys
from typing import TextIO

#: Lines logged on the event loop are written together at most this long after the first.
FLUSH_AFTER_S = 0.05


class BatchedStream(logging.StreamHandler):  # type: ignore[type-arg]
    """A stream handler that, on an event loop, writes its lines in batches.

    A write to stderr is a system call that wakes whoever reads it (a terminal, a pipe,
    journald): one per request cost about a fifth of the proxy's time on a small request,
    on the path of the response. Lines logged on the loop's thread are kept and written
    together ``FLUSH_AFTER_S`` later; warnings and errors are written at once (with any kept
    before them), and so is a line logged where no loop runs unless a batch is already due.
    ``logging.shutdown`` flushes at exit; a killed process loses at most that last moment.
    """

    def __init__(self, stream: TextIO) -> None:
        super().__init__(stream)
        self._pending: list[str] = []
        self._scheduled = False

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record) + self.terminator
        except Exception:
            self.handleError(record)
            return
        self._pending.append(line)
        if record.levelno < logging.WARNING and not self._scheduled:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                loop = None
            if loop is not None:
                self._scheduled = True
                loop.call_later(FLUSH_AFTER_S, self._flush_later)
                return
        if record.levelno >= logging.WARNING or not self._scheduled:
            self.flush()

    def _flush_later(self) -> None:
        with self.lock:  # type: ignore[union-attr]
            self._scheduled = False
            self.flush()

    def flush(self) -> None:
        pending, self._pending = self._pending, []
        try:
            if pending:
                self.stream.write("".join(pending))
            super().flush()
        except Exception:
            pass  # like StreamHandler: a log line never breaks the caller


def configure_logging(level: int = logging.INFO) -> None:
    """One line per request on stderr (paths and figures only: never bodies, never keys)."""
    handler = BatchedStream(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s meterline %(message)s",
                                           datefmt="%H:%M:%S"))
    for name in ("meterline", "uvicorn.error"):
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.setLevel(level if name == "meterline" else logging.WARNING)
        logger.propagate = False
