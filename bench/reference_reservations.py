"""Reference for the reservations API: one statement per request.

A minimal FastAPI app with the same shape of API: a Bearer key checked against a dict, the body
validated by a small pydantic model, then `PUT` is one `INSERT … ON CONFLICT DO NOTHING
RETURNING` (201 when inserted, 200 otherwise) and `GET` one `SELECT` by key; both answer the
reservation as JSON. One commit per PUT. Served as `guestkey serve` serves
(bench/reference_server.py).
"""

# No `from __future__ import annotations`: FastAPI must see the closures in Annotated[...].
import json
import os
from datetime import datetime
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, EmailStr
from sqlalchemy import text

from bench.reference_server import engine_lifespan, serve

SCHEMA = """
CREATE TABLE IF NOT EXISTS reference_reservation (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    client text NOT NULL,
    reservation_key text NOT NULL,
    status text NOT NULL DEFAULT 'pending',
    body jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (client, reservation_key)
)
"""
UPSERT = text(
    "INSERT INTO reference_reservation (client, reservation_key, body) "
    "VALUES (:client, :key, CAST(:body AS jsonb)) "
    "ON CONFLICT (client, reservation_key) DO NOTHING RETURNING id"
)
SELECT = text(
    "SELECT reservation_key, status, body, created_at FROM reference_reservation "
    "WHERE client = :client AND reservation_key = :key"
)


class Guest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    email: EmailStr | None = None
    phone: str | None = None
    locale: str = "en"


class ReservationIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    guest: Guest
    starts_at: datetime
    ends_at: datetime
    device_ids: list[str] = []
    acs_entrance_ids: list[str] = []
    space_ids: list[str] = []
    property_name: str | None = None
    timezone: str = "UTC"


def create_app() -> FastAPI:
    lifespan, sessions = engine_lifespan(os.environ["DATABASE_URL"], SCHEMA)
    app = FastAPI(lifespan=lifespan)
    keys = {os.environ["API_KEY"]: "bench"}
    bearer = HTTPBearer(auto_error=False)

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
        async with sessions()() as session:
            inserted = await session.scalar(
                UPSERT, {"client": client, "key": key, "body": body.model_dump_json()}
            )
            await session.commit()
        response.status_code = 201 if inserted is not None else 200
        return {"reservation_key": key, "status": "pending", **body.model_dump(mode="json")}

    @app.get("/v1/reservations/{key}")
    async def get(key: str, client: Annotated[str, Depends(caller)]) -> dict[str, Any]:
        async with sessions()() as session:
            row = (await session.execute(SELECT, {"client": client, "key": key})).first()
        if row is None:
            raise HTTPException(404, "no such reservation")
        body = row.body if isinstance(row.body, dict) else json.loads(row.body)
        return {
            "reservation_key": row.reservation_key,
            "status": row.status,
            "created_at": row.created_at.isoformat(),
            **body,
        }

    return app


if __name__ == "__main__":
    serve(create_app())
