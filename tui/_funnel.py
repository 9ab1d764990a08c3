"""The outcome funnel as the dashboard shows it: offered → accepted → retained → committed,
and what a retained line cost. Pure: it takes agent's ``funnel`` rows and the period's spend.
"""

from __future__ import annotations

from typing import NamedTuple

#: agent's ``funnel``: type → checkpoint_s → (events, chars, lines).
FunnelRows = dict[str, dict[int, tuple[int, int, int]]]

#: Retention is read at 15 minutes when the sidecar measured it there (the design's last
#: checkpoint); otherwise at the latest checkpoint that was measured.
PREFERRED_CHECKPOINT_S = 900


class Stage(NamedTuple):
    name: str
    events: int
    chars: int
    lines: int


class FunnelSummary(NamedTuple):
    offered: Stage
    accepted: Stage
    retained: Stage
    committed: Stage
    #: The checkpoint (seconds after acceptance) ``retained`` was read at; None if none yet.
    checkpoint_s: int | None
    usd_per_retained_line: float | None
    tokens_per_retained_line: float | None

    @property
    def stages(self) -> tuple[Stage, Stage, Stage, Stage]:
        return (self.offered, self.accepted, self.retained, self.committed)

    @property
    def empty(self) -> bool:
        return not any(stage.events for stage in self.stages)

    @property
    def acceptance_rate(self) -> float | None:
        """Accepted suggestions over offered suggestions."""
        if not self.offered.events:
            return None
        return self.accepted.events / self.offered.events


def retained_checkpoint(checkpoints: dict[int, tuple[int, int, int]],
                        preferred: int = PREFERRED_CHECKPOINT_S) -> int | None:
    if not checkpoints:
        return None
    return preferred if preferred in checkpoints else max(checkpoints)


def _stage(name: str, rows: dict[int, tuple[int, int, int]]) -> Stage:
    events = sum(row[0] for row in rows.values())
    chars = sum(row[1] for row in rows.values())
    lines = sum(row[2] for row in rows.values())
    return Stage(name, events, chars, lines)


def summarize(rows: FunnelRows, cost_usd: float | None, used_tokens: int | None,
              preferred_checkpoint: int = PREFERRED_CHECKPOINT_S) -> FunnelSummary:
    """The four stages and the cost per retained line over one period.

    ``cost_usd`` and ``used_tokens`` are what the period cost; a line retained is one that
    was still in the file at the retention checkpoint.
    """
    checkpoints = rows.get("retained", {})
    checkpoint = retained_checkpoint(checkpoints, preferred_checkpoint)
    retained = (Stage("retained", *checkpoints[checkpoint]) if checkpoint is not None
                else Stage("retained", 0, 0, 0))
    lines = retained.lines
    return FunnelSummary(
        offered=_stage("offered", rows.get("offered", {})),
        accepted=_stage("accepted", rows.get("accepted", {})),
        retained=retained,
        committed=_stage("committed", rows.get("committed", {})),
        checkpoint_s=checkpoint,
        usd_per_retained_line=cost_usd / lines if lines and cost_usd is not None else None,
        tokens_per_retained_line=used_tokens / lines if lines and used_tokens is not None
        else None,
    )


def checkpoint_label(seconds: int | None) -> str:
    """``15m``, ``30s``, ``2h``: the checkpoint as the design names them."""
    if seconds is None:
        return "15m"
    if seconds % 3600 == 0 and seconds:
        return f"{seconds // 3600}h"
    if seconds % 60 == 0 and seconds:
        return f"{seconds // 60}m"
    return f"{seconds}s"
