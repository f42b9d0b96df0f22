"""What a guest is told when a door code is issued, as an email or an SMS.

The wording lives in Jinja2 templates (`templates/`) so copy can change without touching code;
this module only turns a `GuestMessage` into the facts those templates show. Times are shown in
the reservation's own time zone with its abbreviation, because a guest reads "15:00 WET" as
"15:00 where I am staying", never as UTC. Locales fall back to English: a translation is a
calendar entry below plus templates under `templates/<locale>/`.
"""

from __future__ import annotations

import email.utils
import functools
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from typing import Any, Literal
from zoneinfo import ZoneInfo

import jinja2

MessageKind = Literal["new_code", "times_changed", "resend"]

DEFAULT_LOCALE = "en"
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

    def __post_init__(self) -> None:
        if self.starts_at.utcoffset() is None or self.ends_at.utcoffset() is None:
            raise ValueError("starts_at and ends_at must be timezone-aware")
        ZoneInfo(self.timezone)  # fail when the message is built, not when it is sent


@dataclass(frozen=True)
class _Calendar:
    weekdays: tuple[str, ...]  # Monday first, as `datetime.weekday()` counts
    months: tuple[str, ...]  # January first


# Our own names rather than strftime's %a/%b: those follow the process locale, not the guest's.
_CALENDARS: dict[str, _Calendar] = {
    "en": _Calendar(
        weekdays=("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"),
        months=("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"),
    ),
}


def resolve_locale(locale: str) -> str:
    """The most specific supported locale for `locale` ("pt-BR" → "pt-br", "pt", else "en")."""
    normalized = locale.strip().lower().replace("_", "-")
    language = normalized.split("-", 1)[0]
    for candidate in (normalized, language):
        if candidate in _CALENDARS:
            return candidate
    return DEFAULT_LOCALE


def format_local_time(moment: datetime, timezone: str, locale: str = DEFAULT_LOCALE) -> str:
    """`Tue 1 Dec 2026, 15:00 WET`: the moment as the clock on the property's wall shows it."""
    local = moment.astimezone(ZoneInfo(timezone))
    calendar = _CALENDARS[resolve_locale(locale)]
    weekday = calendar.weekdays[local.weekday()]
    month = calendar.months[local.month - 1]
    return f"{weekday} {local.day} {month} {local.year}, {local:%H:%M} {local.tzname()}"


@functools.cache
def _templates() -> jinja2.Environment:
    # Built on first use, not at import. Only the HTML templates are escaped: plain text and
    # SMS must show "<Loft & Co>" as written.
    return jinja2.Environment(
        loader=jinja2.PackageLoader("app.delivery", "templates"),
        autoescape=jinja2.select_autoescape(
            enabled_extensions=("html.j2",), default_for_string=False, default=False
        ),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def _render(name: str, locale: str, facts: dict[str, Any]) -> str:
    candidates = [name] if locale == DEFAULT_LOCALE else [f"{locale}/{name}", name]
    return _templates().select_template(candidates).render(facts)


def _facts(message: GuestMessage, locale: str) -> dict[str, Any]:
    return {
        "locale": locale,
        "kind": message.kind,
        "guest_name": message.guest_name.strip(),
        "property_name": _one_line(message.property_name or "") or None,
        "code": message.code,
        "doors": list(message.doors),
        "check_in": format_local_time(message.starts_at, message.timezone, locale),
        "check_out": format_local_time(message.ends_at, message.timezone, locale),
        "timezone": message.timezone,
    }


def _one_line(text: str) -> str:
    """Collapse every run of whitespace (newlines included) into one space."""
    return re.sub(r"\s+", " ", text).strip()


def _mail_domain(mail_from: str) -> str:
    _, address = email.utils.parseaddr(mail_from)
    _, at, domain = address.rpartition("@")
    return domain if at and domain else DEFAULT_MAIL_DOMAIN


def render_email(message: GuestMessage, *, to: str, mail_from: str) -> EmailMessage:
    """A multipart/alternative email (text + HTML) ready for any `EmailSender`."""
    locale = resolve_locale(message.locale)
    facts = _facts(message, locale)
    email_message = EmailMessage()
    # Subjects are headers: a newline in a property name must not become a header break.
    email_message["Subject"] = _one_line(_render("subject.txt.j2", locale, facts))
    email_message["From"] = mail_from
    email_message["To"] = to
    email_message["Date"] = email.utils.format_datetime(datetime.now(UTC))
    email_message["Message-ID"] = email.utils.make_msgid(
        idstring="guestkey", domain=_mail_domain(mail_from)
    )
    email_message["Auto-Submitted"] = "auto-generated"  # RFC 3834: no vacation auto-replies
    email_message.set_content(_render("email.txt.j2", locale, facts), cte="quoted-printable")
    email_message.add_alternative(
        _render("email.html.j2", locale, facts), subtype="html", cte="quoted-printable"
    )
    return email_message


def render_sms(message: GuestMessage) -> str:
    """One short line with the same facts as the email: code, doors, and the stay's window."""
    locale = resolve_locale(message.locale)
    return _one_line(_render("sms.txt.j2", locale, _facts(message, locale)))
