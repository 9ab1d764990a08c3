"""Outcome reports as pure functions: funnel, rates, per-line figures, small-group privacy.

The store hands over summed rollup rows per group (and for the whole scope); this module
turns them into the report. Nothing here does I/O.

- Acceptance rate: accepted / offered suggestions.
- Retention at a checkpoint: characters (and lines) of accepted code still present, over
  the characters (lines) accepted.
- Per line: total tokens (input + output + cache reads + cache writes) and dollars spent,
  per line retained at the headline checkpoint (15 min), per committed and deployed line.
  Calls of unknown cost add tokens but no dollars; ``unknown_cost_calls`` says how many.
- A lead sees per-developer rows only when the report covers at least ``min_group_size``
  developers; otherwise only developers who opted in (and the lead) keep their own rows,
  and the rest are merged into one row whose ``developer`` is null.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

import msgspec

from server._errors import InputError
from server._tables import STAGES, USAGE_SUMS

DIMENSIONS = ("developer", "team", "model", "tool", "language", "day")
_EPOCH = date(1970, 1, 1)
_U = {name: i for i, name in enumerate(USAGE_SUMS)}

GroupKey = tuple[str | None, ...]


@dataclass(slots=True)
class Sums:
    """Rollup sums of one group: usage (aligned with ``USAGE_SUMS``) and retention."""

    usage: list[int] = field(default_factory=lambda: [0] * len(USAGE_SUMS))
    #: checkpoint_s → [events, chars, lines]
    retained: dict[int, list[int]] = field(default_factory=dict)
    developers: int = 0

    def add(self, other: Sums) -> None:
        self.usage = [a + b for a, b in zip(self.usage, other.usage, strict=True)]
        for checkpoint, values in other.retained.items():
            mine = self.retained.setdefault(checkpoint, [0, 0, 0])
            for i, value in enumerate(values):
                mine[i] += value
        self.developers += other.developers


# ------------------------------------------------------------------------ the output


class TokenFigures(msgspec.Struct):
    input: int
    output: int
    cache_read: int
    cache_write: int
    cache_write_1h: int
    reasoning: int
    #: input + output + cache_read + cache_write
    total: int


class StageFigures(msgspec.Struct):
    events: int
    chars: int
    lines: int


class Funnel(msgspec.Struct):
    offered: StageFigures
    accepted: StageFigures
    rejected: StageFigures
    committed: StageFigures
    deployed: StageFigures


class RetentionFigures(msgspec.Struct):
    checkpoint_s: int
    events: int
    chars: int
    lines: int
    #: chars still present / chars accepted
    rate_chars: float | None
    rate_lines: float | None


class PerLine(msgspec.Struct):
    tokens_per_retained_line: float | None
    usd_per_retained_line: float | None
    tokens_per_committed_line: float | None
    usd_per_committed_line: float | None
    tokens_per_deployed_line: float | None
    usd_per_deployed_line: float | None


class Figures(msgspec.Struct, kw_only=True):
    developers: int
    calls: int
    error_calls: int
    estimated_calls: int
    unknown_cost_calls: int
    tokens: TokenFigures
    cost_usd: float
    funnel: Funnel
    acceptance_rate: float | None
    retention: list[RetentionFigures]
    per_line: PerLine


class ReportRow(Figures, kw_only=True):
    #: The group's value for each ``group_by`` dimension (null: unknown, or merged).
    group: dict[str, str | None]


class Report(msgspec.Struct, kw_only=True):
    from_: str = msgspec.field(name="from")
    to: str
    group_by: list[str]
    retained_checkpoint_s: int
    #: Developers whose rows were merged into a ``developer: null`` row (small groups).
    suppressed_developers: int
    rows: list[ReportRow]
    total: Figures


# ------------------------------------------------------------------------ the inputs


def parse_group_by(text: str) -> tuple[str, ...]:
    """``"team,day"`` → ``("team", "day")``: one to three distinct dimensions."""
    dims = tuple(part.strip() for part in text.split(",") if part.strip())
    if not dims:
        raise InputError("name at least one of " + ", ".join(DIMENSIONS), field="group_by")
    for dim in dims:
        if dim not in DIMENSIONS:
            raise InputError(f"{dim!r} is not one of " + ", ".join(DIMENSIONS),
                             field="group_by")
    if len(set(dims)) != len(dims) or len(dims) > 3:
        raise InputError("one to three distinct dimensions", field="group_by")
    return dims


def grain_for(dims: Sequence[str]) -> str:
    """The rollup grain with the fewest rows that still tells these dimensions apart."""
    detail = [dim for dim in dims if dim in ("model", "tool", "language")]
    if not detail:
        return "developer"  # day, developer and team need nothing finer
    return detail[0] if len(detail) == 1 else "all"


def day_range(start: date | None, end: date | None, today: date) -> tuple[int, int]:
    """Inclusive UTC day numbers; by default the 30 days up to ``today``."""
    end = end or today
    start = start or end - timedelta(days=29)
    if start > end:
        raise InputError("`from` is after `to`", field="from")
    return day_number(start), day_number(end)


def day_number(day: date) -> int:
    return (day - _EPOCH).days


def day_text(number: int) -> str:
    return (_EPOCH + timedelta(days=number)).isoformat()


# ------------------------------------------------------------------------ the maths


def _ratio(numerator: float, denominator: float, digits: int = 6) -> float | None:
    return round(numerator / denominator, digits) if denominator else None


def figures(sums: Sums, checkpoints: Iterable[int], headline_s: int) -> Figures:
    return Figures(**_figure_fields(sums, checkpoints, headline_s))


_STAGE_AT = tuple((stage, _U[f"{stage}_events"]) for stage in STAGES)
_TOKENS_AT = tuple(_U[name] for name in (
    "input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens",
    "cache_write_1h_tokens", "reasoning_tokens"))


def _figure_fields(sums: Sums, checkpoints: Iterable[int], headline_s: int
                   ) -> dict[str, Any]:
    # Called once per report row (thousands for a long range by day): indices precomputed.
    u = sums.usage
    tokens = [u[i] for i in _TOKENS_AT]
    total_tokens = tokens[0] + tokens[1] + tokens[2] + tokens[3]
    cost_micro = u[_U["cost_micro_usd"]]
    cost_usd = cost_micro / 1_000_000
    stages = {stage: StageFigures(u[at], u[at + 1], u[at + 2]) for stage, at in _STAGE_AT}
    accepted = stages["accepted"]
    retained = sums.retained
    retention = []
    for checkpoint in sorted(set(checkpoints) | set(retained)):
        events, chars, lines = retained.get(checkpoint, (0, 0, 0))
        retention.append(RetentionFigures(checkpoint, events, chars, lines,
                                          _ratio(chars, accepted.chars),
                                          _ratio(lines, accepted.lines)))
    retained_lines = retained.get(headline_s, (0, 0, 0))[2]
    committed_lines = stages["committed"].lines
    deployed_lines = stages["deployed"].lines
    return {
        "developers": sums.developers,
        "calls": u[_U["calls"]],
        "error_calls": u[_U["error_calls"]],
        "estimated_calls": u[_U["estimated_calls"]],
        "unknown_cost_calls": u[_U["unknown_cost_calls"]],
        "tokens": TokenFigures(tokens[0], tokens[1], tokens[2], tokens[3], tokens[4],
                               tokens[5], total_tokens),
        "cost_usd": round(cost_usd, 6),
        "funnel": Funnel(**stages),
        "acceptance_rate": _ratio(accepted.events, stages["offered"].events),
        "retention": retention,
        "per_line": PerLine(
            tokens_per_retained_line=_ratio(total_tokens, retained_lines, 2),
            usd_per_retained_line=_ratio(cost_usd, retained_lines),
            tokens_per_committed_line=_ratio(total_tokens, committed_lines, 2),
            usd_per_committed_line=_ratio(cost_usd, committed_lines),
            tokens_per_deployed_line=_ratio(total_tokens, deployed_lines, 2),
            usd_per_deployed_line=_ratio(cost_usd, deployed_lines)),
    }


@dataclass(frozen=True, slots=True)
class Privacy:
    """The small-group rule for a lead's per-developer rows."""

    min_group_size: int
    #: Developers shown whatever the group size: those who opted in, and the viewer.
    visible: frozenset[str]


