"""``meterline server``: run the team server, and administer it on its own machine.

The admin commands work directly on the database (``--db`` or ``METERLINE_SERVER_DB``)
with full rights: whoever can run them can already read the database file. Heavy imports
happen inside the commands, so ``meterline --help`` stays fast.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import sys
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

import click

if TYPE_CHECKING:
    from server._store import Store

P = ParamSpec("P")
R = TypeVar("R")

_db_option = click.option("--db", "db", metavar="URL", envvar="METERLINE_SERVER_DB",
                          help="SQLAlchemy URL: sqlite+aiosqlite:///path or "
                               "postgresql://user@host/db (default: server.db in "
                               "$METERLINE_HOME). Env: METERLINE_SERVER_DB.")


def _fail_cleanly(fn: Callable[P, R]) -> Callable[P, R]:
    """Our errors (and an unreachable database) as one line on stderr, exit non-zero."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        from sqlalchemy.exc import SQLAlchemyError

        from server._errors import InputError, ServerError

        try:
            return fn(*args, **kwargs)
        except ServerError as exc:
            click.echo(f"meterline server: {exc}", err=True)
            raise SystemExit(2 if isinstance(exc, InputError) else 1) from None
        except (SQLAlchemyError, OSError) as exc:
            first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)
            click.echo(f"meterline server: database error: {first_line}", err=True)
            raise SystemExit(1) from None

    return wrapper


def _with_store(ctx: click.Context, work: Callable[[Store], Awaitable[Any]]) -> Any:
    from server._settings import Settings
    from server._store import open_store

    async def main() -> Any:
        store = await open_store(Settings.from_env(ctx.obj["db"]))
        try:
            return await work(store)
        finally:
            await store.close()

    return asyncio.run(main())


def _show(ctx: click.Context, value: Any, text: str | None = None) -> None:
    """JSON with ``--json`` (or when there is no friendlier text), else ``text``."""
    import msgspec

    if ctx.obj["json"] or text is None:
        click.echo(json.dumps(msgspec.to_builtins(value), indent=2))
    else:
        click.echo(text)


@click.group("server", context_settings={"help_option_names": ["-h", "--help"]})
@_db_option
@click.option("--json", "json_output", is_flag=True, help="Print results as JSON.")
@click.pass_context
def command(ctx: click.Context, db: str | None, json_output: bool) -> None:
    """The team server: ingest, budgets and outcome reports (SQLite or PostgreSQL)."""
    ctx.obj = {"db": db, "json": json_output}


@command.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8080, show_default=True, type=click.IntRange(1, 65535))
@click.option("--workers", default=1, show_default=True, type=click.IntRange(1, 64),
              help="Worker processes (on SQLite they share the file's write lock).")
@click.option("--min-group-size", type=click.IntRange(1, 1000), default=None,
              help="Leads see per-developer rows only for groups this large (default 5). "
                   "Env: METERLINE_SERVER_MIN_GROUP_SIZE.")
@click.option("--graceful-timeout", default=10, show_default=True, type=click.IntRange(0, 3600),
              help="Seconds to let requests finish on shutdown.")
@click.option("--access-log/--no-access-log", default=True, show_default=True)
@click.option("--log-level", default="info", show_default=True,
              type=click.Choice(["critical", "error", "warning", "info", "debug"]))
@click.pass_context
@_fail_cleanly
def run(ctx: click.Context, host: str, port: int, workers: int, min_group_size: int | None,
        graceful_timeout: int, access_log: bool, log_level: str) -> None:
    """Serve the API (migrating the database first)."""
    import tempfile

    import uvicorn

    from server._db import create_engine, upgrade
    from server._metrics import MULTIPROC_ENV
    from server._settings import ENV_DB, ENV_MIN_GROUP, Settings

    settings = Settings.from_env(ctx.obj["db"], min_group_size)
    # Workers read their settings from the environment they inherit.
    os.environ[ENV_DB] = settings.db_url
    os.environ[ENV_MIN_GROUP] = str(settings.min_group_size)
    if workers > 1 and not os.environ.get(MULTIPROC_ENV):
        os.environ[MULTIPROC_ENV] = tempfile.mkdtemp(prefix="meterline-metrics-")

    async def migrate() -> None:
        engine = create_engine(settings.db_url)
        try:
            await upgrade(engine)
        finally:
            await engine.dispose()

    asyncio.run(migrate())
    uvicorn.run("server._app:app_from_env", factory=True, host=host, port=port,
                workers=workers, timeout_graceful_shutdown=graceful_timeout,
                access_log=access_log, log_level=log_level, server_header=False)


