"""``meterline agent``: the proxy (and later sync) as a headless process, until SIGTERM or
SIGINT; then requests in flight finish (or are cut and recorded) and the store is closed."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys

from agent._config import Settings
from agent._proxy._server import HOST, bind, serve
from agent._store import Store


def configure_logging(level: int = logging.INFO) -> None:
    """One line per request on stderr (paths and figures only: never bodies, never keys)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s meterline %(message)s",
                                           datefmt="%H:%M:%S"))
    for name in ("meterline", "uvicorn.error"):
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.setLevel(level if name == "meterline" else logging.WARNING)
        logger.propagate = False


def install_stop_signals(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)


async def run_agent(settings: Settings, port: int) -> None:
    sock = bind(port)  # before anything else: a taken port is the likeliest failure
    stop = asyncio.Event()
    install_stop_signals(stop)
    async with await Store.open() as store:
        bound = sock.getsockname()[1]
        print(f"meterline agent: proxy on http://{HOST}:{bound} (anthropic: "
              f"http://{HOST}:{bound}/anthropic, openai: http://{HOST}:{bound}/openai/v1); "
              f"store {store.path}", file=sys.stderr, flush=True)
        await serve(store, settings, sock, stop)
    print("meterline agent: stopped", file=sys.stderr, flush=True)


def run(settings: Settings, port: int) -> None:
    """Run on uvloop where it is installed (uvicorn[standard] brings it): faster sockets."""
    configure_logging()
    try:
        import uvloop
    except ImportError:
        asyncio.run(run_agent(settings, port))
        return
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(run_agent(settings, port))
