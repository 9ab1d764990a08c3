"""Which key a request goes upstream with.

A client's own key passes through untouched and is never stored. When the client sends no
key, an empty one, or the placeholder ``meterline`` (so that tools which insist on some key
can be given one), the proxy puts in the key stored with ``meterline keys set <provider>``.

Keys are read through ``agent._credentials`` (keyring or the 0600 file) in a worker thread,
and cached for a few seconds: a key set while the proxy runs is used within ``TTL_S``.
"""

from __future__ import annotations

import asyncio
import time

from agent import _credentials
from agent._errors import CredentialError
from agent._proxy._headers import Headers, header

PLACEHOLDER = "meterline"
TTL_S = 5.0


def client_key(provider: str, headers: Headers) -> str | None:
    """The key the client sent (Anthropic: ``x-api-key`` or a bearer token; OpenAI: bearer)."""
    if provider == "anthropic":
        key = header(headers, b"x-api-key")
        if key and key.strip():
            return key.strip()
    auth = header(headers, b"authorization") or ""
    scheme, _, token = auth.strip().partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return None


def wants_stored_key(provider: str, headers: Headers) -> bool:
    key = client_key(provider, headers)
    return key is None or key == PLACEHOLDER


_LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "[::1]")


def browser_refusal(headers: Headers) -> str | None:
    """Why a request may not use the stored key, if it looks like a web page's.

    A page the developer visits can make the browser POST to 127.0.0.1 (a "simple" request
    needs no CORS preflight), and DNS rebinding can even let it read the answer. Browsers
    always send ``Origin`` on such requests and name the page's host in ``Host``; coding
    tools and SDKs do neither. Such a request may still use its own key.
    """
    if header(headers, b"origin"):
        return ("meterline proxy: requests from a web page (Origin header) may not use the "
                "stored key; send your own key")
    host = (header(headers, b"host") or "").strip().lower()
    name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    if host and name not in _LOOPBACK_HOSTS:
        return (f"meterline proxy: Host {host!r} is not this machine's loopback; the stored "
                "key is only used for requests to 127.0.0.1 or localhost")
    return None


def with_key(provider: str, headers: Headers, key: str) -> Headers:
    """``headers`` with the client's (absent or placeholder) credentials replaced by ``key``."""
    kept = [(k, v) for k, v in headers if k not in (b"x-api-key", b"authorization")]
    if provider == "anthropic":
        kept.append((b"x-api-key", key.encode("latin-1")))
    else:
        kept.append((b"authorization", b"Bearer " + key.encode("latin-1")))
    return kept


class KeyCache:
    """Stored keys by provider, re-read at most every ``TTL_S`` seconds."""

    def __init__(self) -> None:
        self._keys: dict[str, tuple[float, str | None]] = {}
        self._lock = asyncio.Lock()

    async def get(self, provider: str) -> str | None:
        now = time.monotonic()
        cached = self._keys.get(provider)
        if cached is not None and now - cached[0] < TTL_S:
            return cached[1]
        async with self._lock:
            name = _credentials.secret_name(provider)
            try:
                key = await asyncio.to_thread(_credentials.get_secret, name)
            except CredentialError:
                key = None
            self._keys[provider] = (time.monotonic(), key)
            return key
