"""The fake Seam workspace: an in-memory store and the Seam behaviour on top of it.

Everything here is synchronous and runs on the event loop's thread, so no locking is needed.
Every change records an event (the same object ``events/list`` returns and webhooks carry) and
hands it to ``on_event``; :class:`app.seam.fake.app.FakeSeam` sends it as a webhook.

Like Seam, a grant on a door that cannot take a PIN code gets the code on its other doors only:
a lock without online access codes adds the warning ``device_does_not_support_access_codes``, and
every such door (or entrance without ``can_unlock_with_code``) is named by the grant's error
``cannot_create_requested_access_methods`` and the event
``access_grant.could_not_create_requested_access_methods``. A code for an offline lock is not
issued: ``access_method.delay_in_issuing`` (and the method's warning) instead, then issued when the
lock is back online. ``access_methods/get_related`` names a method's doors only once it is issued.
A backup code is a new access method (warning ``pulled_backup_access_code``). Identity search is
case-sensitive; email uniqueness is not.

How it differs from real Seam (on purpose, to stay small and deterministic):

- One workspace, always ``WORKSPACE_ID``; the seeded doors change only when a test says so
  (``POST /_fake/device``).
- ``access_grants/create`` with ``device_ids``/``acs_entrance_ids`` makes one space for the
  grant holding those doors (real Seam does the same); ``space_ids``/``space_keys`` may name
  the seeded "Whole Property" space or a space made by another grant.
- Access methods are "issued" only by the auto-issue timer or ``POST /_fake/issue`` (which issues
  even for an offline lock) — no 72-hour-before-``starts_at`` scheduling. A requested code already
  used on one of the same locks is replaced (warning ``requested_code_unavailable``, as in Seam).
  A code method none of whose doors can take a code is never issued.
- An entrance left out of a grant is named only in the message of the grant's error and event:
  Seam's ``missing_device_ids`` holds devices, and the spec has no field for entrances.
- Deleting a grant or method is immediate (no ``being_deleted`` phase).
- ``events/list`` answers oldest first, like Seam's own fake (``seamapi/fake-seam-connect``);
  the spec does not document the order. ``limit`` keeps the first ``limit`` matches.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from app.seam.fake.errors import FakeSeamError, invalid_input, not_found
from app.seam.fake.schemas import (
    CreateAccessGrantParams,
    DeleteAccessMethodParams,
    GetAccessGrantParams,
    InlineUserIdentity,
    ListAccessGrantsParams,
    ListAccessMethodsParams,
    ListEventsParams,
    RequestedAccessMethod,
    UpdateAccessGrantParams,
)
from app.seam.fake.seed import (
    CARD_ONLY_ENTRANCES,
    CONNECTED_ACCOUNT_ID,
    KEYPADLESS_DEVICES,
    OFFLINE_DEVICES,
    SEEDED_AT,
    SEEDED_DEVICES,
    SEEDED_ENTRANCES,
    SEEDED_SPACE_KEYS,
    SEEDED_SPACES,
    WHOLE_PROPERTY_DOORS,
    WORKSPACE_ID,
    SeededDoor,
)
from app.seam.fake.spec import event_samples

EventListener = Callable[[dict[str, Any]], None]

MODE_DISPLAY_NAMES = {
    "code": "PIN Code",
    "card": "Card",
    "mobile_key": "Mobile Key",
    "cloud_key": "Cloud Key",
}


def utcnow() -> datetime:
    return datetime.now(UTC)


def iso(moment: datetime) -> str:
    """Seam's timestamp format: UTC, milliseconds, ``Z``."""
    return (
        moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
    )


def new_id() -> str:
    return str(uuid.uuid4())


def random_code() -> str:
    """Eight digits, no leading zero: distinctive enough that a test scanning logs for the code
    cannot mistake a year, a port or a migration number for it."""
    return str(10_000_000 + secrets.randbelow(90_000_000))


@dataclass
class Device:
    door: SeededDoor
    online: bool
    takes_codes: bool


@dataclass
class Entrance:
    door: SeededDoor
    unlocks_with_code: bool


@dataclass
class UserIdentity:
    user_identity_id: str
    created_at: datetime
    full_name: str | None = None
    email_address: str | None = None
    phone_number: str | None = None
    user_identity_key: str | None = None


