"""The budget in the editor, end to end: meterline/budget on change (at most once a second),
one message when the state turns warn and one when it turns blocked, and no completions
while an enforced budget is used up."""

from __future__ import annotations

import asyncio

from lsp_harness import KEYS, METERLINE, PRICES, StartSidecar, eventually, openai_init
from lsp_upstream import Upstream
from lsprotocol import types

URI = "file:///work/project/budget.py"
SOURCE = "def f():\n    \n"
# Each default upstream reply costs 50 × 1¢ + 7 × 2¢ = $0.64.
ENFORCED = PRICES + """
[[budgets]]
name = "daily"
period = "day"
limit_usd = 1.0
warn_at = 0.5
mode = "enforce"
"""


async def test_warn_then_blocked_then_no_completions(start_sidecar: StartSidecar,
                                                     upstream: Upstream) -> None:
    sidecar = await start_sidecar(init=openai_init(upstream), config=ENFORCED, env=KEYS)
    await eventually(lambda: sidecar.budget_notes, what="the first meterline/budget")
    assert sidecar.budget_notes[0]["state"] == "ok"
    assert sidecar.budget_notes[0]["limitUsd"] == 1.0
    sidecar.open(URI, SOURCE)

    assert len(await sidecar.complete(URI, 1, 4)) == 1  # $0.64 of $1: warn
    await eventually(lambda: sidecar.shown(types.MessageType.Warning), what="the warning")
    assert len(await sidecar.complete(URI, 1, 4)) == 1  # still room: $1.28 now
    await eventually(lambda: sidecar.shown(types.MessageType.Error), what="the block")
    for _ in range(3):
        assert await sidecar.complete(URI, 1, 4) == []  # blocked: nothing is sent
    assert len(upstream.requests) == 2

    [warning] = sidecar.shown(types.MessageType.Warning)
    [blocked] = sidecar.shown(types.MessageType.Error)
    assert "'daily'" in warning
    assert "'daily'" in blocked
    assert "used up" in blocked
    await eventually(lambda: sidecar.budget_notes[-1]["state"] == "blocked",
                     what="meterline/budget saying blocked")
    last = sidecar.budget_notes[-1]
    assert (last["usedUsd"], last["remainingUsd"], last["calls"]) == (1.28, -0.28, 2)
    # Within a second, warn may be passed over: the notification tells the latest state.
    states = [note["state"] for note in sidecar.budget_notes]
    assert states in (["ok", "warn", "blocked"], ["ok", "blocked"])
    status = await sidecar.status()
    assert set(last) == set(status)  # the same object (time-dependent rates aside)
    for key in ("state", "budget", "usedUsd", "usedTokens", "limitUsd", "remainingUsd",
                "resetsAt", "calls"):
        assert last[key] == status[key]
    assert [b["state"] for b in last["budgets"]] == [b["state"] for b in status["budgets"]]


async def test_a_warn_only_budget_never_blocks(start_sidecar: StartSidecar,
                                               upstream: Upstream) -> None:
    config = ENFORCED.replace('mode = "enforce"', 'mode = "warn"')
    sidecar = await start_sidecar(init=openai_init(upstream), config=config, env=KEYS)
    sidecar.open(URI, SOURCE)
    for _ in range(3):
        assert len(await sidecar.complete(URI, 1, 4)) == 1
    await eventually(lambda: sidecar.budget_notes and sidecar.budget_notes[-1]["calls"] == 3,
                     what="the status after three calls")
    assert len(sidecar.shown(types.MessageType.Warning)) == 1
    assert sidecar.shown(types.MessageType.Error) == []


async def test_budget_notifications_come_on_change_at_most_once_a_second(
        start_sidecar: StartSidecar) -> None:
    sidecar = await start_sidecar(config='[[budgets]]\nname = "d"\nlimit_usd = 100\n')
    await eventually(lambda: sidecar.budget_notes, what="the first meterline/budget")
    for n in range(12):  # a call every 0.2 s for 2.4 s
        sidecar.notify("meterline/recordCall", {
            "tool": "aider", "provider": "anthropic", "model": "claude-x",
            "inputTokens": 10, "outputTokens": 1, "costMicroUsd": 10_000 * (n + 1)})
        await asyncio.sleep(0.2)
    total = sum(10_000 * (n + 1) for n in range(12)) / 1e6
    await eventually(lambda: sidecar.budget_notes[-1]["usedUsd"] == total,
                     what="the last change told")
    gaps = [b - a for a, b in zip(sidecar.budget_times, sidecar.budget_times[1:],
                                  strict=False)]
    assert gaps
    # At most once a second: the server spaces them by 1 s; measured where they arrive,
    # a busy client (or machine) can shorten a gap by the delay of the one before.
    assert min(gaps) >= 0.75
    assert 2 <= len(sidecar.budget_notes) <= 5  # on change, not once per call
    count = len(sidecar.budget_notes)
    await asyncio.sleep(1.5)
    assert len(sidecar.budget_notes) == count  # nothing changed: nothing sent


async def test_calls_recorded_by_another_process_move_the_budget_too(
        start_sidecar: StartSidecar) -> None:
    sidecar = await start_sidecar(config='[[budgets]]\nname = "d"\nlimit_usd = 1\n')
    await eventually(lambda: sidecar.budget_notes, what="the first meterline/budget")
    call = ('{"tool":"aider","provider":"anthropic","model":"claude-x",'
            '"input_tokens":10,"output_tokens":2,"cost_micro_usd":900000}')
    process = await asyncio.create_subprocess_exec(
        METERLINE, "record", stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.DEVNULL)
    await process.communicate(call.encode())
    assert process.returncode == 0
    await eventually(lambda: sidecar.budget_notes[-1]["state"] == "warn",
                     what="the proxy-style call seen by the sidecar")
    assert sidecar.budget_notes[-1]["usedUsd"] == 0.9
    assert len(sidecar.shown(types.MessageType.Warning)) == 1
