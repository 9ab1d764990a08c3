"""Committed lines: accepted suggestions recognised in real git commits, each line once."""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agent import Store, SuggestionEvent, line_fingerprints
from agent._commits import added_fingerprints, scan

SUGGESTED = """def total_cost(calls):
    return sum(call.cost_micro_usd or 0 for call in calls)


def describe(call):
    return f"{call.model}: {call.total_tokens} tokens"
"""


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True,
                          check=True).stdout


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    folder = tmp_path / "repo"
    folder.mkdir()
    git(folder, "init", "-q", "-b", "main")
    git(folder, "config", "user.email", "dev@example.com")
    git(folder, "config", "user.name", "Dev")
    (folder / "README").write_text("hello\n")
    git(folder, "add", ".")
    git(folder, "commit", "-q", "-m", "start")
    return folder


def commit(repo: Path, name: str, text: str, message: str = "work") -> str:
    (repo / name).write_text(text)
    git(repo, "add", name)
    git(repo, "commit", "-q", "-m", message)
    return git(repo, "rev-parse", "HEAD").strip()


async def accept(store: Store, suggestion_id: str, text: str) -> None:
    await store.add_suggestion_events([SuggestionEvent(
        suggestion_id=suggestion_id, type="accepted", chars=len(text),
        lines=text.count("\n"), tool="meterline-lsp", model="gpt-4o", language="python",
        line_hashes=line_fingerprints(text))])


def test_fingerprints_ignore_indentation_and_trivial_lines() -> None:
    assert line_fingerprints("    x = compute_total(a, b)\n}\n\n  return\n") == \
        line_fingerprints("x = compute_total(a, b)   ")
    diff = "+++ b/f.py\n+    x = compute_total(a, b)\n-    old_line_removed_here\n+}\n"
    assert list(added_fingerprints(diff)) == line_fingerprints("x = compute_total(a, b)")


async def test_a_commit_claims_the_accepted_lines_it_adds(tmp_path: Path, repo: Path) -> None:
    async with await Store.open(tmp_path / "s.db") as store:
        await accept(store, "s1", SUGGESTED)
        await accept(store, "s2", "print('this one was never committed anywhere')\n")
        edited = SUGGESTED.replace("describe(call)", "describe(call, short=False)")
        sha = commit(repo, "costs.py", "import os\n\n" + edited)
        found, result, lines = await scan(store, repo)
        assert found.sha == sha
        # Three of the four fingerprinted lines survived the edit.
        assert (result.inserted, lines) == (1, 3)
        again = await scan(store, repo)
        assert (again[1].inserted, again[2]) == (0, 0)
        # The same lines in a later commit (a cherry-pick, a revert of a revert) count once.
        commit(repo, "copy.py", edited, "copy")
        assert (await scan(store, repo))[2] == 0
        rows = await store.read(lambda db: db.execute(
            "SELECT suggestion_id, lines, chars, commit_id, model FROM suggestion_events "
            "WHERE type = 'committed'").fetchall())
    assert len(rows) == 1
    suggestion_id, committed_lines, chars, commit_id, model = rows[0]
    assert (suggestion_id, committed_lines, commit_id, model) == ("s1", 3, sha, "gpt-4o")
    assert chars == sum(len(line.strip()) for line in edited.splitlines()
                        if line.strip() and "describe" not in line)


async def test_outside_a_repository_is_one_clear_error(tmp_path: Path) -> None:
    from agent import InputError

    async with await Store.open(tmp_path / "s.db") as store:
        with pytest.raises(InputError, match="git rev-parse"):
            await scan(store, tmp_path)


def test_the_hook_scans_after_every_commit(meterline_home: Path, repo: Path) -> None:
    async def accepted() -> None:
        async with await Store.open() as store:
            await accept(store, "s1", SUGGESTED)

    asyncio.run(accepted())
    (repo / ".git" / "hooks" / "post-commit").write_text("#!/bin/sh\necho existing hook\n")
    for _ in range(2):  # installing twice adds the line once and keeps the existing hook
        done = subprocess.run([sys.executable, "-m", "agent", "commits", "hook", "--repo",
                               str(repo)], capture_output=True, text=True, check=True)
    hook = (repo / ".git" / "hooks" / "post-commit").read_text()
    assert "echo existing hook" in hook
    assert hook.count("commits scan") == 1
    assert os.access(repo / ".git" / "hooks" / "post-commit", os.X_OK)
    assert "installed" in done.stdout
    commit(repo, "costs.py", SUGGESTED)
    deadline = time.monotonic() + 20
    committed = 0
    while committed == 0 and time.monotonic() < deadline:
        time.sleep(0.2)
        log = subprocess.run([sys.executable, "-m", "agent", "status", "--json"],
                             capture_output=True, text=True, check=True)
        assert json.loads(log.stdout)["state"] == "ok"
        with sqlite3.connect(meterline_home / "meterline.db") as db:
            committed = db.execute("SELECT COALESCE(SUM(lines), 0) FROM suggestion_events "
                                   "WHERE type = 'committed'").fetchone()[0]
    assert committed == 4
