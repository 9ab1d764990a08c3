"""What goes over the wire: request and response bodies, validated by msgspec.

The event schema is shared with the agent's sync client; keep these names exactly.
Unknown fields are refused (422) everywhere, so prompt text, paths or code can never be
stored by accident: an event carries counts, model, tool, language and hashes only.

``decode`` turns a body into one of these types or raises ``InputError`` naming the field
and, inside a batch, the index of the event that was wrong. ``check_events`` adds the rules
msgspec cannot express (a clock that is off, a path where a hash belongs, ...).
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime
from typing import Annotated, Literal, TypeVar

import msgspec

from server._errors import InputError, MalformedBody, PayloadTooLarge, ServerError

MAX_BATCH_EVENTS = 5_000
MAX_TOKENS_PER_FIELD = 100_000_000
MAX_COST_MICRO_USD = 1_000_000_000_000
#: How far ahead of the server's clock an event may be (a broken clock beyond that).
MAX_CLOCK_SKEW_MS = 86_400_000
#: No event predates this (2000-01-01): earlier means a broken clock.
MIN_TS_MS = 946_684_800_000
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._@+-]{0,63}$"
COMMIT_PATTERN = r"^[0-9a-fA-F]{7,64}$"
WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")

Label = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
#: A hash of the repository: never a path (no slash, backslash or leading ~).
WorkspaceHash = Annotated[str, msgspec.Meta(
    min_length=1, max_length=200, pattern=r"^[^/\\~][^/\\]*$",
    description="A stable hash of the repository, never a path")]
#: Free text chosen by an admin (a token's label): no control characters.
Text = Annotated[str, msgspec.Meta(min_length=1, max_length=100, pattern=r"^[^\x00-\x1f]+$")]
Short = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
Name = Annotated[str, msgspec.Meta(pattern=NAME_PATTERN,
                                   description="A developer or team name")]
Commit = Annotated[str, msgspec.Meta(pattern=COMMIT_PATTERN, description="A git commit id")]
Tokens = Annotated[int, msgspec.Meta(ge=0, le=MAX_TOKENS_PER_FIELD)]
Count = Annotated[int, msgspec.Meta(ge=0, le=1_000_000_000)]
MicroUsd = Annotated[int, msgspec.Meta(ge=0, le=MAX_COST_MICRO_USD)]
Latency = Annotated[int, msgspec.Meta(ge=0, le=86_400_000)]
Checkpoint = Annotated[int, msgspec.Meta(ge=1, le=30 * 86_400)]
AwareTime = Annotated[datetime, msgspec.Meta(tz=True)]
Role = Literal["developer", "lead", "admin"]
Weekday = Literal["monday", "tuesday", "wednesday", "thursday", "friday", "saturday",
                  "sunday"]


class _Body(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Every body: unknown fields are an error, never silently dropped."""


# ------------------------------------------------------------------------------ events


class _Event(_Body, tag_field="type", kw_only=True, gc=False):
    # gc=False: a batch is thousands of these, never in a cycle; untracked, they cost the
    # cyclic garbage collector nothing.
    id: uuid.UUID
    ts: AwareTime
    device_id: Label | None = None
    #: The sender's own developer name, if given; anybody else's refuses the batch (403).
    developer: Name | None = None


class CallEvent(_Event, tag="call", kw_only=True):
    """One metered assistant call (total tokens = input + output + cache read + write)."""

    tool: Label
    source: Label = "record"
    provider: Label
    model: Label
    kind: Literal["inline", "chat", "agent", "edit"] = "chat"
    input_tokens: Tokens = 0
    output_tokens: Tokens = 0
    cache_read_tokens: Tokens = 0
    cache_write_tokens: Tokens = 0
    cache_write_1h_tokens: Tokens = 0
    reasoning_tokens: Tokens = 0
    #: Integer micro-dollars; null when the cost is unknown.
    cost_micro_usd: MicroUsd | None = None
    estimated: bool = False
    latency_ms: Latency | None = None
    status: Literal["ok", "error", "blocked"] = "ok"
    language: Short | None = None
    workspace: WorkspaceHash | None = None
    #: The provider's own id: a call already stored under it counts once.
    request_id: Label | None = None


class _Suggestion(_Event, kw_only=True):
    suggestion_id: Label
    call_id: Label | None = None
    chars: Count = 0
    lines: Count = 0
    #: Seconds after acceptance (retained only): 30, 120, 300, 600, 900 by default.
    checkpoint_s: Checkpoint | None = None
    commit: Commit | None = None
    environment: Short | None = None
    tool: Label | None = None
    model: Label | None = None
    language: Short | None = None
    workspace: WorkspaceHash | None = None


class SuggestionOffered(_Suggestion, tag="suggestion.offered"):
    """Code shown to the developer."""


class SuggestionAccepted(_Suggestion, tag="suggestion.accepted"):
    """Code taken, whole or in part."""


class SuggestionRejected(_Suggestion, tag="suggestion.rejected"):
    """Code dismissed or replaced without acceptance."""


