"""What the fake takes from Seam's OpenAPI spec at run time.

The spec itself is not shipped; ``make schemas`` (``scripts/trim_seam_schemas.py``) extracts
``spec_extract.json`` beside this module: the parameters of each endpoint the fake implements
(strict mode refuses any other) and one sample of each of the spec's event types.
"""

from __future__ import annotations

import copy
import json
from functools import cache
from pathlib import Path
from typing import Any

EXTRACT_FILE = Path(__file__).with_name("spec_extract.json")


@cache
def _extract() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(EXTRACT_FILE.read_text())
    return loaded


def endpoint_parameters(path: str) -> frozenset[str] | None:
    """Every parameter Seam's ``path`` takes; None for a path the extract does not know."""
    names = _extract()["parameters"].get(path)
    return frozenset(names) if names is not None else None


def event_samples() -> dict[str, dict[str, Any]]:
    """Event type → a sample event with every field filled (a fresh copy on each call)."""
    return copy.deepcopy(_extract()["event_samples"])
