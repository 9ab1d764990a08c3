"""Foundation benchmark: store insert rate, status latency at 1M events, `meterline status`.

    .venv/bin/python bench/bench_foundation.py [--events 1000000]

Prints, each with the event count it was measured at:
  1. sustained batched insert rate through Store.add_calls (batches of 1,000), and the rate
     when 100 concurrent writers add one call each (the proxy's pattern: group commit);
  2. status computation latency (four budgets: day, week, month, rolling 5h) in-process;
  3. `meterline status` as a whole process, median, beside `python -c pass` from the same
     environment, with METERLINE_HOME set and with the platform default location.
Everything runs in a temporary folder; nothing touches the real home.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from agent import Call, Store
from agent._status import current_status

BUDGETS = """
[[budgets]]
name = "daily"
period = "day"
limit_usd = 50.0
timezone = "Europe/Berlin"
[[budgets]]
name = "weekly"
period = "week"
limit_usd = 200.0
limit_tokens = 500000000
[[budgets]]
name = "monthly"
period = "month"
limit_usd = 800.0
mode = "enforce"
[[budgets]]
name = "plan"
period = "5h"
limit_tokens = 20000000
"""

MODELS = [("anthropic", "claude-sonnet-4-5"), ("anthropic", "claude-haiku-4-5"),
          ("openai", "gpt-4o"), ("openai", "gpt-4o-mini"), ("openai", "o3")]
TOOLS = ["claude-code", "codex", "aider", "continue", "meterline-lsp"]


def make_calls(count: int, start: datetime, span: timedelta, rng: random.Random) -> list[Call]:
    calls = []
    step = span / max(count, 1)
    for i in range(count):
        provider, model = rng.choice(MODELS)
        calls.append(Call(
            tool=rng.choice(TOOLS), source="bench", provider=provider, model=model,
            ts=start + step * i, input_tokens=rng.randint(50, 5000),
            output_tokens=rng.randint(10, 2000), cache_read_tokens=rng.randint(0, 50_000),
            cost_micro_usd=rng.choice([None] + [rng.randint(10, 50_000)] * 20)))
    return calls


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * pct / 100))]


async def fill(store: Store, total: int, batch: int) -> float:
    """Insert ``total`` calls spread over the last 35 days; return events per second."""
    rng = random.Random(7)
    now = datetime.now(UTC)
    start = now - timedelta(days=35)
    per_batch_span = timedelta(days=35) * batch / total
    inserted = 0
    elapsed = 0.0
    while inserted < total:
        size = min(batch, total - inserted)
        calls = make_calls(size, start + per_batch_span * (inserted / batch), per_batch_span, rng)
        began = time.perf_counter()
        await store.add_calls(calls)
        elapsed += time.perf_counter() - began
        inserted += size
    return total / elapsed


async def concurrent_singles(store: Store, writers: int, rounds: int) -> float:
    rng = random.Random(3)
    now = datetime.now(UTC)

    async def writer() -> None:
        for _ in range(rounds):
            await store.add_calls(make_calls(1, now, timedelta(seconds=1), rng))

    began = time.perf_counter()
    await asyncio.gather(*(writer() for _ in range(writers)))
    return writers * rounds / (time.perf_counter() - began)


def time_process(cmd: list[str], env: dict[str, str], runs: int) -> list[float]:
    subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, check=True)  # warm caches
    times = []
    for _ in range(runs):
        began = time.perf_counter()
        subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, check=True)
        times.append((time.perf_counter() - began) * 1000)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--status-runs", type=int, default=2000)
    parser.add_argument("--process-runs", type=int, default=60)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="meterline-bench-") as tmp:
        home = Path(tmp) / "home"
        home.mkdir()
        os.environ["METERLINE_HOME"] = str(home)
        (home / "config.toml").write_text(BUDGETS)

        async def build() -> tuple[float, float]:
            async with await Store.open() as store:
                rate = await fill(store, args.events, 1000)
                singles = await concurrent_singles(store, writers=100, rounds=50)
            return rate, singles

        rate, singles = asyncio.run(build())
        total = args.events + 100 * 50
        print(f"insert, batches of 1,000 : {rate:,.0f} events/s "
              f"({args.events:,} events; target >= 20,000/s)")
        print(f"insert, 100 concurrent single-call writers (group commit): {singles:,.0f} "
              f"events/s (5,000 events)")

        db, config = str(home / "meterline.db"), str(home / "config.toml")
        current_status(db, config)  # mirror the budgets once, as any first status does
        from agent._schema import connect
        from agent._status import compute, read_budgets

        conn = connect(db)
        budgets, zone = read_budgets(conn, config)
        latencies = []
        for _ in range(args.status_runs):
            began = time.perf_counter()
            report = compute(conn, budgets, zone)
            latencies.append((time.perf_counter() - began) * 1000)
        conn.close()
        print(f"status computation ({len(budgets)} budgets, {total:,} events stored): "
              f"p50 {statistics.median(latencies):.3f} ms, p99 {percentile(latencies, 99):.3f}"
              f" ms over {args.status_runs} runs (target p99 <= 2 ms); "
              f"{report.binding.name if report.binding else '-'} binds")

        env = dict(os.environ)
        bare = time_process([sys.executable, "-c", "pass"], env, args.process_runs)
        meterline = str(Path(sys.executable).with_name("meterline"))
        status = time_process([meterline, "status"], env, args.process_runs)
        status_json = time_process([meterline, "status", "--json"], env, args.process_runs)
        default_env = {k: v for k, v in env.items() if k != "METERLINE_HOME"}
        default_env["XDG_DATA_HOME"] = tmp  # platform default location, inside the temp dir
        os.symlink(home, Path(tmp) / "meterline")
        default_loc = time_process([meterline, "status"], default_env, args.process_runs)
        print(f"`python -c pass`                  : median {statistics.median(bare):.1f} ms")
        print(f"`meterline status`                : median {statistics.median(status):.1f} ms,"
              f" p90 {percentile(status, 90):.1f} ms ({total:,} events; target median <= 60 ms)")
        print(f"`meterline status --json`         : median "
              f"{statistics.median(status_json):.1f} ms")
        print(f"`meterline status` (default home) : median "
              f"{statistics.median(default_loc):.1f} ms (platformdirs locates the store)")
        print(f"status over bare interpreter      : "
              f"+{statistics.median(status) - statistics.median(bare):.1f} ms")


if __name__ == "__main__":
    main()