@dataclass
class Space:
    space_id: str
    name: str
    created_at: datetime
    space_key: str | None = None
    device_ids: list[str] = field(default_factory=list)
    acs_entrance_ids: list[str] = field(default_factory=list)
    made_for_grant_id: str | None = None


@dataclass
class RequestedMethod:
    mode: str
    display_name: str
    created_at: datetime
    created_access_method_ids: list[str] = field(default_factory=list)


@dataclass
class AccessGrant:
    access_grant_id: str
    user_identity_id: str
    space_ids: list[str]
    requested_access_methods: list[RequestedMethod]
    created_at: datetime
    starts_at: datetime
    ends_at: datetime | None
    name: str | None = None
    access_grant_key: str | None = None
    reservation_key: str | None = None
    access_method_ids: list[str] = field(default_factory=list)
    warnings: list[dict[str, Any]] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)
    granted_to_all_doors: bool = False
    # Doors the grant's PIN codes could not be put on (Seam's partial create).
    codeless_device_ids: list[str] = field(default_factory=list)
    codeless_entrance_ids: list[str] = field(default_factory=list)


@dataclass
class AccessMethod:
    access_method_id: str
    access_grant_id: str
    mode: str
    display_name: str
    created_at: datetime
    code: str | None = None
    issued_at: datetime | None = None
    instant_key_url: str | None = None
    warnings: list[dict[str, Any]] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)

    @property
    def is_issued(self) -> bool:
        return self.issued_at is not None

    def has_warning(self, warning_code: str) -> bool:
        return any(w["warning_code"] == warning_code for w in self.warnings)


@dataclass
class Call:
    method: str
    path: str
    status: int
    at: datetime


def seeded_spaces() -> dict[str, Space]:
    whole_property = SEEDED_SPACES[0]
    return {
        whole_property.id: Space(
            space_id=whole_property.id,
            name=whole_property.name,
            created_at=SEEDED_AT,
            space_key=SEEDED_SPACE_KEYS[whole_property.id],
            device_ids=[d.id for d in SEEDED_DEVICES if d.name in WHOLE_PROPERTY_DOORS],
            acs_entrance_ids=[e.id for e in SEEDED_ENTRANCES if e.name in WHOLE_PROPERTY_DOORS],
        )
    }


def seeded_devices() -> dict[str, Device]:
    return {
        door.id: Device(
            door,
            online=door.id not in OFFLINE_DEVICES,
            takes_codes=door.id not in KEYPADLESS_DEVICES,
        )
        for door in SEEDED_DEVICES
    }


def seeded_entrances() -> dict[str, Entrance]:
    return {
        door.id: Entrance(door, unlocks_with_code=door.id not in CARD_ONLY_ENTRANCES)
        for door in SEEDED_ENTRANCES
    }


