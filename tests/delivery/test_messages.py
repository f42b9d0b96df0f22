"""What guests read in English: both email parts, every door, the window in the property's zone,
how to use the code, the address and support contact, escaping, and the SMS's length."""

from __future__ import annotations

import email
import email.policy
from datetime import UTC, datetime
from email.message import EmailMessage
from zoneinfo import ZoneInfoNotFoundError

import pytest

from app.delivery.messages import render_email, render_sms, sms_segments, to_gsm7
from app.i18n import format_datetime
from tests.delivery.conftest import PIN_CODE, make_message

MAIL_FROM = "Seaside Stays <stays@seaside.example>"


def render(**overrides: object) -> EmailMessage:
    return render_email(make_message(**overrides), to="ana@example.com", mail_from=MAIL_FROM)


def parts(message: EmailMessage) -> tuple[str, str]:
    """Both bodies, with every run of whitespace as one space: CLDR writes "3:00 PM" and
    "1 déc." with no-break spaces, which read as spaces."""
    text = message.get_body(preferencelist=("plain",))
    html = message.get_body(preferencelist=("html",))
    assert text is not None and html is not None
    return " ".join(str(text.get_content()).split()), " ".join(str(html.get_content()).split())


def reparsed(message: EmailMessage) -> EmailMessage:
    """What a mail client sees after the message went over the wire."""
    parsed = email.message_from_bytes(message.as_bytes(), policy=email.policy.default)
    assert isinstance(parsed, EmailMessage)
    return parsed


def test_email_is_multipart_alternative_with_text_and_html() -> None:
    message = reparsed(render())

    assert message.get_content_type() == "multipart/alternative"
    assert [part.get_content_type() for part in message.iter_parts()] == [
        "text/plain",
        "text/html",
    ]


def test_email_headers_name_the_property_and_identify_the_message() -> None:
    message = reparsed(render())

    assert message["Subject"] == "Your door code for Seaside Loft"
    assert message["To"] == "ana@example.com"
    assert message["From"] == MAIL_FROM
    assert message["Message-ID"].endswith("@seaside.example>")
    assert message["Date"] is not None
    assert PIN_CODE not in str(message["Subject"])


def test_subject_without_a_property_says_your_stay() -> None:
    assert render(property_name=None)["Subject"] == "Your door code for your stay"


def test_both_parts_show_greeting_code_and_every_door() -> None:
    doors = ["Front Door", "Back Door", "Garage", "Pool Gate"]
    text, html = parts(reparsed(render(doors=doors)))

    for body in (text, html):
        assert "Hello Ana Silva" in body
        assert PIN_CODE in body
        for door in doors:
            assert door in body


def test_window_is_shown_in_the_reservations_time_zone_with_its_everyday_name() -> None:
    text, html = parts(reparsed(render()))

    for body in (text, html):
        assert "Check-in: Tue, Dec 1, 2026, 3:00 PM" in body
        assert "Check-out: Fri, Dec 4, 2026, 11:00 AM" in body
        assert "Times are local time at the property (Western European Time)." in body


def test_same_instant_reads_differently_in_new_york() -> None:
    text, _ = parts(reparsed(render(timezone="America/New_York")))

    assert "Check-in: Tue, Dec 1, 2026, 10:00 AM" in text
    assert "Check-out: Fri, Dec 4, 2026, 6:00 AM" in text
    assert "(Eastern Time)" in text


def test_without_a_time_zone_the_times_are_said_to_be_utc_plainly() -> None:
    text, html = parts(reparsed(render(timezone="UTC")))

    for body in (text, html):
        assert "Times are in UTC." in body
        assert "local time at the property" not in body
        assert "Unknown Region" not in body


@pytest.mark.parametrize(
    ("timezone", "expected"),
    [
        ("Europe/Lisbon", "Sat, Aug 1, 2026, 1:00 PM"),
        ("America/New_York", "Sat, Aug 1, 2026, 8:00 AM"),
        ("Asia/Tokyo", "Sat, Aug 1, 2026, 9:00 PM"),
    ],
)
def test_summer_times_follow_daylight_saving_time(timezone: str, expected: str) -> None:
    moment = datetime(2026, 8, 1, 12, 0, tzinfo=UTC)
    written = format_datetime(moment, timezone=timezone, language="en")

    assert " ".join(written.split()) == expected


def test_every_email_says_how_to_use_the_code_at_the_keypad() -> None:
    for kind in ("new_code", "times_changed", "resend"):
        text, html = parts(reparsed(render(kind=kind)))
        for body in (text, html):
            assert "How to get in" in body
            assert "Type the code on the keypad at the door" in body


def test_address_and_support_contact_are_shown_when_known() -> None:
    message = reparsed(
        render(
            property_address="Rua Augusta 100\n1100-053 Lisboa",
            support_contact="+351 210 000 000 (Marta)",
        )
    )
    raw_text = message.get_body(preferencelist=("plain",))
    assert raw_text is not None
    text, html = parts(message)

    assert "  Rua Augusta 100\n  1100-053 Lisboa\n" in str(raw_text.get_content())
    assert "Rua Augusta 100<br> 1100-053 Lisboa" in html
    for body in (text, html):
        assert "Address" in body
        assert "Need help? Contact +351 210 000 000 (Marta)." in body


