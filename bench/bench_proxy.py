"""Latency the metering proxy adds, over calling the same fake upstream directly, in one run.

    .venv/bin/python bench/bench_proxy.py                       # meterline vs direct
    .venv/bin/python bench/bench_proxy.py --litellm /work/litellm-venv   # and LiteLLM's proxy
    .venv/bin/python bench/bench_proxy.py --litellm http://127.0.0.1:4000  # a running LiteLLM

Every target serves the same OpenAI Chat Completions request from the same fake upstream
(``tests/proxy/fake_upstream.py``, its own process): ``direct`` calls it, ``meterline`` goes
through `meterline agent` (no budget: nothing to reserve), ``meterline+budget`` through a
second agent with an enforced budget (reserve and settle on every call), ``relay``
through a process that only copies bytes between client and upstream (what an extra process
hop itself costs here: the floor under any proxy), ``litellm`` through LiteLLM's proxy when
given. Requests to the targets are interleaved, so the machine's
noise falls on all of them alike, and all are sent by the same lean client (asyncio and
httptools, request bytes prepared once, times taken in the callback that sees the bytes):
a general-purpose client such as httpx costs several hundred microseconds a request in the
measuring process, which blurs sub-millisecond differences and, on a small machine, takes
CPU from the processes being measured. Streams ask for their usage themselves
(``stream_options.include_usage``), so that the upstream sends every target the same events.

Scenarios: one client, plain responses (total time), with small requests and with ~270 KB
ones to the Anthropic Messages API (the size of a coding agent's context: what reading and
forwarding it costs, which a small request does not show; not LiteLLM); one client,
streams (total time and time to first byte); ten concurrent streams (time to first byte).
"Added" is a target's percentile minus direct's. Targets (issue 4): concurrency 1 p50 <= 1
ms and p99 <= 3 ms added; 10 concurrent streams, added time-to-first-byte p99 <= 5 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import httptools

ROOT = Path(__file__).resolve().parents[1]
BODY = {"model": "gpt-4o", "messages": [{"role": "user", "content": "Say hello " * 20}]}
#: A request the size of a coding agent's (Claude Code sends 100-500 KB of context to the
#: Messages API): ~270 KB.
LARGE_BODY = {"model": "claude-sonnet-4-5", "max_tokens": 1024, "messages": [
    {"role": "user" if turn % 2 == 0 else "assistant",
     "content": f"# turn {turn}\n" + "def handler(request):\n    return render(request)\n" * 64}
    for turn in range(80)]}
#: The same conversation to OpenAI's Chat Completions (what Aider, Continue and Cline send):
#: a body the proxy reads whole before it goes (whether to ask for usage depends on it).
LARGE_CHAT_BODY = {"model": "gpt-4o", "messages": LARGE_BODY["messages"]}
STREAM_FAKE = "gap=0.001,words=10,steady"
LITELLM_KEY = "sk-meterline-bench-litellm-master"
#: The enforced budget of the ``+budget`` targets: never reached, reserved and settled always.
BUDGET = "[[budgets]]\nname = 'bench'\nperiod = 'day'\nlimit_usd = 1000000\nmode = 'enforce'\n"


class Service:
    def __init__(self, name: str, args: list[str], env: dict[str, str],
                 ready: Callable[[str], str | None] | None, stream: str = "stdout",
                 cwd: Path = ROOT) -> None:
        """``ready`` finds the service's base URL in a line of its output; None: the caller
        waits for the service itself. ``cwd``: where it runs (``python -m`` imports from
        there first)."""
        self.name = name
        self.proc = subprocess.Popen(args, env={**os.environ, **env}, text=True, cwd=cwd,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        pipe = self.proc.stdout if stream == "stdout" else self.proc.stderr
        assert pipe is not None
        self.base = ""
        for line in pipe if ready else ():
            found = ready(line)  # type: ignore[misc]
            if found:
                self.base = found
                break
        if ready and not self.base:
            raise SystemExit(f"{name} did not start (exit {self.proc.poll()})")
        # Keep draining both pipes so that a chatty log never blocks the service.
        import threading

        for other in (self.proc.stdout, self.proc.stderr):
            threading.Thread(target=lambda p=other: [None for _ in p], daemon=True).start()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def start_fake() -> Service:
    return Service("fake upstream", [sys.executable, "tests/proxy/fake_upstream.py"], {},
                   lambda line: line.strip() if line.startswith("http://") else None)


def start_meterline(origin: str, home: Path, config: str = "", root: Path = ROOT) -> Service:
    home.mkdir(parents=True, exist_ok=True)
    (home / "config.toml").write_text(config)

    def ready(line: str) -> str | None:
        if "proxy on http://127.0.0.1:" in line:
            port = line.split("127.0.0.1:")[1].split()[0]
            return f"http://127.0.0.1:{port}/openai/v1"
        return None

    return Service("meterline", [sys.executable, "-m", "agent", "agent", "--proxy-port", "0"],
                   {"METERLINE_HOME": str(home), "METERLINE_UPSTREAM_OPENAI": origin,
                    "METERLINE_UPSTREAM_ANTHROPIC": origin,
                    "PYTHONPATH": str(root)}, ready, stream="stderr", cwd=root)


class _RelayUp(asyncio.Protocol):
    def __init__(self, down: asyncio.Transport) -> None:
        self.down = down

    def data_received(self, data: bytes) -> None:
        self.down.write(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.down.close()


class _RelayDown(asyncio.Protocol):
    """One client connection of the byte relay, forwarded to the upstream as it comes."""

    upstream: tuple[str, int] = ("127.0.0.1", 0)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: asyncio.Transport = transport  # type: ignore[assignment]
        self.up: asyncio.Transport | None = None
        self.early: list[bytes] = []
        asyncio.get_running_loop().create_task(self._connect())

    async def _connect(self) -> None:
        self.up, _ = await asyncio.get_running_loop().create_connection(
            lambda: _RelayUp(self.transport), *self.upstream)
        for data in self.early:
            self.up.write(data)

    def data_received(self, data: bytes) -> None:
        if self.up is None:
            self.early.append(data)
        else:
            self.up.write(data)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.up is not None:
            self.up.close()


def serve_relay(upstream_port: int) -> None:
    """``--serve-relay``: a process that only copies bytes between the client and the fake
    upstream (no HTTP parsing, no metering): what any extra process hop costs on this
    machine, the floor under any proxy."""
    import socket

    async def serve() -> None:
        _RelayDown.upstream = ("127.0.0.1", upstream_port)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.bind(("127.0.0.1", 0))
        sock.listen(128)
        server = await asyncio.get_running_loop().create_server(_RelayDown, sock=sock)
        print(f"http://127.0.0.1:{sock.getsockname()[1]}", flush=True)
        async with server:
            await server.serve_forever()

    run(serve())


def start_relay(origin: str) -> Service:
    port = urllib.parse.urlsplit(origin).port
    return Service("relay", [sys.executable, __file__, "--serve-relay", str(port)], {},
                   lambda line: line.strip() if line.startswith("http://") else None)


def start_litellm(where: str, origin: str, workdir: Path) -> tuple[Service | None, str]:
    if where.startswith("http"):
        return None, where.rstrip("/") + "/v1"
    binary = Path(where) / "bin" / "litellm"
    if not binary.exists():
        found = shutil.which("litellm", path=str(Path(where)))
        if not found:
            raise SystemExit(f"no litellm executable under {where}")
        binary = Path(found)
    config = workdir / "litellm.yaml"
    config.write_text("model_list:\n  - model_name: gpt-4o\n    litellm_params:\n"
                      f"      model: openai/gpt-4o\n      api_base: {origin}/v1\n"
                      "      api_key: sk-fake\n")
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    service = Service("litellm", [str(binary), "--config", str(config), "--port", str(port),
                                  "--host", "127.0.0.1", "--num_workers", "1"],
                      {"LITELLM_MASTER_KEY": LITELLM_KEY, "LITELLM_LOCAL_MODEL_COST_MAP": "True",
                       "LITELLM_LOG": "ERROR"}, None)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while True:
        try:
            urllib.request.urlopen(base + "/health/liveliness", timeout=2).read()
            break
        except OSError:
            if service.proc.poll() is not None or time.monotonic() > deadline:
                service.stop()
                raise SystemExit(f"litellm did not start (exit {service.proc.poll()})") from None
            time.sleep(0.5)
    return service, base + "/v1"


# -- measurement ------------------------------------------------------------------------------

def cpu_seconds(service: Service) -> float | None:
    """User + system CPU time of a service's process, where /proc tells it."""
    try:
        fields = Path(f"/proc/{service.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


# -- the load generator -----------------------------------------------------------------------

class _Connection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection of the bench's own client: requests pre-encoded,
    responses parsed by httptools (the C parser uvicorn uses) as the bytes arrive, times
    taken in the callback that sees them. A lean client, identical for every target, so that
    the load generator's own overhead (httpx costs several hundred µs a request and competes
    for the same two cores) neither blurs nor inflates what is measured."""

    def __init__(self) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.first: float | None = None
        self.done: asyncio.Future[float] | None = None
        self.status = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.parser.feed_data(data)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.done is not None and not self.done.done():
            self.done.set_exception(ConnectionError("connection lost"))

    def on_headers_complete(self) -> None:
        self.status = self.parser.get_status_code()

    def on_body(self, body: bytes) -> None:
        if self.first is None:
            self.first = time.perf_counter()

    def on_message_complete(self) -> None:
        if self.done is not None and not self.done.done():
            self.done.set_result(time.perf_counter())

    async def request(self, raw: bytes) -> tuple[float, float]:
        """Send one request; return (total, time to first body byte) in milliseconds."""
        assert self.transport is not None
        self.first = None
        self.done = asyncio.get_running_loop().create_future()
        start = time.perf_counter()
        self.transport.write(raw)
        end = await self.done
        if self.status != 200:
            raise SystemExit(f"HTTP {self.status}")
        return (end - start) * 1000, ((self.first or end) - start) * 1000


class Target:
    """A base URL and its pre-encoded requests."""

    def __init__(self, base: str) -> None:
        url = urllib.parse.urlsplit(base)
        self.host, self.port = url.hostname or "127.0.0.1", url.port or 80
        path = url.path.rstrip("/") + "/chat/completions"
        self.requests = {kind: _encode(self.host, self.port, path, kind)
                         for kind in ("plain", "stream", "large-chat")}
        # The same origin's Anthropic Messages route (meterline's under /anthropic).
        messages = url.path.rstrip("/").removesuffix("/openai/v1").removesuffix("/v1")
        messages += "/anthropic/v1/messages" if url.path.endswith("/openai/v1") else \
            "/v1/messages"
        self.requests["large"] = _encode(self.host, self.port, messages, "large")

    async def connect(self) -> _Connection:
        loop = asyncio.get_running_loop()
        _, connection = await loop.create_connection(_Connection, self.host, self.port)
        return connection


def _encode(host: str, port: int, path: str, kind: str) -> bytes:
    # A stream asks for its usage itself (as the SDKs do when asked to report it): the same
    # events from the upstream whichever the target. Otherwise the proxy would ask for it,
    # and the fake upstream paces that extra event like the others, a gap later (+1.1 ms
    # measured): the fake's pacing, not the proxy's cost.
    stream = kind == "stream"
    payload = {**BODY, "stream": True, "stream_options": {"include_usage": True}} if stream \
        else LARGE_BODY if kind == "large" else LARGE_CHAT_BODY if kind == "large-chat" \
        else BODY
    body = json.dumps(payload).encode()
    head = [f"POST {path} HTTP/1.1", f"host: {host}:{port}",
            "content-type: application/json", f"content-length: {len(body)}",
            f"authorization: Bearer {LITELLM_KEY}", "user-agent: meterline-bench"]
    if kind == "large":
        head += ["x-api-key: sk-bench", "anthropic-version: 2023-06-01"]
    if stream:
        head.append(f"x-fake: {STREAM_FAKE}")
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


def _orders(names: list[str], rounds: int) -> list[list[str]]:
    """The targets' order in each round: shuffled (seeded), so that every target is as often
    first after being last (two requests in a row, the second on warm caches) as any other.
    Alternating a fixed order forwards and backwards gave that to the first and last targets
    only: ``base+budget``, started last, came out up to 0.1 ms ahead of the same code."""
    rng = random.Random(0x6D6C)
    return [rng.sample(names, len(names)) for _ in range(rounds)]


async def one_client(targets: dict[str, Target], n: int, kind: str
                     ) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Total time and time to first byte per target, requests interleaved round-robin."""
    connections = {name: await target.connect() for name, target in targets.items()}
    totals: dict[str, list[float]] = {name: [] for name in targets}
    firsts: dict[str, list[float]] = {name: [] for name in targets}
    rounds = _orders(list(targets), n)
    for i in range(n):
        for name in rounds[i]:
            total, first = await connections[name].request(targets[name].requests[kind])
            totals[name].append(total)
            firsts[name].append(first)
    for connection in connections.values():
        assert connection.transport is not None
        connection.transport.close()
    return totals, firsts


