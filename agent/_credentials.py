"""Secrets: provider API keys (and the team-server token), in the OS keyring when there is a
usable one, otherwise in a 0600 JSON file in ``$METERLINE_HOME``.

A usable keyring backend has priority ≥ 1 and is not the ``fail`` or ``null`` backend or a
chainer with nothing in it (see NOTES.md: a headless Linux gets the fail backend, whose
writes raise; the null backend silently drops them). keyrings.alt's plaintext backends are
refused too: they would silently become everyone's default store of base64 "secrets".

Nothing here logs a secret or puts one in an exception message. ``backend_description()``
says where secrets go, for the CLI to tell the user once.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any

from agent import _paths
from agent._errors import CredentialError

SERVICE = "meterline"
PROVIDERS = ("anthropic", "openai")
#: ``METERLINE_KEYRING=file`` forces the file (a machine whose keyring prompts or hangs);
#: ``METERLINE_KEYRING=keyring`` refuses the file fallback.
_CHOICE_ENV = "METERLINE_KEYRING"
_lock = threading.Lock()


def secret_name(provider: str) -> str:
    """The keyring user name under which a provider's API key is kept."""
    return f"api-key:{provider}"


def _usable(backend: Any) -> bool:
    module = type(backend).__module__
    if module.startswith(("keyring.backends.fail", "keyring.backends.null", "keyrings.alt")):
        return False
    if module.startswith("keyring.backends.chainer"):
        return any(_usable(b) for b in getattr(backend, "backends", []))
    try:
        priority = float(backend.priority)
    except Exception:  # a backend whose priority check itself fails is not usable
        return False
    return priority >= 1


def _keyring() -> Any | None:
    """The usable keyring backend, or None when secrets must go to the file."""
    choice = os.environ.get(_CHOICE_ENV, "").lower()
    if choice == "file":
        return None
    try:
        import keyring

        backend = keyring.get_keyring()
    except Exception:
        backend = None
    if backend is not None and _usable(backend):
        return backend
    if choice == "keyring":
        raise CredentialError("no usable OS keyring (METERLINE_KEYRING=keyring refuses the "
                              "file fallback)")
    return None


def backend_description() -> str:
    backend = _keyring()
    if backend is None:
        return (f"the file {_paths.secrets_path()} (readable by you only; no usable OS "
                "keyring on this machine)")
    return f"the OS keyring ({type(backend).__module__}.{type(backend).__name__})"


def uses_file() -> bool:
    return _keyring() is None


# -- the file fallback ----------------------------------------------------------------------

def _read_file() -> dict[str, str]:
    path = _paths.secrets_path()
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise CredentialError(f"cannot read the secrets file {path}: "
                              f"{type(exc).__name__}") from None
    if not isinstance(data, dict):
        raise CredentialError(f"the secrets file {path} is not a JSON object")
    return {str(k): str(v) for k, v in data.items()}


def _write_file(data: dict[str, str]) -> None:
    from agent._config import write_atomic

    _paths.ensure_home()
    path = _paths.secrets_path()
    try:
        # Created 0600 before anything is written into it, then renamed over the old file.
        write_atomic(Path(path), json.dumps(data, indent=1), mode=0o600)
        os.chmod(path, 0o600)
    except OSError as exc:
        raise CredentialError(f"cannot write the secrets file {path}: {exc.strerror}") from None


# -- the interface --------------------------------------------------------------------------

def set_secret(name: str, value: str) -> None:
    if not value:
        raise CredentialError("refusing to store an empty secret")
    backend = _keyring()
    with _lock:
        if backend is not None:
            try:
                backend.set_password(SERVICE, name, value)
            except Exception as exc:
                raise CredentialError(f"the OS keyring refused to store {name!r}: "
                                      f"{type(exc).__name__}") from None
            return
        data = _read_file()
        data[name] = value
        _write_file(data)


def get_secret(name: str) -> str | None:
    backend = _keyring()
    if backend is not None:
        try:
            value = backend.get_password(SERVICE, name)
        except Exception as exc:
            raise CredentialError(f"the OS keyring could not read {name!r}: "
                                  f"{type(exc).__name__}") from None
        return value or None
    return _read_file().get(name) or None


def delete_secret(name: str) -> bool:
    """Remove a secret; return whether there was one."""
    backend = _keyring()
    with _lock:
        if backend is not None:
            if backend.get_password(SERVICE, name) is None:
                return False
            try:
                backend.delete_password(SERVICE, name)
            except Exception as exc:
                raise CredentialError(f"the OS keyring could not delete {name!r}: "
                                      f"{type(exc).__name__}") from None
            return True
        data = _read_file()
        if name not in data:
            return False
        del data[name]
        _write_file(data)
        return True


def stored_providers() -> list[str]:
    """The providers that have an API key stored (never the keys themselves)."""
    return [p for p in PROVIDERS if get_secret(secret_name(p))]


def file_stamp() -> tuple[int, int] | None:
    """What changes when the secrets file changes (for the proxy's cache), or None."""
    try:
        info = os.stat(_paths.secrets_path())
    except OSError:
        return None
    return info.st_mtime_ns, info.st_size
