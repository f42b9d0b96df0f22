from __future__ import annotations

import procrastinate
import structlog

from app.retention.service import ERASED_GRANT_NAME, ERASED_GUEST_NAME
from app.worker.app import jobs, observed, runtime_of
from app.worker.queue import Priority
from app.worker.retry import RETRY

log = structlog.get_logger(__name__)


@jobs.task(
    name="retention.erase_at_seam", pass_context=True, retry=RETRY, priority=Priority.NEW_STAY
)
@observed("retention.erase_at_seam")
async def erase_at_seam(
    context: procrastinate.JobContext,
    access_grant_id: str | None = None,
    user_identity_key: str | None = None,
) -> None:
    """Give a purged reservation's grant a neutral name, and erase the guest from their Seam
    identity (kept, never deleted: that would revoke their access)."""
    seam = runtime_of(context).seam
    renamed = False
    if access_grant_id is not None:
        renamed = await seam.rename_grant(access_grant_id, name=ERASED_GRANT_NAME)
    anonymised = False
    if user_identity_key is not None:
        anonymised = await seam.anonymise_user_identity(
            user_identity_key, full_name=ERASED_GUEST_NAME
        )
    log.info("retention.erased_at_seam", grant_renamed=renamed, identity_anonymised=anonymised)
