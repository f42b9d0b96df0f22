"""The Seam event types guestkey acts on. Any other type is stored and acknowledged, and
needs no job: there is nothing to do for it."""

from __future__ import annotations

ACCESS_METHOD_CODE_EVENTS = frozenset({"access_method.issued", "access_method.reissued"})
HANDLED_EVENTS = ACCESS_METHOD_CODE_EVENTS | frozenset(
    {
        "access_method.revoked",
        "access_method.deleted",
        "access_method.delay_in_issuing",
        "access_method.failed_to_issue",
        "access_grant.deleted",
        "access_grant.access_times_changed",
        "access_grant.access_granted_to_door",
        "access_grant.access_to_door_lost",
        "access_grant.could_not_create_requested_access_methods",
    }
)
UNHANDLED = "unhandled event type"
