"""Pure rules of the proxy: the call a request becomes, attribution, quotas, keys, bodies."""

from __future__ import annotations

import json

import pytest

from agent._proxy._headers import kind_of, request_id_of, tool_of, vendor_quotas
from agent._proxy._keys import client_key, wants_stored_key, with_key
from agent._proxy._record import build_call
from agent._proxy._replies import error_body
from agent._proxy._request import inject_stream_usage, needs_usage_injection, read_request
from agent._proxy._usage import Tally

INFO = read_request("anthropic", json.dumps({
    "model": "claude-sonnet-4-5", "max_tokens": 1000, "stream": True,
    "messages": [{"role": "user", "content": "x" * 4000}]}).encode())


def call(tally: Tally, *, status: int | None = 200, outcome: str = "complete"):  # type: ignore[no-untyped-def]
    return build_call(provider="anthropic", info=INFO, tally=tally, http_status=status,
                      outcome=outcome, tool="claude-code", kind="agent",  # type: ignore[arg-type]
                      request_id="req_1", latency_ms=12, prices={})


def test_reported_usage_is_kept_exactly_and_priced_with_cache_parts() -> None:
    result = call(Tally(input_tokens=1200, output_tokens=345, cache_read_tokens=5000,
                        cache_write_tokens=800, cache_write_1h_tokens=300, complete=True))
    assert (result.input_tokens, result.output_tokens, result.cache_read_tokens,
            result.cache_write_tokens, result.cache_write_1h_tokens) == (1200, 345, 5000, 800, 300)
    assert not result.estimated
    assert result.status == "ok"
    # $3/M in, $15/M out, reads $0.30/M, 5m writes $3.75/M, 1h writes $6/M
    assert result.cost_micro_usd == 3600 + 5175 + 1500 + 1875 + 1800
    assert result.source == "proxy"
    assert result.request_id == "req_1"


def test_missing_usage_is_estimated_never_zero() -> None:
    result = call(Tally(complete=True, output_chars=400))
    assert result.estimated
    assert result.input_tokens == INFO.input_estimate > 1000
    assert result.output_tokens == 100
    assert result.cost_micro_usd
    assert result.cost_micro_usd > 0


def test_zero_input_without_cache_counts_as_missing() -> None:
    result = call(Tally(input_tokens=0, output_tokens=5, complete=True))
    assert result.estimated
    assert result.input_tokens > 0


def test_a_cut_stream_is_an_estimated_error_with_what_was_reported() -> None:
    result = call(Tally(input_tokens=1200, output_tokens=1, output_chars=80), outcome="cut")
    assert result.status == "error"
    assert result.estimated
    assert (result.input_tokens, result.output_tokens) == (1200, 20)


def test_upstream_errors_cost_nothing_unless_usage_was_reported() -> None:
    refused = call(Tally(error=True), status=429)
    assert (refused.status, refused.total_tokens, refused.cost_micro_usd) == ("error", 0, 0)
    assert not refused.estimated


@pytest.mark.parametrize(("outcome", "status"), [("blocked", "blocked"), ("no_key", "error"),
                                                 ("unreachable", "error")])
def test_calls_that_never_reached_the_provider(outcome: str, status: str) -> None:
    result = call(Tally(), status=None, outcome=outcome)
    assert (result.status, result.total_tokens, result.cost_micro_usd) == (status, 0, 0)
    assert result.request_id is None


def test_unknown_model_keeps_tokens_with_unknown_cost() -> None:
    info = read_request("openai-chat", b'{"model": "mystery-9"}')
    result = build_call(provider="openai", info=info, tally=Tally(
        input_tokens=5, output_tokens=6, complete=True), http_status=200, outcome="complete",
        tool="x", kind="chat", request_id=None, latency_ms=1, prices={})
    assert result.cost_micro_usd is None
    assert result.total_tokens == 11


@pytest.mark.parametrize(("headers", "tool"), [
    ({"user-agent": "claude-cli/2.1.4 (external, cli)"}, "claude-code"),
    ({"user-agent": "codex_cli_rs/0.38.0 (Ubuntu 24.04; x86_64) xterm"}, "codex"),
    ({"user-agent": "Aider/0.86 litellm/1.7"}, "aider"),
    ({"user-agent": "Anthropic/JS 0.50.0", "x-title": "Cline"}, "cline"),
    ({"user-agent": "AsyncOpenAI/Python 1.99.0"}, "openai-sdk"),
    ({"user-agent": "Anthropic/Python 0.70.0"}, "anthropic-sdk"),
    ({"user-agent": "Anthropic/Python 0.70.0", "x-meterline-tool": "my bot!"}, "my-bot"),
    ({}, "unknown"),
])
def test_attribution(headers: dict[str, str], tool: str) -> None:
    raw = [(k.encode(), v.encode()) for k, v in headers.items()]
    assert tool_of(raw) == tool


def test_kinds() -> None:
    assert [kind_of(t) for t in ("claude-code", "codex", "aider", "openai-sdk")] == \
        ["agent", "agent", "edit", "chat"]


def test_request_ids_from_either_provider() -> None:
    assert request_id_of([(b"request-id", b"req_011")]) == "req_011"
    assert request_id_of([(b"x-request-id", b"abc")]) == "abc"
    assert request_id_of([]) is None


