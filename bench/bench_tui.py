"""Dashboard benchmarks: time to first paint, and the cost of one refresh over 1,000,000 events.

    .venv/bin/python bench/bench_tui.py                 # builds a 1M-call store in a temp dir
    .venv/bin/python bench/bench_tui.py --keep /tmp/m1  # builds it once there, reuses it after

What it measures, each with a baseline from the same run (the machine is shared and noisy,
so compare side by side, not with yesterday's figures):

1. Refresh, data only: ``tui._data.load`` (status object, plot series, breakdowns, funnel,
   recent calls, sync state) on the store's read connection, for the day, week and month
   views, in-process. Baseline: the same on a store of 1,000 calls. Target <= 50 ms.
2. Refresh in the app: a headless ``DashboardApp`` (``run_test`` at 120x36) on the store;
   per view, the app's own timer of a reload (read + update of every widget), and the time
   from pressing ``r`` until the screen has repainted, which includes Pilot's own waits
   (measured alone by pressing a key bound to nothing).
3. The live loop's poll (``PRAGMA data_version`` + config stamp): what it costs every 300 ms.
4. Time to first paint: ``meterline tui`` started as a subprocess on a pseudo-terminal
   (120x36), from spawn until the first frame is on the terminal ("meterline" in the title
   bar), and until the first frame with the store's data (a tool name from the store).
   Baseline: a bare Textual app with one label, started the same way. Target <= 1 s.

The 1M store is filled through the public API, ``Store.add_calls`` /
``Store.add_suggestion_events`` in batches of 10,000 (one transaction each, through the real
schema, indexes and rollup triggers): 1,000,000 calls over the last 60 days, plus 200,000
suggestion events.
"""

from __future__ import annotations

import argparse
import asyncio
import fcntl
import math
import os
import select
import statistics
import struct
import subprocess
import sys
import tempfile
import termios
import time
from collections.abc import Awaitable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from agent import Call, Store, SuggestionEvent

DAY = timedelta(days=1)
TOOLS = ("claude-code", "copilot", "aider", "continue", "codex", "meterline-lsp")
MODELS = (("anthropic", "claude-sonnet-4-5"), ("anthropic", "claude-haiku-4-5"),
          ("anthropic", "claude-opus-4-1"), ("openai", "gpt-4.1"), ("openai", "gpt-4.1-mini"),
          ("openai", "o3"), ("openai", "o4-mini"), ("ollama", "qwen2.5-coder"))
BATCH = 10_000
#: A tool name that only the data can put on screen: its appearance means "data painted".
MARK_TOOL = "bench-marker"


def pct(samples: list[float], q: float) -> float:
    """Nearest-rank percentile (with few samples, p99 is the slowest run)."""
    ordered = sorted(samples)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def line(label: str, samples: list[float], unit: str = "ms", scale: float = 1000,
         baseline: list[float] | None = None) -> str:
    median = statistics.median(samples) * scale
    text = (f"  {label:<44} median {median:8.2f} {unit}   p99 {pct(samples, 0.99) * scale:8.2f}"
            f" {unit}   (n={len(samples)})")
    if baseline:
        text += f"   x{statistics.median(samples) / statistics.median(baseline):.2f} of baseline"
    return text


# -- building stores ---------------------------------------------------------------------------

async def build(path: Path, calls: int, events: int, now: datetime) -> float:
    """Fill a new store at ``path``; returns the seconds it took."""
    started = time.perf_counter()
    span = 60 * DAY if calls > 10_000 else DAY / 2
    async with await Store.open(path) as store:
        for first in range(0, calls, BATCH):
            batch = []
            for k in range(first, min(calls, first + BATCH)):
                provider, model = MODELS[k * 7 % len(MODELS)]
                batch.append(Call(
                    ts=now - span + span * (k / calls), tool=TOOLS[k * 5 % len(TOOLS)],
                    provider=provider, model=model, input_tokens=500 + k % 4000,
                    output_tokens=100 + k % 900, cache_read_tokens=(k % 5) * 1000,
                    cost_micro_usd=200 + k % 20_000, latency_ms=300 + k % 5000))
            await store.add_calls(batch)
        for first in range(0, events, BATCH):
            batch_events = []
            for k in range(first, min(events, first + BATCH)):
                kind = ("offered", "offered", "accepted", "retained", "committed")[k % 5]
                batch_events.append(SuggestionEvent(
                    ts=now - span + span * (k / events), suggestion_id=f"s{k // 5}",
                    type=kind, chars=200, lines=6,  # type: ignore[arg-type]
                    checkpoint_s=900 if kind == "retained" else None))
            await store.add_suggestion_events(batch_events)
        # The newest call: its tool is the marker the first-paint test waits for.
        await store.add_calls([Call(ts=now - timedelta(seconds=1), tool=MARK_TOOL,
                                    provider="anthropic", model="claude-sonnet-4-5",
                                    input_tokens=1, output_tokens=1, cost_micro_usd=1)])
    return time.perf_counter() - started


