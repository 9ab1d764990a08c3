"""The proxy's upstream client against the alternatives, in one run: time and CPU per request.

    .venv/bin/python bench/bench_upstream_client.py        # aiohttp measured when installed

Each client sends the same small Chat Completions request (plain, and streamed) to the same
fake upstream (``tests/proxy/fake_upstream.py``, its own process) over a kept-alive
connection, one request at a time, clients interleaved request by request so that the
machine's noise falls on all alike. Reported per client: the median and 99th percentile of
the time from sending to the whole body, and the CPU time this process spent per request
(the client's own cost: what it would add to every proxied request).

Clients: ``meterline`` (``agent._proxy._upstream.Upstream``, the one the proxy uses),
``httpcore`` (the transport under httpx, which the proxy used before), ``aiohttp``
(``ClientSession``, raw body, no decompression), when installed (not a dependency).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpcore

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_proxy import BODY, STREAM_FAKE, percentile, run, start_fake  # noqa: E402

from agent._proxy._upstream import Upstream  # noqa: E402

Send = Callable[[bool], Awaitable[int]]


def request_parts(stream: bool) -> tuple[list[tuple[bytes, bytes]], bytes]:
    body = json.dumps({**BODY, "stream": stream}).encode()
    headers = [(b"content-type", b"application/json"), (b"authorization", b"Bearer sk"),
               (b"accept-encoding", b"identity")]
    if stream:
        headers.append((b"x-fake", STREAM_FAKE.encode()))
    return headers, body


async def meterline_client(origin: str) -> tuple[Send, Callable[[], Awaitable[None]]]:
    client = Upstream(connect_timeout_s=10, read_timeout_s=60)
    url = origin + "/v1/chat/completions"
    parts = {stream: request_parts(stream) for stream in (False, True)}

    async def send(stream: bool) -> int:
        headers, body = parts[stream]
        response = await client.send("POST", url, list(headers), body)
        size = 0
        async for chunk in response.aiter_raw():
            size += len(chunk)
        await response.aclose()
        return size

    return send, client.aclose


async def httpcore_client(origin: str) -> tuple[Send, Callable[[], Awaitable[None]]]:
    pool = httpcore.AsyncConnectionPool(max_connections=512, max_keepalive_connections=64,
                                        keepalive_expiry=60.0, retries=0)
    url = origin + "/v1/chat/completions"
    host = origin.split("://")[1].encode()
    parts = {stream: request_parts(stream) for stream in (False, True)}
    timeouts = {"connect": 10.0, "read": 60.0, "write": 60.0, "pool": 60.0}

    async def send(stream: bool) -> int:
        headers, body = parts[stream]
        request = httpcore.Request("POST", url, headers=[
            (b"host", host), *headers, (b"content-length", str(len(body)).encode())],
            content=body, extensions={"timeout": timeouts})
        response = await pool.handle_async_request(request)
        size = 0
        async for chunk in response.stream:  # type: ignore[union-attr]
            size += len(chunk)
        await response.aclose()
        return size

    return send, pool.aclose


async def aiohttp_client(origin: str) -> tuple[Send, Callable[[], Awaitable[None]]] | None:
    try:
        import aiohttp
    except ImportError:
        return None
    session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=512, keepalive_timeout=60),
        auto_decompress=False, skip_auto_headers=("User-Agent", "Accept-Encoding"),
        timeout=aiohttp.ClientTimeout(sock_connect=10, sock_read=60))
    url = origin + "/v1/chat/completions"
    parts = {stream: request_parts(stream) for stream in (False, True)}

    async def send(stream: bool) -> int:
        headers, body = parts[stream]
        async with session.post(url, data=body, headers={
                k.decode(): v.decode() for k, v in headers}) as response:
            size = 0
            async for chunk in response.content.iter_any():
                size += len(chunk)
        return size

    return send, session.close


async def measure(origin: str, n: int, streams: int) -> None:
    clients: dict[str, tuple[Send, Callable[[], Awaitable[None]]]] = {
        "meterline": await meterline_client(origin),
        "httpcore": await httpcore_client(origin),
    }
    found = await aiohttp_client(origin)
    if found is not None:
        clients["aiohttp"] = found
    for stream, count in ((False, n), (True, streams)):
        for send, _ in clients.values():  # warm up: connections, code paths
            for _ in range(20):
                await send(stream)
        times: dict[str, list[float]] = {name: [] for name in clients}
        cpu: dict[str, float] = dict.fromkeys(clients, 0.0)
        order, shuffle = list(clients), random.Random(0x6D6C)
        for _ in range(count):
            # Shuffled rounds: alternating one order forwards and backwards would give the
            # first and last clients two turns in a row (the second warm) and no one else.
            for name in shuffle.sample(order, len(order)):
                send = clients[name][0]
                cpu_start, start = time.process_time(), time.perf_counter()
                await send(stream)
                times[name].append((time.perf_counter() - start) * 1000)
                cpu[name] += time.process_time() - cpu_start
        title = "streams (12 words, events 1 ms apart)" if stream else "plain JSON"
        print(f"\n{title}: n={count} per client; ms")
        print(f"  {'client':<12}{'p50':>9}{'p99':>9}{'CPU/request':>14}")
        for name, values in times.items():
            print(f"  {name:<12}{percentile(values, 50):9.3f}{percentile(values, 99):9.3f}"
                  f"{cpu[name] / count * 1000:14.3f}")
    for _, close in clients.values():
        await close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, default=2000, help="plain requests per client")
    parser.add_argument("--streams", type=int, default=300, help="streams per client")
    args = parser.parse_args()
    fake = start_fake()
    try:
        print(f"python {sys.version.split()[0]}, {os.cpu_count()} cpus; load average "
              f"{os.getloadavg()[0]:.2f} at start")
        run(measure(fake.base, args.n, args.streams))
        print(f"\nload average {os.getloadavg()[0]:.2f} at the end")
    finally:
        fake.stop()


if __name__ == "__main__":
    main()
