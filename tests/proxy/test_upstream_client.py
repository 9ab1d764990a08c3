"""The proxy's own HTTP/1.1 upstream client, against a raw server on loopback that answers
with scripted bytes: every way a body may be delimited, keep-alive, a stale pooled
connection, timeouts, HEAD, a broken upstream."""

from __future__ import annotations

import asyncio
import shutil
import socket
import ssl
import subprocess
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from agent._proxy._upstream import UPSTREAM_ERRORS, Upstream

#: What the scripted server does with one request: the bytes received → the reply (None:
#: close the connection without answering).
Script = Callable[[bytes], bytes | None]


class RawServer:
    """Reads one request head (and a Content-Length body), writes what the script says."""

    def __init__(self, script: Script, *, close_after: bool = False) -> None:
        self.script = script
        self.close_after = close_after
        self.connections = 0
        self.requests: list[bytes] = []
        self.writers: list[asyncio.StreamWriter] = []

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.writers.append(writer)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                body = await reader.readexactly(length) if length else b""
                if b"transfer-encoding: chunked" in head.lower():
                    body = await reader.readuntil(b"0\r\n\r\n")
                self.requests.append(head + body)
                reply = self.script(head + body)
                if reply is None:
                    break
                writer.write(reply)
                await writer.drain()
                if self.close_after:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        writer.close()


@asynccontextmanager
async def serve(script: Script, **options: bool) -> AsyncIterator[tuple[RawServer, str]]:
    raw = RawServer(script, **options)
    server = await asyncio.start_server(raw.handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield raw, f"http://127.0.0.1:{port}"
    finally:
        for writer in raw.writers:
            writer.close()
        server.close()


async def fetch(client: Upstream, url: str, method: str = "POST",
                body: bytes = b"{}") -> tuple[int, dict[bytes, bytes], bytes]:
    response = await client.send(method, url, [(b"content-type", b"application/json")], body)
    try:
        data = b"".join([chunk async for chunk in response.aiter_raw()])
    finally:
        await response.aclose()
    return response.status_code, dict(response.headers), data


def client(read_timeout_s: float = 5.0) -> Upstream:
    return Upstream(connect_timeout_s=2.0, read_timeout_s=read_timeout_s)


def reply(body: bytes, *extra: bytes) -> bytes:
    return b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n%s\r\n%s" % (
        len(body), b"".join(h + b"\r\n" for h in extra), body)


async def test_content_length_bodies_reuse_one_kept_alive_connection() -> None:
    async with serve(lambda _: reply(b'{"ok":1}', b"X-Thing: yes")) as (raw, url):
        upstream = client()
        for _ in range(5):
            status, headers, body = await fetch(upstream, url + "/v1/x?q=1")
            assert (status, body, headers[b"x-thing"]) == (200, b'{"ok":1}', b"yes")
        await upstream.aclose()
    assert raw.connections == 1
    first = raw.requests[0]
    assert first.startswith(b"POST /v1/x?q=1 HTTP/1.1\r\nhost: 127.0.0.1:")
    assert b"content-length: 2\r\n" in first
    assert first.endswith(b"\r\n\r\n{}")


async def test_sent_is_called_once_the_request_is_written_before_the_answer() -> None:
    seen: list[str] = []

    def script(request: bytes) -> bytes:
        seen.append("request in")
        return reply(b"{}")

    async with serve(script) as (raw, url):
        upstream = client()
        response = await upstream.send("POST", url, [], b'{"a": 1}',
                                       sent=lambda: seen.append("sent"))
        await response.aclose()
        await upstream.aclose()
    # Called after the write and before the head was awaited: the scripted server cannot
    # have read the request yet (it runs on this same loop).
    assert seen == ["sent", "request in"]
    assert raw.requests[0].endswith(b'{"a": 1}')


