"""A request body that needs no reading before it goes (no budget, an API whose usage need
not be asked for) goes upstream as it comes: the upstream has its first bytes while the
client is still sending. Clients here are raw sockets, to send half a body and stop, and
the Anthropic SDK with a request the size of a coding agent's."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import anthropic
import pytest

from .conftest import TEST_CONFIG, ProxyProcess, stored_calls, unreachable_proxy, wait_for
from .fake_upstream import USAGE, FakeUpstream, Seen

# (The SDK warns that the model the fake upstream answers as is near its end of life.)
pytestmark = pytest.mark.filterwarnings("ignore:The model .* is deprecated:DeprecationWarning")
Upstream = tuple[FakeUpstream, str]
BODY = json.dumps({"model": "claude-sonnet-4-5", "max_tokens": 64, "messages": [
    {"role": "user", "content": "line of context\n" * 8000}]}).encode()  # ~150 KB
SMALL = json.dumps({"model": "claude-sonnet-4-5", "max_tokens": 5,
                    "messages": [{"role": "user", "content": "hi"}]}).encode()


def head(proxy: ProxyProcess, path: str, length: int, extra: str = "") -> bytes:
    return (f"POST {path} HTTP/1.1\r\nhost: 127.0.0.1:{proxy.port}\r\n"
            f"content-type: application/json\r\ncontent-length: {length}\r\n"
            f"x-api-key: sk-client\r\nanthropic-version: 2023-06-01\r\n{extra}\r\n").encode()


def response_of(sock: socket.socket) -> tuple[int, bytes]:
    """Status and body of one Content-Length response."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    top, _, rest = data.partition(b"\r\n\r\n")
    length = next(int(line.split(b":")[1]) for line in top.split(b"\r\n")
                  if line.lower().startswith(b"content-length:"))
    while len(rest) < length:
        rest += sock.recv(65536)
    return int(top.split()[1]), rest


class Watch:
    """What the (session-wide) fake upstream saw since this was made."""

    def __init__(self, upstream: Upstream) -> None:
        self.fake = upstream[0]
        with self.fake.lock:
            self.marks = (len(self.fake.receiving), len(self.fake.requests),
                          len(self.fake.dropped))

    def receiving(self) -> list[str]:
        with self.fake.lock:
            return self.fake.receiving[self.marks[0]:]

    def requests(self) -> list[Seen]:
        with self.fake.lock:
            return self.fake.requests[self.marks[1]:]

    def dropped(self) -> list[str]:
        with self.fake.lock:
            return self.fake.dropped[self.marks[2]:]


def test_a_body_goes_upstream_while_the_client_is_still_sending_it(
        proxy: ProxyProcess, upstream: Upstream) -> None:
    half = len(BODY) // 2
    seen_by = Watch(upstream)
    with socket.create_connection(("127.0.0.1", proxy.port)) as sock:
        sock.sendall(head(proxy, "/anthropic/v1/messages", len(BODY)) + BODY[:half])
        # The upstream is reading the request before its second half was even sent.
        assert wait_for(seen_by.receiving, timeout=10) == ["/v1/messages"]
        assert not seen_by.requests()
        time.sleep(0.05)
        sock.sendall(BODY[half:])
        status, answer = response_of(sock)
    assert status == 200
    assert json.loads(answer)["usage"]["output_tokens"] == USAGE["output"]
    (seen,) = seen_by.requests()
    assert seen.body == BODY  # byte for byte
    assert seen.headers["x-api-key"] == "sk-client"
    (row,) = stored_calls(proxy.home)
    # The body was read for the call once it was whole (the model is the response's too,
    # so the input estimate, from the body's size, shows it was read).
    assert (row["model"], row["output_tokens"], row["status"]) == (
        "claude-sonnet-4-5", USAGE["output"], "ok")


def test_a_client_that_leaves_mid_body_makes_no_call_and_the_upstream_none(
        proxy: ProxyProcess, upstream: Upstream) -> None:
    seen_by = Watch(upstream)
    with socket.create_connection(("127.0.0.1", proxy.port)) as sock:
        sock.sendall(head(proxy, "/anthropic/v1/messages", len(BODY)) + BODY[:1000])
        wait_for(seen_by.receiving, timeout=10)
    # The proxy drops the upstream's connection with half a request on it: the upstream
    # never has a whole request to answer (or bill), and no call is recorded.
    assert wait_for(seen_by.dropped, timeout=10) == ["/v1/messages"]
    with socket.create_connection(("127.0.0.1", proxy.port)) as sock:
        sock.sendall(head(proxy, "/anthropic/v1/messages", len(SMALL)) + SMALL)
        assert response_of(sock)[0] == 200
    wait_for(lambda: stored_calls(proxy.home))
    time.sleep(0.3)
    assert len(stored_calls(proxy.home)) == 1
    assert [seen.body for seen in seen_by.requests()] == [SMALL]


