"""The official SDKs through `meterline agent` to a fake upstream: what the client gets, and
exactly what the store holds, in every case of the issue's point 3."""

from __future__ import annotations

import json
import time
from pathlib import Path

import anthropic
import httpx
import httpx2
import openai
import pytest

from .conftest import ProxyProcess, stored_calls, wait_for
from .fake_upstream import USAGE, FakeUpstream, words

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
Upstream = tuple[FakeUpstream, str]
MESSAGES = [{"role": "user", "content": "Say hello"}]
EXACT_ANTHROPIC = {"input_tokens": USAGE["input"], "output_tokens": USAGE["output"],
                   "cache_read_tokens": USAGE["cache_read"],
                   "cache_write_tokens": USAGE["cache_write"],
                   "cache_write_1h_tokens": USAGE["cache_write_1h"], "estimated": 0,
                   "status": "ok", "source": "proxy", "provider": "anthropic"}
EXACT_OPENAI = {"input_tokens": USAGE["input"], "output_tokens": USAGE["output"],
                "cache_read_tokens": USAGE["cache_read"], "cache_write_tokens": 0,
                "reasoning_tokens": USAGE["reasoning"], "estimated": 0, "status": "ok",
                "source": "proxy", "provider": "openai"}


def claude(proxy: ProxyProcess, **kwargs: object) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=proxy.url + "/anthropic", api_key="sk-ant-client",
                               max_retries=0, **kwargs)  # type: ignore[arg-type]


def gpt(proxy: ProxyProcess, **kwargs: object) -> openai.OpenAI:
    return openai.OpenAI(base_url=proxy.url + "/openai/v1", api_key="sk-client",
                         max_retries=0, **kwargs)  # type: ignore[arg-type]


def only_call(home: Path) -> dict[str, object]:
    calls = stored_calls(home)
    assert len(calls) == 1, calls
    return calls[0]


def matches(row: dict[str, object], expected: dict[str, object]) -> None:
    assert {k: row[k] for k in expected} == expected


# -- complete responses: exact usage, stored before the client has the end -----------------

def test_anthropic_sdk_plain_and_streamed(proxy: ProxyProcess, upstream: Upstream) -> None:
    client = claude(proxy)
    message = client.messages.create(model="claude-sonnet-4-5", max_tokens=200,
                                     messages=MESSAGES)  # type: ignore[arg-type]
    assert message.content[0].text.startswith("alpha beta")  # type: ignore[union-attr]
    assert message.usage.cache_creation_input_tokens == USAGE["cache_write"]
    # Durable before the response completed: read at once, no waiting.
    row = only_call(proxy.home)
    matches(row, {**EXACT_ANTHROPIC, "tool": "anthropic-sdk", "kind": "chat",
                  "model": "claude-sonnet-4-5",
                  "request_id": upstream[0].requests[-1] and row["request_id"]})
    assert str(row["request_id"]).startswith("req_")
    assert row["cost_micro_usd"] == 3600 + 5175 + 1500 + 1875 + 1800

    with client.messages.stream(model="claude-sonnet-4-5", max_tokens=200,
                                messages=MESSAGES) as stream:  # type: ignore[arg-type]
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == "".join(["alpha ", "beta ", "gamma ", "delta ", "epsilon ", "zeta ",
                            "eta ", "theta ", "alpha ", "beta ", "gamma ", "delta "])
    assert final.usage.output_tokens == USAGE["output"]
    calls = stored_calls(proxy.home)
    assert len(calls) == 2
    matches(calls[1], EXACT_ANTHROPIC)
    assert calls[0]["request_id"] != calls[1]["request_id"]


def test_anthropic_gateway_zero_input_at_start(proxy: ProxyProcess) -> None:
    with claude(proxy).messages.stream(model="claude-haiku-4-5", max_tokens=50,
                                       messages=MESSAGES,  # type: ignore[arg-type]
                                       extra_headers={"x-fake": "zero_start"}) as stream:
        stream.until_done()
    matches(only_call(proxy.home), EXACT_ANTHROPIC)


