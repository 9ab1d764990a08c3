"""The ASGI app: a lifespan that opens the store, the routes, and errors as JSON.

Every error leaves as ``{"error": {"field": ..., "index": ..., "message": ...}}``: our own
(``ServerError``), FastAPI's validation of query and path parameters (422), unknown routes
(404/405); a database that cannot be reached as a 503 with Retry-After (clients retry
their batch: ingest is idempotent); anything unexpected as a 500 with no details (and a
log line).
"""

from __future__ import annotations

import gc
import logging
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import msgspec
from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from sqlalchemy import exc as sa_exc
from starlette.exceptions import HTTPException

from server import _reports, _wire
from server._api import router
from server._errors import ServerError
from server._http import ref, reply, store
from server._metrics import Metrics, MetricsMiddleware
from server._settings import Settings
from server._store import Store, open_store
from server._txn import unavailable

log = logging.getLogger("meterline.server")
VERSION = "1"
#: Every type the OpenAPI document refers to, rendered from the msgspec definitions.
_SCHEMA_TYPES: tuple[Any, ...] = (
    _wire.EventBatch, _wire.IngestResult, _wire.DeploymentIn, _wire.DeploymentResult,
    _wire.Me, _wire.SharingIn, _wire.MyBudgets, _wire.TeamIn, _wire.TeamOut, _wire.TeamList,
    _wire.MemberIn, _wire.MemberPatch, _wire.MemberOut, _wire.MemberList,
    _wire.MemberCreated, _wire.TokenIn, _wire.CiTokenIn, _wire.NewToken, _wire.TokenList,
    _wire.Revoked, _wire.BudgetIn, _wire.BudgetRecord, _wire.BudgetList, _wire.Deleted,
    _wire.Health, _wire.ErrorBody, _reports.Report)


def create_app(settings: Settings | None = None, *, store_: Store | None = None) -> FastAPI:
    """The app. It opens (and migrates) its own store unless one is handed in."""
    settings = settings or Settings.from_env()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        owned = store_ is None
        app.state.store = store_ or await open_store(settings)
        if owned:
            # A server process of its own: everything loaded by now (modules, FastAPI's
            # routes and schemas, SQLAlchemy's metadata) lives as long as the process. Kept
            # out of the cyclic collector's sight, a full collection no longer walks it all:
            # a pause of ~50 ms that otherwise fell on a large report now and then. And a
            # young generation of 50,000 objects, not 700: a large report allocates a few
            # hundred thousand, all short-lived (5 ms less for one of 2,160 rows).
            gc.freeze()
            gc.set_threshold(50_000, 10, 10)
        try:
            yield
        finally:
            if owned:
                await app.state.store.close()

    app = FastAPI(title="meterline team server", version=VERSION, lifespan=lifespan,
                  description="What the tokens bought: ingest, budgets and outcome reports.")
    app.state.settings = settings
    app.state.metrics = metrics = Metrics()
    if store_ is not None:
        app.state.store = store_
    app.include_router(router)
    _add_service_routes(app)
    _add_error_handlers(app)
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app


def app_from_env() -> FastAPI:
    """The factory uvicorn workers call: settings come from the environment."""
    return create_app(Settings.from_env())


def _add_service_routes(app: FastAPI) -> None:
    @app.get("/healthz", tags=["service"], response_model=None,
             summary="Liveness and database reachability",
             responses={200: {"description": "OK", "content": {
                 "application/json": {"schema": ref(_wire.Health)}}},
                 503: {"description": "The database does not answer", "content": {
                     "application/json": {"schema": ref(_wire.Health)}}}})
    async def healthz(request: Request) -> Response:
        if await store(request).ping():
            return reply(_wire.Health("ok", "ok"))
        return reply(_wire.Health("degraded", "unreachable"), 503)

    @app.get("/metrics", tags=["service"], response_class=Response,
             summary="Prometheus metrics",
             responses={200: {"description": "Prometheus text format",
                               "content": {"text/plain": {"schema": {"type": "string"}}}}})
    async def metrics(request: Request) -> Response:
        body, content_type = request.app.state.metrics.exposition()
        return Response(body, media_type=content_type)


def _error(status: int, message: str, field: str | None = None,
           headers: Mapping[str, str] | None = None) -> Response:
    body = _wire.ErrorBody(_wire.ErrorDetail(field=field, index=None, message=message))
    return Response(msgspec.json.encode(body), status_code=status,
                    media_type="application/json", headers=headers)


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ServerError)
    async def on_server_error(_request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ServerError)
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        return Response(msgspec.json.encode(exc.as_json()), status_code=exc.status,
                        media_type="application/json", headers=headers)

    @app.exception_handler(RequestValidationError)
    async def on_invalid_parameter(_request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        first = exc.errors()[0] if exc.errors() else {}
        location = [str(part) for part in first.get("loc", ())]
        field = location[-1] if location else None
        return _error(422, str(first.get("msg", "invalid parameter")), field)

    @app.exception_handler(HTTPException)
    async def on_http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            headers["Allow"] = ", ".join(_methods_at(request))
        return _error(exc.status_code, str(exc.detail), headers=headers)

    @app.exception_handler(sa_exc.OperationalError)
    @app.exception_handler(sa_exc.InterfaceError)
    @app.exception_handler(OSError)
    async def on_database_unavailable(_request: Request, exc: Exception) -> Response:
        log.warning("database unavailable: %s", str(exc).splitlines()[0] if str(exc) else exc)
        return _error(503, "the database is unavailable: retry shortly",
                      headers={"Retry-After": "5"})

    @app.exception_handler(sa_exc.DBAPIError)
    async def on_database_error(request: Request, exc: Exception) -> Response:
        # A database dropped or not (yet) there, too many connections, a shutdown under way:
        # as unavailable as a refused connection. Anything else is a fault of ours.
        if unavailable(exc):
            return await on_database_unavailable(request, exc)
        return await on_unexpected(request, exc)

    @app.exception_handler(Exception)
    async def on_unexpected(_request: Request, exc: Exception) -> Response:
        log.exception("unexpected error", exc_info=exc)
        return _error(500, "internal error (logged on the server)")


def _methods_at(request: Request) -> list[str]:
    """Every method some route serves at this path (Starlette names only the first route's)."""
    methods: set[str] = set()
    for route in request.app.router.routes:
        pattern = getattr(route, "path_regex", None)
        if pattern is not None and pattern.match(request.url.path):
            methods |= set(getattr(route, "methods", None) or ())
    return sorted(methods)


def _openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI's document, with the msgspec types our routes read and write."""
    if app.openapi_schema:
        return app.openapi_schema
    document = get_openapi(title=app.title, version=app.version, routes=app.routes,
                           description=app.description)
    _, components = msgspec.json.schema_components(
        _SCHEMA_TYPES, ref_template="#/components/schemas/{name}")
    document.setdefault("components", {}).setdefault("schemas", {}).update(components)
    app.openapi_schema = document
    return document
