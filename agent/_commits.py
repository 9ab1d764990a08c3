"""Committed lines: which accepted suggestions reached a git commit.

When a suggestion is accepted, the sidecar keeps fingerprints of its lines on this machine
(``accepted_lines``; a hash of each line without its indentation, never synced). After a
commit, ``meterline commits scan`` (run by the git hook ``meterline commits hook``
installs) reads the lines the commit added, fingerprints them the same way and, for every
suggestion accepted in the last ``LOOKBACK_DAYS`` some of whose lines are there, records a
``suggestion.committed`` event with the number of its lines (and their characters) and
the commit id. A line is claimed by the first commit that adds it, so amending, rebasing
or cherry-picking never counts it twice. Only the counts and the commit id are synced; the
team server turns them into dollars per committed line, and, once CI reports the commit
deployed, per deployed line.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import uuid
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent._errors import InputError
from agent._events import SuggestionEvent, line_fingerprint

if TYPE_CHECKING:
    from agent._store import InsertResult, Store

#: Accepted lines older than this are not looked for in new commits.
LOOKBACK_DAYS = 30
_NAMESPACE = uuid.UUID("0c5c2c1e-0d0e-4e2b-9a8f-636f6d6d6974")
_HOOK_MARK = "# meterline: count accepted assistant code that reaches a commit"


@dataclass(frozen=True)
class Commit:
    sha: str
    #: Fingerprint → characters of the line (without indentation), for each line added.
    added: dict[str, int]


def _git(repo: Path, *args: str) -> str:
    try:
        done = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True,
                              timeout=60, check=False)
    except FileNotFoundError:
        raise InputError("git is not installed (or not on PATH)") from None
    if done.returncode != 0:
        reason = done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "failed"
        raise InputError(f"git {args[0]} in {repo}: {reason}")
    return done.stdout


def read_commit(repo: Path, rev: str = "HEAD") -> Commit:
    """The lines ``rev`` added (its diff against its first parent, or everything for a root
    commit), fingerprinted."""
    sha = _git(repo, "rev-parse", "--verify", f"{rev}^{{commit}}").strip()
    diff = _git(repo, "show", "--format=", "--unified=0", "--no-color", "--no-ext-diff",
                "--first-parent", "--no-renames", sha)
    return Commit(sha, added_fingerprints(diff))


def added_fingerprints(diff: str) -> dict[str, int]:
    """Fingerprints of the lines a unified diff adds (pure)."""
    added: dict[str, int] = {}
    for line in diff.splitlines():
        if line.startswith("+") and not line.startswith("+++"):
            fingerprint = line_fingerprint(line[1:])
            if fingerprint:
                added[fingerprint] = len(line[1:].strip())
    return added


def claims(commit: Commit, candidates: list[tuple[str, str]]
           ) -> dict[str, list[tuple[str, int]]]:
    """Suggestion id → [(line hash, chars)] of its unclaimed accepted lines the commit adds
    (pure). ``candidates`` are (suggestion id, line hash) pairs; a line the commit adds once
    is claimed once, by the suggestion accepted first."""
    left = dict(commit.added)
    claimed: dict[str, list[tuple[str, int]]] = defaultdict(list)
    for suggestion_id, line_hash in candidates:
        chars = left.pop(line_hash, None)
        if chars is not None:
            claimed[suggestion_id].append((line_hash, chars))
    return dict(claimed)


def _candidates(db: Any, hashes: list[str], since_ms: int
                ) -> tuple[list[tuple[str, str]], dict[str, dict[str, Any]]]:
    pairs: list[tuple[str, str]] = []
    for start in range(0, len(hashes), 500):
        chunk = hashes[start:start + 500]
        marks = ",".join("?" * len(chunk))
        pairs.extend(db.execute(
            f"SELECT suggestion_id, line_hash FROM accepted_lines WHERE line_hash IN ({marks}) "
            "AND commit_id IS NULL AND ts >= ? ORDER BY ts, suggestion_id", (*chunk, since_ms)))
    ids = sorted({suggestion_id for suggestion_id, _ in pairs})
    about: dict[str, dict[str, Any]] = {}
    for start in range(0, len(ids), 500):
        chunk = ids[start:start + 500]
        marks = ",".join("?" * len(chunk))
        for row in db.execute(
                "SELECT suggestion_id, call_id, tool, model, language, workspace FROM "
                f"suggestion_events WHERE type = 'accepted' AND suggestion_id IN ({marks})",
                chunk):
            about[row[0]] = dict(zip(("call_id", "tool", "model", "language", "workspace"),
                                     row[1:], strict=True))
    return pairs, about


async def scan(store: Store, repo: Path, rev: str = "HEAD") -> tuple[Commit, InsertResult, int]:
    """Record which accepted suggestions ``rev`` committed; return the commit, what was
    stored and how many lines were claimed."""
    commit = read_commit(repo, rev)
    since = int(datetime.now(UTC).timestamp() * 1000) - LOOKBACK_DAYS * 86_400_000
    pairs, about = await store.read(lambda db: _candidates(db, list(commit.added), since))
    claimed = claims(commit, pairs)
    events = [
        SuggestionEvent(
            id=str(uuid.uuid5(_NAMESPACE, f"{suggestion_id}:{commit.sha}")),
            suggestion_id=suggestion_id, type="committed", lines=len(lines),
            chars=sum(chars for _, chars in lines), commit=commit.sha,
            **about.get(suggestion_id, {}))
        for suggestion_id, lines in claimed.items()]
    marks = [(suggestion_id, line_hash, commit.sha)
             for suggestion_id, lines in claimed.items() for line_hash, _ in lines]
    result = await store.add_suggestion_events(events, claims=marks)
    return commit, result, len(marks)


def install_hook(repo: Path, command: list[str] | None = None) -> Path:
    """Add a post-commit hook that runs the scan in the background (a commit never waits
    for it); an existing hook is kept and the line added once."""
    # --git-path honours core.hooksPath and worktrees; it answers relative to the repo.
    hooks = Path(_git(repo, "rev-parse", "--git-path", "hooks").strip())
    hooks = hooks if hooks.is_absolute() else repo / hooks
    hooks.mkdir(parents=True, exist_ok=True)
    hook = hooks / "post-commit"
    runner = shlex.join(command or _meterline_command())
    line = f"{_HOOK_MARK}\n({runner} commits scan --quiet >/dev/null 2>&1 &)\n"
    text = hook.read_text() if hook.exists() else "#!/bin/sh\n"
    if _HOOK_MARK not in text:
        hook.write_text(text.rstrip("\n") + "\n" + line)
    hook.chmod(hook.stat().st_mode | 0o111)
    return hook


def _meterline_command() -> list[str]:
    """How the hook calls this meterline: the console script next to this interpreter."""
    script = Path(sys.executable).with_name("meterline")
    if script.exists() and os.access(script, os.X_OK):
        return [str(script)]
    return [sys.executable, "-m", "agent"]
