"""Who is calling: the FastAPI dependencies that check a request's API token or signed URL, its
rate limit and its role (the tokens themselves: control_plane/tokens.py)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import APIKeyCookie, HTTPAuthorizationCredentials, HTTPBearer

from control_plane.api.errors import declare
from control_plane.sessions import COOKIE, CSRF_HEADER, SAFE_METHODS, check_csrf, find_session
from control_plane.signed_urls import signature_ok
from control_plane.tokens import Principal, Role, Tokens

_bearer = HTTPBearer(auto_error=False, description="an API token: Authorization: Bearer vft_<id>_<secret>")
_cookie = APIKeyCookie(name=COOKIE, auto_error=False, description=f"a console session (POST /v1/session); its "
                       f"changes also need the {CSRF_HEADER} header")
CookieDep = Annotated[str | None, Depends(_cookie)]


def authenticate(request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
                 cookie: CookieDep) -> Principal:
    """The caller of this request, after its rate limit: an API token's, else the session cookie's (the
    token wins: it carries no ambient credential, so needs no CSRF check). 401 without a valid one,
    403 for a cookie change without its CSRF token, 429 over the token's rate."""
    tokens: Tokens = request.app.state.services.tokens
    if credentials is not None:
        who = tokens.check(credentials.credentials)
        if who is None:
            raise HTTPException(401, "the API token is unknown, malformed or revoked; ask an admin for a new one",
                                headers={"WWW-Authenticate": "Bearer"})
    elif cookie is not None:
        who = _session_caller(request, cookie)
    else:
        raise HTTPException(401, "send an API token: Authorization: Bearer <token>, or sign in with it: "
                            "POST /v1/session", headers={"WWW-Authenticate": "Bearer"})
    within_rate(tokens, who)
    request.state.principal = who
    return who


def within_rate(tokens: Tokens, who: Principal) -> None:
    """429 when ``who``'s token is over its rate (a console session counts against its token's)."""
    wait = tokens.throttle(who)
    if wait > 0:
        raise HTTPException(429, f"over this token's rate of {who.rate[0]:g} requests/s; retry later",
                            headers={"Retry-After": str(max(1, round(wait)))})


def _session_caller(request: Request, secret: str) -> Principal:
    found = find_session(request.app.state.services.engine, secret)
    if found is None:
        raise HTTPException(401, "the console session has ended (signed out, expired or its API token revoked); "
                            "sign in again: POST /v1/session with an API token", headers={"WWW-Authenticate": "Bearer"})
    row, who = found
    request.state.principal = who  # before the CSRF check: the audit log names whose session a forged call rode on
    if request.method not in SAFE_METHODS:
        check_csrf(request.headers, row.csrf)
    request.state.console_session = row
    return who


# What each dependency can answer: the OpenAPI document lists it on every operation that uses it
# (control_plane/api/errors.py reads ``responses`` off the dependency tree).
authenticate.responses = declare(401, "csrf", 429)  # type: ignore[attr-defined]
PrincipalDep = Annotated[Principal, Depends(authenticate)]


def allow(*roles: Role):
    """A dependency that lets through admins and the given roles, and answers 403 to the rest."""
    permitted = {Role.admin, *roles}

    def check(who: PrincipalDep) -> Principal:
        if who.role not in permitted:
            names = " or ".join(sorted(permitted))
            raise HTTPException(403, f"this needs the {names} role; this token is {who.role}")
        return who

    check.responses = declare(403)  # type: ignore[attr-defined]  (401 and 429: authenticate, below it)
    return check


def allow_signed_or(*roles: Role):
    """For what agents fetch: a valid signed URL, or a token with one of ``roles``."""
    role_check = allow(*roles)

    def check(request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
              cookie: CookieDep) -> Principal | None:
        q = request.query_params
        if signature_ok(request.app.state.services.url_secret, request.url.path, q.get("exp"), q.get("sig")):
            return None
        return role_check(authenticate(request, credentials, cookie))

    check.responses = declare(401, "csrf", 403, 429)  # type: ignore[attr-defined]  (calls authenticate itself)
    return check


Reader = Depends(allow(Role.operator, Role.viewer))  # read-only views of the fleet
Operator = Depends(allow(Role.operator))
Admin = Depends(allow())
