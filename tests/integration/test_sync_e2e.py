"""The agent and the team server together, as a developer and a lead use them: real
`meterline server run` on loopback, real `meterline login/sync`, real stores."""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

METERLINE = [sys.executable, "-m", "agent"]


def cli(*args: str, stdin: str | None = None, env: dict[str, str] | None = None
        ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*METERLINE, *args], input=stdin, capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=120)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Team:
    """A team server on SQLite in its own folder, with an admin and a developer."""

    def __init__(self, folder: Path) -> None:
        self.db = f"sqlite:///{folder / 'server.db'}"
        admin = self.admin("init")
        self.admin_token = admin["token"]["token"]
        self.admin("team", "create", "core")
        alice = self.admin("member", "create", "alice", "--team", "core")
        self.alice_token = alice["token"]["token"]
        self.admin("budget", "set", "--developer", "alice", "--name", "team-daily",
                   "--period", "day", "--usd", "5", "--mode", "enforce",
                   "--timezone", "Europe/Paris")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None

    def admin(self, *args: str) -> dict[str, object]:
        done = cli("server", "--db", self.db, "--json", *args)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout) if done.stdout.strip() else {}

    def start(self) -> None:
        self.process = subprocess.Popen(
            [*METERLINE, "server", "--db", self.db, "run", "--port", str(self.port),
             "--graceful-timeout", "2", "--no-access-log", "--log-level", "warning"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.1)
        raise RuntimeError("the team server did not start")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout=20)

    def report(self, token: str) -> dict[str, object]:
        today = datetime.now(UTC).date()
        reply = httpx.get(self.url + "/api/v1/reports/outcomes", timeout=10,
                          headers={"Authorization": f"Bearer {token}"},
                          params={"from": (today - timedelta(days=2)).isoformat(),
                                  "to": (today + timedelta(days=1)).isoformat(),
                                  "group_by": "model"})
        assert reply.status_code == 200, reply.text
        body: dict[str, object] = reply.json()
        return body


@pytest.fixture
def team(tmp_path: Path) -> Iterator[Team]:
    server = Team(tmp_path / "team")
    server.start()
    yield server
    server.stop()


CALLS = [
    {"tool": "claude-code", "provider": "anthropic", "model": "claude-sonnet-4-5",
     "input_tokens": 1000, "output_tokens": 200, "cache_read_tokens": 5000,
     "request_id": "req_a", "language": "python", "workspace": "/home/alice/secret-repo"},
    {"tool": "aider", "provider": "openai", "model": "gpt-4o", "input_tokens": 300,
     "output_tokens": 50, "request_id": "req_b"},
    {"tool": "script", "provider": "acme", "model": "acme-1", "input_tokens": 7},
]


def test_a_developer_syncs_to_the_team_server(meterline_home: Path, team: Team) -> None:
    assert cli("record", stdin=json.dumps(CALLS)).returncode == 0

    login = cli("login", "--server", team.url, stdin=team.alice_token + "\n")
    assert login.returncode == 0, login.stderr
    assert "1 budget(s)" in login.stdout
    assert team.alice_token not in login.stdout + login.stderr
    assert team.alice_token not in (meterline_home / "config.toml").read_text()

    first = cli("sync", "--json")
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout) == {"sent": 3, "inserted": 3, "duplicates": 0,
                                        "budgets": 1}
    again = json.loads(cli("sync", "--json").stdout)
    assert again["sent"] == 0

    # The lead's budget is now in force locally, beside none of our own.
    status = json.loads(cli("status", "--json").stdout)
    assert [b["budget"] for b in status["budgets"]] == ["team-daily"]
    assert status["limitUsd"] == 5.0
    assert status["mode"] == "enforce"

    # The server's figures are the store's figures.
    local = json.loads(cli("log", "--json").stdout)
    report = team.report(team.alice_token)
    total = report["total"]
    assert isinstance(total, dict)
    assert total["calls"] == 3
    assert total["unknown_cost_calls"] == 1
    assert total["tokens"]["total"] == sum(c["input_tokens"] + c["output_tokens"]
                                           + c["cache_read_tokens"] for c in local)
    assert total["cost_usd"] == pytest.approx(
        sum(c["cost_micro_usd"] or 0 for c in local) / 1e6)
    models = {row["group"]["model"] for row in report["rows"]}  # type: ignore[attr-defined]
    assert models == {"claude-sonnet-4-5", "gpt-4o", "acme-1"}

    # What left the machine holds no path: the workspace went out as a hash.
    with sqlite3.connect(team.db.removeprefix("sqlite:///")) as db:
        dump = "\n".join(db.iterdump())
    assert "secret-repo" not in dump
    assert "/home/alice" not in dump


