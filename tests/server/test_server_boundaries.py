"""The server stands alone: it imports none of agent, lsp or tui (it shares only the wire
schema with them), and ``meterline server --help`` does not load the web stack."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import server

FORBIDDEN = {"agent", "lsp", "tui"}
PACKAGE = Path(server.__file__).parent


def test_no_source_file_imports_the_other_parts() -> None:
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            offenders += [f"{path.relative_to(PACKAGE)}:{node.lineno} imports {name}"
                          for name in names if name.split(".")[0] in FORBIDDEN]
    assert offenders == []


def test_importing_every_server_module_loads_none_of_them() -> None:
    script = """
import importlib, pkgutil, sys
import server
for module in pkgutil.walk_packages(server.__path__, "server."):
    if not module.name.startswith("server.migrations"):
        importlib.import_module(module.name)
importlib.import_module("server.migrations.versions.v0001_initial")
loaded = sorted({name.split(".")[0] for name in sys.modules} & {"agent", "lsp", "tui"})
print(",".join(loaded))
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == ""


def test_the_cli_module_is_light() -> None:
    script = ("import sys, server.cli; "
              "print(sorted(m for m in ('fastapi', 'sqlalchemy', 'uvicorn', 'alembic') "
              "if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
