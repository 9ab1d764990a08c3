"""Where meterline keeps its files: the one module that knows.

Everything lives under ``$METERLINE_HOME`` when it is set (every test sets it), otherwise
under the platform's user data directory. Nothing else in the code builds these paths.

Paths are plain strings here: `meterline status` runs after every prompt and importing
pathlib would cost it more than the rest of its work. Wrap them in ``Path`` where handy.
"""

from __future__ import annotations

import os
import sys

APP_NAME = "meterline"


def home() -> str:
    """The folder holding ``config.toml``, ``meterline.db`` and the fallback secrets file."""
    configured = os.environ.get("METERLINE_HOME")
    if configured:
        return os.path.abspath(os.path.expanduser(configured))
    if sys.platform.startswith("linux"):
        # The XDG rule platformdirs applies on Linux, without importing it: this runs on
        # every shell prompt. tests/agent/test_paths.py checks both agree.
        base = os.environ.get("XDG_DATA_HOME", "").strip() or os.path.expanduser(
            "~/.local/share")
        return os.path.join(base, APP_NAME)
    from platformdirs import user_data_dir  # type: ignore[unreachable, unused-ignore]

    return user_data_dir(APP_NAME, appauthor=False)


def config_path() -> str:
    return os.path.join(home(), "config.toml")


def db_path() -> str:
    return os.path.join(home(), "meterline.db")


def secrets_path() -> str:
    """The 0600 file used for secrets only where no usable OS keyring exists."""
    return os.path.join(home(), "secrets.json")


def ensure_home() -> str:
    """Create the home folder (owner-only) if needed and return it."""
    folder = home()
    os.makedirs(folder, mode=0o700, exist_ok=True)
    return folder
