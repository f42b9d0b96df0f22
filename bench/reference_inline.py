"""Reference for the cost of a reservation: guestkey's work done inline, naively.

The same Seam calls and the same email as guestkey, in the requests themselves:
- `PUT /v1/reservations/{key}`: the Bearer key and the body checked (the API reference's
  pydantic model), one INSERT of the reservation with the `access_grant_key` it is about to use
  (committed first: the fake Seam issues the code at once, and its webhook may arrive before the
  create's answer), then the `access_grants/create` call guestkey makes for a new guest — the
  same `seam` SDK (`AsyncSeam`, the same client options), the guest as an inline user identity
  keyed as guestkey keys it, the doors, starts/ends, a PIN code requested — and the grant id
  stored. 201.
- `POST /webhooks/seam`: the Svix signature verified and the event inserted (as the intake
  reference does); then, for `access_method.issued` only, guestkey's two Seam reads
  (`access_methods/get`, and `access_methods/get_related` for the doors it opens), the
  reservation read by grant key, and the same email guestkey sends — built by guestkey's own
  `app.delivery.messages.render_email`, sent with `aiosmtplib` as app/delivery/channels.py sends
  it — to the guest's address. 204.
No durability beyond the two inserts, no dedupe of messages, no retries, no queue, no logs:
the floor for this work in Python. Served as `guestkey serve` serves (bench/reference_server.py).
"""

# No `from __future__ import annotations`: FastAPI must see the closures in Annotated[...].
import contextlib
import json
import os
import uuid
from collections.abc import AsyncIterator
from typing import Annotated, Any

import aiosmtplib
import httpx
from fastapi import Depends, FastAPI, HTTPException, Request, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from seam.seam import AsyncSeam
from sqlalchemy import text
from svix.webhooks import Webhook, WebhookVerificationError

from app.delivery.messages import GuestMessage, render_email
from app.seam.client import GuestIdentity
from bench.reference_intake import INSERT as INSERT_EVENT
from bench.reference_intake import SCHEMA as EVENT_SCHEMA
from bench.reference_reservations import ReservationIn
from bench.reference_server import engine_lifespan, serve

SCHEMA = (
    EVENT_SCHEMA
    + """;
CREATE TABLE IF NOT EXISTS reference_stay (
    id uuid PRIMARY KEY,
    client text NOT NULL,
    reservation_key text NOT NULL,
    access_grant_key text NOT NULL UNIQUE,
    access_grant_id text,
    guest_name text NOT NULL,
    guest_email text,
    guest_locale text NOT NULL,
    property_name text,
    starts_at timestamptz NOT NULL,
    ends_at timestamptz NOT NULL,
    timezone text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (client, reservation_key)
)
"""
)
INSERT_STAY = text(
    "INSERT INTO reference_stay (id, client, reservation_key, access_grant_key, guest_name, "
    "guest_email, guest_locale, property_name, starts_at, ends_at, timezone) "
    "VALUES (:id, :client, :key, :grant_key, :guest_name, :guest_email, :guest_locale, "
    ":property_name, :starts_at, :ends_at, :timezone) "
    "ON CONFLICT (client, reservation_key) DO NOTHING RETURNING id"
)
STORE_GRANT = text("UPDATE reference_stay SET access_grant_id = :grant_id WHERE id = :id")
STAY_BY_GRANT_KEY = text(
    "SELECT guest_name, guest_email, guest_locale, property_name, starts_at, ends_at, timezone "
    "FROM reference_stay WHERE access_grant_key = :grant_key"
)


def _door_name(resource: dict[str, Any], id_field: str) -> str:
    return str(resource.get("display_name") or resource.get("name") or resource[id_field])


