"""``BudgetWidget``: what is left of a budget, at a glance. Embeddable in any Textual app.

Feed it the status object (``StatusReport.to_json()``, the same dict as
``meterline status --json`` and the sidecar's ``meterline/status``) and it draws:

- a header: the budget, its period and mode, and the state as a word and a percentage
  (``● OK 42%``, ``▲ WARN 85%``, ``■ BLOCKED 100%``), so it reads without colour too;
- a gauge per limit (dollars, tokens) with what is left of what;
- when it resets, the burn rate, and when the budget runs out at that rate;
- the vendor's own quota beside ours where the provider told it;
- a one-line summary of the other budgets.

It holds no store: set ``widget.status`` (or call ``show``) whenever a new status arrives.
"""

from __future__ import annotations

import time
from datetime import tzinfo
from typing import Any

from textual.app import RenderResult
from textual.content import Content
from textual.geometry import Size
from textual.reactive import reactive
from textual.widget import Widget

from tui._alerts import current_vendor_quota, vendor_left
from tui._format import (
    bar,
    local_zone,
    moment,
    money,
    parse_iso,
    percent,
    tokens,
    until,
)
from tui.widgets._fit import first_fitting

MARK = {"ok": "●", "warn": "▲", "blocked": "■"}
STATE_STYLE = {"ok": "$success", "warn": "$warning", "blocked": "$error"}
#: Width of the left column naming each gauge.
LABEL_WIDTH = 9
#: Below this many cells a gauge says nothing; the text alone is clearer.
MIN_BAR = 6

Line = Content


def state_label(entry: dict[str, Any]) -> str:
    """``▲ WARN 85%``: the state in words (colour is a bonus, never the only signal)."""
    state = str(entry.get("state") or "ok")
    text = f"{MARK.get(state, '?')} {state.upper()}"
    if entry.get("percentUsed") is not None:
        text += f" {percent(float(entry['percentUsed']) / 100)}"
    if entry.get("exceeded") and state != "blocked":
        text += " OVER"
    return text


def _left_text(remaining: float | None, limit: float | None, fmt: Any) -> str:
    if remaining is None or limit is None:
        return ""
    if remaining < 0:
        return f"0 left of {fmt(limit)} ({fmt(-remaining)} over)"
    return f"{fmt(remaining)} left of {fmt(limit)}"


