"""The exceptions of the agent package.

    MeterlineError              root: everything the agent raises on purpose
    ├── InputError              bad input from a user or a client (exit code 2)
    │   └── ConfigError         config.toml unreadable or invalid (exit code 2)
    ├── StoreError              the SQLite store cannot be opened or written
    ├── BudgetBlocked           an enforced budget refuses a call
    └── CredentialError         a secret cannot be stored or read

Edges (the CLI, the sidecar, the proxy) turn these into one clear line for the user.
"""

from __future__ import annotations

from typing import Any


class MeterlineError(Exception):
    """Root of the agent's exceptions. ``exit_code`` is what the CLI exits with."""

    exit_code = 1


class InputError(MeterlineError):
    """Input that cannot be accepted: malformed JSON, a missing or absurd field."""

    exit_code = 2


class ConfigError(InputError):
    """``config.toml`` is unreadable or holds a value we cannot use."""


class StoreError(MeterlineError):
    """The local store cannot be opened, migrated or written."""


class CredentialError(MeterlineError):
    """A secret cannot be stored or read."""


class BudgetBlocked(MeterlineError):
    """An enforced budget has no room left for a call.

    ``budget`` names the budget, ``message`` says what was used against what limit and when
    the budget resets, in words fit to show a user or to put in a provider-style error.
    """

    exit_code = 3

    def __init__(self, message: str, *, budget: str, resets_at: str | None,
                 details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.budget = budget
        self.resets_at = resets_at
        self.details = details or {}
