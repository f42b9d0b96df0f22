"""Domain errors carry their HTTP status; one handler renders them. Services never raise
HTTPException."""

from __future__ import annotations

from typing import Any, ClassVar

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse


class GuestkeyError(Exception):
    status_code: ClassVar[int] = 400
    code: ClassVar[str] = "bad_request"
    headers: ClassVar[dict[str, str]] = {}

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class NotFound(GuestkeyError):
    status_code = 404
    code = "not_found"


class Conflict(GuestkeyError):
    status_code = 409
    code = "conflict"


class Unauthorized(GuestkeyError):
    status_code = 401
    code = "unauthorized"
    headers = {"WWW-Authenticate": "Bearer"}


class InvalidInput(GuestkeyError):
    status_code = 422
    code = "invalid_input"


def install_error_handlers(app: FastAPI) -> None:
    async def render(_: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, GuestkeyError)
        body: dict[str, Any] = {"detail": error.message, "code": error.code}
        if error.details:
            body.update(error.details)
        return JSONResponse(body, status_code=error.status_code, headers=error.headers)

    app.add_exception_handler(GuestkeyError, render)
