"""How the dashboard writes numbers, amounts, durations and moments: pure functions.

Everything here takes plain values (dollars as floats, tokens as ints, epoch milliseconds)
so the widgets can be fed the status object as JSON gives it, and so it is tested alone.
"""

from __future__ import annotations

from datetime import UTC, datetime, tzinfo

MINUTE_MS = 60_000
HOUR_MS = 3_600_000
DAY_MS = 86_400_000


def money(usd: float | None) -> str:
    """``$1,234``, ``$12.34``, ``$0.0123``; ``?`` when the amount is unknown."""
    if usd is None:
        return "?"
    if abs(usd) >= 1000:
        return f"${usd:,.0f}"
    if abs(usd) >= 0.095 or usd == 0:
        return f"${usd:,.2f}"
    if abs(usd) >= 0.0095:
        return f"${usd:.3f}"
    text = f"${usd:.4f}".rstrip("0").rstrip(".")
    return "$0.00" if text == "$0" else text


def tokens(count: float | None) -> str:
    """``950``, ``1.2k``, ``3.4M``, ``1.1B``; ``?`` when unknown."""
    if count is None:
        return "?"
    size = abs(count)
    for unit, scale in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if size >= scale:
            return f"{count / scale:.1f}".rstrip("0").rstrip(".") + unit
    return str(int(count))


def percent(fraction: float | None) -> str:
    """``85%``; below 10% one decimal (``2.5%``) so a small share still reads as non-zero."""
    if fraction is None:
        return "–"
    value = fraction * 100
    if 0 < abs(value) < 10:
        return f"{value:.1f}".rstrip("0").rstrip(".") + "%"
    return f"{value:.0f}%"


def duration(ms: float) -> str:
    """A span as a person reads it: ``45s``, ``12m``, ``3h 12m``, ``2d 4h``."""
    ms = max(0, int(ms))
    if ms < MINUTE_MS:
        return f"{ms // 1000}s"
    if ms < HOUR_MS:
        return f"{ms // MINUTE_MS}m"
    if ms < DAY_MS:
        hours, rest = divmod(ms, HOUR_MS)
        minutes = rest // MINUTE_MS
        return f"{hours}h {minutes}m" if minutes else f"{hours}h"
    days, rest = divmod(ms, DAY_MS)
    hours = rest // HOUR_MS
    return f"{days}d {hours}h" if hours else f"{days}d"


def to_ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def from_ms(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


def iso(ms: int) -> str:
    """Epoch milliseconds as the status object writes moments: ``2026-01-31T09:30:00Z``."""
    return from_ms(ms).isoformat(timespec="seconds").replace("+00:00", "Z")


def parse_iso(text: str | None) -> int | None:
    """The status object's ``2026-01-31T09:30:00Z`` as epoch milliseconds (None stays None)."""
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return to_ms(moment)


def moment(ms: int, zone: tzinfo, now_ms: int) -> str:
    """A moment near ``now``: ``14:05`` within the day, ``Mon 14:05`` within a week, else
    ``01 Dec 14:05``."""
    when = from_ms(ms).astimezone(zone)
    today = from_ms(now_ms).astimezone(zone).date()
    if when.date() == today or 0 <= ms - now_ms < 12 * HOUR_MS:
        return f"{when:%H:%M}"
    if abs((when.date() - today).days) < 7:
        return f"{when:%a %H:%M}"
    return f"{when:%d %b %H:%M}"


def until(ms: int, now_ms: int) -> str:
    """``in 3h 12m``, or ``now`` when the moment has come."""
    return "now" if ms <= now_ms else f"in {duration(ms - now_ms)}"


def ago(ms: int, now_ms: int) -> str:
    """``just now``, ``3m ago``, ``2d 4h ago``."""
    span = now_ms - ms
    return "just now" if span < 5_000 else f"{duration(span)} ago"


def bar(fraction: float | None, width: int) -> tuple[str, str]:
    """A gauge of ``width`` cells as (filled, empty) parts, using eighths for precision."""
    width = max(0, width)
    if fraction is None:
        return "", "░" * width
    eighths = round(min(1.0, max(0.0, fraction)) * width * 8)
    full, part = divmod(eighths, 8)
    partial = " ▏▎▍▌▋▊▉"[part] if part and full < width else ""
    filled = "█" * full + partial
    return filled, "░" * (width - len(filled))


def local_zone() -> tzinfo:
    """This machine's zone as an IANA zone (so days and weeks cross DST correctly)."""
    try:
        import tzlocal

        return tzlocal.get_localzone()
    except Exception:  # an unreadable /etc/localtime must not stop the dashboard
        return UTC
