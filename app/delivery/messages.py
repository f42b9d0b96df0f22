"""What a guest is told when a door code is issued, as an email or an SMS.

The wording lives in Jinja2 templates (`templates/`), translated through the gettext catalogues
of `app.i18n`; this module only turns a `GuestMessage` into the facts those templates show.
Times are shown on the property's wall clock, written the way the guest's language writes
dates, with the zone's everyday name ("Eastern Time") — or plainly "UTC" when the booking
system gave no zone. Every message says how to use the code at the keypad, where the property
is when its address is known, and whom to ask when `GUESTKEY_SUPPORT_CONTACT` is set.
"""

from __future__ import annotations

import email.utils
import functools
import re
import unicodedata
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from typing import Any, Literal
from zoneinfo import ZoneInfo

import jinja2

from app.i18n import format_datetime, language_for, timezone_name, translations

MessageKind = Literal["new_code", "times_changed", "resend"]

DEFAULT_MAIL_DOMAIN = "guestkey.local"


@dataclass(frozen=True)
class GuestMessage:
    """Everything a guest needs to get in: who, where, the code, which doors, and when."""

    guest_name: str
    locale: str
    property_name: str | None
    code: str = field(repr=False)  # the PIN: never in a repr, so never in a log or traceback
    doors: list[str]
    starts_at: datetime
    ends_at: datetime
    timezone: str
    kind: MessageKind = "new_code"
    property_address: str | None = None
    support_contact: str | None = None
    page_url: str | None = None  # the guest's page (DESIGN.md §9.10)

    def __post_init__(self) -> None:
        if self.starts_at.utcoffset() is None or self.ends_at.utcoffset() is None:
            raise ValueError("starts_at and ends_at must be timezone-aware")
        ZoneInfo(self.timezone)  # fail when the message is built, not when it is sent


@functools.cache
def _templates(language: str) -> jinja2.Environment:
    # One environment per language, built on first use, not at import: the catalogue is
    # installed into the environment, so environments cannot be shared between languages.
    # Only the HTML templates are escaped: plain text and SMS must show "<Loft & Co>" as written.
    environment = jinja2.Environment(
        loader=jinja2.PackageLoader("app.delivery", "templates"),
        autoescape=jinja2.select_autoescape(
            enabled_extensions=("html.j2",), default_for_string=False, default=False
        ),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        extensions=["jinja2.ext.i18n"],
    )
    # New-style gettext: placeholders are filled (and escaped in HTML) by the call itself.
    environment.install_gettext_translations(translations(language), newstyle=True)  # type: ignore[attr-defined]
    return environment


def _render(name: str, language: str, facts: dict[str, Any]) -> str:
    return _templates(language).get_template(name).render(facts)


def _facts(message: GuestMessage, language: str) -> dict[str, Any]:
    def local(moment: datetime, *, short: bool = False) -> str:
        return format_datetime(moment, timezone=message.timezone, language=language, short=short)

    return {
        "language": language,
        "kind": message.kind,
        "guest_name": message.guest_name.strip(),
        "property_name": _one_line(message.property_name or "") or None,
        "property_address": _lines(message.property_address),
        "support_contact": _one_line(message.support_contact or "") or None,
        "code": message.code,
        "doors": list(message.doors),
        "check_in": local(message.starts_at),
        "check_out": local(message.ends_at),
        # An SMS has no room for the weekday and the year.
        "check_in_short": local(message.starts_at, short=True),
        "check_out_short": local(message.ends_at, short=True),
        "timezone_name": timezone_name(message.timezone, language),
        "page_url": message.page_url,
    }


def _one_line(text: str) -> str:
    """Collapse every run of whitespace (newlines included) into one space."""
    return re.sub(r"\s+", " ", text).strip()


def _lines(text: str | None) -> list[str]:
    """An address as its non-empty lines, each on one line."""
    return [line for line in map(_one_line, (text or "").splitlines()) if line]


def _mail_domain(mail_from: str) -> str:
    _, address = email.utils.parseaddr(mail_from)
    _, at, domain = address.rpartition("@")
    return domain if at and domain else DEFAULT_MAIL_DOMAIN


def render_email(message: GuestMessage, *, to: str, mail_from: str) -> EmailMessage:
    """A multipart/alternative email (text + HTML) ready for any `EmailSender`."""
    language = language_for(message.locale)
    facts = _facts(message, language)
    email_message = EmailMessage()
    # Subjects are headers: a newline in a property name must not become a header break.
    email_message["Subject"] = _one_line(_render("subject.txt.j2", language, facts))
    email_message["From"] = mail_from
    email_message["To"] = to
    email_message["Date"] = email.utils.format_datetime(datetime.now(UTC))
    email_message["Message-ID"] = email.utils.make_msgid(
        idstring="guestkey", domain=_mail_domain(mail_from)
    )
    email_message["Auto-Submitted"] = "auto-generated"  # RFC 3834: no vacation auto-replies
    email_message.set_content(_render("email.txt.j2", language, facts), cte="quoted-printable")
    email_message.add_alternative(
        _render("email.html.j2", language, facts), subtype="html", cte="quoted-printable"
    )
    # After the content: setting content clears the Content-* headers.
    email_message["Content-Language"] = language
    return email_message


def render_sms(message: GuestMessage) -> str:
    """One short line with the same facts as the email, in the GSM-7 alphabet where it can be."""
    language = language_for(message.locale)
    return to_gsm7(_one_line(_render("sms.txt.j2", language, _facts(message, language))))


# --- SMS alphabet -------------------------------------------------------------------------------
# An SMS in the GSM-7 alphabet carries 160 characters (153 per part when split); one character
# outside it turns the whole message into UCS-2 and 70 (67). "código" or "l’heure" alone would
# triple the parts a Portuguese or French guest's message needs, so letters are folded to the
# alphabet as carriers do ("código" → "codigo"); what has no such letter (Greek, Cyrillic, CJK
# names) stays as written and the message is sent as UCS-2.

GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_EXTENDED = frozenset("^{}\\[~]|€\f")  # two septets each
_PUNCTUATION = str.maketrans(
    {
        "\u2018": "'",
        "\u2019": "'",
        "\u201c": '"',
        "\u201d": '"',
        "\u2013": "-",
        "\u2014": "-",
        "\u2026": "...",
        "\u00a0": " ",  # no-break spaces: CLDR puts them in "3:00 PM" and "1 déc."
        "\u202f": " ",
        "\u2009": " ",
    }
)


def to_gsm7(text: str) -> str:
    """`text` with typographic punctuation and accented letters folded into GSM-7 where the
    alphabet has the plain letter; characters with no GSM-7 form are kept."""
    return "".join(_fold(char) for char in text.translate(_PUNCTUATION))


def _fold(char: str) -> str:
    if char in GSM7_BASIC or char in GSM7_EXTENDED:
        return char
    base = "".join(c for c in unicodedata.normalize("NFKD", char) if not unicodedata.combining(c))
    return base if base and all(c in GSM7_BASIC for c in base) else char


def sms_segments(text: str) -> int:
    """How many SMS parts `text` is sent as (GSM-7 when it can be, else UCS-2)."""
    if all(char in GSM7_BASIC or char in GSM7_EXTENDED for char in text):
        units = sum(2 if char in GSM7_EXTENDED else 1 for char in text)
        single, part = 160, 153
    else:
        units = len(text.encode("utf-16-le")) // 2
        single, part = 70, 67
    return 1 if units <= single else -(-units // part)