async def concurrent_streams(targets: dict[str, Target], workers: int, rounds: int
                             ) -> dict[str, list[float]]:
    """Time to first byte of ``workers`` concurrent streams, target after target (each
    stream on its own kept-alive connection)."""
    firsts: dict[str, list[float]] = {name: [] for name in targets}
    pools = {name: [await target.connect() for _ in range(workers)]
             for name, target in targets.items()}
    orders = _orders(list(targets), rounds)
    for i in range(rounds):
        for name in orders[i]:
            raw = targets[name].requests["stream"]
            results = await asyncio.gather(*(c.request(raw) for c in pools[name]))
            firsts[name].extend(first for _, first in results)
    for pool in pools.values():
        for connection in pool:
            assert connection.transport is not None
            connection.transport.close()
    return firsts


def report(title: str, samples: dict[str, list[float]], limits: tuple[float, float] | None
           ) -> dict[str, tuple[float, float]]:
    base50, base99 = percentile(samples["direct"], 50), percentile(samples["direct"], 99)
    print(f"\n{title}  (n={len(samples['direct'])} per target; ms)")
    print(f"  {'target':<18}{'p50':>9}{'p99':>9}{'added p50':>12}{'added p99':>12}")
    added: dict[str, tuple[float, float]] = {}
    for name, values in samples.items():
        p50, p99 = percentile(values, 50), percentile(values, 99)
        line = f"  {name:<18}{p50:9.3f}{p99:9.3f}"
        if name != "direct":
            added[name] = (p50 - base50, p99 - base99)
            line += f"{p50 - base50:12.3f}{p99 - base99:12.3f}"
            if limits and name.startswith("meterline"):
                ok = (limits[0] is None or p50 - base50 <= limits[0]) and p99 - base99 <= limits[1]
                line += "   target met" if ok else "   TARGET MISSED"
        print(line)
    if "litellm" in added:
        ours = max(added["meterline"][0], 0.001)
        print(f"  litellm adds {added['litellm'][0] / ours:.1f}x meterline's p50 overhead "
              f"({added['litellm'][0]:.3f} vs {added['meterline'][0]:.3f} ms); p99: "
              f"{added['litellm'][1]:.3f} vs {added['meterline'][1]:.3f} ms")
    return added


