"""Event ids: UUIDv7, made where the fact was observed, the idempotency key everywhere."""

from __future__ import annotations

import uuid

import uuid_utils.compat as _uuid_compat


def new_id() -> str:
    """A fresh UUIDv7 as its canonical string (time-ordered, so indexes stay append-only)."""
    return str(_uuid_compat.uuid7())


def canonical_id(value: str) -> str:
    """Return ``value`` as a canonical lower-case UUID string, or raise ValueError."""
    return str(uuid.UUID(value))
