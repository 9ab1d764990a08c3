"""``meterline server`` admin commands, on SQLite and PostgreSQL, and the entry point."""

from __future__ import annotations

import asyncio
import json
import subprocess
from typing import Any

from click.testing import CliRunner, Result
from server_support import meterline_command

from server._access import Principal
from server._db import create_engine
from server._settings import database_url
from server._store import Store
from server.cli import command


def cli(db: str, *args: str) -> Result:
    return CliRunner().invoke(command, ["--db", db, *args], catch_exceptions=False)


def last_line(result: Result) -> str:
    return result.stdout.strip().splitlines()[-1]


def whose(db: str, token: str) -> Principal | None:
    async def check() -> Principal | None:
        store = Store(create_engine(database_url(db)))
        try:
            return await store.authenticate(token)
        finally:
            await store.close()

    return asyncio.run(check())


def test_init_prints_the_first_admins_token_once(db_url: str) -> None:
    first = cli(db_url, "init", "--name", "root")
    assert first.exit_code == 0, first.output
    token = last_line(first)
    admin = whose(db_url, token)
    assert admin is not None
    assert (admin.name, admin.role) == ("root", "admin")
    again = cli(db_url, "init")
    assert again.exit_code == 1
    assert "already has an admin" in again.stderr
    assert token not in cli(db_url, "token", "list").stdout  # never shown again


def test_teams_members_tokens_and_budgets(db_url: str) -> None:
    assert cli(db_url, "init").exit_code == 0
    assert cli(db_url, "team", "create", "core").exit_code == 0
    made = cli(db_url, "member", "create", "alice", "--team", "core")
    assert made.exit_code == 0, made.output
    alice_token = last_line(made)
    alice = whose(db_url, alice_token)
    assert alice is not None
    assert alice.role == "developer"
    assert len(alice.team_ids) == 1

    assert cli(db_url, "member", "create", "lena", "--role", "lead").exit_code == 0
    assert cli(db_url, "team", "add", "core", "lena").stdout.strip() == "core: alice, lena"
    listing: dict[str, Any] = json.loads(cli(db_url, "--json", "member", "list").stdout)
    assert {m["name"]: m["teams"] for m in listing["members"]} == {
        "admin": [], "alice": ["core"], "lena": ["core"]}
    shared = cli(db_url, "member", "set", "alice", "--share")
    assert "shares" in shared.stdout

    ci = cli(db_url, "--json", "ci-token", "create", "--team", "core")
    ci_token = json.loads(ci.stdout)["token"]
    assert ci_token.startswith("mlc_")
    found = whose(db_url, ci_token)
    assert found is not None
    assert found.kind == "ci"

    budget = cli(db_url, "budget", "set", "--team", "core", "--usd", "25", "--mode", "enforce")
    assert budget.exit_code == 0, budget.output
    assert "$25 per day, enforce" in budget.stdout
    budgets = json.loads(cli(db_url, "--json", "budget", "list").stdout)["budgets"]
    assert [(b["team"], b["limit_usd"]) for b in budgets] == [("core", 25.0)]
    assert cli(db_url, "budget", "remove", str(budgets[0]["id"])).exit_code == 0

    tokens = json.loads(cli(db_url, "--json", "token", "list").stdout)["tokens"]
    alice_id = next(t["id"] for t in tokens if t["member"] == "alice")
    assert cli(db_url, "token", "revoke", alice_id).exit_code == 0
    assert whose(db_url, alice_token) is None
    assert "REVOKED" in cli(db_url, "token", "list").stdout

    assert cli(db_url, "team", "remove", "core", "alice").stdout.strip() == "core: lena"
    assert cli(db_url, "team", "delete", "core").exit_code == 0
    assert whose(db_url, ci_token) is None


def test_errors_are_one_line_and_non_zero(db_url: str) -> None:
    assert cli(db_url, "init").exit_code == 0
    bad_name = cli(db_url, "team", "create", "no spaces please")
    assert bad_name.exit_code == 2
    assert bad_name.stderr.startswith("meterline server: name:")
    missing = cli(db_url, "team", "add", "nowhere", "admin")
    assert missing.exit_code == 1
    assert "no team 'nowhere'" in missing.stderr
    neither = cli(db_url, "budget", "set", "--usd", "1")
    assert neither.exit_code == 2
    assert cli(db_url, "budget", "set", "--team", "x", "--warn-at", "7").exit_code == 2


def test_an_unreachable_database_is_one_clear_line() -> None:
    result = cli("postgresql://postgres@127.0.0.1:1/nothing", "team", "list")
    assert result.exit_code == 1
    assert result.stderr.startswith("meterline server: database error:")
    assert len(result.stderr.strip().splitlines()) == 1


def test_the_console_script_finds_the_plugin() -> None:
    done = subprocess.run([*meterline_command(), "server", "--help"], capture_output=True,
                          text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    for name in ("run", "init", "migrate", "team", "member", "ci-token", "token", "budget"):
        assert f"  {name} " in done.stdout
