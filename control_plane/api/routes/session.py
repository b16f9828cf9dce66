"""Console sign-in: an API token exchanged for a session cookie and its CSRF token, the session read
back (a reloaded page recovers its CSRF token), and sign-out (control_plane/sessions.py)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, HTTPException, Request, Response
from fastapi.concurrency import run_in_threadpool

from control_plane.api.auth import PrincipalDep, authenticate, within_rate
from control_plane.api.deps import ServicesDep
from control_plane.api.errors import declare
from control_plane.models import ConsoleSession, SessionCreate, SessionPublic
from control_plane.sessions import COOKIE, check_origin, close_session, open_session
from control_plane.tokens import Principal

router = APIRouter(prefix="/v1/session", tags=["session"])
_SET_COOKIE = {"Set-Cookie": {"description": f"{COOKIE}=<secret>; HttpOnly; SameSite=Strict; Path=/; Max-Age=<ttl> "
                                             "(and Secure over https)", "schema": {"type": "string"}}}
_CLEAR_COOKIE = {"Set-Cookie": {"description": f"{COOKIE}=\"\"; Max-Age=0; ...: clears the cookie",
                               "schema": {"type": "string"}}}
_NO_SESSION = "no console session came with this request: sign in with POST /v1/session and an API token"


def _public(row: ConsoleSession, who: Principal) -> SessionPublic:
    return SessionPublic(token_id=who.token_id, subject=who.subject, role=who.role, csrf=row.csrf,
                         expires_at=row.expires_at)


def _set_cookie(response: Response, request: Request, value: str, max_age: int) -> None:
    response.set_cookie(COOKIE, value, max_age=max_age, path="/", httponly=True, samesite="Strict",
                        secure=request.url.scheme == "https")
    response.headers["Cache-Control"] = "no-store"  # the answer holds the CSRF token


@router.post("", response_model=SessionPublic, responses={200: {"headers": _SET_COOKIE}, **declare(401, "csrf", 429)})
async def sign_in(body: SessionCreate, request: Request, response: Response, services: ServicesDep) -> SessionPublic:
    """Sign in with an API token: the answer sets the session cookie, which then stands for the token
    (its role, its rate limit) until it expires, the token is revoked, or DELETE /v1/session. Changes
    made with the cookie must send ``csrf`` in the X-CSRF-Token header."""
    check_origin(request.headers)  # a page of another site must not sign a browser in as someone else
    if not body.token:
        raise HTTPException(401, 'send the API token to sign in with: {"token": "vft_<id>_<secret>"}',
                            headers={"WWW-Authenticate": "Bearer"})
    who = await run_in_threadpool(services.tokens.check, body.token)
    if who is None:
        raise HTTPException(401, "the API token is unknown, malformed or revoked; check it, or ask an admin for a "
                            "new one", headers={"WWW-Authenticate": "Bearer"})
    within_rate(services.tokens, who)
    request.state.principal = who  # the audit log records who signed in
    ttl_s = services.settings.session_ttl_s
    row, secret = await run_in_threadpool(open_session, services.engine, who, ttl_s)
    _set_cookie(response, request, secret, round(ttl_s))
    return _public(row, who)


@router.get("", response_model=SessionPublic, responses=declare(401))
def current_session(request: Request, who: PrincipalDep) -> SessionPublic:
    """The session of this request's cookie, with its CSRF token; 401 without one (an API token alone
    has no session)."""
    row: ConsoleSession | None = getattr(request.state, "console_session", None)
    if row is None:
        raise HTTPException(401, _NO_SESSION, headers={"WWW-Authenticate": "Bearer"})
    return _public(row, who)


@router.delete("", status_code=204, response_class=Response, dependencies=[Depends(authenticate)],
               responses={204: {"headers": _CLEAR_COOKIE}})
async def sign_out(request: Request, services: ServicesDep) -> Response:
    """Sign out: the session ends (its cookie no longer works anywhere) and the cookie is cleared. Like
    every change made with the cookie, it needs the X-CSRF-Token header."""
    row: ConsoleSession | None = getattr(request.state, "console_session", None)
    if row is not None:  # an API token's call has no session to end
        await run_in_threadpool(close_session, services.engine, row.id)
    response = Response(status_code=204)
    _set_cookie(response, request, "", 0)
    return response
