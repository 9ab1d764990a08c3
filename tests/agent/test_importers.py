"""Importers of Claude Code and Codex CLI logs: incremental, exact, never twice."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from agent import Store, recent_calls
from agent._importers import CodexState, parse_claude_code, parse_codex

CWD = "/home/dev/work/payments"


def claude_line(message_id: str, request_id: str, output: int, *, model: str = "claude-sonnet-4-5",
                ts: str = "2026-11-27T10:00:00.000Z", **usage: int) -> bytes:
    entry = {
        "parentUuid": None, "isSidechain": False, "userType": "external", "cwd": CWD,
        "sessionId": "0b6f", "version": "2.0.14", "gitBranch": "main", "type": "assistant",
        "message": {"id": message_id, "type": "message", "role": "assistant", "model": model,
                    "content": [{"type": "text", "text": "secret code"}],
                    "usage": {"input_tokens": usage.get("input", 4),
                              "cache_creation_input_tokens": usage.get("write", 1000),
                              "cache_read_input_tokens": usage.get("read", 20_000),
                              "cache_creation": {"ephemeral_5m_input_tokens":
                                                 usage.get("write", 1000) - usage.get("w1h", 0),
                                                 "ephemeral_1h_input_tokens": usage.get("w1h", 0)},
                              "output_tokens": output, "service_tier": "standard"}},
        "requestId": request_id, "uuid": "u", "timestamp": ts,
    }
    return json.dumps(entry).encode()


def user_line() -> bytes:
    return json.dumps({"type": "user", "message": {"role": "user", "content": "hi"},
                       "timestamp": "2026-11-27T09:59:59Z", "cwd": CWD}).encode()


def test_claude_code_keeps_the_largest_line_of_each_response() -> None:
    calls = parse_claude_code([
        user_line(),
        claude_line("msg_1", "req_1", 1),
        claude_line("msg_1", "req_1", 250, w1h=400),
        claude_line("msg_1", "req_1", 30),
        claude_line("msg_2", "req_2", 7, model="<synthetic>"),
        b"{not json",
        claude_line("msg_3", "req_3", 12, model="claude-haiku-4-5", input=100, read=0, write=0),
    ])
    assert len(calls) == 2
    first = next(c for c in calls if c.request_id == "req_1")
    assert (first.input_tokens, first.output_tokens, first.cache_read_tokens,
            first.cache_write_tokens, first.cache_write_1h_tokens) == (4, 250, 20_000, 1000, 400)
    assert first.workspace is not None
    assert first.workspace.startswith("ws-")
    assert "payments" not in first.workspace
    assert first.tool == "claude-code"
    assert first.source == "import:claude-code"
    haiku = next(c for c in calls if c.request_id == "req_3")
    assert haiku.model == "claude-haiku-4-5"


def codex_lines() -> list[bytes]:
    def ev(kind: str, payload: dict[str, Any], ts: str = "2026-11-27T11:00:00.000Z") -> bytes:
        return json.dumps({"timestamp": ts, "type": kind, "payload": payload}).encode()

    def usage(inp: int, cached: int, out: int, reasoning: int, total: int) -> dict[str, int]:
        return {"input_tokens": inp, "cached_input_tokens": cached, "output_tokens": out,
                "reasoning_output_tokens": reasoning, "total_tokens": total}

    limits = {"primary": {"used_percent": 12.5, "window_minutes": 300,
                          "resets_in_seconds": 3600},
              "secondary": {"used_percent": 40.0, "window_minutes": 10080,
                            "resets_in_seconds": 86_400}}
    return [
        ev("session_meta", {"id": "sess-1", "cwd": CWD, "cli_version": "0.50.0"}),
        ev("turn_context", {"model": "gpt-5-codex", "cwd": CWD}),
        ev("event_msg", {"type": "token_count", "info": None, "rate_limits": limits}),
        ev("event_msg", {"type": "token_count", "info": {
            "total_token_usage": usage(5000, 1000, 300, 100, 5300),
            "last_token_usage": usage(5000, 1000, 300, 100, 5300)}, "rate_limits": limits}),
        # The same totals again (Codex repeats them at the end of a turn): no new call.
        ev("event_msg", {"type": "token_count", "info": {
            "total_token_usage": usage(5000, 1000, 300, 100, 5300),
            "last_token_usage": usage(5000, 1000, 300, 100, 5300)}}),
        ev("event_msg", {"type": "token_count", "info": {
            "total_token_usage": usage(12000, 5000, 500, 100, 12500),
            "last_token_usage": usage(7000, 4000, 200, 0, 7200)}}, "2026-11-27T11:01:00Z"),
    ]


def test_codex_turns_running_totals_into_one_call_per_request() -> None:
    state = CodexState()
    calls = parse_codex(codex_lines(), state)
    assert [(c.input_tokens, c.cache_read_tokens, c.output_tokens, c.reasoning_tokens)
            for c in calls] == [(4000, 1000, 300, 100), (3000, 4000, 200, 0)]
    assert {c.model for c in calls} == {"gpt-5-codex"}
    assert state.last_total == 12500
    assert [q["name"] for q in state.quota] == ["5h", "7d"]
    # Fed again from the saved state, the same lines make nothing new.
    assert parse_codex(codex_lines()[3:], state) == []


def write(path: Path, lines: list[bytes], mode: str = "ab") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open(mode) as handle:
        handle.write(b"".join(line + b"\n" for line in lines))


def age(path: Path, seconds: float = 120) -> None:
    old = time.time() - seconds
    os.utime(path, (old, old))


async def run_import(store: Store, claude: Path, codex: Path) -> dict[str, dict[str, int]]:
    from agent._importers import import_logs

    return await import_logs(store, roots={"claude-code": [claude], "codex": [codex]})


async def test_incremental_import_never_stores_a_line_twice(tmp_path: Path) -> None:
    claude_root, codex_root = tmp_path / "claude" / "projects", tmp_path / "codex" / "sessions"
    session = claude_root / "-home-dev-work-payments" / "0b6f.jsonl"
    write(session, [user_line(), claude_line("msg_1", "req_1", 1),
                    claude_line("msg_1", "req_1", 90)])
    codex_file = codex_root / "2026" / "11" / "27" / "rollout.jsonl"
    write(codex_file, codex_lines()[:4])
    async with await Store.open(tmp_path / "s.db") as store:
        # The Claude Code file was just written: its last response may still grow, so it
        # waits; Codex events are complete as written.
        first = await run_import(store, claude_root, codex_root)
        assert first["claude-code"]["inserted"] == 0
        assert first["codex"]["inserted"] == 1
        age(session)
        second = await run_import(store, claude_root, codex_root)
        assert second["claude-code"]["inserted"] == 1
        write(session, [claude_line("msg_2", "req_2", 5, ts="2026-11-27T10:05:00Z")])
        write(codex_file, codex_lines()[4:])
        age(session)
        third = await run_import(store, claude_root, codex_root)
        assert (third["claude-code"]["inserted"], third["codex"]["inserted"]) == (1, 1)
        assert await run_import(store, claude_root, codex_root) == {
            "claude-code": {"files": 1, "inserted": 0, "duplicates": 0, "updated": 0,
                            "skipped": 0},
            "codex": {"files": 1, "inserted": 0, "duplicates": 0, "updated": 0, "skipped": 0}}
        calls = await store.read(lambda db: recent_calls(db, 100))
        quota = await store.read(lambda db: db.execute(
            "SELECT provider, name, used_percent FROM vendor_quota ORDER BY name").fetchall())
    by_request = {c["request_id"]: c for c in calls if c["tool"] == "claude-code"}
    assert by_request["req_1"]["output_tokens"] == 90  # the response's final line
    assert len(calls) == 4
    assert all(c["cost_micro_usd"] is not None for c in calls if c["tool"] == "claude-code")
    assert quota == [("openai", "5h", 12.5), ("openai", "7d", 40.0)]


async def test_a_rewritten_file_is_read_again_without_duplicates(tmp_path: Path) -> None:
    root = tmp_path / "claude"
    session = root / "p" / "s.jsonl"
    write(session, [claude_line("msg_1", "req_1", 10), claude_line("msg_2", "req_2", 10)])
    age(session)
    async with await Store.open(tmp_path / "s.db") as store:
        assert (await run_import(store, root, tmp_path / "none"))["claude-code"]["inserted"] == 2
        session.unlink()
        write(session, [claude_line("msg_1", "req_1", 10), claude_line("msg_3", "req_3", 10)])
        age(session)
        again = await run_import(store, root, tmp_path / "none")
    assert again["claude-code"] == {"files": 1, "inserted": 1, "duplicates": 1, "updated": 0,
                                    "skipped": 0}


async def test_a_call_the_proxy_already_recorded_counts_once(tmp_path: Path) -> None:
    from agent import Call

    root = tmp_path / "claude"
    session = root / "p" / "s.jsonl"
    write(session, [claude_line("msg_1", "req_seen_by_proxy", 10)])
    age(session)
    async with await Store.open(tmp_path / "s.db") as store:
        await store.add_calls([Call(tool="claude-code", source="proxy", provider="anthropic",
                                    model="claude-sonnet-4-5", request_id="req_seen_by_proxy",
                                    input_tokens=4, output_tokens=10)])
        result = await run_import(store, root, tmp_path / "none")
    assert result["claude-code"]["duplicates"] == 1


def test_import_command_reads_the_default_locations(meterline_home: Path, tmp_path: Path) -> None:
    fake_home = tmp_path / "user"
    session = fake_home / ".claude" / "projects" / "p" / "s.jsonl"
    write(session, [claude_line("msg_1", "req_1", 10)])
    age(session)
    extra = tmp_path / "extra-claude"
    write(extra / "projects" / "q" / "t.jsonl", [claude_line("msg_9", "req_9", 10)])
    age(extra / "projects" / "q" / "t.jsonl")
    codex = tmp_path / "codex-home"
    write(codex / "sessions" / "r.jsonl", codex_lines())
    env = {**os.environ, "HOME": str(fake_home), "CLAUDE_CONFIG_DIR": str(extra),
           "CODEX_HOME": str(codex)}
    result = subprocess.run([sys.executable, "-m", "agent", "import", "--json"], env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["claude-code"]["inserted"] == 2
    assert summary["codex"]["inserted"] == 2
    text = subprocess.run([sys.executable, "-m", "agent", "import"], env=env,
                          capture_output=True, text=True, timeout=60).stdout
    assert "claude-code: 0 new calls from 2 files" in text


@pytest.mark.parametrize("garbage", [b"\x00\xff\xfe", b"[]", b'{"type":"assistant"}',
                                     b'{"type":"assistant","message":{"usage":{}}}'])
def test_garbage_lines_are_skipped(garbage: bytes) -> None:
    assert parse_claude_code([garbage]) == []
    assert parse_codex([garbage], CodexState()) == []


# -- the acceptance tester's findings -------------------------------------------------------

def codex_event(kind: str, payload: dict[str, Any], ts: datetime) -> bytes:
    stamp = ts.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return json.dumps({"timestamp": stamp, "type": kind, "payload": payload}).encode()


def rollout(calls: list[tuple[datetime, int, int, int, int]], *, model: str = "gpt-5-codex",
            session: str | None = "sess-1", total_before: int = 0) -> list[bytes]:
    """A Codex session file: each call is (ts, prompt incl. cached, cached, output,
    reasoning), with running totals as Codex writes them."""
    start = calls[0][0] if calls else datetime.now(UTC)
    lines = []
    if session is not None:
        lines.append(codex_event("session_meta", {"id": session, "cwd": CWD}, start))
    lines.append(codex_event("turn_context", {"model": model, "cwd": CWD}, start))
    total = total_before
    for ts, prompt, cached, output, reasoning in calls:
        last = {"input_tokens": prompt, "cached_input_tokens": cached, "output_tokens": output,
                "reasoning_output_tokens": reasoning, "total_tokens": prompt + output}
        total += prompt + output
        lines.append(codex_event("event_msg", {"type": "token_count", "info": {
            "total_token_usage": {**last, "total_tokens": total},
            "last_token_usage": last}}, ts))
    return lines


def proxy_codex_call(ts: datetime, prompt: int = 10_000, cached: int = 8000,
                     output: int = 500, reasoning: int = 300, **fields: Any) -> Any:
    """The call the metering proxy stores for a Codex request (OpenAI Responses usage, read
    by the proxy's own meter: its fresh input is the prompt less the cached part)."""
    from agent import Call
    from agent._ids import new_id
    from agent._proxy._usage import Tally, apply_openai_usage

    tally = Tally()
    apply_openai_usage(tally, {"input_tokens": prompt,
                               "input_tokens_details": {"cached_tokens": cached},
                               "output_tokens": output,
                               "output_tokens_details": {"reasoning_tokens": reasoning}})
    base: dict[str, Any] = {
        "tool": "codex", "source": "proxy", "provider": "openai", "model": "gpt-5-codex",
        "kind": "agent", "ts": ts, "request_id": f"resp_{new_id()}",
        "input_tokens": tally.input_tokens, "cache_read_tokens": tally.cache_read_tokens,
        "output_tokens": tally.output_tokens, "reasoning_tokens": tally.reasoning_tokens}
    return Call(**{**base, **fields})


def stored(db: sqlite3.Connection) -> list[tuple[Any, ...]]:
    return db.execute("SELECT source, model, input_tokens, cache_read_tokens, output_tokens, "
                      "reasoning_tokens FROM calls ORDER BY seq").fetchall()


def test_a_codex_call_seen_by_the_proxy_and_in_codex_log_counts_once(
        meterline_home: Path) -> None:
    import asyncio

    from agent import Store

    at = datetime.now(UTC) - timedelta(minutes=10)

    async def record_proxy_call() -> None:
        async with await Store.open() as store:
            await store.add_calls([proxy_codex_call(at)])

    asyncio.run(record_proxy_call())
    sessions = Path.home() / ".codex" / "sessions" / "2026" / "11" / "29"
    session_file = sessions / "rollout-0199c4a1-7f3e-7a52-9d0e-5b1f00c0de01.jsonl"
    write(session_file, rollout([(at + timedelta(seconds=2), 10_000, 8000, 500, 300)]))
    age(session_file)
    result = subprocess.run([sys.executable, "-m", "agent", "import", "--tool", "codex",
                             "--json"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["codex"]["inserted"] == 0
    assert json.loads(result.stdout)["codex"]["duplicates"] == 1
    again = subprocess.run([sys.executable, "-m", "agent", "import", "--tool", "codex"],
                           capture_output=True, text=True, timeout=60)
    assert "codex: 0 new calls" in again.stdout
    db = sqlite3.connect(meterline_home / "meterline.db")
    assert stored(db) == [("proxy", "gpt-5-codex", 2000, 8000, 500, 300)]


async def test_codex_calls_match_proxy_calls_one_to_one(tmp_path: Path) -> None:
    codex_root = tmp_path / "codex" / "sessions"
    at = datetime.now(UTC) - timedelta(minutes=30)
    same = (10_000, 8000, 500, 300)
    session_file = codex_root / "2026" / "11" / "29" / "rollout-a.jsonl"
    # Two identical real calls, both through the proxy and both in the log: two calls.
    write(session_file, rollout([(at + timedelta(seconds=3), *same),
                                 (at + timedelta(seconds=23), *same)]))
    age(session_file)
    async with await Store.open(tmp_path / "s.db") as store:
        await store.add_calls([proxy_codex_call(at), proxy_codex_call(at + timedelta(seconds=20))])
        first = await run_import(store, tmp_path / "none", codex_root)
        assert (first["codex"]["inserted"], first["codex"]["duplicates"]) == (0, 2)
        # A third identical call, in the log only (read by a later import): it is stored;
        # the two proxy calls are taken already.
        write(session_file, rollout([(at + timedelta(seconds=43), *same)], session=None,
                                    total_before=2 * 10_500)[1:])
        age(session_file)
        second = await run_import(store, tmp_path / "none", codex_root)
        assert (second["codex"]["inserted"], second["codex"]["duplicates"]) == (1, 0)
        # The file read again from its start (here: a copy of it): nothing new, and no
        # call taken for a proxy call anew.
        copy = session_file.with_name("copy.jsonl")
        copy.write_bytes(session_file.read_bytes())
        session_file.unlink()
        age(copy)
        third = await run_import(store, tmp_path / "none", codex_root)
        assert (third["codex"]["inserted"], third["codex"]["duplicates"]) == (0, 3)
        rows = await store.read(stored)
    assert [row[0] for row in rows] == ["proxy", "proxy", "import:codex"]


async def test_a_codex_call_is_never_dropped_on_a_loose_match(tmp_path: Path) -> None:
    codex_root = tmp_path / "codex" / "sessions"
    at = datetime.now(UTC) - timedelta(hours=2)
    near_misses = [
        proxy_codex_call(at, output=501),  # a figure off by one
        proxy_codex_call(at, prompt=10_000, cached=7999),  # same prompt, split otherwise
        proxy_codex_call(at, model="gpt-5"),  # another model
        proxy_codex_call(at, model="gpt-5-codex-mini"),  # not a dated snapshot of it
        proxy_codex_call(at - timedelta(minutes=6)),  # too far apart
        proxy_codex_call(at, estimated=True),  # the proxy's figures are a guess
        proxy_codex_call(at, tool="unknown"),  # not Codex
        proxy_codex_call(at, source="record"),  # not the proxy
    ]
    session_file = codex_root / "rollout-b.jsonl"
    write(session_file, rollout([(at, 10_000, 8000, 500, 300)]))
    snapshot_file = codex_root / "rollout-c.jsonl"
    write(snapshot_file, rollout([(at + timedelta(minutes=1), 4000, 0, 40, 0)], model="gpt-5",
                                 session="sess-2"))
    async with await Store.open(tmp_path / "s.db") as store:
        # The one exact match: the proxy stores the dated snapshot the response names.
        await store.add_calls([*near_misses, proxy_codex_call(
            at + timedelta(minutes=1, seconds=-1), 4000, 0, 40, 0, model="gpt-5-2025-08-07")])
        result = await run_import(store, tmp_path / "none", codex_root)
        rows = await store.read(stored)
    assert (result["codex"]["inserted"], result["codex"]["duplicates"]) == (1, 1)
    assert rows[-1] == ("import:codex", "gpt-5-codex", 2000, 8000, 500, 300)
    assert len(rows) == len(near_misses) + 2


def padded_user_line(size: int) -> bytes:
    """A user line of exactly ``size`` bytes (without its newline)."""
    empty = json.dumps({"type": "user", "message": {"role": "user", "content": ""},
                        "timestamp": "2026-11-27T09:59:59Z", "cwd": CWD})
    return empty.replace('"content": ""', '"content": "' + "x" * (size - len(empty)) + '"'
                         ).encode()


async def test_a_response_is_never_split_between_two_reads(tmp_path: Path) -> None:
    from agent._importers import CHUNK_BYTES

    root = tmp_path / "claude"
    session = root / "p" / "s.jsonl"
    first = claude_line("msg_1", "req_1", 1)
    last = claude_line("msg_1", "req_1", 700)
    # The response's first line ends exactly where the first read of the file ends.
    filler = padded_user_line(CHUNK_BYTES - len(first) - 2)
    write(session, [filler, first, last])
    assert len(filler) + len(first) + 2 == CHUNK_BYTES
    age(session)
    async with await Store.open(tmp_path / "s.db") as store:
        result = await run_import(store, root, tmp_path / "none")
        calls = await store.read(lambda db: recent_calls(db, 10))
    assert result["claude-code"] == {"files": 1, "inserted": 1, "duplicates": 0,
                                     "updated": 0, "skipped": 0}
    assert [c["output_tokens"] for c in calls] == [700]


async def test_a_line_longer_than_a_read_does_not_stop_the_file(tmp_path: Path) -> None:
    from agent._importers import CHUNK_BYTES

    root = tmp_path / "claude"
    session = root / "p" / "s.jsonl"
    # A tool's output of 9 MiB in one line, then a response: the file used to stop there.
    write(session, [padded_user_line(CHUNK_BYTES + 2**20), claude_line("msg_1", "req_1", 40)])
    age(session)
    async with await Store.open(tmp_path / "s.db") as store:
        result = await run_import(store, root, tmp_path / "none")
        calls = await store.read(lambda db: recent_calls(db, 10))
    assert result["claude-code"]["inserted"] == 1
    assert [c["output_tokens"] for c in calls] == [40]


async def rolled_up_totals(store: Store) -> tuple[Any, ...]:
    """The rollups' sums beside the calls' own (equal when the rollups are right)."""
    from agent._queries import breakdown, usage_between

    def read(db: Any) -> tuple[Any, ...]:
        total = usage_between(db, 0, 2**62)
        by_model = breakdown(db, 0, 2**62, "model")
        own = db.execute("SELECT COUNT(*), SUM(total_tokens), SUM(cost_micro_usd) "
                         "FROM calls").fetchone()
        return ((total.calls, total.tokens, total.cost_micro),
                [(b.calls, b.tokens, b.cost_micro) for b in by_model], own)

    return await store.read(read)


@pytest.mark.parametrize("rolled_up", [True, False])
async def test_a_response_completed_after_it_was_imported_is_brought_up_to_date(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, rolled_up: bool) -> None:
    from agent._pricing import price_call

    if not rolled_up:  # the calls stay above the rollups' mark until the store closes
        monkeypatch.setattr("agent._store.ROLL_UP_AFTER_S", 3600.0)
    root = tmp_path / "claude"
    session = root / "p" / "s.jsonl"
    write(session, [claude_line("msg_0", "req_0", 50), claude_line("msg_1", "req_1", 1)])
    age(session, 3600)
    store = await Store.open(tmp_path / "s.db")
    try:
        first = await run_import(store, root, tmp_path / "none")
        assert first["claude-code"]["inserted"] == 2
        if rolled_up:  # a store folds what it stored into the rollups when it closes
            await store.close()
            store = await Store.open(tmp_path / "s.db")
        mark = await store.read(lambda db: db.execute(
            "SELECT rolled_up_seq FROM rollup_state").fetchone()[0])
        assert mark == (2 if rolled_up else 0)
        # The response's last line, written an hour after its first.
        write(session, [claude_line("msg_1", "req_1", 700)])
        age(session, 3600)
        second = await run_import(store, root, tmp_path / "none")
        calls = {c["request_id"]: c for c in await store.read(lambda db: recent_calls(db, 10))}
        live = await rolled_up_totals(store)
    finally:
        await store.close()
    assert second["claude-code"] == {"files": 1, "inserted": 0, "duplicates": 0,
                                     "updated": 1, "skipped": 0}
    whole = parse_claude_code([claude_line("msg_1", "req_1", 700)])[0]
    assert calls["req_1"]["output_tokens"] == 700
    assert calls["req_1"]["cost_micro_usd"] == price_call(whole)
    assert calls["req_0"]["output_tokens"] == 50
    async with await Store.open(tmp_path / "s.db") as store:
        settled = await rolled_up_totals(store)
    for totals in (live, settled):
        (calls_n, tokens, cost), by_model, own = totals
        assert (calls_n, tokens, cost) == own
        assert by_model == [own]


async def test_a_synced_call_is_not_changed_by_a_larger_copy(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    root = tmp_path / "claude"
    session = root / "p" / "s.jsonl"
    write(session, [claude_line("msg_1", "req_1", 1)])
    age(session, 3600)
    async with await Store.open(tmp_path / "s.db") as store:
        await run_import(store, root, tmp_path / "none")
        await store.advance_sync("calls", 0, 1)  # the team server has it
        write(session, [claude_line("msg_1", "req_1", 700)])
        age(session, 3600)
        with caplog.at_level("WARNING", logger="meterline.import"):
            again = await run_import(store, root, tmp_path / "none")
        calls = await store.read(lambda db: recent_calls(db, 10))
    assert again["claude-code"] == {"files": 1, "inserted": 0, "duplicates": 1,
                                    "updated": 0, "skipped": 0}
    assert [c["output_tokens"] for c in calls] == [1]
    assert "synced" in caplog.text


def test_import_skips_what_record_refuses(meterline_home: Path) -> None:
    from agent._events import MAX_TOKENS_PER_FIELD

    sessions = Path.home() / ".claude" / "projects" / "p"
    write(sessions / "s.jsonl", [
        claude_line("msg_1", "req_1", 10, input=500_000_000),
        claude_line("msg_2", "req_2", 10, ts="2099-01-01T00:00:00Z"),
        claude_line("msg_3", "req_3", 10, input=MAX_TOKENS_PER_FIELD + 1),
        claude_line("msg_4", "req_4", 10, input=MAX_TOKENS_PER_FIELD, read=0, write=0),
        claude_line("msg_5", "req_5", 10),
    ])
    age(sessions / "s.jsonl")
    codex = Path.home() / ".codex" / "sessions" / "rollout-d.jsonl"
    at = datetime.now(UTC) - timedelta(hours=1)
    write(codex, rollout([(at, 600_000_000, 0, 10, 0), (at, 100, 0, 10, 0),
                          (datetime.now(UTC) + timedelta(days=2), 100, 0, 10, 0)]))
    result = subprocess.run([sys.executable, "-m", "agent", "import", "--json"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert (summary["claude-code"]["inserted"], summary["claude-code"]["skipped"]) == (2, 3)
    assert (summary["codex"]["inserted"], summary["codex"]["skipped"]) == (1, 2)
    assert "in the future" in result.stderr
    db = sqlite3.connect(meterline_home / "meterline.db")
    assert db.execute("SELECT MAX(input_tokens), MAX(ts) FROM calls").fetchone() == (
        MAX_TOKENS_PER_FIELD, int(at.timestamp() * 1000))
    # Read again: still skipped, never stored, and the text says so.
    write(sessions / "s.jsonl", [claude_line("msg_6", "req_6", 10, ts="2099-01-01T00:00:00Z")])
    age(sessions / "s.jsonl")
    text = subprocess.run([sys.executable, "-m", "agent", "import", "--tool", "claude-code"],
                          capture_output=True, text=True, timeout=60).stdout
    assert "claude-code: 0 new calls from 1 files (1 skipped" in text


async def test_codex_files_without_session_meta_are_told_apart(tmp_path: Path) -> None:
    codex_root = tmp_path / "codex" / "sessions"
    at = datetime.now(UTC) - timedelta(hours=1)
    same = [(at, 5000, 1000, 300, 100)]
    named = ["rollout-2026-11-29T06-00-00-0199c4a1-0000-7000-8000-00000000000a.jsonl",
             "rollout-2026-11-29T06-00-00-0199c4a1-0000-7000-8000-00000000000b.jsonl"]
    for name in named:
        write(codex_root / "2026" / "11" / "29" / name, rollout(same, session=None))
    for folder in ("28", "29"):  # no uuid in their names: told apart by their paths
        write(codex_root / "2026" / "11" / folder / "rollout.jsonl", rollout(same, session=None))
    async with await Store.open(tmp_path / "s.db") as store:
        result = await run_import(store, tmp_path / "none", codex_root)
    assert (result["codex"]["inserted"], result["codex"]["duplicates"]) == (4, 0)
    from agent._importers import codex_file_session

    # Codex names the file after the session: the same ids as with its session_meta line.
    path = codex_root / "2026" / "11" / "29" / named[0]
    assert codex_file_session(path, codex_root) == "0199c4a1-0000-7000-8000-00000000000a"
    with_meta = parse_codex(rollout(same, session="0199c4a1-0000-7000-8000-00000000000a"),
                            CodexState())
    without = parse_codex(rollout(same, session=None),
                          CodexState(session=codex_file_session(path, codex_root)))
    assert [c.id for c in with_meta] == [c.id for c in without]
