"""The guest's page over HTTP: `GET /g/{token}`, and its two forms (show the code, report a
problem). Plain HTML that works without JavaScript; every answer is `no-store` (it can hold a
PIN code) and sends no referrer (the URL is the guest's key)."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import parse_qs

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse

from app.db import utcnow
from app.dependencies import RuntimeDep, SessionDep
from app.guests import flows, pages, service
from app.reservations.models import Reservation
from app.runtime import Runtime

router = APIRouter(include_in_schema=False)

_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Robots-Tag": "noindex, nofollow",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
}

# Any value: one that is not a language guestkey writes falls back to the guest's own.
LangQuery = Annotated[str | None, Query()]


@router.get("/g/{token}", response_class=HTMLResponse)
async def guest_page(
    token: str, runtime: RuntimeDep, session: SessionDep, lang: LangQuery = None
) -> HTMLResponse:
    opened = await service.open_link(session, token=token, now=utcnow())
    if opened is None:
        return _not_found(lang)
    reservation, state = opened
    html = await _page(runtime, session, token, reservation, state, language_asked=lang)
    await session.commit()
    return _html(html)


@router.post("/g/{token}/code", response_class=HTMLResponse)
async def show_code(
    token: str, request: Request, runtime: RuntimeDep, session: SessionDep
) -> HTMLResponse:
    form = await _form(request)
    opened = await service.open_link(session, token=token, now=utcnow())
    if opened is None:
        return _not_found(form.get("lang"))
    reservation, state = opened
    code = None
    if state == service.LinkState.OPEN:
        code = await service.reveal_code(
            session,
            reservation_id=reservation.id,
            cipher=runtime.cipher,
            reason="the guest opened the code on their page",
        )
    html = await _page(
        runtime, session, token, reservation, state, language_asked=form.get("lang"), code=code
    )
    await session.commit()
    return _html(html)


@router.post("/g/{token}/problem", response_class=HTMLResponse)
async def report_problem(
    token: str, request: Request, runtime: RuntimeDep, session: SessionDep
) -> HTMLResponse:
    form = await _form(request)
    opened = await service.open_link(session, token=token, now=utcnow())
    if opened is None:
        return _not_found(form.get("lang"))
    reservation, state = opened
    await session.commit()  # Seam is asked next: hold no transaction open meanwhile
    report = code = None
    if state == service.LinkState.OPEN:
        report = await flows.report_problem(
            runtime,
            reservation_id=reservation.id,
            door_id=form.get("door") or None,
            now=utcnow(),
        )
        await session.refresh(reservation)
        if report.fresh_code_ready:
            code = await service.reveal_code(
                session,
                reservation_id=reservation.id,
                cipher=runtime.cipher,
                reason="the guest's fresh code, shown on their page",
            )
    html = await _page(
        runtime,
        session,
        token,
        reservation,
        state,
        language_asked=form.get("lang"),
        code=code,
        report=report,
    )
    await session.commit()
    return _html(html)


async def _page(
    runtime: Runtime,
    session: SessionDep,
    token: str,
    reservation: Reservation,
    state: service.LinkState,
    *,
    language_asked: str | None,
    code: str | None = None,
    report: flows.Report | None = None,
) -> str:
    cancelled = state == service.LinkState.CANCELLED
    stay = None
    if not cancelled:
        stay = await service.read_stay(
            session,
            reservation=reservation,
            fresh_code_limit=runtime.settings.guestkey_fresh_code_limit,
        )
    return pages.render_page(
        token=token,
        language=pages.choose_language(language_asked, reservation.guest_locale),
        stay=stay,
        cancelled=cancelled,
        property_name=reservation.property_name,
        address=_lines(reservation.property_address),
        support_contact=runtime.settings.guestkey_support_contact,
        code=code,
        report=report,
    )


def _lines(text: str | None) -> list[str]:
    """An address as its non-empty lines."""
    return [line.strip() for line in (text or "").splitlines() if line.strip()]


async def _form(request: Request) -> dict[str, str]:
    """A urlencoded form's fields (the last value of each); anything else reads as empty."""
    body = await request.body()
    try:
        fields = parse_qs(body.decode(), max_num_fields=10)
    except (UnicodeDecodeError, ValueError):
        return {}
    return {name: values[-1][:200] for name, values in fields.items()}


def _html(html: str, status_code: int = 200) -> HTMLResponse:
    return HTMLResponse(html, status_code=status_code, headers=_HEADERS)


def _not_found(language_asked: str | None) -> HTMLResponse:
    return _html(pages.render_not_found(pages.choose_language(language_asked, "en")), 404)
