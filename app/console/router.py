"""The operator console at /console: server-rendered pages, plain forms, htmx for refreshes.

Everything here is the console's own: its routes come after the API's and the webhook's in the
route table, and it adds no middleware, so neither pays for it. Sign-in is a session cookie
(HttpOnly, SameSite=Strict, Secure over HTTPS); every POST carries the session's CSRF token.
"""

from __future__ import annotations

import functools
import secrets
import uuid
from collections.abc import Callable, Coroutine
from datetime import date, datetime
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

import jinja2
import structlog
from fastapi import APIRouter, Depends, FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.routing import APIRoute
from fastapi.staticfiles import StaticFiles
from starlette.datastructures import FormData

from app.console import queries, service
from app.console.models import OperatorLoginAttempt
from app.db import utcnow
from app.dependencies import RuntimeDep, SessionDep
from app.errors import GuestkeyError
from app.reservations import service as reservations
from app.reservations.codes import FreshCodeRefused, request_fresh_code
from app.reservations.models import ReservationStatus
from app.seam.errors import SeamError

log = structlog.get_logger(__name__)

HERE = Path(__file__).parent
SESSION_COOKIE = "guestkey_console"
LOGIN_COOKIE = "guestkey_console_login"  # the sign-in form's CSRF token, before any session
# Where the console links Seam ids to (Seam's own console shows Seam's side of a stay).
SEAM_CONSOLE_URL = "https://console.seam.co"
SEAM_CONSOLE_PATHS = {
    "access_grant": "access-grants",
    "access_method": "access-methods",
    "device": "devices",
    "acs_entrance": "acs/entrances",
    "space": "spaces",
}
TODAY_REFRESH_SECONDS = 5
ACTIONS = {
    "resend": "Send the current code to the guest again, on every channel",
    "resync": "Re-read this stay from Seam and converge it now",
    "cancel": "Cancel the stay: its Seam grant is deleted and the code stops working",
    "fresh_code": "Ask Seam for a new code on the same grant; the guest gets it once, and the "
    "old code is superseded",
}
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
        "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


class NotSignedIn(Exception):
    """No live session: pages go to the sign-in form, htmx fragments ask for a full reload."""


class CsrfRefused(Exception):
    pass


class MustChoosePassword(Exception):
    """Signed in with the one-time password: a password of their own comes first."""


class ConsoleRoute(APIRoute):
    """Renders the console's refusals as pages (the API's JSON error handlers stay as they are,
    for the API)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def handle(request: Request) -> Response:
            try:
                return await handler(request)
            except NotSignedIn:
                if request.headers.get("hx-request"):
                    return Response(status_code=401, headers={"HX-Redirect": "/console/login"})
                target = quote(request.url.path)
                return RedirectResponse(f"/console/login?next={target}", status_code=303)
            except MustChoosePassword:
                if request.headers.get("hx-request"):
                    return Response(status_code=401, headers={"HX-Redirect": "/console/password"})
                return RedirectResponse("/console/password", status_code=303)
            except CsrfRefused:
                return render(request, "error.html.j2", status=403, message=CSRF_MESSAGE)
            except service.TooManyAttempts as error:
                page = render(request, "error.html.j2", status=429, message=error.message)
                page.headers["Retry-After"] = str(error.retry_after)
                return page
            except GuestkeyError as error:
                return render(
                    request, "error.html.j2", status=error.status_code, message=error.message
                )
            except RequestValidationError:
                return render(request, "error.html.j2", status=404, message="no such page")

        return handle


CSRF_MESSAGE = "this form is out of date or was not sent by the console; reload the page"

router = APIRouter(prefix="/console", route_class=ConsoleRoute, include_in_schema=False)


def mount(app: FastAPI) -> None:
    """Add the console to guestkey's app, after every other route."""
    app.include_router(router)
    app.mount("/console/static", StaticFiles(directory=HERE / "static"), name="console-static")


# Rendering ----------------------------------------------------------------------------------


@functools.cache
def templates() -> jinja2.Environment:
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    environment.globals.update(seam_link=seam_link, refresh_seconds=TODAY_REFRESH_SECONDS)
    environment.filters["when"] = _when
    return environment


def render(request: Request, name: str, *, status: int = 200, **context: Any) -> HTMLResponse:
    context.setdefault("signed_in", getattr(request.state, "signed_in", None))
    html = templates().get_template(name).render(request=request, **context)
    return HTMLResponse(html, status_code=status, headers=SECURITY_HEADERS)


