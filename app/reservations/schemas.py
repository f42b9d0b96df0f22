"""The reservation resource as booking systems send and read it (DESIGN.md §2)."""

from __future__ import annotations

import functools
import re
import uuid
import zoneinfo
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import phonenumbers
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    EmailStr,
    Field,
    ValidationInfo,
    field_validator,
)

from app.i18n import LANGUAGES, supported_language
from app.reservations.models import CodeState, DoorState, ReservationStatus

RESERVATION_KEY_PATTERN = r"^[A-Za-z0-9._:-]{1,128}$"
MAX_DOORS = 100

_LOCALE = re.compile(r"^[A-Za-z]{2,3}([-_][A-Za-z0-9]{2,8})*$")
_CONTROL_CHARACTER = re.compile(r"[\x00-\x1f\x7f]")


def _require_offset(value: Any) -> Any:
    if not isinstance(value, str):
        raise ValueError("must be an ISO 8601 timestamp string with a UTC offset")
    return value


def _e164(value: str) -> str:
    if not re.fullmatch(r"\+[1-9]\d{6,14}", value):
        raise ValueError("must be an E.164 phone number, like +14155550100")
    try:
        parsed = phonenumbers.parse(value, None)
    except phonenumbers.NumberParseException as error:
        raise ValueError("must be an E.164 phone number, like +14155550100") from error
    if not phonenumbers.is_possible_number(parsed):
        raise ValueError("is not a possible phone number")
    return value


@functools.cache
def _time_zones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


# The areas of the tz database's region names ("America/New_York"). Names outside them are
# abbreviations or fixed offsets ("EST", "EST5EDT", "Etc/GMT+5") that miss daylight saving time,
# or old aliases ("US/Eastern"); UTC is the one such name a booking system means as it says.
TIME_ZONE_REGIONS = frozenset(
    [
        "Africa",
        "America",
        "Antarctica",
        "Arctic",
        "Asia",
        "Atlantic",
        "Australia",
        "Europe",
        "Indian",
        "Pacific",
    ]
)


def _timezone(value: str) -> str:
    # The list of zones, not a load attempt: "Europe" (a folder) or "localtime" are no zones.
    if value not in _time_zones():
        raise ValueError("must be an IANA time zone name, like Europe/Lisbon")
    if value != "UTC" and value.split("/", 1)[0] not in TIME_ZONE_REGIONS:
        raise ValueError(
            "must be a region name like America/New_York or Europe/Lisbon, or UTC: abbreviations "
            "and offsets such as EST or Etc/GMT+5 miss daylight saving time"
        )
    return value


