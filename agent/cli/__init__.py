"""The ``meterline`` command.

``meterline status`` runs after every shell prompt, tmux refresh and Claude Code message, so
it is answered before the CLI library (click) and the rest of the package are imported.
Everything else goes through the click application in ``agent.cli._app``.
"""

from __future__ import annotations

import sys
from typing import Any


def main(argv: list[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["status"] and all(arg == "--json" for arg in args[1:]):
        from agent.cli._status_cmd import run_status

        raise SystemExit(run_status(json_output=len(args) > 1))
    from agent.cli._app import cli

    raise SystemExit(_run(cli, args))


def _run(cli: Any, args: list[str]) -> int:
    """click's standalone handling, but every error a single line on stderr (a usage error
    with where to find help; a store or folder that cannot be used, never a traceback)."""
    import errno
    import sqlite3

    import click

    try:
        result = cli.main(args=args, prog_name="meterline", standalone_mode=False)
    except click.UsageError as exc:
        where = f" (see `{exc.ctx.command_path} --help`)" if exc.ctx is not None else ""
        print(f"meterline: {exc.format_message()}{where}", file=sys.stderr)
        return exc.exit_code
    except click.ClickException as exc:
        print(f"meterline: {exc.format_message()}", file=sys.stderr)
        return exc.exit_code
    except click.Abort:
        print("meterline: aborted", file=sys.stderr)
        return 1
    except sqlite3.Error as exc:
        print(f"meterline: the store cannot be used: {exc} (its folder: "
              f"{_home()})", file=sys.stderr)
        return 1
    except OSError as exc:
        if exc.errno == errno.EPIPE:  # the reader went away (`meterline log | head`)
            return 0
        print(f"meterline: {exc.strerror or exc}"
              f"{': ' + str(exc.filename) if exc.filename else ''}", file=sys.stderr)
        return 1
    return result if isinstance(result, int) else 0


def _home() -> str:
    from agent._paths import home

    try:
        return str(home())
    except Exception:  # (the reason the store could not be used, perhaps)
        return "$METERLINE_HOME"


__all__ = ["main"]