def test_a_resend_after_a_crash_counts_once(meterline_home: Path, team: Team) -> None:
    cli("record", stdin=json.dumps(CALLS))
    cli("login", "--server", team.url, stdin=team.alice_token)
    assert json.loads(cli("sync", "--json").stdout)["inserted"] == 3
    # As if the process died after the server stored the batch but before the cursor moved.
    with sqlite3.connect(meterline_home / "meterline.db") as db:
        db.execute("UPDATE sync_state SET last_seq = 0")
    resent = json.loads(cli("sync", "--json").stdout)
    assert (resent["sent"], resent["inserted"], resent["duplicates"]) == (3, 0, 3)
    total = team.report(team.alice_token)["total"]
    assert isinstance(total, dict)
    assert total["calls"] == 3


def test_login_refuses_a_bad_token_and_stores_nothing(meterline_home: Path, team: Team) -> None:
    refused = cli("login", "--server", team.url, stdin="mlt_000000000000_nope\n")
    assert refused.returncode == 2
    assert "refused this token" in refused.stderr
    assert not (meterline_home / "secrets.json").exists()
    bad_address = cli("login", "--server", "ftp://example.com", stdin="x\n")
    assert bad_address.returncode == 2
    assert "--server" in bad_address.stderr


def test_a_server_that_is_down_keeps_events_pending(meterline_home: Path, team: Team) -> None:
    cli("record", stdin=json.dumps(CALLS))
    cli("login", "--server", team.url, stdin=team.alice_token)
    team.stop()
    failed = cli("sync")
    assert failed.returncode == 1
    assert "cannot reach" in failed.stderr
    with sqlite3.connect(meterline_home / "meterline.db") as db:
        last_seq, error = db.execute(
            "SELECT last_seq, last_error FROM sync_state WHERE stream = 'calls'").fetchone()
    assert last_seq == 0
    assert "cannot reach" in error
    team.start()
    assert json.loads(cli("sync", "--json").stdout)["inserted"] == 3


def test_suggestion_outcomes_reach_the_report(meterline_home: Path, team: Team) -> None:
    import asyncio

    from agent import Call, Store, SuggestionEvent

    async def work() -> None:
        async with await Store.open() as store:
            call = Call(tool="meterline-lsp", provider="openai", model="gpt-4o", kind="inline",
                        input_tokens=100, output_tokens=20)
            await store.add_calls([call])
            common = {"suggestion_id": "s1", "call_id": call.id, "model": "gpt-4o",
                      "tool": "meterline-lsp", "language": "python"}
            await store.add_suggestion_events([
                SuggestionEvent(type="offered", chars=60, lines=3, **common),
                SuggestionEvent(type="accepted", chars=60, lines=3, **common),
                SuggestionEvent(type="retained", chars=40, lines=2, checkpoint_s=900, **common),
            ])

    asyncio.run(work())
    cli("login", "--server", team.url, stdin=team.alice_token)
    assert json.loads(cli("sync", "--json").stdout)["inserted"] == 4
    total = team.report(team.alice_token)["total"]
    assert isinstance(total, dict)
    funnel = total["funnel"]
    assert (funnel["offered"]["lines"], funnel["accepted"]["lines"]) == (3, 3)
    retained = {r["checkpoint_s"]: r["lines"] for r in total["retention"]}
    assert retained == {30: 0, 120: 0, 300: 0, 600: 0, 900: 2}
    assert total["per_line"]["tokens_per_retained_line"] == 60


def test_the_agent_process_syncs_in_the_background(meterline_home: Path, team: Team) -> None:
    cli("login", "--server", team.url, stdin=team.alice_token)
    with (meterline_home / "config.toml").open("a") as config:
        config.write("interval_s = 1\n")  # appended to the [sync] table login wrote
    agent = subprocess.Popen([*METERLINE, "agent", "--no-proxy"], stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True)
    try:
        assert cli("record", stdin=json.dumps(CALLS)).returncode == 0
        deadline = time.monotonic() + 30
        calls = 0
        while calls < 3 and time.monotonic() < deadline:
            time.sleep(0.3)
            total = team.report(team.alice_token)["total"]
            assert isinstance(total, dict)
            calls = int(total["calls"])
        assert calls == 3
    finally:
        agent.send_signal(signal.SIGTERM)
        _, err = agent.communicate(timeout=30)
    assert agent.returncode == 0, err
    assert "stopped" in err
