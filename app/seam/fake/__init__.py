"""A fake Seam API for tests and sandbox mode.

It implements the Seam endpoints guestkey uses, with Seam's request forms (``POST`` + JSON, and
the SDK's ``GET``/``PATCH``/``DELETE`` + query string) and Seam's response shapes (validated
against Seam's OpenAPI spec by ``tests/seam/test_fake_seam.py``):

``access_grants/create|get|list|update|delete``, ``access_methods/get|list|get_related|delete``,
``events/list``, ``devices/list``, ``acs/entrances/list``, ``user_identities/get|list``.

Every state change records a Seam event and, when a webhook URL is set, delivers it Svix-style
(signed, retried). ``/_fake/*`` endpoints steer it from tests (see :mod:`.control`); error types
are listed in :mod:`.errors`; deviations from real Seam in :mod:`.state`.

    fake = FakeSeam(webhook_url=..., webhook_transport=httpx.ASGITransport(guestkey_app))
    seam = AsyncSeam(api_key="seam_fake_key", endpoint="http://fake-seam",
                     httpx_options={"transport": httpx.ASGITransport(fake.app)})
    ...
    await fake.aclose()
"""

from app.seam.fake.app import FailureRule, FakeSeam, create_fake_seam_app, serve
from app.seam.fake.seed import SEEDED_DEVICES, SEEDED_ENTRANCES, SEEDED_SPACES, SeededDoor
from app.seam.fake.state import FakeSeamState

__all__ = [
    "SEEDED_DEVICES",
    "SEEDED_ENTRANCES",
    "SEEDED_SPACES",
    "FailureRule",
    "FakeSeam",
    "FakeSeamState",
    "SeededDoor",
    "create_fake_seam_app",
    "serve",
]
