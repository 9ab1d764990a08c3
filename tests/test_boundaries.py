"""Dependency directions (docs/architecture.md): the core runs without the sidecar, the
dashboard or the team server; the server stands alone; the status hot path stays lean."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

FORBIDDEN = {
    "agent": {"textual", "pygls", "lsprotocol", "server", "lsp", "tui", "fastapi",
              "sqlalchemy", "alembic"},
    "server": {"agent", "lsp", "tui", "textual", "pygls"},
    "lsp": {"tui", "server", "textual"},
    "tui": {"lsp", "server", "pygls"},
}


def imported_modules(package: str) -> list[tuple[Path, str]]:
    found = []
    for path in sorted((ROOT / package).rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                found.extend((path, alias.name) for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found.append((path, node.module))
    return found


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_no_import_crosses_a_boundary(package: str) -> None:
    crossings = [f"{path.relative_to(ROOT)} imports {name}"
                 for path, name in imported_modules(package)
                 if name.split(".")[0] in FORBIDDEN[package]]
    assert crossings == []


@pytest.mark.parametrize("package", ["lsp", "tui"])
def test_sidecar_and_dashboard_use_only_the_public_api_of_agent(package: str) -> None:
    private = [f"{path.relative_to(ROOT)} imports {name}"
               for path, name in imported_modules(package)
               if name.startswith("agent.") or name == "agent._"]
    assert private == []


def loaded_after(code: str) -> set[str]:
    probe = f"{code}\nimport sys\nprint('\\n'.join(sys.modules))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         check=True, cwd=ROOT).stdout
    return {name.split(".")[0] for name in out.split()}


def test_the_whole_core_loads_without_ui_or_server_libraries() -> None:
    loaded = loaded_after("import agent, agent.cli._app, agent._store, agent._commands, "
                          "agent._up, agent._pricing")
    assert not loaded & {"textual", "pygls", "lsprotocol", "server", "lsp", "tui", "fastapi"}


def test_status_hot_path_imports_only_what_one_line_needs() -> None:
    loaded = loaded_after("from agent.cli._status_cmd import run_status")
    heavy = {"click", "msgspec", "asyncio", "aiosqlite", "httpx", "genai_prices", "pydantic",
             "tomllib", "pathlib", "dataclasses", "platformdirs", "tzlocal", "json"}
    assert not loaded & heavy
