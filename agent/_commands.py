"""What the CLI commands do, apart from parsing and printing: one function per command."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import msgspec

from agent import _config, _paths
from agent import _queries as q
from agent._errors import ConfigError, InputError
from agent._events import Call, decode_json, parse_calls
from agent._pricing import price_call
from agent._schema import connect
from agent._status import budget_json, current_status, money, status_line, tokens
from agent._store import Store


def price_missing(calls: list[Call], settings: _config.Settings) -> None:
    """Give every call without a cost its price (``None`` stays: cost unknown)."""
    for call in calls:
        if call.cost_micro_usd is None:
            call.cost_micro_usd = price_call(call, settings.prices)


async def record_calls(data: bytes, settings: _config.Settings) -> dict[str, Any]:
    """Validate every call, price them, store them in one transaction, report the state."""
    calls = parse_calls(decode_json(data))
    price_missing(calls, settings)
    _paths.ensure_home()
    async with await Store.open() as store:
        result = await store.add_calls(calls)
        report = await store.status()
    unpriced = sum(c.cost_micro_usd is None for c in calls)
    # Calls of unknown cost are never $0: none known, the cost is unknown (null, "?"); some,
    # it is at least the known part ("$0.42+?").
    known = sum(c.cost_micro_usd or 0 for c in calls)
    cost = None if calls and unpriced == len(calls) else known
    return {
        "inserted": result.inserted,
        "duplicates": result.duplicates,
        "ids": [c.id for c in calls],
        "costMicroUsd": cost,
        "costText": "?" if cost is None else money(cost) + ("+?" if unpriced else ""),
        "unpriced": unpriced,
        "status": report.to_json(),
        "statusLine": status_line(report),
    }


async def import_tool_logs(tools: list[str], settings: _config.Settings
                           ) -> dict[str, dict[str, int]]:
    from agent._importers import import_logs

    _paths.ensure_home()
    async with await Store.open() as store:
        return await import_logs(store, tools, settings.prices)


async def sync_now(settings: _config.Settings) -> dict[str, Any]:
    """One sync round; a failure raises MeterlineError with the server's words."""
    from agent import _credentials
    from agent._errors import MeterlineError
    from agent._sync import sync_once
    from agent._up import SERVER_TOKEN

    if not settings.sync.server_url:
        raise InputError("no team server configured: run `meterline login --server URL`")
    token = _credentials.get_secret(SERVER_TOKEN)
    if not token:
        raise InputError("no team-server token stored: run `meterline login --server "
                         f"{settings.sync.server_url}`")
    _paths.ensure_home()
    async with await Store.open() as store:
        result = await sync_once(store, settings.sync.server_url, token)
    if result.error:
        raise MeterlineError(f"sync failed: {result.error}")
    return {"sent": result.sent, "inserted": result.inserted, "duplicates": result.duplicates,
            "budgets": result.budgets}


async def scan_commit(repo: Path, rev: str) -> tuple[str, int, int]:
    """(commit sha, suggestions it committed, lines claimed)."""
    from agent._commits import scan

    _paths.ensure_home()
    async with await Store.open() as store:
        commit, result, lines = await scan(store, repo, rev)
    return commit.sha, result.inserted + result.duplicates, lines


def recent_calls_table(limit: int) -> tuple[list[dict[str, Any]], str]:
    """The newest ``limit`` calls as JSON-ready dicts and as a text table."""
    if not Path(_paths.db_path()).exists():
        return [], "no calls recorded yet (see `meterline --help` for ways to record them)"
    db = connect(_paths.db_path())
    try:
        rows = q.recent_calls(db, limit)
    finally:
        db.close()
    for row in rows:
        row["estimated"] = bool(row["estimated"])
    if not rows:
        return rows, "no calls recorded yet"
    header = ("time", "tool", "model", "in", "cached", "out", "cost", "status")
    lines = [header]
    today = datetime.now().astimezone().date()
    for row in rows:
        moment = datetime.fromtimestamp(row["ts"] / 1000).astimezone()
        when = f"{moment:%H:%M:%S}" if moment.date() == today else f"{moment:%m-%d %H:%M}"
        cost = "?" if row["cost_micro_usd"] is None else money(row["cost_micro_usd"])
        lines.append((
            when, row["tool"], row["model"], tokens(row["input_tokens"]),
            tokens(row["cache_read_tokens"] + row["cache_write_tokens"]),
            tokens(row["output_tokens"]), cost + ("~" if row["estimated"] else ""),
            row["status"]))
    widths = [max(len(str(line[i])) for line in lines) for i in range(len(header))]
    text = "\n".join("  ".join(str(cell).ljust(w) for cell, w in zip(line, widths, strict=True))
                     .rstrip() for line in lines)
    return rows, text


def budgets_overview() -> tuple[list[dict[str, Any]], str]:
    report = current_status(_paths.db_path(), _paths.config_path())
    data = [budget_json(status) for status in report.budgets]
    if not data:
        return data, ("no budgets set; add one with, for example:\n"
                      "  meterline budget set --name daily --period day --usd 10")
    lines = []
    for status in report.budgets:
        limits = []
        if status.limit_micro is not None:
            limits.append(f"{money(status.used.cost_micro)} of {money(status.limit_micro)}")
        if status.limit_tokens is not None:
            limits.append(f"{tokens(status.used.tokens)} of {tokens(status.limit_tokens)} tok")
        percent = f"{(status.fraction or 0) * 100:.0f}%"
        resets = ""
        if status.window.resets_at_ms is not None:
            from agent._budget import from_ms, resolve_zone

            zone = resolve_zone(report.zones.get(status.name))
            when = from_ms(status.window.resets_at_ms).astimezone(zone)
            resets = f", resets {when:%Y-%m-%d %H:%M %Z}"
        unknown = status.used.unknown_cost_calls
        unpriced = f", {unknown} {'call' if unknown == 1 else 'calls'} of unknown cost not " \
            "counted" if unknown and status.limit_micro is not None else ""
        lines.append(f"{status.name}: {' and '.join(limits)} ({percent}) per {status.period}, "
                     f"{status.mode}, {status.state}{resets}{unpriced}")
    return data, "\n".join(lines)


def set_budget(name: str, changes: dict[str, Any]) -> tuple[Path, _config.BudgetSpec]:
    """Create or change the named budget in config.toml; the whole file is checked first."""
    with _config.editing():
        settings = _config.load()
        current = next((b for b in settings.budgets if b.name == name), None)
        base = msgspec.structs.asdict(current) if current else {"name": name}
        merged = {**base, **changes}
        try:
            spec = msgspec.convert(merged, _config.BudgetSpec)
        except msgspec.ValidationError as exc:
            message, _, at = str(exc).partition(" - at `$.")
            raise ConfigError(f"budget {name!r}: {at.rstrip('`') or 'value'}: "
                              f"{message.replace('`', '')}") from None
        return _config.upsert_budget(spec), spec


def remove_budget(name: str) -> Path:
    import tomlkit

    with _config.editing() as path:
        settings = _config.load()
        if not any(b.name == name for b in settings.budgets):
            known = ", ".join(repr(b.name) for b in settings.budgets) or "none"
            raise InputError(f"no budget named {name!r} (budgets: {known})")
        document = tomlkit.parse(path.read_text("utf-8"))
        budgets = document["budgets"]
        for index, entry in enumerate(budgets):
            if entry.get("name", "default") == name:
                del budgets[index]
                break
        _config.write_atomic(path, tomlkit.dumps(document))
        return path
