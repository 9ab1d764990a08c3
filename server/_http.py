"""The HTTP edge's helpers: who is calling, bodies in, JSON out, the OpenAPI entries.

Bodies are read with a byte limit (413 beyond it) and decoded by msgspec into the types of
``_wire``; responses are those types encoded by msgspec. The OpenAPI document refers to
the same types, so schemathesis checks the server against what it really does.
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from fastapi import Depends, Request, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from server import _wire
from server._access import Principal, require_person
from server._errors import PayloadTooLarge, Unauthenticated
from server._store import Store

SMALL_BODY = 64 * 1024
_bearer = HTTPBearer(auto_error=False, description="A member's or a CI token")


def store(request: Request) -> Store:
    value = request.app.state.store
    assert isinstance(value, Store)
    return value


async def _caller(request: Request, credentials: Annotated[
        HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> Principal:
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise Unauthenticated("send `Authorization: Bearer <token>`", field="authorization")
    principal = await store(request).authenticate(credentials.credentials)
    if principal is None:
        raise Unauthenticated("unknown or revoked token", field="authorization")
    return principal


async def _person(who: Annotated[Principal, Depends(_caller)]) -> Principal:
    require_person(who)
    return who


#: Any valid token (only ``POST /deployments`` takes CI tokens).
AnyCaller = Annotated[Principal, Depends(_caller)]
#: A member's token: CI tokens are refused (403) before anything else happens.
Caller = Annotated[Principal, Depends(_person)]


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refusing more than ``limit`` bytes without reading them all."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"body over {_size(limit)}: send smaller batches", field="body")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"body over {_size(limit)}: send smaller batches",
                                  field="body")
        chunks.append(chunk)
    return b"".join(chunks)


async def read_json(request: Request, kind: type[_wire.T], limit: int = SMALL_BODY
                    ) -> _wire.T:
    return _wire.decode(await read_body(request, limit), kind)


def _size(limit: int) -> str:
    return f"{limit // 2**20} MiB" if limit >= 2**20 else f"{limit // 1024} KiB"


def reply(value: object, status: int = 200) -> Response:
    return Response(msgspec.json.encode(value), status_code=status,
                    media_type="application/json")


# ------------------------------------------------------------------------ OpenAPI


def ref(kind: type) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{kind.__name__}"}


def body_doc(kind: type) -> dict[str, Any]:
    """``openapi_extra`` for a route that reads ``kind`` as its JSON body."""
    return {"requestBody": {"required": True,
                            "content": {"application/json": {"schema": ref(kind)}}}}


_ERROR_TEXT = {
    400: "Not JSON, or not an object at the top",
    401: "No token, or an unknown or revoked one",
    403: "The token may not do this",
    404: "No such team, member, token or budget",
    409: "The name is taken (or the change would leave no admin)",
    413: "Too many events or bytes",
    422: "A field is wrong: `field` names it, `index` the event in a batch",
    503: "The database cannot be reached: retry later (Retry-After)",
}


def responses(kind: type, *errors: int, status: int = 200) -> dict[int | str, Any]:
    """The documented responses of a route: ``kind`` on success, the errors it can give."""
    documented: dict[int | str, Any] = {
        status: {"description": "OK",
                 "content": {"application/json": {"schema": ref(kind)}}}}
    for code in sorted({401, 403, 422, 503, *errors}):
        documented[code] = {"description": _ERROR_TEXT[code],
                            "content": {"application/json": {
                                "schema": ref(_wire.ErrorBody)}}}
    return documented