def create_app() -> FastAPI:
    engine_span, sessions = engine_lifespan(os.environ["DATABASE_URL"], SCHEMA)
    clients: dict[str, AsyncSeam] = {}

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with engine_span(app):
            # As app/seam/client.py's SeamGateway.connect makes it.
            clients["seam"] = AsyncSeam(
                api_key="seam_reference",
                endpoint=os.environ["SEAM_ENDPOINT"],
                timeout=20.0,
                httpx_options={
                    "limits": httpx.Limits(max_connections=20, max_keepalive_connections=20)
                },
                wait_for_action_attempt=False,
            )
            try:
                yield
            finally:
                await clients["seam"].close()

    app = FastAPI(lifespan=lifespan)
    keys = {os.environ["API_KEY"]: "bench"}
    bearer = HTTPBearer(auto_error=False)
    webhook = Webhook(os.environ["WEBHOOK_SECRET"])
    smtp_host, smtp_port = os.environ["SMTP_HOST"], int(os.environ["SMTP_PORT"])
    mail_from = os.environ["MAIL_FROM"]

    def caller(
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    ) -> str:
        if credentials is None or credentials.credentials not in keys:
            raise HTTPException(401, "invalid API key")
        return keys[credentials.credentials]

    @app.get("/readyz")
    async def readyz() -> dict[str, bool]:
        return {"ok": True}

    @app.put("/v1/reservations/{key}")
    async def put(
        key: str, body: ReservationIn, response: Response, client: Annotated[str, Depends(caller)]
    ) -> dict[str, Any]:
        stay_id = uuid.uuid4()
        grant_key = f"reference-{stay_id}"
        async with sessions()() as session:
            inserted = await session.scalar(
                INSERT_STAY,
                {
                    "id": stay_id,
                    "client": client,
                    "key": key,
                    "grant_key": grant_key,
                    "guest_name": body.guest.name,
                    "guest_email": body.guest.email,
                    "guest_locale": body.guest.locale,
                    "property_name": body.property_name,
                    "starts_at": body.starts_at,
                    "ends_at": body.ends_at,
                    "timezone": body.timezone,
                },
            )
            await session.commit()
        if inserted is None:
            response.status_code = 200
            return {"reservation_key": key, "status": "exists"}
        guest = GuestIdentity(body.guest.name, body.guest.email, body.guest.phone)
        identity: dict[str, Any] = {
            "full_name": guest.full_name,
            "user_identity_key": guest.user_identity_key,
        }
        if guest.email_address:
            identity["email_address"] = guest.email_address
        elif guest.phone_number:
            identity["phone_number"] = guest.phone_number
        place = f" at {body.property_name}" if body.property_name else ""
        grant = await clients["seam"].access_grants.create(
            access_grant_key=grant_key,
            name=f"{guest.full_name}{place} ({key})",
            requested_access_methods=[{"mode": "code"}],
            starts_at=body.starts_at.isoformat(),
            ends_at=body.ends_at.isoformat(),
            device_ids=list(body.device_ids) or None,
            acs_entrance_ids=list(body.acs_entrance_ids) or None,
            space_ids=list(body.space_ids) or None,
            user_identity_id=None,
            user_identity=identity,
        )
        async with sessions()() as session:
            await session.execute(STORE_GRANT, {"grant_id": grant.access_grant_id, "id": stay_id})
            await session.commit()
        response.status_code = 201
        return {
            "reservation_key": key,
            "status": "granted",
            "access_grant_id": grant.access_grant_id,
        }

    @app.post("/webhooks/seam", status_code=204)
    async def receive(request: Request) -> Response:
        body = await request.body()
        try:
            webhook.verify(body, request.headers)
        except WebhookVerificationError:
            return Response(status_code=401)
        async with sessions()() as session:
            await session.execute(
                INSERT_EVENT, {"svix_id": request.headers["svix-id"], "body": body.decode()}
            )
            await session.commit()
        event = json.loads(body)
        if event.get("event_type") == "access_method.issued":
            await send_code(event)
        return Response(status_code=204)

    async def send_code(event: dict[str, Any]) -> None:
        """guestkey's two Seam reads, the reservation, and the email."""
        seam = clients["seam"]
        method_id = event["access_method_id"]
        method = await seam.access_methods.get(access_method_id=method_id)
        if not method.is_issued or not method.code:
            return
        related = await seam.access_methods.get_related(access_method_ids=[method_id])
        doors = [_door_name(device, "device_id") for device in related.devices or []]
        doors += [
            _door_name(entrance, "acs_entrance_id") for entrance in related.acs_entrances or []
        ]
        async with sessions()() as session:
            stay = None
            for grant_key in event.get("access_grant_keys") or []:
                stay = (await session.execute(STAY_BY_GRANT_KEY, {"grant_key": grant_key})).first()
                if stay is not None:
                    break
        if stay is None or not stay.guest_email:
            return
        message = GuestMessage(
            guest_name=stay.guest_name,
            locale=stay.guest_locale,
            property_name=stay.property_name,
            code=method.code,
            doors=doors,
            starts_at=stay.starts_at,
            ends_at=stay.ends_at,
            timezone=stay.timezone,
        )
        await aiosmtplib.send(
            render_email(message, to=stay.guest_email, mail_from=mail_from),
            hostname=smtp_host,
            port=smtp_port,
            use_tls=False,
            start_tls=False,
            timeout=20.0,
        )

    return app


if __name__ == "__main__":
    serve(create_app())
