"""Budgets, keys, start and stop of the proxy process — through the real CLI and real HTTP."""

from __future__ import annotations

import concurrent.futures
import json
import os
import signal
import socket
import sqlite3
import stat
import subprocess
import time
from pathlib import Path

import anthropic
import httpx
import openai
import pytest

from .conftest import (
    METERLINE,
    ROOT,
    TEST_CONFIG,
    ProxyProcess,
    stored_calls,
    unreachable_proxy,
    wait_for,
)
from .fake_upstream import USAGE, FakeUpstream

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
Upstream = tuple[FakeUpstream, str]
MESSAGES = [{"role": "user", "content": "Say hello"}]


def cli(*args: str, stdin: str | None = None, env: dict[str, str] | None = None
        ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*METERLINE, *args], input=stdin, capture_output=True, text=True,
                          timeout=60, cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})})


def start(home: Path, upstream: Upstream, config: str = "", **kwargs: object) -> ProxyProcess:
    (home / "config.toml").write_text(TEST_CONFIG + config)
    return ProxyProcess(home, upstream[1], **kwargs)  # type: ignore[arg-type]


# -- budgets ----------------------------------------------------------------------------------

ENFORCED = """
[[budgets]]
name = "daily"
period = "day"
limit_usd = 0.01
mode = "enforce"
"""


def test_an_enforced_budget_refuses_in_each_providers_format(
        meterline_home: Path, upstream: Upstream) -> None:
    proxy = start(meterline_home, upstream, ENFORCED)
    try:
        claude = anthropic.Anthropic(base_url=proxy.url + "/anthropic", api_key="sk",
                                     max_retries=0)
        claude.messages.create(model="claude-sonnet-4-5", max_tokens=10,
                               messages=MESSAGES)  # type: ignore[arg-type]
        sent = len(upstream[0].requests)
        with pytest.raises(anthropic.RateLimitError) as refused:
            claude.messages.create(model="claude-sonnet-4-5", max_tokens=10,
                                   messages=MESSAGES)  # type: ignore[arg-type]
        message = refused.value.body["error"]["message"]  # type: ignore[index]
        assert "'daily'" in message
        assert "$0.014 of $0.01" in message
        assert "resets at" in message
        assert refused.value.response.headers["x-meterline-budget"].startswith("blocked")
        with pytest.raises(openai.RateLimitError) as refused_openai:
            openai.OpenAI(base_url=proxy.url + "/openai/v1", api_key="sk",
                          max_retries=0).chat.completions.create(
                model="gpt-4o", messages=MESSAGES)  # type: ignore[arg-type]
        error = refused_openai.value.body
        assert error["type"] == "insufficient_quota"  # type: ignore[index]
        assert "'daily'" in error["message"]  # type: ignore[index]
        assert len(upstream[0].requests) == sent  # nothing refused reached the provider
        calls = stored_calls(meterline_home)
        assert [c["status"] for c in calls] == ["ok", "blocked", "blocked"]
        for blocked in calls[1:]:
            assert (blocked["input_tokens"], blocked["output_tokens"],
                    blocked["cost_micro_usd"]) == (0, 0, 0)
    finally:
        proxy.stop()
    # The log line says what the client was answered.
    assert any("POST /anthropic/v1/messages 429 blocked " in line for line in proxy.log), \
        proxy.log


def test_a_budget_raised_with_the_cli_applies_within_about_a_second(
        meterline_home: Path, upstream: Upstream) -> None:
    proxy = start(meterline_home, upstream, ENFORCED)
    try:
        def ask() -> int:
            return httpx.post(proxy.url + "/anthropic/v1/messages", timeout=10, json={
                "model": "claude-sonnet-4-5", "max_tokens": 10, "messages": MESSAGES},
                headers={"x-api-key": "sk"}).status_code

        assert [ask(), ask()] == [200, 429]
        raised = cli("budget", "set", "--name", "daily", "--usd", "1", "--mode", "enforce",
                     env={"METERLINE_HOME": str(meterline_home)})
        assert raised.returncode == 0, raised.stderr
        # The first request after the edit, 1.6 s later, already has the new limit (it used
        # to get the budgets read before it, and a second 429).
        time.sleep(1.6)
        assert ask() == 200
        assert [c["status"] for c in stored_calls(meterline_home)] == ["ok", "blocked", "ok"]
    finally:
        proxy.stop()


