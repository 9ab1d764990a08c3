"""The ``meterline/*`` methods: their params, checked field by field, and what each does.

==============================  ==============  =====================================
method                          sent as         params → result (when sent as a request)
==============================  ==============  =====================================
``meterline/recordCall``        notification    a call (camelCase fields, as for
                                (or request)    ``meterline record``) with an optional
                                                ``suggestion: {id, uri, range, text}``
                                                → ``{callId, queued}``
``meterline/suggestionShown``   notification    ``{suggestionId}`` → ``{suggestionId,
``meterline/suggestionAccepted``  (or request)  outcome}``; Accepted also takes
``meterline/suggestionRejected``                ``acceptedText`` (partial acceptance)
``meterline/status``            request         none → the status object
==============================  ==============  =====================================

Params arrive as plain JSON values (see ``lsp._protocol``). Malformed ones raise InputError
naming the field; the server turns that into a JSON-RPC InvalidParams error (-32602) for a
request, and one error in the editor's log for a notification (which has no reply).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

import msgspec

from agent import Call, InputError, parse_calls, price_call
from lsp._suggestions import Suggestion, Suggestions
from lsp._sync import OpenDocuments

Label = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
Text = Annotated[str, msgspec.Meta(max_length=4_000_000)]
Count = Annotated[int, msgspec.Meta(ge=0, le=100_000_000)]


class PositionParam(msgspec.Struct, forbid_unknown_fields=True):
    line: Count
    character: Count


class RangeParam(msgspec.Struct, forbid_unknown_fields=True):
    start: PositionParam
    end: PositionParam


class OfferedSuggestion(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """``suggestion`` of ``meterline/recordCall``: what was offered, where."""

    id: Label
    uri: Annotated[str, msgspec.Meta(min_length=1, max_length=8192)]
    range: RangeParam
    text: Text


class SuggestionRef(msgspec.Struct, kw_only=True, rename="camel", forbid_unknown_fields=True):
    """Params of ``meterline/suggestionShown|Accepted|Rejected``."""

    suggestion_id: Label
    accepted_text: Text | None = None


def _convert(raw: Any, kind: type[Any], where: str) -> Any:
    if not isinstance(raw, dict):
        raise InputError(f"{where or 'params'}: expected a JSON object, "
                         f"got {type(raw).__name__ if raw is not None else 'nothing'}")
    try:
        return msgspec.convert(raw, kind)
    except msgspec.ValidationError as exc:
        message, _, at = str(exc).partition(" - at `$")
        field = at.rstrip("`").lstrip(".")
        message = message.replace("`", "")
        if not field:
            for pattern in ("Object missing required field ", "Object contains unknown field "):
                if message.startswith(pattern):
                    field = message[len(pattern):]
                    message = ("required field is missing" if "missing" in pattern
                               else "unknown field")
        prefix = f"{where}.{field}" if where and field else where or field or "params"
        raise InputError(f"{prefix}: {message[:1].lower()}{message[1:]}") from None


def parse_record_call(params: Any) -> tuple[Call, OfferedSuggestion | None]:
    """``meterline/recordCall`` params: the call's fields at the top (or under ``call``),
    and optionally ``suggestion``."""
    if not isinstance(params, dict):
        raise InputError("params: expected a JSON object (a call), got "
                         f"{type(params).__name__ if params is not None else 'nothing'}")
    fields = dict(params)
    raw_suggestion = fields.pop("suggestion", None)
    if set(fields) == {"call"} and isinstance(fields["call"], dict):
        fields = dict(fields["call"])
    call = parse_calls(fields)[0]
    if "source" not in fields:
        call.source = "lsp"
    offered = (None if raw_suggestion is None
               else _convert(raw_suggestion, OfferedSuggestion, "suggestion"))
    return call, offered


def parse_suggestion_ref(params: Any, *, accepted: bool = False) -> SuggestionRef:
    ref: SuggestionRef = _convert(params, SuggestionRef, "")
    if ref.accepted_text is not None and not accepted:
        raise InputError("acceptedText: only meterline/suggestionAccepted takes it")
    return ref


def record_call(call: Call, offered: OfferedSuggestion | None, *, link_put: Any,
                suggestions: Suggestions, documents: OpenDocuments,
                prices: Mapping[str, Any]) -> dict[str, Any]:
    """Queue the call (priced if it came without a cost) and record its offered suggestion."""
    if call.cost_micro_usd is None:
        call.cost_micro_usd = price_call(call, dict(prices))
    link_put(call)
    result: dict[str, Any] = {"callId": call.id, "queued": True}
    if offered is not None:
        start = (offered.range.start.line, offered.range.start.character)
        document = documents.get(offered.uri)
        anchor = document.position(*start) if document is not None else None
        fresh = suggestions.offer(Suggestion(
            id=offered.id, text=offered.text, uri=offered.uri, client_start=start,
            call_id=call.id, tool=call.tool, model=call.model, language=call.language,
            workspace=call.workspace), anchor)
        result["suggestionId"] = offered.id
        result["suggestionRecorded"] = fresh
    return result
