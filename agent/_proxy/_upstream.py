"""The one pooled upstream client of the proxy process.

Direct origins (the usual case) go through a small HTTP/1.1 client of our own: asyncio
protocols, responses parsed by httptools (llhttp, the C parser uvicorn already uses to parse
the requests the proxy receives), keep-alive connections pooled per origin. A proxy only
moves bytes, and the general-purpose clients measured here cost a large part of the
proxy's latency budget per request (``bench/bench_upstream_client.py``; docs/proxy.md,
*Performance*, has the figures: CPU per small request 0.5–0.6 ms for httpcore, 0.18–0.2 ms
for aiohttp, 0.08–0.1 ms for this client). What it does:

* one request at a time per connection; idle connections kept per origin (newest first) for
  ``KEEPALIVE_EXPIRY_S``, dropped when the server closes them;
* bodies delimited by Content-Length, chunked, or the end of the connection (httptools
  decodes the chunked framing); request bodies sent whole or streamed (chunked);
* one read timer per connection, re-armed only when it fires: no progress on the wire for
  ``read_timeout_s`` fails the response (no timer per chunk);
* back-pressure both ways: reading pauses while a slow client has not taken the body;
* an idle connection is checked before it is reused: one the server has closed (or that
  has anything at all to read) is dropped, as httpcore does. A request is never sent
  twice: a connection that breaks after the request went out is the caller's error (the
  provider may have started on it).

Origins that the environment routes through an HTTP proxy (``HTTPS_PROXY`` / ``HTTP_PROXY``
/ ``NO_PROXY``, resolved once per origin) go through httpcore, which speaks CONNECT and proxy
authentication. What httpx would add that the proxy needs is done here for both: the Host
and Content-Length headers and gzip/deflate decoding for the meter.
"""

from __future__ import annotations

import asyncio
import collections
import select
import ssl
import urllib.parse
import urllib.request
import zlib
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable
from typing import Any

import httpcore
import httptools

Headers = list[tuple[bytes, bytes]]

#: Idle connections older than this are not reused.
KEEPALIVE_EXPIRY_S = 60.0
#: Idle connections kept per origin.
MAX_IDLE_PER_ORIGIN = 64
#: Reading from the upstream pauses while this much of its body waits for the client.
_HIGH_WATER = 256 * 1024
_LOW_WATER = 64 * 1024


class UpstreamError(Exception):
    """The upstream broke the connection or HTTP/1.1 itself."""


#: Everything the transport raises for a request that failed on the network or the wire.
UPSTREAM_ERRORS: tuple[type[Exception], ...] = (
    UpstreamError, httptools.HttpParserError, OSError, ssl.SSLError,  # TimeoutError is an OSError
    httpcore.NetworkError, httpcore.TimeoutException, httpcore.ProtocolError,
    httpcore.UnsupportedProtocol, httpcore.ProxyError,
)


class Response:
    """An upstream response whose body is read as it arrives."""

    def __init__(self, status_code: int, headers: Headers, chunks: AsyncIterator[bytes],
                 close: Callable[[], Awaitable[None]],
                 ready: Callable[[], bool] = lambda: False) -> None:
        self.status_code = status_code
        self.headers = headers  # lower-case names
        self._chunks = chunks
        self._close = close
        self._ready = ready

    def body_ready(self) -> bool:
        """Whether body bytes (or its end) arrived with the head: reading them won't wait."""
        return self._ready()

    def header(self, name: bytes) -> str | None:
        for key, value in self.headers:
            if key == name:
                return value.decode("latin-1")
        return None

    def aiter_raw(self) -> AsyncIterator[bytes]:
        return self._chunks

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
        await self._close()


def _decoder(encoding: str | None) -> Any:
    encoding = (encoding or "identity").strip().lower()
    if encoding in ("gzip", "x-gzip"):
        return zlib.decompressobj(16 + zlib.MAX_WBITS)
    if encoding == "deflate":
        return zlib.decompressobj()
    return None


# -- the direct client --------------------------------------------------------------------------

