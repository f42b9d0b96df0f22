"""What guests read: both email parts, every door, the window in the property's zone, escaping."""

from __future__ import annotations

import email
import email.policy
from datetime import UTC, datetime
from email.message import EmailMessage
from zoneinfo import ZoneInfoNotFoundError

import pytest

from app.delivery.messages import format_local_time, render_email, render_sms, resolve_locale
from tests.delivery.conftest import PIN_CODE, make_message

MAIL_FROM = "Seaside Stays <stays@seaside.example>"


def render(**overrides: object) -> EmailMessage:
    return render_email(make_message(**overrides), to="ana@example.com", mail_from=MAIL_FROM)


def parts(message: EmailMessage) -> tuple[str, str]:
    text = message.get_body(preferencelist=("plain",))
    html = message.get_body(preferencelist=("html",))
    assert text is not None and html is not None
    return str(text.get_content()), str(html.get_content())


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


def test_window_is_shown_in_the_reservations_time_zone() -> None:
    text, html = parts(reparsed(render()))

    window = "Check-in Tue 1 Dec 2026, 15:00 WET — check-out Fri 4 Dec 2026, 11:00 WET"
    assert window in text
    assert "Tue 1 Dec 2026, 15:00 WET" in html
    assert "Fri 4 Dec 2026, 11:00 WET" in html


def test_same_instant_reads_differently_in_new_york() -> None:
    text, _ = parts(reparsed(render(timezone="America/New_York")))

    assert "Check-in Tue 1 Dec 2026, 10:00 EST — check-out Fri 4 Dec 2026, 06:00 EST" in text


@pytest.mark.parametrize(
    ("timezone", "expected"),
    [
        ("Europe/Lisbon", "Sat 1 Aug 2026, 13:00 WEST"),
        ("America/New_York", "Sat 1 Aug 2026, 08:00 EDT"),
        ("Asia/Tokyo", "Sat 1 Aug 2026, 21:00 JST"),
    ],
)
def test_summer_times_use_the_daylight_saving_abbreviation(timezone: str, expected: str) -> None:
    assert format_local_time(datetime(2026, 8, 1, 12, 0, tzinfo=UTC), timezone) == expected


def test_html_escapes_property_and_door_names_but_text_shows_them_as_written() -> None:
    message = reparsed(render(property_name="<Loft & Co>", doors=["<script>alert(1)</script>"]))
    text, html = parts(message)

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


def test_unknown_locale_falls_back_to_english() -> None:
    assert resolve_locale("pt-BR") == "en"
    assert resolve_locale("EN_gb") == "en"
    text, _ = parts(reparsed(render(locale="fr-FR")))
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


def test_sms_is_one_short_line_with_code_doors_and_window() -> None:
    sms = render_sms(make_message())

    assert sms == (
        "Hi Ana Silva, your door code for Seaside Loft is 482913. "
        "Valid Tue 1 Dec 2026, 15:00 WET to Fri 4 Dec 2026, 11:00 WET. "
        "Opens: Front Door, Back Door."
    )
    assert len(sms) <= 160
    assert sms.isascii()


def test_sms_for_changed_times_says_the_code_is_unchanged() -> None:
    sms = render_sms(make_message(kind="times_changed", timezone="America/New_York"))

    assert "new dates for your stay at Seaside Loft" in sms
    assert "Tue 1 Dec 2026, 10:00 EST to Fri 4 Dec 2026, 06:00 EST" in sms
    assert "Door code unchanged: 482913" in sms
    assert "Front Door, Back Door" in sms
    assert "\n" not in sms
