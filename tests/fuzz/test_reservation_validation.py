"""Property tests of the reservation body (`ReservationIn`), and of the PUT endpoint with it.

The pure tests need no database. The last tests go through the API (`client` fixture, real
PostgreSQL) and check that invalid bodies are refused with a 4xx and leave nothing behind.
"""

from __future__ import annotations

import json
import re
import uuid
import zoneinfo
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from urllib.parse import quote

import httpx
import phonenumbers
import pydantic
from hypothesis import HealthCheck, assume, given, note, settings
from hypothesis import strategies as st
from sqlalchemy import func, select, text

from app.i18n import LANGUAGES
from app.reservations.models import Reservation
from app.reservations.schemas import RESERVATION_KEY_PATTERN, TIME_ZONE_REGIONS, ReservationIn
from app.runtime import Runtime

FIELDS = (
    "guest",
    "starts_at",
    "ends_at",
    "acs_entrance_ids",
    "space_ids",
    "device_ids",
    "property_name",
    "timezone",
)
DOOR_FIELDS = ("device_ids", "acs_entrance_ids", "space_ids")
GUEST_FIELDS = ("name", "email", "phone", "locale")

# First path components of IANA names ("Europe", "America", "Etc", ...): directories in the
# tz database, not zones. They are refused... or not: see test_timezone_directory_is_refused.
TZ_DIRECTORIES = sorted(
    {name.split("/")[0] for name in zoneinfo.available_timezones() if "/" in name}
)

PURE = settings(max_examples=200, deadline=None)

# ---------------------------------------------------------------------------------------------
# Strategies
# ---------------------------------------------------------------------------------------------

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=40),
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=12,
)

# UTC offsets that exist: -12:00 .. +14:00 in quarter hours (e.g. +05:30, +05:45, -09:30).
offsets = st.integers(min_value=-12 * 4, max_value=14 * 4).map(
    lambda quarters: timezone(timedelta(minutes=15 * quarters))
)


def iso(moment: datetime, zone: timezone, zulu: bool) -> str:
    local = moment.astimezone(zone)
    if zulu and local.utcoffset() == timedelta(0):
        return local.isoformat().replace("+00:00", "Z")
    return local.isoformat()


@st.composite
def stays(draw: st.DrawFn) -> tuple[str, str, datetime, datetime]:
    """(starts_at, ends_at) strings with random offsets, and the instants they mean."""
    now = datetime.now(UTC).replace(microsecond=0)
    start = now + timedelta(
        seconds=draw(st.integers(min_value=-30 * 86400, max_value=3650 * 86400)),
        microseconds=draw(st.sampled_from([0, 0, 1, 500_000, 999_999])),
    )
    end = start + timedelta(
        seconds=draw(st.integers(min_value=0, max_value=60 * 86400)),
        microseconds=draw(st.integers(min_value=1, max_value=999_999)),
    )
    assume(end > now + timedelta(hours=1))  # stays valid however long the test runs
    return (
        iso(start, draw(offsets), draw(st.booleans())),
        iso(end, draw(offsets), draw(st.booleans())),
        start,
        end,
    )


def spellings(door: uuid.UUID) -> st.SearchStrategy[str]:
    """Ways of writing one UUID that `uuid.UUID` reads."""
    return st.sampled_from(
        [str(door), str(door).upper(), door.hex, door.hex.upper(), f"{{{door}}}", door.urn]
    )


@st.composite
def door_lists(
    draw: st.DrawFn, min_size: int = 0, pool: list[uuid.UUID] | None = None
) -> tuple[list[str], set[str]]:
    """A door list with mixed spellings and duplicates, and the canonical set it means; the
    doors any UUIDs, or drawn from `pool`."""
    ids = st.uuids() if pool is None else st.sampled_from(pool)
    doors = draw(st.lists(ids, min_size=min_size, max_size=6))
    written: list[str] = []
    for door in doors:
        written.extend(draw(st.lists(spellings(door), min_size=1, max_size=3)))
    return draw(st.permutations(written)), {str(door) for door in doors}


E164_NUMBERS = sorted(
    {
        phonenumbers.format_number(example, phonenumbers.PhoneNumberFormat.E164)
        for region in sorted(phonenumbers.SUPPORTED_REGIONS)
        if (example := phonenumbers.example_number(region)) is not None
    }
)