class FakeSeamState:
    """The workspace's data and the operations the Seam endpoints perform on it."""

    def __init__(self, on_event: EventListener | None = None) -> None:
        self.on_event = on_event
        self.reset()

    def reset(self) -> None:
        """Forget everything but the seeded doors, which are as they were at the start."""
        self.devices: dict[str, Device] = seeded_devices()
        self.entrances: dict[str, Entrance] = seeded_entrances()
        self.spaces: dict[str, Space] = seeded_spaces()
        self.grants: dict[str, AccessGrant] = {}
        self.access_methods: dict[str, AccessMethod] = {}
        self.user_identities: dict[str, UserIdentity] = {}
        self.events: list[dict[str, Any]] = []
        self.calls: list[Call] = []

    # --- events and calls --------------------------------------------------------------------

    def record_event(self, event_type: str, **fields: Any) -> dict[str, Any]:
        now = iso(utcnow())
        event: dict[str, Any] = {
            "event_id": new_id(),
            "event_type": event_type,
            "workspace_id": WORKSPACE_ID,
            "created_at": now,
            "occurred_at": now,
        }
        event.update({key: value for key, value in fields.items() if value is not None})
        self.events.append(event)
        if self.on_event is not None:
            self.on_event(event)
        return event

    def emit_samples(
        self, event_types: list[str] | None = None, fields: dict[str, Any] | None = None
    ) -> list[dict[str, Any]]:
        """Record one sample of each event type (every type of Seam's spec by default), with a
        fresh id and time; ``fields`` replace the values of the fields a sample has."""
        samples = event_samples()
        wanted = list(samples) if event_types is None else event_types
        unknown = [event_type for event_type in wanted if event_type not in samples]
        if unknown:
            raise invalid_input(f"Unknown event types: {', '.join(unknown)}", field="event_types")
        recorded = []
        for event_type in wanted:
            sample = samples[event_type]
            for fresh in ("event_id", "event_type", "created_at", "occurred_at"):
                del sample[fresh]
            overrides = {key: value for key, value in (fields or {}).items() if key in sample}
            recorded.append(self.record_event(event_type, **{**sample, **overrides}))
        return recorded

    def record_call(self, method: str, path: str, status: int) -> None:
        self.calls.append(Call(method=method, path=path, status=status, at=utcnow()))

    def method_event(self, event_type: str, method: AccessMethod, **fields: Any) -> dict[str, Any]:
        grant = self.grants.get(method.access_grant_id)
        keys = [grant.access_grant_key] if grant and grant.access_grant_key else None
        return self.record_event(
            event_type,
            access_method_id=method.access_method_id,
            access_grant_ids=[method.access_grant_id],
            access_grant_keys=keys,
            **fields,
        )

    # --- lookups -----------------------------------------------------------------------------

    def grant(self, access_grant_id: str | None = None, key: str | None = None) -> AccessGrant:
        for grant in self.grants.values():
            if access_grant_id is not None and grant.access_grant_id != access_grant_id:
                continue
            if key is not None and grant.access_grant_key != key:
                continue
            return grant
        raise not_found("access_grant_not_found", "Access grant not found")

    def access_method(self, access_method_id: str) -> AccessMethod:
        method = self.access_methods.get(access_method_id)
        if method is None:
            raise not_found("access_method_not_found", "Access method not found")
        return method

    def user_identity(
        self, user_identity_id: str | None = None, key: str | None = None
    ) -> UserIdentity:
        for identity in self.user_identities.values():
            if user_identity_id is not None and identity.user_identity_id != user_identity_id:
                continue
            if key is not None and identity.user_identity_key != key:
                continue
            return identity
        raise not_found("user_identity_not_found", "User identity not found")

    def grant_device_ids(self, grant: AccessGrant) -> list[str]:
        return _unique(d for space_id in grant.space_ids for d in self.spaces[space_id].device_ids)

    def grant_entrance_ids(self, grant: AccessGrant) -> list[str]:
        return _unique(
            e for space_id in grant.space_ids for e in self.spaces[space_id].acs_entrance_ids
        )

    def method_doors(self, method: AccessMethod) -> tuple[list[str], list[str]]:
        """The devices and entrances a method opens: for a code, those that can take it."""
        grant = self.grants[method.access_grant_id]
        device_ids, entrance_ids = self.grant_device_ids(grant), self.grant_entrance_ids(grant)
        if method.mode != "code":
            return device_ids, entrance_ids
        return (
            [d for d in device_ids if d not in grant.codeless_device_ids],
            [e for e in entrance_ids if e not in grant.codeless_entrance_ids],
        )

    def device(self, device_id: str | None = None, name: str | None = None) -> Device:
        for device in self.devices.values():
            if device_id not in (None, device.door.id) or name not in (None, device.door.name):
                continue
            return device
        raise not_found("device_not_found", "Device not found")

    def entrance(self, acs_entrance_id: str) -> Entrance:
        if acs_entrance_id not in self.entrances:
            raise not_found("acs_entrance_not_found", "Entrance not found")
        return self.entrances[acs_entrance_id]

    def space(self, space_id: str | None = None, key: str | None = None) -> Space:
        for space in self.spaces.values():
            if space_id not in (None, space.space_id) or key not in (None, space.space_key):
                continue
            return space
        raise not_found("space_not_found", "Space not found")

    def space_ids_holding(
        self, *, device_id: str | None = None, entrance_id: str | None = None
    ) -> list[str]:
        return [
            space.space_id
            for space in self.spaces.values()
            if (device_id is not None and device_id in space.device_ids)
            or (entrance_id is not None and entrance_id in space.acs_entrance_ids)
        ]

    # --- access grants -----------------------------------------------------------------------

    def create_access_grant(self, params: CreateAccessGrantParams) -> AccessGrant:
        """Validate everything first, then change state: a refused create leaves no trace."""
        now = utcnow()
        starts_at = params.starts_at or now
        check_access_times(starts_at, params.ends_at, now)
        if params.access_grant_key is not None:
            self.check_grant_key_free(params.access_grant_key)
        self.check_doors(params.device_ids, params.acs_entrance_ids)
        space_ids = self.resolve_spaces(
            [*params.space_ids, *params.location_ids], params.space_keys
        )
        if params.user_identity_id is not None:
            identity = self.user_identity(params.user_identity_id)
        else:
            assert params.user_identity is not None
            self.check_identity_free(params.user_identity)
            identity = self.add_user_identity(params.user_identity, now)

        grant_id = new_id()
        if params.device_ids or params.acs_entrance_ids:
            space_ids.append(self.add_grant_space(grant_id, params, now))
        grant = AccessGrant(
            access_grant_id=grant_id,
            user_identity_id=identity.user_identity_id,
            space_ids=space_ids,
            requested_access_methods=[],
            created_at=now,
            starts_at=starts_at,
            ends_at=params.ends_at,
            name=params.name,
            access_grant_key=params.access_grant_key,
            reservation_key=params.reservation_key,
        )
        self.grants[grant_id] = grant
        methods = [
            self.add_access_method(grant, request, now)
            for request in params.requested_access_methods
        ]
        self.record_event("access_grant.created", access_grant_id=grant_id)
        for method in methods:
            self.method_event("access_method.created", method)
        if any(request.mode == "code" for request in params.requested_access_methods):
            self.leave_out_codeless_doors(grant, now)
        return grant

    def leave_out_codeless_doors(self, grant: AccessGrant, now: datetime) -> None:
        """Seam's partial create: the code goes to the doors that can take one; the others are
        named by a warning (locks without online codes), the grant's error and an event."""
        devices = [self.devices[d] for d in self.grant_device_ids(grant)]
        entrances = [self.entrances[e] for e in self.grant_entrance_ids(grant)]
        codeless_devices = [d for d in devices if not d.takes_codes]
        codeless_entrances = [e for e in entrances if not e.unlocks_with_code]
        if not codeless_devices and not codeless_entrances:
            return
        for device in codeless_devices:
            grant.warnings.append(
                {
                    "warning_code": "device_does_not_support_access_codes",
                    "message": f"{device.door.name} does not support online access codes.",
                    "created_at": iso(now),
                    "device_id": device.door.id,
                }
            )
        grant.codeless_device_ids = [d.door.id for d in codeless_devices]
        grant.codeless_entrance_ids = [e.door.id for e in codeless_entrances]
        doors = [d.door for d in codeless_devices] + [e.door for e in codeless_entrances]
        names = ", ".join(door.name for door in doors)
        message = f"Could not create the requested access methods for: {names}."
        error: dict[str, Any] = {
            "error_code": "cannot_create_requested_access_methods",
            "message": message,
            "created_at": iso(now),
        }
        if codeless_devices:
            error["missing_device_ids"] = list(grant.codeless_device_ids)
        grant.errors.append(error)
        self.record_event(
            "access_grant.could_not_create_requested_access_methods",
            access_grant_id=grant.access_grant_id,
            error_message=message,
            missing_device_ids=error.get("missing_device_ids"),
        )

    def request_access_methods(
        self, access_grant_id: str, requests: list[RequestedAccessMethod]
    ) -> list[AccessMethod]:
        """``access_grants/request_access_methods``: more methods on an existing grant."""
        grant = self.grant(access_grant_id)
        now = utcnow()
        methods = [self.add_access_method(grant, request, now) for request in requests]
        for method in methods:
            self.method_event("access_method.created", method)
        return methods

    def check_grant_key_free(self, key: str) -> None:
        if any(grant.access_grant_key == key for grant in self.grants.values()):
            raise FakeSeamError(
                400,
                "access_grant_key_already_exists",
                f"An access grant with access_grant_key {key!r} already exists",
            )

    def check_doors(self, device_ids: list[str], entrance_ids: list[str]) -> None:
        for device_id in device_ids:
            if device_id not in self.devices:
                raise not_found("device_not_found", f"Device {device_id} not found")
        for entrance_id in entrance_ids:
            if entrance_id not in self.entrances:
                raise not_found("acs_entrance_not_found", f"Entrance {entrance_id} not found")

    def resolve_spaces(self, space_ids: list[str], space_keys: list[str]) -> list[str]:
        resolved = []
        for space_id in space_ids:
            if space_id not in self.spaces:
                raise not_found("space_not_found", f"Space {space_id} not found")
            resolved.append(space_id)
        by_key = {
            space.space_key: space.space_id for space in self.spaces.values() if space.space_key
        }
        for key in space_keys:
            if key not in by_key:
                raise not_found("space_not_found", f"Space with space_key {key!r} not found")
            resolved.append(by_key[key])
        return _unique(resolved)

    def check_identity_free(self, inline: InlineUserIdentity) -> None:
        for identity in self.user_identities.values():
            if inline.email_address and _same_email(identity.email_address, inline.email_address):
                raise FakeSeamError(
                    400,
                    "user_identity_email_address_taken",
                    "A user identity with this email_address already exists",
                )
            if inline.phone_number and identity.phone_number == inline.phone_number:
                raise FakeSeamError(
                    400,
                    "user_identity_phone_number_taken",
                    "A user identity with this phone_number already exists",
                )
            if inline.user_identity_key and identity.user_identity_key == inline.user_identity_key:
                raise FakeSeamError(
                    400,
                    "user_identity_key_taken",
                    "A user identity with this user_identity_key already exists",
                )

    def add_user_identity(self, inline: InlineUserIdentity, now: datetime) -> UserIdentity:
        identity = UserIdentity(
            user_identity_id=new_id(),
            created_at=now,
            full_name=inline.full_name,
            email_address=inline.email_address,
            phone_number=inline.phone_number,
            user_identity_key=inline.user_identity_key,
        )
        self.user_identities[identity.user_identity_id] = identity
        return identity

    def add_grant_space(self, grant_id: str, params: CreateAccessGrantParams, now: datetime) -> str:
        space = Space(
            space_id=new_id(),
            name=params.name or f"Access grant {grant_id[:8]}",
            created_at=now,
            device_ids=_unique(params.device_ids),
            acs_entrance_ids=_unique(params.acs_entrance_ids),
            made_for_grant_id=grant_id,
        )
        self.spaces[space.space_id] = space
        return space.space_id

    def add_access_method(
        self, grant: AccessGrant, request: RequestedAccessMethod, now: datetime
    ) -> AccessMethod:
        display_name = MODE_DISPLAY_NAMES[request.mode]
        method = AccessMethod(
            access_method_id=new_id(),
            access_grant_id=grant.access_grant_id,
            mode=request.mode,
            display_name=display_name,
            created_at=now,
        )
        if request.mode == "code":
            method.code = self.pick_code(grant, request.code, now)
        if request.mode == "mobile_key":
            method.instant_key_url = f"https://ik.seam.co/{secrets.token_urlsafe(6)}"
        self.access_methods[method.access_method_id] = method
        grant.access_method_ids.append(method.access_method_id)
        grant.requested_access_methods.append(
            RequestedMethod(
                mode=request.mode,
                display_name=display_name,
                created_at=now,
                created_access_method_ids=[method.access_method_id],
            )
        )
        return method

    def pick_code(self, grant: AccessGrant, requested: str | None, now: datetime) -> str:
        """The requested code, unless a lock of this grant already has it; else a fresh one."""
        taken = self.codes_on_devices(self.grant_device_ids(grant))
        if requested is not None and requested not in taken:
            return requested
        code = random_code()
        while code in taken:
            code = random_code()
        if requested is not None:
            grant.warnings.append(
                {
                    "warning_code": "requested_code_unavailable",
                    "message": (
                        "The requested code is already in use on a device; "
                        "a new code was generated."
                    ),
                    "created_at": iso(now),
                    "device_id": taken[requested],
                    "original_code": requested,
                    "new_code": code,
                }
            )
        return code

    def codes_on_devices(self, device_ids: list[str]) -> dict[str, str]:
        """Codes in use on any of ``device_ids`` → one device that has it."""
        taken: dict[str, str] = {}
        for method in self.access_methods.values():
            if method.code is None:
                continue
            shared = set(self.grant_device_ids(self.grants[method.access_grant_id])) & set(
                device_ids
            )
            if shared:
                taken[method.code] = sorted(shared)[0]
        return taken

    def find_grant(self, params: GetAccessGrantParams) -> AccessGrant:
        return self.grant(params.access_grant_id, params.access_grant_key)

    def list_grants(self, params: ListAccessGrantsParams) -> list[AccessGrant]:
        grants = list(self.grants.values())
        if params.access_grant_ids is not None:
            grants = [g for g in grants if g.access_grant_id in params.access_grant_ids]
        if "access_grant_key" in params.model_fields_set:
            grants = [g for g in grants if g.access_grant_key == params.access_grant_key]
        if params.user_identity_id is not None:
            grants = [g for g in grants if g.user_identity_id == params.user_identity_id]
        if params.reservation_key is not None:
            grants = [g for g in grants if g.reservation_key == params.reservation_key]
        if params.space_id is not None:
            grants = [g for g in grants if params.space_id in g.space_ids]
        if params.device_id is not None:
            grants = [g for g in grants if params.device_id in self.grant_device_ids(g)]
        if params.acs_entrance_id is not None:
            grants = [g for g in grants if params.acs_entrance_id in self.grant_entrance_ids(g)]
        if params.search:
            grants = [g for g in grants if self.grant_matches(g, params.search)]
        return grants

    def grant_matches(self, grant: AccessGrant, search: str) -> bool:
        identity = self.user_identities.get(grant.user_identity_id)
        haystack = [
            grant.name,
            grant.access_grant_key,
            grant.reservation_key,
            grant.access_grant_id,
            grant.user_identity_id,
        ]
        if identity is not None:
            haystack += [identity.full_name, identity.email_address, identity.phone_number]
        return any(search.lower() in value.lower() for value in haystack if value)

    def update_access_grant(self, params: UpdateAccessGrantParams) -> AccessGrant:
        grant = self.find_grant(params)
        changed = params.model_fields_set
        starts_at = params.starts_at if params.starts_at is not None else grant.starts_at
        ends_at = params.ends_at if "ends_at" in changed else grant.ends_at
        if "starts_at" in changed or "ends_at" in changed:
            check_access_times(starts_at, ends_at, utcnow())
        if "name" in changed:
            grant.name = params.name
        if (starts_at, ends_at) != (grant.starts_at, grant.ends_at):
            grant.starts_at, grant.ends_at = starts_at, ends_at
            self.record_event(
                "access_grant.access_times_changed",
                access_grant_id=grant.access_grant_id,
                access_grant_key=grant.access_grant_key,
                starts_at=iso(starts_at),
                ends_at=iso(ends_at) if ends_at is not None else None,
            )
        return grant

    def delete_access_grant(self, access_grant_id: str) -> None:
        """Remove the grant, its methods and its own space; never the user identity."""
        grant = self.grant(access_grant_id)
        self.record_event("access_grant.deleted", access_grant_id=grant.access_grant_id)
        for method_id in list(grant.access_method_ids):
            self.remove_access_method(self.access_methods[method_id])
        if grant.granted_to_all_doors:
            for entrance_id in self.grant_entrance_ids(grant):
                self.record_event(
                    "access_grant.access_to_door_lost",
                    access_grant_id=grant.access_grant_id,
                    acs_entrance_id=entrance_id,
                )
        for space_id in grant.space_ids:
            if self.spaces[space_id].made_for_grant_id == grant.access_grant_id:
                del self.spaces[space_id]
        del self.grants[grant.access_grant_id]

    # --- access methods ----------------------------------------------------------------------

    def list_access_methods(self, params: ListAccessMethodsParams) -> list[AccessMethod]:
        grants = list(self.grants.values())
        if params.access_grant_id is not None or params.access_grant_key is not None:
            grants = [self.grant(params.access_grant_id, params.access_grant_key)]
        if params.device_id is not None:
            grants = [g for g in grants if params.device_id in self.grant_device_ids(g)]
        if params.acs_entrance_id is not None:
            grants = [g for g in grants if params.acs_entrance_id in self.grant_entrance_ids(g)]
        if params.space_id is not None:
            grants = [g for g in grants if params.space_id in g.space_ids]
        return [self.access_methods[m] for g in grants for m in g.access_method_ids]

    def delete_access_methods(self, params: DeleteAccessMethodParams) -> None:
        if params.access_method_id is not None:
            targets = [self.access_method(params.access_method_id)]
        elif params.access_grant_id is not None:
            grant = self.grant(params.access_grant_id)
            targets = [self.access_methods[m] for m in grant.access_method_ids]
        else:
            targets = [
                self.access_methods[m]
                for g in self.grants.values()
                if g.reservation_key == params.reservation_key
                for m in g.access_method_ids
            ]
        for method in targets:
            self.remove_access_method(method)

    def remove_access_method(self, method: AccessMethod) -> None:
        self.method_event("access_method.deleted", method)
        grant = self.grants.get(method.access_grant_id)
        if grant is not None and method.access_method_id in grant.access_method_ids:
            grant.access_method_ids.remove(method.access_method_id)
        del self.access_methods[method.access_method_id]

    def issue_when_ready(self, method: AccessMethod) -> bool:
        """Issue as Seam would: not while one of the method's locks is offline (announced once as
        ``access_method.delay_in_issuing``), never when it opens no door; True when issued."""
        device_ids, entrance_ids = self.method_doors(method)
        if method.is_issued or not (device_ids or entrance_ids):
            return False
        if all(self.devices[d].online for d in device_ids):
            return self.issue(method)
        if not method.has_warning("delay_in_issuing"):
            method.warnings.append(
                {
                    "warning_code": "delay_in_issuing",
                    "message": "A device of this access method is offline; issuing is delayed.",
                    "created_at": iso(utcnow()),
                }
            )
            self.method_event("access_method.delay_in_issuing", method)
        return False

    def issue(self, method: AccessMethod) -> bool:
        """Mark a method issued (once) and announce it; False when it already was."""
        if method.is_issued:
            return False
        method.issued_at = utcnow()
        method.warnings = [w for w in method.warnings if w["warning_code"] != "delay_in_issuing"]
        extra: dict[str, Any] = {}
        if method.mode == "code":
            extra = {"code": method.code, "is_backup_code": False}
        self.method_event("access_method.issued", method, **extra)
        self.announce_doors_if_complete(self.grants[method.access_grant_id])
        return True

    def announce_doors_if_complete(self, grant: AccessGrant) -> None:
        methods = [self.access_methods[m] for m in grant.access_method_ids]
        if grant.granted_to_all_doors or not all(m.is_issued for m in methods):
            return
        grant.granted_to_all_doors = True
        opened = [e for e in self.grant_entrance_ids(grant) if e not in grant.codeless_entrance_ids]
        for entrance_id in opened:
            self.record_event(
                "access_grant.access_granted_to_door",
                access_grant_id=grant.access_grant_id,
                acs_entrance_id=entrance_id,
            )
        self.record_event(
            "access_grant.access_granted_to_all_doors", access_grant_id=grant.access_grant_id
        )

    def reissue(self, method: AccessMethod, code: str | None, is_backup_code: bool | None) -> None:
        """Give a method a new code (a lock lost it, or a backup code replaced it)."""
        now = utcnow()
        if method.mode == "code":
            grant = self.grants[method.access_grant_id]
            method.code = code or self.pick_code(grant, None, now)
        method.issued_at = now
        if is_backup_code:
            method.warnings.append(
                {
                    "warning_code": "pulled_backup_access_code",
                    "message": "A backup access code was pulled to replace the original code.",
                    "created_at": iso(now),
                    "original_access_method_id": method.access_method_id,
                }
            )
        extra: dict[str, Any] = {"is_backup_code": is_backup_code}
        if method.mode == "code":
            extra["code"] = method.code
        self.method_event("access_method.reissued", method, **extra)

    def pull_backup_code(self, original: AccessMethod, code: str | None) -> AccessMethod:
        """Seam's backup code: a new, issued access method on the same grant that names the
        method it stands in for; the original stays in the grant."""
        if original.mode != "code":
            raise invalid_input("Only a code access method has backup codes", field="mode")
        grant = self.grants[original.access_grant_id]
        now = utcnow()
        backup = AccessMethod(
            access_method_id=new_id(),
            access_grant_id=grant.access_grant_id,
            mode="code",
            display_name=original.display_name,
            created_at=now,
            code=code or self.pick_code(grant, None, now),
            issued_at=now,
            warnings=[
                {
                    "warning_code": "pulled_backup_access_code",
                    "message": "A backup access code was pulled to replace the original code.",
                    "created_at": iso(now),
                    "original_access_method_id": original.access_method_id,
                }
            ],
        )
        self.access_methods[backup.access_method_id] = backup
        grant.access_method_ids.append(backup.access_method_id)
        for requested in grant.requested_access_methods:
            if original.access_method_id in requested.created_access_method_ids:
                requested.created_access_method_ids.append(backup.access_method_id)
        self.method_event("access_method.created", backup)
        self.method_event("access_method.issued", backup, code=backup.code, is_backup_code=True)
        return backup

    # --- devices -----------------------------------------------------------------------------

    def change_device(
        self, device: Device, *, online: bool | None, takes_codes: bool | None
    ) -> None:
        """A lock going offline or online (announced like Seam), or gaining or losing its keypad.
        Back online, the codes delayed by it are issued."""
        if takes_codes is not None:
            device.takes_codes = takes_codes
        if online is None or online == device.online:
            return
        device.online = online
        if not online:
            self.record_event(
                "device.disconnected",
                device_id=device.door.id,
                connected_account_id=CONNECTED_ACCOUNT_ID,
                error_code="device_disconnected",
                connected_account_errors=[],
                connected_account_warnings=[],
                device_errors=[],
                device_warnings=[],
            )
            return
        self.record_event(
            "device.connected", device_id=device.door.id, connected_account_id=CONNECTED_ACCOUNT_ID
        )
        for method in list(self.access_methods.values()):
            if method.has_warning("delay_in_issuing"):
                self.issue_when_ready(method)

    # --- events ------------------------------------------------------------------------------

    def list_events(self, params: ListEventsParams) -> list[dict[str, Any]]:
        events = [event for event in self.events if event_matches(event, params)]
        offset = int(params.unstable_offset or 0)
        return events[offset : offset + int(params.limit)]