class _Connection(asyncio.Protocol):
    """One HTTP/1.1 connection to an origin, one exchange at a time."""

    def __init__(self, pool: _Pool) -> None:
        self._pool = pool
        self._loop = pool.loop
        self._parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.idle_since = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self._last_progress = 0.0
        self._active = False  # an exchange is in progress
        self._write_ready: asyncio.Future[None] | None = None
        self._reset()

    def _reset(self) -> None:
        self.status = 0
        self.headers: Headers = []
        self.head: asyncio.Future[None] = self._loop.create_future()
        self.complete = False
        self.keep_alive = False
        self.error: BaseException | None = None
        self._head_only = False
        self._until_close = False
        self._chunks: collections.deque[bytes] = collections.deque()
        self._buffered = 0
        self._reading_paused = False
        self._waiter: asyncio.Future[None] | None = None
        #: ``exchange``'s ``sent``, waiting for the request's last bytes to go out.
        self._after_flush: Callable[[], None] | None = None

    # -- asyncio callbacks ------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        # Writing pauses as soon as bytes are left unsent, and resumes once all are out: a
        # large request's ``sent`` waits for that (see ``exchange``).
        transport.set_write_buffer_limits(high=0, low=0)  # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        if not self._active:
            self._fail(UpstreamError("unexpected bytes from an idle connection"))
            return
        self._last_progress = self._loop.time()
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(UpstreamError("the upstream switched protocols"))
        except httptools.HttpParserError as exc:
            self._fail(UpstreamError(f"invalid HTTP from the upstream: {exc}"))

    def eof_received(self) -> bool | None:
        return None  # close the transport; connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._disarm()
        self._pool.forget(self)
        if self._active and not self.complete:
            if self._until_close and exc is None and self.head.done():
                self._message_done()  # a body delimited by the end of the connection
            else:
                self._fail(exc or UpstreamError("the upstream closed the connection"))
        if self._write_ready is not None and not self._write_ready.done():
            self._write_ready.set_exception(exc or UpstreamError("connection closed"))
        self._after_flush = None

    def pause_writing(self) -> None:
        self._write_ready = self._loop.create_future()

    def resume_writing(self) -> None:
        if self._write_ready is not None and not self._write_ready.done():
            self._write_ready.set_result(None)
        self._write_ready = None
        after, self._after_flush = self._after_flush, None
        if after is not None:
            after()

    # -- httptools callbacks ----------------------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        self.status = self._parser.get_status_code()
        if 100 <= self.status < 200:  # an interim answer: the real one follows
            self.headers = []
            return
        # Asked now: llhttp forgets it once the message is complete.
        self.keep_alive = self._parser.should_keep_alive()
        if not self._head_only and self.status not in (204, 304):
            names = [k for k, _ in self.headers]
            self._until_close = b"content-length" not in names and \
                b"transfer-encoding" not in names
        if not self.head.done():
            self.head.set_result(None)
        if self._head_only:
            # llhttp cannot be told that a HEAD answer has no body: end it here, and do not
            # reuse the connection (the parser would wait for the announced length).
            self._message_done()
            self._until_close = True

    def on_body(self, body: bytes) -> None:
        self._chunks.append(body)
        self._buffered += len(body)
        if self._buffered > _HIGH_WATER and not self._reading_paused and self.transport:
            self._reading_paused = True
            self.transport.pause_reading()
        self._wake()

    def on_message_complete(self) -> None:
        if self.status >= 200 and not self.complete:
            self._message_done()

    # -- the exchange -----------------------------------------------------------------------

    def _message_done(self) -> None:
        self.complete = True
        self._disarm()
        self._wake()

    def _fail(self, exc: BaseException) -> None:
        if self.error is None and not self.complete:
            self.error = exc
        if not self.head.done():
            self.head.set_exception(exc)
            self.head.exception()  # retrieved: nobody may be waiting any more
        self._wake()
        if self.transport is not None:
            self.transport.abort()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _arm(self) -> None:
        self._last_progress = self._loop.time()
        if self._timer is None:
            self._timer = self._loop.call_at(self._last_progress + self._pool.read_timeout_s,
                                             self._check_timeout)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _check_timeout(self) -> None:
        self._timer = None
        if not self._active or self.complete:
            return
        deadline = self._last_progress + self._pool.read_timeout_s
        if self._reading_paused:
            self._arm()  # the client is slow, not the upstream
        elif self._loop.time() < deadline:
            self._timer = self._loop.call_at(deadline, self._check_timeout)
        else:
            self._fail(TimeoutError(
                f"no data from the upstream for {self._pool.read_timeout_s}s"))

    async def exchange(self, head: bytes, body: bytes | AsyncIterable[bytes], chunked: bool,
                       head_only: bool, sent: Callable[[], None] | None = None) -> None:
        """Send a request; return once the response's status and headers are in (``sent``
        called in between, once the request is written)."""
        assert self.transport is not None
        self._reset()
        self._active = True
        self._head_only = head_only
        self._arm()
        if isinstance(body, bytes):
            self.transport.write(head + body)
        else:
            self.transport.write(head)
            async for chunk in body:
                if not chunk:
                    continue
                self.transport.write(b"%x\r\n%b\r\n" % (len(chunk), chunk) if chunked
                                     else chunk)
                self._last_progress = self._loop.time()
                if self._write_ready is not None:
                    await self._write_ready
            if chunked:
                self.transport.write(b"0\r\n\r\n")
        if sent is not None:
            if self._write_ready is None:
                sent()
            else:
                # Part of the request is still to go out, as the upstream reads it: what
                # ``sent`` does would hold that up, so it waits until all is out.
                self._after_flush = sent
        await self.head

    async def body(self) -> AsyncIterator[bytes]:
        while True:
            if self._chunks:
                chunk = self._chunks.popleft() if len(self._chunks) == 1 else \
                    b"".join(self._take_all())
                self._buffered -= len(chunk)
                if self._reading_paused and self._buffered < _LOW_WATER and self.transport:
                    self._reading_paused = False
                    self.transport.resume_reading()
                yield chunk
                continue
            if self.error is not None:
                raise self.error
            if self.complete:
                return
            self._waiter = self._loop.create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None

    def readable(self) -> bool:
        """Whether an idle connection has something to read: the server's close (not yet
        seen by the event loop) or bytes it should not have sent. Either way: not reusable."""
        sock = self.transport.get_extra_info("socket") if self.transport else None
        if sock is None:
            return False
        try:
            ready, _, _ = select.select([sock.fileno()], [], [], 0)
        except (OSError, ValueError):
            return True
        return bool(ready)

    def body_ready(self) -> bool:
        return bool(self._chunks) or self.complete or self.error is not None

    def _take_all(self) -> list[bytes]:
        chunks = list(self._chunks)
        self._chunks.clear()
        return chunks

    async def release(self) -> None:
        """The exchange is over: back to the pool if it ended cleanly, else closed."""
        self._active = False
        self._disarm()
        reusable = (self.complete and self.error is None and not self._until_close
                    and not self.closed and self.keep_alive
                    and not self._chunks)
        if reusable:
            self._pool.put(self)
        elif self.transport is not None and not self.closed:
            self.transport.abort()  # an unfinished response: stop the upstream's work


