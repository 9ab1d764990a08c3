"""The sidecar's settings: ``initializationOptions`` from the editor, over ``config.toml``.

``initializationOptions`` (camelCase, every field optional)::

    {
      "completion": {"provider": "openai", "baseUrl": "https://api.openai.com/v1",
                     "model": "gpt-4o-mini", "apiKeyEnv": "OPENAI_API_KEY"},
      "retentionCheckpoints": [30, 120, 300, 600, 900],
      "rejectReplacedAfterSeconds": 5,
      "rejectUnansweredAfterSeconds": 60
    }

``completion`` there replaces ``[completion]`` of config.toml as a whole; without either,
the sidecar offers no inline completions (it still meters what clients report).
"""

from __future__ import annotations

import os
from typing import Annotated, Any, Literal, NamedTuple

import msgspec

from agent import CompletionSettings, ConfigError

Provider = Literal["openai", "anthropic", "ollama"]
Api = Literal["chat", "completions", "messages", "generate"]
Seconds = Annotated[int, msgspec.Meta(ge=1, le=30 * 86_400)]

DEFAULT_BASE_URL = {"openai": "https://api.openai.com/v1",
                    "anthropic": "https://api.anthropic.com",
                    "ollama": "http://localhost:11434"}
DEFAULT_KEY_ENV = {"openai": "OPENAI_API_KEY", "anthropic": "ANTHROPIC_API_KEY"}
DEFAULT_API: dict[str, Api] = {"openai": "chat", "anthropic": "messages", "ollama": "generate"}
#: The path each provider's own SDK appends to its base URL, per API.
API_PATH = {("openai", "chat"): "/chat/completions",
            ("openai", "completions"): "/completions",
            ("anthropic", "messages"): "/v1/messages",
            ("ollama", "generate"): "/api/generate",
            ("ollama", "chat"): "/api/chat"}


class CompletionOptions(msgspec.Struct, kw_only=True, rename="camel",
                        forbid_unknown_fields=True):
    """``initializationOptions.completion``: the upstream model for inline completions."""

    provider: Provider
    model: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
    base_url: str | None = None
    """As that provider's SDK takes it; default: the provider's public endpoint."""
    api_key_env: str | None = None
    """Environment variable holding the key (OPENAI_API_KEY / ANTHROPIC_API_KEY by default)."""
    api: Api | None = None
    """openai: ``chat`` (default) or ``completions``; ollama: ``generate`` (default, FIM
    with ``suffix``) or ``chat``; anthropic: ``messages``."""
    max_tokens: Annotated[int, msgspec.Meta(ge=1, le=8192)] = 128
    timeout_seconds: Annotated[float, msgspec.Meta(gt=0, le=600)] = 30.0
    context_before: Annotated[int, msgspec.Meta(ge=0, le=1_000_000)] = 4000
    """Characters before the cursor sent to the model."""
    context_after: Annotated[int, msgspec.Meta(ge=0, le=1_000_000)] = 1000
    """Characters after the cursor sent to the model."""


class InitOptions(msgspec.Struct, kw_only=True, rename="camel", forbid_unknown_fields=True):
    completion: CompletionOptions | None = None
    retention_checkpoints: Annotated[list[Seconds], msgspec.Meta(min_length=1,
                                                                 max_length=20)] | None = None
    """Seconds after acceptance at which retention is measured (default 30 s … 15 min)."""
    reject_replaced_after_seconds: Annotated[float, msgspec.Meta(ge=0, le=3600)] = 5.0
    """A suggestion replaced by a newer one and not accepted within this time is rejected."""
    reject_unanswered_after_seconds: Annotated[float, msgspec.Meta(gt=0, le=86_400)] = 60.0
    """A suggestion neither accepted nor rejected within this time is rejected."""


def parse_init_options(raw: Any) -> tuple[InitOptions, str | None]:
    """The options, with the defaults for the ones that are wrong, and a message naming
    every one that is (None if all are right)."""
    if raw is None:
        return InitOptions(), None
    try:
        return msgspec.convert(raw, InitOptions), None
    except msgspec.ValidationError as exc:
        if not isinstance(raw, dict):
            return InitOptions(), f"meterline: {_problem(exc)}; using the defaults"
    # Field by field: each wrong one named, the right ones kept (no option depends on
    # another, so those that are right alone are right together).
    right: dict[str, Any] = {}
    problems = []
    for key, value in raw.items():
        try:
            msgspec.convert({key: value}, InitOptions)
        except msgspec.ValidationError as exc:
            problems.append(_problem(exc))
        else:
            right[key] = value
    return msgspec.convert(right, InitOptions), (f"meterline: {'; '.join(problems)}; "
                                                 "using the defaults for these")


def _problem(exc: msgspec.ValidationError) -> str:
    message, _, at = str(exc).partition(" - at `$")
    where = at.rstrip("`").lstrip(".") or ""
    return f"initializationOptions{'.' + where if where else ''}: {message.replace('`', '')}"


class Upstream(NamedTuple):
    """A resolved completion upstream: where to POST, which model, with which key."""

    provider: str
    api: str
    url: str
    model: str
    api_key: str | None
    max_tokens: int
    timeout_s: float
    context_before: int
    context_after: int


def resolve_upstream(settings: CompletionSettings, options: CompletionOptions | None,
                     environ: dict[str, str] | None = None) -> Upstream | None:
    """The upstream in force (None: inline completion off); ConfigError if it is unusable."""
    env = os.environ if environ is None else environ
    if options is None:
        if settings.provider is None:
            return None
        if not settings.model:
            raise ConfigError("config.toml: completion.model: required when completion."
                              "provider is set")
        options = CompletionOptions(provider=settings.provider, model=settings.model,
                                    base_url=settings.base_url,
                                    api_key_env=settings.api_key_env)
        where = "config.toml: completion"
    else:
        where = "initializationOptions.completion"
    provider = options.provider
    api = options.api or DEFAULT_API[provider]
    path = API_PATH.get((provider, api))
    if path is None:
        raise ConfigError(f"{where}: api: {provider} has no {api!r} API (use "
                          f"{DEFAULT_API[provider]!r})")
    base = (options.base_url or DEFAULT_BASE_URL[provider]).rstrip("/")
    if not base.startswith(("http://", "https://")):
        raise ConfigError(f"{where}: baseUrl: {base!r} is not an http(s) URL")
    key = None
    if options.api_key_env:
        key = env.get(options.api_key_env)
        if not key:
            raise ConfigError(f"{where}: apiKeyEnv: the environment variable "
                              f"{options.api_key_env} is not set")
    elif provider in DEFAULT_KEY_ENV:
        key = env.get(DEFAULT_KEY_ENV[provider]) or None
    return Upstream(provider=provider, api=api, url=base + path, model=options.model,
                    api_key=key, max_tokens=options.max_tokens,
                    timeout_s=options.timeout_seconds,
                    context_before=options.context_before,
                    context_after=options.context_after)
