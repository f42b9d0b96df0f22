"""The doors every fake Seam workspace starts with.

Ids are ``uuid5`` of a fixed namespace and the door's name, so they are the same in every process
and every run: tests, sandbox mode and the booking system's fixtures can hard-code them.

- three smart locks (``devices/list``): Front Door, Back Door, Garage — August locks that
  program online PIN codes;
- two access-control entrances (``acs/entrances/list``): Lobby, Gym — on one ACS system;
- one space, "Whole Property" (key ``whole-property``), holding those five doors;
- and three doors where a PIN code cannot simply be put, in no space so that the sandbox's
  whole property stays pleasant: "Shed" (a lock without keypad: no online access codes),
  "Side Gate" (takes codes, but starts offline) and the entrance "Bike Room" (card only).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

FAKE_NAMESPACE = uuid.UUID("6f1d8d0e-5b1c-4f4e-9a57-2f0c4c8a9e11")


def seeded_id(kind: str, name: str) -> str:
    return str(uuid.uuid5(FAKE_NAMESPACE, f"{kind}/{name}"))


FAKE_WORKSPACE_NAME = "guestkey fake workspace"
WORKSPACE_ID = seeded_id("workspace", FAKE_WORKSPACE_NAME)
CONNECTED_ACCOUNT_ID = seeded_id("connected_account", "August")
ACS_CONNECTED_ACCOUNT_ID = seeded_id("connected_account", "ACS")
ACS_SYSTEM_ID = seeded_id("acs_system", "Building ACS")
SEEDED_AT = datetime(2024, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class SeededDoor:
    """A seeded lock, entrance or space. ``door["id"]`` works as well as ``door.id``."""

    id: str
    name: str

    def __getitem__(self, key: str) -> str:
        if key == "id":
            return self.id
        if key == "name":
            return self.name
        raise KeyError(key)


def _doors(kind: str, names: tuple[str, ...]) -> list[SeededDoor]:
    return [SeededDoor(id=seeded_id(kind, name), name=name) for name in names]


SEEDED_DEVICES: list[SeededDoor] = _doors(
    "device", ("Front Door", "Back Door", "Garage", "Shed", "Side Gate")
)
SEEDED_ENTRANCES: list[SeededDoor] = _doors("acs_entrance", ("Lobby", "Gym", "Bike Room"))
SEEDED_SPACES: list[SeededDoor] = _doors("space", ("Whole Property",))
SEEDED_SPACE_KEYS = {SEEDED_SPACES[0].id: "whole-property"}
WHOLE_PROPERTY_DOORS = frozenset({"Front Door", "Back Door", "Garage", "Lobby", "Gym"})
KEYPADLESS_DEVICES = frozenset({seeded_id("device", "Shed")})
OFFLINE_DEVICES = frozenset({seeded_id("device", "Side Gate")})
CARD_ONLY_ENTRANCES = frozenset({seeded_id("acs_entrance", "Bike Room")})


def device_object(
    door: SeededDoor,
    *,
    space_ids: list[str],
    created_at: str,
    online: bool = True,
    takes_codes: bool = True,
) -> dict[str, Any]:
    """A ``device`` as Seam returns it for an August lock (required fields and the usual ones);
    without ``takes_codes`` a lock with no keypad, without ``online`` one Seam cannot reach."""
    device: dict[str, Any] = {
        "device_id": door.id,
        "device_type": "august_lock",
        "display_name": door.name,
        "nickname": door.name,
        "space_ids": space_ids,
        "capabilities_supported": ["access_code", "lock"],
        "properties": {
            "online": True,
            "name": door.name,
            "appearance": {"name": door.name},
            "model": {
                "display_name": "Wi-Fi Smart Lock",
                "manufacturer_display_name": "August",
                "accessory_keypad_supported": True,
                "can_connect_accessory_keypad": True,
                "has_built_in_keypad": False,
                "offline_access_codes_supported": False,
                "online_access_codes_supported": True,
            },
            "manufacturer": "august",
            "battery_level": 0.9,
            "battery": {"level": 0.9, "status": "full"},
            "has_direct_power": False,
            "locked": True,
            "door_open": False,
            "online_access_codes_enabled": True,
            "offline_access_codes_enabled": False,
            "supports_accessory_keypad": True,
            "supports_offline_access_codes": False,
            "supported_code_lengths": [4, 5, 6],
            "max_active_codes_supported": 250,
        },
        "location": {"location_name": "Fake Property", "time_zone": "UTC"},
        "connected_account_id": CONNECTED_ACCOUNT_ID,
        "workspace_id": WORKSPACE_ID,
        "errors": [],
        "warnings": [],
        "created_at": created_at,
        "is_managed": True,
        "custom_metadata": {},
        "device_manufacturer": {"manufacturer": "august", "display_name": "August"},
        "can_program_online_access_codes": True,
        "can_program_offline_access_codes": False,
        "can_remotely_lock": True,
        "can_remotely_unlock": True,
        "can_unlock_with_code": True,
    }
    if not takes_codes:
        device["capabilities_supported"] = ["lock"]
        device["properties"]["model"].update(
            accessory_keypad_supported=False,
            can_connect_accessory_keypad=False,
            online_access_codes_supported=False,
        )
        device["properties"].update(
            online_access_codes_enabled=False, supports_accessory_keypad=False
        )
        device.update(can_program_online_access_codes=False, can_unlock_with_code=False)
    if not online:
        device["properties"]["online"] = False
        device["errors"] = [
            {
                "error_code": "device_offline",
                "message": "Device is offline",
                "is_device_error": True,
                "created_at": created_at,
            }
        ]
    return device


def entrance_object(
    door: SeededDoor, *, space_ids: list[str], created_at: str, unlocks_with_code: bool = True
) -> dict[str, Any]:
    """An ``acs_entrance`` on the fake workspace's ACS system."""
    return {
        "acs_entrance_id": door.id,
        "acs_system_id": ACS_SYSTEM_ID,
        "connected_account_id": ACS_CONNECTED_ACCOUNT_ID,
        "display_name": door.name,
        "space_ids": space_ids,
        "created_at": created_at,
        "errors": [],
        "warnings": [],
        "is_locked": True,
        "can_unlock_with_code": unlocks_with_code,
        "can_unlock_with_card": True,
        "can_unlock_with_mobile_key": True,
        "can_unlock_with_cloud_key": False,
        "can_belong_to_reservation": True,
    }
