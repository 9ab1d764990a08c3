"""Bearer tokens: random, shown once, stored only as a hash, compared in constant time.

A token reads ``mlt_<id>_<secret>`` (``mlc_`` for CI tokens): ``id`` (12 hex characters)
names the row, so it can be listed and revoked without the secret; ``secret`` is 32 random
bytes (``secrets.token_urlsafe``). Only the secret's SHA-256 is stored: a fast hash is
enough for 256 bits of entropy, where a slow one would only slow every request.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from typing import Literal, NamedTuple

TokenKind = Literal["member", "ci"]
_PREFIX: dict[str, TokenKind] = {"mlt": "member", "mlc": "ci"}
_SHAPE = re.compile(r"^(mlt|mlc)_([0-9a-f]{12})_([A-Za-z0-9_-]{43,86})$")
ID_PATTERN = r"^[0-9a-f]{12}$"


class Minted(NamedTuple):
    id: str
    token: str  # the whole token: give it to its owner once, never store it
    secret_sha256: str


class Presented(NamedTuple):
    kind: TokenKind
    id: str
    secret: str


def mint(kind: TokenKind) -> Minted:
    token_id = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    prefix = "mlt" if kind == "member" else "mlc"
    return Minted(token_id, f"{prefix}_{token_id}_{secret}", digest(secret))


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def parse(token: str) -> Presented | None:
    """The parts of a well-formed token, or None (no database lookup for garbage)."""
    match = _SHAPE.match(token)
    if match is None:
        return None
    prefix, token_id, secret = match.groups()
    return Presented(_PREFIX[prefix], token_id, secret)


def matches(presented: Presented, stored_sha256: str) -> bool:
    """Constant-time comparison of the presented secret with the stored hash."""
    return hmac.compare_digest(digest(presented.secret), stored_sha256)
