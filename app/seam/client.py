"""guestkey's adapter over the official Seam SDK (`AsyncSeam`), one per process.

It exposes the handful of calls guestkey makes, returns plain dataclasses (and plain JSON for
events, nested SDK objects included), and turns every failure into `TransientSeamError` (retry
later) or `PermanentSeamError` (give up, say why). Every failed call is one log line with the
endpoint, status, Seam's error type and `seam-request-id` (what Seam's support asks for).
It imports no guestkey domain.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import dataclasses
import functools
import hashlib
import keyword
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Any, Literal, TypeVar, cast

import httpx
import structlog
from seam.exceptions import SeamHttpApiError
from seam.null import NULL
from seam.seam import AsyncSeam

from app.metrics import SEAM_CALL_SECONDS
from app.seam.errors import (
    PermanentSeamError,
    SeamError,
    SeamNotFound,
    SeamRejectedApiKey,
    TransientSeamError,
)

log = structlog.get_logger(__name__)

T = TypeVar("T")
DoorType = Literal["device", "acs_entrance", "space"]

# An identity search reads at most this many pages of this many identities.
IDENTITY_PAGE = 100
IDENTITY_SEARCH_PAGES = 10
_TRANSIENT_STATUSES = frozenset({408, 423, 425, 429})
_REJECTED_KEY_STATUSES = frozenset({401, 403})
_last_retry_after: contextvars.ContextVar[float | None] = contextvars.ContextVar(
    "seam_retry_after", default=None
)


@dataclass(frozen=True)
class GuestIdentity:
    full_name: str
    email_address: str | None
    phone_number: str | None

    @property
    def contact(self) -> str:
        return (self.email_address or self.phone_number or "").strip().lower()

    @property
    def user_identity_key(self) -> str:
        """Stable per person in the workspace, so a returning guest reuses their identity."""
        return "guestkey-" + hashlib.sha256(self.contact.encode()).hexdigest()[:32]


@dataclass(frozen=True)
class Grant:
    access_grant_id: str
    access_grant_key: str | None
    access_method_ids: list[str]
    starts_at: str | None
    ends_at: str | None
    user_identity_id: str | None = None
    space_ids: list[str] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class AccessMethodState:
    access_method_id: str
    mode: str
    is_issued: bool
    issued_at: str | None
    code: str | None = field(repr=False)
    warnings: list[dict[str, Any]] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)

    @property
    def is_backup_code(self) -> bool:
        return any(w.get("warning_code") == "pulled_backup_access_code" for w in self.warnings)

    @property
    def original_access_method_id(self) -> str | None:
        """For a backup code Seam issued under a new access method: the method it replaces."""
        for warning in self.warnings:
            original = warning.get("original_access_method_id")
            if warning.get("warning_code") == "pulled_backup_access_code" and original:
                return str(original)
        return None


@dataclass(frozen=True)
class Door:
    type: DoorType
    id: str
    name: str


@dataclass(frozen=True)
class DoorInfo:
    """A door of the workspace as guestkey's door list keeps it (DESIGN.md §9.2)."""

    type: DoorType
    id: str
    name: str
    can_take_pin_code: bool
    online: bool | None


def _plain(value: Any) -> Any:
    """The SDK's objects as plain JSON values, however deeply nested (an event's
    `changed_properties` is a list of SDK dataclasses, for one)."""
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {
            _json_name(f.name): _plain(getattr(value, f.name)) for f in dataclasses.fields(value)
        }
    if isinstance(value, Mapping):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_plain(item) for item in value]
    if isinstance(value, datetime):
        return value.isoformat()
    if hasattr(value, "__dict__"):
        return {k: _plain(v) for k, v in vars(value).items() if not k.startswith("_")}
    return str(value)


def _json_name(field_name: str) -> str:
    """The SDK names a field `from_` where Seam's JSON says `from` (a Python keyword)."""
    if field_name.endswith("_") and keyword.iskeyword(field_name[:-1]):
        return field_name[:-1]
    return field_name


