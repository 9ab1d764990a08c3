"""The server's exceptions: one root, each class with the HTTP status it answers with.

    ServerError                    500  (never raised on purpose for bad input)
    ├── InputError                 422  a field is wrong: names the field and the batch index
    │   └── MalformedBody          400  not JSON at all, or not the right shape at the top
    ├── PayloadTooLarge            413  too many events or too many bytes
    ├── Unauthenticated            401  no token, an unknown token, a revoked token
    ├── Forbidden                  403  a valid token that may not do this
    ├── NotFound                   404
    └── Conflict                   409  the name is taken, the first admin exists, ...

Routes let these propagate; the app turns each into
``{"error": {"field": ..., "index": ..., "message": ...}}`` with its status. The CLI prints
the message on one line and exits non-zero.
"""

from __future__ import annotations


class ServerError(Exception):
    """The root of every error the server raises on purpose."""

    status = 500

    def __init__(self, message: str, *, field: str | None = None,
                 index: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.index = index

    def __str__(self) -> str:
        where = ""
        if self.index is not None:
            where = f"events[{self.index}]" + (f".{self.field}" if self.field else "")
        elif self.field:
            where = self.field
        return f"{where}: {self.message}" if where else self.message

    def as_json(self) -> dict[str, object]:
        return {"error": {"field": self.field, "index": self.index, "message": self.message}}


class InputError(ServerError):
    status = 422


class MalformedBody(InputError):
    status = 400


class PayloadTooLarge(ServerError):
    status = 413


class Unauthenticated(ServerError):
    status = 401


class Forbidden(ServerError):
    status = 403


class NotFound(ServerError):
    status = 404


class Conflict(ServerError):
    status = 409