class _Pool:
    """Keep-alive connections to one origin."""

    def __init__(self, host: str, port: int, ssl_context: ssl.SSLContext | None,
                 connect_timeout_s: float, read_timeout_s: float) -> None:
        self.loop = asyncio.get_running_loop()
        self.host, self.port, self.ssl = host, port, ssl_context
        self.connect_timeout_s = connect_timeout_s
        self.read_timeout_s = read_timeout_s
        self._idle: list[_Connection] = []

    async def connection(self) -> _Connection:
        while self._idle:
            connection = self._idle.pop()
            if connection.closed:
                continue
            if (self.loop.time() - connection.idle_since > KEEPALIVE_EXPIRY_S
                    or connection.readable()):
                assert connection.transport is not None
                connection.transport.abort()
                continue
            return connection
        _, connection = await asyncio.wait_for(self.loop.create_connection(
            lambda: _Connection(self), self.host, self.port, ssl=self.ssl,
            server_hostname=self.host if self.ssl else None), self.connect_timeout_s)
        return connection

    def put(self, connection: _Connection) -> None:
        connection.idle_since = self.loop.time()
        self._idle.append(connection)
        if len(self._idle) > MAX_IDLE_PER_ORIGIN:
            oldest = self._idle.pop(0)
            assert oldest.transport is not None
            oldest.transport.close()

    def forget(self, connection: _Connection) -> None:
        if connection in self._idle:
            self._idle.remove(connection)

    def close(self) -> None:
        for connection in self._idle:
            assert connection.transport is not None
            connection.transport.close()
        self._idle.clear()


class _Origin:
    """What is known of an origin once: where to connect, its Host header, its route."""

    def __init__(self, scheme: str, netloc: str) -> None:
        url = urllib.parse.urlsplit(f"{scheme}://{netloc}")
        if scheme not in ("http", "https") or not url.hostname:
            raise UpstreamError(f"unsupported upstream URL {scheme}://{netloc}")
        self.scheme = scheme
        self.host = url.hostname
        default = 443 if scheme == "https" else 80
        self.port = url.port or default
        self.host_header = netloc.encode("idna" if not netloc.isascii() else "ascii")
        self.through = _env_proxy(scheme, self.host)


# -- the client -----------------------------------------------------------------------------

