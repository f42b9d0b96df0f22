"""The token rules of the guest's page (DESIGN.md §9.10), as pure functions."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta

from app.guests.service import LinkState, link_state, page_url, token_digest
from app.reservations.models import Reservation, ReservationStatus

STARTS = datetime(2030, 6, 1, 15, tzinfo=UTC)
ENDS = datetime(2030, 6, 4, 11, tzinfo=UTC)
SENT = STARTS - timedelta(days=3)  # when the message with the link went out


def stay(status: ReservationStatus = ReservationStatus.DELIVERED) -> Reservation:
    return Reservation(starts_at=STARTS, ends_at=ENDS, status=status.value, purged_at=None)


def test_a_link_opens_its_stay_from_its_message_until_a_day_after_check_out() -> None:
    assert link_state(stay(), issued_at=SENT, now=SENT) == LinkState.OPEN
    assert link_state(stay(), issued_at=SENT, now=STARTS) == LinkState.OPEN
    assert link_state(stay(), issued_at=SENT, now=ENDS + timedelta(hours=23)) == LinkState.OPEN
    assert link_state(stay(), issued_at=SENT, now=ENDS + timedelta(days=1)) == LinkState.OPEN


def test_a_link_opens_nothing_before_its_message_or_after_the_day_after_check_out() -> None:
    assert link_state(stay(), issued_at=SENT, now=SENT - timedelta(seconds=1)) is None
    expired = ENDS + timedelta(days=1, seconds=1)
    assert link_state(stay(), issued_at=SENT, now=expired) is None


def test_a_cancelled_stay_shows_only_that_it_was_cancelled_until_the_link_expires() -> None:
    cancelled = stay(ReservationStatus.CANCELLED)
    assert link_state(cancelled, issued_at=SENT, now=STARTS) == LinkState.CANCELLED
    assert link_state(cancelled, issued_at=SENT, now=ENDS + timedelta(days=2)) is None


def test_an_erased_stay_opens_nothing() -> None:
    erased = stay()
    erased.purged_at = ENDS + timedelta(days=30)
    assert link_state(erased, issued_at=SENT, now=STARTS) is None


def test_a_moved_check_out_moves_the_end_of_the_link() -> None:
    moved = stay()
    moved.ends_at = ENDS + timedelta(days=5)
    assert link_state(moved, issued_at=SENT, now=ENDS + timedelta(days=3)) == LinkState.OPEN


def test_the_digest_is_not_the_token_and_the_url_ends_with_the_token() -> None:
    token = secrets.token_urlsafe(32)
    assert len(token) == 43  # 256 bits
    assert token not in token_digest(token) and len(token_digest(token)) == 64
    assert page_url("https://stay.example/", token) == f"https://stay.example/g/{token}"
