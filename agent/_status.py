"""The budget status: one object for `meterline status --json`, the sidecar and the dashboard,
and the one short line for shell prompts, tmux and editor status bars.

This module sits on the hot path of `meterline status`, which status bars run after every
prompt: it imports only the standard library pieces it needs. Budgets are read from the
store's ``budgets`` table, which mirrors ``config.toml`` (refreshed whenever the file's
stamp changes) and holds the budgets pulled from the team server; so the common case never
parses TOML or imports the validation library.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Generator
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar

from agent import _queries as q
from agent._budget import (
    HOUR_MS,
    Budget,
    BudgetStatus,
    Rolling,
    Usage,
    budget_window,
    calendar_window,
    evaluate,
    from_ms,
    headline,
    parse_period,
    resolve_zone,
    since,
)
from agent._schema import MIGRATIONS, connect, migrate

if TYPE_CHECKING:
    from agent._config import Settings

T = TypeVar("T")


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def iso(ms: int | None) -> str | None:
    """Epoch milliseconds as ISO-8601 UTC with a ``Z``; None stays None."""
    if ms is None:
        return None
    return from_ms(ms).isoformat(timespec="seconds").replace("+00:00", "Z")


def usd(micro: int | float | None) -> float | None:
    return None if micro is None else round(micro / 1_000_000, 6)


# -- budgets, as the store holds them -------------------------------------------------------

_BUDGET_COLUMNS = ("name, period, limit_usd, limit_tokens, warn_at, mode, timezone, "
                   "week_starts, scope, source")


def config_stamp(config_path: str) -> str:
    """What must change for config.toml's budgets to need re-reading: the file and the zone."""
    try:
        info = os.stat(config_path)
        stamp = f"{info.st_mtime_ns}:{info.st_size}"
    except FileNotFoundError:
        stamp = "absent"
    try:
        zone = os.readlink("/etc/localtime")
    except OSError:
        zone = ""
    return f"{stamp}|{os.environ.get('TZ', '')}|{zone}"


def refresh_config_budgets(db: sqlite3.Connection, settings: Settings, stamp: str) -> None:
    """Mirror config.toml's budgets into the store (zones resolved), in one transaction."""
    from agent._budget import local_zone_name

    local = local_zone_name()
    rows = [(b.name, b.period, b.limit_usd, b.limit_tokens, b.warn_at, b.mode,
             b.timezone or local, b.week_starts, b.scope, "config", position)
            for position, b in enumerate(settings.budgets)]
    db.execute("BEGIN IMMEDIATE")
    try:
        db.execute("DELETE FROM budgets WHERE source = 'config'")
        db.executemany(f"INSERT INTO budgets ({_BUDGET_COLUMNS}, position) "
                       "VALUES (?,?,?,?,?,?,?,?,?,?,?)", rows)
        db.executemany("INSERT INTO meta VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET "
                       "value = excluded.value", [("config_stamp", stamp), ("local_zone", local)])
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise


def read_budgets(db: sqlite3.Connection, config_path: str) -> tuple[list[Budget], str]:
    """The budgets in force and the local zone name, re-reading config.toml if it changed.

    Raises ConfigError (from the loader) when config.toml changed and is now invalid.
    """
    stamp = config_stamp(config_path)
    meta = dict(db.execute("SELECT key, value FROM meta WHERE key IN "
                           "('config_stamp', 'local_zone')").fetchall())
    if meta.get("config_stamp") != stamp:
        from agent._config import load

        refresh_config_budgets(db, load(), stamp)
        return read_budgets(db, config_path)
    budgets = [Budget(*row) for row in db.execute(
        f"SELECT {_BUDGET_COLUMNS} FROM budgets ORDER BY source, position")]
    return budgets, meta.get("local_zone") or "UTC"


# -- the report -----------------------------------------------------------------------------

class StatusReport(NamedTuple):
    """Everything `status` shows, computed at ``now_ms`` from the store."""

    now_ms: int
    budgets: list[BudgetStatus]
    zones: dict[str, str]
    today: Usage
    today_start_ms: int
    today_end_ms: int
    last_hour: Usage
    vendor_quota: list[dict[str, Any]]

    @property
    def binding(self) -> BudgetStatus | None:
        return headline(self.budgets)

    def to_json(self) -> dict[str, Any]:
        """The status object (camelCase), the same for the CLI, the sidecar and the TUI."""
        binding = self.binding
        if binding is None:
            body: dict[str, Any] = {
                "state": "ok", "budget": None, "period": "day", "mode": None, "scope": None,
                "exceeded": False,
                "usedUsd": usd(self.today.cost_micro), "usedTokens": self.today.tokens,
                "limitUsd": None, "limitTokens": None, "remainingUsd": None,
                "remainingTokens": None, "percentUsed": None,
                "periodStart": iso(self.today_start_ms), "resetsAt": iso(self.today_end_ms),
                "burnRateUsdPerHour": usd(self.last_hour.cost_micro),
                "burnRateTokensPerHour": self.last_hour.tokens,
                "periodBurnRateUsdPerHour": None, "projectedExhaustionAt": None,
                "calls": self.today.calls, "unknownCostCalls": self.today.unknown_cost_calls,
            }
        else:
            body = budget_json(binding)
        body["budgets"] = [budget_json(status) for status in self.budgets]
        body["vendorQuota"] = [
            {key: value for key, value in quota.items() if not key.endswith("Ms")}
            | {"resetsAt": iso(quota["resetsAtMs"]), "observedAt": iso(quota["observedMs"])}
            for quota in self.vendor_quota
        ]
        body["generatedAt"] = iso(self.now_ms)
        return body


