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


async def run_up(settings: Settings, *, interval: float = 1.0) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    async with await Store.open() as store:
        print(f"meterline up: store {store.path} (Ctrl-C to stop)", file=sys.stderr, flush=True)
        await _live_status(store, settings, stop, interval)
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
