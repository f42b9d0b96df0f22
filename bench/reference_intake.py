"""Reference for webhook intake: the least an endpoint can do and still be correct.

A minimal FastAPI app that verifies the Svix signature with `svix` and inserts the body into a
table (`svix_id` unique, body as jsonb), one commit per request, then answers 204. Served as
`guestkey serve` serves (bench/reference_server.py): one uvicorn process, the same options, the
same SQLAlchemy async engine (psycopg 3) and pool size.
"""

from __future__ import annotations

import os

from fastapi import FastAPI, Request, Response
from sqlalchemy import text
from svix.webhooks import Webhook, WebhookVerificationError

from bench.reference_server import engine_lifespan, serve

SCHEMA = """
CREATE TABLE IF NOT EXISTS reference_inbox (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    svix_id text NOT NULL UNIQUE,
    body jsonb NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now()
)
"""
INSERT = text(
    "INSERT INTO reference_inbox (svix_id, body) VALUES (:svix_id, CAST(:body AS jsonb)) "
    "ON CONFLICT (svix_id) DO NOTHING"
)


def create_app() -> FastAPI:
    lifespan, sessions = engine_lifespan(os.environ["DATABASE_URL"], SCHEMA)
    app = FastAPI(lifespan=lifespan)
    webhook = Webhook(os.environ["WEBHOOK_SECRET"])

    @app.get("/readyz")
    async def readyz() -> dict[str, bool]:
        return {"ok": True}

    @app.post("/webhooks/seam", status_code=204)
    async def receive(request: Request) -> Response:
        body = await request.body()
        try:
            webhook.verify(body, request.headers)
        except WebhookVerificationError:
            return Response(status_code=401)
        async with sessions()() as session:
            await session.execute(
                INSERT, {"svix_id": request.headers["svix-id"], "body": body.decode()}
            )
            await session.commit()
        return Response(status_code=204)

    return app


if __name__ == "__main__":
    serve(create_app())
