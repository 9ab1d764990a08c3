"""The proxy in its own process (`meterline agent`), in front of a fake upstream on loopback."""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from agent._queries import CALL_COLUMNS

from . import fake_upstream

ROOT = Path(__file__).resolve().parents[2]
METERLINE = [sys.executable, "-m", "agent"]

#: Short grace periods keep the disconnect and shutdown tests quick.
TEST_CONFIG = """
[proxy]
disconnect_grace_s = 1.5
shutdown_grace_s = 2
"""


class ProxyProcess:
    """A running `meterline agent`; its stderr is collected line by line in ``log``."""

    def __init__(self, home: Path, origin: str, *, port: int = 0,
                 env: dict[str, str] | None = None, args: tuple[str, ...] = ("agent",)) -> None:
        self.home = home
        self.log: list[str] = []
        self.stdout: list[str] = []
        full_env = {**os.environ, "METERLINE_HOME": str(home),
                    "METERLINE_UPSTREAM_ANTHROPIC": origin, "METERLINE_UPSTREAM_OPENAI": origin,
                    "PYTHONPATH": str(ROOT), **(env or {})}
        self.proc = subprocess.Popen([*METERLINE, *args, "--proxy-port", str(port)],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     env=full_env, cwd=ROOT)
        self._ready = threading.Event()
        self.port = 0
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        threading.Thread(target=self._drain_stdout, daemon=True).start()
        if not self._ready.wait(20):
            self.proc.kill()
            raise RuntimeError("the proxy did not start:\n" + "\n".join(self.log))

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.log.append(line.rstrip("\n"))
            if "proxy on http://127.0.0.1:" in line and not self.port:
                self.port = int(line.split("127.0.0.1:")[1].split()[0].rstrip(")"))
                self._ready.set()
        self._ready.set()

    def _drain_stdout(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.stdout.append(line.rstrip("\n"))

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(20)
        self._reader.join(5)
        return code

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(10)


def stored_calls(home: Path) -> list[dict[str, Any]]:
    path = home / "meterline.db"
    if not path.exists():
        return []
    db = sqlite3.connect(path)
    try:
        rows = db.execute(f"SELECT {', '.join(CALL_COLUMNS)} FROM calls ORDER BY seq").fetchall()
    finally:
        db.close()
    return [dict(zip(CALL_COLUMNS, row, strict=True)) for row in rows]


def wait_for(predicate: Callable[[], Any], timeout: float = 10.0) -> Any:
    """Poll until ``predicate()`` is truthy (for things that happen after a response)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.02)


def unreachable_proxy(home: Path) -> ProxyProcess:
    """A proxy in ``home`` whose upstreams nobody listens on (a port just freed)."""
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{free.getsockname()[1]}"
    (home / "config.toml").write_text(TEST_CONFIG)
    return ProxyProcess(home, dead)


@pytest.fixture(scope="session")
def upstream() -> Iterator[tuple[fake_upstream.FakeUpstream, str]]:
    app, origin, stop = fake_upstream.start()
    yield app, origin
    stop()


@pytest.fixture
def proxy(meterline_home: Path, upstream: tuple[fake_upstream.FakeUpstream, str]
          ) -> Iterator[ProxyProcess]:
    (meterline_home / "config.toml").write_text(TEST_CONFIG)
    running = ProxyProcess(meterline_home, upstream[1])
    yield running
    running.stop()
