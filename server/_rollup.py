"""Rollup arithmetic as pure functions: which daily sums a set of new rows adds.

Ingest calls these with the rows that the database actually inserted (``RETURNING``), so a
duplicate never adds anything, and upserts the result in the same transaction. Keys come
out sorted: every transaction then takes its row locks in the same order, and two server
processes ingesting overlapping batches wait for each other instead of deadlocking.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Any

import msgspec

from server._tables import BLOCK_SIZES, CALL_SUMS, RETENTION_SUMS, STAGES, USAGE_SUMS


def add_sums(out: dict[Any, list[int]], key: Any, values: list[int]) -> None:
    """Add ``values`` column by column into ``out[key]`` (a copy of them if it is new)."""
    row = out.get(key)
    if row is None:
        out[key] = list(values)
    else:
        for i, value in enumerate(values):
            row[i] += value

DAY_MS = 86_400_000

#: (day, developer_id, tool, model, language); '' stands for unknown.
DetailKey = tuple[int, int, str, str, str]
#: (grain, day, developer_id, tool, model, language): a ``usage_daily`` key.
UsageKey = tuple[str, int, int, str, str, str]
#: UsageKey + (checkpoint_s,): a ``retention_daily`` key.
RetentionKey = tuple[str, int, int, str, str, str, int]


class _Row(msgspec.Struct, frozen=True, gc=False):
    """A row about to be stored: fields in the table's column order (a test checks)."""


class CallRow(_Row, frozen=True, gc=False):
    """One ``calls`` row."""

    id: str | uuid.UUID  # 32 hex digits on SQLite, a UUID on PostgreSQL
    developer_id: int
    ts_ms: int
    day: int
    device_id: str | None
    tool: str
    source: str
    provider: str
    model: str
    kind: str
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int
    cache_write_1h_tokens: int
    reasoning_tokens: int
    cost_micro_usd: int | None
    estimated: bool
    latency_ms: int | None
    status: str
    language: str | None
    workspace: str | None
    request_id: str | None


class SuggestionRow(_Row, frozen=True, gc=False):
    """One ``suggestion_events`` row."""

    id: str | uuid.UUID
    developer_id: int
    ts_ms: int
    day: int
    type: str
    suggestion_id: str
    call_id: str | None
    chars: int
    lines: int
    checkpoint_s: int | None
    commit_sha: str | None
    environment: str | None
    device_id: str | None
    tool: str | None
    model: str | None
    language: str | None
    workspace: str | None


class DeployedRow(_Row, frozen=True, gc=False, order=True):
    """One ``deployed_lines`` row: a suggestion counted as deployed."""

    developer_id: int
    suggestion_id: str
    commit_sha: str
    environment: str
    day: int
    chars: int
    lines: int
    tool: str
    model: str
    language: str


_CALL_INDEX = {name: i for i, name in enumerate(USAGE_SUMS)}
_STAGE_INDEX = {stage: _CALL_INDEX[f"{stage}_events"] for stage in STAGES}
_WIDTH = len(USAGE_SUMS)
assert USAGE_SUMS[:len(CALL_SUMS)] == CALL_SUMS
assert RETENTION_SUMS == ("events", "chars", "lines")


def day_of(ts_ms: int) -> int:
    """Whole days since 1970-01-01 UTC."""
    return ts_ms // DAY_MS


def grain_keys(day: int, developer_id: int, tool: str, model: str, language: str
               ) -> tuple[UsageKey, ...]:
    """The rollup rows one detail row adds to: one per grain (see ``_tables.GRAINS``)."""
    return (("developer", day, developer_id, "", "", ""),
            ("model", day, developer_id, "", model, ""),
            ("tool", day, developer_id, tool, "", ""),
            ("language", day, developer_id, "", "", language),
            ("tool+model", day, developer_id, tool, model, ""),
            ("tool+lang", day, developer_id, tool, "", language),
            ("model+lang", day, developer_id, "", model, language),
            ("all", day, developer_id, tool, model, language))


def _at_every_grain(detail: dict[DetailKey, list[int]]) -> list[tuple[UsageKey, list[int]]]:
    out: dict[UsageKey, list[int]] = {}
    for key, values in detail.items():
        for grain_key in grain_keys(*key):
            add_sums(out, grain_key, values)
    return sorted(out.items())