def seam_link(kind: str, seam_id: str) -> str:
    return f"{SEAM_CONSOLE_URL}/{SEAM_CONSOLE_PATHS[kind]}/{quote(seam_id)}"


def _when(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M UTC") if moment else "—"


# Who is asking ------------------------------------------------------------------------------


async def signed_in(request: Request, session: SessionDep) -> service.SignedIn:
    token = request.cookies.get(SESSION_COOKIE)
    found = await service.resume_session(session, token=token) if token else None
    if found is None:
        raise NotSignedIn
    request.state.signed_in = found
    if found.operator.password_chosen_at is None and request.url.path not in OPEN_BEFORE_PASSWORD:
        raise MustChoosePassword
    return found


# With the one-time password, these are the only pages an operator can use.
OPEN_BEFORE_PASSWORD = frozenset({"/console/password", "/console/logout"})


SignedInDep = Annotated[service.SignedIn, Depends(signed_in)]


async def checked_form(request: Request, who: SignedInDep) -> FormData:
    """The POSTed form, once its CSRF token is the session's."""
    form = await request.form()
    given = form.get("csrf_token")
    if not service.csrf_matches(who.csrf_token, given if isinstance(given, str) else None):
        log.warning("console.csrf_refused", operator_id=str(who.operator.id))
        raise CsrfRefused
    return form


FormDep = Annotated[FormData, Depends(checked_form)]


def _client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def _set_cookie(response: Response, request: Request, name: str, value: str, path: str) -> None:
    response.set_cookie(
        name,
        value,
        path=path,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )


# Sign-in ------------------------------------------------------------------------------------


@router.get("/login")
async def login_form(request: Request, next: str = "/console") -> HTMLResponse:
    token = request.cookies.get(LOGIN_COOKIE) or secrets.token_urlsafe(32)
    page = render(request, "login.html.j2", csrf_token=token, next=_safe_next(next), error=None)
    _set_cookie(page, request, LOGIN_COOKIE, token, "/console/login")
    return page


@router.post("/login")
async def login(request: Request, session: SessionDep) -> Response:
    form = await request.form()
    expected = request.cookies.get(LOGIN_COOKIE)
    given = form.get("csrf_token")
    if expected is None or not service.csrf_matches(
        expected, given if isinstance(given, str) else None
    ):
        raise CsrfRefused
    email, password = str(form.get("email", "")), str(form.get("password", ""))
    next_page = _safe_next(str(form.get("next", "/console")))
    try:
        operator, token = await service.sign_in(
            session, email=email, password=password, client_address=_client_address(request)
        )
    except service.SignInRefused as error:
        await session.commit()  # the failed attempt counts towards the limits
        return render(
            request,
            "login.html.j2",
            status=401,
            csrf_token=expected,
            next=next_page,
            error=error.message,
        )
    await service.audit(
        session, operator_id=operator.id, action="sign_in", client_id=operator.client_id
    )
    await session.commit()
    response = RedirectResponse(next_page, status_code=303)
    _set_cookie(response, request, SESSION_COOKIE, token, "/console")
    response.delete_cookie(LOGIN_COOKIE, path="/console/login")
    return response


def _safe_next(target: str) -> str:
    """Only back into the console, never to another site after sign-in."""
    if target.startswith("/console") and not target.startswith("//") and "\\" not in target:
        return target
    return "/console"


@router.post("/logout")
async def logout(session: SessionDep, who: SignedInDep, _: FormDep) -> Response:
    await service.audit(
        session, operator_id=who.operator.id, action="sign_out", client_id=who.client_id
    )
    await service.end_session(session, session_id=who.session_id)
    await session.commit()
    response = RedirectResponse("/console/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/console")
    return response


@router.get("/password")
async def password_form(request: Request, session: SessionDep, who: SignedInDep) -> HTMLResponse:
    await session.commit()
    return render(request, "password.html.j2", error=None, first=_first_time(who))


@router.post("/password")
async def choose_password(
    request: Request, session: SessionDep, who: SignedInDep, form: FormDep
) -> Response:
    first = _first_time(who)
    try:
        await service.choose_password(
            session,
            operator=who.operator,
            current=str(form.get("current_password", "")),
            new=str(form.get("new_password", "")),
            repeated=str(form.get("repeat_password", "")),
        )
    except service.PasswordRefused as error:
        return render(request, "password.html.j2", status=422, error=error.message, first=first)
    await service.end_other_sessions(session, operator_id=who.operator.id, keep=who.session_id)
    await service.audit(
        session, operator_id=who.operator.id, action="choose_password", client_id=who.client_id
    )
    await session.commit()
    return RedirectResponse("/console", status_code=303)


def _first_time(who: service.SignedIn) -> bool:
    return who.operator.password_chosen_at is None


# Views --------------------------------------------------------------------------------------


@router.get("")
async def today(request: Request, session: SessionDep, who: SignedInDep) -> HTMLResponse:
    view = await queries.today(session, client_id=who.client_id)
    await session.commit()  # a touched session's last_seen_at
    return render(request, "today.html.j2", today=view)


@router.get("/today/parts")
async def today_parts(request: Request, session: SessionDep, who: SignedInDep) -> HTMLResponse:
    """What the Today page re-reads every few seconds (htmx), without a full reload."""
    view = await queries.today(session, client_id=who.client_id)
    await session.commit()
    return render(request, "today_parts.html.j2", today=view)


@router.get("/reservations")
async def reservation_list(
    request: Request,
    session: SessionDep,
    who: SignedInDep,
    q: str = "",
    status: str = "",
    client: str = "",
    property_name: str = "",
    arrives_from: date | None = None,
    arrives_until: date | None = None,
    page: int = 1,
) -> HTMLResponse:
    criteria = queries.Search(
        text=q[:200],
        status=status if status in set(ReservationStatus) else "",
        client=client[:200] if who.client_id is None else "",
        property_name=property_name[:200],
        arrives_from=arrives_from,
        arrives_until=arrives_until,
        page=min(max(page, 1), 10_000),
    )
    found = await queries.search(session, client_id=who.client_id, criteria=criteria)
    clients = await queries.client_names(session) if who.client_id is None else []
    await session.commit()
    return render(
        request,
        "reservations.html.j2",
        criteria=criteria,
        found=found,
        clients=clients,
        statuses=[status.value for status in ReservationStatus],
        query_for_page=lambda number: _query_for_page(request, number),
    )


def _query_for_page(request: Request, number: int) -> str:
    params = dict(request.query_params)
    params["page"] = str(number)
    return "?" + "&".join(f"{quote(k)}={quote(v)}" for k, v in params.items())


@router.get("/reservations/{reservation_id}")
async def reservation_page(
    request: Request,
    reservation_id: uuid.UUID,
    session: SessionDep,
    who: SignedInDep,
    done: str = "",
) -> HTMLResponse:
    found = await queries.detail(session, client_id=who.client_id, reservation_id=reservation_id)
    audit = await service.audit_log(
        session, client_id=who.client_id, reservation_id=reservation_id, limit=50
    )
    await session.commit()
    notice = audit[0] if done and audit and audit[0].operator_email == who.operator.email else None
    return render(
        request, "reservation.html.j2", detail=found, audit=audit, notice=notice, actions=ACTIONS
    )


@router.get("/health")
async def health(
    request: Request, session: SessionDep, who: SignedInDep, runtime: RuntimeDep
) -> HTMLResponse:
    view = await queries.health(
        session, client_id=who.client_id, rejected=_rejected_signatures(request)
    )
    await session.commit()
    return render(request, "health.html.j2", health=view, runtime=runtime)


def _rejected_signatures(request: Request) -> queries.RejectedSignatures:
    state = request.app.state
    if not hasattr(state, "console_rejected_signatures"):
        state.console_rejected_signatures = queries.RejectedSignatures(started_at=utcnow())
    rejected: queries.RejectedSignatures = state.console_rejected_signatures
    return rejected


@router.get("/audit")
async def audit_log(request: Request, session: SessionDep, who: SignedInDep) -> HTMLResponse:
    lines = await service.audit_log(session, client_id=who.client_id, limit=200)
    await session.commit()
    return render(request, "audit.html.j2", lines=lines)


# Actions ------------------------------------------------------------------------------------


@router.get("/reservations/{reservation_id}/reveal/{access_method_id}")
async def reveal_form(
    request: Request,
    reservation_id: uuid.UUID,
    access_method_id: str,
    session: SessionDep,
    who: SignedInDep,
) -> HTMLResponse:
    stay = await queries.find_stay(session, client_id=who.client_id, reservation_id=reservation_id)
    await queries.access_method(
        session, reservation_id=reservation_id, access_method_id=access_method_id
    )
    await session.commit()
    return render(
        request,
        "reveal.html.j2",
        stay=stay,
        access_method_id=access_method_id,
        code=None,
        error=None,
    )


@router.post("/reservations/{reservation_id}/reveal/{access_method_id}")
async def reveal(
    request: Request,
    reservation_id: uuid.UUID,
    access_method_id: str,
    session: SessionDep,
    who: SignedInDep,
    form: FormDep,
    runtime: RuntimeDep,
) -> HTMLResponse:
    """A code is shown only after the operator typed their password again; audited."""
    stay = await queries.find_stay(session, client_id=who.client_id, reservation_id=reservation_id)
    method = await queries.access_method(
        session, reservation_id=reservation_id, access_method_id=access_method_id
    )
    email, address = who.operator.email, _client_address(request)
    await service.check_login_limits(session, email=email, client_address=address)
    password_ok = await service.verify_password(who.operator, str(form.get("password", "")))
    audit = functools.partial(
        service.audit,
        session,
        operator_id=who.operator.id,
        action="reveal_code",
        reservation_id=reservation_id,
        client_id=stay.reservation.client_id,
        access_method_id=access_method_id,
    )
    if not password_ok:
        session.add(OperatorLoginAttempt(email=email, client_address=address, succeeded=False))
        await audit(outcome="refused", reason="wrong password")
        await session.commit()
        return render(
            request,
            "reveal.html.j2",
            status=403,
            stay=stay,
            access_method_id=access_method_id,
            code=None,
            error="wrong password",
        )
    code = runtime.cipher.decrypt(method.code_ciphertext) if method.code_ciphertext else None
    await audit(outcome="done" if code else "no code stored")
    await session.commit()
    return render(
        request,
        "reveal.html.j2",
        stay=stay,
        access_method_id=access_method_id,
        code=code,
        error=None,
    )


@router.get("/reservations/{reservation_id}/{action}")
async def confirm_action(
    request: Request, reservation_id: uuid.UUID, action: str, session: SessionDep, who: SignedInDep
) -> HTMLResponse:
    if action not in ACTIONS:
        return render(request, "error.html.j2", status=404, message="no such page")
    stay = await queries.find_stay(session, client_id=who.client_id, reservation_id=reservation_id)
    await session.commit()
    return render(request, "confirm.html.j2", stay=stay, action=action, description=ACTIONS[action])


@router.post("/reservations/{reservation_id}/{action}")
async def run_action(
    request: Request,
    reservation_id: uuid.UUID,
    action: str,
    session: SessionDep,
    who: SignedInDep,
    _: FormDep,
    runtime: RuntimeDep,
) -> Response:
    """The action through the same service function as the API's, so the same rules and limits
    apply; audited whether it was done or refused."""
    if action not in ACTIONS:
        return render(request, "error.html.j2", status=404, message="no such page")
    stay = await queries.find_stay(session, client_id=who.client_id, reservation_id=reservation_id)
    reservation = stay.reservation
    client_id, key = reservation.client_id, reservation.reservation_key
    operator_id = who.operator.id  # read now: a refused action's rollback expires the rows
    outcome, reason = "done", None
    try:
        if action == "resend":
            await reservations.resend(
                session,
                client_id=client_id,
                reservation_key=key,
                limit=runtime.settings.guestkey_resend_limit,
            )
        elif action == "fresh_code":
            # The guest page's path: Seam adds a code to the grant, the inbound path sends it.
            await session.rollback()  # no row of this session is held across Seam's answer
            await request_fresh_code(
                runtime, reservation_id=reservation_id, reason="asked for by an operator"
            )
        elif action == "cancel":
            await reservations.cancel_reservation(
                session,
                client_id=client_id,
                reservation_key=key,
                callbacks=runtime.settings.guestkey_callback_url is not None,
            )
        else:
            await reservations.enqueue_sync(session, reservation_id=reservation.id)
    except GuestkeyError as error:
        await session.rollback()
        outcome, reason = "refused", error.message
    except (FreshCodeRefused, SeamError) as error:
        await session.rollback()
        outcome, reason = "refused", str(error)
    await service.audit(
        session,
        operator_id=operator_id,
        action=action,
        outcome=outcome,
        reservation_id=reservation_id,
        client_id=client_id,
        **({"reason": reason} if reason else {}),
    )
    await session.commit()
    return RedirectResponse(
        f"/console/reservations/{reservation_id}?done={action}", status_code=303
    )