names = (
    st.text(
        st.characters(codec="utf-8", exclude_categories=["Cs", "Cc", "Zs", "Zl", "Zp"]),
        min_size=1,
        max_size=60,
    )
    .map(lambda s: s.strip())
    .filter(bool)
)
padded_names = st.tuples(st.sampled_from(["", " ", "  "]), names, st.sampled_from(["", " "])).map(
    "".join
)
emails = st.builds(
    "{}@{}".format,
    st.from_regex(r"\A[a-z0-9][a-z0-9._+-]{0,15}[a-z0-9]\Z"),
    st.sampled_from(["example.com", "Example.ORG", "mail.example.net", "xn--bcher-kva.example"]),
).filter(lambda e: ".." not in e)
# A language guestkey writes, in any case, with or without a region or script after it.
locales = st.builds(
    "{}{}".format,
    st.sampled_from(LANGUAGES).flatmap(lambda code: st.sampled_from([code, code.upper()])),
    st.from_regex(r"\A([-_][A-Za-z0-9]{2,8}){0,3}\Z"),
)
# Region names ("Europe/Lisbon"), not abbreviations or fixed offsets ("EST", "Etc/GMT+5").
REGION_ZONES = sorted(
    name for name in zoneinfo.available_timezones() if name.split("/")[0] in TIME_ZONE_REGIONS
)


@st.composite
def guests(draw: st.DrawFn) -> dict[str, Any]:
    guest: dict[str, Any] = {"name": draw(padded_names)}
    contact = draw(st.sampled_from(["email", "phone", "both"]))
    if contact in ("email", "both"):
        guest["email"] = draw(emails)
    if contact in ("phone", "both"):
        guest["phone"] = draw(st.sampled_from(E164_NUMBERS))
    if draw(st.booleans()):
        guest["locale"] = draw(locales)
    return guest


@st.composite
def valid_bodies(
    draw: st.DrawFn, doors: dict[str, list[uuid.UUID]] | None = None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """A valid body, and what the model must make of it (instants, door sets). With `doors`,
    each door field's ids are drawn from its list (doors of a workspace, for the API)."""
    starts_at, ends_at, start, end = draw(stays())
    body: dict[str, Any] = {"guest": draw(guests()), "starts_at": starts_at, "ends_at": ends_at}
    expected: dict[str, Any] = {"starts_at": start, "ends_at": end}
    carrier = draw(st.sampled_from(DOOR_FIELDS))  # this list gets at least one door
    for field in DOOR_FIELDS:
        pool = None if doors is None else doors[field]
        written, canonical = draw(door_lists(min_size=1 if field == carrier else 0, pool=pool))
        include = draw(st.booleans())
        if written or include:
            body[field] = written
        expected[field] = sorted(canonical)
    if draw(st.booleans()):
        body["property_name"] = draw(padded_names)
    if draw(st.booleans()):
        # IANA names as zoneinfo lists them (not the system's posix/ and right/ variants)
        body["timezone"] = draw(st.sampled_from(["UTC", *REGION_ZONES]))
    return body, expected


def tricky_values(field: str) -> st.SearchStrategy[Any]:
    """Values that are wrong for `field` in a way a booking system could plausibly send."""
    now = datetime.now(UTC)
    per_field: dict[str, list[Any]] = {
        "starts_at": [
            "2030-12-01T15:00:00",
            "2030-12-01",
            "2030-02-30T15:00:00Z",
            "2030-12-01T15:00:00+24:00",
            1924988400,
            "",
            "now",
        ],
        "ends_at": [
            (now - timedelta(days=1)).isoformat(),
            "1999-01-01T00:00:00Z",
            "2030-12-01T15:00:00",
            1924988400.5,
            "2030-12-01T25:00:00Z",
        ],
        "device_ids": [
            ["not-a-uuid"],
            [""],
            ["a" * 65],
            [str(uuid.uuid4())[:-1]],
            [str(uuid.uuid4()) + "0"],
            "52246fe3-a87c-527d-a1f0-11ea7711d1b1",
            [7],
            [None],
            [str(uuid.uuid4())] * 101,
        ],
        "timezone": ["Mars/Olympus", "", "../etc/passwd", "UTC+1", "Europe/Lisbon/x", "\x00"],
        "guest": [
            {"name": "Ada"},
            {"name": "", "email": "ada@example.com"},
            {"name": "   ", "email": "ada@example.com"},
            {"name": "Ada", "email": "not-an-email"},
            {"name": "Ada", "phone": "4155550100"},
            {"name": "Ada", "phone": "+1 415 555 0100"},
            {"name": "Ada", "phone": "+999999999"},
            {"name": "Ada", "email": None, "phone": None},
            {"name": "Ada", "email": "ada@example.com", "locale": "e"},
            {"name": "Ada", "email": "ada@example.com", "extra": 1},
            {"name": "x" * 201, "email": "ada@example.com"},
            "Ada",
        ],
        "property_name": ["", " ", "x" * 201, 5],
    }
    per_field["acs_entrance_ids"] = per_field["space_ids"] = per_field["device_ids"]
    values = per_field.get(field, [])
    return st.sampled_from(values) if values else json_values


@st.composite
def mutated_bodies(draw: st.DrawFn) -> dict[str, Any]:
    """A valid body with one to three fields replaced, removed or added."""
    body, _ = draw(valid_bodies())
    body = dict(json.loads(json.dumps(body)))
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        action = draw(st.sampled_from(["replace", "tricky", "delete", "add", "guest"]))
        field = draw(st.sampled_from(FIELDS))
        if action == "replace":
            body[field] = draw(json_values)
        elif action == "tricky":
            body[field] = draw(tricky_values(field))
        elif action == "delete":
            body.pop(field, None)
        elif action == "add":
            body[draw(st.text(min_size=1, max_size=12))] = draw(json_values)
        elif isinstance(body.get("guest"), dict):
            body["guest"][draw(st.sampled_from(GUEST_FIELDS))] = draw(
                st.one_of(json_values, st.sampled_from(["", " ", "+14155550100", "a@b"]))
            )
    return body


arbitrary_bodies = st.one_of(
    json_values,
    st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=10), json_values, max_size=9),
)

