"""A fake Seam API for tests and sandbox mode.

It implements the Seam endpoints guestkey uses, with Seam's request forms (``POST`` + JSON, and
the SDK's ``GET``/``PATCH``/``DELETE`` + query string) and Seam's response shapes (validated
against Seam's OpenAPI spec by ``tests/seam/test_fake_seam.py``):

``access_grants/create|get|list|update|delete|request_access_methods``,
``access_methods/get|list|get_related|delete``, ``events/list``, ``devices/get|list``,
``acs/entrances/get|list``, ``spaces/get|list``, ``user_identities/get|list``, ``workspaces/get``,
``webhooks/create|get|list|update|delete``.

It is as demanding as Seam where guestkey must cope: a sample of every event type of Seam's spec
(``POST /_fake/emit_samples``), doors that cannot take a code (partial grants with warnings and
errors), codes delayed by an offline lock, backup codes under a new access method, related doors
only once a code is issued, case-sensitive identity search, unknown parameters refused (strict
mode), 401/403 with Seam's error body. Its defaults keep the sandbox pleasant: the doors of
"Whole Property" take codes at once, issued after a short ``issue_delay``.

Every state change records a Seam event and delivers it Svix-style (signed, retried) to the
webhook URL and to each webhook made through ``webhooks/create``. ``/_fake/*`` endpoints steer it
from tests (see :mod:`.control`); error types are listed in :mod:`.errors`; the behaviours and
the deviations from real Seam in :mod:`.state`.

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
