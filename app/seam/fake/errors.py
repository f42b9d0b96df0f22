"""Seam's error envelope, as the fake answers it.

Every failure is ``{"error": {"type", "message", "validation_errors"?}, "ok": false}`` with the
HTTP status carried by :class:`FakeSeamError`. The types the fake uses (real Seam documents
few of them; where it does not, the name follows Seam's ``<thing>_<problem>`` habit):

==========================================  ======  ============================================
type                                        status  when
==========================================  ======  ============================================
``unauthorized``                            401     no ``Authorization: Bearer seam_…`` header,
                                                    or not the key the fake was given
``forbidden``                               403     the key was made forbidden
                                                    (``POST /_fake/api_key``)
``invalid_input``                           400     a parameter is missing, malformed,
                                                    contradictory or unknown to the endpoint
                                                    (``validation_errors`` set)
``access_grant_key_already_exists``         400     ``access_grants/create`` with a key in use
``user_identity_email_address_taken``       400     inline identity, email address in use
``user_identity_phone_number_taken``        400     inline identity, phone number in use
``user_identity_key_taken``                 400     inline identity, ``user_identity_key`` in use
``access_grant_not_found``                  404     unknown ``access_grant_id`` / key
``access_method_not_found``                 404     unknown ``access_method_id``
``user_identity_not_found``                 404     unknown ``user_identity_id`` / key
``device_not_found``                        404     unknown id in ``device_ids``
``acs_entrance_not_found``                  404     unknown id in ``acs_entrance_ids``
``space_not_found``                         404     unknown id/key in ``space_ids``/``space_keys``
``webhook_not_found``                       404     unknown ``webhook_id``
``endpoint_not_found``                      404     a path the fake does not implement
``method_not_allowed``                      405     a verb the endpoint does not take
==========================================  ======  ============================================

Failures injected with ``POST /_fake/fail`` use the type given there, or a default per status
(see :func:`default_error_type`).
"""

from __future__ import annotations

from typing import Any

from fastapi.responses import JSONResponse

DEFAULT_ERROR_TYPES = {
    400: "invalid_input",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    408: "request_timeout",
    409: "conflict",
    429: "rate_limit_exceeded",
    500: "internal_server_error",
    502: "bad_gateway",
    503: "service_unavailable",
    504: "gateway_timeout",
}


class FakeSeamError(Exception):
    """A Seam API error: rendered as the error envelope with ``status``."""

    def __init__(
        self,
        status: int,
        error_type: str,
        message: str,
        *,
        validation_errors: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.error_type = error_type
        self.message = message
        self.validation_errors = validation_errors
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {"type": self.error_type, "message": self.message}
        if self.validation_errors is not None:
            error["validation_errors"] = self.validation_errors
        return {"error": error, "ok": False}

    def response(self) -> JSONResponse:
        return JSONResponse(self.body(), status_code=self.status, headers=self.headers)


def default_error_type(status: int) -> str:
    return DEFAULT_ERROR_TYPES.get(status, "fake_failure")


def invalid_input(message: str, *, field: str | None = None) -> FakeSeamError:
    """A 400 ``invalid_input`` naming one field, in zod's ``format()`` shape like Seam."""
    validation_errors: dict[str, Any] = {"_errors": []}
    if field is None:
        validation_errors["_errors"].append(message)
    else:
        validation_errors[field] = {"_errors": [message]}
    return FakeSeamError(400, "invalid_input", message, validation_errors=validation_errors)


def not_found(error_type: str, message: str) -> FakeSeamError:
    return FakeSeamError(404, error_type, message)
