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
# Events that change the workspace's door list (a door added or gone, renamed, online or not,
# a keypad on or off): each refreshes guestkey's door list (one coalesced job).
DOOR_EVENTS = frozenset(
    {
        "device.added",
        "device.connected",
        "device.disconnected",
        "device.removed",
        "device.deleted",
        "device.name_changed",
        "device.converted_to_unmanaged",
        "device.unmanaged.converted_to_managed",
        "device.accessory_keypad_connected",
        "device.accessory_keypad_disconnected",
        "acs_entrance.added",
        "acs_entrance.removed",
        "space.created",
        "space.deleted",
    }
)
# What Seam's webhook should be subscribed to, and what the events.list catch-up asks for.
ACTED_ON_EVENTS = HANDLED_EVENTS | DOOR_EVENTS
UNHANDLED = "unhandled event type"