def check_access_times(starts_at: datetime, ends_at: datetime | None, now: datetime) -> None:
    if ends_at is None:
        return
    if ends_at <= starts_at:
        raise invalid_input("ends_at must be after starts_at", field="ends_at")
    if ends_at <= now:
        raise invalid_input("ends_at must be in the future", field="ends_at")


def event_matches(event: dict[str, Any], params: ListEventsParams) -> bool:
    created_at = datetime.fromisoformat(event["created_at"])
    if params.since is not None and not created_at > params.since:
        return False
    if params.between is not None and not params.between[0] < created_at < params.between[1]:
        return False
    grant_ids = set(event.get("access_grant_ids", [])) | {event.get("access_grant_id")}
    filters: list[tuple[Iterable[str] | None, set[Any]]] = [
        (_one_or_many(params.access_grant_id, params.access_grant_ids), grant_ids),
        (
            _one_or_many(params.access_method_id, params.access_method_ids),
            {event.get("access_method_id")},
        ),
        (_one_or_many(params.event_type, params.event_types), {event["event_type"]}),
        (params.event_ids, {event["event_id"]}),
        (_one_or_many(params.device_id, params.device_ids), {event.get("device_id")}),
        (_one_or_many(params.acs_entrance_id, None), {event.get("acs_entrance_id")}),
    ]
    return all(wanted is None or set(wanted) & values for wanted, values in filters)


def _one_or_many(one: str | None, many: list[str] | None) -> list[str] | None:
    if one is None and many is None:
        return None
    return [*([one] if one is not None else []), *(many or [])]


def _unique(values: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(values))


def _same_email(existing: str | None, candidate: str) -> bool:
    return existing is not None and existing.lower() == candidate.lower()
