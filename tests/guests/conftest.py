from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.guests.support import PUBLIC_URL, SUPPORT_CONTACT
from tests.lifecycle.test_callbacks_and_timing import CALLBACK_SECRET, Receiver


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    import threading

    box = Receiver()
    thread = threading.Thread(target=box.server.serve_forever, daemon=True)
    thread.start()
    yield box
    box.server.shutdown()


@pytest.fixture
def settings_overrides(settings_overrides: dict[str, Any], receiver: Receiver) -> dict[str, Any]:
    return {
        **settings_overrides,
        "public_url": PUBLIC_URL,
        "guestkey_support_contact": SUPPORT_CONTACT,
        "guestkey_callback_url": receiver.url,
        "guestkey_callback_secret": CALLBACK_SECRET,
    }
