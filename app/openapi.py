"""The OpenAPI description `/docs` and `/openapi.json` serve: every field of every request and
response described, and the 422 body as guestkey sends it (with its `code`).

Descriptions live here, by schema and field, rather than on each model field: a reader of the
models sees the validation, a reader of `/docs` sees the meaning. A field declared with its own
`Field(description=…)` keeps it. A test asserts that no field is left without one.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

_GUEST = {
    "name": "The guest's name, as the message greets them.",
    "email": "Where the code is emailed. `email` or `phone` is required.",
    "phone": "Where the code is texted, in E.164 form (+14155550100).",
    "locale": "The guest's language for messages: en, es, fr, de, it, pt or nl (a region "
    "variant such as `pt-BR` is read as its language).",
}
_DOOR_IDS = {
    "device_ids": "Seam ids of locks (devices) the code opens.",
    "acs_entrance_ids": "Seam ids of access-control entrances the code opens.",
    "space_ids": "Seam ids of spaces: the code opens every door in them.",
}
_STAY = {
    "starts_at": "When the code starts working (ISO 8601 with a UTC offset).",
    "ends_at": "When the code stops working; after `starts_at` and in the future.",
    "property_name": "The property's name, shown to the guest.",
    "property_address": "The property's address, shown to the guest (several lines allowed).",
    "timezone": "A region time zone (`Europe/Lisbon`) or `UTC`: the message shows times in it.",
}

FIELD_DESCRIPTIONS: dict[str, dict[str, str]] = {
    "GuestIn": _GUEST,
    "GuestOut": _GUEST,
    "ReservationIn": {
        "guest": "Who gets the code, and how to reach them.",
        **_STAY,
        **_DOOR_IDS,
    },
    "ReservationOut": {
        "reservation_key": "The booking system's own key for the reservation (from the URL).",
        "status": "Where the reservation is: pending, granted, issued, delivered, failed or "
        "cancelled.",
        "guest": "Who gets the code (erased after the retention period).",
        **_STAY,
        **_DOOR_IDS,
        "access_grant_id": "The Seam access grant made for the stay, once created.",
        "access_methods": "The PIN codes Seam issued for the grant.",
        "doors": "The doors the code opens, named as Seam names them.",
        "deliveries": "Messages to the guest: each channel and recipient, and how it went.",
        "last_error": "Why the last attempt failed, while retrying or once failed.",
        "warnings": "What Seam reported that the booking system may want to act on: a door "
        "that cannot take a code, a code that is late, …",
        "created_at": "When guestkey first stored the reservation.",
        "updated_at": "When the reservation last changed.",
    },
    "AccessMethodOut": {
        "access_method_id": "Seam's id of the access method.",
        "mode": "How it opens the door: `code` (a PIN code).",
        "is_issued": "Whether Seam has issued the code and it is on the locks.",
        "issued_at": "When Seam issued it.",
        "code": "The PIN code, once issued.",
        "is_backup_code": "Seam issued a backup code because the first could not be set.",
    },
    # A reservation's doors and the workspace's door list (`GET /v1/doors`) share these.
    "DoorOut": {
        "type": "`device` (a lock), `acs_entrance` or `space`.",
        "id": "The door's Seam id.",
        "name": "The door's name, as Seam knows it and the guest reads it.",
        "state": "The door's access state, when known.",
        "can_take_pin_code": "Whether a PIN code can open it: a device that can program online "
        "access codes, an entrance that opens with a code; a space always.",
        "online": "The lock's own report of its connection; null for entrances and spaces.",
    },
    "DoorList": {"items": "The workspace's doors, as guestkey last read them from Seam."},
    "WarningOut": {
        "code": "Seam's warning or error code.",
        "message": "What Seam said, in words.",
        "door_id": "The door it concerns, if one.",
    },
    "DeliveryOut": {
        "channel": "`email` or `sms`.",
        "to": "The recipient: an email address or a phone number.",
        "status": "scheduled, sending, retrying, sent, failed, superseded or cancelled.",
        "kind": "Why it was sent: the first code, a new code, new dates, a resend…",
        "attempts": "How many times sending was tried.",
        "send_after": "Not sent before this time (`GUESTKEY_DELIVERY_LEAD`).",
        "sent_at": "When it was handed to the mail server or SMS provider.",
        "error": "Why the last attempt failed.",
    },
    "ReservationPage": {
        "items": "Reservations, newest first.",
        "next_cursor": "Pass it back as `cursor` for the next page; null on the last one.",
    },
    "Timeline": {
        "reservation_key": "The booking system's key for the reservation.",
        "events": "What happened, in time order.",
    },
    "TimelineEntry": {
        "kind": "What happened: requested, grant_created, issued, delivered, cancelled, …",
        "reason": "Why, where there is more to say.",
        "detail": "Ids and values involved (never a code).",
        "at": "When it happened.",
    },
    "ErrorOut": {
        "detail": "What went wrong, in words.",
        "code": "A stable machine-readable code: `not_found`, `unauthorized`, "
        "`reservation_cancelled`, `no_issued_code`, …",
    },
    "HTTPValidationError": {
        "detail": "One entry per invalid field; `loc` names it.",
        "code": "Always `invalid_input`.",
    },
    "ValidationError": {
        "loc": "Where the problem is: `body`, then the field's path.",
        "msg": "What is wrong with it.",
        "type": "The kind of problem (pydantic's error type).",
        "input": "The value that was given.",
        "ctx": "Details of the rule that failed.",
    },
}


def install_openapi(app: FastAPI) -> None:
    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title,
                version=app.version,
                summary=app.summary,
                description=app.description,
                routes=app.routes,
            )
            describe(schema)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def describe(schema: dict[str, Any]) -> None:
    components = schema.get("components", {}).get("schemas", {})
    validation_error = components.get("HTTPValidationError")
    if validation_error is not None:  # guestkey's 422 carries a code, like every error
        validation_error.setdefault("properties", {})["code"] = {
            "type": "string",
            "title": "Code",
        }
    for name, component in components.items():
        # Two models of one name are listed by their module path: app__doors__schemas__DoorOut.
        fields = FIELD_DESCRIPTIONS.get(name.rsplit("__", 1)[-1], {})
        for field, property_schema in component.get("properties", {}).items():
            if field in fields:
                property_schema.setdefault("description", fields[field])