@command.command()
@click.pass_context
@_fail_cleanly
def migrate(ctx: click.Context) -> None:
    """Bring the database schema up to date (``run`` does this too)."""
    from server._db import current_revision

    revision = _with_store(ctx, lambda store: current_revision(store.engine))
    click.echo(f"database at migration {revision}")


@command.command()
@click.option("--name", default="admin", show_default=True, help="The first admin's name.")
@click.pass_context
@_fail_cleanly
def init(ctx: click.Context, name: str) -> None:
    """Create the first admin and print its token (once: it is stored only as a hash)."""
    created = _with_store(ctx, lambda store: store.create_first_admin(_name(name)))
    _show(ctx, created, f"admin {name!r} created. Its token, shown this once:\n"
                        f"{created.token.token}")


# ------------------------------------------------------------------------------ teams


@command.group()
def team() -> None:
    """Create, list and delete teams; add and remove members."""


@team.command("create")
@click.argument("name")
@click.pass_context
@_fail_cleanly
def team_create(ctx: click.Context, name: str) -> None:
    from server._access import SYSTEM

    created = _with_store(ctx, lambda store: store.create_team(SYSTEM, _name(name)))
    _show(ctx, created, f"team {name!r} created")


@team.command("list")
@click.pass_context
@_fail_cleanly
def team_list(ctx: click.Context) -> None:
    from server._access import SYSTEM

    teams = _with_store(ctx, lambda store: store.list_teams(SYSTEM))
    _show(ctx, teams, "\n".join(f"{t.name}: {', '.join(t.members) or '(no members)'}"
                                for t in teams.teams) or "(no teams)")


@team.command("delete")
@click.argument("name")
@click.pass_context
@_fail_cleanly
def team_delete(ctx: click.Context, name: str) -> None:
    from server._access import SYSTEM

    deleted = _with_store(ctx, lambda store: store.delete_team(SYSTEM, name))
    _show(ctx, deleted, f"team {name!r} deleted (with its budgets and CI tokens)")


@team.command("add")
@click.argument("team_name", metavar="TEAM")
@click.argument("member")
@click.pass_context
@_fail_cleanly
def team_add(ctx: click.Context, team_name: str, member: str) -> None:
    from server._access import SYSTEM

    result = _with_store(ctx, lambda store: store.add_to_team(SYSTEM, team_name, member))
    _show(ctx, result, f"{team_name}: {', '.join(result.members)}")


@team.command("remove")
@click.argument("team_name", metavar="TEAM")
@click.argument("member")
@click.pass_context
@_fail_cleanly
def team_remove(ctx: click.Context, team_name: str, member: str) -> None:
    from server._access import SYSTEM

    result = _with_store(ctx, lambda store: store.remove_from_team(SYSTEM, team_name, member))
    _show(ctx, result, f"{team_name}: {', '.join(result.members) or '(no members)'}")


# ---------------------------------------------------------------------------- members


@command.group()
def member() -> None:
    """Create and list members (developers, leads, admins); issue them tokens."""


@member.command("create")
@click.argument("name")
@click.option("--role", type=click.Choice(["developer", "lead", "admin"]),
              default="developer", show_default=True)
@click.option("--team", "teams", multiple=True, help="A team to join (repeatable).")
@click.option("--share/--no-share", default=False, show_default=True,
              help="Opt in to per-developer rows in leads' reports.")
