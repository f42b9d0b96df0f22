"""Rendering the guest's page: Jinja2 templates, in the guest's language.

The page's own words live in the gettext domain `guest_page` (`app/guests/locales/<language>/
LC_MESSAGES/guest_page.po`, compiled to `.mo` beside it; English is the msgid itself). Dates and
time-zone names come from CLDR through `app.i18n`, in the property's time zone.
"""

from __future__ import annotations

import functools
import gettext
from pathlib import Path
from typing import Any

import jinja2
from babel.support import Translations

from app import i18n
from app.guests.flows import Report
from app.guests.service import Stay

LOCALES_DIR = Path(__file__).parent / "locales"
DOMAIN = "guest_page"
STYLESHEET = Path(__file__).parent / "static" / "guest.css"
# Each language named in itself: a guest who cannot read the page can still find theirs.
LANGUAGE_NAMES = {
    "en": "English",
    "es": "Español",
    "fr": "Français",
    "de": "Deutsch",
    "it": "Italiano",
    "pt": "Português",
    "nl": "Nederlands",
}


@functools.cache
def page_translations(language: str) -> gettext.NullTranslations:
    if language == i18n.DEFAULT_LANGUAGE:
        return gettext.NullTranslations()
    found = Translations.load(LOCALES_DIR, [language], DOMAIN)
    if not isinstance(found, Translations):  # load() falls back silently; a missing .mo is a bug
        raise LookupError(f"the {language!r} page catalogue is missing from {LOCALES_DIR}")
    return found


@functools.cache
def _environment(language: str) -> jinja2.Environment:
    # One environment per language, built on first use: its gettext is fixed, so renders for
    # guests of different languages never share a translation.
    environment = jinja2.Environment(
        loader=jinja2.PackageLoader("app.guests", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        extensions=["jinja2.ext.i18n"],
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.install_gettext_translations(  # type: ignore[attr-defined]
        page_translations(language), newstyle=True
    )
    return environment


@functools.cache
def _stylesheet() -> str:
    return STYLESHEET.read_text()


def choose_language(asked: str | None, guest_locale: str) -> str:
    """The language the guest picked on the page, else the one of their booking."""
    if asked and (language := i18n.supported_language(asked)):
        return language
    return i18n.language_for(guest_locale)


def _render(template: str, language: str, **facts: Any) -> str:
    return (
        _environment(language)
        .get_template(template)
        .render(language=language, css=_stylesheet(), **facts)
    )


def render_page(
    *,
    token: str,
    language: str,
    stay: Stay | None,
    cancelled: bool,
    property_name: str | None,
    address: list[str],
    support_contact: str | None,
    code: str | None = None,
    report: Report | None = None,
) -> str:
    facts: dict[str, Any] = {}
    if stay is not None:
        reservation = stay.reservation
        facts = {
            "check_in": i18n.format_datetime(
                reservation.starts_at, timezone=reservation.timezone, language=language
            ),
            "check_out": i18n.format_datetime(
                reservation.ends_at, timezone=reservation.timezone, language=language
            ),
            "zone_name": i18n.timezone_name(reservation.timezone, language) or "UTC",
        }
    return _render(
        "page.html.j2",
        language,
        token=token,
        languages=list(LANGUAGE_NAMES.items()),
        stay=stay,
        cancelled=cancelled,
        property_name=property_name,
        address=address,
        support_contact=support_contact,
        code=code,
        report=report,
        **facts,
    )


def render_not_found(language: str) -> str:
    return _render("not_found.html.j2", language)
