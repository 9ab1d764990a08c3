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

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import TypeVar

import msgspec

from server._errors import InputError
from server._tables import DETAIL_DIMS, GRAIN_DETAIL, STAGES, USAGE_SUMS

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
#
# ``gc=False``: a large report builds about fifteen of these per row; they hold numbers,
# strings and other such Structs only, so they cannot be part of a reference cycle, and
# leaving them out of the cyclic collector's tracking halves the time to build the rows.


class TokenFigures(msgspec.Struct, gc=False):
    input: int
    output: int
    cache_read: int
    cache_write: int
    cache_write_1h: int
    reasoning: int
    #: input + output + cache_read + cache_write
    total: int


class StageFigures(msgspec.Struct, gc=False):
    events: int
    chars: int
    lines: int


class Funnel(msgspec.Struct, gc=False):
    offered: StageFigures
    accepted: StageFigures
    rejected: StageFigures
    committed: StageFigures
    deployed: StageFigures


class RetentionFigures(msgspec.Struct, gc=False):
    checkpoint_s: int
    events: int
    chars: int
    lines: int
    #: chars still present / chars accepted
    rate_chars: float | None
    rate_lines: float | None


class PerLine(msgspec.Struct, gc=False):
    tokens_per_retained_line: float | None
    usd_per_retained_line: float | None
    tokens_per_committed_line: float | None
    usd_per_committed_line: float | None
    tokens_per_deployed_line: float | None
    usd_per_deployed_line: float | None


class Figures(msgspec.Struct, kw_only=True, gc=False):
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


class ReportRow(Figures, kw_only=True, gc=False):
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
    """The rollup grain with the fewest rows that still tells these dimensions apart: the
    one that keeps exactly their detail dimensions (day, developer and team need none)."""
    return _GRAIN_KEEPING[DETAIL_DIMS.intersection(dims)]


_GRAIN_KEEPING = {kept: grain for grain, kept in GRAIN_DETAIL.items()}


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
    return _figures(Figures, None, sums, _Checkpoints(checkpoints), headline_s)


_STAGE_AT = tuple(_U[f"{stage}_events"] for stage in STAGES)
assert STAGES == ("offered", "accepted", "rejected", "committed", "deployed")
_TOKENS_AT = tuple(_U[name] for name in (
    "input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens",
    "cache_write_1h_tokens", "reasoning_tokens"))
_CALLS, _ERRORS, _ESTIMATED, _UNKNOWN, _COST = (_U[name] for name in (
    "calls", "error_calls", "estimated_calls", "unknown_cost_calls", "cost_micro_usd"))
_NONE = (0, 0, 0)
_F = TypeVar("_F", bound="Figures")


class _Checkpoints:
    """The checkpoints a report always lists, sorted once: most groups have no others."""

    def __init__(self, checkpoints: Iterable[int]) -> None:
        self.listed = frozenset(checkpoints)
        self.ordered = sorted(self.listed)

    def of(self, retained: dict[int, list[int]]) -> list[int]:
        if self.listed.issuperset(retained):
            return self.ordered
        return sorted(self.listed.union(retained))


def _figures(kind: Callable[..., _F], group: dict[str, str | None] | None, sums: Sums,
             checkpoints: _Checkpoints, headline_s: int) -> _F:
    # Called once per report row (tens of thousands for developers by day): indices
    # precomputed, no intermediate dicts, ratios inline (``_ratio``'s arithmetic).
    u = sums.usage
    i0, i1, i2, i3, i4, i5 = _TOKENS_AT
    total_tokens = u[i0] + u[i1] + u[i2] + u[i3]
    cost_usd = u[_COST] / 1_000_000
    o, a, r, c, d = _STAGE_AT
    accepted_chars = u[a + 1]
    accepted_lines = u[a + 2]
    retained = sums.retained
    retention = []
    for checkpoint in checkpoints.of(retained):
        events, chars, lines = retained.get(checkpoint, _NONE)
        retention.append(RetentionFigures(
            checkpoint, events, chars, lines,
            round(chars / accepted_chars, 6) if accepted_chars else None,
            round(lines / accepted_lines, 6) if accepted_lines else None))
    retained_lines = retained.get(headline_s, _NONE)[2]
    committed_lines = u[c + 2]
    deployed_lines = u[d + 2]
    offered_events = u[o]
    tokens = TokenFigures(u[i0], u[i1], u[i2], u[i3], u[i4], u[i5], total_tokens)
    funnel = Funnel(StageFigures(u[o], u[o + 1], u[o + 2]),
                    StageFigures(u[a], accepted_chars, accepted_lines),
                    StageFigures(u[r], u[r + 1], u[r + 2]),
                    StageFigures(u[c], u[c + 1], committed_lines),
                    StageFigures(u[d], u[d + 1], deployed_lines))
    per_line = PerLine(
            round(total_tokens / retained_lines, 2) if retained_lines else None,
            round(cost_usd / retained_lines, 6) if retained_lines else None,
            round(total_tokens / committed_lines, 2) if committed_lines else None,
            round(cost_usd / committed_lines, 6) if committed_lines else None,
            round(total_tokens / deployed_lines, 2) if deployed_lines else None,
            round(cost_usd / deployed_lines, 6) if deployed_lines else None)
    acceptance = round(u[a] / offered_events, 6) if offered_events else None
    if group is None:
        return kind(developers=sums.developers, calls=u[_CALLS], error_calls=u[_ERRORS],
                    estimated_calls=u[_ESTIMATED], unknown_cost_calls=u[_UNKNOWN],
                    tokens=tokens, cost_usd=round(cost_usd, 6), funnel=funnel,
                    acceptance_rate=acceptance, retention=retention, per_line=per_line)
    return kind(developers=sums.developers, calls=u[_CALLS], error_calls=u[_ERRORS],
                estimated_calls=u[_ESTIMATED], unknown_cost_calls=u[_UNKNOWN],
                tokens=tokens, cost_usd=round(cost_usd, 6), funnel=funnel,
                acceptance_rate=acceptance, retention=retention, per_line=per_line,
                group=group)


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
    listed = _Checkpoints(checkpoints)
    rows = [_figures(ReportRow, dict(zip(dims, key, strict=True)), sums, listed, headline_s)
            for key, sums in sorted(shown.items(), key=lambda item: _sort_key(item[0]))]
    return Report(from_=day_text(days[0]), to=day_text(days[1]), group_by=list(dims),
                  retained_checkpoint_s=headline_s, suppressed_developers=suppressed,
                  rows=rows, total=figures(total, checkpoints, headline_s))


def _sort_key(key: GroupKey) -> tuple[tuple[bool, str], ...]:
    return tuple([(part is None, part or "") for part in key])
