"""The Standard Webhooks verification matrix, on the verifier alone."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, tzinfo

import pytest
import standardwebhooks.webhooks
from hypothesis import given, settings
from hypothesis import strategies as st

from app.webhooks.verify import MalformedWebhook, UnauthenticWebhook, WebhookVerifier
from tests.webhooks.signing import OTHER_SECRET, SECRET, seam_event, signed

verifier = WebhookVerifier([SECRET])


def test_a_valid_signature_verifies() -> None:
    body, headers = signed(seam_event())
    assert verifier.verify(body, headers).body == body


@pytest.mark.parametrize("prefix", ["svix", "webhook"])
@pytest.mark.parametrize("case", [str.lower, str.upper, str.title])
def test_header_names_in_either_family_and_any_case(prefix: str, case: object) -> None:
    body, headers = signed(seam_event(), prefix=prefix)
    headers = {case(name): value for name, value in headers.items()}  # type: ignore[operator]
    assert verifier.verify(body, headers).message_id.startswith("msg_")


@pytest.mark.parametrize("missing", ["svix-id", "svix-timestamp", "svix-signature"])
def test_each_missing_header_is_malformed(missing: str) -> None:
    body, headers = signed(seam_event())
    del headers[missing]
    with pytest.raises(MalformedWebhook) as error:
        verifier.verify(body, headers)
    assert error.value.status_code == 400


@pytest.mark.parametrize(
    ("header", "value"),
    [
        ("svix-timestamp", "yesterday"),
        ("svix-timestamp", "1.5e9"),
        ("svix-signature", "garbage"),
        ("svix-signature", "v1"),
        ("svix-signature", "v1,"),
        ("svix-signature", ",abc"),
        ("svix-signature", "v1,@@@@"),
        ("svix-id", "x" * 300),
    ],
)
def test_garbled_headers_are_malformed(header: str, value: str) -> None:
    body, headers = signed(seam_event())
    headers[header] = value
    with pytest.raises(MalformedWebhook):
        verifier.verify(body, headers)


def test_a_signature_by_another_secret_is_unauthentic() -> None:
    body, headers = signed(seam_event(), secret=OTHER_SECRET)
    with pytest.raises(UnauthenticWebhook) as error:
        verifier.verify(body, headers)
    assert error.value.status_code == 401


def test_a_changed_body_is_unauthentic() -> None:
    body, headers = signed(seam_event())
    with pytest.raises(UnauthenticWebhook):
        verifier.verify(body.replace(b"event", b"evenT", 1), headers)


def test_a_changed_message_id_is_unauthentic() -> None:
    body, headers = signed(seam_event())
    headers["svix-id"] = "msg_other"
    with pytest.raises(UnauthenticWebhook):
        verifier.verify(body, headers)


@pytest.fixture
def frozen_now(monkeypatch: pytest.MonkeyPatch) -> datetime:
    """The verifier's clock, stopped on a whole second, so ±1 s around the tolerance is exact."""
    now = datetime(2026, 11, 25, 12, 0, 0, tzinfo=UTC)

    class FrozenDatetime(datetime):
        @classmethod
        def now(cls, tz: tzinfo | None = None) -> datetime:  # type: ignore[override]
            return now

    monkeypatch.setattr(standardwebhooks.webhooks, "datetime", FrozenDatetime)
    return now


@pytest.mark.parametrize("offset", [-301, 301, -3600, 86400])
def test_timestamps_beyond_five_minutes_are_unauthentic(frozen_now: datetime, offset: int) -> None:
    body, headers = signed(seam_event(), at=frozen_now + timedelta(seconds=offset))
    with pytest.raises(UnauthenticWebhook) as error:
        verifier.verify(body, headers)
    assert error.value.details["reason"] == "stale_timestamp"


@pytest.mark.parametrize("offset", [-300, -299, 299, 300])
def test_timestamps_within_five_minutes_verify(frozen_now: datetime, offset: int) -> None:
    body, headers = signed(seam_event(), at=frozen_now + timedelta(seconds=offset))
    verifier.verify(body, headers)


def test_several_signatures_verify_when_any_one_matches() -> None:
    body, headers = signed(seam_event())
    _, other = signed(body, secret=OTHER_SECRET, message_id=headers["svix-id"])
    headers["svix-signature"] = f"{other['svix-signature']} v2,abcd {headers['svix-signature']}"
    verifier.verify(body, headers)


def test_a_stray_garbled_entry_does_not_hide_a_valid_signature() -> None:
    body, headers = signed(seam_event())
    headers["svix-signature"] = "nonsense " + headers["svix-signature"]
    verifier.verify(body, headers)


def test_secret_rotation_accepts_old_and_new_secrets() -> None:
    rotating = WebhookVerifier([OTHER_SECRET, SECRET])
    for secret in (SECRET, OTHER_SECRET):
        body, headers = signed(seam_event(), secret=secret)
        rotating.verify(body, headers)


@pytest.mark.parametrize("garbage", [b"not json", b"[]", b"{}", b'{"event_id": 1}', b"\x00\x01"])
def test_signed_garbage_is_authentic_but_not_an_event(garbage: bytes) -> None:
    body, headers = signed(garbage)
    assert verifier.verify(body, headers).body == garbage


def test_a_body_that_is_not_utf8_is_malformed() -> None:
    body = b"\xff\xfe{}"
    _, headers = signed(b"{}")
    with pytest.raises(MalformedWebhook):
        verifier.verify(body, headers)


@settings(max_examples=300, deadline=None)
@given(
    body=st.binary(max_size=512),
    message_id=st.text(max_size=40),
    timestamp=st.text(max_size=20),
    signature=st.text(max_size=120),
)
def test_arbitrary_input_is_rejected_cleanly(
    body: bytes, message_id: str, timestamp: str, signature: str
) -> None:
    headers = {"svix-id": message_id, "svix-timestamp": timestamp, "svix-signature": signature}
    with pytest.raises((MalformedWebhook, UnauthenticWebhook)):
        verifier.verify(body, headers)