def budget_json(status: BudgetStatus) -> dict[str, Any]:
    return {
        "state": status.state,
        "budget": status.name,
        "period": status.period,
        "mode": status.mode,
        "scope": status.scope,
        "exceeded": status.exceeded,
        "usedUsd": usd(status.used.cost_micro),
        "usedTokens": status.used.tokens,
        "limitUsd": usd(status.limit_micro),
        "limitTokens": status.limit_tokens,
        "remainingUsd": usd(status.remaining_micro),
        "remainingTokens": status.remaining_tokens,
        "percentUsed": None if status.fraction is None else round(status.fraction * 100, 2),
        "periodStart": iso(status.window.start_ms),
        "resetsAt": iso(status.window.resets_at_ms),
        "burnRateUsdPerHour": usd(status.burn_micro_per_hour),
        "burnRateTokensPerHour": round(status.burn_tokens_per_hour),
        "periodBurnRateUsdPerHour": usd(status.period_burn_micro_per_hour),
        "projectedExhaustionAt": iso(status.projected_exhaustion_ms),
        "calls": status.used.calls,
        "unknownCostCalls": status.used.unknown_cost_calls,
    }


Query = tuple[str, tuple[Any, ...]]
#: A plan asks for rows one query at a time and returns its result: the same logic then runs
#: on a plain sqlite3 connection (status, dashboards) and on the aiosqlite writer (budget
#: reservations, inside the write transaction).
Plan = Generator[Query, tuple[Any, ...] | None, T]


def plan_statuses(budgets: list[Budget], at_ms: int) -> Plan[list[BudgetStatus]]:
    """Plan: every budget's status at ``at_ms``."""
    if not budgets:
        return []
    last_hour = q.usage_from_row((yield q.usage_query(*since(at_ms - HOUR_MS, at_ms))))
    statuses = []
    for spec in budgets:
        period = parse_period(spec.period)
        oldest = None
        if isinstance(period, Rolling):
            row = yield q.OLDEST_SINCE, (at_ms - period.seconds * 1000,)
            oldest = None if row is None or row[0] is None else int(row[0])
        window = budget_window(spec, at_ms, oldest_in_window_ms=oldest)
        used = q.usage_from_row((yield q.usage_query(window.start_ms, window.end_ms)))
        statuses.append(evaluate(spec, window, used, last_hour, at_ms))
    return statuses


def run_plan(plan: Plan[T], db: sqlite3.Connection) -> T:
    """Drive a plan on a synchronous connection."""
    try:
        query = next(plan)
        while True:
            query = plan.send(db.execute(*query).fetchone())
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]


def compute(db: sqlite3.Connection, budgets: list[Budget], local_zone: str,
            at_ms: int | None = None) -> StatusReport:
    """The status at ``at_ms`` (default now) from the store."""
    at_ms = now_ms() if at_ms is None else at_ms
    zone_of_today = next((b.timezone for b in budgets if b.timezone), local_zone)
    today = calendar_window("day", resolve_zone(zone_of_today), at_ms)
    last_hour = q.usage_between(db, *since(at_ms - HOUR_MS, at_ms))
    return StatusReport(
        now_ms=at_ms,
        budgets=run_plan(plan_statuses(budgets, at_ms), db),
        zones={b.name: b.timezone or local_zone for b in budgets},
        today=q.usage_between(db, today.start_ms, today.end_ms),
        today_start_ms=today.start_ms,
        today_end_ms=today.end_ms,
        last_hour=last_hour,
        vendor_quota=q.vendor_quotas(db),
    )


def open_store_for_reading(path: str) -> sqlite3.Connection:
    """A connection to the store, created and migrated first if needed."""
    if not os.path.exists(path):
        migrate(path)
    db = connect(path)
    if db.execute("PRAGMA user_version").fetchone()[0] < len(MIGRATIONS):
        db.close()
        migrate(path)
        db = connect(path)
    return db


