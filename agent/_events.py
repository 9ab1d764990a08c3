"""The event model: immutable facts with UUIDv7 ids, as in docs/architecture.md.

``Call`` is one metered assistant call; ``SuggestionEvent`` is one step in the life of a piece
of suggested code. Both are validated on the way in (``parse_calls``,
``parse_suggestion_events``), from snake_case or camelCase JSON, and every error names the
field (and the index in a batch) that was wrong.

Token fields follow one convention whatever the provider reports:
``input_tokens`` is fresh (uncached) input, ``cache_read_tokens`` and ``cache_write_tokens``
are the cached parts of the input, so the whole prompt is their sum;
``cache_write_1h_tokens`` is the part of the cache writes kept for one hour (priced higher)
and ``reasoning_tokens`` the part of ``output_tokens`` spent on reasoning.
"""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal, TypeVar

import msgspec

from agent._errors import InputError
from agent._ids import canonical_id, new_id

#: No single call plausibly moves more tokens than this in one field; more is a bug upstream.
MAX_TOKENS_PER_FIELD = 100_000_000
#: One million dollars, in micro-dollars: a single call costing more is not a real call.
MAX_COST_MICRO_USD = 1_000_000_000_000
#: How far in the future a timestamp may be before we call it a broken clock.
MAX_CLOCK_SKEW = timedelta(days=1)

Tokens = Annotated[int, msgspec.Meta(ge=0, le=MAX_TOKENS_PER_FIELD)]
Label = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
Count = Annotated[int, msgspec.Meta(ge=0, le=1_000_000_000)]

CallKind = Literal["inline", "chat", "agent", "edit"]
CallStatus = Literal["ok", "error", "blocked"]
SuggestionType = Literal["offered", "accepted", "rejected", "retained", "committed", "deployed"]


def _now() -> datetime:
    return datetime.now(UTC)