async def measure(targets: dict[str, Target], args: argparse.Namespace, plain: Service
                  ) -> None:
    await one_client(targets, 50, "plain")  # warm up every pool and code path
    await one_client(targets, 20, "stream")
    await one_client({k: v for k, v in targets.items() if k != "litellm"}, 10, "large")
    await one_client(targets, 10, "large-chat")
    cpu_before = cpu_seconds(plain)
    totals, _ = await one_client(targets, args.n, "plain")
    report("concurrency 1, plain JSON: total time", totals, (1.0, 3.0))
    if cpu_before is not None:
        used = (cpu_seconds(plain) or 0) - cpu_before
        print(f"  meterline process CPU time per plain request: {used / args.n * 1000:.2f} ms")
    if args.large:
        # (Not LiteLLM: its config here routes the OpenAI API only.)
        size = len(json.dumps(LARGE_BODY)) // 1000
        large = {name: target for name, target in targets.items() if name != "litellm"}
        totals, _ = await one_client(large, args.large, "large")
        report(f"concurrency 1, Anthropic Messages, a {size} KB request (a coding agent's "
               "context): total time", totals, (1.0, 3.0))
        totals, _ = await one_client(targets, args.large, "large-chat")
        report(f"concurrency 1, OpenAI Chat Completions, the same {size} KB conversation "
               "(read whole before it goes): total time", totals, (1.0, 3.0))
    totals, firsts = await one_client(targets, args.streams, "stream")
    report("concurrency 1, streams: total time", totals, (1.0, 3.0))
    report("concurrency 1, streams: time to first byte", firsts, (1.0, 3.0))
    ttft = await concurrent_streams(targets, 10, args.rounds)
    report("10 concurrent streams: time to first byte", ttft, (None, 5.0))  # type: ignore[arg-type]