async def test_chunked_bodies_are_decoded_and_the_connection_kept() -> None:
    chunked = (b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"
               b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")
    async with serve(lambda _: chunked) as (raw, url):
        upstream = client()
        assert (await fetch(upstream, url))[2] == b"hello world"
        assert (await fetch(upstream, url))[2] == b"hello world"
        await upstream.aclose()
    assert raw.connections == 1


async def test_a_body_delimited_by_the_end_of_the_connection() -> None:
    async with serve(lambda _: b"HTTP/1.1 200 OK\r\n\r\nuntil the end",
                     close_after=True) as (raw, url):
        upstream = client()
        assert (await fetch(upstream, url))[2] == b"until the end"
        assert (await fetch(upstream, url))[2] == b"until the end"  # a new connection
        await upstream.aclose()
    assert raw.connections == 2


async def test_connection_close_is_not_reused() -> None:
    async with serve(lambda _: reply(b"x", b"Connection: close"), close_after=True) as (raw, url):
        upstream = client()
        await fetch(upstream, url)
        await fetch(upstream, url)
        await upstream.aclose()
    assert raw.connections == 2


@pytest.mark.parametrize("noticed", [True, False])
async def test_a_kept_alive_connection_the_server_closed_is_not_reused(noticed: bool) -> None:
    """Closed while idle, whether or not the event loop has seen it yet: the connection is
    dropped before the request goes out, which goes on a new one."""
    async with serve(lambda _: reply(b"fine")) as (raw, url):
        upstream = client()
        await fetch(upstream, url)
        for writer in raw.writers:  # the server drops its idle connection
            if noticed:
                writer.close()
            else:  # at once, with no turn of the loop for the client to see it
                writer.get_extra_info("socket").shutdown(socket.SHUT_RDWR)
        if noticed:
            await asyncio.sleep(0.05)
        assert (await fetch(upstream, url))[2] == b"fine"
        await upstream.aclose()
    assert raw.connections == 2
    assert len(raw.requests) == 2


async def test_a_request_is_never_sent_twice() -> None:
    """A kept-alive connection that breaks once the request went out (the provider may have
    started on it) is an error for the caller, not a second request."""
    answers = iter([reply(b"first"), None])
    async with serve(lambda _: next(answers)) as (raw, url):
        upstream = client()
        await fetch(upstream, url)
        with pytest.raises(UPSTREAM_ERRORS):
            await fetch(upstream, url)
        await upstream.aclose()
    assert len(raw.requests) == 2
    assert raw.connections == 1


async def test_an_upstream_that_closes_without_answering_is_an_upstream_error() -> None:
    async with serve(lambda _: None) as (_, url):
        upstream = client()
        with pytest.raises(UPSTREAM_ERRORS):
            await fetch(upstream, url)
        await upstream.aclose()


async def test_a_body_cut_short_raises_while_reading() -> None:
    async with serve(lambda _: b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nonly this",
                     close_after=True) as (_, url):
        upstream = client()
        response = await upstream.send("POST", url, [], b"{}")
        seen: list[bytes] = []

        async def read() -> None:
            async for chunk in response.aiter_raw():
                seen.append(chunk)

        with pytest.raises(UPSTREAM_ERRORS):
            await read()
        await response.aclose()
        assert b"".join(seen) == b"only this"
        await upstream.aclose()


async def test_silence_longer_than_the_read_timeout_fails_the_response() -> None:
    async with serve(lambda _: b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc") as (_, url):
        upstream = client(read_timeout_s=0.3)
        response = await upstream.send("POST", url, [], b"{}")
        started = asyncio.get_running_loop().time()

        async def read() -> None:
            async for _ in response.aiter_raw():
                pass

        with pytest.raises(TimeoutError):
            await read()
        assert 0.2 < asyncio.get_running_loop().time() - started < 2
        await response.aclose()
        await upstream.aclose()


async def test_head_answers_have_no_body_even_with_a_length() -> None:
    async with serve(lambda _: b"HTTP/1.1 200 OK\r\ncontent-length: 1234\r\n\r\n") as (_, url):
        upstream = client()
        status, headers, body = await asyncio.wait_for(fetch(upstream, url, "HEAD", b""), 2)
        assert (status, headers[b"content-length"], body) == (200, b"1234", b"")
        await upstream.aclose()


async def test_a_streamed_request_body_goes_chunked() -> None:
    async def parts() -> AsyncIterator[bytes]:
        yield b"abc"
        yield b"defg"

    async with serve(lambda _: reply(b"ok")) as (raw, url):
        upstream = client()
        response = await upstream.send("PUT", url, [], parts())
        assert b"".join([c async for c in response.aiter_raw()]) == b"ok"
        await response.aclose()
        await upstream.aclose()
    assert raw.requests[0].endswith(b"transfer-encoding: chunked\r\n\r\n"
                                    b"3\r\nabc\r\n4\r\ndefg\r\n0\r\n\r\n")


async def test_an_unreachable_upstream_is_an_upstream_error() -> None:
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    upstream = client()
    with pytest.raises(UPSTREAM_ERRORS):
        await fetch(upstream, f"http://127.0.0.1:{port}")
    await upstream.aclose()


async def test_a_header_value_with_a_line_break_is_refused() -> None:
    upstream = client()
    with pytest.raises(UPSTREAM_ERRORS):
        await upstream.send("POST", "http://127.0.0.1:9/x", [(b"x-a", b"1\r\nx-b: 2")], b"")
    await upstream.aclose()


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[Path, Path]:
    """A self-signed certificate for localhost, and its key."""
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command to make a certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    return cert, key


async def test_https_origins_are_spoken_to_over_verified_tls(
        certificate: tuple[Path, Path]) -> None:
    """An https upstream: TLS with the certificate verified against the trust store and the
    host name; keep-alive as over plain TCP."""
    cert, key = certificate
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(cert, key)
    raw = RawServer(lambda _: reply(b'{"secure":true}'))
    server = await asyncio.start_server(raw.handle, "127.0.0.1", 0, ssl=server_tls)
    port = server.sockets[0].getsockname()[1]
    try:
        untrusting = client()
        with pytest.raises(UPSTREAM_ERRORS):  # a certificate nobody vouches for
            await fetch(untrusting, f"https://localhost:{port}/v1/messages")
        await untrusting.aclose()

        trusting = client()
        trusting._ssl = ssl.create_default_context(cafile=str(cert))
        for _ in range(3):
            status, _, body = await fetch(trusting, f"https://localhost:{port}/v1/messages")
            assert (status, body) == (200, b'{"secure":true}')
        await trusting.aclose()
    finally:
        for writer in raw.writers:
            writer.close()
        server.close()
    assert raw.requests[-1].startswith(b"POST /v1/messages HTTP/1.1\r\nhost: localhost:")
    assert raw.connections == 1  # kept alive (the refused handshake never got this far)


async def test_an_origin_behind_the_environments_http_proxy_goes_through_it(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """``HTTP_PROXY`` names a proxy for the origin: the request goes to it, in absolute form
    (through httpcore, which also speaks CONNECT for https origins)."""
    async with serve(lambda _: reply(b"via the proxy")) as (raw, proxy_url):
        for name in ("no_proxy", "NO_PROXY", "all_proxy", "ALL_PROXY"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("http_proxy", proxy_url)
        monkeypatch.setenv("HTTP_PROXY", proxy_url)
        upstream = client()
        status, _, body = await fetch(upstream, "http://api.example.invalid/v1/messages?x=1")
        seen: list[int] = []

        async def streamed() -> AsyncIterator[bytes]:
            yield b'{"a": '
            await asyncio.sleep(0.05)
            yield b"1}"

        response = await upstream.send(
            "POST", "http://api.example.invalid/v1/x", [(b"content-length", b"8")],
            streamed(), sent=lambda: seen.append(len(raw.requests)))
        await response.aclose()
        await upstream.aclose()
    assert (status, body) == (200, b"via the proxy")
    assert raw.requests[0].startswith(
        b"POST http://api.example.invalid/v1/messages?x=1 HTTP/1.1\r\n")
    # ``sent`` comes once the whole request went (the proxy had read it all by then).
    assert seen == [2]
    assert raw.requests[1].endswith(b'\r\n\r\n{"a": 1}')
