"""The click application behind ``meterline``: each command parses, calls one function, prints.

Commands that live outside ``agent`` (``lsp``, ``tui``, ``server``) are found through the
``meterline.commands`` entry points, so the core never imports them.
"""

from __future__ import annotations

import asyncio
import functools
import json
import sys
from collections.abc import Callable
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import click

from agent import _config, _paths
from agent._errors import InputError, MeterlineError

P = ParamSpec("P")
R = TypeVar("R")


def fail_cleanly(fn: Callable[P, R]) -> Callable[P, R]:
    """Turn our errors into one line on stderr and their exit code (2 for bad input)."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except MeterlineError as exc:
            click.echo(f"meterline: {exc}", err=True)
            raise SystemExit(exc.exit_code) from None

    return wrapper


class PluginGroup(click.Group):
    """A group that also offers the commands registered under ``meterline.commands``."""

    def _plugins(self) -> dict[str, Any]:
        return {ep.name: ep for ep in entry_points(group="meterline.commands")}

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(self._plugins()))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        command = super().get_command(ctx, cmd_name)
        if command is not None:
            return command
        plugin = self._plugins().get(cmd_name)
        if plugin is None:
            return None
        try:
            loaded = plugin.load()
        except ImportError as exc:
            message = (f"`meterline {cmd_name}` is not available: {exc}. "
                       f"Install it with: pip install 'meterline[{cmd_name}]'")
            return click.Command(cmd_name, callback=lambda: _exit_with(message),
                                 help=f"(unavailable: {exc})")
        return loaded if isinstance(loaded, click.Command) else None


def _exit_with(message: str) -> None:
    click.echo(f"meterline: {message}", err=True)
    raise SystemExit(1)


@click.group(cls=PluginGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="meterline")
def cli() -> None:
    """What your coding assistants cost while you work, and what the tokens bought.

    Data and settings live in $METERLINE_HOME (see `meterline path`).
    """


@cli.command()
@click.option("--json", "json_output", is_flag=True, help="Print the full status object.")
def status(json_output: bool) -> None:
    """One line for a prompt or status bar: what is left, % used, state, reset time."""
    from agent.cli._status_cmd import run_status

    raise SystemExit(run_status(json_output=json_output))


@cli.command()
@click.option("--json", "json_output", is_flag=True, help="Print the result as JSON.")
@click.option("--file", "source", type=click.File("rb"), default="-",
              help="Read from this file instead of standard input.")
@fail_cleanly
def record(json_output: bool, source: Any) -> None:
    """Store calls given as JSON on stdin: one object or an array (fields as in the docs).

    \b
    echo '{"tool":"my-script","provider":"anthropic","model":"claude-sonnet-4-5",
           "input_tokens":1200,"output_tokens":300}' | meterline record
    """
    from agent._commands import record_calls

    if source.isatty():
        raise InputError("input: pipe a JSON call (or an array of calls) into meterline record")
    data = source.read(_MAX_RECORD_BYTES + 1)
    if len(data) > _MAX_RECORD_BYTES:
        raise InputError(f"input: more than {_MAX_RECORD_BYTES // 2**20} MiB; split it up")
    outcome = asyncio.run(record_calls(data, _config.load()))
    if json_output:
        click.echo(json.dumps(outcome))
        return
    noun = "call" if outcome["inserted"] == 1 else "calls"
    dupes = f", {outcome['duplicates']} already stored" if outcome["duplicates"] else ""
    unpriced = f", {outcome['unpriced']} of unknown cost" if outcome["unpriced"] else ""
    click.echo(f"stored {outcome['inserted']} {noun} ({outcome['costText']}{dupes}{unpriced})")
    click.echo(outcome["statusLine"])


_MAX_RECORD_BYTES = 16 * 2**20


@cli.command()
@click.option("-n", "--limit", default=20, show_default=True,
              type=click.IntRange(1, 100_000), help="How many calls to show.")
@click.option("--json", "json_output", is_flag=True, help="Print the calls as JSON.")
@fail_cleanly
def log(limit: int, json_output: bool) -> None:
    """Recent calls, newest first."""
    from agent._commands import recent_calls_table

    rows, table = recent_calls_table(limit)
    click.echo(json.dumps(rows) if json_output else table)


@cli.command("import")
@click.option("--tool", "tools", multiple=True, type=click.Choice(["claude-code", "codex"]),
              help="Only this tool's logs (repeatable). Default: all.")
@click.option("--json", "json_output", is_flag=True, help="Print the counts as JSON.")
@fail_cleanly
def import_(tools: tuple[str, ...], json_output: bool) -> None:
    """Import the usage Claude Code and Codex CLI record in their own logs (incremental).

    Claude Code: ~/.claude/projects, ~/.config/claude/projects and $CLAUDE_CONFIG_DIR;
    Codex CLI: ${CODEX_HOME:-~/.codex}/sessions. Reading again never stores a call twice.
    """
    from agent._commands import import_tool_logs

    summary = asyncio.run(import_tool_logs(list(tools) or ["claude-code", "codex"],
                                           _config.load()))
    if json_output:
        click.echo(json.dumps(summary))
        return
    for tool, counts in summary.items():
        notes = [f"{counts[key]} {words}" for key, words in (
            ("skipped", "skipped: out of bounds"), ("duplicates", "already stored"),
            ("updated", "updated to a larger copy")) if counts.get(key)]
        click.echo(f"{tool}: {counts['inserted']} new calls from {counts['files']} files"
                   + (f" ({', '.join(notes)})" if notes else ""))


@cli.group()
def commits() -> None:
    """Which accepted suggestions reached a git commit (counts only leave the machine)."""


@commits.command("scan")
@click.option("--repo", type=click.Path(file_okay=False, path_type=Path), default=".",
              show_default=True, help="The git repository.")
@click.option("--rev", default="HEAD", show_default=True, help="The commit to read.")
@click.option("--quiet", is_flag=True, help="Print nothing (for the git hook).")
@fail_cleanly
def commits_scan(repo: Path, rev: str, quiet: bool) -> None:
    """Record the accepted suggestions whose lines the commit adds."""
    from agent._commands import scan_commit

    commit, suggestions, lines = asyncio.run(scan_commit(repo, rev))
    if not quiet:
        click.echo(f"{commit[:12]}: {lines} accepted lines from {suggestions} suggestions")


@commits.command("hook")
@click.option("--repo", type=click.Path(file_okay=False, path_type=Path), default=".",
              show_default=True, help="The git repository.")
@fail_cleanly
def commits_hook(repo: Path) -> None:
    """Install a post-commit hook that runs `meterline commits scan` after each commit."""
    from agent._commits import install_hook

    click.echo(f"installed {install_hook(repo)}")


@cli.group()
def budget() -> None:
    """Show or change the budgets in config.toml."""


@budget.command("show")
@click.option("--json", "json_output", is_flag=True, help="Print the budgets as JSON.")
@fail_cleanly
def budget_show(json_output: bool) -> None:
    """Each budget with its period, limits, use and state."""
    from agent._commands import budgets_overview

    data, text = budgets_overview()
    click.echo(json.dumps(data) if json_output else text)


@budget.command("set")
@click.option("--name", default="default", show_default=True, help="Which budget to set.")
@click.option("--period", help="day, week, month, or a rolling window such as 5h.")
@click.option("--usd", "limit_usd", type=float, help="Dollar limit for the period.")
@click.option("--tokens", "limit_tokens", type=int, help="Token limit for the period.")
@click.option("--warn-at", type=float, help="Fraction at which to warn (default 0.8).")
@click.option("--mode", type=click.Choice(["warn", "enforce"]), help="Warn only, or refuse.")
@click.option("--timezone", help="IANA zone where periods start (default: local).")
@click.option("--week-starts", type=click.Choice(
    ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]))
@click.option("--scope", type=click.Choice(["developer", "team"]))
@fail_cleanly
def budget_set(name: str, **changes: Any) -> None:
    """Add a budget, or change the named one (unnamed options keep their values)."""
    from agent._commands import set_budget

    path, spec = set_budget(name, {k: v for k, v in changes.items() if v is not None})
    limits = " and ".join(filter(None, [
        f"${spec.limit_usd:g}" if spec.limit_usd is not None else None,
        f"{spec.limit_tokens:,} tokens" if spec.limit_tokens is not None else None]))
    click.echo(f"budget '{spec.name}': {limits} per {spec.period}, {spec.mode}, warn at "
               f"{spec.warn_at:.0%} (saved in {path})")


@budget.command("remove")
@click.argument("name")
@fail_cleanly
def budget_remove(name: str) -> None:
    """Remove the named budget from config.toml."""
    from agent._commands import remove_budget

    path = remove_budget(name)
    click.echo(f"budget '{name}' removed (from {path})")


@cli.command()
@click.option("--json", "json_output", is_flag=True, help="Print the paths as JSON.")
def path(json_output: bool) -> None:
    """Where meterline keeps its config and its database."""
    paths = {"home": _paths.home(), "config": _paths.config_path(),
             "database": _paths.db_path()}
    if json_output:
        click.echo(json.dumps(paths))
    else:
        width = max(map(len, paths))
        for key, value in paths.items():
            click.echo(f"{key:<{width}}  {value}")


@cli.command()
@click.option("--proxy-port", type=click.IntRange(0, 65535),
              help="Port of 127.0.0.1 for the proxy (default: [proxy] port, 8790; 0: any).")
@click.option("--no-proxy", is_flag=True, help="Do not run the metering proxy.")
@click.option("--no-dashboard", is_flag=True,
              help="A live status line instead of the dashboard (the default off a terminal).")
@click.option("--interval", default=1.0, show_default=True, type=click.FloatRange(0.1, 60),
              help="Seconds between refreshes of the status line.")
@fail_cleanly
def up(proxy_port: int | None, no_proxy: bool, no_dashboard: bool, interval: float) -> None:
    """The main job: the metering proxy, log imports, sync and the dashboard, until you quit.

    \b
    Point your tools at the proxy, for example:
      ANTHROPIC_BASE_URL=http://127.0.0.1:8790/anthropic claude
      OPENAI_BASE_URL=http://127.0.0.1:8790/openai/v1 your-tool
    Off a terminal (or with --no-dashboard) it keeps a live status line instead.
    """
    from agent._up import run, run_services

    _paths.ensure_home()
    settings = _config.load()
    sock = None if no_proxy else _bind_proxy(settings, proxy_port)
    dashboard = sys.stdout.isatty() and sys.stdin.isatty() and not no_dashboard
    run(run_services(settings, ui="dashboard" if dashboard else "line", proxy_sock=sock,
                     interval=interval))


@cli.command("agent")
@click.option("--proxy-port", type=click.IntRange(0, 65535),
              help="Port of 127.0.0.1 for the proxy (default: [proxy] port, 8790; 0: any).")
@click.option("--no-proxy", is_flag=True, help="Do not run the metering proxy.")
@fail_cleanly
def agent_command(proxy_port: int | None, no_proxy: bool) -> None:
    """The same services as `up` without a screen: proxy, log imports and sync, until
    SIGTERM or Ctrl-C.

    \b
    Point tools at it, for example:
      ANTHROPIC_BASE_URL=http://127.0.0.1:8790/anthropic claude
      OPENAI_BASE_URL=http://127.0.0.1:8790/openai/v1 your-tool
    """
    from agent._proxy._run import configure_logging
    from agent._up import run, run_services

    _paths.ensure_home()
    settings = _config.load()
    sock = None if no_proxy else _bind_proxy(settings, proxy_port)
    configure_logging()
    run(run_services(settings, ui="none", proxy_sock=sock, name="agent"))


def _bind_proxy(settings: _config.Settings, port: int | None) -> Any:
    """Bind the proxy's socket first: a taken port is the likeliest failure, and it should
    stop us (ProxyError, one line) before anything has started."""
    from agent._proxy import bind

    return bind(settings.proxy.port if port is None else port)


@cli.command()
@click.option("--server", "server_url", required=True,
              help="The team server's address, e.g. https://meterline.example.com")
@fail_cleanly
def login(server_url: str) -> None:
    """Connect this machine to your team's server with the token your lead gave you.

    The token is read at a hidden prompt (or from stdin), checked against the server, and
    kept in the OS keyring (or a 0600 file where there is none). `meterline up` then syncs.
    """
    from agent._sync import check_login

    server_url = _server_address(server_url)
    if sys.stdin.isatty():
        token = click.prompt("team-server token", hide_input=True, err=True)
    else:
        token = sys.stdin.readline()
    token = token.strip()
    if not token or any(ch.isspace() for ch in token):
        raise InputError("token: expected one token without spaces (nothing was stored)")
    budgets = asyncio.run(check_login(server_url, token))
    from agent import _credentials
    from agent._up import SERVER_TOKEN

    _credentials.set_secret(SERVER_TOKEN, token)
    path = _config.set_sync_server(server_url)
    click.echo(f"logged in to {server_url}: {budgets} budget(s) set for you there; token kept "
               f"in {_credentials.backend_description()}, server address in {path}")


def _server_address(url: str) -> str:
    from urllib.parse import urlsplit

    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise InputError(f"--server: expected an http(s) address, got {url!r}")
    return url.strip().rstrip("/")


@cli.command()
@fail_cleanly
def logout() -> None:
    """Forget the team-server token (the server address stays in config.toml)."""
    from agent import _credentials
    from agent._up import SERVER_TOKEN

    had = _credentials.delete_secret(SERVER_TOKEN)
    click.echo("logged out" if had else "no team-server token was stored")


@cli.command("sync")
@click.option("--json", "json_output", is_flag=True, help="Print the result as JSON.")
@fail_cleanly
def sync_command(json_output: bool) -> None:
    """Send what is pending to the team server now and pull your budgets from it."""
    from agent._commands import sync_now

    result = asyncio.run(sync_now(_config.load()))
    if json_output:
        click.echo(json.dumps(result))
    else:
        click.echo(f"sent {result['sent']} events ({result['inserted']} new, "
                   f"{result['duplicates']} already on the server); "
                   f"{result['budgets']} budget(s) from the server")


@cli.group()
def keys() -> None:
    """Provider API keys the proxy puts into requests that come without one."""


_PROVIDER = click.Choice(["anthropic", "openai"])


@keys.command("set")
@click.argument("provider", type=_PROVIDER)
@fail_cleanly
def keys_set(provider: str) -> None:
    """Store PROVIDER's API key (typed at a hidden prompt, or piped on stdin)."""
    import sys

    from agent import _credentials

    if sys.stdin.isatty():
        key = click.prompt(f"{provider} API key", hide_input=True, err=True)
    else:
        key = sys.stdin.readline()
    key = key.strip()
    if not key or any(ch.isspace() for ch in key):
        raise InputError("key: expected one key without spaces (nothing was stored)")
    _credentials.set_secret(_credentials.secret_name(provider), key)
    where = _credentials.backend_description()
    click.echo(f"stored the {provider} key in {where}")
    if _credentials.uses_file():
        print("meterline: note: no usable OS keyring here, so the key is in a file only you "
              "can read; anyone with your account's access can read it.", file=sys.stderr)
    click.echo(f"tools may now send the key `meterline` (or none) through the proxy for "
               f"{provider}.")


@keys.command("list")
@click.option("--json", "json_output", is_flag=True, help="Print the list as JSON.")
@fail_cleanly
def keys_list(json_output: bool) -> None:
    """Which providers have a stored key (never the key itself)."""
    from agent import _credentials

    stored = _credentials.stored_providers()
    if json_output:
        click.echo(json.dumps({"stored": stored, "backend": _credentials.backend_description()}))
        return
    for provider in _credentials.PROVIDERS:
        click.echo(f"{provider:<10} {'stored' if provider in stored else '-'}")
    click.echo(f"(kept in {_credentials.backend_description()})")


@keys.command("delete")
@click.argument("provider", type=_PROVIDER)
@fail_cleanly
def keys_delete(provider: str) -> None:
    """Forget PROVIDER's stored key."""
    from agent import _credentials

    if _credentials.delete_secret(_credentials.secret_name(provider)):
        click.echo(f"deleted the stored {provider} key")
    else:
        click.echo(f"no {provider} key was stored")
