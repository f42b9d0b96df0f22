"""Guest messages in each language guestkey speaks: subject, both bodies and the SMS are in the
guest's language, with dates written its way, and carry the keypad how-to, address and contact."""

from __future__ import annotations

import email
import email.policy
from dataclasses import dataclass
from email.message import EmailMessage

import pytest

from app.delivery.messages import render_email, render_sms, sms_segments
from app.i18n import LANGUAGES
from tests.delivery.conftest import PIN_CODE, make_message

ADDRESS = "Rua Augusta 100\n1100-053 Lisboa\nPortugal"
CONTACT = "+351 210 000 000 (Marta)"


@dataclass(frozen=True)
class Expected:
    subject: str
    greeting: str
    how_to: str
    address: str
    help: str
    check_in: str  # 2026-12-01 15:00 UTC in Lisbon, written the language's way
    zone: str  # Europe/Lisbon's everyday name
    sms: str  # folded into GSM-7


EXPECTED = {
    "en": Expected(
        subject="Your door code for Seaside Loft",
        greeting="Hello Ana Silva,",
        how_to="How to get in",
        address="Address",
        help="Need help? Contact +351 210 000 000 (Marta).",
        check_in="Check-in: Tue, Dec 1, 2026, 3:00 PM",
        zone="Western European Time",
        sms="Door code for Seaside Loft: 482913. Dec 1, 3:00 PM to Dec 4, 11:00 AM, local time.",
    ),
    "es": Expected(
        subject="Su código de acceso para Seaside Loft",
        greeting="Hola, Ana Silva:",
        how_to="Cómo entrar",
        address="Dirección",
        help="¿Necesita ayuda? Contacte con +351 210 000 000 (Marta).",
        check_in="Entrada: mar, 1 dic 2026, 15:00",
        zone="hora de Europa occidental",
        sms="Codigo de acceso para Seaside Loft: 482913. Del 1 dic, 15:00 al 4 dic, 11:00",
    ),
    "fr": Expected(
        subject="Votre code d’accès pour Seaside Loft",
        greeting="Bonjour Ana Silva,",
        how_to="Comment entrer",
        address="Adresse",
        help="Besoin d’aide ? Contactez +351 210 000 000 (Marta).",
        check_in="Arrivée : mar. 1 déc. 2026, 15:00",
        zone="heure d’Europe de l’Ouest",
        sms="Code d'accès pour Seaside Loft : 482913. Du 1 déc., 15:00 au 4 déc., 11:00",
    ),
    "de": Expected(
        subject="Ihr Türcode für Seaside Loft",
        greeting="Hallo Ana Silva,",
        how_to="So kommen Sie hinein",
        address="Adresse",
        help="Brauchen Sie Hilfe? Wenden Sie sich an +351 210 000 000 (Marta).",
        check_in="Anreise: Di., 1. Dez. 2026, 15:00",
        zone="Westeuropäische Zeit",
        sms="Türcode für Seaside Loft: 482913. Vom 1. Dez., 15:00 bis 4. Dez., 11:00 Ortszeit.",
    ),
    "it": Expected(
        subject="Il suo codice di accesso per Seaside Loft",
        greeting="Buongiorno Ana Silva,",
        how_to="Come entrare",
        address="Indirizzo",
        help="Serve aiuto? Contatti +351 210 000 000 (Marta).",
        check_in="Arrivo: mar 1 dic 2026, 15:00",
        zone="Ora dell’Europa occidentale",
        sms="Codice di accesso per Seaside Loft: 482913. Dal 1 dic, 15:00 al 4 dic, 11:00",
    ),
    "pt": Expected(
        subject="O seu código de acesso para Seaside Loft",
        greeting="Olá Ana Silva,",
        how_to="Como entrar",
        address="Endereço",
        help="Precisa de ajuda? Fale com +351 210 000 000 (Marta).",
        check_in="Entrada: ter., 1 de dez. de 2026 15:00",
        zone="Horário da Europa Ocidental",
        sms="Codigo de acesso para Seaside Loft: 482913. De 1 de dez. 15:00 a 4 de dez. 11:00",
    ),
    "nl": Expected(
        subject="Uw deurcode voor Seaside Loft",
        greeting="Hallo Ana Silva,",
        how_to="Zo komt u binnen",
        address="Adres",
        help="Hulp nodig? Neem contact op met +351 210 000 000 (Marta).",
        check_in="Inchecken: di 1 dec 2026, 15:00",
        zone="West-Europese tijd",
        sms="Deurcode voor Seaside Loft: 482913. Van 1 dec, 15:00 tot 4 dec, 11:00, lokale tijd.",
    ),
}

