"""FastAPI dependencies shared by every router: the runtime, a session, the calling client."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.ext.asyncio import AsyncSession

from app.clients.service import authenticate
from app.errors import Unauthorized
from app.runtime import Runtime

_bearer = HTTPBearer(auto_error=False, description="An API key of a booking system")


def runtime_of(request: Request) -> Runtime:
    """The app's runtime. The hot routes and the dependencies below read it with this instead
    of depending on `get_runtime`: each dependency FastAPI resolves costs every request."""
    runtime: Runtime = request.app.state.runtime
    return runtime


async def get_runtime(request: Request) -> Runtime:
    # async on purpose: FastAPI runs a plain `def` dependency in its thread pool, a thread
    # hop (and GIL hand-over) on every request for what is an attribute read.
    return runtime_of(request)


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    """A session whose transaction the route commits itself, before answering. The busiest
    routes (PUT and GET of a reservation) take none: FastAPI wraps each generator dependency in
    an exit stack and a cancel scope, which costs a request more than its statement does; they
    run their statement on a pooled connection (`db.autocommit_connection`)."""
    async with runtime_of(request).sessionmaker() as session:
        yield session


async def get_client_id(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> uuid.UUID:
    """The calling client, before the body is validated: an unknown caller learns nothing of
    what the route would make of its request (a body that is not JSON at all is refused
    first). A key from GUESTKEY_API_KEYS needs no database; a client's key is looked up in one
    statement of its own, apart from the route's work."""
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise Unauthorized("missing API key: send Authorization: Bearer <key>")
    runtime = runtime_of(request)
    client_id = await authenticate(
        runtime.sessionmaker,
        key=credentials.credentials,
        env_digests=runtime.env_key_digests,
    )
    if client_id is None:
        raise Unauthorized("invalid API key")
    return client_id


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
SessionDep = Annotated[AsyncSession, Depends(get_session)]
ClientDep = Annotated[uuid.UUID, Depends(get_client_id)]
