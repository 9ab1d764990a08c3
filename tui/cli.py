"""``meterline tui``: open the dashboard on the store in ``$METERLINE_HOME``.

Kept free of Textual at import time: ``meterline --help`` loads this module to list the
command.
"""

from __future__ import annotations

import asyncio

import click


async def _run(poll_interval: float) -> None:
    from agent import Store
    from tui.app import run_dashboard

    async with await Store.open() as store:
        await run_dashboard(store, poll_interval=poll_interval)


@click.command("tui")
@click.option("--poll", "poll_interval", default=0.3, show_default=True,
              type=click.FloatRange(0.05, 10), help="Seconds between checks for new data.")
def command(poll_interval: float) -> None:
    """The live dashboard: budget left, burn, usage, outcomes, recent calls (q quits)."""
    from agent import MeterlineError

    try:
        asyncio.run(_run(poll_interval))
    except MeterlineError as exc:
        click.echo(f"meterline: {exc}", err=True)
        raise SystemExit(exc.exit_code) from None
