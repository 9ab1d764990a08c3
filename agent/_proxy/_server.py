"""Running the proxy: a socket bound on 127.0.0.1 (only), uvicorn serving the ASGI app on the
caller's event loop, and a graceful stop.

The socket is created here, not by uvicorn, for two reasons: a port already in use becomes
one clear error before anything starts, and the socket must be made with
``proto=IPPROTO_TCP`` or asyncio never sets TCP_NODELAY on accepted connections (NOTES.md:
every small response would then wait ~40 ms on Nagle and delayed ACKs).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import gc
import logging
import os
import socket
from collections.abc import Iterator

import uvicorn

from agent._config import Settings
from agent._errors import MeterlineError
from agent._proxy._app import AbortResponse, Proxy, ProxyOptions
from agent._store import Store

HOST = "127.0.0.1"
log = logging.getLogger("meterline.proxy")


class ProxyError(MeterlineError):
    """The proxy cannot start (its port is taken, an upstream URL is unusable)."""


def upstreams(settings: Settings) -> dict[str, str]:
    """Upstream origins: config.toml, overridden by ``METERLINE_UPSTREAM_<PROVIDER>``."""
    found = {
        "anthropic": os.environ.get("METERLINE_UPSTREAM_ANTHROPIC")
        or settings.proxy.anthropic_upstream,
        "openai": os.environ.get("METERLINE_UPSTREAM_OPENAI") or settings.proxy.openai_upstream,
    }
    for provider, origin in found.items():
        if not origin.startswith(("http://", "https://")):
            raise ProxyError(f"the {provider} upstream {origin!r} is not an http(s) URL "
                             f"(set [proxy] {provider}_upstream or METERLINE_UPSTREAM_"
                             f"{provider.upper()})")
    return found


def options_from(settings: Settings) -> ProxyOptions:
    return ProxyOptions(upstreams=upstreams(settings), prices=settings.prices,
                        disconnect_grace_s=settings.proxy.disconnect_grace_s,
                        read_timeout_s=settings.proxy.read_timeout_s)


def bind(port: int) -> socket.socket:
    """A listening TCP socket on 127.0.0.1:``port`` (0: any free port)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((HOST, port))
        sock.listen(1024)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise ProxyError(f"port {port} on {HOST} is already in use (another meterline "
                             "agent?); choose one with --proxy-port or [proxy] port") from None
        raise ProxyError(f"cannot listen on {HOST}:{port}: {exc.strerror}") from None
    sock.setblocking(False)
    return sock


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: the caller owns the loop and its signals."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class _QuietAborts(logging.Filter):
    """An AbortResponse is how a cut response is passed on, not an application error."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], AbortResponse))


async def serve(store: Store, settings: Settings, sock: socket.socket, stop: asyncio.Event,
                *, shutdown_grace_s: float | None = None) -> None:
    """Serve on ``sock`` until ``stop`` is set; then let requests in flight finish (up to the
    grace period, after which they are cancelled and recorded as cut) and close."""
    proxy = Proxy(store, options_from(settings))
    # The price table takes a few hundred milliseconds to load: not on the first request.
    warming = asyncio.create_task(asyncio.to_thread(_warm_pricing))
    # Then everything loaded so far (modules, the price tables: ~60k objects) lives as long
    # as the process: kept out of the cyclic collector's sight, a full collection takes
    # microseconds instead of ~25 ms, a pause that otherwise lands on some request now and
    # then (the 99th percentile).
    warming.add_done_callback(lambda _: gc.freeze())
    grace = settings.proxy.shutdown_grace_s if shutdown_grace_s is None else shutdown_grace_s
    # httptools (uvicorn[standard] brings it; "auto" would silently fall back to h11, which
    # costs several hundred microseconds a request); no X-Forwarded-* rewriting: the proxy
    # is reached on loopback by the tools themselves, never through another proxy.
    config = uvicorn.Config(
        proxy, lifespan="off", access_log=False, log_config=None, server_header=False,
        date_header=False, ws="none", http="httptools", proxy_headers=False,
        timeout_keep_alive=30, timeout_graceful_shutdown=max(1, round(grace)),
    )
    logging.getLogger("uvicorn.error").addFilter(_QuietAborts())
    server = _Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]), name="meterline-proxy")
    stopping = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait({task, stopping}, return_when=asyncio.FIRST_COMPLETED)
        server.should_exit = True
        await task
    finally:
        stopping.cancel()
        warming.cancel()
        await proxy.aclose()


def _warm_pricing() -> None:
    from agent._events import Call
    from agent._pricing import price_call

    for provider, model in (("anthropic", "claude-sonnet-4-5"), ("openai", "gpt-4o")):
        price_call(Call(tool="-", provider=provider, model=model, input_tokens=1))
