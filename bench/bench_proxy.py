"""Latency the metering proxy adds, over calling the same fake upstream directly, in one run.

    .venv/bin/python bench/bench_proxy.py                       # meterline vs direct
    .venv/bin/python bench/bench_proxy.py --litellm /work/litellm-venv   # and LiteLLM's proxy
    .venv/bin/python bench/bench_proxy.py --litellm http://127.0.0.1:4000  # a running LiteLLM

Every target serves the same OpenAI Chat Completions request from the same fake upstream
(``tests/proxy/fake_upstream.py``, its own process): ``direct`` calls it, ``meterline`` goes
through `meterline agent` (no budget: nothing to reserve), ``meterline+budget`` through a
second agent with an enforced budget (reserve and settle on every call), ``litellm``
through LiteLLM's proxy when given. Requests to the targets are interleaved, so the machine's
noise falls on all of them alike.

Scenarios: one client, plain responses (total time); one client, streams (total time and
time to first byte); ten concurrent streams (time to first byte). "Added" is a target's
percentile minus direct's. Targets (issue 4): concurrency 1 p50 <= 1 ms and p99 <= 3 ms
added; 10 concurrent streams, added time-to-first-byte p99 <= 5 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
BODY = {"model": "gpt-4o", "messages": [{"role": "user", "content": "Say hello " * 20}]}
STREAM_FAKE = "gap=0.001,words=10"
LITELLM_KEY = "sk-meterline-bench-litellm-master"


class Service:
    def __init__(self, name: str, args: list[str], env: dict[str, str],
                 ready: Callable[[str], str | None] | None, stream: str = "stdout") -> None:
        """``ready`` finds the service's base URL in a line of its output; None: the caller
        waits for the service itself."""
        self.name = name
        self.proc = subprocess.Popen(args, env={**os.environ, **env}, text=True, cwd=ROOT,
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


def start_meterline(origin: str, home: Path, config: str = "") -> Service:
    home.mkdir(parents=True, exist_ok=True)
    (home / "config.toml").write_text(config)

    def ready(line: str) -> str | None:
        if "proxy on http://127.0.0.1:" in line:
            port = line.split("127.0.0.1:")[1].split()[0]
            return f"http://127.0.0.1:{port}/openai/v1"
        return None

    return Service("meterline", [sys.executable, "-m", "agent", "agent", "--proxy-port", "0"],
                   {"METERLINE_HOME": str(home), "METERLINE_UPSTREAM_OPENAI": origin,
                    "PYTHONPATH": str(ROOT)}, ready, stream="stderr")


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


def one_client(targets: dict[str, str], n: int, stream: bool
               ) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Total time and time to first byte per target, requests interleaved round-robin."""
    clients = {name: httpx.Client(timeout=30, headers={"authorization": f"Bearer {LITELLM_KEY}"})
               for name in targets}
    totals: dict[str, list[float]] = {name: [] for name in targets}
    firsts: dict[str, list[float]] = {name: [] for name in targets}
    body = {**BODY, "stream": stream}
    headers = {"x-fake": STREAM_FAKE} if stream else {}
    order = list(targets)
    for i in range(n):
        for name in order if i % 2 else reversed(order):
            start = time.perf_counter()
            with clients[name].stream("POST", targets[name] + "/chat/completions", json=body,
                                      headers=headers) as response:
                first = None
                for _ in response.iter_raw():
                    if first is None:
                        first = time.perf_counter()
                if response.status_code != 200:
                    raise SystemExit(f"{name}: HTTP {response.status_code}")
            end = time.perf_counter()
            totals[name].append((end - start) * 1000)
            firsts[name].append(((first or end) - start) * 1000)
    for client in clients.values():
        client.close()
    return totals, firsts


async def concurrent_streams(targets: dict[str, str], workers: int, rounds: int
                             ) -> dict[str, list[float]]:
    """Time to first byte of ``workers`` concurrent streams, target after target."""
    firsts: dict[str, list[float]] = {name: [] for name in targets}
    limits = httpx.Limits(max_connections=workers * 2, max_keepalive_connections=workers * 2)
    clients = {name: httpx.AsyncClient(timeout=30, limits=limits, headers={
        "authorization": f"Bearer {LITELLM_KEY}", "x-fake": STREAM_FAKE}) for name in targets}
    body = {**BODY, "stream": True}

    async def one(name: str) -> None:
        start = time.perf_counter()
        async with clients[name].stream("POST", targets[name] + "/chat/completions",
                                        json=body) as response:
            first = None
            async for _ in response.aiter_raw():
                if first is None:
                    first = time.perf_counter()
        firsts[name].append(((first or time.perf_counter()) - start) * 1000)

    order = list(targets)
    for i in range(rounds):
        for name in order if i % 2 else reversed(order):
            await asyncio.gather(*(one(name) for _ in range(workers)))
    for client in clients.values():
        await client.aclose()
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--litellm", help="LiteLLM's virtualenv (started here) or the URL of a "
                        "running LiteLLM proxy")
    parser.add_argument("-n", type=int, default=1000, help="plain requests per target")
    parser.add_argument("--streams", type=int, default=400, help="streams per target (c=1)")
    parser.add_argument("--rounds", type=int, default=40,
                        help="rounds of 10 concurrent streams per target")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="meterline-bench-"))
    services: list[Service] = []
    try:
        fake = start_fake()
        services.append(fake)
        plain = start_meterline(fake.base, work / "plain")
        services.append(plain)
        budgeted = start_meterline(fake.base, work / "budget", "[[budgets]]\nname = 'bench'\n"
                                   "period = 'day'\nlimit_usd = 1000000\nmode = 'enforce'\n")
        services.append(budgeted)
        targets = {"direct": fake.base + "/v1", "meterline": plain.base,
                   "meterline+budget": budgeted.base}
        if args.litellm:
            service, base = start_litellm(args.litellm, fake.base, work)
            if service:
                services.append(service)
            targets["litellm"] = base
        print(f"targets: {', '.join(targets)}; python {sys.version.split()[0]}, "
              f"{os.cpu_count()} cpus")
        one_client(targets, 50, stream=False)  # warm up every pool and code path
        one_client(targets, 20, stream=True)
        cpu_before = cpu_seconds(plain)
        totals, _ = one_client(targets, args.n, stream=False)
        report("concurrency 1, plain JSON: total time", totals, (1.0, 3.0))
        if cpu_before is not None:
            used = (cpu_seconds(plain) or 0) - cpu_before
            print(f"  meterline process CPU time per plain request: {used / args.n * 1000:.2f} ms")
        totals, firsts = one_client(targets, args.streams, stream=True)
        report("concurrency 1, streams: total time", totals, (1.0, 3.0))
        report("concurrency 1, streams: time to first byte", firsts, (1.0, 3.0))
        ttft = asyncio.run(concurrent_streams(targets, 10, args.rounds))
        report("10 concurrent streams: time to first byte", ttft, (None, 5.0))  # type: ignore[arg-type]
    finally:
        for service in reversed(services):
            service.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