# ---------------------------------------------------------------------------------------------
# What every accepted body must satisfy
# ---------------------------------------------------------------------------------------------

CANONICAL_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
E164 = re.compile(r"^\+[1-9]\d{6,14}$")


def assert_rules(model: ReservationIn, validated_before: datetime) -> None:
    for moment in (model.starts_at, model.ends_at):
        assert moment.tzinfo is not None
        assert moment.utcoffset() == timedelta(0)
        assert moment.tzinfo == UTC
    assert model.ends_at > model.starts_at
    assert model.ends_at > validated_before
    doors = [*model.device_ids, *model.acs_entrance_ids, *model.space_ids]
    assert doors, "no door id"
    for ids in (model.device_ids, model.acs_entrance_ids, model.space_ids):
        assert ids == sorted(set(ids))
        for door in ids:
            assert CANONICAL_UUID.match(door), door
            assert str(uuid.UUID(door)) == door
    assert model.guest.email or model.guest.phone
    assert model.guest.name == model.guest.name.strip() and model.guest.name
    if model.guest.phone is not None:
        assert E164.match(model.guest.phone)
    zoneinfo.ZoneInfo(model.timezone)
    assert model.timezone not in TZ_DIRECTORIES
    assert model.timezone == "UTC" or model.timezone.split("/")[0] in TIME_ZONE_REGIONS
    assert model.guest.locale in LANGUAGES


def validate(body: Any) -> ReservationIn | None:
    """The model, or None for a ValidationError; anything else propagates and fails the test."""
    try:
        return ReservationIn.model_validate(body)
    except pydantic.ValidationError:
        return None


# ---------------------------------------------------------------------------------------------
# Pure properties
# ---------------------------------------------------------------------------------------------


@PURE
@given(body=arbitrary_bodies)
def test_arbitrary_json_only_fails_with_validation_error(body: Any) -> None:
    before = datetime.now(UTC)
    model = validate(body)
    if model is not None:
        assert_rules(model, before)


@PURE
@given(body=mutated_bodies())
def test_mutated_bodies_only_fail_with_validation_error(body: dict[str, Any]) -> None:
    note(json.dumps(body, ensure_ascii=False))
    before = datetime.now(UTC)
    model = validate(body)
    if model is not None:
        assert_rules(model, before)


@PURE
@given(body=mutated_bodies())
def test_json_and_python_validation_agree(body: dict[str, Any]) -> None:
    """The API parses raw JSON; the same body must fare the same either way."""
    raw = json.dumps(body)
    try:
        from_json: ReservationIn | None = ReservationIn.model_validate_json(raw)
    except pydantic.ValidationError:
        from_json = None
    from_python = validate(body)
    assert (from_json is None) == (from_python is None)
    if from_json is not None:
        assert from_json == from_python