def test_openai_chat_stream_gets_usage_without_the_client_seeing_it(
        proxy: ProxyProcess, upstream: Upstream) -> None:
    chunks = list(gpt(proxy).chat.completions.create(
        model="gpt-4o", messages=MESSAGES, stream=True))  # type: ignore[arg-type]
    assert all(chunk.usage is None for chunk in chunks)
    assert all(chunk.choices for chunk in chunks)
    assert "".join(c.choices[0].delta.content or "" for c in chunks).startswith("alpha beta")
    sent = upstream[0].requests[-1].json()
    assert sent["stream_options"] == {"include_usage": True}
    assert sent["messages"] == MESSAGES
    matches(only_call(proxy.home), {**EXACT_OPENAI, "model": "gpt-4o", "tool": "openai-sdk"})


def test_a_stream_key_spelled_with_escapes_still_gets_usage(proxy: ProxyProcess,
                                                            upstream: Upstream) -> None:
    # "stream" written with a \\u escape: JSON all the same, and a stream that reports its
    # usage only if asked.
    body = (b'{"model": "gpt-4o", "\\u0073tream": true, "messages": '
            + json.dumps(MESSAGES).encode() + b"}")
    response = httpx.post(proxy.url + "/openai/v1/chat/completions", content=body,
                          headers={"authorization": "Bearer sk", "content-type":
                                   "application/json"}, timeout=10)
    assert response.status_code == 200
    assert b"[DONE]" in response.content
    assert b'"usage"' not in response.content  # asked for on the client's behalf: not shown
    assert upstream[0].requests[-1].json()["stream_options"] == {"include_usage": True}
    matches(only_call(proxy.home), {**EXACT_OPENAI, "model": "gpt-4o"})


def test_openai_chat_stream_that_asked_for_usage_sees_it(proxy: ProxyProcess) -> None:
    chunks = list(gpt(proxy).chat.completions.create(
        model="gpt-4o", messages=MESSAGES, stream=True,  # type: ignore[arg-type]
        stream_options={"include_usage": True}))
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.prompt_tokens == USAGE["input"] + USAGE["cache_read"]
    matches(only_call(proxy.home), EXACT_OPENAI)


def test_a_final_chunk_with_choices_and_usage_keeps_both(proxy: ProxyProcess) -> None:
    chunks = list(gpt(proxy).chat.completions.create(
        model="gpt-4o", messages=MESSAGES, stream=True,  # type: ignore[arg-type]
        extra_headers={"x-fake": "usage_in_last"}))
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert chunks[-1].usage is not None
    matches(only_call(proxy.home), EXACT_OPENAI)


def test_openai_plain_chat_completions_and_responses(proxy: ProxyProcess) -> None:
    client = gpt(proxy)
    chat = client.chat.completions.create(model="gpt-4o-mini",
                                          messages=MESSAGES)  # type: ignore[arg-type]
    assert chat.choices[0].message.content
    assert chat.usage is not None
    legacy = client.completions.create(model="gpt-3.5-turbo-instruct", prompt="x")
    assert legacy.choices[0].text.startswith("alpha")
    plain = client.responses.create(model="gpt-4o", input="hi")
    assert plain.output_text.startswith("alpha")
    events = list(client.responses.create(model="gpt-4o", input="hi", stream=True))
    assert events[-1].type == "response.completed"
    calls = stored_calls(proxy.home)
    assert [c["model"] for c in calls] == ["gpt-4o-mini", "gpt-3.5-turbo-instruct", "gpt-4o",
                                           "gpt-4o"]
    for row in calls:
        matches(row, EXACT_OPENAI)
    assert calls[0]["cost_micro_usd"] == round(1200 * 0.15 + 5000 * 0.075 + 345 * 0.6)


