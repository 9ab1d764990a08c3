"""``meterline up``: the long-running job on a developer's machine.

It opens the store and keeps a live status line. The metering proxy, the dashboard and sync
join it as services that share the one store and the one event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys

from agent._config import Settings
from agent._status import status_line
from agent._store import Store


async def run_up(settings: Settings, *, interval: float = 1.0,
                 proxy_port: int | None = None) -> None:
    """Keep the status line live; with ``proxy_port``, serve the metering proxy beside it."""
    sock = None
    if proxy_port is not None:
        from agent._proxy import bind

        sock = bind(proxy_port)  # a taken port fails here, before anything started
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    async with await Store.open() as store:
        print(f"meterline up: store {store.path} (Ctrl-C to stop)", file=sys.stderr, flush=True)
        services = [asyncio.create_task(_live_status(store, settings, stop, interval))]
        if sock is not None:
            from agent._proxy import HOST, serve
            from agent._proxy._run import configure_logging

            configure_logging()
            print(f"meterline up: proxy on http://{HOST}:{sock.getsockname()[1]}",
                  file=sys.stderr, flush=True)
            services.append(asyncio.create_task(serve(store, settings, sock, stop)))
        try:
            await asyncio.gather(*services)
        finally:
            stop.set()
            for task in services:
                task.cancel()
            await asyncio.gather(*services, return_exceptions=True)
    print("meterline up: stopped", file=sys.stderr, flush=True)


async def _live_status(store: Store, settings: Settings, stop: asyncio.Event,
                       interval: float) -> None:
    """Redraw the status line in place on a terminal; print it when it changes otherwise."""
    tty = sys.stdout.isatty()
    last = None
    while not stop.is_set():
        line = status_line(await store.status())
        if tty:
            sys.stdout.write("\r\x1b[2K" + line)
            sys.stdout.flush()
        elif line != last:
            print(line, flush=True)
        last = line
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval)
    if tty:
        sys.stdout.write("\n")
