"""``meterline tui`` as a user runs it: a real process, on a real pseudo-terminal."""

from __future__ import annotations

import fcntl
import os
import re
import select
import sqlite3
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

from tuidata import call, env_for, fill

METERLINE = [sys.executable, "-m", "agent"]


def run(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*METERLINE, *args], capture_output=True, text=True,
                          env=env_for(home), timeout=60)


class Terminal:
    """A process on a pseudo-terminal of a given size, whose output we can wait for."""

    def __init__(self, argv: list[str], env: dict[str, str], size: tuple[int, int]) -> None:
        self.fd, child = os.openpty()
        columns, rows = size
        fcntl.ioctl(child, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
        self.process = subprocess.Popen(argv, stdin=child, stdout=child, stderr=child,
                                        env={**env, "TERM": "xterm-256color"},
                                        start_new_session=True)
        os.close(child)
        self.output = b""

    def wait_for(self, text: bytes, timeout: float = 30) -> bool:
        deadline = time.monotonic() + timeout
        while text not in self.output and time.monotonic() < deadline:
            ready, _, _ = select.select([self.fd], [], [], 0.05)
            if ready:
                try:
                    self.output += os.read(self.fd, 65536)
                except OSError:  # the process is gone and the terminal closed
                    break
        return text in self.output

    def press(self, keys: bytes) -> None:
        os.write(self.fd, keys)

    def text(self, last: int = 4000) -> str:
        """The output's last characters without its escape sequences (a failure's message:
        what the screen said, not how it was drawn)."""
        plain = re.sub(rb"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b[()][0-9A-Za-z]|\x1b[=>]", b" ",
                       self.output)
        return re.sub(r" {2,}", "  ", plain.decode("utf-8", "replace"))[-last:]

    def close(self) -> int:
        try:
            # Keep draining the terminal: a child that cannot write cannot exit either.
            deadline = time.monotonic() + 15
            while self.process.poll() is None and time.monotonic() < deadline:
                self.wait_for(b"\0never\0", timeout=0.1)
            if self.process.poll() is None:
                # Still running (a test that failed before it pressed q): killed, so that
                # the test's own failure is what gets reported; the exit code says so.
                self.process.kill()
            return self.process.wait(timeout=5)
        finally:
            os.close(self.fd)


def test_the_command_is_listed_without_loading_textual(meterline_home: Path) -> None:
    listed = run("--help", home=meterline_home)
    assert listed.returncode == 0, listed.stderr
    assert "tui" in listed.stdout
    probe = "import sys, tui.cli; print('textual' in sys.modules)"
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                            check=True)
    assert loaded.stdout.strip() == "False"
    helped = run("tui", "--help", home=meterline_home)
    assert helped.returncode == 0
    assert "live dashboard" in helped.stdout


def test_a_store_that_cannot_be_opened_is_one_clear_line(tmp_path: Path) -> None:
    not_a_folder = tmp_path / "home"
    not_a_folder.write_text("a file where the home folder should be")
    result = run("tui", home=not_a_folder)
    assert result.returncode == 1
    assert result.stderr.startswith("meterline: cannot open the store")
    assert "Traceback" not in result.stderr


async def test_it_draws_the_store_on_a_terminal_and_q_quits(meterline_home: Path) -> None:
    first = call(1, tool="on-the-pty")
    await fill(meterline_home, [first])
    terminal = Terminal([*METERLINE, "tui"], env_for(meterline_home), (100, 30))
    try:
        assert terminal.wait_for(b"Recent calls"), terminal.output[-2000:]
        assert terminal.wait_for(b"on-the-pty"), terminal.output[-2000:]
        terminal.press(b"q")
    finally:
        code = terminal.close()
    assert code == 0, terminal.output[-2000:]
    # The store it used is intact and still holds the call.
    assert first.id in run("log", "--json", home=meterline_home).stdout


async def test_a_store_locked_by_another_process_is_waited_for_on_screen(
        meterline_home: Path) -> None:
    await fill(meterline_home, [call(1, tool="after-the-lock")])
    holder = sqlite3.connect(meterline_home / "meterline.db", isolation_level=None)
    holder.execute("PRAGMA locking_mode = EXCLUSIVE")
    holder.execute("BEGIN EXCLUSIVE")
    terminal = Terminal([*METERLINE, "tui"], env_for(meterline_home), (100, 30))
    try:
        # It used to print "cannot open the store ... database is locked" and exit 1.
        assert terminal.wait_for(b"locked", timeout=40), terminal.text()
        assert terminal.process.poll() is None
        holder.rollback()
        holder.close()
        assert terminal.wait_for(b"after-the-lock", timeout=40), terminal.text()
        terminal.press(b"q")
    finally:
        code = terminal.close()
        holder.close()
    assert code == 0, terminal.text()
