"""Budget arithmetic as pure functions: windows, used and remaining, state, burn, projection.

Nothing here does I/O. The store supplies ``Usage`` sums for a window (from its rollup), and
these functions say where the window is, what state it is in and when it will run out.

The value types are NamedTuples rather than dataclasses on purpose: `meterline status` runs
after every prompt, and defining dataclasses costs it milliseconds at import time.

Times are integer milliseconds since the Unix epoch (UTC) inside, aware datetimes at the edge.
Money is integer micro-dollars inside, floats of dollars only in the JSON the user reads.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time, timedelta
from typing import Literal, NamedTuple
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

State = Literal["ok", "warn", "blocked"]
HOUR_MS = 3_600_000
#: A window that ends "now" also takes in calls stamped up to a day ahead (the clock skew
#: events may have). Counting them at once is right, and it lets the sum use the rollup
#: for the current bucket instead of scanning its calls.
OPEN_END_MS = 86_400_000


def since(start_ms: int, now_ms: int) -> tuple[int, int]:
    """The bounds of "everything from ``start_ms`` until now"."""
    return start_ms, now_ms + OPEN_END_MS
_WEEKDAY_INDEX = {name: i for i, name in enumerate(
    ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"))}
_DURATION = re.compile(r"(\d+)\s*([smhdw])")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}


class Calendar(NamedTuple):
    unit: Literal["day", "week", "month"]


class Rolling(NamedTuple):
    seconds: int


Period = Calendar | Rolling


def parse_period(text: str) -> Period:
    """``day``/``week``/``month``, or a rolling window: ``5h``, ``90m``, ``1h30m``, ``7d``."""
    value = text.strip().lower()
    if value in ("day", "week", "month"):
        return Calendar(value)  # type: ignore[arg-type]
    value = value.removeprefix("rolling:").replace(" ", "")
    parts = _DURATION.findall(value)
    if not parts or "".join(n + u for n, u in parts) != value:
        raise ValueError(f"{text!r} is not day, week, month or a duration such as 5h")
    seconds = sum(int(n) * _UNIT_S[u] for n, u in parts)
    if not 60 <= seconds <= 366 * 86_400:
        raise ValueError(f"{text!r}: a rolling window must be between 1 minute and 366 days")
    return Rolling(seconds)


class Budget(NamedTuple):
    """One budget as the arithmetic sees it (from config.toml or from the team server)."""

    name: str
    period: str = "day"
    limit_usd: float | None = None
    limit_tokens: int | None = None
    warn_at: float = 0.8
    mode: str = "warn"
    timezone: str | None = None
    week_starts: str = "monday"
    scope: str = "developer"
    source: str = "config"


def local_zone_name() -> str:
    """The machine's IANA zone name (``UTC`` if it has none)."""
    import tzlocal  # 10 ms to import: callers cache the answer

    zone = tzlocal.get_localzone()
    return getattr(zone, "key", None) or "UTC"


def resolve_zone(name: str | None) -> ZoneInfo:
    """The named IANA zone, or the machine's own zone when ``name`` is None."""
    if name is None:
        name = local_zone_name()
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {name!r} (use an IANA name such as "
                         "Europe/Berlin)") from None


class Window(NamedTuple):
    """The span a budget counts: ``[start_ms, end_ms)``; ``resets_at_ms`` when it starts over."""

    start_ms: int
    end_ms: int
    resets_at_ms: int | None
    rolling: bool


