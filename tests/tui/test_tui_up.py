"""``meterline up`` on a terminal: the dashboard, with the proxy and the log importers
running beside it in the same process."""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

import httpx
import pytest
from test_tui_cli import METERLINE, Terminal, run
from tuidata import env_for


def claude_code_log(home: Path) -> None:
    """A Claude Code session log, as Claude Code writes it, under the user's home."""
    entry = {"type": "assistant", "timestamp": "2026-11-27T10:00:00.000Z", "cwd": "/w/p",
             "requestId": "req_from_the_log", "sessionId": "s",
             "message": {"id": "msg_1", "model": "claude-sonnet-4-5",
                         "usage": {"input_tokens": 10, "output_tokens": 20,
                                   "cache_read_input_tokens": 0,
                                   "cache_creation_input_tokens": 0}}}
    session = home / ".claude" / "projects" / "-w-p" / "s.jsonl"
    session.parent.mkdir(parents=True)
    session.write_text(json.dumps(entry) + "\n")
    old = time.time() - 120
    os.utime(session, (old, old))


def test_up_shows_the_dashboard_with_the_proxy_and_imports(meterline_home: Path) -> None:
    user_home = Path(os.environ["HOME"])
    claude_code_log(user_home)
    # An upstream nobody listens on: the proxy's answer is then its own, and immediate.
    env = {**env_for(meterline_home), "METERLINE_UPSTREAM_OPENAI": "http://127.0.0.1:9"}
    terminal = Terminal([*METERLINE, "up", "--proxy-port", "0"], env, (120, 40))
    try:
        assert terminal.wait_for(b"Recent calls"), terminal.output[-3000:]
        assert terminal.wait_for(b"proxy http://127.0.0.1:"), terminal.output[-3000:]
        port = re.search(rb"proxy http://127\.0\.0\.1:(\d+)", terminal.output)
        assert port is not None
        # The proxy answers beside the dashboard, in the provider's own error format.
        reply = httpx.get(f"http://127.0.0.1:{int(port.group(1))}/openai/v1/models",
                          headers={"authorization": "Bearer sk-test"}, timeout=10)
        assert reply.status_code == 502
        assert "error" in reply.json()
        # The session log under HOME was imported and is drawn, in full. (Twice, in CI, it
        # was drawn with the columns at their headers' widths, "clau": the table measured
        # its cells only when next idle; the widths now come with the rows.)
        if not terminal.wait_for(b"claude-code"):
            pytest.fail("the imported call was not drawn within 30 s. The screen:\n"
                        f"{terminal.text()}\nThe store's calls:\n"
                        f"{run('log', '--json', home=meterline_home).stdout[-2000:]}")
        terminal.press(b"q")
    finally:
        code = terminal.close()
    assert code == 0, terminal.output[-3000:]
    calls = json.loads(run("log", "--json", home=meterline_home).stdout)
    assert [c["request_id"] for c in calls if c["tool"] == "claude-code"] == ["req_from_the_log"]
