"""Settings: ``$METERLINE_HOME/config.toml``, typed and validated, every field documented.

A missing file means defaults (no budgets, default ports). A file that cannot be read or
holds a bad value raises ConfigError naming the key, so the CLI can say which line to fix.
``meterline budget set`` edits the file in place (comments kept) through ``upsert_budget``.
"""

from __future__ import annotations

import contextlib
import os
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec

from agent import _paths
from agent._budget import Budget
from agent._errors import ConfigError

Fraction = Annotated[float, msgspec.Meta(gt=0, le=1)]
Money = Annotated[float, msgspec.Meta(gt=0, le=10_000_000)]
PerMTok = Annotated[float, msgspec.Meta(ge=0, le=100_000)]


class BudgetSpec(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """One budget. At least one of ``limit_usd`` and ``limit_tokens`` must be set."""

    name: Annotated[str, msgspec.Meta(min_length=1, max_length=64)] = "default"
    """Shown in messages ("budget 'daily' is used up") and used by `budget set` to find it."""
    scope: Literal["developer", "team"] = "developer"
    """Whose usage it limits. Locally only the developer's own usage is known."""
    period: str = "day"
    """``day``, ``week`` or ``month`` in ``timezone``, or a rolling window such as ``5h``."""
    timezone: str | None = None
    """IANA zone where calendar periods start (e.g. ``Europe/Berlin``); default: the local zone."""
    week_starts: Literal[
        "monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"
    ] = "monday"
    """The first day of a ``week`` period."""
    limit_usd: Money | None = None
    """Dollars the period may cost."""
    limit_tokens: Annotated[int, msgspec.Meta(gt=0, le=10**15)] | None = None
    """Tokens the period may move: fresh input, cache reads and writes, and output."""
    warn_at: Fraction = 0.8
    """Fraction of a limit at which the state turns from ``ok`` to ``warn``."""
    mode: Literal["warn", "enforce"] = "warn"
    """``warn`` only tells; ``enforce`` makes the proxy and the sidecar refuse calls."""

    def to_budget(self, source: str = "config") -> Budget:
        return Budget(name=self.name, period=self.period, limit_usd=self.limit_usd,
                      limit_tokens=self.limit_tokens, warn_at=self.warn_at, mode=self.mode,
                      timezone=self.timezone, week_starts=self.week_starts, scope=self.scope,
                      source=source)


class ModelPrice(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A price in dollars per million tokens, for a model the library lacks or misprices."""

    input_per_mtok: PerMTok
    output_per_mtok: PerMTok
    cache_read_per_mtok: PerMTok | None = None
    """Default: a tenth of the input price."""
    cache_write_per_mtok: PerMTok | None = None
    """Default: 1.25× the input price (five-minute cache)."""
    cache_write_1h_per_mtok: PerMTok | None = None
    """Default: 2× the input price (one-hour cache)."""


class ProxySettings(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """The local metering proxy (always on 127.0.0.1)."""

    port: Annotated[int, msgspec.Meta(ge=1, le=65535)] = 8790
    """Loopback port; ``--proxy-port`` overrides it."""
    anthropic_upstream: str = "https://api.anthropic.com"
    """Origin for ``/anthropic/...``; ``METERLINE_UPSTREAM_ANTHROPIC`` overrides it."""
    openai_upstream: str = "https://api.openai.com"
    """Origin for ``/openai/...``; ``METERLINE_UPSTREAM_OPENAI`` overrides it."""
    disconnect_grace_s: Annotated[float, msgspec.Meta(ge=0, le=600)] = 5.0
    """After a client disconnects mid-response, how long the proxy keeps reading the
    upstream's answer to get its usage figures before cutting it and estimating."""
    read_timeout_s: Annotated[float, msgspec.Meta(gt=0, le=3600)] = 600.0
    """Longest silence from the upstream (between bytes) before a response counts as cut."""
    shutdown_grace_s: Annotated[float, msgspec.Meta(ge=0, le=3600)] = 30.0
    """On stop, how long responses in flight may run before they are cut (and recorded)."""


class CompletionSettings(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """The upstream model the sidecar uses for inline completions (off when unset)."""

    provider: Literal["openai", "anthropic", "ollama"] | None = None
    base_url: str | None = None
    """As that provider's own SDK takes it, e.g. ``https://api.openai.com/v1``."""
    model: str | None = None
    api_key_env: str | None = None
    """Name of the environment variable holding the key (the key itself is never in config)."""


class SyncSettings(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """The team server this machine reports to (off when ``server_url`` is unset)."""

    server_url: str | None = None
    interval_s: Annotated[float, msgspec.Meta(ge=1, le=86_400)] = 30.0


class ImportSettings(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Reading the usage that tools record in their own logs (`meterline import`, `up`)."""

    tools: list[Literal["claude-code", "codex"]] = msgspec.field(
        default_factory=lambda: ["claude-code", "codex"])
    """Which tools' logs `meterline up` imports; an empty list turns importing off."""
    interval_s: Annotated[float, msgspec.Meta(ge=1, le=86_400)] = 30.0
    """Seconds between imports while `meterline up` runs."""


class Settings(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Everything ``config.toml`` can say."""

    budgets: list[BudgetSpec] = msgspec.field(default_factory=list)
    prices: dict[str, ModelPrice] = msgspec.field(default_factory=dict)
    """Overrides keyed by model name (or ``provider/model``)."""
    proxy: ProxySettings = msgspec.field(default_factory=ProxySettings)
    completion: CompletionSettings = msgspec.field(default_factory=CompletionSettings)
    sync: SyncSettings = msgspec.field(default_factory=SyncSettings)
    imports: ImportSettings = msgspec.field(default_factory=ImportSettings, name="import")


def load(path: str | Path | None = None) -> Settings:
    """Read and validate ``config.toml`` (defaults when it does not exist)."""
    path = Path(path or _paths.config_path())
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return Settings()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror})") from None
    try:
        raw = tomllib.loads(data.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from None
    return from_dict(raw, origin=str(path))


def from_dict(raw: dict[str, Any], origin: str = "config") -> Settings:
    try:
        settings = msgspec.convert(raw, Settings)
    except msgspec.ValidationError as exc:
        message, _, at = str(exc).partition(" - at `$")
        where = at.rstrip("`").lstrip(".") or "top level"
        if where.startswith("prices[...]") and isinstance(raw.get("prices"), dict):
            where = where.replace("[...]", f"[{_bad_price_key(raw['prices'])!r}]", 1)
        raise ConfigError(f"{origin}: {where}: {message.replace('`', '')}") from None
    for index, budget in enumerate(settings.budgets):
        check_budget(budget, f"{origin}: budgets[{index}] ({budget.name!r})")
    names = [b.name for b in settings.budgets]
    if len(names) != len(set(names)):
        raise ConfigError(f"{origin}: budgets: two budgets share a name")
    return settings


def _bad_price_key(prices: dict[str, Any]) -> str:
    """msgspec names a bad dict entry ``[...]``; find which model it was."""
    for key, value in prices.items():
        try:
            msgspec.convert(value, ModelPrice)
        except msgspec.ValidationError:
            return key
    return "..."


def check_budget(budget: BudgetSpec, where: str) -> None:
    """Checks a type cannot express: a real period, a real zone, at least one limit."""
    from agent._budget import parse_period, resolve_zone

    if budget.limit_usd is None and budget.limit_tokens is None:
        raise ConfigError(f"{where}: set limit_usd or limit_tokens (or both)")
    try:
        parse_period(budget.period)
    except ValueError as exc:
        raise ConfigError(f"{where}: period: {exc}") from None
    try:
        resolve_zone(budget.timezone)
    except ValueError as exc:
        raise ConfigError(f"{where}: timezone: {exc}") from None


def upsert_budget(budget: BudgetSpec, path: str | Path | None = None) -> Path:
    """Add or replace the budget of that name in config.toml, keeping the rest of the file.

    The new file is validated whole before it replaces the old one (atomically), so a bad
    value never leaves a half-edited config behind.
    """
    import tomlkit

    path = Path(path or _paths.config_path())
    check_budget(budget, f"budget {budget.name!r}")
    try:
        document = tomlkit.parse(path.read_text("utf-8")) if path.exists() else tomlkit.document()
    except (OSError, UnicodeDecodeError, tomlkit.exceptions.ParseError) as exc:
        raise ConfigError(f"{path}: cannot edit ({exc})") from None
    table = tomlkit.table()
    for key, value in msgspec.structs.asdict(budget).items():
        if value is not None:
            table[key] = value
    budgets = document.get("budgets")
    if budgets is None:
        budgets = tomlkit.aot()
        document["budgets"] = budgets
    for index, existing in enumerate(budgets):
        if existing.get("name", "default") == budget.name:
            budgets[index] = table
            break
    else:
        budgets.append(table)
    text = tomlkit.dumps(document)
    from_dict(tomllib.loads(text), origin=str(path))
    write_atomic(path, text)
    return path


def set_sync_server(url: str | None, path: str | Path | None = None) -> Path:
    """Set (or, with None, remove) ``[sync] server_url`` in config.toml, keeping the rest."""
    import tomlkit

    with editing(Path(path) if path else None) as target:
        try:
            document = (tomlkit.parse(target.read_text("utf-8")) if target.exists()
                        else tomlkit.document())
        except (OSError, UnicodeDecodeError, tomlkit.exceptions.ParseError) as exc:
            raise ConfigError(f"{target}: cannot edit ({exc})") from None
        section = document.get("sync")
        if section is None:
            section = tomlkit.table()
            document["sync"] = section
        if url is None:
            section.pop("server_url", None)
        else:
            section["server_url"] = url
        text = tomlkit.dumps(document)
        from_dict(tomllib.loads(text), origin=str(target))
        write_atomic(target, text)
        return target


@contextlib.contextmanager
def editing(path: Path | None = None) -> Iterator[Path]:
    """Hold config.toml for a read-modify-write: two edits at once (``budget set`` run in
    parallel) each see the other's result instead of the last rename dropping the first's.
    An advisory lock on a file beside it (POSIX; elsewhere edits are not serialised)."""
    path = Path(path or _paths.config_path())
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # Windows
        yield path
        return
    with open(path.with_name(f".{path.name}.lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield path
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def write_atomic(path: Path, text: str, mode: int = 0o644) -> None:
    """Write to a temporary file beside ``path``, fsync, then rename over it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
