"""Rollup arithmetic as pure functions: which daily sums a set of new rows adds.

Ingest calls these with the rows that the database actually inserted (``RETURNING``), so a
duplicate never adds anything, and upserts the result in the same transaction. Keys come
out sorted: every transaction then takes its row locks in the same order, and two server
processes ingesting overlapping batches wait for each other instead of deadlocking.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple

from server._tables import CALL_SUMS, RETENTION_SUMS, STAGES, USAGE_SUMS

DAY_MS = 86_400_000

#: (day, developer_id, tool, model, language); '' stands for unknown.
UsageKey = tuple[int, int, str, str, str]
#: UsageKey + (checkpoint_s,)
RetentionKey = tuple[int, int, str, str, str, int]


class CallRow(NamedTuple):
    """One ``calls`` row, in column order."""

    id: object  # the UUID as the backend stores it
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


class SuggestionRow(NamedTuple):
    """One ``suggestion_events`` row, in column order."""

    id: object
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


class DeployedRow(NamedTuple):
    """One ``deployed_lines`` row, in column order: a suggestion counted as deployed."""

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


def usage_deltas(calls: Iterable[CallRow], suggestions: Iterable[SuggestionRow],
                 deployed: Iterable[DeployedRow] = ()) -> list[tuple[UsageKey, list[int]]]:
    """The ``usage_daily`` additions for these new rows, sorted by key.

    Each value lines up with ``USAGE_SUMS``. ``suggestion.retained`` rows go to the retention
    rollup instead, and ``suggestion.deployed`` rows count through ``deployed`` (the
    ``deployed_lines`` rows actually inserted), so that CI and the client never both count
    the same deployment.
    """
    sums: dict[UsageKey, list[int]] = {}
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
    return sorted(sums.items())


def _add_stage(sums: dict[UsageKey, list[int]], key: UsageKey, stage: int, chars: int,
               lines: int) -> None:
    row = sums.get(key)
    if row is None:
        row = sums[key] = [0] * _WIDTH
    row[stage] += 1
    row[stage + 1] += chars
    row[stage + 2] += lines


def retention_deltas(suggestions: Iterable[SuggestionRow]
                     ) -> list[tuple[RetentionKey, list[int]]]:
    """The ``retention_daily`` additions (events, chars, lines) for new retained rows."""
    sums: dict[RetentionKey, list[int]] = {}
    for event in suggestions:
        if event.type != "retained" or event.checkpoint_s is None:
            continue
        key = (event.day, event.developer_id, event.tool or "", event.model or "",
               event.language or "", event.checkpoint_s)
        row = sums.get(key)
        if row is None:
            row = sums[key] = [0, 0, 0]
        row[0] += 1
        row[1] += event.chars
        row[2] += event.lines
    return sorted(sums.items())


def deployed_from_event(event: SuggestionRow) -> DeployedRow:
    """A client's own ``suggestion.deployed`` event as a ``deployed_lines`` row."""
    return DeployedRow(event.developer_id, event.suggestion_id, event.commit_sha or "",
                       event.environment or "", event.day, event.chars, event.lines,
                       event.tool or "", event.model or "", event.language or "")


def deployed_from_commit(event: SuggestionRow, environment: str, day: int) -> DeployedRow:
    """A committed row whose commit CI reported in ``environment`` on ``day``."""
    return DeployedRow(event.developer_id, event.suggestion_id, event.commit_sha or "",
                       environment, day, event.chars, event.lines, event.tool or "",
                       event.model or "", event.language or "")
