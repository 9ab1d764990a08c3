"""The language server: ``MeterlineServer`` holds the state; each handler is a few lines.

Handlers parse, call one function of a feature module, and answer:

=====================  ============================================================
feature                module
=====================  ============================================================
documents              ``lsp._documents`` (text), ``lsp._sync`` (open/change/close)
meterline/* methods    ``lsp._methods``
inline completion      ``lsp._completion``
outcomes               ``lsp._suggestions`` (life of a suggestion), ``lsp._retention``
budget in the editor   ``lsp._budget``
the store              ``lsp._outbox``, ``lsp._reservations`` (budget held ahead)
=====================  ============================================================
"""

from __future__ import annotations

import functools
import gc
import logging
from collections.abc import Callable
from importlib.metadata import PackageNotFoundError, version
from typing import Any, TypeVar

from lsprotocol import types
from pygls.capabilities import ServerCapabilitiesBuilder
from pygls.exceptions import FeatureRequestError, JsonRpcInternalError, JsonRpcInvalidParams
from pygls.lsp.server import LanguageServer
from pygls.uris import to_fs_path

from agent import (
    ConfigError,
    InputError,
    MeterlineError,
    Settings,
    load_settings,
    price_call,
    workspace_hash,
)
from lsp import _methods
from lsp._budget import BudgetWatch
from lsp._completion import ACCEPT_COMMAND, CompletionService, Context, prompt_at
from lsp._options import InitOptions, parse_init_options, resolve_upstream
from lsp._outbox import StoreLink
from lsp._protocol import MeterlineProtocol, plain_json_converter
from lsp._suggestions import DEFAULT_CHECKPOINTS, Suggestions
from lsp._sync import OpenDocuments

log = logging.getLogger("meterline.lsp")
R = TypeVar("R")

NAME = "meterline-lsp"
#: How long initialize waits for the store before answering (it keeps trying after).
OPEN_WAIT_S = 2.0
#: How long shutdown waits for queued writes and calls in flight.
FLUSH_WAIT_S = 3.0
_LEVELS = {"warn": types.MessageType.Warning, "blocked": types.MessageType.Error}


def _version() -> str:
    try:
        return version("meterline")
    except PackageNotFoundError:
        return "0"


