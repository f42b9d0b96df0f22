"""Fixtures for the fake Seam's tests: the fake, the official SDK on it, a webhook receiver.

Every HTTP response the SDK or the raw client receives from the fake is validated against the
trimmed Seam spec (``seam_schemas.json``) by an httpx response hook, so each test that calls an
endpoint also checks its shape.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request, Response
from jsonschema import Draft202012Validator, FormatChecker
from seam import AsyncSeam
from svix.webhooks import Webhook, WebhookVerificationError

from app.seam.fake import FakeSeam

SCHEMAS_FILE = Path(__file__).with_name("seam_schemas.json")
FAKE_URL = "http://fake-seam"
RECEIVER_URL = "http://receiver/webhooks/seam"


@cache
def schemas() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(SCHEMAS_FILE.read_text())
    return loaded


def by_discriminator(one_of: dict[str, Any]) -> dict[str, Any]:
    """The spec's ``oneOf`` of events, checked through its ``event_type`` discriminator: the same
    verdict (each variant fixes ``event_type``), without validating an event against all 109."""
    variants = {variant["properties"]["event_type"]["enum"][0]: variant for variant in one_of}
    return {
        "type": "object",
        "required": ["event_type"],
        "properties": {"event_type": {"enum": list(variants)}},
        "allOf": [
            {"if": {"properties": {"event_type": {"const": event_type}}}, "then": variant}
            for event_type, variant in variants.items()
        ],
    }


@cache
def validation_defs() -> dict[str, Any]:
    defs = dict(schemas()["$defs"])
    defs["event"] = by_discriminator(defs["event"]["oneOf"])
    return defs


FORMAT_CHECKER = FormatChecker()


@FORMAT_CHECKER.checks("date-time", raises=ValueError)
def is_date_time(value: object) -> bool:
    """RFC 3339 with a zone (jsonschema skips date-time without an optional package)."""
    if not isinstance(value, str):
        return True
    return "T" in value and datetime.fromisoformat(value).tzinfo is not None


@cache
def validator(name: str) -> Draft202012Validator:
    """``name`` is an endpoint path, ``"error_envelope"`` or a component like ``"event"``."""
    document = schemas()
    if name == "error_envelope":
        schema = document["error_envelope"]
    elif name.startswith("/"):
        schema = {**document["responses"][name], "$defs": validation_defs()}
    else:
        schema = {"$ref": f"#/$defs/{name}", "$defs": validation_defs()}
    return Draft202012Validator(schema, format_checker=FORMAT_CHECKER)


def assert_valid(name: str, body: Any) -> None:
    errors = sorted(validator(name).iter_errors(body), key=lambda e: list(e.absolute_path))
    assert not errors, f"{name}: " + "; ".join(
        f"{list(e.absolute_path)}: {e.message[:300]}" for e in errors[:5]
    )


@dataclass
class ResponseLog:
    """Every fake Seam response seen by the clients, already validated."""

    validated_paths: set[str] = field(default_factory=set)
    responses: list[httpx.Response] = field(default_factory=list)

    async def check(self, response: httpx.Response) -> None:
        await response.aread()
        path = response.request.url.path
        if path.startswith("/_fake"):
            return
        assert response.headers.get("seam-request-id"), f"{path}: no seam-request-id"
        body = response.json()
        if response.is_success:
            assert body["ok"] is True
            assert_valid(path, body)
            self.validated_paths.add(path)
        else:
            assert_valid("error_envelope", body)
        self.responses.append(response)


@pytest.fixture
def response_log() -> ResponseLog:
    return ResponseLog()


@pytest.fixture
async def fake() -> AsyncIterator[FakeSeam]:
    instance = FakeSeam(issue_delay=0.01)
    yield instance
    await instance.aclose()
    assert_events_valid(instance)


def assert_events_valid(fake: FakeSeam) -> None:
    """Every event a test made the fake record must be a valid Seam ``event``."""
    for event in fake.state.events:
        assert_valid("event", event)


def make_sdk(fake: FakeSeam, log: ResponseLog) -> AsyncSeam:
    return AsyncSeam(
        api_key="seam_fake_key",
        endpoint=FAKE_URL,
        httpx_options={
            "transport": httpx.ASGITransport(fake.app),
            "event_hooks": {"response": [log.check]},
        },
    )


@pytest.fixture
def seam(fake: FakeSeam, response_log: ResponseLog) -> AsyncSeam:
    return make_sdk(fake, response_log)


@pytest.fixture
async def raw(fake: FakeSeam, response_log: ResponseLog) -> AsyncIterator[httpx.AsyncClient]:
    """A plain client with a valid key, for the POST+JSON forms and for raw bodies."""
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(fake.app),
        base_url=FAKE_URL,
        headers={"Authorization": "Bearer seam_fake_key"},
        event_hooks={"response": [response_log.check]},
    ) as client:
        yield client


@dataclass
class Delivery:
    svix_id: str
    body: bytes
    event: dict[str, Any]
    status: int


class Receiver:
    """A tiny guestkey stand-in: verifies Svix signatures, can fail on purpose."""

    def __init__(self) -> None:
        self.secret = ""
        self.fail_next = 0
        self.deliveries: list[Delivery] = []
        self.rejected: list[str] = []
        self.app = FastAPI()
        self.app.add_api_route("/webhooks/seam", self.receive, methods=["POST"])

    async def receive(self, request: Request) -> Response:
        body = await request.body()
        try:
            event = Webhook(self.secret).verify(body, dict(request.headers))
        except (WebhookVerificationError, ValueError) as error:
            self.rejected.append(str(error))
            return Response(status_code=401)
        status = 500 if self.fail_next > 0 else 204
        self.fail_next = max(self.fail_next - 1, 0)
        self.deliveries.append(Delivery(request.headers["svix-id"], body, event, status))
        return Response(status_code=status)

    async def wait_for(
        self, predicate: Callable[[Delivery], bool], count: int = 1, within: float = 3.0
    ) -> list[Delivery]:
        async def matching() -> list[Delivery]:
            while len(found := [d for d in self.deliveries if predicate(d)]) < count:
                await asyncio.sleep(0.01)
            return found

        return await asyncio.wait_for(matching(), within)


@pytest.fixture
async def receiver() -> Receiver:
    return Receiver()


@pytest.fixture
async def webhook_fake(receiver: Receiver) -> AsyncIterator[FakeSeam]:
    instance = FakeSeam(
        webhook_url=RECEIVER_URL,
        webhook_transport=httpx.ASGITransport(receiver.app),
        issue_delay=0.01,
        webhook_retry_schedule=(0.05, 0.1),
    )
    receiver.secret = instance.webhook_secret
    yield instance
    await instance.aclose()
    assert_events_valid(instance)