class SuggestionRetained(_Suggestion, tag="suggestion.retained", kw_only=True):
    """Accepted code still present ``checkpoint_s`` seconds after acceptance."""

    checkpoint_s: Checkpoint


class SuggestionCommitted(_Suggestion, tag="suggestion.committed"):
    """Lines of accepted code found in a git commit."""


class SuggestionDeployed(_Suggestion, tag="suggestion.deployed"):
    """Committed lines that reached an environment."""


SuggestionEvent = (SuggestionOffered | SuggestionAccepted | SuggestionRejected
                   | SuggestionRetained | SuggestionCommitted | SuggestionDeployed)
Event = CallEvent | SuggestionEvent


class EventBatch(_Body, kw_only=True):
    """``POST /api/v1/events``: at most 5,000 events and 4 MiB."""

    events: Annotated[list[Event], msgspec.Meta(max_length=MAX_BATCH_EVENTS)]


def stage_of(event: _Suggestion) -> str:
    """``suggestion.retained`` → ``retained``."""
    tag = event.__struct_config__.tag
    assert isinstance(tag, str)
    return tag.removeprefix("suggestion.")


class IngestResult(msgspec.Struct):
    inserted: int
    duplicates: int


# ------------------------------------------------------------------- admin and budgets


class TeamIn(_Body, kw_only=True):
    name: Name


class TeamOut(msgspec.Struct):
    name: str
    members: list[str]


class TeamList(msgspec.Struct):
    teams: list[TeamOut]


class MemberIn(_Body, kw_only=True):
    name: Name
    role: Role = "developer"
    teams: Annotated[list[Name], msgspec.Meta(max_length=100)] = []
    share_individual: bool = False


class MemberPatch(_Body, kw_only=True):
    role: Role | msgspec.UnsetType = msgspec.UNSET
    share_individual: bool | msgspec.UnsetType = msgspec.UNSET
    disabled: bool | msgspec.UnsetType = msgspec.UNSET


class SharingIn(_Body, kw_only=True):
    #: Show my row in my leads' per-developer reports whatever the group size.
    share_individual: bool


class MemberOut(msgspec.Struct):
    name: str
    role: str
    teams: list[str]
    share_individual: bool
    disabled: bool


class MemberList(msgspec.Struct):
    members: list[MemberOut]


class TokenIn(_Body, kw_only=True):
    label: Text = "api"


class CiTokenIn(_Body, kw_only=True):
    #: The team whose developers' commits this token may mark as deployed; null: every
    #: team (admins only).
    team: Name | None = None
    label: Text = "ci"


class NewToken(msgspec.Struct):
    """A token as created: ``token`` is shown this once and never stored."""

    id: str
    token: str
    kind: str
    member: str | None
    team: str | None
    label: str


class TokenOut(msgspec.Struct):
    id: str
    kind: str
    member: str | None
    team: str | None
    label: str
    created: str
    revoked: str | None


class TokenList(msgspec.Struct):
    tokens: list[TokenOut]


class Revoked(msgspec.Struct):
    id: str
    revoked: str


class MemberCreated(msgspec.Struct):
    member: MemberOut
    token: NewToken


class BudgetIn(_Body, kw_only=True):
    """A budget set by an admin or a lead; ``team`` or ``developer`` says whose it is."""

    name: Annotated[str, msgspec.Meta(pattern=NAME_PATTERN)] = "default"
    scope: Literal["developer", "team"]
    team: Name | None = None
    developer: Name | None = None
    period: Annotated[str, msgspec.Meta(min_length=1, max_length=32)] = "day"
    timezone: Annotated[str, msgspec.Meta(min_length=1, max_length=64)] | None = None
    week_starts: Weekday = "monday"
    limit_usd: Annotated[float, msgspec.Meta(ge=0, le=1_000_000_000)] | None = None
    limit_tokens: Annotated[int, msgspec.Meta(ge=0, le=10**15)] | None = None
    warn_at: Annotated[float, msgspec.Meta(gt=0, le=1)] = 0.8
    mode: Literal["warn", "enforce"] = "warn"


class Budget(msgspec.Struct):
    """One effective budget, as the agent pulls it on sync."""

    name: str
    scope: str
    period: str
    timezone: str | None
    week_starts: str
    limit_usd: float | None
    limit_tokens: int | None
    warn_at: float
    mode: str


class MyBudgets(msgspec.Struct):
    budgets: list[Budget]


class BudgetRecord(msgspec.Struct):
    """A budget as admins and leads manage it."""

    id: int
    name: str
    scope: str
    team: str | None
    developer: str | None
    period: str
    timezone: str | None
    week_starts: str
    limit_usd: float | None
    limit_tokens: int | None
    warn_at: float
    mode: str


class BudgetList(msgspec.Struct):
    budgets: list[BudgetRecord]


class DeploymentIn(_Body, kw_only=True):
    """CI: these commits reached ``environment`` (at ``ts``, default now)."""

    environment: Short
    commits: Annotated[list[Commit], msgspec.Meta(min_length=1, max_length=1_000)]
    ts: AwareTime | None = None


class DeploymentResult(msgspec.Struct):
    environment: str
    commits: int
    #: Suggestions newly counted as deployed (already counted ones are not again).
    suggestions: int
    lines: int


