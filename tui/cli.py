"""``meterline tui``: open the dashboard on the store in ``$METERLINE_HOME``.

Kept free of Textual at import time: ``meterline --help`` loads this module to list the
command.
"""

from __future__ import annotations

import asyncio

import click


async def _run(poll_interval: float) -> None:
    from agent import Store, StoreError
    from tui.app import DashboardApp, run_dashboard

    try:
        store = await Store.open()
    except StoreError as exc:
        if not _busy(exc):
            raise  # not there, not a database, not ours to open: one line, exit 1
        # Locked by another process for now: the dashboard opens it itself, saying why it
        # waits and trying again every two seconds, rather than giving up.
        app = DashboardApp(poll_interval=poll_interval)
        try:
            await app.run_async()
        finally:
            await app._settle_reads()
        return
    async with store:
        await run_dashboard(store, poll_interval=poll_interval)


def _busy(exc: BaseException) -> bool:
    """Whether a store that could not be opened is only held by another process."""
    seen: BaseException | None = exc
    while seen is not None:
        text = str(seen).lower()
        if "database is locked" in text or "database is busy" in text:
            return True
        seen = seen.__cause__ or seen.__context__
    return False


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
