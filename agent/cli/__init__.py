"""The ``meterline`` command.

``meterline status`` runs after every shell prompt, tmux refresh and Claude Code message, so
it is answered before the CLI library (click) and the rest of the package are imported.
Everything else goes through the click application in ``agent.cli._app``.
"""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["status"] and all(arg == "--json" for arg in args[1:]):
        from agent.cli._status_cmd import run_status

        raise SystemExit(run_status(json_output=len(args) > 1))
    from agent.cli._app import cli

    cli.main(args=args, prog_name="meterline")


__all__ = ["main"]
