"""Logging for the proxy: one line per request on stderr (paths and figures only)."""

from __future__ import annotations

import logging
import sys


def configure_logging(level: int = logging.INFO) -> None:
    """One line per request on stderr (paths and figures only: never bodies, never keys)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s meterline %(message)s",
                                           datefmt="%H:%M:%S"))
    for name in ("meterline", "uvicorn.error"):
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.setLevel(level if name == "meterline" else logging.WARNING)
        logger.propagate = False
