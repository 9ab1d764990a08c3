"""``SyncLine``: what is waiting to go to the team server, and how the last try went."""

from __future__ import annotations

from datetime import tzinfo
from typing import Any

from textual.content import Content
from textual.widgets import Static

from tui._format import ago, moment


def sync_text(sync: dict[str, Any], now_ms: int, zone: tzinfo) -> Content:
    pending = int(sync.get("pending") or 0)
    parts = [Content.assemble((f"{pending:,}", "bold"), " events waiting")]
    success, error, error_ms = (sync.get("lastSuccessMs"), sync.get("lastError"),
                                sync.get("lastErrorMs"))
    if success is None:
        parts.append(Content.styled("never synced (no team server, or not yet)", "$text-muted"))
    else:
        parts.append(Content.assemble("last sync ", (moment(success, zone, now_ms), "bold"),
                                      (f" ({ago(success, now_ms)})", "$text-muted")))
    if error_ms is not None:
        failing = success is None or error_ms > success
        parts.append(Content.assemble(
            ("last error " if failing else "earlier error ", "$text-muted"),
            (f"{error or 'unknown'} ({ago(error_ms, now_ms)})",
             "$error" if failing else "$text-muted")))
    return Content(" · ").join(parts)


class SyncLine(Static):
    """Sync state, plus whatever the host program (``meterline up``) reports of itself."""

    DEFAULT_CSS = """
    SyncLine {
        height: auto;
    }
    """

    def show(self, sync: dict[str, Any], now_ms: int, zone: tzinfo,
             extra: str | None = None) -> None:
        text = sync_text(sync, now_ms, zone)
        if extra:
            text = Content("\n").join([text, Content(extra)])
        self.update(text)
