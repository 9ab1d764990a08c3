"""Where meterline keeps its files: METERLINE_HOME moves everything."""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

import pytest
from platformdirs import user_data_dir

from agent import _paths


def test_meterline_home_moves_everything(meterline_home: Path) -> None:
    assert _paths.home() == str(meterline_home)
    assert _paths.config_path() == str(meterline_home / "config.toml")
    assert _paths.db_path() == str(meterline_home / "meterline.db")
    assert _paths.secrets_path() == str(meterline_home / "secrets.json")


@pytest.mark.parametrize("xdg", [None, "", "/tmp/somewhere-xdg"])
def test_default_home_is_what_platformdirs_says(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                xdg: str | None) -> None:
    monkeypatch.delenv("METERLINE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path))
    if xdg is None:
        monkeypatch.delenv("XDG_DATA_HOME", raising=False)
    else:
        monkeypatch.setenv("XDG_DATA_HOME", xdg)
    assert _paths.home() == user_data_dir("meterline", appauthor=False)
    if sys.platform.startswith("linux") and not xdg:
        assert _paths.home() == str(tmp_path / ".local" / "share" / "meterline")


def test_home_is_created_private(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    target = tmp_path / "fresh" / "home"
    monkeypatch.setenv("METERLINE_HOME", str(target))
    assert _paths.ensure_home() == str(target)
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o700