def _plain_text(value: str) -> str:
    """No control characters (NUL cannot even be stored) and no lone surrogates."""
    if _CONTROL_CHARACTER.search(value):
        raise ValueError("must not contain control characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as error:
        raise ValueError("must be valid Unicode text") from error
    return value


def _locale(value: str) -> str:
    """The language guestkey writes to the guest: "pt-BR" is stored as "pt"."""
    language = supported_language(value)
    if language is None:
        raise ValueError(
            f"must be a language guestkey writes in: {', '.join(LANGUAGES)} "
            "(a regional variant such as pt-BR gets its language)"
        )
    return language


def _address(value: str) -> str:
    """One or more lines of free text; blank lines and the spaces around lines are dropped."""
    lines = [_plain_text(line.strip()) for line in value.splitlines()]
    return "\n".join(line for line in lines if line)


def _door_id(value: str) -> str:
    try:
        return str(uuid.UUID(value))
    except ValueError as error:
        raise ValueError("must be a Seam id (a UUID)") from error


def _door_ids(values: list[str]) -> list[str]:
    """Deduplicated and sorted, so the same set of doors always compares equal."""
    return sorted(set(values))


Timestamp = Annotated[datetime, BeforeValidator(_require_offset), Field(strict=False)]
DoorId = Annotated[
    str, Field(max_length=64, json_schema_extra={"format": "uuid"}), AfterValidator(_door_id)
]
DoorIds = Annotated[list[DoorId], Field(max_length=MAX_DOORS), AfterValidator(_door_ids)]
Text = Annotated[str, Field(min_length=1, max_length=200), AfterValidator(_plain_text)]


class GuestIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    name: Text
    phone: Annotated[str, AfterValidator(_e164)] | None = None
    email: Annotated[EmailStr, Field(max_length=254)] | None = Field(
        default=None, validate_default=True
    )
    locale: Annotated[
        str, Field(max_length=35, pattern=_LOCALE.pattern), AfterValidator(_locale)
    ] = "en"

    @field_validator("email")
    @classmethod
    def _email_or_phone(cls, email: str | None, info: ValidationInfo) -> str | None:
        # A phone that failed its own validation is absent from info.data: don't report twice.
        if email is None and "phone" in info.data and info.data["phone"] is None:
            raise ValueError("guest.email or guest.phone is required")
        return email


class ReservationIn(BaseModel):
    """Body of `PUT /v1/reservations/{reservation_key}`."""

    model_config = ConfigDict(
        extra="forbid",
        str_strip_whitespace=True,
        json_schema_extra={
            "example": {
                "guest": {"name": "Ada Lovelace", "email": "ada@example.com", "locale": "en"},
                "starts_at": "2030-12-01T15:00:00Z",
                "ends_at": "2030-12-04T11:00:00Z",
                # The sandbox's Front Door and Back Door: "Try it out" works in sandbox mode.
                "device_ids": [
                    "52246fe3-a87c-527d-a1f0-11ea7711d1b1",
                    "102f4bbf-8eb7-5267-9934-b01ac0abe323",
                ],
                "property_name": "Seaside Loft",
                "timezone": "Europe/Lisbon",
            }
        },
    )

    guest: GuestIn
    starts_at: Timestamp
    ends_at: Timestamp
    acs_entrance_ids: DoorIds = []
    space_ids: DoorIds = []
    device_ids: DoorIds = Field(default=[], validate_default=True)
    property_name: Text | None = None
    property_address: (
        Annotated[str, Field(min_length=1, max_length=500), AfterValidator(_address)] | None
    ) = None
    timezone: Annotated[str, Field(max_length=64), AfterValidator(_timezone)] = "UTC"

    @field_validator("starts_at", "ends_at")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError("must carry a UTC offset, like 2026-12-01T15:00:00Z")
        try:
            return value.astimezone(UTC)
        except OverflowError as error:  # 0001-01-01T00:00:00+00:01 is before year 1 in UTC
            raise ValueError("is out of range") from error

    @field_validator("ends_at")
    @classmethod
    def _ends_after_start_and_in_future(cls, ends_at: datetime, info: ValidationInfo) -> datetime:
        starts_at = info.data.get("starts_at")
        if starts_at is not None and ends_at <= starts_at:
            raise ValueError("must be after starts_at")
        if ends_at <= datetime.now(UTC):
            raise ValueError("must be in the future")
        return ends_at

    @field_validator("device_ids")
    @classmethod
    def _some_door(cls, device_ids: list[str], info: ValidationInfo) -> list[str]:
        if (
            not device_ids
            and not info.data.get("acs_entrance_ids")
            and not info.data.get("space_ids")
            and {"acs_entrance_ids", "space_ids"} <= set(info.data)
        ):
            raise ValueError(
                "at least one id is required in device_ids, acs_entrance_ids or space_ids"
            )
        return device_ids


class GuestOut(BaseModel):
    name: str
    email: str | None
    phone: str | None
    locale: str


class AccessMethodOut(BaseModel):
    access_method_id: str
    mode: str
    is_issued: bool
    issued_at: datetime | None
    code: str | None = Field(description="The PIN code; only while the code is current")
    is_backup_code: bool
    state: CodeState = Field(
        description="current: the guest's code; superseded: replaced by a newer code (a "
        "backup code, a new grant); revoked: revoked at Seam, or the stay was cancelled"
    )


class DoorOut(BaseModel):
    type: Literal["device", "acs_entrance", "space"]
    id: str
    name: str | None = Field(description="As Seam names the door; null until Seam has named it")
    state: DoorState = Field(
        description="pending: the code is not on it yet; granted: the code opens it; "
        "unsupported: it cannot take a PIN code; failed: Seam could not put the code on it; "
        "lost: it opened, and no longer does"
    )
    reason: str | None = Field(default=None, description="Why, when the door is not granted")


class WarningOut(BaseModel):
    code: str = Field(description="Seam's warning or error code, e.g. delay_in_issuing")
    message: str
    door_id: str | None = Field(default=None, description="The door it concerns, if one")


class DeliveryOut(BaseModel):
    channel: str
    to: str
    status: str
    kind: str
    attempts: int
    send_after: datetime
    sent_at: datetime | None
    error: str | None


class ReservationOut(BaseModel):
    reservation_key: str
    status: ReservationStatus
    guest: GuestOut
    starts_at: datetime
    ends_at: datetime
    timezone: str
    property_name: str | None
    property_address: str | None
    device_ids: list[str]
    acs_entrance_ids: list[str]
    space_ids: list[str]
    access_grant_id: str | None
    access_methods: list[AccessMethodOut]
    doors: list[DoorOut]
    deliveries: list[DeliveryOut]
    warnings: list[WarningOut]
    last_error: str | None
    created_at: datetime
    updated_at: datetime


class ReservationPage(BaseModel):
    items: list[ReservationOut]
    next_cursor: str | None


class TimelineEntry(BaseModel):
    kind: str
    reason: str | None
    detail: dict[str, Any]
    at: datetime


class Timeline(BaseModel):
    reservation_key: str
    events: list[TimelineEntry]
