"""Regenerate the fake Seam's files derived from Seam's OpenAPI spec (``make schemas``).

- ``tests/seam/seam_schemas.json``: the response schemas the fake is tested against;
- ``app/seam/fake/spec_extract.json``: what the fake needs at run time, where the spec is not
  available — the parameters each endpoint takes (anything else is refused, as Seam's strict mode
  does) and one sample of every event type (see :func:`event_sample`).

The fake Seam (``app/seam/fake``) is tested against the response schemas of the endpoints it
implements. The full spec is 3.3 MB; this script keeps only those response schemas plus every
component schema they reference, and turns OpenAPI 3.0 into plain JSON Schema (2020-12) so
``jsonschema`` can use it directly:

- ``nullable: true`` becomes a ``null`` member of ``type`` (or an ``anyOf`` with
  ``{"type": "null"}``);
- boolean ``exclusiveMinimum``/``exclusiveMaximum`` become the numeric 2020-12 form;
- ``#/components/schemas/X`` references become ``#/$defs/X``;
- descriptions and ``x-*`` annotations are dropped (they do not constrain anything).

The trimmed schemas:

Usage: ``python scripts/trim_seam_schemas.py [path/to/openapi.json]``
(default ``../shared/seam/openapi.json`` relative to the repository root).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from app.seam.fake.seed import (
    ACS_SYSTEM_ID,
    CONNECTED_ACCOUNT_ID,
    SEEDED_DEVICES,
    SEEDED_ENTRANCES,
    SEEDED_SPACES,
    WORKSPACE_ID,
    seeded_id,
)

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SPEC = REPO_ROOT.parent / "shared" / "seam" / "openapi.json"
OUTPUT = REPO_ROOT / "tests" / "seam" / "seam_schemas.json"
EXTRACT_OUTPUT = REPO_ROOT / "app" / "seam" / "fake" / "spec_extract.json"

ENDPOINTS = (
    "/access_grants/create",
    "/access_grants/get",
    "/access_grants/list",
    "/access_grants/update",
    "/access_grants/delete",
    "/access_methods/get",
    "/access_methods/list",
    "/access_methods/get_related",
    "/access_methods/delete",
    "/events/list",
    "/devices/list",
    "/acs/entrances/list",
    "/user_identities/get",
    "/user_identities/list",
    "/user_identities/update",
    "/access_grants/request_access_methods",
    "/devices/get",
    "/acs/entrances/get",
    "/spaces/get",
    "/spaces/list",
    "/workspaces/get",
    "/webhooks/create",
    "/webhooks/get",
    "/webhooks/list",
    "/webhooks/update",
    "/webhooks/delete",
)

# The spec documents no body for error responses, so the envelope comes from Seam's docs and SDK.
ERROR_ENVELOPE: dict[str, Any] = {
    "type": "object",
    "required": ["error", "ok"],
    "properties": {
        "ok": {"const": False},
        "error": {
            "type": "object",
            "required": ["type", "message"],
            "properties": {
                "type": {"type": "string", "minLength": 1},
                "message": {"type": "string"},
                "validation_errors": {"type": "object"},
                "data": {},
            },
        },
    },
}

DROPPED_KEYS = {"description", "deprecated", "example", "examples", "title"}
REF_PREFIX = "#/components/schemas/"


def to_json_schema(node: Any) -> Any:
    """Convert one OpenAPI 3.0 schema node (recursively) to JSON Schema 2020-12."""
    if isinstance(node, list):
        return [to_json_schema(item) for item in node]
    if not isinstance(node, dict):
        return node
    converted: dict[str, Any] = {}
    for key, value in node.items():
        if key in DROPPED_KEYS or key.startswith("x-"):
            continue
        if key == "properties":
            converted[key] = {name: to_json_schema(sub) for name, sub in value.items()}
        elif key == "$ref":
            converted[key] = "#/$defs/" + value.removeprefix(REF_PREFIX)
        else:
            converted[key] = to_json_schema(value)
    fix_exclusive_bounds(converted)
    if converted.pop("nullable", False):
        return make_nullable(converted)
    return converted


def fix_exclusive_bounds(schema: dict[str, Any]) -> None:
    for exclusive, bound in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
        if schema.get(exclusive) is True and bound in schema:
            schema[exclusive] = schema.pop(bound)
        elif schema.get(exclusive) is False:
            del schema[exclusive]


def make_nullable(schema: dict[str, Any]) -> dict[str, Any]:
    if isinstance(schema.get("type"), str) and "$ref" not in schema:
        schema["type"] = [schema["type"], "null"]
        if "enum" in schema:
            schema["enum"] = [*schema["enum"], None]
        return schema
    return {"anyOf": [schema, {"type": "null"}]}


def collect_refs(node: Any, found: set[str]) -> None:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith(REF_PREFIX):
            found.add(ref.removeprefix(REF_PREFIX))
        for value in node.values():
            collect_refs(value, found)
    elif isinstance(node, list):
        for item in node:
            collect_refs(item, found)


def success_schema(spec: dict[str, Any], path: str) -> dict[str, Any]:
    """The 200 schema of an endpoint; every HTTP method of one Seam endpoint answers the same."""
    schemas: list[dict[str, Any]] = [
        operation["responses"]["200"]["content"]["application/json"]["schema"]
        for operation in spec["paths"][path].values()
    ]
    if any(schema != schemas[0] for schema in schemas):
        raise SystemExit(f"{path}: methods answer different schemas")
    return schemas[0]


def component_closure(spec: dict[str, Any], roots: list[Any]) -> dict[str, Any]:
    components = spec["components"]["schemas"]
    pending: set[str] = set()
    collect_refs(roots, pending)
    needed: set[str] = set(["event", *pending])
    pending.add("event")
    while pending:
        name = pending.pop()
        found: set[str] = set()
        collect_refs(components[name], found)
        pending |= found - needed
        needed |= found
    return {name: components[name] for name in sorted(needed)}


def trim(spec: dict[str, Any]) -> dict[str, Any]:
    responses = {path: success_schema(spec, path) for path in ENDPOINTS}
    components = component_closure(spec, list(responses.values()))
    return {
        "$comment": (
            "Generated by scripts/trim_seam_schemas.py from Seam's OpenAPI spec "
            f"({spec['info'].get('title', 'Seam')} {spec['info'].get('version', '')}). "
            "Do not edit by hand."
        ),
        "responses": {path: to_json_schema(schema) for path, schema in responses.items()},
        "error_envelope": ERROR_ENVELOPE,
        "$defs": {name: to_json_schema(schema) for name, schema in components.items()},
    }


# --- what the fake reads at run time ------------------------------------------------------------

# uuid fields of the samples that name a thing of the fake workspace use its id, so a sample
# event is about a seeded door; other uuids are fixed per event type and field.
SEEDED_UUIDS = {
    "workspace_id": WORKSPACE_ID,
    "device_id": SEEDED_DEVICES[0].id,
    "connected_account_id": CONNECTED_ACCOUNT_ID,
    "acs_system_id": ACS_SYSTEM_ID,
    "acs_entrance_id": SEEDED_ENTRANCES[0].id,
    "space_id": SEEDED_SPACES[0].id,
}
SAMPLE_TIME = "2025-01-01T12:00:00.000Z"


def endpoint_parameters(spec: dict[str, Any], path: str) -> list[str]:
    """Every parameter any HTTP method of ``path`` takes, query or body (all body variants)."""
    names: set[str] = set()

    def body_properties(schema: dict[str, Any]) -> None:
        names.update(schema.get("properties", {}))
        for variant in ("oneOf", "anyOf", "allOf"):
            for sub in schema.get(variant, []):
                body_properties(sub)

    for operation in spec["paths"][path].values():
        names.update(parameter["name"] for parameter in operation.get("parameters", []))
        content = operation.get("requestBody", {}).get("content", {})
        body_properties(content.get("application/json", {}).get("schema", {}))
    return sorted(names)


def event_sample(schema: dict[str, Any], where: str) -> Any:
    """A plausible value for ``schema``: every optional property filled, the first of each
    ``enum``/``oneOf``, one item per array, real UUIDs and ISO timestamps."""
    for variant in ("oneOf", "anyOf", "allOf"):
        if variant in schema:
            return event_sample(schema[variant][0], where)
    if "enum" in schema:
        return schema["enum"][0]
    kind = schema.get("type")
    name = where.rsplit(".", 1)[-1]
    if kind == "object" or "properties" in schema:
        sample = {
            key: event_sample(sub, f"{where}.{key}")
            for key, sub in schema.get("properties", {}).items()
        }
        extra = schema.get("additionalProperties")
        if not sample and isinstance(extra, dict):
            sample = {"source": event_sample(extra, f"{where}.source")}
        return sample
    if kind == "array":
        return [event_sample(schema.get("items", {}), where)]
    if kind == "boolean":
        return False
    if kind in ("number", "integer"):
        return schema.get("minimum", 1)
    return sample_string(schema.get("format"), name, where)


def sample_string(string_format: str | None, name: str, where: str) -> str:
    if string_format == "uuid":
        return SEEDED_UUIDS.get(name) or seeded_id("sample", where)
    if string_format == "date-time":
        return SAMPLE_TIME
    if string_format == "uri":
        return f"https://example.com/{name}"
    return f"sample {name.replace('_', ' ')}"


def event_samples(spec: dict[str, Any]) -> dict[str, Any]:
    samples = {}
    for variant in spec["components"]["schemas"]["event"]["oneOf"]:
        event_type = variant["properties"]["event_type"]["enum"][0]
        samples[event_type] = event_sample(variant, event_type)
    return samples


def extract(spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "$comment": (
            "Generated by scripts/trim_seam_schemas.py from Seam's OpenAPI spec "
            f"({spec['info'].get('title', 'Seam')} {spec['info'].get('version', '')}). "
            "Do not edit by hand."
        ),
        "parameters": {path: endpoint_parameters(spec, path) for path in ENDPOINTS},
        "event_samples": event_samples(spec),
    }


def write_json(path: Path, document: dict[str, Any]) -> None:
    path.write_text(json.dumps(document, indent=1, sort_keys=True) + "\n")


def main(argv: list[str]) -> None:
    spec_path = Path(argv[1]) if len(argv) > 1 else DEFAULT_SPEC
    spec = json.loads(spec_path.read_text())
    trimmed = trim(spec)
    write_json(OUTPUT, trimmed)
    print(f"wrote {OUTPUT.relative_to(REPO_ROOT)}: {len(trimmed['$defs'])} component schemas")
    extracted = extract(spec)
    write_json(EXTRACT_OUTPUT, extracted)
    print(
        f"wrote {EXTRACT_OUTPUT.relative_to(REPO_ROOT)}: "
        f"{len(extracted['event_samples'])} event samples"
    )


if __name__ == "__main__":
    main(sys.argv)