class Upstream:
    """Connection pools by upstream origin; httpcore for origins behind an HTTP proxy."""

    def __init__(self, *, connect_timeout_s: float, read_timeout_s: float) -> None:
        self._connect_timeout_s = connect_timeout_s
        self._read_timeout_s = read_timeout_s
        self._ssl: ssl.SSLContext | None = None
        self._origins: dict[str, _Origin] = {}
        self._pools: dict[str, _Pool] = {}
        self._proxied: dict[str, httpcore.AsyncHTTPProxy] = {}

    def _origin(self, origin: str) -> _Origin:
        found = self._origins.get(origin)
        if found is None:
            scheme, _, netloc = origin.partition("://")
            found = self._origins[origin] = _Origin(scheme, netloc)
        return found

    def _ssl_context(self) -> ssl.SSLContext:
        if self._ssl is None:
            self._ssl = ssl.create_default_context()
        return self._ssl

    async def send(self, method: str, url: str, headers: Headers,
                   body: bytes | AsyncIterable[bytes],
                   sent: Callable[[], None] | None = None) -> Response:
        """Send a request; return once the response's head is in. ``sent`` is called once
        the request is on its way (work that can wait for the upstream's answer)."""
        scheme, _, rest = url.partition("://")
        netloc, slash, target = rest.partition("/")
        origin = self._origin(f"{scheme}://{netloc}")
        out = [(k, v) for k, v in headers if k not in (b"host", b"content-length",
                                                       b"transfer-encoding")]
        out.insert(0, (b"host", origin.host_header))
        chunked = False
        if isinstance(body, bytes):
            if body or method not in ("GET", "HEAD", "DELETE", "OPTIONS"):
                out.append((b"content-length", b"%d" % len(body)))
        else:
            length = next((v for k, v in headers if k == b"content-length"), None)
            chunked = length is None
            out.append((b"content-length", length) if length is not None
                       else (b"transfer-encoding", b"chunked"))
        if origin.through:
            response = await self._send_proxied(origin, method, url, out, body)
            if sent is not None:
                sent()  # (httpcore sends the whole request before reading the answer)
            return response
        path = (slash + target) or "/"
        lines = b"".join([k + b": " + v + b"\r\n" for k, v in out])
        if lines.count(b"\n") != len(out) or lines.count(b"\r") != len(out):
            raise UpstreamError("a header value holds a line break")
        head = b"%s %s HTTP/1.1\r\n%s\r\n" % (method.encode("ascii"),
                                              path.encode("latin-1"), lines)
        pool = self._pools.get(origin.scheme + "://" + netloc)
        if pool is None:
            pool = self._pools[origin.scheme + "://" + netloc] = _Pool(
                origin.host, origin.port,
                self._ssl_context() if origin.scheme == "https" else None,
                self._connect_timeout_s, self._read_timeout_s)
        connection = await pool.connection()
        try:
            await connection.exchange(head, body, chunked, method == "HEAD", sent)
        except BaseException:
            await connection.release()
            raise
        return Response(connection.status, connection.headers, connection.body(),
                        connection.release, connection.body_ready)

    async def _send_proxied(self, origin: _Origin, method: str, url: str, headers: Headers,
                            body: bytes | AsyncIterable[bytes]) -> Response:
        assert origin.through is not None
        pool = self._proxied.get(origin.through)
        if pool is None:
            pool = self._proxied[origin.through] = httpcore.AsyncHTTPProxy(
                proxy_url=origin.through, ssl_context=self._ssl_context(),
                max_connections=512, max_keepalive_connections=64,
                keepalive_expiry=KEEPALIVE_EXPIRY_S, http1=True, http2=False, retries=0)
        timeouts = {"connect": self._connect_timeout_s, "read": self._read_timeout_s,
                    "write": self._read_timeout_s, "pool": self._read_timeout_s}
        request = httpcore.Request(method, url, headers=headers, content=body,
                                   extensions={"timeout": timeouts})
        raw = await pool.handle_async_request(request)
        stream: Any = raw.stream

        async def chunks() -> AsyncIterator[bytes]:
            async for chunk in stream:
                yield chunk

        return Response(raw.status, [(k.lower(), v) for k, v in raw.headers], chunks(),
                        raw.aclose)

    async def aclose(self) -> None:
        for pool in self._pools.values():
            pool.close()
        for proxied in self._proxied.values():
            await proxied.aclose()


def _env_proxy(scheme: str, host: str) -> str | None:
    """The proxy the environment names for this origin (``NO_PROXY`` respected)."""
    if urllib.request.proxy_bypass(host):
        return None
    found = urllib.request.getproxies().get(scheme)
    if not found:
        return None
    return found if "://" in found else "http://" + urllib.parse.quote(found, safe=":/@")
