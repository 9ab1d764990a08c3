"""Alerts: what deserves a developer's attention right now, derived from the status object.

Pure functions of the status object, the sync state and the moment, so every rule is unit
tested without a store or a terminal.

Runaway usage is either of:
- the last hour's spend is at least ``factor`` times the period's average hourly spend
  (and above a floor, so cents do not alarm; and only once the period has run for a while,
  because early in a period the last hour *is* the period);
- at the last hour's rate, a budget runs out within the next hour.
"""

from __future__ import annotations

from datetime import tzinfo
from typing import Any, Literal, NamedTuple

from tui._format import HOUR_MS, ago, moment, money, parse_iso, percent, tokens, until

Level = Literal["error", "warn", "info"]
_RANK = {"error": 0, "warn": 1, "info": 2}


class Alert(NamedTuple):
    level: Level
    kind: str
    text: str


class Thresholds(NamedTuple):
    """When usage counts as a runaway (see the module docstring)."""

    factor: float = 3.0
    min_usd_per_hour: float = 1.0
    min_tokens_per_hour: int = 1_000_000
    min_period_hours: float = 2.0
    exhaustion_within_ms: int = HOUR_MS
    #: A vendor quota with less than this fraction left is worth a warning.
    vendor_low: float = 0.1


DEFAULT_THRESHOLDS = Thresholds()


def runaway(entry: dict[str, Any], now_ms: int, zone: tzinfo,
            limits: Thresholds = DEFAULT_THRESHOLDS) -> Alert | None:
    """The runaway alert for one status entry (a budget's, or a plain period's), if any."""
    name = entry.get("budget")
    label = f"budget '{name}'" if name else f"this {entry.get('period', 'day')}"
    projected = parse_iso(entry.get("projectedExhaustionAt"))
    if projected is not None and projected - now_ms <= limits.exhaustion_within_ms:
        burn = entry.get("burnRateUsdPerHour")
        rate = f"{money(burn)}/h" if burn else f"{tokens(entry.get('burnRateTokensPerHour'))} tok/h"
        return Alert("error", "runaway",
                     f"Runaway: at {rate} {label} runs out {until(projected, now_ms)} "
                     f"({moment(projected, zone, now_ms)})")
    start = parse_iso(entry.get("periodStart"))
    if start is None:
        return None
    elapsed_h = (now_ms - start) / HOUR_MS
    if elapsed_h < limits.min_period_hours:
        return None
    last_usd = float(entry.get("burnRateUsdPerHour") or 0)
    average_usd = float(entry.get("usedUsd") or 0) / elapsed_h
    if last_usd >= limits.min_usd_per_hour and last_usd >= limits.factor * average_usd > 0:
        return Alert("warn", "runaway",
                     f"Runaway: {money(last_usd)} in the last hour, "
                     f"{last_usd / average_usd:.1f}× the average of {label} "
                     f"({money(average_usd)}/h)")
    last_tokens = float(entry.get("burnRateTokensPerHour") or 0)
    average_tokens = float(entry.get("usedTokens") or 0) / elapsed_h
    if (last_usd == 0 and last_tokens >= limits.min_tokens_per_hour
            and last_tokens >= limits.factor * average_tokens > 0):
        return Alert("warn", "runaway",
                     f"Runaway: {tokens(last_tokens)} tokens in the last hour, "
                     f"{last_tokens / average_tokens:.1f}× the average of {label}")
    return None


def alerts(status: dict[str, Any] | None, now_ms: int, zone: tzinfo, *,
           view: dict[str, Any] | None = None, sync: dict[str, Any] | None = None,
           limits: Thresholds = DEFAULT_THRESHOLDS) -> list[Alert]:
    """Every alert, the most serious first.

    ``status`` is the status object; ``view`` the status entry on screen (for a plain period
    without budgets, whose runaway test uses that period's average).
    """
    found: list[Alert] = []
    status = status or {}
    entries = list(status.get("budgets") or [])
    for entry in entries:
        name, reset = entry.get("budget"), parse_iso(entry.get("resetsAt"))
        when = f" until {moment(reset, zone, now_ms)}" if reset is not None else ""
        if entry.get("state") == "blocked":
            found.append(Alert("error", "blocked",
                               f"BLOCKED: budget '{name}' is used up; calls are refused{when}"))
        elif entry.get("exceeded"):
            found.append(Alert("warn", "over",
                               f"Over budget '{name}' ({percent(_fraction(entry))} used; "
                               "warn only, calls still pass)"))
        elif entry.get("state") == "warn":
            found.append(Alert("warn", "warn",
                               f"Budget '{name}' is at {percent(_fraction(entry))}"))
    for entry in entries or [view or status]:
        alert = runaway(entry, now_ms, zone, limits)
        if alert is not None:
            found.append(alert)
    for quota in current_vendor_quota(status, now_ms):
        left = vendor_left(quota)
        if left is not None and left < limits.vendor_low:
            reset = parse_iso(quota.get("resetsAt"))
            when = f", resets {moment(reset, zone, now_ms)}" if reset is not None else ""
            found.append(Alert("warn", "vendor",
                               f"{quota.get('provider')} says {percent(left)} of its "
                               f"{quota.get('name')} quota is left{when}"))
    unknown = int((view or status).get("unknownCostCalls") or 0)
    if unknown:
        found.append(Alert("info", "unpriced",
                           f"{unknown} call{'s' if unknown != 1 else ''} of unknown cost: "
                           "add the model's price under [prices] in config.toml"))
    if sync:
        error_ms, success_ms = sync.get("lastErrorMs"), sync.get("lastSuccessMs")
        if error_ms is not None and (success_ms is None or error_ms > success_ms):
            found.append(Alert("warn", "sync",
                               f"Sync failing since {ago(error_ms, now_ms)}: "
                               f"{sync.get('lastError') or 'unknown error'} "
                               f"({sync.get('pending', 0)} events waiting)"))
    return sorted(found, key=lambda alert: _RANK[alert.level])


def _fraction(entry: dict[str, Any]) -> float | None:
    value = entry.get("percentUsed")
    return None if value is None else float(value) / 100


#: A vendor's figure seen longer ago than this says nothing of now (as the status line).
VENDOR_FRESH_MS = 6 * 3_600_000


def current_vendor_quota(status: dict[str, Any], now_ms: int | None = None
                         ) -> list[dict[str, Any]]:
    """The vendor quota windows that still hold at ``now_ms`` (default: when the status was
    made): not reset since, and seen within the last six hours."""
    if now_ms is None:
        now_ms = parse_iso(status.get("generatedAt"))
    current = []
    for quota in status.get("vendorQuota") or []:
        reset, seen = parse_iso(quota.get("resetsAt")), parse_iso(quota.get("observedAt"))
        if now_ms is not None and ((reset is not None and reset <= now_ms) or (
                seen is not None and now_ms - seen >= VENDOR_FRESH_MS)):
            continue
        current.append(quota)
    return current


def vendor_left(quota: dict[str, Any]) -> float | None:
    """The fraction of a vendor's quota left, from its remaining/limit or its used percent."""
    limit, remaining = quota.get("limit"), quota.get("remaining")
    if limit and remaining is not None:
        return max(0.0, float(remaining) / float(limit))
    used = quota.get("usedPercent")
    if used is not None:
        return max(0.0, 1 - float(used) / 100)
    return None

