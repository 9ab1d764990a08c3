"""meterline's per-developer core: the store, events, pricing, budgets and status.

The sidecar (``lsp``) and the dashboard (``tui``) use only what is exported here::

    from agent import Store, Call, SuggestionEvent, load_settings

Exports are resolved lazily: ``meterline status`` imports a few private modules of this
package on every shell prompt and must not pay for the rest.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from agent._budget import Budget, BudgetStatus, Usage
    from agent._config import BudgetSpec, CompletionSettings, Settings
    from agent._config import load as load_settings
    from agent._errors import (
        BudgetBlocked,
        ConfigError,
        CredentialError,
        InputError,
        MeterlineError,
        StoreError,
    )
    from agent._estimate import estimate_tokens
    from agent._events import (
        Call,
        SuggestionEvent,
        line_fingerprints,
        parse_calls,
        parse_suggestion_events,
        workspace_hash,
    )
    from agent._ids import new_id
    from agent._paths import home as home_dir
    from agent._pricing import price_call
    from agent._queries import (
        Breakdown,
        breakdown,
        funnel,
        recent_calls,
        sync_state,
        usage_between,
        usage_series,
        vendor_quotas,
    )
    from agent._status import StatusReport, status_line
    from agent._store import InsertResult, Reservation, Store

_EXPORTS = {
    "Budget": "agent._budget",
    "BudgetStatus": "agent._budget",
    "Usage": "agent._budget",
    "BudgetSpec": "agent._config",
    "CompletionSettings": "agent._config",
    "Settings": "agent._config",
    "load_settings": ("agent._config", "load"),
    "BudgetBlocked": "agent._errors",
    "ConfigError": "agent._errors",
    "CredentialError": "agent._errors",
    "InputError": "agent._errors",
    "MeterlineError": "agent._errors",
    "StoreError": "agent._errors",
    "Call": "agent._events",
    "SuggestionEvent": "agent._events",
    "parse_calls": "agent._events",
    "parse_suggestion_events": "agent._events",
    "workspace_hash": "agent._events",
    "line_fingerprints": "agent._events",
    "estimate_tokens": "agent._estimate",
    "new_id": "agent._ids",
    "home_dir": ("agent._paths", "home"),
    "Breakdown": "agent._queries",
    "breakdown": "agent._queries",
    "funnel": "agent._queries",
    "recent_calls": "agent._queries",
    "sync_state": "agent._queries",
    "usage_between": "agent._queries",
    "usage_series": "agent._queries",
    "vendor_quotas": "agent._queries",
    "price_call": "agent._pricing",
    "StatusReport": "agent._status",
    "status_line": "agent._status",
    "InsertResult": "agent._store",
    "Reservation": "agent._store",
    "Store": "agent._store",
}

__all__ = [
    "Breakdown",
    "Budget",
    "BudgetBlocked",
    "BudgetSpec",
    "BudgetStatus",
    "Call",
    "CompletionSettings",
    "ConfigError",
    "CredentialError",
    "InputError",
    "InsertResult",
    "MeterlineError",
    "Reservation",
    "Settings",
    "StatusReport",
    "Store",
    "StoreError",
    "SuggestionEvent",
    "Usage",
    "breakdown",
    "estimate_tokens",
    "funnel",
    "home_dir",
    "line_fingerprints",
    "load_settings",
    "new_id",
    "parse_calls",
    "parse_suggestion_events",
    "price_call",
    "recent_calls",
    "status_line",
    "sync_state",
    "usage_between",
    "usage_series",
    "vendor_quotas",
    "workspace_hash",
]


def __getattr__(name: str) -> Any:
    target = _EXPORTS.get(name)
    if target is None:
        raise AttributeError(f"module 'agent' has no attribute {name!r}")
    module_name, attribute = target if isinstance(target, tuple) else (target, name)
    value = getattr(importlib.import_module(module_name), attribute)
    globals()[name] = value
    return value
