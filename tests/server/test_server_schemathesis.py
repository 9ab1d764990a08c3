"""Schemathesis against ``/openapi.json`` of a real ``meterline server run``.

Every operation gets generated requests, valid and invalid, with an admin's token: no 5xx,
every response matches its documented status, content type and schema, invalid input is
refused with a 4xx, and auth is enforced (schemathesis retries each operation without the
token and with a wrong one, and expects 401).

Where the server checks more than a JSON schema can say (a clock within a day of now,
cache writes within cache reads, a budget's zone and window, a report's date order), a
valid-by-schema request may get a 422 for those operations; everywhere else it must pass.
"""

from __future__ import annotations

import os
import secrets
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from server_support import BACKENDS, PgDatabases, ServerProcess, meterline_command

BEYOND_SCHEMA = r"^/api/v1/(events|deployments|budgets|reports/outcomes)$"
MAX_EXAMPLES = 12


@pytest.fixture(scope="module", params=BACKENDS)
def api_server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
               ) -> Iterator[tuple[str, str]]:
    """A server on its own database, with an admin (name and token nobody will guess)."""
    home = tmp_path_factory.mktemp("schemathesis-home")
    if request.param == "sqlite":
        db = f"sqlite:///{home / 'server.db'}"
    else:
        base = os.environ.get("METERLINE_TEST_PG_URL")
        if not base:
            pytest.skip("METERLINE_TEST_PG_URL is not set (CI sets it; see .ci/run)")
        databases: PgDatabases = request.getfixturevalue("pg_databases")
        db = databases.create(base)
    env = {**os.environ, "METERLINE_HOME": str(home)}

    def cli(*args: str) -> str:
        done = subprocess.run([*meterline_command(), "server", "--db", db, *args],
                              capture_output=True, text=True, env=env, timeout=60,
                              check=False)
        assert done.returncode == 0, done.stderr
        return done.stdout.strip().splitlines()[-1]

    token = cli("init", "--name", f"root-{secrets.token_hex(4)}")
    cli("team", "create", "core")  # the documented examples exist, so 2xx paths are hit
    cli("member", "create", "alice", "--team", "core")
    with pytest.MonkeyPatch.context() as patch:  # module scope: no per-test home yet
        patch.setenv("METERLINE_HOME", str(home))
        server = ServerProcess(db)
    with server:
        yield server.url, token


@pytest.fixture(scope="module")
def api_schema(api_server: tuple[str, str]) -> Any:
    url, token = api_server
    config = schemathesis.Config.from_dict({
        "headers": {"Authorization": f"Bearer {token}"},
        "generation": {"max-examples": MAX_EXAMPLES},
        "phases": {"stateful": {"enabled": False}},
        "operations": [{
            "include-path-regex": BEYOND_SCHEMA,
            "checks": {"positive_data_acceptance": {
                "expected-statuses": ["2xx", "401", "403", "404", "409", "422"]}},
        }],
    })
    return schemathesis.openapi.from_url(f"{url}/openapi.json", config=config)


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(max_examples=MAX_EXAMPLES, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much,
                                 HealthCheck.function_scoped_fixture])
def test_openapi_contract(case: Any) -> None:
    case.call_and_validate()


def test_the_document_covers_every_route(api_server: tuple[str, str]) -> None:
    import httpx

    document = httpx.get(f"{api_server[0]}/openapi.json", timeout=10).json()
    operations = sum(len(methods) for methods in document["paths"].values())
    assert operations == 23  # 21 under /api/v1, /healthz and /metrics
    assert Path("/openapi.json").name == "openapi.json"