# -- in-process measurements -------------------------------------------------------------------

async def time_loads(path: Path, runs: int) -> dict[str, list[float]]:
    """Per view: a cold load (nothing reused: the first refresh of a view, and once an hour
    when the current hour closes) and a warm one (every other refresh), plus the poll."""
    from tui._data import Collector, change_key, load

    zone = ZoneInfo("UTC")
    found: dict[str, list[float]] = {}
    async with await Store.open(path) as store:
        now_ms = time.time_ns() // 1_000_000
        await load(store, "month", now_ms, zone)  # warm the connection and the page cache
        for view in ("day", "week", "month"):
            cold, warm = [], []
            collector = Collector()
            await load(store, view, now_ms, zone, collector=collector)
            for _ in range(runs):
                started = time.perf_counter()
                await load(store, view, now_ms, zone)
                cold.append(time.perf_counter() - started)
                started = time.perf_counter()
                await load(store, view, now_ms, zone, collector=collector)
                warm.append(time.perf_counter() - started)
            found[f"{view} cold"] = cold
            found[f"{view} warm"] = warm
        config = str(store.config_path)
        polls = []
        for _ in range(runs * 5):
            started = time.perf_counter()
            await store.read(lambda db: change_key(db, config))
            polls.append(time.perf_counter() - started)
        found["poll"] = polls
    return found


async def time_app_refresh(path: Path, runs: int) -> dict[str, list[float]]:
    """Per view in a headless app: press r → reload applied and screen repainted, and the
    app's own timer of the reload (read + update of every widget)."""
    from tui.app import DashboardApp

    found: dict[str, list[float]] = {}
    async with await Store.open(path) as store:
        app = DashboardApp(store, zone=ZoneInfo("UTC"), poll_interval=3600,
                           tick_interval=3600)
        async with app.run_test(size=(120, 36)) as pilot:
            await app.wait_for_reload(1)
            await pilot.pause()
            harness = []
            for _ in range(runs):
                started = time.perf_counter()
                await pilot.press("x")
                await pilot.pause()
                harness.append(time.perf_counter() - started)
            found["harness"] = harness
            for view in ("day", "week", "month"):
                while app.view_key != view:
                    target = app.reload_count + 1
                    await pilot.press("p")
                    await app.wait_for_reload(target)
                whole, inside = [], []
                for _ in range(runs):
                    target = app.reload_count + 1
                    started = time.perf_counter()
                    await pilot.press("r")
                    await app.wait_for_reload(target)
                    await pilot.pause()  # the repaint after the widgets changed
                    whole.append(time.perf_counter() - started)
                    inside.append(app.last_reload_s)
                found[f"{view} whole"] = whole
                found[f"{view} inside"] = inside
            await pilot.press("q")
    return found


# -- first paint, as a subprocess on a pseudo-terminal ------------------------------------------

CTRL_Q = b"\x11"  # a bare Textual app quits on ctrl+q
BARE_APP = """
from textual.app import App
from textual.widgets import Label
class Bare(App):
    def compose(self):
        yield Label("meterline bare textual app")
Bare().run()
"""


def first_paint(argv: list[str], env: dict[str, str], marks: tuple[bytes, ...],
                quit_key: bytes = b"q", timeout: float = 30) -> list[float]:
    """Seconds from spawn until each of ``marks`` is on the terminal, then quit."""
    master, child = os.openpty()
    fcntl.ioctl(child, termios.TIOCSWINSZ, struct.pack("HHHH", 36, 120, 0, 0))
    started = time.perf_counter()
    process = subprocess.Popen(argv, stdin=child, stdout=child, stderr=child,
                               env={**env, "TERM": "xterm-256color"}, start_new_session=True)
    os.close(child)
    output, times = b"", []
    try:
        for mark in marks:
            while mark not in output:
                if time.perf_counter() - started > timeout:
                    raise RuntimeError(f"{mark!r} never appeared: {output[-500:]!r}")
                ready, _, _ = select.select([master], [], [], 0.01)
                if ready:
                    output += os.read(master, 65536)
            times.append(time.perf_counter() - started)
        os.write(master, quit_key)
        # Keep reading: a child whose terminal buffer is full cannot finish drawing or exit.
        deadline = time.perf_counter() + 15
        while process.poll() is None and time.perf_counter() < deadline:
            ready, _, _ = select.select([master], [], [], 0.05)
            if ready:
                try:
                    os.read(master, 65536)
                except OSError:
                    break
        if process.wait(timeout=5) != 0:
            raise RuntimeError(f"{argv} exited with {process.returncode}")
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        os.close(master)
    return times