class BudgetWidget(Widget):
    """The remaining budget as gauges coloured by state, with reset, burn and projection."""

    DEFAULT_CSS = """
    BudgetWidget {
        height: auto;
        width: 1fr;
    }
    """

    status: reactive[dict[str, Any] | None] = reactive(None, layout=True)
    """The status object to show (``StatusReport.to_json()``), or None while waiting."""
    budget: reactive[str | None] = reactive(None, layout=True)
    """Which budget of ``status["budgets"]`` to show; None shows the top level (the budget
    that binds, or today's usage when there are no budgets)."""

    def __init__(self, status: dict[str, Any] | None = None, *, budget: str | None = None,
                 zone: tzinfo | None = None, name: str | None = None, id: str | None = None,
                 classes: str | None = None) -> None:
        super().__init__(name=name, id=id, classes=classes)
        self.zone = zone or local_zone()
        self.set_reactive(BudgetWidget.status, status)
        self.set_reactive(BudgetWidget.budget, budget)
        self._sync_state_class()

    def show(self, status: dict[str, Any] | None, budget: str | None = None) -> None:
        """Show a new status object (and optionally another of its budgets)."""
        self.status = status
        self.budget = budget

    @property
    def entry(self) -> dict[str, Any] | None:
        """The status entry on show: the chosen budget's, or the top level."""
        status = self.status
        if status is None:
            return None
        if self.budget is not None:
            for entry in status.get("budgets") or []:
                if entry.get("budget") == self.budget:
                    return dict(entry)
        return status

    @property
    def state(self) -> str:
        entry = self.entry
        return str(entry.get("state") or "ok") if entry else "ok"

    def watch_status(self) -> None:
        self._sync_state_class()

    def watch_budget(self) -> None:
        self._sync_state_class()

    def _sync_state_class(self) -> None:
        # Classes let an embedding app restyle the states, e.g. a red border when blocked.
        state = self.state
        for name in ("ok", "warn", "blocked"):
            self.set_class(name == state, f"-{name}")

    def _now_ms(self) -> int:
        # "Now" is when the status was computed: the gauge and its relative times agree, and
        # a frozen status draws the same every time.
        generated = parse_iso((self.status or {}).get("generatedAt"))
        return generated if generated is not None else time.time_ns() // 1_000_000

    def get_content_height(self, container: Size, viewport: Size, width: int) -> int:
        # Every line is cut to the width, so the count is the height (and render, which sees
        # the previous size, must not be asked).
        entry = self.entry
        return 1 if entry is None else len(self.lines(entry, max(20, width)))

    def render(self) -> RenderResult:
        entry = self.entry
        if entry is None:
            return Content.styled("waiting for the status…", "$text-muted")
        width = max(20, self.content_size.width)
        return Content("\n").join(line if line.cell_length <= width
                                  else line.truncate(width, ellipsis=True)
                                  for line in self.lines(entry, width))

    def lines(self, entry: dict[str, Any], width: int) -> list[Line]:
        """The widget's text, one Content per line, for ``width`` cells."""
        now = self._now_ms()
        state = str(entry.get("state") or "ok")
        lines = [self._header(entry, state, width)]
        gauges = self._gauges(entry, state)
        if gauges:
            # Bars share one width so ours and the vendor's compare at a glance; on a narrow
            # screen the words win and the bars go.
            right = max(len(text) for _, _, text, _ in gauges)
            bar_width = width - LABEL_WIDTH - 1 - right - 1
            for label, fraction, text, style in gauges:
                lines.append(self._gauge(label, fraction, text, style, bar_width,
                                         width - LABEL_WIDTH - 1))
        else:
            lines.append(self._usage_only(entry))
        lines.append(self._timing(entry, now, width))
        others = self._others(entry)
        if others is not None:
            lines.append(others)
        return lines

    def _header(self, entry: dict[str, Any], state: str, width: int) -> Line:
        name = entry.get("budget")
        if name:
            title = Content.assemble((str(name), "bold"),
                                     (f" · {entry.get('period')} · {entry.get('mode')}",
                                      "$text-muted"))
        else:
            title = Content.assemble((f"this {entry.get('period') or 'day'}", "bold"),
                                     (" · no budget set", "$text-muted"))
        label = state_label(entry)
        gap = max(1, width - title.cell_length - len(label))
        return Content.assemble(title, " " * gap, (label, f"bold {STATE_STYLE.get(state, '')}"))

    def _gauges(self, entry: dict[str, Any], state: str
                ) -> list[tuple[str, float | None, str, str]]:
        """(label, fraction used, text, style) for each gauge: ours, then the vendor's."""
        gauges: list[tuple[str, float | None, str, str]] = []
        style = STATE_STYLE.get(state, "")
        limit_usd, limit_tokens = entry.get("limitUsd"), entry.get("limitTokens")
        if limit_usd:
            used = float(entry.get("usedUsd") or 0)
            gauges.append(("$", used / limit_usd,
                           _left_text(entry.get("remainingUsd"), limit_usd, money), style))
        if limit_tokens:
            used_t = float(entry.get("usedTokens") or 0)
            gauges.append(("tokens", used_t / limit_tokens,
                           _left_text(entry.get("remainingTokens"), limit_tokens, tokens),
                           style))
        for quota in current_vendor_quota(self.status or {}, self._now_ms()):
            left = vendor_left(quota)
            used_fraction = None if left is None else 1 - left
            if quota.get("limit") and quota.get("remaining") is not None:
                text = (f"{quota.get('name')}: {tokens(quota['remaining'])} left of "
                        f"{tokens(quota['limit'])}")
            elif left is not None:
                text = f"{quota.get('name')}: {percent(left)} left"
            else:
                text = f"{quota.get('name')}: unknown"
            vendor_state = ("blocked" if used_fraction is not None and used_fraction >= 0.95
                            else "warn" if used_fraction is not None and used_fraction >= 0.8
                            else "ok")
            gauges.append((str(quota.get("provider") or "vendor"), used_fraction, text,
                           STATE_STYLE[vendor_state]))
        return gauges

    def _gauge(self, label: str, fraction: float | None, text: str, style: str,
               bar_width: int, room: int) -> Line:
        head = (label[:LABEL_WIDTH]).ljust(LABEL_WIDTH) + " "
        if bar_width < MIN_BAR:
            return Content.assemble((head, "$text-muted"), text[:room])
        filled, empty = bar(fraction, bar_width)
        return Content.assemble((head, "$text-muted"), (filled, style),
                                (empty, "$text-disabled"), " ", text)

    def _usage_only(self, entry: dict[str, Any]) -> Line:
        calls = int(entry.get("calls") or 0)
        return Content.assemble(
            (money(entry.get("usedUsd")), "bold"), " used · ",
            (tokens(entry.get("usedTokens")), "bold"), " tokens · ",
            f"{calls} call{'s' if calls != 1 else ''}")

    def _timing(self, entry: dict[str, Any], now: int, width: int) -> Line:
        """When it resets, the burn rate, when it runs out: what does not fit goes, the
        least telling first (how long until the reset, then the burn rate), before the
        line is cut."""
        reset_parts: list[Content] = []
        reset = parse_iso(entry.get("resetsAt"))
        rolling = entry.get("period") not in (None, "day", "week", "month")
        if reset is not None:
            verb = "frees up" if rolling else "resets"
            short = Content.assemble(f"{verb} ", (moment(reset, self.zone, now), "bold"))
            reset_parts = [Content.assemble(short, (f" ({until(reset, now)})",
                                                    "$text-muted")), short]
        burn_usd, burn_tokens = entry.get("burnRateUsdPerHour"), entry.get(
            "burnRateTokensPerHour")
        if burn_usd:
            burn = Content.assemble("burn ", (f"{money(burn_usd)}/h", "bold"))
        elif burn_tokens:
            burn = Content.assemble("burn ", (f"{tokens(burn_tokens)} tok/h", "bold"))
        else:
            burn = Content.styled("no calls in the last hour", "$text-muted")
        end: list[Content] = []
        projected = parse_iso(entry.get("projectedExhaustionAt"))
        if projected is not None:
            end.append(Content.assemble(
                "runs out ", (moment(projected, self.zone, now), f"bold {STATE_STYLE['warn']}"),
                (f" ({until(projected, now)})", "$text-muted")))
        elif (entry.get("limitUsd") or entry.get("limitTokens")) and entry.get(
                "state") != "blocked" and not entry.get("exceeded"):
            end.append(Content.styled("lasts the period", "$text-muted"))
        wordings = [[*reset_parts[:1], burn, *end], [*reset_parts[1:], burn, *end]]
        if end:
            wordings.append([*reset_parts[1:], *end])
        return first_fitting([Content(" · ").join(parts) for parts in wordings], width)

    def _others(self, entry: dict[str, Any]) -> Line | None:
        shown = entry.get("budget")
        others = [b for b in (self.status or {}).get("budgets") or []
                  if b.get("budget") != shown]
        if not others:
            return None
        parts = [Content.assemble(f"{b.get('budget')} ", (
            state_label(b), STATE_STYLE.get(str(b.get("state")), ""))) for b in others]
        return Content.assemble(("also ", "$text-muted"), Content(" · ").join(parts))
