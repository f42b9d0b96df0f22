"""When a failed job runs again: capped exponential backoff with jitter, honouring Seam's
Retry-After. Transient failures (Seam down, database restarting) retry without limit —
a reservation must not be lost to an outage; anything unexpected retries a few times."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import sqlalchemy.exc
from procrastinate import BaseRetryStrategy, RetryDecision
from procrastinate.jobs import Job

from app.seam.errors import SeamRejectedApiKey, TransientSeamError


class RetryLater(Exception):
    """Raised by a job whose work cannot be done yet but will be: retried like an outage, or
    exactly after `retry_after` seconds when that is known (a due time, say)."""

    def __init__(self, message: str = "", *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    RetryLater,
    TransientSeamError,
    sqlalchemy.exc.OperationalError,
    sqlalchemy.exc.InterfaceError,
    ConnectionError,
    TimeoutError,
)


@dataclass(frozen=True)
class BackoffRetry(BaseRetryStrategy):
    base_seconds: float = 2.0
    cap_seconds: float = 600.0
    max_unexpected_attempts: int = 8
    max_transient_attempts: int | None = None  # None: an outage is waited out, however long

    def delay(self, attempts: int) -> float:
        ceiling = min(self.cap_seconds, self.base_seconds * 2 ** min(attempts, 30))
        return random.uniform(ceiling / 2, ceiling)  # noqa: S311 - jitter, not security

    def get_retry_decision(self, *, exception: BaseException, job: Job) -> RetryDecision | None:
        attempts = job.attempts
        if self.max_transient_attempts is not None and attempts + 1 >= self.max_transient_attempts:
            return None
        if isinstance(exception, SeamRejectedApiKey):
            return _after(REJECTED_KEY_RETRY_SECONDS + random.uniform(0, 30))  # noqa: S311
        if isinstance(exception, RetryLater) and exception.retry_after is not None:
            return _after(exception.retry_after)
        if isinstance(exception, TRANSIENT_ERRORS):
            retry_after = getattr(exception, "retry_after", None)
            seconds = self.delay(attempts)
            if retry_after is not None:
                seconds = min(self.cap_seconds, retry_after) + random.uniform(0, 1)  # noqa: S311
            return _after(seconds)
        if attempts + 1 >= self.max_unexpected_attempts:
            return None
        return _after(self.delay(attempts))


def _after(seconds: float) -> RetryDecision:
    return RetryDecision(retry_at=datetime.now(UTC) + timedelta(seconds=seconds))


# Seam refusing guestkey's API key will not change by itself: a reservation's work asks again
# at most once per this many seconds, until an operator fixes the key.
REJECTED_KEY_RETRY_SECONDS = 600.0

RETRY = BackoffRetry()
# Callbacks to a booking system: hourly at most, for about a day, like Svix's own schedule.
CALLBACK_RETRY = BackoffRetry(cap_seconds=3600, max_transient_attempts=30)