@click.pass_context
@_fail_cleanly
def member_create(ctx: click.Context, name: str, role: str, teams: tuple[str, ...],
                  share: bool) -> None:
    """Create a member and print their first token (shown once)."""
    from server._access import SYSTEM
    from server._wire import MemberIn

    spec = MemberIn(name=_name(name), role=role,  # type: ignore[arg-type]
                    teams=[_name(team) for team in teams], share_individual=share)
    created = _with_store(ctx, lambda store: store.create_member(SYSTEM, spec))
    _show(ctx, created, f"{role} {name!r} created. Their token, shown this once:\n"
                        f"{created.token.token}")


@member.command("list")
@click.pass_context
@_fail_cleanly
def member_list(ctx: click.Context) -> None:
    from server._access import SYSTEM

    found = _with_store(ctx, lambda store: store.list_members(SYSTEM))
    lines = [f"{m.name}  {m.role}  teams: {', '.join(m.teams) or '-'}"
             f"{'  shares' if m.share_individual else ''}{'  DISABLED' if m.disabled else ''}"
             for m in found.members]
    _show(ctx, found, "\n".join(lines) or "(no members)")


@member.command("set")
@click.argument("name")
@click.option("--role", type=click.Choice(["developer", "lead", "admin"]))
@click.option("--share/--no-share", default=None, help="Opt in or out of individual rows.")
@click.option("--disable/--enable", "disabled", default=None,
              help="A disabled member's tokens stop working.")
@click.pass_context
@_fail_cleanly
def member_set(ctx: click.Context, name: str, role: str | None, share: bool | None,
               disabled: bool | None) -> None:
    """Change a member's role, opt-in or disabled flag."""
    import msgspec

    from server._access import SYSTEM
    from server._wire import MemberPatch

    patch = MemberPatch(role=msgspec.UNSET if role is None else role,  # type: ignore[arg-type]
                        share_individual=msgspec.UNSET if share is None else share,
                        disabled=msgspec.UNSET if disabled is None else disabled)
    updated = _with_store(ctx, lambda store: store.update_member(SYSTEM, name, patch))
    _show(ctx, updated, f"{updated.name}: {updated.role}"
                        f"{', shares' if updated.share_individual else ''}"
                        f"{', DISABLED' if updated.disabled else ''}")


@member.command("token")
@click.argument("name")
@click.option("--label", default="cli", show_default=True, help="What the token is for.")
@click.pass_context
@_fail_cleanly
def member_token(ctx: click.Context, name: str, label: str) -> None:
    """Issue another token for a member (shown once)."""
    from server._access import SYSTEM

    minted = _with_store(ctx, lambda store: store.issue_token(SYSTEM, name, label))
    _show(ctx, minted, f"token {minted.id} for {name!r}, shown this once:\n{minted.token}")


# ----------------------------------------------------------------------------- tokens


@command.group("ci-token")
def ci_token() -> None:
    """Tokens for CI to report deployments."""


@ci_token.command("create")
@click.option("--team", "team_name", help="Match only this team's commits (default: all).")
@click.option("--label", default="ci", show_default=True)
@click.pass_context
@_fail_cleanly
def ci_token_create(ctx: click.Context, team_name: str | None, label: str) -> None:
    """Create a CI token (shown once); it may only POST /api/v1/deployments."""
    from server._access import SYSTEM

    minted = _with_store(ctx, lambda store: store.create_ci_token(SYSTEM, team_name, label))
    _show(ctx, minted, f"CI token {minted.id} for {team_name or 'every team'}, shown this "
                       f"once:\n{minted.token}")


@command.group()
def token() -> None:
    """List and revoke tokens."""


@token.command("list")
@click.pass_context
@_fail_cleanly
def token_list(ctx: click.Context) -> None:
    from server._access import SYSTEM

    found = _with_store(ctx, lambda store: store.list_tokens(SYSTEM))
    lines = [f"{t.id}  {t.kind:<6}  {t.member or t.team or '(every team)'}  {t.label}  "
             f"created {t.created}{'  REVOKED ' + t.revoked if t.revoked else ''}"
             for t in found.tokens]
    _show(ctx, found, "\n".join(lines) or "(no tokens)")


@token.command("revoke")
@click.argument("token_id")
@click.pass_context
@_fail_cleanly
def token_revoke(ctx: click.Context, token_id: str) -> None:
    """Revoke a token by its id (the part after ``mlt_``/``mlc_``)."""
    from server._access import SYSTEM

    revoked = _with_store(ctx, lambda store: store.revoke_token(SYSTEM, token_id))
    _show(ctx, revoked, f"token {revoked.id} revoked at {revoked.revoked}")


