"""Fixtures for the sidecar's end-to-end tests: `meterline lsp` as a subprocess under
pytest-lsp's real client, and a real HTTP upstream on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from lsp_harness import SIDECAR, WORKSPACE, Sidecar, StartSidecar, capabilities, make_client
from lsp_upstream import Upstream
from lsprotocol import types
from pytest_lsp import ClientServerConfig


@pytest.fixture
def upstream() -> Iterator[Upstream]:
    server = Upstream().start()
    yield server
    server.stop()


@pytest_asyncio.fixture
async def start_sidecar(meterline_home: Path) -> AsyncIterator[StartSidecar]:
    """Start `meterline lsp` (or another command) with a config.toml and init options."""
    started: list[Sidecar] = []

    async def start(*, init: dict[str, Any] | None = None, config: str | None = None,
                    command: list[str] | None = None, env: dict[str, str] | None = None,
                    folders: list[str] | None = None) -> Sidecar:
        if config is not None:
            (meterline_home / "config.toml").write_text(config)
        environment = {**os.environ, "METERLINE_HOME": str(meterline_home), **(env or {})}
        client = await ClientServerConfig(
            server_command=command or SIDECAR, server_env=environment,
            client_factory=make_client).start()
        sidecar = Sidecar(client, meterline_home)
        started.append(sidecar)
        workspace = folders if folders is not None else [WORKSPACE]
        await asyncio.wait_for(client.initialize_session(types.InitializeParams(
            capabilities=capabilities(), initialization_options=init,
            workspace_folders=[types.WorkspaceFolder(uri=uri, name="project")
                               for uri in workspace])), 30)
        return sidecar

    yield start
    for sidecar in started:
        client = sidecar.client
        server = client._server
        with contextlib.suppress(Exception):
            if server is not None and server.returncode is None:
                await asyncio.wait_for(client.shutdown_session(), 15)
        if server is not None and server.returncode is None:
            server.kill()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(client.stop(), 15)