class MeterlineServer(LanguageServer):
    """The sidecar's state: documents, suggestions, the store link, budget and completion."""

    def __init__(self, *, db_path: str | None = None) -> None:
        super().__init__(NAME, _version(), protocol_cls=MeterlineProtocol,
                         converter_factory=plain_json_converter,
                         text_document_sync_kind=types.TextDocumentSyncKind.Incremental)
        self.documents = OpenDocuments()
        self.link = StoreLink(db_path=db_path)
        self.settings = Settings()
        self.options = InitOptions()
        self.watch = BudgetWatch(self.link, send=self.send_budget, show=self.show_level)
        self.suggestions = Suggestions(self.documents, self.link.put)
        self.completion: CompletionService | None = None
        self.folders: list[str] = []
        self._workspaces: dict[str, str] = {}
        self._stopped = False
        self._reporting = False

    # -- talking to the editor -------------------------------------------------------------

    def show(self, kind: types.MessageType, text: str) -> None:
        log.info("%s", text)
        self._tell(self.window_show_message, types.ShowMessageParams(type=kind, message=text))

    def show_level(self, level: str, text: str) -> None:
        self.show(_LEVELS.get(level, types.MessageType.Info), text)

    def log_to_editor(self, kind: types.MessageType, text: str) -> None:
        log.warning("%s", text)
        self._tell(self.window_log_message, types.LogMessageParams(type=kind, message=text))

    def _tell(self, send: Callable[[Any], None], params: Any) -> None:
        # The editor may be gone (a closed pipe while shutting down): what we meant to
        # tell it is in the stderr log already, and the sidecar must keep going.
        try:
            send(params)
        except (OSError, ValueError):
            log.debug("meterline: could not reach the editor")

    def warn(self, text: str) -> None:
        self.log_to_editor(types.MessageType.Warning, text)

    def send_budget(self, status: dict[str, Any]) -> None:
        self.protocol.notify("meterline/budget", status)

    def report_server_error(self, error: Exception, source: Any) -> None:
        # Requests were answered with the error already; anything else (a malformed
        # notification) goes to the editor's log, never a pop-up per bad message.
        if source is FeatureRequestError or self._reporting:
            return
        self._reporting = True  # a failing write reports itself: do not go round in circles
        try:
            text = str(error).removeprefix("pygls.exceptions.JsonRpcInvalidParams: ")
            self.log_to_editor(types.MessageType.Error, f"meterline: {text}")
        finally:
            self._reporting = False

    # -- life cycle ------------------------------------------------------------------------

    async def start(self, params: types.InitializeParams) -> None:
        encoding = ServerCapabilitiesBuilder.choose_position_encoding(params.capabilities)
        self.documents.encoding = str(getattr(encoding, "value", encoding))
        self.folders = [folder.uri for folder in params.workspace_folders or []]
        if not self.folders and params.root_uri:
            self.folders = [params.root_uri]
        self.options, problem = parse_init_options(params.initialization_options)
        if problem:
            self.show(types.MessageType.Error, problem)
        try:
            self.settings = load_settings()
        except ConfigError as exc:
            self.show(types.MessageType.Error, f"meterline: {exc}; using the defaults")
        self.suggestions.checkpoints = tuple(sorted(set(
            self.options.retention_checkpoints or DEFAULT_CHECKPOINTS)))
        self.suggestions.replaced_grace_s = self.options.reject_replaced_after_seconds
        self.suggestions.unanswered_s = self.options.reject_unanswered_after_seconds
        try:
            upstream = resolve_upstream(self.settings.completion, self.options.completion)
        except ConfigError as exc:
            self.show(types.MessageType.Error,
                      f"meterline: inline completion is off: {exc}")
            upstream = None
        if upstream is not None:
            self.completion = CompletionService(
                upstream, link=self.link, watch=self.watch, suggestions=self.suggestions,
                prices=self.settings.prices, say=self.warn)
        self.link.on_commit = self.watch.poke
        prices = self.settings.prices
        self.link.pricer = lambda call: price_call(call, prices)
        await self.link.start(OPEN_WAIT_S)
        # Some 90,000 objects (pygls, lsprotocol, httpx, the price table) live as long as
        # the process; a full collection scanning them pauses everything for ~40 ms.
        # Frozen, they are left out of collections: no such pause lands on a keystroke.
        gc.collect()
        gc.freeze()

    async def stop(self) -> None:
        """Shutdown: reject open offers, finish calls in flight, store everything queued."""
        if self._stopped:
            return
        self._stopped = True
        await self.watch.stop()
        if self.completion is not None:
            await self.completion.aclose(FLUSH_WAIT_S)
        self.suggestions.close()
        await self.link.close(FLUSH_WAIT_S)

    def workspace_of(self, uri: str) -> str | None:
        """The hash of the workspace folder holding ``uri`` (the longest match), or None."""
        matches = [folder for folder in self.folders
                   if uri == folder or uri.startswith(folder.rstrip("/") + "/")]
        if not matches:
            return None
        folder = max(matches, key=len)
        hashed = self._workspaces.get(folder)
        if hashed is None:
            hashed = self._workspaces[folder] = workspace_hash(to_fs_path(folder) or folder)
        return hashed


# -- handlers ------------------------------------------------------------------------------

def invalid_params(fn: Callable[..., R]) -> Callable[..., R]:
    """Our InputError (a field named) becomes a JSON-RPC InvalidParams error."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> R:
        try:
            return fn(*args, **kwargs)
        except InputError as exc:
            raise JsonRpcInvalidParams(f"Invalid Params: {exc}") from None

    return wrapper


async def initialize(ls: MeterlineServer, params: types.InitializeParams) -> None:
    await ls.start(params)


def initialized(ls: MeterlineServer, params: types.InitializedParams) -> None:
    ls.watch.start()


async def shutdown(ls: MeterlineServer, params: None) -> None:
    await ls.stop()


def did_change_configuration(ls: MeterlineServer,
                             params: types.DidChangeConfigurationParams) -> None:
    """Editors send their settings to every server; the sidecar's come at initialize."""


def did_open(ls: MeterlineServer, params: types.DidOpenTextDocumentParams) -> None:
    ls.documents.open(params.text_document)


def did_change(ls: MeterlineServer, params: types.DidChangeTextDocumentParams) -> None:
    uri = params.text_document.uri
    if not ls.documents.change(uri, params.text_document.version, params.content_changes):
        ls.warn(f"meterline: ignored a change to {uri}, which is not open")
        return
    ls.suggestions.document_changed(uri)


