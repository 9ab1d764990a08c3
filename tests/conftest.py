"""Shared fixtures. Every test runs with METERLINE_HOME in its own temporary folder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def meterline_home(tmp_path_factory: pytest.TempPathFactory,
                   monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh, empty METERLINE_HOME for every test; the real home is never touched: HOME
    and the XDG folders point into a temporary folder too (the importers read tools' logs
    under HOME, and every subprocess a test starts inherits this environment)."""
    home = tmp_path_factory.mktemp("meterline-home")
    monkeypatch.setenv("METERLINE_HOME", str(home))
    user = tmp_path_factory.mktemp("user-home")
    monkeypatch.setenv("HOME", str(user))
    for name in ("XDG_DATA_HOME", "XDG_CONFIG_HOME", "XDG_CACHE_HOME", "XDG_STATE_HOME",
                 "CLAUDE_CONFIG_DIR", "CODEX_HOME"):
        monkeypatch.delenv(name, raising=False)
    return home


@pytest.fixture
def pg_url() -> str:
    """The PostgreSQL for backend tests: required when METERLINE_TEST_PG_URL is set."""
    url = os.environ.get("METERLINE_TEST_PG_URL")
    if not url:
        pytest.skip("METERLINE_TEST_PG_URL is not set (CI sets it; see .ci/run)")
    return url
