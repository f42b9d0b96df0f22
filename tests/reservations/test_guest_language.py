"""What the booking system says about the guest's language, the property's zone and address,
and what reaches the guest: checked at the PUT, stored, returned, and used in the message."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from app.i18n import LANGUAGES
from app.runtime import Runtime
from tests.conftest import Mailbox
from tests.factories import (
    delivered_reservation,
    plain_text,
    put_reservation,
    reservation_body,
    timeline,
)

SUPPORT_CONTACT = "+351 210 000 000 (Marta)"


@pytest.fixture
def settings_overrides(settings_overrides: dict[str, Any]) -> dict[str, Any]:
    return {**settings_overrides, "guestkey_support_contact": SUPPORT_CONTACT}


def guest(locale: str) -> dict[str, Any]:
    return {"name": "Ana Silva", "email": "ana@example.com", "locale": locale}


def errors_at(response: httpx.Response, *location: str) -> list[str]:
    assert response.status_code == 422, response.text
    return [error["msg"] for error in response.json()["detail"] if tuple(error["loc"]) == location]


@pytest.mark.parametrize(
    ("sent", "stored"), [("pt-BR", "pt"), ("fr_CA", "fr"), ("DE", "de"), ("nl-BE", "nl")]
)
async def test_a_regional_locale_is_stored_as_the_language_guests_get(
    client: httpx.AsyncClient, sent: str, stored: str
) -> None:
    response = await put_reservation(client, "bk-1", guest=guest(sent))

    assert response.status_code == 201, response.text
    assert response.json()["guest"]["locale"] == stored


async def test_an_unsupported_language_is_422_naming_guest_locale_and_the_languages(
    client: httpx.AsyncClient,
) -> None:
    response = await put_reservation(client, "bk-1", guest=guest("ja-JP"))

    [message] = errors_at(response, "body", "guest", "locale")
    for language in LANGUAGES:
        assert language in message
    assert (await client.get("/v1/reservations/bk-1")).status_code == 404


@pytest.mark.parametrize("zone", ["EST", "EST5EDT", "Etc/GMT+5", "US/Eastern", "GMT", "Zulu"])
async def test_a_zone_that_is_no_region_is_422(client: httpx.AsyncClient, zone: str) -> None:
    response = await put_reservation(client, "bk-1", timezone=zone)

    [message] = errors_at(response, "body", "timezone")
    assert "America/New_York" in message


@pytest.mark.parametrize("zone", ["America/New_York", "America/Argentina/Buenos_Aires", "UTC"])
async def test_region_zones_and_utc_are_accepted(client: httpx.AsyncClient, zone: str) -> None:
    response = await put_reservation(client, "bk-1", timezone=zone)

    assert response.status_code == 201, response.text
    assert response.json()["timezone"] == zone


async def test_without_a_zone_the_reservation_is_in_utc(client: httpx.AsyncClient) -> None:
    body = reservation_body()
    del body["timezone"]
    response = await client.put("/v1/reservations/bk-1", json=body)

    assert response.json()["timezone"] == "UTC"


async def test_property_address_is_stored_and_returned_line_by_line(
    client: httpx.AsyncClient,
) -> None:
    address = "  Rua Augusta 100 \r\n\n 1100-053 Lisboa\nPortugal  "
    created = await put_reservation(client, "bk-1", property_address=address)

    assert created.status_code == 201, created.text
    assert created.json()["property_address"] == "Rua Augusta 100\n1100-053 Lisboa\nPortugal"
    fetched = (await client.get("/v1/reservations/bk-1")).json()
    assert fetched["property_address"] == "Rua Augusta 100\n1100-053 Lisboa\nPortugal"

    moved = await put_reservation(client, "bk-1", property_address="Rua do Ouro 5, Lisboa")
    assert moved.status_code == 200
    assert moved.json()["property_address"] == "Rua do Ouro 5, Lisboa"
    await put_reservation(client, "bk-1", property_address="Rua do Ouro 5, Lisboa")
    changes = [event["detail"] for event in await timeline(client) if event["kind"] == "changed"]
    assert changes == [{"fields": ["property_address"]}]  # the identical PUT changed nothing


async def test_property_address_is_optional(client: httpx.AsyncClient) -> None:
    response = await put_reservation(client, "bk-1")

    assert response.json()["property_address"] is None


@pytest.mark.parametrize(
    "address", ["", "   \n  ", "x" * 501, "Main St\x07", "Main St\x00 1", 42], ids=repr
)
async def test_a_bad_property_address_is_422(client: httpx.AsyncClient, address: Any) -> None:
    response = await put_reservation(client, "bk-1", property_address=address)

    assert errors_at(response, "body", "property_address")


async def test_the_guest_gets_the_message_in_their_language_with_address_and_contact(
    client: httpx.AsyncClient, runtime: Runtime, mailbox: Mailbox
) -> None:
    reservation = await delivered_reservation(
        client,
        runtime,
        guest=guest("fr-FR"),
        timezone="Europe/Paris",
        property_address="12 rue de Rivoli\n75004 Paris",
    )

    [message] = mailbox.to("ana@example.com")
    assert message["Subject"] == "Votre code d’accès pour Seaside Loft"
    text = " ".join(plain_text(message).split())
    assert reservation["access_methods"][0]["code"] in text
    assert "Bonjour Ana Silva," in text
    assert "Comment entrer" in text
    assert "Adresse 12 rue de Rivoli 75004 Paris" in text
    assert f"Besoin d’aide ? Contactez {SUPPORT_CONTACT}." in text
    assert "(heure d’Europe centrale)" in text
