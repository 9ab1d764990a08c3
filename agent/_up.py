"""``meterline up`` and ``meterline agent``: the long-running job on a developer's machine.

One process, one event loop, one open store, and these services on it:

- the metering proxy on 127.0.0.1 (unless turned off);
- the importers of tool logs (Claude Code, Codex CLI), every ``[import] interval_s``;
- sync to the team server, when ``[sync] server_url`` is set and a token is stored
  (``meterline login``);
- for ``up`` on a terminal, the dashboard (from the ``tui`` package, found through the
  ``meterline.ui`` entry point so that this core never imports it); otherwise a live
  status line (``up``) or nothing (``agent``).

SIGINT and SIGTERM stop everything gracefully: requests in flight finish, queued writes
are committed, the store is closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import sys
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any, Literal

from agent._config import Settings
from agent._status import status_line
from agent._store import Store

log = logging.getLogger("meterline")

UI = Literal["dashboard", "line", "none"]
SERVER_TOKEN = "server-token"


@dataclass
class Activity:
    """What the background services last did, for the dashboard's extra status line."""

    proxy_url: str | None = None
    imported: int = 0
    import_error: str | None = None
    sync_note: str | None = None
    notes: list[str] = field(default_factory=list)

    def describe(self) -> str | None:
        parts = []
        if self.proxy_url:
            parts.append(f"proxy {self.proxy_url}")
        if self.imported:
            parts.append(f"{self.imported} calls imported from tool logs")
        if self.import_error:
            parts.append(f"import: {self.import_error}")
        if self.sync_note:
            parts.append(self.sync_note)
        return " · ".join(parts) or None


Dashboard = Callable[..., Coroutine[Any, Any, None]]


def dashboard_runner() -> Dashboard | None:
    """The dashboard's entry point, if the ``tui`` part is installed and loads."""
    for entry in entry_points(group="meterline.ui"):
        if entry.name == "dashboard":
            try:
                loaded: Dashboard = entry.load()
            except ImportError as exc:
                log.warning("the dashboard is not available (%s); showing a status line", exc)
                return None
            return loaded
    return None


async def run_services(settings: Settings, *, ui: UI, proxy_sock: socket.socket | None,
                       interval: float = 1.0, imports: bool = True, sync: bool = True,
                       name: str = "up") -> None:
    """Run until SIGINT/SIGTERM (or, with the dashboard, until the user quits it).

    ``name`` is the command's, for what is said on stderr ("meterline up: ...").
    """
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    activity = Activity()
    async with await Store.open() as store:
        say = _stderr if ui != "dashboard" else activity.notes.append
        say(f"meterline {name}: store {store.path}")
        background: list[asyncio.Task[Any]] = []
        if proxy_sock is not None:
            from agent._proxy import HOST, serve

            activity.proxy_url = f"http://{HOST}:{proxy_sock.getsockname()[1]}"
            say(f"meterline {name}: proxy on {activity.proxy_url} (anthropic: "
                f"{activity.proxy_url}/anthropic, openai: {activity.proxy_url}/openai/v1)")
            background.append(asyncio.create_task(serve(store, settings, proxy_sock, stop),
                                                  name="proxy"))
        if imports and settings.imports.tools:
            background.append(asyncio.create_task(
                _import_forever(store, settings, stop, activity), name="import"))
        if sync:
            token = _server_token() if settings.sync.server_url else None
            if settings.sync.server_url and token:
                from agent._sync import sync_forever

                activity.sync_note = f"sync to {settings.sync.server_url}"
                background.append(asyncio.create_task(sync_forever(
                    store, settings.sync.server_url, token, settings.sync.interval_s, stop),
                    name="sync"))
            elif settings.sync.server_url:
                say(f"meterline {name}: [sync] server_url is set but no token is stored; "
                    "run `meterline login` to sync")
        try:
            await _run_ui(ui, store, stop, interval, activity, background)
        finally:
            stop.set()
            await _finish(background)
    _stderr(f"meterline {name}: stopped")


async def _run_ui(ui: UI, store: Store, stop: asyncio.Event, interval: float,
                  activity: Activity, background: list[asyncio.Task[Any]]) -> None:
    """Run the front (dashboard, status line or nothing) until a stop, a quit, or until a
    background service fails (then its error is raised here)."""
    runner = dashboard_runner() if ui == "dashboard" else None
    front: asyncio.Task[Any]
    if runner is not None:
        front = asyncio.create_task(runner(store, extra_status=activity.describe))
    elif ui == "none":
        front = asyncio.create_task(stop.wait())
    else:
        front = asyncio.create_task(_live_status(store, stop, interval))
    stopping = asyncio.create_task(stop.wait())
    try:
        while True:
            done, _ = await asyncio.wait({front, stopping, *background},
                                         return_when=asyncio.FIRST_COMPLETED)
            failed = [task for task in done if task in background and task.exception()]
            if failed:
                raise failed[0].exception()  # type: ignore[misc]
            if front in done or stopping in done:
                return
            background = [task for task in background if task not in done]
    finally:
        for task in (front, stopping):
            task.cancel()
        await asyncio.gather(front, stopping, return_exceptions=True)


async def _finish(tasks: list[asyncio.Task[Any]]) -> None:
    """Let the services see the stop and wind down (the proxy finishes requests in flight);
    cancel what is still running after that."""
    if not tasks:
        return
    _done, pending = await asyncio.wait(tasks, timeout=30)
    for task in pending:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def _import_forever(store: Store, settings: Settings, stop: asyncio.Event,
                          activity: Activity) -> None:
    from agent._importers import import_logs

    while not stop.is_set():
        try:
            summary = await import_logs(store, settings.imports.tools, settings.prices)
        except (OSError, ValueError) as exc:
            activity.import_error = str(exc)
            log.warning("import of tool logs failed: %s", exc)
        else:
            activity.import_error = None
            activity.imported += sum(counts["inserted"] for counts in summary.values())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), settings.imports.interval_s)


async def _live_status(store: Store, stop: asyncio.Event, interval: float) -> None:
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


def _server_token() -> str | None:
    from agent._credentials import get_secret
    from agent._errors import CredentialError

    try:
        return get_secret(SERVER_TOKEN)
    except CredentialError as exc:
        log.warning("cannot read the team-server token: %s", exc)
        return None


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def run(coroutine: Awaitable[None]) -> None:
    """Run on uvloop where it is installed (uvicorn[standard] brings it): faster sockets."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(coroutine)  # type: ignore[arg-type]
        return
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(coroutine)  # type: ignore[arg-type]