def test_an_unreachable_upstream_still_records_the_body_s_model(
        meterline_home: Path) -> None:
    proxy = unreachable_proxy(meterline_home)
    try:
        with socket.create_connection(("127.0.0.1", proxy.port)) as sock:
            sock.sendall(head(proxy, "/anthropic/v1/messages", len(BODY)) + BODY[:1000])
            time.sleep(0.3)  # the upstream was found unreachable meanwhile
            sock.sendall(BODY[1000:])
            status, _ = response_of(sock)
    finally:
        proxy.stop()
    assert status == 502
    (row,) = stored_calls(meterline_home)
    assert (row["model"], row["status"], row["input_tokens"]) == (
        "claude-sonnet-4-5", "error", 0)


def budgeted(home: Path, limit_usd: float) -> None:
    (home / "config.toml").write_text(
        TEST_CONFIG + f"\n[[budgets]]\nname = 'day'\nperiod = 'day'\nlimit_usd = {limit_usd}\n"
        "mode = 'enforce'\n")


def test_with_a_budget_the_body_goes_as_it_comes_and_is_reserved_for(
        meterline_home: Path, upstream: Upstream) -> None:
    budgeted(meterline_home, 100)
    proxy = ProxyProcess(meterline_home, upstream[1])
    seen_by = Watch(upstream)
    half = len(BODY) // 2
    try:
        with socket.create_connection(("127.0.0.1", proxy.port)) as sock:
            sock.sendall(head(proxy, "/anthropic/v1/messages", len(BODY)) + BODY[:half])
            assert wait_for(seen_by.receiving, timeout=10) == ["/v1/messages"]
            sock.sendall(BODY[half:])
            assert response_of(sock)[0] == 200
    finally:
        proxy.stop()
    assert [seen.body for seen in seen_by.requests()] == [BODY]
    (row,) = stored_calls(meterline_home)
    assert (row["status"], row["output_tokens"]) == ("ok", USAGE["output"])


def test_a_request_the_budget_refuses_never_reaches_the_upstream_whole(
        meterline_home: Path, upstream: Upstream) -> None:
    budgeted(meterline_home, 0.001)
    proxy = ProxyProcess(meterline_home, upstream[1])
    try:
        with socket.create_connection(("127.0.0.1", proxy.port)) as sock:
            sock.sendall(head(proxy, "/anthropic/v1/messages", len(SMALL)) + SMALL)
            assert response_of(sock)[0] == 200  # spends the day's budget ($0.014 of $0.001)
        seen_by = Watch(upstream)
        with socket.create_connection(("127.0.0.1", proxy.port)) as sock:
            sock.sendall(head(proxy, "/anthropic/v1/messages", len(BODY)) + BODY[:1000])
            wait_for(seen_by.receiving, timeout=10)  # its first part went as it came
            sock.sendall(BODY[1000:])
            status, answer = response_of(sock)
        # The last byte was held for the reservation, which was refused.
        assert wait_for(seen_by.dropped, timeout=10) == ["/v1/messages"]
    finally:
        proxy.stop()
    assert status == 429
    error = json.loads(answer)
    assert error["type"] == "error"
    assert "day" in error["error"]["message"]
    assert not seen_by.requests()
    spent, row = stored_calls(meterline_home)
    assert spent["status"] == "ok"
    assert (row["status"], row["cost_micro_usd"], row["model"]) == (
        "blocked", 0, "claude-sonnet-4-5")


def test_a_chunked_body_is_read_whole_and_sent_with_its_length(
        proxy: ProxyProcess, upstream: Upstream) -> None:
    seen_by = Watch(upstream)
    parts = [BODY[:70000], BODY[70000:]]
    with socket.create_connection(("127.0.0.1", proxy.port)) as sock:
        request = head(proxy, "/anthropic/v1/messages", 0).replace(
            b"content-length: 0", b"transfer-encoding: chunked")
        sock.sendall(request + b"%x\r\n%b\r\n" % (len(parts[0]), parts[0]))
        time.sleep(0.3)
        assert not seen_by.receiving()
        sock.sendall(b"%x\r\n%b\r\n0\r\n\r\n" % (len(parts[1]), parts[1]))
        assert response_of(sock)[0] == 200
    (seen,) = seen_by.requests()
    assert seen.body == BODY
    assert seen.headers["content-length"] == str(len(BODY))


def test_the_anthropic_sdk_with_a_coding_agent_sized_request(
        proxy: ProxyProcess, upstream: Upstream) -> None:
    seen_by = Watch(upstream)
    context = "def handler(request):\n    return render(request)\n" * 6000  # ~300 KB
    client = anthropic.Anthropic(base_url=proxy.url + "/anthropic", api_key="sk-client",
                                 max_retries=0)
    message = client.messages.create(
        model="claude-sonnet-4-5", max_tokens=64,
        messages=[{"role": "user", "content": context}])
    assert message.usage.output_tokens == USAGE["output"]
    (seen,) = seen_by.requests()
    assert json.loads(seen.body)["messages"][0]["content"] == context
    (row,) = stored_calls(proxy.home)
    assert (row["status"], row["input_tokens"], row["output_tokens"]) == (
        "ok", USAGE["input"], USAGE["output"])
