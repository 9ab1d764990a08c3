"""Metered inline completion, end to end: `meterline lsp` under pytest-lsp's client, a real
upstream on loopback, and the store read from its SQLite file."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from lsp_harness import (
    KEYS,
    METERLINE,
    PRICES,
    StartSidecar,
    anthropic_init,
    eventually,
    openai_init,
)
from lsp_upstream import Reply, Upstream
from lsprotocol import types
from pygls.exceptions import JsonRpcRequestCancelled

from agent import line_fingerprints

URI = "file:///work/project/src/app.py"
SOURCE = "import math\n\n\ndef area(radius):\n    \n"


async def test_openai_completion_is_metered_offered_and_accepted(
        start_sidecar: StartSidecar, upstream: Upstream) -> None:
    upstream.script(Reply(text="return math.pi * radius ** 2", input_tokens=40,
                          cached_tokens=10, output_tokens=9))
    sidecar = await start_sidecar(init=openai_init(upstream), config=PRICES, env=KEYS)
    sidecar.open(URI, SOURCE)
    items = await sidecar.complete(URI, 4, 4)
    assert [item.insert_text for item in items] == ["return math.pi * radius ** 2"]
    item = items[0]
    assert item.range == types.Range(start=types.Position(4, 4), end=types.Position(4, 4))
    assert item.command is not None
    assert item.command.command == "meterline.accept"
    suggestion_id = item.command.arguments[0]  # type: ignore[index]
    assert await sidecar.accept(URI, item) == {"suggestionId": suggestion_id,
                                                "outcome": "accepted"}

    request = upstream.requests[0]
    assert request.path == "/v1/chat/completions"
    assert request.headers["authorization"] == "Bearer sk-test-openai-secret"
    assert "def area(radius):\n    <CURSOR>\n" in request.body["messages"][1]["content"]
    await sidecar.stop()

    [call] = sidecar.calls()
    assert {key: call[key] for key in (
        "tool", "source", "provider", "model", "kind", "input_tokens", "cache_read_tokens",
        "output_tokens", "estimated", "status", "language", "request_id", "cost_micro_usd")} == {
        "tool": "meterline-lsp", "source": "lsp", "provider": "openai", "model": "test-model",
        "kind": "inline", "input_tokens": 40, "cache_read_tokens": 10, "output_tokens": 9,
        "estimated": 0, "status": "ok", "language": "python", "request_id": "req-000001",
        # 40 × 1¢ + 10 cached × 0.1¢ + 9 × 2¢
        "cost_micro_usd": 400_000 + 10_000 + 180_000}
    assert call["workspace"].startswith("ws-")
    events = sidecar.events()
    assert [(e["type"], e["chars"], e["lines"], e["call_id"], e["suggestion_id"])
            for e in events] == [("offered", 28, 1, call["id"], suggestion_id),
                                 ("accepted", 28, 1, call["id"], suggestion_id)]
    # The accepted line's fingerprint stays on this machine, for `meterline commits scan`.
    with sqlite3.connect(sidecar.home / "meterline.db") as db:
        kept = db.execute("SELECT suggestion_id, line_hash FROM accepted_lines").fetchall()
    assert kept == [(suggestion_id, line_fingerprints("return math.pi * radius ** 2")[0])]


async def test_anthropic_completion_uses_its_own_format(
        start_sidecar: StartSidecar, upstream: Upstream) -> None:
    upstream.script(Reply(text="return 2 * math.pi * radius", input_tokens=30,
                          cached_tokens=20, output_tokens=8))
    sidecar = await start_sidecar(init=anthropic_init(upstream), config=PRICES, env=KEYS)
    sidecar.open(URI, SOURCE)
    [item] = await sidecar.complete(URI, 4, 4)
    assert item.insert_text == "return 2 * math.pi * radius"
    request = upstream.requests[0]
    assert request.path == "/v1/messages"
    assert request.headers["x-api-key"] == "sk-ant-test-secret"
    assert request.headers["anthropic-version"] == "2023-06-01"
    await sidecar.stop()
    [call] = sidecar.calls()
    assert (call["provider"], call["input_tokens"], call["cache_read_tokens"],
            call["output_tokens"], call["request_id"], call["estimated"]) == (
        "anthropic", 30, 20, 8, "req_000001", 0)
    assert call["cost_micro_usd"] == 300_000 + 20_000 + 160_000


async def test_ollama_reports_eval_counts(start_sidecar: StartSidecar,
                                          upstream: Upstream) -> None:
    upstream.script(Reply(text="pass", input_tokens=12, output_tokens=2))
    sidecar = await start_sidecar(init={"completion": {
        "provider": "ollama", "baseUrl": upstream.url, "model": "local-coder-x"}})
    sidecar.open(URI, SOURCE)
    [item] = await sidecar.complete(URI, 4, 4)
    assert item.insert_text == "pass"
    assert upstream.requests[0].path == "/api/generate"
    assert upstream.requests[0].body["suffix"] == "\n"
    await sidecar.stop()
    [call] = sidecar.calls()
    assert (call["provider"], call["input_tokens"], call["output_tokens"],
            call["estimated"]) == ("ollama", 12, 2, 0)
    assert call["cost_micro_usd"] == 0  # a model served locally: a known $0 (agent pricing)


async def test_completion_from_config_toml(start_sidecar: StartSidecar,
                                           upstream: Upstream) -> None:
    config = (f'[completion]\nprovider = "openai"\nbase_url = "{upstream.url}/v1"\n'
              f'model = "test-model"\napi_key_env = "TEST_OPENAI_KEY"\n' + PRICES)
    sidecar = await start_sidecar(config=config, env=KEYS)
    sidecar.open(URI, SOURCE)
    assert len(await sidecar.complete(URI, 4, 4)) == 1
    assert upstream.requests[0].headers["authorization"] == "Bearer sk-test-openai-secret"


async def test_no_usage_reported_means_estimated_and_flagged(
        start_sidecar: StartSidecar, upstream: Upstream) -> None:
    upstream.script(Reply(text="return radius", usage=False))
    sidecar = await start_sidecar(init=openai_init(upstream), config=PRICES, env=KEYS)
    sidecar.open(URI, SOURCE)
    await sidecar.complete(URI, 4, 4)
    await sidecar.stop()
    [call] = sidecar.calls()
    sent = upstream.requests[0].body
    sent_chars = sum(len(m["content"]) for m in sent["messages"])
    assert call["estimated"] == 1
    assert call["input_tokens"] == -(-sent_chars // 4)
    assert call["output_tokens"] == -(-len("return radius") // 4)


async def test_upstream_errors_give_no_items_one_log_message_and_no_crash(
        start_sidecar: StartSidecar, upstream: Upstream) -> None:
    upstream.script(Reply(status=500), Reply(raw=b"<html>bad gateway</html>"), Reply())
    sidecar = await start_sidecar(init=openai_init(upstream), config=PRICES, env=KEYS)
    sidecar.open(URI, SOURCE)
    assert await sidecar.complete(URI, 4, 4) == []
    assert await sidecar.complete(URI, 4, 4) == []
    assert len(await sidecar.complete(URI, 4, 4)) == 1  # still serving
    failures = [m.message for m in sidecar.client.log_messages if "upstream" in m.message]
    assert len(failures) == 2
    assert "HTTP 500" in failures[0]
    assert "The server had an error" in failures[0]
    assert "not a JSON object" in failures[1]
    await sidecar.stop()
    sent = upstream.requests[1].body
    estimate = -(-sum(len(m["content"]) for m in sent["messages"]) // 4)
    statuses = [(c["status"], c["input_tokens"], c["output_tokens"], c["estimated"])
                for c in sidecar.calls()]
    # The HTTP error billed nothing; the unreadable success ran the model: its input is
    # estimated (and flagged); the good one is as reported.
    assert statuses == [("error", 0, 0, 0), ("error", estimate, 0, 1), ("ok", 50, 7, 0)]
    assert not sidecar.client.messages  # no pop-ups for upstream trouble


async def test_an_unreachable_upstream_records_no_call(start_sidecar: StartSidecar,
                                                        upstream: Upstream) -> None:
    url = upstream.url
    upstream.stop()  # nothing listens there any more
    sidecar = await start_sidecar(init={"completion": {
        "provider": "openai", "baseUrl": f"{url}/v1", "model": "test-model"}})
    sidecar.open(URI, SOURCE)
    assert await sidecar.complete(URI, 4, 4) == []
    assert any("ConnectError" in m.message for m in sidecar.client.log_messages)
    await sidecar.stop()
    assert sidecar.calls() == []


async def test_cancelled_request_is_still_recorded(start_sidecar: StartSidecar,
                                                    upstream: Upstream) -> None:
    gate = threading.Event()
    upstream.script(Reply(text="return 0", input_tokens=21, output_tokens=3, gate=gate))
    sidecar = await start_sidecar(init=openai_init(upstream), config=PRICES, env=KEYS)
    sidecar.open(URI, SOURCE)
    pending = asyncio.ensure_future(sidecar.client.protocol.send_request_async(
        types.TEXT_DOCUMENT_INLINE_COMPLETION, sidecar.completion_params(URI, 4, 4),
        msg_id="completion-1"))
    # The upstream has the request (the call is made, and will be billed) ...
    assert await asyncio.get_running_loop().run_in_executor(
        None, upstream.wait_for_requests, 1)
    # ... when the editor gives up on it.
    sidecar.notify("$/cancelRequest", types.CancelParams(id="completion-1"))
    with pytest.raises(JsonRpcRequestCancelled):
        await asyncio.wait_for(pending, 10)
    gate.set()
    await eventually(lambda: sidecar.calls(), what="the cancelled call in the store")
    await sidecar.stop()
    [call] = sidecar.calls()
    assert (call["input_tokens"], call["output_tokens"], call["status"]) == (21, 3, "ok")
    assert sidecar.events() == []  # nothing reached the editor: nothing was offered


async def test_prompt_and_completion_text_never_reach_the_store(
        start_sidecar: StartSidecar, upstream: Upstream,
        capfd: pytest.CaptureFixture[str]) -> None:
    secret_code = "SECRET_FUNCTION_BODY_71"
    completion = "return COMPLETION_TEXT_93"
    upstream.script(Reply(text=completion))
    sidecar = await start_sidecar(init=openai_init(upstream), config=PRICES, env=KEYS)
    sidecar.open(URI, f"def {secret_code}():\n    \n")
    [item] = await sidecar.complete(URI, 1, 4)
    await sidecar.accept(URI, item)
    await sidecar.stop()
    db = sqlite3.connect(sidecar.home / "meterline.db")
    dump = "\n".join(db.iterdump())
    db.close()
    for needle in (secret_code, "COMPLETION_TEXT_93", "sk-test-openai-secret", "/work/project"):
        assert needle not in dump
    assert "sk-test-openai-secret" not in capfd.readouterr().err


async def test_status_is_the_same_object_as_meterline_status_json(
        start_sidecar: StartSidecar, meterline_home: Path) -> None:
    sidecar = await start_sidecar(config='[[budgets]]\nname = "d"\nlimit_usd = 5\n')
    await sidecar.request("meterline/recordCall", {
        "tool": "copilot", "provider": "openai", "model": "gpt-4o-mini",
        "inputTokens": 1000, "outputTokens": 200, "costMicroUsd": 1234})
    await eventually(lambda: sidecar.calls(), what="the recorded call")
    ours = await sidecar.status()
    process = await asyncio.create_subprocess_exec(METERLINE, "status", "--json",
                                                   stdout=asyncio.subprocess.PIPE)
    out, _ = await process.communicate()
    cli = json.loads(out)
    # Computed a moment apart: the rates over the period so far (and the projection made
    # from them) move with the clock — fast just after midnight, when the period is young.
    for a, b in [(ours, cli), *zip(ours["budgets"], cli["budgets"], strict=True)]:
        rate_a, rate_b = a.pop("periodBurnRateUsdPerHour"), b.pop("periodBurnRateUsdPerHour")
        assert rate_a == pytest.approx(rate_b, rel=0.05)
        end_a, end_b = a.pop("projectedExhaustionAt"), b.pop("projectedExhaustionAt")
        assert (end_a is None) == (end_b is None)
    ours.pop("generatedAt")
    cli.pop("generatedAt")
    assert ours == cli
    assert ours["usedUsd"] == 0.001234
    assert ours["budget"] == "d"


async def test_python_dash_m_lsp_serves_too(start_sidecar: StartSidecar) -> None:
    sidecar = await start_sidecar(command=[sys.executable, "-m", "lsp"])
    assert (await sidecar.status())["state"] == "ok"
    await sidecar.stop()
    assert sidecar.client._server is not None
    assert sidecar.client._server.returncode == 0


def test_the_command_line() -> None:
    result = subprocess.run([METERLINE, "lsp", "--help"], capture_output=True, text=True)
    assert result.returncode == 0
    assert "--stdio" in result.stdout
    listing = subprocess.run([METERLINE, "--help"], capture_output=True, text=True)
    assert "lsp" in listing.stdout
