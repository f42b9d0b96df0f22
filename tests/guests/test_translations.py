"""The guest page's catalogues: every word of its templates translated, in every language
guestkey writes, and the compiled `.mo` files equal to their `.po` sources."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po

from app.guests.pages import DOMAIN, LOCALES_DIR, page_translations
from app.i18n import LANGUAGES

PLACEHOLDER = re.compile(r"%\(\w+\)s")
UPDATE = (
    "update the catalogues: pybabel extract -F app/guests/locales/babel.cfg --omit-header "
    "--no-wrap --no-location -o app/guests/locales/guest_page.pot . && pybabel update -i "
    "app/guests/locales/guest_page.pot -d app/guests/locales -D guest_page && pybabel compile "
    "-d app/guests/locales -D guest_page"
)


def template_messages() -> set[str]:
    root = Path(__file__).resolve().parents[2]
    found = extract_from_dir(
        root / "app" / "guests" / "templates",
        method_map=[("**.j2", "jinja2")],
        options_map={"**.j2": {"extensions": "jinja2.ext.i18n", "trimmed": "true"}},
    )
    return {message for _, _, message, _, _ in found if isinstance(message, str)}


@pytest.mark.parametrize("language", [language for language in LANGUAGES if language != "en"])
def test_every_word_of_the_page_is_translated(language: str) -> None:
    with (LOCALES_DIR / language / "LC_MESSAGES" / f"{DOMAIN}.po").open("rb") as source:
        catalogue = read_po(source)
    translated = {m.id: m.string for m in catalogue if m.id and m.string}
    missing = template_messages() - set(translated)
    assert not missing, f"{language}: {sorted(missing)} — {UPDATE}"
    compiled = page_translations(language)
    for message_id, text in translated.items():
        assert PLACEHOLDER.findall(str(message_id)) == PLACEHOLDER.findall(str(text))
        assert compiled.gettext(str(message_id)) == text, f"{language} .mo is stale — {UPDATE}"
