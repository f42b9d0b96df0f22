"""The languages guestkey speaks to guests: catalogues, and dates as the guest reads them.

Wording is translated with gettext catalogues (`app/locales/<language>/LC_MESSAGES/messages.po`,
compiled to `.mo` next to it; `make translations` re-extracts, updates and compiles them).
English is the source language: its text is the `msgid` itself, so it needs no catalogue.

A guest's `locale` is a BCP 47 tag as booking systems send it; guestkey writes in its language
("pt-BR" and "pt_PT" both get Portuguese), because one catalogue per language is what a guest
can tell apart. Dates and time-zone names come from CLDR through Babel, in the guest's language
and the property's time zone.
"""

from __future__ import annotations

import functools
import gettext
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from babel import Locale
from babel.dates import format_skeleton, format_time, get_timezone_name
from babel.support import Translations

DEFAULT_LANGUAGE = "en"
# The order guests and booking systems see them in (errors, README).
LANGUAGES = ("en", "es", "fr", "de", "it", "pt", "nl")
LOCALES_DIR = Path(__file__).parent / "locales"
DOMAIN = "messages"
UTC_ZONE = "UTC"


def supported_language(locale: str) -> str | None:
    """The language guestkey writes for a locale tag ("pt-BR" → "pt"), None when it has none."""
    language = locale.strip().replace("_", "-").split("-", 1)[0].lower()
    return language if language in LANGUAGES else None


def language_for(locale: str) -> str:
    """Like `supported_language`, with English for a tag stored before locales were checked."""
    return supported_language(locale) or DEFAULT_LANGUAGE


@functools.cache
def translations(language: str) -> gettext.NullTranslations:
    """The compiled catalogue of a language (English: the msgids as written)."""
    if language == DEFAULT_LANGUAGE:
        return gettext.NullTranslations()
    if language not in LANGUAGES:
        raise LookupError(f"no catalogue for {language!r}")
    found = Translations.load(LOCALES_DIR, [language], DOMAIN)
    if not isinstance(found, Translations):  # load() falls back silently; a missing .mo is a bug
        raise LookupError(f"the {language!r} catalogue is missing from {LOCALES_DIR}")
    return found


def format_datetime(moment: datetime, *, timezone: str, language: str, short: bool = False) -> str:
    """`Tue, Dec 1, 2026, 3:00 PM` / `di 1 dec 2026, 15:00` (short: `Dec 1, 3:00 PM`): the
    property's wall clock, written the way the guest's language writes a date and a time."""
    zone = ZoneInfo(timezone)
    date = format_skeleton("MMMd" if short else "yMMMEd", moment, tzinfo=zone, locale=language)
    time = format_time(moment, "short", tzinfo=zone, locale=language)
    pattern = str(Locale.parse(language).datetime_formats["medium"]).replace("'", "")
    return pattern.replace("{1}", date).replace("{0}", time)


def timezone_name(timezone: str, language: str) -> str | None:
    """The zone's everyday name ("Eastern Time", "heure d’Europe de l’Ouest"), None for UTC,
    which CLDR calls "Unknown Region (UTC) Time" and every guest knows as UTC."""
    if timezone == UTC_ZONE:
        return None
    name: str = get_timezone_name(ZoneInfo(timezone), locale=language)
    return name
