"""Fuzzing `POST /webhooks/seam`, whose body and Svix headers the OpenAPI description leaves
out (so schemathesis can only send it one empty request).

* Unsigned or garbled deliveries: always 400 or 401, never stored.
* Deliveries signed with the configured secret, whatever their body: always 204, and stored
  (README: "every verified webhook is committed before the 2xx goes out").
"""

from __future__ import annotations

import json
import string

import httpx
import pytest
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st
from sqlalchemy import text

from app.runtime import Runtime
from tests.webhooks.signing import signed

FUZZ = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)

header_text = st.text(string.printable.strip() + " ", max_size=80)
# No NUL anywhere in generated JSON or text: that is the bug test_signed_poison_bodies_are_stored
# documents, and it would hide everything else.
no_nul = st.characters(exclude_characters="\x00", exclude_categories=("Cs",))
json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(no_nul, max_size=30)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.text(no_nul, max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)
seam_like = st.fixed_dictionaries(
    {
        "event_id": st.text(no_nul, min_size=1, max_size=30),
        "event_type": st.text(no_nul, max_size=30),
    },
    optional={"access_grant_id": st.text(no_nul, max_size=40), "code": json_scalars},
)
# JSON text, as Seam would send it: a Seam-like event, any JSON value, or not JSON at all.
bodies = st.one_of(
    seam_like.map(json.dumps),
    json_values.map(json.dumps),
    st.text(no_nul, max_size=200),
)


async def inbox_count(runtime: Runtime) -> int:
    async with runtime.engine.connect() as connection:
        return int(await connection.scalar(text("SELECT count(*) FROM seam_webhook")) or 0)


@FUZZ
@given(
    body=st.binary(max_size=200) | bodies.map(str.encode),
    headers=st.dictionaries(
        st.sampled_from(
            ["svix-id", "svix-timestamp", "svix-signature", "webhook-id", "webhook-signature"]
        ),
        st.one_of(
            header_text,
            st.integers(min_value=0, max_value=10**20).map(str),
            st.from_regex(r"\Av1,[A-Za-z0-9+/=]{1,60}\Z"),
        ),
    ),
)
async def test_unsigned_deliveries_are_refused_and_not_stored(
    client: httpx.AsyncClient, runtime: Runtime, body: bytes, headers: dict[str, str]
) -> None:
    response = await client.post("/webhooks/seam", content=body, headers=headers)
    assert response.status_code in (400, 401), (response.status_code, response.text)
    assert await inbox_count(runtime) == 0


async def stored(runtime: Runtime, svix_id: str, event_id: object) -> bool:
    async with runtime.engine.connect() as connection:
        found = await connection.scalar(
            text("SELECT count(*) FROM seam_webhook WHERE svix_id = :svix_id OR event_id = :eid"),
            {"svix_id": svix_id, "eid": event_id if isinstance(event_id, str) else None},
        )
    return bool(found)


@FUZZ
@given(body=bodies, message_id=st.text(string.ascii_letters + string.digits + "_-", min_size=1))
async def test_signed_deliveries_are_stored(
    client: httpx.AsyncClient, runtime: Runtime, body: str, message_id: str
) -> None:
    """NUL characters, NaN/Infinity and lone surrogates, which `bodies` never generates, have
    their own test below."""
    raw, headers = signed(body.encode(), message_id=f"msg_{message_id}")
    note(f"body={raw!r}")
    response = await client.post("/webhooks/seam", content=raw, headers=headers)
    assert response.status_code == 204, (response.status_code, response.text)
    try:
        payload = json.loads(raw)
    except ValueError:
        payload = None
    event_id = payload.get("event_id") if isinstance(payload, dict) else None
    # Stored once: a repeated svix-id or Seam event_id is a duplicate, already in the inbox.
    assert await stored(runtime, headers["svix-id"], event_id)


@pytest.mark.parametrize(
    "body",
    [
        '{"event_id": "evt_1\\u0000", "event_type": "access_code.set_on_device"}',
        "not json \x00",
        '{"event_id": "evt_2", "event_type": "device.connected", "battery": NaN}',
        '{"event_id": "evt_3", "event_type": "device.connected", "name": "\\ud800"}',
        # UTF-16 without a byte order mark: valid UTF-8 to the signature check (ASCII and NUL
        # bytes), read as UTF-16 by the JSON parser, and the escape makes a NUL.
        '{"event_id": "evt_4", "event_type": "device.connected", "n": "\\u0000"}'.encode(
            "utf-16-le"
        ),
    ],
    ids=[
        "json-u0000",
        "raw-nul",
        "json-nan",
        "json-lone-surrogate",
        "utf16-u0000",
    ],
)
async def test_signed_bodies_postgresql_cannot_hold_are_stored_as_rejected(
    client: httpx.AsyncClient, runtime: Runtime, body: str | bytes
) -> None:
    raw, headers = signed(body if isinstance(body, bytes) else body.encode())
    response = await client.post("/webhooks/seam", content=raw, headers=headers)
    assert response.status_code == 204, (response.status_code, response.text)
    assert await stored(runtime, headers["svix-id"], None)