def test_vendor_quotas_from_both_header_families() -> None:
    now = 1_700_000_000_000
    anthropic = vendor_quotas([
        (b"anthropic-ratelimit-requests-limit", b"4000"),
        (b"anthropic-ratelimit-requests-remaining", b"3000"),
        (b"anthropic-ratelimit-requests-reset", b"2030-01-01T00:00:00Z"),
        (b"anthropic-ratelimit-unified-5h-utilization", b"0.42"),
        (b"anthropic-ratelimit-unified-5h-reset", b"1700003600"),
        (b"content-type", b"application/json")], now)
    by_name = {q["name"]: q for q in anthropic}
    assert by_name["requests"] == {"name": "requests", "limit": 4000, "remaining": 3000,
                                   "used_percent": 25.0, "resets_at_ms": 1893456000000}
    assert by_name["unified-5h"] == {"name": "unified-5h", "used_percent": 42.0,
                                     "resets_at_ms": 1_700_003_600_000}
    openai = vendor_quotas([(b"x-ratelimit-limit-tokens", b"1000"),
                            (b"x-ratelimit-remaining-tokens", b"900"),
                            (b"x-ratelimit-reset-tokens", b"1m30s")], now)
    assert openai == [{"name": "tokens", "limit": 1000, "remaining": 900,
                       "resets_at_ms": now + 90_000, "used_percent": 10.0}]


def test_key_rules() -> None:
    assert client_key("anthropic", [(b"x-api-key", b"sk-ant-1")]) == "sk-ant-1"
    assert client_key("anthropic", [(b"authorization", b"Bearer oat-1")]) == "oat-1"
    assert client_key("openai", [(b"x-api-key", b"sk-1")]) is None
    assert wants_stored_key("openai", [(b"authorization", b"Bearer meterline")])
    assert wants_stored_key("anthropic", [])
    assert not wants_stored_key("openai", [(b"authorization", b"Bearer sk-real")])
    swapped = with_key("anthropic", [(b"x-api-key", b"meterline"), (b"a", b"b")], "sk-s")
    assert swapped == [(b"a", b"b"), (b"x-api-key", b"sk-s")]
    assert with_key("openai", [], "sk-o") == [(b"authorization", b"Bearer sk-o")]


def test_stream_usage_injection_keeps_the_rest_of_the_body() -> None:
    body = (b'{"model": "gpt-4o", "stream": true, '
            b'"messages": [{"role": "user", "content": "\\u00e9"}]}')
    info = read_request("openai-chat", body)
    assert needs_usage_injection("openai-chat", info)
    injected = inject_stream_usage(body)
    assert injected.endswith(body[1:])
    assert json.loads(injected)["stream_options"] == {"include_usage": True}
    asked = b'{"model": "m", "stream": true, "stream_options": {"include_usage": true}}'
    assert not needs_usage_injection("openai-chat", read_request("openai-chat", asked))
    refused = b'{"stream": true, "stream_options": {"include_usage": false, "x": 1}}'
    assert json.loads(inject_stream_usage(refused))["stream_options"] == {
        "include_usage": True, "x": 1}
    assert not needs_usage_injection("openai-responses", info)
    assert json.loads(inject_stream_usage(b"{}")) == {"stream_options": {"include_usage": True}}
    # Given the body's request info, the same bytes come out without decoding it again.
    for same in (body, refused, b"{}", b'{"stream": true, "stream_options": null}', asked):
        assert inject_stream_usage(same, read_request("openai-chat", same)) == \
            inject_stream_usage(same)


def test_request_info() -> None:
    info = read_request("openai-responses", b'{"model":"o3","max_output_tokens":77}')
    assert (info.model, info.max_output, info.stream) == ("o3", 77, False)
    broken = read_request("anthropic", b"not json")
    assert (broken.model, broken.valid_json) == ("unknown", False)
    assert broken.input_estimate == 2
    for not_an_object in (b"[1, 2]", b'"text"', b"null"):
        assert not read_request("anthropic", not_an_object).valid_json
    # The fields are found wherever they are among the rest, which is skipped unread.
    messages = [{"role": "user", "content": [{"type": "text", "text": "x " * 500,
                                              "max_tokens": 1, "model": "inner"}]}] * 50
    body = json.dumps({"messages": messages, "model": "claude-sonnet-4-5", "stream": True,
                       "max_tokens": True, "max_completion_tokens": 900}).encode()
    info = read_request("anthropic", body)
    assert (info.model, info.stream, info.valid_json) == ("claude-sonnet-4-5", True, True)
    assert info.max_output == 900  # ``True`` is no limit (it is an int to Python only)
    nulled = read_request("openai-chat", b'{"stream": true, "stream_options": null}')
    assert needs_usage_injection("openai-chat", nulled)
    assert json.loads(inject_stream_usage(b'{"stream": true, "stream_options": null}')) == {
        "stream": True, "stream_options": {"include_usage": True}}


def test_error_bodies_in_each_providers_format() -> None:
    anthropic = json.loads(error_body("anthropic", "budget", "used up"))
    assert anthropic == {"type": "error", "error": {"type": "rate_limit_error",
                                                    "message": "used up"}}
    openai = json.loads(error_body("openai", "budget", "used up"))
    assert openai["error"]["type"] == "insufficient_quota"
    assert openai["error"]["message"] == "used up"
