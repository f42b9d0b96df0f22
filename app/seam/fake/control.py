"""``/_fake/*``: endpoints that let tests steer the fake Seam (no API key needed).

- ``POST /_fake/issue {access_method_id? | access_grant_id?}`` — issue now, even for an offline
  lock (``access_method.issued``).
- ``POST /_fake/reissue {access_method_id, code?, is_backup_code?}`` — new code on the same
  method (``access_method.reissued``).
- ``POST /_fake/backup_code {access_method_id, code?}`` — Seam's backup code: a new issued method
  on the same grant, warning ``pulled_backup_access_code`` (``access_method.created``, then
  ``access_method.issued`` with ``is_backup_code``).
- ``POST /_fake/emit {event_type, ...fields}`` — record and send any event.
- ``POST /_fake/emit_samples {event_types?, fields?}`` — record and send one sample of each event
  type of Seam's spec (all by default), ``fields`` replacing the values the samples have.
- ``POST /_fake/device {device_id, online?, can_take_codes?}`` — a lock goes offline
  (``device.disconnected``) or online (``device.connected``, delayed codes issued), or gains or
  loses its keypad.
- ``POST /_fake/api_key {forbidden}`` — the API key answers 403 (or no longer).
- ``POST /_fake/fail {count, status, error_type?, message?, retry_after?, endpoint?,
  after_success?, timeout_seconds?}`` — the next ``count`` matching Seam calls fail (see
  :class:`FailureRule`).
- ``POST /_fake/auto_issue {enabled, delay?}`` — turn auto-issuing on or off.
- ``POST /_fake/webhooks {enabled, url?, secret?}``, ``GET /_fake/webhooks`` (config and message
  log), ``POST /_fake/webhooks/resend {svix_id}`` (same id and body, fresh signature).
- ``GET /_fake/health`` — ``{"ok": true}`` once the server is up (for process-level tests).
- ``GET /_fake/state`` — grants, access methods (with codes), identities, spaces, events, calls.
- ``POST /_fake/reset`` — forget grants, methods, identities, events, calls, webhook messages,
  webhooks made through the API, a forbidden key and pending failures; the seeded doors are as
  at the start; the webhook/auto-issue settings stay.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Self

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, model_validator

from app.seam.fake.errors import FakeSeamError, invalid_input, not_found
from app.seam.fake.schemas import validate
from app.seam.fake.views import access_method_json, device_json, state_dump

if TYPE_CHECKING:
    from app.seam.fake.app import FakeSeam


class ControlParams(BaseModel):
    model_config = ConfigDict(extra="forbid")


class IssueParams(ControlParams):
    access_method_id: str | None = None
    access_grant_id: str | None = None

    @model_validator(mode="after")
    def one_target(self) -> Self:
        if (self.access_method_id is None) == (self.access_grant_id is None):
            raise ValueError("Provide exactly one of access_method_id or access_grant_id")
        return self


class ReissueParams(ControlParams):
    access_method_id: str
    code: str | None = Field(default=None, min_length=4, max_length=9, pattern=r"^\d+$")
    is_backup_code: bool | None = None


class BackupCodeParams(ControlParams):
    access_method_id: str
    code: str | None = Field(default=None, min_length=4, max_length=9, pattern=r"^\d+$")


class EmitSamplesParams(ControlParams):
    event_types: list[str] | None = None
    fields: dict[str, Any] = Field(default_factory=dict)


class DeviceParams(ControlParams):
    device_id: str
    online: bool | None = None
    can_take_codes: bool | None = None


class ApiKeyParams(ControlParams):
    forbidden: bool


class FailParams(ControlParams):
    count: int = Field(default=1, ge=1)
    status: int = Field(default=503, ge=0, le=599)
    error_type: str | None = None
    message: str | None = None
    retry_after: float | None = Field(default=None, ge=0)
    endpoint: str | None = None
    after_success: bool = False
    timeout_seconds: float | None = Field(default=None, ge=0)


class AutoIssueParams(ControlParams):
    enabled: bool
    delay: float | None = Field(default=None, ge=0)


class WebhooksParams(ControlParams):
    enabled: bool
    url: str | None = None
    secret: str | None = Field(default=None, pattern=r"^whsec_")


class ResendParams(ControlParams):
    svix_id: str


async def json_body(request: Request) -> dict[str, Any]:
    body = await request.body()
    if not body.strip():
        return {}
    try:
        data = json.loads(body)
    except ValueError:
        raise FakeSeamError(400, "invalid_input", "Request body is not valid JSON") from None
    if not isinstance(data, dict):
        raise FakeSeamError(400, "invalid_input", "Request body must be a JSON object")
    return data


def build_control_router(fake: FakeSeam) -> APIRouter:
    router = APIRouter(prefix="/_fake", tags=["fake control"])

    @router.post("/issue")
    async def issue(request: Request) -> JSONResponse:
        params = validate(IssueParams, await json_body(request))
        if params.access_method_id is not None:
            methods = [fake.state.access_method(params.access_method_id)]
        else:
            grant = fake.state.grant(params.access_grant_id)
            methods = [fake.state.access_methods[m] for m in grant.access_method_ids]
        issued = [m.access_method_id for m in methods if fake.state.issue(m)]
        return JSONResponse({"ok": True, "issued_access_method_ids": issued})

    @router.post("/reissue")
    async def reissue(request: Request) -> JSONResponse:
        params = validate(ReissueParams, await json_body(request))
        method = fake.state.access_method(params.access_method_id)
        fake.state.reissue(method, params.code, params.is_backup_code)
        return JSONResponse({"ok": True, "access_method": access_method_json(method)})

    @router.post("/backup_code")
    async def backup_code(request: Request) -> JSONResponse:
        params = validate(BackupCodeParams, await json_body(request))
        original = fake.state.access_method(params.access_method_id)
        backup = fake.state.pull_backup_code(original, params.code)
        return JSONResponse({"ok": True, "access_method": access_method_json(backup)})

    @router.post("/emit_samples")
    async def emit_samples(request: Request) -> JSONResponse:
        params = validate(EmitSamplesParams, await json_body(request))
        events = fake.state.emit_samples(params.event_types, params.fields)
        return JSONResponse({"ok": True, "events": events})

    @router.post("/device")
    async def change_device(request: Request) -> JSONResponse:
        params = validate(DeviceParams, await json_body(request))
        device = fake.state.device(params.device_id)
        fake.state.change_device(device, online=params.online, takes_codes=params.can_take_codes)
        return JSONResponse({"ok": True, "device": device_json(fake.state, device)})

    @router.post("/api_key")
    async def api_key(request: Request) -> JSONResponse:
        params = validate(ApiKeyParams, await json_body(request))
        fake.key_forbidden = params.forbidden
        return JSONResponse({"ok": True, "forbidden": fake.key_forbidden})

    @router.post("/emit")
    async def emit(request: Request) -> JSONResponse:
        fields = await json_body(request)
        event_type = fields.pop("event_type", None)
        if not isinstance(event_type, str) or not event_type:
            raise invalid_input("event_type is required", field="event_type")
        event = fake.state.record_event(event_type, **fields)
        return JSONResponse({"ok": True, "event": event})

    @router.post("/fail")
    async def fail(request: Request) -> JSONResponse:
        params = validate(FailParams, await json_body(request))
        rule = fake.add_failure(params)
        return JSONResponse({"ok": True, "failure": rule.to_json()})

    @router.post("/auto_issue")
    async def auto_issue(request: Request) -> JSONResponse:
        params = validate(AutoIssueParams, await json_body(request))
        fake.auto_issue = params.enabled
        if params.delay is not None:
            fake.issue_delay = params.delay
        return JSONResponse({"ok": True, "enabled": fake.auto_issue, "delay": fake.issue_delay})

    @router.post("/webhooks")
    async def configure_webhooks(request: Request) -> JSONResponse:
        params = validate(WebhooksParams, await json_body(request))
        fake.webhooks.configure(enabled=params.enabled, url=params.url, secret=params.secret)
        return JSONResponse({"ok": True, **webhook_config(fake)})

    @router.get("/webhooks")
    async def webhook_log() -> JSONResponse:
        return JSONResponse({"ok": True, **webhook_config(fake), "messages": fake.webhooks.log()})

    @router.post("/webhooks/resend")
    async def resend(request: Request) -> JSONResponse:
        params = validate(ResendParams, await json_body(request))
        if params.svix_id not in fake.webhooks.messages:
            raise not_found("webhook_message_not_found", f"No message {params.svix_id}")
        message = await fake.webhooks.resend(params.svix_id)
        return JSONResponse({"ok": True, "message": message.to_json()})

    @router.get("/health")
    async def health() -> JSONResponse:
        return JSONResponse({"ok": True})

    @router.get("/state")
    async def state() -> JSONResponse:
        return JSONResponse({"ok": True, **state_dump(fake.state)})

    @router.post("/reset")
    async def reset() -> JSONResponse:
        fake.reset()
        return JSONResponse({"ok": True})

    return router


def webhook_config(fake: FakeSeam) -> dict[str, Any]:
    return {
        "enabled": fake.webhooks.enabled,
        "url": fake.webhooks.url,
        "secret": fake.webhooks.secret,
    }
