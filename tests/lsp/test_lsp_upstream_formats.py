"""Requests and replies in each provider's own format, usage mapping, options — no I/O."""

from __future__ import annotations

import pytest

from agent import CompletionSettings, ConfigError
from lsp._completion import (
    Context,
    Prompt,
    TokenUsage,
    call_for,
    clean,
    error_text,
    parse_reply,
    request_for,
    sent_text,
)
from lsp._options import Upstream, parse_init_options, resolve_upstream

PROMPT = Prompt(prefix="def f():\n    ", suffix="\n", language="python")
CONTEXT = Context("file:///p/a.py", (1, 4), "python", "ws-1")


def upstream(provider: str, api: str, key: str | None = "k") -> Upstream:
    return Upstream(provider=provider, api=api, url="http://x", model="m", api_key=key,
                    max_tokens=64, timeout_s=5, context_before=100, context_after=10)


def test_openai_chat_request_and_reply() -> None:
    headers, body = request_for(upstream("openai", "chat"), PROMPT)
    assert headers["authorization"] == "Bearer k"
    assert body["max_tokens"] == 64
    assert "def f():\n    <CURSOR>\n" in body["messages"][1]["content"]
    reply = parse_reply(upstream("openai", "chat"), {"x-request-id": "req-1"}, {
        "id": "chatcmpl-1", "model": "gpt-x",
        "choices": [{"message": {"content": "return 1"}}],
        "usage": {"prompt_tokens": 100, "completion_tokens": 20,
                  "prompt_tokens_details": {"cached_tokens": 60},
                  "completion_tokens_details": {"reasoning_tokens": 5}}})
    assert reply == ("return 1", TokenUsage(input=40, output=20, cache_read=60, reasoning=5),
                     "req-1", "gpt-x")


def test_openai_completions_use_prompt_and_suffix() -> None:
    _, body = request_for(upstream("openai", "completions"), PROMPT)
    assert (body["prompt"], body["suffix"]) == (PROMPT.prefix, PROMPT.suffix)
    reply = parse_reply(upstream("openai", "completions"), {},
                        {"id": "cmpl-1", "choices": [{"text": "pass"}]})
    assert reply.text == "pass"
    assert reply.request_id == "cmpl-1"
    assert reply.usage == TokenUsage(None, None)


def test_anthropic_request_and_reply_with_cache() -> None:
    headers, body = request_for(upstream("anthropic", "messages"), PROMPT)
    assert headers["x-api-key"] == "k"
    assert headers["anthropic-version"] == "2023-06-01"
    assert "authorization" not in headers
    assert body["system"].startswith("You are a code completion engine")
    reply = parse_reply(upstream("anthropic", "messages"), {"request-id": "req_9"}, {
        "id": "msg_1", "model": "claude-x",
        "content": [{"type": "text", "text": "a"}, {"type": "tool_use"},
                    {"type": "text", "text": "b"}],
        "usage": {"input_tokens": 10, "output_tokens": 3, "cache_read_input_tokens": 7,
                  "cache_creation_input_tokens": 4,
                  "cache_creation": {"ephemeral_1h_input_tokens": 9}}})
    assert reply.text == "ab"
    assert reply.usage == TokenUsage(10, 3, cache_read=7, cache_write=4, cache_write_1h=4)
    assert reply.request_id == "req_9"


def test_ollama_generate_and_a_cached_prompt_without_a_count() -> None:
    _, body = request_for(upstream("ollama", "generate", key=None), PROMPT)
    assert body["suffix"] == "\n"
    assert body["options"]["num_predict"] == 64
    reply = parse_reply(upstream("ollama", "generate"), {},
                        {"model": "qwen", "response": "x", "eval_count": 3})
    assert reply.usage == TokenUsage(None, 3)
    chat = parse_reply(upstream("ollama", "chat"), {},
                       {"message": {"content": "y"}, "prompt_eval_count": 5, "eval_count": 1})
    assert (chat.text, chat.usage) == ("y", TokenUsage(5, 1))


