"""Importers of Claude Code and Codex CLI logs: incremental, exact, never twice."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
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
            "claude-code": {"files": 1, "inserted": 0, "duplicates": 0},
            "codex": {"files": 1, "inserted": 0, "duplicates": 0}}
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
    assert again["claude-code"] == {"files": 1, "inserted": 1, "duplicates": 1}


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
