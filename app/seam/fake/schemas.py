"""Request parameters of the Seam endpoints the fake implements, and how they are read.

Seam takes every endpoint as ``POST`` with a JSON body; reads also as ``GET`` with a query string,
updates as ``PATCH`` and deletes as ``DELETE`` (the official SDK uses those). The SDK's query
strings (``seam.url_search_params_serializer``) repeat a key for each array item, send an empty
array as ``key=``, ``null`` as ``key=``, nested objects as dotted keys, and add ``_strict=true``;
:func:`read_params` undoes all of that. A parameter the endpoint does not take in Seam's spec is
refused (400 ``invalid_input`` naming it), as Seam's strict mode does; parameters Seam takes but
the fake does not act on are accepted and ignored.
"""

from __future__ import annotations

import json
import types
import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, Self, TypeVar, Union, get_args, get_origin

from fastapi import Request
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator

from app.seam.fake.errors import FakeSeamError
from app.seam.fake.spec import endpoint_parameters


def _check_uuid(value: str) -> str:
    try:
        uuid.UUID(value)
    except ValueError:
        raise ValueError("Invalid uuid") from None
    return value


def _aware(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


ParamsT = TypeVar("ParamsT", bound=BaseModel)
Uuid = Annotated[str, AfterValidator(_check_uuid)]
Timestamp = Annotated[datetime, AfterValidator(_aware)]
AccessMethodMode = Literal["code", "card", "mobile_key", "cloud_key"]
RelatedResource = Literal[
    "spaces",
    "devices",
    "acs_entrances",
    "access_grants",
    "access_methods",
    "instant_keys",
    "client_sessions",
    "acs_credentials",
]


class Params(BaseModel):
    model_config = ConfigDict(extra="ignore")


class StrictParams(BaseModel):
    """A nested object whose every key the fake knows: anything else is refused."""

    model_config = ConfigDict(extra="forbid")


class PageParams(Params):
    limit: float = Field(default=500, gt=0)
    page_cursor: str | None = None


def _at_least_one(params: BaseModel, *names: str) -> None:
    if all(getattr(params, name) is None for name in names):
        raise ValueError(f"Must provide one of: {', '.join(names)}")


# --- access grants ---------------------------------------------------------------------------


class InlineUserIdentity(StrictParams):
    full_name: str | None = Field(default=None, min_length=1)
    email_address: str | None = Field(default=None, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
    phone_number: str | None = Field(default=None, pattern=r"^\+[1-9]\d{6,14}$")
    user_identity_key: str | None = Field(default=None, min_length=1)


class RequestedAccessMethod(StrictParams):
    mode: AccessMethodMode
    code: str | None = Field(default=None, min_length=4, max_length=9, pattern=r"^\d+$")
    instant_key_max_use_count: int | None = Field(default=None, ge=1)

    @model_validator(mode="after")
    def code_only_for_code_mode(self) -> Self:
        if self.code is not None and self.mode != "code":
            raise ValueError("code is only allowed for mode 'code'")
        return self


class CreateAccessGrantParams(Params):
    requested_access_methods: list[RequestedAccessMethod] = Field(min_length=1)
    user_identity_id: Uuid | None = None
    user_identity: InlineUserIdentity | None = None
    device_ids: list[Uuid] = Field(default_factory=list)
    acs_entrance_ids: list[Uuid] = Field(default_factory=list)
    space_ids: list[Uuid] = Field(default_factory=list)
    location_ids: list[Uuid] = Field(default_factory=list)
    space_keys: list[Annotated[str, Field(min_length=1)]] = Field(default_factory=list)
    starts_at: Timestamp | None = None
    ends_at: Timestamp | None = None
    name: str | None = None
    access_grant_key: str | None = Field(default=None, min_length=1)
    reservation_key: str | None = None
    customization_profile_id: Uuid | None = None

    @model_validator(mode="after")
    def one_user_identity(self) -> Self:
        if (self.user_identity_id is None) == (self.user_identity is None):
            raise ValueError("Provide exactly one of user_identity_id or user_identity")
        doors = (self.device_ids, self.acs_entrance_ids, self.space_ids, self.space_keys)
        if not any(doors) and not self.location_ids:
            raise ValueError(
                "Provide at least one of device_ids, acs_entrance_ids, space_ids, space_keys"
            )
        return self


class GetAccessGrantParams(Params):
    access_grant_id: Uuid | None = None
    access_grant_key: str | None = None

    @model_validator(mode="after")
    def id_or_key(self) -> Self:
        _at_least_one(self, "access_grant_id", "access_grant_key")
        return self


class ListAccessGrantsParams(PageParams):
    access_grant_ids: list[Uuid] | None = None
    access_grant_key: str | None = None
    user_identity_id: Uuid | None = None
    device_id: Uuid | None = None
    acs_entrance_id: Uuid | None = None
    space_id: Uuid | None = None
    reservation_key: str | None = None
    search: str | None = None


class UpdateAccessGrantParams(GetAccessGrantParams):
    starts_at: Timestamp | None = None
    ends_at: Timestamp | None = None
    name: str | None = None


class DeleteAccessGrantParams(Params):
    access_grant_id: Uuid


class RequestAccessMethodsParams(Params):
    access_grant_id: Uuid
    requested_access_methods: list[RequestedAccessMethod] = Field(min_length=1)


# --- access methods --------------------------------------------------------------------------


class GetAccessMethodParams(Params):
    access_method_id: Uuid


class ListAccessMethodsParams(Params):
    access_grant_id: Uuid | None = None
    access_grant_key: str | None = Field(default=None, min_length=1)
    device_id: Uuid | None = None
    acs_entrance_id: Uuid | None = None
    space_id: Uuid | None = None
    access_code_id: Uuid | None = None

    @model_validator(mode="after")
    def some_filter(self) -> Self:
        _at_least_one(
            self, "access_grant_id", "access_grant_key", "device_id", "acs_entrance_id", "space_id"
        )
        return self


class GetRelatedAccessMethodsParams(Params):
    access_method_ids: list[Uuid]
    include: list[RelatedResource] | None = None
    exclude: list[RelatedResource] | None = None


class DeleteAccessMethodParams(Params):
    access_method_id: Uuid | None = None
    access_grant_id: Uuid | None = None
    reservation_key: str | None = None

    @model_validator(mode="after")
    def one_target(self) -> Self:
        _at_least_one(self, "access_method_id", "access_grant_id", "reservation_key")
        return self


# --- events, doors, identities ---------------------------------------------------------------


class ListEventsParams(Params):
    since: Timestamp | None = None
    between: list[Timestamp] | None = Field(default=None, min_length=2, max_length=2)
    access_grant_id: Uuid | None = None
    access_grant_ids: list[Uuid] | None = None
    access_method_id: Uuid | None = None
    access_method_ids: list[Uuid] | None = None
    event_type: str | None = None
    event_types: list[str] | None = None
    event_ids: list[Uuid] | None = None
    device_id: Uuid | None = None
    device_ids: list[Uuid] | None = None
    acs_entrance_id: Uuid | None = None
    limit: float = Field(default=500, gt=0)
    unstable_offset: float | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def since_or_between(self) -> Self:
        if (self.since is None) == (self.between is None):
            raise ValueError("Provide exactly one of since or between")
        return self


class ListDevicesParams(PageParams):
    device_ids: list[Uuid] | None = None
    device_type: str | None = None
    device_types: list[str] | None = None
    manufacturer: str | None = None
    connected_account_id: Uuid | None = None
    connected_account_ids: list[Uuid] | None = None
    space_id: Uuid | None = None
    search: str | None = None


class ListEntrancesParams(PageParams):
    limit: float = Field(default=900, gt=0)
    acs_entrance_ids: list[Uuid] | None = None
    acs_system_id: Uuid | None = None
    connected_account_id: Uuid | None = None
    space_id: Uuid | None = None
    search: str | None = None


class UpdateUserIdentityParams(Params):
    user_identity_id: Uuid
    full_name: str | None = None
    email_address: str | None = None
    phone_number: str | None = None
    user_identity_key: str | None = None


class GetUserIdentityParams(Params):
    user_identity_id: Uuid | None = None
    user_identity_key: str | None = None

    @model_validator(mode="after")
    def id_or_key(self) -> Self:
        _at_least_one(self, "user_identity_id", "user_identity_key")
        return self


class ListUserIdentitiesParams(PageParams):
    user_identity_ids: list[Uuid] | None = None
    search: str | None = None
    created_before: Timestamp | None = None


class GetDeviceParams(Params):
    device_id: Uuid | None = None
    name: str | None = None

    @model_validator(mode="after")
    def id_or_name(self) -> Self:
        _at_least_one(self, "device_id", "name")
        return self


class GetEntranceParams(Params):
    acs_entrance_id: Uuid


class GetSpaceParams(Params):
    space_id: Uuid | None = None
    space_key: str | None = None

    @model_validator(mode="after")
    def id_or_key(self) -> Self:
        _at_least_one(self, "space_id", "space_key")
        return self


class ListSpacesParams(PageParams):
    space_key: str | None = None
    search: str | None = Field(default=None, min_length=1)


# --- workspace and webhooks ------------------------------------------------------------------


class NoParams(Params):
    pass


class CreateWebhookParams(Params):
    url: str = Field(pattern=r"^https?://")
    event_types: list[str] = Field(default_factory=lambda: ["*"])


class WebhookParams(Params):
    webhook_id: str


class UpdateWebhookParams(WebhookParams):
    event_types: list[str]


# --- reading a request -----------------------------------------------------------------------


def _is_list_annotation(annotation: Any) -> bool:
    if get_origin(annotation) is list:
        return True
    if get_origin(annotation) in (Union, types.UnionType):
        return any(_is_list_annotation(arg) for arg in get_args(annotation))
    return False


def array_fields(model: type[BaseModel]) -> frozenset[str]:
    return frozenset(
        name for name, field in model.model_fields.items() if _is_list_annotation(field.annotation)
    )


def parse_query(items: list[tuple[str, str]], arrays: frozenset[str]) -> dict[str, Any]:
    """Turn the SDK's query string back into the JSON body it stands for."""
    params: dict[str, Any] = {}
    for key, value in items:
        if key == "_strict":
            continue
        if key in arrays:
            params.setdefault(key, []).append(value)
            continue
        *parents, leaf = key.split(".")
        target = params
        for parent in parents:
            target = target.setdefault(parent, {})
        target[leaf] = value if value != "" else None
    for key in arrays & params.keys():
        if params[key] == [""]:
            params[key] = []
    return params


async def read_params(request: Request, model: type[BaseModel]) -> dict[str, Any]:
    """Query string and JSON body merged (the body wins), whatever the HTTP method."""
    params = parse_query(request.query_params.multi_items(), array_fields(model))
    body = await request.body()
    if body.strip():
        try:
            data = json.loads(body)
        except ValueError:
            raise FakeSeamError(400, "invalid_input", "Request body is not valid JSON") from None
        if not isinstance(data, dict):
            raise FakeSeamError(400, "invalid_input", "Request body must be a JSON object")
        params.update(data)
    return params


def validation_errors(error: ValidationError) -> dict[str, Any]:
    """Pydantic errors in zod's ``format()`` shape, which Seam sends as ``validation_errors``."""
    formatted: dict[str, Any] = {"_errors": []}
    for item in error.errors():
        node = formatted
        for part in item["loc"]:
            node = node.setdefault(str(part), {"_errors": []})
        node["_errors"].append(item["msg"].removeprefix("Value error, "))
    return formatted


def error_message(error: ValidationError) -> str:
    parts = []
    for item in error.errors():
        message = item["msg"].removeprefix("Value error, ")
        where = ".".join(str(part) for part in item["loc"])
        parts.append(f"{where}: {message}" if where else message)
    return "Invalid input: " + "; ".join(parts)


def validate(model: type[ParamsT], raw: dict[str, Any]) -> ParamsT:
    try:
        return model.model_validate(raw)
    except ValidationError as error:
        raise FakeSeamError(
            400, "invalid_input", error_message(error), validation_errors=validation_errors(error)
        ) from None


def reject_unknown_parameters(path: str, params: dict[str, Any]) -> None:
    """Seam's strict mode: a parameter the endpoint does not take is an error, not ignored."""
    known = endpoint_parameters(path)
    unknown = sorted(params.keys() - known) if known is not None else []
    if unknown:
        message = "Unrecognized key(s) in object: " + ", ".join(f"'{key}'" for key in unknown)
        raise FakeSeamError(400, "invalid_input", message, validation_errors={"_errors": [message]})


async def parse_request(request: Request, model: type[ParamsT]) -> ParamsT:
    params = await read_params(request, model)
    reject_unknown_parameters(request.url.path.rstrip("/"), params)
    return validate(model, params)
