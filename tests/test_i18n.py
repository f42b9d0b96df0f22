"""The message catalogues: one per language, complete, and compiled from the committed .po."""

from __future__ import annotations

import gettext
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
from babel.messages.catalog import Message
from babel.messages.extract import extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.pofile import read_po

from app.i18n import (
    DEFAULT_LANGUAGE,
    DOMAIN,
    LANGUAGES,
    LOCALES_DIR,
    format_datetime,
    language_for,
    supported_language,
    timezone_name,
    translations,
)

ROOT = Path(__file__).resolve().parent.parent
TRANSLATED = [language for language in LANGUAGES if language != DEFAULT_LANGUAGE]
PLACEHOLDER = re.compile(r"%\((\w+)\)s")


def catalogue(language: str) -> list[Message]:
    with (LOCALES_DIR / language / "LC_MESSAGES" / f"{DOMAIN}.po").open("rb") as po:
        return [message for message in read_po(po) if message.id]


def template_ids() -> set[str]:
    with (LOCALES_DIR / f"{DOMAIN}.pot").open("rb") as pot:
        return {_singular(message) for message in read_po(pot) if message.id}


def _singular(message: Message) -> str:
    return message.id if isinstance(message.id, str) else message.id[0]


def test_template_catalogue_has_exactly_the_text_of_the_templates() -> None:
    """`make translations` was run after the last change to a template's wording."""
    with (ROOT / "babel.cfg").open() as config:
        method_map, options_map = parse_mapping_cfg(config, "babel.cfg")
    found = extract_from_dir(ROOT, method_map, options_map)
    in_templates = {text if isinstance(text, str) else text[0] for _, _, text, *_ in found}

    assert in_templates == template_ids()


def test_every_language_but_english_has_a_catalogue_and_nothing_else_does() -> None:
    folders = {path.name for path in LOCALES_DIR.iterdir() if path.is_dir()}

    assert folders == set(TRANSLATED)


@pytest.mark.parametrize("language", TRANSLATED)
def test_catalogue_translates_every_message_of_the_templates(language: str) -> None:
    messages = catalogue(language)

    assert {_singular(message) for message in messages} == template_ids()
    for message in messages:
        strings = message.string if isinstance(message.string, tuple) else (message.string,)
        assert all(strings), f"untranslated: {message.id!r}"
        assert not message.fuzzy, f"fuzzy: {message.id!r}"


@pytest.mark.parametrize("language", TRANSLATED)
def test_translations_keep_every_placeholder(language: str) -> None:
    for message in catalogue(language):
        wanted = set(PLACEHOLDER.findall(_singular(message)))
        strings = message.string if isinstance(message.string, tuple) else (message.string,)
        for string in strings:
            assert set(PLACEHOLDER.findall(string)) == wanted, (message.id, string)


@pytest.mark.parametrize("language", TRANSLATED)
def test_compiled_mo_matches_its_po(language: str) -> None:
    """The .mo files are committed so an install needs no compile step: `make translations`
    must have been run after the last .po change."""
    folder = LOCALES_DIR / language / "LC_MESSAGES"
    with (folder / f"{DOMAIN}.mo").open("rb") as mo:
        compiled = gettext.GNUTranslations(mo)
    for message in catalogue(language):
        if isinstance(message.id, str):
            assert compiled.gettext(message.id) == message.string
        else:
            singular, plural = message.id
            for count in (1, 2, 5):
                form = compiled.plural(count)  # type: ignore[attr-defined]
                assert compiled.ngettext(singular, plural, count) == message.string[form]


def test_translations_load_from_the_package() -> None:
    assert translations("fr").gettext("How to get in") == "Comment entrer"
    assert translations("en").gettext("How to get in") == "How to get in"
    with pytest.raises(LookupError):
        translations("ja")


@pytest.mark.parametrize(
    ("locale", "language"),
    [
        ("pt-BR", "pt"),
        ("pt_PT", "pt"),
        ("EN_gb", "en"),
        ("de-CH", "de"),
        ("nl", "nl"),
        ("zh-Hant-TW", None),
        ("ja", None),
    ],
)
def test_a_locale_gets_its_language_or_none(locale: str, language: str | None) -> None:
    assert supported_language(locale) == language
    assert language_for(locale) == (language or DEFAULT_LANGUAGE)


def test_dates_are_written_in_the_language_and_the_zone() -> None:
    moment = datetime(2026, 12, 1, 15, 0, tzinfo=UTC)

    def written(language: str, timezone: str, *, short: bool = False) -> str:
        text = format_datetime(moment, timezone=timezone, language=language, short=short)
        return " ".join(text.split())

    assert written("en", "America/New_York") == "Tue, Dec 1, 2026, 10:00 AM"
    assert written("de", "Europe/Berlin") == "Di., 1. Dez. 2026, 16:00"
    assert written("fr", "UTC", short=True) == "1 déc., 15:00"
    assert written("pt", "America/Sao_Paulo", short=True) == "1 de dez. 12:00"


def test_zone_names_are_everyday_names_and_utc_has_none() -> None:
    assert timezone_name("America/New_York", "en") == "Eastern Time"
    assert timezone_name("Europe/Berlin", "de") == "Mitteleuropäische Zeit"
    assert timezone_name("UTC", "en") is None
