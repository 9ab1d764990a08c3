"""Bad input and a hostile environment, end to end: malformed params, unknown documents, a
10 MB document, the store locked by another process, the editor quitting meanwhile."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
import time
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import pytest
from lsp_harness import KEYS, PRICES, SIDECAR, Sidecar, StartSidecar, eventually, openai_init
from lsp_upstream import Reply, Upstream
from lsprotocol import types
from pygls.exceptions import JsonRpcException, JsonRpcInvalidParams

URI = "file:///work/project/bad.py"
CALL = {"tool": "continue", "provider": "openai", "model": "gpt-4o-mini",
        "inputTokens": 100, "outputTokens": 10, "costMicroUsd": 50}
BAD_RANGE = {"start": {"line": -1, "character": 0}, "end": {"line": 0, "character": 0}}

MALFORMED = [
    ("meterline/recordCall", {"tool": "continue"}, "provider: required field is missing"),
    ("meterline/recordCall", {**CALL, "inputTokens": -1}, "input_tokens"),
    ("meterline/recordCall", {**CALL, "ts": "yesterday"}, "ts"),
    ("meterline/recordCall", [CALL], "expected a JSON object"),
    ("meterline/recordCall", None, "expected a JSON object"),
    ("meterline/recordCall", {**CALL, "suggestion": {"id": "s", "uri": URI, "text": "x",
                                                    "range": BAD_RANGE}},
     "suggestion.range.start.line"),
    ("meterline/recordCall", {**CALL, "suggestion": {"id": "s", "uri": URI}},
     "suggestion.range: required field is missing"),
    ("meterline/suggestionAccepted", {}, "suggestionId: required field is missing"),
    ("meterline/suggestionAccepted", {"suggestionId": 7}, "suggestionId"),
    ("meterline/suggestionAccepted", {"suggestionId": "never-offered"}, "no suggestion"),
    ("meterline/suggestionShown", {"suggestionId": "x", "acceptedText": "y"}, "acceptedText"),
    ("meterline/suggestionRejected", "x", "expected a JSON object"),
    ("meterline/suggestionRejected", {"suggestionId": "x", "why": "no"}, "why: unknown field"),
]


async def raw_request(sidecar: Sidecar, method: str, params: Any, msg_id: str) -> Any:
    """Send exactly this JSON (the typed client would refuse to build it)."""
    protocol = sidecar.client.protocol
    future: Future[Any] = Future()
    protocol._request_futures[msg_id] = future
    protocol._send_data({"jsonrpc": "2.0", "id": msg_id, "method": method, "params": params})
    return await asyncio.wait_for(asyncio.wrap_future(future), 10)


async def test_malformed_meterline_requests_get_invalid_params(start_sidecar: StartSidecar
                                                               ) -> None:
    sidecar = await start_sidecar()
    for index, (method, params, expected) in enumerate(MALFORMED):
        with pytest.raises(JsonRpcInvalidParams) as error:
            await raw_request(sidecar, method, params, f"bad-{index}")
        assert error.value.code == -32602
        assert expected in error.value.message, (method, params)
    assert (await sidecar.status())["state"] == "ok"  # still serving
    await sidecar.stop()
    assert sidecar.calls() == []  # nothing half-stored


async def test_malformed_notifications_are_logged_and_the_server_keeps_running(
        start_sidecar: StartSidecar) -> None:
    sidecar = await start_sidecar()
    for method, params, _ in MALFORMED:
        sidecar.notify(method, params)
    sidecar.notify("meterline/recordCall", CALL)  # a good one after all the bad ones
    await eventually(lambda: len([m for m in sidecar.client.log_messages
                                  if m.type == types.MessageType.Error]) == len(MALFORMED),
                     what="one logged error per malformed notification")
    errors = [m.message for m in sidecar.client.log_messages
              if m.type == types.MessageType.Error]
    for (_, _, expected), message in zip(MALFORMED, errors, strict=True):
        assert expected in message
    assert not sidecar.client.messages  # the log, not pop-ups
    await sidecar.stop()
    assert [c["tool"] for c in sidecar.calls()] == ["continue"]


@pytest.mark.parametrize("arguments", [[], [7], ["a", "b"], ["never-offered"], None])
async def test_the_accept_command_checks_its_argument(start_sidecar: StartSidecar,
                                                      arguments: list[Any] | None) -> None:
    sidecar = await start_sidecar()
    with pytest.raises(JsonRpcInvalidParams):
        await sidecar.client.workspace_execute_command_async(types.ExecuteCommandParams(
            command="meterline.accept", arguments=arguments))
    assert (await sidecar.status())["state"] == "ok"


async def test_a_malformed_lsp_request_is_answered_with_an_error(start_sidecar: StartSidecar
                                                                  ) -> None:
    sidecar = await start_sidecar()
    with pytest.raises(JsonRpcException) as error:
        await raw_request(sidecar, "textDocument/inlineCompletion",
                          {"textDocument": {"uri": URI}}, "no-position")
    assert error.value.code == -32602
    assert (await sidecar.status())["state"] == "ok"


async def test_a_change_to_an_unknown_document_is_logged_and_ignored(
        start_sidecar: StartSidecar, upstream: Upstream) -> None:
    sidecar = await start_sidecar(init=openai_init(upstream), config=PRICES, env=KEYS)
    sidecar.edit("file:///work/project/never-opened.py", (0, 0), (0, 0), "x")
    sidecar.open(URI, "a = \n")
    sidecar.edit(URI, (0, 4), (0, 4), "1")
    await eventually(lambda: [m for m in sidecar.client.log_messages
                              if "not open" in m.message], what="the log message")
    assert await sidecar.complete("file:///work/project/never-opened.py", 0, 0) == []
    assert len(await sidecar.complete(URI, 0, 5)) == 1
    assert upstream.requests[0].body["messages"][1]["content"].endswith("a = 1<CURSOR>\n")


async def test_a_10_mb_document(start_sidecar: StartSidecar, upstream: Upstream) -> None:
    upstream.default = Reply(text="return value")
    sidecar = await start_sidecar(init=openai_init(upstream, retentionCheckpoints=[1]),
                                  config=PRICES, env=KEYS)
    line = "value = compute(value, 12345)  # a line of about sixty chars\n"
    text = line * (10 * 2**20 // len(line) + 1)
    rows = text.count("\n")
    started = time.monotonic()
    sidecar.open(URI, text)
    for n in range(50):  # edits far apart
        sidecar.edit(URI, (n * 3000, 0), (n * 3000, 5), "VALUE")
    sidecar.edit(URI, (rows, 0), (rows, 0), "def last():\n    ")
    [item] = await sidecar.complete(URI, rows + 1, 4)
    await sidecar.accept(URI, item)
    sidecar.edit(URI, (rows + 1, 4), (rows + 1, 10), "yield")  # "return" replaced
    await eventually(lambda: sidecar.events("retained"), what="the retained event")
    assert time.monotonic() - started < 30
    sent = upstream.requests[0].body["messages"][1]["content"]
    assert len(sent) < 6000  # the window around the cursor, not the document
    assert sent.endswith("def last():\n    <CURSOR>")
    [event] = sidecar.events("retained")
    assert (event["chars"], event["lines"]) == (len(" value"), 1)


LOCKER = """
import sqlite3, sys
db = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=30)
db.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
sys.stdin.readline()
db.execute("COMMIT")
"""


class Locker:
    """Another process holding the store's write lock until released."""

    def __init__(self, db: Path) -> None:
        self.process = subprocess.Popen([sys.executable, "-c", LOCKER, str(db)],
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        text=True)
        assert self.process.stdout is not None
        assert self.process.stdout.readline().strip() == "locked"
        self.since = time.monotonic()

    def release(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write("\n")
        self.process.stdin.flush()
        assert self.process.wait(10) == 0


def spill_files(home: Path) -> list[Path]:
    return sorted(home.glob("lsp-outbox-*"))


async def timed(awaitable: Any) -> tuple[Any, float]:
    started = time.monotonic()
    result = await asyncio.wait_for(awaitable, 10)
    return result, time.monotonic() - started


async def test_the_sidecar_keeps_working_while_the_store_is_locked(
        start_sidecar: StartSidecar, upstream: Upstream) -> None:
    config = PRICES + '[[budgets]]\nname = "big"\nlimit_usd = 1000\nmode = "enforce"\n'
    sidecar = await start_sidecar(init=openai_init(upstream, retentionCheckpoints=[1]),
                                  config=config, env=KEYS)
    await eventually(lambda: sidecar.budget_notes, what="the first status")
    sidecar.open(URI, "def f():\n    \n")
    locker = Locker(sidecar.home / "meterline.db")
    try:
        for n in range(3):
            result, took = await timed(sidecar.request("meterline/recordCall",
                                                       {**CALL, "requestId": f"r-{n}"}))
            assert result["queued"] is True
            assert took < 1.0
        items, took = await timed(sidecar.complete(URI, 1, 4))
        assert len(items) == 1
        assert took < 3.0  # the reservation gives up rather than wait behind the lock
        outcome, took = await timed(sidecar.accept(URI, items[0]))
        assert outcome["outcome"] == "accepted"
        status, took = await timed(sidecar.status())
        assert took < 3.0
        assert status["budget"] == "big"
        await asyncio.sleep(max(0.0, 3.0 - (time.monotonic() - locker.since)))
        assert sidecar.calls() == []  # nothing could be written meanwhile
    finally:
        locker.release()
    await eventually(lambda: len(sidecar.calls()) == 4 and sidecar.events("retained"),
                     what="every call and event stored once the lock is gone")
    await sidecar.stop()
    assert sorted(c["request_id"] for c in sidecar.calls()) == [
        "r-0", "r-1", "r-2", "req-000001"]  # the last: the completion's own call
    assert [e["type"] for e in sidecar.events()] == ["offered", "accepted", "retained"]
    assert sidecar.rows("SELECT COUNT(*) FROM reservations") == [(0,)]


async def test_what_the_store_could_not_take_is_kept_for_the_next_start(
        start_sidecar: StartSidecar, meterline_home: Path) -> None:
    sidecar = await start_sidecar()
    locker = Locker(meterline_home / "meterline.db")
    try:
        for n in range(2):
            await sidecar.request("meterline/recordCall", {**CALL, "requestId": f"k-{n}"})
        await sidecar.stop()  # waits a few seconds for the store, then spills
        [spill] = spill_files(meterline_home)
        kept = json.loads(spill.read_text())
        assert sorted(call["request_id"] for call in kept["calls"]) == ["k-0", "k-1"]
        assert spill.stat().st_mode & 0o777 == 0o600
    finally:
        locker.release()
    assert sidecar.calls() == []
    again = await start_sidecar()
    await eventually(lambda: len(again.calls()) == 2, what="the spilled calls stored")
    await again.stop()
    assert spill_files(meterline_home) == []  # claimed, stored, removed


def _frame(message: dict[str, Any]) -> bytes:
    body = json.dumps(message).encode()
    return b"Content-Length: %d\r\n\r\n" % len(body) + body


def _answers(stdout: Any, count: int) -> dict[Any, dict[str, Any]]:
    """The next ``count`` answers (responses with an id) read from the server's stdout."""
    answers: dict[Any, dict[str, Any]] = {}
    while len(answers) < count:
        length = 0
        while (line := stdout.readline()) not in (b"\r\n", b""):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":")[1])
        if not length:
            break
        message = json.loads(stdout.read(length))
        if "id" in message and "method" not in message:
            answers[message["id"]] = message
    return answers