def usage_deltas(calls: Iterable[CallRow], suggestions: Iterable[SuggestionRow],
                 deployed: Iterable[DeployedRow] = ()) -> list[tuple[UsageKey, list[int]]]:
    """The ``usage_daily`` additions for these new rows, at every grain, sorted by key.

    Each value lines up with ``USAGE_SUMS``. ``suggestion.retained`` rows go to the retention
    rollup instead, and ``suggestion.deployed`` rows count through ``deployed`` (the
    ``deployed_lines`` rows actually inserted), so that CI and the client never both count
    the same deployment.
    """
    sums: dict[DetailKey, list[int]] = {}
    for call in calls:
        key = (call.day, call.developer_id, call.tool, call.model, call.language or "")
        row = sums.get(key)
        if row is None:
            row = sums[key] = [0] * _WIDTH
        row[0] += 1
        row[1] += call.input_tokens
        row[2] += call.output_tokens
        row[3] += call.cache_read_tokens
        row[4] += call.cache_write_tokens
        row[5] += call.cache_write_1h_tokens
        row[6] += call.reasoning_tokens
        if call.cost_micro_usd is None:
            row[8] += 1
        else:
            row[7] += call.cost_micro_usd
        if call.status == "error":
            row[9] += 1
        if call.estimated:
            row[10] += 1
    for event in suggestions:
        stage = _STAGE_INDEX.get(event.type)
        if stage is None or event.type == "deployed":
            continue
        _add_stage(sums, (event.day, event.developer_id, event.tool or "", event.model or "",
                          event.language or ""), stage, event.chars, event.lines)
    for done in deployed:
        _add_stage(sums, (done.day, done.developer_id, done.tool, done.model, done.language),
                   _STAGE_INDEX["deployed"], done.chars, done.lines)
    return _at_every_grain(sums)


def _add_stage(sums: dict[DetailKey, list[int]], key: DetailKey, stage: int, chars: int,
               lines: int) -> None:
    row = sums.get(key)
    if row is None:
        row = sums[key] = [0] * _WIDTH
    row[stage] += 1
    row[stage + 1] += chars
    row[stage + 2] += lines


def retention_deltas(suggestions: Iterable[SuggestionRow]
                     ) -> list[tuple[RetentionKey, list[int]]]:
    """The ``retention_daily`` additions (events, chars, lines) for new retained rows, at
    every grain, sorted by key."""
    sums: dict[RetentionKey, list[int]] = {}
    for event in suggestions:
        if event.type != "retained" or event.checkpoint_s is None:
            continue
        for grain_key in grain_keys(event.day, event.developer_id, event.tool or "",
                                    event.model or "", event.language or ""):
            key = (*grain_key, event.checkpoint_s)
            row = sums.get(key)
            if row is None:
                row = sums[key] = [0, 0, 0]
            row[0] += 1
            row[1] += event.chars
            row[2] += event.lines
    return sorted(sums.items())


def block_deltas(deltas: Iterable[tuple[tuple[Any, ...], list[int]]]
                 ) -> list[tuple[tuple[Any, ...], list[int]]]:
    """The ``usage_blocks`` (or, with a checkpoint in the key, ``retention_blocks``)
    additions for these daily rollup deltas: the same sums per block of each size, sorted."""
    out: dict[tuple[Any, ...], list[int]] = {}
    for key, values in deltas:
        grain, day, rest = key[0], key[1], key[2:]
        for size in BLOCK_SIZES:
            block_key = (grain, size, day - day % size, *rest)
            add_sums(out, block_key, values)
    return sorted(out.items())


def deployed_from_event(event: SuggestionRow) -> DeployedRow:
    """A client's own ``suggestion.deployed`` event as a ``deployed_lines`` row."""
    return DeployedRow(event.developer_id, event.suggestion_id, event.commit_sha or "",
                       event.environment or "", event.day, event.chars, event.lines,
                       event.tool or "", event.model or "", event.language or "")


def deployed_key(row: DeployedRow) -> tuple[int, str, str, str]:
    """What makes a deployment count once: developer, suggestion, commit, environment."""
    return row.developer_id, row.suggestion_id, row.commit_sha, row.environment


def deployed_from_commit(event: SuggestionRow, environment: str, day: int) -> DeployedRow:
    """A committed row whose commit CI reported in ``environment`` on ``day``."""
    return DeployedRow(event.developer_id, event.suggestion_id, event.commit_sha or "",
                       environment, day, event.chars, event.lines, event.tool or "",
                       event.model or "", event.language or "")
