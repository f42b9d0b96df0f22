"""Operators, their sign-in, their sessions, and the audit log of what they do.

Functions take `(session, *, …)`, flush, and never commit: the request owns the transaction.
"""

from __future__ import annotations

import functools
import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import structlog
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.clients.models import ApiClient
from app.console.models import AuditEntry, Operator, OperatorLoginAttempt, OperatorSession
from app.db import utcnow
from app.errors import Conflict, GuestkeyError, InvalidInput, NotFound
from app.reservations.models import Reservation

log = structlog.get_logger(__name__)

# A session ends after this long without a request, and this long after sign-in whatever.
SESSION_IDLE = timedelta(minutes=30)
SESSION_LIFETIME = timedelta(hours=12)
# last_seen_at is written at most this often, not on every page and every poll.
SESSION_TOUCH_EVERY = timedelta(minutes=1)

# Failed sign-ins allowed in the window, per email and per client address.
LOGIN_WINDOW = timedelta(minutes=15)
LOGIN_FAILURES_PER_EMAIL = 5
LOGIN_FAILURES_PER_ADDRESS = 20

_hasher = PasswordHasher()  # argon2id with the library's current recommended cost


@functools.cache
def _unknown_operator_hash() -> str:
    """Checked against when the email is unknown, so an unknown email costs as long as a known
    one (made on first use, not at import)."""
    return _hasher.hash(secrets.token_urlsafe(16))


class TooManyAttempts(GuestkeyError):
    status_code = 429
    code = "too_many_attempts"

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class PasswordRefused(GuestkeyError):
    status_code = 422
    code = "password_refused"


class SignInRefused(GuestkeyError):
    """One message for an unknown email, a wrong password and a disabled operator alike."""

    status_code = 401
    code = "sign_in_refused"


def token_digest(token: str) -> str:
    """Session tokens carry 256 bits of entropy: a plain SHA-256 is a safe digest."""
    return hashlib.sha256(token.encode()).hexdigest()


def normalise_email(email: str) -> str:
    return email.strip().lower()


def generate_password() -> str:
    return secrets.token_urlsafe(15)


# Operators ---------------------------------------------------------------------------------


async def create_operator(
    session: AsyncSession, *, email: str, client_name: str | None
) -> tuple[Operator, str]:
    """A new operator and its password, to be shown once (only the argon2 hash is kept)."""
    email = normalise_email(email)
    if "@" not in email or len(email) > 254:
        raise InvalidInput(f"{email!r} is not an email address", location=("email",))
    if await session.scalar(select(Operator.id).where(Operator.email == email)):
        raise Conflict(f"operator {email!r} already exists")
    client_id = None
    if client_name is not None:
        client_id = await session.scalar(
            select(ApiClient.id).where(
                ApiClient.name == client_name, ApiClient.revoked_at.is_(None)
            )
        )
        if client_id is None:
            raise NotFound(f"no client named {client_name!r}")
    password = generate_password()
    operator = Operator(email=email, client_id=client_id, password_hash=_hasher.hash(password))
    session.add(operator)
    await session.flush()
    return operator, password


async def list_operators(session: AsyncSession) -> list[tuple[Operator, str | None]]:
    rows = await session.execute(
        select(Operator, ApiClient.name)
        .outerjoin(ApiClient, ApiClient.id == Operator.client_id)
        .order_by(Operator.email)
    )
    return [(operator, client_name) for operator, client_name in rows]


async def disable_operator(session: AsyncSession, *, email: str) -> Operator:
    """Disabled at once: every open session of the operator ends too."""
    operator = await session.scalar(
        select(Operator).where(Operator.email == normalise_email(email))
    )
    if operator is None:
        raise NotFound(f"no operator {email!r}")
    operator.disabled_at = operator.disabled_at or utcnow()
    await session.execute(delete(OperatorSession).where(OperatorSession.operator_id == operator.id))
    await session.flush()
    return operator


# Sign-in and sessions ----------------------------------------------------------------------


