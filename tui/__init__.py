"""meterline's terminal dashboard, and a budget widget other Textual apps can embed.

    from tui import BudgetWidget          # a widget fed the status object
    from tui import run_dashboard         # the dashboard in your event loop, on your store

Exports are resolved lazily so that ``meterline --help``, which loads ``tui.cli`` to list
the command, does not import Textual.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tui.app import DashboardApp, run_dashboard
    from tui.widgets.budget import BudgetWidget

_EXPORTS = {
    "BudgetWidget": "tui.widgets.budget",
    "DashboardApp": "tui.app",
    "run_dashboard": "tui.app",
}

__all__ = ["BudgetWidget", "DashboardApp", "run_dashboard"]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'tui' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