def test_concurrent_first_requests_cannot_all_pass(meterline_home: Path,
                                                   upstream: Upstream) -> None:
    # Each request may cost up to $0.03 (2000 output tokens): one reservation fills the
    # budget, so of five requests at once exactly one goes upstream.
    proxy = start(meterline_home, upstream, ENFORCED)
    try:
        def one(_: int) -> int:
            response = httpx.post(proxy.url + "/anthropic/v1/messages", timeout=10, json={
                "model": "claude-sonnet-4-5", "max_tokens": 2000, "messages": MESSAGES},
                headers={"x-api-key": "sk", "x-fake": "delay=0.5"})
            return response.status_code

        with concurrent.futures.ThreadPoolExecutor(5) as pool:
            codes = sorted(pool.map(one, range(5)))
        assert codes == [200, 429, 429, 429, 429]
        assert sorted(c["status"] for c in stored_calls(meterline_home)) == \
            ["blocked"] * 4 + ["ok"]
    finally:
        proxy.stop()


def test_a_budget_in_warn_state_adds_a_header(meterline_home: Path,
                                              upstream: Upstream) -> None:
    proxy = start(meterline_home, upstream, """
[[budgets]]
name = "weekly"
period = "week"
limit_usd = 1
warn_at = 0.01
""")
    try:
        client = anthropic.Anthropic(base_url=proxy.url + "/anthropic", api_key="sk",
                                     max_retries=0)
        first = client.messages.with_raw_response.create(
            model="claude-sonnet-4-5", max_tokens=10, messages=MESSAGES)  # type: ignore[arg-type]
        assert "x-meterline-budget" not in first.headers
        second = client.messages.with_raw_response.create(
            model="claude-sonnet-4-5", max_tokens=10, messages=MESSAGES)  # type: ignore[arg-type]
        assert second.headers["x-meterline-budget"] == "warn; budget=weekly; used=1% of $1.00"
        assert second.parse().usage.output_tokens == USAGE["output"]
    finally:
        proxy.stop()


# -- keys -------------------------------------------------------------------------------------

STORED_KEY = "sk-ant-stored-0123456789SECRET"
CLIENT_KEY = "sk-ant-client-9876543210SECRET"


def test_keys_in_the_file_fallback_are_injected_and_never_leak(
        meterline_home: Path, upstream: Upstream) -> None:
    stored = cli("keys", "set", "anthropic", stdin=STORED_KEY + "\n")
    assert stored.returncode == 0, stored.stderr
    assert "secrets.json" in stored.stdout
    assert "no usable OS keyring" in stored.stderr
    secrets = meterline_home / "secrets.json"
    assert stat.S_IMODE(secrets.stat().st_mode) == 0o600
    listed = json.loads(cli("keys", "list", "--json").stdout)
    assert listed["stored"] == ["anthropic"]
    assert STORED_KEY not in cli("keys", "list").stdout

    proxy = start(meterline_home, upstream)
    try:
        base = proxy.url + "/anthropic"
        anthropic.Anthropic(base_url=base, api_key="meterline", max_retries=0).messages.create(
            model="claude-sonnet-4-5", max_tokens=10, messages=MESSAGES)  # type: ignore[arg-type]
        assert upstream[0].requests[-1].headers["x-api-key"] == STORED_KEY
        assert "authorization" not in upstream[0].requests[-1].headers
        anthropic.Anthropic(base_url=base, api_key=CLIENT_KEY, max_retries=0).messages.create(
            model="claude-sonnet-4-5", max_tokens=10, messages=MESSAGES)  # type: ignore[arg-type]
        # The client's own key passes untouched (this SDK sends it as a bearer token).
        seen = upstream[0].requests[-1].headers
        assert CLIENT_KEY in (seen.get("x-api-key"), seen.get("authorization", "")[7:])
        # A web page (Origin, or a rebound DNS name in Host) may not spend the stored key.
        sent = len(upstream[0].requests)
        for extra in ({"origin": "https://evil.example"}, {"host": "evil.example:8790"}):
            page = httpx.post(base + "/v1/messages", headers={"x-api-key": "meterline",
                              "content-type": "text/plain", **extra},
                              content=json.dumps({"model": "claude-sonnet-4-5",
                                                  "max_tokens": 5, "messages": MESSAGES}))
            assert page.status_code == 401
            assert "stored key" in page.json()["error"]["message"]
        assert len(upstream[0].requests) == sent
        # No stored OpenAI key and a placeholder: the proxy says so, in OpenAI's format.
        with pytest.raises(openai.AuthenticationError) as missing:
            openai.OpenAI(base_url=proxy.url + "/openai/v1", api_key="meterline",
                          max_retries=0).chat.completions.create(
                model="gpt-4o", messages=MESSAGES)  # type: ignore[arg-type]
        assert "meterline keys set openai" in missing.value.body["message"]  # type: ignore[index]
    finally:
        proxy.stop()
    calls = stored_calls(meterline_home)
    assert [c["status"] for c in calls] == ["ok", "ok", "error", "error", "error"]
    assert sum("POST /openai/v1/chat/completions 401 error " in line
               for line in proxy.log) == 1, proxy.log

    db = sqlite3.connect(meterline_home / "meterline.db")
    dump = "\n".join(db.iterdump())
    db.close()
    for secret in (STORED_KEY, CLIENT_KEY):
        assert secret not in dump
        assert not any(secret in line for line in proxy.log)
        assert secret not in json.dumps(calls)

    assert cli("keys", "delete", "anthropic").stdout.startswith("deleted")
    assert json.loads(cli("keys", "list", "--json").stdout)["stored"] == []
    assert STORED_KEY not in secrets.read_text()


