"""The one pooled upstream client of the proxy process.

It sits on httpcore (the transport under httpx) rather than httpx itself: for a proxy that
only moves bytes, httpx's request and response models, URL handling and decoders cost about
half a millisecond per request (measured here), which is half of the latency budget the
proxy has. What httpx would add that the proxy needs is done here: the Host and
Content-Length headers, gzip/deflate decoding for the meter, and the ``HTTPS_PROXY`` /
``HTTP_PROXY`` / ``NO_PROXY`` environment (resolved once per upstream origin).
"""

from __future__ import annotations

import ssl
import urllib.parse
import urllib.request
import zlib
from collections.abc import AsyncIterable, AsyncIterator
from typing import Any

import httpcore

Headers = list[tuple[bytes, bytes]]

#: Everything the transport raises for a request that failed on the network or the wire.
UPSTREAM_ERRORS: tuple[type[Exception], ...] = (
    httpcore.NetworkError, httpcore.TimeoutException, httpcore.ProtocolError,
    httpcore.UnsupportedProtocol, httpcore.ProxyError, OSError, ssl.SSLError,
)


class Response:
    """An upstream response whose body is read as it arrives."""

    def __init__(self, raw: httpcore.Response) -> None:
        self._raw = raw
        self.status_code = raw.status
        self.headers: Headers = [(k.lower(), v) for k, v in raw.headers]

    def header(self, name: bytes) -> str | None:
        for key, value in self.headers:
            if key == name:
                return value.decode("latin-1")
        return None

    async def aiter_raw(self) -> AsyncIterator[bytes]:
        stream: Any = self._raw.stream
        async for chunk in stream:
            yield chunk

    async def aiter_decoded(self) -> AsyncIterator[bytes]:
        """The body with its gzip or deflate content-encoding undone (others: as sent)."""
        decoder = _decoder(self.header(b"content-encoding"))
        async for chunk in self.aiter_raw():
            out = decoder.decompress(chunk) if decoder else chunk
            if out:
                yield out
        if decoder:
            tail = decoder.flush()
            if tail:
                yield tail

    @property
    def decodable(self) -> bool:
        """Whether ``aiter_decoded`` yields the plain body (identity, gzip or deflate)."""
        encoding = (self.header(b"content-encoding") or "identity").strip().lower()
        return encoding in ("identity", "", "gzip", "x-gzip", "deflate")

    async def aclose(self) -> None:
        await self._raw.aclose()


def _decoder(encoding: str | None) -> Any:
    encoding = (encoding or "identity").strip().lower()
    if encoding in ("gzip", "x-gzip"):
        return zlib.decompressobj(16 + zlib.MAX_WBITS)
    if encoding == "deflate":
        return zlib.decompressobj()
    return None


class Upstream:
    """Connection pools by upstream origin (a pool per proxy route, if the environment names
    an HTTP proxy for that origin)."""

    def __init__(self, *, connect_timeout_s: float, read_timeout_s: float) -> None:
        self._timeouts = {"connect": connect_timeout_s, "read": read_timeout_s,
                          "write": read_timeout_s, "pool": read_timeout_s}
        self._ssl = ssl.create_default_context()
        self._pools: dict[str, httpcore.AsyncConnectionPool] = {}

    def _pool(self, url: httpcore.URL) -> httpcore.AsyncConnectionPool:
        origin = f"{url.scheme.decode()}://{url.host.decode()}:{url.port or ''}"
        pool = self._pools.get(origin)
        if pool is None:
            options: dict[str, Any] = {
                "ssl_context": self._ssl, "max_connections": 512,
                "max_keepalive_connections": 64, "keepalive_expiry": 60.0, "http1": True,
                "http2": False, "retries": 0}
            through = _env_proxy(url)
            pool = (httpcore.AsyncHTTPProxy(proxy_url=through, **options) if through
                    else httpcore.AsyncConnectionPool(**options))
            self._pools[origin] = pool
        return pool

    async def send(self, method: str, url: str, headers: Headers,
                   body: bytes | AsyncIterable[bytes]) -> Response:
        target = httpcore.URL(url)
        out = [(k, v) for k, v in headers if k not in (b"host", b"content-length",
                                                       b"transfer-encoding")]
        default_port = {b"http": 80, b"https": 443}.get(target.scheme)
        host = target.host if target.port in (None, default_port) else \
            b"%b:%d" % (target.host, target.port)
        out.insert(0, (b"host", host))
        if isinstance(body, bytes):
            if body or method not in ("GET", "HEAD", "DELETE", "OPTIONS"):
                out.append((b"content-length", str(len(body)).encode()))
        else:
            length = next((v for k, v in headers if k == b"content-length"), None)
            out.append((b"content-length", length) if length is not None
                       else (b"transfer-encoding", b"chunked"))
        request = httpcore.Request(method, target, headers=out, content=body,
                                   extensions={"timeout": self._timeouts})
        return Response(await self._pool(target).handle_async_request(request))

    async def aclose(self) -> None:
        for pool in self._pools.values():
            await pool.aclose()


def _env_proxy(url: httpcore.URL) -> str | None:
    """The proxy the environment names for this origin (``NO_PROXY`` respected)."""
    host = url.host.decode()
    if urllib.request.proxy_bypass(host):
        return None
    proxies = urllib.request.getproxies()
    found = proxies.get(url.scheme.decode())
    if not found:
        return None
    return found if "://" in found else "http://" + urllib.parse.quote(found, safe=":/@")
