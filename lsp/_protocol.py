"""What the sidecar changes in pygls's JSON-RPC handling, and why.

* Params of methods lsprotocol does not know (``meterline/*``) stay plain JSON values. pygls
  turns them into namedtuple-like objects, which rename keys that are not identifiers and
  convert only one level back; we check them ourselves (``lsp._methods``), field by field.
  The same converter serves the test client, so results of custom requests are plain too.
* pygls keeps its own copy of every document and re-splits all of it on every change;
  the sidecar keeps its own (``lsp._documents``), so the built-in didOpen/didChange/
  didClose only pass the notification on.
* A request whose params do not fit the LSP types gets an InvalidParams answer, instead of
  no answer at all (pygls reports the error but leaves the request hanging); so does a
  request after ``shutdown`` get an InvalidRequest answer (pygls leaves it unanswered).
* didChange, sent on every keystroke for every open file, takes a short path: its params
  are built directly (cattrs' generic structuring costs ~40 µs), the handler is called
  without pygls's generator round, and requests and notifications are told apart by their
  attributes (pygls asks ``isinstance`` of runtime-checkable Protocols, ~40 µs a check on
  Python 3.11). Anything unexpected falls back to pygls's own path and errors.
"""

from __future__ import annotations

import contextvars
import logging
from collections.abc import Generator
from typing import Any

from cattrs import Converter
from lsprotocol import types
from pygls.exceptions import JsonRpcException, JsonRpcInvalidParams, JsonRpcInvalidRequest
from pygls.protocol import (
    JsonRPCNotification,
    JsonRPCRequestMessage,
    JsonRPCResponseMessage,
    LanguageServerProtocol,
    default_converter,
    lsp_method,
)

log = logging.getLogger("pygls.protocol")


def _keep_raw(obj: dict[str, Any], cls: type[Any]) -> Any:
    return cls(**obj)


def plain_json_converter() -> Converter:
    """pygls's converter, except that unknown methods' params and results stay plain JSON."""
    converter: Converter = default_converter()  # type: ignore[no-untyped-call]
    for cls in (JsonRPCRequestMessage, JsonRPCResponseMessage, JsonRPCNotification):
        converter.register_structure_hook(cls, _keep_raw)
    return converter


class _Refused:
    """A request whose params could not be read: answered with this error."""

    __slots__ = ("error", "id")

    def __init__(self, msg_id: Any, error: JsonRpcException) -> None:
        self.id = msg_id
        self.error = error


Step = Generator[Any, Any, None]


def _position(raw: dict[str, Any]) -> types.Position:
    return types.Position(line=raw["line"], character=raw["character"])


def _did_change(data: dict[str, Any]) -> types.DidChangeTextDocumentNotification | None:
    """The didChange notification built by hand; None if anything is off (pygls then
    structures it and reports what is wrong)."""
    try:
        params = data["params"]
        document = params["textDocument"]
        changes: list[types.TextDocumentContentChangeEvent] = []
        for change in params["contentChanges"]:
            if set(change) - {"range", "rangeLength", "text"} or not isinstance(
                    change["text"], str):
                return None
            where = change.get("range")
            if where is None:
                changes.append(types.TextDocumentContentChangeWholeDocument(text=change["text"]))
                continue
            changes.append(types.TextDocumentContentChangePartial(
                range=types.Range(start=_position(where["start"]), end=_position(where["end"])),
                text=change["text"], range_length=change.get("rangeLength")))
        if not isinstance(document["uri"], str) or not isinstance(document["version"], int):
            return None
        return types.DidChangeTextDocumentNotification(
            params=types.DidChangeTextDocumentParams(
                text_document=types.VersionedTextDocumentIdentifier(
                    uri=document["uri"], version=document["version"]),
                content_changes=changes),
            method="textDocument/didChange", jsonrpc=data["jsonrpc"])
    except (KeyError, TypeError, ValueError, AttributeError):
        return None


class MeterlineProtocol(LanguageServerProtocol):
    """LanguageServerProtocol without pygls's document copies (see the module docstring)."""

    def _pass_on(self, method: str, params: Any) -> Step:
        handler = self.fm.features.get(method)
        if handler is not None:
            yield handler, (params,), None

    @lsp_method(types.TEXT_DOCUMENT_DID_OPEN)
    def lsp_text_document__did_open(self, params: types.DidOpenTextDocumentParams) -> Step:
        yield from self._pass_on(types.TEXT_DOCUMENT_DID_OPEN, params)

    @lsp_method(types.TEXT_DOCUMENT_DID_CHANGE)
    def lsp_text_document__did_change(self, params: types.DidChangeTextDocumentParams) -> None:
        handler = self.fm.features.get(types.TEXT_DOCUMENT_DID_CHANGE)
        if handler is not None:
            handler(params)

    @lsp_method(types.TEXT_DOCUMENT_DID_CLOSE)
    def lsp_text_document__did_close(self, params: types.DidCloseTextDocumentParams) -> Step:
        yield from self._pass_on(types.TEXT_DOCUMENT_DID_CLOSE, params)

    @lsp_method(types.SHUTDOWN)
    def lsp_shutdown(self, *args: Any) -> Step:
        """pygls's, over a copy of the requests in flight: cancelling one can take it out
        of that dict at once (its done callback), which broke pygls's loop over it and
        answered ``shutdown`` with an internal error instead of ending the session."""
        handler = self.fm.features.get(types.SHUTDOWN)
        if handler is not None:
            yield handler, args, None
        current = self.msg_id
        for msg_id, future in list(self._request_futures.items()):
            if msg_id != current and not future.done():
                future.cancel()
        self._shutdown = True

    def structure_message(self, data: dict[str, Any]) -> Any:
        if data.get("method") == types.TEXT_DOCUMENT_DID_CHANGE and "id" not in data:
            quick = _did_change(data)
            if quick is not None:
                return quick
        try:
            return super().structure_message(data)
        except JsonRpcException as exc:
            if "id" in data and "method" in data:
                error = JsonRpcInvalidParams(
                    f"Invalid Params: {data.get('method')}: the params do not match the "
                    f"LSP type ({exc.__cause__ or exc})")
                return _Refused(data["id"], error)
            raise

    def handle_message(self, message: Any) -> None:
        if isinstance(message, _Refused):
            self._send_response(message.id, error=message.error.to_response_error())
            return
        method = getattr(message, "method", None)
        if method is None or getattr(message, "jsonrpc", None) != self.VERSION:
            super().handle_message(message)  # responses, errors, oddities: pygls's way
            return
        if self._shutdown and method != types.EXIT:
            if hasattr(message, "id"):  # a request: answered, as the protocol asks
                self._send_response(message.id, error=JsonRpcInvalidRequest(
                    "the server is shutting down: no requests after shutdown"
                ).to_response_error())
            else:
                log.warning("Server shutting down. No more requests!")
            return
        context = contextvars.copy_context()  # each handler in its own context, as pygls
        if hasattr(message, "id"):
            context.run(self._handle_request, message.id, method, message.params)
        else:
            context.run(self._handle_notification, method, message.params)
