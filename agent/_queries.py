"""Read-side SQL, shared by the synchronous readers (status, dashboard) and the async writer.

Every function takes an open ``sqlite3``-style connection (or returns SQL and parameters for
one) and never scans the whole ``calls`` table: budget sums come from the rollups, plus the
few calls at the ragged edges of a window, found through the ``ts`` index, plus the calls
stored since the last roll-up (``agent._schema.roll_up``), found through ``seq`` — in the same
statement as the rollups, so that a roll-up committing meanwhile is seen wholly or not at all.
"""

from __future__ import annotations

import sqlite3
from typing import Any, NamedTuple

from agent._budget import Usage
from agent._schema import BUCKET_MS, DAY_MS, HOUR_MS, UNROLLED

_EDGE = ("SELECT COUNT(*) AS n, COALESCE(SUM(total_tokens), 0) AS t,"
         " COALESCE(SUM(cost_micro_usd), 0) AS c,"
         " COALESCE(SUM(cost_micro_usd IS NULL), 0) AS u FROM calls WHERE ts >= ? AND ts < ?")
_ROLLUP = ("SELECT COALESCE(SUM(calls), 0) AS n, COALESCE(SUM(tokens), 0) AS t,"
           " COALESCE(SUM(cost_micro_usd), 0) AS c, COALESCE(SUM(unknown_cost_calls), 0) AS u"
           " FROM {table} WHERE {key} >= ? AND {key} < ?")
#: The calls of ``[lo, hi)`` not rolled up yet (``+ts``: found by ``seq``, never by a scan of
#: the ``ts`` index over a whole window).
_UNROLLED = ("SELECT COUNT(*) AS n, COALESCE(SUM(total_tokens), 0) AS t,"
             " COALESCE(SUM(cost_micro_usd), 0) AS c,"
             f" COALESCE(SUM(cost_micro_usd IS NULL), 0) AS u FROM calls WHERE {UNROLLED}"
             " AND +ts >= ? AND +ts < ?")
#: Rollup levels, coarsest first: (bucket width, table, key column).
_LEVELS = ((DAY_MS, "usage_1d", "day"), (BUCKET_MS, "usage_15m", "bucket"))


