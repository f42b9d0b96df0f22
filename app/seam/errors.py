"""The two kinds of Seam failure guestkey acts on."""

from __future__ import annotations


class SeamError(Exception):
    """A Seam call failed. `error_type` is Seam's `error.type` when it sent one."""

    def __init__(self, message: str, *, error_type: str | None = None, status: int | None = None):
        super().__init__(message)
        self.error_type = error_type
        self.status = status


class TransientSeamError(SeamError):
    """Worth retrying: timeouts, connection errors, 429, 5xx, and auth errors (fixable by an
    operator without touching the reservation)."""

    def __init__(
        self,
        message: str,
        *,
        error_type: str | None = None,
        status: int | None = None,
        retry_after: float | None = None,
    ):
        super().__init__(message, error_type=error_type, status=status)
        self.retry_after = retry_after


class SeamRejectedApiKey(TransientSeamError):
    """Seam answered 401 or 403: guestkey's API key is wrong, revoked or lacks the workspace.
    A configuration error, not the reservation's: it is retried (an operator fixes the key and
    work resumes), but slowly, and logged as an error."""


class PermanentSeamError(SeamError):
    """Seam refused the request itself (unknown device, invalid input): retrying cannot help."""


class SeamNotFound(PermanentSeamError):
    """The resource does not exist (any more)."""