@dataclass(frozen=True)
class SignedIn:
    """The operator behind a request, and the session's CSRF token for its forms."""

    operator: Operator
    session_id: uuid.UUID
    csrf_token: str

    @property
    def client_id(self) -> uuid.UUID | None:
        return self.operator.client_id


async def check_login_limits(session: AsyncSession, *, email: str, client_address: str) -> None:
    since = utcnow() - LOGIN_WINDOW
    failures = OperatorLoginAttempt.succeeded.is_(False), OperatorLoginAttempt.attempted_at > since
    by_email = await session.scalar(
        select(func.count()).where(OperatorLoginAttempt.email == email, *failures)
    )
    by_address = await session.scalar(
        select(func.count()).where(OperatorLoginAttempt.client_address == client_address, *failures)
    )
    if (by_email or 0) >= LOGIN_FAILURES_PER_EMAIL or (
        by_address or 0
    ) >= LOGIN_FAILURES_PER_ADDRESS:
        log.warning("console.login.limited", client_address=client_address)
        raise TooManyAttempts(
            "too many failed sign-ins; try again in a few minutes",
            retry_after=int(LOGIN_WINDOW.total_seconds()),
        )


async def sign_in(
    session: AsyncSession, *, email: str, password: str, client_address: str
) -> tuple[Operator, str]:
    """Check the password (within the attempt limits) and open a session; returns the
    operator and the session token for the cookie. Every attempt is recorded."""
    email = normalise_email(email)[:254]
    await check_login_limits(session, email=email, client_address=client_address)
    operator = await session.scalar(select(Operator).where(Operator.email == email))
    valid = _password_matches(operator.password_hash if operator else None, password)
    succeeded = valid and operator is not None and operator.disabled_at is None
    session.add(
        OperatorLoginAttempt(email=email, client_address=client_address, succeeded=succeeded)
    )
    await session.flush()
    if not succeeded or operator is None:
        log.info("console.login.refused", client_address=client_address)
        raise SignInRefused("wrong email or password")
    if _hasher.check_needs_rehash(operator.password_hash):
        operator.password_hash = _hasher.hash(password)
    token = await open_session(session, operator=operator)
    await _forget_stale(session)
    return operator, token


def _password_matches(password_hash: str | None, password: str) -> bool:
    try:
        return _hasher.verify(password_hash or _unknown_operator_hash(), password)
    except (VerificationError, InvalidHashError):
        return False


MIN_PASSWORD_LENGTH = 12


async def choose_password(
    session: AsyncSession, *, operator: Operator, current: str, new: str, repeated: str
) -> None:
    """Replace the operator's password (the one-time one `operators create` printed, or their
    own). Other sessions of the operator end: whoever knew the old password is signed out."""
    if not _password_matches(operator.password_hash, current):
        raise PasswordRefused("the current password is wrong")
    if len(new) < MIN_PASSWORD_LENGTH:
        raise PasswordRefused(f"the new password needs at least {MIN_PASSWORD_LENGTH} characters")
    if new != repeated:
        raise PasswordRefused("the two new passwords differ")
    if new == current:
        raise PasswordRefused("the new password must differ from the current one")
    operator.password_hash = _hasher.hash(new)
    operator.password_chosen_at = utcnow()
    await session.flush()


async def end_other_sessions(
    session: AsyncSession, *, operator_id: uuid.UUID, keep: uuid.UUID
) -> None:
    await session.execute(
        delete(OperatorSession).where(
            OperatorSession.operator_id == operator_id, OperatorSession.id != keep
        )
    )
    await session.flush()


async def verify_password(operator: Operator, password: str) -> bool:
    """For actions that ask for the password again (revealing a code)."""
    return _password_matches(operator.password_hash, password)


async def open_session(session: AsyncSession, *, operator: Operator) -> str:
    token = secrets.token_urlsafe(32)
    now = utcnow()
    session.add(
        OperatorSession(
            token_digest=token_digest(token),
            operator_id=operator.id,
            csrf_token=secrets.token_urlsafe(32),
            last_seen_at=now,
            expires_at=now + SESSION_LIFETIME,
        )
    )
    await session.flush()
    return token