# English words that must not be left in a translated message.
ENGLISH = ("Your door code", "Hello", "How to get in", "Check-in", "Need help", "Times are")


def received(language: str, **overrides: object) -> EmailMessage:
    """The email as a mail client parses it after the wire."""
    message = make_message(
        locale=language, property_address=ADDRESS, support_contact=CONTACT, **overrides
    )
    sent = render_email(message, to="ana@example.com", mail_from="Stays <stays@example.com>")
    parsed = email.message_from_bytes(sent.as_bytes(), policy=email.policy.default)
    assert isinstance(parsed, EmailMessage)
    return parsed


def bodies(message: EmailMessage) -> list[str]:
    parts = [message.get_body(preferencelist=(kind,)) for kind in ("plain", "html")]
    return [" ".join(str(part.get_content()).split()) for part in parts if part is not None]


def test_every_language_has_expectations() -> None:
    assert set(EXPECTED) == set(LANGUAGES)


@pytest.mark.parametrize("language", LANGUAGES)
def test_email_is_written_in_the_guests_language(language: str) -> None:
    expected = EXPECTED[language]
    message = received(language)

    assert message["Subject"] == expected.subject
    assert message["Content-Language"] == language
    text, html = bodies(message)
    assert f'<html lang="{language}">' in html
    for body in (text, html):
        assert expected.greeting in body
        assert PIN_CODE in body
        assert expected.how_to in body
        assert expected.check_in in body
        assert f"({expected.zone})" in body
        assert expected.address in body
        assert "Rua Augusta 100" in body and "1100-053 Lisboa" in body
        assert expected.help in body
        if language != "en":
            for word in ENGLISH:
                assert word not in body, word


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("kind", ["new_code", "times_changed", "resend"])
def test_every_kind_of_message_is_fully_translated(language: str, kind: str) -> None:
    message = received(language, kind=kind)

    if language != "en":
        for body in [str(message["Subject"]), *bodies(message)]:
            for word in (*ENGLISH, "New dates", "Here is your", "have changed"):
                assert word not in body, (word, body)


@pytest.mark.parametrize("language", LANGUAGES)
def test_a_regional_locale_gets_its_languages_message(language: str) -> None:
    regional = received(f"{language}-CH")

    assert regional["Subject"] == EXPECTED[language].subject


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("kind", ["new_code", "times_changed", "resend"])
def test_sms_is_in_the_guests_language_and_fits_two_parts(language: str, kind: str) -> None:
    sms = render_sms(
        make_message(locale=language, kind=kind, property_address=ADDRESS, support_contact=CONTACT)
    )

    if kind != "times_changed":
        assert sms.startswith(EXPECTED[language].sms)
    assert PIN_CODE in sms
    assert "Rua Augusta 100, 1100-053 Lisboa, Portugal" in sms
    assert sms.endswith(CONTACT)
    assert sms_segments(sms) <= 2, (len(sms), sms)


@pytest.mark.parametrize("language", LANGUAGES)
def test_sms_without_address_or_contact_fits_two_parts_even_in_utc(language: str) -> None:
    sms = render_sms(make_message(locale=language, kind="times_changed", timezone="UTC"))

    assert "UTC" in sms
    assert sms_segments(sms) <= 2