def test_without_address_or_contact_neither_is_mentioned() -> None:
    text, html = parts(reparsed(render()))

    for body in (text, html):
        assert "Address" not in body
        assert "Need help" not in body


def test_html_escapes_property_and_door_names_but_text_shows_them_as_written() -> None:
    message = reparsed(
        render(
            property_name="<Loft & Co>",
            doors=["<script>alert(1)</script>"],
            property_address="<b>Main St</b>",
            support_contact="<a href=x>call</a>",
        )
    )
    text, html = parts(message)

    assert "&lt;b&gt;Main St&lt;/b&gt;" in html
    assert "&lt;a href=x&gt;call&lt;/a&gt;" in html
    assert "<b>" not in html and "<a href" not in html
    assert "&lt;Loft &amp; Co&gt;" in html
    assert "<Loft & Co>" not in html
    assert "&lt;script&gt;" in html
    assert "<script>" not in html
    assert "<Loft & Co>" in text
    assert message["Subject"] == "Your door code for <Loft & Co>"


def test_property_name_with_a_newline_cannot_break_the_subject_header() -> None:
    message = render(property_name="Seaside\r\nBcc: victim@example.com")

    assert message["Subject"] == "Your door code for Seaside Bcc: victim@example.com"
    assert reparsed(message)["Bcc"] is None


def test_times_changed_says_the_dates_changed_and_the_code_did_not() -> None:
    message = reparsed(render(kind="times_changed"))
    text, html = parts(message)

    assert message["Subject"] == "New dates for your stay at Seaside Loft"
    for body in (text, html):
        assert "dates of your stay at Seaside Loft have changed" in body
        assert "Your door code has not changed" in body
        assert PIN_CODE in body


def test_resend_says_here_is_your_code_again() -> None:
    text, _ = parts(reparsed(render(kind="resend")))

    assert "Here is your door code for Seaside Loft again." in text


def test_a_locale_stored_before_locales_were_checked_falls_back_to_english() -> None:
    text, _ = parts(reparsed(render(locale="ja-JP")))

    assert "Hello Ana Silva" in text


def test_the_code_never_appears_in_the_message_repr() -> None:
    message = make_message()

    assert PIN_CODE not in repr(message)
    assert PIN_CODE not in str(message)


def test_naive_times_are_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        make_message(starts_at=datetime(2026, 12, 1, 15, 0))


def test_unknown_time_zone_is_refused() -> None:
    with pytest.raises(ZoneInfoNotFoundError):
        make_message(timezone="Mars/Olympus_Mons")


def test_sms_is_one_short_line_with_code_window_doors_and_how_to() -> None:
    sms = render_sms(make_message())

    assert sms == (
        "Door code for Seaside Loft: 482913. Dec 1, 3:00 PM to Dec 4, 11:00 AM, local time. "
        "Doors: Front Door, Back Door. Type the code on the keypad, then the lock key."
    )
    assert sms.isascii()  # CLDR's no-break space before "PM" became a plain one
    assert sms_segments(sms) == 1


def test_sms_for_changed_times_says_the_code_is_unchanged() -> None:
    sms = render_sms(make_message(kind="times_changed", timezone="America/New_York"))

    assert "New dates for your stay at Seaside Loft" in sms
    assert "Dec 1, 10:00 AM to Dec 4, 6:00 AM, local time." in sms
    assert "Door code unchanged: 482913" in sms
    assert "Front Door, Back Door" in sms
    assert "\n" not in sms


def test_sms_in_utc_says_utc() -> None:
    sms = render_sms(make_message(timezone="UTC"))

    assert "Dec 1, 3:00 PM to Dec 4, 11:00 AM UTC." in sms
    assert "local time" not in sms


def test_sms_with_address_and_contact_stays_within_two_parts() -> None:
    sms = render_sms(
        make_message(
            property_address="Rua Augusta 100\n1100-053 Lisboa\nPortugal",
            support_contact="+351 210 000 000 (Marta)",
        )
    )

    assert "Address: Rua Augusta 100, 1100-053 Lisboa, Portugal." in sms
    assert sms.endswith("Help: +351 210 000 000 (Marta)")
    assert sms_segments(sms) == 2


@pytest.mark.parametrize(
    ("text", "segments"),
    [
        ("a" * 160, 1),
        ("a" * 161, 2),
        ("a" * 306, 2),
        ("a" * 307, 3),
        ("€" * 80, 1),  # two septets each
        ("€" * 81, 2),
        ("Ж" * 70, 1),  # UCS-2
        ("Ж" * 71, 2),
        ("Ж" + "a" * 133, 2),
        ("Ж" + "a" * 134, 3),
    ],
)
def test_sms_segments_count_gsm7_and_ucs2_parts(text: str, segments: int) -> None:
    assert sms_segments(text) == segments


def test_gsm7_folding_keeps_the_alphabets_letters_and_folds_the_others() -> None:
    assert to_gsm7("código Olá l’heure à é ñ ü ß") == "codigo Ola l'heure à é ñ ü ß"
    assert to_gsm7("Жанна 東京") == "Жанна 東京"  # no GSM-7 form: kept as written
