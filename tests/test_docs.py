"""`/docs` works offline and `/openapi.json` explains every field, with sandbox examples."""

from __future__ import annotations

import httpx

from app.seam.fake import SEEDED_DEVICES


async def test_docs_are_served_from_local_assets(client: httpx.AsyncClient) -> None:
    page = await client.get("/docs")
    assert page.status_code == 200
    assert "/docs/assets/swagger-ui-bundle.js" in page.text
    assert "https://" not in page.text  # nothing from a CDN
    script = await client.get("/docs/assets/swagger-ui-bundle.js")
    styles = await client.get("/docs/assets/swagger-ui.css")
    assert script.status_code == styles.status_code == 200
    assert len(script.content) > 100_000


async def test_every_field_of_the_api_is_described(client: httpx.AsyncClient) -> None:
    spec = (await client.get("/openapi.json")).json()
    undescribed = [
        f"{name}.{field}"
        for name, schema in spec["components"]["schemas"].items()
        for field, property_schema in schema.get("properties", {}).items()
        if not property_schema.get("description")
    ]
    assert undescribed == []
    assert "code" in spec["components"]["schemas"]["HTTPValidationError"]["properties"]


async def test_the_put_example_uses_doors_the_sandbox_has(client: httpx.AsyncClient) -> None:
    spec = (await client.get("/openapi.json")).json()
    example = spec["components"]["schemas"]["ReservationIn"]["example"]
    sandbox_doors = {door.id for door in SEEDED_DEVICES}
    assert example["device_ids"] and set(example["device_ids"]) <= sandbox_doors


async def test_the_webhook_endpoint_is_described_for_its_users(client: httpx.AsyncClient) -> None:
    spec = (await client.get("/openapi.json")).json()
    description = spec["paths"]["/webhooks/seam"]["post"]["description"]
    assert "seam connect" in description
    assert "hot path" not in description and "FastAPI" not in description