def test_keys_go_to_a_usable_os_keyring(meterline_home: Path, tmp_path: Path) -> None:
    env = {"PYTHON_KEYRING_BACKEND": "tests.proxy.keyring_stub.FileKeyring",
           "KEYRING_STUB_FILE": str(tmp_path / "keyring.json")}
    stored = cli("keys", "set", "openai", stdin="sk-openai-xyz\n", env=env)
    assert stored.returncode == 0, stored.stderr
    assert "OS keyring" in stored.stdout
    assert "no usable OS keyring" not in stored.stderr
    assert not (meterline_home / "secrets.json").exists()
    assert "sk-openai-xyz" in (tmp_path / "keyring.json").read_text()
    assert json.loads(cli("keys", "list", "--json", env=env).stdout)["stored"] == ["openai"]


def test_keys_set_refuses_empty_input(meterline_home: Path) -> None:
    refused = cli("keys", "set", "anthropic", stdin="\n")
    assert refused.returncode == 2
    assert "nothing was stored" in refused.stderr
    assert not (meterline_home / "secrets.json").exists()


# -- starting and stopping ----------------------------------------------------------------------

def test_a_port_in_use_is_one_clear_line(meterline_home: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = cli("agent", "--proxy-port", str(port))
    assert result.returncode == 1
    assert result.stderr.strip() == (
        f"meterline: port {port} on 127.0.0.1 is already in use (another meterline agent?); "
        "choose one with --proxy-port or [proxy] port")


def test_sigterm_lets_a_response_in_flight_finish(meterline_home: Path,
                                                  upstream: Upstream) -> None:
    proxy = start(meterline_home, upstream)
    with httpx.Client(timeout=10) as client, client.stream(
            "POST", proxy.url + "/openai/v1/chat/completions",
            json={"model": "gpt-4o", "stream": True, "messages": MESSAGES},
            headers={"authorization": "Bearer sk", "x-fake": "gap=0.05,words=16"}) as response:
        chunks = response.iter_raw()
        first = next(chunks)
        proxy.proc.send_signal(signal.SIGTERM)
        body = first + b"".join(chunks)
    assert body.endswith(b"data: [DONE]\n\n")
    assert proxy.stop() == 0
    assert "meterline agent: stopped" in proxy.log
    # The call's line, made after the response (off its path), is not lost at the stop.
    assert any(f"POST /openai/v1/chat/completions 200 ok unknown gpt-4o in={USAGE['input']} "
               in line for line in proxy.log), proxy.log
    (row,) = stored_calls(meterline_home)
    assert (row["status"], row["estimated"], row["output_tokens"]) == ("ok", 0, USAGE["output"])


def test_up_with_proxy_port_serves_and_keeps_the_status_line(
        meterline_home: Path, upstream: Upstream) -> None:
    proxy = start(meterline_home, upstream, args=("up", "--interval", "0.2"))
    try:
        openai.OpenAI(base_url=proxy.url + "/openai/v1", api_key="sk",
                      max_retries=0).chat.completions.create(
            model="gpt-4o", messages=MESSAGES)  # type: ignore[arg-type]
        assert len(stored_calls(meterline_home)) == 1
        assert wait_for(lambda: any("1 calls" in line for line in proxy.stdout))
    finally:
        assert proxy.stop() == 0
    assert "meterline up: stopped" in proxy.log


def test_upstream_unreachable_is_a_502_and_an_error_call(meterline_home: Path) -> None:
    proxy = unreachable_proxy(meterline_home)
    try:
        with pytest.raises(anthropic.InternalServerError) as failed:
            anthropic.Anthropic(base_url=proxy.url + "/anthropic", api_key="sk",
                                max_retries=0).messages.create(
                model="claude-sonnet-4-5", max_tokens=10, messages=MESSAGES)  # type: ignore[arg-type]
        assert failed.value.status_code == 502
    finally:
        proxy.stop()
    (row,) = stored_calls(meterline_home)
    assert (row["status"], row["cost_micro_usd"], row["input_tokens"]) == ("error", 0, 0)
    # Read from the request's body, which no request upstream ever carried.
    assert row["model"] == "claude-sonnet-4-5"
    assert any("POST /anthropic/v1/messages 502 error " in line for line in proxy.log), \
        proxy.log