def suppress_individuals(dims: Sequence[str], groups: dict[GroupKey, Sums], population: int,
                         privacy: Privacy | None) -> tuple[dict[GroupKey, Sums], int]:
    """Merge the rows of developers who may not be shown into ``developer: null`` rows.

    Applies only to per-developer rows, for a lead, when the report covers fewer than
    ``min_group_size`` developers. Returns the groups and how many developers were merged.
    """
    if privacy is None or "developer" not in dims or population >= privacy.min_group_size:
        return groups, 0
    at = dims.index("developer")
    out: dict[GroupKey, Sums] = {}
    hidden: set[str] = set()
    for key, sums in groups.items():
        developer = key[at]
        if developer is not None and developer not in privacy.visible:
            hidden.add(developer)
            key = (*key[:at], None, *key[at + 1:])
        merged = out.get(key)
        if merged is None:
            out[key] = merged = Sums()
        merged.add(sums)
    return out, len(hidden)


def build_report(*, dims: Sequence[str], groups: dict[GroupKey, Sums], total: Sums,
                 days: tuple[int, int], checkpoints: Sequence[int], headline_s: int,
                 privacy: Privacy | None) -> Report:
    """The report: one row per group (sorted, unknowns last), and the total."""
    shown, suppressed = suppress_individuals(dims, groups, total.developers, privacy)
    rows = [ReportRow(group=dict(zip(dims, key, strict=True)),
                      **_figure_fields(sums, checkpoints, headline_s))
            for key, sums in sorted(shown.items(), key=lambda item: _sort_key(item[0]))]
    return Report(from_=day_text(days[0]), to=day_text(days[1]), group_by=list(dims),
                  retained_checkpoint_s=headline_s, suppressed_developers=suppressed,
                  rows=rows, total=figures(total, checkpoints, headline_s))


def _sort_key(key: GroupKey) -> tuple[tuple[bool, str], ...]:
    return tuple([(part is None, part or "") for part in key])