def record_vendor_quota(db: sqlite3.Connection, provider: str,
                        quotas: list[dict[str, Any]]) -> None:
    """Store what a tool said of its vendor's quota (sync twin of Store.set_vendor_quota)."""
    stamp = now_ms()
    db.executemany(
        "INSERT INTO vendor_quota VALUES (?,?,?,?,?,?,?) ON CONFLICT(provider, name) "
        "DO UPDATE SET quota_limit = excluded.quota_limit, remaining = excluded.remaining, "
        "used_percent = excluded.used_percent, resets_at_ms = excluded.resets_at_ms, "
        "observed_ms = excluded.observed_ms",
        [(provider, q["name"], q.get("limit"), q.get("remaining"), q.get("used_percent"),
          q.get("resets_at_ms"), stamp) for q in quotas])


def current_status(db_path: str, config_path: str, at_ms: int | None = None,
                   vendor: tuple[str, list[dict[str, Any]]] | None = None) -> StatusReport:
    """Open the store, bring its budgets up to date with config.toml, compute the status.

    ``vendor`` is a provider's quota a tool just told us (Claude Code's status line input),
    stored first so that it shows at once and stays for the dashboard.
    """
    db = open_store_for_reading(db_path)
    try:
        if vendor and vendor[1]:
            record_vendor_quota(db, *vendor)
        budgets, zone = read_budgets(db, config_path)
        return compute(db, budgets, zone, at_ms)
    finally:
        db.close()


# -- the one-line form ----------------------------------------------------------------------

_STATE_MARK = {"ok": "●", "warn": "▲", "blocked": "■"}


def money(micro: int | float) -> str:
    dollars = micro / 1_000_000
    if abs(dollars) >= 1000:
        return f"${dollars:,.0f}"
    if abs(dollars) >= 0.995 or dollars == 0:
        return f"${dollars:,.2f}"
    return f"${dollars:.4f}".rstrip("0").rstrip(".")


def tokens(count: int | float) -> str:
    size = abs(count)
    for unit, scale in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if size >= scale:
            return f"{count / scale:.1f}".rstrip("0").rstrip(".") + unit
    return str(int(count))


def reset_text(status: BudgetStatus, at_ms: int, zone_name: str) -> str:
    """``00:00`` when the reset is within the day, ``Mon 01 Dec`` within a week, else a date."""
    if status.window.resets_at_ms is None:
        return ""
    zone = resolve_zone(zone_name)
    reset = from_ms(status.window.resets_at_ms).astimezone(zone)
    today = from_ms(at_ms).astimezone(zone).date()
    if reset.date() == today or (status.window.resets_at_ms - at_ms) < 12 * HOUR_MS:
        return f"{reset:%H:%M}"
    return f"{reset:%a %d %b}" if (reset.date() - today).days < 7 else f"{reset:%d %b}"


#: A vendor's figure older than this is not shown: it may have reset since.
VENDOR_FRESH_MS = 6 * HOUR_MS


def vendor_text(quotas: list[dict[str, Any]], at_ms: int) -> str:
    """The vendor's own most-used quota window, beside ours: users trust their number."""
    fresh = [quota for quota in quotas if quota.get("usedPercent") is not None
             and (quota.get("resetsAtMs") is None or quota["resetsAtMs"] > at_ms)
             and at_ms - quota["observedMs"] < VENDOR_FRESH_MS]
    if not fresh:
        return ""
    top = max(fresh, key=lambda quota: quota["usedPercent"])
    return f" · {top['provider']} {top['name']} {top['usedPercent']:.0f}% used"


def status_line(report: StatusReport) -> str:
    """One short line: what is left, how much is used, the state, when it resets, and the
    vendor's own quota where it told us."""
    binding = report.binding
    unpriced = (report.today if binding is None else binding.used).unknown_cost_calls
    suffix = (f" · {unpriced} unpriced" if unpriced else "") + vendor_text(
        report.vendor_quota, report.now_ms)
    if binding is None:
        return (f"{_STATE_MARK['ok']} {money(report.today.cost_micro)} today · "
                f"{tokens(report.today.tokens)} tok · {report.today.calls} calls{suffix}")
    by_tokens = binding.limit_micro is None or (
        binding.limit_tokens is not None and binding.used.tokens / binding.limit_tokens
        > binding.used.cost_micro / binding.limit_micro)
    if by_tokens:
        left = f"{tokens(max(0, binding.remaining_tokens or 0))} tok left"
        of = f"{tokens(binding.limit_tokens or 0)} tok"
    else:
        left = f"{money(max(0, binding.remaining_micro or 0))} left"
        of = money(binding.limit_micro or 0)
    percent = f"{(binding.fraction or 0) * 100:.0f}%"
    reset = reset_text(binding, report.now_ms, report.zones.get(binding.name, "UTC"))
    reset = f" · resets {reset}" if reset else ""
    return (f"{_STATE_MARK[binding.state]} {left} ({percent} of {of}/{binding.period}) "
            f"{binding.state}{reset}{suffix}")
