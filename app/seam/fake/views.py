"""The fake's resources rendered as Seam's JSON objects (``components/schemas`` of the spec)."""

from __future__ import annotations

from typing import Any

from app.seam.fake.seed import (
    SEEDED_AT,
    WORKSPACE_ID,
    device_object,
    entrance_object,
)
from app.seam.fake.state import (
    AccessGrant,
    AccessMethod,
    Device,
    Entrance,
    FakeSeamState,
    Space,
    UserIdentity,
    iso,
)
from app.seam.fake.webhooks import ApiWebhook


def access_grant_json(grant: AccessGrant) -> dict[str, Any]:
    body: dict[str, Any] = {
        "access_grant_id": grant.access_grant_id,
        "workspace_id": WORKSPACE_ID,
        "user_identity_id": grant.user_identity_id,
        "space_ids": list(grant.space_ids),
        "location_ids": list(grant.space_ids),
        "requested_access_methods": [
            {
                "mode": requested.mode,
                "display_name": requested.display_name,
                "created_at": iso(requested.created_at),
                "created_access_method_ids": list(requested.created_access_method_ids),
            }
            for requested in grant.requested_access_methods
        ],
        "access_method_ids": list(grant.access_method_ids),
        "name": grant.name,
        "display_name": grant.name or "Access Grant",
        "created_at": iso(grant.created_at),
        "starts_at": iso(grant.starts_at),
        "ends_at": iso(grant.ends_at) if grant.ends_at is not None else None,
        "warnings": list(grant.warnings),
        "errors": list(grant.errors),
        "pending_mutations": [],
    }
    if grant.access_grant_key is not None:
        body["access_grant_key"] = grant.access_grant_key
    if grant.reservation_key is not None:
        body["reservation_key"] = grant.reservation_key
    return body


def access_method_json(method: AccessMethod) -> dict[str, Any]:
    body: dict[str, Any] = {
        "access_method_id": method.access_method_id,
        "workspace_id": WORKSPACE_ID,
        "display_name": method.display_name,
        "mode": method.mode,
        "created_at": iso(method.created_at),
        "issued_at": iso(method.issued_at) if method.issued_at is not None else None,
        "is_issued": method.is_issued,
        "warnings": list(method.warnings),
        "errors": list(method.errors),
        "pending_mutations": [],
    }
    if method.mode == "code":
        body["code"] = method.code
    if method.instant_key_url is not None:
        body["instant_key_url"] = method.instant_key_url
    return body


def user_identity_json(identity: UserIdentity) -> dict[str, Any]:
    display_name = (
        identity.full_name or identity.email_address or identity.phone_number or "Unnamed user"
    )
    return {
        "user_identity_id": identity.user_identity_id,
        "user_identity_key": identity.user_identity_key,
        "email_address": identity.email_address,
        "phone_number": identity.phone_number,
        "display_name": display_name,
        "full_name": identity.full_name,
        "created_at": iso(identity.created_at),
        "workspace_id": WORKSPACE_ID,
        "errors": [],
        "warnings": [],
        "acs_user_ids": [],
    }


def space_json(space: Space) -> dict[str, Any]:
    body: dict[str, Any] = {
        "space_id": space.space_id,
        "workspace_id": WORKSPACE_ID,
        "name": space.name,
        "display_name": space.name,
        "created_at": iso(space.created_at),
        "device_count": len(space.device_ids),
        "acs_entrance_count": len(space.acs_entrance_ids),
    }
    if space.space_key is not None:
        body["space_key"] = space.space_key
    return body


def device_json(state: FakeSeamState, device: Device) -> dict[str, Any]:
    return device_object(
        device.door,
        space_ids=state.space_ids_holding(device_id=device.door.id),
        created_at=iso(SEEDED_AT),
        online=device.online,
        takes_codes=device.takes_codes,
    )


def entrance_json(state: FakeSeamState, entrance: Entrance) -> dict[str, Any]:
    return entrance_object(
        entrance.door,
        space_ids=state.space_ids_holding(entrance_id=entrance.door.id),
        created_at=iso(SEEDED_AT),
        unlocks_with_code=entrance.unlocks_with_code,
    )


def devices_json(state: FakeSeamState, device_ids: list[str] | None = None) -> list[dict[str, Any]]:
    return [
        device_json(state, device)
        for device_id, device in state.devices.items()
        if device_ids is None or device_id in device_ids
    ]


def entrances_json(
    state: FakeSeamState, entrance_ids: list[str] | None = None
) -> list[dict[str, Any]]:
    return [
        entrance_json(state, entrance)
        for entrance_id, entrance in state.entrances.items()
        if entrance_ids is None or entrance_id in entrance_ids
    ]


def related_batch(
    state: FakeSeamState, methods: list[AccessMethod], resources: set[str]
) -> dict[str, Any]:
    """``access_methods/get_related``: the grants of ``methods`` and their spaces, and the doors
    of the methods already issued (as in Seam, a door is related once the code is on it)."""
    grants = list({m.access_grant_id: state.grants[m.access_grant_id] for m in methods}.values())
    space_ids = list(dict.fromkeys(s for g in grants for s in g.space_ids))
    doors = [state.method_doors(m) for m in methods if m.is_issued]
    device_ids = list(dict.fromkeys(d for devices, _ in doors for d in devices))
    entrance_ids = list(dict.fromkeys(e for _, entrances in doors for e in entrances))
    batch: dict[str, Any] = {
        "spaces": [space_json(state.spaces[s]) for s in space_ids],
        "devices": devices_json(state, device_ids),
        "acs_entrances": entrances_json(state, entrance_ids),
        "access_grants": [access_grant_json(g) for g in grants],
        "access_methods": [access_method_json(m) for m in methods],
    }
    return {name: items for name, items in batch.items() if name in resources}


def workspace_json() -> dict[str, Any]:
    return {
        "workspace_id": WORKSPACE_ID,
        "name": "guestkey fake workspace",
        "company_name": "guestkey",
        "is_sandbox": True,
        "is_suspended": False,
        "connect_webview_customization": {},
        "connect_partner_name": None,
        "is_publishable_key_auth_enabled": False,
        "organization_id": None,
    }


def webhook_json(webhook: ApiWebhook) -> dict[str, Any]:
    return {
        "webhook_id": webhook.webhook_id,
        "url": webhook.sender.url,
        "event_types": list(webhook.event_types),
        "secret": webhook.sender.secret,
    }


def state_dump(state: FakeSeamState) -> dict[str, Any]:
    """``GET /_fake/state``: everything, codes included (it is a test fixture)."""
    return {
        "access_grants": [access_grant_json(g) for g in state.grants.values()],
        "access_methods": [
            {**access_method_json(m), "access_grant_id": m.access_grant_id}
            for m in state.access_methods.values()
        ],
        "user_identities": [user_identity_json(u) for u in state.user_identities.values()],
        "spaces": [space_json(s) for s in state.spaces.values()],
        "events": list(state.events),
        "calls": [
            {"method": c.method, "path": c.path, "status": c.status, "at": iso(c.at)}
            for c in state.calls
        ],
    }
