"""``meterline lsp``: the language-server sidecar, started by the editor over stdio.

This module is loaded whenever the ``meterline`` CLI lists its commands, so it imports
nothing heavy: pygls is loaded only when the server starts.
"""

from __future__ import annotations

import os
import sys

import click


@click.command("lsp")
@click.option("--stdio", is_flag=True, default=True,
              help="Speak LSP over stdin/stdout (the default, and the only transport).")
@click.option("--log-level", default="warning", show_default=True,
              type=click.Choice(["debug", "info", "warning", "error"]),
              help="How much to log to stderr (never to stdout).")
def command(stdio: bool, log_level: str) -> None:
    """The language-server sidecar: metered inline completions, outcome tracking and the
    budget in your editor. Editors start it next to their other language servers."""
    from lsp._stdio import run

    code = run(log_level)
    sys.stderr.flush()
    # A thread may still be blocked reading stdin (the editor keeps the pipe open after
    # `exit`); everything is stored or spilled by now, so leave without waiting for it.
    os._exit(code)


def main() -> None:
    """``python -m lsp``."""
    command.main(prog_name="python -m lsp")
