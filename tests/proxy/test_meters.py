"""The usage meters, fed every shape the providers send, cut at every byte position."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent._proxy._sse import SSESplitter
from agent._proxy._usage import (
    AnthropicStream,
    JSONMeter,
    Meter,
    OpenAIChatStream,
    OpenAIResponsesStream,
    Tally,
)


def sse(*events: tuple[str | None, object], newline: str = "\n") -> bytes:
    out = []
    for name, payload in events:
        data = payload if isinstance(payload, str) else json.dumps(payload)
        lines = ([f"event: {name}"] if name else []) + [f"data: {data}"]
        out.append(newline.join(lines) + newline + newline)
    return "".join(out).encode()


ANTHROPIC_STREAM = sse(
    ("message_start", {"type": "message_start", "message": {
        "id": "msg_01", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5",
        "content": [], "usage": {"input_tokens": 1200, "output_tokens": 1,
                                 "cache_read_input_tokens": 5000,
                                 "cache_creation_input_tokens": 800,
                                 "cache_creation": {"ephemeral_5m_input_tokens": 500,
                                                    "ephemeral_1h_input_tokens": 300}}}}),
    ("content_block_start", {"type": "content_block_start", "index": 0,
                             "content_block": {"type": "text", "text": ""}}),
    ("ping", {"type": "ping"}),
    ("content_block_delta", {"type": "content_block_delta", "index": 0,
                             "delta": {"type": "text_delta", "text": "Héllo wörld"}}),
    ("content_block_stop", {"type": "content_block_stop", "index": 0}),
    # running totals: 10 then 345, replaced, never added
    ("message_delta", {"type": "message_delta", "delta": {"stop_reason": None},
                       "usage": {"output_tokens": 10}}),
    ("message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn"},
                       "usage": {"output_tokens": 345}}),
    ("message_stop", {"type": "message_stop"}),
)

OPENAI_CHAT_STREAM = sse(
    (None, {"id": "chatcmpl-1", "object": "chat.completion.chunk", "model": "gpt-4o-2024-08-06",
            "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]}),
    (None, {"id": "chatcmpl-1", "object": "chat.completion.chunk", "model": "gpt-4o-2024-08-06",
            "choices": [{"index": 0, "delta": {"content": "Hello"}, "finish_reason": None}]}),
    (None, {"id": "chatcmpl-1", "object": "chat.completion.chunk", "model": "gpt-4o-2024-08-06",
            "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}),
    (None, {"id": "chatcmpl-1", "object": "chat.completion.chunk", "model": "gpt-4o-2024-08-06",
            "choices": [], "usage": {"prompt_tokens": 6200, "completion_tokens": 345,
                                     "total_tokens": 6545,
                                     "prompt_tokens_details": {"cached_tokens": 5000},
                                     "completion_tokens_details": {"reasoning_tokens": 45}}}),
    (None, "[DONE]"),
)

RESPONSES_STREAM = sse(
    ("response.created", {"type": "response.created", "response": {
        "id": "resp_1", "model": "gpt-4o", "status": "in_progress", "usage": None}}),
    ("response.output_text.delta", {"type": "response.output_text.delta", "delta": "Hi there"}),
    ("response.completed", {"type": "response.completed", "response": {
        "id": "resp_1", "model": "gpt-4o", "status": "completed",
        "usage": {"input_tokens": 6200, "input_tokens_details": {"cached_tokens": 5000},
                  "output_tokens": 345, "output_tokens_details": {"reasoning_tokens": 45}}}}),
)

EXPECTED_ANTHROPIC = Tally(input_tokens=1200, output_tokens=345, cache_read_tokens=5000,
                           cache_write_tokens=800, cache_write_1h_tokens=300,
                           model="claude-sonnet-4-5", response_id="msg_01", complete=True,
                           output_chars=len("Héllo wörld"), body_bytes=len(ANTHROPIC_STREAM))
EXPECTED_OPENAI = {"input_tokens": 1200, "output_tokens": 345, "cache_read_tokens": 5000,
                       "reasoning_tokens": 45, "complete": True}


def run(meter: Meter, parts: list[bytes]) -> bytes:
    out = b"".join(meter.feed(part) for part in parts)
    return out + meter.finish()


def splits_everywhere(data: bytes) -> list[list[bytes]]:
    return [[data[:i], data[i:]] for i in range(len(data) + 1)]


def test_anthropic_stream_at_every_split() -> None:
    for parts in splits_everywhere(ANTHROPIC_STREAM):
        meter = AnthropicStream()
        assert run(meter, parts) == ANTHROPIC_STREAM
        assert meter.tally == EXPECTED_ANTHROPIC


@pytest.mark.parametrize("newline", ["\r\n", "\r"])
def test_other_line_endings_split_everywhere(newline: str) -> None:
    stream = sse((None, {"choices": [{"delta": {"content": "ab"}}]}), (None, "[DONE]"),
                 newline=newline)
    for parts in splits_everywhere(stream):
        meter = OpenAIChatStream(strip_usage_chunk=False)
        assert run(meter, parts) == stream
        assert meter.tally.complete
        assert meter.tally.output_chars == 2


def test_openai_chat_stream_strips_the_usage_chunk_it_asked_for() -> None:
    usage_chunk = sse((None, json.loads(OPENAI_CHAT_STREAM.split(b"\n\n")[3][6:])))
    without = OPENAI_CHAT_STREAM.replace(usage_chunk, b"")
    assert without != OPENAI_CHAT_STREAM
    for parts in splits_everywhere(OPENAI_CHAT_STREAM):
        stripped = OpenAIChatStream(strip_usage_chunk=True)
        assert run(stripped, parts) == without
        kept = OpenAIChatStream(strip_usage_chunk=False)
        assert run(kept, parts) == OPENAI_CHAT_STREAM
        for meter in (stripped, kept):
            for key, value in EXPECTED_OPENAI.items():
                assert getattr(meter.tally, key) == value, key
            assert meter.tally.model == "gpt-4o-2024-08-06"
            assert meter.tally.response_id == "chatcmpl-1"


def test_a_final_chunk_with_choices_and_usage_is_kept_whole() -> None:
    last = {"id": "c", "choices": [{"index": 0, "delta": {"content": "!"},
                                    "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 3}}
    stream = sse((None, {"id": "c", "choices": [{"delta": {"content": "ab"}}]}),
                 (None, last), (None, "[DONE]"))
    meter = OpenAIChatStream(strip_usage_chunk=True)
    assert run(meter, [stream]) == stream
    assert (meter.tally.input_tokens, meter.tally.output_tokens) == (10, 3)


def test_responses_stream_at_every_split() -> None:
    for parts in splits_everywhere(RESPONSES_STREAM):
        meter = OpenAIResponsesStream()
        assert run(meter, parts) == RESPONSES_STREAM
        for key, value in EXPECTED_OPENAI.items():
            assert getattr(meter.tally, key) == value, key
        assert meter.tally.response_id == "resp_1"
        assert meter.tally.output_chars == len("Hi there")


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_any_chopping_gives_the_same_tally_and_bytes(data: st.DataObject) -> None:
    stream = data.draw(st.sampled_from([ANTHROPIC_STREAM, OPENAI_CHAT_STREAM,
                                        RESPONSES_STREAM]))
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=30)))
    parts = [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True)]
    reference: Meter
    meter: Meter
    if stream is ANTHROPIC_STREAM:
        reference, meter = AnthropicStream(), AnthropicStream()
    elif stream is RESPONSES_STREAM:
        reference, meter = OpenAIResponsesStream(), OpenAIResponsesStream()
    else:
        reference = OpenAIChatStream(strip_usage_chunk=False)
        meter = OpenAIChatStream(strip_usage_chunk=False)
    assert run(meter, parts) == run(reference, [stream]) == stream
    assert meter.tally == reference.tally


def test_the_last_event_is_held_until_finish() -> None:
    for stream, meter in ((ANTHROPIC_STREAM, AnthropicStream()),
                          (OPENAI_CHAT_STREAM, OpenAIChatStream(strip_usage_chunk=False)),
                          (RESPONSES_STREAM, OpenAIResponsesStream())):
        early = meter.feed(stream)
        last = stream[stream.rstrip(b"\n").rfind(b"\n\n") + 2:]
        assert early == stream[:-len(last)]
        assert meter.finish() == last


def test_gateway_zero_input_in_message_start_is_replaced_later() -> None:
    stream = sse(
        ("message_start", {"type": "message_start", "message": {
            "id": "msg_2", "model": "claude-haiku-4-5",
            "usage": {"input_tokens": 0, "output_tokens": 1}}}),
        ("message_delta", {"type": "message_delta",
                           "usage": {"input_tokens": 900, "output_tokens": 50}}),
        # a zero later never wipes a figure already known
        ("message_delta", {"type": "message_delta",
                           "usage": {"input_tokens": 0, "output_tokens": 60}}),
        ("message_stop", {"type": "message_stop"}))
    meter = AnthropicStream()
    run(meter, [stream])
    assert (meter.tally.input_tokens, meter.tally.output_tokens) == (900, 60)


def test_a_cut_stream_keeps_what_was_reported_and_counts_text() -> None:
    cut = ANTHROPIC_STREAM[:ANTHROPIC_STREAM.index(b"event: message_delta")]
    meter = AnthropicStream()
    run(meter, [cut])
    assert meter.tally.input_tokens == 1200
    assert meter.tally.output_tokens == 1  # only message_start's running figure
    assert not meter.tally.complete
    assert meter.tally.output_chars == len("Héllo wörld")


def test_stream_error_event_is_flagged() -> None:
    stream = sse(("error", {"type": "error", "error": {"type": "overloaded_error"}}))
    meter = AnthropicStream()
    run(meter, [stream])
    assert meter.tally.error
    assert not meter.tally.complete


@pytest.mark.parametrize(("api", "body", "expected"), [
    ("anthropic", {"id": "msg_3", "type": "message", "model": "claude-opus-4-1",
                   "usage": {"input_tokens": 7, "output_tokens": 8,
                             "cache_creation_input_tokens": 9,
                             "cache_read_input_tokens": 10}},
     {"input_tokens": 7, "output_tokens": 8, "cache_write_tokens": 9, "cache_read_tokens": 10,
      "cache_write_1h_tokens": 0, "complete": True, "error": False}),
    ("openai-chat", {"id": "chatcmpl-9", "model": "gpt-4o-mini", "choices": [
        {"message": {"content": "abcd"}}], "usage": {"prompt_tokens": 100,
                                                     "completion_tokens": 20}},
     {"input_tokens": 100, "output_tokens": 20, "cache_read_tokens": 0, "output_chars": 4}),
    ("openai-completions", {"id": "cmpl-9", "model": "gpt-3.5-turbo-instruct", "choices": [
        {"text": "xyz"}], "usage": {"prompt_tokens": 5, "completion_tokens": 3,
                                    "prompt_tokens_details": {"cached_tokens": 2}}},
     {"input_tokens": 3, "cache_read_tokens": 2, "output_tokens": 3, "output_chars": 3}),
    ("openai-responses", {"id": "resp_9", "model": "o4-mini", "status": "completed",
                          "usage": {"input_tokens": 50,
                                    "input_tokens_details": {"cached_tokens": 20},
                                    "output_tokens": 30,
                                    "output_tokens_details": {"reasoning_tokens": 25}}},
     {"input_tokens": 30, "cache_read_tokens": 20, "output_tokens": 30,
      "reasoning_tokens": 25}),
    ("anthropic", {"type": "error", "error": {"type": "overloaded_error", "message": "x"}},
     {"error": True, "input_tokens": None}),
])
def test_json_bodies_at_every_split(api: str, body: dict[str, object],
                                    expected: dict[str, object]) -> None:
    raw = json.dumps(body).encode()
    for parts in splits_everywhere(raw):
        meter = JSONMeter(api)  # type: ignore[arg-type]
        forwarded = b"".join(meter.feed(p) for p in parts)
        assert (raw.startswith(forwarded) and len(forwarded) < len(raw)) or not parts[-1]
        assert forwarded + meter.finish() == raw
        for key, value in expected.items():
            assert getattr(meter.tally, key) == value, key


def test_splitter_keeps_an_unterminated_tail_for_forwarding() -> None:
    splitter = SSESplitter()
    assert splitter.feed(b"data: a\n\ndata: b") [0].data == "a"
    events, rest = splitter.finish()
    assert events == []
    assert rest == b"data: b"


def test_splitter_joins_multi_line_data_and_skips_comments() -> None:
    splitter = SSESplitter()
    events = splitter.feed(b": keep-alive\n\nevent: x\ndata: one\ndata: two\n\n")
    assert [(e.name, e.data) for e in events] == [("", ""), ("x", "one\ntwo")]


_SSE_LINE = st.one_of(
    st.sampled_from(["data: {\"a\": 1}", "data:", "data", ": keep-alive", "event: x",
                     "event:y", "event: ", "event:  two", "id: 7", "data:  two spaces",
                     "data: [DONE]", ""]),
    st.text(st.characters(blacklist_characters="\r\n", blacklist_categories=("Cs",)),
            max_size=12).map(lambda t: "data: " + t),
)


@given(lines=st.lists(_SSE_LINE, max_size=12), newline=st.sampled_from(["\n", "\r\n", "\r"]),
       cut=st.integers(min_value=0, max_value=400))
@settings(max_examples=300, deadline=None)
def test_splitter_gives_the_same_events_however_the_bytes_arrive(
        lines: list[str], newline: str, cut: int) -> None:
    """Whole chunks take a shortcut (``_whole``); byte by byte takes the general path:
    the events, their names, data and raw bytes must be the same."""
    raw = "".join(line + newline for line in lines).encode() + b"\n\n"

    def run(parts: list[bytes]) -> tuple[list[tuple[str, str, bytes]], bytes]:
        splitter = SSESplitter()
        events = [e for part in parts for e in splitter.feed(part)]
        tail, rest = splitter.finish()
        return [(e.name, e.data, e.raw) for e in events + tail], rest

    one_by_one = run([raw[i:i + 1] for i in range(len(raw))])
    assert run([raw]) == one_by_one
    cut %= len(raw) + 1
    assert run([raw[:cut], raw[cut:]]) == one_by_one
    assert run([raw, raw]) == run([raw[i:i + 1] for i in range(len(raw))] * 2)
    assert b"".join(e[2] for e in one_by_one[0]) + one_by_one[1] == raw


def test_splitter_shortcut_is_taken_for_whole_events() -> None:
    splitter = SSESplitter()
    events = splitter.feed(b"event: x\ndata: 1\n\ndata: 2\n\n")
    assert [(e.name, e.data, e.raw) for e in events] == [
        ("x", "1", b"event: x\ndata: 1\n\n"), ("", "2", b"data: 2\n\n")]
    assert not splitter._buffer  # nothing copied into the buffer
    assert splitter.feed(b"data: 3") == []  # a partial event: the general path
    assert [e.data for e in splitter.feed(b"\n\n")] == ["3"]
    assert [e.data for e in splitter.feed(b"data: 4\n\n")] == ["4"]
    assert not splitter._buffer  # consumed: the shortcut again