def test_compressed_body_despite_identity_is_decoded(proxy: ProxyProcess) -> None:
    chat = gpt(proxy).chat.completions.create(model="gpt-4o", messages=MESSAGES,  # type: ignore[arg-type]
                                              extra_headers={"x-fake": "gzip"})
    assert chat.usage is not None
    matches(only_call(proxy.home), EXACT_OPENAI)


# -- usage missing, upstream errors, upstream cut ---------------------------------------------

def test_missing_usage_is_estimated_and_flagged(proxy: ProxyProcess) -> None:
    # (The Anthropic SDK itself cannot read a stream without usage: a raw client does.)
    seen = raw_stream(proxy, "/anthropic/v1/messages", {
        "model": "claude-sonnet-4-5", "max_tokens": 5, "stream": True, "messages": MESSAGES},
        "no_usage,words=40", 100)
    assert seen[-1].startswith(b"event: message_stop")
    claude(proxy).messages.create(model="claude-sonnet-4-5", max_tokens=10,
                                  messages=MESSAGES,  # type: ignore[arg-type]
                                  extra_headers={"x-fake": "no_usage"})
    gpt(proxy).chat.completions.create(model="gpt-4o", messages=MESSAGES,  # type: ignore[arg-type]
                                       extra_headers={"x-fake": "no_usage"})
    calls = stored_calls(proxy.home)
    assert len(calls) == 3
    text = "".join(words(40))
    assert calls[0]["output_tokens"] == -(-len(text) // 4)  # about four characters a token
    for row in calls:
        assert row["estimated"] == 1
        assert row["status"] == "ok"
        assert int(row["input_tokens"]) > 0
        assert int(row["output_tokens"]) > 0
        assert int(row["cost_micro_usd"]) > 0  # type: ignore[call-overload]


@pytest.mark.parametrize("status", [400, 429, 500, 529])
def test_upstream_error_statuses(proxy: ProxyProcess, status: int) -> None:
    with pytest.raises(anthropic.APIStatusError) as caught:
        claude(proxy).messages.create(model="claude-sonnet-4-5", max_tokens=10,
                                      messages=MESSAGES,  # type: ignore[arg-type]
                                      extra_headers={"x-fake": f"status={status}"})
    assert caught.value.status_code == status
    row = only_call(proxy.home)
    matches(row, {"status": "error", "input_tokens": 0, "output_tokens": 0,
                  "cost_micro_usd": 0, "estimated": 0})
    assert str(row["request_id"]).startswith("req_")


def test_upstream_cut_mid_stream(proxy: ProxyProcess) -> None:
    # The SDK sees the stream break, as it would have without the proxy.
    stream = claude(proxy).messages.stream(model="claude-sonnet-4-5", max_tokens=50,
                                           messages=MESSAGES,  # type: ignore[arg-type]
                                           extra_headers={"x-fake": "cut=6"})
    with pytest.raises((anthropic.APIError, httpx2.HTTPError)), stream as events:
        events.until_done()
    row = only_call(proxy.home)
    # message_start told the input; the output is estimated from the text that arrived.
    matches(row, {"status": "error", "estimated": 1, "input_tokens": USAGE["input"],
                  "cache_read_tokens": USAGE["cache_read"]})
    assert int(row["output_tokens"]) >= 1  # type: ignore[call-overload]


def test_upstream_cut_in_a_plain_body(proxy: ProxyProcess) -> None:
    with pytest.raises(openai.APIError):
        gpt(proxy).chat.completions.create(model="gpt-4o", messages=MESSAGES,  # type: ignore[arg-type]
                                           extra_headers={"x-fake": "cut=40"})
    row = only_call(proxy.home)
    matches(row, {"status": "error", "estimated": 1})
    assert int(row["input_tokens"]) > 0  # type: ignore[call-overload]


def test_upstream_ends_the_stream_early_but_cleanly(proxy: ProxyProcess) -> None:
    chunks = list(gpt(proxy).chat.completions.create(
        model="gpt-4o", messages=MESSAGES, stream=True,  # type: ignore[arg-type]
        extra_headers={"x-fake": "end=5"}))
    assert len(chunks) == 5
    row = only_call(proxy.home)
    matches(row, {"status": "error", "estimated": 1})
    assert int(row["output_tokens"]) >= 1  # type: ignore[call-overload]


# -- the client goes away -------------------------------------------------------------------

def raw_stream(proxy: ProxyProcess, path: str, body: dict[str, object], fake: str,
               events_to_read: int, *, timeout: float = 10.0) -> list[bytes]:
    """Read some SSE events, then drop the connection."""
    seen: list[bytes] = []
    with httpx.Client(timeout=timeout) as client, client.stream(
            "POST", proxy.url + path, json=body,
            headers={"x-api-key": "sk", "authorization": "Bearer sk", "x-fake": fake,
                     "anthropic-version": "2023-06-01"}) as response:
        buffer = b""
        for chunk in response.iter_raw():
            buffer += chunk
            while b"\n\n" in buffer:
                event, buffer = buffer.split(b"\n\n", 1)
                seen.append(event)
            if len(seen) >= events_to_read:
                break
    return seen


def test_client_leaves_before_the_first_byte(proxy: ProxyProcess) -> None:
    with pytest.raises(httpx.ReadTimeout):
        raw_stream(proxy, "/anthropic/v1/messages", {"model": "claude-sonnet-4-5",
                   "max_tokens": 5, "stream": True, "messages": MESSAGES}, "delay=0.6", 1,
                   timeout=0.2)
    # The upstream answers within the grace period: exact usage, not an estimate.
    row = wait_for(lambda: stored_calls(proxy.home))[0]
    matches(row, EXACT_ANTHROPIC)


def test_client_leaves_before_the_first_byte_and_the_upstream_outlasts_the_grace(
        proxy: ProxyProcess) -> None:
    left = time.monotonic()
    with pytest.raises(httpx.ReadTimeout):
        raw_stream(proxy, "/anthropic/v1/messages", {"model": "claude-sonnet-4-5",
                   "max_tokens": 5, "stream": True, "messages": MESSAGES}, "delay=8", 1,
                   timeout=0.3)
    row = wait_for(lambda: stored_calls(proxy.home), timeout=15)[0]
    # Cut 1.5 s (the grace) after the client left, not when the upstream answered (8 s).
    assert time.monotonic() - left < 5
    matches(row, {"status": "error", "estimated": 1, "output_tokens": 0,
                  "model": "claude-sonnet-4-5"})
    assert int(row["input_tokens"]) >= 1  # type: ignore[call-overload]


def test_client_leaves_mid_stream_and_the_upstream_finishes(proxy: ProxyProcess) -> None:
    seen = raw_stream(proxy, "/anthropic/v1/messages", {
        "model": "claude-sonnet-4-5", "max_tokens": 5, "stream": True, "messages": MESSAGES},
        "gap=0.02,words=30", 4)
    # Left after 4 events (or 5: two can come in one read when the machine stalls), long
    # before the stream's 30 words were sent.
    assert 4 <= len(seen) < 10
    row = wait_for(lambda: stored_calls(proxy.home))[0]
    matches(row, EXACT_ANTHROPIC)


def test_client_leaves_just_before_the_usage_chunk(proxy: ProxyProcess) -> None:
    body = {"model": "gpt-4o", "stream": True, "messages": MESSAGES}
    # role chunk + 12 words + finish chunk: everything but the usage and [DONE]
    seen = raw_stream(proxy, "/openai/v1/chat/completions", body, "hold_usage=0.5", 14)
    assert b'"finish_reason": "stop"' in seen[-1]
    row = wait_for(lambda: stored_calls(proxy.home))[0]
    matches(row, EXACT_OPENAI)  # no free tokens


def test_client_leaves_and_the_upstream_outlasts_the_grace(proxy: ProxyProcess) -> None:
    seen = raw_stream(proxy, "/anthropic/v1/messages", {
        "model": "claude-sonnet-4-5", "max_tokens": 5, "stream": True, "messages": MESSAGES},
        "gap=0.2,words=60", 5)
    assert 5 <= len(seen) < 10  # (events that came in one read are seen together)
    started = time.monotonic()
    row = wait_for(lambda: stored_calls(proxy.home), timeout=15)[0]
    assert time.monotonic() - started < 5  # cut after the 1.5 s grace, not at the end (12 s)
    matches(row, {"status": "error", "estimated": 1, "input_tokens": USAGE["input"]})


# -- pass-through, attribution, routes --------------------------------------------------------

def test_count_tokens_and_other_paths_pass_through_unmetered(proxy: ProxyProcess,
                                                            upstream: Upstream) -> None:
    count = claude(proxy).messages.count_tokens(model="claude-sonnet-4-5",
                                                messages=MESSAGES)  # type: ignore[arg-type]
    assert count.input_tokens == 42
    counted = upstream[0].requests[-1]
    assert counted.path == "/v1/messages/count_tokens"
    assert counted.json()["messages"] == MESSAGES
    assert counted.headers["content-length"] == str(len(counted.body))
    models = gpt(proxy).models.list()
    assert [m.id for m in models] == ["gpt-4o"]
    listed = upstream[0].requests[-1]
    assert (listed.method, listed.body) == ("GET", b"")
    assert "transfer-encoding" not in listed.headers
    missing = httpx.get(proxy.url + "/somewhere/v1/x")
    assert missing.status_code == 404
    assert "no route" in missing.json()["error"]["message"]
    assert stored_calls(proxy.home) == []
    assert wait_for(lambda: any("GET /openai/v1/models 200 pass-through" in line
                                for line in proxy.log))


def test_attribution_from_user_agent_and_header(proxy: ProxyProcess) -> None:
    client = claude(proxy, default_headers={"user-agent": "claude-cli/2.1.4 (external, cli)"})
    client.messages.create(model="claude-sonnet-4-5", max_tokens=10,
                           messages=MESSAGES)  # type: ignore[arg-type]
    gpt(proxy).chat.completions.create(model="gpt-4o", messages=MESSAGES,  # type: ignore[arg-type]
                                       extra_headers={"x-meterline-tool": "nightly-job"})
    first, second = stored_calls(proxy.home)
    assert (first["tool"], first["kind"]) == ("claude-code", "agent")
    assert (second["tool"], second["kind"]) == ("nightly-job", "chat")
    # One log line per call, with the tool (made shortly after the response).
    assert wait_for(lambda: any("POST /openai/v1/chat/completions 200 ok nightly-job gpt-4o "
                                in line for line in proxy.log))
    assert any("POST /anthropic/v1/messages 200 ok claude-code claude-sonnet-4-5 " in line
               for line in proxy.log)


def test_vendor_quota_reaches_meterline_status(proxy: ProxyProcess) -> None:
    import subprocess
    import sys

    claude(proxy).messages.create(model="claude-sonnet-4-5", max_tokens=10,
                                  messages=MESSAGES)  # type: ignore[arg-type]

    def quota() -> list[dict[str, object]]:
        out = subprocess.run([sys.executable, "-m", "agent", "status", "--json"],
                             capture_output=True, text=True, check=True).stdout
        return json.loads(out)["vendorQuota"]  # type: ignore[no-any-return]

    quotas = wait_for(quota)
    requests = next(q for q in quotas if q["name"] == "requests")
    assert (requests["provider"], requests["limit"], requests["remaining"]) == \
        ("anthropic", 4000, 3999)