def to_ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def from_ms(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


def _local_midnight(day: date, zone: ZoneInfo) -> int:
    # fold=0 maps a midnight that a DST jump skipped to the jump itself: the first instant
    # of that date, which is what a period start means.
    return to_ms(datetime.combine(day, time(0), tzinfo=zone))


def _add_months(day: date, months: int) -> date:
    index = day.year * 12 + day.month - 1 + months
    return date(index // 12, index % 12 + 1, 1)


def calendar_window(unit: str, zone: ZoneInfo, now_ms: int, week_starts: str = "monday") -> Window:
    today = from_ms(now_ms).astimezone(zone).date()
    if unit == "day":
        first, after = today, today + timedelta(days=1)
    elif unit == "week":
        back = (today.weekday() - _WEEKDAY_INDEX[week_starts]) % 7
        first = today - timedelta(days=back)
        after = first + timedelta(days=7)
    else:
        first = today.replace(day=1)
        after = _add_months(first, 1)
    end = _local_midnight(after, zone)
    return Window(_local_midnight(first, zone), end, end, rolling=False)


def budget_window(spec: Budget, now_ms: int, *, oldest_in_window_ms: int | None = None
                  ) -> Window:
    """The window ``spec`` counts at ``now_ms``.

    A rolling window ends now; it "resets" (starts to free up) when its oldest usage falls
    out, so pass ``oldest_in_window_ms`` when it is known.
    """
    period = parse_period(spec.period)
    if isinstance(period, Rolling):
        span = period.seconds * 1000
        resets = oldest_in_window_ms + span if oldest_in_window_ms is not None else None
        return Window(*since(now_ms - span, now_ms), resets, rolling=True)
    return calendar_window(period.unit, resolve_zone(spec.timezone), now_ms, spec.week_starts)


class Usage(NamedTuple):
    """Sums over a window, as the store's rollup gives them."""

    cost_micro: int = 0
    tokens: int = 0
    calls: int = 0
    unknown_cost_calls: int = 0

    def plus(self, other: Usage) -> Usage:
        return Usage(self.cost_micro + other.cost_micro, self.tokens + other.tokens,
                     self.calls + other.calls, self.unknown_cost_calls + other.unknown_cost_calls)


class BudgetStatus(NamedTuple):
    """Where one budget stands at one moment."""

    name: str
    scope: str
    period: str
    mode: str
    state: State
    exceeded: bool
    window: Window
    used: Usage
    limit_micro: int | None
    limit_tokens: int | None
    fraction: float | None
    burn_micro_per_hour: float
    burn_tokens_per_hour: float
    period_burn_micro_per_hour: float
    projected_exhaustion_ms: int | None

    @property
    def remaining_micro(self) -> int | None:
        return None if self.limit_micro is None else self.limit_micro - self.used.cost_micro

    @property
    def remaining_tokens(self) -> int | None:
        return None if self.limit_tokens is None else self.limit_tokens - self.used.tokens


def limit_micro(spec: Budget) -> int | None:
    return None if spec.limit_usd is None else round(spec.limit_usd * 1_000_000)


def used_fraction(used: Usage, limit_micro_usd: int | None, limit_tokens: int | None
                  ) -> float | None:
    """The larger of the dollar and token fractions used, or None without limits."""
    fractions = []
    if limit_micro_usd:
        fractions.append(used.cost_micro / limit_micro_usd)
    if limit_tokens:
        fractions.append(used.tokens / limit_tokens)
    return max(fractions) if fractions else None


def state_of(fraction: float | None, warn_at: float, mode: str) -> tuple[State, bool]:
    """(state, exceeded). Only an enforced budget blocks; a warn-only one stays at warn."""
    if fraction is None:
        return "ok", False
    if fraction >= 1:
        return ("blocked" if mode == "enforce" else "warn"), True
    return ("warn" if fraction >= warn_at else "ok"), False


def project_exhaustion(now_ms: int, remaining: int | None, rate_per_hour: float,
                       horizon_ms: int | None) -> int | None:
    """When ``remaining`` runs out at ``rate_per_hour``; None if never within ``horizon_ms``."""
    if remaining is None or rate_per_hour <= 0 or remaining <= 0:
        return None
    at = now_ms + int(remaining / rate_per_hour * HOUR_MS)
    if horizon_ms is not None and at >= horizon_ms:
        return None
    return at


def _reaching(rate_per_hour: int, window_h: float | None, limit: int | None) -> float:
    """The rate, or 0 (no projection) when a rolling window of ``window_h`` hours could
    never hold ``limit`` at that rate."""
    if window_h is not None and limit is not None and rate_per_hour * window_h < limit:
        return 0.0
    return float(rate_per_hour)


def evaluate(spec: Budget, window: Window, used: Usage, last_hour: Usage, now_ms: int
             ) -> BudgetStatus:
    """Everything the status line, the dashboard and the proxy need about one budget.

    Burn rate is the last hour's spend per hour; the period rate is the spend so far divided
    by the hours the window has run. The projection extrapolates the last hour's rate, and is
    None when that rate would not exhaust the budget before it resets (a rolling window:
    when that rate over the window's length stays under the limit).
    """
    lim_micro, lim_tokens = limit_micro(spec), spec.limit_tokens
    fraction = used_fraction(used, lim_micro, lim_tokens)
    state, exceeded = state_of(fraction, spec.warn_at, spec.mode)
    elapsed_h = max(min(now_ms, window.end_ms) - window.start_ms, 60_000) / HOUR_MS
    horizon = window.resets_at_ms if not window.rolling else None
    # A rolling window at a steady rate holds rate × its length at most: below the limit,
    # it is never exhausted, however long that rate lasts.
    period = parse_period(spec.period)
    window_h = period.seconds / 3600 if isinstance(period, Rolling) else None
    candidates = [
        project_exhaustion(now_ms, None if lim_micro is None else lim_micro - used.cost_micro,
                           _reaching(last_hour.cost_micro, window_h, lim_micro), horizon),
        project_exhaustion(now_ms, None if lim_tokens is None else lim_tokens - used.tokens,
                           _reaching(last_hour.tokens, window_h, lim_tokens), horizon),
    ]
    projected = min((c for c in candidates if c is not None), default=None)
    return BudgetStatus(
        name=spec.name, scope=spec.scope, period=spec.period, mode=spec.mode, state=state,
        exceeded=exceeded, window=window, used=used, limit_micro=lim_micro,
        limit_tokens=lim_tokens, fraction=fraction,
        burn_micro_per_hour=float(last_hour.cost_micro),
        burn_tokens_per_hour=float(last_hour.tokens),
        period_burn_micro_per_hour=used.cost_micro / elapsed_h,
        projected_exhaustion_ms=projected,
    )


_STATE_RANK = {"ok": 0, "warn": 1, "blocked": 2}


def headline(statuses: list[BudgetStatus]) -> BudgetStatus | None:
    """The budget that binds: the worst state, then the largest fraction used."""
    if not statuses:
        return None
    return max(statuses, key=lambda s: (_STATE_RANK[s.state], s.fraction or 0.0))


def admits(status: BudgetStatus, reserved: Usage) -> bool:
    """Whether an enforced budget lets one more call start.

    A call may start while settled use plus what is reserved by calls in flight is below
    every limit. So a burst overshoots a limit by at most the calls already in flight.
    """
    if status.mode != "enforce":
        return True
    if status.limit_micro is not None and (
            status.used.cost_micro + reserved.cost_micro >= status.limit_micro):
        return False
    return not (status.limit_tokens is not None
                and status.used.tokens + reserved.tokens >= status.limit_tokens)