async def resume_session(session: AsyncSession, *, token: str) -> SignedIn | None:
    """The live session a cookie names, or None (unknown, idle too long, past its lifetime,
    or its operator disabled)."""
    now = utcnow()
    row = (
        await session.execute(
            select(OperatorSession, Operator)
            .join(Operator, Operator.id == OperatorSession.operator_id)
            .where(
                OperatorSession.token_digest == token_digest(token),
                OperatorSession.expires_at > now,
                OperatorSession.last_seen_at > now - SESSION_IDLE,
                Operator.disabled_at.is_(None),
            )
        )
    ).one_or_none()
    if row is None:
        return None
    operator_session, operator = row
    if now - operator_session.last_seen_at > SESSION_TOUCH_EVERY:
        operator_session.last_seen_at = now
        await session.flush()
    return SignedIn(
        operator=operator, session_id=operator_session.id, csrf_token=operator_session.csrf_token
    )


async def end_session(session: AsyncSession, *, session_id: uuid.UUID) -> None:
    await session.execute(delete(OperatorSession).where(OperatorSession.id == session_id))
    await session.flush()


async def _forget_stale(session: AsyncSession) -> None:
    """Sessions past their end and attempts past the window are of no use: dropped at each
    sign-in, which is rare enough to carry it."""
    now = utcnow()
    await session.execute(
        delete(OperatorSession).where(
            (OperatorSession.expires_at <= now)
            | (OperatorSession.last_seen_at <= now - SESSION_IDLE)
        )
    )
    await session.execute(
        delete(OperatorLoginAttempt).where(
            OperatorLoginAttempt.attempted_at < now - timedelta(days=1)
        )
    )


def csrf_matches(expected: str, given: str | None) -> bool:
    return given is not None and secrets.compare_digest(expected.encode(), given.encode())


# The audit log ------------------------------------------------------------------------------


async def audit(
    session: AsyncSession,
    *,
    operator_id: uuid.UUID,
    action: str,
    outcome: str = "done",
    reservation_id: uuid.UUID | None = None,
    client_id: uuid.UUID | None = None,
    **detail: Any,
) -> None:
    session.add(
        AuditEntry(
            operator_id=operator_id,
            action=action,
            outcome=outcome,
            reservation_id=reservation_id,
            client_id=client_id,
            detail=detail,
        )
    )
    await session.flush()
    log.info(
        "console.audit",
        operator_id=str(operator_id),
        action=action,
        outcome=outcome,
        reservation_id=str(reservation_id) if reservation_id else None,
    )


@dataclass(frozen=True)
class AuditLine:
    at: datetime
    operator_email: str
    action: str
    outcome: str
    reservation_id: uuid.UUID | None
    reservation_key: str | None
    detail: dict[str, Any]


async def audit_log(
    session: AsyncSession,
    *,
    client_id: uuid.UUID | None,
    reservation_id: uuid.UUID | None = None,
    limit: int = 100,
) -> list[AuditLine]:
    """Newest first. A client's operator sees only entries about that client's stays."""
    query = (
        select(AuditEntry, Operator.email, Reservation.reservation_key)
        .join(Operator, Operator.id == AuditEntry.operator_id)
        .outerjoin(Reservation, Reservation.id == AuditEntry.reservation_id)
        .order_by(AuditEntry.id.desc())
        .limit(limit)
    )
    if client_id is not None:
        query = query.where(AuditEntry.client_id == client_id)
    if reservation_id is not None:
        query = query.where(AuditEntry.reservation_id == reservation_id)
    rows = await session.execute(query)
    return [
        AuditLine(
            at=entry.created_at,
            operator_email=email,
            action=entry.action,
            outcome=entry.outcome,
            reservation_id=entry.reservation_id,
            reservation_key=key,
            detail=entry.detail,
        )
        for entry, email, key in rows
    ]
