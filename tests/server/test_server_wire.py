"""The wire schema: what is refused, and how the error names the field and the index."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from server_factory import call, suggestion

from server import _budgets, _tokens
from server._errors import InputError, MalformedBody, PayloadTooLarge, ServerError
from server._txn import now_ms
from server._wire import (
    MAX_BATCH_EVENTS,
    CallEvent,
    EventBatch,
    SuggestionRetained,
    check_events,
    decode,
)


def batch(*events: dict[str, Any]) -> bytes:
    return json.dumps({"events": list(events)}).encode()


def refused(raw: bytes) -> ServerError:
    with pytest.raises(ServerError) as caught:
        check_events(decode(raw, EventBatch), now_ms())
    return caught.value


def test_a_full_batch_decodes() -> None:
    decoded = decode(batch(call(), suggestion("retained", checkpoint_s=30)), EventBatch)
    first, second = decoded.events
    assert isinstance(first, CallEvent)
    assert first.input_tokens == 100
    assert isinstance(second, SuggestionRetained)
    assert second.checkpoint_s == 30


def test_minimal_events_take_the_defaults() -> None:
    raw = batch({"type": "call", "id": str(uuid.uuid4()), "ts": "2026-01-01T00:00:00Z",
                 "tool": "t", "provider": "p", "model": "m"})
    [event] = decode(raw, EventBatch).events
    assert isinstance(event, CallEvent)
    assert (event.kind, event.status, event.cost_micro_usd) == ("chat", "ok", None)


@pytest.mark.parametrize(("event", "field"), [
    (call(prompt="secret source code"), "prompt"),           # unknown fields: never stored
    (call(path="/home/me/repo"), "path"),
    (call(input_tokens=-1), "input_tokens"),
    (call(input_tokens="12"), "input_tokens"),                # no coercion
    (call(output_tokens=True), "output_tokens"),
    (call(input_tokens=10**20), "input_tokens"),
    (call(cost_micro_usd=1.5), "cost_micro_usd"),
    (call(kind="banana"), "kind"),
    (call(ts="2026-01-01T00:00:00"), "ts"),                   # a zone is required
    (call(id="not-a-uuid"), "id"),
    (call(tool=""), "tool"),
    (call(model="m" * 201), "model"),
    (call(type="nope"), "type"),
    (suggestion("offered", chars=-3), "chars"),
    (suggestion("committed", commit="not hex!"), "commit"),
    ({"id": str(uuid.uuid4())}, "type"),
])
def test_bad_fields_are_named_with_their_index(event: dict[str, Any], field: str) -> None:
    error = refused(batch(call(), call(), event))
    assert isinstance(error, InputError)
    assert (error.field, error.index) == (field, 2)
    assert error.status == 422


@pytest.mark.parametrize(("event", "field"), [
    (call(ts="1999-12-31T23:59:59Z"), "ts"),
    (call(ts="2999-01-01T00:00:00Z"), "ts"),
    (call(workspace="/home/me/secret-project"), "workspace"),
    (call(workspace="C:\\work\\repo"), "workspace"),
    (call(cache_write_tokens=5, cache_write_1h_tokens=6), "cache_write_1h_tokens"),
    (call(output_tokens=5, reasoning_tokens=6), "reasoning_tokens"),
    (suggestion("retained", checkpoint_s=None), "checkpoint_s"),
    (call(tool="bad\u0000tool"), "tool"),
])
def test_rules_beyond_types(event: dict[str, Any], field: str) -> None:
    error = refused(batch(call(), event))
    assert (error.field, error.index, error.status) == (field, 1, 422)


def test_not_json_and_wrong_shapes() -> None:
    for raw, status in ((b"{", 400), (b"[]", 400), (b"\xff", 400), (b'"x"', 400),
                        (b"{}", 422), (b'{"events": {}}', 422), (b'{"events": [1]}', 422)):
        error = refused(raw)
        assert error.status == status, raw
    assert isinstance(refused(b"nope"), MalformedBody)


def test_lone_surrogates_are_refused_before_storage() -> None:
    raw = batch(call()).replace(b'"laptop"', b'"\\ud800"')
    assert refused(raw).status == 400


def test_too_many_events() -> None:
    error = refused(batch(*([call()] * (MAX_BATCH_EVENTS + 1))))
    assert isinstance(error, PayloadTooLarge)
    assert error.status == 413


def test_tokens_are_random_hashed_and_checked() -> None:
    minted = _tokens.mint("member")
    presented = _tokens.parse(minted.token)
    assert presented is not None
    assert presented.id == minted.id
    assert len(presented.secret) >= 43  # 32 random bytes, base64
    assert minted.secret_sha256 != presented.secret
    assert _tokens.matches(presented, minted.secret_sha256)
    assert not _tokens.matches(presented, _tokens.mint("member").secret_sha256)
    assert _tokens.parse(minted.token.replace("mlt_", "mlc_", 1)).kind == "ci"  # type: ignore[union-attr]
    for garbage in ("", "Bearer x", minted.token + "!", minted.token[:-20], "mlt_x_y"):
        assert _tokens.parse(garbage) is None
    assert _tokens.mint("member").token != _tokens.mint("member").token


def test_budget_rules() -> None:
    assert _budgets.normalize_period("Day") == "day"
    assert _budgets.normalize_period("1h30m") == "1h30m"
    assert _budgets.normalize_period("rolling:5h") == "5h"
    for bad in ("fortnight", "0h", "30s", "400d", "5h banana", "h5"):
        with pytest.raises(InputError):
            _budgets.normalize_period(bad)
    assert _budgets.check_timezone("Europe/Paris") == "Europe/Paris"
    assert _budgets.check_timezone(None) is None
    for bad in ("Mars/Olympus", "../../etc/passwd", "", "Europe/\x00"):
        with pytest.raises(InputError):
            _budgets.check_timezone(bad)
    assert _budgets.check_limits(12.5, None) == 12_500_000
    with pytest.raises(InputError):
        _budgets.check_limits(None, None)
