"""Shared fixtures. Every test runs with METERLINE_HOME in its own temporary folder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def meterline_home(tmp_path_factory: pytest.TempPathFactory,
                   monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh, empty METERLINE_HOME for every test; the real home is never touched."""
    home = tmp_path_factory.mktemp("meterline-home")
    monkeypatch.setenv("METERLINE_HOME", str(home))
    return home


@pytest.fixture
def pg_url() -> str:
    """The PostgreSQL for backend tests: required when METERLINE_TEST_PG_URL is set."""
    url = os.environ.get("METERLINE_TEST_PG_URL")
    if not url:
        pytest.skip("METERLINE_TEST_PG_URL is not set (CI sets it; see .ci/run)")
    return url