class Me(msgspec.Struct):
    developer: str
    role: str
    teams: list[str]
    share_individual: bool


class Health(msgspec.Struct):
    status: str
    database: str


class ErrorDetail(msgspec.Struct):
    field: str | None
    index: int | None
    message: str


class ErrorBody(msgspec.Struct):
    error: ErrorDetail


class Deleted(msgspec.Struct):
    deleted: str


# ------------------------------------------------------------------------- decoding

T = TypeVar("T")
_AT = re.compile(r" - at `\$(?P<path>[^`]*)`$")
_INDEX = re.compile(r"^\.events\[(\d+)\]")
_QUOTED_FIELD = re.compile(r"(?:unknown|required) field `([^`]*)`")
_decoders: dict[type, msgspec.json.Decoder[object]] = {}
_NAME_MEANS = ("1 to 64 letters, digits and . _ @ + -, starting with a letter or digit")
_PATTERN_MEANS = {
    "workspace": "looks like a path: send a stable hash of the repository, never a path",
    "commit": "a git commit id: 7 to 64 hexadecimal digits",
    "commits": "a git commit id: 7 to 64 hexadecimal digits",
    "label": "no control characters",
    "name": _NAME_MEANS, "team": _NAME_MEANS, "developer": _NAME_MEANS, "teams": _NAME_MEANS,
}


def decode(raw: bytes, kind: type[T]) -> T:
    """``raw`` JSON as ``kind``, or an error naming the bad field (and event index)."""
    decoder = _decoders.get(kind)
    if decoder is None:
        decoder = _decoders[kind] = msgspec.json.Decoder(kind)
    try:
        value = decoder.decode(raw)
    except msgspec.ValidationError as exc:
        raise _validation_error(str(exc)) from None
    except msgspec.DecodeError as exc:
        raise MalformedBody(f"not valid JSON ({exc})", field="body") from None
    assert isinstance(value, kind)
    if b"\\u0000" in raw:
        _refuse_nul(value)
    return value


def _validation_error(text: str) -> ServerError:
    match = _AT.search(text)
    message = text[:match.start()] if match else text
    path = match.group("path") if match else ""
    index: int | None = None
    rest = path
    index_match = _INDEX.match(path)
    if index_match:
        index = int(index_match.group(1))
        rest = path[index_match.end():]
    quoted = _QUOTED_FIELD.search(message)
    if quoted:
        field = quoted.group(1)
    else:
        parts = [part for part in re.split(r"[.\[\]]", rest) if part and not part.isdigit()]
        field = parts[-1] if parts else None
    if path == ".events" and "length <=" in message:
        return PayloadTooLarge(f"more than {MAX_BATCH_EVENTS} events in one batch: "
                               "split it", field="events")
    if "matching regex" in message and field in _PATTERN_MEANS:
        message = _PATTERN_MEANS[field]
    if "unknown field" in message:
        message += (" (events carry counts, model, tool, language and hashes only)"
                    if index is not None else "")
    if field is None and index is None:
        if path == "" and message.startswith("Expected"):
            return MalformedBody(message, field="body")
        field = "body"
    elif field is None:
        field = "events"  # the event itself is the wrong shape
    return InputError(message, field=field, index=index)


def _refuse_nul(value: object) -> None:
    """PostgreSQL cannot store NUL in text, and no honest label contains one."""
    items = value.events if isinstance(value, EventBatch) else [value]
    for index, item in enumerate(items):
        assert isinstance(item, msgspec.Struct)
        for name in item.__struct_fields__:
            field_value = getattr(item, name)
            texts = field_value if isinstance(field_value, list) else [field_value]
            if any(isinstance(text, str) and "\x00" in text for text in texts):
                raise InputError("contains a NUL character", field=name,
                                 index=index if isinstance(value, EventBatch) else None)


def check_events(batch: EventBatch, now_ms: int) -> None:
    """The rules msgspec cannot express; raises ``InputError`` for the first broken event."""
    latest = now_ms + MAX_CLOCK_SKEW_MS
    for index, event in enumerate(batch.events):
        ts_ms = to_ms(event.ts)
        if ts_ms < MIN_TS_MS:
            raise InputError("before 2000-01-01: is the clock set?", field="ts", index=index)
        if ts_ms > latest:
            raise InputError("more than a day in the future", field="ts", index=index)
        if isinstance(event, CallEvent):
            if event.cache_write_1h_tokens > event.cache_write_tokens:
                raise InputError("exceeds cache_write_tokens", field="cache_write_1h_tokens",
                                 index=index)
            if event.reasoning_tokens > event.output_tokens:
                raise InputError("exceeds output_tokens", field="reasoning_tokens",
                                 index=index)


def to_ms(moment: datetime) -> int:
    """An aware datetime → integer milliseconds since the epoch."""
    return int(moment.timestamp() * 1000)


def iso(ms: int) -> str:
    """Milliseconds since the epoch → ISO-8601 in UTC."""
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")


def encode(value: object) -> bytes:
    return msgspec.json.encode(value)
