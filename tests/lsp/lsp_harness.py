"""Driving `meterline lsp` end to end: pytest-lsp's real client, helpers for documents,
completions and the meterline/* methods, and the store read straight from its SQLite file."""

from __future__ import annotations

import asyncio
import sqlite3
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from lsp_upstream import Upstream
from lsprotocol import types
from pytest_lsp import LanguageClient
from pytest_lsp.client import register_lsp_features

from lsp._protocol import plain_json_converter

METERLINE = str(Path(sys.executable).with_name("meterline"))
SIDECAR = [METERLINE, "lsp"]
WORKSPACE = "file:///work/project"


def capabilities() -> types.ClientCapabilities:
    """A client that does incremental sync, inline completion and messages (no bundled
    pytest-lsp profile advertises inline completion)."""
    return types.ClientCapabilities(
        general=types.GeneralClientCapabilities(
            position_encodings=[types.PositionEncodingKind.Utf16]),
        text_document=types.TextDocumentClientCapabilities(
            synchronization=types.TextDocumentSyncClientCapabilities(did_save=False),
            inline_completion=types.InlineCompletionClientCapabilities(
                dynamic_registration=False)),
        window=types.WindowClientCapabilities(
            show_message=types.ShowMessageRequestClientCapabilities()),
        workspace=types.WorkspaceClientCapabilities(
            execute_command=types.ExecuteCommandClientCapabilities()),
    )


def make_client() -> LanguageClient:
    client = LanguageClient(converter_factory=plain_json_converter)
    register_lsp_features(client)
    client.budget_notes = []  # type: ignore[attr-defined]
    client.budget_times = []  # type: ignore[attr-defined]

    @client.feature("meterline/budget")
    def budget(params: Any) -> None:
        client.budget_notes.append(params)  # type: ignore[attr-defined]
        client.budget_times.append(time.monotonic())  # type: ignore[attr-defined]

    return client


async def eventually(check: Callable[[], Any], within: float = 15.0,
                     what: str = "condition") -> Any:
    """Poll ``check`` until it returns something truthy (the store is another process)."""
    deadline = time.monotonic() + within
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}; last: {result!r}")
        await asyncio.sleep(0.05)


class Sidecar:
    """A running sidecar and the conversation with it."""

    def __init__(self, client: LanguageClient, home: Path) -> None:
        self.client = client
        self.home = home
        self.versions: dict[str, int] = {}

    @property
    def budget_notes(self) -> list[dict[str, Any]]:
        return self.client.budget_notes  # type: ignore[attr-defined,no-any-return]

    @property
    def budget_times(self) -> list[float]:
        return self.client.budget_times  # type: ignore[attr-defined,no-any-return]

    def shown(self, kind: types.MessageType | None = None) -> list[str]:
        return [m.message for m in self.client.messages if kind is None or m.type == kind]

    # -- documents --

    def open(self, uri: str, text: str, language: str = "python") -> None:
        self.versions[uri] = 1
        self.client.text_document_did_open(types.DidOpenTextDocumentParams(
            text_document=types.TextDocumentItem(uri=uri, language_id=language, version=1,
                                                 text=text)))

    def edit(self, uri: str, start: tuple[int, int], end: tuple[int, int], text: str) -> None:
        self.versions[uri] = self.versions.get(uri, 0) + 1
        self.client.text_document_did_change(types.DidChangeTextDocumentParams(
            text_document=types.VersionedTextDocumentIdentifier(
                uri=uri, version=self.versions[uri]),
            content_changes=[types.TextDocumentContentChangePartial(
                range=types.Range(start=types.Position(*start), end=types.Position(*end)),
                text=text)]))

    def close(self, uri: str) -> None:
        self.client.text_document_did_close(types.DidCloseTextDocumentParams(
            text_document=types.TextDocumentIdentifier(uri=uri)))

    # -- requests --

    async def complete(self, uri: str, line: int, character: int
                       ) -> list[types.InlineCompletionItem]:
        result = await self.client.text_document_inline_completion_async(
            self.completion_params(uri, line, character))
        if result is None:
            return []
        return list(result.items if isinstance(result, types.InlineCompletionList) else result)

    @staticmethod
    def completion_params(uri: str, line: int, character: int
                          ) -> types.InlineCompletionParams:
        return types.InlineCompletionParams(
            context=types.InlineCompletionContext(
                trigger_kind=types.InlineCompletionTriggerKind.Invoked),
            text_document=types.TextDocumentIdentifier(uri=uri),
            position=types.Position(line=line, character=character))

    async def accept(self, uri: str, item: types.InlineCompletionItem) -> Any:
        """What an editor does: insert the item's text at its range, then run its command."""
        assert item.range is not None
        assert item.command is not None
        start = (item.range.start.line, item.range.start.character)
        end = (item.range.end.line, item.range.end.character)
        self.edit(uri, start, end, str(item.insert_text))
        return await self.client.workspace_execute_command_async(types.ExecuteCommandParams(
            command=item.command.command, arguments=item.command.arguments))

    async def request(self, method: str, params: Any = None) -> Any:
        return await self.client.protocol.send_request_async(method, params)

    def notify(self, method: str, params: Any = None) -> None:
        self.client.protocol.notify(method, params)

    async def status(self) -> dict[str, Any]:
        result = await self.request("meterline/status", {})
        assert isinstance(result, dict)
        return result

    async def stop(self) -> None:
        """shutdown + exit: the sidecar stores everything queued before it answers."""
        await asyncio.wait_for(self.client.shutdown_session(), 30)

    # -- the store --

    def rows(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        path = self.home / "meterline.db"
        if not path.exists():
            return []
        db = sqlite3.connect(path, timeout=5)
        try:
            return db.execute(sql, params).fetchall()
        except sqlite3.OperationalError:
            return []
        finally:
            db.close()

    def calls(self) -> list[dict[str, Any]]:
        path = self.home / "meterline.db"
        if not path.exists():
            return []
        db = sqlite3.connect(path, timeout=5)
        db.row_factory = sqlite3.Row
        try:
            return [dict(row) for row in db.execute("SELECT * FROM calls ORDER BY seq")]
        except sqlite3.OperationalError:
            return []
        finally:
            db.close()

    def events(self, kind: str | None = None) -> list[dict[str, Any]]:
        path = self.home / "meterline.db"
        if not path.exists():
            return []
        db = sqlite3.connect(path, timeout=5)
        db.row_factory = sqlite3.Row
        try:
            rows = db.execute("SELECT * FROM suggestion_events ORDER BY seq").fetchall()
        except sqlite3.OperationalError:
            return []
        finally:
            db.close()
        return [dict(row) for row in rows if kind is None or row["type"] == kind]


StartSidecar = Callable[..., Awaitable[Sidecar]]


def openai_init(upstream: Upstream, **extra: Any) -> dict[str, Any]:
    return {"completion": {"provider": "openai", "baseUrl": f"{upstream.url}/v1",
                           "model": "test-model", "apiKeyEnv": "TEST_OPENAI_KEY"}, **extra}


def anthropic_init(upstream: Upstream, **extra: Any) -> dict[str, Any]:
    return {"completion": {"provider": "anthropic", "baseUrl": upstream.url,
                           "model": "test-model", "apiKeyEnv": "TEST_ANTHROPIC_KEY"}, **extra}


#: Prices that make costs easy to check: one cent per input token, two per output token.
PRICES = """
[prices.test-model]
input_per_mtok = 10000
output_per_mtok = 20000
"""
KEYS = {"TEST_OPENAI_KEY": "sk-test-openai-secret", "TEST_ANTHROPIC_KEY": "sk-ant-test-secret"}
