"""The Seam API endpoints the fake implements (paths, verbs and bodies as in Seam's spec).

Every endpoint takes ``POST`` with a JSON body; reads also ``GET``, ``update`` also ``PATCH``
(``webhooks/update``: ``PUT``) and deletes also ``DELETE`` (with a query string or a JSON body),
which is how the official SDK calls.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from app.seam.fake.errors import invalid_input
from app.seam.fake.schemas import (
    CreateAccessGrantParams,
    CreateWebhookParams,
    DeleteAccessGrantParams,
    DeleteAccessMethodParams,
    GetAccessGrantParams,
    GetAccessMethodParams,
    GetDeviceParams,
    GetEntranceParams,
    GetRelatedAccessMethodsParams,
    GetSpaceParams,
    GetUserIdentityParams,
    ListAccessGrantsParams,
    ListAccessMethodsParams,
    ListDevicesParams,
    ListEntrancesParams,
    ListEventsParams,
    ListSpacesParams,
    ListUserIdentitiesParams,
    NoParams,
    PageParams,
    RequestAccessMethodsParams,
    UpdateAccessGrantParams,
    UpdateUserIdentityParams,
    UpdateWebhookParams,
    WebhookParams,
    parse_request,
)
from app.seam.fake.seed import (
    ACS_SYSTEM_ID,
    CONNECTED_ACCOUNT_ID,
)
from app.seam.fake.views import (
    access_grant_json,
    access_method_json,
    device_json,
    devices_json,
    entrance_json,
    entrances_json,
    related_batch,
    space_json,
    user_identity_json,
    webhook_json,
    workspace_json,
)

if TYPE_CHECKING:
    from app.seam.fake.app import FakeSeam

Handler = Callable[["FakeSeam", Request], Awaitable[JSONResponse]]
ItemT = TypeVar("ItemT")

READ = ("GET", "POST")
UPDATE = ("PATCH", "POST")
PUT_UPDATE = ("PUT", "POST")
DELETE = ("DELETE", "POST")
CREATE = ("POST",)
DEFAULT_RELATED = {"spaces", "devices", "acs_entrances", "access_grants", "access_methods"}


def ok(**resources: Any) -> JSONResponse:
    return JSONResponse({**resources, "ok": True})


def encode_cursor(offset: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"offset": offset}).encode()).decode()


def decode_cursor(cursor: str | None) -> int:
    if cursor is None:
        return 0
    try:
        offset = json.loads(base64.urlsafe_b64decode(cursor.encode()))["offset"]
    except (ValueError, KeyError, TypeError, binascii.Error):
        raise invalid_input("Invalid page_cursor", field="page_cursor") from None
    if not isinstance(offset, int) or offset < 0:
        raise invalid_input("Invalid page_cursor", field="page_cursor")
    return offset


def paginate(
    items: Sequence[ItemT], params: PageParams, request: Request
) -> tuple[list[ItemT], dict[str, Any]]:
    offset = decode_cursor(params.page_cursor)
    end = offset + max(int(params.limit), 1)
    has_next_page = end < len(items)
    cursor = encode_cursor(end) if has_next_page else None
    return list(items[offset:end]), {
        "has_next_page": has_next_page,
        "next_page_cursor": cursor,
        "next_page_url": (
            str(request.url.include_query_params(page_cursor=cursor)) if cursor else None
        ),
    }


# --- access grants ---------------------------------------------------------------------------


async def create_access_grant(fake: FakeSeam, request: Request) -> JSONResponse:
    params = await parse_request(request, CreateAccessGrantParams)
    grant = fake.state.create_access_grant(params)
    fake.schedule_auto_issue(grant.access_method_ids)
    return ok(access_grant=access_grant_json(grant))


async def get_access_grant(fake: FakeSeam, request: Request) -> JSONResponse:
    params = await parse_request(request, GetAccessGrantParams)
    return ok(access_grant=access_grant_json(fake.state.find_grant(params)))


async def list_access_grants(fake: FakeSeam, request: Request) -> JSONResponse:
    params = await parse_request(request, ListAccessGrantsParams)
    page, pagination = paginate(fake.state.list_grants(params), params, request)
    return ok(access_grants=[access_grant_json(g) for g in page], pagination=pagination)


async def update_access_grant(fake: FakeSeam, request: Request) -> JSONResponse:
    fake.state.update_access_grant(await parse_request(request, UpdateAccessGrantParams))
    return ok()


async def delete_access_grant(fake: FakeSeam, request: Request) -> JSONResponse:
    params = await parse_request(request, DeleteAccessGrantParams)
    fake.state.delete_access_grant(params.access_grant_id)
    return ok()


async def request_access_methods(fake: FakeSeam, request: Request) -> JSONResponse:
    params = await parse_request(request, RequestAccessMethodsParams)
    methods = fake.state.request_access_methods(
        params.access_grant_id, params.requested_access_methods
    )
    fake.schedule_auto_issue(m.access_method_id for m in methods)
    return ok(access_grant=access_grant_json(fake.state.grant(params.access_grant_id)))


# --- access methods --------------------------------------------------------------------------


async def get_access_method(fake: FakeSeam, request: Request) -> JSONResponse:
    params = await parse_request(request, GetAccessMethodParams)
    return ok(access_method=access_method_json(fake.state.access_method(params.access_method_id)))


async def list_access_methods(fake: FakeSeam, request: Request) -> JSONResponse:
    params = await parse_request(request, ListAccessMethodsParams)
    methods = fake.state.list_access_methods(params)
    return ok(access_methods=[access_method_json(m) for m in methods])


async def get_related_access_methods(fake: FakeSeam, request: Request) -> JSONResponse:
    params = await parse_request(request, GetRelatedAccessMethodsParams)
    methods = [fake.state.access_method(m) for m in dict.fromkeys(params.access_method_ids)]
    resources: set[str] = set(params.include) if params.include else set(DEFAULT_RELATED)
    resources -= set(params.exclude or [])
    return ok(batch=related_batch(fake.state, methods, resources))


async def delete_access_method(fake: FakeSeam, request: Request) -> JSONResponse:
    fake.state.delete_access_methods(await parse_request(request, DeleteAccessMethodParams))
    return ok()


# --- events, doors, identities ---------------------------------------------------------------


async def list_events(fake: FakeSeam, request: Request) -> JSONResponse:
    params = await parse_request(request, ListEventsParams)
    return ok(events=fake.state.list_events(params))


async def list_devices(fake: FakeSeam, request: Request) -> JSONResponse:
    params = await parse_request(request, ListDevicesParams)
    devices = devices_json(fake.state, params.device_ids)
    types = {t for t in [params.device_type, *(params.device_types or [])] if t}
    accounts = {
        a for a in [params.connected_account_id, *(params.connected_account_ids or [])] if a
    }
    devices = [
        d
        for d in devices
        if (not types or d["device_type"] in types)
        and (not accounts or CONNECTED_ACCOUNT_ID in accounts)
        and (params.manufacturer is None or params.manufacturer == "august")
        and (params.space_id is None or params.space_id in d["space_ids"])
        and (not params.search or params.search.lower() in d["display_name"].lower())
    ]
    page, pagination = paginate(devices, params, request)
    return ok(devices=page, pagination=pagination)


async def list_acs_entrances(fake: FakeSeam, request: Request) -> JSONResponse:
    params = await parse_request(request, ListEntrancesParams)
    entrances = [
        e
        for e in entrances_json(fake.state, params.acs_entrance_ids)
        if (params.acs_system_id is None or params.acs_system_id == ACS_SYSTEM_ID)
        and (params.connected_account_id in (None, e["connected_account_id"]))
        and (params.space_id is None or params.space_id in e["space_ids"])
        and (not params.search or params.search.lower() in e["display_name"].lower())
    ]
    page, pagination = paginate(entrances, params, request)
    return ok(acs_entrances=page, pagination=pagination)


async def get_device(fake: FakeSeam, request: Request) -> JSONResponse:
    params = await parse_request(request, GetDeviceParams)
    return ok(device=device_json(fake.state, fake.state.device(params.device_id, params.name)))


async def get_acs_entrance(fake: FakeSeam, request: Request) -> JSONResponse:
    params = await parse_request(request, GetEntranceParams)
    entrance = fake.state.entrance(params.acs_entrance_id)
    return ok(acs_entrance=entrance_json(fake.state, entrance))


async def get_space(fake: FakeSeam, request: Request) -> JSONResponse:
    params = await parse_request(request, GetSpaceParams)
    return ok(space=space_json(fake.state.space(params.space_id, params.space_key)))


async def list_spaces(fake: FakeSeam, request: Request) -> JSONResponse:
    params = await parse_request(request, ListSpacesParams)
    spaces = [
        space_json(s)
        for s in fake.state.spaces.values()
        if (params.space_key is None or s.space_key == params.space_key)
        and (not params.search or params.search in s.name)
    ]
    page, pagination = paginate(spaces, params, request)
    return ok(spaces=page, pagination=pagination)


async def get_user_identity(fake: FakeSeam, request: Request) -> JSONResponse:
    params = await parse_request(request, GetUserIdentityParams)
    identity = fake.state.user_identity(params.user_identity_id, params.user_identity_key)
    return ok(user_identity=user_identity_json(identity))


async def list_user_identities(fake: FakeSeam, request: Request) -> JSONResponse:
    params = await parse_request(request, ListUserIdentitiesParams)
    identities = [
        user_identity_json(u)
        for u in fake.state.user_identities.values()
        if (params.user_identity_ids is None or u.user_identity_id in params.user_identity_ids)
        and (params.created_before is None or u.created_at < params.created_before)
    ]
    if params.search:  # case-sensitive, as in Seam
        searched = ("full_name", "email_address", "phone_number", "user_identity_id")
        identities = [u for u in identities if any(params.search in (u[k] or "") for k in searched)]
    page, pagination = paginate(identities, params, request)
    return ok(user_identities=page, pagination=pagination)


# --- workspace and webhooks ------------------------------------------------------------------


async def get_workspace(fake: FakeSeam, request: Request) -> JSONResponse:
    await parse_request(request, NoParams)
    return ok(workspace=workspace_json())


async def create_webhook(fake: FakeSeam, request: Request) -> JSONResponse:
    params = await parse_request(request, CreateWebhookParams)
    return ok(webhook=webhook_json(fake.create_webhook(params.url, params.event_types)))


async def get_webhook(fake: FakeSeam, request: Request) -> JSONResponse:
    params = await parse_request(request, WebhookParams)
    return ok(webhook=webhook_json(fake.api_webhook(params.webhook_id)))


async def list_webhooks(fake: FakeSeam, request: Request) -> JSONResponse:
    await parse_request(request, NoParams)
    return ok(webhooks=[webhook_json(w) for w in fake.api_webhooks.values()])


async def update_webhook(fake: FakeSeam, request: Request) -> JSONResponse:
    params = await parse_request(request, UpdateWebhookParams)
    fake.api_webhook(params.webhook_id).event_types = list(params.event_types)
    return ok()


async def delete_webhook(fake: FakeSeam, request: Request) -> JSONResponse:
    fake.delete_webhook((await parse_request(request, WebhookParams)).webhook_id)
    return ok()


# --- identity updates ----------------------------------------------------------------------


async def update_user_identity(fake: FakeSeam, request: Request) -> JSONResponse:
    params = await parse_request(request, UpdateUserIdentityParams)
    identity = fake.state.user_identity(params.user_identity_id)
    for name in ("full_name", "email_address", "phone_number", "user_identity_key"):
        if name in params.model_fields_set:
            setattr(identity, name, getattr(params, name))
    return ok()


ENDPOINTS: list[tuple[str, tuple[str, ...], Handler]] = [
    ("/access_grants/create", CREATE, create_access_grant),
    ("/access_grants/get", READ, get_access_grant),
    ("/access_grants/list", READ, list_access_grants),
    ("/access_grants/update", UPDATE, update_access_grant),
    ("/access_grants/delete", DELETE, delete_access_grant),
    ("/access_grants/request_access_methods", CREATE, request_access_methods),
    ("/access_methods/get", READ, get_access_method),
    ("/access_methods/list", READ, list_access_methods),
    ("/access_methods/get_related", READ, get_related_access_methods),
    ("/access_methods/delete", DELETE, delete_access_method),
    ("/events/list", READ, list_events),
    ("/devices/get", READ, get_device),
    ("/devices/list", READ, list_devices),
    ("/acs/entrances/get", READ, get_acs_entrance),
    ("/acs/entrances/list", READ, list_acs_entrances),
    ("/spaces/get", READ, get_space),
    ("/spaces/list", READ, list_spaces),
    ("/user_identities/get", READ, get_user_identity),
    ("/user_identities/list", READ, list_user_identities),
    ("/workspaces/get", READ, get_workspace),
    ("/webhooks/create", CREATE, create_webhook),
    ("/webhooks/get", READ, get_webhook),
    ("/webhooks/list", READ, list_webhooks),
    ("/webhooks/update", PUT_UPDATE, update_webhook),
    ("/webhooks/delete", DELETE, delete_webhook),
    ("/user_identities/update", UPDATE, update_user_identity),
]

SEAM_PATHS = frozenset(path for path, _, _ in ENDPOINTS)


def build_seam_router(fake: FakeSeam) -> APIRouter:
    router = APIRouter(tags=["seam"])
    for path, methods, handler in ENDPOINTS:
        for method in methods:
            router.add_api_route(
                path,
                bind(fake, handler),
                methods=[method],
                name=path,
                operation_id=f"{method.lower()}{path.replace('/', '_')}",
            )
    return router


def bind(fake: FakeSeam, handler: Handler) -> Callable[[Request], Awaitable[JSONResponse]]:
    async def endpoint(request: Request) -> JSONResponse:
        return await handler(fake, request)

    endpoint.__name__ = handler.__name__
    endpoint.__doc__ = handler.__doc__
    return endpoint