def run(coroutine: Coroutine[Any, Any, None]) -> None:
    """The client's loop: uvloop where installed (as the proxy's), else asyncio's."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(coroutine)
        return
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(coroutine)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--litellm", help="LiteLLM's virtualenv (started here) or the URL of a "
                        "running LiteLLM proxy")
    parser.add_argument("--compare", type=Path, help="another checkout of meterline (e.g. "
                        "`git archive main | tar -x -C DIR`): its proxy measured side by side, "
                        "with and without the budget, as `base` and `base+budget`")
    parser.add_argument("--serve-relay", type=int, metavar="PORT", help=argparse.SUPPRESS)
    parser.add_argument("-n", type=int, default=1000, help="plain requests per target")
    parser.add_argument("--large", type=int, default=300,
                        help="plain ~270 KB Anthropic Messages and OpenAI Chat requests "
                        "per target, each (0: none)")
    parser.add_argument("--streams", type=int, default=400, help="streams per target (c=1)")
    parser.add_argument("--rounds", type=int, default=40,
                        help="rounds of 10 concurrent streams per target")
    args = parser.parse_args()
    if args.serve_relay:
        serve_relay(args.serve_relay)
        return

    work = Path(tempfile.mkdtemp(prefix="meterline-bench-"))
    services: list[Service] = []
    try:
        fake = start_fake()
        services.append(fake)
        plain = start_meterline(fake.base, work / "plain")
        services.append(plain)
        budgeted = start_meterline(fake.base, work / "budget", BUDGET)
        services.append(budgeted)
        bases = {"direct": fake.base + "/v1", "meterline": plain.base,
                 "meterline+budget": budgeted.base}
        relay = start_relay(fake.base)
        services.append(relay)
        bases["relay"] = relay.base + "/v1"
        if args.compare:
            for name, config in (("base", ""), ("base+budget", BUDGET)):
                other = start_meterline(fake.base, work / name, config, args.compare.resolve())
                services.append(other)
                bases[name] = other.base
        if args.litellm:
            service, base = start_litellm(args.litellm, fake.base, work)
            if service:
                services.append(service)
            bases["litellm"] = base
        print(f"targets: {', '.join(bases)}; python {sys.version.split()[0]}, "
              f"{os.cpu_count()} cpus; load average {os.getloadavg()[0]:.2f} at start")
        run(measure({name: Target(base) for name, base in bases.items()}, args,
                    plain))
        print(f"\nload average {os.getloadavg()[0]:.2f} at the end")
    finally:
        for service in reversed(services):
            service.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