def time_first_paints(home: Path, runs: int) -> dict[str, list[float]]:
    env = {**os.environ, "METERLINE_HOME": str(home)}
    tui = [sys.executable, "-m", "agent", "tui"]
    bare = [sys.executable, "-c", BARE_APP]
    found: dict[str, list[float]] = {"bare": [], "frame": [], "data": []}
    first_paint(tui, env, (b"meterline", MARK_TOOL.encode()))  # warm the OS file cache
    first_paint(bare, env, (b"bare textual app",), CTRL_Q)
    for _ in range(runs):
        (bare_time,) = first_paint(bare, env, (b"bare textual app",), CTRL_Q)
        frame, data = first_paint(tui, env, (b"meterline", MARK_TOOL.encode()))
        found["bare"].append(bare_time)
        found["frame"].append(frame)
        found["data"].append(data)
    return found


# -- main --------------------------------------------------------------------------------------

def run_async(coroutine: Awaitable[object]) -> object:
    return asyncio.run(coroutine)  # type: ignore[arg-type]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=1_000_000)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--runs", type=int, default=30, help="refreshes timed per view")
    parser.add_argument("--paints", type=int, default=10, help="process starts timed")
    parser.add_argument("--keep", type=Path, help="folder for the big store (reused if there)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-tui-") as scratch:
        big_home = args.keep or Path(scratch) / "big"
        small_home = Path(scratch) / "small"
        big_home.mkdir(parents=True, exist_ok=True)
        small_home.mkdir(parents=True)
        now = datetime.now(UTC)
        big_db = big_home / "meterline.db"
        print(f"dashboard benchmark (python {sys.version.split()[0]}, {os.cpu_count()} cpus)")
        if not big_db.exists():
            built = run_async(build(big_db, args.calls, args.events, now))
            print(f"built {args.calls:,} calls + {args.events:,} suggestion events via "
                  f"Store.add_calls/add_suggestion_events (batches of {BATCH:,}) in "
                  f"{built:.1f} s: {big_db} ({big_db.stat().st_size / 2**20:.0f} MiB)")
        else:
            print(f"reusing {big_db} ({big_db.stat().st_size / 2**20:.0f} MiB)")
        run_async(build(small_home / "meterline.db", 1_000, 200, now))

        print("\n1. one refresh, data only (tui._data.load on Store.read), in-process")
        small = run_async(time_loads(small_home / "meterline.db", args.runs))
        big = run_async(time_loads(big_db, args.runs))
        assert isinstance(small, dict)
        assert isinstance(big, dict)
        for view in ("day", "week", "month"):
            for kind in ("cold", "warm"):
                key = f"{view} {kind}"
                print(line(f"{key}, 1k calls (baseline)", small[key]))
                print(line(f"{key}, {args.calls:,} calls", big[key], baseline=small[key]))

        print("\n2. one refresh in the app (run_test 120x36, no budgets: p cycles the views)")
        small_app = run_async(time_app_refresh(small_home / "meterline.db", args.runs))
        big_app = run_async(time_app_refresh(big_db, args.runs))
        assert isinstance(small_app, dict)
        assert isinstance(big_app, dict)
        print(line("Pilot's own cost: press an unbound key", big_app["harness"]))
        for view in ("day", "week", "month"):
            inside = f"{view} inside"
            print(line(f"{view}: read + update widgets, 1k (baseline)", small_app[inside]))
            print(line(f"{view}: read + update widgets, {args.calls:,}", big_app[inside],
                       baseline=small_app[inside]))
            print(line(f"{view}: key r to repainted, 1k (baseline)", small_app[f"{view} whole"]))
            print(line(f"{view}: key r to repainted, {args.calls:,}", big_app[f"{view} whole"],
                       baseline=small_app[f"{view} whole"]))

        print("\n3. the live loop's poll (data_version + config stamp), every 300 ms")
        print(line("1k calls (baseline)", small["poll"]))
        print(line(f"{args.calls:,} calls", big["poll"], baseline=small["poll"]))

        print("\n4. time to first paint: `meterline tui` as a subprocess on a 120x36 pty")
        paints = time_first_paints(big_home, args.paints)
        print(line("bare Textual app, first frame (baseline)", paints["bare"], "s", 1))
        print(line(f"meterline tui, first frame ({args.calls:,} calls)", paints["frame"],
                   "s", 1, baseline=paints["bare"]))
        print(line("meterline tui, first frame with the data", paints["data"], "s", 1,
                   baseline=paints["bare"]))

        worst = max(pct(big_app[f"{view} inside"], 0.99) for view in ("day", "week", "month"))
        print(f"\ntargets: refresh <= 50 ms: p99 of the slowest view in the app "
              f"{worst * 1000:.1f} ms ({'met' if worst <= 0.05 else 'MISSED'});"
              f" first paint <= 1 s: median with data {statistics.median(paints['data']):.2f} s"
              f" ({'met' if statistics.median(paints['data']) <= 1 else 'MISSED'})")


if __name__ == "__main__":
    main()