def _as_dict(value: Any) -> dict[str, Any]:
    plain = _plain(value)
    return plain if isinstance(plain, dict) else {}


def _grant(resource: Any) -> Grant:
    return Grant(
        access_grant_id=resource.access_grant_id,
        access_grant_key=resource.access_grant_key,
        access_method_ids=list(resource.access_method_ids or []),
        starts_at=resource.starts_at,
        ends_at=resource.ends_at,
        user_identity_id=getattr(resource, "user_identity_id", None),
        space_ids=list(getattr(resource, "space_ids", None) or []),
        errors=[_as_dict(e) for e in resource.errors or []],
        warnings=[_as_dict(w) for w in resource.warnings or []],
    )


def _access_method(resource: Any) -> AccessMethodState:
    return AccessMethodState(
        access_method_id=resource.access_method_id,
        mode=resource.mode,
        is_issued=bool(resource.is_issued),
        issued_at=resource.issued_at,
        code=resource.code,
        warnings=[_as_dict(w) for w in resource.warnings or []],
        errors=[_as_dict(e) for e in resource.errors or []],
    )


def _retry_after_seconds(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, (parsedate_to_datetime(value).timestamp() - time.time()))
    except (TypeError, ValueError):
        return None


async def _remember_retry_after(response: httpx.Response) -> None:
    if response.status_code >= 400:
        _last_retry_after.set(_retry_after_seconds(response.headers.get("retry-after")))


