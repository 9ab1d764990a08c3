"""The proxy killed with SIGKILL at random moments: no response that reached its client whole
may lack its call in the store."""

from __future__ import annotations

import json
import random
import threading
from pathlib import Path

import httpx

from .conftest import TEST_CONFIG, ProxyProcess, stored_calls
from .fake_upstream import USAGE, FakeUpstream

REQUESTS = 64
SHAPES = [
    ("/anthropic/v1/messages", {"model": "claude-sonnet-4-5", "max_tokens": 50,
                                "stream": True}, b"event: message_stop"),
    ("/anthropic/v1/messages", {"model": "claude-sonnet-4-5", "max_tokens": 50}, None),
    ("/openai/v1/chat/completions", {"model": "gpt-4o", "stream": True}, b"data: [DONE]"),
    ("/openai/v1/responses", {"model": "gpt-4o", "stream": True}, b"response.completed"),
    ("/openai/v1/chat/completions", {"model": "gpt-4o"}, None),
]


def whole(body: bytes, terminal: bytes | None) -> bool:
    """The client's own test of a whole response: the stream's last event, or a full JSON
    body with its usage (the body ended cleanly, or httpx would have raised)."""
    if terminal is not None:
        return terminal in body
    return "usage" in json.loads(body)


def test_sigkill_at_random_moments_loses_no_completed_call(
        meterline_home: Path, upstream: tuple[FakeUpstream, str]) -> None:
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    (meterline_home / "config.toml").write_text(TEST_CONFIG)
    proxy = ProxyProcess(meterline_home, upstream[1])
    port = proxy.port
    completed: list[str] = []
    kills = 0
    for index in range(REQUESTS):
        if proxy.proc.poll() is not None:
            proxy = ProxyProcess(meterline_home, upstream[1], port=port)
        path, body, terminal = SHAPES[index % len(SHAPES)]
        killer = threading.Timer(rng.uniform(0.0, 0.25), proxy.kill)
        doomed = rng.random() < 0.45
        if doomed:
            killer.start()
        try:
            with httpx.Client(timeout=10) as client:
                response = client.post(
                    f"http://127.0.0.1:{port}{path}",
                    json={**body, "messages": [{"role": "user", "content": f"n{index}"}]},
                    headers={"x-api-key": "sk", "authorization": "Bearer sk",
                             "x-fake": f"gap=0.01,words={rng.randint(2, 14)}"})
            if response.status_code == 200 and whole(response.content, terminal):
                completed.append(response.headers["x-meterline-call-id"])
        except httpx.HTTPError:
            pass  # cut by the kill: the client knows it did not get a whole response
        finally:
            killer.cancel()
            if doomed:
                killer.join()
        if doomed and proxy.proc.poll() is not None:
            kills += 1
        elif doomed:
            proxy.kill()  # the timer fired after the response: kill between requests too
            kills += 1
    proxy.stop()

    stored = {row["id"]: row for row in stored_calls(meterline_home)}
    missing = [call_id for call_id in completed if call_id not in stored]
    assert missing == [], f"seed {seed}: {len(missing)} completed responses not stored"
    for call_id in completed:
        row = stored[call_id]
        assert (row["status"], row["estimated"], row["output_tokens"]) == \
            ("ok", 0, USAGE["output"]), f"seed {seed}: {row}"
    assert kills >= 15, f"seed {seed}: only {kills} kills"
    assert len(completed) >= 20, f"seed {seed}: only {len(completed)} whole responses"