class Call(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """One metered assistant call."""

    id: str = msgspec.field(default_factory=new_id)
    ts: datetime = msgspec.field(default_factory=_now)
    device_id: str | None = None
    tool: Label
    source: Label = "record"
    provider: Label
    model: Label
    kind: CallKind = "chat"
    input_tokens: Tokens = 0
    output_tokens: Tokens = 0
    cache_read_tokens: Tokens = 0
    cache_write_tokens: Tokens = 0
    cache_write_1h_tokens: Tokens = 0
    reasoning_tokens: Tokens = 0
    #: Integer micro-dollars. ``None`` on input means "price it"; after pricing, "unknown".
    cost_micro_usd: Annotated[int, msgspec.Meta(ge=0, le=MAX_COST_MICRO_USD)] | None = None
    estimated: bool = False
    latency_ms: Annotated[int, msgspec.Meta(ge=0, le=86_400_000)] | None = None
    status: CallStatus = "ok"
    language: Annotated[str, msgspec.Meta(max_length=64)] | None = None
    workspace: Annotated[str, msgspec.Meta(max_length=200)] | None = None
    request_id: Annotated[str, msgspec.Meta(min_length=1, max_length=200)] | None = None

    @property
    def total_tokens(self) -> int:
        """Every token the call moved: fresh input, cached input (read and written), output."""
        return (self.input_tokens + self.cache_read_tokens + self.cache_write_tokens
                + self.output_tokens)


class SuggestionEvent(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """One step in the life of a suggestion: offered → accepted → retained → committed."""

    id: str = msgspec.field(default_factory=new_id)
    ts: datetime = msgspec.field(default_factory=_now)
    device_id: str | None = None
    suggestion_id: Label
    call_id: str | None = None
    type: SuggestionType
    chars: Count = 0
    lines: Count = 0
    #: For ``retained``: seconds after acceptance at which the count was taken.
    checkpoint_s: Annotated[int, msgspec.Meta(ge=0, le=86_400 * 30)] | None = None
    commit: Annotated[str, msgspec.Meta(max_length=64)] | None = None
    environment: Annotated[str, msgspec.Meta(max_length=64)] | None = None
    tool: Annotated[str, msgspec.Meta(max_length=200)] | None = None
    model: Annotated[str, msgspec.Meta(max_length=200)] | None = None
    language: Annotated[str, msgspec.Meta(max_length=64)] | None = None
    workspace: Annotated[str, msgspec.Meta(max_length=200)] | None = None
    #: For ``accepted``: fingerprints of the accepted lines (``line_fingerprints``), kept on
    #: this machine only to recognise those lines in later commits; never synced.
    line_hashes: Annotated[list[Annotated[str, msgspec.Meta(max_length=32)]],
                           msgspec.Meta(max_length=10_000)] | None = None


#: A line needs this many non-blank characters to be recognised in a commit: shorter ones
#: (``}``, ``else:``, ``return x``) are too common to say where they came from.
MIN_FINGERPRINT_CHARS = 10


def line_fingerprint(line: str) -> str | None:
    """A short hash of a line with its indentation and trailing blanks removed, or None
    for a line too short or common to attribute."""
    stripped = line.strip()
    if sum(not ch.isspace() for ch in stripped) < MIN_FINGERPRINT_CHARS:
        return None
    return hashlib.sha256(stripped.encode()).hexdigest()[:20]


def line_fingerprints(text: str) -> list[str]:
    """The distinct fingerprints of the lines of ``text`` worth recognising later."""
    seen = dict.fromkeys(f for f in map(line_fingerprint, text.splitlines()) if f)
    return list(seen)


_E = TypeVar("_E", Call, SuggestionEvent)

_CAMEL = re.compile(r"(?<=[a-z0-9])([A-Z])")


def snake_keys(obj: dict[str, Any]) -> dict[str, Any]:
    """``{"inputTokens": 1}`` → ``{"input_tokens": 1}``; snake_case keys are left alone."""
    return {_CAMEL.sub(r"_\1", key).lower(): value for key, value in obj.items()}


def workspace_hash(value: str) -> str:
    """A stable, non-reversible name for a repository: never a path on the wire."""
    return "ws-" + hashlib.sha256(value.encode()).hexdigest()[:16]


def _looks_like_path(value: str) -> bool:
    return "/" in value or "\\" in value or value.startswith("~")


def _finish(event: Call | SuggestionEvent, where: str) -> None:
    """Checks msgspec cannot express, and normalisation shared by both event kinds."""
    try:
        event.id = canonical_id(event.id)
    except ValueError:
        raise InputError(f"{where}id: not a UUID: {event.id!r}") from None
    if event.ts.tzinfo is None:
        raise InputError(f"{where}ts: needs a time zone, e.g. 2026-01-31T09:30:00Z")
    event.ts = event.ts.astimezone(UTC)
    if event.ts > _now() + MAX_CLOCK_SKEW:
        raise InputError(f"{where}ts: {event.ts.isoformat()} is more than a day in the future")
    if event.workspace and _looks_like_path(event.workspace):
        # A path must never leave the machine (or even reach the store): keep only its hash.
        event.workspace = workspace_hash(event.workspace)


def _check_call(call: Call, where: str) -> None:
    _finish(call, where)
    if call.cache_write_1h_tokens > call.cache_write_tokens:
        raise InputError(f"{where}cache_write_1h_tokens: exceeds cache_write_tokens "
                         f"({call.cache_write_1h_tokens} > {call.cache_write_tokens})")
    if call.reasoning_tokens > call.output_tokens:
        raise InputError(f"{where}reasoning_tokens: exceeds output_tokens "
                         f"({call.reasoning_tokens} > {call.output_tokens})")


def _convert(raw: Any, kind: type[_E], where: str) -> _E:
    if not isinstance(raw, dict):
        raise InputError(f"{where.rstrip(': ') or 'input'}: expected a JSON object, "
                         f"got {type(raw).__name__}")
    try:
        return msgspec.convert(snake_keys(raw), kind, strict=True)
    except msgspec.ValidationError as exc:
        raise InputError(where + _plain(str(exc))) from None


def _plain(message: str) -> str:
    """msgspec says "Expected `int` >= 0 - at `$.input_tokens`"; we say "input_tokens: ..."."""
    text, _, at = message.partition(" - at `$")
    text = text.replace("`", "")
    if at:
        field = at.rstrip("`").lstrip(".")
        return f"{field}: {text[0].lower()}{text[1:]}"
    missing = re.match(r"Object missing required field (\w+)", text)
    if missing:
        return f"{missing.group(1)}: required field is missing"
    unknown = re.match(r"Object contains unknown field (\w+)", text)
    if unknown:
        return f"{unknown.group(1)}: unknown field"
    return text


def _batch(raw: Any) -> list[Any]:
    items = raw if isinstance(raw, list) else [raw]
    if not items:
        raise InputError("input: an empty array holds no calls")
    return items


def parse_calls(raw: Any) -> list[Call]:
    """Validate one call (a JSON object) or a batch (an array): all of it, or raise InputError."""
    items = _batch(raw)
    calls = []
    for index, item in enumerate(items):
        where = f"call {index}: " if isinstance(raw, list) else ""
        call = _convert(item, Call, where)
        _check_call(call, where)
        calls.append(call)
    return calls


def parse_suggestion_events(raw: Any) -> list[SuggestionEvent]:
    """Validate one suggestion event or a batch of them; all of it, or raise InputError."""
    events = []
    for index, item in enumerate(_batch(raw)):
        where = f"event {index}: " if isinstance(raw, list) else ""
        event = _convert(item, SuggestionEvent, where)
        _finish(event, where)
        events.append(event)
    return events


def decode_json(data: bytes | str) -> Any:
    """Parse JSON, turning a syntax error into an InputError that says where."""
    try:
        return msgspec.json.decode(data)
    except msgspec.DecodeError as exc:
        raise InputError(f"input: malformed JSON ({exc})") from None