def test_a_reply_of_the_wrong_shape_is_an_upstream_error() -> None:
    from lsp._completion import UpstreamError

    with pytest.raises(UpstreamError, match="unexpected response"):
        parse_reply(upstream("openai", "chat"), {}, {"choices": []})
    assert error_text({"error": {"message": "rate limited"}}) == "rate limited"
    assert error_text({"error": "boom"}) == "boom"
    assert error_text("nope") == ""


def test_missing_usage_is_estimated_and_flagged() -> None:
    call = call_for(upstream("openai", "chat"), TokenUsage(None, None), sent="x" * 40,
                    received="y" * 8, latency_ms=3, status="ok", context=CONTEXT)
    assert (call.input_tokens, call.output_tokens, call.estimated) == (10, 2, True)
    reported = call_for(upstream("openai", "chat"), TokenUsage(11, 3), sent="x" * 40,
                        received="y", latency_ms=3, status="ok", context=CONTEXT)
    assert (reported.input_tokens, reported.output_tokens, reported.estimated) == (11, 3, False)
    assert reported.kind == "inline"
    assert reported.tool == "meterline-lsp"


def test_everything_sent_counts_for_the_estimate() -> None:
    _, body = request_for(upstream("anthropic", "messages"), PROMPT)
    assert body["system"] in sent_text(body)
    assert PROMPT.prefix in sent_text(body)


def test_fenced_replies_are_unwrapped() -> None:
    assert clean("```python\nreturn 1\n```") == "return 1"
    assert clean("return 1") == "return 1"
    assert clean("x = '```'") == "x = '```'"


# -- options --------------------------------------------------------------------------------

def test_init_options_are_checked_field_by_field() -> None:
    options, problem = parse_init_options({"retentionCheckpoints": [1, 2]})
    assert problem is None
    assert options.retention_checkpoints == [1, 2]
    options, problem = parse_init_options({"retentionCheckpoints": [0]})
    assert problem is not None
    assert "retentionCheckpoints[0]" in problem
    assert options.retention_checkpoints is None  # the defaults
    _, problem = parse_init_options({"completion": {"provider": "x", "model": "m"}})
    assert problem is not None
    assert "completion.provider" in problem
    _, problem = parse_init_options({"typo": 1})
    assert problem is not None
    assert "typo" in problem
    # Every wrong one named at once; the right ones kept.
    options, problem = parse_init_options({
        "completion": {"provider": "fooai", "model": "x"}, "retentionCheckpoints": "soon",
        "rejectReplacedAfterSeconds": -4, "rejectUnansweredAfterSeconds": 10})
    assert problem is not None
    for field in ("completion.provider", "retentionCheckpoints",
                  "rejectReplacedAfterSeconds"):
        assert f"initializationOptions.{field}:" in problem
    assert (options.completion, options.retention_checkpoints,
            options.reject_replaced_after_seconds,
            options.reject_unanswered_after_seconds) == (None, None, 5.0, 10.0)


@pytest.mark.parametrize(("provider", "url"), [
    ("openai", "https://api.openai.com/v1/chat/completions"),
    ("anthropic", "https://api.anthropic.com/v1/messages"),
    ("ollama", "http://localhost:11434/api/generate"),
])
def test_base_urls_are_taken_as_each_sdk_takes_them(provider: str, url: str) -> None:
    settings = CompletionSettings(provider=provider, model="m")  # type: ignore[arg-type]
    resolved = resolve_upstream(settings, None, environ={})
    assert resolved is not None
    assert resolved.url == url


def test_upstream_options_override_config_and_keys_come_from_the_environment() -> None:
    from lsp._options import CompletionOptions

    options = CompletionOptions(provider="openai", model="m", base_url="http://h:1/v1/",
                                api_key_env="MY_KEY", api="completions")
    resolved = resolve_upstream(CompletionSettings(), options, environ={"MY_KEY": "s"})
    assert resolved is not None
    assert (resolved.url, resolved.api_key) == ("http://h:1/v1/completions", "s")
    with pytest.raises(ConfigError, match="MY_KEY is not set"):
        resolve_upstream(CompletionSettings(), options, environ={})
    assert resolve_upstream(CompletionSettings(), None, environ={}) is None  # off
    with pytest.raises(ConfigError, match="no 'chat' API"):
        resolve_upstream(CompletionSettings(), CompletionOptions(
            provider="anthropic", model="m", api="chat"), environ={})