def did_close(ls: MeterlineServer, params: types.DidCloseTextDocumentParams) -> None:
    uri = params.text_document.uri
    closed = ls.documents.close(uri)
    if closed is not None:
        ls.suggestions.document_closed(uri, closed)


async def inline_completion(ls: MeterlineServer, params: types.InlineCompletionParams
                            ) -> list[types.InlineCompletionItem] | None:
    uri = params.text_document.uri
    document = ls.documents.get(uri)
    if ls.completion is None or document is None:
        return None
    upstream = ls.completion.upstream
    anchor = document.position(params.position.line, params.position.character)
    prompt = prompt_at(document, anchor, upstream.context_before, upstream.context_after)
    context = Context(uri, anchor, document.language_id or None, ls.workspace_of(uri))
    return await ls.completion.complete(prompt, context, params.position)


@invalid_params
def record_call(ls: MeterlineServer, params: Any) -> dict[str, Any]:
    call, offered = _methods.parse_record_call(params)
    return _methods.record_call(call, offered, link_put=ls.link.put,
                                suggestions=ls.suggestions, documents=ls.documents,
                                prices=ls.settings.prices)


@invalid_params
def suggestion_shown(ls: MeterlineServer, params: Any) -> dict[str, str]:
    ref = _methods.parse_suggestion_ref(params)
    return {"suggestionId": ref.suggestion_id,
            "outcome": ls.suggestions.shown(ref.suggestion_id)}


@invalid_params
def suggestion_accepted(ls: MeterlineServer, params: Any) -> dict[str, str]:
    ref = _methods.parse_suggestion_ref(params, accepted=True)
    return {"suggestionId": ref.suggestion_id,
            "outcome": ls.suggestions.accept(ref.suggestion_id, ref.accepted_text)}


@invalid_params
def suggestion_rejected(ls: MeterlineServer, params: Any) -> dict[str, str]:
    ref = _methods.parse_suggestion_ref(params)
    return {"suggestionId": ref.suggestion_id,
            "outcome": ls.suggestions.reject(ref.suggestion_id)}


async def status(ls: MeterlineServer, params: Any) -> dict[str, Any]:
    try:
        report = await ls.link.status(timeout_s=2.0)
    except MeterlineError as exc:
        raise JsonRpcInternalError(f"meterline: {exc}") from None
    # The store busy beyond the wait (a lock held elsewhere): the last status seen.
    report = report or ls.watch.report
    if report is None:
        raise JsonRpcInternalError("meterline: the store is not available yet; try again")
    return report.to_json()


@invalid_params
def accept_command(ls: MeterlineServer, *arguments: Any) -> dict[str, str]:
    if len(arguments) != 1 or not isinstance(arguments[0], str) or not arguments[0]:
        raise InputError(f"{ACCEPT_COMMAND} takes one argument, the suggestion id")
    return {"suggestionId": arguments[0],
            "outcome": ls.suggestions.accept(arguments[0])}


def create_server(*, db_path: str | None = None) -> MeterlineServer:
    """A server with every handler registered (not yet running)."""
    server = MeterlineServer(db_path=db_path)
    features: list[tuple[str, Callable[..., Any], Any]] = [
        (types.INITIALIZE, initialize, None),
        (types.INITIALIZED, initialized, None),
        (types.SHUTDOWN, shutdown, None),
        (types.WORKSPACE_DID_CHANGE_CONFIGURATION, did_change_configuration, None),
        (types.TEXT_DOCUMENT_DID_OPEN, did_open, None),
        (types.TEXT_DOCUMENT_DID_CHANGE, did_change, None),
        (types.TEXT_DOCUMENT_DID_CLOSE, did_close, None),
        (types.TEXT_DOCUMENT_INLINE_COMPLETION, inline_completion,
         types.InlineCompletionOptions()),
        ("meterline/recordCall", record_call, None),
        ("meterline/suggestionShown", suggestion_shown, None),
        ("meterline/suggestionAccepted", suggestion_accepted, None),
        ("meterline/suggestionRejected", suggestion_rejected, None),
        ("meterline/status", status, None),
    ]
    for method, handler, options in features:
        server.feature(method, options)(handler)
    server.command(ACCEPT_COMMAND)(accept_command)
    return server

