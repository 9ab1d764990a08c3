"""The repository keeps its promises: README's two commands first, CI runs the same tests."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    first_block = text.split("```sh\n", 1)[1].split("```", 1)[0]
    return [line for line in first_block.splitlines() if line.strip()]


def test_readme_opens_with_exactly_two_commands() -> None:
    text = (ROOT / "README.md").read_text()
    assert text.index("```sh") < text.index("\n## ")  # before anything else of substance
    up, tests = readme_commands()
    assert up.endswith("meterline up")
    assert "pytest" in tests


def test_ci_runs_the_readme_test_command() -> None:
    _, tests = readme_commands()
    ci = (ROOT / ".ci" / "run").read_text()
    assert tests in ci.splitlines()
    assert "METERLINE_TEST_PG_URL" in ci


def test_every_command_the_readme_names_exists() -> None:
    listed = subprocess.run([sys.executable, "-m", "agent", "--help"], capture_output=True,
                            text=True, check=True).stdout
    for name in ("up", "agent", "status", "tui", "budget", "log", "record", "import", "keys",
                 "login", "logout", "sync", "lsp", "server", "path", "commits"):
        assert f"  {name} " in listed or f"  {name}\n" in listed, name