class RawSession:
    """The sidecar over its pipes, spoken to frame by frame (what a typed client would not
    send), its stderr kept in a file."""

    def __init__(self, errors: Path) -> None:
        self.errors = errors
        with errors.open("wb") as stderr:
            self.server = subprocess.Popen(SIDECAR, stdin=subprocess.PIPE,
                                           stdout=subprocess.PIPE, stderr=stderr)
        self.watchdog = threading.Timer(60, self.server.kill)
        self.watchdog.start()

    def send(self, *messages: dict[str, Any]) -> None:
        assert self.server.stdin is not None
        for message in messages:
            self.server.stdin.write(_frame({"jsonrpc": "2.0", **message}))
        self.server.stdin.flush()

    def answers(self, count: int) -> dict[Any, dict[str, Any]]:
        return _answers(self.server.stdout, count)

    def exit(self) -> int:
        try:
            self.send({"method": "exit"})
            assert self.server.stdin is not None
            self.server.stdin.close()
            return self.server.wait(30)
        finally:
            self.watchdog.cancel()
            self.server.kill()


INITIALIZE = {"id": 1, "method": "initialize",
              "params": {"processId": None, "rootUri": None, "capabilities": {}}}


def test_bad_messages_leave_no_traceback_and_a_request_after_shutdown_is_answered(
        meterline_home: Path, tmp_path: Path) -> None:
    """At the default log level: a wrong request is answered (-32602) without a traceback
    on stderr, nor the words the client sent; a request after shutdown gets -32600 (the
    client would otherwise wait for ever)."""
    secret = "SECRETWORD-in-a-document"
    session = RawSession(tmp_path / "stderr")
    try:
        session.send(INITIALIZE)
        assert "result" in session.answers(1)[1]
        session.send(
            {"method": "initialized", "params": {}},
            {"id": 2, "method": "meterline/recordCall",
             "params": {**CALL, "inputTokens": "lots", "tool": secret}},
            {"id": 3, "method": "textDocument/inlineCompletion",
             "params": {"textDocument": {"uri": URI}, "position": {"line": -1, "character": 0},
                        "context": {"triggerKind": 1}}},
            {"method": "textDocument/didOpen",
             "params": {"textDocument": {"uri": URI, "text": secret}}},
            {"id": 4, "method": "shutdown"})
        answers = session.answers(3)
        session.send({"id": 5, "method": "meterline/status", "params": {}})
        answers |= session.answers(1)
    finally:
        code = session.exit()
    assert answers[2]["error"]["code"] == -32602
    assert answers[3]["error"]["code"] == -32602
    assert answers[4]["result"] is None
    assert answers[5]["error"]["code"] == -32600
    assert code == 0
    logged = session.errors.read_text()
    assert "Traceback" not in logged, logged
    assert secret not in logged, logged


def test_shutdown_while_initialize_is_still_running_ends_the_session(
        meterline_home: Path, tmp_path: Path) -> None:
    """An editor closed as it started: initialize, then shutdown without waiting. pygls
    answered that shutdown with an internal error (a dict changed while it cancelled the
    requests in flight), and the session did not end cleanly."""
    session = RawSession(tmp_path / "stderr")
    try:
        session.send(INITIALIZE, {"id": 2, "method": "shutdown"})
        answers = session.answers(2)
    finally:
        code = session.exit()
    assert answers[2].get("error") is None, answers[2]
    assert answers[2]["result"] is None
    assert code == 0