@PURE
@given(data=valid_bodies())
def test_valid_bodies_are_accepted_and_normalised(
    data: tuple[dict[str, Any], dict[str, Any]],
) -> None:
    body, expected = data
    note(json.dumps(body, ensure_ascii=False))
    before = datetime.now(UTC)
    model = ReservationIn.model_validate(body)
    assert_rules(model, before)
    assert model.starts_at == expected["starts_at"]
    assert model.ends_at == expected["ends_at"]
    for field in DOOR_FIELDS:
        assert getattr(model, field) == expected[field]
    assert model.guest.name == body["guest"]["name"].strip()
    assert model.timezone == body.get("timezone", "UTC")
    # Idempotent: validate → dump → validate gives the same model. (Only JSON dumps: by design
    # the model takes timestamps as strings only, so a python-mode dump's datetimes are refused.)
    assert ReservationIn.model_validate(model.model_dump(mode="json")) == model
    assert ReservationIn.model_validate_json(model.model_dump_json()) == model


@PURE
@given(data=valid_bodies(), zone=offsets)
def test_same_instant_with_another_offset_is_the_same_model(
    data: tuple[dict[str, Any], dict[str, Any]], zone: timezone
) -> None:
    body, expected = data
    moved = {
        **body,
        "starts_at": expected["starts_at"].astimezone(zone).isoformat(),
        "ends_at": expected["ends_at"].astimezone(zone).isoformat(),
    }
    assert ReservationIn.model_validate(moved) == ReservationIn.model_validate(body)


@settings(max_examples=20, deadline=None)
@given(data=valid_bodies(), directory=st.sampled_from(TZ_DIRECTORIES))
def test_timezone_directory_is_refused(
    data: tuple[dict[str, Any], dict[str, Any]], directory: str
) -> None:
    body, _ = data
    assert validate({**body, "timezone": directory}) is None


# ---------------------------------------------------------------------------------------------
# Through the API, with PostgreSQL
# ---------------------------------------------------------------------------------------------

reservation_keys = st.one_of(
    st.from_regex(RESERVATION_KEY_PATTERN, fullmatch=True),
    st.text(min_size=1, max_size=20).filter(lambda k: k not in (".", "..")),
)


@st.composite
def invalid_requests(draw: st.DrawFn) -> tuple[str, bytes]:
    """(reservation key, raw body) where the body is certainly refused by the model."""
    kind = draw(st.sampled_from(["mutated", "mutated", "mutated", "arbitrary", "garbage"]))
    if kind == "garbage":
        raw = draw(st.binary(max_size=64) | st.text(max_size=64).map(str.encode))
        try:
            json.loads(raw)
            assume(False)  # parseable JSON goes through the other kinds
        except ValueError:
            pass
        return draw(reservation_keys), raw
    body = draw(mutated_bodies() if kind == "mutated" else arbitrary_bodies)
    assume(validate(body) is None)
    return draw(reservation_keys), json.dumps(body).encode()


async def stored_rows(runtime: Runtime) -> tuple[int, int]:
    async with runtime.sessionmaker() as session:
        reservations = await session.scalar(select(func.count()).select_from(Reservation))
        jobs = await session.scalar(text("SELECT count(*) FROM procrastinate_jobs"))
    return int(reservations or 0), int(jobs or 0)


@settings(
    max_examples=50,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.filter_too_much],
)
@given(request=invalid_requests())
async def test_invalid_bodies_get_4xx_and_store_nothing(
    client: httpx.AsyncClient, runtime: Runtime, request: tuple[str, bytes]
) -> None:
    key, raw = request
    note(f"PUT /v1/reservations/{quote(key, safe='')} {raw!r}")
    before = await stored_rows(runtime)
    response = await client.put(
        f"/v1/reservations/{quote(key, safe='')}",
        content=raw,
        headers={"Content-Type": "application/json"},
    )
    assert 400 <= response.status_code < 500, (response.status_code, response.text)
    assert response.status_code in (400, 404, 405, 422), (response.status_code, response.text)
    if response.status_code == 422:
        detail = response.json()["detail"]
        assert isinstance(detail, list) and detail
        assert all(entry["loc"] for entry in detail)
    assert await stored_rows(runtime) == before == (0, 0)


async def test_timezone_directory_through_the_api_is_a_422(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    from tests.factories import reservation_body

    response = await client.put("/v1/reservations/bk-tz", json=reservation_body(timezone="Europe"))
    assert response.status_code == 422, response.text
    assert await stored_rows(runtime) == (0, 0)