def _cover(lo: int, hi: int, level: int) -> list[tuple[str, tuple[int, int]]]:
    """SQL parts summing ``[lo, hi)``: whole buckets of the coarsest level that fits, finer
    levels for the remainders, and the calls themselves only for the sub-bucket edges."""
    if lo >= hi:
        return []
    if level == len(_LEVELS):
        return [(_EDGE, (lo, hi))]
    width, table, key = _LEVELS[level]
    first = -(-lo // width) * width
    last = hi // width * width
    if first >= last:
        return _cover(lo, hi, level + 1)
    return [*_cover(lo, first, level + 1),
            (_ROLLUP.format(table=table, key=key), (first, last)),
            (_UNROLLED, (first, last)),
            *_cover(last, hi, level + 1)]


def usage_query(start_ms: int, end_ms: int) -> tuple[str, tuple[int, ...]]:
    """SQL summing calls with ``start_ms <= ts < end_ms`` from the rollups (see ``_cover``)."""
    parts = _cover(start_ms, end_ms, 0) or [(_EDGE, (start_ms, start_ms))]
    if len(parts) == 1:
        return parts[0]
    sql = " UNION ALL ".join(part for part, _ in parts)
    params = tuple(value for _, bounds in parts for value in bounds)
    return f"SELECT SUM(n), SUM(t), SUM(c), SUM(u) FROM ({sql})", params


def usage_from_row(row: tuple[Any, ...] | None) -> Usage:
    if row is None:
        return Usage()
    calls, tokens, cost, unknown = (int(value or 0) for value in row)
    return Usage(cost_micro=cost, tokens=tokens, calls=calls, unknown_cost_calls=unknown)


def usage_between(db: sqlite3.Connection, start_ms: int, end_ms: int) -> Usage:
    sql, params = usage_query(start_ms, end_ms)
    return usage_from_row(db.execute(sql, params).fetchone())


OLDEST_SINCE = "SELECT MIN(ts) FROM calls WHERE ts >= ?"
RESERVED = ("SELECT COALESCE(SUM(cost_micro_usd), 0), COALESCE(SUM(tokens), 0), COUNT(*)"
            " FROM reservations WHERE expires_ms > ?")


def oldest_since(db: sqlite3.Connection, start_ms: int) -> int | None:
    row = db.execute(OLDEST_SINCE, (start_ms,)).fetchone()
    return None if row is None or row[0] is None else int(row[0])


def reserved(db: sqlite3.Connection, now_ms: int) -> Usage:
    cost, tokens, count = db.execute(RESERVED, (now_ms,)).fetchone()
    return Usage(cost_micro=int(cost), tokens=int(tokens), calls=int(count))


CALL_COLUMNS = ("id", "ts", "device_id", "tool", "source", "provider", "model", "kind",
                "input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens",
                "cache_write_1h_tokens", "reasoning_tokens", "cost_micro_usd", "estimated",
                "latency_ms", "status", "language", "workspace", "request_id")


def recent_calls(db: sqlite3.Connection, limit: int = 20, since_ms: int | None = None
                 ) -> list[dict[str, Any]]:
    """The newest calls first, as dicts keyed like the event model (``ts`` in epoch ms)."""
    where, params = ("WHERE ts >= ?", (since_ms, limit)) if since_ms is not None else ("", (limit,))
    rows = db.execute(f"SELECT {', '.join(CALL_COLUMNS)} FROM calls {where} "
                      "ORDER BY ts DESC, seq DESC LIMIT ?", params)
    return [dict(zip(CALL_COLUMNS, row, strict=True)) for row in rows]


class Breakdown(NamedTuple):
    key: str
    calls: int
    tokens: int
    cost_micro: int
    unknown_cost_calls: int


def breakdown(db: sqlite3.Connection, start_ms: int, end_ms: int, by: str) -> list[Breakdown]:
    """Usage per ``tool``, ``model`` or ``provider`` over whole hours of the hourly rollup."""
    if by not in ("tool", "model", "provider"):
        raise ValueError(f"cannot break usage down by {by!r}")
    first = start_ms - start_ms % HOUR_MS
    rows = db.execute(
        f"SELECT {by}, SUM(n), SUM(t), SUM(c), SUM(u) FROM ("
        f"SELECT {by}, calls AS n, input_tokens + output_tokens + cache_read_tokens"
        " + cache_write_tokens AS t, cost_micro_usd AS c, unknown_cost_calls AS u"
        " FROM usage_hourly WHERE hour >= ? AND hour < ?"
        f" UNION ALL SELECT {by}, 1, total_tokens, COALESCE(cost_micro_usd, 0),"
        f" cost_micro_usd IS NULL FROM calls WHERE {UNROLLED}"
        f" AND +ts >= ? AND +ts - +ts % {HOUR_MS} < ?"
        f") GROUP BY {by} ORDER BY SUM(c) DESC, SUM(n) DESC",
        (first, end_ms, first, end_ms))
    return [Breakdown(str(k), int(n), int(t), int(c), int(u)) for k, n, t, c, u in rows]


def usage_series(db: sqlite3.Connection, start_ms: int, end_ms: int, step_ms: int
                 ) -> list[Usage]:
    """Usage in consecutive slots of ``step_ms`` (a multiple of 15 minutes) from the rollup."""
    step_ms = max(BUCKET_MS, step_ms - step_ms % BUCKET_MS)
    slots = max(1, -(-(end_ms - start_ms) // step_ms))
    base = start_ms - start_ms % BUCKET_MS
    series = [Usage() for _ in range(slots)]
    rows = db.execute(
        "SELECT bucket, calls, tokens, cost_micro_usd, unknown_cost_calls FROM usage_15m"
        " WHERE bucket >= ? AND bucket < ?"
        f" UNION ALL SELECT +ts - +ts % {BUCKET_MS}, 1, total_tokens,"
        " COALESCE(cost_micro_usd, 0), cost_micro_usd IS NULL FROM calls"
        f" WHERE {UNROLLED} AND +ts >= ? AND +ts - +ts % {BUCKET_MS} < ?",
        (base, end_ms, base, end_ms))
    for bucket, calls, tokens, cost, unknown in rows:
        index = min(slots - 1, (bucket - base) // step_ms)
        series[index] = series[index].plus(Usage(cost, tokens, calls, unknown))
    return series


Funnel = dict[str, dict[int, tuple[int, int, int]]]


def funnel(db: sqlite3.Connection, start_ms: int, end_ms: int) -> Funnel:
    """Outcome counts from the hourly rollup: type → checkpoint_s → (events, chars, lines)."""
    result: Funnel = {}
    rows = db.execute("SELECT type, checkpoint_s, SUM(events), SUM(chars), SUM(lines) "
                      "FROM outcomes_hourly WHERE hour >= ? AND hour < ? "
                      "GROUP BY type, checkpoint_s", (start_ms - start_ms % HOUR_MS, end_ms))
    for kind, checkpoint, events, chars, lines in rows:
        result.setdefault(kind, {})[int(checkpoint)] = (int(events), int(chars), int(lines))
    return result


def vendor_quotas(db: sqlite3.Connection) -> list[dict[str, Any]]:
    rows = db.execute("SELECT provider, name, quota_limit, remaining, used_percent, "
                      "resets_at_ms, observed_ms FROM vendor_quota ORDER BY provider, name")
    keys = ("provider", "name", "limit", "remaining", "usedPercent", "resetsAtMs", "observedMs")
    return [dict(zip(keys, row, strict=True)) for row in rows]


def sync_state(db: sqlite3.Connection) -> dict[str, Any]:
    """Pending events and the last outcome of sync, over both streams."""
    pending = 0
    last_success = last_error_ms = None
    last_error = None
    for stream, last_seq, success, error, error_ms in db.execute(
            "SELECT stream, last_seq, last_success_ms, last_error, last_error_ms "
            "FROM sync_state"):
        table = "calls" if stream == "calls" else "suggestion_events"
        top = db.execute(f"SELECT COALESCE(MAX(seq), 0) FROM {table}").fetchone()[0]
        pending += max(0, int(top) - int(last_seq))
        if success is not None and (last_success is None or success > last_success):
            last_success = success
        if error_ms is not None and (last_error_ms is None or error_ms > last_error_ms):
            last_error_ms, last_error = error_ms, error
    return {"pending": pending, "lastSuccessMs": last_success, "lastError": last_error,
            "lastErrorMs": last_error_ms}