class SeamGateway:
    def __init__(self, seam: AsyncSeam) -> None:
        self._seam = seam

    @classmethod
    def connect(
        cls,
        *,
        api_key: str,
        endpoint: str,
        timeout_seconds: float = 20.0,
        max_connections: int = 20,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> SeamGateway:
        httpx_options: dict[str, Any] = {
            "event_hooks": {"response": [_remember_retry_after]},
            "limits": httpx.Limits(
                max_connections=max_connections, max_keepalive_connections=max_connections
            ),
        }
        if transport is not None:
            httpx_options["transport"] = transport
        seam = AsyncSeam(
            api_key=api_key,
            endpoint=endpoint,
            timeout=timeout_seconds,
            httpx_options=httpx_options,
            wait_for_action_attempt=False,
        )
        return cls(seam)

    async def aclose(self) -> None:
        await self._seam.close()

    async def _call(self, endpoint: str, request: Callable[[], Awaitable[T]]) -> T:
        _last_retry_after.set(None)
        started = time.perf_counter()
        outcome = "ok"
        try:
            return await request()
        except asyncio.CancelledError:  # the caller stopped waiting (a deadline of its own)
            outcome = "cancelled"
            raise
        except SeamError:
            outcome = "error"
            raise
        except SeamHttpApiError as error:  # SeamHttpUnauthorizedError (401) included
            outcome = f"http_{error.status_code}"
            failure = _classify(endpoint, error, _last_retry_after.get())
            _log_failure(endpoint, failure, request_id=error.request_id)
            raise failure from error
        except httpx.TimeoutException as error:
            outcome = "timeout"
            failure = TransientSeamError(f"Seam timed out on {endpoint}")
            _log_failure(endpoint, failure, request_id=None)
            raise failure from error
        except httpx.HTTPStatusError as error:
            status = error.response.status_code
            outcome = f"http_{status}"
            failure = _classify_status(
                endpoint,
                status,
                _retry_after_seconds(error.response.headers.get("retry-after")),
            )
            _log_failure(
                endpoint, failure, request_id=error.response.headers.get("seam-request-id")
            )
            raise failure from error
        except httpx.TransportError as error:
            outcome = "connection_error"
            failure = TransientSeamError(
                f"cannot reach Seam ({type(error).__name__}) on {endpoint}"
            )
            _log_failure(endpoint, failure, request_id=None)
            raise failure from error
        finally:
            SEAM_CALL_SECONDS.labels(endpoint, outcome).observe(time.perf_counter() - started)

    # access grants

    async def find_grant(self, access_grant_key: str) -> Grant | None:
        try:
            resource = await self._call(
                "access_grants.get",
                lambda: self._seam.access_grants.get(access_grant_key=access_grant_key),
            )
        except SeamNotFound:
            return None
        return _grant(resource)

    async def get_grant(self, access_grant_id: str) -> Grant:
        resource = await self._call(
            "access_grants.get",
            lambda: self._seam.access_grants.get(access_grant_id=access_grant_id),
        )
        return _grant(resource)

    async def create_grant(
        self,
        *,
        access_grant_key: str,
        name: str,
        guest: GuestIdentity,
        starts_at: datetime,
        ends_at: datetime,
        device_ids: Sequence[str],
        acs_entrance_ids: Sequence[str],
        space_ids: Sequence[str],
        user_identity_id: str | None = None,
    ) -> Grant:
        """One create call: for the identity `user_identity_id` when given, else with the guest
        as an inline identity (which Seam refuses when that guest already has one)."""
        identity: dict[str, Any] = {}
        if user_identity_id is None:
            identity = {"full_name": guest.full_name, "user_identity_key": guest.user_identity_key}
            if guest.email_address:
                identity["email_address"] = guest.email_address
            elif guest.phone_number:
                identity["phone_number"] = guest.phone_number
        resource = await self._call(
            "access_grants.create",
            lambda: self._seam.access_grants.create(
                access_grant_key=access_grant_key,
                name=name,
                requested_access_methods=[{"mode": "code"}],
                starts_at=starts_at.isoformat(),
                ends_at=ends_at.isoformat(),
                device_ids=list(device_ids) or None,
                acs_entrance_ids=list(acs_entrance_ids) or None,
                space_ids=list(space_ids) or None,
                user_identity_id=user_identity_id,
                user_identity=identity or None,
            ),
        )
        return _grant(resource)

    async def update_grant_times(
        self, access_grant_id: str, *, starts_at: datetime, ends_at: datetime
    ) -> None:
        await self._call(
            "access_grants.update",
            lambda: self._seam.access_grants.update(
                access_grant_id=access_grant_id,
                starts_at=starts_at.isoformat(),
                ends_at=ends_at.isoformat(),
            ),
        )

    async def delete_grant(self, access_grant_id: str) -> bool:
        """Delete the grant (never the user identity). False when it was already gone."""
        try:
            await self._call(
                "access_grants.delete",
                lambda: self._seam.access_grants.delete(access_grant_id=access_grant_id),
            )
        except SeamNotFound:
            return False
        return True

    # user identities

    async def find_user_identity(self, guest: GuestIdentity) -> str | None:
        """The guest's existing identity: by guestkey's key, else by email or phone, whatever
        its letter case (Seam's search is case-sensitive; its uniqueness of emails is not)."""
        try:
            found = await self._call(
                "user_identities.get",
                lambda: self._seam.user_identities.get(user_identity_key=guest.user_identity_key),
            )
            return str(found.user_identity_id)
        except SeamNotFound:
            pass
        if not guest.contact:
            return None
        given = guest.email_address or guest.phone_number or ""
        for search in dict.fromkeys(s for s in (given, guest.contact, guest.full_name) if s):
            async with contextlib.aclosing(self._search_identities(search)) as pages:
                async for page in pages:
                    for candidate in page:
                        if guest.contact in (
                            (candidate.email_address or "").lower(),
                            (candidate.phone_number or "").lower(),
                        ):
                            return str(candidate.user_identity_id)
        return None

    async def _search_identities(self, search: str) -> AsyncGenerator[list[Any], None]:
        """The pages of identities Seam's search finds (a substring of a name, email or phone
        matches, so a common name finds many), at most IDENTITY_SEARCH_PAGES of them."""
        paginator = self._seam.create_paginator(
            self._seam.user_identities.list, {"search": search, "limit": IDENTITY_PAGE}
        )
        page, pagination = await self._call("user_identities.list", paginator.first_page)
        yield page
        for _ in range(IDENTITY_SEARCH_PAGES - 1):
            if not (pagination and pagination.has_next_page and pagination.next_page_cursor):
                return
            cursor = pagination.next_page_cursor
            page, pagination = await self._call(
                "user_identities.list", functools.partial(paginator.next_page, cursor)
            )
            yield page

    # access methods

    async def get_access_method(self, access_method_id: str) -> AccessMethodState:
        resource = await self._call(
            "access_methods.get",
            lambda: self._seam.access_methods.get(access_method_id=access_method_id),
        )
        return _access_method(resource)

    async def list_access_methods(self, access_grant_id: str) -> list[AccessMethodState]:
        resources = await self._call(
            "access_methods.list",
            lambda: self._seam.access_methods.list(access_grant_id=access_grant_id),
        )
        return [_access_method(resource) for resource in resources]

    async def doors_of(self, access_method_ids: Sequence[str]) -> list[Door]:
        """The doors (locks and entrances) the access methods open, with their display names."""
        batch = await self._call(
            "access_methods.get_related",
            lambda: self._seam.access_methods.get_related(
                access_method_ids=list(access_method_ids),
                # Asked for by name: the spec documents no default set of related resources.
                include=["devices", "acs_entrances", "spaces"],
            ),
        )
        doors: list[Door] = []
        for device in batch.devices or []:
            doors.append(Door("device", device["device_id"], _display_name(device, "device_id")))
        for entrance in batch.acs_entrances or []:
            doors.append(
                Door(
                    "acs_entrance",
                    entrance["acs_entrance_id"],
                    _display_name(entrance, "acs_entrance_id"),
                )
            )
        if not doors:
            # Spaces hold the doors; only when Seam names no door itself is the space the door.
            for space in batch.spaces or []:
                doors.append(Door("space", space["space_id"], _display_name(space, "space_id")))
        return doors

    # events

    async def list_events(
        self,
        *,
        after: datetime,
        before: datetime,
        event_types: Collection[str],
        limit: int = 500,
        offset: int | None = None,
    ) -> list[dict[str, Any]]:
        """Events created strictly between `after` and `before` (Seam's `between` is an open
        interval), of the given types, as plain JSON. At most `limit`; in Seam's order."""
        events = await self._call(
            "events.list",
            lambda: self._seam.events.list(
                between=[after.isoformat(), before.isoformat()],
                event_types=cast(Any, sorted(event_types)),
                limit=limit,
                unstable_offset=offset,
            ),
        )
        return [_as_dict(event) for event in events]

    # the workspace's doors

    async def list_devices(
        self, *, device_ids: Sequence[str] | None = None, space_id: str | None = None
    ) -> list[DoorInfo]:
        """The workspace's devices (every page), or those of `device_ids` that exist, or those
        in the space `space_id`."""
        params: dict[str, Any] = {} if device_ids is None else {"device_ids": list(device_ids)}
        if space_id is not None:
            params["space_id"] = space_id
        devices = await self._call(
            "devices.list",
            lambda: self._seam.create_paginator(self._seam.devices.list, params).flatten_to_list(),
        )
        return [_device_door(_as_dict(device)) for device in devices]

    async def list_entrances(
        self, *, acs_entrance_ids: Sequence[str] | None = None, space_id: str | None = None
    ) -> list[DoorInfo]:
        """The workspace's ACS entrances (every page), or those of `acs_entrance_ids`, or
        those in the space `space_id`."""
        params: dict[str, Any] = (
            {} if acs_entrance_ids is None else {"acs_entrance_ids": list(acs_entrance_ids)}
        )
        if space_id is not None:
            params["space_id"] = space_id
        entrances = await self._call(
            "acs.entrances.list",
            lambda: self._seam.create_paginator(
                self._seam.acs.entrances.list, params
            ).flatten_to_list(),
        )
        return [_entrance_door(_as_dict(entrance)) for entrance in entrances]

    async def list_spaces(self) -> list[DoorInfo]:
        """The workspace's spaces (every page). A space takes whatever its doors take."""
        spaces = await self._call(
            "spaces.list",
            lambda: self._seam.create_paginator(self._seam.spaces.list).flatten_to_list(),
        )
        return [_space_door(_as_dict(space)) for space in spaces]

    # workspace and webhooks (`guestkey seam connect`, `guestkey doctor`)

    async def workspace(self) -> Workspace:
        """The workspace the API key opens."""
        resource = await self._call("workspaces.get", lambda: self._seam.workspaces.get())
        return Workspace(
            workspace_id=str(resource.workspace_id),
            name=str(resource.name),
            is_sandbox=bool(resource.is_sandbox),
        )

    async def list_webhooks(self) -> list[Webhook]:
        resources = await self._call("webhooks.list", lambda: self._seam.webhooks.list())
        return [_webhook(resource) for resource in resources]

    async def get_webhook(self, webhook_id: str) -> Webhook:
        resource = await self._call(
            "webhooks.get", lambda: self._seam.webhooks.get(webhook_id=webhook_id)
        )
        return _webhook(resource)

    async def create_webhook(self, *, url: str, event_types: Sequence[str]) -> Webhook:
        resource = await self._call(
            "webhooks.create",
            lambda: self._seam.webhooks.create(url=url, event_types=list(event_types)),
        )
        return _webhook(resource)

    async def update_webhook_event_types(
        self, webhook_id: str, *, event_types: Sequence[str]
    ) -> None:
        await self._call(
            "webhooks.update",
            lambda: self._seam.webhooks.update(
                webhook_id=webhook_id, event_types=list(event_types)
            ),
        )

    # erasure

    async def rename_grant(self, access_grant_id: str, *, name: str) -> bool:
        """False when the grant is gone (nothing left to rename)."""
        try:
            await self._call(
                "access_grants.update",
                lambda: self._seam.access_grants.update(access_grant_id=access_grant_id, name=name),
            )
        except SeamNotFound:
            return False
        return True

    async def anonymise_user_identity(self, user_identity_key: str, *, full_name: str) -> bool:
        """Erase the guest's name, email, phone and key from their identity (which is kept:
        deleting it would revoke access granted through it). False when none has the key."""
        try:
            found = await self._call(
                "user_identities.get",
                lambda: self._seam.user_identities.get(user_identity_key=user_identity_key),
            )
            identity_id = str(found.user_identity_id)
            await self._call(
                "user_identities.update",
                lambda: self._seam.user_identities.update(
                    user_identity_id=identity_id,
                    full_name=full_name,
                    email_address=NULL,
                    phone_number=NULL,
                    user_identity_key=NULL,
                ),
            )
        except SeamNotFound:
            return False
        return True

    # the guest's page

    async def request_code(self, access_grant_id: str) -> Grant:
        """One more PIN code on an existing grant (`access_grants/request_access_methods`):
        Seam answers with the grant, whose `access_method_ids` now include the new method."""
        resource = await self._call(
            "access_grants.request_access_methods",
            lambda: self._seam.access_grants.request_access_methods(
                access_grant_id=access_grant_id, requested_access_methods=[{"mode": "code"}]
            ),
        )
        return _grant(resource)


def _device_door(device: dict[str, Any]) -> DoorInfo:
    properties = device.get("properties") or {}
    online = properties.get("online") if isinstance(properties, dict) else None
    return DoorInfo(
        type="device",
        id=str(device["device_id"]),
        name=_display_name(device, "device_id"),
        # Seam's capability flags: absent, the device lacks the capability; false, it has it
        # but it does not work now (a keypad disconnected). An offline lock keeps it true.
        can_take_pin_code=device.get("can_program_online_access_codes") is True,
        online=online if isinstance(online, bool) else None,
    )


def _entrance_door(entrance: dict[str, Any]) -> DoorInfo:
    return DoorInfo(
        type="acs_entrance",
        id=str(entrance["acs_entrance_id"]),
        name=_display_name(entrance, "acs_entrance_id"),
        can_take_pin_code=entrance.get("can_unlock_with_code") is True,  # absent: it cannot
        online=None,  # Seam reports no connectivity for an entrance
    )


def _space_door(space: dict[str, Any]) -> DoorInfo:
    return DoorInfo(
        type="space",
        id=str(space["space_id"]),
        name=_display_name(space, "space_id"),
        can_take_pin_code=True,
        online=None,
    )


def _display_name(resource: dict[str, Any], id_field: str) -> str:
    name = resource.get("display_name") or resource.get("name")
    if not name and isinstance(resource.get("properties"), dict):
        name = resource["properties"].get("name")
    return str(name or resource[id_field])


def _rejected_key(endpoint: str, status: int, error_type: str) -> SeamRejectedApiKey:
    return SeamRejectedApiKey(
        f"Seam rejected the API key ({status} {error_type} on {endpoint}): "
        "check SEAM_API_KEY and that it belongs to the workspace",
        error_type=error_type,
        status=status,
    )


def _classify(endpoint: str, error: SeamHttpApiError, retry_after: float | None) -> SeamError:
    status = error.status_code
    error_type = error.code or "unknown_error"
    if status in _REJECTED_KEY_STATUSES:
        return _rejected_key(endpoint, status, error_type)
    message = f"{error_type}: {error}"
    if status >= 500 or status in _TRANSIENT_STATUSES:
        return TransientSeamError(
            message, error_type=error_type, status=status, retry_after=retry_after
        )
    if status == 404 or error_type.endswith("_not_found"):
        return SeamNotFound(message, error_type=error_type, status=status)
    return PermanentSeamError(message, error_type=error_type, status=status)


def _classify_status(endpoint: str, status: int, retry_after: float | None) -> SeamError:
    """A failure without Seam's error body (a proxy's 502, say)."""
    if status in _REJECTED_KEY_STATUSES:
        return _rejected_key(endpoint, status, "unknown_error")
    message = f"Seam answered {status} on {endpoint}"
    if status >= 500 or status in _TRANSIENT_STATUSES:
        return TransientSeamError(message, status=status, retry_after=retry_after)
    return PermanentSeamError(message, status=status)


class _Throttle:
    """True at most once per `seconds` (per process)."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._last = float("-inf")

    def __call__(self) -> bool:
        now = time.monotonic()
        if now - self._last < self.seconds:
            return False
        self._last = now
        return True


# A rejected key fails every call: one error line a minute says so; the rest are warnings.
_rejected_key_error_due = _Throttle(60.0)


def _log_failure(endpoint: str, error: SeamError, *, request_id: str | None) -> None:
    """One line per failed call, never with a traceback: the caller decides what it means."""
    fields: dict[str, Any] = {
        "endpoint": endpoint,
        "status": error.status,
        "error_type": error.error_type,
        "seam_request_id": request_id,
    }
    if isinstance(error, SeamRejectedApiKey):
        if _rejected_key_error_due():
            log.error("seam.api_key_rejected", **fields, hint="check SEAM_API_KEY")
        else:
            log.warning("seam.api_key_rejected", **fields)
    elif isinstance(error, SeamNotFound):
        log.info("seam.not_found", **fields)
    elif isinstance(error, TransientSeamError):
        log.warning("seam.call_failed", **fields, error=str(error), retry_after=error.retry_after)
    else:
        log.warning("seam.call_refused", **fields, error=str(error))


@dataclass(frozen=True)
class Workspace:
    workspace_id: str
    name: str
    is_sandbox: bool


@dataclass(frozen=True)
class Webhook:
    webhook_id: str
    url: str
    event_types: list[str]
    secret: str | None = field(repr=False, default=None)


def _webhook(resource: Any) -> Webhook:
    return Webhook(
        webhook_id=str(resource.webhook_id),
        url=str(resource.url),
        event_types=list(resource.event_types or []),
        secret=resource.secret,
    )
