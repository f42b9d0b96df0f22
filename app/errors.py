"""Domain errors carry their HTTP status; one handler renders them. Services never raise
HTTPException."""

from __future__ import annotations

from typing import Any, ClassVar

import psycopg
import psycopg_pool
import sqlalchemy.exc
import structlog
from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

log = structlog.get_logger(__name__)


class GuestkeyError(Exception):
    status_code: ClassVar[int] = 400
    code: ClassVar[str] = "bad_request"
    headers: ClassVar[dict[str, str]] = {}

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def response_headers(self) -> dict[str, str]:
        return self.headers


class NotFound(GuestkeyError):
    status_code = 404
    code = "not_found"


class Conflict(GuestkeyError):
    status_code = 409
    code = "conflict"


class ReservationCancelled(Conflict):
    code = "reservation_cancelled"


class NoIssuedCode(Conflict):
    code = "no_issued_code"


class Unauthorized(GuestkeyError):
    status_code = 401
    code = "unauthorized"
    headers = {"WWW-Authenticate": "Bearer"}


class TooManyRequests(GuestkeyError):
    """A limit was reached; `Retry-After` says when the next request fits."""

    status_code = 429
    code = "rate_limited"

    def __init__(self, message: str, *, retry_after_seconds: float) -> None:
        super().__init__(message)
        self.retry_after_seconds = max(1, int(retry_after_seconds + 0.999))

    def response_headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after_seconds)}


class ResendLimitReached(TooManyRequests):
    code = "resend_limit_reached"


class SeamChangeLimitReached(TooManyRequests):
    code = "seam_change_limit_reached"


class InvalidInput(GuestkeyError):
    """Rendered like FastAPI's own 422, so clients parse one shape: `detail[].loc` names it."""

    status_code = 422
    code = "invalid_input"

    def __init__(self, message: str, *, location: tuple[str | int, ...]) -> None:
        super().__init__(message)
        self.location = location

    def detail(self) -> list[dict[str, Any]]:
        return [{"loc": list(self.location), "msg": self.message, "type": "value_error"}]


class ErrorOut(BaseModel):
    """The body of every error guestkey answers itself (4xx other than 422)."""

    detail: str
    code: str


def install_error_handlers(app: FastAPI) -> None:
    async def render(_: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, GuestkeyError)
        if isinstance(error, InvalidInput):
            return JSONResponse({"detail": error.detail(), "code": error.code}, status_code=422)
        body: dict[str, Any] = {"detail": error.message, "code": error.code}
        if error.details:
            body.update(error.details)
        return JSONResponse(body, status_code=error.status_code, headers=error.response_headers())

    async def render_http(_: Request, error: Exception) -> JSONResponse:
        # FastAPI's and Starlette's own errors (unreadable body, unknown route, wrong method),
        # in the same shape as guestkey's.
        assert isinstance(error, StarletteHTTPException)
        code = HTTP_ERROR_CODES.get(error.status_code, "http_error")
        return JSONResponse(
            {"detail": error.detail, "code": code},
            status_code=error.status_code,
            headers=error.headers,
        )

    async def render_invalid_request(_: Request, error: Exception) -> JSONResponse:
        # FastAPI's own 422, with the `code` every other error has and pydantic's messages
        # without their "Value error, " prefix.
        assert isinstance(error, RequestValidationError)
        detail = [
            {**problem, "msg": str(problem.get("msg", "")).removeprefix("Value error, ")}
            for problem in jsonable_encoder(error.errors())
        ]
        return JSONResponse({"detail": detail, "code": InvalidInput.code}, status_code=422)

    async def render_database_unavailable(_: Request, error: Exception) -> JSONResponse:
        log.warning("db.unavailable", error=type(error).__name__)
        return JSONResponse(
            {"detail": "database unavailable, retry shortly", "code": "database_unavailable"},
            status_code=503,
            headers={"Retry-After": "2"},
        )

    async def render_internal_error(_: Request, __: Exception) -> JSONResponse:
        # A bug, answered in the same shape as every other error. Starlette raises it again
        # after this answer, so the server logs its traceback once.
        return JSONResponse({"detail": "internal error", "code": "internal_error"}, status_code=500)

    app.add_exception_handler(GuestkeyError, render)
    app.add_exception_handler(Exception, render_internal_error)
    app.add_exception_handler(RequestValidationError, render_invalid_request)
    for database_error in DATABASE_UNAVAILABLE:
        app.add_exception_handler(database_error, render_database_unavailable)
    app.add_exception_handler(StarletteHTTPException, render_http)


# The database is down or restarting: nothing was written (the transaction did not commit),
# so the client may safely retry.
DATABASE_UNAVAILABLE: tuple[type[Exception], ...] = (
    sqlalchemy.exc.OperationalError,
    sqlalchemy.exc.InterfaceError,
    sqlalchemy.exc.TimeoutError,
    psycopg_pool.PoolTimeout,
    psycopg.OperationalError,
)

HTTP_ERROR_CODES = {
    400: "bad_request",
    401: "unauthorized",
    404: "not_found",
    405: "method_not_allowed",
    413: "body_too_large",
    429: "rate_limited",
}