# ---------------------------------------------------------------------------- budgets


@command.group()
def budget() -> None:
    """Budgets for teams and developers (the agent pulls them on sync)."""


@budget.command("set")
@click.option("--team", "team_name", help="A team budget for this team.")
@click.option("--developer", help="A developer budget for this member.")
@click.option("--name", default="default", show_default=True)
@click.option("--period", default="day", show_default=True,
              help="day, week, month, or a rolling window such as 5h.")
@click.option("--usd", "limit_usd", type=float, help="Dollar limit for the period.")
@click.option("--tokens", "limit_tokens", type=int, help="Token limit for the period.")
@click.option("--warn-at", default=0.8, show_default=True, type=float)
@click.option("--mode", type=click.Choice(["warn", "enforce"]), default="warn",
              show_default=True)
@click.option("--timezone", help="IANA zone where periods start (default: the developer's).")
@click.option("--week-starts", default="monday", show_default=True, type=click.Choice(
    ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]))
@click.pass_context
@_fail_cleanly
def budget_set(ctx: click.Context, team_name: str | None, developer: str | None, name: str,
               period: str, limit_usd: float | None, limit_tokens: int | None, warn_at: float,
               mode: str, timezone: str | None, week_starts: str) -> None:
    """Create or replace a budget (same scope, owner and name)."""
    import msgspec

    from server._access import SYSTEM
    from server._errors import InputError
    from server._wire import BudgetIn

    if (team_name is None) == (developer is None):
        raise InputError("give --team or --developer (one of them)", field="team")
    try:
        spec = msgspec.convert({
            "name": name, "period": period, "limit_usd": limit_usd, "limit_tokens": limit_tokens,
            "warn_at": warn_at, "mode": mode, "timezone": timezone, "week_starts": week_starts,
            "scope": "team" if team_name else "developer", "team": team_name,
            "developer": developer}, BudgetIn)
    except msgspec.ValidationError as exc:
        raise InputError(str(exc)) from None
    saved = _with_store(ctx, lambda store: store.set_budget(SYSTEM, spec))
    _show(ctx, saved, f"budget {saved.id} {saved.name!r} for "
                      f"{saved.team or saved.developer}: {_limits(saved)} per {saved.period}, "
                      f"{saved.mode}, warn at {saved.warn_at:.0%}")


@budget.command("list")
@click.pass_context
@_fail_cleanly
def budget_list(ctx: click.Context) -> None:
    from server._access import SYSTEM

    found = _with_store(ctx, lambda store: store.list_budgets(SYSTEM))
    lines = [f"{b.id}  {b.scope:<9}  {b.team or b.developer}  {b.name}: {_limits(b)} per "
             f"{b.period}, {b.mode}" for b in found.budgets]
    _show(ctx, found, "\n".join(lines) or "(no budgets)")


@budget.command("remove")
@click.argument("budget_id", type=int)
@click.pass_context
@_fail_cleanly
def budget_remove(ctx: click.Context, budget_id: int) -> None:
    from server._access import SYSTEM

    removed = _with_store(ctx, lambda store: store.delete_budget(SYSTEM, budget_id))
    _show(ctx, removed, f"budget {removed.deleted} removed")


def _limits(record: Any) -> str:
    parts = []
    if record.limit_usd is not None:
        parts.append(f"${record.limit_usd:g}")
    if record.limit_tokens is not None:
        parts.append(f"{record.limit_tokens:,} tokens")
    return " and ".join(parts)


def _name(text: str) -> str:
    """A member or team name as the API accepts it (same pattern)."""
    import re

    from server._errors import InputError
    from server._wire import NAME_PATTERN

    if not re.match(NAME_PATTERN, text):
        raise InputError("use letters, digits and . _ @ + - (at most 64, starting with a "
                         "letter or digit)", field="name")
    return text


if __name__ == "__main__":  # pragma: no cover - `python -m server.cli`
    sys.exit(command())
