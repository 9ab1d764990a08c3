"""The proxy in this process, to look at its garbage: an exchange that ends is freed then,
by reference counting, not kept (with its request body) until the cyclic collector runs.

A cancelled task per request once made each exchange part of a reference cycle (its
CancelledError, tracebacks and frames): ~190 objects per request for the collector, whose
runs then paused the proxy 1-3 ms at ten concurrent streams.
"""

from __future__ import annotations

import asyncio
import gc
from pathlib import Path

import httpx
import pytest

from agent import Store
from agent._config import load
from agent._proxy import bind, serve

from .conftest import TEST_CONFIG
from .fake_upstream import FakeUpstream

MESSAGES = [{"role": "user", "content": "Say hello"}]


async def test_an_exchange_is_freed_as_it_ends_not_by_the_collector(
        meterline_home: Path, upstream: tuple[FakeUpstream, str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("METERLINE_UPSTREAM_ANTHROPIC", upstream[1])
    monkeypatch.setenv("METERLINE_UPSTREAM_OPENAI", upstream[1])
    (meterline_home / "config.toml").write_text(
        TEST_CONFIG + "[[budgets]]\nname = 'd'\nperiod = 'day'\nlimit_usd = 100\n")
    sock = bind(0)
    base = f"http://127.0.0.1:{sock.getsockname()[1]}"
    stop = asyncio.Event()
    async with await Store.open() as store:
        server = asyncio.create_task(serve(store, load(), sock, stop))
        try:
            async with httpx.AsyncClient(base_url=base, timeout=10,
                                         headers={"x-api-key": "sk",
                                                  "authorization": "Bearer sk"}) as client:
                async def exchanges() -> None:
                    plain = await client.post("/openai/v1/chat/completions", json={
                        "model": "gpt-4o", "messages": MESSAGES})
                    assert plain.status_code == 200
                    async with client.stream("POST", "/anthropic/v1/messages", json={
                            "model": "claude-sonnet-4-5", "max_tokens": 10, "stream": True,
                            "messages": MESSAGES}) as streamed:
                        assert b"message_stop" in b"".join([c async for c in
                                                            streamed.aiter_raw()])
                    async with client.stream("POST", "/openai/v1/chat/completions", json={
                            "model": "gpt-4o", "stream": True,
                            "messages": MESSAGES}) as streamed:
                        assert b"[DONE]" in b"".join([c async for c in streamed.aiter_raw()])

                await exchanges()  # warm: connections, caches, the budget lease
                await asyncio.sleep(0.3)
                gc.collect()
                gc.set_debug(gc.DEBUG_SAVEALL)  # what the collector frees, kept to look at
                try:
                    for _ in range(5):
                        await exchanges()
                    await asyncio.sleep(0.3)  # the calls' log lines, the roll-up
                    gc.collect()
                    found = [type(o).__qualname__ for o in gc.garbage
                             if type(o).__module__.startswith("agent.")]
                finally:
                    gc.set_debug(0)
                    gc.garbage.clear()
        finally:
            stop.set()
            await server
            gc.unfreeze()  # (serve froze this process's objects, as it does its own)
    assert found == []
