"""``DashboardApp``: the live dashboard over the store, and ``run_dashboard`` to embed it.

The UI thread never touches the database. One worker (``_live``) owns all I/O: every
``poll_interval`` seconds it asks the store for its change key (SQLite's data_version and
config.toml's stamp, both O(1), on the store's read connection in a thread) and reloads
only when something changed, when a key asked for it, or every ``tick_interval`` seconds
so that times and burn rates move on. Errors become notifications and an alert line; the
dashboard keeps what it last showed and keeps trying.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, tzinfo
from functools import partial
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import Footer

from agent import Store
from tui._alerts import Alert
from tui._data import Collector, Snapshot, change_key, load
from tui._format import local_zone, to_ms
from tui._views import View, next_view, views_of
from tui.widgets.alerts import AlertBar
from tui.widgets.breakdown import BreakdownTable
from tui.widgets.budget import BudgetWidget
from tui.widgets.funnel import FunnelView
from tui.widgets.help import HelpScreen
from tui.widgets.recent import RecentCalls
from tui.widgets.sync import SyncLine
from tui.widgets.title import TitleBar
from tui.widgets.usage import UsagePlot
from tui.widgets.welcome import Welcome

log = logging.getLogger(__name__)

T = TypeVar("T")
Clock = Callable[[], datetime]
ExtraStatus = Callable[[], "str | None"]

#: The proxy's port when config.toml cannot say (same default as agent's settings).
DEFAULT_PROXY_PORT = 8790


def _utc_now() -> datetime:
    return datetime.now(UTC)


class DashboardApp(App[None]):
    """meterline's terminal dashboard.

    Pass an open ``store`` (it stays open: it is the caller's), or none and the app opens the
    store at ``db_path`` (default: ``$METERLINE_HOME``) itself and closes it on exit.
    ``clock`` and ``zone`` fix "now" and the zone times are shown in (tests, screenshots).
    ``extra_status`` is called on every poll (on the UI thread, so it must be cheap) and
    its text, if any, is shown under the sync state: the host's own status, e.g. the proxy's.
    """

    TITLE = "meterline"
    CSS_PATH = "dashboard.tcss"
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (110, "-wide")]  # noqa: RUF012 (Textual's API)
    VERTICAL_BREAKPOINTS = [(0, "-short"), (34, "-tall")]  # noqa: RUF012
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("q", "quit", "Quit"),
        # A dashboard is left with Ctrl-C as often as with q: no "press ctrl+q" lecture.
        Binding("ctrl+c", "quit", "Quit", show=False, priority=True),
        Binding("r", "reload", "Refresh"),
        Binding("p", "next_view", "Next budget/period"),
        Binding("question_mark", "help", "Help", key_display="?"),
    ]

    def __init__(self, store: Store | None = None, *, db_path: str | Path | None = None,
                 config_path: str | Path | None = None, clock: Clock | None = None,
                 zone: tzinfo | None = None, poll_interval: float = 0.3,
                 tick_interval: float = 15.0, extra_status: ExtraStatus | None = None) -> None:
        super().__init__()
        self.store = store
        self._owns_store = store is None
        self._db_path = db_path
        self._config_path = config_path
        self.clock = clock or _utc_now
        self.zone = zone or local_zone()
        self.poll_interval = poll_interval
        self.tick_interval = tick_interval
        self.extra_status = extra_status
        self.view_key: str | None = None
        self.views: list[View] = views_of(None)
        self.snapshot: Snapshot | None = None
        #: Completed reloads from the store, and how long the last took (read plus draw), in s.
        self.reload_count = 0
        self.last_reload_s = 0.0
        self._wanted = asyncio.Event()
        self._refreshed = asyncio.Condition()
        self._inflight: asyncio.Task[Any] | None = None
        self._error: str | None = None
        self._extra_text: str | None = None
        self._proxy_port: int | None = None
        self._collector = Collector()

    # -- layout ------------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield TitleBar(id="title")
        yield AlertBar(id="alerts")
        with VerticalScroll(id="body"):
            yield Welcome(id="welcome")
            with Horizontal(classes="row"):
                with Vertical(id="budget-panel", classes="panel") as panel:
                    panel.border_title = "Budget"
                    yield BudgetWidget(id="budget", zone=self.zone)
                with Vertical(id="usage-panel", classes="panel") as panel:
                    panel.border_title = "Usage"
                    yield UsagePlot(id="usage")
            with Horizontal(classes="row"):
                with Horizontal(id="breakdown-panel", classes="panel") as panel:
                    panel.border_title = "Breakdown"
                    yield BreakdownTable("model", id="by-model")
                    yield BreakdownTable("tool", id="by-tool")
                with Vertical(id="funnel-panel", classes="panel") as panel:
                    panel.border_title = "Outcomes"
                    yield FunnelView(id="funnel")
            with Vertical(id="recent-panel", classes="panel") as panel:
                panel.border_title = "Recent calls"
                yield RecentCalls(id="recent")
            with Vertical(id="sync-panel", classes="panel") as panel:
                panel.border_title = "Sync"
                yield SyncLine("", id="sync")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#body").focus()
        self.run_worker(self._live(), name="live", group="live", exit_on_error=False)

    async def on_unmount(self) -> None:
        await self._settle_reads()
        if not self._owns_store:
            return
        store = self.store
        if store is None and self._inflight is not None and not self._inflight.cancelled() \
                and self._inflight.exception() is None:
            # Quit while the store was still opening: the open finished after the worker
            # was cancelled, and the store it made must still be closed.
            opened = self._inflight.result()
            store = opened if isinstance(opened, Store) else None
        if store is not None:
            await store.close()

    async def _settle_reads(self) -> None:
        """Let a read the cancelled worker left in flight finish before the store closes."""
        if self._inflight is not None and not self._inflight.done():
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await asyncio.wait([self._inflight])

    # -- actions -----------------------------------------------------------------------------

    def action_reload(self) -> None:
        self._wanted.set()

    def action_next_view(self) -> None:
        self.view_key = next_view(self.views, self.view_key).key
        view = next(v for v in self.views if v.key == self.view_key)
        self.query_one(TitleBar).show(view, self.views, self._now_ms(), self.zone)
        self._wanted.set()

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen(self.query_one(AlertBar).alerts))

    # -- the live loop -----------------------------------------------------------------------

    def _now_ms(self) -> int:
        return to_ms(self.clock())

    async def _io(self, work: Awaitable[T]) -> T:
        """Run store I/O so that cancelling the worker never abandons a read mid-flight."""
        task = asyncio.ensure_future(work)
        self._inflight = task
        return await asyncio.shield(task)

    async def _open(self) -> Store:
        while self.store is None:
            try:
                self.store = await self._io(Store.open(self._db_path,
                                                       config_path=self._config_path))
            except Exception as exc:  # shown, then retried: the store may appear later
                self._report(exc)
                await asyncio.sleep(2)
        return self.store

    async def _live(self) -> None:
        store = await self._open()
        config_path = str(store.config_path)
        last_key: object = None
        last_load = float("-inf")
        while True:
            try:
                key: object = await self._io(store.read(partial(change_key,
                                                                config_path=config_path)))
            except Exception as exc:
                self._report(exc)
                key = None
            due = (self._wanted.is_set() or key != last_key
                   or time.monotonic() - last_load >= self.tick_interval)
            if due:
                self._wanted.clear()
                last_load = time.monotonic()
                if await self._reload(store):
                    last_key = key
            self._poll_extra()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wanted.wait(), self.poll_interval)

    async def _reload(self, store: Store) -> bool:
        started = time.perf_counter()
        try:
            snapshot = await self._io(load(store, self.view_key, self._now_ms(), self.zone,
                                           collector=self._collector))
            if not snapshot.has_calls and self._proxy_port is None:
                self._proxy_port = await self._io(asyncio.to_thread(
                    _proxy_port, store.config_path))
        except Exception as exc:
            self._report(exc)
            return False
        self._error = None
        try:
            self._apply(snapshot)
        except Exception as exc:
            # A fault in drawing: said on the screen (and logged, with its traceback), and
            # the next reload tries again (uncaught, it ended the refreshing for good,
            # without a word).
            log.exception("the dashboard could not draw a refresh")
            self._report(exc)
            return False
        self.last_reload_s = time.perf_counter() - started
        async with self._refreshed:
            self.reload_count += 1
            self._refreshed.notify_all()
        return True

    def _apply(self, snap: Snapshot) -> None:
        """Draw a snapshot: every widget gets its part (cheap; no I/O here)."""
        self.snapshot = snap
        self.views, self.view_key = snap.views, snap.view.key
        zone, now = self.zone, snap.now_ms
        self.query_one(TitleBar).show(snap.view, snap.views, now, zone)
        self.query_one(AlertBar).show(snap.alerts)
        self.query_one(Welcome).show(snap.has_calls, bool(snap.status.get("budgets")),
                                     self._proxy_port or DEFAULT_PROXY_PORT)
        self.query_one(BudgetWidget).show(snap.entry)
        used = snap.entry.get("usedUsd" if snap.series_unit == "usd" else "usedTokens")
        self.query_one(UsagePlot).show(snap.series, snap.series_unit, snap.window.start_ms,
                                       snap.step_ms, now, zone, int(snap.entry.get("calls") or 0),
                                       None if used is None else float(used))
        self.query_one("#by-model", BreakdownTable).show(snap.by_model)
        self.query_one("#by-tool", BreakdownTable).show(snap.by_tool)
        self.query_one(FunnelView).show(snap.funnel)
        self.query_one(RecentCalls).show(snap.recent, zone, now)
        self.query_one(SyncLine).show(snap.sync, now, zone, self._extra_text)

    def _poll_extra(self) -> None:
        if self.extra_status is None:
            return
        try:
            text = self.extra_status()
        except Exception as exc:
            self._report(exc)
            return
        if text != self._extra_text:
            self._extra_text = text
            if self.snapshot is not None:
                self.query_one(SyncLine).show(self.snapshot.sync, self.snapshot.now_ms,
                                              self.zone, text)

    def _report(self, exc: BaseException) -> None:
        """Say what went wrong once (not on every poll), and keep it in the alert line."""
        message = str(exc) or type(exc).__name__
        if message == self._error:
            return
        self._error = message
        self.notify(message, title="meterline cannot refresh", severity="error", timeout=8)
        shown = list(self.snapshot.alerts) if self.snapshot else []
        self.query_one(AlertBar).show([Alert("error", "refresh", f"Cannot refresh: {message}"),
                                       *shown])

    # -- for tests and embedding apps ---------------------------------------------------------

    async def wait_for_reload(self, count: int | None = None) -> None:
        """Wait until reload number ``count`` (default: the next one) has been drawn."""
        target = self.reload_count + 1 if count is None else count
        async with self._refreshed:
            await self._refreshed.wait_for(lambda: self.reload_count >= target)


def _proxy_port(config_path: Path) -> int:
    """The proxy's port from config.toml, for the first-run hint (default if unreadable)."""
    from agent import MeterlineError, load_settings

    try:
        return int(load_settings(config_path).proxy.port)
    except MeterlineError:
        return DEFAULT_PROXY_PORT


async def run_dashboard(store: Store, *, extra_status: ExtraStatus | None = None,
                        **options: Any) -> None:
    """Run the dashboard in the caller's event loop on the caller's open store.

    Returns when the user quits (``q``); the store stays open. ``extra_status`` is shown
    under the sync state (see ``DashboardApp``); ``options`` go to ``DashboardApp``.
    """
    app = DashboardApp(store, extra_status=extra_status, **options)
    try:
        await app.run_async()
    finally:
        await app._settle_reads()
